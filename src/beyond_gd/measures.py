"""The statistics the studies compute and the report reads: one home for each, numpy only.

Studies call these on the curves they produce; the report calls the same
functions on the artifacts (a Wilson band, a local-minimum test), so no
statistic exists twice. Nothing here imports torch, pandas or matplotlib.
"""

from __future__ import annotations

import math

import numpy as np


# --------------------------------------------------------------------------
# A cost curve (one value per mini-batch step)
# --------------------------------------------------------------------------
def trailing_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each step (fewer at the start), same length."""
    values = np.asarray(values, dtype=np.float64)
    # A direct sum per window (not a cumsum): a NaN spoils only the windows that hold it.
    sums = np.convolve(values, np.ones(window))[: len(values)]
    return sums / np.minimum(np.arange(1, len(values) + 1), window)


def steps_to_target(losses: np.ndarray, target: float, window: int) -> int | None:
    """The first step (1-based) at which the mean cost of the last `window` steps is <= target.

    Only full windows count, so a lucky first mini-batch cannot "reach" it;
    None if the curve never gets there (a NaN never counts as reached).
    """
    if len(losses) < window:
        return None
    hit = np.flatnonzero(trailing_mean(losses, window)[window - 1 :] <= target)
    return int(hit[0]) + window if hit.size else None


def epoch_last_steps_to_target(losses: np.ndarray, steps_per_epoch: int, target: float) -> int | None:
    """The step count at the end of the first whole epoch whose last mini-batch cost is <= target."""
    ends = np.arange(steps_per_epoch, len(losses) + 1, steps_per_epoch)
    hit = ends[np.asarray(losses)[ends - 1] <= target]
    return int(hit[0]) if hit.size else None


def final_loss(losses: np.ndarray, window: int) -> float:
    """The cost at the end of a budget: the mean of its last `window` steps."""
    return float(np.mean(losses[-window:], dtype=np.float64)) if len(losses) else math.nan


# --------------------------------------------------------------------------
# Shares of runs
# --------------------------------------------------------------------------
def wilson_interval(successes: np.ndarray, trials: np.ndarray | int, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial share; sound at 0 and at every success, unlike the normal one."""
    n = np.asarray(trials, dtype=np.float64)
    p = np.asarray(successes, dtype=np.float64) / n
    denom = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


# --------------------------------------------------------------------------
# A curve on a grid (the loss along the Fig 6-3 line)
# --------------------------------------------------------------------------
def local_minima(x: np.ndarray, y: np.ndarray, depth: float, lo: float, hi: float) -> np.ndarray:
    """The indices of the grid points strictly inside (lo, hi) whose value lies more than `depth`
    below both neighbours (`x` sorted ascending)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    inner = np.flatnonzero((x > lo) & (x < hi))
    inner = inner[(inner > 0) & (inner < len(x) - 1)]
    below = np.minimum(y[inner - 1], y[inner + 1]) - y[inner]
    return inner[below > depth]


def abs_slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|dy/dx| at every grid point (central differences inside, one-sided at the ends), same length."""
    return np.abs(np.gradient(np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)))


# --------------------------------------------------------------------------
# Closed forms the figures draw beside the measurements
# --------------------------------------------------------------------------
def ewma_stationary_std(m: np.ndarray | float, sigma: float) -> np.ndarray:
    """Stationary std of new = m prev + (1 - m) step over i.i.d. steps of std sigma: sqrt((1 - m)/(1 + m)) sigma."""
    m = np.asarray(m, dtype=np.float64)
    return np.sqrt((1 - m) / (1 + m)) * sigma


def log10_orderings(widths: np.ndarray | list[int]) -> float:
    """log10 of the product of n! over layers of widths n (equivalent orderings of their neurons), via lgamma."""
    return sum(math.lgamma(int(n) + 1) for n in widths) / math.log(10)
