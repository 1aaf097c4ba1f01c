"""Beyond the book: full-batch gradient descent trains at the edge of stability (Cohen et al. 2021).

The MLP, from one fresh initialisation (`init_seed`), trains on a fixed random
subset of the training split by plain SGD (the `optimizers` entry `optimizer`,
no momentum) in two ways, each at its own learning rates: full-batch gradient
descent (`gd_lrs`, every step on the whole subset) and mini-batch SGD
(`sgd_lrs`, batches of `sgd_batch_size` from the same subset), all for `steps`
steps through the one training loop. Every `eval_every` steps each run records
the subset's loss and accuracy and the sharpness λ_max, the largest eigenvalue
of the Hessian of the subset's mean loss: a thick-restart Lanczos on
Hessian-vector products run to a residual tolerance (‖Hy − θy‖ <= tol × θ, or
a cap on the products), warm-started from the run's previous top Ritz vector
(`landscape.sharpness`); every run's first one from the estimate at the shared
initialisation, made once from a random start. On a quadratic, GD at lr is
stable only while λ_max < 2 / lr; Cohen et al. find that on neural networks
λ_max rises (progressive sharpening) until it reaches 2 / lr and then hovers
just above it.

Tables: `curves.csv` (one row per run and evaluated step: kind, lr, 2 / lr,
loss, accuracy, lambda_max, edge_ratio = lambda_max x lr / 2, the estimate's
residual, products and convergence, whether the run has diverged);
`runs.csv` (per run: the step where λ_max first reached `reach` x 2 / lr,
the quartiles of edge_ratio over the evaluations after it, the largest
ratio, the last loss and accuracy, whether it diverged, and how many
estimates missed the tolerance). An estimate that missed the tolerance stays
in curves.csv with its residual, but no statistic of runs.csv reads it. A
run whose loss turns NaN, infinite or above `divergence_loss` is recorded up
to there and stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from beyond_gd.config import ModelConfig, RuntimeConfig, optimizer_names, required
from beyond_gd.data.mnist import fixed_subset, load_tensors
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import hessian as hs
from beyond_gd.landscape import sharpness as sh
from beyond_gd.model import build_model, fresh_init
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.study import Inputs, Result, Series, number_key, plain
from beyond_gd.training import evaluate, train

GD, SGD = "gd", "sgd"
CURVE_COLUMNS = ["run", "kind", "lr", "two_over_lr", "batch_size", "step", "loss", "accuracy", "lambda_max",
                 "edge_ratio", "residual", "products", "converged", "diverged"]


@dataclass
class EdgeOfStabilityConfig:
    subset_size: int = required(gt=0)
    subset_seed: int = required(ge=0)
    # The initialisation every run starts from: model.fresh_init with this seed.
    init_seed: int = required(ge=0)
    # The `optimizers` entry both kinds of run use (plain SGD: no momentum), its lr replaced per run.
    optimizer: str = optimizer_names(nonempty=True)
    gd_lrs: list[float] = required(nonempty=True, distinct=True, each_gt=0)
    sgd_lrs: list[float] = required(nonempty=True, distinct=True, each_gt=0)
    sgd_batch_size: int = required(gt=0)
    # Seeds the mini-batch order.
    sgd_seed: int = required(ge=0)
    steps: int = required(gt=0)
    eval_every: int = required(gt=0)
    eval_batch_size: int = required(gt=0)
    # Examples per double-backward pass of a Hessian-vector product.
    hvp_batch_size: int = required(gt=0)
    # Seeds the random start of the one estimate at the initialisation (every later one is warm-started).
    lanczos_seed: int = required(ge=0)
    # Lanczos per estimate: converged when ||H y - theta y|| <= tol x |theta|; at most max_products products,
    # in a Krylov space of at most basis_size vectors restarted from its top `keep` Ritz vectors.
    tol: float = required(gt=0)
    max_products: int = required(gt=0)
    basis_size: int = required(gt=1)
    keep: int = required(gt=0)
    # A run has reached the edge at the first evaluation with lambda_max >= reach x 2 / lr.
    reach: float = required(gt=0)
    divergence_loss: float = required(gt=0)

    def check(self) -> None:
        if self.eval_every > self.steps:
            raise ConfigError(f"eval_every: must be <= steps ({self.steps}), got {self.eval_every}")
        if self.keep >= self.basis_size:
            raise ConfigError(f"keep: must be < basis_size ({self.basis_size}), got {self.keep}")


@dataclass
class Config:
    edge_of_stability: EdgeOfStabilityConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig

    def check(self) -> None:
        c = self.edge_of_stability
        spec = self.optimizers[c.optimizer]
        # Gradient descent on the loss whose Hessian is tracked: no momentum, no weight decay.
        if spec.target != "torch.optim.SGD" or any(spec.default(k) not in (0, 0.0, None)
                                                   for k in ("momentum", "weight_decay")):
            raise ConfigError(f"edge_of_stability.optimizer: optimizers.{c.optimizer} must be torch.optim.SGD "
                              f"without momentum or weight decay (gradient descent), got {spec.class_name} with "
                              f"momentum {spec.default('momentum')}, weight_decay {spec.default('weight_decay')}")


@dataclass(frozen=True)
class RunSpec:
    kind: str  # GD or SGD
    lr: float
    batch_size: int

    @property
    def name(self) -> str:
        return f"{self.kind}-lr{self.lr:g}"


def run(cfg: Config, inputs: Inputs) -> Result:
    c, device = cfg.edge_of_stability, inputs.torch_device
    x, y = fixed_subset(*load_tensors(inputs.folder("mnist"), train=True, device=device), c.subset_size,
                        c.subset_seed, "edge_of_stability.subset_size")
    init = fresh_init(cfg.model, c.init_seed, device)
    specs = [RunSpec(GD, lr, c.subset_size) for lr in c.gd_lrs] + [RunSpec(SGD, lr, c.sgd_batch_size)
                                                                  for lr in c.sgd_lrs]
    started = time.perf_counter()
    # One estimate at the shared initialisation from a random start: every run's first one starts from its vector.
    model = build_model(cfg.model).to(device)
    dim = hs.FlatLayout.of(init).dim
    noise = torch.randn(dim, generator=torch.Generator().manual_seed(c.lanczos_seed), dtype=torch.float64)
    at_init = top_eigen(c, hs.loss_hvp(model, init, x, y, c.hvp_batch_size), noise.to(device))
    start = at_init.vector
    evaluations = len(specs) * (-(-c.steps // c.eval_every) + 1)
    bar = tqdm(total=evaluations, desc="edge_of_stability", unit="eval", disable=not inputs.progress)
    rows: list[dict] = []
    seconds: dict[str, float] = {}
    for spec in specs:
        mark = time.perf_counter()
        rows += run_one(cfg, spec, init, start, x, y, bar)
        seconds[spec.name] = time.perf_counter() - mark
    bar.close()
    wall = time.perf_counter() - started
    curves = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    runs = summarize(curves, specs, c.reach)
    unconverged = int(runs["unconverged"].sum())
    gd = runs[runs["kind"] == GD]
    metrics: dict[str, float | int | bool | None] = {
        **{f"gd_lr_{number_key(r.lr)}_hover_median": _num(r.ratio_median) for r in gd.itertuples()},
        "gd_runs_reaching_edge": int(gd["reached_step"].notna().sum()),
        "sgd_max_edge_ratio": _num(runs.loc[runs["kind"] == SGD, "max_ratio"].max()),
        "diverged_runs": int(runs["diverged"].sum()),
        "unconverged_evaluations": unconverged,
    }
    summary = {
        "subset_size": c.subset_size, "parameters": dim, "steps": c.steps, "eval_every": c.eval_every,
        "reach": c.reach, "init_seed": c.init_seed, "optimizer": c.optimizer, "tol": c.tol,
        "max_products": c.max_products, "basis_size": c.basis_size,
        "init_lambda_max": at_init.value, "init_residual": at_init.residual, "init_products": at_init.products,
        "init_converged": at_init.converged,
        "products": at_init.products + int(curves["products"].sum()),
        "evaluations": int(curves["lambda_max"].notna().sum()), "unconverged_evaluations": unconverged,
        "runs": {r.run: {k: plain(getattr(r, k)) for k in runs.columns if k != "run"} for r in runs.itertuples()},
    }
    lines = [f"{r.run}: " + _reached_text(r, c.reach) + f"; last loss {r.final_loss:.4g}"
             + (" (diverged)" if r.diverged else "")
             + (f"; {r.unconverged} estimates short of tol left out" if r.unconverged else "")
             for r in runs.itertuples()]
    lines.append(f"{summary['products']} Hessian-vector products, {unconverged} of {summary['evaluations']} "
                 f"estimates short of tol {c.tol:g} (left out of runs.csv); {wall:.1f} s in all ("
                 + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()) + ")")
    return Result(
        metrics=metrics,
        summary=summary,
        tables={"curves.csv": curves, "runs.csv": runs},
        series=[Series(list(range(len(curves))), {k: curves[k].to_numpy() for k in ("step", "loss", "lambda_max",
                                                                                     "edge_ratio")})],
        # The seconds go to MLflow only: machine facts, not results to diff between experiments.
        logged={"seconds": wall, **{f"seconds_{_key_name(k)}": v for k, v in seconds.items()}},
        lines=lines,
    )


def run_one(cfg: Config, spec: RunSpec, init: hs.State, start: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
            bar: tqdm) -> list[dict]:
    """One run from `init`: `steps` steps of the optimizer at spec.lr in batches of spec.batch_size, measured
    at step 0 and every `eval_every` steps; stopped (and its last row flagged) where it diverges."""
    c = cfg.edge_of_stability
    model = build_model(cfg.model).to(x.device)
    model.load_state_dict(init)
    optimizer = cfg.optimizers[c.optimizer].with_lr(spec.lr).build(model.parameters(),
                                                                   key=f"optimizers.{c.optimizer}")
    base = {"run": spec.name, "kind": spec.kind, "lr": spec.lr, "two_over_lr": 2 / spec.lr,
            "batch_size": spec.batch_size}
    vector, rows, step, diverged = start, [], 0, False
    while True:
        loss, accuracy = evaluate(model, x, y, c.eval_batch_size)
        diverged = diverged or not np.isfinite(loss) or loss > c.divergence_loss
        if diverged:  # no curvature of a blown-up network: the row keeps its loss
            top = None
        else:
            state = {k: v.detach() for k, v in model.state_dict().items()}
            top = top_eigen(c, hs.loss_hvp(model, state, x, y, c.hvp_batch_size), vector)
            vector = top.vector
        lam = top.value if top is not None else float("nan")
        rows.append({**base, "step": step, "loss": loss, "accuracy": accuracy, "lambda_max": lam,
                     "edge_ratio": sh.edge_ratio(lam, spec.lr), "residual": top.residual if top else float("nan"),
                     "products": top.products if top else 0, "converged": bool(top and top.converged),
                     "diverged": diverged})
        bar.update(1)
        if diverged or step >= c.steps:
            return rows
        # GD's batch is the whole subset, so its order does not matter; SGD's batches are drawn afresh from
        # each chunk's own seed (sampling without replacement within a chunk of eval_every steps).
        done = train(model, optimizer, x, y, batch_size=spec.batch_size, seed=c.sgd_seed + step,
                     max_steps=min(c.eval_every, c.steps - step), divergence_loss=c.divergence_loss)
        step += done.steps
        diverged = done.diverged


def top_eigen(c: EdgeOfStabilityConfig, hvp: hs.Hvp, start: torch.Tensor) -> sh.TopEigen:
    """One sharpness estimate by the section's Lanczos settings."""
    return sh.lanczos_top(hvp, start, c.tol, c.max_products, c.basis_size, c.keep)


