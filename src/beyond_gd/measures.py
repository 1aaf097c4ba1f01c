"""The statistics the studies compute and the report reads: one home for each, numpy only.

Studies call these on the curves they produce; the report calls the same
functions on the artifacts (a Wilson band, a local-minimum test), so no
statistic exists twice. Nothing here imports torch, pandas or matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Callable

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


# --------------------------------------------------------------------------
# A ranking of tuned methods, and how sure it is
# --------------------------------------------------------------------------
def tuned_scores(scores: np.ndarray, lower: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each method's score at its best setting: `scores` is (methods, settings, seeds), inf (or -inf when
    higher is better) where a setting is unusable; the mean over seeds per setting, then the best setting.
    Returns (best score, index of the best setting) per method."""
    means = np.asarray(scores, dtype=np.float64).mean(axis=2)
    best = np.argmin(means, axis=1) if lower else np.argmax(means, axis=1)
    return np.take_along_axis(means, best[:, None], axis=1)[:, 0], best


def ranks(values: np.ndarray, lower: bool) -> np.ndarray:
    """1-based ranks of `values` along the last axis (ties share the better rank)."""
    v = np.asarray(values, dtype=np.float64) * (1 if lower else -1)
    return (v[..., None, :] < v[..., :, None]).sum(axis=-1) + 1


def bootstrap_ranking(scores: np.ndarray, lower: bool, resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Resample the seeds with replacement, one draw for every method and setting (the methods share their
    seeds: the same init and batch order, so a resample stays paired), pick each method's best setting again on
    each resample, and rank the methods.

    `scores` is (methods, settings, seeds) as for `tuned_scores`. Returns the resampled best scores and
    ranks, each (resamples, methods): their percentiles are intervals that include the noise of choosing
    the best setting from the same seeds (tuning and evaluation on the same data favour a lucky setting).
    """
    scores = np.asarray(scores, dtype=np.float64)
    seeds = scores.shape[2]
    draws = np.random.default_rng(seed).integers(0, seeds, size=(resamples, seeds))
    means = scores[:, :, draws].mean(axis=3)  # (methods, settings, resamples)
    best = (means.min(axis=1) if lower else means.max(axis=1)).T
    return best, ranks(best, lower)


def t_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Student's t interval of the mean of `values` (one per seed): mean -/+ t_{(1+c)/2, n-1} s / sqrt(n).
    NaN bounds for fewer than two values or any non-finite one (an unusable setting has no interval).

    The ranking's score interval: a percentile bootstrap over 5 seeds covers a 95% interval about 85% of the
    time (its spread is that of a sample, too narrow by sqrt((n-1)/n) and without t's heavier tails);
    t covers it as nominal for normal seed noise (tests/test_measures.py simulates a grid to check)."""
    from scipy.stats import t  # scipy is the lbfgs stage's; imported here only where an interval is asked

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2 or not np.isfinite(v).all():
        return math.nan, math.nan
    half = float(t.ppf((1 + confidence) / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))
    return float(v.mean()) - half, float(v.mean()) + half


def beyond_edge(lrs: list[float], best: float | None) -> float | None:
    """The next lr of a search whose best lies at its edge: one step beyond that edge, the step being the
    search's own spacing there (the ratio of the two lrs at that end: half a decade in the default grid), on
    the search's log grid (exponents to a hundredth of a decade, so that 0.316 x 3.16 is 1, not 0.999), to
    three significant digits as the configured lrs are written. None when the best is interior, when nothing
    was usable (no best to follow), or when the search has a single lr (no spacing)."""
    ordered = sorted(lrs)
    if best is None or len(ordered) < 2 or best not in (ordered[0], ordered[-1]):
        return None
    edge, inner = (ordered[-1], ordered[-2]) if best == ordered[-1] else (ordered[0], ordered[1])
    exponent = round(math.log10(edge), 2) + round(math.log10(edge / inner), 2)
    return float(f"{10**exponent:.3g}")


Searches = dict[str, list[float]]


def extend_to_interior(lrs: Searches, best_of: Callable[[Searches], dict[str, float | None]],
                       run: Callable[[Searches], None], cap: int) -> Searches:
    """The rule that makes every tuned optimum interior: while a method's best lr (`best_of` the searches so far)
    lies at an edge of its search, `run` the next lr beyond that edge (`beyond_edge`) and search again, until
    the best is interior (an lr that diverged on every seed beyond the edge makes it so), or `cap` lrs have
    been added on that side. `lrs` are the configured searches, already run; returns the lrs added per method,
    in the order added. No I/O: `run` does the training."""
    added: dict[str, list[float]] = {name: [] for name in lrs}
    searched = {name: list(v) for name, v in lrs.items()}
    while True:
        best = best_of(searched)
        new = {}
        for name, values in searched.items():
            lr = beyond_edge(values, best.get(name))
            if lr is None:
                continue
            above = lr > max(lrs[name])
            if sum((v > max(lrs[name])) == above for v in added[name]) < cap:
                new[name] = [lr]
        if not new:
            return added
        run(new)
        for name, values in new.items():
            searched[name] += values
            added[name] += values
