"""MLflow: where runs go, their experiments, tags and status, batched logging.

This module only records: no study reads anything it computes, and the one
trace it leaves in an artifact is a run's id (`run.json`), which stays valid
when the code here changes. So no DVC stage declares it: editing a tag re-runs
nothing.

The store defaults to MLflow's embedded SQLite file in the workspace root,
resolved to an absolute path so stages, tests and DVC's queued experiments
(which run in temp copies under .dvc/tmp/exps and are given the workspace in
`DVC_ROOT`) all write to the same one. `MLFLOW_TRACKING_URI` overrides it (a
server, say).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib.metadata import version
from typing import Any

import mlflow
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from beyond_gd import provenance
from beyond_gd.errors import Interrupted

EXPERIMENT_PREFIX = "beyond-gd"
# The UI opens an experiment of this kind on its runs table (MLflow 3's GenAI
# view, traces, is the default for an experiment without the tag).
KIND = ("mlflow.experimentKind", "custom_model_development")
NOTE = "mlflow.note.content"  # an experiment's description in the UI
COMPUTES = "beyond_gd.computes"  # what the stage computes (the note without the figures it feeds)
# MLflow accepts at most 1000 metrics per log_batch call (its REST API limit).
_BATCH = 1000


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{provenance.workspace_root() / 'mlflow.db'}"


def experiment_name(stage: str) -> str:
    return f"{EXPERIMENT_PREFIX}/{stage}"


def experiment_id(stage: str, computes: str = "") -> str:
    """The stage's experiment, created on first use: kind tag, and `computes` as its description.

    Artifacts go beside the store in the workspace root, not under the cwd,
    for the same reason the store does.
    """
    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(experiment_name(stage))
    if exp is not None:
        if computes and exp.tags.get(COMPUTES) != computes:
            client = MlflowClient()
            client.set_experiment_tag(exp.experiment_id, COMPUTES, computes)
            client.set_experiment_tag(exp.experiment_id, NOTE, computes)
        return exp.experiment_id
    location = None
    if "MLFLOW_TRACKING_URI" not in os.environ:
        location = (provenance.workspace_root() / "mlartifacts" / stage).as_uri()
    created = mlflow.create_experiment(experiment_name(stage), artifact_location=location,
                                       tags={KIND[0]: KIND[1], NOTE: computes, COMPUTES: computes})
    default = mlflow.get_experiment("0") if created != "0" else None  # the store's own, listed in the UI too
    if default is not None and NOTE not in default.tags:
        MlflowClient().set_experiment_tag("0", NOTE, f"Unused: the runs are in the {EXPERIMENT_PREFIX}/<stage> "
                                          "experiments, one per stage of dvc.yaml.")
    return created


def describe_experiments(feeds: Mapping[str, Sequence[str]]) -> None:
    """Each stage's description: what it computes, then the figures it feeds (the report knows them)."""
    client = MlflowClient()
    for stage, figures in feeds.items():
        exp = mlflow.get_experiment_by_name(experiment_name(stage))
        if exp is None:
            continue
        note = exp.tags.get(COMPUTES, "") + "\n\nFeeds the report's figures:\n" + "".join(f"\n- {f}" for f in figures)
        client.set_experiment_tag(exp.experiment_id, NOTE, note.strip())


def run_tags(stage: str, params: Mapping[str, Any], device: str) -> dict[str, str]:
    """Provenance on every run; `device` is where its numbers were computed (cpu for numpy-only studies)."""
    return {
        "stage": stage,
        "dvc_stage": os.environ.get("DVC_STAGE", stage),
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "git_commit": provenance.git_commit(),
        "git_dirty": str(provenance.git_dirty()).lower(),
        "params_hash": provenance.params_hash(params),
        "torch_version": version("torch"),
        "device": device,
        "device_name": provenance.device_name(device),
    }


@contextmanager
def recorded(experiment: str, name: str, params: Mapping[str, Any], tags: Mapping[str, str]
             ) -> Iterator[mlflow.ActiveRun]:
    """One MLflow run that always ends with a status saying how it ended.

    FINISHED; KILLED with the signal named (tag `killed_by`) when the process
    was interrupted (SIGTERM from `kill` or a scheduler's preemption, SIGINT);
    FAILED with the error's first line otherwise. Without this, a killed
    process leaves its run RUNNING forever.
    """
    mlflow.set_tracking_uri(tracking_uri())
    run = mlflow.start_run(experiment_id=experiment, run_name=name, tags=dict(tags))
    try:
        mlflow.log_params({k: _param_value(v) for k, v in flatten(params).items()})
        yield run
    except (Interrupted, KeyboardInterrupt) as exc:
        mlflow.set_tag("killed_by", exc.signal if isinstance(exc, Interrupted) else "SIGINT")
        mlflow.end_run("KILLED")
        raise
    except BaseException as exc:
        mlflow.set_tag("error", (str(exc).splitlines() or [type(exc).__name__])[0][:500])
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def run_record(run: mlflow.ActiveRun, **extra: Any) -> dict[str, Any]:
    """run.json: which MLflow run made a stage's outputs, in which experiment (the report names and links it
    under each figure: the UI's address of a run holds the experiment's id)."""
    exp = mlflow.get_experiment(run.info.experiment_id)
    return {"mlflow_run_id": run.info.run_id, "mlflow_experiment": exp.name,
            "mlflow_experiment_id": run.info.experiment_id, **extra}


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def numbers(data: Mapping[str, Any]) -> dict[str, float]:
    """The finite numeric leaves of nested data, as MLflow metric names and values."""
    return {k: float(v) for k, v in flatten(data).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and abs(float(v)) != float("inf")
            and v == v}


def _param_value(value: Any) -> str:
    # MLflow params are strings of at most 6000 chars; lists keep their YAML look.
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def log_metrics(run_id: str, values: Mapping[str, float]) -> None:
    """Scalars at step 0, in batched calls."""
    now = int(time.time() * 1000)
    _log(run_id, [Metric(key=_key(k), value=float(v), timestamp=now, step=0) for k, v in values.items()])


def log_series(run_id: str, series: Mapping[str, Sequence[float]], steps: Sequence[int]) -> None:
    """Whole metric curves (name -> values at `steps`), in batched calls; a value not measured (NaN: an
    epoch end not evaluated) is no point of the curve."""
    now = int(time.time() * 1000)
    _log(run_id, [Metric(key=_key(name), value=float(v), timestamp=now, step=int(s))
                  for name, values in series.items() for s, v in zip(steps, values, strict=True)
                  if not math.isnan(float(v))])


def _log(run_id: str, metrics: list[Metric]) -> None:
    client = MlflowClient()
    for start in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start : start + _BATCH], synchronous=True)


def _key(name: str) -> str:
    # MLflow metric names allow letters, digits and _-./ and spaces.
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in name)
