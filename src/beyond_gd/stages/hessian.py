"""Stage `hessian` (beyond the book): the loss Hessian's extreme eigenvalues and trace along the Fig 6-3 path.

At theta(alpha) = (1 - alpha) * theta_opt + alpha * theta_init (alpha = 0: the
SGD solution, always included; theta_init: the baseline's own init.pt), on a
fixed random subset of one split, from Hessian-vector products only.
Outputs (in `--out`):
- `eigenvalues.csv`: per alpha, the top_k largest and the most negative
  eigenvalue (Lanczos), each with its residual ||Hy - lambda y||, the Lanczos
  bound and whether the residual is within residual_tol x lambda_max.
- `ritz.csv`: every Ritz value per alpha with its weight (the squared first
  component of T's eigenvector: a spectral density estimate, Ghorbani et al. 2019).
- `trace.csv`: the Hutchinson draws per alpha and their running mean.
- `path.csv`: per alpha: subset loss, gradient norm, lambda_max, lambda_min,
  trace estimate and its standard error, and three conditioning ratios.
- `metrics.json`: the same at the SGD solution, lambda_max per alpha, the stage time.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from beyond_gd.config import required, section
from beyond_gd.data.mnist import load_tensors
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import hessian as hs
from beyond_gd.landscape.interpolation import mix
from beyond_gd.model import load_state
from beyond_gd.runtime import seed_everything
from beyond_gd.stages.common import cli, staged
from beyond_gd.stages.trained import setup
from beyond_gd.tracking import log_series, stage_run, write_metrics

STAGE = "hessian"
OUTPUTS = ("eigenvalues.csv", "ritz.csv", "trace.csv", "path.csv", "metrics.json")


@dataclass
class HessianConfig:
    # Points on the Fig 6-3 path; 0 (the SGD solution) is added if missing.
    alphas: list[float] = required(nonempty=True)
    split: str = required(choices=("train", "test"))
    subset_size: int = required(gt=0)
    subset_seed: int = required(ge=0)
    # Examples per double-backward pass.
    batch_size: int = required(gt=0)
    top_k: int = required(gt=0)
    lanczos_steps: int = required(gt=0)
    trace_samples: int = required(gt=1)
    # A Ritz pair counts as converged when ||Hy - lambda y|| <= residual_tol * lambda_max.
    residual_tol: float = required(gt=0)
    # Lanczos start vector and Hutchinson probes.
    seed: int = required(ge=0)


def load_config(params: dict[str, Any]) -> HessianConfig:
    """The `hessian` section, with the checks that span fields."""
    cfg = section(params, STAGE, HessianConfig)
    if cfg.lanczos_steps <= cfg.top_k:
        raise ConfigError(f"{STAGE}.lanczos_steps: must be > {STAGE}.top_k ({cfg.top_k}), got {cfg.lanczos_steps}")
    return cfg


def main(argv: list[str] | None = None) -> None:
    st = setup(STAGE, __doc__, load_config, argv)
    cfg, args, model, device = st.cfg, st.args, st.model, st.device
    seed_everything(cfg.seed)
    theta_opt = load_state(st.baseline / "mnist.pt", model, device)
    theta_init = load_state(st.baseline / "init.pt", model, device)
    x, y = load_tensors(args.data, train=cfg.split == "train", device=device)
    if cfg.subset_size > len(x):
        raise ConfigError(f"{STAGE}.subset_size: the {cfg.split} split has {len(x)} examples, got {cfg.subset_size}")
    # The same subset at every alpha, so the curves differ only by theta.
    subset = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.subset_seed))[: cfg.subset_size]
    x, y = x[subset.to(device)], y[subset.to(device)]
    alphas = sorted(set(cfg.alphas) | {0.0})
    dim = hs.FlatLayout.of(theta_opt).dim
    gen = torch.Generator().manual_seed(cfg.seed)

    out = st.out
    with stage_run(STAGE, st.read, device) as run, staged(*(out / n for n in OUTPUTS)) as paths:
        tmp = dict(zip(OUTPUTS, paths, strict=True))
        start = time.perf_counter()
        eig_rows, ritz_rows, trace_rows, path_rows = [], [], [], []
        for alpha in tqdm(alphas, desc=STAGE, unit="alpha", disable=args.no_progress):
            state = {k: v[0] for k, v in mix(theta_opt, theta_init, torch.tensor([alpha])).items()}
            hvp = hs.loss_hvp(model, state, x, y, cfg.batch_size)
            lanczos = hs.lanczos(hvp, dim, cfg.lanczos_steps, gen, device)
            pairs = hs.extreme_eigenpairs(hvp, lanczos, cfg.top_k)
            draws = hs.hutchinson(hvp, dim, cfg.trace_samples, gen, device)
            loss, grad_norm = hs.loss_and_grad_norm(model, state, x, y, cfg.batch_size)

            top = [pr for pr in pairs if pr.which == "top"]
            lam_max, lam_min, lam_k = top[0].value, pairs[-1].value, top[-1].value
            eig_rows += [{"alpha": alpha, **dataclasses.asdict(pr),
                          "converged": pr.residual <= cfg.residual_tol * abs(lam_max)} for pr in pairs]
            values, vectors = lanczos.ritz()
            ritz_rows += [{"alpha": alpha, "index": i, "ritz_value": v, "weight": w}
                          for i, (v, w) in enumerate(zip(values, vectors[0] ** 2, strict=True))]
            trace_rows += [{"alpha": alpha, "sample": i + 1, "estimate": d, "running_mean": r}
                           for i, (d, r) in enumerate(zip(draws, np.cumsum(draws) / np.arange(1, len(draws) + 1),
                                                          strict=True))]
            trace = float(draws.mean())
            path_rows.append({
                "alpha": alpha, "loss": loss, "grad_norm": grad_norm, "lambda_max": lam_max,
                "lambda_min": lam_min, "trace": trace, "trace_stderr": float(draws.std(ddof=1) / np.sqrt(len(draws))),
                # Conditioning: top over k-th, over |most negative|, over the mean eigenvalue tr/n.
                "top_over_kth": lam_max / lam_k, "top_over_abs_min": lam_max / abs(lam_min),
                "top_over_mean": lam_max * dim / trace,
                "lanczos_steps": len(lanczos.alphas),
                "max_residual": max(pr.residual for pr in pairs),
                "converged": all(pr.residual <= cfg.residual_tol * abs(lam_max) for pr in pairs),
            })
        seconds = time.perf_counter() - start

        path = pd.DataFrame(path_rows)
        at0 = path_rows[alphas.index(0.0)]
        top0 = [r for r in eig_rows if r["alpha"] == 0.0 and r["which"] == "top"]
        metrics = {
            "seconds": seconds, "parameters": dim, "subset_size": cfg.subset_size,
            "solution": {**{k: at0[k] for k in ("loss", "grad_norm", "lambda_max", "lambda_min", "trace",
                                                "trace_stderr", "top_over_kth", "top_over_abs_min",
                                                "top_over_mean", "max_residual", "converged")},
                         **{f"lambda_{r['rank']}": r["value"] for r in top0}},
            "path": {_key(r["alpha"]): {k: r[k] for k in ("lambda_max", "lambda_min", "trace", "converged")}
                     for r in path_rows},
        }
        pd.DataFrame(eig_rows).to_csv(tmp["eigenvalues.csv"], index=False)
        pd.DataFrame(ritz_rows).to_csv(tmp["ritz.csv"], index=False)
        pd.DataFrame(trace_rows).to_csv(tmp["trace.csv"], index=False)
        path.to_csv(tmp["path.csv"], index=False)
        write_metrics(tmp["metrics.json"], metrics)

        log_series(run.info.run_id, {k: path[k].to_numpy() for k in
                                     ("alpha", "loss", "grad_norm", "lambda_max", "lambda_min", "trace")},
                   list(range(len(path))))
        mlflow.log_metrics({f"solution.{k}": float(v) for k, v in metrics["solution"].items()} | {"seconds": seconds})
    tops = ", ".join(f"{r['value']:.4g}" for r in top0)
    print(f"{STAGE}: at the SGD solution: top eigenvalues {tops}; most negative {at0['lambda_min']:.4g}; "
          f"trace {at0['trace']:.4g} +- {at0['trace_stderr']:.2g}; largest residual {at0['max_residual']:.2g}")
    print(f"{STAGE}: {len(alphas)} alphas in {seconds:.1f} s; lambda_max along the path: "
          + ", ".join(f"{r['alpha']:g}: {r['lambda_max']:.4g}" for r in path_rows))


def _key(alpha: float) -> str:
    # DVC joins nested metric keys with dots, so alpha's own dot goes.
    return f"alpha_{alpha:g}".replace(".", "_").replace("-", "m")


if __name__ == "__main__":
    cli(main)
