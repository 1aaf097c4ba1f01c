"""Toy surfaces behind the chapter's illustrations, computed rather than drawn.

Figs 6-1 (noise escapes shallow minima), 6-4 (kinds of critical point, and how
rare minima get with dimension), 6-5 (a saddle), 6-6 (the gradient is up to
90 degrees off the way to the minimum), 6-7 (the gradient turns along the
steepest-descent line) and 6-10 (steepest descent zig-zags, conjugate gradient
does not). Pure numpy in float64: every function takes plain values and a seed
where it draws random numbers, and returns arrays; nothing here reads or
writes files. All 2-D quadratics are centred on the origin,
f(w) = 1/2 w^T H w, so the direction to the minimum from w is -w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq

# Fig 6-1's three basins, named by what the figure shows about them.
BASIN_LABELS = ("shallow", "deep", "global")
# Samples of 10 x 10 float64 matrices per batch in the GOE study: bounds memory
# (64 MiB a batch) without changing the result (draws are sequential).
_GOE_BATCH_BYTES = 64 * 2**20


# --------------------------------------------------------------------------
# Fig 6-1: mini-batch noise escapes a shallow minimum, not a deep one
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Wells:
    """f(x) = confinement * x^2 - sum_i depth_i * exp(-(x - center_i)^2 / (2 width_i^2)).

    Gaussian wells on a gentle bowl: each well is a basin whose depth and
    width set its barrier, and the bowl keeps every run on the picture.
    """

    centers: tuple[float, ...]
    depths: tuple[float, ...]
    widths: tuple[float, ...]
    confinement: float


def wells_loss(x: np.ndarray, wells: Wells) -> np.ndarray:
    z = (np.asarray(x, dtype=np.float64)[..., None] - np.array(wells.centers)) / np.array(wells.widths)
    return wells.confinement * np.asarray(x) ** 2 - (np.array(wells.depths) * np.exp(-0.5 * z**2)).sum(-1)


def wells_grad(x: np.ndarray, wells: Wells) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    widths = np.array(wells.widths)
    z = (x[..., None] - np.array(wells.centers)) / widths
    return 2 * wells.confinement * x + (np.array(wells.depths) * z / widths * np.exp(-0.5 * z**2)).sum(-1)


@dataclass(frozen=True)
class Basins:
    """The critical points of a 1-D loss and the basins they bound."""

    minima: np.ndarray  # x of each local minimum, ascending
    maxima: np.ndarray  # x of the local maxima between them (basin boundaries), ascending
    barriers: np.ndarray  # per minimum: the climb to its lower neighbouring maximum (loss units)
    labels: tuple[str, ...]  # per minimum: one of BASIN_LABELS

    def of(self, x: np.ndarray) -> np.ndarray:
        """Index (into `minima`) of the basin each x lies in."""
        return np.searchsorted(self.maxima, x)


def find_basins(wells: Wells, x_min: float, x_max: float, points: int) -> Basins:
    """Locate the critical points by sign changes of f' on a grid, refined by Brent's method.

    Exactly three minima are required: the global one, and two local ones
    labelled by barrier height (the lower barrier is the "shallow" basin).
    """
    grid = np.linspace(x_min, x_max, points)
    g = wells_grad(grid, wells)
    lo, hi = g[:-1], g[1:]
    f_prime = lambda x: float(wells_grad(np.array(x), wells))  # noqa: E731
    minima = np.array([brentq(f_prime, grid[i], grid[i + 1]) for i in np.flatnonzero((lo < 0) & (hi >= 0))])
    maxima = np.array([brentq(f_prime, grid[i], grid[i + 1]) for i in np.flatnonzero((lo > 0) & (hi <= 0))])
    if len(minima) != len(BASIN_LABELS):
        raise ValueError(f"the wells give {len(minima)} minima on [{x_min}, {x_max}]; Fig 6-1 needs 3")
    f_min, f_max = wells_loss(minima, wells), wells_loss(maxima, wells)
    # Minimum i sits between maxima i-1 and i; an outer basin has one neighbour.
    barriers = np.array([min(f_max[j] for j in (i - 1, i) if 0 <= j < len(maxima)) - f_min[i]
                         for i in range(len(minima))])
    labels = [""] * len(minima)
    glob = int(np.argmin(f_min))
    labels[glob] = "global"
    local = sorted((i for i in range(len(minima)) if i != glob), key=lambda i: barriers[i])
    labels[local[0]], labels[local[1]] = "shallow", "deep"
    return Basins(minima, maxima, barriers, tuple(labels))


@dataclass(frozen=True)
class EscapeRuns:
    steps: np.ndarray  # recorded step numbers: 0, record_every, 2 * record_every, ...
    paths: np.ndarray  # [start basin, run, recorded step]: x along each run
    final_basin: np.ndarray  # [start basin, run]: index of the basin each run ends in

    def escape_share(self) -> np.ndarray:
        """Per start basin: the share of runs that end outside it."""
        start = np.arange(self.final_basin.shape[0])[:, None]
        return (self.final_basin != start).mean(axis=1)

    def transitions(self) -> np.ndarray:
        """[start basin, end basin]: the number of runs."""
        n = self.final_basin.shape[0]
        return np.stack([np.bincount(row, minlength=n) for row in self.final_basin])


def noisy_descent(wells: Wells, basins: Basins, *, lr: float, steps: int, noise_scale: float,
                  runs: int, record_every: int, seed: int) -> EscapeRuns:
    """Gradient descent with Gaussian gradient noise, `runs` runs from each minimum.

    x <- x - lr * (f'(x) + noise_scale * xi), xi ~ N(0, 1): the mini-batch
    gradient as the true one plus zero-mean noise. Its stationary spread is a
    temperature of about lr * noise_scale^2 / 2 (Langevin dynamics), so a
    barrier well above it holds a run and one near it does not (Kramers).
    """
    rng = np.random.default_rng(seed)
    x = np.repeat(basins.minima[:, None], runs, axis=1)
    recorded = [x.copy()]
    for step in range(1, steps + 1):
        x = x - lr * (wells_grad(x, wells) + noise_scale * rng.standard_normal(x.shape))
        if step % record_every == 0:
            recorded.append(x.copy())
    return EscapeRuns(np.arange(0, steps + 1, record_every), np.stack(recorded, axis=-1), basins.of(x))


# --------------------------------------------------------------------------
# Fig 6-4: the three kinds of critical point; minima get rare with dimension
# --------------------------------------------------------------------------
def critical_point_curves(x: np.ndarray) -> dict[str, np.ndarray]:
    """The 1-D critical point at x = 0 as a minimum, a maximum and a flat point (inflection)."""
    return {"minimum": x**2, "maximum": -(x**2), "flat": x**3}


def goe_minima_counts(max_dim: int, samples: int, seed: int) -> np.ndarray:
    """counts[d - 1]: of `samples` random Hessians of size d, how many are positive definite.

    Hessians are drawn from the Gaussian orthogonal ensemble: symmetric, with
    independent N(0, 1) diagonal and N(0, 1/2) off-diagonal entries (the law
    of (A + A^T) / 2 for A i.i.d. N(0, 1)). A critical point is a minimum when every eigenvalue
    of H is positive. The leading d x d block of a GOE matrix is itself GOE,
    and it can be positive definite only if the (d-1) x (d-1) block is
    (Sylvester), so one draw of size `max_dim` serves every d and only the
    survivors of d - 1 need their eigenvalues at d. The estimates for
    different d are therefore correlated, each one unbiased.
    """
    rng = np.random.default_rng(seed)
    counts = np.zeros(max_dim, dtype=np.int64)
    batch = max(1, _GOE_BATCH_BYTES // (8 * max_dim * max_dim))
    diag, upper = np.arange(max_dim), np.triu_indices(max_dim, 1)
    for start in range(0, samples, batch):
        rows = min(batch, samples - start)
        h = np.empty((rows, max_dim, max_dim))
        h[:, diag, diag] = rng.standard_normal((rows, max_dim))
        off = rng.standard_normal((rows, len(upper[0]))) * math.sqrt(0.5)
        h[:, upper[0], upper[1]] = off
        h[:, upper[1], upper[0]] = off
        for d in range(1, max_dim + 1):
            h = h[np.linalg.eigvalsh(h[:, :d, :d])[:, 0] > 0]
            counts[d - 1] += len(h)
            if not len(h):
                break
    return counts


def book_minima_share(d: np.ndarray) -> np.ndarray:
    """The chapter's heuristic: each of d axes is a minimum with chance 1/3, so 1/3^d."""
    return 3.0 ** -np.asarray(d, dtype=np.float64)


def goe_asymptotic_share(d: np.ndarray) -> np.ndarray:
    """Leading order of P(GOE all eigenvalues > 0) = exp(-theta d^2), theta = ln(3)/4.

    Dean & Majumdar, PRL 97, 160201 (2006): exponent only, no prefactor, so
    it is a large-d guide, not a small-d value.
    """
    return 3.0 ** (-np.asarray(d, dtype=np.float64) ** 2 / 4)


# --------------------------------------------------------------------------
# Fig 6-5: a saddle
# --------------------------------------------------------------------------
def saddle(x, y, ab_coefficient: float, cd_coefficient: float):  # noqa: ANN001, ANN201 (numpy or torch)
    """z = a x^2 - c y^2: a minimum along A-B (the x axis), a maximum along C-D (the y axis)."""
    return ab_coefficient * x**2 - cd_coefficient * y**2


def saddle_cuts(extent: float, points: int, ab_coefficient: float,
                cd_coefficient: float) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The two 1-D cuts through the critical point: cut name -> (x, y, z)."""
    s, zero = np.linspace(-extent, extent, points), np.zeros(points)
    return {"A-B": (s, zero, saddle(s, zero, ab_coefficient, cd_coefficient)),
            "C-D": (zero, s, saddle(zero, s, ab_coefficient, cd_coefficient))}


def saddle_hessian_eigenvalues(ab_coefficient: float, cd_coefficient: float) -> np.ndarray:
    """Eigenvalues (ascending) of the saddle's Hessian at the origin, by autograd, not by hand."""
    fn = lambda w: saddle(w[0], w[1], ab_coefficient, cd_coefficient)  # noqa: E731
    hessian = torch.autograd.functional.hessian(fn, torch.zeros(2, dtype=torch.float64))
    return np.linalg.eigvalsh(hessian.numpy())


def grid_values(fn, extent: float, points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """Axes and values of fn(x, y) on a square grid: z[i, j] = fn(x[j], y[i]) (matplotlib's layout)."""
    axis = np.linspace(-extent, extent, points)
    xx, yy = np.meshgrid(axis, axis)
    return axis, axis.copy(), fn(xx, yy)


# --------------------------------------------------------------------------
# Figs 6-6 and 6-7: the gradient on an ill-conditioned quadratic
# --------------------------------------------------------------------------
def quadratic_hessian(curvature: float, condition_number: float, rotation_deg: float) -> np.ndarray:
    """2 x 2 Hessian with eigenvalues (curvature, curvature * condition_number), axes turned by rotation."""
    t = math.radians(rotation_deg)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return rot @ np.diag([curvature, curvature * condition_number]) @ rot.T


def quadratic_loss(h: np.ndarray):  # noqa: ANN201
    """f(x, y) = 1/2 [x y] H [x y]^T, vectorised over grids."""
    return lambda x, y: 0.5 * (h[0, 0] * x**2 + 2 * h[0, 1] * x * y + h[1, 1] * y**2)


def angle_deg(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle in degrees between 2-D row vectors; atan2 stays accurate near 0 and 90."""
    cross = u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    return np.degrees(np.arctan2(np.abs(cross), (u * v).sum(-1)))


def gradient_angles(h: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients at `points` and the angle between each negative gradient and the way to the minimum.

    The angle is undefined at the minimum itself, where it is NaN.
    """
    grads = points @ h  # H is symmetric
    angles = angle_deg(-grads, -points)
    return grads, np.where(np.linalg.norm(points, axis=-1) > 0, angles, np.nan)


def largest_angle_sampled(h: np.ndarray, directions: int) -> float:
    """Largest angle over `directions` unit points evenly spread on a half circle.

    On a quadratic the angle depends only on the direction from the minimum,
    and w and -w give the same angle, so a half circle covers every case.
    """
    t = np.linspace(0, np.pi, directions, endpoint=False)
    return float(np.max(gradient_angles(h, np.stack([np.cos(t), np.sin(t)], axis=-1))[1]))


def largest_angle_theory(condition_number: float) -> float:
    """arccos(2 sqrt(k) / (1 + k)): the Kantorovich bound on cos(angle), attained (degrees)."""
    return math.degrees(math.acos(2 * math.sqrt(condition_number) / (1 + condition_number)))


@dataclass(frozen=True)
class SteepestLine:
    steps: np.ndarray  # multiples s of the start gradient g0 moved: point = start - s * g0
    points: np.ndarray  # [i, 2]
    unit_grads: np.ndarray  # [i, 2]: gradients scaled to length 1, as the book draws them
    turn_deg: np.ndarray  # [i]: angle between each gradient and the one at the start


def steepest_descent_line(h: np.ndarray, start: np.ndarray, fraction: float, points: int) -> SteepestLine:
    """Walk the steepest-descent line fixed at `start`, up to `fraction` of the exact line-search step.

    The line search's minimiser s* = g0.g0 / g0.H g0 is where the gradient has
    turned 90 degrees (it is orthogonal to the line there); on circular
    contours it is the minimum itself, where the gradient vanishes, hence
    fraction < 1.
    """
    g0 = h @ start
    s = np.linspace(0, fraction * (g0 @ g0) / (g0 @ h @ g0), points)
    pts = start - s[:, None] * g0
    grads = pts @ h
    return SteepestLine(s, pts, grads / np.linalg.norm(grads, axis=-1, keepdims=True),
                        angle_deg(grads, np.broadcast_to(g0, grads.shape)))


# --------------------------------------------------------------------------
# Fig 6-10: steepest descent with exact line search vs conjugate gradient
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Descent:
    """Iterates on f(x) = 1/2 x^T A x - b^T x, minimiser x* = A^-1 b."""

    path: np.ndarray  # [iteration, n]: path[0] is the start
    rel_energy_error: np.ndarray  # [iteration]: (f(x_k) - f*) / (f(x_0) - f*), the A-norm error squared
    converged: bool  # reached the tolerance within the iteration budget

    @property
    def iterations(self) -> int:
        return len(self.path) - 1


def steepest_descent(a: np.ndarray, b: np.ndarray, x0: np.ndarray, x_star: np.ndarray,
                     tol: float, max_iter: int) -> Descent:
    """Move along the residual r = b - A x to the exact line minimum, step r.r / r.A r."""
    energy = _energy_error(a, x0, x_star)
    path, errors = [x0.astype(np.float64)], [1.0]
    while errors[-1] > tol and len(path) <= max_iter:
        r = b - a @ path[-1]
        rr = r @ r
        if rr == 0:
            break
        path.append(path[-1] + rr / (r @ a @ r) * r)
        errors.append(energy(path[-1]))
    return Descent(np.array(path), np.array(errors), errors[-1] <= tol)


def conjugate_gradient(a: np.ndarray, b: np.ndarray, x0: np.ndarray, x_star: np.ndarray,
                       tol: float, max_iter: int) -> Descent:
    """Linear CG (Hestenes & Stiefel 1952): each direction A-conjugate to the ones before.

    Exact arithmetic ends at the minimum in at most n steps (Nocedal & Wright,
    Numerical Optimization, 2nd ed., Thm 5.1).
    """
    energy = _energy_error(a, x0, x_star)
    path, errors = [x0.astype(np.float64)], [1.0]
    r = b - a @ path[0]
    p, rr = r.copy(), r @ r
    while errors[-1] > tol and len(path) <= max_iter and rr > 0:
        ap = a @ p
        alpha = rr / (p @ ap)
        path.append(path[-1] + alpha * p)
        errors.append(energy(path[-1]))
        r = r - alpha * ap
        rr, rr_old = r @ r, rr
        p = r + rr / rr_old * p
    return Descent(np.array(path), np.array(errors), errors[-1] <= tol)


def _energy_error(a: np.ndarray, x0: np.ndarray, x_star: np.ndarray):  # noqa: ANN202
    """x -> (f(x) - f*) / (f(x0) - f*), from the error e = x - x* (f - f* = e.A e / 2): no cancellation."""
    e0 = x0 - x_star
    base = e0 @ a @ e0
    if base <= 0:
        raise ValueError("the start is the minimum: nothing to descend")
    return lambda x: float((x - x_star) @ a @ (x - x_star) / base)


def ill_conditioned_quadratic(dim: int, condition_number: float,
                              seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random SPD matrix A, minimiser x* and start x0.

    A = Q diag(lambda) Q^T with Q a random orthogonal matrix (QR of a Gaussian
    one) and eigenvalues spread geometrically from 1 to condition_number, so
    every scale in between is present. Both methods are invariant to scaling
    A, so the smallest eigenvalue 1 loses nothing. x* and x0 are N(0, I).
    """
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    a = (q * np.geomspace(1, condition_number, dim)) @ q.T
    return (a + a.T) / 2, rng.standard_normal(dim), rng.standard_normal(dim)


def iterations_to(rel_energy_error: np.ndarray, tol: float) -> int | None:
    """First iteration at or below tol; None if never."""
    hits = np.flatnonzero(rel_energy_error <= tol)
    return int(hits[0]) if len(hits) else None


def sd_iterations_bound(condition_number: float, tol: float) -> int:
    """Iterations steepest descent needs at worst: E_k / E_0 <= ((k-1)/(k+1))^(2k).

    Nocedal & Wright, Numerical Optimization, 2nd ed., eq. 3.29 (energy norm).
    """
    ratio = ((condition_number - 1) / (condition_number + 1)) ** 2
    return 1 if ratio == 0 else math.ceil(math.log(tol) / math.log(ratio))


def cg_iterations_bound(condition_number: float, dim: int, tol: float) -> int:
    """CG's bound: at most n steps, and E_k / E_0 <= 4 ((sqrt k - 1)/(sqrt k + 1))^(2k).

    Nocedal & Wright, Numerical Optimization, 2nd ed., Thm 5.1 and eq. 5.36.
    """
    ratio = ((math.sqrt(condition_number) - 1) / (math.sqrt(condition_number) + 1)) ** 2
    by_rate = 1 if ratio == 0 else max(1, math.ceil(math.log(tol / 4) / math.log(ratio)))
    return min(dim, by_rate)
