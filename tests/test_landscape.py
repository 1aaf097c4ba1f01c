"""The loss landscape: interpolation paths (Fig 6-3), symmetries (Fig 6-2), Hessian spectra.

Maths against references (a per-alpha loop of `training.evaluate`, a dense
Hessian, exact factorials); the three studies run on a tiny fake MNIST and a
tiny model; bad params are one-line errors naming the key.
"""

from __future__ import annotations

import copy
import importlib
import json
import math

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from beyond_gd import measures
from beyond_gd.config import load
from beyond_gd.data import mnist
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import density as sd
from beyond_gd.landscape import spectrum
from beyond_gd.landscape import hessian as hs
from beyond_gd.landscape import identifiability as ident
from beyond_gd.landscape.interpolation import affine_head, alpha_grid, mix, path_loss, sub_state, summarize_path
from beyond_gd.landscape.oscillation import oscillation
from beyond_gd.model import Net
from beyond_gd.stage import Stage, write
from beyond_gd.study import Inputs, Result
from beyond_gd.training import evaluate
from conftest import composed, config

NAMES = ("interpolate", "identifiability", "hessian", "hessian_density")
# Each study and its stage's declaration, by name.
STUDIES = {name: importlib.import_module(f"beyond_gd.studies.{name}") for name in NAMES}
STAGES: dict[str, Stage] = {name: importlib.import_module(f"beyond_gd.stages.{name}").STAGE for name in NAMES}


pytestmark = pytest.mark.usefixtures("one_thread")


def states(in_dim: int, hidden: int, out_dim: int, *seeds: int, dtype: torch.dtype = torch.float32) -> list[dict]:
    out = []
    for seed in seeds:
        torch.manual_seed(seed)
        out.append({k: v.to(dtype) for k, v in Net(in_dim, hidden, out_dim).state_dict().items()})
    return out


def toy_data(n: int, dim: int, classes: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=gen, dtype=dtype), torch.randint(0, classes, (n,), generator=gen)


# --------------------------------------------------------------------------
# Interpolation
# --------------------------------------------------------------------------
def test_books_grid_has_80_points_with_0_and_1_exactly() -> None:
    grid = alpha_grid(-2.0, 2.0, 0.05)
    assert len(grid) == len(torch.arange(-2, 2, 0.05)) == 80
    assert 0.0 in grid and 1.0 in grid and grid[0] == -2.0 and grid[-1] < 2.0


def test_grid_that_misses_an_endpoint_gets_it() -> None:
    grid = alpha_grid(0.1, 2.0, 0.3)
    assert 0.0 in grid and 1.0 in grid and np.all(np.diff(grid) > 0)


@pytest.mark.parametrize(("alpha", "which"), [(0.0, 0), (1.0, 1)])
def test_mix_gives_the_endpoints_bit_for_bit(alpha: float, which: int) -> None:
    opt, rand = states(6, 5, 3, 0, 1)
    mixed = mix(opt, rand, torch.tensor([alpha, 0.5]))
    for k in opt:
        assert torch.equal(mixed[k][0], (opt, rand)[which][k])
        torch.testing.assert_close(mixed[k][1], (opt[k] + rand[k]) / 2)


def naive_path(model: Net, opt: dict, rand: dict, alphas: torch.Tensor, x, y) -> tuple[np.ndarray, np.ndarray]:
    """The reference: load each alpha's weights into the model and evaluate it."""
    losses, accs = [], []
    for a in alphas.tolist():
        model.load_state_dict({k: (1 - a) * opt[k] + a * rand[k] for k in opt})
        loss, acc = evaluate(model, x, y, batch_size=len(x))
        losses.append(loss)
        accs.append(acc)
    return np.array(losses), np.array(accs)


@pytest.mark.parametrize("final_relu", [False, True])
def test_path_endpoints_reproduce_the_endpoint_models(final_relu: bool) -> None:
    model = Net(20, 8, 4, final_relu)
    opt, rand = states(20, 8, 4, 0, 1)
    x, y = toy_data(300, 20, 4)
    loss, acc = path_loss(model.classifier, sub_state(opt, "classifier."), sub_state(rand, "classifier."),
                          torch.tensor([0.0, 1.0]), x, y, batch_size=300, alpha_chunk=2)
    for i, state in enumerate((opt, rand)):
        model.load_state_dict(state)
        ref_loss, ref_acc = evaluate(model, x, y, batch_size=300)
        assert loss[i] == pytest.approx(ref_loss, rel=1e-6)
        assert acc[i] == ref_acc


@pytest.mark.parametrize(("batch_size", "alpha_chunk"), [(1000, 100), (64, 7), (17, 1)])
@pytest.mark.parametrize("final_relu", [False, True])
def test_batched_path_equals_a_loop_over_alphas(batch_size: int, alpha_chunk: int, final_relu: bool) -> None:
    model = Net(20, 8, 4, final_relu)
    opt, rand = states(20, 8, 4, 2, 3)
    x, y = toy_data(300, 20, 4, seed=1)
    alphas = torch.from_numpy(alpha_grid(-2.0, 2.0, 0.25))
    loss, acc = path_loss(model.classifier, sub_state(opt, "classifier."), sub_state(rand, "classifier."),
                          alphas, x, y, batch_size=batch_size, alpha_chunk=alpha_chunk)
    ref_loss, ref_acc = naive_path(model, opt, rand, alphas, x, y)
    np.testing.assert_allclose(loss, ref_loss, rtol=0, atol=1e-5)
    np.testing.assert_allclose(acc, ref_acc, rtol=0, atol=1 / len(x) + 1e-12)
    assert np.ptp(loss) > 0.1, "the path must not be flat, or the comparison proves nothing"


