"""Stage `momentum_speedup`: Fig 6-9, SGD with and without momentum (and Nesterov), steps to a cost of 0.1.

Every (optimizer, setup, seed) is one training cell, run by the Hydra
launcher of the `launcher` section (joblib processes by default; SLURM
through submitit), each logged as an MLflow run nested under the stage's.
Outputs in data/momentum_speedup: `cells/` (one folder per cell), `steps.csv`,
`epochs.csv`, `runs.csv`, `summary.csv`, `curves/` (for `dvc plots`),
`summary.json` and `metrics.json` (SGD's steps over momentum's, per setup);
each table is described in `beyond_gd.studies.momentum_speedup`.
"""

from beyond_gd.launch import cell_launcher
from beyond_gd.stage import MNIST, Plot, Stage, main
from beyond_gd.studies import momentum_speedup

STAGE = Stage(
    "momentum_speedup", momentum_speedup.Config, momentum_speedup.run, __doc__,
    inputs={"mnist": MNIST}, launch=cell_launcher,
    outputs=("cells", "curves", "steps.csv", "epochs.csv", "runs.csv", "summary.csv", "summary.json", "metrics.json"),
    plots=(Plot("Fig 6-9: 200-step mean cost, mean over seeds, per setup and optimizer", "step", {"curves": "cost"}),),
)

if __name__ == "__main__":
    main(STAGE)
