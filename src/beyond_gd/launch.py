"""The stage side of training cells: hand them to a Hydra launcher plugin, or run them here, and read their
artifacts back.

Hydra's launchers act only in a `--multirun` of a `@hydra.main` app, and
`dvc repro` composes nothing, so a study hands its cells to `inputs.run_cells`
(made here by `cell_launcher`), which calls `launch`, which
1. writes a Hydra config folder into the sweep folder: the app's primary config
   `conf/cell_app.yaml` (what the cells share: data, device, threads, MLflow
   parent run, and the launcher with its settings) and one option of the group
   `cell` per cell, `conf/cell/<id>.yaml`, holding that cell's whole `CellConfig`;
2. runs the job side, `beyond_gd.cell_job`, as a multirun over
   `cell=<id>,<id>,...`; the launcher named by `launcher.engine` runs the jobs,
   each in `<sweep>/<id>/`;
3. reads each job's artifact back (`read_cell`): `result.json`, `steps.csv`,
   `epochs.csv`, `probes.csv` for a cell that probes its optimizer (beside
   the job's log; its config is `conf/cell/<id>.yaml` of the sweep folder).

The launcher runs in its own process session: when the stage is interrupted
(SIGTERM, Ctrl-C), every job gets SIGTERM and its cell's MLflow run ends KILLED.

Finished cells are kept: a cell whose folder in the last run's output (DVC
keeps it, `persist: true`) has the same key (`cell_job.cell_key`: its config,
the code the job runs, the torch version, the device and the threads per job;
not this module) is copied instead of run. Adding a learning rate or a seed to
a grid runs only its cells; the outputs are those of a from-scratch run of the
same grid, measured seconds and where and when each cell ran aside (tested).

`run_cells_here` runs the cells in this process instead, without a launcher
or MLflow, and reads back the same artifacts (tests, debugging; `cells_here`
binds it as `inputs.run_cells`).

The cells to run are dispatched longest first (`planned_work`), so that the
last worker does not train a long cell alone while the others sit idle.

Engines (`launcher` section of params.yaml, conf/launcher/):
- `joblib`: processes on this machine (hydra-joblib-launcher); `settings.n_jobs`
  at a time (null: as many as the cores this process may use hold jobs of
  `threads_per_job` torch threads, `launch_settings`);
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
is tagged with the device it ran on. To re-run one cell by hand, see
`beyond_gd.cell_job`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from omegaconf import OmegaConf

from beyond_gd.cell_job import (APP, EPOCHS, MODULE, PROBES, RESULT, STEPS, JobContext, cell_code, cell_key,
                                probed, run_and_write)
from beyond_gd.cells import PROBE_COLUMNS, CellConfig, CellOutput
from beyond_gd.config import as_dict, required
from beyond_gd.costs import TRAIN_PASSES
from beyond_gd.data.mnist import MNIST_TEST_IMAGES, MNIST_TRAIN_IMAGES
from beyond_gd.errors import BeyondGDError
from beyond_gd.provenance import usable_cores
from beyond_gd.runtime import resolve_device
from beyond_gd.stage import RunContext
from beyond_gd.training import steps_per_epoch

ENGINES = ("basic", "joblib", "submitit_local", "submitit_slurm")
# After SIGTERM, how long the jobs get to end their MLflow runs before SIGKILL.
_GRACE_S = 30


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


def cell_launcher(cfg: Any, sweep_dir: Path, context: RunContext,
                  reuse: Path | None = None) -> Callable[[list[CellConfig]], list[CellOutput]]:
    """`inputs.run_cells` for a study whose config has a `launcher` section: its cells go to that engine,
    into `sweep_dir`, each logged as a run nested under the stage's; finished ones in `reuse` are kept."""
    launcher: LauncherConfig = cfg.launcher
    job = JobContext(dataclasses.asdict(context), launcher.threads_per_job)
    return functools.partial(launch, sweep_dir=sweep_dir, launcher=launcher, job=job, reuse=reuse)


