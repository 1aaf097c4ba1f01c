"""Two toys for the chapter's optimizer story: Nesterov against heavy ball, AdaGrad against RMSProp.

The maths is `beyond_gd.toys.momentum_rates` and `beyond_gd.toys.plateau`;
this study runs it with the `optimizer_toys` section and the `optimizers`
entries it names:
- `quadratic_steps.csv` (kappa, method, setting, lr, momentum, rate, theory_rate,
  steps, predicted_steps): full-batch gradient descent, heavy ball and Nesterov
  on a diagonal quadratic with eigenvalues log-spaced in [1/kappa, 1], at each
  method's textbook tuning ("tuned") and at one shared lr and momentum ("shared",
  the chapter's way of comparing the two); steps until ||x|| <= tolerance ||x0||
  (empty if not within max_steps).
- `plateau_paths.csv` (optimizer, lr, step, x, y, loss, step_size): AdaGrad's
  and RMSProp's paths on the cliff-plateau-bowl surface at `record_points`
  log-spaced steps, each run until it lands in the bowl or reaches `max_steps`
  (torch.optim's definitions of the two, with the entries' arguments, run as
  float arithmetic: `toys.plateau.descend_to_bowl`); `plateau_outcomes.csv`
  (optimizer, lr, reached_step, max_steps, stopped, final_x, final_loss,
  last_step_size): when each reached the bowl (empty: not within the cap, a
  censored run); `grids.npz` (plateau_x, plateau_y, plateau_loss) for contours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_gd.config import optimizer_names, required
from beyond_gd.errors import ConfigError
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.study import Inputs, Result
from beyond_gd.toys import momentum_rates as mr
from beyond_gd.toys import plateau as pl


@dataclass
class SharedSetting:
    lr_times_l: float = required(gt=0)  # lr as a multiple of 1 / L (L = the largest curvature)
    momentum: float = required(ge=0)

    def check(self) -> None:
        if self.momentum >= 1:
            raise ConfigError(f"momentum: must be < 1, got {self.momentum}")


@dataclass
class QuadraticConfig:
    dim: int = required(gt=1)
    kappas: list[float] = required(nonempty=True)
    tolerance: float = required(gt=0)
    max_steps: int = required(gt=0)
    shared: SharedSetting = required()
    momentum_scan: int = required(gt=1)  # momenta in [0, max_scanned_momentum] tried at the shared lr
    max_scanned_momentum: float = required(gt=0)

    def check(self) -> None:
        if any(k < 1 for k in self.kappas):
            raise ConfigError(f"kappas: every condition number must be >= 1, got {self.kappas}")
        if self.tolerance >= 1:
            raise ConfigError(f"tolerance: must be < 1 (a fraction of the start's distance), got {self.tolerance}")
        if self.max_scanned_momentum >= 1:
            raise ConfigError(f"max_scanned_momentum: must be < 1, got {self.max_scanned_momentum}")


@dataclass
class SurfaceConfig:
    height: float = required(gt=0)
    cliff_x: float = required()
    cliff_width: float = required(gt=0)
    slope: float = required(gt=0)
    bowl_x: float = required()
    bowl_half_width: float = required(gt=0)
    curvature: float = required(ge=0)

    def check(self) -> None:
        if self.bowl_x - self.bowl_half_width <= self.cliff_x:
            raise ConfigError(f"bowl_x: the bowl must lie beyond the cliff (bowl_x - bowl_half_width > cliff_x = "
                              f"{self.cliff_x}), got {self.bowl_x}")


@dataclass
class PlateauConfig:
    surface: SurfaceConfig = required()
    start: list[float] = required()
    # Every run stops at its first step in the bowl, or here (not reached within the cap: censored).
    max_steps: int = required(gt=0)
    # The paths keep this many log-spaced steps of each run (and the start and its last step).
    record_points: int = required(gt=1)
    lrs: list[float] = required(nonempty=True)
    optimizers: list[str] = optimizer_names(nonempty=True)
    grid_points: int = required(gt=1)

    def check(self) -> None:
        if len(self.start) != 2:
            raise ConfigError(f"start: must be [x, y], got {self.start}")
        if any(lr <= 0 for lr in self.lrs):
            raise ConfigError(f"lrs: every learning rate must be > 0, got {self.lrs}")


@dataclass
class OptimizerToysConfig:
    quadratic: QuadraticConfig = required()
    plateau: PlateauConfig = required()


@dataclass
class Config:
    optimizer_toys: OptimizerToysConfig
    optimizers: dict[str, OptimizerSpec]

    def check(self) -> None:
        for name in self.optimizer_toys.plateau.optimizers:  # each must be a rule the plateau runs
            plateau_rule(self.optimizers[name], f"optimizers.{name}")


def quadratic_steps(c: QuadraticConfig) -> pd.DataFrame:
    rows = []
    for kappa in c.kappas:
        lam = mr.spectrum(c.dim, kappa)
        x0 = np.ones(c.dim)
        shared = mr.Setting(c.shared.lr_times_l / lam[-1], c.shared.momentum)
        momenta = np.linspace(0.0, c.max_scanned_momentum, c.momentum_scan)
        for method in mr.METHODS:
            settings = {"tuned": mr.tuned(method, lam[0], lam[-1])}
            if method != "gd":  # the two momentum methods compared at one lr: the chapter's m, and each one's best
                settings["shared"] = shared
                settings["best_momentum"] = mr.Setting(shared.lr, mr.best_momentum(method, lam, shared.lr, momenta)[0])
            for name, s in settings.items():
                steps, _ = mr.steps_to_tolerance(method, lam, s, x0, c.tolerance, c.max_steps)
                r = mr.rate(method, lam, s)
                rows.append({"kappa": kappa, "method": method, "setting": name, "lr": s.lr, "momentum": s.momentum,
                             "rate": r, "theory_rate": mr.theory_rate(method, kappa) if name == "tuned" else None,
                             "steps": steps, "predicted_steps": mr.predicted_steps(r, c.tolerance)})
    return pd.DataFrame(rows).astype({"steps": "Int64"})


# The optimizers the plateau runs as float arithmetic: torch's class -> the rule, and the arguments that must
# keep torch's defaults for the rule to be the class's (anything else is a ConfigError naming the entry).
PLATEAU_RULES = {"Adagrad": ("adagrad", {"lr_decay": 0, "weight_decay": 0, "maximize": False}),
                 "RMSprop": ("rmsprop", {"weight_decay": 0, "momentum": 0, "centered": False, "maximize": False})}


def plateau_rule(spec: OptimizerSpec, key: str) -> pl.Rule:
    """The entry `spec` (at `key`) as the plateau's rule: torch's AdaGrad or RMSProp with its eps, alpha and
    initial accumulator."""
    if spec.class_name not in PLATEAU_RULES:
        raise ConfigError(f"{key}: {spec.target} has no plateau rule (the plateau runs "
                          f"{', '.join(f'torch.optim.{c}' for c in PLATEAU_RULES)})")
    kind, fixed = PLATEAU_RULES[spec.class_name]
    for name, value in fixed.items():
        if spec.default(name) != value:
            raise ConfigError(f"{key}.{name}: the plateau's {kind} rule has {name}={value!r}, got "
                              f"{spec.default(name)!r}")
    return pl.Rule(kind, float(spec.default("eps")), float(spec.default("alpha") or 0.0),
                   float(spec.default("initial_accumulator_value") or 0.0))


def record_steps(max_steps: int, points: int) -> np.ndarray:
    """0 and `points` log-spaced steps in [1, max_steps] (fewer where they round to the same step)."""
    return np.unique(np.r_[0, np.rint(np.geomspace(1, max_steps, points))]).astype(np.int64)


def plateau_runs(c: PlateauConfig, optimizers: dict[str, OptimizerSpec]) -> tuple[pd.DataFrame, pd.DataFrame]:
    surface = pl.Surface(**vars(c.surface))
    record = record_steps(c.max_steps, c.record_points)
    paths, outcomes = [], []
    for name in c.optimizers:
        rule = plateau_rule(optimizers[name], f"optimizers.{name}")
        for lr in c.lrs:
            r = pl.descend_to_bowl(surface, rule, lr, c.start, c.max_steps, record)
            paths.append(pd.DataFrame({"optimizer": name, "lr": lr, "step": r.steps, "x": r.xy[:, 0],
                                       "y": r.xy[:, 1], "loss": pl.loss(surface, r.xy[:, 0], r.xy[:, 1]),
                                       "step_size": r.step_size}))
            outcomes.append({"optimizer": name, "lr": lr, "reached_step": r.reached_step, "max_steps": c.max_steps,
                             "stopped": r.stopped, "final_x": float(r.xy[-1, 0]),
                             "final_loss": float(pl.loss(surface, r.xy[-1, 0], r.xy[-1, 1])),
                             "last_step_size": float(r.step_size[-1])})
    return pd.concat(paths, ignore_index=True), pd.DataFrame(outcomes).astype({"reached_step": "Int64"})


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.optimizer_toys
    quad = quadratic_steps(c.quadratic)
    paths, outcomes = plateau_runs(c.plateau, cfg.optimizers)
    s = c.plateau.surface
    gx = np.linspace(min(c.plateau.start[0], s.cliff_x) - 1.0, s.bowl_x + 2.0, c.plateau.grid_points)
    gy = np.linspace(-abs(c.plateau.start[1]) - 0.5, abs(c.plateau.start[1]) + 0.5, c.plateau.grid_points)
    grid = pl.grid(pl.Surface(**vars(s)), gx, gy)

    reached = outcomes.groupby("optimizer")["reached_step"].agg(lambda r: int(r.notna().sum()))
    shared = quad[quad["setting"] == "shared"].pivot(index="kappa", columns="method", values="steps")
    summary = {
        "kappas": list(c.quadratic.kappas),
        "tolerance": c.quadratic.tolerance,
        "shared_lr_times_l": c.quadratic.shared.lr_times_l,
        "shared_momentum": c.quadratic.shared.momentum,
        # Per kappa, steps at the shared setting: Nesterov / heavy ball (< 1: Nesterov faster).
        "shared_nesterov_over_heavy_ball": {str(k): (float(v["nesterov"] / v["heavy_ball"])
                                                     if pd.notna(v["nesterov"]) and pd.notna(v["heavy_ball"])
                                                     else None) for k, v in shared.iterrows()},
        "plateau_lrs": list(c.plateau.lrs),
        "plateau_max_steps": c.plateau.max_steps,
        # Per optimizer, at how many lrs it reached the bowl within the cap, and its steps to it per lr
        # (None: not within the cap).
        "plateau_reached": {k: int(v) for k, v in reached.items()},
        "plateau_steps": {name: {f"{r.lr:g}": None if pd.isna(r.reached_step) else int(r.reached_step)
                                 for r in rows.itertuples()} for name, rows in outcomes.groupby("optimizer",
                                                                                                 sort=False)},
    }
    return Result(
        metrics={f"plateau_reached_{k}": v for k, v in summary["plateau_reached"].items()},
        summary=summary,
        tables={"quadratic_steps.csv": quad, "plateau_paths.csv": paths, "plateau_outcomes.csv": outcomes},
        arrays={"grids.npz": {"plateau_x": gx, "plateau_y": gy, "plateau_loss": grid}},
        lines=[f"plateau (cap {c.plateau.max_steps:,} steps), steps to the bowl per lr: " + "; ".join(
                   f"{k} " + ", ".join(f"{lr}: {'-' if n is None else f'{n:,}'}" for lr, n in v.items())
                   for k, v in summary["plateau_steps"].items()),
               "shared setting, Nesterov / heavy-ball steps: " + ", ".join(
                   f"kappa {k:g}: {v:.2f}" if v is not None else f"kappa {k:g}: -"
                   for k, v in zip(c.quadratic.kappas, summary["shared_nesterov_over_heavy_ball"].values()))],
    )
