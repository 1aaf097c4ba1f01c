"""Where a reproduction's time goes: the stamps a stage run records, and the cost table read from them.

Every stage run writes, in its run.json, when its process started and the
seconds of each part of it (`Clock`): process start and imports, reading the
params and opening the MLflow run, the study itself (and within it the cell
launches), writing the outputs, logging to MLflow; and its CPU seconds, its own
and its waited-for children's. A training cell's result.json holds its wall,
training and CPU seconds and its steps. `stage_costs` turns those records
into one row per stage: wall and CPU seconds, the split, the seconds DVC
spends between one stage's end and the next one's start (hashing and caching
outputs, checking the next stage's deps, starting its process), and the cells'
training arithmetic rate against a matmul peak. `beyond-gd costs` prints it
for the last reproduction in the workspace.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

# The splits of a stage's wall time, in the order they happen (`Clock.stamp` names).
PARTS = ("start_and_imports", "params_and_mlflow_open", "study", "write", "mlflow_log")
# A forward pass costs 2 FLOP per weight and example (a multiply and an add); a training step's backward
# pass costs about two forward passes (the inputs' gradient and the weights'): 3 passes, 6 FLOP (Kaplan et
# al. 2020's 6N).
FORWARD_FLOP_PER_WEIGHT = 2
TRAIN_PASSES = 3
TRAIN_FLOP_PER_WEIGHT = FORWARD_FLOP_PER_WEIGHT * TRAIN_PASSES


def train_flop(model: Any, examples: int) -> float:
    """The arithmetic of training `model` (a torch module) on `examples` examples: 6 FLOP per weight and
    example (biases and activations are a small share of an MLP's)."""
    return float(TRAIN_FLOP_PER_WEIGHT * sum(p.numel() for p in model.parameters()) * examples)


def process_started_at() -> float | None:
    """When this process started (seconds since the epoch), from Linux's /proc; None elsewhere."""
    try:
        with open("/proc/self/stat") as fh:
            # Field 22 (after the parenthesised command, which may hold spaces): start time in clock ticks
            # since boot.
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/stat") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def cpu_seconds() -> dict[str, float]:
    """CPU seconds (user + system) of this process and of its children it has waited for; where the
    standard library has no `resource` (Windows), this process's own only."""
    try:
        import resource
    except ImportError:
        return {"self": time.process_time(), "children": 0.0}
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"self": own.ru_utime + own.ru_stime, "children": kids.ru_utime + kids.ru_stime}


@dataclass
class Clock:
    """A stage run's stamps: made when the runner starts (imports done), stamped at the end of each part."""

    started_at: float | None = field(default_factory=process_started_at)
    stamps: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stamps.append((PARTS[0], time.time()))

    def stamp(self, part: str) -> None:
        if part not in PARTS:
            raise ValueError(f"part {part!r} is not one of {', '.join(PARTS)}")
        self.stamps.append((part, time.time()))

    def record(self, **extra: float) -> dict[str, Any]:
        """run.json's `timing`: the start, the end (now), each part's seconds and the CPU seconds."""
        seconds = {}
        before = self.started_at if self.started_at is not None else self.stamps[0][1]
        for part, at in self.stamps:
            seconds[part] = at - before
            before = at
        return {"started_at": self.started_at, "ended_at": before, "seconds": {**seconds, **extra},
                "cpu_seconds": cpu_seconds()}


def stage_costs(records: Mapping[str, Mapping[str, Any]], cells: Mapping[str, list[Mapping[str, Any]]],
                peak_flops: float | None = None) -> pd.DataFrame:
    """One row per stage, in the order they ran, from each stage's run.json `timing` (`records`) and its
    cells' results (`cells`: each with wall, training and CPU seconds, `train_flop`, and `reused` for a
    cell kept from an earlier run, left out).

    `dvc_before` is the gap between the previous stage's end and this one's process start: DVC's hashing
    and caching of the previous stage's outputs and its checks of this one. `cells_outside` is the cell
    launches' seconds not spent inside a cell, per job slot (job start, Hydra, MLflow runs, idle slots at
    the end). `share_of_peak` is the cells' training FLOP over their training seconds against `peak_flops`
    (one thread's matmul rate; a cell runs one job's threads)."""
    rows = []
    for stage, record in records.items():
        timing = record.get("timing")
        if not timing:
            continue
        seconds = timing["seconds"]
        start = timing["started_at"] if timing["started_at"] is not None else timing["ended_at"] - sum(
            seconds.get(p, 0.0) for p in PARTS)
        row: dict[str, Any] = {"stage": stage, "started_at": start, "ended_at": timing["ended_at"],
                               "wall": timing["ended_at"] - start,
                               "cpu": sum(timing["cpu_seconds"].values()), **{p: seconds.get(p) for p in PARTS}}
        done = [c for c in cells.get(stage, []) if not c.get("reused")]
        if done:
            train = sum(c["train_seconds"] for c in done)
            row.update(cells=len(done), cell_wall=sum(c["wall_seconds"] for c in done), cell_train=train,
                       cell_cpu=sum(c.get("cpu_seconds") or 0.0 for c in done))
            if "cells" in seconds:
                row["launch"] = seconds["cells"]
                row["cells_outside"] = seconds["cells"] - row["cell_wall"] / job_slots(done)
            flop = sum(c.get("train_flop") or 0.0 for c in done)
            row["gflops_per_thread"] = flop / train / 1e9 if train > 0 else None
            if peak_flops and train > 0:
                row["share_of_peak"] = flop / train / peak_flops
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values("started_at", kind="stable").reset_index(drop=True)
    table["dvc_before"] = table["started_at"] - table["ended_at"].shift()
    return table


