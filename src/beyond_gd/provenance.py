"""Where a run came from: the workspace, its git commit, a hash of the params, the machine, the libraries.

Read by the MLflow tags (beyond_gd.tracking), by the report's provenance
block, by the pipeline (a stage's code deps, `code_closure`), and by a training
cell's key (`code_hash` of the job that runs it, beyond_gd.cell_job); nothing
here changes a number a study computes.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def workspace_root() -> Path:
    """The DVC workspace: `DVC_ROOT` when DVC runs the stage (also in a queued experiment's temp
    copy), else the current directory."""
    return Path(os.environ.get("DVC_ROOT") or Path.cwd()).resolve()


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (what `taskset` and a scheduler's CPU set
    limit), not the machine's count (`os.cpu_count`), which ignores both."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def git(*args: str) -> str:
    """A git command's output in the workspace; empty where git or the repository is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=workspace_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def git_commit() -> str:
    return git("rev-parse", "HEAD")


def git_dirty() -> bool:
    """Uncommitted changes to tracked files."""
    return bool(git("status", "--porcelain", "--untracked-files=no"))


def params_hash(params: Mapping[str, Any]) -> str:
    """A short, order-independent hash of the params a stage read."""
    blob = json.dumps(params, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cpu_name() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def device_name(device_type: str) -> str:
    """The accelerator's or the CPU's model name."""
    if device_type == "cuda":
        import torch

        return torch.cuda.get_device_name()
    if device_type == "cpu":
        return cpu_name()
    return platform.processor() or device_type


def library_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions of the named distributions (those installed)."""
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


# --------------------------------------------------------------------------
# The code a module runs: its beyond_gd imports, followed statically
# --------------------------------------------------------------------------
# Modules that change no artifact, so what they import counts only through others (and no stage declares
# them): exception classes and their messages, the MLflow recording (what it leaves in an artifact, a
# run's id, stays valid when its code changes) and the timing a run records (beyond_gd.costs: seconds).
RECORDING_ONLY = ("beyond_gd.errors", "beyond_gd.tracking", "beyond_gd.costs")
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the folder holding beyond_gd/


def code_closure(module: str, skip: Iterable[str] = RECORDING_ONLY) -> set[Path]:
    """The source files of `module` and of every beyond_gd module it imports, transitively (`import`
    statements anywhere in a file, read with `ast`, so lazy imports count), `skip` not followed."""
    skipped, seen, todo = set(skip), set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        if name in skipped:
            continue
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo += _imported(path, package) | {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return {_module_file(n) for n in seen}


def code_hash(module: str, skip: Iterable[str] = RECORDING_ONLY) -> str:
    """A short hash of the code `module` runs: each file of its `code_closure` (the `skip` modules, by
    default the recording-only ones, left out) as its syntax tree without docstrings, so an edit of a
    comment or a docstring changes nothing and an edit of a statement, anywhere in the closure, changes
    the hash."""
    skip = tuple(skip)
    digest = hashlib.sha256()
    for path in sorted(code_closure(module, skip) - {_module_file(m) for m in skip}):
        digest.update(path.relative_to(PACKAGE_ROOT).as_posix().encode() + b"\0" + code_text(path).encode() + b"\0")
    return digest.hexdigest()[:16]


def code_text(path: Path) -> str:
    """A module's code as `ast.dump` of its tree without docstrings (comments the parser drops already):
    every statement that is a bare string, a docstring or not, does nothing, so all of them go."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            kept = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                            and isinstance(s.value.value, str))]
            node.body = kept or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.dump(tree)


def _module_file(name: str) -> Path | None:
    base = PACKAGE_ROOT / Path(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imported(path: Path, package: str) -> set[str]:
    """The beyond_gd modules (and their packages) that `path` imports, by absolute name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            # `from pkg import mod` imports the submodule when there is one.
            names |= {base} | {f"{base}.{a.name}" for a in node.names}
    found = set()
    for name in (n for n in names if n.split(".")[0] == "beyond_gd"):
        parts = name.split(".")
        found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1) if _module_file(".".join(parts[:i]))}
    return found
