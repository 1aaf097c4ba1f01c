"""The Hessian's eigenvalue density by stochastic Lanczos quadrature (SLQ).

An m-step Lanczos run from a unit start v gives Ritz values theta_i and
weights tau_i (the squared first components of T's eigenvectors): a Gauss
quadrature of the start's spectral measure, exact for every polynomial of
degree < 2m, sum_i tau_i p(theta_i) = v^T p(H) v. Averaged over random
starts it estimates the eigenvalue density phi(t) = (1/n) sum_j delta(t -
lambda_j); broadened by a Gaussian it can be drawn (Lin, Saad & Yang 2016;
Ghorbani, Krishnan & Xiao 2019; PyHessian, Yao et al. 2020). Every function
here is pure: Lanczos runs in, arrays and numbers out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from beyond_gd.landscape.hessian import Hvp, Lanczos, lanczos


@dataclass(frozen=True)
class Quadrature:
    """One start's Gauss quadrature of the spectral measure: nodes ascending, weights summing to 1."""

    nodes: np.ndarray
    weights: np.ndarray
    # |beta_m s_i| per node: the Lanczos bound on ||H y_i - theta_i y_i|| (small: the node is an eigenvalue).
    bounds: np.ndarray

    @classmethod
    def of(cls, run: Lanczos) -> Quadrature:
        values, vectors = run.ritz()
        return cls(values, vectors[0] ** 2, np.abs(run.betas[-1] * vectors[-1]))


def slq(hvp: Hvp, dim: int, starts: int, steps: int, generator: torch.Generator,
        device: torch.device) -> list[Quadrature]:
    """`starts` independent Lanczos runs of `steps` steps from Gaussian starts drawn from `generator`."""
    return [Quadrature.of(lanczos(hvp, dim, steps, generator, device)) for _ in range(starts)]


def broadened_density(quads: Sequence[Quadrature], grid: np.ndarray, sigma: float) -> np.ndarray:
    """phi(t) on `grid`: the mean over starts of sum_i tau_i N(t; theta_i, sigma^2).

    A density in t: it integrates to 1 over the real line, and on a grid that
    covers every node by several sigma.
    """
    t = np.asarray(grid, dtype=np.float64)[:, None]
    out = np.zeros(len(t))
    for q in quads:
        out += (q.weights * np.exp(-0.5 * ((t - q.nodes) / sigma) ** 2)).sum(axis=1)
    return out / (len(quads) * sigma * np.sqrt(2 * np.pi))


def mass_below(quads: Sequence[Quadrature], threshold: float) -> float:
    """The estimated share of eigenvalues below `threshold` (no broadening): mean over starts of sum tau_i."""
    return float(np.mean(masses_below(quads, threshold)))


def masses_below(quads: Sequence[Quadrature], threshold: float) -> np.ndarray:
    """Each start's estimate of the share of eigenvalues below `threshold`: its weight on nodes below it."""
    return np.array([q.weights[q.nodes < threshold].sum() for q in quads], dtype=np.float64)


def trace_estimate(quads: Sequence[Quadrature], dim: int) -> float:
    """tr H ~ n x the mean over starts of v^T H v = sum_i tau_i theta_i (exact for each start: degree 1)."""
    return float(dim * np.mean([q.weights @ q.nodes for q in quads]))


def converged_top(q: Quadrature, count: int, tol: float) -> np.ndarray:
    """The largest nodes, descending, up to `count` of them, as long as each is converged
    (bound <= tol x the largest |node|): values Lanczos has resolved as eigenvalues."""
    order = np.argsort(q.nodes)[::-1][:count]
    scale = np.abs(q.nodes).max()
    ok = q.bounds[order] <= tol * scale
    stop = int(np.argmin(ok)) if not ok.all() else len(order)
    return q.nodes[order[:stop]]
