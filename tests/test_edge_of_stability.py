"""The edge-of-stability stage: the sharpness tracker against a dense Hessian, and the study on a tiny fake MNIST."""

from __future__ import annotations

import copy

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from beyond_gd.config import load
from beyond_gd.data import mnist
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import hessian as hs
from beyond_gd.landscape import sharpness as sh
from beyond_gd.stage import write
from beyond_gd.stages.edge_of_stability import STAGE
from beyond_gd.studies import edge_of_stability as eos
from beyond_gd.study import Inputs
from conftest import composed
from test_landscape import dense_problem


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------
# The maths
# --------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_iteration_finds_the_dense_hessians_top_eigenvalue(seed: int) -> None:
    model, state, x, y, layout, dense = dense_problem(seed, False)
    exact = np.linalg.eigvalsh(dense.numpy())
    assert exact[-1] > abs(exact[0])  # the top of the spectrum dominates, as on the MLP
    hvp = hs.loss_hvp(model, state, x, y, batch_size=40)
    start = torch.randn(layout.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    top = sh.power_iteration(hvp, start, max_products=2000, tol=1e-12)
    assert top.converged
    assert top.value == pytest.approx(exact[-1], rel=1e-6)
    assert top.residual < 1e-3 * exact[-1]
    assert top.vector.norm().item() == pytest.approx(1.0)


def test_a_warm_start_from_the_top_ritz_vector_converges_at_once() -> None:
    model, state, x, y, layout, dense = dense_problem(0, False)
    hvp = hs.loss_hvp(model, state, x, y, batch_size=40)
    run = hs.lanczos(hvp, layout.dim, layout.dim, torch.Generator().manual_seed(0), torch.device("cpu"))
    start = sh.top_ritz_vector(run)
    values, vectors = np.linalg.eigh(dense.numpy())
    assert abs(float(start @ torch.from_numpy(vectors[:, -1]))) == pytest.approx(1.0, abs=1e-8)
    top = sh.power_iteration(hvp, start, max_products=10, tol=1e-9)
    assert top.products == 2 and top.converged and top.value == pytest.approx(values[-1], rel=1e-9)


def test_power_iteration_reports_what_it_could_not_converge() -> None:
    # Eigenvalues 3 and 2.9: a slow ratio, so 3 products fall short of a 1e-9 tolerance.
    diag = torch.tensor([3.0, 2.9, 1.0, 0.5], dtype=torch.float64)
    top = sh.power_iteration(lambda v: diag * v, torch.ones(4, dtype=torch.float64), max_products=3, tol=1e-9)
    assert not top.converged and top.products == 3 and 2.9 < top.value < 3.0 and top.residual > 0
    # A negative top eigenvalue comes back with its sign.
    flip = torch.tensor([-4.0, 1.0], dtype=torch.float64)
    top = sh.power_iteration(lambda v: flip * v, torch.tensor([1.0, 0.1], dtype=torch.float64), 200, 1e-12)
    assert top.value == pytest.approx(-4.0) and top.converged
    # A dead network (H = 0): value 0, not NaN.
    assert sh.power_iteration(lambda v: 0 * v, torch.ones(3, dtype=torch.float64), 5, 1e-3).value == 0.0


def test_edge_ratio_and_first_reach_and_hovering() -> None:
    assert sh.edge_ratio(10.0, 0.2) == pytest.approx(1.0)
    steps = np.array([0, 10, 20, 30, 40, 50])
    ratios = np.array([0.1, np.nan, 0.95, 1.2, 0.9, 1.05])
    assert sh.first_reach(steps, ratios, 0.9) == 20
    assert sh.first_reach(steps, ratios, 2.0) is None
    hover = sh.hovering(steps, ratios, 20)
    assert hover.evaluations == 3 and hover.median == pytest.approx(1.05)
    assert hover.q25 == pytest.approx(0.975) and hover.q75 == pytest.approx(1.125)
    assert np.isnan(sh.hovering(steps, ratios, None).median) and sh.hovering(steps, ratios, 50).evaluations == 0


# --------------------------------------------------------------------------
# The study on a tiny fake MNIST
# --------------------------------------------------------------------------
TINY_MODEL = {"in_dim": 784, "hidden_dim": 8, "out_dim": 10, "final_relu": False}
TINY = {"subset_size": 48, "subset_seed": 0, "init_seed": 0, "optimizer": "sgd", "gd_lrs": [0.5, 2.0],
        "sgd_lrs": [0.1], "sgd_batch_size": 16, "sgd_seed": 0, "steps": 12, "eval_every": 4, "eval_batch_size": 48,
        "hvp_batch_size": 24, "lanczos_steps": 6, "lanczos_seed": 0, "max_products": 5, "tol": 1e-3, "reach": 0.9,
        "divergence_loss": 1000.0}


@pytest.fixture
def fake_inputs(tmp_path: Path) -> Inputs:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), rng.integers(0, 10, 60, dtype=np.uint8),
              rng.integers(0, 256, (20, 28, 28), dtype=np.uint8), rng.integers(0, 10, 20, dtype=np.uint8)]
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, array in zip(mnist.FILES, arrays, strict=True):
        (raw / name).write_bytes(mnist.encode_idx(array))
    return Inputs(device="cpu", folders={"mnist": tmp_path / "mnist"}, workdir=tmp_path / "work")


