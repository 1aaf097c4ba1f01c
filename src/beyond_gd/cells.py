"""One training "cell": one optimizer at one learning rate and one seed on the MLP, and its artifact.

The unit of the studies made of cells (`momentum_speedup`, `optimizer_grid`,
`lbfgs`, `lr_adaptation`). `run_cell` is the whole experiment for one cell,
from a config and tensors to plain records, and `cell_output` turns those into
the cell's artifact; neither writes a file nor logs anything (the job,
`beyond_gd.cell_job`, does that around them). `run_cell` seeds torch's global
generator (`seed_everything`), because `nn.Linear` draws its initial weights
from it. The tables over many cells are `beyond_gd.cell_tables`: this module
and what it imports are the code a cell's key covers, so nothing here serves
only the tables.

Two ways to say "the cost reached the target" (Fig 6-9):
- `smoothed`: the trailing mean of the per-step mini-batch cost over
  `smoothing_window` steps first falls to the target (full windows only);
- `epoch_last`: the cost of the last mini-batch of an epoch first falls to the
  target, the quantity the first edition plotted (one point per epoch).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from beyond_gd.config import ModelConfig, required
from beyond_gd.errors import ConfigError
from beyond_gd.measures import epoch_last_steps_to_target, final_loss, steps_to_target
from beyond_gd.model import build_model
from beyond_gd.optim.probes import effective_lr, quartiles
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.runtime import seed_everything
from beyond_gd.training import EpochEnd, OutputUnits, evaluate, steps_per_epoch, train

# torch_default: nn.Linear's own init (Kaiming-uniform, a=sqrt(5)), the PyTorch
# book's; he_normal: N(0, 2 / fan_in) weights and zero biases, the first
# edition's TensorFlow `layer()` (Fig 6-9's code in that edition).
INITS = ("torch_default", "he_normal")
COSTS = ("smoothed", "epoch_last")
STOPS = ("target", "cap", "diverged")


@dataclass
class CellConfig:
    id: str = required(nonempty=True)
    seed: int = required(ge=0)
    optimizer: OptimizerSpec = required()
    model: ModelConfig = required()
    init: str = required(choices=INITS)
    # Train on the first `train_images` training images (the first edition's
    # 55,000; 5,000 held out); null: all 60,000.
    train_images: int | None = required(gt=0, optional=True)
    batch_size: int = required(gt=0)
    # The step budget (a cap when `stop_margin` is set).
    max_steps: int = required(gt=0)
    divergence_loss: float = required(gt=0)
    # The fields below a study may leave out: each default means "not asked for".
    # Evaluate (loss and accuracy of the cell's training images, and of the test set unless `eval_test` is
    # false) at every `eval_every`-th epoch end and at the end of the budget, in batches of
    # `eval_batch_size`; null: never (a long run of a small subset need not be evaluated every epoch).
    eval_every: int | None = None
    eval_batch_size: int | None = None
    eval_test: bool = True
    # The cost to reach: the three `steps_to_target*` of the result and `seconds_to_target`; null: no
    # target, all of them null.
    target_loss: float | None = None
    # The trailing window of the `smoothed` cost and of `final_loss`; 1: the per-step cost itself.
    smoothing_window: int = 1
    # Which cost gives the cell's headline `steps_to_target` (both are recorded).
    cost: str = "smoothed"
    # Stop this many steps after both costs have reached the target (at the end of that epoch), so both
    # are measured, and the whole training split's loss too where it is evaluated every epoch; null: run
    # the whole budget. Needs a `target_loss`.
    stop_margin: int | None = None
    # Probes of the optimizer's step: at step 1 and every `probe_every` steps, the quartiles of the
    # per-parameter effective learning rate (adaptive methods; beyond_gd.optim.probes); the size (L2 norm)
    # of each of the first `probe_updates` updates. null and 0: none.
    probe_every: int | None = None
    probe_updates: int = 0
    # Where the cell sits in its study (setup, optimizer, lr, seed): carried
    # into its artifact and MLflow tags, never read by the training.
    labels: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """The rules that span fields; each broken one is a line naming the cell and the field."""
        where = f"cell {self.id}"
        if self.init not in INITS:
            raise ConfigError(f"{where}: init {self.init!r} is not allowed (choose from {', '.join(INITS)})")
        if self.cost not in COSTS:
            raise ConfigError(f"{where}: cost {self.cost!r} is not allowed (choose from {', '.join(COSTS)})")
        if self.stop_margin is not None and self.target_loss is None:
            raise ConfigError(f"{where}: stop_margin needs a target_loss to stop after, got none")
        if self.eval_every is not None and self.eval_batch_size is None:
            raise ConfigError(f"{where}: eval_every needs an eval_batch_size, got none")
        for name in ("eval_every", "smoothing_window"):
            if (value := getattr(self, name)) is not None and value < 1:
                raise ConfigError(f"{where}: {name} must be >= 1, got {value}")


@dataclass
class EpochRow:
    epoch: int
    step: int  # steps done at the end of this epoch (the last may be partial)
    seconds: float  # training time so far, evaluation excluded
    epoch_last_loss: float  # cost of this epoch's last mini-batch
    evaluations: int = 0  # gradient evaluations so far (L-BFGS makes several per step)
    # Loss and accuracy of the whole training split (the cell's images) and of the test set.
    train_loss: float = math.nan
    train_accuracy: float = math.nan
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    # The same of the averaged weights, for an optimizer that keeps an average (ASGD's `ax`); NaN otherwise.
    average_train_loss: float = math.nan
    average_train_accuracy: float = math.nan
    average_test_loss: float = math.nan
    average_test_accuracy: float = math.nan
    # Output units zero on every training image (space-separated class indices): only with a ReLU on the
    # logits (the first edition's network) and only where the cell evaluates; "" otherwise.
    dead_units: str = ""
    # With that ReLU, the output unit positive on the smallest share of its own class's training images,
    # and that share (0 for a dead unit); -1 and NaN where not measured.
    weakest_unit: int = -1
    weakest_share: float = math.nan


@dataclass
class CellResult:
    step_loss: np.ndarray  # (steps,) mini-batch cost per step
    epochs: list[EpochRow]
    steps: int
    train_seconds: float
    diverged: bool
    stopped_by: str  # one of STOPS
    steps_per_epoch: int
    steps_to_target: int | None  # by the cell's `cost`
    steps_to_target_smoothed: int | None
    steps_to_target_epoch_last: int | None
    seconds_to_target: float | None  # by the cell's `cost`, training time only
    final_loss: float  # mean cost over the last `smoothing_window` steps; inf if diverged
    probes: list[dict[str, float]] = field(default_factory=list)  # PROBE_COLUMNS, one row per probed step


# --------------------------------------------------------------------------
# The cell
# --------------------------------------------------------------------------
def run_cell(
    cell: CellConfig,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    device: torch.device,
) -> CellResult:
    """Train one cell until its budget, its target (+ margin) or divergence, through `training.train`.

    The baseline trains through the same loop, so a cell with the baseline's
    optimizer, seed, batch size and data draws exactly the baseline's batches.
    """
    cell.check()
    seed_everything(cell.seed)
    x, y = x_train[: cell.train_images], y_train[: cell.train_images]
    model = build_model(cell.model).to(device)
    if cell.init == "he_normal":
        he_normal_(model)
    optimizer = cell.optimizer.build(model.parameters(), key=f"cell {cell.id}: optimizer")
    probes = attach_probes(optimizer, cell.probe_every, cell.probe_updates)
    per_epoch = steps_per_epoch(len(x), cell.batch_size)
    rows: list[EpochRow] = []

    def at_epoch_end(end: EpochEnd) -> bool:
        row = EpochRow(end.epoch, end.step, end.seconds, float(end.losses[-1]), end.evaluations)
        if cell.eval_every is not None and (end.epoch % cell.eval_every == 0 or end.step >= cell.max_steps):
            units = OutputUnits() if cell.model.final_relu else None  # counted in the same pass
            row.train_loss, row.train_accuracy = evaluate(model, x, y, cell.eval_batch_size, units=units)
            if units is not None:
                row.dead_units = " ".join(map(str, units.dead))
                shares = np.nan_to_num(units.own_positive_share, nan=np.inf)
                row.weakest_unit, row.weakest_share = int(shares.argmin()), float(shares.min())
            if cell.eval_test:
                row.test_loss, row.test_accuracy = evaluate(model, x_test, y_test, cell.eval_batch_size)
            if averaged := averaged_weights(optimizer):
                with swapped(model, averaged):
                    row.average_train_loss, row.average_train_accuracy = evaluate(model, x, y, cell.eval_batch_size)
                    if cell.eval_test:
                        row.average_test_loss, row.average_test_accuracy = evaluate(model, x_test, y_test,
                                                                                    cell.eval_batch_size)
        rows.append(row)
        if cell.stop_margin is None or cell.target_loss is None:
            return False
        reached = [steps_to_target(end.losses, cell.target_loss, cell.smoothing_window),
                   epoch_last_steps_to_target(end.losses, per_epoch, cell.target_loss)]
        if cell.eval_every == 1:  # and the whole training split's loss at an epoch end
            reached.append(next((r.step for r in rows if r.train_loss <= cell.target_loss), None))
        return None not in reached and end.step >= max(reached) + cell.stop_margin  # type: ignore[type-var]

    res = train(model, optimizer, x, y, batch_size=cell.batch_size, seed=cell.seed, max_steps=cell.max_steps,
                divergence_loss=cell.divergence_loss, on_epoch_end=at_epoch_end)
    losses = res.step_loss
    if res.diverged:  # the epoch it diverged in ends there, unevaluated
        rows.append(EpochRow(res.epochs, res.steps, res.seconds, float(losses[-1]) if res.steps else math.nan,
                             res.evaluations))
    target = cell.target_loss
    by_smoothed = None if target is None else steps_to_target(losses, target, cell.smoothing_window)
    by_epoch_last = None if target is None else epoch_last_steps_to_target(losses, per_epoch, target)
    reached = by_smoothed if cell.cost == "smoothed" else by_epoch_last
    return CellResult(
        step_loss=losses, epochs=rows, steps=res.steps, train_seconds=res.seconds, diverged=res.diverged,
        stopped_by="diverged" if res.diverged else "target" if res.stopped else "cap",
        steps_per_epoch=per_epoch, steps_to_target=reached,
        steps_to_target_smoothed=by_smoothed, steps_to_target_epoch_last=by_epoch_last,
        seconds_to_target=seconds_at(reached, rows),
        final_loss=math.inf if res.diverged else final_loss(losses, cell.smoothing_window), probes=probes,
    )


PROBE_COLUMNS = ["step", "update_norm", "lr_q25", "lr_median", "lr_q75"]


def attach_probes(optimizer: torch.optim.Optimizer, every: int | None, updates: int) -> list[dict[str, float]]:
    """Hooks on the optimizer's step (torch's `register_step_pre_hook` / `_post_hook`) that append to the
    returned list, after step i: the L2 norm of the update if i <= `updates`; the effective-lr quartiles if
    `every` is set and i is 1 or a multiple of it. Nothing is hooked when neither is asked for."""
    rows: list[dict[str, float]] = []
    if not every and updates <= 0:
        return rows
    params = [p for group in optimizer.param_groups for p in group["params"]]
    done, before = [0], [torch.empty(0)]

    def flat() -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in params])

    def pre(*_: Any) -> None:
        if done[0] < updates:
            before[0] = flat()

    def post(*_: Any) -> None:
        done[0] += 1
        i, row = done[0], {}
        if i <= updates:
            row["update_norm"] = (flat() - before[0]).norm().item()
        if every and (i == 1 or i % every == 0) and (lr := effective_lr(optimizer)) is not None:
            row |= quartiles(lr)
        if row:
            rows.append({"step": i, **row})

    optimizer.register_step_pre_hook(pre)
    optimizer.register_step_post_hook(post)
    return rows


def seconds_at(step: int | None, rows: list[EpochRow]) -> float | None:
    """Training seconds at `step`, interpolated within its epoch (time is only read per epoch)."""
    if step is None:
        return None
    return float(np.interp(step, [0] + [r.step for r in rows], [0.0] + [r.seconds for r in rows]))


def averaged_weights(optimizer: torch.optim.Optimizer) -> list[torch.Tensor] | None:
    """The running average of the parameters an averaging optimizer keeps (torch's ASGD: `ax`, the
    Polyak-Ruppert average from step t0 on, equal to the iterate before it), in parameter order; None
    for an optimizer that keeps none."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    found = [optimizer.state.get(p, {}).get("ax") for p in params]
    return None if any(a is None for a in found) else found


