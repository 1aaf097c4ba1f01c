"""Stage `momentum`: Fig 6-9, SGD with and without momentum (and Nesterov), steps to a cost of 0.1.

Every (setup, optimizer, seed) is one cell (`beyond_gd.studies.cells`), run
through the launcher of the `launcher` section; each stops once its cost has
reached the target plus `stop_margin` steps, or at its setup's `max_steps`
("not reached").
A setup is the PyTorch baseline or the book's first-edition experiment
(FIGURES.md, Fig 6-9), each with its own definition of the cost.

Outputs (in `--out`): `cells/` (one folder per cell: its config, result.json,
steps.csv, epochs.csv; `conf/` the launch's Hydra configs), `steps.csv`
(setup, optimizer, seed, step, loss, smoothed; every `curve_stride`-th step),
`epochs.csv` (per cell and epoch: the last mini-batch's cost, the first
edition's plotted quantity), `runs.csv` (per cell: steps to the target by each
cost, how it stopped), `summary.csv` (per setup and optimizer: steps to the
target by the setup's cost over seeds (n reached, mean, std, min, max), the
ratio baseline/optimizer paired by seed, the book's numbers, and the same by
each cost: `smoothed_*`, `epoch_last_*`), `curves/<setup>-<optimizer>.csv` (step, cost: the setup's cost, mean
over seeds, for `dvc plots`) and `metrics.json`.
"""

from __future__ import annotations

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
from beyond_gd.studies.cells import COSTS, INITS, CellConfig, check_seeds, describe, optimizer_entries, smooth
from beyond_gd.tracking import stage_run, write_metrics

STAGE = "momentum"
OUTPUTS = ("steps.csv", "epochs.csv", "runs.csv", "summary.csv", "metrics.json")
LABELS = ["setup", "optimizer", "seed"]
STATS = ("mean", "std", "min", "max")


@dataclass
class SetupConfig:
    batch_size: int = required(gt=0)
    # The first N training images; null: all 60,000.
    train_images: int | None = required(gt=0, optional=True)
    init: str = required(choices=INITS)
    # A ReLU after the last Linear (the first edition's ReLU on the logits).
    final_relu: bool = required()
    # Which cost gives the headline steps to the target: `smoothed` or `epoch_last`.
    cost: str = required(choices=COSTS)
    # The step cap: a run that has not reached the target by then is "not reached".
    max_steps: int = required(gt=0)


@dataclass
class MomentumConfig:
    # Names of entries of the `optimizers` section (the book's constructor calls).
    optimizers: list[str] = required(nonempty=True)
    # The optimizer every ratio divides: baseline steps / optimizer steps.
    baseline: str = required(nonempty=True)
    seeds: list[int] = required(nonempty=True)
    setups: dict[str, Any] = required(nonempty=True)
    target_loss: float = required(gt=0)
    smoothing_window: int = required(gt=0)
    stop_margin: int = required(ge=0)
    divergence_loss: float = required(gt=0)
    curve_stride: int = required(gt=0)
    # The book's numbers (optimizer -> steps to 0.1), printed beside ours.
    book_steps: dict[str, int] = required()


def load_config(params: dict) -> tuple[MomentumConfig, dict[str, SetupConfig], dict[str, OptimizerConfig]]:
    """The `momentum` section with its setups, and the optimizers it names, checked across keys."""
    cfg = section(params, STAGE, MomentumConfig)
    setups = {name: section(cfg.setups, name, SetupConfig, parent=f"{STAGE}.setups") for name in cfg.setups}
    optimizers = optimizer_entries(params, cfg.optimizers, f"{STAGE}.optimizers")
    if cfg.baseline not in cfg.optimizers:
        raise ConfigError(f"{STAGE}.baseline: {cfg.baseline!r} is not in {STAGE}.optimizers ({', '.join(cfg.optimizers)})")
    for name in cfg.book_steps:
        if name not in cfg.optimizers:
            raise ConfigError(f"{STAGE}.book_steps.{name}: not in {STAGE}.optimizers ({', '.join(cfg.optimizers)})")
    check_seeds(cfg.seeds, f"{STAGE}.seeds")
    return cfg, setups, optimizers


