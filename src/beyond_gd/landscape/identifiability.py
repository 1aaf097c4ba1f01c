"""Fig 6-2: many parameter settings give the same network (model identifiability).

For a chain of Linear layers with ReLU between them, hidden unit j of layer i
is the row j of W_i and entry j of b_i, and the column j of W_{i+1}. Two
families of changes leave the function unchanged (the book, "Local minima in
the error surfaces of deep networks"):
- permuting the units of a hidden layer: rows of W_i, b_i and columns of
  W_{i+1} with the same permutation; a layer of n units has n! orderings, l
  such layers (n!)^l;
- rescaling a ReLU unit: its incoming weights and bias times k > 0, its
  outgoing weights times 1/k, since relu(k z) = k relu(z) for k > 0.
States are plain state_dicts; nothing here changes its inputs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import permutations

import torch
from torch import nn

State = Mapping[str, torch.Tensor]


def linear_layers(model: nn.Module) -> list[str]:
    """Names of the model's Linear modules in forward order (for Net: classifier.1, .3, .5)."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]


def hidden_widths(state: State, layers: Sequence[str]) -> list[int]:
    """Units per hidden layer: every Linear but the last feeds a hidden layer."""
    return [state[f"{name}.weight"].shape[0] for name in layers[:-1]]


def permute_units(state: State, layers: Sequence[str], perms: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reorder each hidden layer's units: `perms[i]` for the output of `layers[i]`."""
    out = dict(state)
    for i, perm in enumerate(perms):
        into, after = layers[i], layers[i + 1]
        out[f"{into}.weight"] = out[f"{into}.weight"][perm]
        out[f"{into}.bias"] = out[f"{into}.bias"][perm]
        out[f"{after}.weight"] = out[f"{after}.weight"][:, perm]
    return out


def rescale_units(state: State, layers: Sequence[str], scales: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scale each hidden unit's incoming weights and bias by k and its outgoing weights by 1/k: a symmetry of a
    ReLU unit for k > 0 (relu(k x) = k relu(x)); for k < 0 it is not, and the network changes."""
    out = dict(state)
    for i, k in enumerate(scales):
        into, after = layers[i], layers[i + 1]
        out[f"{into}.weight"] = out[f"{into}.weight"] * k[:, None]
        out[f"{into}.bias"] = out[f"{into}.bias"] * k
        out[f"{after}.weight"] = out[f"{after}.weight"] / k[None, :]
    return out


def permute_incoming_only(state: State, layers: Sequence[str],
                          perms: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """A control that is NOT a symmetry: reorder units without reordering the next layer's columns."""
    out = dict(state)
    for i, perm in enumerate(perms):
        out[f"{layers[i]}.weight"] = out[f"{layers[i]}.weight"][perm]
        out[f"{layers[i]}.bias"] = out[f"{layers[i]}.bias"][perm]
    return out


def random_permutations(widths: Sequence[int], generator: torch.Generator) -> list[torch.Tensor]:
    return [torch.randperm(n, generator=generator) for n in widths]


def random_scales(widths: Sequence[int], low: float, high: float, generator: torch.Generator) -> list[torch.Tensor]:
    """Per-unit factors drawn log-uniformly from [low, high] (as likely to shrink as to grow)."""
    lo, hi = math.log(low), math.log(high)
    return [torch.exp(lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)).float()
            for n in widths]


# --------------------------------------------------------------------------
# The diagram: a 3-neuron hidden layer, permuted
# --------------------------------------------------------------------------
@dataclass
class TinyExample:
    """A Linear-ReLU-Linear network small enough to draw, and every ordering of its hidden layer.

    `w_in` [hidden, in], `b_in` [hidden], `w_out` [out, hidden], `b_out` [out];
    `perm` is the permutation drawn in the figure and `*_permuted` the weights
    after it; `max_output_change` holds, for every one of the hidden! orderings
    (in `orderings`), the largest change of the outputs on `probe`.
    """

    w_in: list[list[float]]
    b_in: list[float]
    w_out: list[list[float]]
    b_out: list[float]
    perm: list[int]
    w_in_permuted: list[list[float]]
    b_in_permuted: list[float]
    w_out_permuted: list[list[float]]
    probe: list[list[float]]
    outputs: list[list[float]]
    outputs_permuted: list[list[float]]
    orderings: list[list[int]]
    max_output_change: list[float]


def tiny_example(in_dim: int, hidden: int, out_dim: int, probes: int, generator: torch.Generator) -> TinyExample:
    """Draw a tiny network and a non-identity permutation of its hidden layer, and check every ordering."""
    net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=generator))
    state = {k: v.detach() for k, v in net.state_dict().items()}
    layers = ["0", "2"]
    probe = torch.randn(probes, in_dim, generator=generator)
    perm = torch.randperm(hidden, generator=generator)
    while hidden > 1 and torch.equal(perm, torch.arange(hidden)):
        perm = torch.randperm(hidden, generator=generator)

    def outputs(s: State) -> torch.Tensor:
        return torch.func.functional_call(net, dict(s), (probe,)).detach()

    base = outputs(state)
    permuted = permute_units(state, layers, [perm])
    orders = [list(p) for p in permutations(range(hidden))]
    changes = [(outputs(permute_units(state, layers, [torch.tensor(o)])) - base).abs().max().item() for o in orders]
    return TinyExample(
        w_in=state["0.weight"].tolist(), b_in=state["0.bias"].tolist(),
        w_out=state["2.weight"].tolist(), b_out=state["2.bias"].tolist(),
        perm=perm.tolist(),
        w_in_permuted=permuted["0.weight"].tolist(), b_in_permuted=permuted["0.bias"].tolist(),
        w_out_permuted=permuted["2.weight"].tolist(),
        probe=probe.tolist(), outputs=base.tolist(), outputs_permuted=outputs(permuted).tolist(),
        orderings=orders, max_output_change=changes,
    )
