"""Fig 6-3 in two dimensions: the loss on planes through the SGD solution and through each optimizer's path
(Li, Xu, Taylor, Studer & Goldstein 2018)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import graded
from beyond_gd.report.registry import MEASURED, Drawn, FigureParams, Measured, claim, figure, not_measured
from beyond_gd.report.style import Style, size

L2 = "landscape_2d"
LEVELS = 12
# The eight rays from the centre that pass through grid points at every step: the axes and the diagonals.
RAYS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))


@figure("extra-landscape-2d", title="Fig 6-3 in two dimensions: the loss on a random plane and on each path's plane",
        needs=(Need(L2, "random_plane.csv"), Need(L2, "pca_planes.csv"), Need(L2, "paths.csv"),
               Need(L2, "summary.json")),
        shows="Training loss (cross-entropy on a fixed subset of the training set; contours log-spaced and "
              "labelled) at θ* + a d1 + b d2 around the baseline's SGD solution θ* (star), d1 and d2 random "
              "Gaussian directions with every unit's row rescaled to the norm of its row in θ* (filter "
              "normalisation, Li et al. 2018; bias directions zero), left; and for each optimizer trained from "
              "the baseline's init for a short budget, the plane through its final iterate spanned by the top "
              "two principal directions of its saved iterates minus the final one, with the path projected on "
              "it (every saved iterate a dot; start: circle, end: star) and each direction's explained variance "
              "in its axis label (these two axes are not to the same scale).",
        book="Beyond the book: Fig 6-3's line is one cut; Li et al. (2018) show that the filter-normalised 2-D "
             "slice around a well-trained minimum is convex-looking with the minimum at the centre, and that an "
             "optimizer's path lies almost entirely in a 2-D subspace (its top two PCA directions explain most "
             "of its variance).",
        notes="Li, Xu, Taylor, Studer & Goldstein (2018): the book's line from θ* is one cut; here the cut is a "
              "plane. Left, θ* + a d1 + b d2 on a `landscape_2d.random_plane.resolution`² grid over [−1, 1]², "
              "with d1 and d2 Gaussian and every unit's row of weights rescaled to that row's norm in θ* (biases "
              "not moved), so that a = 1 moves each unit by its own size. Right, one panel per optimizer trained "
              "from the baseline's init for `landscape_2d.trajectory.max_steps` steps: the plane through its "
              "final iterate spanned by the top two singular vectors of its saved iterates minus the final one, "
              "the path projected on it, and the share of the path's squared distance to the end that each "
              "direction explains. Every grid point is the mean loss over the same `landscape_2d.subset_size` "
              "training images.")
def landscape_2d(i: View, p: FigureParams, s: Style) -> Drawn:
    rand, planes, paths, m = (i.csv(L2, "random_plane.csv"), i.csv(L2, "pca_planes.csv"), i.csv(L2, "paths.csv"),
                              i.json(L2))
    names = list(m["optimizers"])
    colors = sns.color_palette(n_colors=max(len(names), 2) + 1)
    fig, axes = plt.subplots(1, 1 + len(names), figsize=size(s, rows=1.35), squeeze=False)
    axes = axes[0]
    r = m["random_plane"]
    ax = axes[0]
    _contours(ax, rand, "a", "b", s.colormap)
    ax.plot(0, 0, marker="*", ms=14, color="white", mec="black", zorder=4, label="SGD solution θ*")
    if r["min_loss"] is not None and tuple(r["min_at"]) != (0.0, 0.0):
        ax.plot(*r["min_at"], marker="x", ms=9, color="red", zorder=4, label="grid minimum")
    ax.set(xlabel="a (along d1, filter-normalised)", ylabel="b (along d2)", aspect="equal",
           title=f"random plane around θ* ({r['resolution']}² points)")
    ax.title.set_fontsize("medium")
    ax.legend(fontsize="x-small", loc="upper right")
    texts = []
    for ax, name, color in zip(axes[1:], names, colors[1:], strict=True):
        entry = m["optimizers"][name]
        plane = entry["plane"]
        if plane is None:
            ax.text(0.5, 0.5, f"{name}: fewer than 3 finite iterates\n(diverged: {entry['diverged']})",
                    ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            texts.append(f"{name}: no plane ({entry['finite_iterates']} finite iterates"
                         + (", diverged" if entry["diverged"] else "") + ")")
            continue
        _contours(ax, planes[planes["optimizer"] == name], "x", "y", s.colormap)
        path = paths[paths["optimizer"] == name].sort_values("step")
        ax.plot(path["x"], path["y"], color=color, lw=1.4, marker="o", ms=3, zorder=3,
                label=f"path, every {_stride(path)} steps")
        ax.plot(path["x"].iloc[0], path["y"].iloc[0], marker="o", ms=9, color=color, mec="black", zorder=4,
                label="start (init)")
        ax.plot(0, 0, marker="*", ms=14, color="white", mec="black", zorder=4, label="end (final iterate)")
        ev = plane["explained_variance"]
        ax.set(xlabel=f"PC1 ({ev[0]:.1%} of the variance)", ylabel=f"PC2 ({ev[1]:.1%})",
               title=f"{name}, {entry['steps']} steps" + (" (diverged)" if entry["diverged"] else ""))
        ax.title.set_fontsize("medium")
        ax.legend(fontsize="x-small", loc="best")
        texts.append(f"{name}: explained variance {ev[0]:.3f} + {ev[1]:.3f} = {plane['explained_variance_total']:.3f}"
                     f" (every iterate within {plane['max_off_plane']:.2g} of the plane, the init "
                     f"{plane['start_distance']:.3g} from the end), loss "
                     f"{_g(plane['start_loss'])} at the init, {_g(plane['centre_loss'])} at the final iterate, "
                     f"lowest on its plane {_g(plane['min_loss'])}")
    fig.tight_layout()
    if r["min_loss"] is None:
        lowest = "no finite loss on the random plane"
    else:
        where = ("at the centre" if tuple(r["min_at"]) == (0.0, 0.0)
                 else f"at (a, b) = ({r['min_at'][0]:g}, {r['min_at'][1]:g})")
        lowest = (f"the random plane's minimum is {r['min_loss']:.4g}, {where}, its maximum {r['max_loss']:.3g} "
                  f"(the directions' cosine {r['direction_cosine']:.2g})")
    measured = (f"On {m['subset_size']:,} training images: loss {_g(r['centre_loss'], '.4g')} at the SGD solution; "
                f"{lowest}. " + "; ".join(texts) + ".")
    return Drawn(fig, measured)


def _contours(ax: plt.Axes, grid: pd.DataFrame, xcol: str, ycol: str, cmap: str) -> None:
    """Filled and labelled contours of the loss, levels spaced evenly in log between its finite extremes."""
    z = grid.pivot(index=ycol, columns=xcol, values="loss")
    values = z.to_numpy(dtype=float)
    finite = values[np.isfinite(values) & (values > 0)]
    if finite.size == 0:
        ax.text(0.5, 0.5, "no finite loss on the grid", ha="center", va="center", transform=ax.transAxes)
        return
    lo, hi = finite.min(), finite.max()
    levels = np.geomspace(lo, hi if hi > lo else lo * 1.01, LEVELS)
    masked = np.ma.masked_invalid(values)
    x, y = z.columns.to_numpy(dtype=float), z.index.to_numpy(dtype=float)
    ax.contourf(x, y, masked, levels=levels, cmap=cmap, norm=LogNorm(levels[0], levels[-1]), alpha=0.85,
                extend="both")
    lines = ax.contour(x, y, masked, levels=levels, colors="0.15", linewidths=0.6)
    ax.clabel(lines, lines.levels[::2], fontsize="xx-small", fmt=lambda v: f"{v:.2g}")


def _g(value: float | None, spec: str = ".3g") -> str:
    """A loss for the text; a non-finite one is null in summary.json (a diverged or overflowing point)."""
    return "not finite" if value is None or not np.isfinite(value) else format(value, spec)


def _stride(path: pd.DataFrame) -> int:
    steps = path["step"].to_numpy()
    return int(np.median(np.diff(steps))) if len(steps) > 1 else 0


def ray_losses(grid: pd.DataFrame) -> tuple[float, np.ndarray, list[np.ndarray]]:
    """The loss at the random plane's centre (a = b = 0), every grid loss, and along each of `RAYS` the losses
    from the centre out to the grid's edge (the centre first)."""
    z = grid.pivot(index="a", columns="b", values="loss")
    values = z.to_numpy(dtype=float)
    ia, ib = list(z.index).index(0.0), list(z.columns).index(0.0)
    rays = []
    for da, db in RAYS:
        k = np.arange(max(values.shape))
        ra, rb = ia + k * da, ib + k * db
        inside = (ra >= 0) & (ra < values.shape[0]) & (rb >= 0) & (rb < values.shape[1])
        rays.append(values[ra[inside], rb[inside]])
    return float(values[ia, ib]), values, rays


