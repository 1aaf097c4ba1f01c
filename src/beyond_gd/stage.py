"""The one stage runner: argv, params, the MLflow run, and the atomic write of a study's Result.

A stage module only declares its stage:

    STAGE = Stage("interpolate", interpolate.Config, interpolate.run, __doc__,
                  inputs={"mnist": MNIST, "baseline": ("mnist.pt", "init.pt")},
                  outputs=("path.csv", "curves.csv", "summary.csv", "summary.json", "metrics.json"))

    if __name__ == "__main__":
        main(STAGE)

and that declaration is all dvc.yaml says of it (`beyond_gd.pipeline` writes
dvc.yaml from the declarations); `python -m beyond_gd.stages.interpolate` then
1. reads `--params` (params.yaml) and validates the sections the study's
   `Config` names (one-line errors, exit 2, before any run is opened);
2. sets up the device and threads from `runtime`, if the study reads it;
3. opens the stage's MLflow run (experiment `beyond-gd/<stage>`), which ends
   FINISHED, FAILED or KILLED (SIGTERM and SIGINT are caught and named);
4. calls `run(cfg, inputs)` with the upstream folders (`--<input>`, default
   `data/<input>`) and a fresh work folder beside the output folder;
5. writes the Result there (CSV, NPZ, JSON, checkpoints, `metrics.json`,
   `summary.json`, `run.json` naming the MLflow run), logs its numbers and
   curves to MLflow, and only then moves each output into `--out` (default
   `data/<stage>`). A stage that fails or is killed leaves none of its outputs
   behind, old or new (DVC removes the old ones before it runs a stage anyway).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from beyond_gd import tracking
from beyond_gd.config import as_dict, dvc_params, load, load_params, resolved
from beyond_gd.costs import Clock
from beyond_gd.errors import BeyondGDError, Interrupted, raise_interrupted
from beyond_gd.provenance import usable_cores, workspace_root
from beyond_gd.study import METRICS, RECORD, SUMMARY, Inputs, Result, plain

@dataclass(frozen=True)
class RunContext:
    """What jobs launched by a stage need to log their runs under the stage's (beyond_gd.launch)."""

    stage: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    device: str  # runtime.device as configured: each job resolves it where it runs
    data_root: str  # the mnist folder, absolute (jobs may run on other machines)


# The mnist stage's output, torchvision's layout (MNIST/raw/*-ubyte): what every stage that reads MNIST reads.
MNIST = ("MNIST",)


@dataclass(frozen=True)
class Plot:
    """A `dvc plots` definition over a stage's own files: `x`, and per file the column(s) drawn against it
    (several files overlay). A folder of CSVs (`curves`) gives one plot per file, each named by its path."""

    title: str
    x: str
    y: Mapping[str, str | tuple[str, ...]]


@dataclass(frozen=True)
class Stage:
    name: str  # the stage, its params section, its conf group and its folder data/<name>
    config: type  # the study's Config: its fields are the params sections the stage reads
    run: Callable[[Any, Inputs], Result]
    doc: str  # what the stage computes: the stage module's docstring (its MLflow experiment's description)
    outputs: tuple[str, ...]  # what it writes in its folder besides run.json (dvc.yaml's outs and metrics)
    # Upstream stages whose folders it reads, each with the files (or folders) of it that it reads: its
    # data deps in dvc.yaml, so an upstream output it does not read re-runs nothing.
    inputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Builds `inputs.run_cells` for studies made of training cells (beyond_gd.launch.cell_launcher): the
    # config, the sweep folder, the run context, and the last run's cells (finished ones are kept).
    launch: Callable[[Any, Path, RunContext, Path], Callable[[list[Any]], list[Any]]] | None = None
    # default: data/<name>, in DVC's cache; elsewhere (reports/) the outputs are kept in git instead.
    out: str = ""
    log_outputs: bool = False  # also keep what it wrote as the MLflow run's artifacts
    # Outputs the study keeps from its last run where nothing they depend on changed (`Inputs.previous`):
    # `persist: true` in dvc.yaml, so DVC leaves them in place when it re-runs the stage.
    keeps: tuple[str, ...] = ()
    plots: tuple[Plot, ...] = ()  # dvc.yaml's plots of its outputs (`dvc plots show`)

    @property
    def default_out(self) -> str:
        return self.out or f"data/{self.name}"

    @property
    def computes(self) -> str:
        """The docstring's first paragraph, one line."""
        return " ".join(self.doc.strip().split("\n\n")[0].split())


