"""Fig 6-4: the three kinds of critical point; the share of minima against the dimension."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import graded
from beyond_gd.report.registry import (DIFFERS, MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure,
                                       not_measured)
from beyond_gd.report.style import Style, size

SURF = "surfaces"


@figure("fig6-04-critical-points", title="Fig 6-4. Critical points: minimum, maximum, flat; minima get rare with d",
        needs=(Need(SURF, "fig6_4_curves.csv"), Need(SURF, "fig6_4_minima_share.csv")),
        shows="The three kinds of critical point at x = 0 in one dimension (left); the share of random symmetric "
              "(GOE) Hessians with every eigenvalue positive, i.e. of critical points that are minima, against "
              "the dimension d, with 95% Wilson intervals, beside the book's 1/3^d (right, log scale).",
        book="A critical point is a minimum, a maximum or a flat (saddle) point; with k critical points about "
             "k/3 are minima in 1-D and k/3^d in d dimensions, so in high dimensions minima are rare and saddle "
             "points common.")
def critical_points(i: View, p: FigureParams, s: Style) -> Drawn:
    curves, share = i.csv(SURF, "fig6_4_curves.csv"), i.csv(SURF, "fig6_4_minima_share.csv")
    fig = plt.figure(figsize=size(s))
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 2.4], wspace=0.45)
    names = {"minimum": "minimum", "maximum": "maximum", "flat": "flat (saddle)"}
    for j, kind in enumerate(names):
        ax = fig.add_subplot(grid[0, j])
        rows = curves[curves["kind"] == kind]
        ax.plot(rows["x"], rows["loss"], color=sns.color_palette()[j], lw=2)
        at = rows.iloc[(rows["x"].abs()).argmin()]
        ax.scatter(at["x"], at["loss"], color="0.1", zorder=3, s=25)
        ax.set(title=names[kind], xlabel="x", ylabel="f(x)" if j == 0 else None)

    ax = fig.add_subplot(grid[0, 3])
    seen, none = share[share["minima"] > 0], share[share["minima"] == 0]
    ax.fill_between(seen["d"], seen["share_low"], seen["share_high"], alpha=0.25, lw=0)
    ax.plot(seen["d"], seen["share"], marker="o", label="measured (GOE Hessians)")
    if len(none):
        ax.scatter(none["d"], none["share_high"], marker="v", color=sns.color_palette()[0], facecolor="none",
                   label=f"none in {int(none['samples'].iloc[0]):,} samples: 95% upper bound")
    ax.plot(share["d"], share["book_share"], ls="--", color="0.25", label="book: 1/3^d")
    ax.plot(share["d"], share["goe_asymptotic"], ls=":", color="0.5", label="GOE large-d law 3^(-d²/4)")
    ax.set_yscale("log")
    # Down to a decade below the smallest measured value; the GOE law runs on below it.
    floor = 0.1 * min(seen["share_low"].replace(0, np.nan).min(), none["share_high"].min() if len(none) else 1)
    ax.set_ylim(bottom=floor)
    ax.set(xlabel="dimension d", ylabel="share that are minima", title="minima among critical points")
    ax.set_xticks(share["d"])
    # Below the panel: wherever the curves fall (they move with d and the sample count), it hides none.
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, frameon=False)
    last = seen.iloc[-1]
    faster = last["share"] < last["book_share"] < share["book_share"].iloc[0]
    measured = (f"1-D: {share['share'].iloc[0]:.3f} of critical points are minima (book 1/3); "
                f"d = {int(last['d'])}: {last['share']:.1e} against the book's {last['book_share']:.1e}; "
                + ("the share falls faster than 1/3^d, as the GOE law exp(-d² ln3 / 4) says." if faster else
                   "the share does not fall below 1/3^d."))
    return Drawn(fig, measured)


@claim("minima_share_k_over_3_to_the_d", kind=MEASURED, figure="Fig 6-4", source="§ Flat regions in the error surface",
       book="If the three kinds of critical point are taken as equally likely, a random critical point is a minimum "
            "with probability 1/3 in 1-D and 1/3^d in d dimensions: of k critical points about k/3^d are minima, and "
            "minima get rarer as d grows (measured here on random symmetric Hessians).",
       needs=(Need(SURF, "fig6_4_minima_share.csv"),),
       tolerance="agrees: the share of minima within a factor {tol:g} of 1/3^d at every d (where none was seen, "
                 "its 95% upper bound not below 1/3^d / {tol:g}); partly: it falls with d (each share at most the "
                 "previous d's upper bound, the last upper bound below the first lower bound) but strays beyond "
                 "the factor; differs: it does not fall (redrawn: binomial counts of minima at each d)")
def minima_share(i: View, tol: float) -> Measured:
    t = i.csv(SURF, "fig6_4_minima_share.csv").sort_values("d").reset_index(drop=True)
    if t.empty:
        return Measured("–", not_measured("the surfaces stage sampled no dimension"))

    samples, book = t["samples"].to_numpy(), t["book_share"].to_numpy()

    def decide(minima: np.ndarray, share: np.ndarray, low: np.ndarray, high: np.ndarray) -> Decision:
        ratio = share / book
        # Where no sample was a minimum only the upper bound is known: too low only if even it lies below the factor.
        within = np.where(minima > 0, (ratio >= 1 / tol) & (ratio <= tol), high >= book / tol)
        falls = bool(np.all(share[1:] <= high[:-1]) and high[-1] < low[0])
        return graded(bool(within.all()), falls, float(ratio[0]), (1 / tol, tol))

    measured = [t[c].to_numpy() for c in ("minima", "share", "share_low", "share_high")]

    def redraw(rng: np.random.Generator) -> Decision:
        # Each d's count of minima as a binomial draw at the measured share; its Wilson bounds move with it.
        minima = rng.binomial(samples, measured[1])
        share = minima / samples
        return decide(minima, share, measured[2] + share - measured[1], measured[3] + share - measured[1])

    seen = t["minima"] > 0
    ratio = t["share"] / t["book_share"]
    worst = t[seen].iloc[int(np.argmin(ratio[seen]))] if seen.any() else t.iloc[0]
    d = decide(*measured)
    return Measured(f"d = 1: {t['share'].iloc[0]:.3f} (book 0.333); measured / book from {ratio.iloc[0]:.2f} "
                    f"(d = 1) to {ratio[seen].min() if seen.any() else math.nan:.1e} (d = {int(worst['d'])}); "
                    f"{'falls' if d.verdict != DIFFERS else 'does not fall'} with d", d, redraw=redraw,
                    unit="sample", draws=int(t["samples"].iloc[0]))
