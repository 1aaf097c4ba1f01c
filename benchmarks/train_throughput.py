"""Training throughput: the pipeline's in-memory loop beside the book's DataLoader loop.

Same model (the book's Net), same batch size and optimizer from params.yaml,
same process, same number of steps. Prints samples per second for each and
the ratio. A benchmark, not a test: nothing is asserted.

    python benchmarks/train_throughput.py [--steps 2000] [--data data/raw]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision.datasets import MNIST
from torchvision.transforms import ToTensor

from beyond_gd.config import ModelConfig, OptimizerConfig, RuntimeConfig, TrainConfig, load_params, section
from beyond_gd.data.mnist import load_tensors
from beyond_gd.model import build_model
from beyond_gd.optim.registry import build_optimizer
from beyond_gd.runtime import seed_everything, setup_runtime
from beyond_gd.training import train


def book_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer, root: str, batch_size: int,
              steps: int, device: torch.device) -> float:
    """The book's loop: a Dataset with ToTensor() per sample, batched by a DataLoader."""
    loader = DataLoader(MNIST(root, train=True, download=False, transform=ToTensor()),
                        batch_size=batch_size, shuffle=True)
    done, start = 0, time.perf_counter()
    while done < steps:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return steps * batch_size / (time.perf_counter() - start)


def pipeline_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer, root: str, cfg: TrainConfig,
                  steps: int, device: torch.device) -> float:
    """The pipeline's loop (training.train), data loading to memory included in the time."""
    start = time.perf_counter()
    x, y = load_tensors(root, train=True, device=device)
    train(model, optimizer, x, y, epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
          divergence_loss=cfg.divergence_loss, max_steps=steps, progress=False)
    return steps * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--data", default="data/raw")
    p.add_argument("--steps", type=int, default=2000, help="mini-batch steps per loop (default 2000)")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each loop; the best is kept")
    args = p.parse_args()
    params = load_params(args.params)
    device = setup_runtime(section(params, "runtime", RuntimeConfig))
    cfg = section(params, "train", TrainConfig)

    def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        seed_everything(cfg.seed)
        model = build_model(section(params, "model", ModelConfig)).to(device)
        return model, build_optimizer(section(params, "optimizer", OptimizerConfig), model.parameters())

    best = {"book DataLoader + ToTensor()": 0.0, "in-memory tensors": 0.0}
    for _ in range(args.repeats):
        best["book DataLoader + ToTensor()"] = max(best["book DataLoader + ToTensor()"],
                                                    book_loop(*fresh(), args.data, cfg.batch_size, args.steps, device))
        best["in-memory tensors"] = max(best["in-memory tensors"],
                                        pipeline_loop(*fresh(), args.data, cfg, args.steps, device))
    print(f"device {device}, {torch.get_num_threads()} threads, batch {cfg.batch_size}, "
          f"{args.steps} steps, best of {args.repeats}")
    for name, rate in best.items():
        print(f"  {name:30s} {rate:10.0f} samples/s")
    ratio = best["in-memory tensors"] / best["book DataLoader + ToTensor()"]
    print(f"  speed-up {ratio:.1f}x")


if __name__ == "__main__":
    main()
