"""Mini-batch training from tensors held in memory, and evaluation.

No I/O here: the caller hands in tensors and a built model and optimizer, and
gets back plain records. Batches are gathered from the in-memory split with a
seeded permutation per epoch, which is the same sampling as the book's
`DataLoader(shuffle=True)` without its per-sample `ToTensor()` cost (see
benchmarks/train_throughput.py for the measured difference).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm


# Steps between checks for divergence and progress-bar updates: reading the
# loss forces a device sync on GPUs, so it is not done every step.
_CHECK_EVERY = 50


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Mini-batch steps in one epoch of `images` (the last batch may be smaller, as `train` draws them)."""
    return math.ceil(images / batch_size)


def step_budget(epochs: int, images: int, batch_size: int, max_steps: int | None = None) -> int:
    """A run's steps: `epochs` epochs of `images` in batches of `batch_size`, cut at `max_steps` if set."""
    steps = epochs * steps_per_epoch(images, batch_size)
    return steps if max_steps is None else min(steps, max_steps)


@dataclass
class EpochEnd:
    """Where training stands at the end of an epoch (or of the budget, mid-epoch)."""

    epoch: int
    step: int  # mini-batch steps done
    seconds: float  # training time so far; the callbacks' own time (evaluation) excluded
    losses: np.ndarray  # the cost of every mini-batch step so far
    evaluations: int  # gradient evaluations so far (L-BFGS makes several per step, the others one)


@dataclass
class TrainResult:
    step_loss: np.ndarray  # per mini-batch training loss, in step order
    steps: int = 0
    seconds: float = 0.0  # training time, callbacks excluded
    diverged: bool = False
    stopped: bool = False  # the epoch-end callback asked to stop before the budget
    epochs: int = 0  # epochs begun
    evaluations: int = 0  # gradient evaluations (calls of the loss-and-gradient closure)


@dataclass
class OutputUnits:
    """What `evaluate` finds of each output unit in its pass: the units exactly zero on every input (`dead`),
    and per unit the share of its own class's inputs on which it is positive (`own_positive_share`; NaN for a
    class with no input)."""

    dead: list[int] = field(default_factory=list)
    own_positive_share: list[float] = field(default_factory=list)


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
             units: OutputUnits | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split. Given `units`, the same pass also fills it (see
    `OutputUnits`; `dead_output_units`)."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    alive = positive = seen = None
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        total_loss += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(dim=1) == target).sum()
        if units is not None:
            classes = logits.shape[1]
            nonzero = (logits != 0).any(dim=0)
            own = logits.gather(1, target[:, None]).squeeze(1) > 0
            hits = torch.bincount(target[own], minlength=classes)
            count = torch.bincount(target, minlength=classes)
            alive = nonzero if alive is None else alive | nonzero
            positive, seen = (hits, count) if positive is None else (positive + hits, seen + count)
    model.train(was_training)
    if units is not None and alive is not None:
        units.dead = torch.nonzero(~alive).flatten().tolist()
        units.own_positive_share = (positive.double() / seen.double()).tolist()  # 0 / 0 is NaN
    return total_loss.item() / len(x), correct.item() / len(x)


def dead_output_units(model: nn.Module, x: torch.Tensor, batch_size: int) -> list[int]:
    """The output units that are exactly zero on every input of `x`: with a ReLU on the logits (the first
    edition's network) a unit whose pre-activation is negative on every training image gets no gradient,
    so its class can never be predicted again. Without a final ReLU no output is ever exactly zero."""
    units = OutputUnits()
    evaluate(model, x, torch.zeros(len(x), dtype=torch.long, device=x.device), batch_size, units=units)
    return units.dead


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    batch_size: int,
    seed: int,
    max_steps: int,
    divergence_loss: float,
    on_epoch_end: Callable[[EpochEnd], bool] | None = None,
    progress: bool = False,
    desc: str = "train",
) -> TrainResult:
    """The one training loop: `max_steps` mini-batch steps, epoch after epoch, unless stopped earlier.

    Every study that trains goes through here, so one (seed, batch size, data)
    draws one sequence of batches, whoever trains. Each epoch visits a fresh
    permutation of the training set from one generator seeded with `seed`,
    in mini-batches of `batch_size` (the last may be smaller, as with
    `DataLoader(drop_last=False)`). A loss that is NaN, infinite or above
    `divergence_loss` stops training and sets `diverged`; it is not raised.
    `on_epoch_end` is called at the end of every epoch and of the budget
    (not after a divergence); it may evaluate the model, and returning True
    stops training there.
    """
    n = len(x_train)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    losses = torch.empty(max_steps, dtype=torch.float32, device=x_train.device)
    result = TrainResult(step_loss=np.empty(0, dtype=np.float32))
    step = checked = 0
    bar = tqdm(total=max_steps, desc=desc, unit="step", disable=not progress, mininterval=1.0)
    started = time.perf_counter()
    paused = 0.0  # time spent in the callbacks
    model.train()
    while step < max_steps and not (result.diverged or result.stopped):
        result.epochs += 1
        perm = torch.randperm(n, generator=gen).to(x_train.device)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            xb, yb = x_train[idx], y_train[idx]

            def closure(xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> torch.Tensor:
                # One code path for every optimizer: L-BFGS calls this several
                # times per step, the others once.
                result.evaluations += 1
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                return loss

            losses[step] = optimizer.step(closure).detach()
            step += 1
            end_of_epoch = start + batch_size >= n or step == max_steps
            if step % _CHECK_EVERY == 0 or end_of_epoch:
                recent = losses[checked:step]
                bar.update(step - checked)
                checked = step
                if not torch.isfinite(recent).all() or recent.max().item() > divergence_loss:
                    result.diverged = True
                    break
            if step == max_steps:
                break
        if result.diverged or on_epoch_end is None:
            continue
        mark = time.perf_counter()
        end = EpochEnd(result.epochs, step, mark - started - paused, losses[:step].cpu().numpy(), result.evaluations)
        result.stopped = bool(on_epoch_end(end)) and step < max_steps
        paused += time.perf_counter() - mark
    bar.close()
    result.steps = step
    result.seconds = time.perf_counter() - started - paused
    result.step_loss = losses[:step].cpu().numpy()
    return result
