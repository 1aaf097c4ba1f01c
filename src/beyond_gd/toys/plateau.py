"""A cliff, a gently sloped plateau, then a bowl: where AdaGrad's accumulated squares stall it.

The chapter: flat regions can make AdaGrad shrink its learning rate before it
reaches a minimum, and RMSProp's exponentially weighted average lets it forget
the steep past. The surface, in x (the walk) and y (a cross-valley):

    f(x, y) = height * sigmoid((cliff_x - x) / cliff_width)   # the steep drop the walk starts on
              + slope * huber_delta(x - bowl_x)                # plateau of gradient `slope`, then the bowl
              + curvature / 2 * y^2,                           # a valley across the walk
    huber_delta(u) = u^2 / (2 delta) if |u| <= delta else |u| - delta / 2,   delta = bowl_half_width.

Far from bowl_x the Huber term is a plane of slope `slope` (the plateau); within
bowl_half_width of it, a quadratic bowl of curvature slope / delta, so the
gradient is continuous. Paths come from torch.optim on a float64 2-vector.
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


def grid(s: Surface, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z[i, j] = f(x[j], y[i]), for contours."""
    xx, yy = np.meshgrid(x, y)
    return loss(s, xx, yy)
