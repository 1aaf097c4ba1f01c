"""Stage `hessian` (beyond the book): the loss Hessian's extreme eigenvalues and trace along the Fig 6-3 path.

Outputs in data/hessian: `eigenvalues.csv` (the top and the most negative
eigenvalues per alpha, with residuals), `ritz.csv` (every Ritz value and its
weight), `trace.csv` (Hutchinson draws), `path.csv` (per alpha: loss,
gradient norm, extreme eigenvalues, trace, conditioning ratios),
`summary.json` and `metrics.json` (the extreme eigenvalues and trace at the
SGD solution, and the median seconds of one gradient and of one
Hessian-vector product there, with their ratio).
"""

from beyond_gd.stage import MNIST, Plot, Stage, main
from beyond_gd.studies import hessian

STAGE = Stage(
    "hessian", hessian.Config, hessian.run, __doc__,
    inputs={"mnist": MNIST, "baseline": ("mnist.pt", "init.pt")},
    outputs=("eigenvalues.csv", "ritz.csv", "trace.csv", "path.csv", "summary.json", "metrics.json"),
    plots=(Plot("Hessian extreme eigenvalues along the path", "alpha", {"path.csv": ("lambda_max", "lambda_min")}),),
)

if __name__ == "__main__":
    main(STAGE)
