"""Fig 6-8: the smoothed random walk against EWMA theory, seeding, and the stage end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from beyond_gd.errors import ConfigError
from beyond_gd.stages import random_walk as stage
from beyond_gd.studies import random_walk as rw
from conftest import REPO, write_params

# Read straight from the group file: the test holds no copy of its numbers.
DEFAULT: dict[str, Any] = yaml.safe_load((REPO / "conf" / "random_walk" / "default.yaml").read_text())
SPAN = (DEFAULT["low"], DEFAULT["high"], DEFAULT["include_high"])


def test_measured_std_matches_stationary_ewma_theory() -> None:
    """After the burn-in, std of the smoothed steps = sqrt((1-m)/(1+m)) x raw std, within 5%, every momentum."""
    cfg = stage.load_config({"random_walk": DEFAULT})
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
    (r,) = rw.std_table([0.99], DEFAULT["steps"], 0, DEFAULT["repeats"], *SPAN, DEFAULT["seed"])
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
    low, high = DEFAULT["low"], DEFAULT["high"]
    draws = rw.draw_steps(np.random.default_rng(DEFAULT["seed"]), low, high, include_high, (200_000,))
    top = high if include_high else high - 1
    assert draws.min() == low and draws.max() == top
    assert draws.mean() == pytest.approx(rw.raw_mean(low, high, include_high), abs=0.05)
    assert draws.std() == pytest.approx(rw.raw_std(low, high, include_high), rel=0.01)


def test_walks_are_seeded_and_each_momentum_draws_its_own_sequence() -> None:
    args = (DEFAULT["momenta"], DEFAULT["steps"], *SPAN)
    first, again, other = rw.figure_walks(*args, seed=1), rw.figure_walks(*args, seed=1), rw.figure_walks(*args, seed=2)
    for a, b in zip(first, again, strict=True):
        assert np.array_equal(a.raw, b.raw) and np.array_equal(a.smoothed, b.smoothed)
    assert not any(np.array_equal(a.raw, b.raw) for a, b in zip(first, other, strict=True))
    assert len({w.raw.tobytes() for w in first}) == len(first)


def small_params() -> dict[str, Any]:
    # The std measurement shortened so the smoke run takes a second, not a few.
    return {"random_walk": {**DEFAULT, "repeats": 200, "measure_steps": 300, "burn_in": 100}}


def test_stage_writes_complete_outputs_and_logs_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    params = small_params()
    out = tmp_path / "out"
    stage.main(["--params", str(write_params(tmp_path / "params.yaml", params)), "--out", str(out), "--no-progress"])
    cfg = params["random_walk"]

    walks = pd.read_csv(out / "walks.csv")
    assert list(walks.columns) == ["momentum", "step", "raw", "smoothed"]
    assert len(walks) == len(cfg["momenta"]) * cfg["steps"]
    assert sorted(walks["momentum"].unique()) == sorted(cfg["momenta"])
    assert walks["raw"].between(cfg["low"], cfg["high"]).all()
    assert walks.notna().all().all()

    table = pd.read_csv(out / "std.csv")
    assert list(table.columns) == ["momentum", "raw_std", "measured_std", "theory_std", "ratio", "exact_std",
                                   "exact_ratio"]
    assert list(table["momentum"]) == cfg["momenta"]
    assert table["measured_std"].is_monotonic_decreasing  # more momentum, smoother steps
    assert np.allclose(table["theory_std"], [rw.stationary_std(m, rw.raw_std(*SPAN)) for m in cfg["momenta"]])

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["std"]) == {f"m{m:g}".replace(".", "_") for m in cfg["momenta"]}
    support = np.arange(cfg["low"], cfg["high"] + (1 if cfg["include_high"] else 0))
    assert metrics["raw_std_theory"] == pytest.approx(support.std())

    runs = mlflow.search_runs(experiment_names=["beyond-gd/random_walk"])
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert runs.loc[0, "params.random_walk.seed"] == str(cfg["seed"])
    assert runs.loc[0, "metrics.ratio_m0.9"] == pytest.approx(table.set_index("momentum").loc[0.9, "ratio"])


BAD = [
    # (edit, the start of the message: the key it names)
    ({"steps": 0}, "random_walk.steps: must be > 0"),
    ({"stepz": 100}, "random_walk.stepz: unknown key"),
    ({"momenta": [0.5, 1.0]}, "random_walk.momenta: each must be in [0, 1)"),
    ({"momenta": []}, "random_walk.momenta: must not be empty"),
    ({"high": -10}, "random_walk.high: must be > random_walk.low"),
    ({"burn_in": 3000}, "random_walk.burn_in: must be < random_walk.measure_steps"),
    ({"repeats": 1}, "random_walk.repeats: must be > 1"),
    ({"include_high": "sometimes"}, "random_walk.include_high"),
]


@pytest.mark.parametrize(("edit", "message"), BAD, ids=[m.split(":")[0] + str(i) for i, (_, m) in enumerate(BAD)])
def test_bad_param_is_a_config_error_naming_the_key(tmp_path: Path, edit: dict[str, Any], message: str) -> None:
    params = small_params()
    params["random_walk"].update(edit)
    with pytest.raises(ConfigError) as err:
        stage.main(["--params", str(write_params(tmp_path / "params.yaml", params)), "--out", str(tmp_path / "out")])
    assert str(err.value).startswith(message), err.value
    assert not (tmp_path / "out").exists()
