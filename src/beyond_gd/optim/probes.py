"""What an adaptive optimizer's state says about its step: the per-parameter effective learning rate.

The chapter's adaptive methods divide a global learning rate by a running
root-mean-square of each parameter's gradients, so each parameter gets its own
effective step:

- AdaGrad: lr / (delta + sqrt(r)), r the running *sum* of g^2 (Duchi et al.
  2011), which only grows: its effective lr can only fall;
- RMSProp: lr / (delta + sqrt(r)), r an exponentially weighted *average* of g^2
  (Tieleman & Hinton 2012), which follows the recent gradients up and down;
- Adam: lr / (delta + sqrt(r_hat)), the factor on the (bias-corrected) first
  moment, r_hat = r / (1 - beta2^i) when corrected (Kingma & Ba 2015).

`effective_lr` reads it from a torch optimizer's own state, the same
arithmetic as its `step`; `quartiles` summarises it over the parameters.
A parameter whose gradient has been exactly zero at every step so far (on
MNIST, the first layer's weights from the pixels that are blank in every
image seen: about a tenth of the network) has r = 0 and no rate of its own
yet, only lr / delta, the guard against a division by zero; it is NaN here
and left out of the quartiles. Pure functions: nothing is changed.
"""

from __future__ import annotations

import torch

QUANTILES = (0.25, 0.5, 0.75)


def effective_lr(optimizer: torch.optim.Optimizer) -> torch.Tensor | None:
    """Every parameter's effective learning rate, flat, in parameter order (NaN where r = 0: no gradient yet);
    None for an optimizer without a per-parameter scale (SGD, momentum) or before its first step."""
    parts = []
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            if "sum" in state:  # torch.optim.Adagrad; its lr decays by 1 / (1 + (i - 1) lr_decay)
                step = float(state["step"])
                lr = group["lr"] / (1 + (step - 1) * group["lr_decay"])
                parts.append(_rated(state["sum"], lr / (state["sum"].sqrt() + group["eps"])))
            elif "square_avg" in state:  # torch.optim.RMSprop
                if group.get("centered"):
                    raise ValueError("effective_lr: centered RMSprop divides by a variance, not measured here")
                r = state["square_avg"]
                parts.append(_rated(r, group["lr"] / (r.sqrt() + group["eps"])))
            elif "exp_avg_sq" in state:  # torch.optim.Adam and beyond_gd.optim.adam.Adam
                correct = group.get("bias_correction", True)
                c2 = 1 - group["betas"][1] ** float(state["step"]) if correct else 1.0
                r = state["exp_avg_sq"]
                parts.append(_rated(r, group["lr"] / (r.sqrt() / c2**0.5 + group["eps"])))
            else:
                return None
    return torch.cat([t.reshape(-1) for t in parts]) if parts else None


def _rated(r: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    return torch.where(r > 0, lr, torch.nan)


def quartiles(values: torch.Tensor) -> dict[str, float]:
    """The lower quartile, median and upper quartile of `values`, NaN left out (linear interpolation,
    torch.nanquantile's)."""
    q = torch.nanquantile(values.double(), torch.tensor(QUANTILES, dtype=torch.float64, device=values.device))
    return {"lr_q25": q[0].item(), "lr_median": q[1].item(), "lr_q75": q[2].item()}
