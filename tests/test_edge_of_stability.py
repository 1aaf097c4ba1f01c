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
@pytest.mark.parametrize("tol", [1e-2, 1e-6])
@pytest.mark.parametrize(("basis_size", "keep"), [(35, 1), (4, 1), (6, 3)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lanczos_meets_the_residual_tolerance_against_the_dense_hessian(seed: int, basis_size: int, keep: int,
                                                                        tol: float) -> None:
    """The acceptance test: on an MLP small enough for its full Hessian, λ_max and its residual meet tol, from a
    random start, with and without restarts of a small Krylov space."""
    model, state, x, y, layout, dense = dense_problem(seed, False)
    values, vectors = np.linalg.eigh(dense.numpy())
    hvp = hs.loss_hvp(model, state, x, y, batch_size=40)
    start = torch.randn(layout.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    top = sh.lanczos_top(hvp, start, tol=tol, max_products=2000, basis_size=basis_size, keep=keep)
    assert top.converged and top.products < 2000
    # The residual reported is the true one, against the dense H, and it meets tol.
    true_residual = float((dense @ top.vector - top.value * top.vector).norm())
    assert top.residual == pytest.approx(true_residual, rel=1e-6, abs=1e-12)
    assert true_residual <= tol * top.value
    # A Ritz value never exceeds λ_max, and within the residual of it lies λ_max itself.
    assert top.value <= values[-1] * (1 + 1e-12)
    assert values[-1] - top.value <= true_residual
    assert top.vector.norm().item() == pytest.approx(1.0)
    if tol <= 1e-6:
        assert abs(float(top.vector @ torch.from_numpy(vectors[:, -1]))) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_warm_start_from_the_top_vector_converges_in_one_product(seed: int) -> None:
    model, state, x, y, layout, dense = dense_problem(seed, False)
    hvp = hs.loss_hvp(model, state, x, y, batch_size=40)
    run = hs.lanczos(hvp, layout.dim, layout.dim, torch.Generator().manual_seed(seed), torch.device("cpu"))
    start = sh.top_ritz_vector(run)
    values, vectors = np.linalg.eigh(dense.numpy())
    assert abs(float(start @ torch.from_numpy(vectors[:, -1]))) == pytest.approx(1.0, abs=1e-8)
    top = sh.lanczos_top(hvp, start, tol=1e-6, max_products=10, basis_size=8)
    assert top.products == 1 and top.converged and top.value == pytest.approx(values[-1], rel=1e-9)
    # A cold start needs more.
    cold = torch.randn(layout.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert sh.lanczos_top(hvp, cold, tol=1e-6, max_products=100, basis_size=8).products > 1


def test_lanczos_separates_close_eigenvalues_a_power_iteration_would_not() -> None:
    # Top eigenvalues 3 and 2.97 (a ratio of 0.99: hundreds of power steps to separate), then a bulk.
    diag = torch.cat([torch.tensor([3.0, 2.97], dtype=torch.float64), torch.linspace(-1.0, 2.0, 60,
                                                                                     dtype=torch.float64)])
    top = sh.lanczos_top(lambda v: diag * v, torch.ones(62, dtype=torch.float64), tol=1e-4, max_products=200,
                         basis_size=10, keep=3)
    assert top.converged and top.value == pytest.approx(3.0, rel=1e-6) and top.products < 100


def test_lanczos_reports_what_it_could_not_converge() -> None:
    diag = torch.tensor([3.0, 2.9, 1.0, 0.5, 0.2, 0.1], dtype=torch.float64)
    top = sh.lanczos_top(lambda v: diag * v, torch.ones(6, dtype=torch.float64), tol=1e-9, max_products=2,
                         basis_size=2)
    assert not top.converged and top.products == 2 and 2.0 < top.value < 3.0 and top.residual > 1e-9 * top.value
    # The algebraically largest eigenvalue, not the largest in magnitude: a negative end does not take over.
    flip = torch.tensor([-4.0, 1.0, 0.5], dtype=torch.float64)
    top = sh.lanczos_top(lambda v: flip * v, torch.tensor([1.0, 0.1, 0.1], dtype=torch.float64), 1e-10, 50, 3)
    assert top.value == pytest.approx(1.0) and top.converged
    # A dead network (H = 0): value 0, converged, not NaN; a blown-up one: NaN, not converged.
    dead = sh.lanczos_top(lambda v: 0 * v, torch.ones(3, dtype=torch.float64), 1e-3, 5, 3)
    assert dead.value == 0.0 and dead.converged
    blown = sh.lanczos_top(lambda v: v * float("inf"), torch.ones(3, dtype=torch.float64), 1e-3, 5, 3)
    assert np.isnan(blown.value) and not blown.converged


@pytest.mark.parametrize(("max_products", "basis_size", "keep", "message"), [
    (0, 4, 1, "max_products must be >= 1"), (5, 4, 4, "keep must be in"), (5, 4, 0, "keep must be in")])
def test_lanczos_refuses_bad_settings(max_products: int, basis_size: int, keep: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        sh.lanczos_top(lambda v: v, torch.ones(5, dtype=torch.float64), 1e-3, max_products, basis_size, keep)


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
        "hvp_batch_size": 24, "lanczos_seed": 0, "tol": 1e-2, "max_products": 40, "basis_size": 6, "keep": 2,
        "reach": 0.9, "divergence_loss": 1000.0}


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
    # The estimate at the init, warm-started again at every run's step 0: one product, the same value.
    assert result.summary["init_converged"] and (first["products"] == 1).all()
    assert result.summary["init_lambda_max"] == pytest.approx(first["lambda_max"].iloc[0], rel=TINY["tol"])
    # A converged estimate meets its residual tolerance; the summary counts the others, and every product.
    ok = curves["converged"].astype(bool)
    assert (curves.loc[ok, "residual"] <= TINY["tol"] * curves.loc[ok, "lambda_max"].abs()).all()
    assert result.summary["unconverged_evaluations"] == int((~ok & curves["lambda_max"].notna()).sum())
    assert result.summary["products"] == result.summary["init_products"] + curves["products"].sum()
    assert runs["unconverged"].sum() + runs["estimates"].sum() == curves["lambda_max"].notna().sum()
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


@pytest.mark.parametrize(("converged", "reached", "hover", "median", "largest"), [
    ([True] * 6, 20, 3, 1.0, 1.1),
    # A short estimate at the edge is not where the run reached it: the next converged one is.
    ([True, True, False, True, True, True], 30, 2, 0.95, 1.1),
    # A short spike is no largest ratio, and no hovering evaluation.
    ([True, True, True, False, True, True], 20, 2, 0.95, 1.0),
    # Only short estimates above the reach: never reached.
    ([True, True, False, False, False, False], None, 0, np.nan, 0.5),
])
def test_runs_table_summarises_the_hovering_phase_from_converged_estimates(
        converged: list[bool], reached: int | None, hover: int, median: float, largest: float) -> None:
    steps = [0, 10, 20, 30, 40, 50]
    ratios = [0.1, 0.5, 0.95, 1.1, 1.0, 0.9]
    curves = pd.DataFrame({"run": "gd-lr0.2", "kind": "gd", "lr": 0.2, "step": steps, "loss": 1.0, "accuracy": 0.5,
                           "edge_ratio": ratios, "lambda_max": np.array(ratios) * 10, "converged": converged,
                           "diverged": False})
    row = eos.summarize(curves, [eos.RunSpec("gd", 0.2, 5000)], reach=0.9).iloc[0]
    assert (pd.isna(row["reached_step"]) if reached is None else row["reached_step"] == reached)
    assert row["hover_evaluations"] == hover and row["max_ratio"] == pytest.approx(largest)
    assert row["ratio_median"] == pytest.approx(median, nan_ok=True)
    assert row["unconverged"] == converged.count(False) and row["estimates"] == converged.count(True)
    assert not row["diverged"]


@pytest.mark.parametrize(("edits", "optimizers", "message"), [
    ({"eval_every": 20}, None, "edge_of_stability.eval_every: must be <= steps"),
    ({"keep": 6}, None, "edge_of_stability.keep: must be < basis_size (6)"),
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
# GD at lr 0.1 is the lr the budget is too short for: still sharpening, at 0.8 x 2/lr, when it ends.
GD_AT_EDGE: Runs = {0.1: (0.8, False), 0.2: (1.04, True), 0.4: (1.07, True)}
SGD_BELOW: Runs = {0.01: (0.004, False), 0.1: (0.3, False)}
# (run, step) -> the ratio of an estimate that missed the residual tolerance there.
Short = dict[tuple[str, int], float]


def synthetic_curves(gd: Runs = GD_AT_EDGE, sgd: Runs = SGD_BELOW,
                     short: Short | None = None) -> tuple[pd.DataFrame, list[eos.RunSpec]]:
    """curves.csv of GD and SGD runs shaped by `gd` and `sgd` (see Runs), with the estimates of `short` replaced
    by unconverged ones (their residual 20% of λ_max), and the runs' specs."""
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
    curves = pd.concat(frames, ignore_index=True)[eos.CURVE_COLUMNS]
    for (run, step), ratio in (short or {}).items():
        at = (curves["run"] == run) & (curves["step"] == step)
        assert at.sum() == 1, (run, step)
        lam = ratio * curves.loc[at, "two_over_lr"]
        curves.loc[at, ["edge_ratio", "lambda_max", "residual", "products", "converged"]] = [
            ratio, float(lam.iloc[0]), 0.2 * float(lam.iloc[0]), 60, False]
    return curves, specs


def synthetic_runs(gd: Runs = GD_AT_EDGE, sgd: Runs = SGD_BELOW, short: Short | None = None) -> pd.DataFrame:
    """runs.csv of `synthetic_curves`, through the study's own summary (reach 0.9)."""
    curves, specs = synthetic_curves(gd, sgd, short)
    return eos.summarize(curves, specs, reach=0.9)
