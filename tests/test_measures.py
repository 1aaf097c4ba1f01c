"""The statistics every study and the report share (beyond_gd.measures), against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from beyond_gd import measures as M


def test_steps_to_target_on_a_synthetic_curve() -> None:
    """Cost 1 - 0.001 t: the 10-step trailing mean at step t is 1 - 0.001 (t - 4.5); it is <= 0.5 from t = 505."""
    losses = 1 - 0.001 * np.arange(1, 1001)
    assert M.steps_to_target(losses, 0.5, window=10) == 505
    assert M.steps_to_target(losses, 0.5, window=1) == 500
    assert M.steps_to_target(losses, -1.0, window=10) is None


def test_steps_to_target_counts_full_windows_only_and_never_nan() -> None:
    # A lucky first mini-batch: low once, then high for a while.
    losses = np.r_[0.01, np.full(20, 1.0), np.full(20, 0.05)]
    assert M.steps_to_target(losses, 0.1, window=5) == 21 + 5
    assert M.steps_to_target(np.full(4, 0.0), 0.1, window=5) is None
    assert M.steps_to_target(np.r_[np.full(10, np.nan), np.zeros(10)], 0.1, window=5) == 15


def test_trailing_mean() -> None:
    x = np.random.default_rng(0).random(50)
    naive = [x[max(0, t - 7) : t].mean() for t in range(1, 51)]
    assert np.allclose(M.trailing_mean(x, 7), naive)


def test_epoch_last_cost_and_final_loss() -> None:
    """The first edition's cost: the last mini-batch of each whole epoch (steps 3, 6, 9 here)."""
    losses = np.array([1, 1, 0.5, 0.05, 0.05, 0.2, 0.05, 0.05, 0.05, 0.01])
    assert M.epoch_last_steps_to_target(losses, 3, 0.1) == 9
    assert M.epoch_last_steps_to_target(losses[:8], 3, 0.1) is None
    assert M.final_loss(losses, 2) == pytest.approx(0.03)
    assert np.isnan(M.final_loss(np.array([]), 2))


def test_wilson_interval_contains_the_share_and_bounds_zero_counts() -> None:
    low, high = M.wilson_interval(np.array([0, 10, 500, 1000]), 1000, 1.96)
    share = np.array([0, 10, 500, 1000]) / 1000
    assert np.all((low <= share) & (share <= high))
    assert low[0] == 0 and 0 < high[0] < 0.005  # no successes in 1,000: the 95% bound is ~3.8e-3
    assert high[-1] == 1 and low[-1] > 0.995
    # Per-row trial counts (the report's bands) give the same as a scalar count.
    assert np.allclose(M.wilson_interval(np.array([10, 10]), np.array([1000, 1000]), 1.96)[0], low[1])
    assert high[2] - low[2] == pytest.approx(2 * 1.96 * np.sqrt(0.25 / 1000), rel=0.01)


def test_local_minima_inside_the_interval_and_deeper_than_the_threshold() -> None:
    x = np.linspace(-1, 2, 31)  # steps of 0.1; 0 and 1 on the grid
    y = (x - 0.5) ** 2
    assert list(M.local_minima(x, y, 0.0, 0.0, 1.0)) == [15]  # the bowl's bottom at 0.5
    assert list(M.local_minima(x, y, 0.02, 0.0, 1.0)) == []  # shallower than 0.02 below its neighbours
    bumpy = y.copy()
    bumpy[13] -= 0.08  # 0.05 below its lower neighbour
    assert list(M.local_minima(x, bumpy, 0.02, 0.0, 1.0)) == [13]
    assert list(M.local_minima(x, y, 0.0, 0.6, 1.0)) == []  # outside (0.6, 1): none
    assert list(M.local_minima(x, -y + 0 * x, 0.0, -1.0, 2.0)) == []  # a maximum is no minimum


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
