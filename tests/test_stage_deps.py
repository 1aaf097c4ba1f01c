"""dvc.yaml declares, for each stage, exactly the code, params, inputs and outputs it uses."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from beyond_gd import stages
from beyond_gd.provenance import RECORDING_ONLY, code_closure
from conftest import REPO

# Modules whose edits change no artifact: no stage declares them, and their imports count only through others.
NOT_DEPS = {REPO / "src" / Path(*m.split(".")).with_suffix(".py") for m in RECORDING_ONLY}
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]


def has_code(path: Path) -> bool:
    """A package __init__ holding only a docstring changes nothing a stage computes."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in body)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_exactly_the_code_it_imports(stage: str) -> None:
    match = re.match(r"python -m (beyond_gd\.\S+)", STAGES[stage]["cmd"])
    assert match, f"{stage}: its cmd is not `python -m beyond_gd....`"
    used = code_closure(match.group(1))
    declared = {REPO / d for d in STAGES[stage].get("deps", []) if d.startswith("src/")}
    missing = {p for p in used - declared - NOT_DEPS if p.name != "__init__.py" or has_code(p)}
    assert not missing, f"{stage}: imports but does not declare {sorted(str(p.relative_to(REPO)) for p in missing)}"
    extra = declared - used
    assert not extra, f"{stage}: declares but does not import {sorted(str(p.relative_to(REPO)) for p in extra)}"


# --------------------------------------------------------------------------
# Params, outputs, inputs and descriptions: dvc.yaml against the stage declarations
# --------------------------------------------------------------------------
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def declared(stage: str) -> Any:
    return importlib.import_module(f"beyond_gd.stages.{stage}").STAGE


def resolve(key: str) -> str:
    """A params key with DVC's ${...} templating filled in from params.yaml."""
    def value(match: re.Match[str]) -> str:
        node: Any = PARAMS
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([^}]+)\}", value, key)


def test_every_stage_module_is_in_dvc_yaml() -> None:
    modules = {m.name for m in pkgutil.iter_modules(stages.__path__)}
    assert modules == set(STAGES)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_params_are_the_sections_its_config_reads(stage: str) -> None:
    keys = [resolve(k) for k in STAGES[stage]["params"]]
    for key in keys:
        node: Any = PARAMS
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"{stage}: declares {key}, which params.yaml lacks"
            node = node[part]
    sections = {f.name for f in dataclasses.fields(declared(stage).config)}
    assert {k.split(".")[0] for k in keys} == sections, stage


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_every_optimizer_entry_its_section_names(stage: str) -> None:
    """A study that names entries of `optimizers` (a list or a mapping in its section) declares each."""
    keys = {resolve(k) for k in STAGES[stage]["params"]}
    if "optimizers" in keys:
        return
    own, entries = PARAMS[stage], set(PARAMS["optimizers"])

    def names(node: Any) -> set[str]:  # every string of the section that names an entry, and the lrs' keys
        if isinstance(node, dict):
            return set(node) & entries | {n for v in node.values() for n in names(v)}
        if isinstance(node, list):
            return {n for v in node for n in names(v)}
        return {node} & entries if isinstance(node, str) else set()

    named = names(own)
    if stage == "update_rules":
        from beyond_gd.optim import rules

        named |= {c.optimizer for c in rules.COMPARISONS} | {own["adam_bias"]["optimizer"]}
    assert {f"optimizers.{n}" for n in named} <= keys, stage


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_outputs_and_inputs_match_its_declaration(stage: str) -> None:
    spec, st = STAGES[stage], declared(stage)

    def paths(entries: list[Any]) -> set[str]:
        return {next(iter(e)) if isinstance(e, dict) else e for e in entries}

    written = {f"{st.default_out}/{name}" for name in [*st.outputs, "run.json"]}
    assert paths(spec.get("outs", [])) | paths(spec.get("metrics", [])) == written
    flags = "".join(f" --{n.replace('_', '-')} data/{n}" for n in st.inputs)
    assert spec["cmd"] == f"python -m beyond_gd.stages.{stage}" + (flags if stage != "report" else ""), stage
    data = [d for d in spec["deps"] if d.startswith("data/")]
    for name in st.inputs:
        assert any(d.startswith(f"data/{name}/") for d in data), f"{stage}: reads data/{name} but declares none of it"
    assert spec["desc"] == st.computes, f"{stage}: dvc.yaml's desc is not the stage docstring's first paragraph"


@pytest.mark.parametrize("stage", sorted(s for s in STAGES if declared(s).launch is not None))
def test_launched_cells_persist_so_finished_ones_are_kept(stage: str) -> None:
    """DVC removes a stage's outputs before it runs it, unless they persist: the cells must, or the
    launcher would find none to keep (`beyond_gd.launch`)."""
    outs = {next(iter(o)): o[next(iter(o))] for o in STAGES[stage]["outs"] if isinstance(o, dict)}
    assert outs.get(f"data/{stage}/cells") == {"persist": True}
