"""Fig 6-8: momentum smooths a random walk; the smoothed steps' std against the EWMA theory.

The maths is `beyond_gd.toys.random_walk`; what the std measures is stated in
its `std_table`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_gd.config import required
from beyond_gd.errors import ConfigError
from beyond_gd.study import Inputs, Result, Series, number_key
from beyond_gd.toys import random_walk as rw


@dataclass
class RandomWalkConfig:
    steps: int = required(gt=0)
    low: int = required()
    high: int = required()
    # Whether `high` itself can be drawn (the text's -10..10) or not (torch.randint).
    include_high: bool = required()
    momenta: list[float] = required(nonempty=True, each_ge=0)
    seed: int = required(ge=0)
    repeats: int = required(gt=1)
    measure_steps: int = required(gt=0)
    burn_in: int = required(ge=0)

    def check(self) -> None:
        if self.high - self.low + self.include_high < 2:
            raise ConfigError(f"high: must allow at least two step values above low ({self.low}), got {self.high}"
                              f" with include_high {str(self.include_high).lower()}")
        if max(self.momenta) >= 1:
            raise ConfigError(f"momenta: each must be in [0, 1), got {self.momenta}")
        if self.burn_in >= self.measure_steps:
            raise ConfigError(f"burn_in: must be < measure_steps ({self.measure_steps}), got {self.burn_in}")


@dataclass
class Config:
    random_walk: RandomWalkConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.random_walk
    span = (c.low, c.high, c.include_high)
    walks = rw.figure_walks(c.momenta, c.steps, *span, c.seed)
    table = rw.std_table(c.momenta, c.measure_steps, c.burn_in, c.repeats, *span, c.seed)
    steps = np.arange(1, c.steps + 1)
    std = pd.DataFrame([dataclasses.asdict(r) for r in table], columns=[f.name for f in dataclasses.fields(rw.StdRow)])
    worst = max(abs(r.ratio - 1) for r in table)
    summary = {
        "raw_std_theory": rw.raw_std(*span),
        "raw_mean_theory": rw.raw_mean(*span),
        "figure_largest_raw_step": int(max(np.abs(w.raw).max() for w in walks)),
        "std": {f"m{number_key(r.momentum)}": {"measured": r.measured_std, "theory": r.theory_std,
                                               "ratio": r.ratio, "exact": r.exact_std, "exact_ratio": r.exact_ratio}
                for r in table},
        "max_abs_log_ratio": max(abs(float(np.log(r.ratio))) for r in table),
    }
    return Result(
        metrics={"std_max_rel_error": worst},
        summary=summary,
        tables={"walks.csv": pd.concat([pd.DataFrame({"momentum": w.momentum, "step": steps, "raw": w.raw,
                                                      "smoothed": w.smoothed}) for w in walks], ignore_index=True),
                "std.csv": std},
        series=[Series(steps, {f"{kind}_m{w.momentum:g}": getattr(w, kind) for w in walks
                               for kind in ("raw", "smoothed")})],
        lines=[f"m={r.momentum:g} std {r.measured_std:.3f} vs theory {r.theory_std:.3f} (ratio {r.ratio:.3f})"
               for r in table],
    )
