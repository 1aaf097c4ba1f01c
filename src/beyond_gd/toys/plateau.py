"""A cliff, a gently sloped plateau, then a bowl: where AdaGrad's accumulated squares slow it to a crawl.

The chapter: flat regions can make AdaGrad shrink its learning rate before it
reaches a minimum, and RMSProp's exponentially weighted average lets it forget
the steep past. The surface, in x (the walk) and y (a cross-valley):

    f(x, y) = height * sigmoid((cliff_x - x) / cliff_width)   # the steep drop the walk starts on
              + slope * huber_delta(x - bowl_x)                # plateau of gradient `slope`, then the bowl
              + curvature / 2 * y^2,                           # a valley across the walk
    huber_delta(u) = u^2 / (2 delta) if |u| <= delta else |u| - delta / 2,   delta = bowl_half_width.

Far from bowl_x the Huber term is a plane of slope `slope` (the plateau); within
bowl_half_width of it, a quadratic bowl of curvature slope / delta, so the
gradient is continuous.

Two ways down it. `descend` steps a torch.optim optimizer on a float64
2-vector (the reference). `descend_to_bowl` runs torch's AdaGrad and RMSProp
definitions (`Rule`) in numpy on every learning rate at once, each run until it
lands in the bowl or reaches a step cap: AdaGrad's step on the plateau shrinks
like lr / sqrt(k) while the distance it covers still grows like sqrt(k), so
"never gets there" is a statement about a cap, and a cap far beyond torch's
per-step cost (hundreds of microseconds) takes a vectorized loop. A test
holds the two to the same paths.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import torch


class Surface(NamedTuple):
    height: float
    cliff_x: float
    cliff_width: float
    slope: float
    bowl_x: float
    bowl_half_width: float
    curvature: float


def loss(s: Surface, x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """f(x, y), elementwise, for tensors (differentiable) or arrays."""
    lib = torch if isinstance(x, torch.Tensor) else np
    u = x - s.bowl_x
    huber = lib.where(abs(u) <= s.bowl_half_width, u * u / (2 * s.bowl_half_width),
                      abs(u) - s.bowl_half_width / 2)
    cliff = s.height / (1 + lib.exp(-(s.cliff_x - x) / s.cliff_width))
    return cliff + s.slope * huber + 0.5 * s.curvature * y * y


def in_bowl(s: Surface, x: float) -> bool:
    return abs(x - s.bowl_x) <= s.bowl_half_width


class Path(NamedTuple):
    xy: np.ndarray          # (steps + 1, 2): the start, then after each step
    loss: np.ndarray        # (steps + 1,)
    grad_norm: np.ndarray   # (steps,): |gradient| at the point each step was taken from
    step_size: np.ndarray   # (steps,): |x_{k+1} - x_k|, the distance each step moved
    reached_step: int | None  # the first step that lands in the bowl, None if none does


def descend(s: Surface, make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], start: Sequence[float],
            steps: int) -> Path:
    """`steps` steps of the optimizer `make([p])` from `start` on the surface, recorded."""
    p = torch.tensor(list(start), dtype=torch.float64, requires_grad=True)
    opt = make([p])
    xy = np.empty((steps + 1, 2))
    values = np.empty(steps + 1)
    grads = np.empty(steps)
    reached = None
    for k in range(steps + 1):
        opt.zero_grad()
        value = loss(s, p[0], p[1])
        xy[k], values[k] = p.detach().numpy(), float(value.detach())
        if reached is None and k > 0 and in_bowl(s, xy[k, 0]):
            reached = k
        if k == steps or not math.isfinite(values[k]):
            break
        value.backward()
        grads[k] = float(p.grad.norm())
        opt.step()
    return Path(xy, values, grads, np.linalg.norm(np.diff(xy, axis=0), axis=1), reached)


RULES = ("adagrad", "rmsprop")


class Rule(NamedTuple):
    """torch.optim's AdaGrad or RMSProp (no momentum, no weight decay, not centred), per coordinate:
    AdaGrad   r += g^2;                      x -= lr g / (sqrt(r) + eps)
    RMSProp   r = alpha r + (1 - alpha) g^2; x -= lr g / (sqrt(r) + eps)"""

    kind: str        # one of RULES
    eps: float
    alpha: float     # RMSProp's decay (AdaGrad: unused)
    initial: float   # the accumulator's value before the first step (torch's initial_accumulator_value; 0)


class Run(NamedTuple):
    """One run from a start, stopped at its first step in the bowl or at the cap."""

    reached_step: int | None  # the first step in the bowl; None: not within the cap
    stopped: int              # the step it stopped at: reached_step, or the cap
    steps: np.ndarray         # the recorded steps it ran to (those of `record` up to its stop), then its stop
    xy: np.ndarray            # (len(steps), 2) where it was at each
    step_size: np.ndarray     # (len(steps),) |x_k - x_{k-1}| of the step that ended there (NaN at step 0)


def gradient(s: Surface, x: float, y: float) -> tuple[float, float]:
    """grad f at (x, y), in closed form (scalars: a run is a loop of float arithmetic)."""
    sig = 1 / (1 + math.exp(-(s.cliff_x - x) / s.cliff_width))
    u = x - s.bowl_x
    huber = u / s.bowl_half_width if abs(u) <= s.bowl_half_width else math.copysign(1.0, u)
    return -s.height / s.cliff_width * sig * (1 - sig) + s.slope * huber, s.curvature * y


def descend_to_bowl(s: Surface, rule: Rule, lr: float, start: Sequence[float], max_steps: int,
                    record: Sequence[int]) -> Run:
    """`rule` at `lr` from `start` until its first step in the bowl or `max_steps`; where it was at the steps of
    `record` (ascending; 0 is the start) up to its stop, and at its stop."""
    if rule.kind not in RULES:
        raise ValueError(f"rule {rule.kind!r}: one of {RULES}")
    adagrad, alpha, eps = rule.kind == "adagrad", rule.alpha, rule.eps
    x, y = float(start[0]), float(start[1])
    rx = ry = float(rule.initial)
    lo, hi = s.bowl_x - s.bowl_half_width, s.bowl_x + s.bowl_half_width
    wanted = [int(k) for k in record if 0 < k <= max_steps]
    steps, xy, sizes = ([0], [(x, y)], [math.nan]) if 0 in record else ([], [], [])
    at, size, reached, k = 0, math.nan, None, 0
    for k in range(1, max_steps + 1):
        gx, gy = gradient(s, x, y)
        if adagrad:
            rx += gx * gx
            ry += gy * gy
        else:
            rx = alpha * rx + (1 - alpha) * gx * gx
            ry = alpha * ry + (1 - alpha) * gy * gy
        dx, dy = lr * gx / (math.sqrt(rx) + eps), lr * gy / (math.sqrt(ry) + eps)
        x, y = x - dx, y - dy
        size = math.hypot(dx, dy)
        if lo <= x <= hi:
            reached = k
            break
        if at < len(wanted) and wanted[at] == k:
            steps.append(k)
            xy.append((x, y))
            sizes.append(size)
            at += 1
    if not steps or steps[-1] != k:
        steps.append(k)
        xy.append((x, y))
        sizes.append(size)
    return Run(reached, k, np.array(steps), np.array(xy, dtype=np.float64).reshape(-1, 2), np.array(sizes))


def grid(s: Surface, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z[i, j] = f(x[j], y[i]), for contours."""
    xx, yy = np.meshgrid(x, y)
    return loss(s, xx, yy)
