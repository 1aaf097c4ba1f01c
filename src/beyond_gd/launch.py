"""Run training cells in parallel through a Hydra launcher plugin, and read their artifacts back.

Hydra's launchers act only in a `--multirun` of a `@hydra.main` app
(ECOSYSTEM.md), and `dvc repro` composes nothing, so a stage hands its cells
to `launch`, which
1. writes a Hydra config folder into the sweep folder: the app's primary config
   `conf/cell_app.yaml` (what the cells share: data, device, threads, MLflow
   parent run, and the launcher with its settings) and one option of the group
   `cell` per cell, `conf/cell/<id>.yaml`, holding that cell's whole `CellConfig`;
2. runs this module as a multirun over `cell=<id>,<id>,...`; the launcher
   named by `launcher.engine` runs the jobs, each in `<sweep>/<id>/`;
3. reads each job's artifact back: `result.json`, `steps.csv`, `epochs.csv`
   (beside Hydra's own record of the job's config, `.hydra/config.yaml`).

Engines (`launcher` section of params.yaml, conf/launcher/):
- `joblib`: processes on this machine (hydra-joblib-launcher); `settings.n_jobs`
  at a time, `threads_per_job` torch threads each;
- `submitit_local`: submitit's local executor, one subprocess per cell, all at
  once (no parallelism cap): for tests of the submitit path;
- `submitit_slurm`: one SLURM array job per launch (hydra-submitit-launcher);
- `basic`: Hydra's sequential launcher, in one process (debugging).
Every key of `launcher.settings` becomes `hydra.launcher.<key>`: see the
plugin's own options (joblib: n_jobs, ...; submitit: timeout_min,
cpus_per_task, gpus_per_node, mem_gb, partition, account, array_parallelism,
setup, ...).

On a SLURM cluster (the repository, the data, the sweep folder and the MLflow
store on a filesystem the nodes share; use an MLflow server for
`MLFLOW_TRACKING_URI` if SQLite on that filesystem is not safe there):

    dvc exp run -S launcher=submitit_slurm \\
        -S launcher.settings.partition=gpu -S launcher.settings.gpus_per_node=1

`runtime.device: auto` then resolves on each node, and each cell's MLflow run
is tagged with the device it ran on. To re-run one cell of a finished stage by
hand, from its recorded config:

    python -m beyond_gd.launch --config-dir data/optimizer_grid/cells/conf \\
        --config-name cell_app cell=adam-lr0.001-s0 hydra.run.dir=/tmp/one-cell
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import mlflow
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from beyond_gd.config import as_dict, required
from beyond_gd.data.mnist import load_tensors
from beyond_gd.errors import BeyondGDError
from beyond_gd.runtime import resolve_device
from beyond_gd.studies.cells import CellConfig, CellResult, EpochRow, run_cell, smooth
from beyond_gd.tracking import experiment_id, flatten, log_series, run_tags, tracking_uri

log = logging.getLogger(__name__)
ENGINES = ("basic", "joblib", "submitit_local", "submitit_slurm")
APP = "cell_app"


class LaunchError(BeyondGDError):
    """The launcher failed, or a cell left no artifact."""


@dataclass
class LauncherConfig:
    # A Hydra launcher (hydra/launcher=<engine>); see the module docstring.
    engine: str = required(choices=ENGINES)
    # Torch threads in each job: on a loaded 2-core machine one thread per
    # process ran ~10x faster than two (measured here, see conf/launcher/).
    threads_per_job: int = required(gt=0)
    # hydra.launcher.<key>: <value>, the plugin's own options.
    settings: dict[str, Any] = required()


@dataclass
class JobContext:
    """What every cell of one launch shares (the `job` node of cell_app.yaml)."""

    stage: str
    data_root: str  # absolute: jobs may run elsewhere (SLURM)
    device: str  # runtime.device, resolved in each job
    threads: int
    tracking_uri: str
    experiment_id: str
    parent_run_id: str  # the stage's run: each cell's run is nested under it


@dataclass
class CellOutput:
    cell: CellConfig
    result: dict[str, Any]  # result.json
    steps: pd.DataFrame  # step, loss
    epochs: pd.DataFrame  # the EpochRow fields


# --------------------------------------------------------------------------
# The stage side
# --------------------------------------------------------------------------
def launch(cells: list[CellConfig], sweep_dir: Path, launcher: LauncherConfig, context: JobContext) -> list[CellOutput]:
    """Run `cells` (in this order of dispatch) through the launcher; their outputs, in the same order."""
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise LaunchError(f"cell ids must be unique, got {ids}")
    sweep_dir = sweep_dir.resolve()
    conf = sweep_dir / "conf"
    write_launch_config(cells, conf, launcher, context, sweep_dir)
    cmd = [sys.executable, "-m", "beyond_gd.launch", "--multirun", "--config-dir", str(conf),
           "--config-name", APP, "cell=" + ",".join(ids)]
    done = subprocess.run(cmd, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, check=False)
    if done.returncode != 0:
        raise LaunchError(f"the {launcher.engine} launcher failed (exit {done.returncode}); "
                          f"each cell's log is in {sweep_dir}/<cell id>/")
    return [read_cell(sweep_dir / c.id, c) for c in cells]


def run_stage_cells(stage: str, cells: list[CellConfig], out: Path, data_root: str, device: str,
                    launcher: LauncherConfig, parent_run_id: str) -> tuple[list[CellOutput], float]:
    """A study stage's launch: clear `out`'s cells/ and curves/ (no stale cell survives a smaller
    grid), run `cells` into out/cells nested under the stage's MLflow run; their outputs and the wall seconds."""
    for folder in ("cells", "curves"):
        shutil.rmtree(out / folder, ignore_errors=True)
    start = time.perf_counter()
    context = JobContext(stage, str(Path(data_root).resolve()), device, launcher.threads_per_job,
                         tracking_uri(), experiment_id(stage), parent_run_id)
    outputs = launch(cells, out / "cells", launcher, context)
    return outputs, time.perf_counter() - start


