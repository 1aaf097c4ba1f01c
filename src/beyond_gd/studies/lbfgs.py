"""L-BFGS as torch documents it (full-batch, strong-Wolfe line search) beside first-order methods and
non-linear conjugate gradient: the compute (example-gradients and seconds) each needs to reach fixed losses.

Every method trains the MLP from the same initialisations on the same subset
of the training images.

1. The first-order methods' learning rates are searched on that subset: for
   each method of `compare`, `search_factors` times the rate the optimizer
   grid found best (on its own images), each trained `search_epochs` epochs
   from the first seed's init as a training cell (`inputs.run_cells`); the
   rate of the lowest whole-subset loss at the end of that equal budget is
   taken (`search.csv`).
2. The first-order methods (`compare`, mini-batches at those rates, for about
   as many example-gradients as L-BFGS: gradient evaluations x batch size)
   run as training cells; a cell evaluates the loss of the whole subset and
   the test set at every `eval_every`-th epoch end and at its budget's end,
   in float32 (the cells' own evaluation).
3. L-BFGS (the whole subset as its batch) trains in this process through the
   same training loop, from the same init; after each of its steps a float64
   copy of the model evaluates the subset and the test set (training stays
   float32), and the full-batch loss of every gradient evaluation (the
   closure's own, float32) is kept.
4. Where `cg` is on, SciPy's Polak-Ribiere CG (`scipy.optimize.minimize(
   method="CG")`, full batch, through `second_order.flat_objective`) runs in
   this process from each seed's same init, for as many gradient evaluations
   as L-BFGS used on that seed, its loss kept at every evaluation, its final
   weights evaluated in float64.

Compute to a target (`targets`, far above float32's ~1e-7 resolution of a
cross-entropy): for the full-batch methods the first gradient evaluation whose
full-batch loss is at or below it; for the first-order methods, between the
last evaluated epoch end above it and the first at or below it (the init's
float64 loss the start), linear in log-loss on example-gradients and seconds
(`first_crossings`). A method that never gets there within its budget is
censored (reached false).

Tables: `epochs.csv` (optimizer, seed, epoch, step, evaluations,
example_gradients, seconds, train_loss, test_accuracy, ...; for `cg` one row
per CG iteration); `evaluations.csv` (the full-batch methods' loss at every
gradient evaluation); `targets.csv` (optimizer, seed, target, reached,
example_gradients, seconds, and the run's budget_example_gradients and
budget_seconds); `search.csv`; `summary.csv` (per optimizer, `cg` last: its lr
(none for CG), batch, steps, the final loss (`loss_dtype` says in which
precision it was evaluated) and accuracy over seeds, example-gradients and
seconds used, the loss each reached by the compute and by the seconds L-BFGS
used, and per target how many seeds reached it and their mean compute);
`cells/`, each cell's own artifact. summary.json also holds the network's
parameter count and what BFGS's dense inverse Hessian and L-BFGS's history
would hold for it (`second_order.memory_bytes`).
"""

from __future__ import annotations

import copy
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
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.launch import LauncherConfig
from beyond_gd.model import build_model
from beyond_gd.optim import second_order
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.runtime import seed_everything
from beyond_gd.study import Inputs, Result
from beyond_gd.training import EpochEnd, evaluate, step_budget, train

LABELS = ["optimizer", "seed"]
# SciPy's non-linear CG in the tables' `optimizer` column.
CG = "cg"
# A target must sit this many float32 epsilons (relative, of a nat) above zero: below it a float32
# cross-entropy of one image is round-off, and so is a crossing.
FLOAT32_FLOOR = 100 * float(np.finfo(np.float32).eps)
TRACE_COLUMNS = ["optimizer", "seed", "evaluations", "example_gradients", "seconds", "loss"]
TARGET_COLUMNS = ["optimizer", "seed", "target", "reached", "example_gradients", "seconds",
                  "budget_example_gradients", "budget_seconds"]


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
    # The whole-subset losses whose compute is compared (each above FLOAT32_FLOOR).
    targets: list[float] = required(nonempty=True, distinct=True)
    # The learning-rate search on the subset: these multiples of the optimizer grid's best rate, each
    # trained search_epochs epochs from the first seed's init.
    search_factors: list[float] = required(nonempty=True, distinct=True)
    search_epochs: int = required(gt=0)


@dataclass
class Config:
    lbfgs: LbfgsConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig = entries("device")  # the cells' threads are the launcher's
    launcher: LauncherConfig


