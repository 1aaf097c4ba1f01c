"""Fig 6-3: the loss on the straight line from the SGD solution to a random point.

The book's code: `theta(alpha) = (1 - alpha) * theta_opt + alpha * theta_rand`
for `alpha in torch.arange(-2, 2, 0.05)`, so alpha = 0 is the SGD solution and
alpha = 1 the random point (Goodfellow, Vinyals & Saxe 2014, "Qualitatively
characterizing neural network optimization problems", used the training run's
own initialisation as that point). Every alpha of a chunk is evaluated in one
vmapped forward pass (on a CPU one big batch per forward is what pays,
measured here; batching many small models is not), never by loading a model
per alpha. `combination_loss` is the one evaluator of such sets, sum_k c_ik
theta_k for a few parameter sets theta_k: the line here, the Bézier curve of
`connectivity` and the planes of `plane` are its coefficients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from beyond_gd.measures import abs_slope, local_minima

# Grid values are rounded to this many decimals so that 0 and 1 land exactly on
# a grid such as arange(-2, 2, 0.05), whose 40th point is -2 + 40 * 0.05.
_GRID_DECIMALS = 12

State = Mapping[str, torch.Tensor]


def alpha_grid(start: float, stop: float, step: float) -> np.ndarray:
    """`arange(start, stop, step)` as torch.arange sizes it, with 0 and 1 always on it.

    0 (the SGD solution) and 1 (the random point) are where the figure is
    marked and where the summary is read, so a grid that misses them gets
    them added rather than interpolated.
    """
    n = math.ceil((stop - start) / step)
    grid = np.round(start + step * np.arange(n), _GRID_DECIMALS)
    return np.union1d(grid, [0.0, 1.0])


def mix(theta_opt: State, theta_rand: State, alphas: torch.Tensor) -> dict[str, torch.Tensor]:
    """One parameter set per alpha, stacked on a new leading axis.

    `(1 - a) * opt + a * rand` is computed as written (not as torch.lerp), so
    alpha = 0 gives `opt` and alpha = 1 gives `rand` bit for bit.
    """
    out = {}
    for name, opt in theta_opt.items():
        a = alphas.to(device=opt.device, dtype=opt.dtype).view(-1, *([1] * opt.dim()))
        out[name] = (1 - a) * opt + a * theta_rand[name]
    return out


def sub_state(state: State, prefix: str) -> dict[str, torch.Tensor]:
    """The entries of a state_dict under `prefix`, keyed relative to it."""
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def affine_head(net: nn.Sequential) -> int:
    """How many leading modules of `net` form an affine map of its input: up to the first Linear.

    Everything before that Linear must hold no parameters (the book's Flatten).
    """
    for i, module in enumerate(net):
        if isinstance(module, nn.Linear):
            return i + 1
        if any(True for _ in module.parameters()):
            break
    raise ValueError("the network must start with parameter-free modules and a Linear layer")


def combine(bases: Sequence[State], coeffs: torch.Tensor) -> dict[str, torch.Tensor]:
    """One parameter set per row of `coeffs` [n, K], stacked on a new leading axis: sum_k c_ik bases[k].

    A row (1, 0, ..., 0) gives bases[0] bit for bit (adding exact zeros changes nothing)."""
    out = {}
    for name in bases[0]:
        stacked = torch.stack([b[name] for b in bases])  # [K, *shape]
        c = coeffs.to(device=stacked.device, dtype=stacked.dtype)
        out[name] = torch.einsum("nk,k...->n...", c, stacked)
    return out


@torch.inference_mode()
def combination_loss(
    net: nn.Sequential,
    bases: Sequence[State],
    coeffs: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy over all of (x, y) at every parameter set sum_k coeffs[i, k] bases[k].

    The states are keyed relative to `net` (`sub_state(model.state_dict(), "classifier.")`).
    The leading affine part of `net` (up to its first Linear) runs once per basis and batch; its outputs are
    combined with each row's coefficients, and the rest runs `chunk` parameter sets per vmapped pass. Sums are
    kept in float64, as `training.evaluate` does.
    """
    if coeffs.dim() != 2 or coeffs.shape[1] != len(bases):
        raise ValueError(f"coeffs must be [n, {len(bases)}], got {list(coeffs.shape)}")
    split = affine_head(net)
    head, tail = net[:split], net[split:]
    head_keys = {name for name, _ in head.named_parameters()}
    heads = [{k: v for k, v in b.items() if k in head_keys} for b in bases]
    tails = [{k: v for k, v in b.items() if k not in head_keys} for b in bases]
    chunks = [coeffs[i : i + chunk] for i in range(0, len(coeffs), chunk)]
    tail_params = [combine(tails, c) for c in chunks]
    forward_tail = vmap(lambda params, z: functional_call(tail, params, (z,)))

    was_training = net.training
    net.eval()
    n = len(coeffs)
    loss_sum = torch.zeros(n, dtype=torch.float64, device=x.device)
    correct = torch.zeros(n, dtype=torch.int64, device=x.device)
    for start in range(0, len(x), batch_size):
        xb, target = x[start : start + batch_size], y[start : start + batch_size]
        z = torch.stack([functional_call(head, h, (xb,)) for h in heads])  # [K, batch, features]
        i0 = 0
        for c, params in zip(chunks, tail_params, strict=True):
            mixed = torch.einsum("nk,kbf->nbf", c.to(device=z.device, dtype=z.dtype), z)
            logits = forward_tail(params, mixed)  # [chunk, batch, classes]
            per_example = F.cross_entropy(logits.flatten(0, 1), target.repeat(len(c)), reduction="none")
            loss_sum[i0 : i0 + len(c)] += per_example.view(len(c), -1).double().sum(dim=1)
            correct[i0 : i0 + len(c)] += (logits.argmax(dim=-1) == target).sum(dim=1)
            i0 += len(c)
    net.train(was_training)
    return (loss_sum / len(x)).cpu().numpy(), (correct.double() / len(x)).cpu().numpy()


def path_loss(
    net: nn.Sequential,
    theta_opt: State,
    theta_rand: State,
    alphas: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    alpha_chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy over all of (x, y) at every alpha: `combination_loss` at the
    coefficients (1 - alpha, alpha) of (theta_opt, theta_rand). States are keyed relative to `net`
    (`sub_state(model.state_dict(), "classifier.")`)."""
    a = alphas.to(torch.float64)
    return combination_loss(net, [theta_opt, theta_rand], torch.stack([1 - a, a], dim=1), x, y,
                            batch_size=batch_size, chunk=alpha_chunk)


# --------------------------------------------------------------------------
# What the figure claims, measured on one curve
# --------------------------------------------------------------------------
@dataclass
class PathSummary:
    loss_at_0: float
    loss_at_1: float
    # Grid points strictly inside (0, 1) below both neighbours by more than
    # `min_depth`, and the same count with no depth threshold.
    local_minima: int
    local_minima_strict: int
    minima_alphas: list[float]
    # Largest rise of the loss on [0, 1] above the higher endpoint (0: no barrier).
    barrier: float
    # The loss never decreases as alpha goes from 0 to 1 on the grid.
    monotone_0_to_1: bool
    # Mean |dL/dalpha| within `flat_window` of alpha = 1, on [0, 1 - flat_window),
    # and their ratio (small: the flat region the book describes around alpha = 1).
    slope_near_1: float
    slope_between: float
    slope_ratio: float


def summarize_path(alphas: np.ndarray, loss: np.ndarray, *, flat_window: float, min_depth: float) -> PathSummary:
    """Count local minima between 0 and 1 and compare slopes near 1 with those before it."""
    alphas, loss = np.asarray(alphas, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    i0, i1 = int(np.flatnonzero(alphas == 0.0)[0]), int(np.flatnonzero(alphas == 1.0)[0])
    minima = local_minima(alphas, loss, min_depth, 0.0, 1.0)
    slope = abs_slope(alphas, loss)
    near = np.abs(alphas - 1.0) <= flat_window
    between = (alphas >= 0.0) & (alphas < 1.0 - flat_window)
    slope_near = float(slope[near].mean())
    slope_between = float(slope[between].mean()) if between.any() else float("nan")
    segment = loss[i0 : i1 + 1]
    return PathSummary(
        loss_at_0=float(loss[i0]),
        loss_at_1=float(loss[i1]),
        local_minima=len(minima),
        local_minima_strict=len(local_minima(alphas, loss, 0.0, 0.0, 1.0)),
        minima_alphas=[float(a) for a in alphas[minima]],
        barrier=float(max(segment.max() - max(loss[i0], loss[i1]), 0.0)),
        monotone_0_to_1=bool(np.all(np.diff(segment) >= 0)),
        slope_near_1=slope_near,
        slope_between=slope_between,
        slope_ratio=slope_near / slope_between if slope_between > 0 else float("nan"),
    )
