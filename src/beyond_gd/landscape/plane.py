"""The loss on a 2-D plane of parameter space (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss
Landscape of Neural Nets").

Two planes, both through a centre theta_c and spanned by two directions d1, d2, evaluated at
theta_c + a d1 + b d2:
- random directions, filter-normalised (Li et al. section 4): each filter of a direction (for a Linear layer,
  each output unit's row of its weight) rescaled to the norm of the same row of theta_c, so that a step of 1
  moves every unit by its own size whatever the scale of its weights (which ReLU networks leave free, Fig 6-2);
  the biases' directions are zero, as Li et al.'s code has it with `ignore='biasbn'`;
- the two principal directions of an optimizer's path (Li et al. section 7): a PCA of the iterates, the top
  right singular vectors of the stacked [theta_i - mean theta] (centred on their mean, as Li et al.'s code
  fits sklearn's PCA: uncentred, the first direction points at the path's mean and its share of the
  variance is inflated by the mean's distance from the end). The plane holds those directions through the
  final point, so that the path ends at the centre of its grid.

A grid of n points is the affine combinations sum_k c_ik theta_k of the centre and the two directions
(`plane_coefficients`), evaluated by `interpolation.combination_loss`: no model is ever loaded per grid point.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

State = Mapping[str, torch.Tensor]

# Li et al.'s code adds this to a direction's filter norm before dividing by it.
_NORM_EPS = 1e-10


def filter_normalized_direction(theta: State, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A Gaussian direction shaped like `theta`, each filter rescaled to the norm of theta's same filter.

    A filter is a slice along the first axis of a tensor of two or more dimensions (a Linear weight's row: one
    output unit's incoming weights; a convolution's output channel). Tensors of one dimension (biases) get a
    zero direction. The draws come from `generator` on the CPU, tensor by tensor in `theta`'s order, so one
    seed gives one direction on every device.
    """
    out = {}
    for name, w in theta.items():
        if w.dim() <= 1:
            out[name] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=generator, dtype=torch.float32).to(device=w.device, dtype=w.dtype)
        rows_w = w.reshape(len(w), -1).norm(dim=1)
        rows_d = d.reshape(len(d), -1).norm(dim=1)
        scale = (rows_w / (rows_d + _NORM_EPS)).view(-1, *([1] * (w.dim() - 1)))
        out[name] = d * scale
    return out


def grid_axis(lo: float, hi: float, resolution: int) -> np.ndarray:
    """`resolution` evenly spaced values from lo to hi; 0 exactly, if it lies on the spacing (a symmetric axis
    of odd resolution), so the centre is a grid point rather than a neighbour of one."""
    axis = np.linspace(lo, hi, resolution)
    near = np.abs(axis) <= 1e-9 * max(abs(lo), abs(hi))
    axis[near] = 0.0
    return axis


def plane_coefficients(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    """[len(a) * len(b), 3] coefficients (1, a, b) of (centre, d1, d2), a varying slowest (row-major grid)."""
    aa, bb = np.meshgrid(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), indexing="ij")
    ones = np.ones(aa.size)
    return torch.from_numpy(np.stack([ones, aa.ravel(), bb.ravel()], axis=1))


# --------------------------------------------------------------------------
# The principal plane of a path
# --------------------------------------------------------------------------
@dataclass
class PathPlane:
    """The plane through a path's last point that holds most of the path (Li et al. section 7)."""

    directions: torch.Tensor  # [2, dim] orthonormal rows, float64
    explained: np.ndarray  # [2] share of sum_i ||theta_i - theta_final||^2 along each direction
    coords: np.ndarray  # [n, 2] each point of the path projected on the directions (the last at (0, 0))
    off_plane: np.ndarray  # [n] ||theta_i - theta_final - projection||: each point's distance from the plane


def path_plane(path: torch.Tensor) -> PathPlane:
    """The top two principal directions of the path's points (the right singular vectors of the stacked
    [theta_i - mean theta]; the last row is final), their shares of the centred variance, and each point's
    coordinates about the final point.

    `path` is [n, dim] with n >= 3. Each direction's sign makes the path's point of largest |coordinate| along it
    positive, so one path gives one picture.
    """
    if path.dim() != 2 or len(path) < 3:
        raise ValueError(f"path must be [n >= 3, dim], got {list(path.shape)}")
    path = path.double()
    _, s, vh = torch.linalg.svd(path - path.mean(dim=0), full_matrices=False)
    rel = path - path[-1]
    directions = vh[:2].clone()
    coords = rel @ directions.T
    for k in range(2):
        if coords[coords[:, k].abs().argmax(), k] < 0:
            directions[k], coords[:, k] = -directions[k], -coords[:, k]
    energy = float((s**2).sum())
    explained = (s[:2] ** 2 / energy).cpu().numpy() if energy > 0 else np.zeros(2)
    off = (rel - coords @ directions).norm(dim=1)
    return PathPlane(directions, explained, coords.cpu().numpy(), off.cpu().numpy())


def span(coords: np.ndarray, margin: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Per axis, the range of `coords` [n, 2] widened by `margin` times its length on each side (an axis of
    zero length gets +-1), so a grid over it holds the whole projected path."""
    out = []
    for k in range(2):
        lo, hi = float(np.min(coords[:, k])), float(np.max(coords[:, k]))
        pad = margin * (hi - lo) if hi > lo else 1.0
        out.append((lo - pad, hi + pad))
    return out[0], out[1]
