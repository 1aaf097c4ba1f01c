"""Cells, the launcher, and the momentum (Fig 6-9) and optimizer_grid stages."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from beyond_gd.config import ModelConfig, OptimizerConfig, section
from beyond_gd.errors import ConfigError
from beyond_gd.launch import JobContext, LauncherConfig, launch
from beyond_gd.stages import momentum, optimizer_grid
from beyond_gd.studies import cells as C
from beyond_gd.tracking import experiment_id, stage_run, tracking_uri
from conftest import composed, write_params

# The groups these stages read; added to the composition until conf/config.yaml lists them.
GROUPS = {"momentum": "default", "optimizer_grid": "default", "launcher": "joblib"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    # Tiny tensors: on a loaded 2-core machine a second torch thread made
    # these tests ~5x slower (measured), as for the cells' workers.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def params(*overrides: str) -> dict[str, Any]:
    base = composed(*overrides)
    missing = [f"+{group}={option}" for group, option in GROUPS.items() if group not in base]
    return composed(*overrides, *missing) if missing else base


# --------------------------------------------------------------------------
# Measures on a cost curve
# --------------------------------------------------------------------------
def test_steps_to_target_on_a_synthetic_curve() -> None:
    """Cost 1 - 0.001 t: the 10-step trailing mean at step t is 1 - 0.001 (t - 4.5); it is <= 0.5 from t = 505."""
    losses = 1 - 0.001 * np.arange(1, 1001)
    assert C.steps_to_target(losses, 0.5, window=10) == 505
    assert C.steps_to_target(losses, 0.5, window=1) == 500
    assert C.steps_to_target(losses, -1.0, window=10) is None


def test_steps_to_target_counts_full_windows_only_and_never_nan() -> None:
    # A lucky first mini-batch: low once, then high for a while.
    losses = np.r_[0.01, np.full(20, 1.0), np.full(20, 0.05)]
    assert C.steps_to_target(losses, 0.1, window=5) == 21 + 5
    assert C.steps_to_target(np.full(4, 0.0), 0.1, window=5) is None
    assert C.steps_to_target(np.r_[np.full(10, np.nan), np.zeros(10)], 0.1, window=5) == 15


def test_smooth_is_the_trailing_mean() -> None:
    x = np.random.default_rng(0).random(50)
    naive = [x[max(0, t - 7) : t].mean() for t in range(1, 51)]
    assert np.allclose(C.smooth(x, 7), naive)


def test_epoch_last_cost_and_seconds_to_target() -> None:
    """The first edition's cost: the last mini-batch of each whole epoch (steps 3, 6, 9 here)."""
    losses = np.array([1, 1, 0.5, 0.05, 0.05, 0.2, 0.05, 0.05, 0.05, 0.01])
    assert C.epoch_last_steps_to_target(losses, 3, 0.1) == 9
    assert C.epoch_last_steps_to_target(losses[:8], 3, 0.1) is None
    rows = [C.EpochRow(1, 3, 1.5, 0.5), C.EpochRow(2, 6, 3.5, 0.2)]
    assert C.seconds_at(4, rows) == pytest.approx(1.5 + 2.0 / 3)
    assert C.seconds_at(None, rows) is None


def test_describe_keeps_finite_values_and_uses_the_sample_std() -> None:
    assert C.describe([1.0, 3.0, None, math.inf, math.nan]) == {"n": 2, "mean": 2.0, "std": math.sqrt(2),
                                                                "min": 1.0, "max": 3.0}
    assert C.describe([None])["mean"] is None


# --------------------------------------------------------------------------
# One cell on synthetic data
# --------------------------------------------------------------------------
def synthetic(n: int = 512) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, 784, generator=gen)
    w = torch.randn(784, 10, generator=gen)
    y = (x @ w).argmax(dim=1)  # a learnable rule
    return x, y, x[:128], y[:128]


