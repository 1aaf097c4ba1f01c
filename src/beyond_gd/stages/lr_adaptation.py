"""Stage `lr_adaptation`: AdaGrad, RMSProp and Adam over a long budget on the MLP, and Adam without its bias
correction; each probing its per-parameter effective learning rate and the size of its first updates.

Each (optimizer, seed) is a training cell run by the `launcher`, at the
optimizer grid's best learning rates. Outputs in data/lr_adaptation: `cells/`,
`probes.csv`, `epoch_loss.csv`, `steps.csv`, `summary.csv`, `summary.json` and
`metrics.json`; each table is described in `beyond_gd.studies.lr_adaptation`.
"""

from beyond_gd.launch import cell_launcher
from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import lr_adaptation

STAGE = Stage(
    "lr_adaptation", lr_adaptation.Config, lr_adaptation.run, __doc__,
    inputs={"mnist": MNIST, "optimizer_grid": ("summary.csv",)}, launch=cell_launcher,
    outputs=("cells", "probes.csv", "epoch_loss.csv", "steps.csv", "summary.csv", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
