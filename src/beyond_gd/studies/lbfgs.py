"""L-BFGS as torch documents it (full-batch, strong-Wolfe line search) beside first-order methods and
non-linear conjugate gradient, per gradient evaluation and per second.

Every method trains the MLP from the same initialisations on the same subset
of the training images. L-BFGS (the whole subset as its batch) and the
first-order methods (`compare`, in mini-batches at the learning rate the
optimizer grid found best, for about as many example-gradients: gradient
evaluations x batch size) run through the one training loop, as training
cells run by `inputs.run_cells`. A cell evaluates the loss of the whole
subset and the test set at its epoch ends (L-BFGS at each of its steps, the
first-order methods at every `eval_every`-th and at the budget's end) and
counts its gradient evaluations. Then, where `cg` is on, SciPy's
Polak-Ribiere CG (`scipy.optimize.minimize(method="CG")`, full batch, through
`second_order.flat_objective`) runs in this process from each seed's same
init, for as many gradient evaluations as L-BFGS used on that seed; its loss
is recorded after every iteration, its test accuracy at the end.

Tables: `epochs.csv` (optimizer, seed, epoch, step, evaluations,
example_gradients, seconds, train_loss, test_accuracy, ...; for `cg` one row
per CG iteration, its "epoch" and "step" the iteration); `summary.csv` (per
optimizer, `cg` last: its lr (none for CG), batch, steps, the loss and
accuracy at the end over seeds, example-gradients and seconds used, and the
loss each reached by the compute and by the seconds L-BFGS used); `cells/`,
each cell's own artifact. summary.json also holds the network's parameter
count and what BFGS's dense inverse Hessian and L-BFGS's history would hold
for it (`second_order.memory_bytes`).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.optimize
import torch

from beyond_gd.cell_tables import best_lrs, cells_table, epochs_table
from beyond_gd.cells import EPOCH_COLUMNS, CellConfig, EpochRow
from beyond_gd.config import ModelConfig, RuntimeConfig, entries, optimizer_names, required
from beyond_gd.data.mnist import load_tensors
from beyond_gd.launch import LauncherConfig
from beyond_gd.model import build_model
from beyond_gd.optim import second_order
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.runtime import seed_everything
from beyond_gd.study import Inputs, Result
from beyond_gd.training import evaluate, step_budget

LABELS = ["optimizer", "seed"]
# SciPy's non-linear CG in the tables' `optimizer` column.
CG = "cg"


@dataclass
class LbfgsConfig:
    # The `optimizers` entry run full-batch, and the first-order entries beside it.
    optimizer: str = optimizer_names(nonempty=True)
    compare: list[str] = optimizer_names(nonempty=True, distinct=True)
    train_images: int = required(gt=0)
    # L-BFGS's budget in full-batch steps; the others' in epochs of batch_size.
    steps: int = required(gt=0)
    batch_size: int = required(gt=0)
    epochs: int = required(gt=0)
    seeds: list[int] = required(nonempty=True, distinct=True, each_ge=0)
    divergence_loss: float = required(gt=0)
    eval_batch_size: int = required(gt=0)
    # The first-order methods evaluate at every eval_every-th epoch end and at their budget's end; L-BFGS
    # at every step.
    eval_every: int = required(gt=0)
    # SciPy's Polak-Ribiere CG, full batch, for as many gradient evaluations as L-BFGS used on each seed.
    cg: bool = required()


@dataclass
class Config:
    lbfgs: LbfgsConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig = entries("device")  # the cells' threads are the launcher's
    launcher: LauncherConfig


def build_cells(cfg: Config, lrs: dict[str, float]) -> list[CellConfig]:
    """L-BFGS full-batch and each compared method at `lrs`, for every seed (L-BFGS dispatched first)."""
    c = cfg.lbfgs
    first_order = step_budget(c.epochs, c.train_images, c.batch_size)
    runs = [(c.optimizer, cfg.optimizers[c.optimizer], c.train_images, c.steps)] + [
        (name, cfg.optimizers[name].with_lr(lrs[name]), c.batch_size, first_order) for name in c.compare]
    # No target: the study compares losses at equal compute, not steps to a cost.
    return [CellConfig(id=f"{name}-s{seed}", seed=seed, optimizer=spec, model=cfg.model, init="torch_default",
                       train_images=c.train_images, batch_size=batch, max_steps=steps,
                       divergence_loss=c.divergence_loss, eval_batch_size=c.eval_batch_size,
                       eval_every=1 if name == c.optimizer else c.eval_every,
                       labels={"optimizer": name, "seed": seed, "batch_size": batch})
            for name, spec, batch, steps in runs for seed in c.seeds]


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.lbfgs
    lrs = best_lrs(pd.read_csv(inputs.folder("optimizer_grid") / "summary.csv"), c.compare, "lbfgs.compare")
    cells = build_cells(cfg, lrs)
    outputs = inputs.run_cells(cells)
    epochs = epochs_table(outputs, LABELS)
    table = cells_table(outputs)
    batch = {o.cell.labels["optimizer"]: o.cell.batch_size for o in outputs}
    lrs = lrs | {c.optimizer: cfg.optimizers[c.optimizer].lr}  # CG has none: NaN
    budgets: dict[int, int] = {}
    if c.cg:
        # Each seed's CG gets the gradient evaluations L-BFGS made from the same init.
        budgets = {int(k): int(v) for k, v in table[table.optimizer == c.optimizer]
                   .set_index("seed")["evaluations"].items()}
        cg_epochs, cg_table = run_cg(cfg, inputs, budgets)
        epochs, table = pd.concat([epochs, cg_epochs], ignore_index=True), pd.concat([table, cg_table])
        batch, lrs = batch | {CG: c.train_images}, lrs | {CG: math.nan}
    epochs.insert(epochs.columns.get_loc("evaluations") + 1, "example_gradients",
                  epochs["evaluations"] * epochs["optimizer"].map(batch))
    summary = summarize(epochs, table, c, lrs, batch)
    ref = summary.set_index("optimizer")
    parameters = second_order.parameter_count(build_model(cfg.model))
    others = [*c.compare, *([CG] if c.cg else [])]
    return Result(
        metrics={"lbfgs_train_loss": ref.loc[c.optimizer, "train_loss_mean"],
                 **{f"{n}_train_loss_at_lbfgs_compute": ref.loc[n, "train_loss_at_lbfgs_compute"] for n in others}},
        summary={"optimizer": c.optimizer, "compare": c.compare, "train_images": c.train_images,
                 "seeds": len(c.seeds), "lbfgs": {k: cfg.optimizers[c.optimizer].default(k) for k in
                                                  ("max_iter", "history_size", "line_search_fn")},
                 "eval_every": c.eval_every,
                 "cg": {"ran": c.cg, "method": "scipy.optimize.minimize(method='CG'), Polak-Ribiere",
                        "max_evaluations": {str(k): v for k, v in budgets.items()}},
                 # What a quasi-Newton method would store for this network, in float32.
                 "parameters": parameters, "memory_bytes": second_order.memory_bytes(
                     parameters, cfg.optimizers[c.optimizer].default("history_size")),
                 "results": {r.optimizer: {k: getattr(r, k) for k in
                                           ("lr", "train_loss_mean", "example_gradients", "seconds",
                                            "train_loss_at_lbfgs_compute", "train_loss_at_lbfgs_seconds")}
                             for r in summary.itertuples()}},
        tables={"epochs.csv": epochs, "summary.csv": summary},
        made=("cells",),
        lines=[f"{r.optimizer:<13} lr {_lr(r.lr)} batch {r.batch_size}: loss {r.train_loss_mean:.4f} after "
               f"{r.example_gradients:,.0f} example-gradients in {r.seconds:.1f} s; at L-BFGS's compute "
               f"{r.train_loss_at_lbfgs_compute:.4f}, at its seconds {r.train_loss_at_lbfgs_seconds:.4f}"
               for r in summary.itertuples()],
    )


def run_cg(cfg: Config, inputs: Inputs, budgets: dict[int, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SciPy's CG full batch on the cells' training subset from each seed's init, `budgets[seed]` gradient
    evaluations: (its epochs.csv rows, one per iteration; its cells-table rows: optimizer, seed, steps,
    diverged, evaluations)."""
    c, device = cfg.lbfgs, inputs.torch_device
    x, y = load_tensors(inputs.folder("mnist"), train=True, device=device)
    x, y = x[: c.train_images], y[: c.train_images]  # the cells' subset (run_cell)
    x_test, y_test = load_tensors(inputs.folder("mnist"), train=False, device=device)
    frames, cells = [], []
    # The cells' threads, so that CG's seconds compare with theirs.
    with _threads(cfg.launcher.threads_per_job):
        for seed in c.seeds:
            seed_everything(seed)  # what run_cell does before build_model: the same init, deterministic kernels
            model = build_model(cfg.model).to(device)  # init torch_default: nn.Linear's own
            rows = cg_train(model, x, y, budgets[seed])
            last = rows[-1]
            last.train_loss, last.train_accuracy = evaluate(model, x, y, c.eval_batch_size)
            last.test_loss, last.test_accuracy = evaluate(model, x_test, y_test, c.eval_batch_size)
            frames.append(pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=EPOCH_COLUMNS)
                          .assign(optimizer=CG, seed=seed)[LABELS + EPOCH_COLUMNS])
            cells.append({"optimizer": CG, "seed": seed, "batch_size": c.train_images, "steps": last.step,
                          "evaluations": last.evaluations, "diverged": not math.isfinite(last.train_loss)})
    return pd.concat(frames, ignore_index=True), pd.DataFrame(cells)


