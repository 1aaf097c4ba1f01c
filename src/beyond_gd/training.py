"""Mini-batch training from tensors held in memory, and evaluation.

No I/O here: the stage hands in tensors and a built model and optimizer, and
gets back plain records. Batches are gathered from the in-memory split with a
seeded permutation per epoch, which is the same sampling as the book's
`DataLoader(shuffle=True)` without its per-sample `ToTensor()` cost (see
benchmarks/train_throughput.py for the measured difference).
"""

from __future__ import annotations

import math
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


@dataclass
class EpochRecord:
    epoch: int
    step: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float


@dataclass
class TrainResult:
    step_loss: np.ndarray  # per mini-batch training loss, in step order
    epochs: list[EpochRecord] = field(default_factory=list)
    diverged: bool = False
    steps: int = 0


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy and accuracy over a whole split."""
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        total_loss += F.cross_entropy(logits, target, reduction="sum").double()
        correct += (logits.argmax(dim=1) == target).sum()
    model.train(was_training)
    return total_loss.item() / len(x), correct.item() / len(x)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    divergence_loss: float,
    max_steps: int | None = None,
    on_epoch_end: Callable[[int, int], EpochRecord] | None = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    """Train for `epochs` (or `max_steps`), returning per-step and per-epoch records.

    Each epoch visits a fresh permutation of the training set drawn from a
    generator seeded with `seed`, in mini-batches of `batch_size` (the last
    one may be smaller, as with `DataLoader(drop_last=False)`). A loss that
    is NaN, infinite or above `divergence_loss` stops training and sets
    `diverged`; it is not raised.
    `on_epoch_end(epoch, step)` evaluates the model and returns a record.
    """
    n = len(x_train)
    steps_per_epoch = math.ceil(n / batch_size)
    total = epochs * steps_per_epoch if max_steps is None else min(max_steps, epochs * steps_per_epoch)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    losses = torch.empty(total, dtype=torch.float32, device=x_train.device)
    result = TrainResult(step_loss=np.empty(0, dtype=np.float32))
    step = checked = 0
    bar = tqdm(total=total, desc=desc, unit="step", disable=not progress, mininterval=1.0)
    model.train()
    for epoch in range(1, epochs + 1):
        perm = torch.randperm(n, generator=gen).to(x_train.device)
        for start in range(0, n, batch_size):
            if step >= total:
                break
            idx = perm[start : start + batch_size]
            xb, yb = x_train[idx], y_train[idx]

            def closure(xb: torch.Tensor = xb, yb: torch.Tensor = yb) -> torch.Tensor:
                # One code path for every optimizer: L-BFGS calls this several
                # times per step, the others once.
                optimizer.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(xb), yb)
                loss.backward()
                return loss

            losses[step] = optimizer.step(closure).detach()
            step += 1
            if step % _CHECK_EVERY == 0 or step == total:
                recent = losses[checked:step]
                bar.update(step - checked)
                checked = step
                if not torch.isfinite(recent).all() or recent.max().item() > divergence_loss:
                    result.diverged = True
                    break
        if result.diverged:
            break
        if on_epoch_end is not None:
            result.epochs.append(on_epoch_end(epoch, step))
            bar.set_postfix(test_acc=f"{result.epochs[-1].test_accuracy:.4f}")
        if step >= total:
            break
    bar.close()
    result.steps = step
    result.step_loss = losses[:step].cpu().numpy()
    return result
