"""Stage `landscape_2d` (beyond the book): Fig 6-3 in two dimensions (Li et al. 2018).

Outputs in data/landscape_2d: `random_plane.csv` (the loss and accuracy on a
grid around the SGD solution, along two random filter-normalised directions),
`pca_planes.csv` (per optimizer, the loss on the plane of its path's top two
principal directions), `paths.csv` (each saved iterate projected on that plane,
with its own loss), `summary.json` and `metrics.json` (the loss at the SGD
solution and the grid's minimum, each path's explained variance).
"""

from beyond_gd.stage import MNIST, Stage, main
from beyond_gd.studies import landscape_2d

STAGE = Stage(
    "landscape_2d", landscape_2d.Config, landscape_2d.run, __doc__,
    inputs={"mnist": MNIST, "baseline": ("mnist.pt", "init.pt")},
    outputs=("random_plane.csv", "pca_planes.csv", "paths.csv", "summary.json", "metrics.json"),
)

if __name__ == "__main__":
    main(STAGE)
