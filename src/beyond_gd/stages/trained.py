"""What the stages that study the trained baseline share: their arguments and set-up.

`interpolate`, `identifiability` and `hessian` each read MNIST, the baseline's
weights and the `runtime` and `model` sections besides their own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from beyond_gd.config import ModelConfig, RuntimeConfig, as_dict, load_params, section
from beyond_gd.model import build_model
from beyond_gd.runtime import setup_runtime
from beyond_gd.stages.common import parser

C = TypeVar("C")


@dataclass
class TrainedStage(Generic[C]):
    args: argparse.Namespace  # data, baseline, out, no_progress
    cfg: C  # the stage's own section
    model_cfg: ModelConfig
    read: dict[str, Any]  # every section read, for the MLflow run's params and hash
    device: torch.device
    model: nn.Module  # the baseline's architecture on `device`; load weights into it
    baseline: Path
    out: Path


def setup(stage: str, doc: str | None, load_config: Callable[[dict[str, Any]], C],
          argv: list[str] | None) -> TrainedStage[C]:
    """Parse the stage's arguments, read and check its sections, set up the runtime and the model."""
    p = parser(doc)
    p.add_argument("--data", default="data/raw", help="torchvision root holding MNIST/raw")
    p.add_argument("--baseline", default="data/baseline", help="folder with the baseline's mnist.pt and init.pt")
    p.add_argument("--out", default=f"data/{stage}", help="folder for the outputs")
    args = p.parse_args(argv)
    params = load_params(args.params)
    runtime = section(params, "runtime", RuntimeConfig)
    model_cfg = section(params, "model", ModelConfig)
    cfg = load_config(params)
    device = setup_runtime(runtime)
    return TrainedStage(args, cfg, model_cfg,
                        {"runtime": as_dict(runtime), "model": as_dict(model_cfg), stage: as_dict(cfg)},
                        device, build_model(model_cfg).to(device), Path(args.baseline), Path(args.out))
