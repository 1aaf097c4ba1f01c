"""The book's Net, the one training loop (determinism, divergence, budgets, epoch ends), and the baseline study
and a training cell drawing the same batches through it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from beyond_gd import cells, training
from beyond_gd.cells import CellConfig, run_cell
from beyond_gd.data import mnist
from beyond_gd.model import Net, build_model, fresh_init, load_state
from beyond_gd.runtime import map_one_thread, seed_everything
from beyond_gd.stage import write
from beyond_gd.stages.baseline import STAGE
from beyond_gd.studies import baseline
from beyond_gd.study import Inputs
from beyond_gd.training import EpochEnd, evaluate, train
from conftest import REPO, config

BOOK_SHAPES = {
    "classifier.1.weight": (256, 784), "classifier.1.bias": (256,),
    "classifier.3.weight": (256, 256), "classifier.3.bias": (256,),
    "classifier.5.weight": (10, 256), "classifier.5.bias": (10,),
}
OPTIMIZER_FILES = sorted(p.stem for p in (REPO / "conf" / "optimizers").glob("*.yaml"))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("final_relu", [False, True])
def test_state_dict_keys_and_shapes_are_the_books(final_relu: bool, tmp_path: Path) -> None:
    cfg = config(baseline.Config, f"model.final_relu={final_relu}").model
    model = build_model(cfg)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == BOOK_SHAPES
    torch.save(model.state_dict(), tmp_path / "mnist.pt")
    fresh = Net(784, 256, 10, final_relu)
    fresh.load_state_dict(torch.load(tmp_path / "mnist.pt", weights_only=True))
    x = torch.rand(5, 1, 28, 28)
    torch.testing.assert_close(fresh(x), model(x), rtol=0, atol=0)


def test_final_relu_clamps_the_logits() -> None:
    torch.manual_seed(0)
    plain = Net(784, 256, 10)
    relu = Net(784, 256, 10, final_relu=True)
    relu.load_state_dict(plain.state_dict())
    x = torch.rand(64, 784)
    assert (plain(x) < 0).any()
    torch.testing.assert_close(relu(x), plain(x).clamp_min(0))


# --------------------------------------------------------------------------
# training.train on toy data
# --------------------------------------------------------------------------
def toy_data(n: int = 500, dim: int = 20, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen)
    y = (x[:, :classes].argmax(dim=1)).long()
    return x, y


# 500 samples in batches of 64: 8 steps an epoch, the last one of 52.
STEPS_PER_EPOCH = 8


def run_toy(seed: int, lr: float = 0.1, **kwargs: Any) -> tuple[np.ndarray, bool, int, torch.nn.Module]:
    x, y = toy_data()
    seed_everything(seed)
    model = Net(20, 16, 3)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    args = {"max_steps": 3 * STEPS_PER_EPOCH, "batch_size": 64, "divergence_loss": 1e3, "progress": False} | kwargs
    result = train(model, opt, x, y, seed=seed, **args)
    return result.step_loss, result.diverged, result.steps, model


def test_same_seed_gives_identical_loss_curves() -> None:
    a, _, _, _ = run_toy(seed=3)
    b, _, _, _ = run_toy(seed=3)
    c, _, _, _ = run_toy(seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("inductor_loaded", [False, True])
def test_seeding_turns_on_deterministic_kernels_as_torchs_call_does(inductor_loaded: bool) -> None:
    """In a fresh process: the ATen flag on (warn_only off) either way; TorchInductor's config not imported
    for it, and set too where something had imported it."""
    code = ("import sys, torch\n"
            + ("import torch._inductor.config\n" if inductor_loaded else "")
            + "from beyond_gd.runtime import seed_everything\nseed_everything(0)\n"
            "inductor = sys.modules.get('torch._inductor.config')\n"
            "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),"
            " None if inductor is None else inductor.deterministic)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "True" if inductor_loaded else "None"]


def test_batch_order_depends_on_the_seed_alone() -> None:
    """Same init and optimizer: the batches come from `seed`, not from the global generator's state; another
    seed draws other batches from the very first step."""
    x, y = toy_data()

    def losses(seed: int, global_seed: int) -> np.ndarray:
        torch.manual_seed(0)
        model = Net(20, 16, 3)
        torch.manual_seed(global_seed)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        return train(model, opt, x, y, batch_size=64, seed=seed, max_steps=16, divergence_loss=1e3).step_loss

    first = losses(5, global_seed=1)
    assert first.tobytes() == losses(5, global_seed=2).tobytes()
    assert losses(6, global_seed=1)[0] != first[0]


def test_training_learns_and_counts_steps() -> None:
    losses, diverged, steps, model = run_toy(seed=0, max_steps=20 * STEPS_PER_EPOCH)
    x, y = toy_data()
    assert steps == 160 and len(losses) == 160 and not diverged
    assert losses[-8:].mean() < 0.5 * losses[:8].mean()
    assert evaluate(model, x, y, batch_size=128)[1] > 0.8


def test_max_steps_cuts_the_run_short() -> None:
    losses, _, steps, _ = run_toy(seed=0, max_steps=11)
    assert steps == 11 and len(losses) == 11


def test_divergence_is_recorded_not_raised() -> None:
    losses, diverged, steps, _ = run_toy(seed=0, lr=1e4, max_steps=50 * STEPS_PER_EPOCH)
    assert diverged
    assert steps < 50 * STEPS_PER_EPOCH
    assert not np.all(np.isfinite(losses)) or losses.max() > 1e3


def epoch_ends(max_steps: int, stop_at: int | None = None, lr: float = 0.1,
               ) -> tuple[list[EpochEnd], training.TrainResult, list[tuple[float, float]]]:
    """Train 100 samples in batches of 20 (5 steps an epoch), recording every epoch end."""
    x, y = toy_data()
    x, y = x[:100], y[:100]
    seed_everything(0)
    model = Net(20, 16, 3)
    seen: list[EpochEnd] = []
    evaluated: list[tuple[float, float]] = []

    def record(end: EpochEnd) -> bool:
        seen.append(dataclasses.replace(end, losses=end.losses.copy()))
        evaluated.append(evaluate(model, x, y, 100))  # a callback may evaluate the model
        return stop_at is not None and end.epoch >= stop_at

    res = train(model, torch.optim.SGD(model.parameters(), lr=lr), x, y, batch_size=20, seed=0, max_steps=max_steps,
                divergence_loss=1e3, on_epoch_end=record)
    return seen, res, evaluated


def test_epoch_callback_sees_each_completed_epoch() -> None:
    seen, res, evaluated = epoch_ends(max_steps=15)
    assert [(e.epoch, e.step) for e in seen] == [(1, 5), (2, 10), (3, 15)]
    for end in seen:  # the cost of every step so far, as the run records it
        np.testing.assert_array_equal(end.losses, res.step_loss[: end.step])
    assert [e.seconds for e in seen] == sorted(e.seconds for e in seen) and seen[-1].seconds <= res.seconds
    assert (res.steps, res.epochs, res.stopped, res.diverged) == (15, 3, False, False)
    assert len(evaluated) == 3


def test_budget_ending_mid_epoch_is_an_epoch_end() -> None:
    seen, res, _ = epoch_ends(max_steps=12)
    assert [(e.epoch, e.step) for e in seen] == [(1, 5), (2, 10), (3, 12)]
    assert (res.steps, res.epochs, res.stopped) == (12, 3, False)


def test_callback_returning_true_stops_training() -> None:
    seen, res, _ = epoch_ends(max_steps=50, stop_at=2)
    assert [(e.epoch, e.step) for e in seen] == [(1, 5), (2, 10)]
    assert (res.steps, res.epochs, res.stopped, len(res.step_loss)) == (10, 2, True, 10)
    # Asking to stop at the budget's own end is not a stop.
    _, at_budget, _ = epoch_ends(max_steps=10, stop_at=2)
    assert (at_budget.steps, at_budget.stopped) == (10, False)


def test_no_epoch_end_after_divergence() -> None:
    seen, res, _ = epoch_ends(max_steps=100, lr=1e4)
    assert res.diverged and not res.stopped
    assert all(e.step < res.steps for e in seen)


def test_evaluate_matches_a_direct_computation() -> None:
    x, y = toy_data()
    torch.manual_seed(0)
    model = Net(20, 16, 3)
    loss, acc = evaluate(model, x, y, batch_size=77)
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())


# --------------------------------------------------------------------------
# The baseline study and a training cell on a tiny fake MNIST: one loop, one batch order
# --------------------------------------------------------------------------
N_TRAIN, N_TEST = 100, 30
TINY = ("model.hidden_dim=16", "runtime.device=cpu", "runtime.threads=1", "baseline.epochs=3",
        "baseline.batch_size=16", "baseline.max_steps=null", "baseline.eval_batch_size=50")
STEPS = 3 * 7  # 100 images in batches of 16: 7 steps an epoch, the last of 4


def fake_mnist(root: Path, seed: int = 0) -> Path:
    """A torchvision root holding random 'MNIST' (every image distinct), read as the real one is."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8), rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
              rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8), rng.integers(0, 10, N_TEST, dtype=np.uint8)]
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, array in zip(mnist.FILES, arrays, strict=True):
        (raw / name).write_bytes(mnist.encode_idx(array))
    return root


