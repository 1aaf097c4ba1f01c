"""Heavy ball and Nesterov on quadratics: the recurrences against their closed-form rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from beyond_gd.toys import momentum_rates as mr

KAPPAS = [4.0, 30.0, 300.0, 3000.0]


@pytest.mark.parametrize("method", mr.METHODS)
@pytest.mark.parametrize("kappa", KAPPAS)
def test_tuned_rate_is_the_textbook_rate(method: mr.Method, kappa: float) -> None:
    lam = mr.spectrum(40, kappa)
    assert lam[0] == pytest.approx(1 / kappa) and lam[-1] == pytest.approx(1.0)
    s = mr.tuned(method, lam[0], lam[-1])
    # The tuned heavy ball has a double root at both ends of the spectrum: its modulus comes through
    # a square root of a round-off-sized discriminant (~1e-8 relative).
    assert mr.rate(method, lam, s) == pytest.approx(mr.theory_rate(method, kappa), rel=1e-7)


@pytest.mark.parametrize("method", mr.METHODS)
@pytest.mark.parametrize("kappa", KAPPAS)
def test_measured_decay_follows_the_rate(method: mr.Method, kappa: float) -> None:
    """The distance shrinks by the rate per step, asymptotically: the measured per-step factor over the
    second half of the run sits at the slowest mode's root modulus, a little above it where that root
    is double (k * rate^k: the tuned heavy ball and Nesterov at mu)."""
    lam = mr.spectrum(40, kappa)
    s = mr.tuned(method, lam[0], lam[-1])
    steps, history = mr.steps_to_tolerance(method, lam, s, np.ones(40), 1e-10, 500_000)
    assert steps is not None and history[-1] <= 1e-10
    tail = history[steps // 2:]
    measured = (tail[-1] / tail[0]) ** (1 / (len(tail) - 1))
    assert 0.99 < measured / mr.rate(method, lam, s) < 1.08
    # ... and the step count is the geometric prediction up to the transient (a polynomial prefactor
    # for the repeated root of the tuned heavy ball).
    assert 0.5 < steps / mr.predicted_steps(mr.rate(method, lam, s), 1e-10) < 2.0


def test_recurrences_match_torch_sgd() -> None:
    """Heavy ball is torch's SGD(momentum=m) iterate for iterate. Torch's SGD(nesterov=True) keeps the
    look-ahead point as its parameter: after step k it holds x_k + m (x_k - x_{k-1})."""
    lam = mr.spectrum(5, 50.0)
    s = mr.Setting(0.5, 0.8)
    for method, nesterov in (("heavy_ball", False), ("nesterov", True)):
        p = torch.ones(5, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.SGD([p], lr=s.lr, momentum=s.momentum, nesterov=nesterov)
        x_prev = np.ones(5)
        for _, x in zip(range(30), mr.iterates(method, lam, s, np.ones(5))):
            opt.zero_grad()
            (0.5 * (torch.as_tensor(lam) * p * p).sum()).backward()
            opt.step()
            expected = x + s.momentum * (x - x_prev) if nesterov else x
            np.testing.assert_allclose(p.detach().numpy(), expected, rtol=1e-12)
            x_prev = x


def test_rate_at_or_above_one_diverges_and_is_reported() -> None:
    lam = mr.spectrum(10, 10.0)
    s = mr.Setting(2.5, 0.0)  # lr * L = 2.5 > 2: gradient descent diverges on the top mode
    assert mr.rate("gd", lam, s) > 1
    steps, history = mr.steps_to_tolerance("gd", lam, s, np.ones(10), 1e-6, 50)
    assert steps is None and history[-1] > 1
    assert mr.predicted_steps(mr.rate("gd", lam, s), 1e-6) == math.inf


@pytest.mark.parametrize("bad", [dict(dim=1, kappa=10.0), dict(dim=5, kappa=0.5)])
def test_spectrum_refuses_bad_shapes(bad: dict) -> None:
    with pytest.raises(ValueError, match="dim"):
        mr.spectrum(**bad)