def launch(cells: list[CellConfig], sweep_dir: Path, launcher: LauncherConfig, job: JobContext,
           reuse: Path | None = None) -> list[CellOutput]:
    """Run `cells` through the launcher, longest planned work first (ties in the order given), but for
    those `reuse` holds finished with the same key; their outputs, in the order given."""
    sweep_dir = sweep_dir.resolve()
    job = dataclasses.replace(job, code=job.code or cell_code())  # once per launch, not once per cell
    kept = keep_finished(cells, sweep_dir, reuse, job.threads, resolve_device(job.run["device"]).type, job.code)
    conf = sweep_dir / "conf"
    write_launch_config(cells, conf, launcher, job, sweep_dir)
    todo = [c.id for c in sorted(cells, key=planned_work, reverse=True) if c.id not in kept]
    if todo:
        _run_launcher(todo, conf, launcher, sweep_dir)
    return [read_cell(sweep_dir / c.id, c, reused=c.id in kept) for c in cells]


def planned_work(cell: CellConfig) -> int:
    """A cell's planned work in forward passes of one example: its step budget's training passes and its
    evaluations' (over its training images and the test set).
    Cells that stop at a target may do less; the order of dispatch needs only the budgets' order."""
    train = cell.train_images or MNIST_TRAIN_IMAGES
    work = cell.max_steps * cell.batch_size * TRAIN_PASSES
    if cell.eval_every is not None:
        # Every `eval_every`-th epoch end and the budget's end (the last, possibly partial, epoch's).
        epochs = math.ceil(cell.max_steps / steps_per_epoch(train, cell.batch_size))
        evaluations = epochs // cell.eval_every + (epochs % cell.eval_every != 0)
        work += evaluations * (train + (MNIST_TEST_IMAGES if cell.eval_test else 0))
    return work


