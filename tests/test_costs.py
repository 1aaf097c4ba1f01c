"""The cost table (beyond_gd.costs): a stage run's stamps, and the table read from records."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from beyond_gd import costs
from beyond_gd.cli import main as cli


def record(start: float, parts: list[float], cpu: float = 1.0, **seconds: float) -> dict:
    return {"mlflow_run_id": "r", "timing": {
        "started_at": start, "ended_at": start + sum(parts), "cpu_seconds": {"self": cpu, "children": 0.0},
        "seconds": {**dict(zip(costs.PARTS, parts)), **seconds}}}


def cell(start: float, wall: float, train: float, flop: float, reused: bool = False) -> dict:
    return {"started_at": start, "finished_at": start + wall, "wall_seconds": wall, "train_seconds": train,
            "cpu_seconds": wall, "train_flop": flop, "reused": reused}


def test_the_clock_splits_a_run_into_its_parts_from_the_process_start() -> None:
    started = costs.process_started_at()
    assert started is not None and started <= time.time()  # Linux: from /proc
    clock = costs.Clock(started_at=100.0, stamps=[])
    clock.stamps[0] = ("start_and_imports", 103.0)
    for part, at in zip(costs.PARTS[1:], (104.0, 110.0, 111.0, 111.5)):
        clock.stamps.append((part, at))
    done = clock.record(cells=5.0)
    assert done["seconds"] == {"start_and_imports": 3.0, "params_and_mlflow_open": 1.0, "study": 6.0, "write": 1.0,
                               "mlflow_log": 0.5, "cells": 5.0}
    assert (done["started_at"], done["ended_at"]) == (100.0, 111.5)
    with pytest.raises(ValueError, match="not one of"):
        clock.stamp("lunch")


def test_the_table_orders_stages_and_splits_the_time_between_and_inside_them() -> None:
    records = {"b": record(20.0, [2, 1, 10, 1, 1], cells=9.0), "a": record(0.0, [3, 1, 4, 1, 1])}
    # Two at once, then one after the first (two job slots); the kept one is another run's.
    done = [cell(21, 4.0, 3.0, 3e9), cell(21.5, 4.0, 3.0, 3e9), cell(25, 4.0, 2.0, 2e9),
            cell(0, 50.0, 40.0, 1e12, True)]
    table = costs.stage_costs(records, {"b": done}, peak_flops=2e9)
    assert list(table.stage) == ["a", "b"]  # the order they ran in
    a, b = table.to_dict("records")
    assert a["wall"] == 10 and pd_isna(a["dvc_before"]) and b["dvc_before"] == 10  # a ended at 10, b started at 20
    assert b["cells"] == 3 and b["cell_train"] == 8  # the kept cell is not this run's work
    assert costs.job_slots(done[:3]) == 2 and costs.job_slots(done[:1]) == 1
    assert b["cells_outside"] == pytest.approx(9.0 - 12.0 / 2)  # two job slots
    assert b["gflops_per_thread"] == pytest.approx(1.0) and b["share_of_peak"] == pytest.approx(0.5)
    text = costs.format_table(table, 2e9)
    assert text.splitlines()[1].startswith("a ") and "35 s wall" in text and "10 s between them" in text
    assert costs.format_table(costs.stage_costs({}, {})).startswith("no stage run records a timing")


def pd_isna(value: float) -> bool:
    return value != value


def test_beyond_gd_costs_reads_the_workspaces_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    for stage, start in (("baseline", 0.0), ("optimizer_grid", 30.0)):
        (tmp_path / "data" / stage).mkdir(parents=True)
        (tmp_path / "data" / stage / "run.json").write_text(json.dumps(record(start, [1, 1, 20, 1, 1])))
    kept = tmp_path / "data" / "optimizer_grid" / "cells" / "sgd-0"
    kept.mkdir(parents=True)
    (kept / "result.json").write_text(json.dumps({**cell(0, 4.0, 3.0, 3e9), "parent_run_id": "an earlier run"}))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "run.json").write_text(json.dumps({"mlflow_run_id": "x"}))  # recorded no timing
    records, cells = costs.read_records(tmp_path)
    assert set(records) == {"baseline", "optimizer_grid", "report"} and cells["optimizer_grid"][0]["reused"]
    monkeypatch.chdir(tmp_path)
    cli(["costs", "--no-peak"])
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:3]] == ["baseline", "optimizer_grid"] and "2 stages" in out[3]