def tiny(sgd_entry: dict[str, Any] | None = None, **edits: Any) -> eos.Config:
    """The study's Config with the tiny section (`edits` to it, and `sgd_entry` as optimizers.sgd)."""
    params = composed("runtime.device=cpu", "runtime.threads=1", *(f"model.{k}={v}" for k, v in TINY_MODEL.items()))
    params["edge_of_stability"] = copy.deepcopy(TINY) | edits
    if sgd_entry is not None:
        params["optimizers"]["sgd"] = sgd_entry
    return load(params, eos.Config)


def test_the_study_gives_every_output_and_the_same_bytes_twice(fake_inputs: Inputs, tmp_path: Path) -> None:
    result = eos.run(tiny(), fake_inputs)
    assert sorted(result.outputs()) == sorted(STAGE.outputs)
    curves, runs = result.tables["curves.csv"], result.tables["runs.csv"]
    assert list(curves.columns) == eos.CURVE_COLUMNS
    assert list(runs["run"]) == ["gd-lr0.5", "gd-lr2", "sgd-lr0.1"]
    for run in runs["run"]:
        assert curves.loc[curves["run"] == run, "step"].tolist() == [0, 4, 8, 12]
    # Every run starts from the same init: the same loss and sharpness at step 0.
    first = curves[curves["step"] == 0]
    assert first["loss"].nunique() == 1 and first["lambda_max"].nunique() == 1
    assert np.allclose(curves["edge_ratio"], curves["lambda_max"] * curves["lr"] / 2, equal_nan=True)
    assert np.allclose(curves["two_over_lr"], 2 / curves["lr"])
    assert (curves["products"] >= 1).all() and (curves["products"] <= TINY["max_products"]).all()
    assert result.summary["init_lambda_max_lanczos"] == pytest.approx(first["lambda_max"].iloc[0], rel=0.05)
    folders = []
    for k in range(2):
        folder = tmp_path / f"out{k}"
        write(eos.run(tiny(), fake_inputs) if k else result, folder)
        folders.append(folder)
    for name in STAGE.outputs:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name


def test_full_batch_gd_is_one_step_on_the_whole_subset(fake_inputs: Inputs) -> None:
    """The GD run's loss after its first eval_every steps equals plain full-batch steps taken by hand."""
    cfg = tiny(eval_every=1, steps=2, gd_lrs=[0.5])
    curves = eos.run(cfg, fake_inputs).tables["curves.csv"]
    from beyond_gd.model import build_model, fresh_init
    x, y = mnist.fixed_subset(*mnist.load_tensors(fake_inputs.folder("mnist"), train=True, device=torch.device("cpu")),
                              TINY["subset_size"], 0, "edge_of_stability.subset_size")
    model = build_model(cfg.model)
    model.load_state_dict(fresh_init(cfg.model, 0, torch.device("cpu")))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        by_hand = torch.nn.functional.cross_entropy(model(x), y).item()
    gd = curves[curves["run"] == "gd-lr0.5"]
    assert gd["loss"].iloc[-1] == pytest.approx(by_hand, rel=1e-5)


def test_a_diverging_run_is_recorded_and_stopped(fake_inputs: Inputs) -> None:
    result = eos.run(tiny(gd_lrs=[1e4], divergence_loss=50.0), fake_inputs)
    curves, runs = result.tables["curves.csv"], result.tables["runs.csv"]
    gd = curves[curves["run"] == "gd-lr10000"]
    assert gd["diverged"].iloc[-1] and not gd["diverged"].iloc[0]
    assert len(gd) < 4 and np.isnan(gd["lambda_max"].iloc[-1])
    row = runs.set_index("run").loc["gd-lr10000"]
    assert row["diverged"] and result.metrics["diverged_runs"] == 1
    assert not runs.set_index("run").loc["sgd-lr0.1", "diverged"]  # the others go on


