"""The statistics the studies compute and the report reads: one home for each, numpy only.

Studies call these on the curves they produce; the report calls the same
functions on the artifacts (a Wilson band, a local-minimum test), so no
statistic exists twice. Nothing here imports torch, pandas or matplotlib.
"""

from __future__ import annotations

import math
from typing import NamedTuple

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
# Steps to a target with censored runs (Kaplan-Meier)
# --------------------------------------------------------------------------
class Survival(NamedTuple):
    """The Kaplan-Meier estimate of the share of runs that have not yet reached a target, at each step where
    at least one run reached it."""

    steps: np.ndarray      # the distinct steps at which a run reached the target, ascending
    at_risk: np.ndarray    # the runs neither reached nor censored before each of those steps
    reached: np.ndarray    # the runs that reached it at each of those steps
    survival: np.ndarray   # S(step): the estimated share that has not reached it once that step is done


def kaplan_meier(steps: np.ndarray, reached: np.ndarray) -> Survival:
    """Kaplan-Meier over runs that reached a target at `steps` where `reached`, or stopped there without it
    (censored: a run that never reached it, at its last step or its cap). S falls at each reaching step t by
    the factor 1 - d_t / n_t (d_t runs reached at t, n_t at risk just before t); a run censored at t is still
    at risk at t (at a tie a reach comes first, the usual convention), and leaves the risk set after it."""
    steps = np.asarray(steps, dtype=np.float64)
    reached = np.asarray(reached, dtype=bool)
    if steps.shape != reached.shape or steps.ndim != 1:
        raise ValueError(f"steps and reached must be 1-D of one length, got {steps.shape} and {reached.shape}")
    if np.isnan(steps).any():
        raise ValueError("steps: a censored run needs its censoring step (its last step or the cap), not NaN")
    times = np.unique(steps[reached])
    at_risk = np.array([(steps >= t).sum() for t in times], dtype=np.int64)
    events = np.array([(reached & (steps == t)).sum() for t in times], dtype=np.int64)
    return Survival(times, at_risk, events, np.cumprod(1 - events / np.maximum(at_risk, 1)))


def km_median(steps: np.ndarray, reached: np.ndarray) -> float:
    """The Kaplan-Meier median of the steps to a target: the first step at which S <= 1/2 (half of the runs
    estimated to have reached it). NaN where S never falls that far: fewer than half reached it before the
    censored ones left, and the median lies beyond what was run."""
    s = kaplan_meier(steps, reached)
    # A relative slack for round-off in the product (S = 1/2 exactly, as with 2 of 4 runs, counts).
    below = np.flatnonzero(s.survival <= 0.5 * (1 + 1e-12))
    return float(s.steps[below[0]]) if below.size else math.nan


def share_reached_by(steps: np.ndarray, reached: np.ndarray, at: np.ndarray | float) -> np.ndarray:
    """1 - S(t) at each step t of `at`: the Kaplan-Meier share of runs that have reached the target by the end
    of step t (0 before the first reach; after the last, where the censored runs leave it, it stays)."""
    s = kaplan_meier(steps, reached)
    k = np.searchsorted(s.steps, np.asarray(at, dtype=np.float64), side="right")
    return 1 - np.r_[1.0, s.survival][k]


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
