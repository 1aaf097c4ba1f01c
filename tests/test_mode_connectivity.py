"""Mode connectivity: barriers, weight matching, Bézier curves (maths), and the study on a tiny fake MNIST."""

from __future__ import annotations

import copy
import dataclasses

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch.func import functional_call

from beyond_gd.config import load
from beyond_gd.data import mnist
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import connectivity as mc
from beyond_gd.landscape.interpolation import sub_state
from beyond_gd.model import Net
from beyond_gd.stage import write
from beyond_gd.stages.mode_connectivity import STAGE
from beyond_gd.studies import baseline
from beyond_gd.studies import mode_connectivity as study
from beyond_gd.study import Inputs
from beyond_gd.training import evaluate, train
from conftest import composed

PREFIX = "classifier."


pytestmark = pytest.mark.usefixtures("one_thread")


def net_state(in_dim: int, hidden: int, out_dim: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in Net(in_dim, hidden, out_dim).state_dict().items()}


def random_perms(state: dict[str, torch.Tensor], seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randperm(state[w].shape[0], generator=gen) for w, _ in mc.linear_layers(state)[:-1]]


# --------------------------------------------------------------------------
# Barriers
# --------------------------------------------------------------------------
def test_the_barrier_of_a_loss_linear_in_t_is_zero() -> None:
    t = np.linspace(0, 1, 21)
    got = mc.barrier(t, 2.0 + 3.0 * t)
    assert got.height == pytest.approx(0.0, abs=1e-12) and got.loss_at_0 == 2.0 and got.loss_at_1 == 5.0


def test_the_barrier_is_the_largest_rise_above_the_chord() -> None:
    t = np.linspace(0, 1, 21)
    got = mc.barrier(t, 1.0 + t + 4 * t * (1 - t))  # a bump of height 1 at t = 1/2 above the chord 1 + t
    assert got.height == pytest.approx(1.0) and got.t == 0.5
    assert mc.barrier(t, 1.0 - 4 * t * (1 - t)).height == 0.0  # below the chord everywhere: no barrier


def test_a_diverged_path_has_no_barrier_height() -> None:
    t = np.linspace(0, 1, 5)
    assert np.isnan(mc.barrier(t, np.array([0.1, 0.2, np.inf, 0.2, 0.1])).height)
    with pytest.raises(ValueError, match="from 0 to 1"):
        mc.barrier(np.array([0.0, 0.5]), np.array([1.0, 2.0]))


# --------------------------------------------------------------------------
# Permutations and weight matching
# --------------------------------------------------------------------------
def test_a_permuted_net_computes_the_same_function() -> None:
    state = net_state(20, 16, 5, seed=0)
    permuted = mc.permute_state(state, random_perms(state, 1))
    x = torch.randn(64, 20, generator=torch.Generator().manual_seed(2))
    net = Net(20, 16, 5)
    before, after = functional_call(net, state, (x,)), functional_call(net, permuted, (x,))
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    assert not torch.equal(permuted[f"{PREFIX}1.weight"], state[f"{PREFIX}1.weight"])
    # The output layer's rows are never permuted: the classes keep their order.
    assert torch.equal(permuted[f"{PREFIX}5.bias"], state[f"{PREFIX}5.bias"])


def test_weight_matching_recovers_a_known_permutation() -> None:
    """B permuted by known permutations is A; matching B to A finds them, and B permuted by them is A."""
    b = net_state(30, 24, 6, seed=3)
    perms = random_perms(b, 4)
    a = mc.permute_state(b, perms)
    found = mc.weight_matching(a, b, max_sweeps=50, generator=torch.Generator().manual_seed(0))
    assert found.converged
    for want, got in zip(perms, found.perms, strict=True):
        assert torch.equal(got, want)
    for k, v in mc.permute_state(b, found.perms).items():
        assert torch.equal(v, a[k]), k
    assert found.similarity == sorted(found.similarity), "coordinate descent never lowers the objective"


