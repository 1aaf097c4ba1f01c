"""The optimizer_toys study: heavy ball and Nesterov over kappa, AdaGrad and RMSProp on the plateau."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from beyond_gd.config import load
from beyond_gd.errors import ConfigError
from beyond_gd.stage import write
from beyond_gd.stages.optimizer_toys import STAGE
from beyond_gd.studies import optimizer_toys
from beyond_gd.study import Inputs
from beyond_gd.toys import momentum_rates as mr
from beyond_gd.toys import plateau as pl
from conftest import composed, config


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[optimizer_toys.Config, object]:
    cfg = config(optimizer_toys.Config, "profile=smoke")
    return cfg, optimizer_toys.run(cfg, Inputs(workdir=tmp_path_factory.mktemp("toys")))


def test_quadratic_table_is_the_recurrences_at_each_setting(result) -> None:
    cfg, r = result
    c = cfg.optimizer_toys.quadratic
    q = r.tables["quadratic_steps.csv"]
    # gd at its tuning; heavy ball and Nesterov at theirs, at the shared setting and at their best momentum.
    assert len(q) == len(c.kappas) * 7
    tuned = q[q["setting"] == "tuned"]
    np.testing.assert_allclose(tuned["rate"], tuned["theory_rate"], rtol=1e-6)
    shared = q[q["setting"] == "shared"]
    assert (shared["momentum"] == c.shared.momentum).all()
    for kappa in c.kappas:
        lam = mr.spectrum(c.dim, kappa)
        assert np.allclose(shared.loc[shared["kappa"] == kappa, "lr"], c.shared.lr_times_l / lam[-1])
    # The best momentum at the shared lr is at least as fast as the shared one, per method and kappa.
    best = q[q["setting"] == "best_momentum"].set_index(["kappa", "method"])["rate"]
    assert (best <= shared.set_index(["kappa", "method"])["rate"] + 1e-12).all()
    ratios = r.summary["shared_nesterov_over_heavy_ball"]
    assert set(ratios) == {str(k) for k in c.kappas}


def test_plateau_runs_every_optimizer_at_every_lr_until_the_bowl_or_the_cap(result) -> None:
    cfg, r = result
    c = cfg.optimizer_toys.plateau
    out = r.tables["plateau_outcomes.csv"]
    assert sorted(zip(out["optimizer"], out["lr"])) == sorted((o, lr) for o in c.optimizers for lr in c.lrs)
    # A run stops at its first step in the bowl, or at the cap with no step (censored).
    reached = out["reached_step"].notna()
    assert (out.loc[reached, "stopped"] == out.loc[reached, "reached_step"]).all()
    assert (out.loc[~reached, "stopped"] == c.max_steps).all() and (out["max_steps"] == c.max_steps).all()
    surface = c.surface
    assert ((out["final_x"] - surface.bowl_x).abs() <= surface.bowl_half_width).tolist() == reached.tolist()
    paths = r.tables["plateau_paths.csv"]
    record = set(optimizer_toys.record_steps(c.max_steps, c.record_points).tolist())
    for row in out.itertuples():
        steps = paths[(paths["optimizer"] == row.optimizer) & (paths["lr"] == row.lr)]["step"].tolist()
        assert steps[0] == 0 and steps[-1] == row.stopped and set(steps[:-1]) <= record
    first = paths[paths["step"] == 0]
    assert np.allclose(first[["x", "y"]], c.start)
    assert r.summary["plateau_reached"] == {o: int(out.loc[out["optimizer"] == o, "reached_step"].notna().sum())
                                            for o in c.optimizers}
    assert r.summary["plateau_steps"] == {o: {f"{row.lr:g}": None if pd.isna(row.reached_step) else row.reached_step
                                              for row in out[out["optimizer"] == o].itertuples()}
                                          for o in c.optimizers}
    g = r.arrays["grids.npz"]
    assert g["plateau_loss"].shape == (len(g["plateau_y"]), len(g["plateau_x"])) == (c.grid_points, c.grid_points)


@pytest.mark.parametrize(("max_steps", "points"), [(1000, 50), (100_000, 400), (10, 400)])
def test_record_steps_are_log_spaced_from_the_start_to_the_cap(max_steps: int, points: int) -> None:
    steps = optimizer_toys.record_steps(max_steps, points)
    assert steps[0] == 0 and steps[1] == 1 and steps[-1] == max_steps and np.all(np.diff(steps) > 0)
    assert len(steps) <= points + 1


def test_outputs_are_the_stage_outputs_and_survive_the_files(result, tmp_path: Path) -> None:
    _, r = result
    write(r, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(STAGE.outputs)
    back = pd.read_csv(tmp_path / "plateau_outcomes.csv")
    assert back["reached_step"].isna().tolist() == r.tables["plateau_outcomes.csv"]["reached_step"].isna().tolist()
    assert json.loads((tmp_path / "metrics.json").read_text()) == r.metrics


@pytest.mark.parametrize(("edit", "message"), [
    (lambda p: p["optimizer_toys"]["quadratic"].update(kappas=[0.5]), "optimizer_toys.quadratic.kappas:"),
    (lambda p: p["optimizer_toys"]["quadratic"]["shared"].update(momentum=1.0),
     "optimizer_toys.quadratic.shared.momentum: must be < 1"),
    (lambda p: p["optimizer_toys"]["quadratic"].update(tolerance=2.0), "optimizer_toys.quadratic.tolerance:"),
    (lambda p: p["optimizer_toys"]["plateau"].update(start=[0.0]), "optimizer_toys.plateau.start:"),
    (lambda p: p["optimizer_toys"]["plateau"].update(optimizers=["adagrad", "adamw"]),
     "optimizer_toys.plateau.optimizers: 'adamw' is not in the optimizers section"),
    (lambda p: p["optimizer_toys"]["plateau"]["surface"].update(bowl_x=0.5), "optimizer_toys.plateau.surface.bowl_x:"),
    (lambda p: p["optimizer_toys"]["plateau"].update(max_steps=0), "optimizer_toys.plateau.max_steps:"),
    # An optimizer with no plateau rule, and an entry whose arguments the rule does not have.
    (lambda p: p["optimizer_toys"]["plateau"].update(optimizers=["adagrad", "adam"]),
     "optimizers.adam: torch.optim.Adam has no plateau rule"),
    (lambda p: p["optimizers"]["rmsprop"].update(momentum=0.9), "optimizers.rmsprop.momentum: the plateau's rmsprop"),
    (lambda p: p["optimizers"]["adagrad"].update(weight_decay=0.1), "optimizers.adagrad.weight_decay:"),
])
def test_bad_params_name_the_key(edit, message: str) -> None:
    params = composed()
    edit(params)
    with pytest.raises(ConfigError) as err:
        load(params, optimizer_toys.Config)
    assert str(err.value).startswith(message), err.value


def test_plateau_rule_takes_the_entries_arguments() -> None:
    cfg = config(optimizer_toys.Config)
    ada = optimizer_toys.plateau_rule(cfg.optimizers["adagrad"], "optimizers.adagrad")
    rms = optimizer_toys.plateau_rule(cfg.optimizers["rmsprop"], "optimizers.rmsprop")
    assert ada == pl.Rule("adagrad", eps=1e-10, alpha=0.0, initial=0.0)  # torch's eps, the book's accumulator
    assert rms == pl.Rule("rmsprop", eps=1e-8, alpha=0.99, initial=0.0)
