"""The statistics every study and the report share (beyond_gd.measures), against hand-computed values."""

from __future__ import annotations

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


# Ten runs (step, reached): ties of two reaches (step 3), of a reach and a censoring (3 and 8), censorings
# between reaches (6) and after the last (10, 10). By hand, n at risk and d reached at each reaching step:
#   t = 2: n 10, d 1 -> S = 9/10                    = 0.9
#   t = 3: n  9, d 2 -> S = 0.9 * 7/9               = 0.7   (the run censored at 3 is at risk at 3, then leaves)
#   t = 5: n  6, d 1 -> S = 0.7 * 5/6               = 0.58333
#   t = 8: n  4, d 1 -> S = 0.58333 * 3/4           = 0.4375  (the one censored at 6 has left)
# The median is 8, the first step with S <= 1/2: not 3 (the median of the five that reached, which ignores the
# five that did not) nor 5 (the median of all ten steps, as if a censoring were a reach).
KM_STEPS = np.array([2, 3, 3, 3, 5, 6, 8, 8, 10, 10])
KM_REACHED = np.array([True, True, True, False, True, False, True, False, False, False])


def test_kaplan_meier_with_ties_and_censoring_by_hand() -> None:
    order = np.random.default_rng(1).permutation(len(KM_STEPS))  # the order of the runs does not matter
    s = M.kaplan_meier(KM_STEPS[order], KM_REACHED[order])
    assert s.steps.tolist() == [2, 3, 5, 8]
    assert s.at_risk.tolist() == [10, 9, 6, 4] and s.reached.tolist() == [1, 2, 1, 1]
    np.testing.assert_allclose(s.survival, [0.9, 0.7, 0.7 * 5 / 6, 0.7 * 5 / 6 * 3 / 4], rtol=1e-12)
    assert M.km_median(KM_STEPS, KM_REACHED) == 8
    assert np.median(KM_STEPS[KM_REACHED]) == 3 and np.median(KM_STEPS) == 5.5  # what the median is not


@pytest.mark.parametrize(("at", "share"), [
    (1, 0.0), (2, 0.1), (2.5, 0.1), (3, 0.3), (4, 0.3), (5, 1 - 0.7 * 5 / 6), (7.9, 1 - 0.7 * 5 / 6),
    (8, 1 - 0.4375), (10, 1 - 0.4375), (1e6, 1 - 0.4375),
])
def test_share_reached_by_each_step_is_one_minus_the_survival(at: float, share: float) -> None:
    assert M.share_reached_by(KM_STEPS, KM_REACHED, at) == pytest.approx(share, rel=1e-12, abs=1e-15)
    np.testing.assert_allclose(M.share_reached_by(KM_STEPS, KM_REACHED, np.array([at, at])), [share, share])


@pytest.mark.parametrize(("steps", "reached", "median"), [
    # The first edition's momentum with 3 seeds: 1 reached, 2 ran to the 20,000-step cap: S stays at 2/3.
    ([1949, 20000, 20000], [True, False, False], np.nan),
    # 2 of 4 reached: S = 1/2 exactly at the second, which is the median.
    ([100, 300, 500, 500], [True, True, False, False], 300),
    # Nothing reached; everything reached (the plain median of an odd count).
    ([200, 200], [False, False], np.nan),
    ([30, 10, 20], [True, True, True], 20),
    # A censoring before the reaches: it leaves the risk set (S 1/2 at 20, then 0 at 30).
    ([5, 20, 30], [False, True, True], 20),
])
def test_km_median_undefined_when_fewer_than_half_reach(steps: list, reached: list, median: float) -> None:
    got = M.km_median(np.array(steps), np.array(reached))
    assert (np.isnan(got) and np.isnan(median)) or got == median


def test_kaplan_meier_refuses_a_censored_run_without_its_step() -> None:
    with pytest.raises(ValueError, match="censoring step"):
        M.kaplan_meier(np.array([1.0, np.nan]), np.array([True, False]))
