"""The figure registry: one module per figure in page order, what the figures read, one figure drawn.

Drawing every figure needs every stage's artifacts (tests/test_report.py
builds them); here only the registry and the artifact contract are checked,
Fig 6-3 is drawn from the synthetic interpolate artifacts of test_claims, and
a figure whose data did not run (the longer budget outside the thorough
profile) is listed on the pages without an image, uncounted.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import yaml

from beyond_gd.report import build, figures, grid
from beyond_gd.report.claims import VerdictRules
from beyond_gd.report.figures import CLAIMS, FIGURES
from beyond_gd.report.registry import FigureParams, FigureSpec
from beyond_gd.report.style import Style, apply
from conftest import report_reads
from test_claims import BOOK, identifiability, interpolate, notebook, write

REPO = Path(__file__).resolve().parents[1]
# The figure modules in the order the package imports them (the page order).
MODULES = [name for name, value in vars(figures).items()
           if isinstance(value, ModuleType) and value.__name__ == f"{figures.__name__}.{name}"]
CONF = yaml.safe_load((REPO / "conf" / "report" / "default.yaml").read_text())
ARTIFACTS = set(report_reads())


def module_of(obj: object) -> str:
    return obj.__module__.rsplit(".", 1)[-1]


def test_every_module_registers_its_figures_in_page_order() -> None:
    modules = [module_of(f.draw) for f in FIGURES]
    assert set(modules) == set(MODULES), "a module in MODULES without a figure, or a figure outside MODULES"
    assert [MODULES.index(m) for m in modules] == sorted(MODULES.index(m) for m in modules)
    names = [f.name for f in FIGURES]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"(fig6-\d\d|extra)-[a-z0-9-]+", n) for n in names), names
    book = [n for n in names if n.startswith("fig6-")]
    assert book == sorted(book), "the book's figures in the book's order"


def test_claims_live_beside_their_figures_in_page_order() -> None:
    modules = [module_of(c.check) for c in CLAIMS]
    assert set(modules) <= set(MODULES)
    assert [MODULES.index(m) for m in modules] == sorted(MODULES.index(m) for m in modules)
    assert all(set(c.needs) <= set(build.needs()) for c in CLAIMS)


def test_the_report_reads_the_artifact_contract() -> None:
    """summary.json for the detail, run.json for the run record; never dvc's metrics.json."""
    needs = build.needs()
    assert len(needs) == len(set(needs))
    assert set(build.artifact_names()) == ARTIFACTS
    assert not [n for n in needs if n.file == "metrics.json"]
    assert {n.artifact for n in needs if n.file == build.RUN_RECORD} == ARTIFACTS
    by_artifact = build.figures_by_artifact()
    assert list(by_artifact) == build.artifact_names()
    assert {t for titles in by_artifact.values() for t in titles} == {f.title for f in FIGURES}
    assert "Fig 6-9. Training with and without momentum: steps to a cost of 0.1" in by_artifact["momentum_speedup"]


def test_fig6_3_draws_from_synthetic_artifacts(tmp_path: Path) -> None:
    spec = next(f for f in FIGURES if f.name == "fig6-03-interpolation")
    artifacts = write(interpolate(width={"init": 0.45}), spec.needs, tmp_path)
    style = Style(**CONF["style"])
    apply(style)
    drawn = spec.draw(artifacts.view(spec.needs), FigureParams(**CONF["figures"]), style)
    assert len(drawn.figure.axes) >= 3
    assert "over 5 θ_rand" in drawn.measured and "0.06" in drawn.measured, drawn.measured


def test_fig6_2_draws_every_transform_the_stage_tries(tmp_path: Path) -> None:
    """The rescaling with k < 0 beside the symmetries and the control, each bar labelled."""
    spec = next(f for f in FIGURES if f.name == "fig6-02-permutation-symmetry")
    artifacts = write(identifiability(), spec.needs, tmp_path)
    style = Style(**CONF["style"])
    apply(style)
    drawn = spec.draw(artifacts.view(spec.needs), FigureParams(**CONF["figures"]), style)
    labels = [t.get_text() for ax in drawn.figure.axes for t in ax.get_xticklabels()]
    assert "rescaling, k < 0\n(not a symmetry)" in labels and "control\n(not a symmetry)" in labels, labels


def spec(name: str) -> FigureSpec:
    return next(f for f in FIGURES if f.name == name)


