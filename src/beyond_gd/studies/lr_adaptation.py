"""The chapter's learning-rate adaptation on the MLP: AdaGrad, RMSProp and Adam over a long budget, and Adam
without its bias correction.

Every (optimizer, seed) is one training cell (beyond_gd.cells) on the whole
training set, run through `inputs.run_cells`, that probes its optimizer: the
quartiles of the per-parameter effective learning rate (beyond_gd.optim.probes)
at step 1 and every `probe_every` steps, and the size of each of its first
`probe_updates` updates.
- `optimizers` train for `epochs` epochs each, at the learning rate the
  optimizer grid found best (its summary.csv);
- `uncorrected` (Adam without bias correction) trains for `early_steps` steps
  at the lr of `corrected` (Adam), the ablation of the correction.

Tables: `probes.csv` (optimizer, seed, step, update_norm, lr_q25, lr_median,
lr_q75); `epoch_loss.csv` (optimizer, seed, epoch, step, loss: the mean
mini-batch loss over each epoch, the training loss as the run saw it);
`steps.csv` (optimizer, seed, step, loss, smoothed; every `curve_stride`-th
step, the trailing mean over `smoothing_window` steps); `summary.csv` (per
optimizer over seeds: its lr and budget; the first and last epochs' loss;
the mean loss of the first `probe_updates` and of the first `early_steps`
steps; the median effective lr at step 1, at the first probe after
`probe_updates` steps and at the end, and its decay from the one to the
other; the mean size of the first updates; the final loss of the whole
training set and test accuracy of the long runs); `cells/`, each cell's own
artifact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_gd.cell_tables import STATS, best_lrs, seed_stats, steps_table
from beyond_gd.cells import PROBE_COLUMNS, CellConfig, CellOutput
from beyond_gd.config import ModelConfig, RuntimeConfig, entries, optimizer_names, required
from beyond_gd.data.mnist import MNIST_TRAIN_IMAGES
from beyond_gd.errors import ConfigError
from beyond_gd.launch import LauncherConfig
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.study import Inputs, Result
from beyond_gd.training import step_budget, steps_per_epoch

LABELS = ["optimizer", "seed"]


@dataclass
class LrAdaptationConfig:
    # Entries of the `optimizers` section trained over the long budget, each at the grid's best lr.
    optimizers: list[str] = optimizer_names(nonempty=True, distinct=True)
    # Adam with its bias correction (one of `optimizers`) and the entry without it, run at the former's lr.
    corrected: str = optimizer_names(nonempty=True)
    uncorrected: str = optimizer_names(nonempty=True)
    epochs: int = required(gt=0)
    # The uncorrected run's budget, and the early window every optimizer's loss is compared over.
    early_steps: int = required(gt=0)
    batch_size: int = required(gt=0)
    seeds: list[int] = required(nonempty=True, distinct=True, each_ge=0)
    probe_every: int = required(gt=0)
    probe_updates: int = required(gt=0)
    smoothing_window: int = required(gt=0)
    curve_stride: int = required(gt=0)
    divergence_loss: float = required(gt=0)
    eval_batch_size: int = required(gt=0)

    def check(self) -> None:
        if self.corrected not in self.optimizers:
            raise ConfigError(f"corrected: {self.corrected!r} is not in optimizers ({', '.join(self.optimizers)})")
        if self.uncorrected in self.optimizers:
            raise ConfigError(f"uncorrected: {self.uncorrected!r} is run only over early_steps; not one of "
                              f"optimizers")
        if self.probe_updates > self.early_steps:
            raise ConfigError(f"probe_updates: must be <= early_steps ({self.early_steps}), got "
                              f"{self.probe_updates}")


@dataclass
class Config:
    lr_adaptation: LrAdaptationConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig = entries("device")  # the cells' threads are the launcher's
    launcher: LauncherConfig

    def check(self) -> None:
        c = self.lr_adaptation
        if self.optimizers[c.uncorrected].default("bias_correction") is not False:
            raise ConfigError(f"lr_adaptation.uncorrected: optimizers.{c.uncorrected} must have "
                              "bias_correction: false (beyond_gd.optim.adam.Adam)")


def build_cells(cfg: Config, lrs: dict[str, float]) -> list[CellConfig]:
    """The long runs (the first listed dispatched first) and the uncorrected runs, for every seed."""
    c = cfg.lr_adaptation
    # Every cell trains on the whole training split: its epochs are of MNIST's training images.
    steps = step_budget(c.epochs, MNIST_TRAIN_IMAGES, c.batch_size)
    runs = [(n, cfg.optimizers[n].with_lr(lrs[n]), steps) for n in c.optimizers]
    runs.append((c.uncorrected, cfg.optimizers[c.uncorrected].with_lr(lrs[c.uncorrected]), c.early_steps))
    # No target: the study reads the loss and the probes, not steps to a cost. The long runs are evaluated
    # once, at the budget's end; the uncorrected ones never.
    return [CellConfig(id=f"{name}-s{seed}", seed=seed, optimizer=spec, model=cfg.model, init="torch_default",
                       train_images=None, batch_size=c.batch_size, max_steps=budget,
                       divergence_loss=c.divergence_loss, eval_batch_size=c.eval_batch_size,
                       eval_every=None if name == c.uncorrected else c.epochs,
                       smoothing_window=c.smoothing_window,
                       probe_every=c.probe_every, probe_updates=c.probe_updates,
                       labels={"optimizer": name, "seed": seed})
            for name, spec, budget in runs for seed in c.seeds]


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.lr_adaptation
    lrs = best_lrs(pd.read_csv(inputs.folder("optimizer_grid") / "summary.csv"), c.optimizers, "lr_adaptation")
    lrs[c.uncorrected] = lrs[c.corrected]
    per_epoch = steps_per_epoch(MNIST_TRAIN_IMAGES, c.batch_size)
    outputs = inputs.run_cells(build_cells(cfg, lrs))
    probes = pd.concat([o.probes.assign(**{k: o.cell.labels[k] for k in LABELS}) for o in outputs],
                       ignore_index=True)[LABELS + PROBE_COLUMNS]
    epoch_loss = epoch_losses(outputs, per_epoch)
    summary = summarize(outputs, probes, epoch_loss, c, lrs, per_epoch)
    rows = summary.set_index("optimizer")
    after = (c.probe_updates // c.probe_every + 1) * c.probe_every
    return Result(
        # Three headline ratios (dvc metrics show has one column per metric of every stage).
        metrics={f"{a}_over_{b}_last_epoch_loss": rows.loc[a, "last_epoch_loss_mean"] / rows.loc[b, "last_epoch_loss_mean"]
                 for a, b in [c.optimizers[:2]]}
        | {f"{c.optimizers[0]}_lr_decay": rows.loc[c.optimizers[0], "lr_decay_mean"],
           "uncorrected_over_corrected_update": rows.loc[c.uncorrected, "update_norm_mean"]
           / rows.loc[c.corrected, "update_norm_mean"]},
        summary={"optimizers": c.optimizers, "corrected": c.corrected, "uncorrected": c.uncorrected,
                 "epochs": c.epochs, "steps_per_epoch": per_epoch, "early_steps": c.early_steps,
                 "probe_every": c.probe_every, "probe_updates": c.probe_updates, "seeds": len(c.seeds),
                 # The first probe after the first updates: where each lr's decay is measured from.
                 "lr_after_step": after,
                 "lr_source": "optimizer_grid best_lr", "lrs": lrs,
                 "diverged": [o.cell.id for o in outputs if o.result["diverged"]]},
        tables={"probes.csv": probes, "epoch_loss.csv": epoch_loss, "summary.csv": summary,
                "steps.csv": steps_table(outputs, LABELS, c.curve_stride, c.smoothing_window)},
        made=("cells",),
        lines=[f"{r.optimizer:<17} lr {r.lr:g}: epoch 1 loss {r.first_epoch_loss_mean:.4f}, last "
               f"{r.last_epoch_loss_mean:.4f}; median effective lr {r.lr_median_first:.3g} at step 1, "
               f"{r.lr_median_after_updates:.3g} at step {after}, {r.lr_median_end:.3g} at the end (x"
               f"{r.lr_decay_mean:.3g} from step {after}); first {c.probe_updates} updates {r.update_norm_mean:.3g}"
               for r in summary.itertuples()],
    )


def epoch_losses(outputs: list[CellOutput], steps_per_epoch: int) -> pd.DataFrame:
    """Per cell and epoch (a partial last epoch included), the mean mini-batch loss over its steps."""
    frames = []
    for o in outputs:
        loss = o.steps["loss"].to_numpy(dtype=np.float64)
        epoch = np.arange(len(loss)) // steps_per_epoch + 1
        frame = pd.DataFrame({"epoch": epoch, "loss": loss}).groupby("epoch", as_index=False).agg(
            step=("loss", "size"), loss=("loss", "mean"))
        frame["step"] = frame["step"].cumsum()
        frames.append(frame.assign(**{k: o.cell.labels[k] for k in LABELS}))
    return pd.concat(frames, ignore_index=True)[LABELS + ["epoch", "step", "loss"]]


def summarize(outputs: list[CellOutput], probes: pd.DataFrame, epoch_loss: pd.DataFrame,
              c: LrAdaptationConfig, lrs: dict[str, float], steps_per_epoch: int) -> pd.DataFrame:
    """Per optimizer, over seeds: early and late loss, the effective lr's decay, the first updates' size."""
    per_seed = []
    for o in outputs:
        loss, p = o.steps["loss"].to_numpy(dtype=np.float64), o.probes
        lr = p.dropna(subset=["lr_median"])
        mine = epoch_loss[(epoch_loss.optimizer == o.cell.labels["optimizer"]) & (epoch_loss.seed == o.cell.seed)]
        full = mine[mine["step"] == mine["epoch"] * steps_per_epoch]  # whole epochs only
        after = lr[lr["step"] > c.probe_updates]
        per_seed.append({
            "optimizer": o.cell.labels["optimizer"], "seed": o.cell.seed, "steps": o.result["steps"],
            "diverged": o.result["diverged"],
            "first_epoch_loss": mine["loss"].iloc[0] if len(mine) else np.nan,
            "last_epoch_loss": full["loss"].iloc[-1] if len(full) else np.nan,
            "loss_first_updates": loss[: c.probe_updates].mean(),
            "loss_early": loss[: c.early_steps].mean(),
            "lr_median_first": lr["lr_median"].iloc[0] if len(lr) else np.nan,
            "lr_median_after_updates": after["lr_median"].iloc[0] if len(after) else np.nan,
            "lr_median_end": lr["lr_median"].iloc[-1] if len(lr) else np.nan,
            "update_norm": p["update_norm"].mean(),
            "train_loss": o.result.get("train_loss"), "test_accuracy": o.result.get("test_accuracy"),
        })
    seeds = pd.DataFrame(per_seed)
    # The effective lr's decay from just after the first updates to the end: AdaGrad's can only fall.
    seeds["lr_decay"] = seeds["lr_median_end"] / seeds["lr_median_after_updates"]
    names = [*c.optimizers, c.uncorrected]
    table = pd.DataFrame({"optimizer": names, "lr": [lrs[n] for n in names],
                          "steps": [int(seeds.loc[seeds.optimizer == n, "steps"].max()) for n in names],
                          "seeds": [int((seeds.optimizer == n).sum()) for n in names],
                          "diverged": [bool(seeds.loc[seeds.optimizer == n, "diverged"].any()) for n in names]})
    for column in ("first_epoch_loss", "last_epoch_loss", "loss_first_updates", "loss_early", "update_norm",
                   "lr_decay", "train_loss", "test_accuracy"):
        s = seed_stats(seeds, ["optimizer"], column).reindex(names)
        table[[f"{column}_{k}" for k in STATS]] = s[list(STATS)].to_numpy()
    for column in ("lr_median_first", "lr_median_after_updates", "lr_median_end"):
        table[column] = seeds.groupby("optimizer")[column].median().reindex(names).to_numpy()
    return table