def falls(ray: np.ndarray, slack: float) -> bool:
    """The loss drops more than `slack` below its highest value nearer the centre somewhere along the ray (a
    non-finite loss counts as a fall: nothing can be said to rise there)."""
    if not np.isfinite(ray).all():
        return True
    return bool((ray[1:] < np.maximum.accumulate(ray)[:-1] - slack).any())


@claim("solution_is_a_minimum_in_2d", kind=MEASURED, figure="Fig 6-3 (2-D)",
       source="Li, Xu, Taylor, Studer & Goldstein (2018); beyond the chapter",
       book="Around the minimum of a well-trained network the filter-normalised 2-D slice is convex-looking, with "
            "the minimum at the centre and the loss rising in every direction from it.",
       needs=(Need(L2, "random_plane.csv"),),
       tolerance="a grid point is lower than the SGD solution when its loss is below the centre's by more than "
                 "{tol:.0%} of it; a ray from the centre (the axes and diagonals) falls when its loss drops more "
                 "than that below its highest value nearer the centre. agrees: no point lower and no ray falls; "
                 "partly: no point lower, but some ray falls; differs: some grid point lower than the centre")
def solution_is_a_minimum(i: View, tol: float) -> Measured:
    centre, values, rays = ray_losses(i.csv(L2, "random_plane.csv"))
    if not np.isfinite(centre):
        return Measured("–", not_measured("the loss at the plane's centre (the solution) is not finite"))
    finite = values[np.isfinite(values)]
    low = float(finite.min()) if finite.size else float("nan")
    slack = tol * centre
    lower = bool((finite < centre - slack).any())
    fell = [f"({da:+d}, {db:+d})" for (da, db), ray in zip(RAYS, rays, strict=True) if falls(ray, slack)]
    below = (centre - low) / centre if np.isfinite(centre) and centre > 0 else float("nan")
    return Measured(f"loss {centre:.4g} at the centre, grid minimum {low:.4g} ({below:.1%} below it); "
                    + (f"{len(fell)} of {len(rays)} rays fall: {', '.join(fell)}" if fell
                       else f"the loss rises along all {len(rays)} rays"),
                    graded(not lower and not fell, not lower, below, (tol,)))
