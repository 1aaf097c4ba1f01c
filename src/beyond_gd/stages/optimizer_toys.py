"""Stage `optimizer_toys`: Nesterov against heavy ball on quadratics, AdaGrad against RMSProp on a plateau.

Outputs in data/optimizer_toys: `quadratic_steps.csv` (steps to a tolerance
and rates, per condition number, method and setting), `plateau_paths.csv` and
`plateau_outcomes.csv` (AdaGrad's and RMSProp's paths, and whether each
reached the bowl), `grids.npz` (the plateau surface for contours),
`summary.json` and `metrics.json`.
"""

from beyond_gd.stage import Stage, main
from beyond_gd.studies import optimizer_toys

STAGE = Stage(
    "optimizer_toys", optimizer_toys.Config, optimizer_toys.run, __doc__,
    outputs=("quadratic_steps.csv", "plateau_paths.csv", "plateau_outcomes.csv", "grids.npz", "summary.json",
             "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
