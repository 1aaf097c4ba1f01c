"""What the optimizer comparison's figures share: artifact names, one colour per optimizer, the score of
a cell, where an lr sits in its optimizer's search, how an interval reads."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.registry import Measured, not_measured

OG, LB, LA = "optimizer_grid", "lbfgs", "lr_adaptation"
# Every optimizer of the chapter by its `optimizers` entry: one colour each, the same in every figure of the
# comparison, as an index into the colour-blind palette's ten colours (L-BFGS, the subject of its own
# figure, in black). Hues that read alike (orange and vermilion, purple and pink) go to one mini-batch SGD
# method and one adaptive one, which `dashes` draws differently.
COLOR_INDEX = {"sgd": 0, "sgd_momentum": 1, "sgd_nesterov": 2, "adam": 3, "rmsprop": 4, "rmsprop_momentum": 5,
               "adagrad": 7, "asgd": 8, "adadelta": 9}
# Beyond the grid's nine, outside the palette: Adam's ablation a dark shade of Adam's vermilion, SciPy's CG
# (beside L-BFGS) a dark teal. The palette's pink (6) reads as RMSProp's purple.
OWN_COLORS = {"adam_uncorrected": (0.5, 0.15, 0.0), "cg": (0.0, 0.4, 0.4)}
# The adaptive-learning-rate methods (dashed lines); the mini-batch SGD family is drawn solid.
ADAPTIVE = ("adagrad", "rmsprop", "rmsprop_momentum", "adam", "adadelta", "adam_uncorrected")
# The grid's `rank_by` measures where higher is better (the others are losses or step counts).
HIGHER_IS_BETTER = ("test_accuracy",)
# How the grid's `rank_by` measures read on an axis.
MEASURE_NAMES = {"train_loss": "training-set loss", "test_loss": "test loss", "test_accuracy": "test accuracy",
                 "final_loss": "trailing-mean mini-batch cost", "steps_to_target": "steps to the target"}


def colors(names: Iterable[str]) -> dict[str, tuple[float, float, float]]:
    palette = sns.color_palette(n_colors=10)
    return {n: palette[COLOR_INDEX[n]] if n in COLOR_INDEX else OWN_COLORS.get(n, (0.1, 0.1, 0.1)) for n in names}


def linestyle(name: str) -> str | tuple[float, tuple[float, float]]:
    """A line style per family: the adaptive methods dashed, the others solid."""
    return (0, (4, 1.5)) if name in ADAPTIVE else "-"


def band(ax: plt.Axes, rows: pd.DataFrame, x: str, y: str, color: object, at: str | None = None,
         **line: object) -> None:
    """The mean over seeds of `y` against `x` with the band from the lowest seed to the highest, grouped by
    `at` (default `x`; each group drawn at its mean `x`, for an x that differs between seeds, as seconds)."""
    groups = rows.groupby(at or x)
    xs = groups[x].mean().to_numpy()
    ax.fill_between(xs, groups[y].min().to_numpy(), groups[y].max().to_numpy(), color=color, alpha=0.25, lw=0)
    ax.plot(xs, groups[y].mean().to_numpy(), color=color, **line)


def lower_is_better(rank_by: str) -> bool:
    return rank_by not in HIGHER_IS_BETTER


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def lrs_searched(sizes: Mapping[str, int] | int, detail: bool = False) -> str:
    """How many lrs each optimizer searched (summary.json's `lrs_per_optimizer`, optimizer -> count): '5 lrs'
    when all searched as many (the protocol), else '3 to 5 lrs', with `detail` each optimizer's count."""
    counts = dict(sizes) if isinstance(sizes, Mapping) else {"": int(sizes)}
    low, high = min(counts.values()), max(counts.values())
    if low == high:
        return plural(low, "lr")
    return f"{low} to {high} lrs" + (" (" + ", ".join(f"{k} {n}" for k, n in counts.items()) + ")" if detail else "")


def ranked(summary: pd.DataFrame) -> pd.DataFrame:
    """summary.csv in rank order, the optimizers every lr diverged for last."""
    return summary.sort_values("rank").reset_index(drop=True)


def cell_scores(cells: pd.DataFrame, rank_by: str) -> pd.Series:
    """Each cell's score as the grid ranks it: `rank_by`, or that of the averaged weights for an optimizer
    that keeps them (ASGD: the weights it returns)."""
    own = pd.to_numeric(cells[rank_by], errors="coerce")
    average = f"average_{rank_by}"
    if average not in cells:
        return own
    averaged = pd.to_numeric(cells[average], errors="coerce")
    keeps = averaged.notna().groupby(cells["optimizer"]).transform("any")
    return averaged.where(keeps, own)


@dataclass(frozen=True)
class SeedScores:
    """cells.csv as one row per seed (the grid's optimizers and lrs share seeds: a resample of rows stays
    paired): `units` has the column `seed`, then one column per (optimizer, lr) holding its score, signed so
    that lower is better, +inf where the cell diverged or has no score (an lr unusable on a seed is unusable)."""

    units: pd.DataFrame
    columns: dict[str, list[str]]  # optimizer -> its columns, in search order
    at_edge: dict[str, bool]  # optimizer -> its best lr (summary.csv) at an end of its search
    default: dict[str, float]  # optimizer -> its default lr, the centre of its configured search

    def tuned(self, units: pd.DataFrame) -> dict[str, float]:
        """Each optimizer's score at its best lr on these rows (the mean over seeds, the best lr picked again);
        +inf where every lr is unusable on them. Lower is better."""
        return {name: min(lrs.values()) for name, lrs in self.means(units).items()}

    def lacks(self, *names: str) -> Measured | None:
        """A claim's result where the grid lacks an optimizer it compares (not measured, naming them); None
        where it has them all."""
        gone = [n for n in names if n not in self.columns]
        return Measured("–", not_measured(f"not in the grid: {', '.join(gone)}")) if gone else None

    def gain(self, units: pd.DataFrame, of: str, on: str) -> float:
        """`of`'s gain on `on`'s tuned score, relative to `on`'s (> 0: `of` is better); NaN where every lr of `on`
        is unusable on these rows."""
        t = self.tuned(units)
        return (t[on] - t[of]) / abs(t[on]) if math.isfinite(t[on]) else math.nan

    def means(self, units: pd.DataFrame) -> dict[str, dict[float, float]]:
        """Each optimizer's score at each lr of its search on these rows (the mean over seeds), lr -> score in
        search order; +inf where the lr is unusable on them. Lower is better."""
        # The columns are this object's own (a resample keeps them, in order): positions, not labels (fast).
        at = dict(zip(self.units.columns[1:], units.to_numpy(np.float64)[:, 1:].mean(axis=0), strict=True))
        return {name: {float(c.rsplit("@", 1)[1]): at[c] for c in cols} for name, cols in self.columns.items()}

    def best_lr(self, units: pd.DataFrame) -> dict[str, float]:
        """Each optimizer's best lr on these rows (picked again: the lowest mean score; NaN where none is usable)."""
        return {name: min(lrs, key=lrs.get) if math.isfinite(min(lrs.values())) else math.nan
                for name, lrs in self.means(units).items()}


def seed_scores(cells: pd.DataFrame, summary: pd.DataFrame, rank_by: str) -> SeedScores:
    """The grid's cells as `SeedScores`: each cell scored as the grid ranks it (`cell_scores`)."""
    lower = lower_is_better(rank_by)
    scored = cells.assign(score=cell_scores(cells, rank_by) * (1 if lower else -1))
    unusable = scored["diverged"].astype(bool) | scored["score"].isna()
    scored.loc[unusable, "score"] = math.inf
    scored["key"] = scored["optimizer"] + "@" + scored["lr"].map(lambda v: f"{v:g}")
    units = scored.pivot(index="seed", columns="key", values="score").fillna(math.inf)
    columns = {name: [f"{name}@{lr:g}" for lr in search(lrs)] for name, lrs in zip(summary["optimizer"],
                                                                                    summary["lrs"], strict=True)}
    order = [c for cols in columns.values() for c in cols]
    edge = {name: flag(v) for name, v in zip(summary["optimizer"], summary["best_lr_at_edge"], strict=True)}
    default = {r.optimizer: centre(configured(r)) for r in summary.itertuples()}
    return SeedScores(units.reindex(columns=order).reset_index(), columns, edge, default)


SCORES = (Need(OG, "cells.csv"), Need(OG, "summary.csv"), Need(OG, "summary.json"))


def grid_scores(i: View) -> tuple[SeedScores, dict]:
    m = i.json(OG)
    return seed_scores(i.csv(OG, "cells.csv"), i.csv(OG, "summary.csv"), m["rank_by"]), m


def edge_caveat(scores: SeedScores, names: Iterable[str]) -> str:
    """The rule for every ranking claim: an optimizer whose best lr lies at an end of its search may do better
    beyond it, so no comparison with it is better than inconclusive."""
    edge = [n for n in names if scores.at_edge.get(n)]
    return f"best lr at an edge of its search: {', '.join(edge)} (a better lr may lie beyond)" if edge else ""


def search(lrs: str) -> list[float]:
    """summary.csv's `lrs` (space-separated) as numbers, in the order searched."""
    return [float(v) for v in str(lrs).split()] if pd.notna(lrs) else []


def added(row: object) -> list[float]:
    """The lrs the grid's interior rule added to an optimizer's search (a summary.csv row); none in a grid
    written before the rule (no such column)."""
    return search(getattr(row, "lrs_added", math.nan))


def configured(row: object) -> list[float]:
    """An optimizer's configured search (a summary.csv row): its final search less what the rule added."""
    extra = set(added(row))
    return [lr for lr in search(getattr(row, "lrs")) if lr not in extra]


def centre(lrs: list[float]) -> float:
    """The lr at the geometric centre of a search (the default it is centred on), or the one nearest it."""
    logs = np.log10(lrs)
    return lrs[int(np.argmin(np.abs(logs - (logs.min() + logs.max()) / 2)))]


def positions(lrs: list[float], about: list[float] | None = None) -> np.ndarray:
    """Each lr's place in its search, as a power of ten about the geometric centre of `about` (default the
    search itself: the default it is centred on): -1, -0.5, 0, 0.5, 1 for five lrs half a decade apart, beyond
    them for the lrs the interior rule added."""
    logs, ref = np.log10(lrs), np.log10(about or lrs)
    return np.round((logs - (ref.min() + ref.max()) / 2) * 4) / 4  # to a quarter decade: 3.16 is 10^0.5


def position_label(x: float) -> str:
    return "default" if x == 0 else f"$\\times 10^{{{x:g}}}$"


def interval(low: float, high: float, spec: str = ".3f") -> str:
    return "–" if pd.isna(low) or pd.isna(high) else f"[{low:{spec}}, {high:{spec}}]"


def rank_interval(low: float, high: float) -> str:
    return f"{low:g}" if low == high else f"{low:g}–{high:g}"


def flag(value: object) -> bool:
    """A boolean cell that may be empty (NaN: no such run): empty is False."""
    return bool(value) if pd.notna(value) else False


def number(value: float, spec: str = ".3f") -> str:
    return "–" if value is None or pd.isna(value) or not math.isfinite(value) else f"{value:{spec}}"