def cg_train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, max_evaluations: int) -> list[EpochRow]:
    """Polak-Ribiere CG (SciPy, strong-Wolfe line search) on the mean loss over all of (x, y) from the
    model's parameters, until `max_evaluations` gradient evaluations (the iteration that reaches them ends)
    or SciPy stops; the model is left at the last iterate. One row per iteration: evaluations so far,
    seconds so far, the loss there (SciPy's, free: the line search computed it)."""
    fun, w0, calls = second_order.flat_objective(model, x, y)
    rows: list[EpochRow] = []
    started = time.perf_counter()

    def callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        k, loss = len(rows) + 1, float(intermediate_result.fun)
        rows.append(EpochRow(k, k, time.perf_counter() - started, loss, calls[0], train_loss=loss))
        if calls[0] >= max_evaluations:
            raise StopIteration  # SciPy ends there and returns this iterate

    # gtol 0: the budget ends it, not a gradient norm (SciPy's default, 1e-5, is an absolute norm).
    res = scipy.optimize.minimize(fun, w0, jac=True, method="CG", callback=callback,
                                  options={"maxiter": max_evaluations, "gtol": 0.0})
    params = list(model.parameters())
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(res.x, dtype=params[0].dtype, device=params[0].device),
                                            params)
    if not rows:  # stopped before its first iteration ended (a failed line search): the start is the end
        rows.append(EpochRow(0, 0, time.perf_counter() - started, float(res.fun), calls[0], train_loss=float(res.fun)))
    return rows


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _lr(lr: float) -> str:
    return "-" if pd.isna(lr) else f"{lr:g}"


def summarize(epochs: pd.DataFrame, table: pd.DataFrame, c: LbfgsConfig, lrs: dict[str, float],
              batch: dict[str, int]) -> pd.DataFrame:
    """Per optimizer over seeds: the end of its budget, and its loss where L-BFGS's compute and time ran out."""
    last = epochs.groupby(LABELS).tail(1)
    ref = last[last.optimizer == c.optimizer]
    # L-BFGS's compute and time: the most any of its seeds used (its own row is then its end).
    compute, seconds = ref["example_gradients"].max(), ref["seconds"].max()
    rows = []
    for name in [c.optimizer, *c.compare, *([CG] if CG in set(epochs.optimizer) else [])]:
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
    """Mean over seeds of the train loss at each seed's last evaluated epoch end with `axis` <= limit."""
    inside = rows[(rows[axis] <= limit * (1 + 1e-9)) & rows["train_loss"].notna()]
    values = inside.groupby("seed").tail(1)["train_loss"]
    return float(values.mean()) if len(values) else float(np.nan)
