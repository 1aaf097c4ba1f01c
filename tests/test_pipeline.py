"""dvc.yaml and the stage docs are generated from the stage declarations; the rules that write them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from beyond_gd import pipeline
from beyond_gd.config import ModelConfig, dvc_params, entries, load, optimizer_names, required, resolved
from beyond_gd.errors import ConfigError
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.stage import Stage
from conftest import REPO, composed

PARAMS = composed()
STAGES = pipeline.declared()


@pytest.mark.parametrize("path", sorted(pipeline.generated(PARAMS)), ids=str)
def test_committed_file_is_the_generated_one(path: Path) -> None:
    """Like params.yaml from conf/: the committed map is what the declarations write."""
    assert path.read_text() == pipeline.generated(PARAMS)[path], f"{path.name} is stale: run `make pipeline`"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_declared_param_exists_and_every_named_optimizer_is_declared(stage: str) -> None:
    """Independent of the markers: every string of a study's section that names an optimizer entry (and
    every key of a mapping in it that does) is among the declared params, or the whole section is."""
    keys = {resolved(k, PARAMS) for k in dvc_params(load(PARAMS, STAGES[stage].config))}
    for key in keys:
        node: Any = PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{stage}: declares {key}, which params.yaml lacks"
            node = node[part]
    if "optimizers" in keys or "optimizers" not in {k.split(".")[0] for k in keys} | {stage}:
        return
    entries_ = set(PARAMS["optimizers"])

    def names(node: Any) -> set[str]:
        if isinstance(node, dict):
            return set(node) & entries_ | {n for v in node.values() for n in names(v)}
        if isinstance(node, list):
            return {n for v in node for n in names(v)}
        return {node} & entries_ if isinstance(node, str) else set()

    assert {f"optimizers.{n}" for n in names(PARAMS[stage])} <= keys, stage


# A synthetic study: each way a Config says what it reads.
@dataclass
class Section:
    optimizer: str = optimizer_names(nonempty=True)
    others: list[str] = optimizer_names()
    fallback: str | None = optimizer_names(optional=True)
    steps: int = required(gt=0)


@dataclass
class Study:
    study: Section
    optimizers: dict[str, OptimizerSpec] = entries("adam")
    model: ModelConfig = entries("in_dim", "out_dim")


@dataclass
class Grid:
    lrs: dict[str, list[float]] = optimizer_names()


@dataclass
class GridStudy:
    grid: Grid
    optimizers: dict[str, OptimizerSpec]


def test_params_read_templates_a_name_resolves_lists_and_narrows_sections() -> None:
    params = {**PARAMS, "study": {"optimizer": "sgd", "others": ["sgd_momentum", "sgd"], "fallback": None,
                                  "steps": 3}}
    assert dvc_params(load(params, Study)) == [
        "study", "optimizers.adam", "optimizers.${study.optimizer}", "optimizers.sgd_momentum", "optimizers.sgd",
        "model.in_dim", "model.out_dim"]
    params["study"]["fallback"] = "rmsprop"  # an optional name cannot be templated (it may be null)
    assert dvc_params(load(params, Study))[-3] == "optimizers.rmsprop"
    # A mapping keyed by name grows with conf/: the whole section.
    assert dvc_params(load({**PARAMS, "grid": {"lrs": {"sgd": [0.1]}}}, GridStudy)) == ["grid", "optimizers"]


def test_a_named_optimizer_outside_the_section_is_one_line() -> None:

    params = {**PARAMS, "study": {"optimizer": "sgd", "others": ["nadam"], "fallback": None, "steps": 3}}
    with pytest.raises(ConfigError, match=r"^study.others: 'nadam' is not in the optimizers section \(choose"):
        load(params, Study)


def stage(name: str, *inputs: str) -> Stage:
    return Stage(name, Study, lambda cfg, inputs: None, f"Stage `{name}`.", outputs=(), inputs={i: ("x",) for i in inputs})


def test_order_puts_upstream_first_and_then_the_report_page_order() -> None:
    found = {"report": stage("report", "z_toy", "baseline"), "baseline": stage("baseline", "mnist"),
             "mnist": stage("mnist"), "z_toy": stage("z_toy"), "surfaces": stage("surfaces")}
    # surfaces draws Fig 6-1, and the baseline (through mnist) feeds Fig 6-2's stage downstream of it.
    order = pipeline.ordered(found)
    assert order.index("mnist") < order.index("baseline") < order.index("report") == len(order) - 1
    assert order[0] == "surfaces"
    found["mnist"] = stage("mnist", "report")
    with pytest.raises(ValueError, match="cycle"):
        pipeline.ordered(found)


def test_code_deps_follow_imports_but_not_the_recording_modules() -> None:
    deps = pipeline.code_deps("beyond_gd.stages.random_walk")
    assert "src/beyond_gd/toys/random_walk.py" in deps and "src/beyond_gd/stage.py" in deps
    assert "src/beyond_gd/tracking.py" not in deps and "src/beyond_gd/errors.py" not in deps
    # The cells' code is imported lazily by no toy: the grid has it, the walk does not.
    assert "src/beyond_gd/cells.py" in pipeline.code_deps("beyond_gd.stages.optimizer_grid")
    assert "src/beyond_gd/cells.py" not in deps


def test_the_generated_map_runs_each_stage_on_its_declaration() -> None:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert list(spec["stages"]) == list(STAGES)
    for name, st in STAGES.items():
        entry = spec["stages"][name]
        assert entry["desc"] == st.computes
        outs = {next(iter(o)) if isinstance(o, dict) else o: o for o in entry["outs"]}
        if st.launch is not None:  # DVC removes outputs before a run unless they persist: the cells must
            assert outs[f"data/{name}/cells"] == {f"data/{name}/cells": {"persist": True}}
        for upstream, files in st.inputs.items():
            assert all(f"{STAGES[upstream].default_out}/{f}" in entry["deps"] for f in files)
            produced = {Path(p).name for p in spec["stages"][upstream]["outs"] if isinstance(p, str)} | {
                Path(next(iter(p))).name for p in spec["stages"][upstream]["outs"] if isinstance(p, dict)}
            assert set(files) <= produced, f"{name} reads {files} of {upstream}, which writes {sorted(produced)}"
    plotted = [next(iter(p)) for p in spec["plots"]]
    assert len(plotted) == len(set(plotted))
