"""Fig 6-2: permuted and rescaled hidden units leave the trained MLP unchanged.

Tables: `trials.csv`, one row per (trial, transform): the largest change of
any parameter, of any test logit (absolute and relative to the largest
logit), of the test loss and accuracy, and how many test predictions changed.
Transforms: `permutation` (a random order of every hidden layer), `rescaling`
(every ReLU unit's incoming weights and bias x k, outgoing x 1/k, k drawn
log-uniformly), `both`, `negative_rescaling` (the same with -k: the chapter
says any non-zero k, but ReLU commutes with k > 0 only), and `control`
(incoming weights permuted without the outgoing ones: no symmetry, so its
change shows what a real change is).
`example.json`: the figure's 3-neuron layer, its weights before and after a
permutation, its outputs on probe inputs, the output change for every ordering.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from beyond_gd.config import ModelConfig, RuntimeConfig, required
from beyond_gd.data.mnist import load_tensors
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import identifiability as ident
from beyond_gd.measures import log10_orderings
from beyond_gd.model import build_model, load_state
from beyond_gd.runtime import seed_everything
from beyond_gd.study import Inputs, Result

# Enumerating every ordering of the example's hidden layer costs hidden! forwards.
MAX_EXAMPLE_HIDDEN = 6
CHANGES = ("max_param_change", "max_logit_change", "rel_logit_change", "test_loss_change", "test_accuracy_change",
           "predictions_changed")
SYMMETRIES = ("permutation", "rescaling", "both")


@dataclass
class IdentifiabilityConfig:
    seed: int = required(ge=0)
    trials: int = required(gt=0)
    # Rescaling factors k are drawn log-uniformly from [scale_min, scale_max].
    scale_min: float = required(gt=0)
    scale_max: float = required(gt=0)
    eval_batch_size: int = required(gt=0)
    example_in_dim: int = required(gt=0)
    example_hidden: int = required(gt=0)
    example_out_dim: int = required(gt=0)
    example_probes: int = required(gt=0)

    def check(self) -> None:
        if self.scale_max < self.scale_min:
            raise ConfigError(f"scale_max: must be >= scale_min ({self.scale_min}), got {self.scale_max}")
        if self.example_hidden > MAX_EXAMPLE_HIDDEN:
            raise ConfigError(f"example_hidden: at most {MAX_EXAMPLE_HIDDEN} (every ordering is checked), "
                              f"got {self.example_hidden}")


@dataclass
class Config:
    identifiability: IdentifiabilityConfig
    model: ModelConfig
    runtime: RuntimeConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c, device = cfg.identifiability, inputs.torch_device
    seed_everything(c.seed)
    model = build_model(cfg.model).to(device).eval()
    state = load_state(inputs.folder("baseline") / "mnist.pt", model, device)
    x, y = load_tensors(inputs.folder("mnist"), train=False, device=device)
    layers = ident.linear_layers(model)
    widths = ident.hidden_widths(state, layers)
    gen = torch.Generator().manual_seed(c.seed)

    base_logits = _logits(model, state, x, c.eval_batch_size)
    base_loss, base_acc = _loss_accuracy(base_logits, y)
    rows = []
    for trial in range(c.trials):
        perms = [p.to(device) for p in ident.random_permutations(widths, gen)]
        scales = [k.to(device) for k in ident.random_scales(widths, c.scale_min, c.scale_max, gen)]
        transformed = {
            "permutation": ident.permute_units(state, layers, perms),
            "rescaling": ident.rescale_units(state, layers, scales),
            "both": ident.permute_units(ident.rescale_units(state, layers, scales), layers, perms),
            # The chapter says any non-zero k; ReLU commutes only with k > 0 (relu(-x) != -relu(x)).
            "negative_rescaling": ident.rescale_units(state, layers, [-k for k in scales]),
            "control": ident.permute_incoming_only(state, layers, perms),
        }
        for name, new in transformed.items():
            logits = _logits(model, new, x, c.eval_batch_size)
            loss, acc = _loss_accuracy(logits, y)
            change = (logits - base_logits).abs().max().item()
            rows.append({
                "trial": trial, "transform": name,
                "max_param_change": max((new[k] - state[k]).abs().max().item() for k in state),
                "max_logit_change": change,
                "rel_logit_change": change / base_logits.abs().max().item(),
                "test_loss": loss, "test_loss_change": abs(loss - base_loss),
                "test_accuracy_change": abs(acc - base_acc),
                "predictions_changed": int((logits.argmax(1) != base_logits.argmax(1)).sum()),
            })
    trials = pd.DataFrame(rows)
    example = ident.tiny_example(c.example_in_dim, c.example_hidden, c.example_out_dim, c.example_probes, gen)
    worst = trials.groupby("transform").max(numeric_only=True)
    summary = {
        "log10_orderings": log10_orderings(widths),
        "hidden_layers": len(widths),
        "test_loss": base_loss,
        "max_abs_logit": base_logits.abs().max().item(),
        "float32_eps": torch.finfo(torch.float32).eps,
        **{name: {k: float(worst.loc[name, k]) for k in CHANGES} for name in worst.index},
        "example_orderings": len(example.orderings),
        "example_max_output_change": max(example.max_output_change),
    }
    return Result(
        metrics={"symmetry_rel_logit_change": max(summary[n]["rel_logit_change"] for n in SYMMETRIES),
                 "control_rel_logit_change": summary["control"]["rel_logit_change"]},
        summary=summary, tables={"trials.csv": trials}, documents={"example.json": dataclasses.asdict(example)},
        lines=[f"{name}: parameters moved up to {m['max_param_change']:.3g}, logits by {m['max_logit_change']:.3g}, "
               f"test loss by {m['test_loss_change']:.3g}" for name in worst.index for m in [summary[name]]]
        + [f"log10 of equivalent orderings {summary['log10_orderings']:.2f} (hidden widths {widths})"],
    )


@torch.inference_mode()
def _logits(model: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([functional_call(model, state, (x[s : s + batch_size],)) for s in range(0, len(x), batch_size)])


def _loss_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss = F.cross_entropy(logits.double(), y).item()
    return loss, (logits.argmax(1) == y).double().mean().item()
