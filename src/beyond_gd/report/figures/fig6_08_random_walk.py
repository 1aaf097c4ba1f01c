"""Fig 6-8: momentum smooths a random walk; the smoothed std against EWMA theory."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd import measures
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

RW = "random_walk"


@figure("fig6-08-random-walk", title="Fig 6-8. Momentum smooths a random walk",
        needs=(Need(RW, "walks.csv"), Need(RW, "summary.json")),
        shows="A walk of random integer steps (top: no momentum) and, below, fresh walks smoothed by the "
              "exponentially weighted average new = m·prev + (1 − m)·step for each momentum m, on one shared "
              "y-range of 1.5× the largest raw step; grey dots: the raw steps being smoothed.",
        book="Momentum sharply reduces the volatility of the updates; the larger it is, the less sensitive "
             "the walk is to new steps (early errors persist).")
def random_walk(i: View, p: FigureParams, s: Style) -> Drawn:
    walks, m = i.csv(RW, "walks.csv"), i.json(RW)
    momenta = list(dict.fromkeys(walks["momentum"]))  # the stage's order: no momentum first (on top)
    reach = p.random_walk_y_range_factor * walks["raw"].abs().max()
    fig, axes = plt.subplots(len(momenta), 1, sharex=True, sharey=True,
                             figsize=size(s, rows=0.45 * len(momenta), width=0.8))
    color = sns.color_palette()[0]
    for ax, mom in zip(np.atleast_1d(axes), momenta, strict=True):
        rows = walks[walks["momentum"] == mom]
        if mom > 0:
            ax.scatter(rows["step"], rows["raw"], s=4, color="0.6", label="raw step", zorder=1)
        ax.plot(rows["step"], rows["smoothed"], color=color, lw=1.4, label="smoothed (momentum)", zorder=2)
        ax.axhline(0, color="0.3", lw=0.5)
        ax.set_ylim(-reach, reach)
        ax.text(0.01, 0.93, "no momentum" if mom == 0 else f"momentum {mom:g}", transform=ax.transAxes,
                va="top", weight="bold", fontsize="small")
    np.atleast_1d(axes)[-1].set_xlabel("step")
    fig.supylabel("update (step units)")
    handles = {h.get_label(): h for ax in np.atleast_1d(axes) for h in ax.get_children() if h.get_label() in
               ("raw step", "smoothed (momentum)")}
    fig.legend(handles.values(), handles.keys(), loc="upper right", ncols=2, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    stds = {mom: rows["smoothed"].std() for mom, rows in walks.groupby("momentum")}
    measured = (f"Raw steps from {walks['raw'].min()} to {walks['raw'].max()} (theory mean "
                f"{m['raw_mean_theory']:g}, std {m['raw_std_theory']:.2f}); std of the drawn walks: "
                + ", ".join(f"m = {k:g}: {v:.2f}" for k, v in stds.items()) + ".")
    return Drawn(fig, measured)


@figure("fig6-08-std-vs-momentum", title="Fig 6-8 (measured). The smoothed walk's std against EWMA theory",
        needs=(Need(RW, "std.csv"), Need(RW, "summary.json")),
        shows="The standard deviation of the smoothed steps (many walks, after a burn-in) against 1 − m on "
              "a log axis, beside the stationary EWMA theory sqrt((1 − m)/(1 + m)) × the raw std (left), and "
              "their ratio (right).",
        book="Momentum sharply reduces the volatility of the updates (the book gives no number; the EWMA of "
             "i.i.d. steps predicts how much).")
def random_walk_std(i: View, p: FigureParams, s: Style) -> Drawn:
    std, m = i.csv(RW, "std.csv"), i.json(RW)
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=0.95))
    ax = axes[0]
    grid = np.linspace(std["momentum"].min(), std["momentum"].max(), 200)
    ax.plot(1 - grid, measures.ewma_stationary_std(grid, m["raw_std_theory"]), color="0.3", ls="--",
            label="theory √((1−m)/(1+m)) σ")
    ax.plot(1 - std["momentum"], std["measured_std"], marker="o", ls="none", label="measured")
    ax.axhline(m["raw_std_theory"], color="0.6", ls=":", label="raw step std σ")
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    _momentum_axis(ax, std["momentum"])
    ax.set(ylabel="std of the smoothed steps (step units)", title="volatility")
    ax.legend(fontsize="small", loc="lower left")
    ax = axes[1]
    ax.plot(1 - std["momentum"], std["ratio"], marker="o")
    ax.axhline(1, color="0.3", ls="--")
    _momentum_axis(ax, std["momentum"])
    spread = max(0.01, 1.2 * (std["ratio"] - 1).abs().max())
    ax.set(ylabel="measured / theory", ylim=(1 - spread, 1 + spread), title="agreement with theory")
    fig.tight_layout()
    top = std.iloc[std["momentum"].argmax()]
    measured = (f"std falls from {std['measured_std'].iloc[0]:.2f} (m = {std['momentum'].iloc[0]:g}) to "
                f"{top['measured_std']:.2f} (m = {top['momentum']:g}); measured/theory within "
                f"{(std['ratio'] - 1).abs().max():.2%} at every momentum.")
    return Drawn(fig, measured)


def _momentum_axis(ax: plt.Axes, momenta: pd.Series) -> None:
    """x on a log scale of 1 - m, so 0.9 and 0.99 stand apart, ticked with the momenta themselves."""
    ax.set_xscale("log")
    ax.invert_xaxis()  # momentum grows to the right
    labels, last = [], None
    for m in sorted(momenta):  # a label closer than 0.1 decade to the previous one would overprint it
        keep = last is None or np.log10((1 - last) / (1 - m)) >= 0.1
        labels.append(f"{m:g}" if keep else "")
        last = m if keep else last
    ax.set_xticks(1 - np.array(sorted(momenta)), labels)
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("momentum m (axis: log of 1 − m)")


@claim("momentum_reduces_volatility", kind=CHECK, figure="Fig 6-8", source="§ Momentum-based optimization",
       book="On the random walk, the exponentially weighted average sharply reduces the volatility of the "
            "steps, the more the larger the momentum. (The average's own arithmetic on i.i.d. steps: a check.)",
       needs=(Need(RW, "std.csv"),),
       tolerance="holds: the std of the smoothed steps falls at every larger momentum, to <= {tol:g} × the "
                 "no-momentum std at the largest; fails otherwise")
def momentum_volatility(i: View, tol: float) -> Measured:
    t = i.csv(RW, "std.csv").sort_values("momentum")
    falls = bool(np.all(np.diff(t["measured_std"]) < 0))
    fraction = t["measured_std"].iloc[-1] / t["measured_std"].iloc[0]
    top = t["momentum"].iloc[-1]
    return Measured(f"std {t['measured_std'].iloc[0]:.2f} at m = {t['momentum'].iloc[0]:g} → "
                    f"{t['measured_std'].iloc[-1]:.2f} at m = {top:g} ({fraction:.1%}; EWMA theory "
                    f"{float(measures.ewma_stationary_std(top, 1.0)):.1%}); "
                    f"{'falls' if falls else 'does not fall'} at every larger momentum",
                    holds(falls and fraction <= tol))


@claim("random_walk_std_ewma_theory", kind=CHECK, figure="Fig 6-8", source="control (theory of the EWMA)",
       book="(Theory for the book's smoothing) the smoothed steps' std is sqrt((1 - m)/(1 + m)) × the raw std.",
       needs=(Need(RW, "std.csv"),),
       tolerance="holds: |measured / theory - 1| <= {tol:.0%} at every momentum > 0; fails otherwise")
def random_walk_theory(i: View, tol: float) -> Measured:
    t = i.csv(RW, "std.csv")
    t = t[t["momentum"] > 0]  # m = 0 smooths nothing: its ratio is 1 by construction
    worst = t.iloc[int((t["ratio"] - 1).abs().argmax())]
    return Measured(f"largest |ratio - 1| {abs(worst['ratio'] - 1):.2%} (m = {worst['momentum']:g}); within at "
                    f"{int(((t['ratio'] - 1).abs() <= tol).sum())} of {len(t)} momenta > 0",
                    holds(bool(((t["ratio"] - 1).abs() <= tol).all())))
