"""Fig 6-10: steepest descent zig-zags; conjugate gradient does not."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import contours, frame
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

SURF = "surfaces"
GRIDS = Need(SURF, "grids.npz")
SURF_SUMMARY = Need(SURF, "summary.json")


@figure("fig6-10-conjugate-gradient", title="Fig 6-10. Steepest descent zig-zags; conjugate gradient does not",
        needs=(GRIDS, Need(SURF, "fig6_10_paths.csv"), Need(SURF, "fig6_10_convergence.csv"), SURF_SUMMARY),
        shows="Steepest descent with exact line search and linear conjugate gradient from one start on a 2-D "
              "quadratic (left); the relative error (f − f*)/(f(x₀) − f*) against the iteration on an "
              "ill-conditioned n-dimensional quadratic, log axes (right).",
        book="Steepest descent with line search zig-zags on elongated contours; conjugate directions fix it, "
             "reaching the minimum of an n-dimensional quadratic in n steps.")
def conjugate_gradient(i: View, p: FigureParams, s: Style) -> Drawn:
    g, paths = i.npz(SURF, "grids.npz"), i.csv(SURF, "fig6_10_paths.csv")
    conv, m = i.csv(SURF, "fig6_10_convergence.csv"), i.json(SURF)
    names = {"steepest_descent": "steepest descent", "conjugate_gradient": "conjugate gradient"}
    colors = dict(zip(names, sns.color_palette(n_colors=2), strict=True))
    counts_2d = {"steepest_descent": m["sd_2d_iterations"], "conjugate_gradient": m["cg_2d_iterations"]}
    counts_nd = {"steepest_descent": m["sd_nd_iterations"], "conjugate_gradient": m["cg_nd_iterations"]}
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=1.1))
    ax = axes[0]
    contours(ax, g["fig6_10_x"], g["fig6_10_y"], g["fig6_10_loss"])
    for method, rows in paths.groupby("method", sort=False):
        ax.plot(rows["x"], rows["y"], marker="o", ms=3 if method == "steepest_descent" else 6,
                lw=1 if method == "steepest_descent" else 2.2, color=colors[method],
                label=f"{names[method]}: {counts_2d[method]} steps")
    start = paths.iloc[0]
    ax.scatter(start["x"], start["y"], s=60, color="k", zorder=4, label="start")
    ax.scatter([0], [0], marker="*", s=150, color="k", zorder=4)
    frame(ax, paths["x"], paths["y"], margin=0.5)  # the paths fill the panel: the zig-zag shows
    ax.set(xlabel="w₁", ylabel="w₂", title="2-D quadratic", aspect="equal")
    ax.legend(fontsize="small", loc="upper left")
    ax = axes[1]
    for method, rows in conv.groupby("method", sort=False):
        rows = rows[(rows["iteration"] > 0) & (rows["rel_energy_error"] > 0)]
        ax.plot(rows["iteration"], rows["rel_energy_error"], color=colors[method],
                label=f"{names[method]}: {counts_nd[method]} iterations")
    ax.axvline(m["nd_dim"], color="0.4", ls=":", label=f"n = {m['nd_dim']}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="iteration", ylabel="relative error (f − f*) / (f(x₀) − f*)",
           title=f"n = {m['nd_dim']}, κ = {m['nd_condition_number']:g}")
    ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    measured = (f"2-D: conjugate gradient reaches the minimum in {m['cg_2d_iterations']} steps (distance "
                f"{m['cg_2d_distance_after_2_steps']:.1e} after step 2), steepest descent needs "
                f"{m['sd_2d_iterations']} (bound {m['sd_2d_bound']}). n = {m['nd_dim']}: CG "
                f"{m['cg_nd_iterations']} iterations, steepest descent {m['sd_nd_iterations']} "
                f"(bound {m['sd_nd_bound']}).")
    return Drawn(fig, measured)


def _iterations(value: int | None) -> float:
    """An iteration count from the summary; None (never reached the tolerance) counts as endless."""
    return math.inf if value is None else value


@claim("cg_two_steps_in_2d", kind=CHECK, figure="Fig 6-10", source="§ A brief view of second-order methods",
       book="Conjugate gradient reaches the minimum of a 2-D quadratic in 2 steps; steepest descent zig-zags.",
       needs=(SURF_SUMMARY,),
       tolerance="holds: CG within {tol:g} of the minimum after its 2nd step and steepest descent needing more "
                 "steps; fails otherwise (exact arithmetic says 2)")
def cg_two_steps(i: View, tol: float) -> Measured:
    m = i.json(SURF)
    cg, sd = _iterations(m["cg_2d_iterations"]), _iterations(m["sd_2d_iterations"])
    return Measured(f"CG {m['cg_2d_iterations']} steps (distance {m['cg_2d_distance_after_2_steps']:.1e} after "
                    f"2), steepest descent {m['sd_2d_iterations']}",
                    holds(cg <= 2 < sd and m["cg_2d_distance_after_2_steps"] <= tol))


@claim("cg_n_steps", kind=CHECK, figure="Fig 6-10", source="Hestenes & Stiefel (1952); not in the chapter",
       book="Conjugate gradient minimises an n-dimensional quadratic in at most n steps (in exact arithmetic).",
       needs=(SURF_SUMMARY,),
       tolerance="holds: <= n × (1 + {tol:g}) iterations to the stage's tolerance (float round-off loses "
                 "conjugacy slowly); fails: more, or never")
def cg_n_steps(i: View, tol: float) -> Measured:
    m = i.json(SURF)
    its = m["cg_nd_iterations"]
    return Measured(("CG never reached the tolerance" if its is None else f"CG {its} iterations")
                    + f" for n = {m['nd_dim']} (κ = {m['nd_condition_number']:g}); steepest descent "
                    f"{m['sd_nd_iterations']}",
                    holds(_iterations(m["cg_nd_iterations"]) <= m["nd_dim"] * (1 + tol)))
