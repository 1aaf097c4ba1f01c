"""Stage `random_walk`: Fig 6-8, momentum smooths a random walk, and its std against EWMA theory.

Outputs in data/random_walk: `walks.csv` (the figure's walks: momentum, step,
raw, smoothed; each momentum its own random sequence), `std.csv` (per
momentum: the measured std of the raw and smoothed steps, the stationary
theory sqrt((1 - m) / (1 + m)) x the raw std, the exact finite-step value,
their ratios), `summary.json` and `metrics.json`.
"""

from beyond_gd.stage import Stage, main
from beyond_gd.studies import random_walk

STAGE = Stage(
    "random_walk", random_walk.Config, random_walk.run, __doc__,
    outputs=("walks.csv", "std.csv", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