def launch_settings(launcher: LauncherConfig) -> dict[str, Any]:
    """`hydra.launcher.<key>` for the launch: the configured settings, joblib's `n_jobs: null` resolved to
    as many jobs as the usable cores hold at `threads_per_job` each (at least one)."""
    settings = dict(launcher.settings)
    if launcher.engine == "joblib" and settings.get("n_jobs") is None:
        settings["n_jobs"] = max(1, usable_cores() // launcher.threads_per_job)
    return settings


def cells_here(data_root: Path, sweep_dir: Path, device: str = "cpu",
               reuse: Path | None = None) -> Callable[[list[CellConfig]], list[CellOutput]]:
    """`inputs.run_cells` that runs every cell in this process (`run_cells_here`)."""
    return functools.partial(run_cells_here, data_root=data_root, sweep_dir=sweep_dir, device=device, reuse=reuse)


def run_cells_here(cells: list[CellConfig], data_root: Path, sweep_dir: Path, device: str = "cpu",
                   reuse: Path | None = None) -> list[CellOutput]:
    """Run `cells` one after another in this process, at its torch threads, without a launcher or MLflow
    (tests, debugging), but for those `reuse` holds finished with the same key: the same artifacts as the
    launcher's jobs write (`cell_job.run_and_write`, without MLflow run ids), read back the same way."""
    sweep_dir = sweep_dir.resolve()
    resolved, threads, code = resolve_device(device), torch.get_num_threads(), cell_code()
    kept = keep_finished(cells, sweep_dir, reuse, threads, resolved.type, code)
    for cell in cells:
        if cell.id not in kept:
            run_and_write(cell, Path(data_root).resolve(), resolved, threads, sweep_dir / cell.id, code,
                          mlflow_run_id=None, parent_run_id=None)
    return [read_cell(sweep_dir / c.id, c, reused=c.id in kept) for c in cells]


def keep_finished(cells: list[CellConfig], sweep_dir: Path, reuse: Path | None, threads: int,
                  device: str, code: str) -> set[str]:
    """The ids of the cells `reuse` holds finished with the key they would have now (`code`: `cell_code`),
    copied into `sweep_dir`; a list of cells with an id twice is an error."""
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise LaunchError(f"cell ids must be unique, got {ids}")
    if reuse is None:
        return set()
    kept = {c.id for c in cells if _finished(reuse / c.id, cell_key(c, threads, device, code))}
    for cell_id in kept:
        shutil.copytree(reuse / cell_id, sweep_dir / cell_id)
    return kept


def _finished(folder: Path, key: str) -> bool:
    try:
        return json.loads((folder / RESULT).read_text()).get("cell_key") == key and all(
            (folder / name).is_file() for name in (STEPS, EPOCHS))
    except (OSError, ValueError):
        return False


def _run_launcher(ids: list[str], conf: Path, launcher: LauncherConfig, sweep_dir: Path) -> None:
    cmd = [sys.executable, "-m", MODULE, "--multirun", "--config-dir", str(conf),
           "--config-name", APP, "cell=" + ",".join(ids)]
    proc = subprocess.Popen(cmd, env={**os.environ, "HYDRA_FULL_ERROR": "1"}, start_new_session=True)
    try:
        code = proc.wait()
    except BaseException:
        _stop(proc)
        raise
    if code != 0:
        raise LaunchError(f"the {launcher.engine} launcher failed (exit {code}); "
                          f"each cell's log is in {sweep_dir}/<cell id>/")


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the launcher and all its jobs (their own session), SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, _GRACE_S), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def write_launch_config(cells: list[CellConfig], conf: Path, launcher: LauncherConfig, job: JobContext,
                        sweep_dir: Path) -> None:
    (conf / "cell").mkdir(parents=True, exist_ok=True)
    for cell in cells:
        # Plain YAML of the dataclass, as OmegaConf.save(OmegaConf.structured(cell)) writes it (the same
        # bytes for every cell of the four studies, checked), at 0.7 ms a cell instead of 5 (measured);
        # the job validates it against CellConfig as it reads it.
        (conf / "cell" / f"{cell.id}.yaml").write_text(yaml.safe_dump(as_dict(cell), sort_keys=False))
    app = {
        "defaults": [{"cell": "???"}, {"override hydra/launcher": launcher.engine}, "_self_"],
        "job": dataclasses.asdict(job),
        "hydra": {
            "launcher": launch_settings(launcher),
            # Jobs write into their own folder; the process's cwd stays put.
            "job": {"chdir": False},
            # No `.hydra/` record per job (3 files a cell for DVC to hash): each cell's config is already
            # conf/cell/<id>.yaml of this launch, and its key is in its result.json.
            "output_subdir": None,
            "sweep": {"dir": str(sweep_dir), "subdir": "${hydra:runtime.choices.cell}"},
            "run": {"dir": str(sweep_dir / "${hydra:runtime.choices.cell}")},
        },
    }
    OmegaConf.save(OmegaConf.create(app), conf / f"{APP}.yaml")


def read_cell(folder: Path, cell: CellConfig, reused: bool = False) -> CellOutput:
    """A cell's artifact (`cell_job.write_cell`) as its CellOutput."""
    try:
        result = json.loads((folder / RESULT).read_text())
        steps = pd.read_csv(folder / STEPS)
        # An empty list of dead units is an empty string, not a missing value.
        epochs = pd.read_csv(folder / EPOCHS, dtype={"dead_units": str}).fillna({"dead_units": ""})
        probes = pd.read_csv(folder / PROBES) if probed(cell) else pd.DataFrame(columns=PROBE_COLUMNS)
    except FileNotFoundError as exc:
        raise LaunchError(f"cell {cell.id}: no artifact ({exc.filename}); see its log in {folder}") from None
    return CellOutput(cell, result, steps, epochs, reused, probes)
