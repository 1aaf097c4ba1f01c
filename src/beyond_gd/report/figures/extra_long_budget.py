"""The optimizer comparison's longer budget: does the one-epoch ranking hold when every optimizer trains
longer at its best lr? (Drawn only where the longer budget ran: the thorough profile.)"""

from __future__ import annotations

import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.grid import OG, band, cell_scores, colors, flag, linestyle, plural, ranked
from beyond_gd.report.registry import Drawn, FigureParams, figure
from beyond_gd.report.style import Style, size


@figure("extra-long-budget", title="The optimizer comparison: the longer budget at each best lr",
        needs=(Need(OG, "long.csv"), Need(OG, "summary.csv"), Need(OG, "summary.json")),
        shows="Every optimizer again at its best lr of the one-epoch search, for the longer budget (its epochs and "
              "seeds: see Measured), so that early speed and final quality can disagree. Left: "
              "the loss of the whole training set at the end of each epoch (ASGD: of its averaged weights); "
              "middle: test accuracy; both the mean over seeds with the lowest-to-highest band. Right: each "
              "optimizer's rank after one epoch (the grid's ranking) beside its rank at the end of the longer "
              "budget (by the mean training-set loss; a diverged run ranks last).",
        book="While it would be nice to know when to use which algorithm, there is little consensus among "
             "professional practitioners.",
        notes="Drawn only where the longer budget ran (`optimizer_grid.long_budget.enabled`: the thorough "
              "profile); elsewhere the page lists it, not drawn, with the reason. Each optimizer's loss and test "
              "accuracy per epoch at its best lr, and its rank after one epoch beside its rank after the longer "
              "budget.")
def long_budget(i: View, p: FigureParams, s: Style) -> Drawn:
    long, m = i.csv(OG, "long.csv"), i.json(OG)
    lb = m["long_budget"]
    if not lb["ran"] or long.empty:
        return Drawn(None, f"The longer budget ({lb['epochs']} epochs at each optimizer's best lr, {lb['seeds']} "
                           "seeds) did not run in this profile: long_budget.enabled is false, to keep the default "
                           "profile's grid within minutes on 2 cores; the thorough profile runs it. The one-epoch "
                           "ranking stands alone.")
    summary = ranked(i.csv(OG, "summary.csv"))
    summary = summary[summary["long_rank"].notna()]
    color = colors(summary["optimizer"])
    long = long.assign(score=cell_scores(long, "train_loss"),
                       accuracy=cell_scores(long, "test_accuracy"))
    fig, axes = plt.subplots(1, 3, figsize=size(s, rows=1.3), gridspec_kw={"width_ratios": [1.2, 1.2, 0.8]})
    for ax, column, label in ((axes[0], "score", "training-set loss (nats, log scale)"),
                              (axes[1], "accuracy", "test accuracy")):
        for r in summary.itertuples():
            band(ax, long[long["optimizer"] == r.optimizer], "epoch", column, color[r.optimizer], lw=1.3, marker="o",
                 ms=3, ls=linestyle(r.optimizer), label=r.optimizer)
        ax.set(xlabel="epoch", ylabel=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_title(f"{lb['steps']:,} steps at the best lr, {plural(lb['seeds'], 'seed')}")
    axes[1].set_title("test accuracy per epoch")
    axes[0].set_yscale("log")
    plain_log(axes[0].yaxis)
    axes[1].legend(fontsize="x-small", loc="lower right")

    ax = axes[2]
    for r in summary.itertuples():
        ax.plot([0, 1], [r.rank, r.long_rank], color=color[r.optimizer], lw=2, marker="o", ls=linestyle(r.optimizer))
        ax.text(-0.08, r.rank, f"#{r.rank} {r.optimizer}", ha="right", va="center", fontsize="x-small")
        ax.text(1.08, r.long_rank, f"#{r.long_rank:.0f}" + (" (diverged)" if flag(r.long_diverged) else ""),
                ha="left", va="center", fontsize="x-small")
    ax.set_xlim(-1.1, 1.45)
    ax.set_ylim(len(summary) + 0.5, 0.5)
    ax.set_xticks([0, 1], [f"{m['budget_steps']:,} steps", f"{lb['steps']:,} steps"])
    ax.set_yticks([])
    ax.set(title="rank (1: best), short against long")
    ax.grid(visible=False)
    fig.tight_layout()
    moved = summary[summary["rank"] != summary["long_rank"]]
    best = summary.loc[summary["long_rank"] == 1, "optimizer"].tolist()
    measured = (f"The longer budget ran: {plural(lb['epochs'], 'epoch')} ({lb['steps']:,} steps) at each optimizer's "
                f"best lr, {plural(lb['seeds'], 'seed')}, {lb['cells']} cells. Best at the end: {', '.join(best)}; "
                "training-set loss "
                + ", ".join(f"{r.optimizer} {r.long_train_loss_mean:.4f}" for r in
                            summary.sort_values("long_rank").itertuples())
                + ". " + ("The ranking after one epoch holds." if moved.empty else
                          "Ranks that moved (one epoch → long): "
                          + ", ".join(f"{r.optimizer} {r.rank} → {r.long_rank:.0f}" for r in moved.itertuples())
                          + "."))
    return Drawn(fig, measured)
