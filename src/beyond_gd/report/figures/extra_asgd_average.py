"""ASGD's iterate against its running average: the weights it steps with and the weights it returns."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
import pandas as pd

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.claims import beyond_tie
from beyond_gd.report.grid import OG, band, plural
from beyond_gd.report.registry import (MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure, not_measured,
                                       resampled)
from beyond_gd.report.style import Style, size

ASGD = "asgd"
# What each panel compares: the iterate's column, the averaged weights' column, its axis label.
MEASURES = (("train_loss", "average_train_loss", "training-set loss (nats, log scale)"),
            ("test_accuracy", "average_test_accuracy", "test accuracy"))
WEIGHTS = {"iterate": "#0072b2", "average": "#d55e00"}
# Where the book files it, and what it is.
FIRST_ORDER = ("The book lists averaged SGD beside L-BFGS among the second-order methods, but ASGD (Polyak & "
               "Juditsky 1992) is first-order: SGD whose reported weights are a running average of its iterates; "
               "it uses no curvature.")


@figure("extra-asgd-average", title="ASGD: the iterate against its average",
        needs=(Need(OG, "cells.csv"), Need(OG, "long.csv"), Need(OG, "summary.csv"), Need(OG, "summary.json")),
        shows="Averaged SGD keeps a running average of its weights from step t0 on (conf/optimizers/asgd.yaml) and "
              "returns that average; the grid evaluates both at the end of every ASGD cell. Top: the loss of the "
              "whole training set and the test accuracy after the one-epoch budget at each lr of ASGD's search, the "
              "iterate (blue) against the average (orange), one dot per seed, the line through the means; dotted: "
              "the lr ASGD was ranked at (by its average). Bottom, only where the longer budget ran: both at the "
              "end of each epoch at that lr, mean over seeds with the lowest-to-highest band.",
        book="PyTorch supports L-BFGS and other methods, such as averaged stochastic gradient descent, for you to "
             "try on your own.",
        notes="Averaging starts at `optimizers.asgd.t0`.\n\nThe whole training set's loss and the test accuracy of "
              "ASGD's iterate and of its averaged weights, at each lr of its search; per epoch too where the "
              "longer budget ran.")
def asgd_average(i: View, p: FigureParams, s: Style) -> Drawn:
    cells, long, summary, m = (i.csv(OG, "cells.csv"), i.csv(OG, "long.csv"), i.csv(OG, "summary.csv"),
                               i.json(OG))
    mine = cells[cells["optimizer"] == ASGD]
    if mine.empty or mine["average_train_loss"].isna().all():
        return Drawn(None, "ASGD is not in this grid, or no ASGD cell kept its averaged weights.")
    best = summary.set_index("optimizer").loc[ASGD, "best_lr"]
    epochs = long[long["optimizer"] == ASGD] if m["long_budget"]["ran"] else long.iloc[:0]
    # A row per budget: the one-epoch search, then (where it ran) the longer budget's epochs.
    fig, axes = plt.subplots(2 if len(epochs) else 1, len(MEASURES), figsize=size(s, rows=2.1 if len(epochs) else 1.1),
                             squeeze=False)
    for ax, (own, average, label) in zip(axes[0], MEASURES, strict=True):
        for weights, column in (("iterate", own), ("average", average)):
            rows = mine[mine[column].notna()]
            ax.scatter(rows["lr"], rows[column], s=12, color=WEIGHTS[weights], alpha=0.6, lw=0)
            means = rows.groupby("lr")[column].mean()
            ax.plot(means.index, means.to_numpy(), color=WEIGHTS[weights], lw=1.4, marker="o", ms=3, label=weights)
        if pd.notna(best):
            ax.axvline(best, color="0.3", ls=":", lw=1)
            ax.text(best, 0.5, "ranked at ", transform=ax.get_xaxis_transform(), rotation=90, ha="right",
                    va="center", fontsize="x-small", color="0.3")
        ax.set_xscale("log")
        plain_log(ax.xaxis)
        ax.set(xlabel="ASGD's lr", ylabel=label, title=f"{label.split(' (')[0]} after {m['budget_steps']:,} steps")
    for ax, (own, average, label) in zip(axes[1] if len(epochs) else [], MEASURES, strict=False):
        for weights, column in (("iterate", own), ("average", average)):
            band(ax, epochs, "epoch", column, WEIGHTS[weights], marker="o", ms=3, lw=1.4, label=weights)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel=label,
               title=f"{label.split(' (')[0]} per epoch of the longer budget, at lr {best:g}")
    for ax in axes[:, 0]:  # the losses
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    axes[0, 0].legend(fontsize="small")
    fig.tight_layout()
    return Drawn(fig, _measured(mine, epochs, best, m) + " " + FIRST_ORDER)


def _measured(mine: pd.DataFrame, epochs: pd.DataFrame, best: float, m: dict) -> str:
    per_lr = mine.groupby("lr")[["train_loss", "average_train_loss", "test_accuracy", "average_test_accuracy"]].mean()
    better = per_lr.index[per_lr["average_train_loss"] < per_lr["train_loss"]]
    text = (f"After {m['budget_steps']:,} steps, mean over {plural(m['seeds'], 'seed')}, iterate against average: "
            + "; ".join(f"lr {lr:g}: loss {r.train_loss:.3f} against {r.average_train_loss:.3f}, test accuracy "
                        f"{r.test_accuracy:.2%} against {r.average_test_accuracy:.2%}" for lr, r in per_lr.iterrows())
            + f". The average has the lower loss at {len(better)} of {len(per_lr)} lrs"
            + (f" ({', '.join(f'{v:g}' for v in better)})" if len(better) else "")
            + f"; ASGD is ranked by its average, at lr {best:g}. ")
    if not len(epochs):
        return text + (f"The longer budget ({m['long_budget']['epochs']} epochs) did not run in this profile "
                       "(long_budget.enabled is false): no per-epoch panels.")
    last = epochs[epochs["epoch"] == epochs["epoch"].max()][["train_loss", "average_train_loss", "test_accuracy",
                                                            "average_test_accuracy"]].mean()
    return text + (f"After {plural(int(epochs['epoch'].max()), 'epoch')} at lr {best:g}: loss "
                   f"{last.train_loss:.4f} (iterate) against {last.average_train_loss:.4f} (average), test accuracy "
                   f"{last.test_accuracy:.2%} against {last.average_test_accuracy:.2%}.")


@claim("asgd_averaging_helps", kind=MEASURED, figure="ASGD average",
       source="§ A brief view of second-order methods (names averaged SGD among the methods worth trying); "
              "what its average is for: Polyak & Juditsky 1992",
       book="Averaged SGD, which the chapter offers to try beside L-BFGS, is worth it for its average: the running "
            "average of the iterates it returns trains better than the iterate it steps with.",
       needs=(Need(OG, "cells.csv"),), uses=("tied_with_best",),
       tolerance="(the iterate's training-set loss − the average's) / the iterate's, at ASGD's best lr by its "
                 "average (picked again in every resample of the seeds), after the grid's budget. agrees: the "
                 "average better by more than {tied_with_best:.0%}; partly: tied (within it); differs: worse by more")
def asgd_averaging_helps(i: View, tol: float, near: float) -> Measured:
    cells = i.csv(OG, "cells.csv")
    mine = cells[(cells["optimizer"] == ASGD) & ~cells["diverged"].astype(bool)] if "average_train_loss" in cells \
        else cells.iloc[:0]
    units = mine[["seed", "lr", "train_loss", "average_train_loss"]].dropna()
    if units.empty:
        return Measured("–", not_measured("no ASGD cell kept its averaged weights"))

    def gain(u: pd.DataFrame) -> tuple[float, float]:
        lrs, at = np.unique(u["lr"].to_numpy(), return_inverse=True)
        count = np.bincount(at)
        iterate, average = (np.bincount(at, u[c].to_numpy()) / count for c in ("train_loss", "average_train_loss"))
        k = int(np.argmin(average))
        return float((iterate[k] - average[k]) / iterate[k]), float(lrs[k])

    def decide(u: pd.DataFrame) -> Decision:
        g, _ = gain(u)
        return beyond_tie(g, near)

    g, lr = gain(units)
    return resampled(f"at lr {lr:g}: the average's loss {-g:+.1%} against the iterate's", units, decide)