def test_affine_head_needs_a_leading_linear_layer() -> None:
    assert affine_head(Net(4, 3, 2).classifier) == 2
    with pytest.raises(ValueError, match="Linear"):
        affine_head(torch.nn.Sequential(torch.nn.Conv1d(1, 1, 3), torch.nn.Linear(3, 2)))


GRID = np.round(np.arange(-1.0, 2.0, 0.1), 12)
CURVES = {
    # name: (loss over GRID, minima in (0, 1), monotone on [0, 1])
    "bowl": ((GRID - 0.0) ** 2, 0, True),
    "dip at 0.5": ((GRID) ** 2 - 0.5 * np.exp(-((GRID - 0.5) ** 2) / 0.005), 1, False),
    "two dips": (GRID ** 2 - 0.4 * np.exp(-((GRID - 0.3) ** 2) / 0.002) - 0.4 * np.exp(-((GRID - 0.7) ** 2) / 0.002),
                 2, False),
}


@pytest.mark.parametrize("name", sorted(CURVES))
def test_local_minima_between_0_and_1_are_counted(name: str) -> None:
    loss, minima, monotone = CURVES[name]
    s = summarize_path(GRID, loss, flat_window=0.1, min_depth=1e-6)
    assert s.local_minima == s.local_minima_strict == minima
    assert s.monotone_0_to_1 is monotone
    assert s.loss_at_0 == loss[10] and s.loss_at_1 == loss[20]
    assert all(0 < a < 1 for a in s.minima_alphas)


def test_shallow_minima_below_min_depth_are_not_counted() -> None:
    loss = 2.3 + 1e-8 * (np.arange(len(GRID)) % 2)  # a plateau with round-off-sized wiggles
    s = summarize_path(GRID, loss, flat_window=0.1, min_depth=1e-6)
    assert s.local_minima == 0 and s.local_minima_strict > 0


def test_a_plateau_at_1_has_a_small_slope_ratio() -> None:
    plateau = 2.3 * np.tanh(4 * GRID.clip(0)) ** 2  # rises from 0, flat well before alpha = 1
    s = summarize_path(GRID, plateau, flat_window=0.1, min_depth=1e-6)
    assert s.slope_ratio < 0.05 and s.barrier == 0.0
    bowl = summarize_path(GRID, GRID ** 2, flat_window=0.1, min_depth=1e-6)
    assert bowl.slope_ratio > 1


# --------------------------------------------------------------------------
# Identifiability
# --------------------------------------------------------------------------
def transforms(state: dict, layers: list[str], gen: torch.Generator) -> dict[str, dict]:
    widths = ident.hidden_widths(state, layers)
    perms = ident.random_permutations(widths, gen)
    scales = ident.random_scales(widths, 0.125, 8.0, gen)
    return {"permutation": ident.permute_units(state, layers, perms),
            "rescaling": ident.rescale_units(state, layers, scales),
            "both": ident.permute_units(ident.rescale_units(state, layers, scales), layers, perms)}


@pytest.mark.parametrize("final_relu", [False, True])
@pytest.mark.parametrize("name", ["permutation", "rescaling", "both"])
def test_symmetries_leave_the_outputs_unchanged(name: str, final_relu: bool) -> None:
    model = Net(20, 32, 5, final_relu)
    state = states(20, 32, 5, 0)[0]
    layers = ident.linear_layers(model)
    new = transforms(state, layers, torch.Generator().manual_seed(0))[name]
    x, _ = toy_data(200, 20, 5)
    before = torch.func.functional_call(model, state, (x,))
    after = torch.func.functional_call(model, new, (x,))
    assert max((new[k] - state[k]).abs().max() for k in state) > 0.1, "the parameters must really move"
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_permuting_incoming_weights_only_is_not_a_symmetry() -> None:
    model = Net(20, 32, 5)
    state = states(20, 32, 5, 0)[0]
    layers = ident.linear_layers(model)
    perms = ident.random_permutations(ident.hidden_widths(state, layers), torch.Generator().manual_seed(0))
    x, _ = toy_data(200, 20, 5)
    before = torch.func.functional_call(model, state, (x,))
    after = torch.func.functional_call(model, ident.permute_incoming_only(state, layers, perms), (x,))
    assert (after - before).abs().max() > 1e-2


def test_negative_scale_breaks_relu_invariance() -> None:
    """Why k must be positive: relu(-z) != -relu(z)."""
    model = Net(20, 32, 5)
    state = states(20, 32, 5, 0)[0]
    layers = ident.linear_layers(model)
    flipped = ident.rescale_units(state, layers, [-torch.ones(32), torch.ones(32)])
    x, _ = toy_data(200, 20, 5)
    assert (torch.func.functional_call(model, flipped, (x,)) - torch.func.functional_call(model, state, (x,))
            ).abs().max() > 1e-2


def test_permutation_then_its_inverse_is_the_identity_exactly() -> None:
    state = states(6, 5, 3, 0)[0]
    layers = ident.linear_layers(Net(6, 5, 3))
    perms = ident.random_permutations([5, 5], torch.Generator().manual_seed(1))
    back = ident.permute_units(ident.permute_units(state, layers, perms), layers, [torch.argsort(p) for p in perms])
    assert all(torch.equal(back[k], state[k]) for k in state)


@pytest.mark.parametrize("widths", [[3], [5, 7], [256, 256]])
def test_log10_orderings_is_log10_of_the_product_of_factorials(widths: list[int]) -> None:
    exact = math.prod(math.factorial(n) for n in widths)
    assert measures.log10_orderings(widths) == pytest.approx(math.log10(exact), rel=1e-12)


def test_book_model_has_256_factorial_squared_orderings() -> None:
    state = Net(784, 256, 10).state_dict()
    widths = ident.hidden_widths(state, ident.linear_layers(Net(784, 256, 10)))
    assert widths == [256, 256]
    assert measures.log10_orderings(widths) == pytest.approx(2 * math.log10(math.factorial(256)))


