"""The companion notebook's Fig 6-3 (stage interpolate_notebook) on a tiny fake MNIST, and its equivalent overrides.

The study retrains the notebook's network through the baseline's own run and
traces its lines through the interpolate study's, so: its outputs have the
interpolate stage's columns, alpha = 0 is the trained network (its loss is the
last epoch's training loss), the same settings given to the baseline stage
train the same network bit for bit, and the `dvc exp run -S ...` overrides
that docs/chapter-map.md lists compose to this section's values.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from beyond_gd.config import ModelConfig, load
from beyond_gd.landscape.interpolation import alpha_grid
from beyond_gd.model import build_model
from beyond_gd.stage import write
from beyond_gd.stages.interpolate_notebook import STAGE
from beyond_gd.studies import baseline, interpolate, interpolate_notebook
from beyond_gd.study import Inputs, Result
from conftest import REPO, composed
from test_model_training import fake_mnist

# The notebook's network at a tenth of its width, 3 epochs of 7 steps on 100 fake images, a coarse grid.
TINY_SECTION = {
    "training": {"epochs": 3, "batch_size": 16, "eval_batch_size": 50},
    "path": {"alpha_start": -1.0, "alpha_stop": 2.0, "alpha_step": 0.25, "theta_rand": ["init", "fresh"],
             "fresh_seeds": [1], "splits": ["train", "test"], "batch_size": 16, "alpha_chunk": 5,
             "flat_window": 0.25},
}
BASE = ("model.hidden_dim=16", "runtime.device=cpu", "runtime.threads=1")
# The overrides of the existing stages that give the notebook's figure (docs/chapter-map.md, and
# conf/interpolate_notebook/default.yaml's comment, list them).
EQUIVALENT = ("model.final_relu=true", "optimizers.sgd.lr=1.0e-4", "interpolate.alpha_step=0.01",
              "interpolate.theta_rand=[fresh]", "interpolate.fresh_seeds=[1]", "interpolate.splits=[train]")


def tiny(**edits: Any) -> interpolate_notebook.Config:
    params = composed(*BASE)
    section = params["interpolate_notebook"]
    for part, values in TINY_SECTION.items():
        section[part].update(values)
    for key, value in edits.items():
        node = section
        *parents, leaf = key.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return load(params, interpolate_notebook.Config)


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    return Inputs(device="cpu", folders={"mnist": fake_mnist(tmp_path / "mnist")}, workdir=tmp_path / "work")


def written(result: Result, folder: Path) -> Path:
    assert sorted(result.outputs()) == sorted(STAGE.outputs)
    write(result, folder)
    return folder


def test_the_study_gives_every_output_in_the_interpolate_stages_columns(inputs: Inputs, tmp_path: Path) -> None:
    result = interpolate_notebook.run(tiny(), inputs)
    out = written(result, tmp_path / "out")
    path, summary, epochs = (pd.read_csv(out / name) for name in ("path.csv", "summary.csv", "epochs.csv"))
    alphas = np.arange(-1.0, 2.0, 0.25)
    assert list(path.columns) == ["alpha", "split", "theta_rand", "loss", "accuracy"]
    assert len(path) == 2 * 2 * len(alphas) and set(path.theta_rand) == {"init", "seed_1"}
    assert list(summary.columns) == ["theta_rand", "split", "loss_at_0", "loss_at_1", "local_minima",
                                     "local_minima_strict", "minima_alphas", "barrier", "monotone_0_to_1",
                                     "slope_near_1", "slope_between", "slope_ratio"]
    assert list(epochs.columns) == ["epoch", "step", *baseline.EVALUATED] and epochs.step.tolist() == [7, 14, 21]
    # alpha = 0 is the trained network, with its final ReLU: the last epoch's evaluation, on each split.
    at_0 = path[path.alpha == 0].groupby("split").loss
    assert at_0.nunique().eq(1).all()
    assert at_0.first()["train"] == pytest.approx(epochs.train_loss.iloc[-1], rel=1e-6)
    assert at_0.first()["test"] == pytest.approx(epochs.test_loss.iloc[-1], rel=1e-6)
    # alpha = 1 from "init" is the run's own initialisation, written as init.pt.
    state = torch.load(out / "init.pt", weights_only=True)
    model = build_model(ModelConfig(784, 16, 10, final_relu=True))
    model.load_state_dict(state)
    x = torch.cat([torch.zeros(1, 784), torch.ones(1, 784)])
    assert (model(x) >= 0).all(), "the notebook's network ends in a ReLU"
    s = result.summary
    assert s["training"]["lr"] == 1e-4 and s["training"]["final_relu"] is True and s["training"]["steps"] == 21
    assert s["alphas"] == len(alphas) and s["alpha_step"] == 0.25 and s["theta_rands"] == 2
    assert {"loss_at_0", "slope_ratio_max", "local_minima_max", "barrier_max"} <= set(s["train"])
    assert result.metrics["train_loss"] == epochs.train_loss.iloc[-1]


def test_same_seed_same_bytes(inputs: Inputs, tmp_path: Path) -> None:
    folders = [written(interpolate_notebook.run(tiny(), inputs), tmp_path / f"out{k}") for k in range(2)]
    for name in STAGE.outputs:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


def test_it_trains_what_the_baseline_trains_under_the_notebooks_overrides(inputs: Inputs) -> None:
    """The baseline stage with model.final_relu=true and optimizers.sgd.lr=1e-4 (the study's
    training section as its own) trains the very same network: same state, bit for bit."""
    cfg = tiny()
    ours = interpolate_notebook.run(cfg, inputs)
    params = composed(*BASE, "model.final_relu=true", "optimizers.sgd.lr=1.0e-4")
    params["baseline"].update(dataclasses.asdict(cfg.interpolate_notebook.training))
    theirs = baseline.run(load(params, baseline.Config), inputs)
    for name in ("mnist.pt", "init.pt"):
        a, b = ours.checkpoints[name], theirs.checkpoints[name]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    pd.testing.assert_frame_equal(ours.tables["epochs.csv"], theirs.tables["epochs.csv"])


def test_another_lr_trains_another_network(inputs: Inputs) -> None:
    slow = interpolate_notebook.run(tiny(), inputs).checkpoints["mnist.pt"]
    fast = interpolate_notebook.run(tiny(lr=0.01), inputs).checkpoints["mnist.pt"]
    assert not torch.equal(slow["classifier.1.weight"], fast["classifier.1.weight"])


def test_a_diverged_run_is_traced_and_flagged_not_raised(inputs: Inputs) -> None:
    result = interpolate_notebook.run(tiny(lr=1.0e6, final_relu=False), inputs)
    assert result.summary["training"]["diverged"] is True and result.metrics["diverged"] is True
    path = result.tables["path.csv"]
    assert len(path) == 2 * 2 * 12 and not np.isfinite(path.loss).all()


def test_bad_values_are_one_line_naming_the_key() -> None:
    with pytest.raises(Exception, match=r"^interpolate_notebook\.path\.alpha_stop: must be > alpha_start"):
        tiny(path__alpha_stop=-3.0)
    with pytest.raises(Exception, match=r"^interpolate_notebook\.training\.optimizer: 'nadam' is not in"):
        tiny(training__optimizer="nadam")
    with pytest.raises(Exception, match=r"^interpolate_notebook\.lr: must be > 0"):
        tiny(lr=-1.0)


def test_the_documented_overrides_of_baseline_and_interpolate_give_this_section() -> None:
    """`dvc exp run -S ...` with EQUIVALENT gives the notebook's figure from the existing stages: the overrides
    compose and validate, and give the baseline, optimizer, model and interpolate settings of this section."""
    params = composed(*EQUIVALENT)
    section = params["interpolate_notebook"]
    # Which states the baseline keeps on the way (checkpoint_epochs) does not change its training.
    kept = lambda d: {k: v for k, v in d.items() if k != "checkpoint_epochs"}  # noqa: E731
    assert kept(params["baseline"]) == kept(section["training"])
    assert params["interpolate"] == section["path"]
    assert params["optimizers"][section["training"]["optimizer"]]["lr"] == section["lr"]
    assert params["model"]["final_relu"] is section["final_relu"]
    load(params, interpolate.Config)
    load(params, baseline.Config)
    # Written out where a user reads them, in the -S form.
    doc = (REPO / "docs" / "chapter-map.md").read_text()
    conf = (REPO / "conf" / "interpolate_notebook" / "default.yaml").read_text()
    for override in EQUIVALENT:
        key, value = override.split("=", 1)
        shown = re.compile(rf"-S '?{re.escape(key)}={re.escape(value)}'?")
        assert shown.search(doc), f"docs/chapter-map.md lacks -S {override}"
        assert shown.search(conf), f"conf/interpolate_notebook/default.yaml lacks -S {override}"


def test_the_default_grid_is_the_notebooks() -> None:
    c = load(composed(), interpolate_notebook.Config).interpolate_notebook
    grid = alpha_grid(c.path.alpha_start, c.path.alpha_stop, c.path.alpha_step)
    assert len(grid) == 400 and grid[0] == -2.0 and {0.0, 1.0} <= set(grid) and math.isclose(grid[-1], 1.99)
    assert c.lr == 1e-4 and c.final_relu and c.training.epochs == 40 and c.training.batch_size == 64
    assert c.path.theta_rand == ["fresh"] and c.path.splits == ["train"]


def test_smoke_profile_is_small() -> None:
    c = load(composed("profile=smoke"), interpolate_notebook.Config).interpolate_notebook
    assert c.training.max_steps <= 300 and c.path.alpha_step >= 0.1
    assert c.lr == 1e-4 and c.final_relu
