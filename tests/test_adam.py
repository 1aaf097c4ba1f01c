"""Adam with its bias correction as a switch (beyond_gd.optim.adam) and the effective-lr probes
(beyond_gd.optim.probes, cells.attach_probes), against torch.optim and closed forms."""

from __future__ import annotations

import math

import pytest
import torch

from beyond_gd.cells import attach_probes
from beyond_gd.errors import ConfigError
from beyond_gd.optim.adam import Adam
from beyond_gd.optim.probes import effective_lr, quartiles
from beyond_gd.optim.registry import OptimizerSpec

BETAS = (0.9, 0.999)


def stream(steps: int, n: int = 7, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen, dtype=torch.float64) * (1 + i % 3) for i in range(steps)]


def drive(optimizer_of, grads: list[torch.Tensor], n: int | None = None
          ) -> tuple[torch.nn.Parameter, torch.optim.Optimizer]:
    """A parameter of `n` values (the gradients' size) stepped by an optimizer, one gradient per step."""
    p = torch.nn.Parameter(torch.linspace(-1, 1, n or len(grads[0]), dtype=torch.float64))
    opt = optimizer_of([p])
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p, opt


def test_corrected_adam_matches_torch_adam_step_by_step() -> None:
    grads = stream(50)
    for steps in (1, 2, 10, 50):
        ours, _ = drive(lambda ps: Adam(ps, lr=0.01, betas=BETAS, eps=1e-8), grads[:steps])
        theirs, _ = drive(lambda ps: torch.optim.Adam(ps, lr=0.01, betas=BETAS, eps=1e-8), grads[:steps])
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("steps", [1, 2, 5, 100])
@pytest.mark.parametrize("correct", [True, False])
def test_adam_on_a_constant_gradient_steps_as_the_closed_form(steps: int, correct: bool) -> None:
    # m_i = (1 - b1^i) g, r_i = (1 - b2^i) g^2: corrected, every step is lr sign(g); uncorrected, the i-th
    # step is lr (1 - b1^i) / sqrt(1 - b2^i) (3.16 lr at i = 1).
    lr, g = 0.01, torch.full((3,), 2.0, dtype=torch.float64)
    before, _ = drive(lambda ps: Adam(ps, lr=lr, betas=BETAS, eps=0.0, bias_correction=correct), [g] * (steps - 1), n=3)
    after, _ = drive(lambda ps: Adam(ps, lr=lr, betas=BETAS, eps=0.0, bias_correction=correct), [g] * steps)
    expected = lr if correct else lr * (1 - BETAS[0] ** steps) / math.sqrt(1 - BETAS[1] ** steps)
    torch.testing.assert_close(before.detach() - after.detach(), torch.full((3,), expected, dtype=torch.float64))


def test_the_registry_builds_the_project_adam_and_names_a_bad_key() -> None:
    raw = {"_target_": "beyond_gd.optim.adam.Adam", "_partial_": True, "lr": 0.001, "bias_correction": False}
    spec = OptimizerSpec.from_params(raw, "optimizers.adam_uncorrected")
    assert type(spec.build([torch.nn.Parameter(torch.zeros(2))])) is Adam and spec.default("bias_correction") is False
    assert spec.class_name == "beyond_gd.optim.adam.Adam"
    with pytest.raises(ConfigError, match=r"^optimizers\.x\.amsgrad: not an argument of beyond_gd\.optim\.adam\.Adam"):
        OptimizerSpec.from_params({**raw, "amsgrad": True}, "optimizers.x")


def test_adagrads_effective_lr_is_lr_over_the_root_of_the_sum_of_squares() -> None:
    grads = stream(20)
    _, opt = drive(lambda ps: torch.optim.Adagrad(ps, lr=0.1, eps=1e-10), grads)
    expected = 0.1 / (torch.stack(grads).pow(2).sum(0).sqrt() + 1e-10)
    torch.testing.assert_close(effective_lr(opt), expected)
    # It only falls: a sum of squares only grows.
    lrs = [effective_lr(drive(lambda ps: torch.optim.Adagrad(ps, lr=0.1), grads[:k])[1]) for k in (1, 5, 20)]
    assert bool((lrs[0] >= lrs[1]).all() and (lrs[1] >= lrs[2]).all())


