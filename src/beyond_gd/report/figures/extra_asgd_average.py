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


# The averaging runs' lrs, drawn apart by line style: the best lr solid, its neighbours below and above it.
STYLES = ("--", "-", ":")


@figure("extra-asgd-average", title="ASGD: the iterate against its average",
        needs=(Need(OG, "cells.csv"), Need(OG, "averaging.csv"), Need(OG, "summary.csv"), Need(OG, "summary.json")),
        shows="Averaged SGD keeps a running average of its weights from step t0 on and returns that average. Top: "
              "the loss of the whole training set and the test accuracy after the grid's one-epoch budget at each "
              "lr of ASGD's search (t0 from conf/optimizers/asgd.yaml), the iterate (blue) against the average "
              "(orange), one dot per seed, the line through the means; dotted: the lr ASGD was ranked at (by its "
              "average). Bottom: the averaging runs, where averaging is meant to help: ASGD again at that lr and "
              "its neighbours, at a constant lr for `optimizer_grid.averaging.epochs`, the average taken over the "
              "last `window` of them (from the grey line, t0); both at the end of each epoch, mean over seeds with "
              "the lowest-to-highest band, one line style per lr.",
        book="PyTorch supports L-BFGS and other methods, such as averaged stochastic gradient descent, for you to "
             "try on your own.",
        notes="Averaging starts at `optimizers.asgd.t0` in the grid, and over the last "
              "`optimizer_grid.averaging.window` epochs of the averaging runs.\n\nThe whole training set's loss "
              "and the test accuracy of ASGD's iterate and of its averaged weights, at each lr of its search, and "
              "per epoch of the averaging runs.\n\nThe averaging runs run where `optimizer_grid.averaging.enabled` "
              "is true: in the thorough profile, not the default (a launch of their own, about 90 s on 2 cores); "
              "without them the bottom row is empty and the claim on averaging is not measured.")
