"""One training "cell": one optimizer at one learning rate and one seed on the MLP.

The unit of the `momentum` and `optimizer_grid` stages. `run_cell` is the
whole experiment for one cell, from a config and tensors to plain records; it
writes no file and logs nothing (the launcher in `beyond_gd.studies.launch`
does that around it). It seeds torch's global generator (`seed_everything`),
because `nn.Linear` draws its initial weights from it.

Two ways to say "the cost reached 0.1" (FIGURES.md, Fig 6-9):
- `smoothed`: the trailing mean of the per-step mini-batch cost over
  `smoothing_window` steps first falls to the target (full windows only);
- `epoch_last`: the cost of the last mini-batch of an epoch first falls to the
  target, the quantity the first edition plotted (one point per epoch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from beyond_gd.config import ModelConfig, OptimizerConfig, required, section
from beyond_gd.errors import ConfigError
from beyond_gd.model import build_model
from beyond_gd.optim.registry import build_optimizer
from beyond_gd.runtime import seed_everything
from beyond_gd.training import evaluate, train

# torch_default: nn.Linear's own init (Kaiming-uniform, a=sqrt(5)), the PyTorch
# book's; he_normal: N(0, 2 / fan_in) weights and zero biases, the first
# edition's TensorFlow `layer()` (FIGURES.md, Fig 6-9).
INITS = ("torch_default", "he_normal")
COSTS = ("smoothed", "epoch_last")
STOPS = ("target", "cap", "diverged")


@dataclass
class CellConfig:
    id: str = required(nonempty=True)
    seed: int = required(ge=0)
    optimizer: OptimizerConfig = required()
    model: ModelConfig = required()
    init: str = required(choices=INITS)
    # Train on the first `train_images` training images (the first edition's
    # 55,000; 5,000 held out); null: all 60,000.
    train_images: int | None = required(gt=0, optional=True)
    batch_size: int = required(gt=0)
    # The step budget (a cap when `stop_margin` is set).
    max_steps: int = required(gt=0)
    divergence_loss: float = required(gt=0)
    # Per-epoch loss and accuracy on the training images and the test set.
    evaluate: bool = required()
    eval_batch_size: int | None = required(gt=0, optional=True)
    target_loss: float = required(gt=0)
    smoothing_window: int = required(gt=0)
    # Which cost gives the cell's headline `steps_to_target` (both are recorded).
    cost: str = required(choices=COSTS)
    # Stop this many steps after both costs have reached the target (at the
    # end of that epoch), so both are measured; null: run the whole budget.
    stop_margin: int | None = required(ge=0, optional=True)
    # Where the cell sits in its study (setup, optimizer, lr, seed): carried
    # into its artifact and MLflow tags, never read by the training.
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass
class EpochRow:
    epoch: int
    step: int  # steps done at the end of this epoch (the last may be partial)
    seconds: float  # training time so far, evaluation excluded
    epoch_last_loss: float  # cost of this epoch's last mini-batch
    train_loss: float = math.nan
    train_accuracy: float = math.nan
    test_loss: float = math.nan
    test_accuracy: float = math.nan


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
    """Train one cell epoch by epoch until its budget, its target (+ margin) or divergence.

    Each epoch is one call of `training.train` over a fresh permutation seeded
    by (seed, epoch), so stopping at an epoch's end changes nothing before it.
    """
    seed_everything(cell.seed)
    x, y = x_train[: cell.train_images], y_train[: cell.train_images]
    model = build_model(cell.model).to(device)
    if cell.init == "he_normal":
        he_normal_(model)
    optimizer = build_optimizer(cell.optimizer, model.parameters(), key=f"cell {cell.id}: optimizer")
    steps_per_epoch = math.ceil(len(x) / cell.batch_size)

    chunks: list[np.ndarray] = []
    rows: list[EpochRow] = []
    steps, seconds, diverged, stopped_by = 0, 0.0, False, "cap"
    epoch = 0
    while steps < cell.max_steps:
        epoch += 1
        start = time.perf_counter()
        part = train(model, optimizer, x, y, epochs=1, batch_size=cell.batch_size,
                     seed=epoch_seed(cell.seed, epoch), divergence_loss=cell.divergence_loss,
                     max_steps=cell.max_steps - steps, progress=False)
        seconds += time.perf_counter() - start
        chunks.append(part.step_loss)
        steps += part.steps
        row = EpochRow(epoch, steps, seconds, float(part.step_loss[-1]) if part.steps else math.nan)
        if part.diverged:
            diverged, stopped_by = True, "diverged"
            rows.append(row)
            break
        if cell.evaluate:
            row.train_loss, row.train_accuracy = evaluate(model, x, y, cell.eval_batch_size)
            row.test_loss, row.test_accuracy = evaluate(model, x_test, y_test, cell.eval_batch_size)
        rows.append(row)
        if cell.stop_margin is not None:
            so_far = np.concatenate(chunks)
            reached = (steps_to_target(so_far, cell.target_loss, cell.smoothing_window),
                       epoch_last_steps_to_target(so_far, steps_per_epoch, cell.target_loss))
            if None not in reached and steps >= max(reached) + cell.stop_margin:  # type: ignore[operator]
                stopped_by = "target"
                break

    losses = np.concatenate(chunks) if chunks else np.empty(0, dtype=np.float32)
    by_smoothed = steps_to_target(losses, cell.target_loss, cell.smoothing_window)
    by_epoch_last = epoch_last_steps_to_target(losses, steps_per_epoch, cell.target_loss)
    reached = by_smoothed if cell.cost == "smoothed" else by_epoch_last
    return CellResult(
        step_loss=losses, epochs=rows, steps=steps, train_seconds=seconds, diverged=diverged,
        stopped_by=stopped_by, steps_per_epoch=steps_per_epoch, steps_to_target=reached,
        steps_to_target_smoothed=by_smoothed, steps_to_target_epoch_last=by_epoch_last,
        seconds_to_target=seconds_at(reached, rows),
        final_loss=math.inf if diverged else final_loss(losses, cell.smoothing_window),
    )


# --------------------------------------------------------------------------
# Measures on a cost curve
# --------------------------------------------------------------------------
def smooth(losses: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last `window` steps (fewer at the start), same length."""
    losses = np.asarray(losses, dtype=np.float64)
    # A direct sum per window (not a cumsum): a NaN spoils only the windows that hold it.
    sums = np.convolve(losses, np.ones(window))[: len(losses)]
    return sums / np.minimum(np.arange(1, len(losses) + 1), window)