def test_weight_matching_of_a_net_with_itself_is_the_identity() -> None:
    a = net_state(12, 8, 3, seed=5)
    found = mc.weight_matching(a, a, max_sweeps=10, generator=torch.Generator().manual_seed(0))
    assert found.converged and found.sweeps == 1
    assert all(torch.equal(p, torch.arange(len(p))) for p in found.perms)


# --------------------------------------------------------------------------
# The Bézier curve
# --------------------------------------------------------------------------
def test_a_bezier_curve_passes_through_its_endpoints() -> None:
    a, theta, b = (net_state(10, 6, 3, seed=s) for s in (0, 1, 2))
    for k in a:
        assert torch.equal(mc.bezier_point(a, theta, b, 0.0)[k], a[k])
        assert torch.equal(mc.bezier_point(a, theta, b, 1.0)[k], b[k])
        torch.testing.assert_close(mc.bezier_point(a, theta, b, 0.5)[k], 0.25 * a[k] + 0.5 * theta[k] + 0.25 * b[k])
    stacked = mc.bezier_point(a, theta, b, torch.tensor([0.0, 0.5, 1.0]))
    assert all(torch.equal(stacked[k][0], a[k]) and torch.equal(stacked[k][2], b[k]) for k in a)
    # theta at the midpoint of a and b: the curve is the straight line.
    mid = {k: (a[k] + b[k]) / 2 for k in a}
    torch.testing.assert_close(mc.bezier_point(a, mid, b, 0.3)[f"{PREFIX}3.weight"],
                               0.7 * a[f"{PREFIX}3.weight"] + 0.3 * b[f"{PREFIX}3.weight"])


def test_curve_loss_equals_evaluate_at_each_point() -> None:
    a, theta, b = (net_state(10, 6, 3, seed=s) for s in (0, 1, 2))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 10, generator=gen), torch.randint(0, 3, (50,), generator=gen)
    ts = torch.linspace(0, 1, 7, dtype=torch.float64)
    net = Net(10, 6, 3)
    loss, acc = mc.curve_loss(net.classifier, *(sub_state(s, PREFIX) for s in (a, theta, b)), ts, x, y,
                              batch_size=16, t_chunk=3)
    for k, t in enumerate(ts):
        net.load_state_dict(mc.bezier_point(a, theta, b, float(t)))
        want_loss, want_acc = evaluate(net, x, y, 16)
        assert loss[k] == pytest.approx(want_loss, rel=1e-5) and acc[k] == pytest.approx(want_acc)


def test_training_a_curve_moves_only_its_control_point() -> None:
    a, b = net_state(10, 6, 3, seed=0), net_state(10, 6, 3, seed=1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 10, generator=gen), torch.randint(0, 3, (64,), generator=gen)
    draws = []
    for _ in range(2):
        curve = mc.BezierCurve(Net(10, 6, 3), a, b, {k: (a[k] + b[k]) / 2 for k in a}, seed=7)
        opt = torch.optim.SGD(curve.theta.parameters(), lr=0.1)
        res = train(curve, opt, x, y, batch_size=16, seed=0, max_steps=8, divergence_loss=1e3)
        assert res.steps == 8 and not res.diverged
        draws.append(curve.draws)
        assert all(torch.equal(curve.endpoint("a")[k], a[k]) and torch.equal(curve.endpoint("b")[k], b[k]) for k in a)
        w = f"{PREFIX}1.weight"
        assert not torch.equal(curve.control()[w], (a[w] + b[w]) / 2)
    assert draws[0] == draws[1] and len(draws[0]) == 8 and all(0 <= t < 1 for t in draws[0])