@dataclass
class Call:
    where: str
    seed: int
    batch_size: int
    batches: list[tuple[int, ...]]  # the training images of every training forward pass, in order
    result: training.TrainResult


class Spy:
    """Stands in for `training.train` in a module that trains: records each call and the rows of every
    mini-batch the model is trained on, then runs the real loop."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.calls: list[Call] = []
        # Rows are named by their index in the training split as stored, whatever order a study passes them in.
        x, _ = mnist.load_tensors(root, True, torch.device("cpu"))
        self.rows = {r.numpy().tobytes(): i for i, r in enumerate(x)}
        assert len(self.rows) == len(x), "the images must be distinct to be told apart"
        # raising=True (the default): a module that no longer imports the shared loop fails here.
        monkeypatch.setattr(baseline, "train", self.wrap("baseline"))
        monkeypatch.setattr(cells, "train", self.wrap("cell"))

    def wrap(self, where: str) -> Callable[..., training.TrainResult]:
        def spy(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                **kwargs: Any) -> training.TrainResult:
            rows = self.rows
            batches: list[tuple[int, ...]] = []

            def hook(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
                if module.training:  # evaluation runs in eval mode
                    batches.append(tuple(rows[r.detach().numpy().tobytes()] for r in args[0]))

            handle = model.register_forward_pre_hook(hook)
            try:
                result = training.train(model, optimizer, x, y, **kwargs)
            finally:
                handle.remove()
            self.calls.append(Call(where, kwargs["seed"], kwargs["batch_size"], batches, result))
            return result

        return spy

    def only(self, where: str) -> Call:
        calls = [c for c in self.calls if c.where == where]
        assert len(calls) == 1, f"{where}: trained {len(calls)} times through training.train"
        return calls[0]


def the_baselines_cell(cfg: baseline.Config) -> CellConfig:
    """A cell with the baseline's optimizer, seed, batch size, step budget, model and data."""
    c = cfg.baseline
    return CellConfig(
        id="as-baseline", seed=c.seed, optimizer=cfg.optimizers[c.optimizer], model=cfg.model,
        init="torch_default", train_images=None, batch_size=c.batch_size, max_steps=STEPS,
        divergence_loss=c.divergence_loss, eval_every=1, eval_batch_size=c.eval_batch_size, target_loss=0.1,
        smoothing_window=5, cost="smoothed", stop_margin=None)


