"""The toy surfaces of Figs 6-1, 6-4, 6-5, 6-6, 6-7 and 6-10, computed.

The maths is `beyond_gd.toys.surfaces`; this study runs it with the `surfaces`
section and shapes the tidy tables the report draws without recomputing:
- `fig6_1_curve.csv` (x, loss); `fig6_1_critical_points.csv` (kind, basin, x,
  loss, barrier); `fig6_1_escapes.csv` (noise_scale, start_basin, end_basin,
  runs, share) at every noise level of `noise_sweep` and `noise_scale`;
  `fig6_1_trajectories.csv` (start_basin, run, step, x, loss): the first
  `trajectories_saved` runs per basin at `noise_scale`.
- `fig6_4_curves.csv` (kind, x, loss); `fig6_4_minima_share.csv` (d, samples,
  minima, share, share_low, share_high, book_share, goe_asymptotic).
- `fig6_5_cuts.csv` (cut, s, x, y, z): s runs along the cut.
- `fig6_6_gradients.csv` (x, y, grad_x, grad_y, angle_deg);
  `fig6_6_largest_angle.csv` (condition_number, largest_angle_deg, theory_deg).
- `fig6_7_line.csv` (surface, i, s, x, y, unit_grad_x, unit_grad_y, turn_deg).
- `fig6_10_paths.csv` (method, iteration, x, y, rel_energy_error) on the 2-D
  quadratic; `fig6_10_convergence.csv` (method, iteration, rel_energy_error)
  on the n-D one.
- `grids.npz`, surfaces for contour and 3-D plots, z[i, j] at (x[j], y[i]):
  fig6_5_x, fig6_5_y, fig6_5_z; fig6_6_x, fig6_6_y, fig6_6_loss; fig6_7_x,
  fig6_7_y, fig6_7_circle_loss, fig6_7_ellipse_loss; fig6_10_x, fig6_10_y,
  fig6_10_loss.
- `summary.json`: escape shares, minima shares, angles, turns, iterations and
  their theoretical bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_gd.config import required
from beyond_gd.errors import ConfigError
from beyond_gd.measures import wilson_interval
from beyond_gd.study import Inputs, Result, Series
from beyond_gd.toys import surfaces as sf

TABLES = ("fig6_1_curve.csv", "fig6_1_critical_points.csv", "fig6_1_escapes.csv", "fig6_1_trajectories.csv",
          "fig6_4_curves.csv", "fig6_4_minima_share.csv", "fig6_5_cuts.csv", "fig6_6_gradients.csv",
          "fig6_6_largest_angle.csv", "fig6_7_line.csv", "fig6_10_paths.csv", "fig6_10_convergence.csv")


@dataclass
class EscapeConfig:
    well_centers: list[float] = required(nonempty=True)
    well_depths: list[float] = required(nonempty=True)
    well_widths: list[float] = required(nonempty=True)
    confinement: float = required(gt=0)
    x_min: float = required()
    x_max: float = required()
    curve_points: int = required(gt=2)
    lr: float = required(gt=0)
    steps: int = required(gt=0)
    runs: int = required(gt=0)
    noise_scale: float = required(ge=0)
    noise_sweep: list[float] = required(nonempty=True)
    trajectories_saved: int = required(ge=0)
    record_every: int = required(gt=0)


@dataclass
class CriticalConfig:
    curve_extent: float = required(gt=0)
    curve_points: int = required(gt=1)
    max_dim: int = required(gt=0)
    samples: int = required(gt=0)
    confidence_z: float = required(gt=0)


@dataclass
class SaddleConfig:
    ab_coefficient: float = required(gt=0)
    cd_coefficient: float = required(gt=0)
    extent: float = required(gt=0)
    grid_points: int = required(gt=1)
    cut_points: int = required(gt=1)


@dataclass
class AngleConfig:
    curvature: float = required(gt=0)
    condition_number: float = required(ge=1)
    rotation_deg: float = required()
    extent: float = required(gt=0)
    arrow_points: int = required(gt=1)
    grid_points: int = required(gt=1)
    directions: int = required(gt=0)
    condition_sweep: list[float] = required(nonempty=True)


@dataclass
class TurningConfig:
    curvature: float = required(gt=0)
    condition_number: float = required(ge=1)
    rotation_deg: float = required()
    start: list[float] = required()
    line_fraction: float = required(gt=0)
    line_points: int = required(gt=1)
    extent: float = required(gt=0)
    grid_points: int = required(gt=1)


@dataclass
class ConjugateConfig:
    curvature: float = required(gt=0)
    condition_number_2d: float = required(ge=1)
    rotation_deg: float = required()
    start_2d: list[float] = required()
    extent: float = required(gt=0)
    grid_points: int = required(gt=1)
    dim: int = required(gt=1)
    condition_number: float = required(ge=1)
    tolerance: float = required(gt=0)
    max_iterations: int = required(gt=0)


@dataclass
class SurfacesConfig:
    """A seed and one subsection per study."""

    seed: int = required(ge=0)
    escape: EscapeConfig = required()
    critical: CriticalConfig = required()
    saddle: SaddleConfig = required()
    angle: AngleConfig = required()
    turning: TurningConfig = required()
    conjugate: ConjugateConfig = required()

    def check(self) -> None:
        esc, ang, turn, cg = self.escape, self.angle, self.turning, self.conjugate
        _require(len(esc.well_centers) == len(esc.well_depths) == len(esc.well_widths) == len(sf.BASIN_LABELS),
                 "escape.well_centers", f"well_centers, well_depths and well_widths need {len(sf.BASIN_LABELS)} "
                 "entries each (shallow, deep and global basins)")
        _require(min(esc.well_depths) > 0, "escape.well_depths", f"must all be > 0, got {esc.well_depths}")
        _require(min(esc.well_widths) > 0, "escape.well_widths", f"must all be > 0, got {esc.well_widths}")
        _require(esc.x_min < esc.x_max, "escape.x_max", f"must be > x_min ({esc.x_min}), got {esc.x_max}")
        _require(min(esc.noise_sweep) >= 0, "escape.noise_sweep", f"must all be >= 0, got {esc.noise_sweep}")
        _require(min(ang.condition_sweep) >= 1, "angle.condition_sweep",
                 f"must all be >= 1, got {ang.condition_sweep}")
        _require(turn.line_fraction < 1, "turning.line_fraction",
                 f"must be < 1 (the circular gradient vanishes at the line minimum), got {turn.line_fraction}")
        _require(cg.tolerance < 1, "conjugate.tolerance", f"must be < 1 (a relative error), got {cg.tolerance}")
        for key, start in (("turning.start", turn.start), ("conjugate.start_2d", cg.start_2d)):
            _require(len(start) == 2 and any(start), key, f"must be a 2-D point other than the minimum, got {start}")
        try:  # cheap, and a bad curve should fail before any MLflow run opens
            sf.find_basins(_wells(esc), esc.x_min, esc.x_max, esc.curve_points)
        except ValueError as exc:
            raise ConfigError(f"escape.well_centers: {exc}") from None


@dataclass
class Config:
    surfaces: SurfacesConfig


def _wells(c: EscapeConfig) -> sf.Wells:
    return sf.Wells(tuple(c.well_centers), tuple(c.well_depths), tuple(c.well_widths), c.confinement)


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


# --------------------------------------------------------------------------
# The study: six toy studies, their tables and grids
# --------------------------------------------------------------------------
def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.surfaces
    tables: dict[str, pd.DataFrame] = {}
    grids: dict[str, np.ndarray] = {}
    summary: dict[str, float | int | None] = {}
    for study in (escape_study, critical_study, saddle_study, angle_study, turning_study, conjugate_study):
        t, g, m = study(c)
        tables.update(t)
        grids.update(g)
        summary.update(m)
    conv = tables["fig6_10_convergence.csv"]
    series = [Series(rows["iteration"].tolist(), {f"fig6_10_{method}_log10_rel_energy_error": np.log10(
        rows["rel_energy_error"].clip(lower=np.finfo(float).tiny))}) for method, rows in conv.groupby("method")]
    headline = ("escape_share_shallow", "escape_share_deep", "largest_angle_deg", "cg_nd_iterations")
    return Result(metrics={k: summary[k] for k in headline}, summary=summary, tables=tables,
                  arrays={"grids.npz": grids}, series=series,
                  lines=[f"escape shares shallow {summary['escape_share_shallow']:.2f}, deep "
                         f"{summary['escape_share_deep']:.2f}; largest angle {summary['largest_angle_deg']:.1f} deg; "
                         f"n-D iterations CG {summary['cg_nd_iterations']}, SD {summary['sd_nd_iterations']}"])


Study = tuple[dict[str, pd.DataFrame], dict[str, np.ndarray], dict[str, float | int | None]]


def escape_study(cfg: SurfacesConfig) -> Study:
    """Fig 6-1: the curve, its basins, and how often noisy descent leaves each one."""
    c = cfg.escape
    wells = _wells(c)
    basins = sf.find_basins(wells, c.x_min, c.x_max, c.curve_points)  # SurfacesConfig.check found them
    x = np.linspace(c.x_min, c.x_max, c.curve_points)
    critical = pd.concat([
        pd.DataFrame({"kind": "minimum", "basin": basins.labels, "x": basins.minima,
                      "loss": sf.wells_loss(basins.minima, wells), "barrier": basins.barriers}),
        pd.DataFrame({"kind": "maximum", "basin": "", "x": basins.maxima,
                      "loss": sf.wells_loss(basins.maxima, wells), "barrier": np.nan})], ignore_index=True)

    runs = {noise: sf.noisy_descent(wells, basins, lr=c.lr, steps=c.steps, noise_scale=noise, runs=c.runs,
                                    record_every=c.record_every, seed=cfg.seed)
            for noise in sorted({*c.noise_sweep, c.noise_scale})}
    labels = np.array(basins.labels)
    escapes = pd.concat([
        pd.DataFrame({"noise_scale": noise, "start_basin": np.repeat(labels, len(labels)),
                      "end_basin": np.tile(labels, len(labels)), "runs": r.transitions().ravel(),
                      "share": r.transitions().ravel() / c.runs})
        for noise, r in runs.items()], ignore_index=True)
    chosen = runs[c.noise_scale]
    kept = chosen.paths[:, : c.trajectories_saved, :]
    b, run, step = np.meshgrid(np.arange(len(labels)), np.arange(kept.shape[1]), np.arange(kept.shape[2]),
                               indexing="ij")
    trajectories = pd.DataFrame({"start_basin": labels[b.ravel()], "run": run.ravel(),
                                 "step": chosen.steps[step.ravel()], "x": kept.ravel(),
                                 "loss": sf.wells_loss(kept.ravel(), wells)})
    metrics = {f"escape_share_{label}": float(s) for label, s in zip(labels, chosen.escape_share(), strict=True)}
    metrics.update({f"barrier_{label}": float(v) for label, v in zip(labels, basins.barriers, strict=True)})
    tables = {"fig6_1_curve.csv": pd.DataFrame({"x": x, "loss": sf.wells_loss(x, wells)}),
              "fig6_1_critical_points.csv": critical, "fig6_1_escapes.csv": escapes,
              "fig6_1_trajectories.csv": trajectories}
    return tables, {}, metrics


def critical_study(cfg: SurfacesConfig) -> Study:
    """Fig 6-4: the three 1-D critical points; GOE share of minima beside the book's 1/3^d."""
    c = cfg.critical
    x = np.linspace(-c.curve_extent, c.curve_extent, c.curve_points)
    curves = pd.concat([pd.DataFrame({"kind": kind, "x": x, "loss": y})
                        for kind, y in sf.critical_point_curves(x).items()], ignore_index=True)
    d = np.arange(1, c.max_dim + 1)
    minima = sf.goe_minima_counts(c.max_dim, c.samples, cfg.seed)
    low, high = wilson_interval(minima, c.samples, c.confidence_z)
    share = pd.DataFrame({"d": d, "samples": c.samples, "minima": minima, "share": minima / c.samples,
                          "share_low": low, "share_high": high, "book_share": sf.book_minima_share(d),
                          "goe_asymptotic": sf.goe_asymptotic_share(d)})
    metrics = {f"minima_share_d{k}": float(s) for k, s in zip(d, share["share"], strict=True)}
    return {"fig6_4_curves.csv": curves, "fig6_4_minima_share.csv": share}, {}, metrics


