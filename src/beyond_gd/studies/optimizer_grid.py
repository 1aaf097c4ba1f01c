"""Every optimizer of the chapter x learning rates x seeds on the MLP, ranked at each one's best lr.

Each (optimizer, lr, seed) is one training cell (beyond_gd.cells) with its
own config and artifact, run through `inputs.run_cells`. Every cell gets the
same budget (`epochs` of `batch_size`, or `max_steps`); a cell whose cost turns
NaN/inf or exceeds `divergence_loss` stops there and is recorded as diverged,
and the grid goes on. Each optimizer is then ranked at its own best learning
rate (by the mean over seeds of `rank_by`; an lr at which any seed diverged is
never "best").

Tables: `steps.csv` (optimizer, lr, seed, step, loss, smoothed; every
`curve_stride`-th step), `epochs.csv` (optimizer, lr, seed, epoch, step,
seconds, train/test loss and accuracy), `cells.csv` (one row per cell: steps
and seconds to `target_loss`, final loss, test accuracy, diverged, wall time,
device), `summary.csv` (the ranking: per optimizer its best lr, mean/std/min/
max over seeds), `curves/<optimizer>.csv` (step, loss: smoothed cost at the
best lr, mean over seeds, for `dvc plots`); `cells/`, each cell's own artifact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from beyond_gd.cells import CellConfig, CellOutput, cells_table, epochs_table, steps_table
from beyond_gd.config import ModelConfig, RuntimeConfig, required
from beyond_gd.errors import ConfigError
from beyond_gd.launch import LauncherConfig
from beyond_gd.measures import trailing_mean
from beyond_gd.optim.registry import OptimizerSpec, check_named
from beyond_gd.study import Inputs, Result

LABELS = ["optimizer", "lr", "seed"]
# What a ranking can be by, and whether lower is better.
RANK_BY = {"final_loss": True, "test_loss": True, "test_accuracy": False, "steps_to_target": True}
MNIST_TRAIN_IMAGES = 60_000  # the budget in epochs is counted over the whole training split
STATS = ("mean", "std", "min", "max")
REPORTED = ("final_loss", "test_accuracy", "test_loss", "steps_to_target", "seconds_to_target", "train_seconds")


@dataclass
class GridConfig:
    # optimizer (an entry of the `optimizers` section) -> its learning rates.
    # Cells are dispatched in this order.
    lrs: dict[str, list[float]] = required(nonempty=True)
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

    def check(self) -> None:
        for name, lrs in self.lrs.items():
            if not lrs or min(lrs) <= 0 or len(set(lrs)) != len(lrs):
                raise ConfigError(f"lrs.{name}: must be distinct learning rates > 0, got {lrs}")


@dataclass
class Config:
    optimizer_grid: GridConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig
    launcher: LauncherConfig

    def check(self) -> None:
        check_named(self.optimizer_grid.lrs, self.optimizers, "optimizer_grid.lrs")


def budget(c: GridConfig) -> int:
    steps = c.epochs * math.ceil(MNIST_TRAIN_IMAGES / c.batch_size)
    return min(steps, c.max_steps or steps)


def build_cells(cfg: Config) -> list[CellConfig]:
    c = cfg.optimizer_grid
    return [
        CellConfig(id=f"{name}-lr{lr:g}-s{seed}", seed=seed, optimizer=cfg.optimizers[name].with_lr(lr),
                   model=cfg.model, init="torch_default", train_images=None, batch_size=c.batch_size,
                   max_steps=budget(c), divergence_loss=c.divergence_loss, evaluate=True,
                   eval_batch_size=c.eval_batch_size, target_loss=c.target_loss,
                   smoothing_window=c.smoothing_window, cost="smoothed", stop_margin=None,
                   labels={"optimizer": name, "lr": lr, "seed": seed})
        for name, lrs in c.lrs.items() for lr in lrs for seed in c.seeds
    ]


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.optimizer_grid
    cells = build_cells(cfg)
    outputs = inputs.run_cells(cells)
    table = cells_table(outputs)
    table["torch_name"] = [o.cell.optimizer.class_name for o in outputs]
    ranking = rank(table, c)
    score = f"{c.rank_by}_mean"
    best = ranking.iloc[0]
    sgd = ranking[ranking.optimizer == "sgd"]
    summary = {"cells": len(cells), "diverged_cells": int(table["diverged"].sum()), "rank_by": c.rank_by,
               "budget_steps": budget(c), "target_loss": c.target_loss, "smoothing_window": c.smoothing_window,
               "ranking": {r.optimizer: {k: getattr(r, k) for k in ("rank", "best_lr", score, f"{c.rank_by}_std",
                                                                    "test_accuracy_mean")}
                           for r in ranking.itertuples()}}
    return Result(
        metrics={f"best_{score}": best[score], f"sgd_{score}": sgd[score].iloc[0] if len(sgd) else None,
                 "diverged_cells": summary["diverged_cells"]},
        summary=summary,
        tables={"steps.csv": steps_table(outputs, LABELS, c.curve_stride, c.smoothing_window),
                "epochs.csv": epochs_table(outputs, LABELS), "cells.csv": table, "summary.csv": ranking,
                **curves(outputs, ranking, c)},
        made=("cells",),
        lines=[f"#{r.rank:<2} {r.optimizer:<17} best lr {r.best_lr if pd.notna(r.best_lr) else '-':<7} "
               f"{c.rank_by} {_fmt(getattr(r, score))} ± {_fmt(getattr(r, f'{c.rank_by}_std'))}  "
               f"test acc {_fmt(r.test_accuracy_mean)}  diverged lrs {r.diverged_lrs or '-'}"
               for r in ranking.itertuples()]
        + [f"{len(cells)} cells ({summary['diverged_cells']} diverged)"],
    )


def rank(table: pd.DataFrame, c: GridConfig) -> pd.DataFrame:
    """Per optimizer, the lr with the best mean `rank_by` over seeds, and the optimizers sorted by it.

    The same budget and seeds for every cell make the comparison fair; an lr at
    which any seed diverged (or, for steps_to_target, any seed missed the
    target) scores as the worst possible, so the best lr is one that works
    for every seed.
    """
    lower = RANK_BY[c.rank_by]
    worst = math.inf if lower else -math.inf
    cells = table.assign(**{m: pd.to_numeric(table[m]) for m in REPORTED})
    by_lr = cells.groupby(["optimizer", "lr"], sort=False).agg(
        diverged=("diverged", "any"), missing=(c.rank_by, lambda v: v.isna().any()), score=(c.rank_by, "mean"))
    by_lr["score"] = by_lr["score"].where(~(by_lr["diverged"] | by_lr["missing"]), worst)
    rows = []
    for name, lrs in c.lrs.items():
        scores = by_lr.loc[name, "score"].reindex(lrs)
        best = float(scores.idxmin() if lower else scores.idxmax())
        usable = math.isfinite(scores[best])
        at_best = cells[(cells.optimizer == name) & (cells.lr == best)]
        row: dict[str, Any] = {
            "optimizer": name, "torch_name": at_best["torch_name"].iloc[0], "best_lr": best if usable else None,
            "lrs": " ".join(f"{lr:g}" for lr in lrs),
            # The grid cannot tell whether a better lr lies beyond its edge.
            "best_lr_at_edge": usable and best in (min(lrs), max(lrs)),
            "diverged_lrs": " ".join(f"{lr:g}" for lr in lrs if by_lr.loc[(name, lr), "diverged"]),
            "seeds": len(c.seeds), "score": scores[best],
        }
        for metric in REPORTED:
            values = at_best[metric].replace([np.inf, -np.inf], np.nan) if usable else at_best[metric].iloc[:0]
            row |= {f"{metric}_{k}": values.agg(k) for k in STATS}
        row["reached"] = int(at_best["steps_to_target"].notna().sum()) if usable else 0
        row["steps_per_second_mean"] = float((at_best["steps"] / at_best["train_seconds"]).mean())
        rows.append(row)
    ranking = pd.DataFrame(rows).sort_values("score", ascending=lower, kind="stable").drop(columns="score")
    ranking.insert(0, "rank", range(1, len(ranking) + 1))
    return ranking.reset_index(drop=True)


def curves(outputs: list[CellOutput], ranking: pd.DataFrame, c: GridConfig) -> dict[str, pd.DataFrame]:
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