def asgd_average(i: View, p: FigureParams, s: Style) -> Drawn:
    cells, tail, summary, m = (i.csv(OG, "cells.csv"), i.csv(OG, "averaging.csv"), i.csv(OG, "summary.csv"),
                               i.json(OG))
    mine = cells[cells["optimizer"] == ASGD]
    if mine.empty or mine["average_train_loss"].isna().all():
        return Drawn(None, "ASGD is not in this grid, or no ASGD cell kept its averaged weights.")
    best = summary.set_index("optimizer").loc[ASGD, "best_lr"]
    rows = 2 if len(tail) else 1
    fig, axes = plt.subplots(rows, len(MEASURES), figsize=size(s, rows=2.1 if len(tail) else 1.1), squeeze=False)
    for ax, (own, average, label) in zip(axes[0], MEASURES, strict=True):
        for weights, column in (("iterate", own), ("average", average)):
            at = mine[mine[column].notna()]
            ax.scatter(at["lr"], at[column], s=12, color=WEIGHTS[weights], alpha=0.6, lw=0)
            means = at.groupby("lr")[column].mean()
            ax.plot(means.index, means.to_numpy(), color=WEIGHTS[weights], lw=1.4, marker="o", ms=3, label=weights)
        if pd.notna(best):
            ax.axvline(best, color="0.3", ls=":", lw=1)
            ax.text(best, 0.5, "ranked at ", transform=ax.get_xaxis_transform(), rotation=90, ha="right",
                    va="center", fontsize="x-small", color="0.3")
        ax.set_xscale("log")
        plain_log(ax.xaxis)
        ax.set(xlabel="ASGD's lr", ylabel=label, title=f"{label.split(' (')[0]} after {m['budget_steps']:,} steps")
    run = m["averaging"]
    for ax, (own, average, label) in zip(axes[1] if len(tail) else [], MEASURES, strict=False):
        lrs = sorted(tail["lr"].unique())
        for lr in lrs:
            style = STYLES[1] if lr == run["best_lr"] else STYLES[0 if lr < run["best_lr"] else 2]
            for weights, column in (("iterate", own), ("average", average)):
                band(ax, tail[tail["lr"] == lr], "epoch", column, WEIGHTS[weights], marker="o", ms=3, lw=1.4,
                     ls=style, label=f"{weights}, lr {lr:g}")
        ax.axvline(run["t0"] / run["steps"] * run["epochs"], color="0.5", lw=1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(xlabel="epoch", ylabel=label, title=f"{label.split(' (')[0]} per epoch, averaged from step "
                                                   f"{run['t0']:,} (grey)")
    for ax in axes[:, 0]:  # the losses
        ax.set_yscale("log")
        plain_log(ax.yaxis)
    axes[0, 0].legend(fontsize="small")
    if len(tail):
        axes[1, 0].legend(fontsize="xx-small", ncol=2)
    fig.tight_layout()
    return Drawn(fig, _measured(mine, tail, best, m) + " " + FIRST_ORDER)


def _measured(mine: pd.DataFrame, tail: pd.DataFrame, best: float, m: dict) -> str:
    per_lr = mine.groupby("lr")[["train_loss", "average_train_loss", "test_accuracy", "average_test_accuracy"]].mean()
    better = per_lr.index[per_lr["average_train_loss"] < per_lr["train_loss"]]
    text = (f"After {m['budget_steps']:,} steps, mean over {plural(m['seeds'], 'seed')}, iterate against average: "
            + "; ".join(f"lr {lr:g}: loss {r.train_loss:.3f} against {r.average_train_loss:.3f}, test accuracy "
                        f"{r.test_accuracy:.2%} against {r.average_test_accuracy:.2%}" for lr, r in per_lr.iterrows())
            + f". The average has the lower loss at {len(better)} of {len(per_lr)} lrs"
            + (f" ({', '.join(f'{v:g}' for v in better)})" if len(better) else "")
            + f"; ASGD is ranked by its average, at lr {best:g}. ")
    run = m["averaging"]
    if not len(tail):
        return text + (not_run(run) or "The averaging runs did not run (ASGD is not in the grid, or diverged at "
                                       "every lr).")
    end = _ends(tail).groupby("lr")[["train_loss", "average_train_loss", "test_accuracy",
                                     "average_test_accuracy"]].mean()
    wins = end.index[end["average_train_loss"] < end["train_loss"]]
    return text + (f"The averaging runs ({run['epochs']} epochs at a constant lr, averaged from step {run['t0']:,} of "
                   f"{run['steps']:,}, mean over {plural(run['seeds'], 'seed')}), iterate against average at the end: "
                   + "; ".join(f"lr {lr:g}: loss {r.train_loss:.4f} against {r.average_train_loss:.4f}, test accuracy "
                               f"{r.test_accuracy:.2%} against {r.average_test_accuracy:.2%}"
                               for lr, r in end.iterrows())
                   + f"; the average lower at {len(wins)} of {len(end)} lrs.")


def not_run(run: dict) -> str:
    """Why the averaging runs did not run where the profile turned them off ("" otherwise)."""
    return ("" if run.get("enabled", True) else
            "The averaging runs did not run in this profile (optimizer_grid.averaging.enabled: false, for time); "
            "the thorough profile runs them, which would settle the claim on averaging.")


def _ends(tail: pd.DataFrame) -> pd.DataFrame:
    """The averaging runs' last evaluation of each (lr, seed)."""
    return tail.sort_values("epoch").groupby(["lr", "seed"], as_index=False).last()


@claim("asgd_averaging_helps", kind=MEASURED, figure="ASGD average",
       source="§ A brief view of second-order methods (names averaged SGD among the methods worth trying); "
              "what its average is for: Polyak & Juditsky 1992",
       book="Averaged SGD, which the chapter offers to try beside L-BFGS, is worth it for its average: the running "
            "average of the iterates it returns trains better than the iterate it steps with.",
       needs=(Need(OG, "averaging.csv"), Need(OG, "summary.json")), uses=("tied_with_best",),
       tolerance="(the iterate's training-set loss − the average's) / the iterate's, at the end of the averaging "
                 "runs (a constant lr, the average over the tail of the run), at the lr of those runs where the "
                 "average is best (picked again in every resample of the seeds). agrees: the average better by "
                 "more than {tied_with_best:.0%}; partly: tied (within it); differs: worse by more")
def asgd_averaging_helps(i: View, tol: float, near: float) -> Measured:
    tail = i.csv(OG, "averaging.csv")
    units = _ends(tail)[["seed", "lr", "train_loss", "average_train_loss"]].dropna() if len(tail) else tail
    if units.empty:
        return Measured("–", not_measured(not_run(i.json(OG)["averaging"])
                                          or "the averaging runs did not run or kept no averaged weights"))

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
    return resampled(f"at lr {lr:g}, after the averaging runs' tail: the average's loss {-g:+.1%} against the "
                     "iterate's", units, decide)
