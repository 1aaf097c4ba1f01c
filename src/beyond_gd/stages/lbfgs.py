"""Stage `lbfgs`: L-BFGS as torch documents it (full-batch, strong-Wolfe line search) beside SGD, momentum and Adam,
and SciPy's non-linear CG.

All on one subset of the training images, the first-order methods at the
optimizer grid's best learning rates, measured per gradient evaluation and
per second; each (optimizer, seed) a training cell run by the `launcher`, then
full-batch Polak-Ribiere CG in the stage's process from the same
initialisations for as many gradient evaluations as L-BFGS made. Outputs in
data/lbfgs: `cells/`, `epochs.csv` (CG's rows one per iteration, optimizer
`cg`), `summary.csv`, `summary.json` (with the network's parameter count and
what BFGS and L-BFGS would hold for it) and `metrics.json`; each table is
described in `beyond_gd.studies.lbfgs`.
"""

from beyond_gd.launch import cell_launcher
from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import lbfgs

STAGE = Stage(
    "lbfgs", lbfgs.Config, lbfgs.run, __doc__,
    inputs={"mnist": MNIST, "optimizer_grid": ("summary.csv",)}, launch=cell_launcher,
    outputs=("cells", "epochs.csv", "summary.csv", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
