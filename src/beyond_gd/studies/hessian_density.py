"""Beyond the book: the Hessian's eigenvalue density at the init, during the baseline's training and at its solution.

Stochastic Lanczos quadrature (`landscape.density`) on a fixed subset of one
split, from Hessian-vector products only: `starts` Lanczos runs from random
starts at every point, their Ritz values and weights, a Gaussian-broadened
density. The points: `init` (the baseline's init.pt), `epoch_<n>` (its
checkpoints.pt) and `solution` (mnist.pt). What the literature says of that
density: a bulk near zero and about C - 1 outliers for C classes (Sagun,
Bottou & LeCun 2017; Papyan 2019), a negative part that shrinks as training
goes on (Ghorbani, Krishnan & Xiao 2019).
Tables: `ritz.csv` (point, start, node: value, weight, Lanczos bound),
`density.csv` (point, eigenvalue grid, density), `top.csv` (per point and
start, the converged top eigenvalues). summary.json per point: lambda_max
and lambda_min, the outliers (count above the widest gap, the gap, the bulk's
edge), the mass within `zero_band` x lambda_max of zero and the negative mass
below it, the SLQ trace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from beyond_gd.config import ModelConfig, RuntimeConfig, required
from beyond_gd.data.mnist import fixed_subset, load_tensors
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.landscape import density as sd
from beyond_gd.landscape import hessian as hs
from beyond_gd.landscape import spectrum
from beyond_gd.model import build_model, load_state
from beyond_gd.runtime import seed_everything
from beyond_gd.study import Inputs, Result, Series

POINT = re.compile(r"init|solution|epoch_[1-9][0-9]*")


@dataclass
class HessianDensityConfig:
    # Where to measure: init, epoch_<n> (a baseline.checkpoint_epochs entry), solution; in training order.
    points: list[str] = required(nonempty=True, distinct=True)
    split: str = required(choices=("train", "test"))
    subset_size: int = required(gt=0)
    subset_seed: int = required(ge=0)
    # Examples per double-backward pass.
    batch_size: int = required(gt=0)
    # Random starts (independent Lanczos runs) per point, and Lanczos steps per start.
    starts: int = required(gt=0)
    lanczos_steps: int = required(gt=1)
    # The density's grid and the Gaussian's standard deviation, as a share of the spectrum's width.
    grid_points: int = required(gt=1)
    broadening: float = required(gt=0)
    # The outliers: the widest ratio gap among this many largest converged Ritz values.
    candidates: int = required(gt=1)
    # A Ritz value is converged (an eigenvalue) when its Lanczos bound <= residual_tol x lambda_max.
    residual_tol: float = required(gt=0)
    # Ritz values within zero_band x lambda_max of 0 are the bulk's zero: neither negative nor positive.
    zero_band: float = required(gt=0)
    seed: int = required(ge=0)

    def check(self) -> None:
        bad = [p for p in self.points if not POINT.fullmatch(p)]
        if bad:
            raise ConfigError(f"points: each must be init, solution or epoch_<n>, got {bad}")
        if self.candidates > self.lanczos_steps:
            raise ConfigError(f"candidates: must be <= lanczos_steps ({self.lanczos_steps}), got {self.candidates}")


@dataclass
class Config:
    hessian_density: HessianDensityConfig
    model: ModelConfig
    runtime: RuntimeConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c, device = cfg.hessian_density, inputs.torch_device
    seed_everything(c.seed)
    model = build_model(cfg.model).to(device)
    states = _states(inputs, model, c.points, device)
    x, y = fixed_subset(*load_tensors(inputs.folder("mnist"), train=c.split == "train", device=device),
                        c.subset_size, c.subset_seed, "hessian_density.subset_size")
    dim = hs.FlatLayout.of(states[c.points[0]]).dim
    gen = torch.Generator().manual_seed(c.seed)

    ritz_rows, density_rows, top_rows, points = [], [], [], {}
    for point in tqdm(c.points, desc="hessian_density", unit="point", disable=not inputs.progress):
        hvp = hs.loss_hvp(model, states[point], x, y, c.batch_size)
        quads = sd.slq(hvp, dim, c.starts, c.lanczos_steps, gen, device)
        lo, hi = min(q.nodes[0] for q in quads), max(q.nodes[-1] for q in quads)
        sigma = c.broadening * (hi - lo)
        grid = np.linspace(lo - 5 * sigma, hi + 5 * sigma, c.grid_points)
        dens = sd.broadened_density(quads, grid, sigma)
        tops = [sd.converged_top(q, c.candidates, c.residual_tol) for q in quads]
        # The outliers of the start that resolved the most top eigenvalues (they agree where both converged).
        best = max(tops, key=len)
        out = spectrum.outliers(best)
        for s, q in enumerate(quads):
            ritz_rows += [{"point": point, "start": s, "index": i, "value": v, "weight": w, "bound": b}
                          for i, (v, w, b) in enumerate(zip(q.nodes, q.weights, q.bounds, strict=True))]
            top_rows += [{"point": point, "start": s, "rank": r + 1, "value": v} for r, v in enumerate(tops[s])]
        density_rows.append(pd.DataFrame({"point": point, "eigenvalue": grid, "density": dens}))
        lam_max = float(np.mean([q.nodes[-1] for q in quads]))
        band = c.zero_band * abs(lam_max)
        negative = sd.mass_below(quads, -band)
        points[point] = {
            "lambda_max": lam_max,
            "lambda_min": float(np.mean([q.nodes[0] for q in quads])),
            "outliers": out.count, "gap": out.gap, "bulk_edge": out.edge,
            "top": [float(v) for v in best[: out.count + 1]], "converged_top": len(best),
            "negative_mass": negative, "zero_mass": sd.mass_below(quads, band) - negative,
            "trace": sd.trace_estimate(quads, dim),
            "sigma": float(sigma), "density_integral": float(np.trapezoid(dens, grid)),
        }
    last = points[c.points[-1]]
    return Result(
        metrics={k: last[k] for k in ("outliers", "gap", "negative_mass", "lambda_max")},
        summary={"parameters": dim, "subset_size": c.subset_size, "classes": cfg.model.out_dim, "starts": c.starts,
                 "zero_band": c.zero_band,
                 "lanczos_steps": c.lanczos_steps, "order": c.points, "points": points},
        tables={"ritz.csv": pd.DataFrame(ritz_rows), "density.csv": pd.concat(density_rows, ignore_index=True),
                # Its columns even where no top value converged (a short Lanczos run): a CSV, not an empty file.
                "top.csv": pd.DataFrame(top_rows, columns=["point", "start", "rank", "value"])},
        series=[Series(range(len(c.points)), {k: [points[p][k] for p in c.points]
                                               for k in ("lambda_max", "outliers", "negative_mass", "trace")})],
        lines=[f"{p}: lambda_max {m['lambda_max']:.4g}, {m['outliers']} outliers above {m['bulk_edge']:.3g} (gap "
               f"x{m['gap']:.2f}), negative mass {m['negative_mass']:.3g}, trace {m['trace']:.4g}"
               for p, m in points.items()],
    )


def _states(inputs: Inputs, model: torch.nn.Module, points: list[str],
            device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    """Each point's state_dict from the baseline's files, checked against the model."""
    folder = inputs.folder("baseline")
    out = {}
    saved = None
    for point in points:
        if point in ("init", "solution"):
            out[point] = load_state(folder / ("init.pt" if point == "init" else "mnist.pt"), model, device)
            continue
        if saved is None:
            try:
                saved = torch.load(folder / "checkpoints.pt", map_location=device, weights_only=True)
            except FileNotFoundError:
                raise DataError(f"{folder / 'checkpoints.pt'}: not found (run `dvc repro baseline`)") from None
        if point not in saved:
            raise ConfigError(f"hessian_density.points: {point} is not in {folder / 'checkpoints.pt'} "
                              f"(it holds {sorted(saved) or 'none'}; see baseline.checkpoint_epochs)")
        model.load_state_dict(saved[point])
        out[point] = saved[point]
    return out
