"""Second-order costs: the memory arithmetic, SciPy's non-linear CG on a torch model's full batch, and the lbfgs
study's pure pieces (float64 evaluation, compute to a target, the lr search's choice, the claim's paired gains)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import torch

from beyond_gd.errors import ConfigError, DataError
from beyond_gd.model import Net
from beyond_gd.optim import second_order as so
from beyond_gd.report.figures.extra_lbfgs import compute_gains
from beyond_gd.studies import lbfgs
from beyond_gd.training import evaluate
from conftest import config


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


def test_a_float64_copy_measures_a_loss_float32_rounds_to_zero() -> None:
    """Logits 20 nats apart: each image's loss is log(1 + 2 e^-20) = 4.1e-9, below float32's epsilon."""
    net = Net(2, 3, 3)
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        net.classifier[5].bias.copy_(torch.tensor([20.0, 0.0, 0.0]))
    x, y = torch.randn(50, 2), torch.zeros(50, dtype=torch.int64)
    exact = math.log1p(2 * math.exp(-20))
    assert lbfgs.evaluate64(net, x.double(), y, 16)[0] == pytest.approx(exact, rel=1e-9)
    assert evaluate(net, x, y, 16)[0] < exact / 2  # float32: round-off
    assert next(net.parameters()).dtype == torch.float32  # the model itself stays as it was


CURVE = {"x": [0.0, 10.0, 20.0, 30.0], "seconds": [0.0, 1.0, 2.0, 4.0], "loss": [1.0, 0.1, 0.01, 0.001]}


@pytest.mark.parametrize(("targets", "interpolate", "expected"), [
    # Not interpolated: the first point at or below the target.
    ([0.1, 0.05, 0.001], False, [(True, 10.0, 1.0), (True, 20.0, 2.0), (True, 30.0, 4.0)]),
    # Interpolated in log-loss: a loss of 0.0316 is half-way between 0.1 and 0.01.
    ([10**-1.5, 10**-2.75], True, [(True, 15.0, 1.5), (True, 27.5, 3.5)]),
    # At or above the start: the start itself; below the curve's end: censored.
    ([1.0, 1e-4], True, [(True, 0.0, 0.0), (False, math.nan, math.nan)]),
])
def test_first_crossings(targets: list[float], interpolate: bool, expected: list[tuple[bool, float, float]]) -> None:
    got = lbfgs.first_crossings(CURVE["x"], CURVE["seconds"], CURVE["loss"], targets, interpolate)
    assert [r for r, _, _ in got] == [r for r, _, _ in expected]
    np.testing.assert_allclose([v for _, *v in got], [v for _, *v in expected], rtol=1e-12)


def test_a_curve_that_diverges_first_is_censored_even_if_its_last_value_is_low() -> None:
    got = lbfgs.first_crossings([1, 2, 3], [1, 2, 3], [0.5, math.inf, 0.0], [0.1], interpolate=True)
    assert got == [(False, pytest.approx(math.nan, nan_ok=True), pytest.approx(math.nan, nan_ok=True))]


def test_the_search_takes_the_lowest_loss_and_skips_a_diverged_rate() -> None:
    search = pd.DataFrame({"optimizer": ["sgd"] * 3 + ["adam"] * 2, "lr": [0.0316, 0.1, 0.316, 0.001, 0.00316],
                           "train_loss": [0.3, 0.2, 0.01, 0.5, 0.4], "diverged": [False, False, True, False, False]})
    assert lbfgs.choose_lrs(search, ["sgd", "adam"]) == {"sgd": 0.1, "adam": 0.00316}
    with pytest.raises(DataError, match="every rate of the lr search diverged for sgd"):
        lbfgs.choose_lrs(search.assign(diverged=search.optimizer == "sgd"), ["sgd", "adam"])


@pytest.mark.parametrize(("override", "message"), [
    ("lbfgs.targets=[0.1,1e-6]", r"^lbfgs\.targets: \[1e-06\] at or below float32's resolution"),
    ("lbfgs.search_factors=[1.0,-1.0]", r"^lbfgs\.search_factors: each must be > 0"),
])
def test_lbfgs_config_errors_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        lbfgs.check(config(lbfgs.Config, override).lbfgs)


def _targets(rows: list[tuple[str, int, float, float | None]]) -> pd.DataFrame:
    """targets.csv rows from (optimizer, seed, target, example-gradients or None: not reached)."""
    return pd.DataFrame([{"optimizer": o, "seed": s, "target": t, "reached": g is not None,
                          "example_gradients": math.nan if g is None else g} for o, s, t, g in rows])


@pytest.mark.parametrize(("sgd", "expected"), [
    ((200.0, 400.0), (math.log10(2) + math.log10(4)) / 2),  # both reached: the mean over seeds
    ((None, 400.0), math.inf),  # SGD never reached it on seed 0: it loses there
    ((None, None), math.inf),
])
def test_compute_gains_pair_seeds_and_count_a_miss_as_a_loss(sgd: tuple, expected: float) -> None:
    units = _targets([("lbfgs", 0, 0.1, 100.0), ("lbfgs", 1, 0.1, 100.0),
                      ("sgd", 0, 0.1, sgd[0]), ("sgd", 1, 0.1, sgd[1])])
    assert compute_gains(units, "lbfgs", ["sgd"])[("sgd", 0.1)] == pytest.approx(expected)


def test_compute_gains_where_lbfgs_misses_or_both_do() -> None:
    units = _targets([("lbfgs", 0, 0.1, None), ("lbfgs", 1, 0.1, 100.0), ("lbfgs", 0, 0.01, None),
                      ("sgd", 0, 0.1, 50.0), ("sgd", 1, 0.1, None), ("sgd", 0, 0.01, None)])
    # Seed 0: L-BFGS missed (-inf), seed 1: SGD did (+inf): no sign; at 0.01 neither reached: no comparison.
    gains = compute_gains(units, "lbfgs", ["sgd"])
    assert list(gains) == [("sgd", 0.1)] and math.isnan(gains[("sgd", 0.1)])
