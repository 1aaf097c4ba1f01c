"""Second-order costs: the memory arithmetic, and SciPy's non-linear CG on a torch model's full batch."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from beyond_gd.model import Net
from beyond_gd.optim import second_order as so


def test_memory_of_bfgs_and_lbfgs_for_the_books_network() -> None:
    n = so.parameter_count(Net(784, 256, 10))
    assert n == 269_322  # 784*256 + 256 + 256*256 + 256 + 256*10 + 10
    mem = so.memory_bytes(n, history=100)
    assert mem["bfgs"] == 269_322**2 * 4  # 290 GB of float32: no machine here holds it
    assert mem["lbfgs"] == (2 * 100 * 269_322 + 100) * 4  # 215 MB
    assert mem["bfgs"] / mem["lbfgs"] == pytest.approx(269_322 / 200, rel=1e-3)
    with pytest.raises(ValueError, match="history"):
        so.memory_bytes(n, history=0)


def test_flat_objective_gives_the_models_loss_and_gradient() -> None:
    torch.manual_seed(0)
    net = Net(12, 8, 3).double()
    x, y = torch.randn(40, 12, dtype=torch.float64), torch.randint(0, 3, (40,))
    fun, w0, calls = so.flat_objective(net, x, y)
    loss, grad = fun(w0)
    assert calls == [1] and grad.shape == w0.shape == (so.parameter_count(net),)
    # The gradient is the loss's: a central difference along a random direction agrees.
    d = np.random.default_rng(0).standard_normal(w0.shape)
    h = 1e-6
    numeric = (fun(w0 + h * d)[0] - fun(w0 - h * d)[0]) / (2 * h)
    assert numeric == pytest.approx(grad @ d, rel=1e-6)


def test_scipy_cg_trains_a_small_network_full_batch_and_counts_evaluations() -> None:
    torch.manual_seed(0)
    net = Net(12, 16, 3).double()
    x = torch.randn(200, 12, dtype=torch.float64)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()  # a learnable 3-class rule
    fun, w0, calls = so.flat_objective(net, x, y)
    start = fun(w0)[0]
    calls[0] = 0
    res = scipy.optimize.minimize(fun, w0, jac=True, method="CG", options={"maxiter": 100})
    assert res.fun < 0.2 * start
    assert calls[0] == res.nfev  # every objective call is one full-batch gradient, as SciPy counts them
