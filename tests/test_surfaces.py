"""Toy surfaces (Figs 6-1, 6-4, 6-5, 6-6, 6-7, 6-10): each study checked against the claim it shows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from beyond_gd.errors import ConfigError
from beyond_gd.measures import wilson_interval
from beyond_gd.stage import write
from beyond_gd.stages.surfaces import STAGE
from beyond_gd.studies import surfaces
from beyond_gd.study import Inputs
from beyond_gd.toys import surfaces as sf
from conftest import config

# conf/ as composed (the `surfaces` section): the test holds no copy of its numbers.
CFG = config(surfaces.Config).surfaces


def default_wells() -> tuple[sf.Wells, sf.Basins]:
    c = CFG.escape
    wells = sf.Wells(tuple(c.well_centers), tuple(c.well_depths), tuple(c.well_widths), c.confinement)
    return wells, sf.find_basins(wells, c.x_min, c.x_max, c.curve_points)


def descend(noise_scale: float, seed: int = CFG.seed) -> sf.EscapeRuns:
    c = CFG.escape
    wells, basins = default_wells()
    return sf.noisy_descent(wells, basins, lr=c.lr, steps=c.steps, noise_scale=noise_scale, runs=c.runs,
                            record_every=c.record_every, seed=seed)


# --------------------------------------------------------------------------
# Fig 6-1
# --------------------------------------------------------------------------
def test_default_wells_have_a_shallow_a_deep_and_a_global_minimum() -> None:
    wells, basins = default_wells()
    assert sorted(basins.labels) == sorted(sf.BASIN_LABELS)
    # Critical points: f' vanishes, f'' > 0 at minima and < 0 at maxima (central differences).
    h = 1e-4
    for x, sign in [(m, 1) for m in basins.minima] + [(m, -1) for m in basins.maxima]:
        assert abs(sf.wells_grad(np.array(x), wells)) < 1e-9
        assert sign * (sf.wells_grad(np.array(x + h), wells) - sf.wells_grad(np.array(x - h), wells)) > 0
    by = dict(zip(basins.labels, range(3), strict=True))
    loss = sf.wells_loss(basins.minima, wells)
    assert loss[by["global"]] == loss.min()
    assert basins.barriers[by["shallow"]] < basins.barriers[by["deep"]]
    # Each minimum lies in its own basin.
    assert basins.of(basins.minima).tolist() == [0, 1, 2]


def test_wells_grad_is_the_derivative_of_the_loss() -> None:
    wells, _ = default_wells()
    x, h = np.linspace(-5, 5, 41), 1e-6
    numeric = (sf.wells_loss(x + h, wells) - sf.wells_loss(x - h, wells)) / (2 * h)
    np.testing.assert_allclose(sf.wells_grad(x, wells), numeric, atol=1e-7)


def test_noise_escapes_the_shallow_basin_more_often_than_the_deep_one() -> None:
    runs = descend(CFG.escape.noise_scale)
    share = dict(zip(default_wells()[1].labels, runs.escape_share(), strict=True))
    assert all(0 <= s <= 1 for s in share.values())
    assert share["deep"] < share["shallow"]
    # Most runs leave the shallow basin, few the deep one (the figure's point, not just an ordering).
    assert share["shallow"] > 0.5 > 0.1 > share["deep"]
    assert runs.transitions().sum(axis=1).tolist() == [CFG.escape.runs] * 3


def test_without_noise_every_run_stays_in_its_basin() -> None:
    assert descend(0.0).escape_share().tolist() == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------
# Determinism: every study that draws random numbers
# --------------------------------------------------------------------------
RANDOM_STUDIES = {
    "noisy_descent": lambda seed: descend(CFG.escape.noise_scale, seed).paths,
    "goe_minima_counts": lambda seed: sf.goe_minima_counts(4, 20_000, seed),
    "ill_conditioned_quadratic": lambda seed: np.concatenate(
        [m.ravel() for m in sf.ill_conditioned_quadratic(10, 100.0, seed)]),
}


@pytest.mark.parametrize("name", sorted(RANDOM_STUDIES))
def test_same_seed_same_arrays_other_seed_others(name: str) -> None:
    study = RANDOM_STUDIES[name]
    first, again, other = study(0), study(0), study(1)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


# --------------------------------------------------------------------------
# Fig 6-4
# --------------------------------------------------------------------------
def test_critical_point_curves_have_the_three_kinds_at_zero() -> None:
    x = np.linspace(-1, 1, 201)
    curves = sf.critical_point_curves(x)
    centre = len(x) // 2
    assert curves["minimum"].argmin() == centre and curves["maximum"].argmax() == centre
    # Flat: zero slope at 0 but neither a minimum nor a maximum.
    assert np.all(np.diff(curves["flat"]) >= 0) and curves["flat"][centre] == 0


def test_goe_minima_share_matches_exact_values_and_falls_with_dimension() -> None:
    samples = 200_000
    counts = sf.goe_minima_counts(6, samples, seed=0)
    share = counts / samples
    # Exact: d = 1, a Gaussian is positive half the time; d = 2, P = (2 - sqrt 2) / 4
    # (integrating P(a > 0, c > 0, ac > b^2) for the GOE's a, c ~ N(0, 1), b ~ N(0, 1/2)).
    for d, exact in ((1, 0.5), (2, (2 - math.sqrt(2)) / 4)):
        assert abs(share[d - 1] - exact) < 4 * math.sqrt(exact * (1 - exact) / samples)
    assert np.all(np.diff(counts) <= 0) and counts[-1] < counts[0] / 1000
    # The chapter's heuristic, computed beside it: 1/3^d, over-counting minima at d >= 3.
    book = sf.book_minima_share(np.arange(1, 7))
    np.testing.assert_allclose(book, [1 / 3, 1 / 9, 1 / 27, 1 / 81, 1 / 243, 1 / 729])
    assert np.all(share[2:] < book[2:])


def test_wilson_interval_contains_the_share_and_bounds_zero_counts() -> None:
    low, high = wilson_interval(np.array([0, 10, 500]), 1000, 1.96)
    assert np.all(low <= np.array([0, 0.01, 0.5])) and np.all(np.array([0, 0.01, 0.5]) <= high)
    assert low[0] == 0 and high[0] == pytest.approx(1.96**2 / (1000 + 1.96**2))


# --------------------------------------------------------------------------
# Fig 6-5
# --------------------------------------------------------------------------
@pytest.mark.parametrize(("ab", "cd"), [(1.0, 1.0), (0.5, 2.0)])
def test_saddle_hessian_has_one_positive_and_one_negative_eigenvalue(ab: float, cd: float) -> None:
    eig = sf.saddle_hessian_eigenvalues(ab, cd)
    np.testing.assert_allclose(eig, [-2 * cd, 2 * ab])
    assert eig[0] < 0 < eig[1]


def test_saddle_cuts_look_like_a_minimum_and_a_maximum() -> None:
    cuts = sf.saddle_cuts(2.0, 101, 1.0, 1.0)
    centre = 50
    _, _, z_ab = cuts["A-B"]
    _, _, z_cd = cuts["C-D"]
    assert z_ab.argmin() == centre and np.all(z_ab >= 0)
    assert z_cd.argmax() == centre and np.all(z_cd <= 0)


# --------------------------------------------------------------------------
# Figs 6-6 and 6-7
# --------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1.0, 10.0, 100.0, 1000.0, 10000.0])
def test_largest_angle_matches_the_kantorovich_bound(k: float) -> None:
    h = sf.quadratic_hessian(1.0, k, 30.0)
    assert sf.largest_angle_sampled(h, 3600) == pytest.approx(sf.largest_angle_theory(k), abs=1e-2)


def test_angle_passes_80_degrees_only_beyond_condition_131() -> None:
    """The issue asked for > 80 degrees at k = 100; a quadratic cannot: its bound is 78.6."""
    assert sf.largest_angle_theory(100.0) == pytest.approx(78.58, abs=0.01)
    assert sf.largest_angle_sampled(sf.quadratic_hessian(1.0, 100.0, 30.0), 3600) < 80
    assert sf.largest_angle_sampled(sf.quadratic_hessian(1.0, 131.0, 30.0), 3600) > 80
    sweep = [sf.largest_angle_theory(k) for k in (1, 10, 100, 1e3, 1e4, 1e6)]
    assert np.all(np.diff(sweep) > 0) and 89.8 < sweep[-1] < 90


def test_negative_gradient_always_descends_and_points_home_on_circles() -> None:
    axis = np.linspace(-2, 2, 9)
    points = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    _, ellipse = sf.gradient_angles(sf.quadratic_hessian(1.0, 100.0, 30.0), points)
    _, circle = sf.gradient_angles(sf.quadratic_hessian(1.0, 1.0, 30.0), points)
    assert np.isnan(ellipse[40]) and np.isnan(circle[40])  # the minimum itself
    assert np.nanmax(ellipse) < 90 and np.nanmax(circle) < 1e-10


def test_gradient_turns_along_the_line_on_ellipses_not_circles() -> None:
    start = np.array([2.0, 1.0])
    circle = sf.steepest_descent_line(sf.quadratic_hessian(1.0, 1.0, 0.0), start, 0.95, 12)
    ellipse = sf.steepest_descent_line(sf.quadratic_hessian(1.0, 10.0, 0.0), start, 0.95, 12)
    assert np.all(circle.turn_deg < 1e-10)
    assert np.all(np.diff(ellipse.turn_deg) > 0) and ellipse.turn_deg[-1] > 45
    np.testing.assert_allclose(np.linalg.norm(ellipse.unit_grads, axis=1), 1.0)
    # At the exact line-search minimum the gradient is orthogonal to the line: a 90-degree turn.
    near_end = sf.steepest_descent_line(sf.quadratic_hessian(1.0, 10.0, 0.0), start, 1 - 1e-9, 2)
    assert near_end.turn_deg[-1] == pytest.approx(90, abs=1e-5)


# --------------------------------------------------------------------------
# Fig 6-10
# --------------------------------------------------------------------------
@pytest.mark.parametrize(("k", "rotation", "start"), [(10.0, 30.0, (3.0, 2.0)), (1000.0, -70.0, (-1.0, 4.0)),
                                                      (2.0, 0.0, (0.5, -0.1))])
def test_cg_reaches_the_2d_minimum_in_two_steps(k: float, rotation: float, start: tuple[float, float]) -> None:
    h, origin = sf.quadratic_hessian(1.0, k, rotation), np.zeros(2)
    cg = sf.conjugate_gradient(h, origin, np.array(start), origin, 1e-10, 100)
    assert cg.converged and cg.iterations == 2
    assert np.linalg.norm(cg.path[2]) < 1e-10
    sd = sf.steepest_descent(h, origin, np.array(start), origin, 1e-10, 10_000)
    assert sd.converged and sd.iterations > 2
    # Exact line search: each step is orthogonal to the one before (the zig-zag).
    steps = np.diff(sd.path, axis=0)
    cos = (steps[1:] * steps[:-1]).sum(1) / np.linalg.norm(steps[1:], axis=1) / np.linalg.norm(steps[:-1], axis=1)
    assert np.all(np.abs(cos) < 1e-6)


def test_nd_iterations_respect_their_theory() -> None:
    # n = 30 ends within n steps; in float64 lost conjugacy can add a few (n = 20: 22 steps).
    dim, k, tol = 30, 100.0, 1e-10
    a, x_star, x0 = sf.ill_conditioned_quadratic(dim, k, seed=0)
    np.testing.assert_allclose(np.linalg.eigvalsh(a)[[0, -1]], [1, k])
    cg = sf.conjugate_gradient(a, a @ x_star, x0, x_star, tol, 10_000)
    sd = sf.steepest_descent(a, a @ x_star, x0, x_star, tol, 10_000)
    assert cg.converged and sf.iterations_to(cg.rel_energy_error, tol) <= sf.cg_iterations_bound(k, dim, tol) <= dim
    assert sd.converged and sf.iterations_to(sd.rel_energy_error, tol) <= sf.sd_iterations_bound(k, tol)
    # Steepest descent's per-step contraction of the energy error, at most ((k-1)/(k+1))^2.
    ratios = sd.rel_energy_error[1:] / sd.rel_energy_error[:-1]
    assert np.all(ratios <= ((k - 1) / (k + 1)) ** 2 + 1e-12)
    assert cg.iterations < sd.iterations


def test_iteration_bounds_by_hand() -> None:
    # ((99/101)^2)^k <= 1e-10 first at k = ceil(ln 1e-10 / (2 ln(99/101))) = 576.
    assert sf.sd_iterations_bound(100.0, 1e-10) == 576
    assert sf.cg_iterations_bound(100.0, 1000, 1e-10) == 61 and sf.cg_iterations_bound(100.0, 20, 1e-10) == 20
    assert sf.iterations_to(np.array([1.0, 1e-3, 1e-11, 1e-12]), 1e-10) == 2
    assert sf.iterations_to(np.array([1.0, 0.5]), 1e-10) is None


# --------------------------------------------------------------------------
# Config and the study
# --------------------------------------------------------------------------
BAD = [
    # (Hydra override of conf/, what the message must say)
    ("surfaces.escape.noise_scale=-1.0", "surfaces.escape.noise_scale: must be >= 0"),
    ("surfaces.escape.well_depths=[1.0,-3.0,4.0]", "surfaces.escape.well_depths: must all be > 0"),
    ("surfaces.escape.well_widths=[0.6,0.8]", "surfaces.escape.well_centers: well_centers, well_depths"),
    ("surfaces.escape.x_max=-7.0", "surfaces.escape.x_max: must be > x_min"),
    ("surfaces.escape.steps=many", "surfaces.escape.steps"),
    ("+surfaces.escape.noise=1.0", "surfaces.escape.noise: unknown key"),
    ("surfaces.critical.samples=0", "surfaces.critical.samples: must be > 0"),
    ("surfaces.angle.condition_number=0.5", "surfaces.angle.condition_number: must be >= 1"),
    ("surfaces.turning.line_fraction=1.0", "surfaces.turning.line_fraction: must be < 1"),
    ("surfaces.conjugate.start_2d=[0.0,0.0]", "surfaces.conjugate.start_2d: must be a 2-D point"),
    ("surfaces.seed=-1", "surfaces.seed: must be >= 0"),
]


@pytest.mark.parametrize(("override", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_params_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(surfaces.Config, override)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_missing_study_and_missing_key_are_named() -> None:
    with pytest.raises(ConfigError, match=r"^surfaces\.saddle\.extent: missing"):
        config(surfaces.Config, "~surfaces.saddle.extent")
    with pytest.raises(ConfigError, match=r"^surfaces\.saddle: missing"):
        config(surfaces.Config, "~surfaces.saddle")


def test_wells_without_three_minima_are_a_config_error() -> None:
    """Found while the params are validated, before any study runs (or any run or file opens)."""
    with pytest.raises(ConfigError, match=r"^surfaces\.escape\.well_centers: the wells give 1 minima"):
        config(surfaces.Config, "surfaces.escape.well_centers=[0.0,0.1,0.2]")  # one merged well


# The default section, shrunk to run in a few seconds.
SMALL = (
    "surfaces.escape.runs=60", "surfaces.escape.steps=600", "surfaces.escape.noise_sweep=[0.0,8.0]",
    "surfaces.escape.trajectories_saved=3", "surfaces.escape.record_every=20",
    "surfaces.critical.samples=20000", "surfaces.critical.max_dim=5",
    "surfaces.angle.directions=720", "surfaces.angle.condition_sweep=[1.0,100.0]",
    "surfaces.conjugate.dim=20", "surfaces.conjugate.condition_number=100.0",
)


def test_study_result_holds_every_table_grid_and_number(tmp_path: Path) -> None:
    cfg = config(surfaces.Config, *SMALL)
    result = surfaces.run(cfg, Inputs(workdir=tmp_path))
    assert sorted(result.outputs()) == sorted(STAGE.outputs)
    s = cfg.surfaces
    csv = result.tables
    assert sorted(csv) == sorted(surfaces.TABLES)
    assert all(not frame.empty for frame in csv.values())
    assert len(csv["fig6_1_curve.csv"]) == s.escape.curve_points
    # Every (noise, start, end) cell, and shares that sum to 1 per start basin.
    escapes = csv["fig6_1_escapes.csv"]
    assert len(escapes) == 2 * 3 * 3
    np.testing.assert_allclose(escapes.groupby(["noise_scale", "start_basin"])["share"].sum(), 1.0)
    steps = s.escape.steps // s.escape.record_every + 1
    assert len(csv["fig6_1_trajectories.csv"]) == 3 * s.escape.trajectories_saved * steps
    assert csv["fig6_4_minima_share.csv"]["d"].tolist() == [1, 2, 3, 4, 5]
    assert set(csv["fig6_5_cuts.csv"]["cut"]) == {"A-B", "C-D"}
    assert len(csv["fig6_6_gradients.csv"]) == s.angle.arrow_points ** 2
    assert set(csv["fig6_7_line.csv"]["surface"]) == {"circle", "ellipse"}
    assert set(csv["fig6_10_paths.csv"]["method"]) == {"steepest_descent", "conjugate_gradient"}
    assert not any(frame.drop(columns=["barrier", "angle_deg"], errors="ignore").isna().any().any()
                   for name, frame in csv.items() if name != "fig6_1_critical_points.csv")

    grids = result.arrays["grids.npz"]
    for fig, surface in (("fig6_5", "z"), ("fig6_6", "loss"), ("fig6_10", "loss")):
        assert grids[f"{fig}_{surface}"].shape == (len(grids[f"{fig}_y"]), len(grids[f"{fig}_x"]))
    assert {"fig6_7_circle_loss", "fig6_7_ellipse_loss"} <= set(grids)

    summary = result.summary
    assert summary["cg_2d_iterations"] == 2 and summary["cg_2d_distance_after_2_steps"] < 1e-10
    # Round-off costs CG a few steps beyond n = 20 here (22); steepest descent needs hundreds.
    assert summary["cg_nd_iterations"] < 2 * 20 < summary["sd_nd_iterations"]
    assert summary["saddle_hessian_eig_min"] < 0 < summary["saddle_hessian_eig_max"]
    assert 0 <= summary["escape_share_deep"] < summary["escape_share_shallow"] <= 1
    # The headline numbers are the summary's own.
    assert result.metrics == {k: summary[k] for k in result.metrics}
    assert {"escape_share_shallow", "escape_share_deep", "largest_angle_deg"} <= set(result.metrics)

    # As the stage writes them: the npz holds every grid, the CSVs and JSON read back.
    out = tmp_path / "out"
    write(result, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(STAGE.outputs)
    with np.load(out / "grids.npz") as npz:
        assert sorted(npz.files) == sorted(grids)
        for name in npz.files:
            np.testing.assert_array_equal(npz[name], grids[name])
    pd.testing.assert_frame_equal(pd.read_csv(out / "fig6_1_escapes.csv"), escapes, check_dtype=False)
    assert json.loads((out / "summary.json").read_text()) == pytest.approx(summary)
    assert json.loads((out / "metrics.json").read_text()) == pytest.approx(result.metrics)
