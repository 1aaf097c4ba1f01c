"""L-BFGS as torch documents it (full-batch, strong-Wolfe line search) beside first-order methods, per
gradient evaluation and per second.

Every method trains the MLP from the same initialisations on the same subset
of the training images through the one training loop, as training cells run by
`inputs.run_cells`: L-BFGS with the whole subset as its batch, the first-order
methods (`compare`) in mini-batches at the learning rate the optimizer grid
found best, for about as many example-gradients (gradient evaluations x batch
size). At each epoch end a cell evaluates the loss of the whole subset and the
test accuracy, and counts its gradient evaluations.

Tables: `epochs.csv` (optimizer, seed, epoch, step, evaluations,
example_gradients, seconds, train_loss, test_accuracy, ...); `summary.csv` (per
optimizer: its lr, batch, steps, the loss and accuracy at the end over seeds,
example-gradients and seconds used, and the loss each reached by the compute
and by the seconds L-BFGS used); `cells/`, each cell's own artifact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_gd.cells import CellConfig, cells_table, epochs_table
from beyond_gd.config import ModelConfig, RuntimeConfig, required
from beyond_gd.errors import DataError
from beyond_gd.launch import LauncherConfig
from beyond_gd.optim.registry import OptimizerSpec, check_named
from beyond_gd.study import Inputs, Result

LABELS = ["optimizer", "seed"]


@dataclass
class LbfgsConfig:
    # The `optimizers` entry run full-batch, and the first-order entries beside it.
    optimizer: str = required(nonempty=True)
    compare: list[str] = required(nonempty=True, distinct=True)
    train_images: int = required(gt=0)
    # L-BFGS's budget in full-batch steps; the others' in epochs of batch_size.
    steps: int = required(gt=0)
    batch_size: int = required(gt=0)
    epochs: int = required(gt=0)
    seeds: list[int] = required(nonempty=True, distinct=True, each_ge=0)
    divergence_loss: float = required(gt=0)
    eval_batch_size: int = required(gt=0)


@dataclass
class Config:
    lbfgs: LbfgsConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig
    launcher: LauncherConfig

    def check(self) -> None:
        check_named([self.lbfgs.optimizer, *self.lbfgs.compare], self.optimizers, "lbfgs")


def build_cells(cfg: Config, lrs: dict[str, float]) -> list[CellConfig]:
    """L-BFGS full-batch and each compared method at `lrs`, for every seed (L-BFGS dispatched first)."""
    c = cfg.lbfgs
    steps_per_epoch = -(-c.train_images // c.batch_size)
    runs = [(c.optimizer, cfg.optimizers[c.optimizer], c.train_images, c.steps)] + [
        (name, cfg.optimizers[name].with_lr(lrs[name]), c.batch_size, c.epochs * steps_per_epoch) for name in c.compare]
    return [CellConfig(id=f"{name}-s{seed}", seed=seed, optimizer=spec, model=cfg.model, init="torch_default",
                       train_images=c.train_images, batch_size=batch, max_steps=steps,
                       divergence_loss=c.divergence_loss, evaluate=True, eval_batch_size=c.eval_batch_size,
                       target_loss=1.0, smoothing_window=1, cost="smoothed", stop_margin=None,
                       labels={"optimizer": name, "seed": seed, "batch_size": batch})
            for name, spec, batch, steps in runs for seed in c.seeds]


def grid_lrs(summary: pd.DataFrame, names: list[str]) -> dict[str, float]:
    """The best learning rates the optimizer grid found (its summary.csv)."""
    best = summary.set_index("optimizer")["best_lr"]
    missing = [n for n in names if n not in best or pd.isna(best[n])]
    if missing:
        raise DataError(f"optimizer_grid/summary.csv: no best lr for {', '.join(missing)} (every lr diverged, or "
                        "not in the grid); lbfgs.compare names optimizers of the grid")
    return {n: float(best[n]) for n in names}


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.lbfgs
    lrs = grid_lrs(pd.read_csv(inputs.folder("optimizer_grid") / "summary.csv"), c.compare)
    cells = build_cells(cfg, lrs)
    outputs = inputs.run_cells(cells)
    epochs = epochs_table(outputs, LABELS)
    batch = {o.cell.labels["optimizer"]: o.cell.batch_size for o in outputs}
    epochs.insert(epochs.columns.get_loc("evaluations") + 1, "example_gradients",
                  epochs["evaluations"] * epochs["optimizer"].map(batch))
    table = cells_table(outputs)
    summary = summarize(epochs, table, c, lrs | {c.optimizer: cfg.optimizers[c.optimizer].lr}, batch)
    ref = summary.set_index("optimizer")
    return Result(
        metrics={"lbfgs_train_loss": ref.loc[c.optimizer, "train_loss_mean"],
                 **{f"{n}_train_loss_at_lbfgs_compute": ref.loc[n, "train_loss_at_lbfgs_compute"] for n in c.compare}},
        summary={"optimizer": c.optimizer, "compare": c.compare, "train_images": c.train_images,
                 "seeds": len(c.seeds), "lbfgs": {k: cfg.optimizers[c.optimizer].default(k) for k in
                                                  ("max_iter", "history_size", "line_search_fn")},
                 "results": {r.optimizer: {k: getattr(r, k) for k in ("lr", "train_loss_mean", "example_gradients",
                                                                      "seconds", "train_loss_at_lbfgs_compute",
                                                                      "train_loss_at_lbfgs_seconds")}
                             for r in summary.itertuples()}},
        tables={"epochs.csv": epochs, "summary.csv": summary},
        made=("cells",),
        lines=[f"{r.optimizer:<13} lr {r.lr:g} batch {r.batch_size}: loss {r.train_loss_mean:.4f} after "
               f"{r.example_gradients:,.0f} example-gradients in {r.seconds:.1f} s; at L-BFGS's compute "
               f"{r.train_loss_at_lbfgs_compute:.4f}, at its seconds {r.train_loss_at_lbfgs_seconds:.4f}"
               for r in summary.itertuples()],
    )


def summarize(epochs: pd.DataFrame, table: pd.DataFrame, c: LbfgsConfig, lrs: dict[str, float],
              batch: dict[str, int]) -> pd.DataFrame:
    """Per optimizer over seeds: the end of its budget, and its loss where L-BFGS's compute and time ran out."""
    last = epochs.groupby(LABELS).tail(1)
    ref = last[last.optimizer == c.optimizer]
    # L-BFGS's compute and time: the most any of its seeds used (its own row is then its end).
    compute, seconds = ref["example_gradients"].max(), ref["seconds"].max()
    rows = []
    for name in [c.optimizer, *c.compare]:
        mine = epochs[epochs.optimizer == name]
        ends = last[last.optimizer == name]
        rows.append({
            "optimizer": name, "lr": lrs[name], "batch_size": batch[name],
            "steps": int(table.loc[table.optimizer == name, "steps"].mean()),
            "train_loss_mean": ends["train_loss"].mean(), "train_loss_std": ends["train_loss"].std(),
            "test_accuracy_mean": ends["test_accuracy"].mean(),
            "example_gradients": ends["example_gradients"].mean(), "evaluations": ends["evaluations"].mean(),
            "seconds": ends["seconds"].mean(),
            "diverged": bool(table.loc[table.optimizer == name, "diverged"].any()),
            # The last epoch end within L-BFGS's compute (its time), mean over seeds.
            "train_loss_at_lbfgs_compute": _within(mine, "example_gradients", compute),
            "train_loss_at_lbfgs_seconds": _within(mine, "seconds", seconds),
        })
    return pd.DataFrame(rows)


def _within(rows: pd.DataFrame, axis: str, limit: float) -> float:
    """Mean over seeds of the train loss at each seed's last epoch end with `axis` <= limit."""
    inside = rows[rows[axis] <= limit * (1 + 1e-9)]
    values = inside.groupby("seed").tail(1)["train_loss"]
    return float(values.mean()) if len(values) else float(np.nan)
