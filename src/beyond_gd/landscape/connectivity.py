"""Mode connectivity: barriers between two solutions, weight matching, and a trained Bézier curve.

Three ways to walk from a solution A to another solution B of the same MLP:
- the straight line `(1 - t) A + t B`, whose loss barrier (Frankle et al.
  2020, "Linear mode connectivity and the lottery ticket hypothesis";
  Entezari et al. 2022) is the largest rise of the loss above the chord
  between the endpoints' losses, `barrier`;
- the same line after B's hidden units are permuted to line up with A's
  (Ainsworth, Hayase & Srinivasa 2023, "Git Re-Basin", Algorithm 1, weight
  matching): `weight_matching` finds one permutation per hidden layer by
  coordinate descent, each layer a linear assignment on the summed
  similarities of its incoming and outgoing weights; `permute_state` applies
  them, and the permuted net computes the same function (Fig 6-2's symmetry);
- a quadratic Bézier curve `(1 - t)^2 A + 2 t (1 - t) theta + t^2 B` whose
  control point theta is trained (Garipov, Izmailov, Podoprikhin, Vetrov &
  Wilson 2018, "Loss surfaces, mode connectivity, and fast ensembling of
  DNNs"): `BezierCurve` is an nn.Module whose forward draws t ~ U(0, 1) from
  its own generator, so the one training loop trains it; `curve_loss`
  evaluates the curve on a t grid.

States are `state_dict`s of a stack of Linear layers (the book's Net: keys
`classifier.{1,3,5}.{weight,bias}`); the layers are found from the keys
(`linear_layers`), so the maths holds for any depth. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn
from torch.func import functional_call

from beyond_gd.landscape.interpolation import combination_loss

State = Mapping[str, torch.Tensor]


# --------------------------------------------------------------------------
# Barriers
# --------------------------------------------------------------------------
@dataclass
class Barrier:
    height: float  # max over t of loss(t) - ((1 - t) loss(0) + t loss(1)); >= 0 (the endpoints give 0)
    t: float  # where it is reached
    loss_at_0: float
    loss_at_1: float


def barrier(t: np.ndarray, loss: np.ndarray) -> Barrier:
    """The loss barrier on a path sampled at `t` (sorted, from 0 to 1): the largest rise above the chord.

    Frankle et al. (2020) and Entezari et al. (2022):
    `max_t [L(t) - ((1 - t) L(0) + t L(1))]`. The endpoints lie on the chord, so
    it is never negative; a NaN or inf loss anywhere (a diverged endpoint or
    curve) gives a NaN height, never a number that looks measured.
    """
    t, loss = np.asarray(t, dtype=np.float64), np.asarray(loss, dtype=np.float64)
    if t.ndim != 1 or len(t) < 2 or t[0] != 0.0 or t[-1] != 1.0 or np.any(np.diff(t) <= 0):
        raise ValueError("t must rise strictly from 0 to 1")
    if len(loss) != len(t):
        raise ValueError(f"{len(loss)} losses for {len(t)} points")
    if not np.all(np.isfinite(loss)):
        return Barrier(float("nan"), float("nan"), float(loss[0]), float(loss[-1]))
    rise = loss - ((1 - t) * loss[0] + t * loss[-1])
    k = int(np.argmax(rise))
    return Barrier(float(max(rise[k], 0.0)), float(t[k]), float(loss[0]), float(loss[-1]))


def stopped_falling(barriers: Sequence[float], min_decrease: float) -> bool:
    """Whether a curve's training has stopped lowering its barrier: the last epoch's barrier is at least
    (1 - min_decrease) x the one before it (it fell by less than that share, or rose), or it is not finite
    (a diverged curve trains no further). One barrier alone has nothing to fall from.
    """
    if barriers and not np.isfinite(barriers[-1]):
        return True
    return len(barriers) >= 2 and barriers[-1] >= (1 - min_decrease) * barriers[-2]


# --------------------------------------------------------------------------
# Permutations of hidden units, and weight matching
# --------------------------------------------------------------------------
def linear_layers(state: State) -> list[tuple[str, str]]:
    """The (weight, bias) keys of each Linear layer, input to output, as `state` orders them."""
    layers = [(k, k.removesuffix("weight") + "bias") for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    if len(layers) < 2:
        raise ValueError("a state with at least two Linear layers (one hidden layer) is needed")
    for (w, b), (w_next, _) in zip(layers, layers[1:], strict=False):
        if b not in state or state[w].shape[0] != state[w_next].shape[1]:
            raise ValueError(f"{w} does not feed {w_next} (or has no bias)")
    return layers


def permute_state(state: State, perms: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with hidden layer l's units reordered by `perms[l]`: unit i of the result is unit perms[l][i].

    Layer l's rows (and bias) are permuted by perms[l], its columns by
    perms[l - 1]: each unit keeps its incoming and outgoing weights, so the
    network computes the same function (Fig 6-2). Keys that are no Linear
    layer's are copied.
    """
    layers = linear_layers(state)
    if len(perms) != len(layers) - 1:
        raise ValueError(f"{len(layers) - 1} hidden layers, {len(perms)} permutations")
    out = {k: v.clone() for k, v in state.items()}
    for l, (w, b) in enumerate(layers):
        weight, bias = state[w], state[b]
        if l < len(perms):
            rows = perms[l].to(weight.device)
            weight, bias = weight[rows], bias[rows]
        if l > 0:
            weight = weight[:, perms[l - 1].to(weight.device)]
        out[w], out[b] = weight.clone(), bias.clone()
    return out