def write_launch_config(cells: list[CellConfig], conf: Path, launcher: LauncherConfig, context: JobContext,
                        sweep_dir: Path) -> None:
    (conf / "cell").mkdir(parents=True, exist_ok=True)
    for cell in cells:
        OmegaConf.save(OmegaConf.structured(cell), conf / "cell" / f"{cell.id}.yaml")
    app = {
        "defaults": [{"cell": "???"}, {"override hydra/launcher": launcher.engine}, "_self_"],
        "job": dataclasses.asdict(context),
        "hydra": {
            "launcher": dict(launcher.settings),
            # Jobs write into their own folder; the process's cwd stays put.
            "job": {"chdir": False},
            "sweep": {"dir": str(sweep_dir), "subdir": "${hydra:runtime.choices.cell}"},
            "run": {"dir": str(sweep_dir / "${hydra:runtime.choices.cell}")},
        },
    }
    OmegaConf.save(OmegaConf.create(app), conf / f"{APP}.yaml")


def read_cell(folder: Path, cell: CellConfig) -> CellOutput:
    try:
        result = json.loads((folder / "result.json").read_text())
        steps = pd.read_csv(folder / "steps.csv")
        epochs = pd.read_csv(folder / "epochs.csv")
    except FileNotFoundError as exc:
        raise LaunchError(f"cell {cell.id}: no artifact ({exc.filename}); see its log in {folder}") from None
    return CellOutput(cell, result, steps, epochs)


# --------------------------------------------------------------------------
# The job side: one cell in a launcher's worker
# --------------------------------------------------------------------------
@hydra.main(config_path=None, config_name=APP, version_base="1.3")
def cell_job(cfg: DictConfig) -> None:
    cell: CellConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CellConfig), cfg.cell))  # type: ignore[assignment]
    context = JobContext(**OmegaConf.to_container(cfg.job, resolve=True))  # type: ignore[arg-type]
    record_cell(cell, context, Path(HydraConfig.get().runtime.output_dir))


