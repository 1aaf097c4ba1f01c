"""Training cells, the launcher, and the momentum_speedup (Fig 6-9) and optimizer_grid studies."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from beyond_gd import cell_tables as T
from beyond_gd import cells as C
from beyond_gd import tracking, training
from beyond_gd.cell_job import JobContext, record_cell
from beyond_gd.config import ModelConfig, load
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.launch import LauncherConfig, cell_launcher, launch, read_cell, run_cells_here
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.stage import RunContext, execute
from beyond_gd.stages.optimizer_grid import STAGE as GRID
from beyond_gd.study import Inputs
from beyond_gd.studies import lbfgs, lr_adaptation, momentum_speedup, optimizer_grid
from conftest import composed, config, write_params

SGD_MOMENTUM = OptimizerSpec("torch.optim.SGD", 0.1, {"momentum": 0.9})


pytestmark = pytest.mark.usefixtures("one_thread")


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
        id="test", seed=0, optimizer=SGD_MOMENTUM,
        model=ModelConfig(784, 32, 10, False), init="torch_default", train_images=None, batch_size=64,
        max_steps=200, divergence_loss=100.0, eval_every=1, eval_batch_size=256, target_loss=1.0,
        smoothing_window=10, cost="smoothed", stop_margin=None, labels={"optimizer": "sgd_momentum"})
    for key, value in edits.items():
        setattr(base, key, value)
    return base


def test_a_diverging_lr_is_recorded_not_raised() -> None:
    res = C.run_cell(cell(optimizer=SGD_MOMENTUM.with_lr(1e4)), *synthetic(), torch.device("cpu"))
    assert res.diverged and res.stopped_by == "diverged"
    assert res.steps < 200 and res.final_loss == math.inf and res.steps_to_target is None


def test_the_budget_is_run_and_every_epoch_evaluated() -> None:
    res = C.run_cell(cell(target_loss=1e-9), *synthetic(), torch.device("cpu"))
    assert (res.steps, res.stopped_by, res.diverged, res.steps_to_target) == (200, "cap", False, None)
    assert res.steps_per_epoch == 8 and [r.step for r in res.epochs] == list(range(8, 201, 8))
    assert all(0 <= r.test_accuracy <= 1 and r.train_loss > 0 for r in res.epochs)
    assert res.epochs[-1].train_accuracy > 0.5  # it learns the rule


def test_a_cell_stops_at_the_end_of_the_epoch_after_every_cost_reaches_target_plus_margin() -> None:
    res = C.run_cell(cell(max_steps=10_000, stop_margin=20), *synthetic(), torch.device("cpu"))
    assert res.stopped_by == "target" and res.steps_to_target == res.steps_to_target_smoothed
    # Evaluated every epoch, the whole training split's crossing counts too: the first epoch end at or below.
    by_train = next(r.step for r in res.epochs if r.train_loss <= 1.0)
    later = max(res.steps_to_target_smoothed, res.steps_to_target_epoch_last, by_train)
    assert later + 20 <= res.steps < later + 20 + res.steps_per_epoch
    assert res.steps % res.steps_per_epoch == 0
    # Unevaluated, the two costs alone decide.
    bare = C.run_cell(cell(max_steps=10_000, stop_margin=20, eval_every=None), *synthetic(), torch.device("cpu"))
    two = max(bare.steps_to_target_smoothed, bare.steps_to_target_epoch_last)
    assert two + 20 <= bare.steps < two + 20 + bare.steps_per_epoch


def test_epoch_last_cost_gives_the_headline_when_asked() -> None:
    res = C.run_cell(cell(cost="epoch_last", max_steps=10_000, stop_margin=0, eval_every=None), *synthetic(),
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


def test_the_step_budget_counts_a_partial_last_batch_and_is_cut_at_max_steps() -> None:
    assert training.steps_per_epoch(60_000, 64) == 938 and training.steps_per_epoch(640, 64) == 10
    assert training.step_budget(10, 60_000, 64) == 9_380 == training.step_budget(10, 60_000, 64, 10_000)
    assert training.step_budget(10, 60_000, 64, 100) == 100
    # A cell's epochs are the loop's: the budget of two epochs ends at the end of the second.
    res = C.run_cell(cell(train_images=100, batch_size=30, max_steps=training.step_budget(2, 100, 30)),
                     *synthetic(), torch.device("cpu"))
    assert [r.step for r in res.epochs] == [4, 8] and res.steps_per_epoch == training.steps_per_epoch(100, 30)


def test_seconds_at_interpolates_within_an_epoch() -> None:
    rows = [C.EpochRow(1, 3, 1.5, 0.5), C.EpochRow(2, 6, 3.5, 0.2)]
    assert C.seconds_at(4, rows) == pytest.approx(1.5 + 2.0 / 3)
    assert C.seconds_at(None, rows) is None


def test_seed_stats_keep_finite_values_and_use_the_sample_std() -> None:
    frame = pd.DataFrame({"g": ["a"] * 5 + ["b"], "v": [1.0, 3.0, None, math.inf, math.nan, None]})
    stats = T.seed_stats(frame, ["g"], "v")
    assert stats.loc["a"].to_dict() == {"n": 2, "mean": 2.0, "std": math.sqrt(2), "min": 1.0, "max": 3.0}
    assert stats.loc["b", "n"] == 0 and math.isnan(stats.loc["b", "mean"])


# --------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------
def test_default_configs_make_their_cells() -> None:
    # The default runs the PyTorch setup only (the thorough profile both): here both, to see each one's cells.
    assert config(momentum_speedup.Config).momentum_speedup.run_setups == ["pytorch"]
    cfg = config(momentum_speedup.Config, "momentum_speedup.run_setups=[pytorch,book_first_edition]")
    c = cfg.momentum_speedup
    cells = momentum_speedup.build_cells(cfg)
    assert len(cells) == (len(c.optimizers) + 1) * len(c.setups) * len(c.seeds)  # and the equal-step control
    assert cells[0].labels["optimizer"] == c.optimizers[0]  # the slowest is dispatched first
    # The equal-step control: the baseline's SGD at lr / (1 - m), m the momentum of `equal_step_of`.
    control = [x for x in cells if x.labels["optimizer"] == momentum_speedup.EQUAL_STEP]
    base, mom = cfg.optimizers[c.baseline], cfg.optimizers[c.equal_step_of]
    assert len(control) == len(c.setups) * len(c.seeds)
    assert all(x.optimizer == base.with_lr(base.lr / (1 - mom.kwargs["momentum"])) for x in control)
    assert control[0].optimizer.lr == pytest.approx(0.1)  # the book's 0.01 / (1 - 0.9)
    book = next(x for x in cells if x.labels["setup"] == "book_first_edition")
    assert (book.batch_size, book.train_images, book.init, book.model.final_relu, book.cost) == (
        100, 55000, "he_normal", True, "smoothed")
    assert book.max_steps == c.setups["book_first_edition"].max_steps
    grid = config(optimizer_grid.Config)
    gcells = optimizer_grid.build_cells(grid)
    lrs = grid.optimizer_grid.lrs
    assert len(gcells) == sum(len(v) for v in lrs.values()) * len(grid.optimizer_grid.seeds)
    assert set(lrs) | set(grid.optimizer_grid.excluded) == set(composed()["optimizers"])  # every optimizer, in or out
    adam = next(x for x in gcells if x.labels["optimizer"] == "adam")
    assert adam.optimizer.kwargs == grid.optimizers["adam"].kwargs and adam.optimizer.lr in lrs["adam"]
    assert adam.optimizer.target == "torch.optim.Adam"


def test_a_grid_cell_with_the_baselines_settings_is_the_baseline_run() -> None:
    """SGD at the baseline's lr, seed and batch size on all the training images: the grid's cell trains as the
    baseline does (one loop, one batch order), so its first steps are the baseline's."""
    grid, base = config(optimizer_grid.Config), composed()["baseline"]
    sgd = next(x for x in optimizer_grid.build_cells(grid) if x.labels["optimizer"] == base["optimizer"]
               and x.optimizer.lr == grid.optimizers[base["optimizer"]].lr and x.seed == base["seed"])
    assert (sgd.batch_size, sgd.train_images, sgd.init) == (base["batch_size"], None, "torch_default")
    assert sgd.optimizer == grid.optimizers[base["optimizer"]] and sgd.model == grid.model


