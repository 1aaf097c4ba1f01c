"""The companion notebook's Fig 6-3, reproducibly: the notebook's network, trained, then its line to a random point.

The figure printed in the book comes from the companion notebook, not from
the code in the text: the network has a ReLU on its logits
(`final_relu`), SGD runs at lr 1e-4 for 40 epochs (batch 64; the training
loss is still about 2.1 at the end), the line is sampled from alpha = -2 to 2
in steps of 0.01 on the training set, and theta_rand is a fresh random
network, not the run's own initialisation. This study retrains that network
through the baseline's own run (`baseline.fit`, with `optimizers.<name>` at
`lr`) and traces its lines through the interpolate study's (`interpolate.trace`),
so the same figure is also what the baseline and interpolate stages give under
the overrides docs/chapter-map.md lists.

Tables: `epochs.csv` (train and test loss and accuracy per epoch, the
baseline's columns), `path.csv` and `summary.csv` (the interpolate stage's
columns); checkpoints `mnist.pt` (the trained state) and `init.pt` (its
initialisation).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from beyond_gd.config import ModelConfig, RuntimeConfig, required
from beyond_gd.data.mnist import load_tensors
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.studies import baseline, interpolate
from beyond_gd.study import Inputs, Result, Series


@dataclass
class InterpolateNotebookConfig:
    # The notebook's learning rate, set on the `optimizers` entry training.optimizer names (as the
    # optimizer grid sets its lrs): that entry's other arguments stay its own.
    lr: float = required(gt=0)
    # The notebook's ReLU on the logits; the model section's sizes are kept.
    final_relu: bool = required()
    # The training run: the baseline section's keys (optimizer, epochs, batch_size, ...).
    training: baseline.BaselineConfig = required()
    # The lines: the interpolate section's keys (grid, theta_rand, splits, ...).
    path: interpolate.InterpolateConfig = required()


@dataclass
class Config:
    interpolate_notebook: InterpolateNotebookConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c, device = cfg.interpolate_notebook, inputs.torch_device
    name = c.training.optimizer
    model_cfg = dataclasses.replace(cfg.model, final_relu=c.final_relu)
    t = baseline.fit(c.training, model_cfg, cfg.optimizers[name].with_lr(c.lr), inputs,
                     key=f"interpolate_notebook.lr (optimizers.{name})", desc="notebook")
    res = t.result
    # A diverged run is traced all the same: its NaN/inf losses are kept, and the summary flags it.
    theta_opt = {k: v.detach().clone() for k, v in t.model.state_dict().items()}
    thetas = interpolate.random_points(c.path, model_cfg, t.init_state, device)
    data = {split: load_tensors(inputs.folder("mnist"), train=split == "train", device=device)
            for split in c.path.splits}
    path, table, splits = interpolate.trace(c.path, t.model, theta_opt, thetas, data, progress=inputs.progress)
    alphas = path["alpha"].drop_duplicates().to_numpy()
    # Seconds are a machine fact, not a result: MLflow only (logged), so the same seed gives the same bytes.
    training = {**{k: t.final[k] for k in baseline.EVALUATED}, "steps": res.steps, "diverged": res.diverged,
                "optimizer": name, "lr": c.lr, "final_relu": c.final_relu}
    first = c.path.splits[0]
    epochs = t.epochs
    status = "DIVERGED" if res.diverged else "done"
    return Result(
        metrics={"train_loss": t.final["train_loss"], "test_accuracy": t.final["test_accuracy"],
                 "diverged": res.diverged, f"{first}_local_minima_max": splits[first]["local_minima_max"],
                 f"{first}_slope_ratio_max": splits[first]["slope_ratio_max"]},
        summary={"training": training, "alphas": len(alphas), "alpha_step": c.path.alpha_step,
                 "flat_window": c.path.flat_window, "theta_rands": len(thetas), **splits},
        tables={"epochs.csv": epochs, "path.csv": path, "summary.csv": table},
        checkpoints={"init.pt": t.init_state, "mnist.pt": theta_opt},
        series=[Series(epochs["epoch"], {k: epochs[k] for k in baseline.EVALUATED}),
                *interpolate.series(path, alphas)],
        logged={"train_seconds": res.seconds},
        lines=[f"training {status} after {res.steps} steps in {res.seconds:.1f} s (lr {c.lr:g}, final ReLU "
               f"{c.final_relu}): train loss {t.final['train_loss']:.4f}, test accuracy "
               f"{t.final['test_accuracy']:.4f}", *interpolate.lines(splits, len(thetas))],
    )
