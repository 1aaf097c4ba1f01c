"""Fig 6-3 in two dimensions (Li et al. 2018): filter-normalised directions, the principal plane of a path, the
grid evaluation against a loop of `training.evaluate`, and the landscape_2d study on a tiny fake MNIST."""

from __future__ import annotations

import copy
import hashlib

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from beyond_gd.config import load
from beyond_gd.data import mnist
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import plane as pl
from beyond_gd.landscape.interpolation import combination_loss, sub_state
from beyond_gd.model import Net
from beyond_gd.stage import write
from beyond_gd.stages.landscape_2d import STAGE
from beyond_gd.studies import landscape_2d
from beyond_gd.study import Inputs
from beyond_gd.training import evaluate
from conftest import composed, config


pytestmark = pytest.mark.usefixtures("one_thread")


def net_state(seed: int, in_dim: int = 12, hidden: int = 6, out_dim: int = 4) -> tuple[Net, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    net = Net(in_dim, hidden, out_dim)
    return net, {k: v.detach().clone() for k, v in net.state_dict().items()}


def toy_data(n: int, dim: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.randint(0, classes, (n,), generator=g)


# --------------------------------------------------------------------------
# Filter-normalised directions
# --------------------------------------------------------------------------
def test_filter_normalisation_gives_each_row_the_norm_of_thetas_row_and_zero_biases() -> None:
    _, theta = net_state(0)
    d = pl.filter_normalized_direction(theta, torch.Generator().manual_seed(3))
    assert list(d) == list(theta)
    for name, w in theta.items():
        assert d[name].shape == w.shape and d[name].dtype == w.dtype
        if w.dim() == 1:
            assert torch.equal(d[name], torch.zeros_like(w)), name
        else:
            torch.testing.assert_close(d[name].norm(dim=1), w.norm(dim=1), rtol=1e-5, atol=0)
            assert not torch.allclose(d[name], w)  # a random direction, not theta itself


def test_filter_normalisation_rescales_each_filter_of_a_conv_weight() -> None:
    w = torch.randn(5, 3, 2, 2) * torch.arange(1, 6).view(-1, 1, 1, 1)
    d = pl.filter_normalized_direction({"conv.weight": w}, torch.Generator().manual_seed(0))["conv.weight"]
    torch.testing.assert_close(d.flatten(1).norm(dim=1), w.flatten(1).norm(dim=1), rtol=1e-5, atol=0)


def test_one_seed_gives_one_direction_and_two_draws_differ() -> None:
    _, theta = net_state(0)
    a = pl.filter_normalized_direction(theta, torch.Generator().manual_seed(7))
    b = pl.filter_normalized_direction(theta, torch.Generator().manual_seed(7))
    assert all(torch.equal(a[k], b[k]) for k in a)
    gen = torch.Generator().manual_seed(7)
    first, second = pl.filter_normalized_direction(theta, gen), pl.filter_normalized_direction(theta, gen)
    assert not torch.equal(first["classifier.1.weight"], second["classifier.1.weight"])


# --------------------------------------------------------------------------
# The principal plane of a path
# --------------------------------------------------------------------------
def planar_path(n: int = 9, dim: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """A path lying in the plane through its last point spanned by two known orthonormal vectors."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g, dtype=torch.float64))
    t = np.linspace(0, 1, n)
    coords = np.stack([3 * (1 - t), np.sin(4 * t) * (1 - t)], axis=1)  # ends at (0, 0)
    final = torch.randn(dim, generator=g, dtype=torch.float64)
    return final + torch.from_numpy(coords) @ basis.T, basis.T, coords


def test_pca_of_a_planar_path_recovers_its_plane_and_projection() -> None:
    path, basis, coords = planar_path()
    fit = pl.path_plane(path)
    assert fit.explained.sum() == pytest.approx(1.0, abs=1e-12)
    assert fit.explained[0] >= fit.explained[1] > 0
    np.testing.assert_allclose(fit.off_plane, 0.0, atol=1e-12)
    # The same plane: the recovered directions are orthonormal and lie in the known span.
    torch.testing.assert_close(fit.directions @ fit.directions.T, torch.eye(2, dtype=torch.float64))
    torch.testing.assert_close(fit.directions @ basis.T @ basis, fit.directions)
    # The projection is the path's own coordinates in the recovered basis, the final point at the origin.
    rotation = (fit.directions @ basis.T).numpy()  # maps known coordinates to recovered ones
    np.testing.assert_allclose(fit.coords, coords @ rotation.T, atol=1e-10)
    np.testing.assert_allclose(fit.coords[-1], 0.0, atol=1e-12)
    # The path's distances are kept: it lies in the plane.
    np.testing.assert_allclose(np.linalg.norm(fit.coords, axis=1), np.linalg.norm(coords, axis=1), atol=1e-10)


def test_pca_of_a_straight_path_puts_everything_on_the_first_direction() -> None:
    path, basis, _ = planar_path()
    line = path[-1] + torch.linspace(1, 0, 6, dtype=torch.float64)[:, None] * basis[0]
    fit = pl.path_plane(line)
    assert fit.explained[0] == pytest.approx(1.0) and fit.explained[1] == pytest.approx(0.0, abs=1e-12)
    assert (fit.coords[:-1, 0] > 0).all(), "the sign makes the point of largest |coordinate| positive"


def test_pca_of_a_path_off_the_plane_reports_how_far_off() -> None:
    path, _, _ = planar_path()
    bent = path.clone()
    bent[0] += 5.0 * torch.linalg.qr(torch.randn(50, 3, dtype=torch.float64))[0][:, 2]
    fit = pl.path_plane(bent)
    assert fit.explained.sum() < 1 and fit.off_plane.max() > 0.01


def test_pca_is_of_the_centred_iterates_as_li_et_al_fit_it() -> None:
    """A path that drifts far along one direction and wiggles along another: its explained variances are a
    PCA's of the centred points (numpy's SVD of X - mean), not the larger first share an uncentred fit gives."""
    path, _, _ = planar_path()
    g = torch.Generator().manual_seed(1)
    path = path + 0.01 * torch.randn(path.shape, generator=g, dtype=torch.float64)  # off the plane, a little
    fit = pl.path_plane(path)
    x = path.numpy()
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    np.testing.assert_allclose(fit.explained, (s[:2] ** 2) / (s**2).sum(), rtol=1e-10)
    uncentred = np.linalg.svd(x[:-1] - x[-1], compute_uv=False)
    assert (uncentred[0] ** 2) / (uncentred**2).sum() > fit.explained[0] + 0.01


def test_pca_needs_three_points() -> None:
    with pytest.raises(ValueError, match="n >= 3"):
        pl.path_plane(torch.zeros(2, 5))


def test_span_holds_the_path_with_its_margin() -> None:
    coords = np.array([[2.0, -1.0], [1.0, 0.5], [0.0, 0.0]])
    (x0, x1), (y0, y1) = pl.span(coords, 0.25)
    assert (x0, x1) == (-0.5, 2.5) and (y0, y1) == (-1.375, 0.875)
    assert pl.span(np.zeros((3, 2)), 0.2) == ((-1.0, 1.0), (-1.0, 1.0))


# --------------------------------------------------------------------------
# The grid
# --------------------------------------------------------------------------
def test_a_symmetric_odd_axis_holds_zero_exactly() -> None:
    for n in (3, 5, 21, 51):
        axis = pl.grid_axis(-1.0, 1.0, n)
        assert axis[n // 2] == 0.0 and axis[0] == -1.0 and axis[-1] == 1.0


def test_the_grid_at_the_origin_is_the_loss_at_the_centre() -> None:
    net, theta = net_state(0)
    x, y = toy_data(37, 12, 4)
    centre = sub_state(theta, "classifier.")
    gen = torch.Generator().manual_seed(1)
    d1, d2 = pl.filter_normalized_direction(centre, gen), pl.filter_normalized_direction(centre, gen)
    axis = pl.grid_axis(-1, 1, 5)
    loss, acc = combination_loss(net.classifier, [centre, d1, d2], pl.plane_coefficients(axis, axis), x, y,
                                    batch_size=10, chunk=7)
    net.load_state_dict(theta)
    ref_loss, ref_acc = evaluate(net, x, y, batch_size=10)
    assert loss.reshape(5, 5)[2, 2] == pytest.approx(ref_loss, rel=1e-6)
    assert acc.reshape(5, 5)[2, 2] == ref_acc
    assert loss.min() >= 0 and np.isfinite(loss).all()


@pytest.mark.parametrize(("batch_size", "chunk"), [(37, 25), (8, 4), (5, 1)])
def test_the_batched_grid_equals_a_loop_of_evaluate_over_its_points(batch_size: int, chunk: int) -> None:
    net, theta = net_state(0)
    x, y = toy_data(37, 12, 4)
    centre = sub_state(theta, "classifier.")
    gen = torch.Generator().manual_seed(2)
    d1, d2 = pl.filter_normalized_direction(centre, gen), pl.filter_normalized_direction(centre, gen)
    a, b = np.array([-0.5, 0.0, 1.0]), np.array([-1.0, 0.25, 0.5, 2.0])
    coeffs = pl.plane_coefficients(a, b)
    assert coeffs.shape == (12, 3) and coeffs[4].tolist() == [1.0, 0.0, -1.0]  # a varies slowest
    loss, acc = combination_loss(net.classifier, [centre, d1, d2], coeffs, x, y, batch_size=batch_size,
                                    chunk=chunk)
    for i, (_, ai, bi) in enumerate(coeffs.tolist()):
        net.classifier.load_state_dict({k: centre[k] + ai * d1[k] + bi * d2[k] for k in centre})
        ref_loss, ref_acc = evaluate(net, x, y, batch_size=37)
        assert loss[i] == pytest.approx(ref_loss, rel=1e-5), i
        assert acc[i] == ref_acc, i


def test_identity_coefficients_evaluate_each_basis() -> None:
    net, theta = net_state(0)
    x, y = toy_data(20, 12, 4)
    bases = [sub_state(net_state(s)[1], "classifier.") for s in (0, 1, 2)]
    loss, _ = combination_loss(net.classifier, bases, torch.eye(3, dtype=torch.float64), x, y, batch_size=8,
                                  chunk=2)
    for i, b in enumerate(bases):
        net.classifier.load_state_dict(b)
        assert loss[i] == pytest.approx(evaluate(net, x, y, 20)[0], rel=1e-5)
    with pytest.raises(ValueError, match="coeffs must be"):
        combination_loss(net.classifier, bases, torch.eye(2), x, y, batch_size=8, chunk=2)


# --------------------------------------------------------------------------
# The study on a tiny fake MNIST
# --------------------------------------------------------------------------
TINY_MODEL = {"in_dim": 784, "hidden_dim": 8, "out_dim": 10, "final_relu": False}
TINY = {"subset_size": 40, "subset_seed": 0, "batch_size": 16, "chunk": 5,
        "random_plane": {"extent": 1.0, "resolution": 5, "seed": 0},
        "trajectory": {"optimizers": ["sgd", "sgd_momentum"], "batch_size": 16, "max_steps": 12, "save_every": 3,
                       "seed": 0, "divergence_loss": 1000.0},
        "pca_plane": {"resolution": 4, "margin": 0.2}}


@pytest.fixture(scope="module")
def base_params() -> dict[str, Any]:
    return composed("runtime.device=cpu", "runtime.threads=1", *(f"model.{k}={v}" for k, v in TINY_MODEL.items()))


def tiny_config(base: dict[str, Any], **edits: Any) -> landscape_2d.Config:
    params = copy.deepcopy(base)
    params["landscape_2d"] = copy.deepcopy(TINY)
    for key, value in edits.items():
        node = params
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return load(params, landscape_2d.Config)


@pytest.fixture
def fake_inputs(tmp_path: Path) -> Inputs:
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (60, 28, 28), dtype=np.uint8), rng.integers(0, 10, 60, dtype=np.uint8),
              rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), rng.integers(0, 10, 30, dtype=np.uint8)]
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, array in zip(mnist.FILES, arrays, strict=True):
        (raw / name).write_bytes(mnist.encode_idx(array))
    baseline = tmp_path / "baseline"
    baseline.mkdir()
    torch.save(net_state(10, 784, 8, 10)[1], baseline / "mnist.pt")
    torch.save(net_state(11, 784, 8, 10)[1], baseline / "init.pt")
    return Inputs(device="cpu", folders={"mnist": tmp_path / "mnist", "baseline": baseline},
                  workdir=tmp_path / "work")


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_study_gives_every_output_and_the_same_bytes_twice(base_params: dict[str, Any], fake_inputs: Inputs,
                                                           tmp_path: Path) -> None:
    cfg = tiny_config(base_params)
    result = landscape_2d.run(cfg, fake_inputs)
    assert sorted(result.outputs()) == sorted(STAGE.outputs)
    grid = result.tables["random_plane.csv"]
    assert list(grid.columns) == ["a", "b", "loss", "accuracy"] and len(grid) == 25
    assert grid.loss.notna().all() and grid.accuracy.between(0, 1).all()
    summary = result.summary
    assert summary["random_plane"]["centre_loss"] == grid.loc[(grid.a == 0) & (grid.b == 0), "loss"].item()
    assert summary["random_plane"]["min_loss"] == grid.loss.min()
    paths, planes = result.tables["paths.csv"], result.tables["pca_planes.csv"]
    for name in ("sgd", "sgd_momentum"):
        path = paths[paths.optimizer == name]
        assert path.step.tolist() == [0, 3, 6, 9, 12]
        assert path[["x", "y"]].iloc[-1].tolist() == [0.0, 0.0]
        entry = summary["optimizers"][name]
        assert entry["steps"] == 12 and not entry["diverged"]
        plane = entry["plane"]
        assert 0 < plane["explained_variance_total"] <= 1 + 1e-12
        assert plane["explained_variance"][0] >= plane["explained_variance"][1]
        assert plane["centre_loss"] == pytest.approx(path.loss.iloc[-1], rel=1e-6)  # the final iterate itself
        cells = planes[planes.optimizer == name]
        assert len(cells) == 16
        # The grid holds the projected path.
        assert cells.x.min() <= path.x.min() and cells.x.max() >= path.x.max()
        assert cells.y.min() <= path.y.min() and cells.y.max() >= path.y.max()
    assert set(result.metrics) == {"random_centre_loss", "random_min_loss", "sgd_explained_variance",
                                   "sgd_momentum_explained_variance"}
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        write(landscape_2d.run(cfg, fake_inputs) if folder == second else result, folder)
    assert digest(first) == digest(second)
    pd.testing.assert_frame_equal(pd.read_csv(first / "random_plane.csv"), grid)


def test_a_diverged_path_is_recorded_not_raised(base_params: dict[str, Any], fake_inputs: Inputs) -> None:
    params_cfg = tiny_config(base_params, **{"optimizers.sgd.lr": 1.0e6, "landscape_2d.trajectory.optimizers": ["sgd"]})
    result = landscape_2d.run(params_cfg, fake_inputs)
    entry = result.summary["optimizers"]["sgd"]
    assert entry["diverged"] and entry["steps"] < 12
    if entry["plane"] is None:
        assert entry["finite_iterates"] < 3 and result.metrics["sgd_explained_variance"] is None
    assert len(result.tables["random_plane.csv"]) == 25


@pytest.mark.parametrize(("key", "value", "message"), [
    ("landscape_2d.random_plane.resolution", 4, "landscape_2d.random_plane.resolution: must be odd"),
    ("landscape_2d.subset_size", 0, "landscape_2d.subset_size: must be > 0"),
    ("landscape_2d.trajectory.save_every", 7, "landscape_2d.trajectory.save_every: at most max_steps / 2"),
    ("landscape_2d.trajectory.optimizers", ["sgd", "nadam"], "landscape_2d.trajectory.optimizers: 'nadam' is not"),
    ("landscape_2d.pca_plane.margin", -0.1, "landscape_2d.pca_plane.margin: must be >= 0"),
])
def test_bad_params_name_the_key(base_params: dict[str, Any], key: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        tiny_config(base_params, **{key: value})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_subset_larger_than_the_split_is_refused(base_params: dict[str, Any], fake_inputs: Inputs) -> None:
    with pytest.raises(ConfigError, match=r"^landscape_2d\.subset_size: must be <= the 60 examples"):
        landscape_2d.run(tiny_config(base_params, **{"landscape_2d.subset_size": 61}), fake_inputs)


@pytest.mark.parametrize("profile", ["book", "smoke", "thorough"])
def test_every_profile_validates(profile: str) -> None:
    cfg = config(landscape_2d.Config, f"profile={profile}")
    assert cfg.landscape_2d.random_plane.resolution % 2 == 1


# --------------------------------------------------------------------------
# The figure, from synthetic artifacts
# --------------------------------------------------------------------------
def draw_landscape_2d(tmp_path: Path, edit: Any = None) -> Any:
    import yaml

    from beyond_gd.report.figures import FIGURES
    from beyond_gd.report.registry import FigureParams
    from beyond_gd.report.style import Style, apply
    from conftest import REPO
    from test_claims import landscape_2d as artifacts
    from test_claims import write as write_artifacts

    spec = next(f for f in FIGURES if f.name == "extra-landscape-2d")
    data = artifacts()
    if edit:
        edit(data)
    conf = yaml.safe_load((REPO / "conf" / "report" / "default.yaml").read_text())
    style = Style(**conf["style"])
    apply(style)
    view = write_artifacts(data, spec.needs, tmp_path).view(spec.needs)
    return spec.draw(view, FigureParams(**conf["figures"]), style)


def test_the_figure_draws_both_planes_and_states_its_numbers(tmp_path: Path) -> None:
    drawn = draw_landscape_2d(tmp_path)
    assert len(drawn.figure.axes) >= 3
    labels = [ax.get_xlabel() for ax in drawn.figure.axes]
    assert "PC1 (93.5% of the variance)" in labels and "PC1 (81.0% of the variance)" in labels
    assert "loss 0.06 at the SGD solution" in drawn.measured and "at the centre" in drawn.measured
    assert "explained variance 0.935 + 0.050" in drawn.measured


def test_the_figure_says_when_a_diverged_path_has_no_plane(tmp_path: Path) -> None:
    def diverge(d: dict) -> None:
        entry = d[("landscape_2d", "summary.json")]["optimizers"]["sgd_momentum"]
        entry.update(diverged=True, finite_iterates=2, plane=None)
        for file in ("paths.csv", "pca_planes.csv"):
            table = d[("landscape_2d", file)]
            d[("landscape_2d", file)] = table[table.optimizer != "sgd_momentum"]

    drawn = draw_landscape_2d(tmp_path, diverge)
    assert "sgd_momentum: no plane (2 finite iterates, diverged)" in drawn.measured
