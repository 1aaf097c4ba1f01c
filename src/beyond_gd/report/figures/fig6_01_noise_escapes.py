"""Fig 6-1: mini-batch noise escapes shallow minima, not deep ones."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.measures import wilson_interval
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

SURF = "surfaces"
ESCAPES = Need(SURF, "fig6_1_escapes.csv")


@figure("fig6-01-noise-escapes", title="Fig 6-1. Mini-batch noise escapes shallow minima, not deep ones",
        needs=(Need(SURF, "fig6_1_curve.csv"), Need(SURF, "fig6_1_critical_points.csv"),
               Need(SURF, "fig6_1_trajectories.csv"), ESCAPES, Need(SURF, "summary.json")),
        shows="A 1-D loss with a shallow local minimum, a deep local minimum and the global one (left); "
              "noisy gradient descent started at each minimum (middle: position against step, some runs); "
              "the share of runs that left their starting basin against the noise level, with 95% bands (right).",
        book="The noise of mini-batch gradients can push us out of shallow local minima, but not out of deep ones.")
def noise_escapes(i: View, p: FigureParams, s: Style) -> Drawn:
    curve, crit = i.csv(SURF, "fig6_1_curve.csv"), i.csv(SURF, "fig6_1_critical_points.csv")
    traj, esc, m = i.csv(SURF, "fig6_1_trajectories.csv"), i.csv(*ESCAPES), i.json(SURF)
    minima = crit[crit["kind"] == "minimum"]
    basins = list(minima["basin"])
    colors = dict(zip(basins, sns.color_palette(n_colors=len(basins)), strict=True))
    fig, axes = plt.subplots(1, 3, figsize=size(s), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})

    ax = axes[0]
    ax.plot(curve["x"], curve["loss"], color="0.2", lw=1.5)
    for _, row in minima.iterrows():
        ax.scatter(row["x"], row["loss"], color=colors[row["basin"]], s=50, zorder=3,
                   label=f"{row['basin']} minimum (barrier {row['barrier']:.2f})")
    maxima = crit[crit["kind"] == "maximum"]
    ax.scatter(maxima["x"], maxima["loss"], marker="^", color="0.4", s=35, zorder=3, label="maximum")
    ax.set(xlabel="parameter x", ylabel="loss f(x)", title="the loss")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncols=4, fontsize="small", frameon=False)

    ax = axes[1]
    shown = traj[traj["run"] < p.trajectories_per_basin]
    for (basin, _run), rows in shown.groupby(["start_basin", "run"], sort=False):
        ax.plot(rows["step"], rows["x"], color=colors[basin], lw=0.7, alpha=0.45)
    for _, row in minima.iterrows():
        ax.axhline(row["x"], color=colors[row["basin"]], ls="--", lw=1)
    ax.set(xlabel="step", ylabel="parameter x", title=f"noisy descent ({shown['run'].nunique()} runs per start)")

    ax = axes[2]
    left = escape_counts(esc)
    for basin in basins:
        rows = left[left["start_basin"] == basin].sort_values("noise_scale")
        lo, hi = wilson_interval(rows["left"].to_numpy(), rows["runs"].to_numpy(), p.band_z)
        ax.plot(rows["noise_scale"], rows["share"], marker="o", color=colors[basin], label=f"from the {basin} minimum")
        ax.fill_between(rows["noise_scale"], lo, hi, color=colors[basin], alpha=0.2, lw=0)
    ax.set(xlabel="gradient-noise std", ylabel="share of runs that left the basin", ylim=(-0.03, 1.03),
           title="escapes")
    ax.legend(fontsize="small")
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # the bottom strip holds the legend of the minima
    measured = (f"At the stage's noise level {m['escape_share_shallow']:.0%} of the runs left the shallow minimum "
                f"(barrier {m['barrier_shallow']:.2f}), {m['escape_share_deep']:.0%} the deep one "
                f"(barrier {m['barrier_deep']:.2f}) and {m['escape_share_global']:.0%} the global one.")
    return Drawn(fig, measured)


def escape_counts(esc: pd.DataFrame) -> pd.DataFrame:
    """Per start basin and noise level: runs that ended in another basin (`left`), all runs, their share."""
    counts = esc.assign(left=np.where(esc["end_basin"] != esc["start_basin"], esc["runs"], 0)).groupby(
        ["start_basin", "noise_scale"], sort=False).agg(left=("left", "sum"), runs=("runs", "sum")).reset_index()
    return counts.assign(share=counts["left"] / counts["runs"])


@claim("noise_escapes_shallow_minima", kind=CHECK, figure="Fig 6-1",
       source="§ Local minima in the error surfaces of deep networks (Fig 6-1, an illustration)",
       book="Mini-batch noise may help us escape shallow local minima, but usually fails for deep ones. (A "
            "constructed toy: its noise lies between the two barriers, so the check is that the simulation "
            "shows what the construction implies.)",
       needs=(Need(SURF, "summary.json"),),
       tolerance="holds: the share of runs that left the shallow minimum exceeds the deep one's by >= {tol:g}; "
                 "fails otherwise")
def escapes_shallow(i: View, tol: float) -> Measured:
    m = i.json(SURF)
    gap = m["escape_share_shallow"] - m["escape_share_deep"]
    return Measured(f"left the shallow minimum {m['escape_share_shallow']:.1%}, the deep one "
                    f"{m['escape_share_deep']:.1%} (gap {gap:.2f})", holds(gap >= tol))
