"""Every mini-batch optimizer of the chapter x learning rates x seeds on the MLP, ranked at each one's best lr.

Each (optimizer, lr, seed) is one training cell (beyond_gd.cells), run through
`inputs.run_cells`. Every cell gets the same budget (`epochs` of `batch_size`,
or `max_steps`) and, in the default grid, every optimizer as many learning rates; a cell
whose cost turns NaN/inf or exceeds `divergence_loss` stops there and is
recorded as diverged, and the grid goes on. Each optimizer is then scored at
its own best learning rate (the mean over seeds of `rank_by`; an lr at which
any seed diverged is never "best"; an averaging optimizer by its averaged
weights), ranked, with a Student's t interval of each score over its seeds
(tuning.t_interval) and of each rank over paired resamples of the shared
seeds (tuning.bootstrap_ranking). With `long_budget.enabled`, each optimizer
runs again at its best lr for `long_budget.epochs`. The averaging optimizer
(`averaging.optimizer`, ASGD) runs again at its best lr and its neighbours in
its search, at a constant lr for `averaging.epochs`, averaging over the last
`averaging.window` of them: where the iterate hovers about a minimum, which is
where an average of the iterates is meant to help.

Tables: `steps.csv` (optimizer, lr, seed, step, loss, smoothed; every
`curve_stride`-th step), `epochs.csv` (per cell and epoch: seconds, gradient
evaluations, train/test loss and accuracy, and of the averaged weights where
kept), `cells.csv` (one row per cell), `summary.csv` (the ranking: per
optimizer its search and the lrs the interior rule added, best lr, score with its t interval, rank
interval, whether tied with the best; mean/std/min/max over seeds of the other
measures; the longer budget's numbers), `long.csv` (the longer budget's
epochs, empty if it did not run), `averaging.csv` (the averaging runs'
epochs: the iterate's and the average's losses and accuracies, and t0; empty
if the averaging optimizer is not in the grid), `curves/<optimizer>.csv` (step, loss:
smoothed cost at the best lr, mean over seeds, for `dvc plots`); `cells/`,
each cell's own artifact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from beyond_gd.cell_tables import STATS, cells_table, epochs_table, steps_table
from beyond_gd.cells import EPOCH_COLUMNS, CellConfig, CellOutput
from beyond_gd.config import ModelConfig, RuntimeConfig, entries, optimizer_names, required
from beyond_gd.data.mnist import MNIST_TRAIN_IMAGES
from beyond_gd.errors import ConfigError
from beyond_gd.launch import LauncherConfig
from beyond_gd.measures import trailing_mean
from beyond_gd.tuning import bootstrap_ranking, extend_to_interior, t_interval, tuned_scores
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.study import Inputs, Result
from beyond_gd.training import step_budget

LABELS = ["optimizer", "lr", "seed"]
# What a ranking can be by, and whether lower is better.
RANK_BY = {"train_loss": True, "test_loss": True, "test_accuracy": False, "final_loss": True, "steps_to_target": True}
# Measures an averaging optimizer (ASGD) is scored by on its averaged weights (cells' average_* columns).
AVERAGED = ("train_loss", "test_loss", "test_accuracy", "train_accuracy")
LONG_COLUMNS = ("long_train_loss_mean", "long_train_loss_std", "long_test_accuracy_mean", "long_test_accuracy_std",
                "long_diverged", "long_rank")
REPORTED = ("train_loss", "test_accuracy", "test_loss", "final_loss", "steps_to_target", "seconds_to_target",
            "train_seconds", "average_train_loss", "average_test_accuracy")


@dataclass
class BootstrapConfig:
    resamples: int = required(gt=0)
    confidence: float = required(gt=0)
    seed: int = required(ge=0)

    def check(self) -> None:
        if not self.confidence < 1:
            raise ConfigError(f"confidence: must be < 1, got {self.confidence}")


@dataclass
class LongBudgetConfig:
    enabled: bool = required()
    epochs: int = required(gt=0)
    max_steps: int | None = required(gt=0, optional=True)
    seeds: list[int] = required(nonempty=True, distinct=True, each_ge=0)


@dataclass
class AveragingConfig:
    # Whether the averaging runs run (false: summary.json says so, averaging.csv is empty).
    enabled: bool = required()
    # The averaging optimizer (an entry of `lrs`; absent from the grid: nothing runs).
    optimizer: str = optimizer_names(nonempty=True)
    # Its best lr and this many lrs of its search on each side of it.
    neighbours: int = required(ge=0)
    epochs: int = required(gt=0)
    # The average covers the last `window` epochs' share of the run (t0 at the rest).
    window: int = required(gt=0)
    max_steps: int | None = required(gt=0, optional=True)
    seeds: list[int] = required(nonempty=True, distinct=True, each_ge=0)

    def check(self) -> None:
        if self.window > self.epochs:
            raise ConfigError(f"window: at most epochs ({self.epochs}), got {self.window}")


@dataclass
class ExtensionConfig:
    # The most lrs the interior rule adds on each side of an optimizer's configured search (0: none).
    max_added: int = required(ge=0)


@dataclass
class OptimizerGridConfig:
    # optimizer (an entry of the `optimizers` section) -> its learning rates.
    # Cells are dispatched in this order.
    lrs: dict[str, list[float]] = optimizer_names(nonempty=True)
    # Optimizers left out of the grid, each with the reason the report gives.
    excluded: dict[str, str] = optimizer_names()
    seeds: list[int] = required(nonempty=True, distinct=True, each_ge=0)
    # The budget, the same for every cell: `epochs`, cut at `max_steps` if set.
    epochs: int = required(gt=0)
    max_steps: int | None = required(gt=0, optional=True)
    batch_size: int = required(gt=0)
    target_loss: float = required(gt=0)
    smoothing_window: int = required(gt=0)
    divergence_loss: float = required(gt=0)
    eval_batch_size: int = required(gt=0)
    curve_stride: int = required(gt=0)
    rank_by: str = required(choices=tuple(RANK_BY))
    bootstrap: BootstrapConfig = required()
    extension: ExtensionConfig = required()
    long_budget: LongBudgetConfig = required()
    averaging: AveragingConfig = required()

    def check(self) -> None:
        for name, lrs in self.lrs.items():
            if not lrs or min(lrs) <= 0 or len(set(lrs)) != len(lrs):
                raise ConfigError(f"lrs.{name}: must be distinct learning rates > 0, got {lrs}")
        for name in set(self.lrs) & set(self.excluded):
            raise ConfigError(f"excluded.{name}: also in lrs (an optimizer is in the grid or out of it)")


@dataclass
class Config:
    optimizer_grid: OptimizerGridConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig = entries("device")  # the cells' threads are the launcher's
    launcher: LauncherConfig


def build_cells(cfg: Config, lrs: dict[str, list[float]] | None = None, seeds: list[int] | None = None,
                max_steps: int | None = None, prefix: str = "", **kwargs: Any) -> list[CellConfig]:
    """The grid's cells; with the arguments, another budget's (the longer one at each best lr), `kwargs` the
    optimizers' own arguments changed (the averaging runs' t0 and constant lr)."""
    c = cfg.optimizer_grid
    # Every cell trains on the whole training split: its epochs are of MNIST's training images.
    steps = max_steps or step_budget(c.epochs, MNIST_TRAIN_IMAGES, c.batch_size, c.max_steps)
    return [
        CellConfig(id=f"{prefix}{name}-lr{lr:g}-s{seed}", seed=seed,
                   optimizer=cfg.optimizers[name].with_lr(lr).with_kwargs(**kwargs),
                   model=cfg.model, init="torch_default", train_images=None, batch_size=c.batch_size,
                   max_steps=steps, divergence_loss=c.divergence_loss, eval_every=1,
                   eval_batch_size=c.eval_batch_size, target_loss=c.target_loss,
                   smoothing_window=c.smoothing_window, cost="smoothed",
                   labels={"optimizer": name, "lr": lr, "seed": seed})
        for name, opt_lrs in (lrs or c.lrs).items() for lr in opt_lrs for seed in (seeds or c.seeds)
    ]


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.optimizer_grid
    cells = build_cells(cfg)
    steps = cells[0].max_steps  # the budget every cell of the grid shares
    long_steps = step_budget(c.long_budget.epochs, MNIST_TRAIN_IMAGES, c.batch_size, c.long_budget.max_steps)
    outputs = inputs.run_cells(cells)

    def tabled() -> pd.DataFrame:
        table = cells_table(outputs)
        table["torch_name"] = [o.cell.optimizer.class_name for o in outputs]
        return table

    def best_of(searched: dict[str, list[float]]) -> dict[str, float | None]:
        return {r.optimizer: r.best_lr if pd.notna(r.best_lr) else None
                for r in rank(tabled(), c, searched).itertuples()}

    def run_more(new: dict[str, list[float]]) -> None:
        more = build_cells(cfg, new)
        cells.extend(more)
        outputs.extend(inputs.run_cells(more))

    # Every tuned optimum interior: an optimizer best at an edge of its search searches on beyond it.
    added = extend_to_interior(c.lrs, best_of, run_more, c.extension.max_added)
    lrs = {name: sorted(v + added[name]) for name, v in c.lrs.items()}
    table = tabled()
    ranking = rank(table, c, lrs, added)
    long_cells, long_outputs = [], []
    if c.long_budget.enabled:
        best = {r.optimizer: [r.best_lr] for r in ranking.itertuples() if pd.notna(r.best_lr)}
        long_cells = build_cells(cfg, best, c.long_budget.seeds, prefix="long-", max_steps=long_steps)
        long_outputs = inputs.run_cells(long_cells)
        ranking = ranking.merge(long_summary(cells_table(long_outputs), c), on="optimizer", how="left")
    else:  # the same columns either way: the report says the longer budget did not run
        ranking = ranking.assign(**dict.fromkeys(LONG_COLUMNS, np.nan))
    long = (epochs_table(long_outputs, LABELS) if long_outputs else pd.DataFrame(columns=LABELS + EPOCH_COLUMNS))
    averaging, tail = averaging_runs(cfg, inputs, ranking, lrs)
    score = "score_mean"
    best_row, sgd = ranking.iloc[0], ranking[ranking.optimizer == "sgd"]
    summary = {"cells": len(cells), "diverged_cells": int(table["diverged"].sum()), "rank_by": c.rank_by,
               "budget_steps": steps, "target_loss": c.target_loss,
               "smoothing_window": c.smoothing_window, "seeds": len(c.seeds),
               "lrs_per_optimizer": {k: len(v) for k, v in lrs.items()},
               # The configured searches: the same effort before the interior rule searched on where it had to.
               "equal_effort": len({len(v) for v in c.lrs.values()}) == 1, "confidence": c.bootstrap.confidence,
               "extension": {"max_added": c.extension.max_added, "added": {k: v for k, v in added.items() if v},
                             "at_edge_after_cap": list(ranking.loc[ranking.best_lr_at_edge.astype(bool), "optimizer"])},
               "excluded": dict(c.excluded), "tied_with_best": list(ranking.loc[ranking.tied_with_best, "optimizer"]),
               "long_budget": {"ran": c.long_budget.enabled, "epochs": c.long_budget.epochs,
                               "steps": long_steps,
                               "seeds": len(c.long_budget.seeds), "cells": len(long_cells),
                               "lr": "each optimizer's best lr of the one-budget grid"},
               "averaging": tail,
               "ranking": {r.optimizer: {k: getattr(r, k) for k in ("rank", "best_lr", score, "score_low",
                                                                    "score_high", "rank_low", "rank_high")}
                           for r in ranking.itertuples()}}
    return Result(
        metrics={f"best_{c.rank_by}": best_row[score], f"sgd_{c.rank_by}": sgd[score].iloc[0] if len(sgd) else None,
                 "tied_with_best": len(summary["tied_with_best"]), "diverged_cells": summary["diverged_cells"]},
        summary=summary,
        tables={"steps.csv": steps_table(outputs, LABELS, c.curve_stride, c.smoothing_window),
                "epochs.csv": epochs_table(outputs, LABELS), "cells.csv": table, "summary.csv": ranking,
                "long.csv": long, "averaging.csv": averaging, **curves(outputs, ranking, c)},
        made=("cells",),
        lines=[f"#{r.rank:<2} {r.optimizer:<17} best lr {r.best_lr if pd.notna(r.best_lr) else '-':<7} "
               f"{r.ranked_by} {_fmt(r.score_mean)} [{_fmt(r.score_low)}, {_fmt(r.score_high)}]  rank "
               f"[{r.rank_low:g}, {r.rank_high:g}]  test acc {_fmt(r.test_accuracy_mean)}"
               + ("  tied with the best" if r.tied_with_best else "") + ("  (best lr at an edge)"
                                                                         if r.best_lr_at_edge else "")
               for r in ranking.itertuples()]
        + [f"{len(cells)} cells ({summary['diverged_cells']} diverged); longer budget: "
           + (f"{len(long_cells)} cells" if long_cells else "not run (long_budget.enabled: false)")
           + (f"; averaging: {tail['cells']} cells of {tail['optimizer']} at lrs "
              + ", ".join(f"{v:g}" for v in tail["lrs"]) + f", averaged from step {tail['t0']:,} of {tail['steps']:,}"
              if tail["ran"] else "" if tail["enabled"] else "; averaging: not run (averaging.enabled: false)")],
    )


def averaging_runs(cfg: Config, inputs: Inputs, ranking: pd.DataFrame,
                   lrs: dict[str, list[float]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The averaging optimizer at its best lr and `neighbours` lrs of its search on each side, for
    `averaging.epochs` at a constant lr, its average taken over the last `window` epochs: per epoch the
    iterate's and the average's numbers (averaging.csv), and what ran (summary.json)."""
    c, a = cfg.optimizer_grid, cfg.optimizer_grid.averaging
    best = ranking.set_index("optimizer")["best_lr"].get(a.optimizer)
    # Off, not in the grid, or diverged at every lr: nothing to average.
    if not a.enabled or best is None or pd.isna(best):
        return (pd.DataFrame(columns=LABELS + EPOCH_COLUMNS + ["t0"]),
                {"ran": False, "enabled": a.enabled, "optimizer": a.optimizer})
    search = sorted(lrs[a.optimizer])
    k = search.index(best)
    tail_lrs = search[max(0, k - a.neighbours): k + a.neighbours + 1]
    steps = step_budget(a.epochs, MNIST_TRAIN_IMAGES, c.batch_size, a.max_steps)
    t0 = steps - round(steps * a.window / a.epochs)
    # lambd 0: torch's ASGD both decays its step (lr / (1 + lambd lr t)^alpha) and shrinks the weights by
    # lambd; without it the step is constant and `ax` is the plain average of the iterates from t0 on.
    cells = build_cells(cfg, {a.optimizer: tail_lrs}, a.seeds, steps, "averaging-", t0=t0, lambd=0.0)
    table = epochs_table(inputs.run_cells(cells), LABELS).assign(t0=t0)
    return table, {"ran": True, "enabled": True, "optimizer": a.optimizer, "lrs": tail_lrs, "best_lr": best,
                   "epochs": a.epochs, "window": a.window, "steps": steps, "t0": t0, "seeds": len(a.seeds),
                   "cells": len(cells)}


