"""Fig 6-3: the loss on the straight line from the SGD solution to a random point.

The book's code: `theta(alpha) = (1 - alpha) * theta_opt + alpha * theta_rand`
for `alpha in torch.arange(-2, 2, 0.05)`, so alpha = 0 is the SGD solution and
alpha = 1 the random point (Goodfellow, Vinyals & Saxe 2014, "Qualitatively
characterizing neural network optimization problems", used the training run's
own initialisation as that point). Every alpha of a chunk is evaluated in one
vmapped forward pass (on a CPU one big batch per forward is what pays,
measured here; batching many small models is not), never by loading a model
per alpha.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
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


@torch.inference_mode()
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
    """Mean cross-entropy and accuracy over all of (x, y) at every alpha.

    The states are keyed relative to `net` (`sub_state(model.state_dict(), "classifier.")`).
    The first Linear layer is affine in its parameters, so its output at
    theta(alpha) is the same mix of its outputs at the two endpoints: it runs
    twice per batch instead of once per alpha (784 x 256 of the book's
    268,800 multiply-adds per image; measured 1.75x faster on this CPU). The
    rest of the network runs `alpha_chunk` parameter sets at a time through
    one vmapped `functional_call`. Sums are kept in float64, as
    `training.evaluate` does.
    """
    split = affine_head(net)
    head, tail = net[:split], net[split:]
    head_keys = {name for name, _ in head.named_parameters()}
    head_opt = {k: v for k, v in theta_opt.items() if k in head_keys}
    head_rand = {k: v for k, v in theta_rand.items() if k in head_keys}
    tail_opt = {k: v for k, v in theta_opt.items() if k not in head_keys}
    tail_rand = {k: theta_rand[k] for k in tail_opt}
    chunks = [alphas[a0 : a0 + alpha_chunk] for a0 in range(0, len(alphas), alpha_chunk)]
    tail_params = [mix(tail_opt, tail_rand, chunk) for chunk in chunks]
    forward_tail = vmap(lambda params, z: functional_call(tail, params, (z,)))

    was_training = net.training
    net.eval()
    loss_sum = torch.zeros(len(alphas), dtype=torch.float64, device=x.device)
    correct = torch.zeros(len(alphas), dtype=torch.int64, device=x.device)
    for start in range(0, len(x), batch_size):
        xb, target = x[start : start + batch_size], y[start : start + batch_size]
        z_opt = functional_call(head, head_opt, (xb,))
        z_rand = functional_call(head, head_rand, (xb,))
        a0 = 0
        for chunk, params in zip(chunks, tail_params, strict=True):
            weight = chunk.to(device=z_opt.device, dtype=z_opt.dtype).view(-1, 1, 1)
            # torch.lerp is exact at weight 0 and 1, so the endpoints stay the endpoint models.
            logits = forward_tail(params, torch.lerp(z_opt, z_rand, weight))  # [alphas, batch, classes]
            per_example = F.cross_entropy(logits.flatten(0, 1), target.repeat(len(chunk)), reduction="none")
            loss_sum[a0 : a0 + len(chunk)] += per_example.view(len(chunk), -1).double().sum(dim=1)
            correct[a0 : a0 + len(chunk)] += (logits.argmax(dim=-1) == target).sum(dim=1)
            a0 += len(chunk)
    net.train(was_training)
    return (loss_sum / len(x)).cpu().numpy(), (correct.double() / len(x)).cpu().numpy()


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