def summarize(curves: pd.DataFrame, specs: list[RunSpec], reach: float) -> pd.DataFrame:
    """One row per run: where λ_max first reached `reach` x 2 / lr, the ratio's quartiles after that, the largest
    ratio, the last evaluation's loss and accuracy, whether the run diverged, and how many estimates missed the
    tolerance (`converged` false with a finite λ_max): those are left out of every statistic here."""
    out = []
    for spec in specs:
        rows = curves[curves["run"] == spec.name]
        converged = rows["converged"].astype(bool).to_numpy()
        steps = rows["step"].to_numpy()
        ratios = np.where(converged, rows["edge_ratio"].to_numpy(dtype=float), np.nan)
        reached = sh.first_reach(steps, ratios, reach)
        hover = sh.hovering(steps, ratios, reached)
        last = rows.iloc[-1]
        out.append({"run": spec.name, "kind": spec.kind, "lr": spec.lr, "two_over_lr": 2 / spec.lr,
                    "batch_size": spec.batch_size, "steps": int(last["step"]), "diverged": bool(rows["diverged"].any()),
                    "reached_step": reached, "hover_evaluations": hover.evaluations, "ratio_q25": hover.q25,
                    "ratio_median": hover.median, "ratio_q75": hover.q75,
                    "max_ratio": float(np.nanmax(ratios)) if np.isfinite(ratios).any() else float("nan"),
                    "final_loss": float(last["loss"]), "final_accuracy": float(last["accuracy"]),
                    "estimates": int(np.isfinite(ratios).sum()),
                    "unconverged": int((~converged & rows["lambda_max"].notna().to_numpy()).sum())})
    table = pd.DataFrame(out)
    table["reached_step"] = table["reached_step"].astype("Int64")
    return table


def _reached_text(r: object, reach: float) -> str:
    """Where a run (a row of runs.csv) reached the edge and how it hovered after, or that it never did."""
    if pd.isna(r.reached_step):
        return f"never reached 2/lr = {r.two_over_lr:.3g} (largest lambda_max / (2/lr) {r.max_ratio:.3f})"
    text = f"reached {reach:g} x 2/lr = {reach * r.two_over_lr:.3g} at step {int(r.reached_step)}"
    if not r.hover_evaluations:
        return text + " (its last evaluation)"
    return (text + f", then lambda_max / (2/lr) median {r.ratio_median:.3f} (quartiles {r.ratio_q25:.3f}-"
            f"{r.ratio_q75:.3f}, {r.hover_evaluations} evaluations)")


def _key_name(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


def _num(value: float) -> float | None:
    return None if pd.isna(value) else float(value)