@contextmanager
def swapped(model: nn.Module, weights: list[torch.Tensor]) -> Iterator[None]:
    """The model's parameters replaced by `weights` inside the block, restored after."""
    params = list(model.parameters())
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, w in zip(params, weights, strict=True):
            p.copy_(w)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved, strict=True):
                p.copy_(s)


def he_normal_(model: nn.Module) -> None:
    """The first edition's init: weights ~ N(0, 2 / fan_in), biases 0 (He et al. 2015)."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features))
                layer.bias.zero_()


# --------------------------------------------------------------------------
# A cell's artifact
# --------------------------------------------------------------------------
@dataclass
class CellOutput:
    cell: CellConfig
    result: dict[str, Any]  # the cell's scalars (its result.json)
    steps: pd.DataFrame  # step, loss
    epochs: pd.DataFrame  # the EpochRow fields
    reused: bool = False  # kept from an earlier run of the same cell, not run now
    probes: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PROBE_COLUMNS))  # PROBE_COLUMNS


def cell_output(cell: CellConfig, res: CellResult, **facts: Any) -> CellOutput:
    """A cell's artifact: its scalars, JSON-safe (a diverged run's inf final loss is null), and its curves.
    `facts` (where and when it ran) join the scalars."""
    last = res.epochs[-1] if res.epochs else None
    evaluated = cell.eval_every is not None and last is not None and not res.diverged
    result = {
        "id": cell.id, **cell.labels,
        "steps": res.steps, "steps_per_epoch": res.steps_per_epoch, "train_seconds": res.train_seconds,
        "diverged": res.diverged, "stopped_by": res.stopped_by,
        "steps_to_target": res.steps_to_target, "steps_to_target_smoothed": res.steps_to_target_smoothed,
        "steps_to_target_epoch_last": res.steps_to_target_epoch_last, "seconds_to_target": res.seconds_to_target,
        "final_loss": res.final_loss if math.isfinite(res.final_loss) else None,
        **{name: _number(getattr(last, name)) if evaluated else None for name in EVALUATED},
        "evaluations": last.evaluations if last is not None else 0,
        **facts,
    }
    steps = pd.DataFrame({"step": np.arange(1, res.steps + 1), "loss": res.step_loss})
    epochs = pd.DataFrame([dataclasses.asdict(r) for r in res.epochs], columns=EPOCH_COLUMNS)
    return CellOutput(cell, result, steps, epochs, probes=pd.DataFrame(res.probes, columns=PROBE_COLUMNS))


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN: a value not measured is null


EVALUATED = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "average_train_loss",
             "average_train_accuracy", "average_test_loss", "average_test_accuracy")
EPOCH_COLUMNS = [f.name for f in dataclasses.fields(EpochRow)]
