"""Stage `mode_connectivity` (beyond the book): SGD solutions of several seeds, the paths between them, Fig 6-3 again.

Every solution is trained by the baseline's recipe; the baseline's own seed is read from its checkpoints.
Outputs in data/mode_connectivity: `solutions.csv` (per seed: training and
the solution's losses), `paths.csv` (per pair, path, split and t: loss and
accuracy along the straight line, the line after weight matching, and the
trained Bézier curve), `barriers.csv` (their barrier heights), `matching.csv`
(the permutations found, per hidden layer), `curve_steps.csv` (the control
points' training), `curve_epochs.csv` (the curve's barrier after each of its
epochs, which stops it), `interpolation_path.csv` and `interpolation_summary.csv`
(the line from each solution to its init, in the interpolate stage's
columns plus `theta_opt`), `summary.json` and `metrics.json` (the mean
barrier of each path on the training subset).
"""

from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import mode_connectivity

STAGE = Stage(
    "mode_connectivity", mode_connectivity.Config, mode_connectivity.run, __doc__,
    inputs={"mnist": MNIST, "baseline": ("mnist.pt", "init.pt", "summary.json")},
    outputs=("solutions.csv", "paths.csv", "barriers.csv", "matching.csv", "curve_steps.csv", "curve_epochs.csv",
             "interpolation_path.csv",
             "interpolation_summary.csv", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