def cell(**edits: Any) -> C.CellConfig:
    base = C.CellConfig(
        id="test", seed=0, optimizer=OptimizerConfig("sgd", 0.1, {"momentum": 0.9}),
        model=ModelConfig(784, 32, 10, False), init="torch_default", train_images=None, batch_size=64,
        max_steps=200, divergence_loss=100.0, evaluate=True, eval_batch_size=256, target_loss=1.0,
        smoothing_window=10, cost="smoothed", stop_margin=None, labels={"optimizer": "momentum"})
    for key, value in edits.items():
        setattr(base, key, value)
    return base


def test_a_diverging_lr_is_recorded_not_raised() -> None:
    res = C.run_cell(cell(optimizer=OptimizerConfig("sgd", 1e4, {"momentum": 0.9})), *synthetic(), torch.device("cpu"))
    assert res.diverged and res.stopped_by == "diverged"
    assert res.steps < 200 and res.final_loss == math.inf and res.steps_to_target is None


def test_the_budget_is_run_and_every_epoch_evaluated() -> None:
    res = C.run_cell(cell(target_loss=1e-9), *synthetic(), torch.device("cpu"))
    assert (res.steps, res.stopped_by, res.diverged, res.steps_to_target) == (200, "cap", False, None)
    assert res.steps_per_epoch == 8 and [r.step for r in res.epochs] == list(range(8, 201, 8))
    assert all(0 <= r.test_accuracy <= 1 and r.train_loss > 0 for r in res.epochs)
    assert res.epochs[-1].train_accuracy > 0.5  # it learns the rule


def test_a_cell_stops_at_the_end_of_the_epoch_after_both_costs_reach_target_plus_margin() -> None:
    res = C.run_cell(cell(max_steps=10_000, stop_margin=20), *synthetic(), torch.device("cpu"))
    assert res.stopped_by == "target" and res.steps_to_target == res.steps_to_target_smoothed
    later = max(res.steps_to_target_smoothed, res.steps_to_target_epoch_last)
    assert later + 20 <= res.steps < later + 20 + res.steps_per_epoch
    assert res.steps % res.steps_per_epoch == 0


