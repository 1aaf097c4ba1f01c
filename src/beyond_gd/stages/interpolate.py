"""Stage `interpolate`: Fig 6-3, loss and accuracy on the line from the SGD solution to random points.

Outputs in data/interpolate: `path.csv` (loss and accuracy per theta_rand,
split and alpha), `curves.csv` (their mean and range per alpha, for `dvc
plots`), `summary.csv` (per path: local minima in (0, 1), barrier, slopes),
`summary.json` and `metrics.json`.
"""

from beyond_gd.stage import Stage, main
from beyond_gd.studies import interpolate

STAGE = Stage("interpolate", interpolate.Config, interpolate.run, __doc__, inputs=("mnist", "baseline"),
              outputs=("path.csv", "curves.csv", "summary.csv", "summary.json", "metrics.json"))

if __name__ == "__main__":
    main(STAGE)
