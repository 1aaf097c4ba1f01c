"""Second-order methods' costs, and full-batch non-linear CG on a torch model through SciPy.

- `memory_bytes`: what BFGS's dense inverse-Hessian approximation and L-BFGS's
  history of m curvature pairs hold for n parameters (Nocedal & Wright 2006,
  sections 6.1 and 7.2: BFGS keeps an n x n matrix; L-BFGS keeps m pairs
  (s_i, y_i) of n-vectors, and torch's LBFGS also one scalar rho_i per pair).
- `flat_objective`: the full-batch loss of a torch model as a function of one
  flat float64 vector, returning (loss, gradient), the form
  `scipy.optimize.minimize(..., jac=True)` takes. SciPy's `method="CG"` is the
  Polak-Ribiere non-linear conjugate gradient of Nocedal & Wright (Algorithm
  5.4) with a strong-Wolfe line search: the chapter's conjugate gradient, run
  the way SciPy documents it, with each call of the objective one full-batch
  gradient evaluation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def memory_bytes(n: int, history: int, bytes_per_value: int = 4) -> dict[str, int]:
    """Bytes of BFGS's n x n matrix and of L-BFGS's `history` pairs of n-vectors (plus their rho scalars)."""
    if n < 1 or history < 1 or bytes_per_value < 1:
        raise ValueError(f"need n, history, bytes_per_value >= 1, got {n}, {history}, {bytes_per_value}")
    return {"bfgs": n * n * bytes_per_value, "lbfgs": (2 * history * n + history) * bytes_per_value}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def flat_objective(model: nn.Module, x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[Callable[[np.ndarray], tuple[float, np.ndarray]], np.ndarray, list[int]]:
    """(fun, w0, calls): fun(w) sets the model's parameters to the flat vector w and returns the mean
    cross-entropy over (x, y) and its gradient, as float64 numpy; w0 is the model's current parameters;
    calls[0] counts the evaluations (each one full-batch gradient)."""
    params = list(model.parameters())
    calls = [0]

    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
        calls[0] += 1
        torch.nn.utils.vector_to_parameters(torch.as_tensor(w, dtype=params[0].dtype, device=params[0].device),
                                            params)
        model.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        grad = torch.cat([p.grad.reshape(-1) for p in params])
        return float(loss.detach()), grad.detach().cpu().double().numpy()

    w0 = torch.nn.utils.parameters_to_vector(params).detach().cpu().double().numpy()
    return fun, w0, calls