def check(c: LbfgsConfig) -> None:
    """The rules the field checks cannot say; each broken one is one line naming its key."""
    low = [t for t in c.targets if not t > FLOAT32_FLOOR]
    if low:
        raise ConfigError(f"lbfgs.targets: {low} at or below float32's resolution of a loss ({FLOAT32_FLOOR:.2g}: "
                          f"100 epsilons); a crossing there is round-off")
    if any(not f > 0 for f in c.search_factors):
        raise ConfigError(f"lbfgs.search_factors: each must be > 0, got {c.search_factors}")
    if c.optimizer in c.compare:
        raise ConfigError(f"lbfgs.compare: holds {c.optimizer!r}, the full-batch method itself")


def _cell(cfg: Config, id: str, name: str, spec: OptimizerSpec, seed: int, steps: int, eval_every: int,
          eval_test: bool, **labels: object) -> CellConfig:
    c = cfg.lbfgs
    # No target: the stage finds each crossing from the evaluations, and runs the whole budget.
    return CellConfig(id=id, seed=seed, optimizer=spec, model=cfg.model, init="torch_default",
                      train_images=c.train_images, batch_size=c.batch_size, max_steps=steps,
                      divergence_loss=c.divergence_loss, eval_batch_size=c.eval_batch_size, eval_every=eval_every,
                      eval_test=eval_test, labels={"optimizer": name, "seed": seed, "batch_size": c.batch_size,
                                                   **labels})


def search_cells(cfg: Config, grid: dict[str, float]) -> list[CellConfig]:
    """Each compared method at each factor x its grid rate, from the first seed, for search_epochs epochs,
    evaluated (the subset only) at the end."""
    c = cfg.lbfgs
    steps = step_budget(c.search_epochs, c.train_images, c.batch_size)
    return [_cell(cfg, f"search-{name}-lr{grid[name] * f:.4g}-s{c.seeds[0]}", name,
                  cfg.optimizers[name].with_lr(grid[name] * f), c.seeds[0], steps, c.search_epochs, False,
                  lr=grid[name] * f, factor=f)
            for name in c.compare for f in c.search_factors]


def choose_lrs(search: pd.DataFrame, names: list[str]) -> dict[str, float]:
    """Per method, the rate of the lowest final whole-subset loss (finite, not diverged) of its search."""
    ok = search[~search["diverged"].astype(bool) & np.isfinite(search["train_loss"].astype(float))]
    missing = [n for n in names if n not in set(ok["optimizer"])]
    if missing:
        raise DataError(f"lbfgs: every rate of the lr search diverged for {', '.join(missing)} "
                        f"(lbfgs.search_factors)")
    best = ok.loc[ok.groupby("optimizer")["train_loss"].idxmin()]
    return {n: float(best.set_index("optimizer").loc[n, "lr"]) for n in names}