def test_runs_table_summarises_the_hovering_phase() -> None:
    steps = [0, 10, 20, 30, 40]
    curves = pd.DataFrame({"run": "gd-lr0.2", "kind": "gd", "lr": 0.2, "step": steps, "loss": 1.0, "accuracy": 0.5,
                           "edge_ratio": [0.1, 0.5, 0.95, 1.1, 1.0], "diverged": False})
    runs = eos.summarize(curves, [eos.RunSpec("gd", 0.2, 5000)], reach=0.9)
    row = runs.iloc[0]
    assert row["reached_step"] == 20 and row["hover_evaluations"] == 2 and row["ratio_median"] == pytest.approx(1.05)
    assert row["max_ratio"] == pytest.approx(1.1) and not row["diverged"]


@pytest.mark.parametrize(("edits", "optimizers", "message"), [
    ({"eval_every": 20}, None, "edge_of_stability.eval_every: must be <= steps"),
    ({"gd_lrs": [0.1, -1.0]}, None, "edge_of_stability.gd_lrs: each must be > 0"),
    ({"optimizer": "nadam"}, None, "edge_of_stability.optimizer: 'nadam' is not in the optimizers section"),
    ({"optimizer": "sgd_momentum"}, None, "edge_of_stability.optimizer: optimizers.sgd_momentum must be "
                                          "torch.optim.SGD without momentum"),
    ({"optimizer": "adam"}, None, "edge_of_stability.optimizer: optimizers.adam must be torch.optim.SGD"),
    ({}, {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01, "weight_decay": 1e-4},
     "edge_of_stability.optimizer: optimizers.sgd must be torch.optim.SGD without momentum or weight decay"),
])
def test_bad_config_is_one_line_naming_the_key(edits: dict, optimizers: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        tiny(optimizers, **edits)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_a_subset_larger_than_the_split_is_refused(fake_inputs: Inputs) -> None:
    with pytest.raises(ConfigError, match=r"^edge_of_stability\.subset_size: must be <= the 60 examples"):
        eos.run(tiny(subset_size=61), fake_inputs)


# --------------------------------------------------------------------------
# Synthetic artifacts in the stage's format (tests/test_claims.py and tests/test_report.py)
# --------------------------------------------------------------------------
SYNTHETIC_STEPS = np.arange(0, 201, 10)
# lr -> (level, hovers): the ratio λ_max / (2 / lr) rises to `level` by step 50 and then oscillates +-3% about it
# (hovers; its median `level`), or rises to `level` only at the last step (still sharpening when the budget ends).
Runs = dict[float, tuple[float, bool]]
GD_AT_EDGE: Runs = {0.2: (1.04, True), 0.4: (1.07, True)}
SGD_BELOW: Runs = {0.01: (0.004, False), 0.1: (0.3, False)}


def synthetic_curves(gd: Runs = GD_AT_EDGE, sgd: Runs = SGD_BELOW) -> tuple[pd.DataFrame, list[eos.RunSpec]]:
    """curves.csv of GD and SGD runs shaped by `gd` and `sgd` (see Runs), and the runs' specs."""
    frames, specs = [], []
    steps = SYNTHETIC_STEPS
    for kind, batch, lrs in ((eos.GD, 5000, gd), (eos.SGD, 64, sgd)):
        for lr, (level, hovers) in lrs.items():
            start = 0.47 * lr / 2  # every run from one init, its λ_max 0.47 (measured on the MLP)
            if hovers:
                ratio = np.where(steps < 50, start + (level - start) * steps / 50,
                                 level * (1 + 0.03 * np.round(np.cos(np.pi * steps / 20))))
            else:
                ratio = start + (level - start) * steps / steps[-1]
            spec = eos.RunSpec(kind, lr, batch)
            specs.append(spec)
            frames.append(pd.DataFrame({
                "run": spec.name, "kind": kind, "lr": lr, "two_over_lr": 2 / lr, "batch_size": batch, "step": steps,
                "loss": 2.3 * np.exp(-steps / 60) + 0.1 + 0.05 * hovers * (steps // 10 % 2),
                "accuracy": 0.95 - 0.85 * np.exp(-steps / 60), "lambda_max": ratio * 2 / lr, "edge_ratio": ratio,
                "residual": 1e-3 * ratio * 2 / lr, "products": 3, "converged": True, "diverged": False}))
    return pd.concat(frames, ignore_index=True)[eos.CURVE_COLUMNS], specs


def synthetic_runs(gd: Runs = GD_AT_EDGE, sgd: Runs = SGD_BELOW) -> pd.DataFrame:
    """runs.csv of `synthetic_curves`, through the study's own summary (reach 0.9)."""
    curves, specs = synthetic_curves(gd, sgd)
    return eos.summarize(curves, specs, reach=0.9)
