"""What a study is: `run(cfg, inputs) -> Result`, with no argv, no file writes and no MLflow.

A study module (`beyond_gd.studies.<name>`) holds its `Config` (a schema whose
fields are the params sections it reads, validated by `config.load`) and a
`run` that turns the config and its `Inputs` into a `Result`: the tables,
arrays and numbers the stage writes, the curves MLflow records, the lines it
prints. Tests, notebooks and benchmarks call `run` directly on a config
composed with Hydra's compose API; the one stage runner (`beyond_gd.stage`)
does argv, params, the atomic write and the MLflow run around it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from beyond_gd.errors import DataError

if TYPE_CHECKING:  # torch and pandas only for types: the toy studies run without importing torch
    import pandas as pd
    import torch

# Beside its own files every stage writes its headline numbers (what `dvc metrics show` lists), the detail
# the report reads, and the record of the MLflow run that made them.
METRICS, SUMMARY, RECORD = "metrics.json", "summary.json", "run.json"


def plain(data: Any) -> Any:
    """JSON-safe data: mappings and sequences walked, numpy scalars as Python numbers, NaN, inf and pandas'
    <NA> as null (strict JSON has none of them). The runner writes every JSON document through it."""
    if isinstance(data, Mapping):
        return {str(k): plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [plain(v) for v in data]
    if isinstance(data, np.generic):
        data = data.item()
    # pandas' <NA> exists only once pandas is imported; the toy studies run without it.
    if (pandas := sys.modules.get("pandas")) is not None and data is pandas.NA:
        return None
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def number_key(value: float) -> str:
    """A number as part of a metric's or summary entry's name: 0.5 -> "0_5", -1 -> "m1". DVC joins nested
    keys with dots, so the number's own dot goes (and its minus sign, which would read as a range)."""
    return f"{value:g}".replace(".", "_").replace("-", "m")


@dataclass
class Series:
    """Curves for MLflow: name -> values at `steps`."""

    steps: Sequence[int]
    values: Mapping[str, Sequence[float]]


@dataclass
class Result:
    """What a study hands the runner. Every file name is relative to the stage's output folder."""

    # The headline numbers: metrics.json, what `dvc metrics show` and `dvc exp show` list.
    metrics: dict[str, float | int | bool | None] = field(default_factory=dict)
    # The detail the report reads: summary.json.
    summary: dict[str, Any] = field(default_factory=dict)
    # Long-format tables, one CSV each ("curves/a.csv" makes a folder).
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    # NPZ files: name -> their arrays.
    arrays: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    # Other JSON documents (name -> plain data).
    documents: dict[str, Any] = field(default_factory=dict)
    # torch state_dicts (name -> state_dict).
    checkpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Files as bytes (the MNIST IDX files).
    files: dict[str, bytes] = field(default_factory=dict)
    # Files and folders the study made under `inputs.workdir` (launched jobs' cells, figures).
    made: tuple[str, ...] = ()
    # For MLflow only: curves, scalars and tags that no artifact holds (seconds, rates).
    series: list[Series] = field(default_factory=list)
    logged: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    # The figures each upstream stage feeds (the report's registry knows): their experiments' descriptions.
    feeds: dict[str, list[str]] = field(default_factory=dict)
    # What the stage prints when it is done.
    lines: list[str] = field(default_factory=list)

    def outputs(self) -> list[str]:
        """The top-level names this result writes (each folder once), metrics.json and summary.json included."""
        names = [*self.tables, *self.arrays, *self.documents, *self.checkpoints, *self.files, *self.made]
        if self.metrics:
            names.append(METRICS)
        if self.summary:
            names.append(SUMMARY)
        return list(dict.fromkeys(n.split("/")[0] for n in names))


@dataclass
class Inputs:
    """What a study gets besides its config: the device, where upstream artifacts lie, a work folder.

    The runner fills it from argv and the MLflow run; a test builds one by hand.
    A study reads its upstream artifacts with their own loaders
    (`data.mnist.load_tensors`, `model.load_state`) from `folder(name)`.
    """

    device: str = "cpu"
    # Upstream stages' output folders, by stage name (the `mnist` folder is torchvision's root).
    folders: Mapping[str, Path] = field(default_factory=dict)
    # A fresh folder for what the study's jobs write themselves (Result.made).
    workdir: Path | None = None
    # Runs a list of training cells (beyond_gd.cells) through the configured launcher.
    run_cells: Callable[[list[Any]], list[Any]] | None = None
    # The MLflow run recording this study (only named in the report's provenance).
    run_id: str = ""
    # The stage's output folder as its last run left it: a study keeps from there what has not changed
    # (the outputs its stage `keeps`, which DVC leaves in place); None: draw or compute everything.
    previous: Path | None = None
    progress: bool = False
    # How many processes `map` may run at once (the runner: the cores this process may use, on the CPU).
    jobs: int = 1

    def folder(self, name: str) -> Path:
        if name not in self.folders:
            raise DataError(f"{name}: no folder given for this input (--{name.replace('_', '-')})")
        return Path(self.folders[name])

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """`fn` over independent `items`, each call at one torch thread with deterministic kernels, in up to
        `jobs` processes at once (`runtime.map_one_thread`): the same results for any `jobs`. `fn` and the
        items must pickle (a module-level function, dataclasses of plain data and tensors)."""
        from beyond_gd.runtime import map_one_thread

        return map_one_thread(fn, items, self.jobs)

    @cached_property
    def torch_device(self) -> torch.device:
        import torch

        return torch.device(self.device)
