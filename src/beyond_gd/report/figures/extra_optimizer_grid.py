"""The optimizer comparison ("try these optimizers on the feed-forward network"): the ranking, its
intervals and its table, and the two claims of the chapter's section on choosing an optimizer."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Patch

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.claims import beyond_tie, graded, in_every
from beyond_gd.report.grid import (MEASURE_NAMES, OG, SCORES, added, band, cell_scores, colors, edge_caveat, flag,
                                   grid_scores, interval, linestyle, lrs_searched, number, plural, rank_interval,
                                   ranked, search)
from beyond_gd.report.registry import (AGREES, DIFFERS, MEASURED, PARTLY, Decision, Drawn, FigureParams, Measured,
                                       claim, figure, not_measured, resampled)
from beyond_gd.report.style import Style, size
from beyond_gd.report.text import mean_std

TIED = "#fbeaa5"  # the rows tied with the best


@figure("extra-optimizer-grid", title="The optimizer comparison: the ranking at each optimizer's best lr",
        needs=(Need(OG, "steps.csv"), Need(OG, "cells.csv"), Need(OG, "summary.csv"), Need(OG, "summary.json")),
        shows="Every mini-batch optimizer of the chapter on the MLP, each given the same search (the same number of "
              "learning rates, half a decade apart around its own default), the same seeds and the same budget, and "
              "scored at its best lr by the loss of the whole training set at the end of the budget (ASGD by its "
              "averaged weights). Left: the trailing-mean mini-batch cost at the best lr, mean over seeds with the "
              "lowest-to-highest band. Middle: the score of each seed at the best lr (dots), the mean (bar) and its "
              "95% Student's t interval over the seeds (thick line); grey band: SGD's interval. Right: the rank's "
              "95% interval over paired resamples of the shared seeds that pick every best lr again, the rank "
              "itself (dot) and how often a resample ranks it first. Shaded rows: tied with the best (their rank "
              "interval reaches 1); 'edge': the best lr is at an end of its search.",
        book="There is little consensus on which optimizer to use; the most popular are mini-batch gradient "
             "descent, with momentum, RMSProp, RMSProp with momentum, Adam and AdaDelta: try them on the "
             "feed-forward network.",
        notes="Every mini-batch optimizer of the chapter gets the same search (`optimizer_grid.lrs`: five lrs "
              "half a decade apart around its default), the same seeds (`optimizer_grid.seeds`) and budget, and "
              "is scored at its best lr by `optimizer_grid.rank_by` (the whole training set's loss; ASGD by its "
              "averaged weights), with a 95% Student's t interval of the score over the seeds and a 95% interval "
              "of the rank over paired seed resamples (`optimizer_grid.bootstrap`); an optimizer best at an edge "
              "of its search searches on beyond it (`optimizer_grid.extension`); optimizers whose rank interval "
              "reaches 1 are tied with the best. The table gives the search (the lrs the rule added marked), the "
              "best lr (flagged where still at an edge), the intervals, and the longer budget's loss, accuracy "
              "and rank where it ran. L-BFGS is not in this grid (`optimizer_grid.excluded`, with the reason the "
              "page gives).")
def optimizer_grid(i: View, p: FigureParams, s: Style) -> Drawn:
    steps, cells, m = i.csv(OG, "steps.csv"), i.csv(OG, "cells.csv"), i.json(OG)
    summary = ranked(i.csv(OG, "summary.csv"))
    usable = summary[summary["best_lr"].notna()]
    color = colors(summary["optimizer"])
    cells = cells.assign(score=cell_scores(cells, m["rank_by"]))
    fig, axes = plt.subplots(1, 3, figsize=size(s, rows=1.5), gridspec_kw={"width_ratios": [1.45, 1.2, 0.8]})

    ax = axes[0]
    for r in usable.itertuples():
        rows = steps[(steps["optimizer"] == r.optimizer) & (steps["lr"] == r.best_lr)]
        band(ax, rows, "step", "smoothed", color[r.optimizer], lw=1.3, ls=linestyle(r.optimizer),
             label=f"#{r.rank} {r.optimizer}")
    ax.axhline(m["target_loss"], color="0.3", ls="--", lw=1)
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    ax.set(xlabel="mini-batch step", ylabel=f"mini-batch cost, mean of {m['smoothing_window']} steps (nats)",
           title=f"training at the best lr ({m['budget_steps']:,} steps)")
    ax.legend(fontsize="x-small", ncols=1, loc="upper right")

    labels = [f"{r.optimizer}\nlr {r.best_lr:g}" + (" (edge)" if r.best_lr_at_edge else "") if pd.notna(r.best_lr)
              else f"{r.optimizer}\nevery lr diverged" for r in summary.itertuples()]
    for ax in axes[1:]:
        for k, r in enumerate(summary.itertuples()):
            if r.tied_with_best:
                ax.axhspan(k - 0.5, k + 0.5, color=TIED, lw=0, zorder=0)
        ax.set_ylim(len(summary) - 0.5, -0.5)
        ax.set_yticks(range(len(summary)), labels if ax is axes[1] else [], fontsize="x-small")
        ax.grid(axis="y", visible=False)
    ax = axes[1]
    sgd = summary[summary["optimizer"] == "sgd"]
    if len(sgd) and pd.notna(sgd["score_low"].iloc[0]):
        ax.axvspan(sgd["score_low"].iloc[0], sgd["score_high"].iloc[0], color="0.85", lw=0, zorder=0.5)
    for r in usable.itertuples():
        k = r.Index  # its row: `usable` keeps the ranked summary's index
        seeds = cells.loc[(cells["optimizer"] == r.optimizer) & (cells["lr"] == r.best_lr), "score"]
        ax.plot([r.score_low, r.score_high], [k, k], color=color[r.optimizer], lw=4, alpha=0.55,
                solid_capstyle="butt")
        ax.scatter(seeds, [k] * len(seeds), color=color[r.optimizer], s=14, zorder=3, edgecolor="white", lw=0.4)
        ax.plot([r.score_mean] * 2, [k - 0.3, k + 0.3], color="black", lw=1.5, zorder=4)
    # A log axis only where the scores span more than a factor of 4 (an optimizer that barely learned).
    log = len(usable) and usable["score_high"].max() / usable["score_low"].min() > 4
    if log:
        ax.set_xscale("log")
        plain_log(ax.xaxis)
    ax.set(xlabel=f"{MEASURE_NAMES.get(m['rank_by'], m['rank_by'])} at the end" + (" (log scale)" if log else ""),
           title=f"score per seed ({plural(m['seeds'], 'seed')}), {m['confidence']:.0%} interval")

    ax = axes[2]
    for k, r in enumerate(summary.itertuples()):
        ax.plot([r.rank_low, r.rank_high], [k, k], color=color[r.optimizer], lw=4, alpha=0.55,
                solid_capstyle="round")
        ax.scatter([r.rank], [k], color=color[r.optimizer], s=30, zorder=3, edgecolor="black", lw=0.6)
        if r.p_best >= 0.005:  # as the label rounds it
            ax.text(r.rank_high + 0.4, k, f"p(best) {r.p_best:.2f}", va="center", fontsize="xx-small")
    ax.set_xlim(0.5, len(summary) + 2.5)
    ax.set_xticks(range(1, len(summary) + 1))
    ax.set(xlabel="rank (1: best)", title=f"rank, {m['confidence']:.0%} interval")
    fig.legend(handles=[Patch(color=TIED, label="tied with the best (rank interval reaches 1)"),
                        Patch(color="0.85", label="SGD's score interval")], loc="lower center", ncols=2,
               fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return Drawn(fig, _measured(summary, m), _grid_table(summary))


def _measured(summary: pd.DataFrame, m: dict) -> str:
    usable = summary[summary["best_lr"].notna()]
    never = summary.loc[summary["best_lr"].isna(), "optimizer"].tolist()
    edge = usable[usable["best_lr_at_edge"].astype(bool)]
    grown = summary[[bool(added(r)) for r in summary.itertuples()]]
    tied = summary.loc[summary["tied_with_best"].astype(bool), "optimizer"].tolist()
    long = m["long_budget"]
    return (f"Ranked by {m['rank_by']} ({MEASURE_NAMES.get(m['rank_by'], m['rank_by'])} after "
            f"{m['budget_steps']:,} steps; each optimizer at the best of its "
            f"{lrs_searched(m['lrs_per_optimizer'], detail=True)}, "
            f"{plural(m['seeds'], 'seed')}), with {m['confidence']:.0%} intervals (the score's Student's t over "
            "the seeds, the rank's over paired bootstrap resamples of them): "
            + "; ".join(f"#{r.rank} {r.optimizer} {r.score_mean:.3f} {interval(r.score_low, r.score_high)}, rank "
                        f"{rank_interval(r.rank_low, r.rank_high)}" for r in usable.itertuples())
            + (f"; every lr diverged for {', '.join(never)}" if never else "")
            + f". Tied with the best: {', '.join(tied) if len(tied) > 1 else f'none ({tied[0]} is best alone)'}. "
            + ("The interior rule searched on beyond an edge for "
               + "; ".join(f"{r.optimizer} (added {' '.join(f'{v:g}' for v in added(r))})" for r in grown.itertuples())
               + ". " if len(grown) else "The interior rule added no lr (every best lr interior at once). ")
            + ("Best lr at an edge of its search after the rule's cap (a better one may lie beyond): "
               + ", ".join(f"{r.optimizer} ({r.best_lr:g}, its "
                           f"{'largest' if r.best_lr == max(search(r.lrs)) else 'smallest'})"
                           for r in edge.itertuples())
               + ". " if len(edge) else "No best lr at an edge of its search. ")
            + "".join(f"Not in the grid: {name}. Why: {why} " for name, why in m["excluded"].items())
            + (f"The longer budget ({long['epochs']} epochs at each best lr, {plural(long['seeds'], 'seed')}) ran: "
               "the table's long columns."
               if long["ran"] else f"The longer budget ({long['epochs']} epochs) did not run in this profile "
                                   "(long_budget.enabled is false; the thorough profile runs it)."))


def _grid_table(summary: pd.DataFrame) -> pd.DataFrame:
    t = summary

    def stat(column: str, spec: str) -> list[str]:
        return [mean_std(a, b, spec) if pd.notna(a) else "–" for a, b in zip(t[f"{column}_mean"], t[f"{column}_std"],
                                                                              strict=True)]

    # ASGD's test accuracy is that of its averaged weights, which it is ranked by.
    averaged = t["average_test_accuracy_mean"].notna()
    table = pd.DataFrame({
        "rank": t["rank"], "optimizer": t["optimizer"], "torch.optim": t["torch_name"],
        # A search of one lr reads back from summary.csv as a number, not a string: the numbers, written again.
        "lrs tried": [" ".join(f"{v:g}" for v in search(r.lrs))
                      + (f" (added: {' '.join(f'{v:g}' for v in added(r))})" if added(r) else "")
                      for r in t.itertuples()],
        "best lr": [("–" if pd.isna(v) else f"{v:g}" + (" (edge)" if edge else ""))
                    for v, edge in zip(t["best_lr"], t["best_lr_at_edge"], strict=True)],
        "ranked by": t["ranked_by"],
        "score [95%]": [f"{number(v)} {interval(lo, hi)}" for v, lo, hi in
                        zip(t["score_mean"], t["score_low"], t["score_high"], strict=True)],
        "rank [95%]": [rank_interval(lo, hi) for lo, hi in zip(t["rank_low"], t["rank_high"], strict=True)],
        "p(best)": [f"{v:.2f}" for v in t["p_best"]],
        "tied": ["yes" if v else "" for v in t["tied_with_best"]],
        "test accuracy": [a + (" (average)" if avg else "") for a, avg in zip(
            [mean_std(x, y, ".4f") if pd.notna(x) else "–" for x, y in zip(
                t["average_test_accuracy_mean"].where(averaged, t["test_accuracy_mean"]),
                t["average_test_accuracy_std"].where(averaged, t["test_accuracy_std"]), strict=True)],
            averaged, strict=True)],
        "steps to target": [v + (f" ({n} of {k} seeds)" if 0 < n < k else "") for v, n, k in zip(
            stat("steps_to_target", ",.0f"), t["reached"], t["seeds"], strict=True)],
    })
    if t["long_rank"].notna().any():
        table["long: train loss"] = stat("long_train_loss", ".4f")
        table["long: test accuracy"] = stat("long_test_accuracy", ".4f")
        table["long: rank"] = ["–" if pd.isna(v) else f"{v:.0f}" + (" (diverged)" if flag(d) else "")
                               for v, d in zip(t["long_rank"], t["long_diverged"], strict=True)]
    return table


# The chapter's "most popular" optimizers besides plain mini-batch SGD, by their entries in the
# `optimizers` section (conf/optimizers/).
POPULAR = ("sgd_momentum", "rmsprop", "rmsprop_momentum", "adam", "adadelta")
@claim("popular_methods_beat_sgd", kind=MEASURED, figure="Optimizer grid",
       source="ours (the chapter, § The philosophy behind optimizer selection, names the most popular methods "
              "and invites trying them on the feed-forward network; it claims no ranking)",
       book="Each of the five popular methods beyond plain mini-batch gradient descent (with momentum, RMSProp, "
            "RMSProp with momentum, Adam, AdaDelta) trains the feed-forward network better than plain SGD, each "
            "tuned alike (the same lr search, seeds and budget).",
       needs=SCORES,
       tolerance="beats SGD: a tuned score better than SGD's by more than {tol:.0%} of it (each at its best lr, "
                 "mean over the shared seeds). agrees: all five; partly: some; differs: none")
def popular_beat_sgd(i: View, tol: float) -> Measured:
    scores, _ = grid_scores(i)
    names = [n for n in POPULAR if n in scores.columns]
    if "sgd" not in scores.columns or not names:
        return Measured("–", not_measured("plain SGD or the popular methods are not in the grid"))

    def gains(u: pd.DataFrame) -> dict[str, float]:
        return {n: scores.gain(u, n, "sgd") for n in names}

    def decide(u: pd.DataFrame) -> Decision:
        g = gains(u)
        if any(math.isnan(v) for v in g.values()):
            return not_measured("every lr of plain SGD diverged on these seeds: nothing to beat")
        beats = in_every(v > tol for v in g.values())
        return Decision(beats.verdict, min(g.values(), key=lambda v: abs(v - tol)), (tol,))

    g = gains(scores.units)
    return resampled(", ".join(f"{n} {v:+.1%}" for n, v in g.items()) + " against SGD's tuned score "
                     f"({sum(v > tol for v in g.values())} of {len(g)} better by more than {tol:.0%})",
                     scores.units, decide, caveat=edge_caveat(scores, ["sgd", *names]))


@claim("little_consensus_on_the_best", kind=MEASURED, figure="Optimizer grid",
       source="§ The philosophy behind optimizer selection",
       book="There is little consensus among practitioners on which algorithm to use when; read on the "
            "feed-forward network as: no one optimizer is clearly best, several are tied with the best.",
       needs=SCORES, uses=("tied_with_best",),
       tolerance="tied with the best: a tuned score within {tied_with_best:.0%} of the best one's (each at its best "
                 "lr, the best lrs picked again in every paired resample of the seeds). agrees: at least "
                 "{tol:.0f} tied (the best included); partly: two (a pair, not several); differs: one optimizer "
                 "clearly best")
def little_consensus(i: View, tol: float, near: float) -> Measured:
    scores, m = grid_scores(i)

    def gaps(u: pd.DataFrame) -> dict[str, float]:
        t = scores.tuned(u)
        best = min(t.values())
        return {n: (v - best) / abs(best) for n, v in t.items()} if math.isfinite(best) else {}

    def decide(u: pd.DataFrame) -> Decision:
        g = gaps(u)
        if not g:
            return not_measured("every lr of every optimizer diverged")
        tied = sum(v <= near for v in g.values())
        return graded(tied >= tol, tied >= 2, min(g.values(), key=lambda v: abs(v - near) if v > 0 else math.inf),
                      (near,))

    g = gaps(scores.units)
    tied = [n for n, v in sorted(g.items(), key=lambda kv: kv[1]) if v <= near]
    return resampled(f"{len(tied)} of {len(g)} within {near:.0%} of the best after {m['budget_steps']:,} steps: "
                     + ", ".join(f"{n} ({g[n]:+.1%})" for n in tied), scores.units, decide,
                     caveat=edge_caveat(scores, scores.columns))


MOMENTUM_SECTION = "§ Momentum-based optimization"


@claim("momentum_may_need_a_smaller_lr", kind=MEASURED, figure="Optimizer grid", source=MOMENTUM_SECTION,
       book="Because the momentum term enlarges the step taken, momentum may need a smaller learning rate than "
            "plain SGD.",
       needs=SCORES,
       tolerance="the tuned lrs on one search (both centred on 0.01), each picked again in every paired resample of "
                 "the seeds: log10(momentum's best lr / SGD's), in decades. agrees: smaller (below -0.25, half the "
                 "search's step of half a decade: any smaller lr of the search); partly: the same lr; differs: "
                 "larger (above 0.25)")
def momentum_smaller_lr(i: View, tol: float) -> Measured:
    scores, _ = grid_scores(i)
    if gone := scores.lacks("sgd", "sgd_momentum"):
        return gone

    def decide(u: pd.DataFrame) -> Decision:
        best = scores.best_lr(u)
        if math.isnan(best["sgd"]) or math.isnan(best["sgd_momentum"]):
            return not_measured("every lr of SGD or of momentum diverged on these seeds")
        ratio = math.log10(best["sgd_momentum"] / best["sgd"])
        return Decision(AGREES if ratio < -0.25 else DIFFERS if ratio > 0.25 else PARTLY, ratio, (-0.25, 0.25))

    best = scores.best_lr(scores.units)
    return resampled(f"best lr: SGD {best['sgd']:g}, momentum {best['sgd_momentum']:g}", scores.units, decide,
                     caveat=edge_caveat(scores, ["sgd", "sgd_momentum"]))


ADAM_SECTION = "§ Learning rate adaptation: Adam"


@claim("adam_combines_rmsprop_and_momentum_better", kind=MEASURED, figure="Optimizer grid", source=ADAM_SECTION,
       book="Adam combines RMSProp's core idea with momentum more effectively (than RMSProp with momentum does).",
       needs=SCORES, uses=("tied_with_best",),
       tolerance="Adam's gain on RMSProp with momentum's tuned score (relative to it), each at its best lr picked "
                 "again in every paired resample of the seeds. agrees: Adam better by more than "
                 "{tied_with_best:.0%}; partly: tied (within {tied_with_best:.0%}); differs: worse by more")
def adam_beats_rmsprop_momentum(i: View, tol: float, near: float) -> Measured:
    scores, _ = grid_scores(i)
    if gone := scores.lacks("adam", "rmsprop_momentum"):
        return gone

    def gain(u: pd.DataFrame) -> float:
        return scores.gain(u, "adam", "rmsprop_momentum")

    def decide(u: pd.DataFrame) -> Decision:
        g = gain(u)
        if math.isnan(g):
            return not_measured("every lr of RMSProp with momentum diverged on these seeds")
        return beyond_tie(g, near)

    return resampled(f"Adam's gain on RMSProp with momentum's tuned score: {gain(scores.units):+.1%}", scores.units,
                     decide, caveat=edge_caveat(scores, ["adam", "rmsprop_momentum"]))


@claim("adam_defaults_usually_work", kind=MEASURED, figure="Optimizer grid", source=ADAM_SECTION,
       book="PyTorch's default hyperparameters for Adam usually perform well and Adam is robust to their choice; "
            "the exception is the learning rate, which may need changing from its default 0.001.",
       needs=SCORES, uses=("tied_with_best",),
       tolerance="the default-lr gap: (the score at the optimizer's default lr, its search's centre − its tuned "
                 "score) / its tuned score, paired resamples of the seeds. agrees: Adam's default tied with its "
                 "best (within {tied_with_best:.0%}); partly: not tied, but a gap at most the median of the other "
                 "optimizers' (as robust as a typical optimizer); differs: a larger gap")
def adam_defaults(i: View, tol: float, near: float) -> Measured:
    scores, _ = grid_scores(i)
    if "adam" not in scores.columns or len(scores.columns) < 2:
        return Measured("–", not_measured("Adam, or any optimizer to compare it with, is not in the grid"))
    centre = scores.default

    def gaps(u: pd.DataFrame) -> dict[str, float]:
        out = {}
        for name, lrs in scores.means(u).items():
            best = min(lrs.values())
            out[name] = (lrs[centre[name]] - best) / abs(best) if math.isfinite(best) else math.nan
        return out

    def decide(u: pd.DataFrame) -> Decision:
        g = gaps(u)
        others = [v for n, v in g.items() if n != "adam" and not math.isnan(v)]
        if math.isnan(g["adam"]) or not others:
            return not_measured("every lr of Adam (or of every other optimizer) diverged on these seeds")
        typical = float(np.median(others))
        return Decision(AGREES if g["adam"] <= near else PARTLY if g["adam"] <= typical else DIFFERS, g["adam"],
                        (near, typical) if typical > near else (near,))

    g = gaps(scores.units)
    others = [v for n, v in g.items() if n != "adam" and not math.isnan(v)]
    return resampled(f"Adam's default lr {centre['adam']:g}: {g['adam']:+.1%} from its tuned score (the others' "
                     f"median gap {np.median(others):+.1%})", scores.units, decide,
                     caveat=edge_caveat(scores, ["adam"]))
