"""Fig 6-8: momentum smooths a random walk (pure; no file I/O, no global state).

The book's toy: each step a random integer between `low` and `high`, smoothed
by the exponentially weighted average `new = m * prev + (1 - m) * choice`. The
smoothed sequence starts from the first raw step (s_1 = x_1), as the book's
list does (its first element is a raw draw), so a large first step lingers:
the book's "early errors persist".

Theory for i.i.d. steps of variance sigma^2 (q = (1 - m) / (1 + m)):
- stationary: Var(s_t) -> q sigma^2, the EWMA's textbook variance;
- exact at step t (1-based): Var(s_t) = sigma^2 (q + (1 - q) m^(2(t - 1))),
  since s_t = m^(t-1) x_1 + (1 - m) sum_{k=2..t} m^(t-k) x_k.
For m = 0.99 the second term is still 0.37 sigma^2 at t = 50, so within the
figure's 100 steps the large momenta are far from stationary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from beyond_gd.measures import ewma_stationary_std


@dataclass(frozen=True)
class Walk:
    momentum: float
    raw: np.ndarray  # (steps,) the integer steps drawn
    smoothed: np.ndarray  # (steps,) their exponentially weighted average


@dataclass(frozen=True)
class StdRow:
    """Standard deviations of the steps at a fixed step index, across independent walks."""

    momentum: float
    raw_std: float  # measured, of the raw steps
    measured_std: float  # measured, of the smoothed steps
    theory_std: float  # stationary: sqrt((1 - m) / (1 + m)) * the exact raw std
    ratio: float  # measured_std / theory_std
    exact_std: float  # the finite-step formula over the same window of steps
    exact_ratio: float  # measured_std / exact_std


def figure_walks(
    momenta: list[float], steps: int, low: int, high: int, include_high: bool, seed: int
) -> list[Walk]:
    """One walk of `steps` per momentum, each with its own fresh random sequence (as the book's figure)."""
    rngs = _generators(seed, purpose=0, count=len(momenta))
    walks = []
    for m, rng in zip(momenta, rngs, strict=True):
        raw = draw_steps(rng, low, high, include_high, (steps,))
        walks.append(Walk(m, raw, smooth(raw, m)))
    return walks


def std_table(
    momenta: list[float], steps: int, burn_in: int, repeats: int, low: int, high: int, include_high: bool, seed: int
) -> list[StdRow]:
    """Measured std of the smoothed steps per momentum, beside the stationary and the exact theory.

    What is measured: `repeats` independent walks of `steps` steps per
    momentum; at each step t in (burn_in, steps] the variance across the walks
    (ddof=1); those variances averaged over the window, then the square root.
    The exact column is the same average of the finite-step formula, so it is
    the honest reference whatever the burn-in; the stationary one is what the
    chapter's claim is about and agrees once m^(2 burn_in) is negligible.
    """
    sigma = raw_std(low, high, include_high)
    rngs = _generators(seed, purpose=1, count=len(momenta))
    rows = []
    for m, rng in zip(momenta, rngs, strict=True):
        raw_var = smooth_var = 0.0
        s = np.zeros(repeats)
        for t in range(1, steps + 1):
            x = draw_steps(rng, low, high, include_high, (repeats,)).astype(np.float64)
            s = x if t == 1 else m * s + (1 - m) * x
            if t > burn_in:
                raw_var += x.var(ddof=1)
                smooth_var += s.var(ddof=1)
        window = steps - burn_in
        measured = math.sqrt(smooth_var / window)
        theory = float(ewma_stationary_std(m, sigma))
        exact = finite_step_std(m, sigma, burn_in + 1, steps)
        rows.append(StdRow(m, math.sqrt(raw_var / window), measured, theory, measured / theory,
                           exact, measured / exact))
    return rows


def draw_steps(rng: np.random.Generator, low: int, high: int, include_high: bool, shape: tuple[int, ...]) -> np.ndarray:
    """Integers uniform on [low, high] (include_high) or [low, high), like torch.randint(low, high)."""
    return rng.integers(low, high, size=shape, endpoint=include_high)


def smooth(raw: np.ndarray, m: float) -> np.ndarray:
    """s_1 = x_1; s_t = m s_{t-1} + (1 - m) x_t along the last axis."""
    x = np.asarray(raw, dtype=np.float64)
    s = np.empty_like(x)
    s[..., 0] = x[..., 0]
    for t in range(1, x.shape[-1]):
        s[..., t] = m * s[..., t - 1] + (1 - m) * x[..., t]
    return s


def raw_std(low: int, high: int, include_high: bool) -> float:
    """Std of a uniform draw from n consecutive integers: sqrt((n^2 - 1) / 12)."""
    n = high - low + (1 if include_high else 0)
    return math.sqrt((n * n - 1) / 12)


def raw_mean(low: int, high: int, include_high: bool) -> float:
    """-0.5 for torch.randint(-10, 10): the second edition's walk drifts; 0 for -10..10 inclusive."""
    return (low + (high if include_high else high - 1)) / 2


def finite_step_std(m: float, sigma: float, first: int, last: int) -> float:
    """sqrt of the mean over steps t = first..last (1-based) of Var(s_t) = sigma^2 (q + (1 - q) m^(2(t-1)))."""
    q = (1 - m) / (1 + m)
    t = np.arange(first, last + 1)
    return float(np.sqrt(np.mean(q + (1 - q) * m ** (2 * (t - 1))))) * sigma


def _generators(seed: int, purpose: int, count: int) -> list[np.random.Generator]:
    """Independent streams per (purpose, momentum index) from one seed (NumPy SeedSequence spawning)."""
    return [np.random.default_rng(s) for s in np.random.SeedSequence([seed, purpose]).spawn(count)]