def build_cells(cfg: Config, lrs: dict[str, float]) -> list[CellConfig]:
    """Each compared method at `lrs`, for every seed."""
    c = cfg.lbfgs
    steps = step_budget(c.epochs, c.train_images, c.batch_size)
    return [_cell(cfg, f"{name}-s{seed}", name, cfg.optimizers[name].with_lr(lrs[name]), seed, steps,
                  c.eval_every, True) for name in c.compare for seed in c.seeds]


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.lbfgs
    check(c)
    grid = best_lrs(pd.read_csv(inputs.folder("optimizer_grid") / "summary.csv"), c.compare, "lbfgs.compare")
    searched = inputs.run_cells(search_cells(cfg, grid))
    search = pd.DataFrame([{"optimizer": o.cell.labels["optimizer"], "seed": o.cell.seed,
                            "grid_lr": grid[o.cell.labels["optimizer"]], "factor": o.cell.labels["factor"],
                            "lr": o.cell.labels["lr"], "train_loss": _nan(o.result.get("train_loss")),
                            "diverged": bool(o.result["diverged"])} for o in searched])
    lrs = choose_lrs(search, c.compare)
    search["chosen"] = [lrs[n] == lr for n, lr in zip(search["optimizer"], search["lr"], strict=True)]
    outputs = inputs.run_cells(build_cells(cfg, lrs))
    epochs, table = epochs_table(outputs, LABELS), cells_table(outputs)
    data = _Data.load(inputs, c.train_images)
    with _threads(cfg.launcher.threads_per_job):  # the cells' threads, so that seconds compare with theirs
        lb_epochs, lb_table, trace, init = run_lbfgs(cfg, data, inputs.torch_device)
    epochs, table = pd.concat([lb_epochs, epochs], ignore_index=True), pd.concat([lb_table, table])
    batch = {c.optimizer: c.train_images, **dict.fromkeys(c.compare, c.batch_size)}
    lrs = {c.optimizer: cfg.optimizers[c.optimizer].lr} | lrs
    budgets: dict[int, int] = {}
    if c.cg:
        # Each seed's CG gets the gradient evaluations L-BFGS made from the same init.
        budgets = {int(k): int(v) for k, v in lb_table.set_index("seed")["evaluations"].items()}
        with _threads(cfg.launcher.threads_per_job):
            cg_epochs, cg_table, cg_trace = run_cg(cfg, data, budgets)
        epochs, table = pd.concat([epochs, cg_epochs], ignore_index=True), pd.concat([table, cg_table])
        trace = pd.concat([trace, cg_trace], ignore_index=True)
        batch, lrs = batch | {CG: c.train_images}, lrs | {CG: math.nan}
    epochs.insert(epochs.columns.get_loc("evaluations") + 1, "example_gradients",
                  epochs["evaluations"] * epochs["optimizer"].map(batch))
    trace["example_gradients"] = trace["evaluations"] * c.train_images
    trace = trace[TRACE_COLUMNS]
    targets = targets_table(epochs, trace, init, c)
    summary = summarize(epochs, table, c, lrs, batch, targets)
    ref = summary.set_index("optimizer")
    parameters = second_order.parameter_count(build_model(cfg.model))
    others = [*c.compare, *([CG] if c.cg else [])]
    lowest = f"example_gradients_to_{min(c.targets):g}"
    return Result(
        # The headline, at most 5 numbers a stage (DVC tabulates every key): each method's compute to the
        # lowest target; the rest is in summary.csv and targets.csv.
        metrics={f"{n}_{lowest}": ref.loc[n, lowest] for n in [c.optimizer, *others]},
        summary={"optimizer": c.optimizer, "compare": c.compare, "train_images": c.train_images,
                 "seeds": len(c.seeds), "lbfgs": {k: cfg.optimizers[c.optimizer].default(k) for k in
                                                  ("max_iter", "history_size", "line_search_fn")},
                 "eval_every": c.eval_every, "targets": c.targets,
                 "loss_dtype": {n: _dtype(n, c) for n in [c.optimizer, *others]},
                 "search": {"factors": c.search_factors, "epochs": c.search_epochs, "seed": c.seeds[0],
                            "grid_lrs": grid, "chosen": lrs},
                 "cg": {"ran": c.cg, "method": "scipy.optimize.minimize(method='CG'), Polak-Ribiere",
                        "max_evaluations": {str(k): v for k, v in budgets.items()}},
                 # What a quasi-Newton method would store for this network, in float32.
                 "parameters": parameters, "memory_bytes": second_order.memory_bytes(
                     parameters, cfg.optimizers[c.optimizer].default("history_size")),
                 "results": {r.optimizer: {k: getattr(r, k) for k in
                                           ("lr", "train_loss_mean", "example_gradients", "seconds",
                                            "train_loss_at_lbfgs_compute", "train_loss_at_lbfgs_seconds")}
                             for r in summary.itertuples()}},
        tables={"epochs.csv": epochs, "evaluations.csv": trace, "targets.csv": targets, "search.csv": search,
                "summary.csv": summary},
        made=("cells",),
        lines=[f"{r['optimizer']:<13} lr {_lr(r['lr'])} batch {r['batch_size']}: loss {r['train_loss_mean']:.3g} "
               f"({r['loss_dtype']}) after {r['example_gradients']:,.0f} example-gradients in {r['seconds']:.1f} s; "
               "example-gradients to " + ", ".join(_to(r, t) for t in c.targets)
               for r in summary.to_dict("records")],
    )


def _to(r: dict, t: float) -> str:
    reached, mean = r[f"reached_{t:g}"], r[f"example_gradients_to_{t:g}"]
    return f"{t:g}: {mean:,.0f} ({reached} seeds)" if reached else f"{t:g}: not reached"


def _dtype(name: str, c: LbfgsConfig) -> str:
    return "float32" if name in c.compare else "float64"


