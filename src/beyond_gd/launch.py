"""Run training cells in parallel through a Hydra launcher plugin, and read their artifacts back.

Hydra's launchers act only in a `--multirun` of a `@hydra.main` app, and
`dvc repro` composes nothing, so a study hands its cells to `inputs.run_cells`
(made here by `cell_launcher`), which calls `launch`, which
1. writes a Hydra config folder into the sweep folder: the app's primary config
   `conf/cell_app.yaml` (what the cells share: data, device, threads, MLflow
   parent run, and the launcher with its settings) and one option of the group
   `cell` per cell, `conf/cell/<id>.yaml`, holding that cell's whole `CellConfig`;
2. runs this module as a multirun over `cell=<id>,<id>,...`; the launcher
   named by `launcher.engine` runs the jobs, each in `<sweep>/<id>/`;
3. reads each job's artifact back: `result.json`, `steps.csv`, `epochs.csv`,
   `probes.csv` for a cell that probes its optimizer (beside Hydra's own
   record of the job's config, `.hydra/config.yaml`).

The launcher runs in its own process session: when the stage is interrupted
(SIGTERM, Ctrl-C), every job gets SIGTERM and its cell's MLflow run ends KILLED.

Finished cells are kept: a cell whose folder in the last run's output (DVC
keeps it, `persist: true`) has the same key, a hash of its whole config, the
code it runs (`beyond_gd.cells` and what it imports), the torch version, the
device and the threads per job, is copied instead of run. Adding a learning
rate or a seed to a grid runs only its cells; the outputs are those of a
from-scratch run of the same grid, measured seconds and where and when each
cell ran aside (tested).

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
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from beyond_gd import tracking
from beyond_gd.cells import PROBE_COLUMNS, CellConfig, CellOutput, cell_output, run_cell
from beyond_gd.config import as_dict, required
from beyond_gd.data.mnist import load_tensors
from beyond_gd.errors import BeyondGDError
from beyond_gd.provenance import code_hash
from beyond_gd.runtime import resolve_device
from beyond_gd.stage import RunContext, raise_interrupted

log = logging.getLogger(__name__)
ENGINES = ("basic", "joblib", "submitit_local", "submitit_slurm")
APP = "cell_app"
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


@dataclass
class JobContext:
    """What every cell of one launch shares (the `job` node of cell_app.yaml)."""

    run: dict[str, str]  # the stage's RunContext: where to log, the parent run, device, data
    threads: int


# --------------------------------------------------------------------------
# The stage side
# --------------------------------------------------------------------------
def cell_launcher(cfg: Any, sweep_dir: Path, context: RunContext,
                  reuse: Path | None = None) -> Callable[[list[CellConfig]], list[CellOutput]]:
    """`inputs.run_cells` for a study whose config has a `launcher` section: its cells go to that engine,
    into `sweep_dir`, each logged as a run nested under the stage's; finished ones in `reuse` are kept."""
    launcher: LauncherConfig = cfg.launcher
    job = JobContext(dataclasses.asdict(context), launcher.threads_per_job)
    return functools.partial(launch, sweep_dir=sweep_dir, launcher=launcher, job=job, reuse=reuse)


def launch(cells: list[CellConfig], sweep_dir: Path, launcher: LauncherConfig, job: JobContext,
           reuse: Path | None = None) -> list[CellOutput]:
    """Run `cells` (in this order of dispatch) through the launcher, but for those `reuse` holds finished
    with the same key; their outputs, in the same order."""
    ids = [c.id for c in cells]
    if len(set(ids)) != len(ids):
        raise LaunchError(f"cell ids must be unique, got {ids}")
    sweep_dir = sweep_dir.resolve()
    device = resolve_device(job.run["device"]).type
    kept = {c.id for c in cells if reuse is not None and _finished(reuse / c.id, cell_key(c, job.threads, device))}
    for cell_id in kept:
        shutil.copytree(reuse / cell_id, sweep_dir / cell_id)  # type: ignore[operator]
    conf = sweep_dir / "conf"
    write_launch_config(cells, conf, launcher, job, sweep_dir)
    todo = [c.id for c in cells if c.id not in kept]
    if todo:
        _run_launcher(todo, conf, launcher, sweep_dir)
    return [read_cell(sweep_dir / c.id, c, reused=c.id in kept) for c in cells]


