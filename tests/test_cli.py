"""The `beyond-gd` command: what the pipeline holds, from the checkout's root."""

from __future__ import annotations

import pytest
import yaml

from beyond_gd import cli
from beyond_gd.report.figures import CLAIMS, FIGURES
from beyond_gd.report.registry import OUTCOMES
from conftest import REPO


@pytest.fixture(autouse=True)
def _at_the_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DVC_ROOT", raising=False)


def test_stages_lists_every_stage_with_its_params_outputs_and_figures(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["stages"])
    out = capsys.readouterr().out
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        assert f"\n{name}: " in f"\n{out}", name
        assert f"  params: {', '.join(stage['params'])}" in out, name
    assert "  writes: data/interpolate\n" in out and "  writes: reports\n" in out
    assert "  feeds: Fig 6-9. Training with and without momentum: steps to a cost of 0.1" in out


def test_figures_lists_every_figure_and_claim_with_the_reports_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    cli.main(["figures"])
    out = capsys.readouterr().out
    for spec in FIGURES:
        assert f"{spec.name}: {spec.title}" in out
    verdicts = {line.split(": ")[0].removeprefix("  claim "): line.split(": ")[1]
                for line in out.splitlines() if line.startswith("  claim ")}
    assert set(verdicts) == {c.id for c in CLAIMS}
    # The committed report has checked all of them: each has an outcome of its kind.
    for c in CLAIMS:
        assert verdicts[c.id] in OUTCOMES[c.kind], (c.id, verdicts[c.id])


def test_open_without_a_report_is_one_line(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"^error: .*reports/index\.html: missing \(run `dvc repro`\)$"):
        cli.main(["open"])


def _rev(rev: str, name: str | None, params: dict, metrics: dict, exps: list | None = None) -> dict:
    """One entry of `dvc exp show --json`: a commit (or an experiment's rev) with its params and metrics."""
    return {"rev": rev, "name": name, "experiments": exps, "error": None,
            "data": {"rev": rev, "params": {"params.yaml": {"data": params}},
                     "metrics": {"metrics.json": {"data": metrics}}, "deps": {"src/x.py": {"hash": rev}}}}


def _exp(rev: str, name: str, params: dict, metrics: dict) -> dict:
    return {"name": name, "executor": None, "revs": [_rev(rev, name, params, metrics)]}


BASE = {"interpolate": {"alpha_step": 0.05}, "random_walk": {"seed": 0, "momenta": [0.5, 0.9]},
        "report": {"style": {"dpi": 150}}}


def _with(path: str, value: object) -> dict:
    import copy

    params = copy.deepcopy(BASE)
    *parents, key = path.split(".")
    node = params
    for p in parents:
        node = node[p]
    node[key] = value
    return params


def test_exps_is_one_line_per_param_or_metric_that_differs_and_fits_the_width() -> None:
    """The README's queued experiments as DVC shows them (JSON): only what differs, on its side, within
    120 columns, the names whole; the workspace row and the deps left out."""
    metrics = {"interpolate": {"train_loss_at_1": 2.3041234, "flat_ratio": 0.0212},
               "random_walk": {"std_error": 0.00123}}
    shown = [_rev("workspace", None, BASE, metrics),
             _rev("a" * 40, "main", BASE, metrics, [
                 _exp("b" * 40, "coarse-alpha", _with("interpolate.alpha_step", 0.25),
                      {**metrics, "interpolate": {"train_loss_at_1": 2.2999, "flat_ratio": 0.0212}}),
                 _exp("c" * 40, "walk-seed-7", _with("random_walk.seed", 7),
                      {**metrics, "random_walk": {"std_error": 0.00131}}),
                 _exp("d" * 40, "low-dpi", _with("report.style.dpi", 60), metrics)])]
    out = cli.experiments(shown, width=120)
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 120, out
    assert lines[0].split() == ["main", "coarse-alpha", "walk-seed-7", "low-dpi"], out
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:] if line.startswith("  ")}
    assert rows == {"interpolate.alpha_step": ["0.05", "0.25", "0.05", "0.05"],
                    "random_walk.seed": ["0", "0", "7", "0"], "report.style.dpi": ["150", "150", "150", "60"],
                    "interpolate.train_loss_at_1": ["2.304", "2.3", "2.304", "2.304"],
                    "random_walk.std_error": ["0.00123", "0.00123", "0.00131", "0.00123"]}, out
    assert [line for line in lines if not line.startswith(" ")] == ["params", "metrics"]
    # Narrower than four experiments: blocks of experiments, each with every line.
    narrow = cli.experiments(shown, width=70)
    assert max(len(line) for line in narrow.splitlines()) <= 70 and narrow.count("interpolate.alpha_step") == 2


def test_exps_without_experiments_says_so() -> None:
    assert cli.experiments([_rev("workspace", None, BASE, {}), _rev("a" * 40, "main", BASE, {})]) == (
        "the experiments shown do not differ in any param or metric")


def test_the_ui_view_shows_the_metrics_most_runs_carry_sorted_by_the_score() -> None:
    """The grid's experiment: its stage run carries its own summary numbers, each cell run the cells' scores;
    the view's columns are the cells' (the score first) and the table is sorted by the score, which also
    lists the cells as rows of their own."""
    cells = [{"train_loss": 0.1 * k, "test_accuracy": 0.9, "steps": 938.0} for k in range(5)]
    stage = {"ranking.sgd.rank": 1.0, "cells": 5.0}
    view = cli.runs_view([stage, *cells], sort="train_loss")
    assert view == {"selectedColumns": ["metrics.`train_loss`", "metrics.`steps`", "metrics.`test_accuracy`"],
                    "orderByKey": "metrics.`train_loss`", "orderByAsc": True}
    assert "orderByKey" not in cli.runs_view([stage], sort="train_loss")  # no run has the score: no sort


def test_exps_names_a_metric_by_the_shortest_part_of_its_files_path_that_tells_it_apart() -> None:
    """Several metrics files (a stage's each): a metric is led by its stage's folder, not the whole path."""
    def rev(rev: str, name: str, seed: int, error: float) -> dict:
        return {"rev": rev, "name": name, "experiments": None, "data": {
            "params": {"params.yaml": {"data": {"random_walk": {"seed": seed}}}},
            "metrics": {"data/random_walk/metrics.json": {"data": {"std_error": error}},
                        "reports/metrics.json": {"data": {"figures": 29}}}}}

    base = rev("a" * 40, "main", 0, 0.001)
    base["experiments"] = [{"name": "walk-seed-7", "revs": [rev("b" * 40, "walk-seed-7", 7, 0.002)]}]
    rows = [line.split() for line in cli.experiments([base]).splitlines()[1:]]
    assert rows == [["params"], ["random_walk.seed", "0", "7"],
                    ["metrics"], ["random_walk.std_error", "0.001", "0.002"]]