def rank(table: pd.DataFrame, c: OptimizerGridConfig, lrs: dict[str, list[float]] | None = None,
         added: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """Per optimizer, the lr with the best mean score over seeds among its search `lrs` (default the
    configured one; `added` the lrs the interior rule added to it), the optimizers sorted by it, and the
    intervals of each one's score (Student's t over the seeds) and rank (paired bootstrap).

    The same budget, seeds and number of learning rates for every optimizer make the comparison fair; an
    lr at which any seed diverged (or, for steps_to_target, missed the target) scores as the worst possible,
    so the best lr is one that works for every seed.
    """
    lower = RANK_BY[c.rank_by]
    worst = math.inf if lower else -math.inf
    cells = table.assign(**{m: pd.to_numeric(table[m]) for m in REPORTED if m in table})
    # An averaging optimizer (ASGD) is scored by its averaged weights, what it returns.
    average = f"average_{c.rank_by}"
    own = cells[average].notna() if c.rank_by in AVERAGED and average in cells else cells["seed"].isna()
    cells["score"] = cells[average].where(own, cells[c.rank_by]) if own.any() else cells[c.rank_by]
    per_lr = cells.groupby(["optimizer", "lr"])
    unusable = per_lr["diverged"].transform("any") | per_lr["score"].transform(lambda v: v.isna().any())
    cells.loc[unusable.astype(bool), "score"] = worst
    lrs, added = lrs or c.lrs, added or {}
    names, seeds = list(lrs), sorted(cells["seed"].unique())
    # (optimizer, lr, seed); a shorter search is padded with the worst score, as is a cell missing.
    grid = np.full((len(names), max(len(v) for v in lrs.values()), len(seeds)), worst)
    for k, n in enumerate(names):
        for j, lr in enumerate(lrs[n]):
            grid[k, j] = cells[(cells.optimizer == n) & (cells.lr == lr)].set_index("seed")["score"].reindex(seeds)
    grid = np.where(np.isnan(grid), worst, grid)
    best_score, best_index = tuned_scores(grid, lower)
    _, boot_ranks = bootstrap_ranking(grid, lower, c.bootstrap.resamples, c.bootstrap.seed)
    tail = 100 * (1 - c.bootstrap.confidence) / 2
    rows = []
    for k, name in enumerate(names):
        search = lrs[name]
        best = search[best_index[k]]
        usable = math.isfinite(best_score[k])
        at_best = cells[(cells.optimizer == name) & (cells.lr == best)]
        row: dict[str, Any] = {
            "optimizer": name, "torch_name": at_best["torch_name"].iloc[0], "best_lr": best if usable else None,
            "lrs": " ".join(f"{lr:g}" for lr in search),
            "lrs_added": " ".join(f"{lr:g}" for lr in added.get(name, [])),
            # The search cannot tell whether a better lr lies beyond its edge (after the interior rule: its cap).
            "best_lr_at_edge": usable and best in (min(search), max(search)),
            "diverged_lrs": " ".join(f"{lr:g}" for lr in search if cells[(cells.optimizer == name)
                                                                         & (cells.lr == lr)]["diverged"].any()),
            "seeds": len(seeds), "ranked_by": f"{c.rank_by} of the averaged weights" if own[
                cells.optimizer == name].any() else c.rank_by,
            "score_mean": best_score[k] if usable else None,
            # Student's t over the seeds at the best lr (its coverage simulated in tests/test_measures.py).
            **dict(zip(("score_low", "score_high"), t_interval(grid[k, best_index[k]], c.bootstrap.confidence)
                       if usable else (None, None), strict=True)),
            "rank_low": float(np.percentile(boot_ranks[:, k], tail)),
            "rank_high": float(np.percentile(boot_ranks[:, k], 100 - tail)),
            "p_best": float((boot_ranks[:, k] == 1).mean()),
        }
        for metric in (m for m in REPORTED if m in cells):
            values = at_best[metric].replace([np.inf, -np.inf], np.nan) if usable else at_best[metric].iloc[:0]
            row |= {f"{metric}_{s}": values.agg(s) for s in STATS}
        row["reached"] = int(at_best["steps_to_target"].notna().sum()) if usable else 0
        row["steps_per_second_mean"] = float((at_best["steps"] / at_best["train_seconds"]).mean())
        rows.append(row)
    ranking = pd.DataFrame(rows)
    order = ranking["score_mean"].fillna(worst).to_numpy(dtype=np.float64)
    ranking = ranking.iloc[np.argsort(order if lower else -order, kind="stable")].reset_index(drop=True)
    ranking.insert(0, "rank", range(1, len(ranking) + 1))
    # Tied with the best: its rank interval reaches 1 (one usable optimizer is the best alone).
    ranking["tied_with_best"] = (ranking["rank_low"] <= 1) & ranking["score_mean"].notna()
    return ranking


def long_summary(table: pd.DataFrame, c: OptimizerGridConfig) -> pd.DataFrame:
    """Per optimizer, the longer budget's end: the ranked measure and test accuracy over its seeds, its rank."""
    cells = table.assign(**{m: pd.to_numeric(table[m]) for m in ("train_loss", "test_accuracy",
                                                                 "average_train_loss", "average_test_accuracy")})
    for m in ("train_loss", "test_accuracy"):  # an averaging optimizer by its averaged weights, as in the grid
        cells[m] = cells[f"average_{m}"].fillna(cells[m])
    stats = cells.groupby("optimizer").agg(long_train_loss_mean=("train_loss", "mean"),
                                          long_train_loss_std=("train_loss", "std"),
                                          long_test_accuracy_mean=("test_accuracy", "mean"),
                                          long_test_accuracy_std=("test_accuracy", "std"),
                                          long_diverged=("diverged", "any")).reset_index()
    key = stats["long_train_loss_mean"].where(~stats["long_diverged"], math.inf)
    stats["long_rank"] = key.rank(method="min").astype(int)
    return stats


def curves(outputs: list[CellOutput], ranking: pd.DataFrame, c: OptimizerGridConfig) -> dict[str, pd.DataFrame]:
    """Per optimizer at its best lr: the smoothed cost, mean over seeds (empty if every lr diverged)."""
    found = {}
    for r in ranking.itertuples():
        group = [o for o in outputs if o.cell.labels["optimizer"] == r.optimizer and o.cell.labels["lr"] == r.best_lr]
        n = min((len(o.steps) for o in group), default=0)
        loss = np.mean([trailing_mean(o.steps["loss"].to_numpy()[:n], c.smoothing_window) for o in group] or [[]],
                       axis=0)
        step = np.arange(1, n + 1)
        keep = step % c.curve_stride == 0
        found[f"curves/{r.optimizer}.csv"] = pd.DataFrame({"step": step[keep], "loss": loss[keep]})
    return found


def _fmt(value: Any) -> str:
    return "n/a" if value is None or pd.isna(value) or not math.isfinite(value) else f"{value:.4g}"
