"""The cliff-plateau-bowl toy: its shape, and AdaGrad and RMSProp on known gradient streams."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from beyond_gd.toys import plateau as pl

SURFACE = pl.Surface(height=4.0, cliff_x=1.0, cliff_width=0.15, slope=0.05, bowl_x=9.0, bowl_half_width=0.5,
                     curvature=1.0)
# A plane of slope 0.05 in x and nothing else within reach: the gradient is the constant (-0.05, 0).
PLANE = SURFACE._replace(height=0.0, bowl_x=1e6, curvature=0.0)


def grad(s: pl.Surface, x: float, y: float) -> np.ndarray:
    p = torch.tensor([x, y], dtype=torch.float64, requires_grad=True)
    pl.loss(s, p[0], p[1]).backward()
    return p.grad.numpy()


def test_shape_cliff_then_plateau_then_bowl() -> None:
    s = SURFACE
    # The cliff: a drop of `height` around cliff_x, steep against the plateau's slope.
    assert pl.loss(s, 0.0, 0.0) - pl.loss(s, 2.0, 0.0) == pytest.approx(s.height + 2 * s.slope, rel=0.01)
    assert abs(grad(s, s.cliff_x, 0.0)[0]) == pytest.approx(s.height / (4 * s.cliff_width) + s.slope, rel=1e-9)
    # The plateau: gradient -slope in x, the cliff's tail (e^{-4 / 0.15} of its height) aside.
    assert grad(s, 5.0, 0.0) == pytest.approx([-s.slope, 0.0], abs=1e-9)
    # The bowl: the minimum at (bowl_x, 0), the gradient continuous at its edges (Huber).
    for side in (-1, 1):
        edge = s.bowl_x + side * s.bowl_half_width
        inside, outside = grad(s, edge - side * 1e-9, 0.0)[0], grad(s, edge + side * 1e-9, 0.0)[0]
        assert inside == pytest.approx(outside, abs=1e-8) and outside == pytest.approx(side * s.slope, abs=1e-8)
    assert grad(s, s.bowl_x, 0.0) == pytest.approx([0.0, 0.0], abs=1e-12)
    xs, ys = np.linspace(-1, 12, 50), np.linspace(-1, 1, 7)
    z = pl.grid(s, xs, ys)
    assert z.shape == (7, 50) and np.unravel_index(z.argmin(), z.shape)[0] == 3  # y = 0 row


def test_adagrad_steps_shrink_as_one_over_root_k_on_a_constant_gradient() -> None:
    """AdaGrad's accumulator is the running sum of g^2: on a constant gradient g, step k moves
    lr * |g| / sqrt(k g^2) = lr / sqrt(k) (delta negligible)."""
    lr = 0.1
    path = pl.descend(PLANE, partial(torch.optim.Adagrad, lr=lr, eps=1e-10), (0.0, 0.0), 400)
    k = np.arange(1, 401)
    np.testing.assert_allclose(path.step_size, lr / np.sqrt(k), rtol=1e-6)
    np.testing.assert_allclose(path.grad_norm, PLANE.slope, rtol=1e-12)
    assert path.xy[-1, 0] == pytest.approx(lr * (1 / np.sqrt(k)).sum(), rel=1e-6)


def test_rmsprop_steps_approach_lr_on_a_constant_gradient() -> None:
    """RMSProp's average r_k = (1 - rho^k) g^2 on a constant gradient: step k moves lr / sqrt(1 - rho^k),
    which tends to lr: it does not decay."""
    lr, rho = 0.1, 0.9
    path = pl.descend(PLANE, partial(torch.optim.RMSprop, lr=lr, alpha=rho, eps=1e-10), (0.0, 0.0), 200)
    k = np.arange(1, 201)
    np.testing.assert_allclose(path.step_size, lr / np.sqrt(1 - rho**k), rtol=1e-6)


def test_descend_records_the_first_step_in_the_bowl() -> None:
    start = (SURFACE.bowl_x - 2.0, 0.0)
    path = pl.descend(SURFACE, partial(torch.optim.SGD, lr=10.0), start, 10)
    # SGD at lr 10 on the plateau moves 10 * 0.05 = 0.5 per step: 2.0 away, it lands on the bowl's edge
    # after 3 steps (1.5 moved, 0.5 left).
    assert path.reached_step == 3 and pl.in_bowl(SURFACE, path.xy[3, 0]) and not pl.in_bowl(SURFACE, path.xy[2, 0])
    assert path.xy.shape == (11, 2) and path.loss.shape == (11,) and path.step_size.shape == (10,)
    assert pl.descend(SURFACE, partial(torch.optim.SGD, lr=1e-3), start, 10).reached_step is None


RULES = {"adagrad": (pl.Rule("adagrad", eps=1e-10, alpha=0.0, initial=0.0), partial(torch.optim.Adagrad)),
         "rmsprop": (pl.Rule("rmsprop", eps=1e-8, alpha=0.99, initial=0.0),
                     partial(torch.optim.RMSprop, alpha=0.99, eps=1e-8))}


@pytest.mark.parametrize("name", list(RULES))
@pytest.mark.parametrize("lr", [0.01, 0.1, 0.316])
def test_descend_to_bowl_is_torch_optims_path(name: str, lr: float) -> None:
    """The float-arithmetic rule and torch.optim's class step for step: the same points (to round-off) and the
    same first step in the bowl (RMSProp's at lr 0.1 and 0.316 within the 500 steps)."""
    rule, make = RULES[name]
    record = np.arange(0, 501, 7)
    run = pl.descend_to_bowl(SURFACE, rule, lr, (0.0, 1.0), 500, record)
    path = pl.descend(SURFACE, partial(make, lr=lr), (0.0, 1.0), 500)
    assert run.reached_step == path.reached_step and run.stopped == (path.reached_step or 500)
    assert run.steps[-1] == run.stopped and set(run.steps[:-1]) <= set(record)
    np.testing.assert_allclose(run.xy, path.xy[run.steps], rtol=0, atol=1e-12)
    np.testing.assert_allclose(run.step_size[1:], path.step_size[run.steps[1:] - 1], rtol=0, atol=1e-12)


def test_descend_to_bowl_stops_at_the_bowl_or_the_cap() -> None:
    """RMSProp at lr 0.316 lands in the bowl at step 5 (stops there); AdaGrad at lr 0.01 is still on the cliff's
    foot after 2,000 steps (censored at the cap, its step shrunk to a fraction of the lr)."""
    rms = pl.descend_to_bowl(SURFACE, RULES["rmsprop"][0], 0.316, (0.0, 1.0), 2000, [0, 1, 2, 3, 10, 100])
    assert rms.reached_step == rms.stopped == 5 and rms.steps.tolist() == [0, 1, 2, 3, 5]
    assert pl.in_bowl(SURFACE, rms.xy[-1, 0]) and not pl.in_bowl(SURFACE, rms.xy[-2, 0])
    ada = pl.descend_to_bowl(SURFACE, RULES["adagrad"][0], 0.01, (0.0, 1.0), 2000, [0, 1000])
    assert ada.reached_step is None and ada.stopped == 2000 and ada.steps.tolist() == [0, 1000, 2000]
    assert ada.xy[-1, 0] < SURFACE.bowl_x - SURFACE.bowl_half_width and ada.step_size[-1] < 0.01 / 10
    with pytest.raises(ValueError, match="rule 'adam'"):
        pl.descend_to_bowl(SURFACE, pl.Rule("adam", 1e-8, 0.9, 0.0), 0.1, (0.0, 1.0), 10, [0])


def test_gradient_in_closed_form_is_autograds() -> None:
    for x, y in [(0.0, 1.0), (1.0, -0.3), (5.0, 0.2), (8.7, 0.0), (9.2, 2.0), (12.0, -1.0)]:
        np.testing.assert_allclose(pl.gradient(SURFACE, x, y), grad(SURFACE, x, y), rtol=1e-12, atol=1e-15)
