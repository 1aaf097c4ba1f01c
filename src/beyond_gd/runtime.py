"""The device, threads and seeds a stage runs with."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from beyond_gd.config import RuntimeConfig
from beyond_gd.errors import ConfigError
from beyond_gd.provenance import usable_cores


def seed_everything(seed: int) -> None:
    """Seed every generator in play and ask torch for deterministic kernels.

    Same seed, same device: same numbers. cuBLAS needs its workspace pinned
    before first use for determinism (PyTorch's reproducibility notes).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    deterministic_algorithms()


def deterministic_algorithms() -> None:
    """`torch.use_deterministic_algorithms(True)`, without its import of torch._inductor where nothing has
    imported it yet: the call sets the ATen flag and TorchInductor's `deterministic` option, and importing
    TorchInductor's config costs 1.4-1.6 s a process (measured here; a default run starts about 60: each
    stage and each launch's workers), for an option only `torch.compile` reads, which no study calls. If
    TorchInductor is loaded, the public call sets both."""
    if "torch._inductor.config" in sys.modules:
        torch.use_deterministic_algorithms(True)
    else:  # the call torch.use_deterministic_algorithms makes for the ATen flag (torch/__init__.py)
        torch._C._set_deterministic_algorithms(True, warn_only=False)


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda, then mps, then cpu; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device: cuda was asked for but torch sees no CUDA device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("runtime.device: mps was asked for but torch sees no MPS device")
    return torch.device(name)


def setup_runtime(cfg: RuntimeConfig) -> torch.device:
    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads or usable_cores())
    return device


def one_thread(fn: Callable[[Any], Any], item: Any) -> Any:
    """`fn(item)` at one torch thread with deterministic kernels; this process's thread count restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    deterministic_algorithms()
    try:
        return fn(item)
    finally:
        torch.set_num_threads(threads)


def map_one_thread(fn: Callable[[Any], Any], items: Sequence[Any], jobs: int) -> list[Any]:
    """`one_thread(fn, item)` for each of `items`, in order: in this process if `jobs` is 1 (or one item),
    else in up to `jobs` worker processes of joblib's loky backend. One call's arithmetic is the same in
    either place (one thread, the same kernels), so the results are too.

    Why processes of one thread: the book's network at batch 64 trains at ~650 steps/s on one thread here,
    and two such processes side by side keep ~650 each, where one process on both cores ran 940 steps/s
    at first and ~500 after its first 10-15 s (measured on this 2-core machine, 20-epoch runs)."""
    items = list(items)
    jobs = min(jobs, len(items))
    if jobs <= 1:
        return [one_thread(fn, item) for item in items]
    from joblib import Parallel, delayed

    return Parallel(n_jobs=jobs, backend="loky")(delayed(one_thread)(fn, item) for item in items)