def cell_on(root: Path, cell: CellConfig) -> cells.CellResult:
    cpu = torch.device("cpu")
    return run_cell(cell, *mnist.load_tensors(root, True, cpu), *mnist.load_tensors(root, False, cpu), cpu)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return fake_mnist(tmp_path / "mnist")


@pytest.mark.parametrize("optimizer", OPTIMIZER_FILES)
def test_baseline_and_a_cell_train_through_one_loop(optimizer: str, root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Same optimizer, seed, batch size and data: the baseline study and `cells.run_cell` train on the same
    batches in the same order, step for step, and record byte-identical per-step costs."""
    spy = Spy(monkeypatch, root)
    cfg = config(baseline.Config, *TINY, f"baseline.optimizer={optimizer}")
    result = baseline.run(cfg, Inputs(folders={"mnist": root}, workdir=tmp_path / "work"))
    cell = cell_on(root, the_baselines_cell(cfg))

    ours, theirs = spy.only("baseline"), spy.only("cell")
    assert (ours.seed, ours.batch_size) == (theirs.seed, theirs.batch_size) == (cfg.baseline.seed, 16)
    assert len(ours.batches) >= STEPS and ours.batches == theirs.batches
    baseline_losses = result.tables["steps.csv"]["loss"].to_numpy()
    assert baseline_losses.dtype == cell.step_loss.dtype == np.float32
    assert len(baseline_losses) == STEPS and baseline_losses.tobytes() == cell.step_loss.tobytes()
    assert not cell.diverged and not result.summary["diverged"]
    # The same model after every epoch: the two evaluations agree too.
    epochs = result.tables["epochs.csv"]
    assert epochs["step"].tolist() == [r.step for r in cell.epochs] == [7, 14, 21]
    for column in baseline.EVALUATED:
        assert epochs[column].tolist() == [getattr(r, column) for r in cell.epochs], column


def test_each_epoch_visits_every_image_once_and_the_seed_picks_the_order(root: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy(monkeypatch, root)
    runs = {}
    for seed in (0, 1):
        cfg = config(baseline.Config, *TINY, f"baseline.seed={seed}")
        baseline.run(cfg, Inputs(folders={"mnist": root}, workdir=tmp_path / f"work{seed}"))
        cell_on(root, the_baselines_cell(cfg))
        runs[seed] = [c.batches for c in spy.calls[-2:]]
    for seed, (ours, theirs) in runs.items():
        assert ours == theirs, f"seed {seed}: the cell drew other batches than the baseline"
        epochs = [ours[i : i + 7] for i in range(0, STEPS, 7)]
        for epoch in epochs:
            assert [len(b) for b in epoch] == [16] * 6 + [4]
            assert sorted(i for b in epoch for i in b) == list(range(N_TRAIN))
        assert len({tuple(e) for e in epochs}) == 3, "every epoch draws a fresh order"
    assert runs[0][0][0] != runs[1][0][0], "another seed, other batches from the first step"


def test_baseline_result_on_a_tiny_fake_mnist(root: Path, tmp_path: Path) -> None:
    cfg = config(baseline.Config, *TINY)
    result = baseline.run(cfg, Inputs(folders={"mnist": root}, workdir=tmp_path / "work"))
    assert sorted(result.outputs()) == sorted(STAGE.outputs)
    steps = result.tables["steps.csv"]
    assert list(steps.columns) == ["step", "epoch", "loss"]
    assert steps["step"].tolist() == list(range(1, STEPS + 1))
    assert steps["epoch"].tolist() == [1] * 7 + [2] * 7 + [3] * 7
    epochs = result.tables["epochs.csv"]
    assert list(epochs.columns) == ["epoch", "step", *baseline.EVALUATED]
    assert epochs["epoch"].tolist() == [1, 2, 3]
    assert epochs[["train_accuracy", "test_accuracy"]].stack().between(0, 1).all()
    last = epochs.iloc[-1]
    assert result.metrics == {k: last[k] for k in ("test_accuracy", "test_loss", "train_loss")}
    assert result.summary == {**{k: last[k] for k in baseline.EVALUATED}, "steps": STEPS, "diverged": False}

    # init.pt is the run's own initialisation (what a fresh init with its seed draws), mnist.pt the trained net.
    init, trained = result.checkpoints["init.pt"], result.checkpoints["mnist.pt"]
    drawn = fresh_init(cfg.model, cfg.baseline.seed, torch.device("cpu"))
    assert sorted(drawn) == sorted(init) and all(torch.equal(init[k], v) for k, v in drawn.items())
    assert all(not torch.equal(init[k], trained[k]) for k in init)
    out = tmp_path / "out"
    write(result, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(STAGE.outputs)
    model = build_model(cfg.model)
    state = load_state(out / "mnist.pt", model, torch.device("cpu"))
    assert all(torch.equal(state[k], trained[k]) for k in trained)
    x, y = mnist.load_tensors(root, False, torch.device("cpu"))
    assert evaluate(model, x, y, 50) == (last["test_loss"], last["test_accuracy"])


def test_baseline_max_steps_ends_mid_epoch_with_an_evaluation(root: Path, tmp_path: Path) -> None:
    cfg = config(baseline.Config, *TINY, "baseline.max_steps=10")
    result = baseline.run(cfg, Inputs(folders={"mnist": root}, workdir=tmp_path / "work"))
    assert len(result.tables["steps.csv"]) == 10 and result.summary["steps"] == 10
    assert result.tables["epochs.csv"]["step"].tolist() == [7, 10]


def test_a_diverged_baseline_still_reports_a_final_evaluation(root: Path, tmp_path: Path) -> None:
    cfg = config(baseline.Config, *TINY, "optimizers.sgd.lr=1e6", "baseline.divergence_loss=10")
    result = baseline.run(cfg, Inputs(folders={"mnist": root}, workdir=tmp_path / "work"))
    assert result.summary["diverged"] is True and result.summary["steps"] < STEPS
    assert set(result.metrics) == {"test_accuracy", "test_loss", "train_loss"}
    assert "DIVERGED" in result.lines[0]


def test_dead_output_units_are_the_units_zero_on_every_input() -> None:
    """With the first edition's ReLU on the logits, a unit whose bias pushes it below zero on every image is
    dead; one that fires on a single image is alive; without the final ReLU nothing is dead."""
    torch.manual_seed(0)
    x = torch.randn(300, 1, 28, 28)
    for final_relu in (True, False):
        net = Net(784, 32, 10, final_relu=final_relu)
        with torch.no_grad():
            net.classifier[5].bias[[2, 4, 7]] = -1e6  # never positive
        assert training.dead_output_units(net, x, batch_size=64) == ([2, 4, 7] if final_relu else [])
    # Unit 4 revived by one input that drives it far positive: alive.
    net = Net(784, 32, 10, final_relu=True)
    with torch.no_grad():
        net.classifier[5].bias[[2, 4]] = -1e3
        net.classifier[5].weight[4] = 0.0
        net.classifier[5].weight[4, 0] = 1e6  # the first hidden unit's activation, positive on some input
    assert 2 in training.dead_output_units(net, x, batch_size=64)
    assert 4 not in training.dead_output_units(net, x, batch_size=64)
    assert net.training  # the mode is restored


def test_output_units_share_positive_on_their_own_class() -> None:
    """The share of each class's own images on which its output unit is positive, counted in evaluate's pass:
    a unit forced positive everywhere scores 1, a dead one 0, one positive exactly on its class's first half
    of the images 0.5; across batch boundaries, as one pass over the whole split."""
    torch.manual_seed(0)
    x = torch.randn(200, 1, 28, 28)
    y = torch.arange(200) % 10
    net = Net(784, 32, 10, final_relu=True)
    with torch.no_grad():
        net.classifier[5].weight.zero_()
        net.classifier[5].bias.fill_(-1.0)
        net.classifier[5].bias[3] = 1.0  # always positive
    units = training.OutputUnits()
    training.evaluate(net, x, y, batch_size=64, units=units)
    assert units.own_positive_share[3] == 1.0 and units.own_positive_share[0] == 0.0
    assert units.dead == [c for c in range(10) if c != 3]
    # Unit 5 positive on the first 100 images only (through an input pixel that only they light up).
    x2 = x.clone()
    x2[:, 0, 0, 0] = 0.0
    x2[:100, 0, 0, 0] = 1e3
    with torch.no_grad():
        hidden = net.classifier[:5](x2.flatten(1))  # the last hidden layer's activations
    k = int((hidden[:100].min(0).values - hidden[100:].max(0).values).argmax())  # a unit that separates them
    with torch.no_grad():
        gap_low, gap_high = hidden[100:, k].max().item(), hidden[:100, k].min().item()
        net.classifier[5].weight[5, k] = 1.0
        net.classifier[5].bias[5] = -(gap_low + gap_high) / 2
    units = training.OutputUnits()
    training.evaluate(net, x2, y, batch_size=64, units=units)
    assert gap_high > gap_low and units.own_positive_share[5] == pytest.approx(0.5)


def _short_run(seed: int) -> tuple[int, bool, list[float]]:
    """What `map_one_thread` sees of its call: the threads, the deterministic flag, and a seeded training's
    losses (module level: the worker processes unpickle it by reference)."""
    seed_everything(seed)
    model = Net(784, 16, 10)
    x = torch.rand(256, 784)
    y = torch.randint(0, 10, (256,))
    res = training.train(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, batch_size=32, seed=seed,
                         max_steps=16, divergence_loss=1e3)
    return torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), res.step_loss.tolist()


@pytest.mark.parametrize("jobs", [1, 2])
def test_map_one_thread_runs_each_call_at_one_thread_and_gives_the_same_numbers_in_processes(jobs: int) -> None:
    """In this process (jobs 1) or in worker processes (jobs 2): each call at one torch thread with
    deterministic kernels, the results in the items' order and equal to one-thread calls here; this
    process's thread count is left as it was."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        got = map_one_thread(_short_run, [3, 1, 2], jobs)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert [g[:2] for g in got] == [(1, True)] * 3
    torch.set_num_threads(1)
    try:
        expected = [_short_run(s)[2] for s in (3, 1, 2)]
    finally:
        torch.set_num_threads(before)
    assert [g[2] for g in got] == expected and expected[0] != expected[1]