def build_cells(cfg: MomentumConfig, setups: dict[str, SetupConfig], optimizers: dict[str, OptimizerConfig],
                model: ModelConfig) -> list[CellConfig]:
    """One cell per (optimizer, setup, seed), the slowest optimizer (the first listed) dispatched first."""
    return [
        CellConfig(id=f"{setup_name}-{opt_name}-s{seed}", seed=seed, optimizer=optimizers[opt_name],
                   model=ModelConfig(model.in_dim, model.hidden_dim, model.out_dim, setup.final_relu),
                   init=setup.init, train_images=setup.train_images, batch_size=setup.batch_size,
                   max_steps=setup.max_steps, divergence_loss=cfg.divergence_loss, evaluate=False,
                   eval_batch_size=None, target_loss=cfg.target_loss, smoothing_window=cfg.smoothing_window,
                   cost=setup.cost, stop_margin=cfg.stop_margin,
                   labels={"setup": setup_name, "optimizer": opt_name, "seed": seed})
        for opt_name in cfg.optimizers for setup_name, setup in setups.items() for seed in cfg.seeds
    ]


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--data", default="data/raw", help="torchvision root holding MNIST/raw")
    p.add_argument("--out", default="data/momentum", help="folder for the outputs")
    args = p.parse_args(argv)
    params = load_params(args.params)
    cfg, setups, optimizers = load_config(params)
    runtime = section(params, "runtime", RuntimeConfig)
    model = section(params, "model", ModelConfig)
    launcher = section(params, "launcher", LauncherConfig)
    read = {STAGE: as_dict(cfg), "optimizers": {k: as_dict(v) for k, v in optimizers.items()},
            "runtime": as_dict(runtime), "model": as_dict(model), "launcher": as_dict(launcher)}
    cells = build_cells(cfg, setups, optimizers, model)

    out = Path(args.out)
    with stage_run(STAGE, read, resolve_device(runtime.device)) as run:
        outputs, wall = run_stage_cells(STAGE, cells, out, args.data, runtime.device, launcher, run.info.run_id)

        runs = runs_table(outputs)
        rows = summary_rows(runs, cfg, setups)
        summary = pd.DataFrame(rows)
        # The target and smoothing travel with the numbers, so the report needs no other stage's params.
        metrics = {"wall_seconds": wall, "cells": len(cells), "target_loss": cfg.target_loss,
                   "smoothing_window": cfg.smoothing_window, "baseline": cfg.baseline, "setups": {
            s: {r["optimizer"]: {k: r[k] for k in ("reached", "steps_mean", "steps_std", "ratio_mean", "ratio_std",
                                                   "smoothed_steps_mean", "epoch_last_steps_mean")}
                for r in rows if r["setup"] == s} for s in setups}}
        with staged(*(out / n for n in OUTPUTS)) as paths:
            tmp = dict(zip(OUTPUTS, paths, strict=True))
            steps_table(outputs, LABELS, cfg.curve_stride, cfg.smoothing_window).to_csv(tmp["steps.csv"], index=False)
            epochs_table(outputs, LABELS)[LABELS + ["epoch", "step", "epoch_last_loss", "seconds"]].to_csv(
                tmp["epochs.csv"], index=False)
            runs.to_csv(tmp["runs.csv"], index=False)
            summary.to_csv(tmp["summary.csv"], index=False)
            write_metrics(tmp["metrics.json"], metrics)
        write_curves(outputs, cfg, setups, out / "curves")
        mlflow.log_metrics({"wall_seconds": wall, **{
            f"{r.setup}.{r.optimizer}.{k}": r[k] for _, r in summary.iterrows()
            for k in ("steps_mean", "steps_std", "ratio_mean", "ratio_std") if pd.notna(r[k])}})
    for _, r in summary.iterrows():
        steps = "not reached" if pd.isna(r.steps_mean) else f"{r.steps_mean:,.0f} ± {_fmt(r.steps_std)}"
        ratio = "" if pd.isna(r.ratio_mean) or r.optimizer == cfg.baseline else f"; ratio {cfg.baseline}/{r.optimizer} {r.ratio_mean:.2f} ± {_fmt(r.ratio_std, '.2f')}"
        print(f"{STAGE}: {r.setup:<20} {r.optimizer:<9} steps to {cfg.target_loss:g} ({r.cost}): {steps} "
              f"[{r.reached}/{r.seeds} seeds]{ratio}")
    print(f"{STAGE}: {len(cells)} cells in {wall:.0f} s ({launcher.engine})")


