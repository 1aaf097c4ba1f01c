"""Full-batch Nesterov against heavy-ball momentum on quadratics, over the condition number."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import in_every
from beyond_gd.report.grid import OG, interval, lower_is_better
from beyond_gd.report.registry import AGREES, DIFFERS, PARTLY, Drawn, FigureParams, Measured, claim, figure
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


@claim("nesterov_helps_full_batch", figure="Nesterov",
       book="Nesterov momentum has clear benefits in batch (full-batch) gradient descent over classical momentum.",
       needs=(STEPS,),
       tolerance="at the chapter's shared lr and momentum, Nesterov needs at most (1 - {tol:.0%}) of heavy ball's "
                 "steps. agrees: at every κ; partly: at some; differs: at none")
def nesterov_helps_full_batch(i: View, tol: float) -> Measured:
    ratio = shared_ratio(i.csv(TOYS, "quadratic_steps.csv"))
    faster = [bool(r <= 1 - tol) for r in ratio]
    return Measured(f"Nesterov's steps / heavy ball's {ratio.min():.2f}-{ratio.max():.2f} over κ "
                    f"{ratio.index.min():g}-{ratio.index.max():g}; clearly fewer at {sum(faster)} of {len(faster)}",
                    in_every(faster))


@claim("nesterov_unclear_with_minibatches", figure="Nesterov",
       book="With mini-batches, the benefit of Nesterov momentum over classical momentum is unclear.",
       needs=(GRID,),
       tolerance="in the optimizer grid (each at its best lr, 95% bootstrap intervals over seeds): agrees: the two "
                 "intervals overlap, or momentum's lies wholly better; partly: Nesterov's lies wholly better but its "
                 "score is within {tol:.0%} of momentum's; differs: wholly better by more than {tol:.0%}")
def nesterov_unclear_with_minibatches(i: View, tol: float) -> Measured:
    text, clearly, gain = minibatch_comparison(i.csv(OG, "summary.csv"))
    return Measured(text, DIFFERS if clearly and gain > tol else PARTLY if clearly else AGREES)


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