@dataclass
class Matching:
    perms: list[torch.Tensor]  # one per hidden layer: B's unit perms[l][i] goes to place i
    sweeps: int  # coordinate-descent sweeps over the layers until none changed (or the cap)
    converged: bool  # a whole sweep changed no layer's assignment
    similarity: list[float]  # sum over layers of <W_A, W_B permuted> (biases included), after each sweep


def weight_matching(state_a: State, state_b: State, *, max_sweeps: int, generator: torch.Generator) -> Matching:
    """Permutations of B's hidden units that maximise the summed inner product of its weights with A's.

    Ainsworth, Hayase & Srinivasa (2023), Algorithm 1: starting from the
    identity, visit the hidden layers in a random order (drawn from
    `generator`) and solve each layer's linear assignment with the other
    layers' permutations fixed, on the similarity of A's unit i and B's unit j
    summed over the layer's incoming weights and bias (B's inputs already
    permuted) and its outgoing weights (the next layer's outputs already
    permuted): `W_l^A (W_l^B P_{l-1}^T)^T + b_l^A b_l^B^T + W_{l+1}^A^T P_{l+1} W_{l+1}^B`.
    Stop after a sweep in which no layer's assignment changed, or after
    `max_sweeps`. Each assignment is scipy's `linear_sum_assignment`; the
    objective cannot decrease from one layer's step to the next.
    """
    layers = linear_layers(state_a)
    if linear_layers(state_b) != layers:
        raise ValueError("the two states have different layers")
    a = [(state_a[w].double().cpu(), state_a[b].double().cpu()) for w, b in layers]
    bb = [(state_b[w].double().cpu(), state_b[b].double().cpu()) for w, b in layers]
    hidden = len(layers) - 1
    perms = [torch.arange(a[l][0].shape[0]) for l in range(hidden)]

    def cost(l: int) -> torch.Tensor:
        (wa, ba), (wb, bias_b) = a[l], bb[l]
        incoming = wb if l == 0 else wb[:, perms[l - 1]]
        c = wa @ incoming.T + torch.outer(ba, bias_b)
        wa_next, wb_next = a[l + 1][0], bb[l + 1][0]
        outgoing = wb_next if l + 1 == hidden else wb_next[perms[l + 1]]
        return c + wa_next.T @ outgoing

    def total() -> float:
        permuted = permute_state({f"{i}.{kind}": t for i, (w, b) in enumerate(bb) for kind, t in
                                  (("weight", w), ("bias", b))}, perms)
        return float(sum((wa * permuted[f"{i}.weight"]).sum() + (ba * permuted[f"{i}.bias"]).sum()
                         for i, (wa, ba) in enumerate(a)))

    history: list[float] = []
    converged, sweeps = False, 0
    while sweeps < max_sweeps:
        sweeps += 1
        changed = False
        for l in torch.randperm(hidden, generator=generator).tolist():
            _, cols = linear_sum_assignment(cost(l).numpy(), maximize=True)
            new = torch.as_tensor(cols, dtype=torch.long)
            if not torch.equal(new, perms[l]):
                perms[l], changed = new, True
        history.append(total())
        if not changed:
            converged = True
            break
    return Matching(perms, sweeps, converged, history)


