"""Fig 6-6: the gradient against the straight way to the minimum."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import contours
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

SURF = "surfaces"
GRIDS = Need(SURF, "grids.npz")
SURF_SUMMARY = Need(SURF, "summary.json")


@figure("fig6-06-gradient-angle", title="Fig 6-6. The gradient can point far from the minimum",
        needs=(GRIDS, Need(SURF, "fig6_6_gradients.csv"), Need(SURF, "fig6_6_largest_angle.csv"), SURF_SUMMARY),
        shows="Contours of an ill-conditioned quadratic with the descent direction −∇f at grid points, coloured "
              "by its angle to the straight way to the minimum (left); the largest such angle against the "
              "condition number, measured over directions and from theory, arccos(2√κ / (1 + κ)) (right).",
        book="On elliptical contours the gradient's direction can be up to 90° away from the direction to "
             "the minimum.")
def gradient_angle(i: View, p: FigureParams, s: Style) -> Drawn:
    g, arrows = i.npz(SURF, "grids.npz"), i.csv(SURF, "fig6_6_gradients.csv").dropna(subset=["angle_deg"])
    sweep, m = i.csv(SURF, "fig6_6_largest_angle.csv"), i.json(SURF)
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=1.1), gridspec_kw={"width_ratios": [1.15, 1]})
    ax = axes[0]
    contours(ax, g["fig6_6_x"], g["fig6_6_y"], g["fig6_6_loss"])
    spacing = np.diff(np.unique(arrows["x"])).min()
    norm = np.hypot(arrows["grad_x"], arrows["grad_y"])
    q = ax.quiver(arrows["x"], arrows["y"], -arrows["grad_x"] / norm * 0.8 * spacing,
                  -arrows["grad_y"] / norm * 0.8 * spacing, arrows["angle_deg"], angles="xy", scale_units="xy",
                  scale=1, cmap="rocket_r", width=0.006, clim=(0, 90))
    fig.colorbar(q, ax=ax, label="angle of −∇f to the minimum (°)")
    ax.scatter([0], [0], marker="*", s=150, color="k", zorder=3, label="minimum")
    ax.set(xlabel="w₁", ylabel="w₂", title=f"descent directions, κ = {m['condition_number']:g}", aspect="equal")
    ax.legend(loc="upper left", fontsize="small")

    ax = axes[1]
    ax.plot(sweep["condition_number"], sweep["theory_deg"], color="0.3", ls="--", label="theory arccos(2√κ/(1+κ))")
    ax.plot(sweep["condition_number"], sweep["largest_angle_deg"], marker="o", ls="none", label="measured")
    ax.axhline(90, color="0.5", ls=":", label="90°")
    ax.axvline(m["condition_number"], color=sns.color_palette()[1], ls=":", label="left panel")
    ax.set_xscale("log")
    ax.set(xlabel="condition number κ = λmax / λmin", ylabel="largest angle (°)", ylim=(0, 95),
           title="worst case against κ")
    ax.legend(fontsize="small", loc="lower right")
    top = sweep.iloc[sweep["condition_number"].argmax()]
    measured = (f"Largest angle {m['largest_angle_deg']:.1f}° at κ = {m['condition_number']:g} "
                f"(theory {m['largest_angle_theory_deg']:.1f}°); {top['largest_angle_deg']:.1f}° at "
                f"κ = {top['condition_number']:g}: it approaches 90° as κ grows, never reaching it.")
    return Drawn(fig, measured)


@claim("gradient_angle_up_to_90", kind=CHECK, figure="Fig 6-6",
       source="§ When the gradient points in the wrong direction",
       book="If the contours are extremely elliptical, the gradient can point up to 90° away from the direction "
            "to the minimum.",
       needs=(Need(SURF, "fig6_6_largest_angle.csv"),),
       tolerance="holds: the largest angle over directions grows with κ, never passes 90° and comes within "
                 "{tol:g}° of it at the largest κ swept (theory: arccos(2√κ/(1 + κ)), a closed form); fails "
                 "otherwise")
def gradient_angle_90(i: View, tol: float) -> Measured:
    t = i.csv(SURF, "fig6_6_largest_angle.csv").sort_values("condition_number")
    angles = t["largest_angle_deg"].to_numpy()
    grows = bool(np.all(np.diff(angles) >= -1e-9))  # float64 round-off of an arccos in degrees is ~1e-6 at 0
    beyond = bool(angles.max() > 90 + 1e-9)
    return Measured(f"{angles[-1]:.2f}° at κ = {t['condition_number'].iloc[-1]:g} "
                    f"(theory {t['theory_deg'].iloc[-1]:.2f}°); {'grows' if grows else 'does not grow'} with κ"
                    + ("; beyond 90° somewhere" if beyond else ""),
                    holds(grows and not beyond and angles[-1] >= 90 - tol))
