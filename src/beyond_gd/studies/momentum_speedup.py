"""Fig 6-9: SGD with and without momentum (and Nesterov), mini-batch steps to a cost of 0.1.

Every (optimizer, setup, seed) is one training cell (beyond_gd.cells), run
through `inputs.run_cells` (the configured launcher); each stops once its cost
has reached the target plus `stop_margin` steps (at the end of that epoch), or
at its setup's `max_steps` ("not reached"). A setup is the PyTorch baseline or
the book's first-edition experiment, each with its own definition of the cost.

Tables: `steps.csv` (setup, optimizer, seed, step, loss, smoothed; every
`curve_stride`-th step), `epochs.csv` (per cell and epoch: the last
mini-batch's cost, the first edition's plotted quantity, the whole training
split's loss, and with the ReLU on the logits the dead output units and the
unit positive on the smallest share of its own class's images), `runs.csv`
(per cell: steps to the target by each cost, those units at its end, how it
stopped, and `steps_or_cap`: its steps to the target by the setup's cost, or
for a run that never reached it the setup's step cap, where it is censored),
`summary.csv` (per setup and optimizer: the Kaplan-Meier median of the steps
to the target with the runs that never reached it censored at the cap
(`km_median`; empty where fewer than half reached it), the share that reached
it by the cap and its complement, the stall rate; the ratio of the baseline's
KM median to the optimizer's (`km_ratio`) and, with the control, of the
control's to the optimizer's (`km_equal_step_ratio`); then over the seeds that
reached it (n reached, mean, std, min, max), the ratio baseline / optimizer
paired by seed, the book's numbers, and the same by each cost: `smoothed_*`,
`epoch_last_*`, and by the whole training split's loss at epoch ends,
`train_loss_*`),
`curves/<setup>-<optimizer>.csv` (step, cost: the setup's cost, mean over
seeds, for `dvc plots`); `cells/`, each cell's own artifact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_gd.cell_tables import STATS, cells_table, epochs_table, seed_stats, steps_table
from beyond_gd.cells import COSTS, EPOCH_COLUMNS, INITS, CellConfig, CellOutput
from beyond_gd.config import ModelConfig, RuntimeConfig, entries, optimizer_names, required
from beyond_gd.errors import ConfigError
from beyond_gd.launch import LauncherConfig
from beyond_gd.measures import km_median, share_reached_by, trailing_mean
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.study import Inputs, Result

LABELS = ["setup", "optimizer", "seed"]


@dataclass
class SetupConfig:
    batch_size: int = required(gt=0)
    # The first N training images; null: all 60,000.
    train_images: int | None = required(gt=0, optional=True)
    init: str = required(choices=INITS)
    # A ReLU after the last Linear (the first edition's ReLU on the logits).
    final_relu: bool = required()
    # Which cost gives the headline steps to the target: `smoothed` or `epoch_last`.
    cost: str = required(choices=COSTS)
    # The step cap: a run that has not reached the target by then is "not reached".
    max_steps: int = required(gt=0)


@dataclass
class MomentumSpeedupConfig:
    # Names of entries of the `optimizers` section (the book's constructor calls).
    optimizers: list[str] = optimizer_names(nonempty=True, distinct=True)
    # The optimizer every ratio divides: baseline steps / optimizer steps.
    baseline: str = optimizer_names(nonempty=True)
    seeds: list[int] = required(nonempty=True, distinct=True, each_ge=0)
    setups: dict[str, SetupConfig] = required(nonempty=True)
    # Which of `setups` run (in this order); the others are listed in summary.json as not run, and the claims
    # that compare every setup read inconclusive without them.
    run_setups: list[str] = required(nonempty=True, distinct=True)
    target_loss: float = required(gt=0)
    smoothing_window: int = required(gt=0)
    stop_margin: int = required(ge=0)
    divergence_loss: float = required(gt=0)
    curve_stride: int = required(gt=0)
    # The book's numbers (optimizer -> steps to 0.1), printed beside ours.
    book_steps: dict[str, int] = required()
    # The equal-step control: the baseline at lr / (1 - m), m the momentum of this entry (null: none).
    equal_step_of: str | None = optimizer_names(optional=True, nonempty=True)
    # At each epoch end, the loss over the whole training split (a third way to time the crossing) and the
    # dead output units, in batches of this many images; null: no epoch-end evaluation.
    eval_batch_size: int | None = required(gt=0, optional=True)

    def check(self) -> None:
        for name in self.run_setups:
            if name not in self.setups:
                raise ConfigError(f"run_setups: {name!r} is not in setups ({', '.join(self.setups)})")
        if self.equal_step_of is not None and self.equal_step_of not in self.optimizers:
            raise ConfigError(f"equal_step_of: {self.equal_step_of!r} is not in optimizers "
                              f"({', '.join(self.optimizers)})")
        if self.baseline not in self.optimizers:
            raise ConfigError(f"baseline: {self.baseline!r} is not in optimizers ({', '.join(self.optimizers)})")
        for name in self.book_steps:
            if name not in self.optimizers:
                raise ConfigError(f"book_steps.{name}: not in optimizers ({', '.join(self.optimizers)})")


@dataclass
class Config:
    momentum_speedup: MomentumSpeedupConfig
    optimizers: dict[str, OptimizerSpec]
    # Each setup says whether its network has the final ReLU.
    model: ModelConfig = entries("in_dim", "hidden_dim", "out_dim")
    runtime: RuntimeConfig = entries("device")  # the cells' threads are the launcher's
    launcher: LauncherConfig

    def check(self) -> None:
        c = self.momentum_speedup
        if c.equal_step_of is not None:
            m = self.optimizers[c.equal_step_of].default("momentum")
            if not (isinstance(m, int | float) and 0 < m < 1):
                raise ConfigError(f"momentum_speedup.equal_step_of: optimizers.{c.equal_step_of}.momentum must be "
                                  f"in (0, 1) for an equal effective step, got {m!r}")
            if EQUAL_STEP in c.optimizers:
                raise ConfigError(f"momentum_speedup.optimizers: {EQUAL_STEP!r} is the equal-step control's name")


# The equal-step control's optimizer label: the baseline at the momentum method's effective step.
EQUAL_STEP = "sgd_equal_step"


def specs(cfg: Config) -> dict[str, OptimizerSpec]:
    """The optimizers the stage runs, by label: its entries of the `optimizers` section, then the equal-step
    control, the baseline's optimizer at lr / (1 - m) (with momentum m the velocity of a constant gradient
    grows to 1 / (1 - m) steps of lr: SGD at that lr moves as far per step on a constant slope)."""
    c = cfg.momentum_speedup
    found = {name: cfg.optimizers[name] for name in c.optimizers}
    if c.equal_step_of is not None:
        base = cfg.optimizers[c.baseline]
        found[EQUAL_STEP] = base.with_lr(base.lr / (1 - cfg.optimizers[c.equal_step_of].default("momentum")))
    return found


def build_cells(cfg: Config) -> list[CellConfig]:
    """One cell per (optimizer, setup, seed), the slowest optimizer (the first listed) dispatched first."""
    c, m = cfg.momentum_speedup, cfg.model
    return [
        CellConfig(id=f"{setup_name}-{opt}-s{seed}", seed=seed, optimizer=spec,
                   model=ModelConfig(m.in_dim, m.hidden_dim, m.out_dim, setup.final_relu),
                   init=setup.init, train_images=setup.train_images, batch_size=setup.batch_size,
                   max_steps=setup.max_steps, divergence_loss=c.divergence_loss,
                   # Every epoch end where an eval batch size is given: the third crossing, the dead units.
                   eval_every=None if c.eval_batch_size is None else 1, eval_batch_size=c.eval_batch_size,
                   eval_test=False,
                   target_loss=c.target_loss, smoothing_window=c.smoothing_window,
                   cost=setup.cost, stop_margin=c.stop_margin,
                   labels={"setup": setup_name, "optimizer": opt, "seed": seed})
        for opt, spec in specs(cfg).items() for setup_name, setup in running(c).items() for seed in c.seeds
    ]


def running(c: MomentumSpeedupConfig) -> dict[str, SetupConfig]:
    """The setups that run, by name, in `run_setups` order."""
    return {name: c.setups[name] for name in c.run_setups}


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.momentum_speedup
    cells = build_cells(cfg)
    outputs = inputs.run_cells(cells)
    setups_run = running(c)
    runs = runs_table(outputs, c.target_loss, {s: setup.max_steps for s, setup in setups_run.items()})
    names = list(specs(cfg))
    summary = summary_table(runs, c, names)
    headline = [o for o in c.book_steps if o != c.baseline]
    setups = {s: {r.optimizer: {k: getattr(r, k) for k in ("reached", "km_median", "share_reached", "stall_rate",
                                                             "km_ratio", "steps_mean", "steps_std", "ratio_mean",
                                                             "ratio_std", "smoothed_steps_mean",
                                                             "epoch_last_steps_mean")}
                  for r in summary[summary.setup == s].itertuples()} for s in setups_run}
    return Result(
        metrics={"speedup": {s: setups[s][o]["ratio_mean"] for s in setups_run for o in headline},
                 # The ratio of KM medians (censored runs counted; NaN where a median is undefined); the stall
                 # rates are in summary.csv (a stage's headline holds at most 5 numbers).
                 "km_speedup": {s: setups[s][o]["km_ratio"] for s in setups_run for o in headline}},
        summary={"cells": len(cells), "target_loss": c.target_loss, "smoothing_window": c.smoothing_window,
                 # Each setup's step cap: where a run that never reached the target is censored.
                 "max_steps": {s: setup.max_steps for s, setup in setups_run.items()},
                 # Setups configured but not run (`run_setups`): the claims over every setup name them.
                 "not_run": [s for s in c.setups if s not in setups_run],
                 "baseline": c.baseline, "equal_step_of": c.equal_step_of,
                 "equal_step": EQUAL_STEP if c.equal_step_of is not None else None,
                 "equal_step_lr": specs(cfg)[EQUAL_STEP].lr if c.equal_step_of is not None else None,
                 # The runs that never reached the target, with the output units dead at their end and the
                 # one positive on the smallest share of its own class's images.
                 "stalled": [{k: (int(v) if k in ("seed", "weakest_unit") else float(v) if k == "weakest_share"
                                  else v) for k, v in r.items()}
                             for r in runs.loc[~runs["reached"], LABELS + ["dead_units", "weakest_unit",
                                                                           "weakest_share"]].to_dict("records")],
                 "setups": setups},
        tables={"steps.csv": steps_table(outputs, LABELS, c.curve_stride, c.smoothing_window),
                "epochs.csv": epochs_table(outputs, LABELS)[LABELS + EPOCH_COLUMNS],
                "runs.csv": runs, "summary.csv": summary, **curves(outputs, c, names)},
        made=("cells",),
        lines=[_line(r, c) for r in summary.itertuples()],
    )


def runs_table(outputs: list[CellOutput], target: float, caps: dict[str, int]) -> pd.DataFrame:
    table = cells_table(outputs)
    table["cost"] = [o.cell.cost for o in outputs]
    table["reached"] = table["steps_to_target"].notna()
    # A run that never reached the target is censored at its setup's cap (`caps`): it ran there without
    # reaching it, or diverged, after which it never would.
    table["steps_or_cap"] = [int(n) if pd.notna(n) else caps[o.cell.labels["setup"]]
                             for n, o in zip(table["steps_to_target"], outputs, strict=True)]
    # The first epoch end at which the whole training split's loss is at or below the target (evaluated
    # cells only), and the output units dead at the last epoch end.
    table["steps_to_target_train_loss"] = pd.array([train_loss_crossing(o, target) for o in outputs], dtype="Int64")
    table["dead_units"] = [o.epochs["dead_units"].iloc[-1] if len(o.epochs) else "" for o in outputs]
    # ... and the unit positive on the smallest share of its own class's images (a unit nearly dead).
    for column, missing in (("weakest_unit", -1), ("weakest_share", np.nan)):
        table[column] = [o.epochs[column].iloc[-1] if len(o.epochs) else missing for o in outputs]
    return table[LABELS + ["cost", "steps_to_target", "reached", "steps_or_cap", "steps_to_target_smoothed",
                           "steps_to_target_epoch_last", "steps_to_target_train_loss", "dead_units",
                           "weakest_unit", "weakest_share", "stopped_by",
                           "diverged", "steps", "train_seconds", "device", "id"]]


def train_loss_crossing(o: CellOutput, target: float) -> int | None:
    """The step of the first epoch end whose whole-training-split loss is at or below `target`."""
    below = o.epochs[pd.to_numeric(o.epochs["train_loss"]) <= target]
    return int(below["step"].iloc[0]) if len(below) else None


def summary_table(runs: pd.DataFrame, c: MomentumSpeedupConfig, names: list[str]) -> pd.DataFrame:
    """Steps to the target over seeds, and baseline/optimizer ratios paired by seed: by the setup's
    own cost (`steps_*`, `ratio_*`), by each cost (`smoothed_*`, `epoch_last_*`) and by the whole training
    split's loss at epoch ends (`train_loss_*`), for the optimizers
    `names` (the stage's entries and its equal-step control); with the control, also its steps over each
    optimizer's, paired by seed, by the setup's cost (`equal_step_ratio_*`)."""
    keys = ["setup", "optimizer"]
    index = pd.MultiIndex.from_product([c.run_setups, names], names=keys)
    table = pd.DataFrame({"cost": [c.setups[s].cost for s, _ in index], "seeds": len(c.seeds)}, index=index)
    table = table.join(km_table(runs, c, index))
    for prefix, column in (("", "steps_to_target"),
                           *((f"{k}_", f"steps_to_target_{k}") for k in (*COSTS, "train_loss"))):
        steps = runs.assign(value=pd.to_numeric(runs[column]))
        s = seed_stats(steps, keys, "value").reindex(index)
        table[f"{prefix}reached"] = s["n"].fillna(0).astype(int)
        table[[f"{prefix}steps_{k}" for k in STATS]] = s[list(STATS)].to_numpy()
        table[[f"{prefix}ratio_{k}" for k in STATS]] = _paired_ratios(steps, c.baseline, keys, index)
        if not prefix:
            book = pd.Series([c.book_steps.get(o) for _, o in index], index=index, dtype="float64")
            table["book_steps"] = book
            table["book_ratio"] = c.book_steps.get(c.baseline, np.nan) / book
            if EQUAL_STEP in names:
                table[[f"equal_step_ratio_{k}" for k in STATS]] = _paired_ratios(steps, EQUAL_STEP, keys, index)
    return table.reset_index()


def km_table(runs: pd.DataFrame, c: MomentumSpeedupConfig, index: pd.MultiIndex) -> pd.DataFrame:
    """Per (setup, optimizer) of `index`, by the setup's cost, the never-reached runs censored at the cap: the
    Kaplan-Meier median of the steps to the target (NaN: fewer than half reached it), the share that reached
    it by the cap, the stall rate (the share that never did), and the ratios of KM medians, baseline /
    optimizer and, with the control, control / optimizer."""
    rows = {}
    for (setup, opt), group in runs.groupby(["setup", "optimizer"], sort=False):
        value = pd.to_numeric(group["steps_to_target"]).to_numpy(dtype=np.float64)
        reached = np.isfinite(value)
        steps = np.where(reached, value, c.setups[setup].max_steps)
        share = float(share_reached_by(steps, reached, c.setups[setup].max_steps))
        rows[(setup, opt)] = {"km_median": km_median(steps, reached), "share_reached": share,
                              "stall_rate": 1 - share}
    table = pd.DataFrame.from_dict(rows, orient="index").reindex(index)
    median = table["km_median"]
    for column, reference in (("km_ratio", c.baseline), ("km_equal_step_ratio", EQUAL_STEP)):
        if reference in index.get_level_values("optimizer"):
            ref = median.xs(reference, level="optimizer").reindex(index.get_level_values("setup")).to_numpy()
            table[column] = ref / median.to_numpy()
    return table


def _paired_ratios(steps: pd.DataFrame, reference: str, keys: list[str], index: pd.MultiIndex) -> np.ndarray:
    """Per (setup, optimizer): the reference optimizer's steps over its own, seed by seed, summarized."""
    ref = steps[steps.optimizer == reference].set_index(["setup", "seed"])["value"]
    paired = ref.reindex(pd.MultiIndex.from_frame(steps[["setup", "seed"]])).to_numpy()
    return seed_stats(steps.assign(value=paired / steps["value"]), keys, "value").reindex(index)[list(STATS)].to_numpy()


def curves(outputs: list[CellOutput], c: MomentumSpeedupConfig, names: list[str]) -> dict[str, pd.DataFrame]:
    """Per setup and optimizer, the setup's cost averaged over seeds, up to the shortest seed's run."""
    found = {}
    for setup_name, setup in running(c).items():
        for opt in names:
            group = [o for o in outputs if o.cell.labels["setup"] == setup_name and o.cell.labels["optimizer"] == opt]
            if setup.cost == "smoothed":
                n = min(len(o.steps) for o in group)
                cost = np.mean([trailing_mean(o.steps["loss"].to_numpy()[:n], c.smoothing_window) for o in group],
                               axis=0)
                step = np.arange(1, n + 1)
                keep = step % c.curve_stride == 0
                step, cost = step[keep], cost[keep]
            else:
                n = min(len(o.epochs) for o in group)
                cost = np.mean([o.epochs["epoch_last_loss"].to_numpy()[:n] for o in group], axis=0)
                step = group[0].epochs["step"].to_numpy()[:n]
            found[f"curves/{setup_name}-{opt}.csv"] = pd.DataFrame({"step": step, "cost": cost})
    return found


def _line(r: tuple, c: MomentumSpeedupConfig) -> str:
    median = "undefined" if pd.isna(r.km_median) else f"{r.km_median:,.0f}"
    ratio = ("" if r.optimizer == c.baseline else
             f"; KM ratio {c.baseline}/{r.optimizer} {_fmt(r.km_ratio, '.2f')}")
    return (f"{r.setup:<20} {r.optimizer:<13} steps to {c.target_loss:g} ({r.cost}): KM median {median} "
            f"[{r.reached}/{r.seeds} seeds reached, stall rate {r.stall_rate:.0%}]{ratio}")


def _fmt(value: float, spec: str = ",.0f") -> str:
    return "n/a" if pd.isna(value) else format(value, spec)