def record_cell(cell: CellConfig, context: JobContext, out: Path) -> dict[str, Any]:
    """Run one cell as an MLflow run nested under the stage's, and write its artifact to `out`."""
    torch.set_num_threads(context.threads)
    device = resolve_device(context.device)
    x_train, y_train = _mnist(context.data_root, True, str(device))
    x_test, y_test = _mnist(context.data_root, False, str(device))
    mlflow.set_tracking_uri(context.tracking_uri)
    tags = {**run_tags(context.stage, {"cell": as_dict(cell)}, device), "cell": cell.id,
            # Runs started in other processes are nested only through this tag (ECOSYSTEM.md).
            "mlflow.parentRunId": context.parent_run_id, **{k: str(v) for k, v in cell.labels.items()}}
    with mlflow.start_run(experiment_id=context.experiment_id, run_name=cell.id, tags=tags) as run:
        mlflow.log_params({k: json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                           for k, v in flatten(as_dict(cell)).items()})
        started = time.time()
        res = run_cell(cell, x_train, y_train, x_test, y_test, device)
        finished = time.time()
        result = summary(cell, res) | {
            "pid": os.getpid(), "host": socket.gethostname(), "device": tags["device"],
            "device_name": tags["device_name"], "started_at": started, "finished_at": finished,
            "wall_seconds": finished - started, "mlflow_run_id": run.info.run_id}
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"step": range(1, res.steps + 1), "loss": res.step_loss}).to_csv(out / "steps.csv", index=False)
        pd.DataFrame([dataclasses.asdict(r) for r in res.epochs],
                     columns=[f.name for f in dataclasses.fields(EpochRow)]).to_csv(out / "epochs.csv", index=False)
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")

        log_series(run.info.run_id, {"train_loss_step": res.step_loss}, range(1, res.steps + 1))
        log_series(run.info.run_id, {name: [getattr(r, name) for r in res.epochs]
                                     for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                                  "epoch_last_loss") if cell.evaluate or name == "epoch_last_loss"},
                   [r.step for r in res.epochs])
        mlflow.log_metrics({k: float(v) for k, v in result.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool) and k in _METRICS})
        mlflow.set_tags({"diverged": str(res.diverged).lower(), "stopped_by": res.stopped_by})
    # Hydra's job logging sends this to the console and to the cell's own log file.
    log.info(f"{cell.id}: {res.stopped_by} after {res.steps} steps in {res.train_seconds:.1f} s; "
             f"steps to {cell.target_loss:g} ({cell.cost}): {res.steps_to_target or 'not reached'}")
    return result


_METRICS = ("steps", "train_seconds", "steps_to_target", "steps_to_target_smoothed", "steps_to_target_epoch_last",
            "seconds_to_target", "final_loss", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


def summary(cell: CellConfig, res: CellResult) -> dict[str, Any]:
    """The cell's scalars, JSON-safe (a diverged run's inf final loss is null)."""
    last = res.epochs[-1] if res.epochs else None
    evaluated = cell.evaluate and last is not None and not res.diverged
    return {
        "id": cell.id, **cell.labels,
        "steps": res.steps, "steps_per_epoch": res.steps_per_epoch, "train_seconds": res.train_seconds,
        "diverged": res.diverged, "stopped_by": res.stopped_by,
        "steps_to_target": res.steps_to_target, "steps_to_target_smoothed": res.steps_to_target_smoothed,
        "steps_to_target_epoch_last": res.steps_to_target_epoch_last, "seconds_to_target": res.seconds_to_target,
        "final_loss": res.final_loss if math.isfinite(res.final_loss) else None,
        **{name: getattr(last, name) if evaluated else None
           for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")},
    }


# --------------------------------------------------------------------------
# Tidy tables over many cells (long format: one row per observation)
# --------------------------------------------------------------------------
def steps_table(outputs: list[CellOutput], labels: list[str], stride: int, window: int) -> pd.DataFrame:
    """labels..., step, loss, smoothed: every `stride`-th step of each cell (the curves' full
    resolution stays in each cell's steps.csv); `smoothed` is the trailing mean over `window` steps."""
    frames = []
    for o in outputs:
        loss = o.steps["loss"].to_numpy()
        keep = o.steps["step"].to_numpy() % stride == 0
        frames.append(pd.DataFrame({**{k: o.cell.labels[k] for k in labels}, "step": o.steps["step"][keep],
                                    "loss": loss[keep], "smoothed": smooth(loss, window)[keep]}))
    return pd.concat(frames, ignore_index=True)


def epochs_table(outputs: list[CellOutput], labels: list[str]) -> pd.DataFrame:
    """labels..., then the EpochRow fields, one row per cell and epoch."""
    return pd.concat([o.epochs.assign(**{k: o.cell.labels[k] for k in labels})[
        labels + [f.name for f in dataclasses.fields(EpochRow)]] for o in outputs], ignore_index=True)


def cells_table(outputs: list[CellOutput]) -> pd.DataFrame:
    """One row per cell: its result.json."""
    return pd.DataFrame([o.result for o in outputs])


@functools.lru_cache(maxsize=4)
def _mnist(root: str, train: bool, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    # A joblib worker runs many cells: it reads each split once.
    return load_tensors(root, train=train, device=torch.device(device))


if __name__ == "__main__":
    # The launcher pickles the task function for its workers: by reference to
    # this module under its import name, not as `__main__` (pickled by value).
    from beyond_gd import launch as _self

    _self.cell_job()
