"""The book's MLP trained on MNIST by one of the chapter's optimizers: the SGD solution later studies read.

`mnist.pt` is the trained state_dict (the book's checkpoint), `init.pt` the
state_dict of its own random initialisation (the theta_rand of Goodfellow et
al. 2014, Fig 6-3), `checkpoints.pt` the states at the ends of the epochs in
`checkpoint_epochs` (`{"epoch_<n>": state_dict}`), where the Hessian's
density is measured during training. Training goes through `training.train`, the loop every
study that trains shares; `fit` is the whole run (seed, data, model, loop,
per-epoch evaluation), which `interpolate_notebook` calls with the companion
notebook's settings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from beyond_gd.config import ModelConfig, RuntimeConfig, optimizer_names, required
from beyond_gd.data.mnist import load_tensors
from beyond_gd.model import Net, build_model
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.runtime import seed_everything
from beyond_gd.study import Inputs, Result, Series
from beyond_gd.training import EpochEnd, TrainResult, evaluate, step_budget, steps_per_epoch, train

EVALUATED = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass
class BaselineConfig:
    # An entry of the `optimizers` section.
    optimizer: str = optimizer_names(nonempty=True)
    epochs: int = required(gt=0)
    batch_size: int = required(gt=0)
    # Stop after this many mini-batch steps (smoke runs); null: all epochs.
    max_steps: int | None = required(gt=0, optional=True)
    seed: int = required(ge=0)
    eval_batch_size: int = required(gt=0)
    # A loss above this (or NaN/inf) marks the run diverged and stops it.
    divergence_loss: float = required(gt=0)
    # Save the state at the end of these epochs (checkpoints.pt).
    checkpoint_epochs: list[int] = required(distinct=True, each_ge=1)


@dataclass
class Config:
    baseline: BaselineConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig


@dataclass
class Trained:
    """One training run of the book's loop: the model, its initialisation, the loop's record, the evaluations."""

    model: Net
    init_state: dict[str, torch.Tensor]
    result: TrainResult
    epochs: pd.DataFrame  # per epoch end: epoch, step and EVALUATED
    final: dict[str, float]  # EVALUATED after the last step (a diverged run included)
    steps_per_epoch: int
    saved: dict[str, dict[str, torch.Tensor]]  # "epoch_<n>" -> the state at the end of epoch n (checkpoint_epochs)


def fit(c: BaselineConfig, model_cfg: ModelConfig, optimizer: OptimizerSpec, inputs: Inputs, *,
        key: str, desc: str) -> Trained:
    """The baseline's training run: seed, data, model, `optimizer` (its entry at `key`), `training.train`
    for `c.epochs` (or `c.max_steps`), and both splits evaluated in full after every epoch.

    The baseline and every study that retrains the book's network with other settings (the companion
    notebook's) call this, so one config draws one model and one sequence of batches.
    """
    seed_everything(c.seed)
    x_train, y_train = load_tensors(inputs.folder("mnist"), train=True, device=inputs.torch_device)
    x_test, y_test = load_tensors(inputs.folder("mnist"), train=False, device=inputs.torch_device)
    model = build_model(model_cfg).to(inputs.torch_device)
    init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    built = optimizer.build(model.parameters(), key=key)
    budget = step_budget(c.epochs, len(x_train), c.batch_size, c.max_steps)
    rows: list[dict[str, float]] = []
    saved: dict[str, dict[str, torch.Tensor]] = {}

    def evaluated(epoch: int, step: int) -> dict[str, float]:
        tr = evaluate(model, x_train, y_train, c.eval_batch_size)
        te = evaluate(model, x_test, y_test, c.eval_batch_size)
        return {"epoch": epoch, "step": step, **dict(zip(EVALUATED, (*tr, *te), strict=True))}

    def at_epoch_end(end: EpochEnd) -> bool:
        rows.append(evaluated(end.epoch, end.step))
        if end.epoch in c.checkpoint_epochs:
            saved[f"epoch_{end.epoch}"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return False

    res = train(model, built, x_train, y_train, batch_size=c.batch_size, seed=c.seed, max_steps=budget,
                divergence_loss=c.divergence_loss, on_epoch_end=at_epoch_end, progress=inputs.progress, desc=desc)
    # A run cut short by divergence still gets a final evaluation.
    final = rows[-1] if rows and rows[-1]["step"] == res.steps else evaluated(res.epochs, res.steps)
    return Trained(model, init_state, res, pd.DataFrame(rows, columns=["epoch", "step", *EVALUATED]), final,
                   steps_per_epoch(len(x_train), c.batch_size), saved)


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.baseline
    t = fit(c, cfg.model, cfg.optimizers[c.optimizer], inputs, key=f"optimizers.{c.optimizer}", desc="baseline")
    res, final, epochs = t.result, t.final, t.epochs
    steps = np.arange(1, res.steps + 1)
    summary = {**{k: final[k] for k in EVALUATED}, "steps": res.steps, "diverged": res.diverged}
    status = "DIVERGED" if res.diverged else "done"
    return Result(
        metrics={k: final[k] for k in ("test_accuracy", "test_loss", "train_loss")},
        summary=summary,
        tables={"steps.csv": pd.DataFrame({"step": steps, "epoch": (steps - 1) // t.steps_per_epoch + 1,
                                           "loss": res.step_loss}),
                "epochs.csv": epochs},
        checkpoints={"init.pt": t.init_state, "mnist.pt": t.model.state_dict(), "checkpoints.pt": t.saved},
        series=[Series(steps, {"train_loss_step": res.step_loss}),
                Series(epochs["epoch"], {k: epochs[k] for k in EVALUATED})],
        logged={"train_seconds": res.seconds, "samples_per_second": res.steps * c.batch_size / res.seconds},
        lines=[f"{status} after {res.steps} steps in {res.seconds:.1f} s; test accuracy {final['test_accuracy']:.4f}, "
               f"test loss {final['test_loss']:.4f}"],
    )
