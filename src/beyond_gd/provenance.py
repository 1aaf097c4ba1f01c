"""Where a run came from: the workspace, its git commit, a hash of the params, the machine, the libraries.

Read by the MLflow tags (beyond_gd.tracking) and by the report's provenance
block; nothing here changes a number a study computes.
"""

from __future__ import annotations

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
