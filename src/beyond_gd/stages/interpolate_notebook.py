"""Stage `interpolate_notebook`: the companion notebook's Fig 6-3 (final ReLU, SGD at lr 1e-4, alpha step 0.01).

Outputs in data/interpolate_notebook: `mnist.pt` and `init.pt` (the notebook's
network trained, and its initialisation), `epochs.csv` (train and test loss
and accuracy per epoch), `path.csv` (loss and accuracy per theta_rand, split
and alpha), `summary.csv` (per path: local minima in (0, 1), barrier,
slopes), `summary.json` and `metrics.json`.
"""

from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import interpolate_notebook

STAGE = Stage(
    "interpolate_notebook", interpolate_notebook.Config, interpolate_notebook.run, __doc__,
    inputs={"mnist": MNIST},
    outputs=("mnist.pt", "init.pt", "epochs.csv", "path.csv", "summary.csv", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
