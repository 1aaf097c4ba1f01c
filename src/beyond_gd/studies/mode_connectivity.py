"""Beyond the book: are the SGD solutions of different seeds connected, and does Fig 6-3 hold from each?

N solutions of the book's MLP, one per seed, each trained by the baseline's
recipe (`baseline.fit` with the `baseline` section, seed aside: the book's SGD
for 40 epochs) from the init the baseline would draw with that seed; the seed
the baseline itself was trained with is not retrained but read from its
checkpoints (`mnist.pt`, `init.pt`). For
every pair (A, B), on a fixed subset of the training set and on the test set,
loss and accuracy on a t grid along three paths from A to B: the straight line
(`linear`), the line to B with its hidden units aligned to A's by weight
matching (`aligned`; Ainsworth et al. 2023), and a quadratic Bézier curve
between A and B as trained whose control point is trained by SGD (`curve`;
Garipov et al. 2018), trained epoch by epoch until its barrier stops falling,
each with its barrier (Frankle et al. 2020) beside the endpoints' own loss. The solutions to
train and the pairs' curves are independent jobs (`Inputs.map`: processes of one thread each, as many
at once as the cores allow; the same numbers however many). And Fig 6-3
"over and over": from each solution the line to its own init (and to fresh
inits, if asked), on interpolate's alpha grid.

Tables: `solutions.csv` (per seed: steps, epochs, divergence, losses and
accuracies), `paths.csv` (pair, path, split, t: loss and accuracy),
`barriers.csv` (per pair, path and split: barrier height and where, the
endpoints' losses, the largest accuracy drop below the chord), `matching.csv`
(per pair and hidden layer: units moved, sweeps, the similarity gained),
`curve_steps.csv` (the control points' training: per step its t and loss),
`curve_epochs.csv` (per pair and epoch of that training: the curve's barrier on
the training subset, which decides when it stops),
`interpolation_path.csv` and `interpolation_summary.csv` (interpolate's
path.csv and summary.csv columns, plus `theta_opt`, the solution).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from beyond_gd.config import ModelConfig, RuntimeConfig, optimizer_names, required
from beyond_gd.data.mnist import fixed_subset, load_tensors
from beyond_gd.errors import ConfigError
from beyond_gd.landscape import connectivity as mc
from beyond_gd.landscape.interpolation import alpha_grid, path_loss, sub_state, summarize_path
from beyond_gd.model import build_model, fresh_init, load_state
from beyond_gd.optim.registry import OptimizerSpec
from beyond_gd.studies.baseline import BaselineConfig, fit
from beyond_gd.studies.interpolate import InterpolateConfig
from beyond_gd.study import Inputs, Result, Series
from beyond_gd.training import EpochEnd, evaluate, step_budget, steps_per_epoch, train

PATHS = ("linear", "aligned", "curve")
SPLITS = ("train", "test")
THETA_RAND = ("init", "fresh")
PREFIX = "classifier."


@dataclass
class CurveConfig:
    # An entry of the `optimizers` section: what trains the control point.
    optimizer: str = optimizer_names(nonempty=True)
    # The control point's lr is that entry's lr times this: phi(t) moves by 2t(1 - t) x theta's step.
    lr_factor: float = required(gt=0)
    # Trained epoch by epoch until an epoch lowers its barrier (training subset) by less than `min_decrease` of
    # the barrier before it (connectivity.stopped_falling), or `max_epochs` have run.
    max_epochs: int = required(gt=0)
    min_decrease: float = required(ge=0)
    # Stop after this many steps (smoke runs); null: up to max_epochs.
    max_steps: int | None = required(gt=0, optional=True)
    # The t draws of every step (one generator per pair, seeded seed + pair index) and the batch order.
    seed: int = required(ge=0)


@dataclass
class OverAndOverConfig:
    # From each solution, the line to `init` (its own initialisation) and/or to `fresh` inits.
    theta_rand: list[str] = required(each_in=THETA_RAND, nonempty=True)
    fresh_seeds: list[int] = required(distinct=True, each_ge=0)
    # `train`: the fixed training subset; `test`: the whole test set.
    splits: list[str] = required(each_in=SPLITS, nonempty=True)

    def check(self) -> None:
        if "fresh" in self.theta_rand and not self.fresh_seeds:
            raise ConfigError("fresh_seeds: must not be empty when theta_rand holds fresh")


@dataclass
class ModeConnectivityConfig:
    # One solution per seed (its init and its batch order) by the baseline's recipe; every pair is compared.
    seeds: list[int] = required(distinct=True, each_ge=0, nonempty=True)
    # The fixed training subset every path is evaluated on (the test set is used whole).
    subset_size: int = required(gt=0)
    subset_seed: int = required(ge=0)
    eval_batch_size: int = required(gt=0)
    # The t grid: linspace(0, 1, t_points); t_chunk parameter sets per vmapped forward.
    t_points: int = required(gt=2)
    t_chunk: int = required(gt=0)
    # Weight matching: coordinate-descent sweeps at most, and the generator of the layer order.
    matching_max_sweeps: int = required(gt=0)
    matching_seed: int = required(ge=0)
    curve: CurveConfig = required()
    over_and_over: OverAndOverConfig = required()

    def check(self) -> None:
        if not self.curve.min_decrease < 1:
            raise ConfigError(f"curve.min_decrease: must be < 1 (a share of the barrier), got "
                              f"{self.curve.min_decrease}")
        if len(self.seeds) < 2:
            raise ConfigError(f"seeds: at least two solutions make a pair, got {self.seeds}")


@dataclass
class Config:
    mode_connectivity: ModeConnectivityConfig
    # Every solution's recipe (optimizer, epochs, batch, divergence), the seed aside.
    baseline: BaselineConfig
    # The Fig 6-3 grid and path summary: one source, the interpolate stage's.
    interpolate: InterpolateConfig
    optimizers: dict[str, OptimizerSpec]
    model: ModelConfig
    runtime: RuntimeConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c, device = cfg.mode_connectivity, inputs.torch_device
    x_train, y_train = load_tensors(inputs.folder("mnist"), train=True, device=device)
    x_test, y_test = load_tensors(inputs.folder("mnist"), train=False, device=device)
    data = {"train": fixed_subset(x_train, y_train, c.subset_size, c.subset_seed, "mode_connectivity.subset_size"),
            "test": (x_test, y_test)}

    # 1. The solutions: the baseline's recipe, one seed each; the baseline's own seed is the baseline itself.
    # Seconds are machine facts: MLflow and the printed lines only, so the same seed writes the same bytes.
    base = cfg.baseline
    key, spec, mnist = f"optimizers.{base.optimizer}", cfg.optimizers[base.optimizer], inputs.folder("mnist")
    # The seeds to train are independent jobs: in parallel processes where the machine has the cores.
    to_train = [s for s in c.seeds if s != base.seed]
    trained = dict(zip(to_train, inputs.map(train_solution, [
        SolutionJob(dataclasses.replace(base, seed=s), cfg.model, spec, key, mnist, inputs.device, inputs.progress)
        for s in to_train]), strict=True))
    inits, solutions, solution_rows, seconds = {}, {}, [], {}
    for seed in c.seeds:
        label = f"seed_{seed}"
        model = build_model(cfg.model).to(device)
        if seed == base.seed:
            folder = inputs.folder("baseline")
            inits[label] = load_state(folder / "init.pt", model, device)
            load_state(folder / "mnist.pt", model, device)
            done = json.loads((folder / "summary.json").read_text())
            steps, diverged, reused = int(done["steps"]), bool(done["diverged"]), True
        else:
            t = trained[seed]
            model.load_state_dict(t.state)
            inits[label], reused = t.init, False
            steps, diverged, seconds[label] = t.steps, t.diverged, t.seconds
        solutions[label] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        row = {"solution": label, "seed": seed, "steps": steps,
               "epochs": math.ceil(steps / steps_per_epoch(len(x_train), base.batch_size)), "diverged": diverged,
               "reused_baseline": reused}
        for split, (x, y) in data.items():
            row[f"{split}_loss"], row[f"{split}_accuracy"] = evaluate(model, x, y, c.eval_batch_size)
        solution_rows.append(row)
    solutions_table = pd.DataFrame(solution_rows)

    # 2. Every pair: the line, the aligned line, the trained curve.
    net = build_model(cfg.model).to(device)
    ts = torch.linspace(0, 1, c.t_points, dtype=torch.float64)
    t_np = ts.numpy()
    labels = list(solutions)
    pairs = list(itertools.combinations(labels, 2))
    path_frames, barrier_rows, matching_rows, curve_frames, curve_epochs = [], [], [], [], []
    gen = torch.Generator().manual_seed(c.matching_seed)
    aligned: dict[str, dict[str, torch.Tensor]] = {}
    for la, lb in pairs:  # the matchings in pair order: they share one generator
        a, b = solutions[la], solutions[lb]
        pair = f"{la}~{lb}"
        if _finite(a) and _finite(b):
            matching = mc.weight_matching(a, b, max_sweeps=c.matching_max_sweeps, generator=gen)
            aligned[pair] = mc.permute_state(b, matching.perms)
            for layer, perm in enumerate(matching.perms):
                matching_rows.append({"pair": pair, "a": la, "b": lb, "layer": layer + 1, "units": len(perm),
                                      "units_moved": int((perm != torch.arange(len(perm))).sum()),
                                      "sweeps": matching.sweeps, "converged": matching.converged,
                                      "similarity_identity": _similarity(a, b),
                                      "similarity_matched": matching.similarity[-1]})
        else:  # a diverged solution: no assignment on NaN weights; its paths stay NaN, flagged
            aligned[pair] = b
            matching_rows.append({"pair": pair, "a": la, "b": lb, "layer": 0, "units": 0, "units_moved": 0,
                                  "sweeps": 0, "converged": False, "similarity_identity": math.nan,
                                  "similarity_matched": math.nan})
    # The curves' trainings are independent jobs too.
    curve_spec = cfg.optimizers[c.curve.optimizer]
    runs = inputs.map(train_curve, [
        CurveJob(f"{la}~{lb}", k, solutions[la], solutions[lb], c, base, cfg.model,
                 curve_spec.with_lr(curve_spec.lr * c.curve.lr_factor), f"optimizers.{c.curve.optimizer}", mnist,
                 inputs.device, inputs.progress) for k, (la, lb) in enumerate(pairs)])
    for (la, lb), res in zip(tqdm(pairs, desc="mode_connectivity pairs", unit="pair", disable=not inputs.progress),
                             runs, strict=True):
        a, b, pair = solutions[la], solutions[lb], res.pair
        finite, b_aligned, theta = _finite(a) and _finite(b), aligned[pair], res.theta
        seconds[f"curve {pair}"] = res.seconds
        curve_epochs.extend(res.epochs)
        curve_frames.append(pd.DataFrame({"pair": pair, "step": np.arange(1, res.steps + 1), "t": res.draws,
                                          "loss": res.step_loss}))

        ends = {"linear": (a, b), "aligned": (a, b_aligned)}
        for split, (x, y) in data.items():
            curves = {name: path_loss(net.classifier, sub_state(s0, PREFIX), sub_state(s1, PREFIX), ts, x, y,
                                      batch_size=c.eval_batch_size, alpha_chunk=c.t_chunk)
                      for name, (s0, s1) in ends.items()}
            curves["curve"] = mc.curve_loss(net.classifier, sub_state(a, PREFIX), sub_state(theta, PREFIX),
                                            sub_state(b, PREFIX), ts, x, y, batch_size=c.eval_batch_size,
                                            t_chunk=c.t_chunk)
            for name in PATHS:
                loss, acc = curves[name]
                path_frames.append(pd.DataFrame({"pair": pair, "a": la, "b": lb, "path": name, "split": split,
                                                 "t": t_np, "loss": loss, "accuracy": acc}))
                bar = mc.barrier(t_np, loss)
                acc_drop = mc.barrier(t_np, -acc)  # the accuracy's largest fall below its chord
                barrier_rows.append({
                    "pair": pair, "a": la, "b": lb, "path": name, "split": split, "barrier": bar.height,
                    "barrier_t": bar.t, "loss_at_0": bar.loss_at_0, "loss_at_1": bar.loss_at_1,
                    "loss_max": float(np.max(loss)), "accuracy_min": float(np.min(acc)),
                    "accuracy_drop": acc_drop.height,
                    "diverged": (not finite) or (name == "curve" and res.diverged) or not np.isfinite(bar.height),
                    "curve_steps": res.steps if name == "curve" else 0,
                    # The endpoints' own loss, the scale a barrier is read against.
                    "endpoint_loss": (bar.loss_at_0 + bar.loss_at_1) / 2})
    paths = pd.concat(path_frames, ignore_index=True)
    barriers = pd.DataFrame(barrier_rows)

    # 3. Fig 6-3 from each solution, on interpolate's grid and summary.
    ip = cfg.interpolate
    alphas = alpha_grid(ip.alpha_start, ip.alpha_stop, ip.alpha_step)
    oo = c.over_and_over
    rands = ({"init": None} if "init" in oo.theta_rand else {}) | (
        {f"seed_{s}": fresh_init(cfg.model, s, device) for s in oo.fresh_seeds} if "fresh" in oo.theta_rand else {})
    ip_frames, ip_rows = [], []
    lines = [(label, rand, split) for label in labels for rand in rands for split in oo.splits]
    for label, rand, split in tqdm(lines, desc="mode_connectivity fig 6-3", unit="path", disable=not inputs.progress):
        x, y = data[split]
        target = inits[label] if rand == "init" else rands[rand]
        loss, acc = path_loss(net.classifier, sub_state(solutions[label], PREFIX), sub_state(target, PREFIX),
                              torch.from_numpy(alphas), x, y, batch_size=ip.batch_size, alpha_chunk=ip.alpha_chunk)
        ip_frames.append(pd.DataFrame({"alpha": alphas, "split": split, "theta_rand": rand, "loss": loss,
                                       "accuracy": acc, "theta_opt": label}))
        summary = summarize_path(alphas, loss, flat_window=ip.flat_window, min_depth=ip.min_depth)
        ip_rows.append({"theta_rand": rand, "split": split, **dataclasses.asdict(summary), "theta_opt": label})
    ip_path = pd.concat(ip_frames, ignore_index=True)
    ip_summary = pd.DataFrame(ip_rows)
    ip_summary["minima_alphas"] = ip_summary["minima_alphas"].map(lambda a: ";".join(f"{v:g}" for v in a))

    return _result(c, base, solutions_table, paths, barriers, pd.DataFrame(matching_rows),
                   pd.concat(curve_frames, ignore_index=True),
                   pd.DataFrame(curve_epochs, columns=["pair", "epoch", "step", "barrier"]), ip_path, ip_summary,
                   len(pairs), seconds)


def _result(c: ModeConnectivityConfig, base: BaselineConfig, solutions: pd.DataFrame, paths: pd.DataFrame,
            barriers: pd.DataFrame, matching: pd.DataFrame, curve_steps: pd.DataFrame, curve_epochs: pd.DataFrame,
            ip_path: pd.DataFrame, ip_summary: pd.DataFrame, n_pairs: int, seconds: dict[str, float]) -> Result:
    by = barriers.groupby(["split", "path"])["barrier"]
    stats = {split: {path: {"mean": float(by.get_group((split, path)).mean()),
                            "min": float(by.get_group((split, path)).min()),
                            "max": float(by.get_group((split, path)).max())} for path in PATHS}
             for split in SPLITS}
    tr = ip_summary[ip_summary["split"] == ip_summary["split"].iloc[0]]
    summary = {
        "solutions": len(solutions), "pairs": n_pairs, "subset_size": c.subset_size, "t_points": c.t_points,
        "epochs": base.epochs, "curve_max_epochs": c.curve.max_epochs,
        "curve_epochs_run": {p: int(e.max()) for p, e in curve_epochs.groupby("pair")["epoch"]},
        "diverged_solutions": int(solutions["diverged"].sum()),
        "barrier": stats,
        "units_moved_mean": float(matching["units_moved"].mean()),
        "matching_converged_all": bool(matching["converged"].all()),
        "solution_test_accuracy_mean": float(solutions["test_accuracy"].mean()),
        "solution_train_loss_mean": float(solutions["train_loss"].mean()),
        "solution_train_loss_std": float(solutions["train_loss"].std(ddof=1)) if len(solutions) > 1 else 0.0,
        "over_and_over": {"paths": len(ip_summary), "local_minima_max": int(ip_summary["local_minima"].max()),
                          "slope_ratio_max": float(tr["slope_ratio"].max())},
    }
    train_stats = stats["train"]
    return Result(
        metrics={f"train_{p}_barrier_mean": train_stats[p]["mean"] for p in PATHS}
        | {"solution_test_accuracy_mean": summary["solution_test_accuracy_mean"]},
        summary=summary,
        tables={"solutions.csv": solutions, "paths.csv": paths, "barriers.csv": barriers, "matching.csv": matching,
                "curve_steps.csv": curve_steps, "curve_epochs.csv": curve_epochs, "interpolation_path.csv": ip_path,
                "interpolation_summary.csv": ip_summary},
        series=[Series(range(len(curve_steps)), {"curve_step_loss": curve_steps["loss"].to_numpy()})],
        logged={f"seconds/{k.replace(' ', '_').replace('~', '-')}": v for k, v in seconds.items()},
        lines=[f"{len(solutions)} solutions (the baseline's recipe, {base.epochs} epochs each; "
               f"{int(solutions['reused_baseline'].sum())} the baseline itself; {summary['diverged_solutions']} "
               "diverged): "
               f"test accuracy {solutions['test_accuracy'].min():.4f}-{solutions['test_accuracy'].max():.4f}, "
               f"training loss {solutions['train_loss'].min():.4f}-{solutions['train_loss'].max():.4f}; training took "
               + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()),
               *(f"{split} barrier over {n_pairs} pairs (mean, max): " + ", ".join(
                   f"{p} {stats[split][p]['mean']:.4f} {stats[split][p]['max']:.4f}" for p in PATHS)
                 for split in SPLITS),
               f"weight matching moved {summary['units_moved_mean']:.0f} units a layer on average",
               f"Fig 6-3 from each solution: {len(ip_summary)} paths, at most "
               f"{summary['over_and_over']['local_minima_max']} local minima in (0, 1), slope ratio at most "
               f"{summary['over_and_over']['slope_ratio_max']:.3g}"],
    )


@dataclass(frozen=True)
class SolutionJob:
    """One solution to train (`train_solution`): the baseline's recipe at its own seed."""

    base: BaselineConfig
    model: ModelConfig
    optimizer: OptimizerSpec
    key: str  # the optimizer's entry, for errors
    mnist: Path
    device: str
    progress: bool


