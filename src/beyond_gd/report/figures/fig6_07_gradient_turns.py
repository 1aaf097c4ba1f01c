"""Fig 6-7: the gradient turns along the steepest-descent line."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import contours, frame
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

SURF = "surfaces"
GRIDS = Need(SURF, "grids.npz")
SURF_SUMMARY = Need(SURF, "summary.json")


@figure("fig6-07-gradient-turns", title="Fig 6-7. Along the steepest-descent line the gradient turns",
        needs=(GRIDS, Need(SURF, "fig6_7_line.csv"), SURF_SUMMARY),
        shows="The steepest-descent line chosen at a start point, with the normalised descent direction "
              "−∇f/|∇f| at points along it, on circular and on elliptical contours (left, middle); the angle of "
              "the gradient from its direction at the start against the distance moved (right).",
        book="Moving along the direction of steepest descent chosen at the start, the gradient changes "
             "direction under our feet; on circular contours it would not.")
def gradient_turns(i: View, p: FigureParams, s: Style) -> Drawn:
    g, line, m = i.npz(SURF, "grids.npz"), i.csv(SURF, "fig6_7_line.csv"), i.json(SURF)
    fig, axes = plt.subplots(1, 3, figsize=size(s), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    colors = dict(zip(("circle", "ellipse"), sns.color_palette(n_colors=2), strict=True))
    titles = {"circle": "circular contours", "ellipse": "elliptical contours"}
    line = line.copy()
    for surface, rows in line.groupby("surface", sort=False):
        line.loc[rows.index, "distance"] = np.hypot(rows["x"] - rows["x"].iloc[0], rows["y"] - rows["y"].iloc[0])
    for ax, surface in zip(axes[:2], ("circle", "ellipse"), strict=True):
        rows = line[line["surface"] == surface]
        # Arrows 1.5x the spacing of the points, the panel zoomed to the line: the turn shows.
        length = 1.5 * np.hypot(np.diff(rows["x"]), np.diff(rows["y"])).mean()
        contours(ax, g["fig6_7_x"], g["fig6_7_y"], g[f"fig6_7_{surface}_loss"], levels=24)
        ax.plot(rows["x"], rows["y"], color=colors[surface], lw=4, alpha=0.35, solid_capstyle="round",
                label="steepest-descent line")
        # Arrows start on the line and are drawn in black so the circle's, lying along it, still show.
        ax.quiver(rows["x"], rows["y"], -rows["unit_grad_x"] * length, -rows["unit_grad_y"] * length,
                  angles="xy", scale_units="xy", scale=1, color="k", width=0.006, label="−∇f / |∇f|", zorder=3)
        frame(ax, rows["x"], rows["y"], margin=2.5 * length)
        ax.set(xlabel="w₁", ylabel="w₂", title=titles[surface], aspect="equal")
        ax.legend(fontsize="x-small", loc="lower left")
    ax = axes[2]
    for surface, rows in line.groupby("surface", sort=False):
        ax.plot(rows["distance"], rows["turn_deg"], marker="o", color=colors[surface], label=titles[surface])
    ax.axhline(90, color="0.5", ls=":")
    ax.set(xlabel="distance moved along the line", ylabel="gradient's turn from the start (°)", ylim=(-3, 95),
           title="how far the gradient turned")
    ax.legend(fontsize="small")
    fig.tight_layout()
    measured = (f"At the end of the line the gradient has turned {m['turn_deg_ellipse']:.1f}° on the ellipse "
                f"and {m['turn_deg_circle']:.1g}° on the circle.")
    return Drawn(fig, measured)


# A turn of none: the angle between two float64 unit vectors that agree comes out of arccos(1 - a few ulp)
# as ~1e-6 degrees at most.
ROUND_OFF_DEG = 1e-5


@claim("gradient_turns_on_ellipses", kind=CHECK, figure="Fig 6-7",
       source="§ When the gradient points in the wrong direction",
       book="Moving along the steepest-descent direction chosen at the start, the gradient changes direction "
            "under our feet on elliptical contours; on circular contours it would not.",
       needs=(SURF_SUMMARY,),
       tolerance=f"holds: by the end of the line the ellipse's gradient has turned >= {{tol:g}}° and the circle's "
                 f"not at all (<= {ROUND_OFF_DEG:g}°, round-off); fails otherwise (a closed form on two quadratics)")
def gradient_turns_ellipse(i: View, tol: float) -> Measured:
    m = i.json(SURF)
    ellipse, circle = m["turn_deg_ellipse"], m["turn_deg_circle"]
    return Measured(f"ellipse {ellipse:.1f}°, circle {circle:.2g}°",
                    holds(ellipse >= tol and circle <= ROUND_OFF_DEG))
