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
and lambda_min; the outliers where the gap is clear (`landscape.spectrum`:
each start's widest ratio gap among its converged top values, counted only
where it stands out of that start's other ratios and the starts agree on it;
otherwise null, "no clear gap", with why); the negative mass below each of
the fixed cuts `negative_cuts` (the same in every point, in the Hessian's own
units) with its spread over starts, and at `claim_cut` the headline negative
mass and the mass within it of zero; the SLQ trace.
"""

from __future__ import annotations

import math
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
    # A start's widest gap is clear when its robust z against the start's other ratios (at least
    # gap_min_others of them) is >= gap_z; the count stands where a share gap_agreement of the starts has a
    # clear gap at the same count.
    gap_z: float = required(gt=0)
    gap_agreement: float = required(gt=0)
    gap_min_others: int = required(gt=1)
    # The negative mass: the quadrature's weight below -cut for each cut, in the Hessian's own units, the same
    # at every point; claim_cut (one of them) is the one the headline and the report's claim read.
    negative_cuts: list[float] = required(nonempty=True, distinct=True)
    claim_cut: float = required(gt=0)
    seed: int = required(ge=0)

    def check(self) -> None:
        bad = [p for p in self.points if not POINT.fullmatch(p)]
        if bad:
            raise ConfigError(f"points: each must be init, solution or epoch_<n>, got {bad}")
        if self.candidates > self.lanczos_steps:
            raise ConfigError(f"candidates: must be <= lanczos_steps ({self.lanczos_steps}), got {self.candidates}")
        if self.gap_agreement > 1:
            raise ConfigError(f"gap_agreement: must be <= 1 (a share of starts), got {self.gap_agreement}")
        if not all(isinstance(c, (int, float)) and c > 0 for c in self.negative_cuts):
            raise ConfigError(f"negative_cuts: each must be a number > 0, got {self.negative_cuts}")
        if self.claim_cut not in self.negative_cuts:
            raise ConfigError(f"claim_cut: must be one of negative_cuts {self.negative_cuts}, got {self.claim_cut}")


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
        out = spectrum.consensus([spectrum.widest_gap(t, c.gap_min_others) for t in tops], c.gap_agreement, c.gap_z)
        # The top values shown: those of the start that resolved the most (they agree where both converged).
        best = max(tops, key=len)
        for s, q in enumerate(quads):
            ritz_rows += [{"point": point, "start": s, "index": i, "value": v, "weight": w, "bound": b}
                          for i, (v, w, b) in enumerate(zip(q.nodes, q.weights, q.bounds, strict=True))]
            top_rows += [{"point": point, "start": s, "rank": r + 1, "value": v} for r, v in enumerate(tops[s])]
        density_rows.append(pd.DataFrame({"point": point, "eigenvalue": grid, "density": dens}))
        sweep = [_negative(quads, cut) for cut in c.negative_cuts]
        negative = sd.mass_below(quads, -c.claim_cut)
        points[point] = {
            "lambda_max": float(np.mean([q.nodes[-1] for q in quads])),
            "lambda_min": float(np.mean([q.nodes[0] for q in quads])),
            "outliers": out.count, "gap": out.gap, "bulk_edge": out.edge, "gap_agreement": out.agreement,
            "gap_z": out.z, "outliers_lean": out.lean, "no_clear_gap": out.why,
            "top": [float(v) for v in best[: (out.count or out.lean) + 1]], "converged_top": len(best),
            "negative_mass": negative, "negative_sweep": sweep,
            "zero_mass": sd.mass_below(quads, c.claim_cut) - negative,
            "trace": sd.trace_estimate(quads, dim),
            "sigma": float(sigma), "density_integral": float(np.trapezoid(dens, grid)),
        }
    last = points[c.points[-1]]
    return Result(
        metrics={"outliers": math.nan if last["outliers"] is None else last["outliers"],
                 **{k: last[k] for k in ("gap", "negative_mass", "lambda_max")}},
        summary={"parameters": dim, "subset_size": c.subset_size, "classes": cfg.model.out_dim, "starts": c.starts,
                 "lanczos_steps": c.lanczos_steps, "candidates": c.candidates, "negative_cuts": c.negative_cuts,
                 "claim_cut": c.claim_cut, "gap_z": c.gap_z, "gap_agreement": c.gap_agreement,
                 "gap_min_others": c.gap_min_others, "order": c.points, "points": points},
        tables={"ritz.csv": pd.DataFrame(ritz_rows), "density.csv": pd.concat(density_rows, ignore_index=True),
                # Its columns even where no top value converged (a short Lanczos run): a CSV, not an empty file.
                "top.csv": pd.DataFrame(top_rows, columns=["point", "start", "rank", "value"])},
        series=[Series(range(len(c.points)), {
            "outliers": [math.nan if points[p]["outliers"] is None else points[p]["outliers"] for p in c.points],
            **{k: [points[p][k] for p in c.points] for k in ("lambda_max", "negative_mass", "trace")}})],
        lines=[_line(p, m, c.claim_cut) for p, m in points.items()],
    )


def _negative(quads: list[sd.Quadrature], cut: float) -> dict[str, float]:
    """The negative mass below -cut: its mean over starts and their spread."""
    per_start = sd.masses_below(quads, -cut)
    return {"cut": cut, "mean": float(per_start.mean()), "std": float(per_start.std(ddof=1)) if len(per_start) > 1
            else math.nan, "min": float(per_start.min()), "max": float(per_start.max())}


def _line(point: str, m: dict, claim_cut: float) -> str:
    outliers = (f"{m['outliers']} outliers above {m['bulk_edge']:.3g} (gap x{m['gap']:.2f}, z >= {m['gap_z']:.1f})"
                if m["outliers"] is not None else m["no_clear_gap"])
    sweep = ", ".join(f"{s['mean']:.3g} ± {s['std']:.2g} below -{s['cut']:g}" for s in m["negative_sweep"])
    return (f"{point}: lambda_max {m['lambda_max']:.4g}, {outliers}; negative mass {sweep} (claim: -{claim_cut:g}); "
            f"trace {m['trace']:.4g}")


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
