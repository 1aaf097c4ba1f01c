"""The Hessian of the loss from Hessian-vector products, never as a dense matrix.

The book's "When the gradient points in the wrong direction" names the Hessian
H and ill-conditioning; for the MLP, H is 269,322 x 269,322 (290 GB in
float32), so everything here touches H only through v -> Hv (double backward,
Pearlmutter 1994), at about the cost of two gradients:
- Lanczos with full reorthogonalisation gives both ends of the spectrum, the
  largest eigenvalues and the most negative one (Golub & Van Loan, ch. 10);
  each Ritz pair comes with its true residual ||H y - theta y|| and the
  Lanczos bound |beta_m s_m|;
- Hutchinson's estimator gives the trace: E[z^T H z] = tr H for Rademacher z.
The Lanczos basis is kept in float64 so that orthogonality does not degrade
over the iterations; the products themselves run in the model's dtype.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

State = Mapping[str, torch.Tensor]
Hvp = Callable[[torch.Tensor], torch.Tensor]

# Lanczos stops when the new residual is this small relative to the largest
# |alpha| so far: the Krylov space is invariant and the Ritz values are exact.
_BREAKDOWN = 1e-12


@dataclass(frozen=True)
class FlatLayout:
    """How a state_dict maps to one flat vector and back."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, state: State) -> FlatLayout:
        return cls(tuple(state), tuple(v.shape for v in state.values()))

    @property
    def dim(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes)

    def flatten(self, state: State) -> torch.Tensor:
        return torch.cat([state[n].reshape(-1) for n in self.names])

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        sizes = [int(np.prod(s)) for s in self.shapes]
        return {n: t.view(s) for n, t, s in zip(self.names, vec.split(sizes), self.shapes, strict=True)}


def loss_hvp(model: nn.Module, state: State, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> Hvp:
    """v -> H v for the mean cross-entropy of `model` at `state` over all of (x, y).

    Summed over batches of `batch_size`, so memory is one batch's double
    backward; `v` may be any float dtype, the product comes back in float64.
    """
    layout = FlatLayout.of(state)
    theta = layout.flatten(state).detach()

    def hvp(v: torch.Tensor) -> torch.Tensor:
        v = v.to(theta.dtype)
        out = torch.zeros_like(theta)
        for start in range(0, len(x), batch_size):
            p = theta.clone().requires_grad_(True)
            logits = functional_call(model, layout.unflatten(p), (x[start : start + batch_size],))
            loss = F.cross_entropy(logits, y[start : start + batch_size], reduction="sum")
            (grad,) = torch.autograd.grad(loss, p, create_graph=True)
            (hv,) = torch.autograd.grad(grad, p, grad_outputs=v)
            out += hv
        return out.double() / len(x)

    return hvp


def loss_and_grad_norm(model: nn.Module, state: State, x: torch.Tensor, y: torch.Tensor,
                       batch_size: int) -> tuple[float, float]:
    """Mean cross-entropy over (x, y) and the norm of its gradient at `state`."""
    layout = FlatLayout.of(state)
    p = layout.flatten(state).detach().clone().requires_grad_(True)
    total, grad = 0.0, torch.zeros_like(p)
    for start in range(0, len(x), batch_size):
        logits = functional_call(model, layout.unflatten(p), (x[start : start + batch_size],))
        loss = F.cross_entropy(logits, y[start : start + batch_size], reduction="sum")
        grad += torch.autograd.grad(loss, p)[0]
        total += loss.item()
    return total / len(x), (grad / len(x)).norm().item()


# --------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------
@dataclass
class Lanczos:
    """An m-step Lanczos run: H V^T ~ V^T T with T = tridiag(betas[:-1], alphas, betas[:-1])."""

    alphas: np.ndarray  # [m] diagonal of T
    betas: np.ndarray  # [m] off-diagonal of T, then the final residual norm beta_m
    basis: torch.Tensor  # [m, dim] orthonormal rows, float64

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the eigenvectors of T (columns)."""
        m = len(self.alphas)
        t = np.diag(self.alphas) + np.diag(self.betas[: m - 1], 1) + np.diag(self.betas[: m - 1], -1)
        return np.linalg.eigh(t)


def lanczos(hvp: Hvp, dim: int, steps: int, generator: torch.Generator, device: torch.device) -> Lanczos:
    """Lanczos from a random Gaussian start, with full reorthogonalisation (twice, Parlett's rule).

    Stops early if the Krylov space becomes invariant (then T's eigenvalues
    are eigenvalues of H exactly).
    """
    steps = min(steps, dim)
    basis = torch.zeros(steps, dim, dtype=torch.float64, device=device)
    v = torch.randn(dim, generator=generator, dtype=torch.float64).to(device)
    v /= v.norm()
    alphas: list[float] = []
    betas: list[float] = []
    for j in range(steps):
        basis[j] = v
        w = hvp(v)
        a = float(w @ v)
        alphas.append(a)
        # Subtracting the projection on every earlier vector covers the three-term
        # recurrence too; doing it twice restores orthogonality to round-off.
        for _ in range(2):
            w -= basis[: j + 1].T @ (basis[: j + 1] @ w)
        b = float(w.norm())
        betas.append(b)
        if b <= _BREAKDOWN * max(abs(t) for t in alphas):
            break
        v = w / b
    m = len(alphas)
    return Lanczos(np.array(alphas), np.array(betas), basis[:m])


@dataclass
class Eigenpair:
    which: str  # "top" (rank 1 = largest) or "min" (the most negative)
    rank: int
    value: float
    residual: float  # ||H y - value * y||, from one more product
    residual_bound: float  # |beta_m s_m|: the same in exact arithmetic, free


def extreme_eigenpairs(hvp: Hvp, run: Lanczos, top_k: int) -> list[Eigenpair]:
    """The `top_k` largest Ritz pairs and the smallest, each checked with one more product."""
    values, vectors = run.ritz()
    last = run.betas[-1]
    picks = [("top", r + 1, len(values) - 1 - r) for r in range(min(top_k, len(values)))] + [("min", 1, 0)]
    pairs = []
    for which, rank, i in picks:
        y = run.basis.T @ torch.from_numpy(vectors[:, i]).to(run.basis)
        residual = float((hvp(y) - values[i] * y).norm())
        pairs.append(Eigenpair(which, rank, float(values[i]), residual, float(abs(last * vectors[-1, i]))))
    return pairs


def hutchinson(hvp: Hvp, dim: int, samples: int, generator: torch.Generator, device: torch.device) -> np.ndarray:
    """`samples` draws of z^T H z with Rademacher z: their mean estimates tr H (Hutchinson 1989)."""
    draws = []
    for _ in range(samples):
        z = (torch.randint(0, 2, (dim,), generator=generator) * 2 - 1).to(device=device, dtype=torch.float64)
        draws.append(float(z @ hvp(z)))
    return np.array(draws)
