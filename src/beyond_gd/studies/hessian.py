"""Beyond the book: the loss Hessian's extreme eigenvalues and trace along the Fig 6-3 path.

At theta(alpha) = (1 - alpha) theta_opt + alpha theta_init (alpha = 0, the SGD
solution, always included; theta_init the baseline's own init.pt), on a fixed
random subset of one split, from Hessian-vector products only (no dense Hessian).
Tables: `eigenvalues.csv` (per alpha, the top_k largest and the most negative
eigenvalue by Lanczos, each with its residual ||Hy - lambda y||, the Lanczos
bound and whether the residual is within residual_tol x lambda_max),
`ritz.csv` (every Ritz value per alpha with its weight, the squared first
component of T's eigenvector: a spectral density estimate, Ghorbani et al.
2019), `trace.csv` (the Hutchinson draws per alpha and their running mean),
`path.csv` (per alpha: subset loss, gradient norm, lambda_max, lambda_min,
trace estimate and its standard error, three conditioning ratios).
summary.json also holds what a product costs: the median wall seconds of one
full gradient of the subset loss and of one Hessian-vector product at the SGD
solution, and their ratio (Pearlmutter's trick promises about two gradients).

Then the chapter's § Momentum-based optimization on the MLP: does an update oscillate along the top
Hessian direction, and does momentum cancel that? From the SGD solution, each optimizer of
`oscillation.optimizers` (its conf entry, the lr replaced by step_times_lambda_max / lambda_max, lambda_max
the one just measured there) trains `steps` mini-batch steps on the same subset through `training.train`,
once per batch-order seed; every update theta_{t+1} - theta_t is projected on the top eigenvector v1 (the
Lanczos Ritz vector of lambda_max) and on one random unit direction r (the control: a direction of average
curvature), and `landscape.oscillation` gives each sequence's lag-1 autocorrelation (negative: successive
updates point opposite ways), sign-flip share and rms. Table `oscillation.csv`: one row per seed,
optimizer, step_times_lambda_max and direction (top, random), with the run's lr, momentum, final subset
loss and whether it diverged (a non-finite loss: recorded, the statistics cut at the first non-finite
update); summary.json's `oscillation` holds the means over seeds of both directions' autocorrelations.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from beyond_gd.config import ModelConfig, RuntimeConfig, optimizer_names, required
from beyond_gd.data.mnist import fixed_subset, load_tensors
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.landscape import hessian as hs
from beyond_gd.landscape.interpolation import mix
from beyond_gd.landscape.oscillation import oscillation
from beyond_gd.landscape.sharpness import top_ritz_vector
from beyond_gd.model import build_model, load_state
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.runtime import seed_everything
from beyond_gd.study import Inputs, Result, Series, number_key
from beyond_gd.training import evaluate, train

AT_SOLUTION = ("loss", "grad_norm", "lambda_max", "lambda_min", "trace", "trace_stderr", "top_over_kth",
               "top_over_abs_min", "top_over_mean", "max_residual", "converged")
OSCILLATION_COLUMNS = ["seed", "optimizer", "step_times_lambda_max", "lr", "momentum", "direction",
                       "autocorrelation", "sign_flip_share", "rms_projection", "final_loss", "diverged"]


@dataclass
class OscillationConfig:
    # Entries of the `optimizers` section, each run from the SGD solution; their lr is replaced (below).
    optimizers: list[str] = optimizer_names(nonempty=True, distinct=True)
    # Each run's lr is this over the lambda_max measured at the SGD solution (lr x lambda_max).
    step_times_lambda_max: list[float] = required(nonempty=True, distinct=True, each_gt=0)
    # Mini-batch steps per run (updates: a lag-1 autocorrelation needs two at least).
    steps: int = required(gt=1)
    batch_size: int = required(gt=0)
    # The batch orders (training.train's seed): the runs the claim resamples.
    seeds: list[int] = required(nonempty=True, distinct=True, each_ge=0)


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
    # Timings of one gradient and one Hessian-vector product at the SGD solution: the median of this many.
    timing_repeats: int = required(gt=0)
    oscillation: OscillationConfig

    def check(self) -> None:
        if self.lanczos_steps <= self.top_k:
            raise ConfigError(f"lanczos_steps: must be > top_k ({self.top_k}), got {self.lanczos_steps}")


@dataclass
class Config:
    hessian: HessianConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c, device = cfg.hessian, inputs.torch_device
    seed_everything(c.seed)
    model = build_model(cfg.model).to(device)
    theta_opt = load_state(inputs.folder("baseline") / "mnist.pt", model, device)
    theta_init = load_state(inputs.folder("baseline") / "init.pt", model, device)
    # The same subset at every alpha, so the curves differ only by theta.
    x, y = fixed_subset(*load_tensors(inputs.folder("mnist"), train=c.split == "train", device=device),
                        c.subset_size, c.subset_seed, "hessian.subset_size")
    alphas = sorted(set(c.alphas) | {0.0})
    dim = hs.FlatLayout.of(theta_opt).dim
    gen = torch.Generator().manual_seed(c.seed)

    eig_rows, ritz_rows, trace_rows, path_rows = [], [], [], []
    costs: dict[str, float | int] = {}
    for alpha in tqdm(alphas, desc="hessian", unit="alpha", disable=not inputs.progress):
        state = {k: v[0] for k, v in mix(theta_opt, theta_init, torch.tensor([alpha])).items()}
        hvp = hs.loss_hvp(model, state, x, y, c.batch_size)
        lanczos = hs.lanczos(hvp, dim, c.lanczos_steps, gen, device)
        pairs = hs.extreme_eigenpairs(hvp, lanczos, c.top_k)
        draws = hs.hutchinson(hvp, dim, c.trace_samples, gen, device)
        loss, grad_norm = hs.loss_and_grad_norm(model, state, x, y, c.batch_size)
        if alpha == 0.0:  # both warm by now: Lanczos's products and the gradient just ran at this point
            costs = time_gradient_and_hvp(model, state, x, y, c.batch_size, c.timing_repeats, c.seed)
            top_vector = top_ritz_vector(lanczos)

        top = [pr for pr in pairs if pr.which == "top"]
        lam_max, lam_min, lam_k = top[0].value, pairs[-1].value, top[-1].value
        converged = [pr.residual <= c.residual_tol * abs(lam_max) for pr in pairs]
        eig_rows += [{"alpha": alpha, **dataclasses.asdict(pr), "converged": ok} for pr, ok in zip(pairs, converged,
                                                                                                   strict=True)]
        values, vectors = lanczos.ritz()
        ritz_rows += [{"alpha": alpha, "index": i, "ritz_value": v, "weight": w}
                      for i, (v, w) in enumerate(zip(values, vectors[0] ** 2, strict=True))]
        running = np.cumsum(draws) / np.arange(1, len(draws) + 1)
        trace_rows += [{"alpha": alpha, "sample": i + 1, "estimate": d, "running_mean": r}
                       for i, (d, r) in enumerate(zip(draws, running, strict=True))]
        trace = float(draws.mean())
        path_rows.append({
            "alpha": alpha, "loss": loss, "grad_norm": grad_norm, "lambda_max": lam_max, "lambda_min": lam_min,
            "trace": trace, "trace_stderr": float(draws.std(ddof=1) / np.sqrt(len(draws))),
            # Conditioning: top over k-th, over |most negative|, over the mean eigenvalue tr/n.
            "top_over_kth": lam_max / lam_k, "top_over_abs_min": lam_max / abs(lam_min),
            "top_over_mean": lam_max * dim / trace,
            "lanczos_steps": len(lanczos.alphas), "max_residual": max(pr.residual for pr in pairs),
            "converged": all(converged),
        })
    path = pd.DataFrame(path_rows)
    at0 = path_rows[alphas.index(0.0)]
    top0 = [r for r in eig_rows if r["alpha"] == 0.0 and r["which"] == "top"]
    summary = {
        "parameters": dim, "subset_size": c.subset_size, "timing": costs,
        "solution": {**{k: at0[k] for k in AT_SOLUTION}, **{f"lambda_{r['rank']}": r["value"] for r in top0}},
        "path": {f"alpha_{number_key(r['alpha'])}":
                 {k: r[k] for k in ("lambda_max", "lambda_min", "trace", "converged")} for r in path_rows},
    }
    # The control direction: its own generator from the study's seed, so the spectrum's draws are unchanged.
    control = torch.randn(dim, generator=torch.Generator().manual_seed(c.seed), dtype=torch.float64).to(device)
    oscillations = oscillation_runs(cfg, model, theta_opt, {"top": top_vector, "random": control / control.norm()},
                                    at0["lambda_max"], x, y, inputs.progress)
    summary["oscillation"] = oscillation_summary(oscillations, at0["lambda_max"], c.oscillation)
    tops = ", ".join(f"{r['value']:.4g}" for r in top0)
    return Result(
        # The seconds stay in summary.json: machine facts, not results to diff between experiments.
        metrics={k: at0[k] for k in ("lambda_max", "lambda_min", "trace")},
        summary=summary,
        tables={"eigenvalues.csv": pd.DataFrame(eig_rows), "ritz.csv": pd.DataFrame(ritz_rows),
                "trace.csv": pd.DataFrame(trace_rows), "path.csv": path, "oscillation.csv": oscillations},
        series=[Series(range(len(path)), {k: path[k].to_numpy() for k in
                                          ("alpha", "loss", "grad_norm", "lambda_max", "lambda_min", "trace")})],
        lines=[f"at the SGD solution: top eigenvalues {tops}; most negative {at0['lambda_min']:.4g}; trace "
               f"{at0['trace']:.4g} +- {at0['trace_stderr']:.2g}; largest residual {at0['max_residual']:.2g}",
               f"{len(alphas)} alphas; lambda_max along the path: "
               + ", ".join(f"{r['alpha']:g}: {r['lambda_max']:.4g}" for r in path_rows),
               f"at the SGD solution on {c.subset_size:,} examples (median of {c.timing_repeats}): one gradient "
               f"{costs['gradient_seconds']:.3g} s, one Hessian-vector product {costs['hvp_seconds']:.3g} s "
               f"({costs['hvp_over_gradient']:.2g} gradients)",
               oscillation_line(summary["oscillation"])],
    )


def oscillation_runs(cfg: Config, model: torch.nn.Module, theta_opt: hs.State, directions: dict[str, torch.Tensor],
                     lambda_max: float, x: torch.Tensor, y: torch.Tensor, progress: bool) -> pd.DataFrame:
    """One run per seed x optimizer x step_times_lambda_max from `theta_opt` on (x, y), each update projected
    on every unit direction of `directions` (flat, in FlatLayout order): one row per run and direction."""
    o = cfg.hessian.oscillation
    if not lambda_max > 0:
        raise DataError(f"lambda_max at the SGD solution is {lambda_max:.4g}: no lr = step_times_lambda_max / it")
    layout = hs.FlatLayout.of(theta_opt)
    names, basis = list(directions), torch.stack(list(directions.values()))  # [directions, dim], float64
    rows = []
    runs = list(itertools.product(o.seeds, o.optimizers, o.step_times_lambda_max))
    for seed, name, times in tqdm(runs, desc="oscillation", unit="run", disable=not progress):
        spec = cfg.optimizers[name].with_lr(times / lambda_max)
        model.load_state_dict(theta_opt)
        optimizer = spec.build(model.parameters(), key=f"optimizers.{name}")
        previous = layout.flatten(model.state_dict())
        updates: list[torch.Tensor] = []

        def projected(*_: object) -> None:
            nonlocal previous
            now = layout.flatten(model.state_dict())  # a new tensor: torch.cat copies
            updates.append(basis @ (now - previous).double())  # kept on the device: no sync per step
            previous = now

        hook = optimizer.register_step_post_hook(projected)
        try:
            # Diverged means a non-finite loss (no threshold): recorded, the run stops at the next check.
            trained = train(model, optimizer, x, y, batch_size=o.batch_size, seed=seed, max_steps=o.steps,
                            divergence_loss=math.inf)
        finally:
            hook.remove()
        loss, _ = evaluate(model, x, y, cfg.hessian.batch_size)
        momentum = spec.default("momentum")
        p = torch.stack(updates).cpu().numpy()  # [steps, directions]
        for j, direction in enumerate(names):
            stats = oscillation(p[:, j])
            rows.append({"seed": seed, "optimizer": name, "step_times_lambda_max": times, "lr": spec.lr,
                         "momentum": float("nan") if momentum is None else float(momentum),
                         "direction": direction, "autocorrelation": stats.autocorrelation,
                         "sign_flip_share": stats.sign_flip_share, "rms_projection": stats.rms_projection,
                         "final_loss": loss, "diverged": trained.diverged or not math.isfinite(loss)})
    return pd.DataFrame(rows, columns=OSCILLATION_COLUMNS)


def oscillation_summary(table: pd.DataFrame, lambda_max: float, o: OscillationConfig) -> dict[str, object]:
    """Per optimizer and step_times_lambda_max: the lr and the mean over seeds of each direction's
    autocorrelation (a NaN one, a run that diverged at its first update, left out), and the diverged runs."""
    runs: dict[str, dict[str, object]] = {}
    for (name, times), group in table.groupby(["optimizer", "step_times_lambda_max"], sort=False):
        top, random = (group[group.direction == d] for d in ("top", "random"))
        runs.setdefault(name, {})[f"step_times_lambda_max_{number_key(times)}"] = {
            "step_times_lambda_max": times, "lr": float(group.lr.iloc[0]),
            "top_autocorrelation": float(top.autocorrelation.mean()),
            "random_autocorrelation": float(random.autocorrelation.mean()), "diverged_runs": int(top.diverged.sum())}
    return {"lambda_max": lambda_max, "steps": o.steps, "batch_size": o.batch_size, "seeds": len(o.seeds),
            "runs": runs}


def oscillation_line(s: dict) -> str:
    """The study's line from `oscillation_summary`: per run kind, both directions' mean autocorrelations."""
    kinds = [(name, e) for name, entries in s["runs"].items() for e in entries.values()]
    return (f"updates from the SGD solution (lr = k / lambda_max {s['lambda_max']:.4g}; {s['steps']} steps, "
            f"{s['seeds']} seeds), mean lag-1 autocorrelation along the top / a random direction: "
            + ", ".join(f"{name} k={e['step_times_lambda_max']:g} {e['top_autocorrelation']:.3g} / "
                        f"{e['random_autocorrelation']:.3g}" for name, e in kinds))


def time_gradient_and_hvp(model: torch.nn.Module, state: hs.State, x: torch.Tensor, y: torch.Tensor,
                          batch_size: int, repeats: int, seed: int) -> dict[str, float | int]:
    """Median wall seconds of one full gradient of the mean loss over (x, y) at `state` and of one
    Hessian-vector product there (the study's own `loss_hvp`, at a Gaussian v drawn from `seed` by its own
    generator, so the spectrum's draws are the same with or without timing), over `repeats` runs each, in
    batches of `batch_size` both; and their ratio. Machine facts: what second-order information costs
    here, in gradients."""
    hvp = hs.loss_hvp(model, state, x, y, batch_size)
    v = torch.randn(hs.FlatLayout.of(state).dim, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64).to(x.device)
    gradient = _median_seconds(lambda: hs.loss_and_grad_norm(model, state, x, y, batch_size), repeats, x.device)
    product = _median_seconds(lambda: hvp(v), repeats, x.device)
    return {"gradient_seconds": gradient, "hvp_seconds": product, "hvp_over_gradient": product / gradient,
            "repeats": repeats}


def _median_seconds(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)  # a GPU's kernels are asynchronous: the clock stops when they are done
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
