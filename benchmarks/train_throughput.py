"""Training throughput: the pipeline's one loop beside the book's DataLoader loop, against the matmul peak.

Same model (the book's Net), same batch size and optimizer as the baseline
study in params.yaml, same process, same number of steps. Prints samples per
second for each loop, their ratio, and the loop's arithmetic rate as a share
of this machine's single-thread matmul peak (a large square float32 GEMM
timed here): one training step of the MLP is about 6 x parameters x batch
floating-point operations (forward 2, backward 4 per weight and sample). A
benchmark, not a test: nothing is asserted.

    python benchmarks/train_throughput.py [--steps 2000] [--threads 1]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision.datasets import MNIST
from torchvision.transforms import ToTensor

from beyond_gd.config import load, load_params
from beyond_gd.costs import matmul_peak
from beyond_gd.data.mnist import load_tensors
from beyond_gd.model import build_model
from beyond_gd.runtime import seed_everything
from beyond_gd.studies.baseline import Config
from beyond_gd.training import train


def book_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer, root: str, batch_size: int,
              steps: int) -> float:
    """The book's loop: a Dataset with ToTensor() per sample, batched by a DataLoader."""
    loader = DataLoader(MNIST(root, train=True, download=False, transform=ToTensor()),
                        batch_size=batch_size, shuffle=True)
    done, start = 0, time.perf_counter()
    while done < steps:
        for x, y in loader:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return steps * batch_size / (time.perf_counter() - start)


def pipeline_loop(model: torch.nn.Module, optimizer: torch.optim.Optimizer, root: str, cfg: Config,
                  steps: int) -> float:
    """The pipeline's loop (training.train), loading the data to memory included in the time."""
    start = time.perf_counter()
    x, y = load_tensors(root, train=True, device=torch.device("cpu"))
    train(model, optimizer, x, y, batch_size=cfg.baseline.batch_size, seed=cfg.baseline.seed, max_steps=steps,
          divergence_loss=cfg.baseline.divergence_loss)
    return steps * cfg.baseline.batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--mnist", default="data/mnist", help="the mnist stage's folder (torchvision's root)")
    p.add_argument("--steps", type=int, default=2000, help="mini-batch steps per loop (default 2000)")
    p.add_argument("--repeats", type=int, default=2, help="alternating runs of each loop; the best is kept")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the peak is per core)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load(load_params(args.params), Config)

    def fresh() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        seed_everything(cfg.baseline.seed)
        model = build_model(cfg.model)
        return model, cfg.optimizers[cfg.baseline.optimizer].build(model.parameters())

    best = {"book DataLoader + ToTensor()": 0.0, "in-memory tensors (training.train)": 0.0}
    for _ in range(args.repeats):
        best["book DataLoader + ToTensor()"] = max(best["book DataLoader + ToTensor()"],
                                                    book_loop(*fresh(), args.mnist, cfg.baseline.batch_size,
                                                              args.steps))
        best["in-memory tensors (training.train)"] = max(best["in-memory tensors (training.train)"],
                                                         pipeline_loop(*fresh(), args.mnist, cfg, args.steps))
    params = sum(w.numel() for w in fresh()[0].parameters())
    peak = matmul_peak()
    print(f"cpu, {torch.get_num_threads()} thread(s), batch {cfg.baseline.batch_size}, {args.steps} steps, "
          f"best of {args.repeats}; matmul peak {peak / 1e9:.1f} GFLOP/s")
    for name, rate in best.items():
        print(f"  {name:36s} {rate:10.0f} samples/s  {6 * params * rate / 1e9:6.1f} GFLOP/s  "
              f"{6 * params * rate / peak:5.1%} of peak")
    ratio = best["in-memory tensors (training.train)"] / best["book DataLoader + ToTensor()"]
    print(f"  speed-up {ratio:.1f}x")


if __name__ == "__main__":
    main()
