"""The one stage runner: argv and params, atomic outputs, one-line errors, MLflow runs that end as they did."""

from __future__ import annotations

import copy
import json
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
import yaml
from mlflow.tracking import MlflowClient

from beyond_gd import tracking
from beyond_gd.costs import PARTS
from beyond_gd.pipeline import declared
from beyond_gd.stage import UNDER_DVC, Stage, execute, main, undeclared, write
from beyond_gd.study import Inputs, Result
from beyond_gd.studies import random_walk
from conftest import composed, write_params

STAGES = declared()
def small_walk(tmp_path: Path, **edits: Any) -> Path:
    params = copy.deepcopy(composed())
    params["random_walk"].update({"repeats": 200, "measure_steps": 300, "burn_in": 100, **edits})
    return write_params(tmp_path / "params.yaml", params)


def runs(stage: str) -> list[mlflow.entities.Run]:
    client = MlflowClient(tracking_uri=tracking.tracking_uri())
    exp = client.get_experiment_by_name(f"beyond-gd/{stage}")
    return client.search_runs([exp.experiment_id]) if exp else []


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_bad_params_are_one_line_exit_2_and_no_run(stage: str, tmp_path: Path) -> None:
    """Every stage, through its real command line: a key its section does not have stops it before any
    run (each schema's own rules are tested value by value in test_config)."""
    params = copy.deepcopy(composed())
    params[stage]["no_such_key"] = 1
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", f"beyond_gd.stages.{stage}", "--params",
                           str(write_params(tmp_path / "params.yaml", params)), "--out", str(out)],
                          capture_output=True, text=True, env=os.environ)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {stage}.no_such_key: unknown key (allowed: "), done.stderr
    assert not out.exists()
    assert runs(stage) == []  # validation comes before any MLflow run


def test_under_dvc_the_error_says_that_dvc_checkout_restores_the_outputs(tmp_path: Path) -> None:
    """DVC removes a stage's outputs before running it (DVC_STAGE is set then): the one line says how to get
    them back."""
    params = copy.deepcopy(composed())
    params["baseline"]["batch_size"] = -1
    done = subprocess.run([sys.executable, "-m", "beyond_gd.stages.baseline", "--params",
                           str(write_params(tmp_path / "params.yaml", params)), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env={**os.environ, "DVC_STAGE": "baseline"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: baseline.batch_size: must be > 0, got -1 (DVC removed this stage's outputs before running it: "
        "`dvc checkout` restores them)"], done.stderr


def test_under_dvc_an_unexpected_error_keeps_its_traceback_and_gets_the_same_note(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Stage("random_walk", random_walk.Config, failing, "A walk that breaks.",
                   outputs=STAGES["random_walk"].outputs)
    monkeypatch.setenv("DVC_STAGE", "random_walk")
    with pytest.raises(RuntimeError, match="the study broke") as err:
        main(broken, ["--params", str(small_walk(tmp_path)), "--out", str(tmp_path / "out")])
    assert err.value.__notes__ == [UNDER_DVC]


def test_outputs_tagged_run_and_same_bytes_on_the_same_seed(tmp_path: Path) -> None:
    params = small_walk(tmp_path)
    folders = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        execute(STAGES["random_walk"], ["--params", str(params), "--out", str(out)])
        folders.append(out)
        assert sorted(p.name for p in out.iterdir()) == sorted([*STAGES["random_walk"].outputs, "run.json"])
        assert not list(tmp_path.glob(".out*.tmp-*"))  # the work folder is gone
    for name in STAGES["random_walk"].outputs:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name

    record = json.loads((folders[0] / "run.json").read_text())
    run = MlflowClient().get_run(record["mlflow_run_id"])
    assert record["mlflow_experiment"] == "beyond-gd/random_walk" and run.info.status == "FINISHED"
    # Where its time went (beyond_gd.costs): each part in order, within the MLflow run's span but its start.
    timing = record["timing"]
    assert list(timing["seconds"]) == list(PARTS) and all(v >= 0 for v in timing["seconds"].values())
    assert timing["started_at"] + sum(timing["seconds"].values()) == pytest.approx(timing["ended_at"])
    assert run.info.start_time / 1000 - 1 <= timing["ended_at"] <= run.info.end_time / 1000 + 1
    assert timing["cpu_seconds"]["self"] > 0
    assert run.data.tags["device"] == "cpu" and run.data.tags["dvc_stage"] == "random_walk"
    assert run.data.params["random_walk.repeats"] == "200"
    metrics = json.loads((folders[0] / "metrics.json").read_text())
    assert metrics == {"std_max_rel_error": pytest.approx(run.data.metrics["std_max_rel_error"])}
    exp = MlflowClient().get_experiment_by_name("beyond-gd/random_walk")
    # The UI opens the experiment on its runs table, and says what the stage computes.
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert exp.tags["mlflow.note.content"] == STAGES["random_walk"].computes


def failing(cfg: random_walk.Config, inputs: Inputs) -> Result:
    (inputs.workdir / "walks.csv").write_text("half a table")
    raise RuntimeError("the study broke")


def test_json_documents_are_strict_json(tmp_path: Path) -> None:
    """numpy scalars become numbers; NaN, inf and pandas' <NA> become null (strict JSON has none of them)."""
    runs = pd.DataFrame({"reached": pd.array([3, None], dtype="Int64"), "ratio": [np.float32(0.5), np.inf]})
    summary = {"runs": [{k: getattr(r, k) for k in runs.columns} for r in runs.itertuples()],
               "pair": (np.int64(2), np.bool_(True)), 7: -np.inf}
    write(Result(metrics={"loss": np.float64(np.nan)}, summary=summary), tmp_path)

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not strict JSON")

    read = {name: json.loads((tmp_path / name).read_text(), parse_constant=refuse)
            for name in ("metrics.json", "summary.json")}
    assert read["metrics.json"] == {"loss": None}
    assert read["summary.json"] == {"runs": [{"reached": 3, "ratio": 0.5}, {"reached": None, "ratio": None}],
                                    "pair": [2, True], "7": None}


def test_a_failing_study_leaves_the_old_outputs_whole_and_a_failed_run(tmp_path: Path) -> None:
    params, out = small_walk(tmp_path), tmp_path / "out"
    execute(STAGES["random_walk"], ["--params", str(params), "--out", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = Stage("random_walk", random_walk.Config, failing, "A walk that breaks.",
                   outputs=STAGES["random_walk"].outputs)
    with pytest.raises(RuntimeError, match="the study broke"):
        execute(broken, ["--params", str(params), "--out", str(out)])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".out*.tmp-*"))
    last = max(runs("random_walk"), key=lambda r: r.info.start_time)
    assert last.info.status == "FAILED" and last.data.tags["error"] == "the study broke"


def test_a_study_that_writes_other_files_than_declared_is_refused(tmp_path: Path) -> None:
    def more(cfg: random_walk.Config, inputs: Inputs) -> Result:
        result = random_walk.run(cfg, inputs)
        result.tables["extra.csv"] = pd.DataFrame({"a": [1]})
        return result

    stage = Stage("random_walk", random_walk.Config, more, "x", outputs=STAGES["random_walk"].outputs)
    with pytest.raises(RuntimeError, match="extra.csv"):
        execute(stage, ["--params", str(small_walk(tmp_path)), "--out", str(tmp_path / "out")])


def wait_for_running(stage: str, timeout: float = 120) -> mlflow.entities.Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in runs(stage) if r.info.status == "RUNNING"]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no RUNNING {stage} run within {timeout} s")


def test_a_stage_killed_with_sigterm_ends_its_run_killed_and_leaves_nothing(tmp_path: Path) -> None:
    # Repeats enough for a minute of work: the signal lands mid-study.
    params, out = small_walk(tmp_path, repeats=200_000, measure_steps=3000), tmp_path / "out"
    runs("random_walk")  # the store's tables first: two processes creating them at once collide
    proc = subprocess.Popen([sys.executable, "-m", "beyond_gd.stages.random_walk", "--params", str(params),
                             "--out", str(out)], stderr=subprocess.PIPE, text=True)
    run = wait_for_running("random_walk")
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err
    ended = MlflowClient(tracking_uri=tracking.tracking_uri()).get_run(run.info.run_id)
    assert ended.info.status == "KILLED" and ended.data.tags["killed_by"] == "SIGTERM"
    assert not out.exists() or list(out.iterdir()) == []
    assert not list(tmp_path.glob(".out*.tmp-*"))


def test_a_stale_dvc_yaml_is_named_when_dvc_runs_the_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A list of optimizer entries edited after `make pipeline`: DVC would not re-run the stage when those
    entries change, so the runner says which are undeclared (a single name is templated, never stale)."""
    from beyond_gd.config import load

    params = composed()
    cfg = load(params, STAGES["update_rules"].config)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"update_rules": {"params": [
        "update_rules", "optimizers.sgd", "optimizers.${update_rules.adam_bias.optimizer}"]}}}))
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert undeclared("update_rules", cfg, params) == []  # not run by DVC
    monkeypatch.setenv("DVC_STAGE", "update_rules")
    missing = undeclared("update_rules", cfg, params)
    assert "optimizers.sgd_momentum" in missing and "optimizers.sgd" not in missing and "optimizers.adam" not in missing
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"update_rules": {"params": [
        "update_rules", "optimizers"]}}}))
    assert undeclared("update_rules", cfg, params) == []  # the whole section covers every entry