# --------------------------------------------------------------------------
# The study on a tiny fake MNIST
# --------------------------------------------------------------------------
TINY_MODEL = {"in_dim": 784, "hidden_dim": 8, "out_dim": 10, "final_relu": False}
TINY = {"seeds": [0, 1, 2], "subset_size": 40, "subset_seed": 0, "eval_batch_size": 16, "t_points": 5,
        "t_chunk": 3, "matching_max_sweeps": 20, "matching_seed": 0,
        "curve": {"optimizer": "sgd", "lr_factor": 4.0, "max_epochs": 1, "min_decrease": 0.1, "max_steps": None,
                  "seed": 0},
        "over_and_over": {"theta_rand": ["init", "fresh"], "fresh_seeds": [5], "splits": ["train", "test"]}}
# The solutions' recipe: the baseline section's (2 epochs of 60 / 16 -> 4 steps each).
TINY_BASELINE = {"optimizer": "sgd", "epochs": 2, "max_steps": None, "batch_size": 16, "seed": 0, "eval_batch_size": 16,
                 "divergence_loss": 1000.0, "checkpoint_epochs": [1]}
TINY_GRID = {"alpha_start": -1.0, "alpha_stop": 2.0, "alpha_step": 0.25, "flat_window": 0.25, "batch_size": 16,
             "alpha_chunk": 5}
N_TRAIN, N_TEST = 60, 30


@pytest.fixture(scope="module")
def base_params() -> dict[str, Any]:
    return composed("runtime.device=cpu", "runtime.threads=1", *(f"model.{k}={v}" for k, v in TINY_MODEL.items()))


def tiny_config(base: dict[str, Any], **edits: Any) -> study.Config:
    params = copy.deepcopy(base)
    params["mode_connectivity"] = copy.deepcopy(TINY) | edits
    params["baseline"] = copy.deepcopy(TINY_BASELINE)
    params["interpolate"].update(TINY_GRID)
    return load(params, study.Config)


@pytest.fixture(scope="module")
def fake_inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8), rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
              rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8), rng.integers(0, 10, N_TEST, dtype=np.uint8)]
    root = tmp_path_factory.mktemp("fake")
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, array in zip(mnist.FILES, arrays, strict=True):
        (raw / name).write_bytes(mnist.encode_idx(array))
    return Inputs(device="cpu", folders={"mnist": root / "mnist", "baseline": root / "baseline"}, workdir=root / "work")


@pytest.fixture(scope="module")
def trained_baseline(base_params: dict[str, Any], fake_inputs: Inputs) -> None:
    """The baseline stage's outputs for the tiny recipe: its seed 0 is the baseline itself."""
    params = copy.deepcopy(base_params)
    params["baseline"] = copy.deepcopy(TINY_BASELINE)
    write(baseline.run(load(params, baseline.Config), fake_inputs), fake_inputs.folder("baseline"))


@pytest.fixture(scope="module")
def result(base_params: dict[str, Any], fake_inputs: Inputs, trained_baseline: None) -> study.Result:
    return study.run(tiny_config(base_params), fake_inputs)


def test_the_baseline_seed_is_the_baseline_itself_and_the_others_its_recipe(result: study.Result,
                                                                             fake_inputs: Inputs) -> None:
    """Seed 0 is read from the baseline's checkpoints, not retrained; the other seeds train by its recipe (the
    same steps); retraining seed 0 by that recipe would give the baseline's own weights."""
    solutions = result.tables["solutions.csv"].set_index("seed")
    assert solutions["reused_baseline"].tolist() == [True, False, False]
    assert (solutions["steps"] == 8).all() and (solutions["epochs"] == 2).all()
    trained = torch.load(fake_inputs.folder("baseline") / "mnist.pt", weights_only=True)
    model = Net(784, 8, 10)
    model.load_state_dict(trained)
    x, y = mnist.load_tensors(fake_inputs.folder("mnist"), train=False, device=torch.device("cpu"))
    assert solutions.loc[0, "test_loss"] == pytest.approx(evaluate(model, x, y, 16)[0], rel=1e-6)


