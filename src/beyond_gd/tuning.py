"""How the optimizer grid tunes and ranks: each method's score at its best setting, the ranking's intervals,
and the rule that searches on beyond an edge until every tuned optimum is interior. Pure functions, no I/O:
the optimizer_grid study runs the cells they ask for."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np


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