def _nan(v: object) -> float:
    return math.nan if v is None else float(v)  # type: ignore[arg-type]


@dataclass
class _Data:
    x: torch.Tensor
    y: torch.Tensor
    x64: torch.Tensor
    x_test64: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def load(cls, inputs: Inputs, images: int) -> _Data:
        device = inputs.torch_device
        x, y = load_tensors(inputs.folder("mnist"), train=True, device=device)
        x, y = x[:images], y[:images]  # the cells' subset (run_cell)
        x_test, y_test = load_tensors(inputs.folder("mnist"), train=False, device=device)
        return cls(x, y, x.double(), x_test.double(), y_test)


def evaluate64(model: torch.nn.Module, x64: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """`training.evaluate` of a float64 copy of the model (the model itself untouched): loss and accuracy
    with the round-off of float64, so that a loss of 1e-8 nats is a loss, not float32's floor."""
    return evaluate(copy.deepcopy(model).double(), x64, y, batch_size)


def run_lbfgs(cfg: Config, d: _Data, device: torch.device
              ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[int, float]]:
    """L-BFGS full batch from each seed's init (what `run_cell` builds: seeded, then `build_model`) through
    the one training loop: (its epochs.csv rows, one per step, evaluated in float64; its cells-table rows;
    its full-batch loss at every gradient evaluation; each seed's init loss in float64)."""
    c = cfg.lbfgs
    frames, cells, traces, init = [], [], [], {}
    for seed in c.seeds:
        seed_everything(seed)
        model = build_model(cfg.model).to(device)
        init[seed] = evaluate64(model, d.x64, d.y, c.eval_batch_size)[0]
        optimizer = cfg.optimizers[c.optimizer].build(model.parameters(), key=f"optimizers.{c.optimizer}")
        trace: list[tuple[int, float, float]] = []
        rows: list[EpochRow] = []
        clock = {"started": time.perf_counter(), "paused": 0.0}

        def traced(step, trace=trace, clock=clock):  # noqa: ANN001, ANN202 - wraps optimizer.step
            def run_step(closure):  # noqa: ANN001, ANN202
                def recorded():  # noqa: ANN202
                    loss = closure()
                    trace.append((len(trace) + 1, time.perf_counter() - clock["started"] - clock["paused"],
                                  float(loss.detach())))
                    return loss
                return step(recorded)
            return run_step

        optimizer.step = traced(optimizer.step)  # type: ignore[method-assign]

        def at_end(end: EpochEnd, model=model, rows=rows, clock=clock) -> bool:  # noqa: ANN001
            mark = time.perf_counter()
            row = EpochRow(end.epoch, end.step, end.seconds, float(end.losses[-1]), end.evaluations)
            row.train_loss, row.train_accuracy = evaluate64(model, d.x64, d.y, c.eval_batch_size)
            row.test_loss, row.test_accuracy = evaluate64(model, d.x_test64, d.y_test, c.eval_batch_size)
            rows.append(row)
            clock["paused"] += time.perf_counter() - mark
            return False

        clock["started"] = time.perf_counter()
        res = train(model, optimizer, d.x, d.y, batch_size=len(d.x), seed=seed, max_steps=c.steps,
                    divergence_loss=c.divergence_loss, on_epoch_end=at_end)
        if res.diverged:  # the step it diverged in ends there, unevaluated (as in run_cell)
            losses = res.step_loss
            rows.append(EpochRow(res.epochs, res.steps, res.seconds, float(losses[-1]) if res.steps else math.nan,
                                 res.evaluations))
        frames.append(pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=EPOCH_COLUMNS)
                      .assign(optimizer=c.optimizer, seed=seed)[LABELS + EPOCH_COLUMNS])
        cells.append({"optimizer": c.optimizer, "seed": seed, "batch_size": len(d.x), "steps": res.steps,
                      "evaluations": res.evaluations, "diverged": res.diverged})
        traces.append(pd.DataFrame(trace, columns=["evaluations", "seconds", "loss"])
                      .assign(optimizer=c.optimizer, seed=seed))
    return pd.concat(frames, ignore_index=True), pd.DataFrame(cells), pd.concat(traces, ignore_index=True), init


