"""Stage `surfaces`: the toy surfaces of Figs 6-1, 6-4, 6-5, 6-6, 6-7 and 6-10, computed.

Outputs in data/surfaces: one tidy CSV per table the figures draw, `grids.npz`
(the surfaces for contour and 3-D plots), `summary.json` and `metrics.json`;
each file is described in `beyond_gd.studies.surfaces`.
"""

from beyond_gd.stage import Stage, main
from beyond_gd.studies import surfaces

STAGE = Stage(
    "surfaces", surfaces.Config, surfaces.run, __doc__,
    outputs=(*surfaces.TABLES, "grids.npz", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
