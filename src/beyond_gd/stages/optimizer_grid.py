"""Stage `optimizer_grid`: every mini-batch optimizer of the chapter x learning rates x seeds on the MLP, ranked.

Every (optimizer, lr, seed) is one training cell with the same budget, and
every optimizer gets as many learning rates; cells run by the Hydra launcher
of the `launcher` section, each logged as an MLflow run nested under the
stage's; a diverging cell is recorded, not raised. Outputs in
data/optimizer_grid: `cells/` (one folder per cell), `steps.csv`,
`epochs.csv`, `cells.csv`, `summary.csv` (the ranking at each optimizer's best
lr, with bootstrap intervals over seeds), `long.csv` (the longer budget, where
it ran), `averaging.csv` (ASGD's iterate against its average over the tail of
a longer run), `curves/` (for `dvc plots`), `summary.json` and `metrics.json`; each
table is described in `beyond_gd.studies.optimizer_grid`.
"""

from beyond_gd.launch import cell_launcher
from beyond_gd.stage import MNIST, Plot, Stage, main
from beyond_gd.studies import optimizer_grid

STAGE = Stage(
    "optimizer_grid", optimizer_grid.Config, optimizer_grid.run, __doc__,
    inputs={"mnist": MNIST}, launch=cell_launcher,
    outputs=("cells", "curves", "steps.csv", "epochs.csv", "cells.csv", "summary.csv", "long.csv", "averaging.csv",
             "summary.json", "metrics.json"),
    plots=(Plot("Optimizer grid: training cost at each optimizer's best lr, mean over seeds", "step",
                {"curves": "loss"}),),
)

if __name__ == "__main__":
    main(STAGE)