def test_tiny_example_checks_every_ordering_of_3_neurons() -> None:
    ex = ident.tiny_example(2, 3, 2, 4, torch.Generator().manual_seed(0))
    assert len(ex.orderings) == 6 and sorted(ex.perm) == [0, 1, 2] and ex.perm != [0, 1, 2]
    assert max(ex.max_output_change) < 1e-6
    np.testing.assert_allclose(ex.outputs_permuted, ex.outputs, atol=1e-6)
    assert np.array(ex.w_in_permuted).tolist() == np.array(ex.w_in)[ex.perm].tolist()
    assert np.array(ex.w_out_permuted).tolist() == np.array(ex.w_out)[:, ex.perm].tolist()


# --------------------------------------------------------------------------
# Hessian
# --------------------------------------------------------------------------
def dense_problem(seed: int, final_relu: bool):
    """A model small enough for a dense Hessian (35 parameters), in float64."""
    model = Net(4, 3, 2, final_relu).double()
    state = states(4, 3, 2, seed, dtype=torch.float64)[0]
    # Lift the logits so a final ReLU is active on most examples (a dead one makes H = 0).
    state["classifier.5.bias"] = state["classifier.5.bias"] + 2.0
    x, y = toy_data(40, 4, 2, seed=seed, dtype=torch.float64)
    layout = hs.FlatLayout.of(state)

    def loss(theta: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.func.functional_call(model, layout.unflatten(theta), (x,)), y)

    dense = torch.autograd.functional.hessian(loss, layout.flatten(state))
    return model, state, x, y, layout, dense


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hvp_equals_the_dense_hessian_times_v(seed: int) -> None:
    model, state, x, y, layout, dense = dense_problem(seed, False)
    v = torch.randn(layout.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    torch.testing.assert_close(hs.loss_hvp(model, state, x, y, batch_size=7)(v), dense @ v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("final_relu", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lanczos_eigenvalues_match_the_dense_hessian(seed: int, final_relu: bool) -> None:
    model, state, x, y, layout, dense = dense_problem(seed, final_relu)
    hvp = hs.loss_hvp(model, state, x, y, batch_size=40)
    run = hs.lanczos(hvp, layout.dim, layout.dim, torch.Generator().manual_seed(seed), torch.device("cpu"))
    pairs = hs.extreme_eigenpairs(hvp, run, top_k=3)
    exact = np.linalg.eigvalsh(dense.numpy())
    np.testing.assert_allclose([p.value for p in pairs if p.which == "top"], exact[::-1][:3], atol=1e-4)
    assert pairs[-1].which == "min" and pairs[-1].value == pytest.approx(exact[0], abs=1e-4)
    assert max(p.residual for p in pairs) < 1e-6


def test_hutchinson_estimates_the_trace() -> None:
    model, state, x, y, layout, dense = dense_problem(0, False)
    draws = hs.hutchinson(hs.loss_hvp(model, state, x, y, batch_size=40), layout.dim, 2000,
                          torch.Generator().manual_seed(0), torch.device("cpu"))
    stderr = draws.std(ddof=1) / np.sqrt(len(draws))
    assert abs(draws.mean() - torch.trace(dense).item()) < 4 * stderr


def test_lanczos_stops_when_the_krylov_space_is_exhausted() -> None:
    diag = torch.tensor([5.0, 5.0, 1.0, -2.0], dtype=torch.float64)
    run = hs.lanczos(lambda v: diag * v, 4, 4, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert len(run.alphas) == 3  # three distinct eigenvalues
    np.testing.assert_allclose(run.ritz()[0], [-2.0, 1.0, 5.0], atol=1e-12)


# --------------------------------------------------------------------------
# Oscillation of successive updates along a direction (the hessian stage's momentum check)
# --------------------------------------------------------------------------
def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n)


@pytest.mark.parametrize(("name", "projections", "lo", "hi", "flips"), [
    ("alternating", (-1.0) ** np.arange(400) * (1 + 0.1 * np.abs(_noise(400))), -1.0, -0.95, 1.0),
    ("constant sign", 1 + 0.1 * np.abs(_noise(400)), 0.95, 1.0, 0.0),
    # 10,000 i.i.d. draws: the autocorrelation's standard error is 1 / sqrt(N) = 0.01.
    ("iid noise", _noise(10_000), -0.04, 0.04, 0.5),
    ("geometric, ratio -0.5", (-0.5) ** np.arange(60), -0.51, -0.49, 1.0),
])
def test_oscillation_statistics_on_constructed_sequences(name: str, projections: np.ndarray, lo: float, hi: float,
                                                         flips: float) -> None:
    stats = oscillation(projections)
    assert lo <= stats.autocorrelation <= hi, name
    assert stats.sign_flip_share == pytest.approx(flips, abs=0.03)
    assert stats.rms_projection == pytest.approx(np.sqrt(np.mean(projections**2)))
    assert stats.updates == len(projections)


def test_oscillation_cuts_a_diverged_run_at_its_first_non_finite_update() -> None:
    stats = oscillation(np.array([1.0, -1.0, 1.0, np.nan, 5.0, np.inf]))
    assert stats.updates == 3 and stats.autocorrelation == pytest.approx(-2 / 3) and stats.sign_flip_share == 1.0
    assert np.isnan(oscillation(np.array([np.inf, 1.0])).autocorrelation)
    assert np.isnan(oscillation(np.zeros(5)).autocorrelation)


def quadratic_updates(times: float, momentum: float, seed: int, steps: int = 40) -> np.ndarray:
    """torch's SGD on f(x) = x^T H x / 2, H of eigenvalues (10, 1, 0.1) in a random basis, at lr = times / 10:
    each update x_{t+1} - x_t projected on H's top eigenvector (40 steps: 0.5^40 = 1e-12, above round-off)."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=torch.float64))
    h = q @ torch.diag(torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64)) @ q.T
    x = torch.nn.Parameter(torch.randn(3, generator=gen, dtype=torch.float64))
    optimizer = torch.optim.SGD([x], lr=times / 10.0, momentum=momentum)
    projections = []
    for _ in range(steps):
        before = x.detach().clone()
        optimizer.zero_grad()
        (0.5 * x @ h @ x).backward()
        optimizer.step()
        projections.append(float((x.detach() - before) @ q[:, 0]))
    return np.array(projections)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("times", "flips"), [(0.1, 0.0), (1.5, 1.0)])
def test_gradient_descent_zigzags_along_the_top_direction_past_lr_lambda_1_and_momentum_damps_it(
        times: float, flips: float, seed: int) -> None:
    """Along the top eigendirection GD multiplies each update by 1 - lr lambda: the autocorrelation is that
    ratio, negative once lr lambda > 1; heavy-ball momentum 0.9 at the same lr keeps it larger (the
    mechanism the hessian stage measures on the MLP)."""
    gd, heavy = (oscillation(quadratic_updates(times, m, seed)) for m in (0.0, 0.9))
    assert gd.autocorrelation == pytest.approx(1 - times, abs=0.01) and gd.sign_flip_share == flips
    assert heavy.autocorrelation > gd.autocorrelation and heavy.autocorrelation > 0


# --------------------------------------------------------------------------
# The Hessian's density (stochastic Lanczos quadrature)
# --------------------------------------------------------------------------
def spectrum_hvp(eigenvalues: np.ndarray, seed: int = 0):
    """v -> Q diag(eigenvalues) Q^T v for a random orthogonal Q: a known spectrum behind products only."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((len(eigenvalues), len(eigenvalues))))
    h = torch.from_numpy(q @ np.diag(eigenvalues) @ q.T)
    return lambda v: h @ v


@pytest.mark.parametrize("seed", [0, 1])
def test_one_start_is_a_gauss_quadrature_of_its_start_vector(seed: int) -> None:
    """m steps integrate every polynomial of degree < 2m exactly: sum tau theta^k = v^T H^k v."""
    model, state, x, y, layout, dense = dense_problem(seed, False)
    hvp = hs.loss_hvp(model, state, x, y, batch_size=40)
    steps = 6
    v = torch.randn(layout.dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    v /= v.norm()
    (q,) = sd.slq(hvp, layout.dim, 1, steps, torch.Generator().manual_seed(seed), torch.device("cpu"))
    assert q.weights.sum() == pytest.approx(1.0, abs=1e-12)
    for k in range(2 * steps):
        exact = float(v @ torch.linalg.matrix_power(dense, k) @ v)
        assert q.weights @ q.nodes**k == pytest.approx(exact, rel=1e-6, abs=1e-12)
    assert sd.trace_estimate([q], layout.dim) == pytest.approx(layout.dim * float(v @ dense @ v), rel=1e-8)


def test_the_density_integrates_to_1_and_matches_a_dense_eigendecomposition() -> None:
    """On a small network's dense Hessian: SLQ's broadened density against the eigenvalues', broadened alike."""
    model, state, x, y, layout, dense = dense_problem(0, False)
    hvp = hs.loss_hvp(model, state, x, y, batch_size=40)
    exact = np.linalg.eigvalsh(dense.numpy())
    quads = sd.slq(hvp, layout.dim, 400, 12, torch.Generator().manual_seed(0), torch.device("cpu"))
    sigma = 0.05 * (exact[-1] - exact[0])
    grid = np.linspace(exact[0] - 6 * sigma, exact[-1] + 6 * sigma, 2000)
    estimate = sd.broadened_density(quads, grid, sigma)
    uniform = sd.Quadrature(exact, np.full(len(exact), 1 / len(exact)), np.zeros(len(exact)))
    reference = sd.broadened_density([uniform], grid, sigma)
    assert np.trapezoid(estimate, grid) == pytest.approx(1.0, abs=1e-6)
    assert np.trapezoid(reference, grid) == pytest.approx(1.0, abs=1e-6)
    # 400 starts: each eigenvalue's weight is a mean of 400 draws of (q.v)^2, about 7% off 1/n.
    assert np.trapezoid(np.abs(estimate - reference), grid) < 0.1
    # The unbroadened mass below a threshold in the spectrum's widest gap, where no node straddles it.
    i = int(np.argmax(np.diff(exact)))
    assert sd.mass_below(quads, (exact[i] + exact[i + 1]) / 2) == pytest.approx((i + 1) / len(exact), abs=0.05)
    assert sd.trace_estimate(quads, layout.dim) == pytest.approx(float(exact.sum()), rel=0.1)


def test_outliers_are_found_above_the_widest_gap_and_only_converged_values_count() -> None:
    eigenvalues = np.r_[np.linspace(0.0, 1.0, 200), 10.0 + np.arange(9.0)]  # 9 outliers, 10 x the bulk's edge
    (q,) = sd.slq(spectrum_hvp(eigenvalues), len(eigenvalues), 1, 40, torch.Generator().manual_seed(0),
                  torch.device("cpu"))
    top = sd.converged_top(q, 20, 1e-6)
    np.testing.assert_allclose(top[:9], np.arange(18.0, 9.0, -1.0), atol=1e-8)
    assert len(top) < 20, "bulk Ritz values are quadrature nodes, not converged eigenvalues"
    found = spectrum.widest_gap(np.r_[top[:9], 1.0, 0.9, 0.85, 0.8, 0.76, 0.72], min_others=5)
    assert (found.count, found.edge) == (9, 1.0) and found.ratio == pytest.approx(10.0) and found.z > 3.5
    none = spectrum.widest_gap(np.array([3.0, -1.0]), min_others=1)  # one positive value: no gap to measure
    assert none.count == 0 and np.isnan(none.ratio) and np.isnan(none.edge) and np.isnan(none.z)


def geometric_top(n_out: int, gap: float, jitter: float, seed: int, size: int = 20) -> np.ndarray:
    """Descending top values: `n_out` outliers, then a ratio `gap`, then a bulk; every ratio but the gap is
    1.05 x a random factor exp(jitter x N(0, 1)) (a spread of `jitter` in log ratio)."""
    logs = np.log(1.05) + jitter * np.random.default_rng(seed).standard_normal(size - 1)
    logs[n_out - 1] = np.log(gap)
    return 10.0 * np.exp(-np.r_[0.0, np.cumsum(logs)])


@pytest.mark.parametrize(("gap", "clear"), [(1.6, True), (1.05, False)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_widest_gap_is_clear_only_where_it_stands_out_and_the_starts_agree(gap: float, clear: bool,
                                                                             seed: int) -> None:
    """Log ratios spread by 0.02 about log 1.05 in three starts: a gap of x1.6 after 9 values stands ~20
    spreads out in each; with no gap (x1.05, the others' own ratio) each start's widest ratio is merely the
    largest of 19 draws, about 2 spreads up but past 3.5 in about one start of six (the MAD of 18 draws is
    itself noisy): the starts put it apart, so there is no count."""
    gaps = [spectrum.widest_gap(geometric_top(9, gap, 0.02, 3 * seed + k), min_others=5) for k in range(3)]
    out = spectrum.consensus(gaps, agreement=0.8, z_min=3.5)
    if clear:
        assert all(g.count == 9 and g.ratio == pytest.approx(gap) and g.z > 10 for g in gaps)
        assert (out.count, out.agreement, out.why) == (9, 1.0, "") and out.gap == pytest.approx(gap)
    else:
        assert np.median([g.z for g in gaps]) < 3.5 and len({g.count for g in gaps}) > 1
        assert out.count is None and out.why.startswith("no clear gap") and np.isnan(out.z)
    # The same spectrum at any scale: the gap's z and count are scale-free.
    scaled = spectrum.widest_gap(100 * geometric_top(9, gap, 0.02, 3 * seed), min_others=5)
    assert scaled.count == gaps[0].count and scaled.z == pytest.approx(gaps[0].z)


@pytest.mark.parametrize(("others", "x", "z"), [([0.0, 1.0, 2.0, 3.0, 4.0], 5.0, 3 / 1.4826),
                                                ([1.0, 1.0, 1.0, 5.0], 2.0, math.inf),
                                                ([1.0, 1.0, 1.0, 5.0], 1.0, 0.0)])
def test_robust_z_is_the_median_and_mad_z_score(others: list[float], x: float, z: float) -> None:
    assert spectrum.robust_z(x, np.array(others)) == pytest.approx(z)


def test_a_widest_gap_with_too_few_other_ratios_has_no_z() -> None:
    top = geometric_top(2, 3.0, 0.0, 0, size=6)  # 5 ratios: the gap and 4 others
    assert np.isnan(spectrum.widest_gap(top, min_others=5).z)
    assert spectrum.widest_gap(top, min_others=4).z > 1e12  # the others do not spread (but for round-off)


def gap(count: int, z: float) -> spectrum.Gap:
    return spectrum.Gap(count, 1.6, 1.0, z)


NONE = spectrum.Gap(0, math.nan, math.nan, math.nan)


@pytest.mark.parametrize(("gaps", "count", "lean"), [
    ([gap(9, 8.0)] * 3, 9, 9),  # every start, clear
    ([gap(8, 8.0), gap(7, 8.0), gap(8, 8.0)], None, 8),  # 2 of 3 agree: below 80%
    ([gap(9, 8.0)] * 5 + [gap(4, 8.0)], 9, 9),  # 5 of 6: all but one
    ([gap(9, 8.0)] * 4 + [gap(9, 2.0)] * 2, None, 9),  # 4 of 6 clear at 9
    ([gap(9, 2.0)] * 3, None, 9),  # the same place, standing out of nothing
    ([gap(9, 8.0)] * 4 + [NONE], 9, 9),  # one start resolved no gap: 4 of 5
    ([gap(9, 8.0)] * 3 + [NONE] * 2, None, 9),  # two did: 3 of 5
    ([NONE] * 3, None, 0),  # none measured a gap
    ([gap(6, 8.0), gap(5, 8.0)], None, 5),  # a tie leans to the smaller count
])
def test_the_outlier_count_stands_only_where_the_starts_agree_on_a_clear_gap(gaps: list[spectrum.Gap],
                                                                              count: int | None, lean: int) -> None:
    out = spectrum.consensus(gaps, agreement=0.8, z_min=3.5)
    assert (out.count, out.lean) == (count, lean)
    assert (out.why == "") == (count is not None) and (count is None) == np.isnan(out.gap)
    if count is None and lean:
        assert out.why.startswith("no clear gap")


def test_hessian_density_study_gives_every_output(base_params: dict[str, Any], fake_inputs: Inputs,
                                                  tmp_path: Path) -> None:
    result = run_study(base_params, "hessian_density", fake_inputs)
    summary = result.summary
    cuts = TINY["hessian_density"]["negative_cuts"]
    assert list(summary["points"]) == ["init", "epoch_1", "solution"] == summary["order"]
    ritz = result.tables["ritz.csv"]
    for point, m in summary["points"].items():
        assert m["density_integral"] == pytest.approx(1.0, abs=1e-3)
        assert m["lambda_min"] <= m["lambda_max"] and 0 <= m["negative_mass"] <= m["negative_mass"] + m["zero_mass"] <= 1
        assert m["outliers"] is None or m["lambda_min"] <= m["bulk_edge"] <= m["lambda_max"]
        assert (m["outliers"] is None) == bool(m["no_clear_gap"])
        # Every cut at every point, the same absolute cuts, from the Ritz table; the deeper the cut, the less.
        sweep = m["negative_sweep"]
        assert [s["cut"] for s in sweep] == cuts
        here = ritz[ritz.point == point]
        for s in sweep:
            per_start = here[here.value < -s["cut"]].groupby("start").weight.sum().reindex([0, 1], fill_value=0)
            assert s["mean"] == pytest.approx(per_start.mean()) and s["std"] == pytest.approx(per_start.std())
            assert s["min"] <= s["mean"] <= s["max"]
        assert [s["mean"] for s in sweep] == sorted((s["mean"] for s in sweep), reverse=True)
        assert m["negative_mass"] == sweep[cuts.index(summary["claim_cut"])]["mean"]
    assert set(ritz.start) == {0, 1}
    np.testing.assert_allclose(ritz.groupby(["point", "start"]).weight.sum(), 1.0, atol=1e-9)
    last = summary["points"]["solution"]["outliers"]
    assert result.metrics["outliers"] == last or (last is None and math.isnan(result.metrics["outliers"]))
    # Two Lanczos steps resolve no eigenvalue: the table of converged top values is empty, with its columns.
    short = run_study(base_params, "hessian_density", fake_inputs, lanczos_steps=2, candidates=2)
    assert list(short.tables["top.csv"].columns) == ["point", "start", "rank", "value"]
    assert all(m["outliers"] is None and m["outliers_lean"] == 0 for m in short.summary["points"].values())
    again = run_study(base_params, "hessian_density", fake_inputs)
    pd.testing.assert_frame_equal(again.tables["ritz.csv"], ritz)
    assert again.summary == summary or json.dumps(again.summary) == json.dumps(summary)
    written(result, "hessian_density", tmp_path / "out")


def test_a_density_point_the_baseline_did_not_save_is_a_one_line_error(base_params: dict[str, Any],
                                                                       fake_inputs: Inputs) -> None:
    with pytest.raises(ConfigError, match=r"^hessian_density\.points: epoch_3 is not in .*checkpoints\.pt \(it "
                                          r"holds \['epoch_1'\]"):
        run_study(base_params, "hessian_density", fake_inputs, points=["init", "epoch_3"])


# --------------------------------------------------------------------------
# The studies on a tiny fake MNIST
# --------------------------------------------------------------------------
TINY_MODEL = {"in_dim": 784, "hidden_dim": 8, "out_dim": 10, "final_relu": False}
TINY = {
    "interpolate": {"alpha_start": -1.0, "alpha_stop": 2.0, "alpha_step": 0.25, "theta_rand": ["init", "fresh"],
                    "fresh_seeds": [1, 2], "splits": ["train", "test"], "batch_size": 16, "alpha_chunk": 5,
                    "flat_window": 0.25, "min_depth": 1e-6},
    "identifiability": {"seed": 0, "trials": 2, "scale_min": 0.125, "scale_max": 8.0, "eval_batch_size": 16,
                        "example_in_dim": 2, "example_hidden": 3, "example_out_dim": 2, "example_probes": 4},
    "hessian": {"alphas": [0.5, 1.0], "split": "train", "subset_size": 40, "subset_seed": 0, "batch_size": 16,
                "top_k": 3, "lanczos_steps": 8, "trace_samples": 4, "residual_tol": 1e-3, "seed": 0,
                "timing_repeats": 2,
                "oscillation": {"optimizers": ["sgd", "sgd_momentum"], "step_times_lambda_max": [0.1, 1.5],
                                "steps": 6, "batch_size": 16, "seeds": [0, 1]}},
    "hessian_density": {"points": ["init", "epoch_1", "solution"], "split": "train", "subset_size": 40,
                        "subset_seed": 0, "batch_size": 16, "starts": 2, "lanczos_steps": 8, "grid_points": 50,
                        "broadening": 0.02, "candidates": 4, "residual_tol": 1e-3, "gap_z": 3.5,
                        "gap_agreement": 0.8, "gap_min_others": 2, "negative_cuts": [1e-4, 1e-3, 1e-2],
                        "claim_cut": 1e-3, "seed": 0},
}
N_TRAIN, N_TEST = 60, 30


@pytest.fixture(scope="module")
def base_params() -> dict[str, Any]:
    """conf/ composed, with the tiny model on the CPU."""
    return composed("runtime.device=cpu", "runtime.threads=1", *(f"model.{k}={v}" for k, v in TINY_MODEL.items()))


def tiny_config(base: dict[str, Any], stage: str, **edits: Any) -> Any:
    """The study's Config with the tiny section (and `edits` to it), validated as the runner does."""
    params = copy.deepcopy(base)
    params[stage] = copy.deepcopy(TINY[stage]) | edits
    return load(params, STUDIES[stage].Config)


@pytest.fixture
def fake_inputs(tmp_path: Path) -> Inputs:
    """A torchvision root with random 'MNIST', and a baseline folder for the tiny model."""
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8), rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
              rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8), rng.integers(0, 10, N_TEST, dtype=np.uint8)]
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, array in zip(mnist.FILES, arrays, strict=True):
        (raw / name).write_bytes(mnist.encode_idx(array))
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    trained, init = states(784, 8, 10, 10, 11)
    torch.save(trained, baseline / "mnist.pt")
    torch.save(init, baseline / "init.pt")
    torch.save({"epoch_1": states(784, 8, 10, 12)[0]}, baseline / "checkpoints.pt")
    return Inputs(device="cpu", folders={"mnist": tmp_path / "mnist", "baseline": baseline},
                  workdir=tmp_path / "work")


def run_study(base: dict[str, Any], stage: str, inputs: Inputs, **edits: Any) -> Result:
    return STUDIES[stage].run(tiny_config(base, stage, **edits), inputs)


def written(result: Result, stage: str, folder: Path) -> Path:
    """The Result as the stage writes it: exactly the files its stage declares."""
    assert sorted(result.outputs()) == sorted(STAGES[stage].outputs)
    write(result, folder)
    assert sorted(p.name for p in folder.iterdir()) == sorted(STAGES[stage].outputs)
    return folder


def test_interpolate_study_gives_every_output(base_params: dict[str, Any], fake_inputs: Inputs,
                                              tmp_path: Path) -> None:
    result = run_study(base_params, "interpolate", fake_inputs)
    alphas = alpha_grid(-1.0, 2.0, 0.25)
    path = result.tables["path.csv"]
    assert list(path.columns) == ["alpha", "split", "theta_rand", "loss", "accuracy"]
    assert len(path) == 3 * 2 * len(alphas)
    assert set(path.theta_rand) == {"init", "seed_1", "seed_2"} and set(path.split) == {"train", "test"}
    assert path.loss.notna().all() and path.accuracy.between(0, 1).all()
    # alpha = 0 is the trained model whatever theta_rand is.
    assert path[path.alpha == 0].groupby("split").loss.nunique().eq(1).all()
    curves = result.tables["curves.csv"]
    assert len(curves) == len(alphas) and {"train_loss_mean", "test_loss_max", "test_accuracy_mean"} <= set(curves)
    summary = result.tables["summary.csv"]
    assert len(summary) == 6 and {"local_minima", "slope_near_1", "slope_between", "barrier"} <= set(summary)
    numbers = result.summary
    assert numbers["alphas"] == len(alphas) and numbers["theta_rands"] == 3
    assert {"local_minima_max", "slope_ratio_max", "loss_at_0", "loss_at_1_mean"} <= set(numbers["train"])
    assert result.metrics == {"train_local_minima_max": numbers["train"]["local_minima_max"],
                              "train_slope_ratio_max": numbers["train"]["slope_ratio_max"]}
    out = written(result, "interpolate", tmp_path / "out")
    pd.testing.assert_frame_equal(pd.read_csv(out / "path.csv"), path)
    assert json.loads((out / "summary.json").read_text()) == numbers


def test_identifiability_study_gives_every_output(base_params: dict[str, Any], fake_inputs: Inputs,
                                                  tmp_path: Path) -> None:
    result = run_study(base_params, "identifiability", fake_inputs)
    trials = result.tables["trials.csv"]
    assert len(trials) == 2 * 5 and set(trials["transform"]) == {"permutation", "rescaling", "both",
                                                                 "negative_rescaling", "control"}
    summary = result.summary
    for name in ("permutation", "rescaling", "both"):
        assert summary[name]["rel_logit_change"] < 1e-5 and summary[name]["predictions_changed"] == 0
    assert summary["control"]["max_logit_change"] > 1e-3
    # k < 0 is no symmetry of ReLU (the chapter says any non-zero k): the logits move.
    assert summary["negative_rescaling"]["rel_logit_change"] > 1e-3
    assert summary["log10_orderings"] == pytest.approx(2 * math.log10(math.factorial(8)))
    out = written(result, "identifiability", tmp_path / "out")
    example = json.loads((out / "example.json").read_text())
    assert len(example["orderings"]) == 6 and len(example["w_in"]) == 3 and len(example["probe"]) == 4


def test_hessian_study_gives_every_output(base_params: dict[str, Any], fake_inputs: Inputs, tmp_path: Path) -> None:
    result = run_study(base_params, "hessian", fake_inputs)
    path = result.tables["path.csv"]
    assert path.alpha.tolist() == [0.0, 0.5, 1.0], "alpha = 0 (the SGD solution) is always measured"
    assert (path.lambda_max >= path.lambda_min).all() and path.trace.notna().all()
    eig = result.tables["eigenvalues.csv"]
    assert len(eig) == 3 * (3 + 1) and eig.residual.notna().all()
    for _, group in eig[eig.which == "top"].groupby("alpha"):
        assert group.sort_values("rank").value.is_monotonic_decreasing
    assert len(result.tables["trace.csv"]) == 3 * 4
    assert set(result.tables["ritz.csv"].alpha) == {0.0, 0.5, 1.0}
    summary = result.summary
    assert {"lambda_1", "lambda_3", "lambda_min", "trace", "max_residual"} <= set(summary["solution"])
    assert set(summary["path"]) == {"alpha_0", "alpha_0_5", "alpha_1"}
    # What a product costs: machine facts, so only their sanity is pinned.
    timing = summary["timing"]
    assert timing["gradient_seconds"] > 0 and timing["hvp_seconds"] > 0 and timing["repeats"] == 2
    assert np.isfinite(timing["hvp_over_gradient"]) and timing["hvp_over_gradient"] > 0
    assert not {"gradient_seconds", "hvp_seconds", "hvp_over_gradient"} & set(result.metrics)  # machine facts: summary only
    osc = result.tables["oscillation.csv"]
    assert list(osc.columns) == ["seed", "optimizer", "step_times_lambda_max", "lr", "momentum", "direction",
                                 "autocorrelation", "sign_flip_share", "rms_projection", "final_loss", "diverged"]
    assert len(osc) == 2 * 2 * 2 * 2 and set(osc.direction) == {"top", "random"}
    lam = summary["solution"]["lambda_max"]
    np.testing.assert_allclose(osc.lr, osc.step_times_lambda_max / lam)
    assert set(zip(osc.optimizer, osc.momentum)) == {("sgd", 0.0), ("sgd_momentum", 0.9)}
    assert osc.autocorrelation.between(-1, 1).all() and (osc.rms_projection > 0).all() and not osc.diverged.any()
    entry = summary["oscillation"]["runs"]["sgd_momentum"]["step_times_lambda_max_1_5"]
    mine = osc[(osc.optimizer == "sgd_momentum") & (osc.step_times_lambda_max == 1.5) & (osc.direction == "top")]
    assert entry["top_autocorrelation"] == pytest.approx(mine.autocorrelation.mean()) and entry["diverged_runs"] == 0
    # Same seeds, same numbers: the runs and the random direction are drawn from their own seeded generators.
    pd.testing.assert_frame_equal(run_study(base_params, "hessian", fake_inputs).tables["oscillation.csv"], osc)
    out = written(result, "hessian", tmp_path / "out")
    pd.testing.assert_frame_equal(pd.read_csv(out / "eigenvalues.csv"), eig)
    pd.testing.assert_frame_equal(pd.read_csv(out / "oscillation.csv"), osc)


# --------------------------------------------------------------------------
# Params
# --------------------------------------------------------------------------
@pytest.mark.parametrize("stage", NAMES)
def test_default_conf_validates(stage: str) -> None:
    cfg = config(STUDIES[stage].Config)
    assert {"model", "runtime", stage} <= set(vars(cfg))


BAD = [
    ("interpolate", {"alpha_step": -0.05}, "interpolate.alpha_step: must be > 0"),
    ("interpolate", {"alpha_stop": -3.0}, "interpolate.alpha_stop: must be > alpha_start"),
    ("interpolate", {"theta_rand": ["init", "gaussian"]}, "interpolate.theta_rand: 'gaussian' is not allowed"),
    ("interpolate", {"fresh_seeds": []}, "interpolate.fresh_seeds: must not be empty"),
    ("interpolate", {"fresh_seeds": [1, 1]}, "interpolate.fresh_seeds: must be distinct"),
    ("interpolate", {"splits": ["valid"]}, "interpolate.splits: 'valid' is not allowed"),
    ("interpolate", {"flat_window": 1.5}, "interpolate.flat_window: must be < 1"),
    ("interpolate", {"alpha_chunk": 0}, "interpolate.alpha_chunk: must be > 0"),
    ("identifiability", {"scale_max": 0.1}, "identifiability.scale_max: must be >= scale_min"),
    ("identifiability", {"scale_min": 0}, "identifiability.scale_min: must be > 0"),
    ("identifiability", {"example_hidden": 9}, "identifiability.example_hidden: at most 6"),
    ("identifiability", {"trial": 3}, "identifiability.trial: unknown key"),
    ("hessian", {"lanczos_steps": 3}, "hessian.lanczos_steps: must be > top_k"),
    ("hessian", {"split": "valid"}, "hessian.split: 'valid' is not allowed"),
    ("hessian", {"alphas": []}, "hessian.alphas: must not be empty"),
    ("hessian", {"trace_samples": 1}, "hessian.trace_samples: must be > 1"),
    ("hessian", {"top_k": "ten"}, "hessian.top_k"),
    ("hessian", {"oscillation": {**TINY["hessian"]["oscillation"], "optimizers": ["sgd", "newton"]}},
     "hessian.oscillation.optimizers: 'newton' is not in the optimizers section"),
    ("hessian", {"oscillation": {**TINY["hessian"]["oscillation"], "steps": 1}},
     "hessian.oscillation.steps: must be > 1"),
    ("hessian_density", {"points": ["init", "epoch_0"]}, "hessian_density.points: each must be init, solution or"),
    ("hessian_density", {"candidates": 9}, "hessian_density.candidates: must be <= lanczos_steps"),
    ("hessian_density", {"broadening": 0}, "hessian_density.broadening: must be > 0"),
    ("hessian_density", {"claim_cut": 0.5}, "hessian_density.claim_cut: must be one of negative_cuts"),
    ("hessian_density", {"negative_cuts": [1e-3, -1e-2]}, "hessian_density.negative_cuts: each must be a number > 0"),
    ("hessian_density", {"negative_cuts": []}, "hessian_density.negative_cuts: must not be empty"),
    ("hessian_density", {"gap_agreement": 1.5}, "hessian_density.gap_agreement: must be <= 1"),
    ("hessian_density", {"gap_z": 0}, "hessian_density.gap_z: must be > 0"),
]


@pytest.mark.parametrize(("stage", "edit", "message"), BAD, ids=[f"{s}-{next(iter(e))}" for s, e, _ in BAD])
def test_bad_params_name_the_key(base_params: dict[str, Any], stage: str, edit: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        tiny_config(base_params, stage, **edit)
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(("stage", "edit"), [("interpolate", {"alpha_step": 0}), ("identifiability", {"trials": 0}),
                                             ("hessian", {"top_k": 0})])
def test_a_bad_param_is_refused_before_the_study_runs(base_params: dict[str, Any], stage: str, edit: dict) -> None:
    """Validation names the stage's section; a study never sees a config that fails it."""
    with pytest.raises(ConfigError, match=f"^{stage}\\."):
        tiny_config(base_params, stage, **edit)


def test_hessian_subset_larger_than_the_split_is_refused(base_params: dict[str, Any], fake_inputs: Inputs) -> None:
    with pytest.raises(ConfigError, match=r"^hessian\.subset_size: must be <= the 60 examples"):
        run_study(base_params, "hessian", fake_inputs, subset_size=N_TRAIN + 1)


@pytest.mark.parametrize("stage", NAMES)
def test_a_checkpoint_for_another_model_is_a_one_line_error(base_params: dict[str, Any], stage: str,
                                                            fake_inputs: Inputs) -> None:
    torch.save(states(784, 16, 10, 0)[0], fake_inputs.folder("baseline") / "mnist.pt")
    with pytest.raises(ConfigError, match=r"^model: .*mnist\.pt does not fit the model section") as err:
        run_study(base_params, stage, fake_inputs)
    assert "\n" not in str(err.value)
