"""An optimizer for tests of the launcher: torch's SGD whose first step waits until `parties` cells have begun.

A cell built with it (`OptimizerSpec("cell_barrier.BarrierSGD", lr, {"barrier": folder, "parties": n})`)
writes a file named by its process id into `barrier` at its first step, then waits until `parties` such
files exist. So two cells finish only if both were running at once, however loaded the machine: what a test
of parallel workers asserts, with no bet on timing. The launcher's workers import it by its dotted path
(the test puts this folder on their PYTHONPATH).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

# How long a cell waits for the others before it fails its test (a worker that never started).
TIMEOUT_S = 180.0


class BarrierSGD(torch.optim.SGD):
    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, barrier: str, parties: int,
                 **kwargs: float) -> None:
        super().__init__(params, lr=lr, **kwargs)
        self.barrier, self.parties, self.waited = Path(barrier), parties, False

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        if not self.waited:
            self.barrier.mkdir(parents=True, exist_ok=True)
            (self.barrier / str(os.getpid())).write_text(f"{time.time()}\n")
            deadline = time.monotonic() + TIMEOUT_S
            while len(list(self.barrier.iterdir())) < self.parties:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.barrier}: {self.parties} cells never ran at once")
                time.sleep(0.05)
            self.waited = True
        return super().step(closure)
