"""Stage `hessian_density` (beyond the book): the Hessian's eigenvalue density at the init, during training and at the SGD solution.

Outputs in data/hessian_density: `ritz.csv` (every Ritz value and weight per
point and start), `density.csv` (the broadened density per point),
`top.csv` (the converged top eigenvalues per point and start),
`summary.json` (per point: lambda_max, lambda_min, the outliers and the
bulk's edge where the gap is clear, else null with why, the negative mass
below each fixed cut with its spread over starts, trace) and `metrics.json`
(those at the last point, the negative mass at the claim's cut).
"""

from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import hessian_density

STAGE = Stage(
    "hessian_density", hessian_density.Config, hessian_density.run, __doc__,
    inputs={"mnist": MNIST, "baseline": ("mnist.pt", "init.pt", "checkpoints.pt")},
    outputs=("ritz.csv", "density.csv", "top.csv", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
