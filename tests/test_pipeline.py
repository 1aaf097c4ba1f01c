"""The real pipeline, as a user drives it, on the smoke profile and real MNIST."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mlflow
import pytest
import yaml

from conftest import run

pytestmark = pytest.mark.slow


def dvc_status(repo: Path) -> dict:
    done = run(["dvc", "status", "--json"], repo)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_smoke_pipeline_end_to_end(repo_copy: Path, tmp_path: Path) -> None:
    # `dvc exp run -S` composes conf/ through DVC's Hydra integration, then runs every stage.
    done = run(["dvc", "exp", "run", "-S", "profile=smoke"], repo_copy)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    params = yaml.safe_load((repo_copy / "params.yaml").read_text())
    assert params["train"]["max_steps"] == 300

    raw = repo_copy / "data" / "raw" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    metrics = json.loads((repo_copy / "data" / "baseline" / "metrics.json").read_text())
    assert metrics["steps"] == 300 and not metrics["diverged"]
    # 300 SGD steps at lr 0.01 already beat chance (0.1) by far.
    assert metrics["test_accuracy"] > 0.5

    # Nothing changed: nothing runs.
    again = run(["dvc", "repro"], repo_copy)
    assert again.returncode == 0, again.stderr
    assert "Running stage" not in again.stdout
    assert dvc_status(repo_copy) == {}

    # DVC reads the declared metrics and plots.
    shown = run(["dvc", "metrics", "show", "--json"], repo_copy)
    assert "test_accuracy" in shown.stdout
    plots = run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], repo_copy)
    assert plots.returncode == 0, plots.stderr
    assert (tmp_path / "plots" / "index.html").stat().st_size > 1000

    # Editing a train.* key invalidates training only, not the data.
    params["train"]["seed"] = 1
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert set(dvc_status(repo_copy)) == {"train_baseline"}

    # Every stage run is an MLflow run in the store the tests pointed at, tagged.
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    for stage in ("fetch_mnist", "train_baseline"):
        runs = mlflow.search_runs(experiment_names=[f"beyond-gd/{stage}"], output_format="list")
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        tags = runs[0].data.tags
        assert tags["stage"] == tags["dvc_stage"] == stage
        assert tags["dvc_exp_name"] and len(tags["git_commit"]) == 40
    train_run = mlflow.search_runs(experiment_names=["beyond-gd/train_baseline"], output_format="list")[0]
    assert train_run.data.tags["device"] == "cpu" and train_run.data.params["train.max_steps"] == "300"
    history = mlflow.MlflowClient().get_metric_history(train_run.info.run_id, "train_loss_step")
    assert sorted(m.step for m in history) == list(range(1, 301))
