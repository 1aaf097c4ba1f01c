"""Fig 6-8: the smoothed random walk against EWMA theory, seeding, and the study's Result."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from beyond_gd import measures
from beyond_gd.errors import ConfigError
from beyond_gd.stage import write
from beyond_gd.stages.random_walk import STAGE
from beyond_gd.studies import random_walk
from beyond_gd.study import Inputs
from beyond_gd.toys import random_walk as rw
from conftest import config

# conf/ as composed: the test holds no copy of its numbers.
DEFAULT = config(random_walk.Config).random_walk
SPAN = (DEFAULT.low, DEFAULT.high, DEFAULT.include_high)


def test_measured_std_matches_stationary_ewma_theory() -> None:
    """After the burn-in, std of the smoothed steps = sqrt((1-m)/(1+m)) x raw std, within 5%, every momentum."""
    cfg = DEFAULT
    table = rw.std_table(cfg.momenta, cfg.measure_steps, cfg.burn_in, cfg.repeats, *SPAN, cfg.seed)
    assert [r.momentum for r in table] == cfg.momenta
    assert 0.9 in cfg.momenta  # the momentum the brief singles out is measured
    for r in table:
        assert r.ratio == pytest.approx(1.0, abs=0.05), r
        assert r.raw_std == pytest.approx(rw.raw_std(*SPAN), rel=0.01), r
        # The window is stationary, so the exact finite-step value is the stationary one.
        assert r.exact_std == pytest.approx(r.theory_std, rel=1e-6), r


def test_within_the_figures_100_steps_large_momentum_is_not_stationary() -> None:
    """Measured over the figure's own steps (no burn-in), m = 0.99 still carries its first raw step:
    the exact finite-step formula fits, the stationary one is off by far (the book's "early errors persist")."""
    (r,) = rw.std_table([0.99], DEFAULT.steps, 0, DEFAULT.repeats, *SPAN, DEFAULT.seed)
    assert r.exact_ratio == pytest.approx(1.0, abs=0.05), r
    assert r.ratio > 2, r


def test_smooth_is_the_books_average_started_at_the_first_step() -> None:
    raw = np.array([4, -2, 7, 0, -9])
    assert np.array_equal(rw.smooth(raw, 0.0), raw)
    m, s = 0.5, [4.0]
    for x in raw[1:]:
        s.append(m * s[-1] + (1 - m) * x)
    assert np.allclose(rw.smooth(raw, m), s)


@pytest.mark.parametrize("include_high", [True, False])
def test_step_range_and_its_mean(include_high: bool) -> None:
    """-10..10 inclusive (the text) has mean 0; torch.randint(-10, 10) stops at 9 and drifts by -0.5."""
    low, high = DEFAULT.low, DEFAULT.high
    draws = rw.draw_steps(np.random.default_rng(DEFAULT.seed), low, high, include_high, (200_000,))
    top = high if include_high else high - 1
    assert draws.min() == low and draws.max() == top
    assert draws.mean() == pytest.approx(rw.raw_mean(low, high, include_high), abs=0.05)
    assert draws.std() == pytest.approx(rw.raw_std(low, high, include_high), rel=0.01)


def test_walks_are_seeded_and_each_momentum_draws_its_own_sequence() -> None:
    args = (DEFAULT.momenta, DEFAULT.steps, *SPAN)
    first, again, other = rw.figure_walks(*args, seed=1), rw.figure_walks(*args, seed=1), rw.figure_walks(*args, seed=2)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.raw, b.raw) and np.array_equal(a.smoothed, b.smoothed)
    assert not any(np.array_equal(a.raw, b.raw) for a, b in zip(first, other, strict=True))
    assert len({w.raw.tobytes() for w in first}) == len(first)


# The std measurement shortened so the study takes a second, not a few.
SMALL = ("random_walk.repeats=200", "random_walk.measure_steps=300", "random_walk.burn_in=100")


def test_study_result_holds_the_walks_the_std_table_and_the_summary(tmp_path: Path) -> None:
    cfg = config(random_walk.Config, *SMALL)
    result = random_walk.run(cfg, Inputs(workdir=tmp_path))
    c = cfg.random_walk
    assert sorted(result.outputs()) == sorted(STAGE.outputs)

    walks = result.tables["walks.csv"]
    assert list(walks.columns) == ["momentum", "step", "raw", "smoothed"]
    assert len(walks) == len(c.momenta) * c.steps
    assert sorted(walks["momentum"].unique()) == sorted(c.momenta)
    assert walks["raw"].between(c.low, c.high).all()
    assert walks.notna().all().all()

    table = result.tables["std.csv"]
    assert list(table.columns) == ["momentum", "raw_std", "measured_std", "theory_std", "ratio", "exact_std",
                                   "exact_ratio"]
    assert list(table["momentum"]) == c.momenta
    assert table["measured_std"].is_monotonic_decreasing  # more momentum, smoother steps
    assert np.allclose(table["theory_std"], [measures.ewma_stationary_std(m, rw.raw_std(*SPAN)) for m in c.momenta])

    summary = result.summary
    assert set(summary["std"]) == {f"m{m:g}".replace(".", "_") for m in c.momenta}
    support = np.arange(c.low, c.high + (1 if c.include_high else 0))
    assert summary["raw_std_theory"] == pytest.approx(support.std())
    # The per-momentum ratio the summary (and so MLflow) records is the table's.
    assert summary["std"]["m0_9"]["ratio"] == pytest.approx(table.set_index("momentum").loc[0.9, "ratio"])
    assert result.metrics["std_max_rel_error"] == pytest.approx((table["ratio"] - 1).abs().max())

    # The files as the stage writes them: the same tables, and plain JSON.
    write(result, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(STAGE.outputs)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "walks.csv"), walks, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "std.csv"), table, check_dtype=False)
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["std"] == summary["std"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == result.metrics


BAD = [
    # (Hydra override, the start of the message: the key it names)
    ("random_walk.steps=0", "random_walk.steps: must be > 0"),
    ("+random_walk.stepz=100", "random_walk.stepz: unknown key"),
    ("random_walk.momenta=[0.5,1.0]", "random_walk.momenta: each must be in [0, 1)"),
    ("random_walk.momenta=[]", "random_walk.momenta: must not be empty"),
    ("random_walk.high=-10", "random_walk.high: must allow at least two step values above low"),
    # One possible step (10 only): no spread to smooth, and theory's std would divide by zero.
    ("random_walk.low=10", "random_walk.high: must allow at least two step values above low (10)"),
    ("random_walk.burn_in=3000", "random_walk.burn_in: must be < measure_steps"),
    ("random_walk.repeats=1", "random_walk.repeats: must be > 1"),
    ("random_walk.include_high=sometimes", "random_walk.include_high"),
]


@pytest.mark.parametrize(("override", "message"), BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_param_is_a_config_error_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(random_walk.Config, *SMALL, override)
    assert str(err.value).startswith(message), err.value
    assert "\n" not in str(err.value)
