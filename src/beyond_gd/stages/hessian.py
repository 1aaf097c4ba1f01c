"""Stage `hessian` (beyond the book): the loss Hessian's extreme eigenvalues and trace along the Fig 6-3 path.

Outputs in data/hessian: `eigenvalues.csv` (the top and the most negative
eigenvalues per alpha, with residuals), `ritz.csv` (every Ritz value and its
weight), `trace.csv` (Hutchinson draws), `path.csv` (per alpha: loss,
gradient norm, extreme eigenvalues, trace, conditioning ratios),
`oscillation.csv` (from the SGD solution, per batch-order seed, optimizer
and lr x lambda_max: the lag-1 autocorrelation, sign-flip share and rms of
the updates projected on the top eigenvector and on a random direction, the
final loss, whether the run diverged), `summary.json` and `metrics.json`
(the extreme eigenvalues and trace at the SGD solution, the median seconds
of one gradient and of one Hessian-vector product there, with their ratio,
and per run kind the mean autocorrelations over seeds).
"""

from beyond_gd.stage import MNIST, Plot, Stage, main
from beyond_gd.studies import hessian

STAGE = Stage(
    "hessian", hessian.Config, hessian.run, __doc__,
    inputs={"mnist": MNIST, "baseline": ("mnist.pt", "init.pt")},
    outputs=("eigenvalues.csv", "ritz.csv", "trace.csv", "path.csv", "oscillation.csv", "summary.json",
             "metrics.json"),
    plots=(Plot("Hessian extreme eigenvalues along the path", "alpha", {"path.csv": ("lambda_max", "lambda_min")}),),
)

if __name__ == "__main__":
    main(STAGE)