def run_cg(cfg: Config, d: _Data, budgets: dict[int, int]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """SciPy's CG full batch on the subset from each seed's init, `budgets[seed]` gradient evaluations: (its
    epochs.csv rows, one per iteration, the last evaluated in float64; its cells-table rows: optimizer, seed,
    steps, diverged, evaluations; its full-batch loss at every gradient evaluation)."""
    c = cfg.lbfgs
    frames, cells, traces = [], [], []
    for seed in c.seeds:
        seed_everything(seed)  # what run_cell does before build_model: the same init, deterministic kernels
        model = build_model(cfg.model).to(d.x.device)  # init torch_default: nn.Linear's own
        rows, trace = cg_train(model, d.x, d.y, budgets[seed])
        last = rows[-1]
        last.train_loss, last.train_accuracy = evaluate64(model, d.x64, d.y, c.eval_batch_size)
        last.test_loss, last.test_accuracy = evaluate64(model, d.x_test64, d.y_test, c.eval_batch_size)
        frames.append(pd.DataFrame([dataclasses.asdict(r) for r in rows], columns=EPOCH_COLUMNS)
                      .assign(optimizer=CG, seed=seed)[LABELS + EPOCH_COLUMNS])
        cells.append({"optimizer": CG, "seed": seed, "batch_size": len(d.x), "steps": last.step,
                      "evaluations": last.evaluations, "diverged": not math.isfinite(last.train_loss)})
        traces.append(pd.DataFrame(trace, columns=["evaluations", "seconds", "loss"]).assign(optimizer=CG, seed=seed))
    return pd.concat(frames, ignore_index=True), pd.DataFrame(cells), pd.concat(traces, ignore_index=True)


def cg_train(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, max_evaluations: int
             ) -> tuple[list[EpochRow], list[tuple[int, float, float]]]:
    """Polak-Ribiere CG (SciPy, strong-Wolfe line search) on the mean loss over all of (x, y) from the
    model's parameters, until `max_evaluations` gradient evaluations (the iteration that reaches them ends)
    or SciPy stops; the model is left at the last iterate. One row per iteration: evaluations so far,
    seconds so far, the loss there (SciPy's, free: the line search computed it); and (evaluation, seconds,
    loss) for every call of the objective."""
    fun, w0, calls = second_order.flat_objective(model, x, y)
    rows: list[EpochRow] = []
    trace: list[tuple[int, float, float]] = []
    started = time.perf_counter()

    def traced(w: np.ndarray) -> tuple[float, np.ndarray]:
        loss, grad = fun(w)
        trace.append((calls[0], time.perf_counter() - started, loss))
        return loss, grad

    def callback(intermediate_result: scipy.optimize.OptimizeResult) -> None:
        k, loss = len(rows) + 1, float(intermediate_result.fun)
        rows.append(EpochRow(k, k, time.perf_counter() - started, loss, calls[0], train_loss=loss))
        if calls[0] >= max_evaluations:
            raise StopIteration  # SciPy ends there and returns this iterate

    # gtol 0: the budget ends it, not a gradient norm (SciPy's default, 1e-5, is an absolute norm).
    res = scipy.optimize.minimize(traced, w0, jac=True, method="CG", callback=callback,
                                  options={"maxiter": max_evaluations, "gtol": 0.0})
    params = list(model.parameters())
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(torch.as_tensor(res.x, dtype=params[0].dtype, device=params[0].device),
                                            params)
    if not rows:  # stopped before its first iteration ended (a failed line search): the start is the end
        rows.append(EpochRow(0, 0, time.perf_counter() - started, float(res.fun), calls[0], train_loss=float(res.fun)))
    return rows, trace


def first_crossings(x: np.ndarray, seconds: np.ndarray, loss: np.ndarray, targets: list[float],
                    interpolate: bool) -> list[tuple[bool, float, float]]:
    """Per target, (reached, x, seconds) where the loss curve (points in order of x) first is at or below it.
    Not interpolated: that point's x and seconds (a point the run visited). Interpolated: between it and the
    point before, linear in log(loss) on x and on seconds (the first point itself where none is before it).
    A curve that stays above a target, or turns non-finite first (diverged), is censored: (False, nan, nan)."""
    x, seconds, loss = (np.asarray(a, dtype=np.float64) for a in (x, seconds, loss))
    bad = np.flatnonzero(~np.isfinite(loss))
    end = bad[0] if len(bad) else len(loss)
    out = []
    for t in targets:
        below = np.flatnonzero(loss[:end] <= t)
        if not len(below):
            out.append((False, math.nan, math.nan))
            continue
        k = below[0]
        if not interpolate or k == 0 or loss[k] <= 0:
            out.append((True, float(x[k]), float(seconds[k])))
            continue
        hi, lo = math.log(loss[k - 1]), math.log(loss[k])
        w = (hi - math.log(t)) / (hi - lo)
        out.append((True, float(x[k - 1] + w * (x[k] - x[k - 1])),
                    float(seconds[k - 1] + w * (seconds[k] - seconds[k - 1]))))
    return out


def targets_table(epochs: pd.DataFrame, trace: pd.DataFrame, init: dict[int, float], c: LbfgsConfig
                  ) -> pd.DataFrame:
    """TARGET_COLUMNS, per (optimizer, seed, target): the full-batch methods from their loss at every gradient
    evaluation, the first-order ones from their evaluated epoch ends (from the init's loss), interpolated."""
    rows = []
    for (name, seed), mine in epochs.groupby(LABELS, sort=False):
        budget_x, budget_s = float(mine["example_gradients"].max()), float(mine["seconds"].max())
        if name in c.compare:
            seen = mine[mine["train_loss"].notna() | ~np.isfinite(mine["epoch_last_loss"])]
            x = np.r_[0.0, seen["example_gradients"]]
            s = np.r_[0.0, seen["seconds"]]
            loss = np.r_[init[int(seed)], seen["train_loss"]]
            found = first_crossings(x, s, loss, c.targets, interpolate=True)
        else:
            t = trace[(trace["optimizer"] == name) & (trace["seed"] == seed)]
            found = first_crossings(t["example_gradients"], t["seconds"], t["loss"], c.targets, interpolate=False)
        rows += [{"optimizer": name, "seed": int(seed), "target": target, "reached": reached,
                  "example_gradients": gx, "seconds": gs, "budget_example_gradients": budget_x,
                  "budget_seconds": budget_s} for target, (reached, gx, gs) in zip(c.targets, found, strict=True)]
    return pd.DataFrame(rows, columns=TARGET_COLUMNS)


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
              batch: dict[str, int], targets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per optimizer over seeds: the end of its budget, its loss where L-BFGS's compute and time ran out, and
    per target how many seeds reached it and their mean example-gradients and seconds to it."""
    last = epochs.groupby(LABELS).tail(1)
    ref = last[last.optimizer == c.optimizer]
    # L-BFGS's compute and time: the most any of its seeds used (its own row is then its end).
    compute, seconds = ref["example_gradients"].max(), ref["seconds"].max()
    rows = []
    for name in [c.optimizer, *c.compare, *([CG] if CG in set(epochs.optimizer) else [])]:
        mine = epochs[epochs.optimizer == name]
        ends = last[last.optimizer == name]
        row = {
            "optimizer": name, "lr": lrs[name], "batch_size": batch[name],
            "steps": int(table.loc[table.optimizer == name, "steps"].mean()),
            "train_loss_mean": ends["train_loss"].mean(), "train_loss_std": ends["train_loss"].std(),
            "loss_dtype": _dtype(name, c),
            "test_accuracy_mean": ends["test_accuracy"].mean(),
            "example_gradients": ends["example_gradients"].mean(), "evaluations": ends["evaluations"].mean(),
            "seconds": ends["seconds"].mean(),
            "diverged": bool(table.loc[table.optimizer == name, "diverged"].any()),
            # The last epoch end within L-BFGS's compute (its time), mean over seeds.
            "train_loss_at_lbfgs_compute": _within(mine, "example_gradients", compute),
            "train_loss_at_lbfgs_seconds": _within(mine, "seconds", seconds),
        }
        for t in c.targets:
            hit = (pd.DataFrame(columns=TARGET_COLUMNS) if targets is None else
                   targets[(targets.optimizer == name) & (targets.target == t) & targets.reached.astype(bool)])
            row |= {f"reached_{t:g}": len(hit), f"example_gradients_to_{t:g}": hit["example_gradients"].mean(),
                    f"seconds_to_{t:g}": hit["seconds"].mean()}
        rows.append(row)
    return pd.DataFrame(rows)


def _within(rows: pd.DataFrame, axis: str, limit: float) -> float:
    """Mean over seeds of the train loss at each seed's last evaluated epoch end with `axis` <= limit."""
    inside = rows[(rows[axis] <= limit * (1 + 1e-9)) & rows["train_loss"].notna()]
    values = inside.groupby("seed").tail(1)["train_loss"]
    return float(values.mean()) if len(values) else float(np.nan)
