"""Beyond the book: Fig 6-3 in two dimensions (Li, Xu, Taylor, Studer & Goldstein 2018).

1. Around the baseline's SGD solution theta*: the loss and accuracy on a grid of (a, b) in
   [-extent, extent]^2 at theta* + a d1 + b d2, d1 and d2 Gaussian directions filter-normalised to theta*
   (biases' directions zero), on a fixed subset of the training set.
2. From the baseline's init.pt, each optimizer of `trajectory.optimizers` trains for a short budget through
   `training.train`, its parameters saved every `save_every` steps; per optimizer, the plane through the
   final iterate spanned by the top two principal directions of [theta_i - theta_final], the explained
   variance of each, the path projected on them, and the loss on a grid over that plane holding the path.
Tables: `random_plane.csv` (a, b, loss, accuracy), `pca_planes.csv` (optimizer, x, y, loss, accuracy),
`paths.csv` (optimizer, step, x, y, off_plane, loss, accuracy: each saved iterate, its projection, its distance
from the plane, in the same units as x and y, and its own subset loss). summary.json holds, per plane, the
loss at the centre, the grid's minimum and where it is, and per optimizer the explained variances, the steps
trained and whether the run diverged (a diverged run keeps its finite iterates; with fewer than three there is
no plane, and its entry says so).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from beyond_gd.config import ModelConfig, RuntimeConfig, optimizer_names, required
from beyond_gd.data.mnist import fixed_subset, load_tensors
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import plane as pl
from beyond_gd.landscape.hessian import FlatLayout
from beyond_gd.landscape.interpolation import combination_loss, sub_state
from beyond_gd.model import build_model, load_state
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.runtime import seed_everything
from beyond_gd.study import Inputs, Result, Series
from beyond_gd.training import TrainResult, train

PREFIX = "classifier."


@dataclass
class RandomPlaneConfig:
    # The grid spans [-extent, extent]^2 in units of the filter-normalised directions.
    extent: float = required(gt=0)
    # Points per axis; odd, so the SGD solution (0, 0) is a grid point.
    resolution: int = required(gt=2)
    # The generator of the two directions (d1 drawn first, then d2).
    seed: int = required(ge=0)

    def check(self) -> None:
        if self.resolution % 2 == 0:
            raise ConfigError(f"resolution: must be odd (the centre is a grid point), got {self.resolution}")


@dataclass
class TrajectoryConfig:
    # Entries of the `optimizers` section, each trained from the baseline's init.pt.
    optimizers: list[str] = optimizer_names(nonempty=True, distinct=True)
    batch_size: int = required(gt=0)
    max_steps: int = required(gt=0)
    # Parameters saved every this many steps (and at step 0 and the last step).
    save_every: int = required(gt=0)
    # The batches' order (training.train's seed).
    seed: int = required(ge=0)
    # A mini-batch loss above this (or NaN/inf) marks the run diverged and stops it.
    divergence_loss: float = required(gt=0)

    def check(self) -> None:
        if self.max_steps < 2 * self.save_every:
            raise ConfigError(f"save_every: at most max_steps / 2 ({self.max_steps // 2}) so the path has three "
                              f"points, got {self.save_every}")


@dataclass
class PcaPlaneConfig:
    resolution: int = required(gt=1)
    # The grid spans the projected path's range on each axis, widened by this share of it on either side.
    margin: float = required(ge=0)


@dataclass
class Landscape2dConfig:
    subset_size: int = required(gt=0)
    subset_seed: int = required(ge=0)
    # Images per forward pass and parameter sets per vmapped pass of the grid evaluation.
    batch_size: int = required(gt=0)
    chunk: int = required(gt=0)
    random_plane: RandomPlaneConfig
    trajectory: TrajectoryConfig
    pca_plane: PcaPlaneConfig


@dataclass
class Config:
    landscape_2d: Landscape2dConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c, device = cfg.landscape_2d, inputs.torch_device
    seed_everything(c.trajectory.seed)
    model = build_model(cfg.model).to(device)
    theta_opt = load_state(inputs.folder("baseline") / "mnist.pt", model, device)
    load_state(inputs.folder("baseline") / "init.pt", model, device)  # checked before any work is done
    x_train, y_train = load_tensors(inputs.folder("mnist"), train=True, device=device)
    x, y = fixed_subset(x_train, y_train, c.subset_size, c.subset_seed, "landscape_2d.subset_size")

    def loss_at(bases: list[dict[str, torch.Tensor]], coeffs: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        return combination_loss(model.classifier, bases, coeffs, x, y, batch_size=c.batch_size, chunk=c.chunk)

    seconds: dict[str, float] = {}
    clock = time.perf_counter()
    # 1. The random plane around the SGD solution.
    centre = sub_state(theta_opt, PREFIX)
    gen = torch.Generator().manual_seed(c.random_plane.seed)
    d1 = pl.filter_normalized_direction(centre, gen)
    d2 = pl.filter_normalized_direction(centre, gen)
    axis = pl.grid_axis(-c.random_plane.extent, c.random_plane.extent, c.random_plane.resolution)
    loss, acc = loss_at([centre, d1, d2], pl.plane_coefficients(axis, axis))
    aa, bb = np.meshgrid(axis, axis, indexing="ij")
    random_plane = pd.DataFrame({"a": aa.ravel(), "b": bb.ravel(), "loss": loss, "accuracy": acc})
    flat1, flat2 = (FlatLayout.of(centre).flatten(d).double() for d in (d1, d2))
    random_summary = {**_plane_summary(random_plane, "a", "b", at_centre=_at(random_plane, "a", "b", 0.0, 0.0)),
                      "resolution": c.random_plane.resolution, "extent": c.random_plane.extent,
                      "direction_cosine": float(flat1 @ flat2 / (flat1.norm() * flat2.norm())),
                      "direction_norms": [float(flat1.norm()), float(flat2.norm())],
                      "solution_norm": float(FlatLayout.of(centre).flatten(centre).double().norm())}

    seconds["random_plane_seconds"] = time.perf_counter() - clock
    # 2. Each optimizer's path from the init, and its principal plane.
    planes, paths, per_optimizer = [], [], {}
    names = c.trajectory.optimizers
    for name in tqdm(names, desc="landscape_2d", unit="optimizer", disable=not inputs.progress):
        load_state(inputs.folder("baseline") / "init.pt", model, device)
        steps, iterates, trained = _trajectory(model, cfg.optimizers[name], name, x_train, y_train, c.trajectory,
                                               inputs.progress)
        seconds[f"{name}_train_seconds"] = trained.seconds
        clock = time.perf_counter()
        entry: dict[str, object] = {"steps": trained.steps, "diverged": trained.diverged,
                                    "iterates": len(iterates), "final_batch_loss": _last(trained.step_loss)}
        finite = [i for i, it in enumerate(iterates) if all(torch.isfinite(v).all() for v in it.values())]
        entry["finite_iterates"] = len(finite)
        if len(finite) < 3:
            per_optimizer[name] = {**entry, "plane": None}
            continue
        kept = [sub_state(iterates[i], PREFIX) for i in finite]
        layout = FlatLayout.of(kept[-1])
        fit = pl.path_plane(torch.stack([layout.flatten(s) for s in kept]))
        directions = [{k: v.to(kept[-1][k].dtype) for k, v in layout.unflatten(row).items()}
                      for row in fit.directions.to(device)]
        own_loss, own_acc = loss_at(kept, torch.eye(len(kept), dtype=torch.float64))
        paths.append(pd.DataFrame({"optimizer": name, "step": [steps[i] for i in finite],
                                   "x": fit.coords[:, 0], "y": fit.coords[:, 1], "off_plane": fit.off_plane,
                                   "loss": own_loss, "accuracy": own_acc}))
        (x_lo, x_hi), (y_lo, y_hi) = pl.span(fit.coords, c.pca_plane.margin)
        xs = pl.grid_axis(x_lo, x_hi, c.pca_plane.resolution)
        ys = pl.grid_axis(y_lo, y_hi, c.pca_plane.resolution)
        # The grid, then its centre (the final iterate) as one more point: the grid need not pass through it.
        coeffs = torch.cat([pl.plane_coefficients(xs, ys), torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)])
        grid_loss, grid_acc = loss_at([kept[-1], *directions], coeffs)
        gx, gy = np.meshgrid(xs, ys, indexing="ij")
        grid = pd.DataFrame({"optimizer": name, "x": gx.ravel(), "y": gy.ravel(), "loss": grid_loss[:-1],
                             "accuracy": grid_acc[:-1]})
        planes.append(grid)
        per_optimizer[name] = {**entry, "plane": {
            **_plane_summary(grid, "x", "y", at_centre=float(grid_loss[-1])),
            "explained_variance": [float(v) for v in fit.explained],
            "explained_variance_total": float(fit.explained.sum()),
            "max_off_plane": float(fit.off_plane.max()), "path_length": float(_length(fit.coords)),
            "start_distance": float(np.hypot(*fit.coords[0]) ** 2 + fit.off_plane[0] ** 2) ** 0.5,
            "x_range": [x_lo, x_hi], "y_range": [y_lo, y_hi], "resolution": c.pca_plane.resolution,
            "start_loss": float(own_loss[0]), "final_loss": float(own_loss[-1])}}
        seconds[f"{name}_plane_seconds"] = time.perf_counter() - clock

    pca_planes = pd.concat(planes, ignore_index=True) if planes else pd.DataFrame(
        columns=["optimizer", "x", "y", "loss", "accuracy"])
    path_table = pd.concat(paths, ignore_index=True) if paths else pd.DataFrame(
        columns=["optimizer", "step", "x", "y", "off_plane", "loss", "accuracy"])
    metrics: dict[str, float | int | bool | None] = {
        "random_centre_loss": random_summary["centre_loss"], "random_min_loss": random_summary["min_loss"],
        **{f"{n}_explained_variance": (per_optimizer[n]["plane"] or {}).get("explained_variance_total")
           for n in names}}
    lines = [f"random plane ({c.random_plane.resolution}^2 on {c.subset_size:,} images): loss "
             f"{_fmt(random_summary['centre_loss'])} at the SGD solution, minimum {_fmt(random_summary['min_loss'])} "
             f"at (a, b) = ({_fmt(random_summary['min_at'][0])}, {_fmt(random_summary['min_at'][1])})"]
    for n in names:
        e, p = per_optimizer[n], per_optimizer[n]["plane"]
        state = "diverged, " if e["diverged"] else ""
        lines.append(f"{n}: {state}{e['steps']} steps, " + (
            "fewer than 3 finite iterates: no plane" if p is None else
            f"explained variance {p['explained_variance'][0]:.3f} + {p['explained_variance'][1]:.3f}; final loss "
            f"{_fmt(p['centre_loss'])}, plane minimum {_fmt(p['min_loss'])}"))
    return Result(
        metrics=metrics,
        summary={"subset_size": c.subset_size, "random_plane": random_summary, "optimizers": per_optimizer},
        tables={"random_plane.csv": random_plane, "pca_planes.csv": pca_planes, "paths.csv": path_table},
        series=[Series(range(len(axis)), {"random_plane_loss_along_a": random_plane.loc[
            random_plane["b"] == 0.0, "loss"].to_numpy()})],
        # The seconds go to MLflow only: machine facts, not results to diff between experiments.
        logged=seconds,
        lines=[*lines, "seconds: " + ", ".join(f"{k.removesuffix('_seconds')} {v:.1f}" for k, v in seconds.items())],
    )


def _trajectory(model: torch.nn.Module, spec: OptimizerSpec, name: str, x: torch.Tensor, y: torch.Tensor,
                c: TrajectoryConfig, progress: bool) -> tuple[list[int], list[dict[str, torch.Tensor]], TrainResult]:
    """Train `model` from where it stands; its state at step 0, every `save_every` steps and the last step."""
    optimizer = spec.build(model.parameters(), key=f"optimizers.{name}")
    steps = [0]
    iterates = [{k: v.detach().clone() for k, v in model.state_dict().items()}]
    done = 0

    def saved(*_: object) -> None:
        nonlocal done
        done += 1
        if done % c.save_every == 0:
            steps.append(done)
            iterates.append({k: v.detach().clone() for k, v in model.state_dict().items()})

    hook = optimizer.register_step_post_hook(saved)
    try:
        result = train(model, optimizer, x, y, batch_size=c.batch_size, seed=c.seed, max_steps=c.max_steps,
                       divergence_loss=c.divergence_loss, progress=progress, desc=name)
    finally:
        hook.remove()
    if steps[-1] != done:
        steps.append(done)
        iterates.append({k: v.detach().clone() for k, v in model.state_dict().items()})
    return steps, iterates, result


def _at(grid: pd.DataFrame, xcol: str, ycol: str, x: float, y: float) -> float:
    return float(grid.loc[(grid[xcol] == x) & (grid[ycol] == y), "loss"].iloc[0])


def _plane_summary(grid: pd.DataFrame, xcol: str, ycol: str, at_centre: float) -> dict[str, object]:
    """The loss at the centre, the grid's lowest (finite) loss and where it lies, and the highest."""
    finite = grid[np.isfinite(grid["loss"])]
    if finite.empty:
        return {"centre_loss": at_centre, "min_loss": None, "min_at": [None, None], "max_loss": None,
                "nonfinite_points": len(grid)}
    low = finite.loc[finite["loss"].idxmin()]
    return {"centre_loss": at_centre, "min_loss": float(low["loss"]), "min_at": [float(low[xcol]), float(low[ycol])],
            "max_loss": float(finite["loss"].max()), "nonfinite_points": int(len(grid) - len(finite))}


def _length(coords: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(coords, axis=0), axis=1).sum())


def _last(values: np.ndarray) -> float | None:
    return float(values[-1]) if len(values) else None


def _fmt(value: float | None) -> str:
    """A number for the printed lines; a grid with no finite loss has None (null in summary.json)."""
    return "none" if value is None else f"{value:.4g}"