def test_a_cell_without_a_target_records_no_steps_to_one() -> None:
    res = C.run_cell(cell(target_loss=None, smoothing_window=1, max_steps=40), *synthetic(), torch.device("cpu"))
    assert (res.steps_to_target, res.steps_to_target_smoothed, res.steps_to_target_epoch_last,
            res.seconds_to_target) == (None, None, None, None)
    assert res.steps == 40 and res.final_loss == pytest.approx(float(res.step_loss[-1]))  # a window of one


@pytest.mark.parametrize(("edits", "message"), [
    ({"target_loss": None, "stop_margin": 10}, "cell test: stop_margin needs a target_loss"),
    ({"eval_batch_size": None}, "cell test: eval_every needs an eval_batch_size"),
    ({"cost": "mean"}, "cell test: cost 'mean' is not allowed"),
    ({"init": "xavier"}, "cell test: init 'xavier' is not allowed"),
    ({"smoothing_window": 0}, "cell test: smoothing_window must be >= 1"),
    ({"eval_every": 0}, "cell test: eval_every must be >= 1"),
])
def test_a_cell_config_that_breaks_a_rule_is_one_line_naming_the_cell(edits: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{message}"):
        C.run_cell(cell(**edits), *synthetic(), torch.device("cpu"))


# --------------------------------------------------------------------------
# The job: one cell as an MLflow run nested under the stage's (fake MNIST)
# --------------------------------------------------------------------------
def test_a_job_logs_each_param_once_names_its_stage_run_and_writes_what_runs_here_write(
        tmp_path: Path, fake_mnist_root: Path) -> None:
    one = cell(id="job-s3", seed=3, max_steps=16, labels={"optimizer": "sgd_momentum", "lr": 0.1, "seed": 3})
    experiment = tracking.experiment_id("test_job")
    with tracking.recorded(experiment, "stage", {}, {}) as parent:
        context = RunContext("test_job", tracking.tracking_uri(), experiment, parent.info.run_id, "cpu",
                             str(fake_mnist_root))
    # A job in another process: the stage's run is not this process's active one.
    result = record_cell(one, JobContext(context.__dict__, 1), tmp_path / "job")
    run = MlflowClient(tracking_uri=tracking.tracking_uri()).get_run(result["mlflow_run_id"])
    assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id == result["parent_run_id"]
    # The labels are tags; the config's own fields are params, each once.
    assert {k: run.data.tags[k] for k in one.labels} == {"optimizer": "sgd_momentum", "lr": "0.1", "seed": "3"}
    assert run.data.params["seed"] == "3" and run.data.params["optimizer.lr"] == "0.1"
    assert not [k for k in run.data.params if k.startswith("labels")]
    # The in-process runner writes the same artifact, but for the runs' ids (it opens none) and measured time.
    here = run_cells_here([one], fake_mnist_root, tmp_path / "here")[0]
    facts = {"mlflow_run_id", "parent_run_id", "pid", "started_at", "finished_at", "wall_seconds",
             "train_seconds", "cpu_seconds", "seconds_to_target"}
    assert list(here.result) == list(result)
    assert {k: v for k, v in here.result.items() if k not in facts} == {k: v for k, v in result.items() if k not in facts}
    assert here.result["mlflow_run_id"] is None and here.result["parent_run_id"] is None
    job = read_cell(tmp_path / "job", one)
    pd.testing.assert_frame_equal(job.steps, here.steps, check_exact=True)
    pd.testing.assert_frame_equal(job.epochs.drop(columns="seconds"), here.epochs.drop(columns="seconds"),
                                  check_exact=True)


# --------------------------------------------------------------------------
# The launcher, on tiny real-MNIST cells (a few seconds each: slow)
# --------------------------------------------------------------------------
def tiny_cells(n: int, steps: int) -> list[C.CellConfig]:
    return [cell(id=f"tiny-s{seed}", seed=seed, train_images=4096, max_steps=steps, eval_every=None,
                 labels={"optimizer": "sgd_momentum", "seed": seed}) for seed in range(n)]


def launch_under_parent(cells: list[C.CellConfig], root: Path, mnist: Path, engine: str,
                        settings: dict[str, Any]) -> tuple[list[C.CellOutput], str]:
    experiment = tracking.experiment_id("test_launch")
    with tracking.recorded(experiment, "test_launch", {}, {}) as parent:
        context = RunContext("test_launch", tracking.tracking_uri(), experiment, parent.info.run_id, "cpu",
                             str(mnist.resolve()))
        outputs = launch(cells, root / "cells", LauncherConfig(engine, 1, settings),
                         JobContext(context.__dict__, 1))
    return outputs, parent.info.run_id


def child_runs(parent_id: str) -> list[mlflow.entities.Run]:
    mlflow.set_tracking_uri(tracking.tracking_uri())
    return mlflow.search_runs(experiment_names=["beyond-gd/test_launch"], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")


def test_cells_are_dispatched_longest_first_to_as_many_jobs_as_the_usable_cores_hold(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The longest cell goes first (ties keep the study's order) so the last worker does not run it alone;
    joblib's n_jobs null becomes the cores of this process's affinity over the threads per job."""
    import beyond_gd.launch as L

    dispatched: list[str] = []
    monkeypatch.setattr(L, "_run_launcher", lambda ids, *_: dispatched.extend(ids))
    monkeypatch.setattr(L, "read_cell", lambda folder, c, reused=False: c.id)
    cells = [cell(id="short", max_steps=100), cell(id="long", max_steps=300), cell(id="tie", max_steps=100),
             cell(id="eval", max_steps=100, eval_every=1, eval_batch_size=256, train_images=None)]
    for c in cells[:3]:  # short and tie: the same budget, no evaluation (a tie)
        c.eval_every = None
    job = JobContext({"device": "cpu"}, 2)
    for cores, threads, jobs in [(range(16), 2, 8), (range(16), 1, 16), ({0}, 2, 1)]:
        monkeypatch.setattr("os.sched_getaffinity", lambda _pid, c=cores: set(c), raising=False)
        launcher = LauncherConfig("joblib", threads, {"n_jobs": None, "batch_size": 1})
        assert L.launch_settings(launcher) == {"n_jobs": jobs, "batch_size": 1}
        assert L.launch_settings(LauncherConfig("joblib", threads, {"n_jobs": 3}))["n_jobs"] == 3  # as set
        assert L.launch_settings(LauncherConfig("submitit_local", threads, {"timeout_min": 1})) == {"timeout_min": 1}
    dispatched.clear()
    assert launch(cells, tmp_path / "sweep", launcher, job) == ["short", "long", "tie", "eval"]  # as given
    assert dispatched == ["eval", "long", "short", "tie"]  # an evaluation of 70,000 images outweighs 200 steps
    app = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "sweep/conf/cell_app.yaml").read_text())))
    assert app["hydra"]["launcher"]["n_jobs"] == 1
    assert L.planned_work(cells[1]) == 3 * L.planned_work(cells[0]) == 300 * 64 * 3
    assert L.planned_work(cells[3]) == 100 * 64 * 3 + 70_000  # the budget ends within the first epoch
    three = cell(max_steps=2 * 938 + 1, eval_every=2, train_images=None)  # ends at epochs 2 and 3 evaluate
    assert L.planned_work(three) == three.max_steps * 64 * 3 + 2 * 70_000


@pytest.mark.slow
def test_joblib_runs_cells_in_parallel_processes_nested_in_mlflow(tmp_path: Path, mnist_root: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Each cell's first step waits until both cells have begun (tests/cell_barrier.py), so both finish only
    # if two workers ran them at once, however loaded the machine; each one's run then spans the moment the
    # later one began, which is what the wall-clock overlap below reads.
    barrier = tmp_path / "barrier"
    spec = OptimizerSpec("cell_barrier.BarrierSGD", 0.1, {"momentum": 0.9, "barrier": str(barrier), "parties": 2})
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    cells = [dataclasses.replace(c, optimizer=spec) for c in tiny_cells(2, 300)]
    outputs, parent_id = launch_under_parent(cells, tmp_path, mnist_root, "joblib", {"n_jobs": 2})
    a, b = (o.result for o in outputs)
    assert a["pid"] != b["pid"] and sorted(p.name for p in barrier.iterdir()) == sorted([str(a["pid"]), str(b["pid"])])
    assert max(a["started_at"], b["started_at"]) < min(a["finished_at"], b["finished_at"])
    assert all(len(o.steps) == 300 and not o.result["diverged"] for o in outputs)
    assert all(o.result["parent_run_id"] == parent_id for o in outputs)
    # Each cell's own config, as the launch wrote it for Hydra; no `.hydra/` record per job beside it.
    recorded = (tmp_path / "cells" / "conf" / "cell" / "tiny-s1.yaml").read_text()
    assert "id: tiny-s1" in recorded and "seed: 1" in recorded
    assert not (tmp_path / "cells" / "tiny-s1" / ".hydra").exists()

    runs = child_runs(parent_id)
    assert sorted(r.data.tags["cell"] for r in runs) == ["tiny-s0", "tiny-s1"]
    for r in runs:
        assert r.info.status == "FINISHED" and r.data.tags["device"] == "cpu" and r.data.tags["device_name"]
        assert r.data.params["optimizer.lr"] == "0.1" and r.data.params["optimizer.target"] == spec.target
        # Each param once: the labels are tags, not params too.
        assert r.data.params["seed"] == r.data.tags["seed"] and not [k for k in r.data.params if "labels" in k]
    history = mlflow.MlflowClient().get_metric_history(runs[0].info.run_id, "train_loss_step")
    assert len(history) == 300


@pytest.mark.slow
def test_submitit_local_runs_a_cell(tmp_path: Path, mnist_root: Path) -> None:
    outputs, parent_id = launch_under_parent(tiny_cells(1, 50), tmp_path, mnist_root, "submitit_local",
                                             {"timeout_min": 5, "cpus_per_task": 1})
    assert outputs[0].result["steps"] == 50 and len(outputs[0].steps) == 50
    assert (tmp_path / "cells" / ".submitit").is_dir()  # it went through submitit
    assert [r.data.tags["cell"] for r in child_runs(parent_id)] == ["tiny-s0"]


# --------------------------------------------------------------------------
# The studies end to end, on tiny budgets, through the launcher
# --------------------------------------------------------------------------
def launched_inputs(cfg: Any, tmp_path: Path, mnist_root: Path) -> Inputs:
    """What the runner hands a study made of cells: a launcher nested under a parent run."""
    experiment = tracking.experiment_id("test_study")
    parent = mlflow.start_run(experiment_id=experiment)
    context = RunContext("test_study", tracking.tracking_uri(), experiment, parent.info.run_id, "cpu",
                         str(mnist_root.resolve()))
    mlflow.end_run()
    return Inputs("cpu", {"mnist": mnist_root}, tmp_path, run_cells=cell_launcher(cfg, tmp_path / "cells", context))


@pytest.mark.slow
def test_grid_records_a_diverging_cell_and_goes_on(tmp_path: Path, mnist_root: Path) -> None:
    # The interior rule off: the cells are the lrs given (the rule's own cells: tests/test_cell_studies.py).
    params = composed("optimizer_grid.seeds=[0,1]", "optimizer_grid.max_steps=120", "optimizer_grid.curve_stride=10",
                      "optimizer_grid.extension.max_added=0")
    params["optimizer_grid"]["lrs"] = {"sgd": [0.1], "sgd_momentum": [0.1, 1000.0]}  # a dict override would merge
    cfg = load(params, optimizer_grid.Config)
    result = optimizer_grid.run(cfg, launched_inputs(cfg, tmp_path, mnist_root))

    cells = result.tables["cells.csv"]
    assert len(cells) == 6
    bad = cells[cells.lr == 1000.0]
    assert bad["diverged"].all() and (bad["stopped_by"] == "diverged").all() and (bad["steps"] < 120).all()
    good = cells[cells.lr == 0.1]
    assert (~good["diverged"]).all() and (good["steps"] == 120).all() and good["test_accuracy"].notna().all()
    summary = result.tables["summary.csv"]
    assert list(summary["rank"]) == [1, 2]
    mom = summary[summary.optimizer == "sgd_momentum"].iloc[0]
    assert mom.best_lr == 0.1 and str(mom.diverged_lrs) == "1000" and mom.seeds == 2
    assert mom.torch_name == "SGD"
    steps = result.tables["steps.csv"]
    assert list(steps.columns) == ["optimizer", "lr", "seed", "step", "loss", "smoothed"]
    assert set(steps[steps.lr == 0.1]["step"]) == set(range(10, 121, 10))
    epochs = result.tables["epochs.csv"]
    assert {"optimizer", "lr", "seed", "epoch", "test_accuracy", "train_loss"} <= set(epochs.columns)
    assert result.metrics["diverged_cells"] == 2 and result.summary["cells"] == 6
    assert len(result.tables["curves/sgd_momentum.csv"]) == 12
    assert result.outputs() == ["steps.csv", "epochs.csv", "cells.csv", "summary.csv", "long.csv", "averaging.csv",
                                "curves", "cells", "metrics.json", "summary.json"]

    mlflow.set_tracking_uri(tracking.tracking_uri())
    children = mlflow.search_runs(experiment_names=["beyond-gd/test_study"], output_format="list",
                                  filter_string="tags.mlflow.parentRunId != ''")
    assert len(children) == 6 and all(r.data.tags["device"] == "cpu" for r in children)
    assert sum(r.data.tags["diverged"] == "true" for r in children) == 2


@pytest.mark.slow
def test_momentum_speedup_writes_both_setups(tmp_path: Path, mnist_root: Path) -> None:
    # A target both reach within a few hundred steps, so the stop rule acts; the first edition's headline by
    # the cost the book plotted (the default counts by the trailing mean): both paths run.
    cfg = config(momentum_speedup.Config, "momentum_speedup.seeds=[0,1]", "momentum_speedup.stop_margin=50",
                 "momentum_speedup.target_loss=1.0", "momentum_speedup.smoothing_window=20",
                 "momentum_speedup.optimizers=[sgd,sgd_momentum]",
                 "momentum_speedup.setups.pytorch.max_steps=1200",
                 "momentum_speedup.setups.book_first_edition.max_steps=1200",
                 "momentum_speedup.setups.book_first_edition.cost=epoch_last",
                 "momentum_speedup.run_setups=[pytorch,book_first_edition]")
    result = momentum_speedup.run(cfg, launched_inputs(cfg, tmp_path, mnist_root))

    runs = result.tables["runs.csv"]
    assert len(runs) == 12 and set(runs.setup) == {"pytorch", "book_first_edition"}  # 3 optimizers, 2 seeds
    assert set(runs.optimizer) == {"sgd", "sgd_momentum", momentum_speedup.EQUAL_STEP}
    assert set(runs.stopped_by) <= {"target", "cap"}
    summary = result.tables["summary.csv"]
    row = summary[(summary.setup == "pytorch") & (summary.optimizer == "sgd_momentum")].iloc[0]
    assert row.reached == 2 and row.ratio_mean > 1  # momentum gets there first
    assert row.book_ratio == 9.0
    # The control's steps over momentum's, paired by seed, beside each optimizer.
    control = runs[(runs.setup == "pytorch") & (runs.optimizer == momentum_speedup.EQUAL_STEP)]
    mom = runs[(runs.setup == "pytorch") & (runs.optimizer == "sgd_momentum")]
    ratios = control.set_index("seed")["steps_to_target"] / mom.set_index("seed")["steps_to_target"]
    assert row.equal_step_ratio_mean == pytest.approx(ratios.astype(float).mean())
    assert result.summary["equal_step"] == momentum_speedup.EQUAL_STEP and result.summary["equal_step_lr"] > 0
    book = runs[runs.setup == "book_first_edition"]
    assert (book.cost == "epoch_last").all() and (book.steps_to_target.dropna() % 550 == 0).all()
    epochs = result.tables["epochs.csv"]
    book_steps = epochs[epochs.setup == "book_first_edition"]["step"]
    assert ((book_steps % 550 == 0) | (book_steps == 1200)).all()  # epochs of 550, but for a cap mid-epoch
    assert result.summary["setups"]["pytorch"]["sgd_momentum"]["reached"] == 2
    assert result.metrics["speedup"]["pytorch"] == pytest.approx(row.ratio_mean)
    for name in ("pytorch-sgd", "pytorch-sgd_momentum", "book_first_edition-sgd", "book_first_edition-sgd_momentum"):
        assert len(result.tables[f"curves/{name}.csv"]) > 0
    # The output units are measured only behind the first edition's ReLU on the logits; a run that stopped at
    # the target has its whole training split's crossing too, at an epoch end.
    assert (book.weakest_unit.between(0, 9)).all() and (book.weakest_share.between(0, 1)).all()
    torch_runs = runs[runs.setup == "pytorch"]
    assert (torch_runs.weakest_unit == -1).all() and torch_runs.weakest_share.isna().all()
    stopped = runs[runs.stopped_by == "target"]
    assert stopped.steps_to_target_train_loss.notna().all() and len(stopped) > 0


@pytest.mark.slow
def test_a_killed_stage_ends_its_cells_runs_killed(tmp_path: Path, mnist_root: Path) -> None:
    """SIGTERM to a stage that is running cells: the launcher's jobs get it too, every run ends KILLED."""
    params = composed("profile=smoke", "launcher=basic", "optimizer_grid.max_steps=null", "optimizer_grid.epochs=100")
    params["optimizer_grid"]["lrs"] = {"sgd": [0.01]}
    path = write_params(tmp_path / "params.yaml", params)
    client = MlflowClient(tracking_uri=tracking.tracking_uri())
    client.search_experiments()  # the store's tables first: two processes creating them at once collide
    proc = subprocess.Popen([sys.executable, "-m", "beyond_gd.stages.optimizer_grid", "--params", str(path),
                             "--mnist", str(mnist_root), "--out", str(tmp_path / "out")], stderr=subprocess.PIPE,
                            text=True, env=os.environ)
    deadline = time.monotonic() + 180
    while not [r for r in _runs(client, "optimizer_grid") if "cell" in r.data.tags and r.info.status == "RUNNING"]:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read() if proc.poll() else ""
        time.sleep(0.5)
    time.sleep(2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    runs = _runs(client, "optimizer_grid")
    assert len(runs) == 2 and {r.info.status for r in runs} == {"KILLED"}, [(r.info.status, r.data.tags) for r in runs]
    assert all(r.data.tags["killed_by"] == "SIGTERM" for r in runs)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def _runs(client: MlflowClient, stage: str) -> list[mlflow.entities.Run]:
    exp = client.get_experiment_by_name(f"beyond-gd/{stage}")
    return client.search_runs([exp.experiment_id]) if exp else []


# --------------------------------------------------------------------------
# Finished cells are kept
# --------------------------------------------------------------------------
def _grid(tmp_path: Path, name: str, lrs: dict[str, list[float]]) -> Path:
    # The interior rule off: the cells are the lrs given (the rule's own cells: tests/test_cell_studies.py).
    params = composed("profile=smoke", "launcher=basic", "optimizer_grid.seeds=[0,1]",
                      "optimizer_grid.max_steps=60", "optimizer_grid.curve_stride=10",
                      "optimizer_grid.long_budget.enabled=false", "optimizer_grid.extension.max_added=0")
    params["optimizer_grid"]["lrs"] = lrs
    return write_params(tmp_path / f"{name}.yaml", params)


def _run_grid(params: Path, mnist_root: Path, out: Path) -> dict[str, Any]:
    execute(GRID, ["--params", str(params), "--mnist", str(mnist_root), "--out", str(out), "--no-progress"])
    return json.loads((out / "run.json").read_text())


def _without_seconds(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame.columns if "second" in c])


@pytest.mark.slow
def test_adding_an_lr_runs_only_its_cells_and_matches_a_run_from_scratch(tmp_path: Path, mnist_root: Path) -> None:
    grown, scratch = tmp_path / "grown", tmp_path / "scratch"
    first = _run_grid(_grid(tmp_path, "one", {"sgd": [0.1]}), mnist_root, grown)
    assert (first["cells"], first["cells_kept"]) == (2, 0)
    both = _grid(tmp_path, "two", {"sgd": [0.1, 0.05]})
    second = _run_grid(both, mnist_root, grown)
    assert (second["cells"], second["cells_kept"]) == (2, 2)  # only the new lr's two seeds ran
    assert (_run_grid(both, mnist_root, scratch)["cells"]) == 4

    # The same outputs as the grid run from scratch, byte for byte but for measured seconds ...
    for name in ("steps.csv", "summary.json", "metrics.json", "curves/sgd.csv"):
        assert (grown / name).read_bytes() == (scratch / name).read_bytes(), name
    for name in ("epochs.csv", "cells.csv", "summary.csv"):
        pd.testing.assert_frame_equal(_without_seconds(grown / name), _without_seconds(scratch / name),
                                      check_exact=True, obj=name)
    for cell in ("sgd-lr0.1-s0", "sgd-lr0.05-s1"):
        assert (grown / "cells" / cell / "steps.csv").read_bytes() == (scratch / "cells" / cell / "steps.csv").read_bytes()
    # ... and a kept cell still names the run that trained it.
    kept = json.loads((grown / "cells" / "sgd-lr0.1-s0" / "result.json").read_text())
    assert kept["mlflow_run_id"] in {r.info.run_id for r in _runs(MlflowClient(tracking_uri=tracking.tracking_uri()),
                                                                  "optimizer_grid")}
    # A change of the training code (here: of the key) runs the cell again.
    result = grown / "cells" / "sgd-lr0.05-s0" / "result.json"
    result.write_text(result.read_text().replace('"cell_key": "', '"cell_key": "stale', 1))
    assert _run_grid(both, mnist_root, grown)["cells"] == 1


def test_every_optimizer_of_the_grid_gets_the_same_search_around_its_default() -> None:
    """Equal tuning effort: five learning rates half a decade apart, centred on each optimizer's own default."""
    grid = config(optimizer_grid.Config)
    for name, lrs in grid.optimizer_grid.lrs.items():
        steps = np.log10(np.array(lrs) / grid.optimizers[name].lr)
        assert np.allclose(steps, [-1, -0.5, 0, 0.5, 1], atol=0.001), (name, lrs)
    assert set(grid.optimizer_grid.lrs) | set(grid.optimizer_grid.excluded) == set(grid.optimizers)
    assert len(grid.optimizer_grid.seeds) >= 5


def _table(scores: dict[tuple[str, float], list[float]], average: str | None = None,
           diverged: tuple[str, float] | None = None) -> pd.DataFrame:
    """A grid's cells.csv: optimizer, lr, seed and the measures `rank` reads, one row per seed."""
    rows = []
    for (name, lr), values in scores.items():
        for seed, v in enumerate(values):
            bad = diverged == (name, lr)
            rows.append({"optimizer": name, "lr": lr, "seed": seed, "diverged": bad, "steps": 938,
                         "train_seconds": 2.0, "torch_name": name.upper(),
                         "train_loss": None if bad else (v + 0.5 if name == average else v),
                         "average_train_loss": v if name == average else None,
                         "test_accuracy": 0.9, "test_loss": v, "final_loss": v, "steps_to_target": 400,
                         "seconds_to_target": 1.0, "average_test_accuracy": None})
    return pd.DataFrame(rows)


def _grid_config(lrs: dict[str, list[float]], seeds: int) -> optimizer_grid.OptimizerGridConfig:
    c = config(optimizer_grid.Config).optimizer_grid
    c.lrs, c.seeds, c.excluded = lrs, list(range(seeds)), {}
    return c


def test_rank_scores_each_optimizer_at_its_best_lr_with_intervals_and_ties() -> None:
    # b's seeds scatter in another order than a's (seed noise that is not shared): 0.20 and 0.21 are tied.
    noise, other = [0.00, 0.01, -0.01, 0.02, -0.02], [0.02, -0.02, 0.01, 0.00, -0.01]
    table = _table({("a", 0.1): [0.30 + e for e in noise], ("a", 0.3): [0.20 + e for e in noise],
                    ("b", 0.1): [0.21 + e for e in other], ("b", 0.3): [0.90 + e for e in other],
                    ("c", 0.1): [0.60 + e for e in noise], ("c", 0.3): [0.05 + e for e in noise]},
                   diverged=("c", 0.3))  # c's best lr diverged on one seed: never its best
    r = optimizer_grid.rank(table, _grid_config({"a": [0.1, 0.3], "b": [0.1, 0.3], "c": [0.1, 0.3]}, 5))
    assert list(r["optimizer"]) == ["a", "b", "c"] and list(r["rank"]) == [1, 2, 3]
    assert list(r["best_lr"]) == [0.3, 0.1, 0.1] and list(r["diverged_lrs"].fillna("")) == ["", "", "0.3"]
    assert list(r["best_lr_at_edge"]) == [True, True, True]
    a, b, c = r.itertuples()
    assert a.score_mean == pytest.approx(0.20) and a.score_low < 0.20 < a.score_high
    assert (a.tied_with_best, b.tied_with_best, c.tied_with_best) == (True, True, False)  # 0.20 vs 0.21: tied
    assert c.rank_low == c.rank_high == 3 and c.p_best == 0 and min(a.p_best, b.p_best) > 0.05
    assert a.p_best + b.p_best >= 1  # one of them is best in every resample (ties share rank 1)
    # The same seeds' noise for both (a seed good for a is as good for b): the paired resamples keep a ahead.
    shared = _table({("a", 0.1): [0.30 + e for e in noise], ("a", 0.3): [0.20 + e for e in noise],
                     ("b", 0.1): [0.21 + e for e in noise], ("b", 0.3): [0.90 + e for e in noise],
                     ("c", 0.1): [0.60 + e for e in noise], ("c", 0.3): [0.05 + e for e in noise]}, diverged=("c", 0.3))
    r = optimizer_grid.rank(shared, _grid_config({"a": [0.1, 0.3], "b": [0.1, 0.3], "c": [0.1, 0.3]}, 5))
    assert list(r["tied_with_best"]) == [True, False, False] and r["p_best"].iloc[0] == 1


def test_rank_scores_an_averaging_optimizer_by_its_average() -> None:
    table = _table({("asgd", 0.1): [0.3, 0.31, 0.29], ("sgd", 0.1): [0.5, 0.51, 0.49]}, average="asgd")
    r = optimizer_grid.rank(table, _grid_config({"asgd": [0.1], "sgd": [0.1]}, 3)).set_index("optimizer")
    assert r.loc["asgd", "score_mean"] == pytest.approx(0.3)  # its iterate's 0.8 would rank it last
    assert r.loc["asgd", "ranked_by"] == "train_loss of the averaged weights" and r.loc["sgd", "ranked_by"] == "train_loss"
    assert r.loc["asgd", "rank"] == 1 and not r.loc["sgd", "tied_with_best"]


def after_grid(cfg: Any, tmp_path: Path, mnist_root: Path, lrs: dict[str, float]) -> tuple[Inputs, Path]:
    """Inputs for a stage that reads the optimizer grid's best lrs: a grid summary.csv with `lrs`, and its folder."""
    grid = tmp_path / "optimizer_grid"
    grid.mkdir()
    pd.DataFrame({"optimizer": list(lrs), "best_lr": list(lrs.values())}).to_csv(grid / "summary.csv", index=False)
    inputs = launched_inputs(cfg, tmp_path, mnist_root)
    inputs.folders = {**inputs.folders, "optimizer_grid": grid}
    return inputs, grid


@pytest.mark.slow
def test_lbfgs_full_batch_beside_first_order_methods_per_gradient_evaluation(tmp_path: Path, mnist_root: Path) -> None:
    cfg = config(lbfgs.Config, "profile=smoke")
    inputs, grid = after_grid(cfg, tmp_path, mnist_root, {"sgd": 0.1, "sgd_momentum": 0.0316, "adam": 0.001})
    result = lbfgs.run(cfg, inputs)
    epochs, summary = result.tables["epochs.csv"], result.tables["summary.csv"].set_index("optimizer")
    full = epochs[epochs.optimizer == "lbfgs"]
    # Full batch: one step an epoch, several gradient evaluations each (max_iter, the line search).
    assert list(full["step"]) == [1, 2] and (full["evaluations"].diff().dropna() > 1).all()
    assert (full["example_gradients"] == full["evaluations"] * 1000).all()
    assert full["train_loss"].notna().all()  # L-BFGS evaluated after every step
    sgd = epochs[epochs.optimizer == "sgd"]
    assert (sgd["evaluations"] == sgd["step"]).all() and (sgd["example_gradients"] == sgd["step"] * 64).all()
    # The first-order methods evaluated every eval_every-th epoch and at the budget's end only.
    c = cfg.lbfgs
    assert c.eval_every > 1 and len(sgd) > 1
    evaluated = sgd["train_loss"].notna()
    assert list(evaluated) == [e % c.eval_every == 0 or e == sgd["epoch"].max() for e in sgd["epoch"]]
    # The searched lrs: one of the factors times the grid's best.
    assert summary.loc["sgd_momentum", "lr"] in [0.0316 * f for f in c.search_factors]
    assert summary.loc["lbfgs", "batch_size"] == 1000
    assert summary.loc["lbfgs", "train_loss_mean"] < summary.loc["sgd", "train_loss_mean"]  # 1,000 images, full batch
    assert set(result.metrics) == {f"{n}_example_gradients_to_{min(c.targets):g}"
                                   for n in ["lbfgs", *c.compare, "cg"]}
    # On real images L-BFGS reaches 0.1 within its 2 full-batch steps.
    targets = result.tables["targets.csv"]
    assert targets[(targets.optimizer == "lbfgs") & (targets.target == 0.1)].reached.all()
    # SciPy's CG from the same init, full batch, for L-BFGS's evaluations (its last line search may overshoot).
    cg = epochs[epochs.optimizer == "cg"]
    budget = full["evaluations"].iloc[-1]
    assert list(cg["epoch"]) == list(range(1, len(cg) + 1)) and cg["evaluations"].is_monotonic_increasing
    assert budget <= cg["evaluations"].iloc[-1] <= budget + 10
    assert result.summary["cg"]["max_evaluations"] == {"0": budget}
    assert (cg["example_gradients"] == cg["evaluations"] * 1000).all() and cg["seconds"].is_monotonic_increasing
    assert cg["train_loss"].notna().all() and cg["train_loss"].iloc[-1] < cg["train_loss"].iloc[0]
    assert cg["test_accuracy"].notna().tolist() == [False] * (len(cg) - 1) + [True]  # at the end only
    assert summary.loc["cg", "batch_size"] == 1000 and pd.isna(summary.loc["cg", "lr"])
    assert summary.loc["cg", "test_accuracy_mean"] > 0.5 and summary.loc["cg", "steps"] == len(cg)
    assert result.summary["parameters"] == 269_322 and result.summary["memory_bytes"]["bfgs"] == 269_322**2 * 4
    # A grid without a best lr for a compared optimizer is a one-line error naming the file.
    pd.DataFrame({"optimizer": ["sgd"], "best_lr": [0.1]}).to_csv(grid / "summary.csv", index=False)
    with pytest.raises(DataError, match=r"^optimizer_grid/summary\.csv: no best lr for sgd_momentum, adam"):
        lbfgs.run(cfg, inputs)


@pytest.mark.slow
def test_lr_adaptation_probes_the_effective_lr_and_the_first_updates(tmp_path: Path, mnist_root: Path) -> None:
    cfg = config(lr_adaptation.Config, "profile=smoke")
    c = cfg.lr_adaptation
    inputs, _ = after_grid(cfg, tmp_path, mnist_root, {"adagrad": 0.0316, "rmsprop": 0.001, "adam": 0.00316})
    result = lr_adaptation.run(cfg, inputs)
    probes, summary = result.tables["probes.csv"], result.tables["summary.csv"].set_index("optimizer")
    assert list(summary.index) == ["adagrad", "rmsprop", "adam", "adam_uncorrected"]
    assert summary.loc["adam_uncorrected", "lr"] == summary.loc["adam", "lr"] == 0.00316
    assert summary.loc["adam_uncorrected", "steps"] == c.early_steps and summary.loc["adam", "steps"] == 938
    for name, rows in probes.groupby("optimizer"):
        sizes = rows.dropna(subset=["update_norm"])
        assert list(sizes["step"]) == list(range(1, c.probe_updates + 1)) and (sizes["update_norm"] > 0).all()
        lr = rows.dropna(subset=["lr_median"])
        assert lr["step"].iloc[0] == 1 and (lr["step"].iloc[1:] % c.probe_every == 0).all()
        assert ((lr["lr_q25"] <= lr["lr_median"]) & (lr["lr_median"] <= lr["lr_q75"])).all(), name
    ada = probes[(probes.optimizer == "adagrad")].dropna(subset=["lr_median"])["lr_median"]
    assert ada.is_monotonic_decreasing  # a running sum of squares only grows
    # Without the correction Adam's first updates are larger: 3.2 lr per coordinate at step 1, not lr.
    first = probes[probes.step == 1].set_index("optimizer")["update_norm"]
    assert 2.5 < first["adam_uncorrected"] / first["adam"] < 3.3
    assert set(result.metrics) == {"adagrad_over_rmsprop_last_epoch_loss", "adagrad_lr_decay",
                                   "uncorrected_over_corrected_update"}
    assert summary.loc["adam", "test_accuracy_mean"] > 0.8 and np.isnan(summary.loc["adam_uncorrected",
                                                                                    "test_accuracy_mean"])
