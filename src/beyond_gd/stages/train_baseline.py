"""Stage `train_baseline`: the book's MLP on MNIST with SGD, the checkpoint later stages use.

Outputs (in `--out`): `mnist.pt` (trained state_dict), `init.pt` (the state_dict
of its own random initialisation, the Goodfellow et al. theta_rand),
`metrics.json` (final train/test loss and accuracy), `steps.csv` (loss per
mini-batch step) and `epochs.csv` (train/test loss and accuracy per epoch).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch

from beyond_gd.config import (
    ModelConfig,
    OptimizerConfig,
    RuntimeConfig,
    TrainConfig,
    as_dict,
    load_params,
    section,
)
from beyond_gd.data.mnist import load_tensors
from beyond_gd.model import build_model
from beyond_gd.optim.registry import build_optimizer
from beyond_gd.runtime import seed_everything, setup_runtime
from beyond_gd.stages.common import cli, parser, staged
from beyond_gd.tracking import log_series, stage_run, write_metrics
from beyond_gd.training import EpochRecord, evaluate, train

STAGE = "train_baseline"
OUTPUTS = ("mnist.pt", "init.pt", "metrics.json", "steps.csv", "epochs.csv")


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--data", default="data/raw", help="torchvision root holding MNIST/raw")
    p.add_argument("--out", default="data/baseline", help="folder for the outputs")
    args = p.parse_args(argv)
    params = load_params(args.params)
    runtime = section(params, "runtime", RuntimeConfig)
    model_cfg = section(params, "model", ModelConfig)
    opt_cfg = section(params, "optimizer", OptimizerConfig)
    cfg = section(params, "train", TrainConfig)
    read = {"runtime": as_dict(runtime), "model": as_dict(model_cfg),
            "optimizer": as_dict(opt_cfg), "train": as_dict(cfg)}

    device = setup_runtime(runtime)
    seed_everything(cfg.seed)
    x_train, y_train = load_tensors(args.data, train=True, device=device)
    x_test, y_test = load_tensors(args.data, train=False, device=device)
    model = build_model(model_cfg).to(device)
    init_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = build_optimizer(opt_cfg, model.parameters())

    def on_epoch_end(epoch: int, step: int) -> EpochRecord:
        tr = evaluate(model, x_train, y_train, cfg.eval_batch_size)
        te = evaluate(model, x_test, y_test, cfg.eval_batch_size)
        return EpochRecord(epoch, step, tr[0], tr[1], te[0], te[1])

    out = Path(args.out)
    with stage_run(STAGE, read, device) as run, staged(*(out / name for name in OUTPUTS)) as paths:
        tmp = dict(zip(OUTPUTS, paths, strict=True))
        start = time.perf_counter()
        result = train(model, optimizer, x_train, y_train, epochs=cfg.epochs, batch_size=cfg.batch_size,
                       seed=cfg.seed, divergence_loss=cfg.divergence_loss, max_steps=cfg.max_steps,
                       on_epoch_end=on_epoch_end, progress=not args.no_progress, desc=STAGE)
        seconds = time.perf_counter() - start
        # A run cut short (max_steps, divergence) still gets a final evaluation.
        final = result.epochs[-1] if result.epochs and result.epochs[-1].step == result.steps else \
            on_epoch_end(math.ceil(result.steps * cfg.batch_size / len(x_train)), result.steps)

        torch.save(init_state, tmp["init.pt"])
        torch.save(model.state_dict(), tmp["mnist.pt"])
        steps = np.arange(1, result.steps + 1)
        steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
        pd.DataFrame({"step": steps, "epoch": (steps - 1) // steps_per_epoch + 1,
                      "loss": result.step_loss}).to_csv(tmp["steps.csv"], index=False)
        pd.DataFrame([dataclasses.asdict(r) for r in result.epochs],
                     columns=[f.name for f in dataclasses.fields(EpochRecord)]).to_csv(tmp["epochs.csv"], index=False)
        metrics = {"train_loss": final.train_loss, "train_accuracy": final.train_accuracy,
                   "test_loss": final.test_loss, "test_accuracy": final.test_accuracy,
                   "steps": result.steps, "diverged": result.diverged}
        write_metrics(tmp["metrics.json"], metrics)

        log_series(run.info.run_id, {"train_loss_step": result.step_loss}, steps)
        log_series(run.info.run_id, {name: [getattr(r, name) for r in result.epochs]
                                     for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy")},
                   [r.epoch for r in result.epochs])
        mlflow.log_metrics({**{f"final_{k}": float(v) for k, v in metrics.items()},
                            "train_seconds": seconds, "samples_per_second": result.steps * cfg.batch_size / seconds})
    status = "DIVERGED" if result.diverged else "done"
    print(f"{STAGE}: {status} after {result.steps} steps in {seconds:.1f} s; "
          f"test accuracy {final.test_accuracy:.4f}, test loss {final.test_loss:.4f}")


if __name__ == "__main__":
    cli(main)
