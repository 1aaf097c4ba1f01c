"""Stage `identifiability`: Fig 6-2, permuted and rescaled hidden units leave the trained MLP unchanged.

Outputs (in `--out`):
- `trials.csv`: one row per (trial, transform): the largest change of any
  parameter, of any test logit (absolute and relative to the largest logit),
  of the test loss and accuracy, and how many test predictions changed.
  Transforms: `permutation` (random order of every hidden layer), `rescaling`
  (every ReLU unit's incoming weights and bias x k, outgoing x 1/k, k drawn
  log-uniformly), `both`, and `control` (incoming weights permuted without the
  outgoing ones: not a symmetry, so its change shows what a real change is).
- `example.json`: the figure's 3-neuron layer: weights before and after a
  permutation, outputs on probe inputs, and the output change for every ordering.
- `metrics.json`: worst case per transform, log10 of the number of equivalent
  orderings ((n!)^l, exactly via lgamma), float32 epsilon for scale.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from beyond_gd.config import required, section
from beyond_gd.data.mnist import load_tensors
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import identifiability as ident
from beyond_gd.model import load_state
from beyond_gd.runtime import seed_everything
from beyond_gd.stages.common import cli, staged
from beyond_gd.stages.trained import setup
from beyond_gd.tracking import stage_run, write_metrics

STAGE = "identifiability"
OUTPUTS = ("trials.csv", "example.json", "metrics.json")
# Enumerating every ordering of the example's hidden layer costs hidden! forwards.
MAX_EXAMPLE_HIDDEN = 6


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


def load_config(params: dict[str, Any]) -> IdentifiabilityConfig:
    """The `identifiability` section, with the checks that span fields."""
    cfg = section(params, STAGE, IdentifiabilityConfig)
    if cfg.scale_max < cfg.scale_min:
        raise ConfigError(f"{STAGE}.scale_max: must be >= {STAGE}.scale_min ({cfg.scale_min}), got {cfg.scale_max}")
    if cfg.example_hidden > MAX_EXAMPLE_HIDDEN:
        raise ConfigError(f"{STAGE}.example_hidden: at most {MAX_EXAMPLE_HIDDEN} (every ordering is checked), "
                          f"got {cfg.example_hidden}")
    return cfg


def main(argv: list[str] | None = None) -> None:
    st = setup(STAGE, __doc__, load_config, argv)
    cfg, model, device = st.cfg, st.model.eval(), st.device
    seed_everything(cfg.seed)
    state = load_state(st.baseline / "mnist.pt", model, device)
    x, y = load_tensors(st.args.data, train=False, device=device)
    layers = ident.linear_layers(model)
    widths = ident.hidden_widths(state, layers)
    gen = torch.Generator().manual_seed(cfg.seed)

    base_logits = _logits(model, state, x, cfg.eval_batch_size)
    base_loss, base_acc = _loss_accuracy(base_logits, y)
    rows = []
    for trial in range(cfg.trials):
        perms = [p.to(device) for p in ident.random_permutations(widths, gen)]
        scales = [k.to(device) for k in ident.random_scales(widths, cfg.scale_min, cfg.scale_max, gen)]
        transformed = {
            "permutation": ident.permute_units(state, layers, perms),
            "rescaling": ident.rescale_units(state, layers, scales),
            "both": ident.permute_units(ident.rescale_units(state, layers, scales), layers, perms),
            "control": ident.permute_incoming_only(state, layers, perms),
        }
        for name, new in transformed.items():
            logits = _logits(model, new, x, cfg.eval_batch_size)
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
    example = ident.tiny_example(cfg.example_in_dim, cfg.example_hidden, cfg.example_out_dim,
                                 cfg.example_probes, gen)
    worst = trials.groupby("transform").max(numeric_only=True)
    metrics = {
        "log10_orderings": ident.log10_orderings(widths),
        "hidden_layers": len(widths),
        "test_loss": base_loss,
        "max_abs_logit": base_logits.abs().max().item(),
        "float32_eps": torch.finfo(torch.float32).eps,
        **{name: {k: float(worst.loc[name, k]) for k in
                  ("max_param_change", "max_logit_change", "rel_logit_change", "test_loss_change",
                   "test_accuracy_change", "predictions_changed")} for name in worst.index},
        "example_orderings": len(example.orderings),
        "example_max_output_change": max(example.max_output_change),
    }

    out = st.out
    with stage_run(STAGE, st.read, device), staged(*(out / n for n in OUTPUTS)) as paths:
        tmp = dict(zip(OUTPUTS, paths, strict=True))
        trials.to_csv(tmp["trials.csv"], index=False)
        tmp["example.json"].write_text(json.dumps(dataclasses.asdict(example), indent=2) + "\n")
        write_metrics(tmp["metrics.json"], metrics)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if not isinstance(v, dict)}
                           | {f"{name}.{k}": v for name in worst.index for k, v in metrics[name].items()})
    for name in worst.index:
        m = metrics[name]
        print(f"{STAGE}: {name}: parameters moved up to {m['max_param_change']:.3g}, logits by "
              f"{m['max_logit_change']:.3g}, test loss by {m['test_loss_change']:.3g}")
    print(f"{STAGE}: log10 of equivalent orderings {metrics['log10_orderings']:.2f} (hidden widths {widths})")


@torch.inference_mode()
def _logits(model: nn.Module, state: dict[str, torch.Tensor], x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([functional_call(model, state, (x[s : s + batch_size],)) for s in range(0, len(x), batch_size)])


def _loss_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    loss = F.cross_entropy(logits.double(), y).item()
    return loss, (logits.argmax(1) == y).double().mean().item()


if __name__ == "__main__":
    cli(main)
