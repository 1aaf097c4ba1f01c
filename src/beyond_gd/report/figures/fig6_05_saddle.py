"""Fig 6-5: a saddle point, a minimum from A to B and a maximum from C to D."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

SURF = "surfaces"
GRIDS = Need(SURF, "grids.npz")
SURF_SUMMARY = Need(SURF, "summary.json")


@figure("fig6-05-saddle", title="Fig 6-5. A saddle point: a minimum from A to B, a maximum from C to D",
        needs=(GRIDS, Need(SURF, "fig6_5_cuts.csv"), SURF_SUMMARY),
        shows="The surface z = x² − y² in 3-D with the cuts A–B (along x) and C–D (along y) drawn on it "
              "(left); the height along each cut (right).",
        book="Cutting the surface from A to B the critical point looks like a minimum, from C to D like a "
             "maximum: a saddle point.")
def saddle(i: View, p: FigureParams, s: Style) -> Drawn:
    g, cuts, m = i.npz(SURF, "grids.npz"), i.csv(SURF, "fig6_5_cuts.csv"), i.json(SURF)
    x, y = np.meshgrid(g["fig6_5_x"], g["fig6_5_y"])
    fig = plt.figure(figsize=size(s, rows=1.25))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.2, 1], wspace=0.25)
    ax3 = fig.add_subplot(grid[0, 0], projection="3d", computed_zorder=False)
    ax3.plot_surface(x, y, g["fig6_5_z"], cmap=s.colormap, alpha=0.75, linewidth=0, antialiased=True, zorder=1)
    colors = sns.color_palette(n_colors=2)
    ax = fig.add_subplot(grid[0, 1])
    for (name, rows), color in zip(cuts.groupby("cut", sort=True), colors, strict=True):
        start, end = name.split("-")
        ax3.plot(rows["x"], rows["y"], rows["z"], color=color, lw=3, zorder=3)
        for label, row in ((start, rows.iloc[0]), (end, rows.iloc[-1])):
            ax3.text(row["x"], row["y"], row["z"] + 0.4, label, color=color, fontsize="large", weight="bold",
                     zorder=4)
        looks = {"minimum": "a minimum", "maximum": "a maximum"}.get(looks_like(rows, 1e-12), "neither")
        ax.plot(rows["s"], rows["z"], color=color, lw=2, label=f"{start} → {end}: looks like {looks}")
    ax3.scatter([0], [0], [0], color="k", s=30, zorder=5)
    ax3.set(xlabel="x", ylabel="y", zlabel="")
    ax3.set_title("z = f(x, y)")
    ax3.view_init(elev=28, azim=-55)
    ax.scatter([0], [0], color="k", zorder=3, label="the saddle point")
    ax.set(xlabel="position along the cut", ylabel="height z", title="the two cuts")
    ax.legend(fontsize="small")
    lo, hi = m["saddle_hessian_eig_min"], m["saddle_hessian_eig_max"]
    measured = (f"Hessian eigenvalues {lo:g} and {hi:g}: " + (
        "one negative, one positive, so the critical point at the origin is a saddle." if lo < 0 < hi else
        "no eigenvalue of each sign, so the second-derivative test does not call the origin a saddle."))
    return Drawn(fig, measured)


def looks_like(cut: pd.DataFrame, slack: float) -> str:
    """What the critical point (s = 0) looks like along one cut: "minimum", "maximum" or "neither"."""
    at = cut.loc[cut["s"].abs().idxmin(), "z"]
    return "minimum" if at <= cut["z"].min() + slack else "maximum" if at >= cut["z"].max() - slack else "neither"


@claim("saddle_hessian_signs", kind=CHECK, figure="Fig 6-5", source="§ Flat regions in the error surface",
       book="Cut from A to B the critical point looks like a minimum, from C to D like a maximum: it is a saddle, "
            "its Hessian has eigenvalues of both signs.",
       needs=(SURF_SUMMARY, Need(SURF, "fig6_5_cuts.csv")),
       tolerance="holds: Hessian eigenvalues below -{tol:g} and above +{tol:g}, and the critical point the lowest "
                 "point of A-B and the highest of C-D (to {tol:g}); fails otherwise (a closed form on the toy "
                 "surface)")
def saddle_signs(i: View, tol: float) -> Measured:
    m, cuts = i.json(SURF), i.csv(SURF, "fig6_5_cuts.csv")
    lo, hi = m["saddle_hessian_eig_min"], m["saddle_hessian_eig_max"]
    looks = {name: looks_like(rows, tol) for name, rows in cuts.groupby("cut")}
    indefinite, as_drawn = lo < -tol and hi > tol, looks.get("A-B") == "minimum" and looks.get("C-D") == "maximum"
    return Measured(f"eigenvalues {lo:g}, {hi:g}; at the critical point " + ", ".join(
        f"{name} {kind}" for name, kind in looks.items()), holds(indefinite and as_drawn))