def test_the_curve_trains_until_its_barrier_stops_falling(base_params: dict[str, Any], fake_inputs: Inputs,
                                                          trained_baseline: None) -> None:
    """Epoch by epoch: it goes on while each epoch lowers the barrier by the share asked and stops at the first
    that does not, or at the cap; a decrease of 99.9% is all but never met, so it stops after two epochs."""
    for min_decrease, cap in ((0.0, 5), (0.999, 5), (0.0, 1)):
        out = study.run(tiny_config(base_params, seeds=[0, 1], curve={**TINY["curve"], "max_epochs": cap,
                                                                        "min_decrease": min_decrease}), fake_inputs)
        epochs = out.tables["curve_epochs.csv"]
        b = epochs["barrier"].tolist()
        assert list(epochs["epoch"]) == list(range(1, len(b) + 1)) and 1 <= len(b) <= cap
        assert not any(mc.stopped_falling(b[:k], min_decrease) for k in range(1, len(b)))
        assert len(b) == cap or mc.stopped_falling(b, min_decrease)
        assert len(b) == (2 if min_decrease > 0.99 else len(b)) and len(out.tables["curve_steps.csv"]) == 4 * len(b)
        assert out.summary["curve_epochs_run"] == {"seed_0~seed_1": len(b)}


@pytest.mark.parametrize(("history", "min_decrease", "stopped"), [
    ([0.5], 0.1, False), ([0.5, 0.4], 0.1, False), ([0.5, 0.46], 0.1, True), ([0.5, 0.6], 0.1, True),
    ([0.0, 0.0], 0.1, True), ([0.5, float("nan")], 0.1, True), ([0.5, 0.45], 0.1, True), ([0.5, 0.449], 0.1, False),
])
def test_stopped_falling(history: list[float], min_decrease: float, stopped: bool) -> None:
    assert mc.stopped_falling(history, min_decrease) is stopped


def test_the_study_gives_every_output(result: study.Result, tmp_path: Path) -> None:
    assert sorted(result.outputs()) == sorted(STAGE.outputs)
    write(result, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(STAGE.outputs)
    barriers = result.tables["barriers.csv"]
    assert len(barriers) == 3 * 3 * 2  # 3 pairs x 3 paths x 2 splits
    assert set(barriers["path"]) == set(study.PATHS) and (barriers["barrier"] >= 0).all()
    paths = result.tables["paths.csv"]
    assert len(paths) == 3 * 3 * 2 * 5
    # Every path starts at A and ends at B (or at B permuted: the same function, to round-off).
    ends = barriers.pivot_table(index=["pair", "split"], columns="path", values="loss_at_1")
    np.testing.assert_allclose(ends["aligned"], ends["linear"], rtol=1e-5)
    np.testing.assert_array_equal(ends["curve"], ends["linear"])
    solutions = result.tables["solutions.csv"].set_index("solution")
    first = barriers[(barriers["pair"] == "seed_0~seed_1") & (barriers["split"] == "train")]
    assert first["loss_at_0"].to_numpy() == pytest.approx(solutions.loc["seed_0", "train_loss"], rel=1e-6)
    matching = result.tables["matching.csv"]
    assert len(matching) == 3 * 2 and (matching["similarity_matched"] >= matching["similarity_identity"]).all()
    assert len(result.tables["curve_steps.csv"]) == 3 * 4  # one epoch of 60 / 16 -> 4 steps per pair
    assert set(result.tables["curve_epochs.csv"]["pair"]) == set(barriers["pair"])
    assert np.allclose(barriers["endpoint_loss"], (barriers["loss_at_0"] + barriers["loss_at_1"]) / 2)


def test_fig6_3_from_each_solution_in_the_interpolate_stage_columns(result: study.Result) -> None:
    path, summary = result.tables["interpolation_path.csv"], result.tables["interpolation_summary.csv"]
    assert list(path.columns) == ["alpha", "split", "theta_rand", "loss", "accuracy", "theta_opt"]
    assert {"theta_rand", "split", "local_minima", "slope_ratio", "minima_alphas", "theta_opt"} <= set(summary.columns)
    assert len(summary) == 3 * 2 * 2  # 3 solutions x (own init, seed_5) x 2 splits
    assert set(summary["theta_rand"]) == {"init", "seed_5"} and {0.0, 1.0} <= set(path["alpha"])
    at_0 = path[(path["alpha"] == 0) & (path["split"] == "train")].groupby("theta_opt")["loss"].first()
    solutions = result.tables["solutions.csv"].set_index("solution")
    np.testing.assert_allclose(at_0.to_numpy(), solutions.loc[at_0.index, "train_loss"].to_numpy(), rtol=1e-5)


def test_the_same_seeds_give_the_same_tables(result: study.Result, base_params: dict[str, Any],
                                             fake_inputs: Inputs, trained_baseline: None) -> None:
    again = study.run(tiny_config(base_params), fake_inputs)
    for name, table in result.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], table, check_exact=True)
    assert again.summary == result.summary


