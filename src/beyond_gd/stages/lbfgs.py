"""Stage `lbfgs`: L-BFGS as torch documents it (full-batch, strong-Wolfe line search) beside SGD, momentum and Adam,
and SciPy's non-linear CG: the compute each needs to reach fixed losses.

All on one subset of the training images. The first-order methods' learning
rates are searched on it (a few multiples of the optimizer grid's best, a few
epochs each, as training cells run by the `launcher`); then each (optimizer,
seed) is a cell; L-BFGS and full-batch Polak-Ribiere CG train in the stage's
process from the same initialisations (CG for as many gradient evaluations as
L-BFGS made), their final losses evaluated by a float64 copy of the model.
Outputs in data/lbfgs: `cells/`, `epochs.csv` (CG's rows one per iteration,
optimizer `cg`), `evaluations.csv`, `targets.csv` (the compute to each target
loss), `search.csv`, `summary.csv`, `summary.json` (with the network's
parameter count and what BFGS and L-BFGS would hold for it) and
`metrics.json`; each table is described in `beyond_gd.studies.lbfgs`.
"""

from beyond_gd.launch import cell_launcher
from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import lbfgs

STAGE = Stage(
    "lbfgs", lbfgs.Config, lbfgs.run, __doc__,
    inputs={"mnist": MNIST, "optimizer_grid": ("summary.csv",)}, launch=cell_launcher,
    outputs=("cells", "epochs.csv", "evaluations.csv", "targets.csv", "search.csv", "summary.csv", "summary.json",
             "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