def saddle_study(cfg: SurfacesConfig) -> Study:
    """Fig 6-5: the saddle surface, its two cuts and its Hessian's eigenvalues."""
    c = cfg.saddle
    surface = lambda x, y: sf.saddle(x, y, c.ab_coefficient, c.cd_coefficient)  # noqa: E731
    gx, gy, gz = sf.grid_values(surface, c.extent, c.grid_points)
    cuts = pd.concat([pd.DataFrame({"cut": name, "s": np.linspace(-c.extent, c.extent, c.cut_points),
                                    "x": x, "y": y, "z": z})
                      for name, (x, y, z) in sf.saddle_cuts(c.extent, c.cut_points, c.ab_coefficient,
                                                            c.cd_coefficient).items()], ignore_index=True)
    eig = sf.saddle_hessian_eigenvalues(c.ab_coefficient, c.cd_coefficient)
    metrics = {"saddle_hessian_eig_min": float(eig[0]), "saddle_hessian_eig_max": float(eig[-1])}
    return {"fig6_5_cuts.csv": cuts}, {"fig6_5_x": gx, "fig6_5_y": gy, "fig6_5_z": gz}, metrics


def angle_study(cfg: SurfacesConfig) -> Study:
    """Fig 6-6: gradient arrows and their angle to the way to the minimum; largest angle against k."""
    c = cfg.angle
    h = sf.quadratic_hessian(c.curvature, c.condition_number, c.rotation_deg)
    gx, gy, loss = sf.grid_values(sf.quadratic_loss(h), c.extent, c.grid_points)
    axis = np.linspace(-c.extent, c.extent, c.arrow_points)
    points = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    grads, angles = sf.gradient_angles(h, points)
    arrows = pd.DataFrame({"x": points[:, 0], "y": points[:, 1], "grad_x": grads[:, 0], "grad_y": grads[:, 1],
                           "angle_deg": angles})
    sweep = pd.DataFrame({"condition_number": c.condition_sweep,
                          "largest_angle_deg": [sf.largest_angle_sampled(
                              sf.quadratic_hessian(c.curvature, k, c.rotation_deg), c.directions)
                              for k in c.condition_sweep],
                          "theory_deg": [sf.largest_angle_theory(k) for k in c.condition_sweep]})
    metrics = {"condition_number": c.condition_number,
               "largest_angle_deg": sf.largest_angle_sampled(h, c.directions),
               "largest_angle_theory_deg": sf.largest_angle_theory(c.condition_number),
               "largest_angle_arrows_deg": float(np.nanmax(angles))}
    return ({"fig6_6_gradients.csv": arrows, "fig6_6_largest_angle.csv": sweep},
            {"fig6_6_x": gx, "fig6_6_y": gy, "fig6_6_loss": loss}, metrics)


