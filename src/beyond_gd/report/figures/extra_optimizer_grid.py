"""The optimizer comparison ("try these optimizers on the feed-forward network"): curves and heat map."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm

from beyond_gd.report.artifacts import Inputs, Need
from beyond_gd.report.axes import plain_log
from beyond_gd.report.claims import Measured, claim, in_every
from beyond_gd.report.figures import Drawn, FigureParams, figure
from beyond_gd.report.style import Style, size
from beyond_gd.report.text import mean_std

OG = "optimizer_grid"


@figure("extra-optimizer-grid", title="The optimizer comparison: every optimizer of the chapter at its best lr",
        needs=(Need(OG, "steps.csv"), Need(OG, "cells.csv"), Need(OG, "summary.csv"), Need(OG, "summary.json")),
        shows="Each optimizer on the MLP at its best learning rate of the grid (the lowest mean final training "
              "cost over seeds; an lr where any seed diverged is never best), the same budget for all: the "
              "trailing-mean training cost against mini-batch steps, mean over seeds with the lowest-to-highest "
              "band (left); test error at the end of the budget, one dot per seed (middle); mini-batch steps to "
              "the target cost, one dot per seed (right; missing: never reached).",
        book="Mini-batch SGD, with momentum, RMSProp, RMSProp with momentum, Adam and AdaDelta are the most "
             "popular optimizers; try them all on the feed-forward network.")
def optimizer_grid(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    steps, cells, summary, m = (i.csv(OG, "steps.csv"), i.csv(OG, "cells.csv"), i.csv(OG, "summary.csv"),
                                i.json(OG))
    usable = summary[summary["best_lr"].notna()].sort_values("rank")
    colors = dict(zip(summary.sort_values("rank")["optimizer"], sns.color_palette(n_colors=len(summary)),
                      strict=True))
    labels = {r.optimizer: f"#{r.rank} {r.optimizer} (lr {r.best_lr:g})" for r in usable.itertuples()}
    fig, axes = plt.subplots(1, 3, figsize=size(s, rows=1.3), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    at_best = cells.merge(usable[["optimizer", "best_lr"]], left_on=["optimizer", "lr"],
                          right_on=["optimizer", "best_lr"])

    ax = axes[0]
    for r in usable.itertuples():
        rows = steps[(steps["optimizer"] == r.optimizer) & (steps["lr"] == r.best_lr)]
        # The mean over seeds, and the band from the lowest seed to the highest (the 0-100 percentile interval).
        sns.lineplot(rows, x="step", y="smoothed", estimator="mean", errorbar=("pi", 100), color=colors[r.optimizer],
                     lw=1.3, label=labels[r.optimizer], legend=False, err_kws={"lw": 0}, ax=ax)
    ax.axhline(m["target_loss"], color="0.3", ls="--", lw=1)
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    ax.set(xlabel="mini-batch step", ylabel=f"training cost, mean of {m['smoothing_window']} steps (nats)",
           title=f"training cost ({m['budget_steps']:,} steps, {int(summary['seeds'].iloc[0])} seeds)")

    order = list(usable["optimizer"])
    at_best["test_error"] = 100 * (1 - at_best["test_accuracy"])
    for ax, column, xlabel in ((axes[1], "test_error", "test error (%, log scale)"),
                               (axes[2], "steps_to_target", f"steps to a cost of {m['target_loss']:g}")):
        for rank, opt in enumerate(order):
            values = at_best.loc[at_best["optimizer"] == opt, column].dropna()
            ax.scatter(values, [rank] * len(values), color=colors[opt], s=28, zorder=3)
            if len(values):
                ax.plot([values.min(), values.max()], [rank, rank], color=colors[opt], lw=1.5)
        ax.set_yticks(range(len(order)), order if ax is axes[1] else [])
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set(xlabel=xlabel)
    axes[1].set_xscale("log")  # from ~3% to chance (90%): decades
    plain_log(axes[1].xaxis)
    axes[1].set_title("test error at the end")
    axes[2].set_title("speed")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncols=5, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # the bottom strip holds the legend

    never = summary[summary["best_lr"].isna()]["optimizer"].tolist()
    best, sgd = usable.iloc[0], usable[usable["optimizer"] == "sgd"]
    measured = (f"Ranked by mean final training cost after {m['budget_steps']:,} steps: "
                + ", ".join(f"{r.optimizer} {r.final_loss_mean:.3f}" for r in usable.itertuples())
                + (f"; every lr diverged for {', '.join(never)}" if never else "")
                + f". Best: {best.optimizer} (lr {best.best_lr:g}, test accuracy {best.test_accuracy_mean:.2%})"
                + (f"; plain SGD {sgd['final_loss_mean'].iloc[0]:.3f} at lr {sgd['best_lr'].iloc[0]:g}"
                   if len(sgd) else "")
                + f". {m['diverged_cells']} of {m['cells']} cells diverged (see the heat map).")
    return Drawn(fig, measured, _grid_table(summary))


def _flag(value: Any) -> bool:
    """A boolean cell of a reindexed table: NaN (no such cell) is False."""
    return bool(value) if pd.notna(value) else False


def _grid_table(summary: pd.DataFrame) -> pd.DataFrame:
    t = summary.sort_values("rank")

    def num(column: str, spec: str) -> list[str]:
        return [mean_std(a, b, spec) if pd.notna(a) else "–" for a, b in zip(t[f"{column}_mean"], t[f"{column}_std"],
                                                                              strict=True)]

    return pd.DataFrame({
        "rank": t["rank"], "optimizer": t["optimizer"], "torch.optim": t["torch_name"],
        "lrs tried": t["lrs"],
        "best lr": [("–" if pd.isna(v) else f"{v:g}" + (" (grid edge)" if edge else ""))
                    for v, edge in zip(t["best_lr"], t["best_lr_at_edge"], strict=True)],
        "diverged at lr": t["diverged_lrs"].fillna("").replace("", "–"),
        "final cost": num("final_loss", ".4f"), "test accuracy": num("test_accuracy", ".4f"),
        "steps to target": num("steps_to_target", ",.0f"), "seconds to target": num("seconds_to_target", ".1f"),
        "steps/s": [f"{v:,.0f}" for v in t["steps_per_second_mean"]],
    })


@figure("extra-optimizer-grid-heatmap", title="The optimizer comparison: final cost over optimizer × learning rate",
        needs=(Need(OG, "cells.csv"), Need(OG, "summary.csv"), Need(OG, "summary.json")),
        shows="The final training cost (trailing mean over the budget's last steps, mean over seeds; colour on a log "
              "scale) of every cell of the grid: rows are optimizers in rank order, columns learning rates. "
              "Grey, ✕: at least one seed diverged (recorded, not crashed); boxed: the optimizer's best lr; "
              "blank: not in that optimizer's grid.",
        book="Readers are urged to try the optimizers on the feed-forward network (the book gives no learning "
             "rates beyond its examples).")
def optimizer_heatmap(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    cells, summary, m = i.csv(OG, "cells.csv"), i.csv(OG, "summary.csv"), i.json(OG)
    order = list(summary.sort_values("rank")["optimizer"])
    lrs = sorted(cells["lr"].unique())
    grouped = cells.groupby(["optimizer", "lr"])
    loss = grouped["final_loss"].mean().unstack("lr").reindex(index=order, columns=lrs)
    diverged = grouped["diverged"].any().unstack("lr").reindex(index=order, columns=lrs)
    fig, ax = plt.subplots(figsize=size(s, rows=1.6, width=0.8))
    finite = loss.where(~diverged.map(_flag))
    sns.heatmap(finite, ax=ax, cmap=s.colormap + "_r", norm=LogNorm(), annot=finite.map(
        lambda v: "" if pd.isna(v) else f"{v:.3f}"), fmt="", linewidths=0.5, linecolor="white",
        cbar_kws={"label": "final training cost (nats, log scale)"}, xticklabels=[f"{lr:g}" for lr in lrs],
        annot_kws={"fontsize": "x-small"})
    ax.grid(False)
    plain_log(ax.collections[0].colorbar.ax.yaxis)
    for r, opt in enumerate(order):
        for c, lr in enumerate(lrs):
            if _flag(diverged.loc[opt, lr]):
                ax.add_patch(plt.Rectangle((c, r), 1, 1, facecolor="0.88", edgecolor="white", lw=0.5,
                                           hatch="///"))
                ax.text(c + 0.5, r + 0.5, "✕ diverged", ha="center", va="center", color="#b2182b",
                        fontsize="x-small", weight="bold")
        best = summary.loc[summary["optimizer"] == opt, "best_lr"].iloc[0]
        if pd.notna(best):
            ax.add_patch(plt.Rectangle((lrs.index(best), r), 1, 1, fill=False, edgecolor="black", lw=2))
    ax.set(xlabel="learning rate", ylabel="optimizer (rank order)")
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    bad = cells[cells["diverged"]].groupby("optimizer")["lr"].unique()
    measured = (f"{m['diverged_cells']} of {m['cells']} cells (optimizer × lr × seed) diverged, at "
                + "; ".join(f"{opt} at lr {', '.join(f'{v:g}' for v in sorted(v))}" for opt, v in bad.items())
                + ". Best lr at the edge of its grid for: "
                + (", ".join(summary.loc[summary["best_lr_at_edge"].astype(bool), "optimizer"]) or "none") + ".")
    return Drawn(fig, measured)


# The chapter's "most popular" optimizers besides plain mini-batch SGD, by their entries in the
# `optimizers` section (conf/optimizers/).
POPULAR = ("sgd_momentum", "rmsprop", "rmsprop_momentum", "adam", "adadelta")


@claim("popular_optimizers_beat_sgd", figure="Optimizer grid",
       book="Momentum, RMSProp, RMSProp with momentum, Adam and AdaDelta (the chapter's most popular optimizers) "
            "train the network better than plain mini-batch SGD.",
       needs=(Need(OG, "summary.csv"),),
       tolerance="better: at its best lr, a final training cost at least {tol:.0%} below SGD's at its best lr "
                 "after the same budget (mean over seeds). agrees: every one of them better; partly: some; "
                 "differs: none (or SGD not in the grid)")
def popular_beat_sgd(i: Inputs, tol: float) -> Measured:
    summary = i.csv(OG, "summary.csv").set_index("optimizer")
    final = summary["final_loss_mean"]  # NaN where every lr diverged: never better
    sgd = final.get("sgd", math.nan)
    gains = {name: 1 - final.get(name, math.nan) / sgd for name in POPULAR}
    return Measured(f"SGD {sgd:.3f}; " + ", ".join(
        f"{name} " + ("not in the grid" if name not in final else "every lr diverged" if pd.isna(final[name]) else
                      f"{final[name]:.3f} ({-gain:+.0%})") for name, gain in gains.items()),
        in_every(gain >= tol for gain in gains.values()))
