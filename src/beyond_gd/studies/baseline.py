"""The book's MLP trained on MNIST by one of the chapter's optimizers: the SGD solution later studies read.

`mnist.pt` is the trained state_dict (the book's checkpoint), `init.pt` the
state_dict of its own random initialisation (the theta_rand of Goodfellow et
al. 2014, Fig 6-3), `checkpoints.pt` the states at the ends of the epochs in
`checkpoint_epochs` (`{"epoch_<n>": state_dict}`), where the Hessian's
density is measured during training. Training goes through `training.train`, the loop every
study that trains shares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_gd.config import ModelConfig, RuntimeConfig, required
from beyond_gd.data.mnist import load_tensors
from beyond_gd.model import build_model
from beyond_gd.optim.registry import OptimizerSpec, check_named
from beyond_gd.runtime import seed_everything
from beyond_gd.study import Inputs, Result, Series
from beyond_gd.training import EpochEnd, evaluate, train

EVALUATED = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


@dataclass
class BaselineConfig:
    # An entry of the `optimizers` section.
    optimizer: str = required(nonempty=True)
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

    def check(self) -> None:
        check_named([self.baseline.optimizer], self.optimizers, "baseline.optimizer")


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.baseline
    seed_everything(c.seed)
    x_train, y_train = load_tensors(inputs.folder("mnist"), train=True, device=inputs.torch_device)
    x_test, y_test = load_tensors(inputs.folder("mnist"), train=False, device=inputs.torch_device)
    model = build_model(cfg.model).to(inputs.torch_device)
    init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = cfg.optimizers[c.optimizer].build(model.parameters(), key=f"optimizers.{c.optimizer}")
    steps_per_epoch = math.ceil(len(x_train) / c.batch_size)
    budget = c.epochs * steps_per_epoch if c.max_steps is None else min(c.max_steps, c.epochs * steps_per_epoch)
    rows: list[dict[str, float]] = []
    saved: dict[str, dict] = {}

    def evaluated(epoch: int, step: int) -> dict[str, float]:
        tr = evaluate(model, x_train, y_train, c.eval_batch_size)
        te = evaluate(model, x_test, y_test, c.eval_batch_size)
        return {"epoch": epoch, "step": step, **dict(zip(EVALUATED, (*tr, *te), strict=True))}

    def at_epoch_end(end: EpochEnd) -> bool:
        rows.append(evaluated(end.epoch, end.step))
        if end.epoch in c.checkpoint_epochs:
            saved[f"epoch_{end.epoch}"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        return False

    res = train(model, optimizer, x_train, y_train, batch_size=c.batch_size, seed=c.seed, max_steps=budget,
                divergence_loss=c.divergence_loss, on_epoch_end=at_epoch_end, progress=inputs.progress,
                desc="baseline")
    # A run cut short by divergence still gets a final evaluation.
    final = rows[-1] if rows and rows[-1]["step"] == res.steps else evaluated(res.epochs, res.steps)
    steps = np.arange(1, res.steps + 1)
    summary = {**{k: final[k] for k in EVALUATED}, "steps": res.steps, "diverged": res.diverged}
    epochs = pd.DataFrame(rows, columns=["epoch", "step", *EVALUATED])
    status = "DIVERGED" if res.diverged else "done"
    return Result(
        metrics={k: final[k] for k in ("test_accuracy", "test_loss", "train_loss")},
        summary=summary,
        tables={"steps.csv": pd.DataFrame({"step": steps, "epoch": (steps - 1) // steps_per_epoch + 1,
                                           "loss": res.step_loss}),
                "epochs.csv": epochs},
        checkpoints={"init.pt": init_state, "mnist.pt": model.state_dict(), "checkpoints.pt": saved},
        series=[Series(steps, {"train_loss_step": res.step_loss}),
                Series(epochs["epoch"], {k: epochs[k] for k in EVALUATED})],
        logged={"train_seconds": res.seconds, "samples_per_second": res.steps * c.batch_size / res.seconds},
        lines=[f"{status} after {res.steps} steps in {res.seconds:.1f} s; test accuracy {final['test_accuracy']:.4f}, "
               f"test loss {final['test_loss']:.4f}"],
    )
