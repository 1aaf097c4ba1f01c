"""Stage `baseline`: the book's MLP on MNIST, trained by `baseline.optimizer` (the book's SGD).

Outputs in data/baseline: `mnist.pt` (the trained state_dict), `init.pt` (its
random initialisation), `checkpoints.pt` (the states at the ends of
`baseline.checkpoint_epochs`), `steps.csv` (loss per mini-batch step), `epochs.csv`
(train and test loss and accuracy per epoch), `summary.json` and `metrics.json`
(the final numbers).
"""

from beyond_gd.stage import MNIST, Plot, Stage, main
from beyond_gd.studies import baseline

STAGE = Stage(
    "baseline", baseline.Config, baseline.run, __doc__,
    inputs={"mnist": MNIST},
    outputs=("mnist.pt", "init.pt", "checkpoints.pt", "steps.csv", "epochs.csv", "summary.json", "metrics.json"),
    plots=(Plot("Baseline training loss per mini-batch step", "step", {"steps.csv": "loss"}),
           Plot("Baseline loss per epoch", "epoch", {"epochs.csv": ("train_loss", "test_loss")}),
           Plot("Baseline accuracy per epoch", "epoch", {"epochs.csv": ("train_accuracy", "test_accuracy")})),
)

if __name__ == "__main__":
    main(STAGE)
