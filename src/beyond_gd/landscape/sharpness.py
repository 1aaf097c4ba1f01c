"""The sharpness λ_max (the Hessian's largest eigenvalue) tracked along a training run, to a residual tolerance.

Each estimate is a thick-restart Lanczos run (Wu & Simon 2000) on
Hessian-vector products: a Krylov space of at most `basis_size` vectors is
grown from a start vector, its largest Ritz pair (θ, y) read off, and when the
space is full it restarts from its top `keep` Ritz vectors. It stops once the
true residual ‖H y − θ y‖ is at most tol × |θ|, or at a cap on the products
(then the estimate is flagged unconverged, and kept with its residual). For a
symmetric H an eigenvalue lies within the residual of θ, and θ never exceeds
λ_max (a Ritz value of a subspace), so a converged estimate is λ_max to within
tol × λ_max once the space has found the top of the spectrum. Along a run the
top eigenvector moves little between two evaluations a few steps apart, so each
evaluation starts from the previous one's top Ritz vector (Cohen et al. 2021
track the sharpness with Lanczos every few steps).

Every product H v the space is built from is kept (H V), so H y = (H V)^T s
for a Ritz vector y = V^T s costs no further product: the residual is the
true one, not the Lanczos recurrence's bound.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from beyond_gd.landscape.hessian import Hvp, Lanczos

# A new direction this small against the largest |θ| means the space is invariant under H: nothing is left to add.
_BREAKDOWN = 1e-12


@dataclass(frozen=True)
class TopEigen:
    value: float  # the largest Ritz value θ (NaN where a product was not finite)
    residual: float  # ||H y - θ y|| at its unit Ritz vector y: an eigenvalue of H lies within this of `value`
    products: int  # Hessian-vector products used
    converged: bool  # residual <= tol x |value| (a zero H: value 0, residual 0, converged)
    vector: torch.Tensor  # y, unit, float64: the next evaluation's warm start


def lanczos_top(hvp: Hvp, start: torch.Tensor, tol: float, max_products: int, basis_size: int,
                keep: int = 1) -> TopEigen:
    """λ_max of H by thick-restart Lanczos from `start`, until ||H y - θ y|| <= tol x |θ| or `max_products`.

    The Krylov space holds at most `basis_size` vectors (capped at the dimension); when full it restarts from
    its top `keep` Ritz vectors (their products are known, so a restart costs none). A product that is not
    finite (a blown-up network) ends it with value NaN, unconverged.
    """
    if max_products < 1:
        raise ValueError(f"max_products must be >= 1, got {max_products}")
    if not 1 <= keep < basis_size:
        raise ValueError(f"keep must be in [1, basis_size), got keep {keep}, basis_size {basis_size}")
    basis_size = min(basis_size, len(start))
    v = start.to(torch.float64)
    v = v / v.norm()
    vs, hvs = v[None], hvp(v)[None]
    products = 1
    while True:
        t = (vs @ hvs.T).cpu().numpy()
        if not np.isfinite(t).all():
            return TopEigen(float("nan"), float("nan"), products, False, v)
        values, vectors = np.linalg.eigh((t + t.T) / 2)
        s = torch.from_numpy(vectors[:, -1]).to(vs)
        theta = float(values[-1])
        y, hy = vs.T @ s, hvs.T @ s
        r = hy - theta * y
        residual = float(r.norm())
        v = y / y.norm()
        converged = residual <= tol * abs(theta)
        if converged or products >= max_products:
            return TopEigen(theta, residual, products, converged, v)
        if len(vs) >= basis_size:  # thick restart: the top `keep` Ritz vectors and their products
            kept = torch.from_numpy(vectors[:, -keep:]).to(vs)
            vs, hvs = (vs.T @ kept).T, (hvs.T @ kept).T
        # The residual is orthogonal to the space in exact arithmetic; twice restores it to round-off.
        for _ in range(2):
            r = r - vs.T @ (vs @ r)
        norm = float(r.norm())
        if norm <= _BREAKDOWN * max(abs(values).max(), 1e-300):  # invariant: no direction left to add
            return TopEigen(theta, residual, products, converged, v)
        w = r / norm
        vs, hvs = torch.cat([vs, w[None]]), torch.cat([hvs, hvp(w)[None]])
        products += 1


def top_ritz_vector(run: Lanczos) -> torch.Tensor:
    """The unit Ritz vector of a Lanczos run's largest Ritz value: a warm start for `lanczos_top`."""
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
