"""A training cell's key covers what the cell computes, and nothing else.

The key hashes the cell's config, the code its job runs (`beyond_gd.cell_job` and what it imports, read as
syntax trees without docstrings), the torch version, the device and the threads. Each test edits a copy of
the package that the code hash reads (`provenance.PACKAGE_ROOT` pointed at it), so the running code stays
what it is.
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from beyond_gd import provenance
from beyond_gd.cell_job import MODULE, JobContext, cell_code, cell_key
from beyond_gd.cells import CellConfig
from beyond_gd.launch import LauncherConfig, run_cells_here, write_launch_config
from beyond_gd.studies import lbfgs, lr_adaptation, momentum_speedup, optimizer_grid
from conftest import config
from test_cells import cell

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the beyond_gd package, the one the code hash reads from now on."""
    root = tmp_path / "src"
    shutil.copytree(provenance.PACKAGE_ROOT / "beyond_gd", root / "beyond_gd",
                    ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", root)
    return root / "beyond_gd"


@functools.cache
def every_cell() -> tuple[CellConfig, ...]:
    """The cells of the four studies made of cells, at their default configs (composed once)."""
    lrs = {"sgd": 0.1, "sgd_momentum": 0.0316, "adam": 0.001, "adagrad": 0.0316, "rmsprop": 0.001,
           "adam_uncorrected": 0.001}
    return (*momentum_speedup.build_cells(config(momentum_speedup.Config)),
            *optimizer_grid.build_cells(config(optimizer_grid.Config)),
            *lbfgs.build_cells(config(lbfgs.Config), lrs),
            *lr_adaptation.build_cells(config(lr_adaptation.Config), lrs))


def keys(cells: tuple[CellConfig, ...]) -> list[str]:
    code = cell_code()
    return [cell_key(c, 1, "cpu", code) for c in cells]


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: {old!r} is not there once (the test is out of date)"
    path.write_text(text.replace(old, new))


# (file, old, new, whether the edit is of code, not of a docstring or comment)
KEPT = {
    "a table over cells": ("cell_tables.py", 'agg(["count", *STATS])', 'agg(["count", "mean", "std", "min", "max"])',
                           True),
    "the grid's ranking": ("studies/optimizer_grid.py", "worst = math.inf if lower else -math.inf",
                           "worst = -math.inf if not lower else math.inf", True),
    "the stage-side launcher": ("launch.py", "_GRACE_S = 30", "_GRACE_S = 60", True),
    "a docstring of the cell's run": ("cells.py", '"""Train one cell until its budget', '"""Train a cell until its budget',
                                      False),
    "a module docstring": ("training.py", "Mini-batch training from tensors", "Mini-batch training, from tensors", False),
    "a comment of the loop": ("training.py", "# Steps between checks for divergence", "# How often to check for divergence",
                              False),
    "a comment of the job": ("cell_job.py", "    # A joblib worker runs many cells: it reads each split once.\n", "",
                             False),
}
RERUN = {
    "the training loop": ("training.py", "_CHECK_EVERY = 50", "_CHECK_EVERY = 25"),
    "the cell's run": ("cells.py", "if averaged := averaged_weights(optimizer):", "if (averaged := averaged_weights(optimizer)) is not None:"),
    "the artifact's writer": ("cell_job.py", "json.dumps(output.result, indent=2)", "json.dumps(output.result, indent=1)"),
    "the data loader": ("data/mnist.py", ".div_(255)", ".div_(255.0)"),
    "the optimizers' registry": ("optim/registry.py", 'PREFIX = "torch.optim."', "PREFIX = 'torch.optim' + '.'"),
}


@pytest.mark.parametrize("what", KEPT)
def test_an_edit_outside_the_cells_code_changes_no_key(what: str, package: Path) -> None:
    name, old, new, is_code = KEPT[what]
    cells = every_cell()
    before = keys(cells)
    stage_before = provenance.code_hash("beyond_gd.stages.optimizer_grid")
    edit(package / name, old, new)
    assert keys(cells) == before
    # A code edit does change what the stage runs (DVC re-runs it, and it keeps every cell); a docstring or a
    # comment changes no code at all.
    assert (provenance.code_hash("beyond_gd.stages.optimizer_grid") != stage_before) == is_code


@pytest.mark.parametrize("what", RERUN)
def test_an_edit_of_the_cells_code_changes_every_key(what: str, package: Path) -> None:
    cells = every_cell()
    before = keys(cells)
    edit(package / RERUN[what][0], *RERUN[what][1:])
    after = keys(cells)
    assert all(a != b for a, b in zip(before, after, strict=True))
    assert len(set(after)) == len(cells)  # and every cell still has its own


def test_the_job_imports_nothing_of_the_stage_side() -> None:
    files = {p.relative_to(provenance.PACKAGE_ROOT / "beyond_gd").as_posix() for p in provenance.code_closure(MODULE)}
    assert {"cell_job.py", "cells.py", "training.py", "data/mnist.py", "model.py"} <= files
    stage_side = {"launch.py", "stage.py", "study.py", "cell_tables.py", "pipeline.py"}
    assert not files & stage_side and not [f for f in files if f.startswith(("studies/", "stages/", "report/"))]


def test_the_key_covers_the_config_the_torch_version_the_device_and_the_threads(
        monkeypatch: pytest.MonkeyPatch) -> None:
    base = cell()
    key = cell_key(base, 1, "cpu")
    others = [cell_key(dataclasses.replace(base, seed=1), 1, "cpu"),
              cell_key(dataclasses.replace(base, optimizer=base.optimizer.with_lr(0.2)), 1, "cpu"),
              cell_key(dataclasses.replace(base, labels={"optimizer": "other"}), 1, "cpu"),
              cell_key(base, 2, "cpu"), cell_key(base, 1, "cuda")]
    monkeypatch.setattr(torch, "__version__", torch.__version__ + "+other")
    others.append(cell_key(base, 1, "cpu"))
    assert len({key, *others}) == 1 + len(others)


def test_finished_cells_are_kept_across_an_edit_of_the_tables_and_run_again_after_one_of_the_loop(
        package: Path, fake_mnist_root: Path, tmp_path: Path) -> None:
    cells = [cell(id=f"c{seed}", seed=seed, max_steps=16, labels={"seed": seed}) for seed in (0, 1)]

    def run(name: str, reuse: str | None) -> list[bool]:
        outputs = run_cells_here(cells, fake_mnist_root, tmp_path / name, reuse=None if reuse is None else tmp_path / reuse)
        return [o.reused for o in outputs]

    assert run("first", None) == [False, False]
    edit(package / "cell_tables.py", *KEPT["a table over cells"][1:3])
    edit(package / "cells.py", *KEPT["a docstring of the cell's run"][1:3])
    assert run("second", "first") == [True, True]
    edit(package / "training.py", *RERUN["the training loop"][1:])
    assert run("third", "second") == [False, False]


def test_a_launch_writes_each_cell_config_as_omegaconf_saves_it_and_reads_it_back_equal(tmp_path: Path) -> None:
    """conf/cell/<id>.yaml of a launch, for every cell of the four studies: the bytes OmegaConf.save of the
    structured config writes, and the same CellConfig when the job merges it into the schema."""
    for i, c in enumerate(every_cell()):  # one launch each: two studies may name a cell alike
        write_launch_config([c], tmp_path / f"{i}", LauncherConfig("basic", 1, {}), JobContext({}, 1, "c0de"), tmp_path)
        written = tmp_path / f"{i}" / "cell" / f"{c.id}.yaml"
        assert written.read_text() == OmegaConf.to_yaml(OmegaConf.structured(c)), c.id
        assert OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(CellConfig), OmegaConf.load(written))) == c
    assert OmegaConf.load(tmp_path / "0" / "cell_app.yaml").job.code == "c0de"
