"""MLflow: where runs go, what every run is tagged with, batched logging.

The store defaults to MLflow's embedded SQLite file in the workspace root,
resolved to an absolute path so stages, tests and DVC's queued experiments
(which run in temp copies under .dvc/tmp/exps, see ECOSYSTEM.md) all write
to the same one. `MLFLOW_TRACKING_URI` overrides it (a server, say).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from importlib.metadata import version
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

if TYPE_CHECKING:  # torch only for types: the report stage logs runs without importing it (seconds)
    import torch

EXPERIMENT_PREFIX = "beyond-gd"
# MLflow accepts at most 1000 metrics per log_batch call (its REST API limit).
_BATCH = 1000


def workspace_root() -> Path:
    """The DVC workspace: `DVC_ROOT` when DVC runs the stage, else the cwd."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{workspace_root() / 'mlflow.db'}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return cpu_name()
    return platform.processor() or device.type


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=workspace_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def params_hash(params: Mapping[str, Any]) -> str:
    """A short, order-independent hash of the params a stage read."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def run_tags(stage: str, params: Mapping[str, Any], device: torch.device | None) -> dict[str, str]:
    commit = _git("rev-parse", "HEAD")
    tags = {
        "stage": stage,
        "dvc_stage": os.environ.get("DVC_STAGE", stage),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "git_commit": commit,
        "git_dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
        "params_hash": params_hash(params),
        "torch_version": version("torch"),
    }
    if device is not None:
        tags["device"] = device.type
        tags["device_name"] = device_name(device)
    return tags


def experiment_id(stage: str) -> str:
    """The stage's experiment (`beyond-gd/<stage>`), created on first use.

    Artifacts go beside the store in the workspace root, not under the cwd,
    for the same reason the store does.
    """
    name = f"{EXPERIMENT_PREFIX}/{stage}"
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        location = (workspace_root() / "mlartifacts" / stage).as_uri()
    return mlflow.create_experiment(name, artifact_location=location)


@contextmanager
def stage_run(
    stage: str, params: Mapping[str, Any], device: torch.device | None = None, **tags: str
) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run for one stage execution, with params and provenance tags."""
    mlflow.set_tracking_uri(tracking_uri())
    exp = experiment_id(stage)
    all_tags = {**run_tags(stage, params, device), **tags}
    with mlflow.start_run(experiment_id=exp, run_name=stage, tags=all_tags) as run:
        mlflow.log_params({k: _param_value(v) for k, v in flatten(params).items()})
        yield run


def _param_value(value: Any) -> str:
    # MLflow params are strings of at most 6000 chars; lists keep their YAML look.
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def log_series(run_id: str, series: Mapping[str, Sequence[float]], steps: Sequence[int]) -> None:
    """Log whole metric curves (name -> values at `steps`) in batched calls."""
    client = MlflowClient()
    now = int(time.time() * 1000)
    metrics = [
        Metric(key=name, value=float(v), timestamp=now, step=int(s))
        for name, values in series.items()
        for s, v in zip(steps, values, strict=True)
    ]
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH], synchronous=True)


def write_metrics(path: Path, metrics: Mapping[str, Any]) -> None:
    """A stage's metrics.json, naming the active MLflow run that made it: the report links each
    figure to its runs by this id, and `dvc exp show` lists it beside the numbers."""
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("write_metrics: call it inside the stage's MLflow run (stage_run)")
    record = {"mlflow_run_id": run.info.run_id, "mlflow_experiment": f"{EXPERIMENT_PREFIX}/{run.data.tags['stage']}"}
    path.write_text(json.dumps({**metrics, **record}, indent=2) + "\n")