def test_a_figure_whose_data_did_not_run_is_listed_not_drawn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default profile's grid without its longer budget: extra-long-budget returns no figure, and build
    lists it with the reason, no image, no file, and counts only the drawn figure (the run's metrics.json)."""
    shown, absent = spec("fig6-03-interpolation"), spec("extra-long-budget")
    data = {**interpolate(), **BOOK, ("optimizer_grid", "long.csv"): pd.DataFrame(columns=["optimizer", "epoch"])}
    artifacts = write(data, shown.needs + absent.needs, tmp_path / "data")
    for name in ("interpolate", "optimizer_grid"):
        (tmp_path / "data" / name / build.RUN_RECORD).write_text(json.dumps(
            {"mlflow_run_id": f"run-{name}", "mlflow_experiment": f"beyond-gd/{name}"}))
    style = Style(**CONF["style"])
    drawn = absent.draw(artifacts.view(absent.needs), FigureParams(**CONF["figures"]), style)
    assert drawn.figure is None and "did not run in this profile" in drawn.measured, drawn.measured

    monkeypatch.setattr(build, "FIGURES", [shown, absent])
    monkeypatch.setattr(build, "CLAIMS", [])
    out = tmp_path / "out"
    out.mkdir()
    with build.Drawing(out, artifacts, style, FigureParams(**CONF["figures"])) as drawing:
        built = build.build(out, drawing, artifacts, {}, {}, VerdictRules(1, 0, 0.9, 1.0), {"git commit": "test"})
    assert [f.name for f in built.figures] == [shown.name]
    assert [f.name for f in built.not_drawn] == [absent.name]
    assert {p.stem for p in (out / "figures").iterdir()} == {shown.name, Path(build.DRAWN).stem}  # and the record
    page, readme = (out / "index.html").read_text(), (out / "README.md").read_text()
    for text in (page, readme):
        assert absent.title in text and "Not drawn:" in text and "long_budget.enabled is false" in text
        assert f"figures/{absent.name}." not in text and f"figures/{shown.name}.png" in text
    assert f'id="{absent.name}"' in page and f"{absent.title}</a> (not drawn)" in page


def test_fig6_3_notebook_draws_beside_ours_from_synthetic_artifacts(tmp_path: Path) -> None:
    """The notebook's line beside the interpolate stage's: both curves, and each difference in the table."""
    shown = spec("fig6-03-notebook")
    data = {**interpolate(), **notebook(),
            ("interpolate_notebook", "summary.json"): {"training": {"train_loss": 2.10, "steps": 37520, "lr": 1e-4,
                                                                    "final_relu": True, "diverged": False},
                                                       "alpha_step": 0.05, "flat_window": 0.1},
            ("baseline", "summary.json"): {"train_loss": 0.06}}
    artifacts = write(data, shown.needs, tmp_path)
    style = Style(**CONF["style"])
    apply(style)
    drawn = shown.draw(artifacts.view(shown.needs), FigureParams(**CONF["figures"]), style)
    assert len(drawn.figure.axes) >= 3 and all(len(ax.lines) >= 2 for ax in drawn.figure.axes[:3])
    assert "training loss 2.100" in drawn.measured and "(ours: 0.060)" in drawn.measured, drawn.measured
    assert "θ_rand seed_1 (ours init)" in drawn.measured, drawn.measured
    table = drawn.table.set_index("difference")
    assert table.loc["final ReLU on the logits"].tolist() == ["yes", "no (the book's text)"]
    assert table.loc["loss at α = 0 (nats)"].tolist() == ["2.1000", "0.0600"]


def test_the_heat_map_draws_a_search_the_rule_grew_and_a_search_of_one_lr(tmp_path: Path) -> None:
    """SGD's search grown by the interior rule (0.316 added beyond its edge) and Adam's of one lr (as the smoke
    profile's, which reads back from summary.csv as a number): the heat map marks the added cell, places it
    beyond the configured search, and the search helpers read both rows."""
    data = copy.deepcopy(BOOK)
    summary, cells = data[("optimizer_grid", "summary.csv")], data[("optimizer_grid", "cells.csv")]
    sgd, adam = summary["optimizer"] == "sgd", summary["optimizer"] == "adam"
    summary.loc[sgd, "lrs"] = summary.loc[sgd, "lrs"] + " 0.316"
    summary["lrs_added"] = ["0.316" if name == "sgd" else "" for name in summary["optimizer"]]
    summary.loc[adam, ["lrs", "best_lr"]] = ["0.001", 0.001]
    extra = cells[(cells["optimizer"] == "sgd") & (cells["lr"] == 0.1)].assign(lr=0.316)
    data[("optimizer_grid", "cells.csv")] = pd.concat(
        [cells[(cells["optimizer"] != "adam") | (cells["lr"] == 0.001)], extra], ignore_index=True)
    style = Style(**CONF["style"])
    apply(style)
    figure = spec("extra-optimizer-grid-heatmap")
    artifacts = write(data, figure.needs, tmp_path)
    drawn = figure.draw(artifacts.view(figure.needs), FigureParams(**CONF["figures"]), style)
    assert any(t.get_text().startswith("+lr 0.316") for t in drawn.figure.axes[0].texts)
    assert "10^{1.5}" in " ".join(t.get_text() for t in drawn.figure.axes[0].get_xticklabels())
    rows = artifacts.view(figure.needs).csv("optimizer_grid", "summary.csv").set_index("optimizer")
    assert grid.added(rows.loc["sgd"]) == [0.316] and grid.configured(rows.loc["sgd"])[-1] == 0.1
    assert grid.search(rows.loc["adam", "lrs"]) == [0.001] and grid.added(rows.loc["adam"]) == []
