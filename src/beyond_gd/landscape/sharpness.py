"""The sharpness λ_max (the Hessian's largest eigenvalue) tracked cheaply along a training run.

Along a run the top eigenvector moves little between two evaluations a few
steps apart, so a power iteration warm-started from the previous evaluation's
vector needs only a few Hessian-vector products (Cohen et al. 2021 track the
sharpness the same way, with Lanczos every few steps). The first evaluation of
a run starts from the top Ritz vector of a short Lanczos run
(`beyond_gd.landscape.hessian.lanczos`), not from noise.

The iteration converges to the eigenvalue of largest magnitude: λ_max once
the top of the spectrum dominates its most negative end, which holds for the
MLP on MNIST (the hessian stage measures |λ_min| far below λ_max); a negative
estimate is reported as it is. Each estimate comes with its residual
‖Hv − λv‖, so a symmetric H has an eigenvalue within that distance of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from beyond_gd.landscape.hessian import Hvp, Lanczos


@dataclass(frozen=True)
class TopEigen:
    value: float  # the Rayleigh quotient v^T H v at the last unit vector v
    residual: float  # ||H v - value v||: an eigenvalue of H lies within this of `value`
    products: int  # Hessian-vector products used
    converged: bool  # the Rayleigh quotient moved by at most tol x |value| at the last product
    vector: torch.Tensor  # H v / ||H v||, unit, float64: the next evaluation's warm start


def power_iteration(hvp: Hvp, start: torch.Tensor, max_products: int, tol: float) -> TopEigen:
    """The eigenvalue of H of largest magnitude by power iteration from `start`.

    Stops after the first product whose Rayleigh quotient differs from the previous one by at most
    `tol` x its magnitude, or after `max_products` products (then `converged` is False).
    A zero product (H v = 0, a dead network) gives value 0, converged.
    """
    if max_products < 1:
        raise ValueError(f"max_products must be >= 1, got {max_products}")
    v = start.to(torch.float64)
    v = v / v.norm()
    previous = None
    value = residual = float("nan")
    converged = False
    products = 0
    while products < max_products:
        w = hvp(v)
        products += 1
        value = float(w @ v)
        residual = float((w - value * v).norm())
        norm = float(w.norm())
        if not np.isfinite(norm):  # a diverged network: nothing to iterate on
            break
        if norm == 0.0:
            value, residual, converged = 0.0, 0.0, True
            break
        converged = previous is not None and abs(value - previous) <= tol * abs(value)
        v = w / norm if value >= 0 else -w / norm  # keep the sign: a negative top flips v each product
        if converged:
            break
        previous = value
    return TopEigen(value, residual, products, converged, v)


def top_ritz_vector(run: Lanczos) -> torch.Tensor:
    """The unit Ritz vector of a Lanczos run's largest Ritz value: a warm start for `power_iteration`."""
    _values, vectors = run.ritz()
    y = run.basis.T @ torch.from_numpy(vectors[:, -1]).to(run.basis)
    return y / y.norm()


def edge_ratio(lambda_max: float | np.ndarray, lr: float) -> float | np.ndarray:
    """λ_max over GD's stability limit 2 / lr on a quadratic (λ_max x lr / 2): 1 is the edge of stability."""
    return lambda_max * lr / 2


def first_reach(steps: np.ndarray, ratios: np.ndarray, reach: float) -> int | None:
    """The first step whose ratio (λ_max / (2 / lr)) is at least `reach`, None if none is (NaNs never reach)."""
    hits = np.flatnonzero(np.nan_to_num(np.asarray(ratios, dtype=float), nan=-np.inf) >= reach)
    return int(np.asarray(steps)[hits[0]]) if len(hits) else None


@dataclass(frozen=True)
class Hovering:
    """The ratios λ_max / (2 / lr) after the run first reached the edge: how many, and their quartiles."""

    evaluations: int
    q25: float
    median: float
    q75: float


def hovering(steps: np.ndarray, ratios: np.ndarray, reached_at: int | None) -> Hovering:
    """Quartiles of the finite ratios at the steps strictly after `reached_at` (NaN where there are none)."""
    steps, ratios = np.asarray(steps), np.asarray(ratios, dtype=float)
    after = ratios[(steps > reached_at) & np.isfinite(ratios)] if reached_at is not None else np.empty(0)
    if not len(after):
        return Hovering(0, float("nan"), float("nan"), float("nan"))
    q25, median, q75 = np.quantile(after, [0.25, 0.5, 0.75])
    return Hovering(len(after), float(q25), float(median), float(q75))