# --------------------------------------------------------------------------
# The Bézier curve
# --------------------------------------------------------------------------
def bernstein(t: torch.Tensor) -> torch.Tensor:
    """The quadratic Bernstein weights [(1 - t)^2, 2 t (1 - t), t^2], one row per t."""
    t = t.reshape(-1, 1)
    return torch.cat([(1 - t) ** 2, 2 * t * (1 - t), t**2], dim=1)


def bezier_point(a: State, theta: State, b: State, t: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """phi(t) = (1 - t)^2 a + 2 t (1 - t) theta + t^2 b; a tensor t of n values gives n states stacked on a
    new leading axis. At t = 0 it is a, at t = 1 it is b, bit for bit (the other weights are exactly 0)."""
    stacked = torch.is_tensor(t) and t.dim() > 0
    w = bernstein(torch.as_tensor(t, dtype=torch.float64))
    out = {}
    for name, va in a.items():
        ww = w.to(device=va.device, dtype=va.dtype)
        shape = (-1, *([1] * va.dim()))
        point = ww[:, 0].view(shape) * va + ww[:, 1].view(shape) * theta[name] + ww[:, 2].view(shape) * b[name]
        out[name] = point if stacked else point[0]
    return out


class BezierCurve(nn.Module):
    """The curve between two fixed solutions with a trainable control point, for the one training loop.

    `theta` starts at `init` (Garipov et al.: the midpoint of the endpoints).
    Each forward in training mode draws one t ~ U(0, 1) from the module's own
    generator (seeded: the same draws on every run) and runs `net` at phi(t),
    so a training step on the loss of phi(t) is one stochastic step on the
    curve's expected loss, Garipov et al.'s objective; in eval mode it runs
    phi(`eval_t`). The endpoints are buffers: only theta is trained.
    """

    def __init__(self, net: nn.Module, a: State, b: State, init: State, seed: int) -> None:
        super().__init__()
        self.net = net
        self.names = list(a)
        self._safe = {name: name.replace(".", "__") for name in self.names}
        self.theta = nn.ParameterDict({self._safe[n]: nn.Parameter(init[n].detach().clone()) for n in self.names})
        for n in self.names:
            self.register_buffer(f"a__{self._safe[n]}", a[n].detach().clone())
            self.register_buffer(f"b__{self._safe[n]}", b[n].detach().clone())
        self.generator = torch.Generator().manual_seed(seed)
        self.eval_t = 0.5
        self.draws: list[float] = []
        for p in net.parameters():
            p.requires_grad_(False)

    def endpoint(self, which: str) -> dict[str, torch.Tensor]:
        return {n: getattr(self, f"{which}__{self._safe[n]}") for n in self.names}

    def control(self) -> dict[str, torch.Tensor]:
        return {n: self.theta[self._safe[n]] for n in self.names}

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if self.training:
            t = float(torch.rand((), generator=self.generator))
            self.draws.append(t)
        else:
            t = self.eval_t
        point = bezier_point(self.endpoint("a"), self.control(), self.endpoint("b"), t)
        return functional_call(self.net, point, (x,))


def curve_loss(
    net: nn.Sequential,
    a: State,
    theta: State,
    b: State,
    ts: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    t_chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean cross-entropy and accuracy over all of (x, y) at phi(t) for every t of `ts`: `combination_loss`
    at the Bernstein weights of (a, theta, b). States are keyed relative to `net`."""
    return combination_loss(net, [a, theta, b], bernstein(ts.to(torch.float64)), x, y, batch_size=batch_size,
                            chunk=t_chunk)
