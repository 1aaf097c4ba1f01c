"""The book's Net, and the in-memory training loop: determinism, divergence, budgets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from beyond_gd.config import ModelConfig, section
from beyond_gd.model import Net, build_model
from beyond_gd.runtime import seed_everything
from beyond_gd.training import EpochRecord, evaluate, train
from conftest import composed

BOOK_SHAPES = {
    "classifier.1.weight": (256, 784), "classifier.1.bias": (256,),
    "classifier.3.weight": (256, 256), "classifier.3.bias": (256,),
    "classifier.5.weight": (10, 256), "classifier.5.bias": (10,),
}


@pytest.mark.parametrize("final_relu", [False, True])
def test_state_dict_keys_and_shapes_are_the_books(final_relu: bool, tmp_path: Path) -> None:
    cfg = section(composed(f"model.final_relu={final_relu}"), "model", ModelConfig)
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


def toy_data(n: int = 500, dim: int = 20, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen)
    y = (x[:, :classes].argmax(dim=1)).long()
    return x, y


def run_toy(seed: int, lr: float = 0.1, **kwargs) -> tuple[np.ndarray, bool, int, torch.nn.Module]:
    x, y = toy_data()
    seed_everything(seed)
    model = Net(20, 16, 3)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    args = {"epochs": 3, "batch_size": 64, "divergence_loss": 1e3, "progress": False} | kwargs
    result = train(model, opt, x, y, seed=seed, **args)
    return result.step_loss, result.diverged, result.steps, model


def test_same_seed_gives_identical_loss_curves() -> None:
    a, _, _, _ = run_toy(seed=3)
    b, _, _, _ = run_toy(seed=3)
    c, _, _, _ = run_toy(seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_training_learns_and_counts_steps() -> None:
    losses, diverged, steps, model = run_toy(seed=0, epochs=20)
    x, y = toy_data()
    # 500 samples in batches of 64: 8 steps an epoch, the last one of 52.
    assert steps == 160 and len(losses) == 160 and not diverged
    assert losses[-8:].mean() < 0.5 * losses[:8].mean()
    assert evaluate(model, x, y, batch_size=128)[1] > 0.8


def test_max_steps_cuts_the_run_short() -> None:
    losses, _, steps, _ = run_toy(seed=0, max_steps=11)
    assert steps == 11 and len(losses) == 11


def test_divergence_is_recorded_not_raised() -> None:
    losses, diverged, steps, _ = run_toy(seed=0, lr=1e4, epochs=50)
    assert diverged
    assert steps < 50 * 8
    assert not np.all(np.isfinite(losses)) or losses.max() > 1e3


def test_epoch_callback_sees_each_completed_epoch() -> None:
    x, y = toy_data()
    seed_everything(0)
    model = Net(20, 16, 3)
    seen: list[tuple[int, int]] = []

    def record(epoch: int, step: int) -> EpochRecord:
        seen.append((epoch, step))
        return EpochRecord(epoch, step, *evaluate(model, x, y, 500), *evaluate(model, x, y, 500))

    train(model, torch.optim.SGD(model.parameters(), lr=0.1), x, y, epochs=3, batch_size=100, seed=0,
          divergence_loss=1e3, on_epoch_end=record, progress=False)
    assert seen == [(1, 5), (2, 10), (3, 15)]


def test_evaluate_matches_a_direct_computation() -> None:
    x, y = toy_data()
    torch.manual_seed(0)
    model = Net(20, 16, 3)
    loss, acc = evaluate(model, x, y, batch_size=77)
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-6)
    assert acc == pytest.approx((logits.argmax(1) == y).float().mean().item())
