"""Adam with its bias correction as a switch: the chapter's ablation of "Adam's bias correction".

torch.optim.Adam always corrects both moments (Kingma & Ba 2015, Algorithm 1):
m_hat = m / (1 - beta1^i), r_hat = r / (1 - beta2^i). This class is the same
update written out, with `bias_correction=False` dropping both divisions, so
the first steps use the raw, zero-initialised moments. With a constant
gradient g the uncorrected i-th step is lr (1 - beta1^i) / sqrt(1 - beta2^i)
(about 3.2 lr at i = 1 for the default betas) instead of lr: the correction
matters most in the first few hundred steps (1 / (1 - beta2) = 1,000).

With `bias_correction=True` it matches torch.optim.Adam (amsgrad and weight
decay aside, which it does not take), which tests/test_adam.py checks step by
step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch


class Adam(torch.optim.Optimizer):
    """Adam (Kingma & Ba 2015) with or without its bias correction; eps is added outside the square root,
    as torch.optim.Adam adds it."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, bias_correction: bool = True) -> None:
        if not lr > 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"Invalid beta parameters: {betas}")
        if not eps >= 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps, "bias_correction": bias_correction})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                m, r = state["exp_avg"], state["exp_avg_sq"]
                m.lerp_(p.grad, 1 - beta1)
                r.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
                if group["bias_correction"]:
                    c1, c2 = 1 - beta1 ** state["step"], 1 - beta2 ** state["step"]
                else:
                    c1 = c2 = 1.0
                denom = (r.sqrt() / c2**0.5).add_(group["eps"])
                p.addcdiv_(m, denom, value=-group["lr"] / c1)
        return loss
