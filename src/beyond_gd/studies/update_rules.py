"""The chapter's update rules beside torch.optim, and Adam's moment bias.

The maths is `beyond_gd.optim.rules`; this study runs it with the
`update_rules` section and the book's torch.optim calls (section `optimizers`).
Tables: `findings.csv`, one row per comparison (rules.COMPARISONS): rule,
case, optimizer (the `optimizers` entry on torch's side), book_form,
torch_form, max_abs_diff (the largest |book rule - torch| over every parameter
and step), agrees (max_abs_diff <= tolerance), same_maths (what the algebra
predicts); `adam_bias.csv`: moment (first: E[m_i] / E[g], theory 1 - beta1^i;
second: E[v_i] / E[g^2], theory 1 - beta2^i), step i = 1..steps, measured on
i.i.d. gradients, theory, rel_error = measured / theory - 1.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd
import torch

from beyond_gd.config import entries, optimizer_names, required
from beyond_gd.errors import ConfigError
from beyond_gd.optim import rules
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.study import Inputs, Result


@dataclass
class StreamConfig:
    samples: int = required(gt=0)
    features: int = required(gt=0)
    outputs: int = required(gt=0)
    batch_size: int = required(gt=0)
    min_feature_scale: float = required(gt=0)
    seed: int = required(ge=0)

    def check(self) -> None:
        if self.batch_size > self.samples:
            raise ConfigError(f"batch_size: must be <= samples ({self.samples}), got {self.batch_size}")


@dataclass
class AdamBiasConfig:
    optimizer: str = optimizer_names(nonempty=True)  # the `optimizers` entry whose betas are measured
    steps: int = required(gt=0)
    repeats: int = required(gt=1)
    seed: int = required(ge=0)
    first_moment_mean: float = required(gt=0)  # E[g] of the stream m_i averages (E[m_i] / E[g] needs E[g] != 0)


@dataclass
class UpdateRulesConfig:
    steps: int = required(gt=0)
    tolerance: float = required(gt=0)
    book_delta: float = required(gt=0)
    lr_drop_factor: float = required(gt=0)
    threads: int = required(gt=0)
    stream: StreamConfig = required()
    adam_bias: AdamBiasConfig = required()


@dataclass
class Config:
    update_rules: UpdateRulesConfig
    # The entries the chapter's rules are compared with (rules.COMPARISONS), and adam_bias.optimizer.
    optimizers: dict[str, OptimizerSpec] = entries(*dict.fromkeys(c.optimizer for c in rules.COMPARISONS))

    def check(self) -> None:
        if missing := [c.optimizer for c in rules.COMPARISONS if c.optimizer not in self.optimizers]:
            raise ConfigError(f"optimizers.{missing[0]}: missing (update_rules compares it; have: "
                              f"{', '.join(self.optimizers)})")
        name = self.update_rules.adam_bias.optimizer
        betas = self.optimizers[name].default("betas")
        if not (isinstance(betas, list | tuple) and len(betas) == 2 and all(0 < b < 1 for b in betas)):
            raise ConfigError(f"update_rules.adam_bias.optimizer: optimizers.{name}.betas must be [beta1, beta2] "
                              f"with both in (0, 1), got {betas!r}")


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.update_rules
    torch.set_num_threads(c.threads)
    # The book's equations beside torch.optim on one stream of mini-batch gradients.
    stream = rules.regression_stream(**dataclasses.asdict(c.stream), steps=c.steps)
    found = rules.findings(cfg.optimizers, stream, c.steps, c.book_delta, c.lr_drop_factor, c.tolerance)
    findings = pd.DataFrame([{"rule": f.rule, "case": f.case, "optimizer": comp.optimizer, "book_form": f.book_form,
                              "torch_form": f.torch_form, "max_abs_diff": f.max_abs_diff, "agrees": f.agrees,
                              "same_maths": f.same_maths} for f, comp in zip(found, rules.COMPARISONS, strict=True)])
    # Adam's moments: how far below E[g] and E[g^2] the uncorrected m_i and v_i sit.
    b = c.adam_bias
    beta1, beta2 = (float(x) for x in cfg.optimizers[b.optimizer].default("betas"))
    parts = []
    for moment, beta, power, mean in (("first", beta1, 1, b.first_moment_mean), ("second", beta2, 2, 0.0)):
        ratio, theory = rules.moment_bias(beta, power, b.steps, b.repeats, b.seed, mean)
        parts.append(pd.DataFrame({"moment": moment, "step": range(1, b.steps + 1), "measured": ratio.numpy(),
                                   "theory": theory.numpy(), "rel_error": (ratio / theory - 1).numpy()}))
    bias = pd.concat(parts, ignore_index=True)
    at_1 = bias[bias["step"] == 1].set_index("moment")["measured"]
    same, differ = findings[findings["same_maths"]], findings[~findings["same_maths"]]
    summary = {
        "tolerance": c.tolerance,
        "steps": c.steps,
        "comparisons": len(findings),
        "same_maths": len(same),
        "agree": int(findings["agrees"].sum()),
        # Every identity holds and every predicted difference is real.
        "all_borne_out": bool((findings["agrees"] == findings["same_maths"]).all()),
        "max_diff_same_maths": float(same["max_abs_diff"].max()) if len(same) else None,
        "min_diff_differing": float(differ["max_abs_diff"].min()) if len(differ) else None,
        "adam_beta1": beta1,
        "adam_beta2": beta2,
        "adam_bias_m1_ratio": float(at_1["first"]),
        "adam_bias_v1_ratio": float(at_1["second"]),
        "adam_bias_max_abs_rel_error": float(bias["rel_error"].abs().max()),
    }
    return Result(
        metrics={k: summary[k] for k in ("comparisons", "agree", "adam_bias_max_abs_rel_error")},
        summary=summary, tables={"findings.csv": findings, "adam_bias.csv": bias},
        lines=[f"{summary['agree']}/{summary['comparisons']} comparisons agree to {c.tolerance:g} (expected "
               f"{summary['same_maths']}); borne out: {summary['all_borne_out']}; Adam bias max rel error "
               f"{summary['adam_bias_max_abs_rel_error']:.3f}"],
    )
