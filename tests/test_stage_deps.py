"""dvc.yaml declares, for each stage, exactly the source files its command imports."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO

SRC = REPO / "src"
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
# Exception classes and their messages change no artifact: editing them must
# not re-run the pipeline, so no stage declares them.
NOT_DEPS = {SRC / "beyond_gd" / "errors.py"}


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def imported(path: Path, package: str) -> set[str]:
    """The beyond_gd modules (and their packages) that `path` imports, absolute names."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the submodule when there is one.
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    out = set()
    for name in (n for n in names if n.split(".")[0] == "beyond_gd"):
        parts = name.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i]))}
    return out


def closure(module: str) -> set[Path]:
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += imported(path, package) | {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {module_file(n) for n in seen}


def has_code(path: Path) -> bool:
    """A package __init__ holding only a docstring changes nothing a stage computes."""
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)) for s in body)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_stage_declares_exactly_the_code_it_imports(stage: str) -> None:
    match = re.match(r"python -m (beyond_gd\.\S+)", STAGES[stage]["cmd"])
    assert match, f"{stage}: its cmd is not `python -m beyond_gd....`"
    used = closure(match.group(1))
    declared = {REPO / d for d in STAGES[stage].get("deps", []) if d.startswith("src/")}
    missing = {p for p in used - declared - NOT_DEPS if p.name != "__init__.py" or has_code(p)}
    assert not missing, f"{stage}: imports but does not declare {sorted(str(p.relative_to(REPO)) for p in missing)}"
    extra = declared - used
    assert not extra, f"{stage}: declares but does not import {sorted(str(p.relative_to(REPO)) for p in extra)}"