def test_a_diverged_solution_is_recorded_not_raised(base_params: dict[str, Any], fake_inputs: Inputs) -> None:
    params = copy.deepcopy(base_params)
    params["optimizers"]["sgd"]["lr"] = 1e20  # the logits overflow float32: NaN losses from the first steps
    params["mode_connectivity"] = copy.deepcopy(TINY) | {"seeds": [1, 2]}  # both trained here, not read
    params["baseline"] = copy.deepcopy(TINY_BASELINE)
    params["interpolate"].update(TINY_GRID)
    out = study.run(load(params, study.Config), fake_inputs)
    assert out.tables["solutions.csv"]["diverged"].all()
    barriers = out.tables["barriers.csv"]
    assert barriers["diverged"].all() and barriers["barrier"].isna().all()
    assert out.summary["diverged_solutions"] == 2


@pytest.mark.parametrize(("edit", "message"), [
    ({"seeds": [0]}, "mode_connectivity.seeds: at least two solutions"),
    ({"seeds": [0, 0]}, "mode_connectivity.seeds: must be distinct"),
    ({"curve": {**TINY["curve"], "min_decrease": 1.0}}, "mode_connectivity.curve.min_decrease: must be < 1"),
    ({"curve": {**TINY["curve"], "optimizer": "nadam"}}, "mode_connectivity.curve.optimizer: 'nadam' is not in"),
    ({"curve": {**TINY["curve"], "lr_factor": 0}}, "mode_connectivity.curve.lr_factor: must be > 0"),
    ({"t_points": 2}, "mode_connectivity.t_points: must be > 2"),
    ({"over_and_over": {**TINY["over_and_over"], "fresh_seeds": []}},
     "mode_connectivity.over_and_over.fresh_seeds: must not be empty"),
    ({"over_and_over": {**TINY["over_and_over"], "splits": ["valid"]}},
     "mode_connectivity.over_and_over.splits: 'valid' is not allowed"),
])
def test_bad_params_name_the_key(base_params: dict[str, Any], edit: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        tiny_config(base_params, **edit)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), err.value


def test_a_subset_larger_than_the_split_is_refused(base_params: dict[str, Any], fake_inputs: Inputs) -> None:
    with pytest.raises(ConfigError, match=r"^mode_connectivity\.subset_size: must be <= the 60 examples"):
        study.run(tiny_config(base_params, subset_size=N_TRAIN + 1), fake_inputs)


def test_parallel_processes_give_the_same_tables(result: study.Result, base_params: dict[str, Any],
                                                  fake_inputs: Inputs, trained_baseline: None) -> None:
    """The solutions and the curves train as independent jobs (`Inputs.map`): in two worker processes they
    write the same bytes as one after another in this process."""
    again = study.run(tiny_config(base_params), dataclasses.replace(fake_inputs, jobs=2))
    for name, table in result.tables.items():
        pd.testing.assert_frame_equal(again.tables[name], table, check_exact=True)