def job_slots(cells: list[Mapping[str, Any]]) -> int:
    """How many cells ran at once at most (from their start and end times): the launcher's job slots."""
    events = sorted([(c["started_at"], 1) for c in cells] + [(c["finished_at"], -1) for c in cells])
    running = most = 0
    for _, step in events:  # an end before a start at the same instant
        running += step
        most = max(most, running)
    return max(most, 1)


def matmul_peak(n: int = 1024, repeats: int = 20) -> float:
    """FLOP/s of an n x n float32 matmul on this process's torch threads, the best of `repeats`."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def read_records(root: Path) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The last reproduction's stage records (data/<stage>/run.json, reports/run.json) and each cell
    stage's cell results (data/<stage>/cells/<id>/result.json), with a cell kept from an earlier run
    marked `reused` (it was recorded under another stage run)."""
    records, cells = {}, {}
    folders = sorted(p for p in (root / "data").glob("*/run.json")) + [root / "reports" / "run.json"]
    for path in folders:
        if not path.is_file():
            continue
        stage = "report" if path.parent.name == "reports" else path.parent.name
        records[stage] = record = json.loads(path.read_text())
        results = [json.loads(r.read_text()) for r in sorted((path.parent / "cells").glob("*/result.json"))]
        if results:
            cells[stage] = [{**r, "reused": r.get("parent_run_id") not in (None, record.get("mlflow_run_id"))}
                            for r in results]
    return records, cells


# The table's columns: (row key, header, format); a missing value prints blank.
COLUMNS = (("wall", "wall", "{:.1f}"), ("cpu", "cpu", "{:.1f}"), ("start_and_imports", "start", "{:.1f}"),
           ("params_and_mlflow_open", "open", "{:.1f}"), ("study", "study", "{:.1f}"), ("cells", "cells", "{:.0f}"),
           ("launch", "launch", "{:.1f}"), ("cell_train", "train", "{:.1f}"), ("cells_outside", "outside", "{:.1f}"),
           ("write", "write", "{:.1f}"), ("mlflow_log", "log", "{:.1f}"), ("dvc_before", "dvc", "{:.1f}"),
           ("gflops_per_thread", "GFLOP/s", "{:.1f}"), ("share_of_peak", "peak", "{:.0%}"))
LEGEND = ("seconds: wall and cpu of the stage's process (cpu with its waited-for children); start = process start "
          "and imports; open = params and the MLflow run; study = the study, within which launch = its cell "
          "launches (cells = cells run), train = the cells' training steps summed over cells, outside = the "
          "launches' seconds outside any cell per job slot (job start, Hydra, MLflow, idle slots); write = "
          "outputs; log = MLflow logging; dvc = DVC between the previous stage's end and this one's start. "
          "GFLOP/s: the cells' training arithmetic per thread, and its share of one thread's matmul peak.")


def format_table(table: pd.DataFrame, peak_flops: float | None = None) -> str:
    """The cost table as text: one line per stage, then the totals and what each column holds."""
    if table.empty:
        return "no stage run records a timing yet: run `dvc repro`"
    def cell(value: Any, fmt: str) -> str:
        return "" if value is None or pd.isna(value) else fmt.format(value)

    lines = [f"{'stage':22s}" + "".join(f"{header:>8s}" for _, header, _ in COLUMNS)]
    for row in table.to_dict("records"):
        lines.append((f"{row['stage']:22s}" + "".join(f"{cell(row.get(key), fmt):>8s}"
                                                      for key, _, fmt in COLUMNS)).rstrip())
    span = table["ended_at"].max() - table["started_at"].min()
    lines.append(f"{len(table)} stages, first start to last end {span:,.0f} s wall: {table['wall'].sum():,.0f} s in "
                 f"the stages, {table['dvc_before'].sum():,.0f} s between them; {table['cpu'].sum():,.0f} CPU-seconds"
                 + (f"; matmul peak {peak_flops / 1e9:.1f} GFLOP/s a thread" if peak_flops else ""))
    lines.append(LEGEND)
    return "\n".join(lines)
