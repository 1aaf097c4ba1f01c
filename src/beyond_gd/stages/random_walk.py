"""Stage `random_walk`: Fig 6-8, momentum smooths a random walk, and its std against EWMA theory.

Outputs (in `--out`): `walks.csv` (the figure's walks, long format: momentum,
step, raw, smoothed; each momentum its own random sequence), `std.csv` (per
momentum: measured std of the raw and smoothed steps, the stationary theory
sqrt((1-m)/(1+m)) * raw std, the exact finite-step value, ratios) and
`metrics.json`. What the std measures is stated in
`beyond_gd.studies.random_walk.std_table`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from beyond_gd.config import as_dict, load_params, required, section
from beyond_gd.errors import ConfigError
from beyond_gd.stages.common import cli, parser, staged
from beyond_gd.studies import random_walk as rw
from beyond_gd.tracking import log_series, stage_run, write_metrics

STAGE = "random_walk"
OUTPUTS = ("walks.csv", "std.csv", "metrics.json")


@dataclass
class RandomWalkConfig:
    steps: int = required(gt=0)
    low: int = required()
    high: int = required()
    # Whether `high` itself can be drawn (the text's -10..10) or not (torch.randint).
    include_high: bool = required()
    momenta: list[float] = required(nonempty=True)
    seed: int = required(ge=0)
    repeats: int = required(gt=1)
    measure_steps: int = required(gt=0)
    burn_in: int = required(ge=0)


def load_config(params: dict) -> RandomWalkConfig:
    """The `random_walk` section, with the checks that span fields."""
    cfg = section(params, STAGE, RandomWalkConfig)
    if cfg.high <= cfg.low:
        raise ConfigError(f"{STAGE}.high: must be > {STAGE}.low ({cfg.low}), got {cfg.high}")
    for m in cfg.momenta:
        if not 0 <= m < 1:
            raise ConfigError(f"{STAGE}.momenta: each must be in [0, 1), got {m!r}")
    if cfg.burn_in >= cfg.measure_steps:
        raise ConfigError(f"{STAGE}.burn_in: must be < {STAGE}.measure_steps ({cfg.measure_steps}), got {cfg.burn_in}")
    return cfg


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--out", default="data/random_walk", help="folder for the outputs")
    args = p.parse_args(argv)
    cfg = load_config(load_params(args.params))
    span = (cfg.low, cfg.high, cfg.include_high)

    walks = rw.figure_walks(cfg.momenta, cfg.steps, *span, cfg.seed)
    table = rw.std_table(cfg.momenta, cfg.measure_steps, cfg.burn_in, cfg.repeats, *span, cfg.seed)

    steps = np.arange(1, cfg.steps + 1)
    walks_df = pd.concat([pd.DataFrame({"momentum": w.momentum, "step": steps, "raw": w.raw, "smoothed": w.smoothed})
                          for w in walks], ignore_index=True)
    std_df = pd.DataFrame([dataclasses.asdict(r) for r in table],
                          columns=[f.name for f in dataclasses.fields(rw.StdRow)])
    metrics = {
        "raw_std_theory": rw.raw_std(*span),
        "raw_mean_theory": rw.raw_mean(*span),
        # The figure's shared y-range: 1.5 x the largest raw step (FIGURES.md).
        "figure_largest_raw_step": int(max(np.abs(w.raw).max() for w in walks)),
        "std": {_key(r.momentum): {"measured": r.measured_std, "theory": r.theory_std, "ratio": r.ratio,
                                   "exact": r.exact_std, "exact_ratio": r.exact_ratio} for r in table},
        "max_abs_log_ratio": max(abs(float(np.log(r.ratio))) for r in table),
    }

    out = Path(args.out)
    with stage_run(STAGE, {STAGE: as_dict(cfg)}) as run, staged(*(out / n for n in OUTPUTS)) as paths:
        tmp = dict(zip(OUTPUTS, paths, strict=True))
        walks_df.to_csv(tmp["walks.csv"], index=False)
        std_df.to_csv(tmp["std.csv"], index=False)
        write_metrics(tmp["metrics.json"], metrics)
        log_series(run.info.run_id, {f"{kind}_m{w.momentum:g}": getattr(w, kind)
                                     for w in walks for kind in ("raw", "smoothed")}, steps)
        mlflow.log_metrics({f"{name}_m{r.momentum:g}": getattr(r, name)
                            for r in table for name in ("measured_std", "theory_std", "ratio", "exact_std")})
    for r in table:
        print(f"{STAGE}: m={r.momentum:g} std {r.measured_std:.3f} vs theory {r.theory_std:.3f} (ratio {r.ratio:.3f})")


def _key(m: float) -> str:
    # DVC joins nested metric keys with dots, so the momentum's own dot goes.
    return f"m{m:g}".replace(".", "_")


if __name__ == "__main__":
    cli(main)
