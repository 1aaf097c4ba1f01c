"""Stage `interpolate`: Fig 6-3, loss and accuracy on the line from the SGD solution to random points.

Outputs in data/interpolate: `path.csv` (loss and accuracy per theta_rand,
split and alpha), `curves.csv` (their mean and range per alpha, for `dvc
plots`), `summary.csv` (per path: local minima in (0, 1), barrier, slopes),
`summary.json` and `metrics.json`.
"""

from beyond_gd.stage import MNIST, Plot, Stage, main
from beyond_gd.studies import interpolate

STAGE = Stage(
    "interpolate", interpolate.Config, interpolate.run, __doc__,
    inputs={"mnist": MNIST, "baseline": ("mnist.pt", "init.pt")},
    outputs=("path.csv", "curves.csv", "summary.csv", "summary.json", "metrics.json"),
    plots=(Plot("Fig 6-3: training loss from the SGD solution (alpha = 0) to a random init (alpha = 1)", "alpha",
                {"curves.csv": ("train_loss_mean", "train_loss_min", "train_loss_max", "test_loss_mean")}),
           Plot("Fig 6-3: accuracy along the path", "alpha",
                {"curves.csv": ("train_accuracy_mean", "test_accuracy_mean")})),
)

if __name__ == "__main__":
    main(STAGE)