def test_rmsprops_effective_lr_follows_the_exponential_average() -> None:
    grads, rho = stream(20), 0.9
    _, opt = drive(lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=rho, eps=1e-8), grads)
    r = torch.zeros_like(grads[0])
    for g in grads:
        r = rho * r + (1 - rho) * g * g
    torch.testing.assert_close(effective_lr(opt), 0.01 / (r.sqrt() + 1e-8))
    # After the gradients shrink, its effective lr rises again (AdaGrad's cannot).
    small = grads + [g * 1e-3 for g in grads]
    rms = effective_lr(drive(lambda ps: torch.optim.RMSprop(ps, lr=0.01, alpha=rho), small)[1])
    ada_before = effective_lr(drive(lambda ps: torch.optim.Adagrad(ps, lr=0.01), grads)[1])
    ada = effective_lr(drive(lambda ps: torch.optim.Adagrad(ps, lr=0.01), small)[1])
    assert bool((rms > effective_lr(opt)).all()) and bool((ada <= ada_before).all())


@pytest.mark.parametrize("make", [lambda ps: torch.optim.Adam(ps, lr=0.01, betas=BETAS),
                                  lambda ps: Adam(ps, lr=0.01, betas=BETAS)])
def test_adams_effective_lr_uses_the_corrected_second_moment(make) -> None:
    g = torch.full((4,), 0.5, dtype=torch.float64)
    _, opt = drive(make, [g] * 3)
    torch.testing.assert_close(effective_lr(opt), torch.full((4,), 0.01 / (0.5 + 1e-8), dtype=torch.float64))
    _, raw = drive(lambda ps: Adam(ps, lr=0.01, betas=BETAS, bias_correction=False), [g] * 3)
    expected = 0.01 / (math.sqrt((1 - BETAS[1] ** 3) * 0.25) + 1e-8)
    torch.testing.assert_close(effective_lr(raw), torch.full((4,), expected, dtype=torch.float64))


def test_sgd_has_no_per_parameter_effective_lr() -> None:
    _, opt = drive(lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9), stream(3))
    assert effective_lr(opt) is None


def test_quartiles_of_a_known_set() -> None:
    q = quartiles(torch.arange(1, 102, dtype=torch.float32))
    assert q == {"lr_q25": 26.0, "lr_median": 51.0, "lr_q75": 76.0}
    assert quartiles(torch.tensor([1.0, 2.0, 3.0, torch.nan])) == {"lr_q25": 1.5, "lr_median": 2.0, "lr_q75": 2.5}


def test_probes_record_update_sizes_then_quartiles_every_k_steps() -> None:
    p = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
    opt = torch.optim.Adagrad([p], lr=0.5)
    rows = attach_probes(opt, every=3, updates=2)
    g = torch.tensor([3.0, 4.0, 0.0, 0.0], dtype=torch.float64)
    for _ in range(7):
        p.grad = g.clone()
        opt.step()
    assert [r["step"] for r in rows] == [1, 2, 3, 6]
    # AdaGrad's first step on a constant gradient is lr per non-zero coordinate: norm 0.5 sqrt(2).
    assert rows[0]["update_norm"] == pytest.approx(0.5 * math.sqrt(2), rel=1e-6)
    assert rows[1]["update_norm"] == pytest.approx(0.5 * math.sqrt(2) / math.sqrt(2), rel=1e-6)
    # At step 6, AdaGrad's lr 0.5 on |g| = 3 and 4 gives 0.5 / (sqrt(6) * 3) and 0.5 / (sqrt(6) * 4); the two
    # coordinates that never had a gradient (r = 0, only lr / eps) are left out: the median is the two's mean.
    assert "update_norm" not in rows[2]
    assert rows[3]["lr_median"] == pytest.approx((0.5 / (math.sqrt(6) * 3) + 0.5 / (math.sqrt(6) * 4)) / 2, rel=1e-6)
    assert torch.isnan(effective_lr(opt)[2:]).all()
    assert attach_probes(torch.optim.SGD([p], lr=0.1), every=None, updates=0) == []
