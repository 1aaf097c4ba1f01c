"""The optimizer grid's tuning: the interior rule on synthetic grids, the ranking's intervals by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from beyond_gd import tuning as M


# --------------------------------------------------------------------------
# The interior rule: a tuned optimum at an edge of its search searches on beyond it
# --------------------------------------------------------------------------
HALF_DECADE = [1e-3, 3.16e-3, 1e-2, 3.16e-2, 0.1]


@pytest.mark.parametrize(("best", "expected"), [(0.1, 0.316), (1e-3, 3.16e-4), (1e-2, None), (None, None)])
def test_beyond_edge_steps_by_the_searchs_own_spacing(best: float | None, expected: float | None) -> None:
    assert M.beyond_edge(HALF_DECADE, best) == (pytest.approx(expected) if expected else None)


def synthetic_search(optimum: float, diverges_above: float = math.inf, cap: int = 3) -> tuple[dict, list]:
    """The rule on a synthetic grid: a score that is a parabola in log10(lr) with its minimum at `optimum`,
    every seed diverging (an unusable score) above `diverges_above`. Returns (lrs added, the batches run)."""
    def score(lr: float) -> float:
        return math.inf if lr > diverges_above else (math.log10(lr) - math.log10(optimum)) ** 2

    def best_of(searched: dict[str, list[float]]) -> dict[str, float | None]:
        best = min(searched["opt"], key=score)
        return {"opt": best if math.isfinite(score(best)) else None}

    ran: list = []
    added = M.extend_to_interior({"opt": list(HALF_DECADE)}, best_of, ran.append, cap)
    return added, ran


def test_the_rule_extends_until_the_optimum_is_interior() -> None:
    added, ran = synthetic_search(optimum=1.0)  # a decade above the search's top
    assert added == {"opt": [0.316, 1.0, 3.16]}  # 1.0 best needs 3.16 beyond it to be interior
    assert ran == [{"opt": [0.316]}, {"opt": [1.0]}, {"opt": [3.16]}]  # one new lr (its cells) at a time
    added, _ = synthetic_search(optimum=2e-4)  # below the search: it extends downwards
    assert added == {"opt": [3.16e-4, 1e-4]}


def test_the_rule_stops_where_the_next_lr_diverges_on_every_seed() -> None:
    added, _ = synthetic_search(optimum=10.0, diverges_above=0.5)
    assert added == {"opt": [0.316, 1.0]}  # 1.0 diverged: 0.316 is interior now, and the best


def test_the_rule_stops_at_its_cap_and_leaves_the_optimum_at_the_edge() -> None:
    added, _ = synthetic_search(optimum=100.0, cap=2)
    assert added == {"opt": [0.316, 1.0]}
    assert M.beyond_edge(HALF_DECADE + added["opt"], 1.0) is not None  # still at the edge: reported so
    assert synthetic_search(optimum=100.0, cap=0)[0] == {"opt": []}


def test_an_interior_optimum_adds_nothing() -> None:
    assert synthetic_search(optimum=0.01) == ({"opt": []}, [])


# --------------------------------------------------------------------------
# The ranking's intervals: coverage, simulated on grids with known means
# --------------------------------------------------------------------------
def simulated_grids(n: int, seeds: int = 5, rng_seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic grids shaped as the optimizer grid's (9 optimizers x 5 lrs x `seeds`): each lr half a decade
    from the best 0.03 worse, seed noise 4% of the score (the measured 2-5%), normal. Returns (grids
    [n, 9, 5, seeds], the true tuned score of each optimizer [9])."""
    rng = np.random.default_rng(rng_seed)
    base = np.linspace(0.09, 0.19, 9)
    place = rng.integers(1, 4, size=9)  # interior optima
    means = base[:, None] + 0.03 * np.abs(np.arange(5)[None, :] - place[:, None])
    noise = rng.normal(size=(n, 9, 5, seeds)) * (0.04 * base)[None, :, None, None]
    return means[None, :, :, None] + noise, means.min(axis=1)


def test_the_score_interval_covers_as_nominal_where_a_percentile_bootstrap_does_not() -> None:
    grids, truth = simulated_grids(400)
    covered_t, covered_boot = [], []
    for k, g in enumerate(grids):
        _, best = M.tuned_scores(g, lower=True)
        for m in range(9):
            low, high = M.t_interval(g[m, best[m]], 0.95)
            covered_t.append(low <= truth[m] <= high)
        boot, _ = M.bootstrap_ranking(g, True, 200, k)
        low, high = np.percentile(boot, [2.5, 97.5], axis=0)
        covered_boot += list((low <= truth) & (truth <= high))
    assert np.mean(covered_t) >= 0.93, np.mean(covered_t)
    assert np.mean(covered_boot) < 0.90, np.mean(covered_boot)  # why the ranking does not use it for scores


def test_the_bootstrap_resamples_the_shared_seeds_jointly() -> None:
    """Optimizers share seeds: a seed that is good for one is good for all (here the same seed offsets for
    both), so their difference has no seed noise, and a paired resample never swaps their order."""
    offsets = np.random.default_rng(0).normal(size=5)
    grid = np.stack([np.stack([0.1 + 0.01 * offsets] * 2), np.stack([0.101 + 0.01 * offsets] * 2)])
    _, ranks = M.bootstrap_ranking(grid, True, 500, 0)
    assert (ranks[:, 0] == 1).all() and (ranks[:, 1] == 2).all()