def turning_study(cfg: SurfacesConfig) -> Study:
    """Fig 6-7: normalised gradients along the steepest-descent line, circle vs ellipse."""
    c = cfg.turning
    hessians = {"circle": sf.quadratic_hessian(c.curvature, 1.0, c.rotation_deg),
                "ellipse": sf.quadratic_hessian(c.curvature, c.condition_number, c.rotation_deg)}
    frames, grids, metrics = [], {}, {}
    for name, h in hessians.items():
        line = sf.steepest_descent_line(h, np.array(c.start), c.line_fraction, c.line_points)
        frames.append(pd.DataFrame({"surface": name, "i": np.arange(c.line_points), "s": line.steps,
                                    "x": line.points[:, 0], "y": line.points[:, 1],
                                    "unit_grad_x": line.unit_grads[:, 0], "unit_grad_y": line.unit_grads[:, 1],
                                    "turn_deg": line.turn_deg}))
        grids["fig6_7_x"], grids["fig6_7_y"], grids[f"fig6_7_{name}_loss"] = sf.grid_values(
            sf.quadratic_loss(h), c.extent, c.grid_points)
        metrics[f"turn_deg_{name}"] = float(line.turn_deg[-1])
    return {"fig6_7_line.csv": pd.concat(frames, ignore_index=True)}, grids, metrics


