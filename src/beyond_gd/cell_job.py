"""The job side of a training cell: what runs in a launcher's worker, and the key a finished cell is kept by.

The stage side (`beyond_gd.launch`) writes a Hydra config folder and runs
this module as a multirun, one job per cell; each job (`cell_job`) reads its
cell's `CellConfig`, runs it (`cells.run_cell`), writes its artifact into its
own folder (`write_cell`: result.json, steps.csv, epochs.csv, and probes.csv
for a cell that probes its optimizer) and records it as an MLflow run nested
under the stage's (`record_cell`). `run_and_write` is the run and the
artifact without MLflow, shared with the in-process runner
(`launch.run_cells_here`), so both write the same files.

A finished cell is kept by its key (`cell_key`): a hash of its config, of the
code it runs, of the torch version, the device and the threads per job. The
code is this module and every beyond_gd module it imports
(`provenance.code_hash`: the cell's training, the data loader, the writer of
the artifact), read as syntax trees without docstrings, so an edit of a
comment or a docstring, of the stage-side launcher or of the tables over
cells (`beyond_gd.cell_tables`) keeps every cell, and an edit of the training
re-runs them all. That is why this module imports nothing of the stage side.

To re-run one cell of a finished stage by hand, from its recorded config:

    python -m beyond_gd.cell_job --config-dir data/optimizer_grid/cells/conf \\
        --config-name cell_app cell=adam-lr0.001-s0 hydra.run.dir=/tmp/one-cell
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from beyond_gd import tracking
from beyond_gd.cells import CellConfig, CellOutput, CellResult, cell_output, run_cell
from beyond_gd.config import as_dict
from beyond_gd.costs import train_flop
from beyond_gd.data.mnist import load_tensors
from beyond_gd.errors import raise_interrupted
from beyond_gd.model import build_model
from beyond_gd.provenance import code_hash, device_name
from beyond_gd.runtime import resolve_device

log = logging.getLogger(__name__)
# This module's import name (it also runs as __main__): the root of the code a cell's key covers.
MODULE = "beyond_gd.cell_job"
APP = "cell_app"  # the primary config of the launch's config folder
# A cell's artifact, in its folder.
RESULT, STEPS, EPOCHS, PROBES = "result.json", "steps.csv", "epochs.csv", "probes.csv"
# What a cell logs as MLflow metrics (scalars of its result.json).
_METRICS = ("steps", "train_seconds", "steps_to_target", "steps_to_target_smoothed", "steps_to_target_epoch_last",
            "seconds_to_target", "final_loss", "train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass
class JobContext:
    """What every cell of one launch shares (the `job` node of cell_app.yaml)."""

    # The stage's `stage.RunContext` as plain data: stage, tracking_uri, experiment_id, parent_run_id,
    # device (as configured; each job resolves it where it runs), data_root.
    run: dict[str, str]
    threads: int
    # The hash of the code the cells run (`cell_code`), computed once by the launch rather than once per
    # job (~0.07 s each, measured; the jobs run the checkout the launch hashed); None: computed per job.
    code: str | None = None


# --------------------------------------------------------------------------
# The key
# --------------------------------------------------------------------------
def cell_code() -> str:
    """The hash of the code a cell runs: this module and what it imports (`provenance.code_hash`)."""
    return code_hash(MODULE)


def cell_key(cell: CellConfig, threads: int, device: str, code: str | None = None) -> str:
    """What a cell's numbers depend on: its config, the code it runs (`code`, computed if not given), the
    torch version, the device type and the threads."""
    blob = json.dumps({"cell": as_dict(cell), "code": code or cell_code(), "torch": torch.__version__,
                       "device": device, "threads": threads}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------
# One cell: its run, its artifact, its MLflow run
# --------------------------------------------------------------------------
def run_and_write(cell: CellConfig, data_root: str | Path, device: torch.device, threads: int, out: Path,
                  code: str | None = None, **runs: str | None) -> tuple[CellOutput, CellResult]:
    """Run `cell` on MNIST from `data_root` and write its artifact to `out`, keyed with `code` (`cell_key`);
    `runs` (mlflow_run_id, parent_run_id) join where and when it ran in its result.json."""
    x_train, y_train = _mnist(str(data_root), True, str(device))
    x_test, y_test = _mnist(str(data_root), False, str(device))
    started, cpu = time.time(), time.process_time()
    res = run_cell(cell, x_train, y_train, x_test, y_test, device)
    finished = time.time()
    # The training arithmetic (beyond_gd.costs): every gradient evaluation passes one batch.
    examples = (res.epochs[-1].evaluations if res.epochs else 0) * min(cell.batch_size, len(x_train))
    output = cell_output(cell, res, pid=os.getpid(), host=socket.gethostname(), device=device.type,
                         device_name=device_name(device.type), started_at=started, finished_at=finished,
                         wall_seconds=finished - started, cpu_seconds=time.process_time() - cpu,
                         train_flop=train_flop(build_model(cell.model), examples),
                         **runs, cell_key=cell_key(cell, threads, device.type, code))
    write_cell(output, out)
    return output, res


def write_cell(output: CellOutput, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    output.steps.to_csv(out / STEPS, index=False)
    output.epochs.to_csv(out / EPOCHS, index=False)
    if probed(output.cell):
        output.probes.to_csv(out / PROBES, index=False)
    (out / RESULT).write_text(json.dumps(output.result, indent=2) + "\n")


def probed(cell: CellConfig) -> bool:
    """Whether the cell probes its optimizer (and so writes probes.csv)."""
    return bool(cell.probe_every or cell.probe_updates)


def cell_params(cell: CellConfig) -> dict[str, Any]:
    """The cell's config as its MLflow run's params: its labels are tags, so not params too."""
    return {k: v for k, v in as_dict(cell).items() if k != "labels"}


def record_cell(cell: CellConfig, job: JobContext, out: Path) -> dict[str, Any]:
    """Run one cell as an MLflow run nested under the stage's, and write its artifact to `out`."""
    try:  # only the main thread may set a handler (a launcher may run jobs in threads)
        signal.signal(signal.SIGTERM, raise_interrupted)
    except ValueError:
        pass
    torch.set_num_threads(job.threads)
    run = job.run
    device = resolve_device(run["device"])
    tags = {**tracking.run_tags(run["stage"], {"cell": as_dict(cell)}, device.type), "cell": cell.id,
            # Runs started in other processes are nested only through this tag.
            "mlflow.parentRunId": run["parent_run_id"], **{k: str(v) for k, v in cell.labels.items()}}
    os.environ["MLFLOW_TRACKING_URI"] = run["tracking_uri"]
    with tracking.recorded(run["experiment_id"], cell.id, cell_params(cell), tags) as active:
        run_id = active.info.run_id
        output, res = run_and_write(cell, run["data_root"], device, job.threads, out, job.code,
                                    mlflow_run_id=run_id, parent_run_id=run["parent_run_id"])
        tracking.log_series(run_id, {"train_loss_step": res.step_loss}, range(1, res.steps + 1))
        evaluated = cell.eval_every is not None
        tracking.log_series(run_id, {name: [getattr(r, name) for r in res.epochs]
                                     for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                                                  "epoch_last_loss") if evaluated or name == "epoch_last_loss"},
                            [r.step for r in res.epochs])
        tracking.log_metrics(run_id, {k: v for k, v in tracking.numbers(output.result).items() if k in _METRICS})
        tracking.mlflow.set_tags({"diverged": str(res.diverged).lower(), "stopped_by": res.stopped_by})
    # Hydra's job logging sends this to the console and to the cell's own log file.
    target = ("" if cell.target_loss is None else
              f"; steps to {cell.target_loss:g} ({cell.cost}): {res.steps_to_target or 'not reached'}")
    log.info(f"{cell.id}: {res.stopped_by} after {res.steps} steps in {res.train_seconds:.1f} s{target}")
    return output.result


@functools.lru_cache(maxsize=4)
def _mnist(root: str, train: bool, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    # A joblib worker runs many cells: it reads each split once.
    return load_tensors(root, train=train, device=torch.device(device))


@hydra.main(config_path=None, config_name=APP, version_base="1.3")
def cell_job(cfg: DictConfig) -> None:
    """One job of the launcher's multirun: the cell `cell=<id>` of the launch's config folder."""
    cell: CellConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CellConfig), cfg.cell))  # type: ignore[assignment]
    job = JobContext(**OmegaConf.to_container(cfg.job, resolve=True))  # type: ignore[arg-type]
    record_cell(cell, job, Path(HydraConfig.get().runtime.output_dir))


if __name__ == "__main__":
    # The launcher pickles the task function for its workers: by reference to
    # this module under its import name, not as `__main__` (pickled by value).
    from beyond_gd import cell_job as _self

    _self.cell_job()
