"""The optimizer comparison's heat map: every cell of the search, each optimizer's lrs by their place in its
own search, so that equal tuning effort shows as equal rows."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.claims import in_every
from beyond_gd.report.grid import (MEASURE_NAMES, OG, SCORES, added, cell_scores, configured, edge_caveat, grid_scores,
                                   lrs_searched, plural, position_label, positions, ranked, search)
from beyond_gd.report.registry import (MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure, not_measured,
                                       resampled)
from beyond_gd.report.style import Style, size


@figure("extra-optimizer-grid-heatmap", title="The optimizer comparison: every optimizer's search, cell by cell",
        needs=(Need(OG, "cells.csv"), Need(OG, "summary.csv"), Need(OG, "summary.json")),
        shows="The score of every (optimizer, learning rate) of the search: the loss of the whole training set at "
              "the end of the budget (ASGD: of its averaged weights), mean over seeds, colour on a log scale. Rows: "
              "the optimizers in rank order; columns: the place of the lr in that optimizer's own search, as a "
              "power of ten about the default it is centred on, so every row is the same effort; each cell names "
              "its lr. Hatched grey: at least one seed diverged there (recorded, not crashed; never the best); "
              "boxed: the best lr; +: an lr the interior rule added beyond an edge of the configured search.",
        book="Readers are urged to try the optimizers on the feed-forward network (the book gives no learning "
             "rates beyond its examples).",
        notes="Rows are optimizers in rank order, columns the place of an lr in that optimizer's own search "
              "(default × 10^-1 … 10^1), so equal effort shows as equal rows; diverged cells are hatched, the "
              "best lr boxed.")
def optimizer_heatmap(i: View, p: FigureParams, s: Style) -> Drawn:
    cells, m = i.csv(OG, "cells.csv"), i.json(OG)
    summary = ranked(i.csv(OG, "summary.csv"))
    cells = cells.assign(score=cell_scores(cells, m["rank_by"]))
    # Each optimizer's lrs by their place in its search (the same places for every optimizer of an equal search).
    # Places are about the configured search's centre (the default); the interior rule's lrs lie beyond it.
    place = {(r.optimizer, lr): x for r in summary.itertuples()
             for lr, x in zip(search(r.lrs), positions(search(r.lrs), configured(r)), strict=True)}
    grown = {(r.optimizer, lr) for r in summary.itertuples() for lr in added(r)}
    cells["place"] = [place.get((o, lr), np.nan) for o, lr in zip(cells["optimizer"], cells["lr"], strict=True)]
    order, columns = list(summary["optimizer"]), sorted(set(place.values()))
    grouped = cells.groupby(["optimizer", "place"])
    score = grouped["score"].mean().unstack("place").reindex(index=order, columns=columns)
    diverged = grouped["diverged"].sum().unstack("place").reindex(index=order, columns=columns).fillna(0)
    lrs = grouped["lr"].first().unstack("place").reindex(index=order, columns=columns)
    finite = score.where(diverged == 0)
    annot = pd.DataFrame([[("" if pd.isna(lrs.iat[r, c]) else
                            ("+" if (order[r], lrs.iat[r, c]) in grown else "") + f"lr {lrs.iat[r, c]:.3g}\n")
                           + ("" if pd.isna(finite.iat[r, c]) else f"{finite.iat[r, c]:.3f}")
                           for c in range(len(columns))] for r in range(len(order))], index=order)
    fig, ax = plt.subplots(figsize=size(s, rows=1.9, width=0.85))
    measure = MEASURE_NAMES.get(m["rank_by"], m["rank_by"])
    sns.heatmap(finite, ax=ax, cmap=s.colormap + "_r", norm=LogNorm(), annot=annot, fmt="", linewidths=0.5,
                linecolor="white", cbar_kws={"label": f"{measure}, mean over seeds (log scale)"},
                xticklabels=[position_label(x) for x in columns], annot_kws={"fontsize": "x-small"})
    ax.grid(False)
    plain_log(ax.collections[0].colorbar.ax.yaxis)
    seeds = m["seeds"]
    for r, opt in enumerate(order):
        for c in range(len(columns)):
            if diverged.iat[r, c] > 0:
                ax.add_patch(plt.Rectangle((c, r), 1, 1, facecolor="0.9", edgecolor="0.6", lw=0.5, hatch="////"))
                ax.text(c + 0.5, r + 0.5, f"lr {lrs.iat[r, c]:.3g}\n✕ {diverged.iat[r, c]:.0f}/{seeds} diverged",
                        ha="center", va="center", color="#b2182b", fontsize="x-small", weight="bold",
                        bbox={"facecolor": "0.9", "edgecolor": "none", "pad": 0.5})
        best = summary.loc[summary["optimizer"] == opt, "best_lr"].iloc[0]
        if pd.notna(best):
            ax.add_patch(plt.Rectangle((columns.index(place[(opt, best)]), r), 1, 1, fill=False, edgecolor="black",
                                       lw=2.2))
    ax.set(xlabel="learning rate's place in the optimizer's own search (× its default)",
           ylabel="optimizer (rank order)",
           title=f"{lrs_searched(m['lrs_per_optimizer'])} × {plural(seeds, 'seed')} per optimizer, "
                 f"{m['budget_steps']:,} steps each")
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    return Drawn(fig, _measured(cells, summary, m))


def _measured(cells: pd.DataFrame, summary: pd.DataFrame, m: dict) -> str:
    bad = cells[cells["diverged"].astype(bool)].groupby("optimizer", sort=False)["lr"].unique()
    edge = summary[summary["best_lr_at_edge"].astype(bool)]
    return (f"Every optimizer searched {lrs_searched(m['lrs_per_optimizer'], detail=True)} with "
            f"{plural(m['seeds'], 'seed')} each. "
            f"{m['diverged_cells']} of {m['cells']} cells (optimizer × lr × seed) diverged"
            + (": " + "; ".join(f"{opt} at lr {', '.join(f'{v:g}' for v in sorted(v))}" for opt, v in bad.items())
               if len(bad) else "")
            + ". Best lr at an edge of its search for: "
            + (", ".join(f"{r.optimizer} ({r.best_lr:g})" for r in edge.itertuples()) or "none") + ".")


@claim("lr_too_small_slow_too_large_fails", kind=MEASURED, figure="Optimizer grid",
       source="§ Learning rate adaptation",
       book="Too small a learning rate does not learn fast enough; too large a one may fail to converge near a "
            "local minimum or an ill-conditioned region.",
       needs=SCORES, uses=("tied_with_best",),
       tolerance="per optimizer, its search's smallest and largest lr against its best (scores after one budget, "
                 "mean over seeds, paired resamples): slow, the smallest lr's score worse than the best's by more "
                 "than {tied_with_best:.0%}; fails, the largest lr's worse by more or diverged. agrees: both in "
                 "every optimizer; partly: in some; differs: in none")
def lr_too_small_too_large(i: View, tol: float, near: float) -> Measured:
    scores, _ = grid_scores(i)
    if not scores.columns:
        return Measured("–", not_measured("the grid has no optimizer"))

    def gaps(u: pd.DataFrame) -> dict[str, tuple[float, float]]:
        out = {}
        for name, lrs in scores.means(u).items():
            values, best = list(lrs.values()), min(lrs.values())
            if math.isfinite(best) and len(values) > 2:
                out[name] = ((values[0] - best) / abs(best), (values[-1] - best) / abs(best))
        return out

    def decide(u: pd.DataFrame) -> Decision:
        g = gaps(u)
        both = in_every((low > near and high > near for low, high in g.values()), "optimizers with a usable lr")
        finite = [v for pair in g.values() for v in pair if math.isfinite(v)]
        return Decision(both.verdict, min(finite, key=lambda v: abs(v - near)) if finite else math.nan, (near,),
                        both.why)

    g = gaps(scores.units)
    shown = "; ".join(f"{n} {low:+.0%} / " + ("diverged" if math.isinf(high) else f"{high:+.0%}")
                      for n, (low, high) in g.items())
    return resampled(f"smallest lr / largest lr against the best: {shown}", scores.units, decide,
                     caveat=edge_caveat(scores, scores.columns))