def runs_table(outputs: list[CellOutput]) -> pd.DataFrame:
    table = cells_table(outputs)
    table["cost"] = [o.cell.cost for o in outputs]
    table["reached"] = table["steps_to_target"].notna()
    return table[LABELS + ["cost", "steps_to_target", "reached", "steps_to_target_smoothed",
                           "steps_to_target_epoch_last", "stopped_by", "diverged", "steps", "train_seconds",
                           "device", "id", "mlflow_run_id"]]


def summary_rows(runs: pd.DataFrame, cfg: MomentumConfig, setups: dict[str, SetupConfig]) -> list[dict[str, Any]]:
    """Steps to the target over seeds, and baseline/optimizer ratios paired by seed: by the setup's
    own cost (`steps_*`, `ratio_*`) and by each cost (`smoothed_*`, `epoch_last_*`)."""
    rows = []
    for setup in setups:
        mine = runs[runs.setup == setup]
        for opt in cfg.optimizers:
            book, book_base = cfg.book_steps.get(opt), cfg.book_steps.get(cfg.baseline)
            row: dict[str, Any] = {"setup": setup, "optimizer": opt, "cost": setups[setup].cost,
                                   "seeds": len(cfg.seeds)}
            for prefix, column in (("", "steps_to_target"), *((f"{c}_", f"steps_to_target_{c}") for c in COSTS)):
                by = {o: mine[mine.optimizer == o].set_index("seed")[column] for o in (opt, cfg.baseline)}
                steps = describe([_none(v) for v in by[opt]])
                ratios = describe([_ratio(by[cfg.baseline].get(seed), by[opt].get(seed)) for seed in cfg.seeds])
                row |= {f"{prefix}reached": steps["n"], **{f"{prefix}steps_{k}": steps[k] for k in STATS},
                        **{f"{prefix}ratio_{k}": ratios[k] for k in STATS}}
                if not prefix:
                    row |= {"book_steps": book, "book_ratio": book_base / book if book and book_base else None}
            rows.append(row)
    return rows


def write_curves(outputs: list[CellOutput], cfg: MomentumConfig, setups: dict[str, SetupConfig], folder: Path) -> None:
    """Per setup and optimizer, the setup's cost averaged over seeds, up to the shortest seed's run."""
    folder.mkdir(parents=True, exist_ok=True)
    for setup_name, setup in setups.items():
        for opt in cfg.optimizers:
            group = [o for o in outputs if o.cell.labels["setup"] == setup_name and o.cell.labels["optimizer"] == opt]
            if setup.cost == "smoothed":
                n = min(len(o.steps) for o in group)
                cost = np.mean([smooth(o.steps["loss"].to_numpy()[:n], cfg.smoothing_window) for o in group], axis=0)
                step = np.arange(1, n + 1)
                keep = step % cfg.curve_stride == 0
                step, cost = step[keep], cost[keep]
            else:
                n = min(len(o.epochs) for o in group)
                cost = np.mean([o.epochs["epoch_last_loss"].to_numpy()[:n] for o in group], axis=0)
                step = group[0].epochs["step"].to_numpy()[:n]
            pd.DataFrame({"step": step, "cost": cost}).to_csv(folder / f"{setup_name}-{opt}.csv", index=False)


def _ratio(base: float | None, other: float | None) -> float | None:
    base, other = _none(base), _none(other)
    return base / other if base is not None and other is not None else None


def _none(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _fmt(value: Any, spec: str = ",.0f") -> str:
    return "n/a" if value is None or pd.isna(value) else format(value, spec)


if __name__ == "__main__":
    cli(main)