def cell_key(cell: CellConfig, threads: int, device: str) -> str:
    """What a cell's numbers depend on: its config, the code it runs, the torch version, device and threads."""
    # The code: the cell's training and what it imports, and this module, which writes its artifact.
    code = code_hash("beyond_gd.cells") + hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    blob = json.dumps({"cell": as_dict(cell), "code": code, "torch": torch.__version__, "device": device,
                       "threads": threads}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _finished(folder: Path, key: str) -> bool:
    try:
        return json.loads((folder / "result.json").read_text()).get("cell_key") == key and all(
            (folder / name).is_file() for name in ("steps.csv", "epochs.csv"))
    except (OSError, ValueError):
        return False


def _run_launcher(ids: list[str], conf: Path, launcher: LauncherConfig, sweep_dir: Path) -> None:
    cmd = [sys.executable, "-m", "beyond_gd.launch", "--multirun", "--config-dir", str(conf),
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
        OmegaConf.save(OmegaConf.structured(cell), conf / "cell" / f"{cell.id}.yaml")
    app = {
        "defaults": [{"cell": "???"}, {"override hydra/launcher": launcher.engine}, "_self_"],
        "job": dataclasses.asdict(job),
        "hydra": {
            "launcher": dict(launcher.settings),
            # Jobs write into their own folder; the process's cwd stays put.
            "job": {"chdir": False},
            "sweep": {"dir": str(sweep_dir), "subdir": "${hydra:runtime.choices.cell}"},
            "run": {"dir": str(sweep_dir / "${hydra:runtime.choices.cell}")},
        },
    }
    OmegaConf.save(OmegaConf.create(app), conf / f"{APP}.yaml")


def read_cell(folder: Path, cell: CellConfig, reused: bool = False) -> CellOutput:
    try:
        result = json.loads((folder / "result.json").read_text())
        steps = pd.read_csv(folder / "steps.csv")
        # An empty list of dead units is an empty string, not a missing value.
        epochs = pd.read_csv(folder / "epochs.csv", dtype={"dead_units": str}).fillna({"dead_units": ""})
        probed = cell.probe_every or cell.probe_updates
        probes = pd.read_csv(folder / "probes.csv") if probed else pd.DataFrame(columns=PROBE_COLUMNS)
    except FileNotFoundError as exc:
        raise LaunchError(f"cell {cell.id}: no artifact ({exc.filename}); see its log in {folder}") from None
    return CellOutput(cell, result, steps, epochs, reused, probes)


# --------------------------------------------------------------------------
# The job side: one cell in a launcher's worker
# --------------------------------------------------------------------------
@hydra.main(config_path=None, config_name=APP, version_base="1.3")
def cell_job(cfg: DictConfig) -> None:
    cell: CellConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CellConfig), cfg.cell))  # type: ignore[assignment]
    job = OmegaConf.to_container(cfg.job, resolve=True)
    record_cell(cell, RunContext(**job["run"]), job["threads"], Path(HydraConfig.get().runtime.output_dir))  # type: ignore[index]


def record_cell(cell: CellConfig, context: RunContext, threads: int, out: Path) -> dict[str, Any]:
    """Run one cell as an MLflow run nested under the stage's, and write its artifact to `out`."""
    try:  # only the main thread may set a handler (a launcher may run jobs in threads)
        signal.signal(signal.SIGTERM, raise_interrupted)
    except ValueError:
        pass
    torch.set_num_threads(threads)
    device = resolve_device(context.device)
    x_train, y_train = _mnist(context.data_root, True, str(device))
    x_test, y_test = _mnist(context.data_root, False, str(device))
    tags = {**tracking.run_tags(context.stage, {"cell": as_dict(cell)}, device.type), "cell": cell.id,
            # Runs started in other processes are nested only through this tag.
            "mlflow.parentRunId": context.parent_run_id, **{k: str(v) for k, v in cell.labels.items()}}
    os.environ["MLFLOW_TRACKING_URI"] = context.tracking_uri
    with tracking.recorded(context.experiment_id, cell.id, as_dict(cell), tags) as run:
        started = time.time()
        res = run_cell(cell, x_train, y_train, x_test, y_test, device)
        finished = time.time()
        output = cell_output(cell, res, pid=os.getpid(), host=socket.gethostname(), device=tags["device"],
                             device_name=tags["device_name"], started_at=started, finished_at=finished,
                             wall_seconds=finished - started, mlflow_run_id=run.info.run_id,
                             cell_key=cell_key(cell, threads, device.type))
        out.mkdir(parents=True, exist_ok=True)
        output.steps.to_csv(out / "steps.csv", index=False)
        output.epochs.to_csv(out / "epochs.csv", index=False)
        if cell.probe_every or cell.probe_updates:
            output.probes.to_csv(out / "probes.csv", index=False)
        (out / "result.json").write_text(json.dumps(output.result, indent=2) + "\n")

        run_id = run.info.run_id
        tracking.log_series(run_id, {"train_loss_step": res.step_loss}, range(1, res.steps + 1))
        tracking.log_series(run_id, {name: [getattr(r, name) for r in res.epochs]
                                     for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                                  "epoch_last_loss") if cell.evaluate or name == "epoch_last_loss"},
                            [r.step for r in res.epochs])
        tracking.log_metrics(run_id, {k: v for k, v in tracking.numbers(output.result).items() if k in _METRICS})
        tracking.mlflow.set_tags({"diverged": str(res.diverged).lower(), "stopped_by": res.stopped_by})
    # Hydra's job logging sends this to the console and to the cell's own log file.
    log.info(f"{cell.id}: {res.stopped_by} after {res.steps} steps in {res.train_seconds:.1f} s; "
             f"steps to {cell.target_loss:g} ({cell.cost}): {res.steps_to_target or 'not reached'}")
    return output.result


_METRICS = ("steps", "train_seconds", "steps_to_target", "steps_to_target_smoothed", "steps_to_target_epoch_last",
            "seconds_to_target", "final_loss", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


@functools.lru_cache(maxsize=4)
def _mnist(root: str, train: bool, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    # A joblib worker runs many cells: it reads each split once.
    return load_tensors(root, train=train, device=torch.device(device))


if __name__ == "__main__":
    # The launcher pickles the task function for its workers: by reference to
    # this module under its import name, not as `__main__` (pickled by value).
    from beyond_gd import launch as _self

    _self.cell_job()
