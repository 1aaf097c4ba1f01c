"""Stage `identifiability`: Fig 6-2, permuted and rescaled hidden units leave the trained MLP unchanged.

Outputs in data/identifiability: `trials.csv` (per trial and transform, the
largest change of parameters, logits, test loss and predictions),
`example.json` (the figure's 3-neuron layer and all its orderings),
`summary.json` (worst case per transform, log10 of the number of equivalent
orderings (n!)^l, float32 epsilon for scale) and `metrics.json`.
"""

from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import identifiability

STAGE = Stage(
    "identifiability", identifiability.Config, identifiability.run, __doc__,
    inputs={"mnist": MNIST, "baseline": ("mnist.pt",)},
    outputs=("trials.csv", "example.json", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
