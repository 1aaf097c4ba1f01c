"""The upstream stages' artifacts, read once, and only through what an entry declares.

A figure or claim names the files it reads as `Need(artifact, file)`; it gets
a `View` that refuses any other file, so the declared needs (and the
report stage's DVC deps built from them) cannot drift from what is read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from beyond_gd.errors import DataError
# Every upstream stage's detail (its metrics.json holds only headline numbers, unread here).
from beyond_gd.study import SUMMARY


class Need(NamedTuple):
    artifact: str  # an upstream stage's output folder, by the report's argument name (`--random-walk`)
    file: str  # a file in it


@dataclass
class Artifacts:
    """Upstream output folders by artifact name; each file parsed at most once."""

    dirs: Mapping[str, Path]
    _cache: dict[Need, Any] = field(default_factory=dict)
    _hashes: dict[Need, str] = field(default_factory=dict)

    def path(self, need: Need) -> Path:
        if need.artifact not in self.dirs:
            raise DataError(f"{need.artifact}: no folder given for this artifact (--{_flag(need.artifact)})")
        return Path(self.dirs[need.artifact]) / need.file

    def missing(self, needs: Iterable[Need]) -> list[Need]:
        return [n for n in needs if n.artifact not in self.dirs or not self.path(n).is_file()]

    def load(self, need: Need) -> Any:
        if need not in self._cache:
            path = self.path(need)
            if not path.is_file():
                raise DataError(f"{path}: missing (an output of the stage behind --{_flag(need.artifact)}; "
                                f"run `dvc repro` first)")
            try:
                self._cache[need] = _read(path)
            except (ValueError, OSError) as exc:
                raise DataError(f"{path}: unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})")\
                    from None
        return self._cache[need]

    def sha256(self, need: Need) -> str:
        """The content hash of one input (each file hashed once)."""
        if need not in self._hashes:
            self._hashes[need] = hashlib.sha256(self.path(need).read_bytes()).hexdigest()
        return self._hashes[need]

    def digest(self, need: Need) -> str:
        """A short content hash of one input, for the page's provenance."""
        return self.sha256(need)[:12]

    def view(self, needs: Iterable[Need]) -> View:
        return View(self, frozenset(needs))


@dataclass(frozen=True)
class View:
    """What one figure or claim may read: the files it declared, nothing else (what a study gets is
    `beyond_gd.study.Inputs`, another thing)."""

    artifacts: Artifacts
    needs: frozenset[Need]

    def csv(self, artifact: str, file: str) -> pd.DataFrame:
        return self._get(artifact, file)

    def json(self, artifact: str, file: str = SUMMARY) -> dict[str, Any]:
        return self._get(artifact, file)

    def npz(self, artifact: str, file: str) -> Mapping[str, np.ndarray]:
        return self._get(artifact, file)

    def _get(self, artifact: str, file: str) -> Any:
        need = Need(artifact, file)
        if need not in self.needs:
            # A programming error, not a user's: the entry reads a file it did not declare.
            raise KeyError(f"{artifact}/{file} is read but not declared in the entry's needs")
        return self.artifacts.load(need)


def _read(path: Path) -> Any:
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".json":
        return json.loads(path.read_text())
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    raise ValueError(f"no reader for {path.suffix} files")


def _flag(artifact: str) -> str:
    return artifact.replace("_", "-")
