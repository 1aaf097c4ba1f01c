"""Stage `update_rules`: the chapter's update rules beside torch.optim, and Adam's bias, as artifacts.

The maths is `beyond_gd.optim.rules`; this stage runs it with the `update_rules`
section and the book's torch.optim calls (section `optimizers`) and writes,
in `--out`:
- `findings.csv`: one row per comparison (rules.COMPARISONS): rule, case,
  optimizer (the `optimizers` entry on torch's side), book_form, torch_form,
  max_abs_diff (largest |book rule - torch| over every parameter and step),
  agrees (max_abs_diff <= tolerance), same_maths (what the algebra predicts).
- `adam_bias.csv`: step (i = 1..steps), measured (E[v_i] / E[g^2] on i.i.d.
  gradients), theory (1 - beta2^i), rel_error (measured / theory - 1).
- `metrics.json`: tolerance, steps, counts, the largest difference where the maths is
  the same and the smallest where it is not, whether every finding bears out
  the algebra, Adam's beta2 and the largest relative bias error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import torch

from beyond_gd.config import OptimizerConfig, as_dict, load_params, required, section, section_map
from beyond_gd.errors import ConfigError
from beyond_gd.optim import rules
from beyond_gd.stages.common import cli, parser, staged
from beyond_gd.tracking import stage_run, write_metrics

STAGE = "update_rules"
OUTPUTS = ("findings.csv", "adam_bias.csv", "metrics.json")


@dataclass
class StreamConfig:
    samples: int = required(gt=0)
    features: int = required(gt=0)
    outputs: int = required(gt=0)
    batch_size: int = required(gt=0)
    min_feature_scale: float = required(gt=0)
    seed: int = required(ge=0)


@dataclass
class AdamBiasConfig:
    optimizer: str = required(nonempty=True)  # the `optimizers` entry whose betas[1] is measured
    steps: int = required(gt=0)
    repeats: int = required(gt=1)
    seed: int = required(ge=0)


@dataclass
class _Sections:
    steps: int = required(gt=0)
    tolerance: float = required(gt=0)
    book_delta: float = required(gt=0)
    lr_drop_factor: float = required(gt=0)
    threads: int = required(gt=0)
    stream: dict[str, Any] = required()
    adam_bias: dict[str, Any] = required()


@dataclass
class UpdateRulesConfig:
    steps: int
    tolerance: float
    book_delta: float
    lr_drop_factor: float
    threads: int
    stream: StreamConfig
    adam_bias: AdamBiasConfig


def load_config(params: dict[str, Any]) -> tuple[UpdateRulesConfig, dict[str, OptimizerConfig]]:
    """Sections `update_rules` and `optimizers`; every problem is one ConfigError naming the key."""
    top = section(params, STAGE, _Sections)
    cfg = UpdateRulesConfig(
        steps=top.steps, tolerance=top.tolerance, book_delta=top.book_delta, lr_drop_factor=top.lr_drop_factor,
        threads=top.threads,
        stream=section({f"{STAGE}.stream": top.stream}, f"{STAGE}.stream", StreamConfig),
        adam_bias=section({f"{STAGE}.adam_bias": top.adam_bias}, f"{STAGE}.adam_bias", AdamBiasConfig))
    if cfg.stream.batch_size > cfg.stream.samples:
        raise ConfigError(f"{STAGE}.stream.batch_size: must be <= {STAGE}.stream.samples "
                          f"({cfg.stream.samples}), got {cfg.stream.batch_size}")
    configs = section_map(params, "optimizers", OptimizerConfig)
    needed = sorted({c.optimizer for c in rules.COMPARISONS} | {cfg.adam_bias.optimizer})
    for name in needed:
        if name not in configs:
            raise ConfigError(f"optimizers.{name}: missing (update_rules compares it; have: {', '.join(configs)})")
    betas = configs[cfg.adam_bias.optimizer].kwargs.get("betas")
    if not (isinstance(betas, list | tuple) and len(betas) == 2 and 0 < betas[1] < 1):
        raise ConfigError(f"{STAGE}.adam_bias.optimizer: optimizers.{cfg.adam_bias.optimizer}.kwargs.betas must be "
                          f"[beta1, beta2] with 0 < beta2 < 1, got {betas!r}")
    return cfg, {name: configs[name] for name in needed}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--out", default="data/update_rules", help="folder for the outputs")
    args = p.parse_args(argv)
    cfg, configs = load_config(load_params(args.params))
    torch.set_num_threads(cfg.threads)

    # The book's equations beside torch.optim on one stream of mini-batch gradients.
    stream = rules.regression_stream(**as_dict(cfg.stream), steps=cfg.steps)
    found = rules.findings(configs, stream, cfg.steps, cfg.book_delta, cfg.lr_drop_factor, cfg.tolerance)
    findings = pd.DataFrame([{"rule": f.rule, "case": f.case, "optimizer": c.optimizer, "book_form": f.book_form,
                              "torch_form": f.torch_form, "max_abs_diff": f.max_abs_diff, "agrees": f.agrees,
                              "same_maths": f.same_maths} for f, c in zip(found, rules.COMPARISONS, strict=True)])

    # Adam's second moment: how far below E[g^2] the uncorrected v_i sits.
    beta2 = float(configs[cfg.adam_bias.optimizer].kwargs["betas"][1])
    ratio, theory = rules.second_moment_bias(beta2, cfg.adam_bias.steps, cfg.adam_bias.repeats, cfg.adam_bias.seed)
    bias = pd.DataFrame({"step": range(1, cfg.adam_bias.steps + 1), "measured": ratio.numpy(),
                         "theory": theory.numpy(), "rel_error": (ratio / theory - 1).numpy()})

    same, differ = findings[findings["same_maths"]], findings[~findings["same_maths"]]
    metrics = {
        "tolerance": cfg.tolerance,
        "steps": cfg.steps,
        "comparisons": len(findings),
        "same_maths": len(same),
        "agree": int(findings["agrees"].sum()),
        # Every identity holds and every predicted difference is real.
        "all_borne_out": bool((findings["agrees"] == findings["same_maths"]).all()),
        "max_diff_same_maths": float(same["max_abs_diff"].max()) if len(same) else None,
        "min_diff_differing": float(differ["max_abs_diff"].min()) if len(differ) else None,
        "adam_beta2": beta2,
        "adam_bias_v1_ratio": float(ratio[0]),
        "adam_bias_max_abs_rel_error": float(bias["rel_error"].abs().max()),
    }

    out = Path(args.out)
    used = {STAGE: as_dict(cfg), "optimizers": {name: as_dict(c) for name, c in configs.items()}}
    with stage_run(STAGE, used), staged(*(out / n for n in OUTPUTS)) as paths:
        tmp = dict(zip(OUTPUTS, paths, strict=True))
        findings.to_csv(tmp["findings.csv"], index=False)
        bias.to_csv(tmp["adam_bias.csv"], index=False)
        write_metrics(tmp["metrics.json"], metrics)
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v is not None})
    print(f"{STAGE}: {metrics['agree']}/{metrics['comparisons']} comparisons agree to {cfg.tolerance:g} "
          f"(expected {metrics['same_maths']}); borne out: {metrics['all_borne_out']}; "
          f"Adam bias max rel error {metrics['adam_bias_max_abs_rel_error']:.3f}")


if __name__ == "__main__":
    cli(main)