@dataclass(frozen=True)
class Solution:
    state: dict[str, torch.Tensor]
    init: dict[str, torch.Tensor]
    steps: int
    diverged: bool
    seconds: float


def train_solution(job: SolutionJob) -> Solution:
    """`baseline.fit` of one seed: what the stage keeps of it."""
    t = fit(job.base, job.model, job.optimizer, Inputs(job.device, {"mnist": job.mnist}, progress=job.progress),
            key=job.key, desc=f"mode_connectivity seed_{job.base.seed}")
    return Solution(t.model.state_dict(), t.init_state, t.result.steps, t.result.diverged, t.result.seconds)


@dataclass(frozen=True)
class CurveJob:
    """One pair's curve to train (`train_curve`): its endpoints, the pair's index k (its seeds are
    `curve.seed + k`) and the control point's optimizer, its lr already scaled by `curve.lr_factor`."""

    pair: str
    k: int
    a: dict[str, torch.Tensor]
    b: dict[str, torch.Tensor]
    c: ModeConnectivityConfig
    base: BaselineConfig
    model: ModelConfig
    optimizer: OptimizerSpec
    key: str
    mnist: Path
    device: str
    progress: bool


@dataclass(frozen=True)
class CurveRun:
    pair: str
    theta: dict[str, torch.Tensor]  # the trained control point
    draws: np.ndarray  # the t of every step
    step_loss: np.ndarray
    steps: int
    diverged: bool
    seconds: float
    epochs: list[dict]  # per epoch: pair, epoch, step, the barrier on the training subset


