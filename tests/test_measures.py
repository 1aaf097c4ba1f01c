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