def test_epoch_last_cost_gives_the_headline_when_asked() -> None:
    res = C.run_cell(cell(cost="epoch_last", max_steps=10_000, stop_margin=0, evaluate=False), *synthetic(),
                     torch.device("cpu"))
    assert res.steps_to_target == res.steps_to_target_epoch_last
    assert res.steps_to_target % res.steps_per_epoch == 0 and res.step_loss[res.steps_to_target - 1] <= 1.0
    assert res.steps == max(res.steps_to_target_epoch_last, -(-res.steps_to_target_smoothed // 8) * 8)
    assert np.isnan(res.epochs[0].test_loss)


def test_same_seed_same_curve_other_seed_other_curve() -> None:
    data = synthetic()
    a, b = (C.run_cell(cell(max_steps=40), *data, torch.device("cpu")) for _ in range(2))
    c = C.run_cell(cell(max_steps=40, seed=1), *data, torch.device("cpu"))
    assert np.array_equal(a.step_loss, b.step_loss) and not np.array_equal(a.step_loss, c.step_loss)


def test_train_images_takes_the_first_images() -> None:
    res = C.run_cell(cell(train_images=100, batch_size=10, max_steps=25), *synthetic(), torch.device("cpu"))
    assert res.steps_per_epoch == 10 and [r.step for r in res.epochs] == [10, 20, 25]


def test_he_normal_init() -> None:
    torch.manual_seed(0)
    from beyond_gd.model import build_model

    model = build_model(ModelConfig(784, 256, 10, True))
    C.he_normal_(model)
    first = model.classifier[1]
    assert first.weight.std().item() == pytest.approx(math.sqrt(2 / 784), rel=0.02)
    assert torch.all(first.bias == 0) and model.classifier[5].weight.std().item() == pytest.approx(
        math.sqrt(2 / 256), rel=0.05)


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------
def test_default_configs_validate_and_make_their_cells() -> None:
    p = params()
    cfg, setups, opts = momentum.load_config(p)
    cells = momentum.build_cells(cfg, setups, opts, section(p, "model", ModelConfig))
    assert len(cells) == len(cfg.optimizers) * len(setups) * len(cfg.seeds)
    assert cells[0].labels["optimizer"] == cfg.optimizers[0]  # the slowest is dispatched first
    book = next(c for c in cells if c.labels["setup"] == "book_first_edition")
    assert (book.batch_size, book.train_images, book.init, book.model.final_relu, book.cost) == (
        100, 55000, "he_normal", True, "smoothed")
    assert book.max_steps == setups["book_first_edition"].max_steps
    grid, gopts = optimizer_grid.load_config(p)
    gcells = optimizer_grid.build_cells(grid, gopts, section(p, "model", ModelConfig))
    assert len(gcells) == sum(len(v) for v in grid.lrs.values()) * len(grid.seeds)
    assert set(grid.lrs) == set(p["optimizers"])  # every optimizer of the chapter
    adam = next(c for c in gcells if c.labels["optimizer"] == "adam")
    assert adam.optimizer.kwargs == p["optimizers"]["adam"]["kwargs"] and adam.optimizer.lr in grid.lrs["adam"]
    section(p, "launcher", LauncherConfig)


BAD = [
    # (where, key path, value, the start of the one-line message)
    ("momentum", ["momentum", "seeds"], [0, -1], "momentum.seeds: must be distinct integers >= 0"),
    ("momentum", ["momentum", "setups", "pytorch", "init"], "xavier", "momentum.setups.pytorch.init: 'xavier' is not allowed"),
    ("momentum", ["momentum", "setups", "pytorch", "cost"], "mean", "momentum.setups.pytorch.cost: 'mean' is not allowed"),
    ("momentum", ["momentum", "baseline"], "adam", "momentum.baseline: 'adam' is not in momentum.optimizers"),
    ("momentum", ["momentum", "optimizers"], ["sgd", "nope"], "momentum.optimizers: 'nope' is not in the optimizers"),
    ("momentum", ["momentum", "smoothing_window"], 0, "momentum.smoothing_window: must be > 0"),
    ("momentum", ["momentum", "stop_margins"], 1, "momentum.stop_margins: unknown key"),
    ("optimizer_grid", ["optimizer_grid", "lrs", "sgd"], [0.1, -1.0], "optimizer_grid.lrs.sgd: must be distinct"),
    ("optimizer_grid", ["optimizer_grid", "lrs", "nope"], [0.1], "optimizer_grid.lrs: 'nope' is not in the optimizers"),
    ("optimizer_grid", ["optimizer_grid", "rank_by"], "speed", "optimizer_grid.rank_by: 'speed' is not allowed"),
    ("optimizer_grid", ["optimizers", "adam", "kwargs", "betaz"], 1, "optimizers.adam.kwargs.betaz: not an argument"),
    ("optimizer_grid", ["optimizer_grid", "epochs"], "two", "optimizer_grid.epochs: "),
]


@pytest.mark.parametrize(("stage", "path", "value", "message"), BAD, ids=[".".join(b[1]) for b in BAD])
def test_bad_params_are_one_line_errors_naming_the_key(stage: str, path: list[str], value: Any, message: str) -> None:
    p = copy.deepcopy(params())
    node = p
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    load = momentum.load_config if stage == "momentum" else optimizer_grid.load_config
    with pytest.raises(ConfigError) as err:
        load(p)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_bad_launcher_engine_is_one_line() -> None:
    p = params()
    p["launcher"]["engine"] = "ray"
    with pytest.raises(ConfigError, match=r"^launcher\.engine: 'ray' is not allowed"):
        section(p, "launcher", LauncherConfig)


@pytest.mark.slow  # a fresh interpreter importing torch and mlflow: ~10 s here
def test_stage_cli_reports_one_line_and_exit_2(tmp_path: Path) -> None:
    p = params()
    p["optimizer_grid"]["lrs"]["adam"] = []
    path = write_params(tmp_path / "params.yaml", p)
    done = subprocess.run([sys.executable, "-m", "beyond_gd.stages.optimizer_grid", "--params", str(path),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: optimizer_grid.lrs.adam: must be distinct learning rates > 0, got []"
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------
# The launcher, on tiny real-MNIST cells (a few seconds each: slow)
# --------------------------------------------------------------------------
def tiny_cells(n: int, steps: int) -> list[C.CellConfig]:
    return [cell(id=f"tiny-s{seed}", seed=seed, train_images=4096, max_steps=steps, evaluate=False,
                 labels={"optimizer": "momentum", "seed": seed}) for seed in range(n)]


def launch_under_parent(cells: list[C.CellConfig], root: Path, mnist: Path, engine: str,
                        settings: dict[str, Any]) -> tuple[list, str]:
    with stage_run("test_launch", {}) as parent:
        context = JobContext("test_launch", str(mnist.resolve()), "cpu", 1, tracking_uri(),
                             experiment_id("test_launch"), parent.info.run_id)
        outputs = launch(cells, root / "cells", LauncherConfig(engine, 1, settings), context)
    return outputs, parent.info.run_id


def child_runs(parent_id: str) -> list:
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow.search_runs(experiment_names=["beyond-gd/test_launch"], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")


@pytest.mark.slow
def test_joblib_runs_cells_in_parallel_processes_nested_in_mlflow(tmp_path: Path, mnist_root: Path) -> None:
    # ~1,500 steps each (a few seconds): long enough to overlap despite the
    # workers' staggered start.
    outputs, parent_id = launch_under_parent(tiny_cells(2, 1500), tmp_path, mnist_root, "joblib", {"n_jobs": 2})
    a, b = (o.result for o in outputs)
    assert a["pid"] != b["pid"]
    assert max(a["started_at"], b["started_at"]) < min(a["finished_at"], b["finished_at"])
    assert all(len(o.steps) == 1500 and not o.result["diverged"] for o in outputs)
    # Each cell's own config, as Hydra recorded it for its job.
    recorded = (tmp_path / "cells" / "tiny-s1" / ".hydra" / "config.yaml").read_text()
    assert "id: tiny-s1" in recorded and "seed: 1" in recorded

    runs = child_runs(parent_id)
    assert sorted(r.data.tags["cell"] for r in runs) == ["tiny-s0", "tiny-s1"]
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["device"] == "cpu" and r.data.tags["device_name"]
        assert r.data.params["optimizer.lr"] == "0.1"
    history = mlflow.MlflowClient().get_metric_history(runs[0].info.run_id, "train_loss_step")
    assert len(history) == 1500


@pytest.mark.slow
def test_submitit_local_runs_a_cell(tmp_path: Path, mnist_root: Path) -> None:
    outputs, parent_id = launch_under_parent(tiny_cells(1, 50), tmp_path, mnist_root, "submitit_local",
                                             {"timeout_min": 5, "cpus_per_task": 1})
    assert outputs[0].result["steps"] == 50 and len(outputs[0].steps) == 50
    assert (tmp_path / "cells" / ".submitit").is_dir()  # it went through submitit
    assert [r.data.tags["cell"] for r in child_runs(parent_id)] == ["tiny-s0"]


# --------------------------------------------------------------------------
# The stages end to end, on tiny budgets
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_grid_records_a_diverging_cell_and_goes_on(tmp_path: Path, mnist_root: Path) -> None:
    p = params()
    p["optimizer_grid"].update(lrs={"sgd": [0.1], "momentum": [0.1, 1000.0]}, seeds=[0, 1], max_steps=120,
                               curve_stride=10)
    path = write_params(tmp_path / "params.yaml", p)
    out = tmp_path / "grid"
    optimizer_grid.main(["--params", str(path), "--data", str(mnist_root), "--out", str(out), "--no-progress"])

    cells = pd.read_csv(out / "cells.csv")
    assert len(cells) == 6
    bad = cells[cells.lr == 1000.0]
    assert bad["diverged"].all() and (bad["stopped_by"] == "diverged").all() and (bad["steps"] < 120).all()
    good = cells[cells.lr == 0.1]
    assert (~good["diverged"]).all() and (good["steps"] == 120).all() and good["test_accuracy"].notna().all()
    summary = pd.read_csv(out / "summary.csv", dtype={"lrs": str, "diverged_lrs": str})
    assert list(summary["rank"]) == [1, 2]
    mom = summary[summary.optimizer == "momentum"].iloc[0]
    assert mom.best_lr == 0.1 and str(mom.diverged_lrs) == "1000" and mom.seeds == 2
    steps = pd.read_csv(out / "steps.csv")
    assert list(steps.columns) == ["optimizer", "lr", "seed", "step", "loss", "smoothed"]
    assert set(steps[steps.lr == 0.1]["step"]) == set(range(10, 121, 10))
    epochs = pd.read_csv(out / "epochs.csv")
    assert {"optimizer", "lr", "seed", "epoch", "test_accuracy", "train_loss"} <= set(epochs.columns)
    assert json.loads((out / "metrics.json").read_text())["diverged_cells"] == 2
    assert (out / "curves" / "momentum.csv").exists()

    mlflow.set_tracking_uri(tracking_uri())
    runs = mlflow.search_runs(experiment_names=["beyond-gd/optimizer_grid"], output_format="list")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 6 and all(r.data.tags["device"] == "cpu" for r in children)
    assert sum(r.data.tags["diverged"] == "true" for r in children) == 2


@pytest.mark.slow
def test_momentum_stage_writes_both_setups(tmp_path: Path, mnist_root: Path) -> None:
    p = params()
    # A target both reach within a few hundred steps, so the stop rule acts.
    p["momentum"].update(seeds=[0, 1], stop_margin=50, target_loss=1.0, smoothing_window=20,
                         optimizers=["sgd", "momentum"])
    for setup in p["momentum"]["setups"].values():
        setup["max_steps"] = 1200
    # The headline by the cost the book plotted (the default counts by the trailing mean): both paths run.
    p["momentum"]["setups"]["book_first_edition"]["cost"] = "epoch_last"
    p["momentum"]["book_steps"] = {"sgd": 18000, "momentum": 2000}
    path = write_params(tmp_path / "params.yaml", p)
    out = tmp_path / "momentum"
    momentum.main(["--params", str(path), "--data", str(mnist_root), "--out", str(out), "--no-progress"])

    runs = pd.read_csv(out / "runs.csv")
    assert len(runs) == 8 and set(runs.setup) == {"pytorch", "book_first_edition"}
    assert set(runs.stopped_by) <= {"target", "cap"}
    summary = pd.read_csv(out / "summary.csv")
    row = summary[(summary.setup == "pytorch") & (summary.optimizer == "momentum")].iloc[0]
    assert row.reached == 2 and row.ratio_mean > 1  # momentum gets there first
    assert row.book_ratio == 9.0
    book = runs[runs.setup == "book_first_edition"]
    assert (book.cost == "epoch_last").all() and (book.steps_to_target.dropna() % 550 == 0).all()
    epochs = pd.read_csv(out / "epochs.csv")
    book_steps = epochs[epochs.setup == "book_first_edition"]["step"]
    assert ((book_steps % 550 == 0) | (book_steps == 1200)).all()  # epochs of 550, but for a cap mid-epoch
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["setups"]["pytorch"]["momentum"]["reached"] == 2
    for name in ("pytorch-sgd", "pytorch-momentum", "book_first_edition-sgd", "book_first_edition-momentum"):
        assert len(pd.read_csv(out / "curves" / f"{name}.csv")) > 0