# Said beside a failure under DVC (`dvc repro`, `dvc exp run`), which sets DVC_STAGE: DVC removes a stage's
# outputs before running it, so a failed run leaves the workspace without them until they are checked out.
UNDER_DVC = "DVC removed this stage's outputs before running it: `dvc checkout` restores them"


def main(stage: Stage, argv: list[str] | None = None) -> None:
    """The command line: a known error is one line on stderr and exit 2; a signal exits 128 + its number.
    Under DVC the line also says how to get the outputs DVC removed back."""
    dvc = " (" + UNDER_DVC + ")" if "DVC_STAGE" in os.environ else ""
    try:
        execute(stage, argv)
    except BeyondGDError as exc:
        print(f"error: {exc}{dvc}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as exc:
        print(f"{stage.name}: {exc}; no output written{dvc}", file=sys.stderr)
        sys.exit(128 + signal.Signals[exc.signal].value)
    except Exception as exc:  # a bug: its traceback, then the same advice
        if dvc:
            exc.add_note(UNDER_DVC)
        raise


def parser(stage: Stage) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m beyond_gd.stages.{stage.name}", description=stage.doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="composed params file (default: params.yaml)")
    for name in stage.inputs:
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=f"data/{name}",
                       help=f"the {name} stage's output folder (default: data/{name})")
    p.add_argument("--out", default=stage.default_out, help=f"output folder (default: {stage.default_out})")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def execute(stage: Stage, argv: list[str] | None = None) -> Result:
    """Run `stage` as its command line would; the Result written and logged."""
    clock = Clock()  # this process's start and the imports' end (beyond_gd.costs)
    args = parser(stage).parse_args(argv)
    params = load_params(args.params)
    cfg = load(params, stage.config)
    if missing := undeclared(stage.name, cfg, params):
        print(f"warning: dvc.yaml does not declare {', '.join(missing)}, which {stage.name} reads, so DVC will "
              "not re-run it when they change: run `make pipeline`", file=sys.stderr)
    device = _device(cfg)
    read = as_dict(cfg)
    out = Path(args.out)
    work = out.parent / f".{out.name}.tmp-{os.getpid()}"
    previous = signal.signal(signal.SIGTERM, raise_interrupted)
    try:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        experiment = tracking.experiment_id(stage.name, stage.computes)
        with tracking.recorded(experiment, stage.name, read, tracking.run_tags(stage.name, read, device)) as run:
            clock.stamp("params_and_mlflow_open")
            folders = {name: Path(getattr(args, name)) for name in stage.inputs}
            inputs = Inputs(device, folders, work, run_id=run.info.run_id, progress=not args.no_progress,
                            previous=out if stage.keeps else None, jobs=usable_cores() if device == "cpu" else 1)
            cells: dict[str, Any] = {}
            if stage.launch is not None:
                context = RunContext(stage.name, tracking.tracking_uri(), experiment, run.info.run_id,
                                     cfg.runtime.device, str(inputs.folder("mnist").resolve()))
                inputs.run_cells = _counted(stage.launch(cfg, work / "cells", context, out / "cells"), cells)
            result = stage.run(cfg, inputs)
            clock.stamp("study")
            names = result.outputs()
            if sorted(names) != sorted(stage.outputs):
                raise RuntimeError(f"{stage.name}: the study wrote {sorted(names)}, the stage declares "
                                   f"{sorted(stage.outputs)}")
            write(result, work)
            clock.stamp("write")
            _log(run.info.run_id, result)
            if stage.log_outputs:
                tracking.mlflow.log_artifacts(str(work))
            if result.feeds:
                tracking.describe_experiments(result.feeds)
            clock.stamp("mlflow_log")
            launched = {"cells": cells.pop("seconds")} if "seconds" in cells else {}
            record = tracking.run_record(run, **cells, timing=clock.record(**launched))
            (work / RECORD).write_text(json.dumps(record, indent=2) + "\n")
            if stage.log_outputs:  # written last, so that its timing covers the logging above
                tracking.mlflow.log_artifact(str(work / RECORD))
            _move(work, out, [*names, RECORD])
    finally:
        shutil.rmtree(work, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
    for line in result.lines:
        print(f"{stage.name}: {line}")
    return result


def undeclared(name: str, cfg: Any, params: Mapping[str, Any]) -> list[str]:
    """Under DVC (`DVC_STAGE` set), the params keys the study reads that the workspace's dvc.yaml does not
    declare for the stage: a list of optimizer entries edited since `make pipeline` wrote it (a single
    name is templated, so it cannot go stale). Outside DVC, or without a dvc.yaml entry, none."""
    if "DVC_STAGE" not in os.environ:
        return []
    try:
        spec = yaml.safe_load((workspace_root() / "dvc.yaml").read_text())["stages"][name]["params"]
        declared = {resolved(k, params) for k in spec}
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return []
    return [k for k in (resolved(k, params) for k in dvc_params(cfg))
            if k not in declared and not any(k.startswith(f"{d}.") for d in declared)]


def write(result: Result, folder: Path) -> None:
    """Every file of `result` into `folder`: the same bytes for the same Result."""
    def path(name: str) -> Path:
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    for name, frame in result.tables.items():
        frame.to_csv(path(name), index=False)
    for name, arrays in result.arrays.items():
        with path(name).open("wb") as fh:  # a handle: np.savez would append ".npz" to a path
            np.savez(fh, **arrays)
    documents = {**result.documents, METRICS: result.metrics} if result.metrics else dict(result.documents)
    if result.summary:
        documents[SUMMARY] = result.summary
    for name, data in documents.items():
        path(name).write_text(json.dumps(plain(data), indent=2) + "\n")
    for name, data in result.files.items():
        path(name).write_bytes(data)
    if result.checkpoints:
        import torch

        for name, state in result.checkpoints.items():
            torch.save(state, path(name))


def _device(cfg: Any) -> str:
    """The device the study computes on: `runtime` resolved and set up if it reads it, else the CPU."""
    if not hasattr(cfg, "runtime"):
        return "cpu"
    from beyond_gd.runtime import setup_runtime

    return setup_runtime(cfg.runtime).type


def _log(run_id: str, result: Result) -> None:
    tracking.log_metrics(run_id, {**tracking.numbers(result.summary), **tracking.numbers(result.metrics),
                                  **result.logged})
    for series in result.series:
        tracking.log_series(run_id, series.values, series.steps)
    if result.tags:
        tracking.mlflow.set_tags(result.tags)


def _counted(run_cells: Callable[[list[Any]], list[Any]], tally: dict[str, Any]) -> Callable[[list[Any]], list[Any]]:
    """`run_cells`, counting in `tally` the cells run now (`cells`, each a nested MLflow run) and kept
    (`cells_kept`), the stage runs the kept cells were recorded under (`cells_kept_in`: run id -> cells;
    a cell's result.json names it as `parent_run_id`, absent from cells recorded before it did), and the
    launches' wall seconds (`seconds`, run.json's `timing.seconds.cells`)."""
    def run(cells: list[Any]) -> list[Any]:
        started = time.time()
        outputs = run_cells(cells)
        tally["seconds"] = tally.get("seconds", 0.0) + time.time() - started
        kept = [o for o in outputs if o.reused]
        tally["cells"] = tally.get("cells", 0) + len(outputs) - len(kept)
        tally["cells_kept"] = tally.get("cells_kept", 0) + len(kept)
        held = tally.setdefault("cells_kept_in", {})
        for o in kept:
            if parent := o.result.get("parent_run_id"):
                held[parent] = held.get(parent, 0) + 1
        tally["cells_kept_in"] = dict(sorted(held.items()))
        return outputs

    return run


def _move(work: Path, out: Path, names: list[str]) -> None:
    """Every output into place, old ones replaced; a SIGTERM meanwhile is raised once all are in place."""
    held: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: held.append(signum))
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name in names:
            _remove(out / name)
            os.replace(work / name, out / name)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if held:
        raise_interrupted(held[0], None)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