def train_curve(job: CurveJob) -> CurveRun:
    """Garipov et al.'s curve between `a` and `b`, its control point from their midpoint, trained by the
    one loop epoch by epoch until its barrier on the training subset stops falling (`curve.min_decrease`)."""
    c, device = job.c, torch.device(job.device)
    x_train, y_train = load_tensors(job.mnist, train=True, device=device)
    subset = fixed_subset(x_train, y_train, c.subset_size, c.subset_seed, "mode_connectivity.subset_size")
    net = build_model(job.model).to(device)
    ts = torch.linspace(0, 1, c.t_points, dtype=torch.float64)
    curve = mc.BezierCurve(build_model(job.model).to(device), job.a, job.b,
                           {n: (job.a[n] + job.b[n]) / 2 for n in job.a}, seed=c.curve.seed + job.k)
    opt = job.optimizer.build(curve.theta.parameters(), key=job.key)
    ends = sub_state(job.a, PREFIX), sub_state(job.b, PREFIX)
    history: list[float] = []
    epochs: list[dict] = []

    def until_flat(end: EpochEnd) -> bool:
        loss, _ = mc.curve_loss(net.classifier, ends[0], sub_state(curve.control(), PREFIX), ends[1], ts, *subset,
                                batch_size=c.eval_batch_size, t_chunk=c.t_chunk)
        history.append(mc.barrier(ts.numpy(), loss).height)
        epochs.append({"pair": job.pair, "epoch": end.epoch, "step": end.step, "barrier": history[-1]})
        return mc.stopped_falling(history, c.curve.min_decrease)

    res = train(curve, opt, x_train, y_train, batch_size=job.base.batch_size, seed=c.curve.seed + job.k,
                max_steps=step_budget(c.curve.max_epochs, len(x_train), job.base.batch_size, c.curve.max_steps),
                divergence_loss=job.base.divergence_loss, on_epoch_end=until_flat, progress=job.progress,
                desc=f"curve {job.pair}")
    return CurveRun(job.pair, {n: v.detach().clone() for n, v in curve.control().items()},
                    np.asarray(curve.draws[: res.steps]), res.step_loss, res.steps, res.diverged, res.seconds, epochs)


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values())


def _similarity(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """sum over layers of <W_A, W_B> and <b_A, b_B> (unpermuted): weight matching's objective at the identity."""
    return float(sum((a[w].double() * b[w].double()).sum() + (a[bias].double() * b[bias].double()).sum()
                     for w, bias in mc.linear_layers(a)))
