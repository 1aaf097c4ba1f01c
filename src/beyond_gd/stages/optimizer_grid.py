"""Stage `optimizer_grid`: every optimizer of the chapter x learning rates x seeds on the MLP.

Each (optimizer, lr, seed) is one cell (`beyond_gd.studies.cells`) with its
own config and artifact, run through the launcher of the `launcher` section
(joblib processes by default; SLURM through submitit: see `beyond_gd.launch`).
Every cell gets the same budget (`epochs` of `batch_size`, or `max_steps`); a
cell whose cost turns NaN/inf or exceeds `divergence_loss` stops there and is
recorded as diverged, and the grid goes on. Each optimizer is then ranked at
its own best learning rate (by the mean over seeds of `rank_by`; an lr at
which any seed diverged is never "best").

Outputs (in `--out`): `cells/` (one folder per cell: `.hydra/config.yaml`,
result.json, steps.csv, epochs.csv; `conf/` the launch's Hydra configs),
`steps.csv` (optimizer, lr, seed, step, loss, smoothed; every
`curve_stride`-th step), `epochs.csv` (optimizer, lr, seed, epoch, step,
seconds, train/test loss and accuracy), `cells.csv` (one row per cell: steps
and seconds to `target_loss`, final loss, test accuracy, diverged, wall time,
device), `summary.csv` (the ranking: per optimizer its best lr, mean/std/min/
max over seeds), `curves/<optimizer>.csv` (step, loss: smoothed cost at the
best lr, mean over seeds, for `dvc plots`) and `metrics.json`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from beyond_gd.config import ModelConfig, OptimizerConfig, RuntimeConfig, as_dict, load_params, required, section
from beyond_gd.errors import ConfigError
from beyond_gd.launch import CellOutput, LauncherConfig, cells_table, epochs_table, run_stage_cells, steps_table
from beyond_gd.runtime import resolve_device
from beyond_gd.stages.common import cli, parser, staged
from beyond_gd.studies.cells import CellConfig, check_seeds, describe, optimizer_entries, smooth
from beyond_gd.tracking import stage_run, write_metrics

STAGE = "optimizer_grid"
OUTPUTS = ("steps.csv", "epochs.csv", "cells.csv", "summary.csv", "metrics.json")
LABELS = ["optimizer", "lr", "seed"]
# What a ranking can be by, and whether lower is better.
RANK_BY = {"final_loss": True, "test_loss": True, "test_accuracy": False, "steps_to_target": True}
MNIST_TRAIN_IMAGES = 60_000  # the budget in epochs is counted over the whole training split


@dataclass
class GridConfig:
    # optimizer (an entry of the `optimizers` section) -> its learning rates.
    # Cells are dispatched in this order.
    lrs: dict[str, list[float]] = required(nonempty=True)
    seeds: list[int] = required(nonempty=True)
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


def load_config(params: dict) -> tuple[GridConfig, dict[str, OptimizerConfig]]:
    cfg = section(params, STAGE, GridConfig)
    for name, lrs in cfg.lrs.items():
        if not lrs or min(lrs) <= 0 or len(set(lrs)) != len(lrs):
            raise ConfigError(f"{STAGE}.lrs.{name}: must be distinct learning rates > 0, got {lrs}")
    check_seeds(cfg.seeds, f"{STAGE}.seeds")
    return cfg, optimizer_entries(params, list(cfg.lrs), f"{STAGE}.lrs")


def build_cells(cfg: GridConfig, optimizers: dict[str, OptimizerConfig], model: ModelConfig) -> list[CellConfig]:
    budget = cfg.epochs * math.ceil(MNIST_TRAIN_IMAGES / cfg.batch_size)
    return [
        CellConfig(id=f"{name}-lr{lr:g}-s{seed}", seed=seed,
                   optimizer=OptimizerConfig(optimizers[name].name, lr, optimizers[name].kwargs), model=model,
                   init="torch_default", train_images=None, batch_size=cfg.batch_size,
                   max_steps=min(budget, cfg.max_steps or budget), divergence_loss=cfg.divergence_loss,
                   evaluate=True, eval_batch_size=cfg.eval_batch_size, target_loss=cfg.target_loss,
                   smoothing_window=cfg.smoothing_window, cost="smoothed", stop_margin=None,
                   labels={"optimizer": name, "lr": lr, "seed": seed})
        for name, lrs in cfg.lrs.items() for lr in lrs for seed in cfg.seeds
    ]


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--data", default="data/raw", help="torchvision root holding MNIST/raw")
    p.add_argument("--out", default="data/optimizer_grid", help="folder for the outputs")
    args = p.parse_args(argv)
    params = load_params(args.params)
    cfg, optimizers = load_config(params)
    runtime = section(params, "runtime", RuntimeConfig)
    model = section(params, "model", ModelConfig)
    launcher = section(params, "launcher", LauncherConfig)
    read = {STAGE: as_dict(cfg), "optimizers": {k: as_dict(v) for k, v in optimizers.items()},
            "runtime": as_dict(runtime), "model": as_dict(model), "launcher": as_dict(launcher)}
    cells = build_cells(cfg, optimizers, model)

    out = Path(args.out)
    with stage_run(STAGE, read, resolve_device(runtime.device)) as run:
        outputs, wall = run_stage_cells(STAGE, cells, out, args.data, runtime.device, launcher, run.info.run_id)

        table = cells_table(outputs)
        table["torch_name"] = [o.cell.optimizer.name for o in outputs]
        ranking = rank(table, cfg)
        metrics = {"wall_seconds": wall, "cells": len(cells), "diverged_cells": int(table["diverged"].sum()),
                   "rank_by": cfg.rank_by, "budget_steps": cells[0].max_steps, "target_loss": cfg.target_loss,
                   "smoothing_window": cfg.smoothing_window,
                   "ranking": {r["optimizer"]: {k: r[k] for k in ("rank", "best_lr", f"{cfg.rank_by}_mean",
                                                                   f"{cfg.rank_by}_std", "test_accuracy_mean")}
                               for r in ranking}}
        with staged(*(out / n for n in OUTPUTS)) as paths:
            tmp = dict(zip(OUTPUTS, paths, strict=True))
            steps_table(outputs, LABELS, cfg.curve_stride, cfg.smoothing_window).to_csv(tmp["steps.csv"], index=False)
            epochs_table(outputs, LABELS).to_csv(tmp["epochs.csv"], index=False)
            table.to_csv(tmp["cells.csv"], index=False)
            pd.DataFrame(ranking).to_csv(tmp["summary.csv"], index=False)
            write_metrics(tmp["metrics.json"], metrics)
        write_curves(outputs, ranking, cfg, out / "curves")
        mlflow.log_metrics({"wall_seconds": wall, "diverged_cells": metrics["diverged_cells"], **{
            f"{r['optimizer']}.{k}": r[k] for r in ranking for k in ("rank", "best_lr", f"{cfg.rank_by}_mean")
            if r[k] is not None}})
    for r in ranking:
        score = r[f"{cfg.rank_by}_mean"]
        print(f"{STAGE}: #{r['rank']:<2} {r['optimizer']:<17} best lr {r['best_lr'] if r['best_lr'] else '-':<7} "
              f"{cfg.rank_by} {_fmt(score)} ± {_fmt(r[f'{cfg.rank_by}_std'])}  "
              f"test acc {_fmt(r['test_accuracy_mean'])}  diverged lrs {r['diverged_lrs'] or '-'}")
    print(f"{STAGE}: {len(cells)} cells ({metrics['diverged_cells']} diverged) in {wall:.0f} s ({launcher.engine})")


def rank(table: pd.DataFrame, cfg: GridConfig) -> list[dict[str, Any]]:
    """Per optimizer, the lr with the best mean `rank_by` over seeds, and the optimizers sorted by it.

    The same budget and seeds for every cell make the comparison fair; an lr at
    which any seed diverged (or, for steps_to_target, any seed missed the
    target) scores as the worst possible, so the best lr is one that works
    for every seed.
    """
    lower = RANK_BY[cfg.rank_by]
    worst = math.inf if lower else -math.inf
    rows = []
    for name, lrs in cfg.lrs.items():
        mine = table[table.optimizer == name]
        scores = {}
        for lr in lrs:
            cells = mine[mine.lr == lr]
            values = [_value(v) for v in cells[cfg.rank_by]]
            ok = not cells["diverged"].any() and None not in values
            scores[lr] = float(np.mean(values)) if ok else worst
        best = (min if lower else max)(lrs, key=lambda lr: scores[lr])
        usable = math.isfinite(scores[best])
        at_best = mine[mine.lr == best]
        row: dict[str, Any] = {
            "optimizer": name, "torch_name": at_best["torch_name"].iloc[0], "best_lr": best if usable else None,
            "lrs": " ".join(f"{lr:g}" for lr in lrs),
            # The grid cannot tell whether a better lr lies beyond its edge.
            "best_lr_at_edge": usable and best in (min(lrs), max(lrs)),
            "diverged_lrs": " ".join(f"{lr:g}" for lr in lrs if mine[mine.lr == lr]["diverged"].any()),
            "seeds": len(cfg.seeds), "score": scores[best],
        }
        for metric in ("final_loss", "test_accuracy", "test_loss", "steps_to_target", "seconds_to_target",
                       "train_seconds"):
            stats = describe([_value(v) for v in at_best[metric]]) if usable else describe([])
            row |= {f"{metric}_{k}": stats[k] for k in ("mean", "std", "min", "max")}
        row["reached"] = int(at_best["steps_to_target"].notna().sum()) if usable else 0
        row["steps_per_second_mean"] = float((at_best["steps"] / at_best["train_seconds"]).mean())
        rows.append(row)
    rows.sort(key=lambda r: r["score"] if lower else -r["score"])
    for i, row in enumerate(rows, 1):
        row["rank"] = i
        del row["score"]
    return [{"rank": r.pop("rank"), **r} for r in rows]


def write_curves(outputs: list[CellOutput], ranking: list[dict[str, Any]], cfg: GridConfig, folder: Path) -> None:
    """Per optimizer at its best lr: the smoothed cost, mean over seeds (none if every lr diverged)."""
    folder.mkdir(parents=True, exist_ok=True)
    for r in ranking:
        group = [o for o in outputs if o.cell.labels["optimizer"] == r["optimizer"] and o.cell.labels["lr"] == r["best_lr"]]
        n = min((len(o.steps) for o in group), default=0)  # 0: every lr diverged, an empty curve
        loss = np.mean([smooth(o.steps["loss"].to_numpy()[:n], cfg.smoothing_window) for o in group] or [[]], axis=0)
        step = np.arange(1, n + 1)
        keep = step % cfg.curve_stride == 0
        pd.DataFrame({"step": step[keep], "loss": loss[keep]}).to_csv(folder / f"{r['optimizer']}.csv", index=False)


def _value(v: Any) -> float | None:
    return None if v is None or pd.isna(v) else float(v)


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4g}"


if __name__ == "__main__":
    cli(main)
