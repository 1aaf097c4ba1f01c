"""Full-batch Nesterov against heavy-ball momentum on quadratics, over the condition number."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import in_every
from beyond_gd.report.grid import OG, SCORES, edge_caveat, grid_scores, interval, lower_is_better
from beyond_gd.report.registry import (AGREES, DIFFERS, MEASURED, Decision, Drawn, FigureParams, Measured,
                                       claim, figure, not_measured, resampled)
from beyond_gd.report.style import Style, size

TOYS = "optimizer_toys"
STEPS = Need(TOYS, "quadratic_steps.csv")
GRID = Need(OG, "summary.csv")
NAMES = {"gd": "gradient descent", "heavy_ball": "heavy ball (momentum)", "nesterov": "Nesterov"}


def shared_ratio(q) -> "np.ndarray":
    """Per kappa, Nesterov's steps over heavy ball's at the shared lr and momentum (NaN where either fails)."""
    shared = q[q["setting"] == "shared"].pivot(index="kappa", columns="method", values="steps").astype(float)
    return shared["nesterov"] / shared["heavy_ball"]


@figure("extra-nesterov-quadratic", title="Nesterov against heavy-ball momentum, full batch, over the condition "
        "number", needs=(STEPS, Need(TOYS, "summary.json"), GRID),
        shows="Steps until the distance to the minimum of a quadratic shrinks a millionfold, against its "
              "condition number κ, log axes: at the chapter's one lr and momentum for both (left; dashes: "
              "ln(tol) / ln(rate), the rate from the recurrence's roots) and at each method's textbook tuning "
              "(right; dashes: the closed-form rates).",
        book="Nesterov momentum has clear benefits in batch gradient descent: convergence guarantees, and a "
             "higher momentum usable at a given learning rate than classical momentum.")
def nesterov_quadratic(i: View, p: FigureParams, s: Style) -> Drawn:
    q, m = i.csv(TOYS, "quadratic_steps.csv"), i.json(TOYS)
    colors = dict(zip(NAMES, sns.color_palette(n_colors=3), strict=True))
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=1.0), sharey=True)
    for ax, setting, title in ((axes[0], "shared", f"lr = {m['shared_lr_times_l']:g}/L, m = "
                                f"{m['shared_momentum']:g} for both"), (axes[1], "tuned", "each at its textbook "
                                                                                           "tuning")):
        for method, rows in q[q["setting"] == setting].groupby("method", sort=False):
            ax.plot(rows["kappa"], rows["steps"].astype(float), marker="o", color=colors[method], label=NAMES[method])
            ax.plot(rows["kappa"], rows["predicted_steps"], ls="--", color=colors[method], lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlabel="condition number κ", title=title)
    axes[0].set_ylabel(f"steps to ‖x‖ ≤ {m['tolerance']:g} ‖x₀‖")
    axes[1].legend(fontsize="small")
    fig.tight_layout()
    ratio = shared_ratio(q)
    best = q[q["setting"] == "best_momentum"].pivot(index="kappa", columns="method", values="momentum")
    measured = ("At the shared lr and momentum, Nesterov's steps over heavy ball's: "
                + ", ".join(f"κ {k:g}: {r:.2f}" for k, r in ratio.items())
                + ". Best momentum at that lr, heavy ball / Nesterov: "
                + ", ".join(f"κ {k:g}: {b['heavy_ball']:.3f} / {b['nesterov']:.3f}" for k, b in best.iterrows())
                + ". At the textbook tunings heavy ball is the faster of the two on a quadratic (Polyak's rate "
                  "(√κ − 1)/(√κ + 1) against Nesterov's 1 − 1/√κ); Nesterov's guarantee is for every smooth "
                  "convex function, where heavy ball has none. With mini-batches on the MLP (the optimizer grid, "
                  "each at its best lr, 95% intervals over seeds): " + minibatch_comparison(i.csv(OG, "summary.csv"))[0]
                + ".")
    return Drawn(fig, measured)


@claim("nesterov_helps_full_batch", kind=MEASURED, figure="Nesterov", source="§ Momentum-based optimization",
       book="In batch (full-batch) gradient descent Nesterov momentum has clear benefits over classical momentum: "
            "among them, a higher momentum can be used at a given learning rate.",
       needs=(STEPS,),
       tolerance="at the chapter's shared lr, each method's best momentum (the fewest steps on one scan of "
                 "momenta): Nesterov's higher than heavy ball's. agrees: at every κ; partly: at some; differs: at "
                 "none")
def nesterov_helps_full_batch(i: View, tol: float) -> Measured:
    q = i.csv(TOYS, "quadratic_steps.csv")
    best = q[q["setting"] == "best_momentum"].pivot(index="kappa", columns="method", values="momentum")
    if best.empty:
        return Measured("–", not_measured("optimizer_toys scanned no momentum at the shared lr"))
    gap = best["nesterov"] - best["heavy_ball"]
    return Measured(f"best momentum at the shared lr, Nesterov − heavy ball: {gap.min():+.4f} to {gap.max():+.4f} "
                    f"over κ {gap.index.min():g}-{gap.index.max():g}; higher at {int((gap > 0).sum())} of "
                    f"{len(gap)}", in_every(gap > 0), fixed="full-batch recurrences on fixed quadratics: "
                    "nothing random")


@claim("nesterov_unclear_with_minibatches", kind=MEASURED, figure="Nesterov", source="§ Momentum-based optimization",
       book="Whether Nesterov momentum's benefit carries over to the more stochastic mini-batch gradient descent "
            "is unclear.",
       needs=SCORES, reaches=(AGREES, DIFFERS),
       tolerance="Nesterov's gain on momentum's tuned score in the optimizer grid (each at its best lr, shared "
                 "seeds). agrees: at most {tol:.0%}, no clear benefit; differs: more, the clear benefit the chapter "
                 "finds in full batch")
def nesterov_unclear_with_minibatches(i: View, tol: float) -> Measured:
    scores, _ = grid_scores(i)
    if gone := scores.lacks("sgd_nesterov", "sgd_momentum"):
        return gone

    def gain(u: pd.DataFrame) -> float:
        return scores.gain(u, "sgd_nesterov", "sgd_momentum")

    def decide(u: pd.DataFrame) -> Decision:
        g = gain(u)
        if math.isnan(g):
            return not_measured("every lr of momentum diverged")
        return Decision(AGREES if g <= tol else DIFFERS, g, (tol,))

    return resampled(f"Nesterov's gain on momentum's tuned score: {gain(scores.units):+.1%}", scores.units, decide,
                     caveat=edge_caveat(scores, ["sgd_nesterov", "sgd_momentum"]))


def minibatch_comparison(grid: pd.DataFrame) -> tuple[str, bool, float]:
    """Nesterov against momentum in the optimizer grid, each at its best lr: (the text; whether Nesterov's
    score interval lies wholly on the better side of momentum's; its gain relative to momentum's score)."""
    g = grid.set_index("optimizer")
    n, h = g.loc["sgd_nesterov"], g.loc["sgd_momentum"]
    lower = lower_is_better(n["ranked_by"].split(" of ")[0])
    clearly = bool(n["score_high"] < h["score_low"] if lower else n["score_low"] > h["score_high"])
    gain = float((h["score_mean"] - n["score_mean"]) / abs(h["score_mean"]) * (1 if lower else -1))
    text = (f"{n['ranked_by']}: Nesterov {n['score_mean']:.4f} {interval(n['score_low'], n['score_high'], '.4f')} at "
            f"lr {n['best_lr']:g}, momentum {h['score_mean']:.4f} {interval(h['score_low'], h['score_high'], '.4f')} "
            f"at lr {h['best_lr']:g} ({gain:+.1%} for Nesterov)")
    return text, clearly, gain
