"""Stage `edge_of_stability` (beyond the book): full-batch gradient descent trains at the edge of stability.

Outputs in data/edge_of_stability: `curves.csv` (per run and evaluated step:
loss, accuracy and the sharpness λ_max of the subset loss by warm-started
Lanczos to a residual tolerance, with λ_max / (2 / lr), the residual and
whether it met the tolerance), `runs.csv` (per run, from the estimates that
met it: the step where λ_max first reached the edge, the quartiles of λ_max /
(2 / lr) after it, whether it diverged, how many estimates fell short), `summary.json`
and `metrics.json` (each GD lr's hovering median and how many GD runs reached
the edge). Each table is described in `beyond_gd.studies.edge_of_stability`.
"""

from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import edge_of_stability

STAGE = Stage(
    "edge_of_stability", edge_of_stability.Config, edge_of_stability.run, __doc__,
    inputs={"mnist": MNIST},
    outputs=("curves.csv", "runs.csv", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