def steps_to_target(losses: np.ndarray, target: float, window: int) -> int | None:
    """The first step (1-based) at which the mean cost of the last `window` steps is <= target.

    Only full windows count, so a lucky first mini-batch cannot "reach" it;
    None if the curve never gets there (a NaN never counts as reached).
    """
    if len(losses) < window:
        return None
    hit = np.flatnonzero(smooth(losses, window)[window - 1 :] <= target)
    return int(hit[0]) + window if hit.size else None


def epoch_last_steps_to_target(losses: np.ndarray, steps_per_epoch: int, target: float) -> int | None:
    """The step count at the end of the first whole epoch whose last mini-batch cost is <= target."""
    ends = np.arange(steps_per_epoch, len(losses) + 1, steps_per_epoch)
    hit = ends[np.asarray(losses)[ends - 1] <= target]
    return int(hit[0]) if hit.size else None


def final_loss(losses: np.ndarray, window: int) -> float:
    """The cost at the end of the budget: mean of the last `window` steps."""
    return float(np.mean(losses[-window:], dtype=np.float64)) if len(losses) else math.nan


def seconds_at(step: int | None, rows: list[EpochRow]) -> float | None:
    """Training seconds at `step`, interpolated within its epoch (time is only read per epoch)."""
    if step is None:
        return None
    return float(np.interp(step, [0] + [r.step for r in rows], [0.0] + [r.seconds for r in rows]))


def epoch_seed(seed: int, epoch: int) -> int:
    """The shuffle seed of one epoch: independent streams per (seed, epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def he_normal_(model: nn.Module) -> None:
    """The first edition's init: weights ~ N(0, 2 / fan_in), biases 0 (He et al. 2015)."""
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features))
                layer.bias.zero_()


def describe(values: list[float | None]) -> dict[str, float | int | None]:
    """n, mean, sample std (ddof 1), min and max of the values that are not None/NaN/inf."""
    kept = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if not kept.size:
        return {"n": 0, "mean": None, "std": None, "min": None, "max": None}
    return {"n": int(kept.size), "mean": float(kept.mean()),
            "std": float(kept.std(ddof=1)) if kept.size > 1 else None,
            "min": float(kept.min()), "max": float(kept.max())}


# --------------------------------------------------------------------------
# Config checks shared by the studies made of cells
# --------------------------------------------------------------------------
def optimizer_entries(params: Mapping[str, Any], names: list[str], key: str) -> dict[str, OptimizerConfig]:
    """The entries of the `optimizers` section a study names by `key`, each checked by building it
    once (a kwarg the torch class lacks is an error naming `optimizers.<name>.kwargs.<kwarg>`)."""
    table = params.get("optimizers")
    if not isinstance(table, Mapping):
        raise ConfigError("optimizers: missing section (the conf/optimizer files, composed by conf/config.yaml)")
    entries = {}
    for name in names:
        if name not in table:
            raise ConfigError(f"{key}: {name!r} is not in the optimizers section (choose from {', '.join(table)})")
        entries[name] = section(table, name, OptimizerConfig, parent="optimizers")
        build_optimizer(entries[name], [nn.Parameter(torch.zeros(1))], key=f"optimizers.{name}")
    return entries


def check_seeds(seeds: list[int], key: str) -> None:
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError(f"{key}: must be distinct integers >= 0, got {seeds}")