def conjugate_study(cfg: SurfacesConfig) -> Study:
    """Fig 6-10: paths on a 2-D quadratic; iterations to the tolerance on an n-D one, beside theory."""
    c = cfg.conjugate
    methods = {"steepest_descent": sf.steepest_descent, "conjugate_gradient": sf.conjugate_gradient}
    h = sf.quadratic_hessian(c.curvature, c.condition_number_2d, c.rotation_deg)
    origin = np.zeros(2)
    paths = {name: fn(h, origin, np.array(c.start_2d), origin, c.tolerance, c.max_iterations)
             for name, fn in methods.items()}
    a, x_star, x0 = sf.ill_conditioned_quadratic(c.dim, c.condition_number, cfg.seed)
    runs = {name: fn(a, a @ x_star, x0, x_star, c.tolerance, c.max_iterations) for name, fn in methods.items()}
    path_rows = pd.concat([pd.DataFrame({"method": name, "iteration": np.arange(len(r.path)), "x": r.path[:, 0],
                                         "y": r.path[:, 1], "rel_energy_error": r.rel_energy_error})
                           for name, r in paths.items()], ignore_index=True)
    conv = pd.concat([pd.DataFrame({"method": name, "iteration": np.arange(len(r.path)),
                                    "rel_energy_error": r.rel_energy_error}) for name, r in runs.items()],
                     ignore_index=True)
    gx, gy, loss = sf.grid_values(sf.quadratic_loss(h), c.extent, c.grid_points)
    cg2 = paths["conjugate_gradient"].path
    metrics = {
        "cg_2d_iterations": sf.iterations_to(paths["conjugate_gradient"].rel_energy_error, c.tolerance),
        "sd_2d_iterations": sf.iterations_to(paths["steepest_descent"].rel_energy_error, c.tolerance),
        "sd_2d_bound": sf.sd_iterations_bound(c.condition_number_2d, c.tolerance),
        # Distance from the minimum after CG's second step (n = 2): round-off only.
        "cg_2d_distance_after_2_steps": float(np.linalg.norm(cg2[min(2, len(cg2) - 1)])),
        "cg_nd_iterations": sf.iterations_to(runs["conjugate_gradient"].rel_energy_error, c.tolerance),
        "sd_nd_iterations": sf.iterations_to(runs["steepest_descent"].rel_energy_error, c.tolerance),
        "cg_nd_bound": sf.cg_iterations_bound(c.condition_number, c.dim, c.tolerance),
        "sd_nd_bound": sf.sd_iterations_bound(c.condition_number, c.tolerance),
        "nd_dim": c.dim, "nd_condition_number": c.condition_number,
    }
    return ({"fig6_10_paths.csv": path_rows, "fig6_10_convergence.csv": conv},
            {"fig6_10_x": gx, "fig6_10_y": gy, "fig6_10_loss": loss}, metrics)

