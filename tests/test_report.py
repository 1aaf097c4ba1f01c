"""The report stage: figures, claims and pages from fixture artifacts made by the real upstream studies.

The fixture runs the random_walk, surfaces, update_rules and optimizer_toys studies with small
params (seconds) and writes small synthetic baseline, interpolate,
identifiability, hessian, momentum_speedup and optimizer_grid artifacts (those
stages need MNIST and training: minutes), built where it is cheap with the code
the studies use (summarize_path, tiny_example, measures.log10_orderings,
momentum_speedup.summary_table, optimizer_grid.rank), so every artifact has
the format its stage really writes. Each claim's verdicts, driven one by one,
are tests/test_claims.py's.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from beyond_gd import cell_tables as T
from beyond_gd import cells as C
from beyond_gd import tracking
from beyond_gd import measures
from beyond_gd.cells import EPOCH_COLUMNS
from beyond_gd.config import load
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.landscape import identifiability as ident
from beyond_gd.landscape.connectivity import barrier
from beyond_gd.landscape.interpolation import alpha_grid, summarize_path
from beyond_gd.report import build as report_build
from beyond_gd.report import registry
from beyond_gd.report.artifacts import Artifacts
from beyond_gd.report.claims import COLUMNS, check_claims
from beyond_gd.report.figures import CLAIMS, FIGURES
from beyond_gd.stage import execute, write
from beyond_gd.stages.report import STAGE
from beyond_gd.studies import edge_of_stability as edge_of_stability_study
from beyond_gd.studies import lbfgs as lbfgs_study
from beyond_gd.studies import lr_adaptation as lr_adaptation_study
from beyond_gd.studies import momentum_speedup, optimizer_grid, optimizer_toys, random_walk, surfaces, update_rules
from beyond_gd.studies import report as report_study
from beyond_gd.study import Inputs
from conftest import REPO, composed, report_reads, write_params
from test_claims import hessian as claim_hessian
from test_claims import hessian_density as hessian_density_picture
from test_edge_of_stability import synthetic_curves

REPORT: dict[str, Any] = yaml.safe_load((REPO / "conf" / "report" / "default.yaml").read_text())
ARTIFACTS = report_reads()


def upstream_params() -> dict[str, Any]:
    """The upstream sections shrunk to seconds, keeping what the claims check at the defaults' strength."""
    params = copy.deepcopy(composed())
    params["random_walk"].update(repeats=1000, measure_steps=1500, burn_in=500)  # ~0.7% std error
    params["surfaces"]["escape"].update(runs=100, noise_sweep=[0.0, 8.0], trajectories_saved=3, record_every=50)
    params["surfaces"]["critical"].update(samples=20_000, max_dim=6)
    params["surfaces"]["angle"].update(directions=720, condition_sweep=[1.0, 10.0, 100.0, 10_000.0])
    params["update_rules"]["adam_bias"].update(repeats=5000)  # ~2% standard error at step 1, inside the 5% tolerance
    params["optimizer_toys"]["quadratic"].update(kappas=[10.0, 100.0, 1000.0], momentum_scan=200)
    params["optimizer_toys"]["plateau"].update(grid_points=31)
    return params


def record(folder: Path, stage: str, **extra: Any) -> None:
    """The run record every stage writes beside its outputs (run.json)."""
    (folder / "run.json").write_text(json.dumps({"mlflow_run_id": f"fixture-{stage}",
                                                 "mlflow_experiment": f"beyond-gd/{stage}",
                                                 "mlflow_experiment_id": str(ARTIFACTS.index(stage) + 1), **extra}))


def write_baseline(folder: Path) -> None:
    """A small training run's artifacts in the baseline's format (3 epochs of 50 steps)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    step = np.arange(1, 151)
    loss = 2.3 * np.exp(-step / 40) + 0.1 + 0.05 * rng.random(150)
    pd.DataFrame({"step": step, "epoch": (step - 1) // 50 + 1, "loss": loss}).to_csv(folder / "steps.csv",
                                                                                    index=False)
    pd.DataFrame({"epoch": [1, 2, 3], "step": [50, 100, 150], "train_loss": [0.9, 0.4, 0.3],
                  "train_accuracy": [0.8, 0.88, 0.9], "test_loss": [0.95, 0.45, 0.35],
                  "test_accuracy": [0.79, 0.87, 0.89]}).to_csv(folder / "epochs.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"train_loss": 0.3, "train_accuracy": 0.9, "test_loss": 0.35,
                                                     "test_accuracy": 0.89, "steps": 150, "diverged": False}))
    record(folder, "baseline")


def write_interpolate(folder: Path) -> None:
    """interpolate's path.csv and summary.csv for 3 random points: the book's shape, a bowl at alpha = 0
    that has flattened out by alpha = 1, rising again beyond it."""
    folder.mkdir(parents=True)
    alphas = alpha_grid(-2.0, 2.0, 0.05)
    bowl = np.exp(-alphas**2 / 0.18)  # 1 at the SGD solution, 0.004 at alpha = 1
    rows, summaries = [], []
    for k, label in enumerate(("init", "seed_1", "seed_2")):
        for split, at_0 in (("train", 0.06), ("test", 0.09)):
            at_1 = 2.303 + 0.002 * k
            loss = at_1 - (at_1 - at_0) * bowl + 0.3 * np.clip(alphas - 1, 0, None) ** 2
            rows.append(pd.DataFrame({"alpha": alphas, "split": split, "theta_rand": label, "loss": loss,
                                      "accuracy": 0.1 + 0.88 * bowl}))
            summary = summarize_path(alphas, loss, flat_window=0.1, min_depth=1e-6)
            summaries.append({"theta_rand": label, "split": split, **dataclasses.asdict(summary)})
    pd.concat(rows, ignore_index=True).to_csv(folder / "path.csv", index=False)
    summary = pd.DataFrame(summaries)
    summary.assign(minima_alphas=summary.minima_alphas.map(lambda a: ";".join(f"{v:g}" for v in a))) \
        .to_csv(folder / "summary.csv", index=False)
    record(folder, "interpolate")


def write_identifiability(folder: Path) -> None:
    """identifiability's outputs for 2 trials: the symmetries at float32 round-off, the rescaling with k < 0 and
    the control O(1)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base_loss, eps = 0.0856, float(np.finfo(np.float32).eps)
    change = {"permutation": (2.5 * eps, 1e-9), "rescaling": (2.0 * eps, 2e-9), "both": (2.8 * eps, 3e-9),
              "negative_rescaling": (0.4, 0.3), "control": (1.1, 2.8)}
    rows = [{"trial": trial, "transform": name, "max_param_change": 0.5 if name != "control" else 0.2,
             "max_logit_change": 20 * logit * (1 + 0.1 * rng.random()),
             "rel_logit_change": logit * (1 + 0.1 * rng.random()),
             "test_loss": base_loss + loss, "test_loss_change": loss * (1 + 0.1 * rng.random()),
             "test_accuracy_change": 0.8 if name == "control" else 0.0,
             "predictions_changed": 9000 if name == "control" else 0}
            for trial in range(2) for name, (logit, loss) in change.items()]
    trials = pd.DataFrame(rows)
    trials.to_csv(folder / "trials.csv", index=False)
    example = ident.tiny_example(2, 3, 2, 4, torch.Generator().manual_seed(0))
    (folder / "example.json").write_text(json.dumps(dataclasses.asdict(example)))
    worst = trials.groupby("transform").max(numeric_only=True)
    metrics = {"log10_orderings": measures.log10_orderings([256, 256]), "hidden_layers": 2, "test_loss": base_loss,
               "max_abs_logit": 20.0, "float32_eps": eps,
               **{name: {k: float(worst.loc[name, k]) for k in worst.columns if k != "trial"} for name in change},
               "example_orderings": len(example.orderings),
               "example_max_output_change": max(example.max_output_change)}
    (folder / "summary.json").write_text(json.dumps(metrics))
    record(folder, "identifiability")


def write_hessian(folder: Path) -> None:
    """hessian's eigenvalues.csv, path.csv and summary.json at 3 alphas, top 3 eigenvalues: curvature
    falling from the SGD solution to the init, the last pair at alpha = 1 not converged."""
    folder.mkdir(parents=True)
    eig, path = [], []
    for alpha, scale in ((0.0, 1.0), (0.5, 0.4), (1.0, 0.03)):
        values = [17 * scale, 12 * scale, 7 * scale, -0.2 - 0.2 * alpha]
        for (which, rank), value in zip((("top", 1), ("top", 2), ("top", 3), ("min", 1)), values, strict=True):
            residual = 0.03 if (alpha, which) == (1.0, "min") else 1e-6
            eig.append({"alpha": alpha, "which": which, "rank": rank, "value": value, "residual": residual,
                        "residual_bound": residual * 1e-3, "converged": residual <= 1e-3 * values[0]})
        trace, stderr = 140 * scale - 1.0, 10.0 * max(scale, 0.5)
        path.append({"alpha": alpha, "loss": 0.06 + 2.2 * alpha, "grad_norm": 0.3, "lambda_max": values[0],
                     "lambda_min": values[-1], "trace": trace, "trace_stderr": stderr,
                     "top_over_kth": values[0] / values[2], "top_over_abs_min": values[0] / abs(values[-1]),
                     "top_over_mean": values[0] * 269_322 / trace, "lanczos_steps": 80,
                     "max_residual": max(r["residual"] for r in eig if r["alpha"] == alpha),
                     "converged": all(r["converged"] for r in eig if r["alpha"] == alpha)})
    pd.DataFrame(eig).to_csv(folder / "eigenvalues.csv", index=False)
    pd.DataFrame(path).to_csv(folder / "path.csv", index=False)
    # The oscillation runs as the claims' fixture has them: SGD zig-zags along the top eigenvector, momentum not.
    claim_hessian()[("hessian", "oscillation.csv")].to_csv(folder / "oscillation.csv", index=False)
    solution = {k: v for k, v in path[0].items() if k not in ("alpha", "lanczos_steps")}
    metrics = {"parameters": 269_322, "subset_size": 5000,
               "timing": {"gradient_seconds": 0.13, "hvp_seconds": 0.26, "hvp_over_gradient": 2.0, "repeats": 5},
               "solution": {**solution, **{f"lambda_{r['rank']}": r["value"] for r in eig
                                           if r["alpha"] == 0.0 and r["which"] == "top"}},
               "path": {f"alpha_{r['alpha']:g}".replace(".", "_"): {k: r[k] for k in
                                                                      ("lambda_max", "lambda_min", "trace",
                                                                       "converged")} for r in path}}
    (folder / "summary.json").write_text(json.dumps(metrics))
    record(folder, "hessian")


def write_hessian_density(folder: Path) -> None:
    """hessian_density's density.csv, top.csv, ritz.csv and summary.json (test_claims' picture): a bulk near zero
    and, from the first epoch on, 9 outliers up to 9."""
    folder.mkdir(parents=True)
    picture = hessian_density_picture()
    summary = picture[("hessian_density", "summary.json")]
    picture[("hessian_density", "ritz.csv")].to_csv(folder / "ritz.csv", index=False)
    grid = np.linspace(-1.0, 10.0, 300)
    dens, top = [], []
    for point, m in summary["points"].items():
        bulk = np.exp(-0.5 * (grid / 0.1) ** 2) / (0.1 * np.sqrt(2 * np.pi))
        dens.append(pd.DataFrame({"point": point, "eigenvalue": grid, "density": bulk + 1e-6}))
        top += [{"point": point, "start": 0, "rank": r + 1, "value": v} for r, v in enumerate(m["top"])]
    pd.concat(dens).to_csv(folder / "density.csv", index=False)
    pd.DataFrame(top).to_csv(folder / "top.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(summary))
    record(folder, "hessian_density")


def write_momentum_speedup(folder: Path) -> None:
    """momentum_speedup's outputs at the default config (2 setups x sgd/sgd_momentum/sgd_nesterov and the
    equal-step control x 3 seeds), the book's shape: SGD reaches 0.1 in ~18,500 steps, momentum and Nesterov
    in ~2,100, SGD at the equal step in 2.5 times momentum's."""
    folder.mkdir(parents=True)
    cfg = load(composed(), momentum_speedup.Config)
    c, names = cfg.momentum_speedup, list(momentum_speedup.specs(cfg))
    reach = {"sgd": 18_500, "sgd_momentum": 2_100, "sgd_nesterov": 1_900, momentum_speedup.EQUAL_STEP: 5_250}
    runs, steps, epochs = [], [], []
    for setup in c.setups:
        for opt in names:
            for seed in c.seeds:
                n = reach[opt] + 100 * seed
                runs.append({"setup": setup, "optimizer": opt, "seed": seed, "steps_to_target": n,
                             "steps_to_target_smoothed": n, "steps_to_target_epoch_last": n + 50,
                             "steps_to_target_train_loss": -(-n // 550) * 550})
                step = np.arange(10, n + 500, 10)
                loss = 2.3 * np.exp(-step / (n / np.log(23))) + 0.01 * seed
                steps.append(pd.DataFrame({"setup": setup, "optimizer": opt, "seed": seed, "step": step,
                                           "loss": loss, "smoothed": loss}))
                ends = step[step % 550 == 0]
                epochs.append(pd.DataFrame({"setup": setup, "optimizer": opt, "seed": seed,
                                            "epoch": np.arange(1, len(ends) + 1), "step": ends,
                                            "epoch_last_loss": 2.3 * np.exp(-ends / (n / np.log(23))),
                                            "seconds": ends / 300}))
    momentum_speedup.summary_table(pd.DataFrame(runs), c, names).to_csv(folder / "summary.csv", index=False)
    pd.DataFrame(runs).assign(reached=True).to_csv(folder / "runs.csv", index=False)
    pd.concat(steps).to_csv(folder / "steps.csv", index=False)
    pd.concat(epochs).to_csv(folder / "epochs.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({
        "cells": len(runs), "target_loss": c.target_loss, "smoothing_window": c.smoothing_window,
        "baseline": c.baseline, "equal_step_of": c.equal_step_of, "equal_step": momentum_speedup.EQUAL_STEP,
        "equal_step_lr": momentum_speedup.specs(cfg)[momentum_speedup.EQUAL_STEP].lr,
        "max_steps": {s: setup.max_steps for s, setup in c.setups.items()},
        "stalled": [{"setup": "book_first_edition", "optimizer": "sgd", "seed": 9, "dead_units": "1 5",
                     "weakest_unit": 1, "weakest_share": 0.0},
                    {"setup": "book_first_edition", "optimizer": "sgd_momentum", "seed": 9, "dead_units": "",
                     "weakest_unit": 7, "weakest_share": 0.012}]}))
    record(folder, "momentum_speedup", cells=len(runs))


# The grid fixture's picture: each optimizer's score (training-set loss after one epoch) at its best lr, and
# that lr's place in its search of five (0-4). Four adaptive methods within a few percent at the top (tied),
# every popular method well clear of SGD, whose best lr lies inside its search.
GRID_SCORES = {"adagrad": (0.092, 3), "rmsprop": (0.094, 0), "adadelta": (0.095, 2), "adam": (0.097, 3),
               "sgd_nesterov": (0.121, 4), "sgd_momentum": (0.125, 3), "rmsprop_momentum": (0.130, 0),
               "sgd": (0.180, 3), "asgd": (0.185, 3)}


def grid_cell(name: str, k: int, seed: int) -> dict[str, Any]:
    """One cell of the grid fixture: a bowl in log lr around the best place, a few percent of seed noise;
    RMSProp (with and without momentum) diverges at the top two lrs of its search."""
    score, best = GRID_SCORES[name]
    diverged = name.startswith("rmsprop") and k >= 3
    loss = score * (1 + 0.6 * (k - best) ** 2) * (1 + 0.04 * math.sin(1.7 * seed + len(name)))
    row = {"train_loss": None if diverged else loss, "train_accuracy": None if diverged else 1 - loss / 3,
           "test_loss": None if diverged else 1.1 * loss, "test_accuracy": None if diverged else 0.99 - loss / 3,
           "final_loss": None if diverged else 1.2 * loss, "diverged": diverged,
           "steps_to_target": None if diverged or loss > 0.3 else 400 + 1000 * loss,
           "seconds_to_target": None if diverged or loss > 0.3 else 1.3}
    # ASGD's averaged weights, the ones it is ranked by: a little better than its iterate at its best lr.
    averaged = {"train_loss": 0.97 * loss, "train_accuracy": 1 - loss / 3, "test_loss": 1.05 * loss,
                "test_accuracy": 0.99 - loss / 3.1}
    return row | {f"average_{m}": v if name == "asgd" and not diverged else None for m, v in averaged.items()}


def write_optimizer_grid(folder: Path, long_budget: bool = True) -> None:
    """optimizer_grid's outputs at the default grid (9 optimizers x 5 lrs x 5 seeds), ranked by the study's own
    `rank`; with `long_budget`, the longer budget's epochs (10 epochs, 3 seeds, at each best lr) as the
    thorough profile runs it, else long.csv empty as in the default profile."""
    folder.mkdir(parents=True)
    grid = load(composed(), optimizer_grid.Config)
    cfg, optimizers = grid.optimizer_grid, grid.optimizers
    cells, steps = [], []
    for name, lrs in cfg.lrs.items():
        for k, lr in enumerate(lrs):
            for seed in cfg.seeds:
                row = grid_cell(name, k, seed)
                cells.append({"id": f"{name}-lr{lr:g}-s{seed}", "optimizer": name, "lr": lr, "seed": seed,
                              "steps": 938, "train_seconds": 3.0, **row, "evaluations": 938,
                              "torch_name": optimizers[name].class_name})
                end = row["final_loss"] or 50.0
                step = np.arange(5, 940, 5)
                loss = end + (2.3 - end) * np.exp(-step / 150)
                steps.append(pd.DataFrame({"optimizer": name, "lr": lr, "seed": seed, "step": step, "loss": loss,
                                           "smoothed": loss}))
    table = pd.DataFrame(cells)
    ranking = optimizer_grid.rank(table, cfg)
    lb = cfg.long_budget
    epochs, long_cells = [], []
    if long_budget:
        for r in ranking.itertuples():
            for seed in lb.seeds:
                ends = grid_cell(r.optimizer, GRID_SCORES[r.optimizer][1], seed)
                for epoch in range(1, lb.epochs + 1):
                    # Falling as a power of the epoch; the SGD family catches up late, so ranks move.
                    fall = epoch ** (-0.9 if r.torch_name in ("SGD", "ASGD") else -0.6)
                    epochs.append({"optimizer": r.optimizer, "lr": r.best_lr, "seed": seed, "epoch": epoch,
                                   "step": 938 * epoch, "seconds": 3.0 * epoch, "epoch_last_loss": ends["final_loss"],
                                   "evaluations": 938 * epoch,
                                   **{k: None if v is None else (v * fall if "loss" in k else 1 - (1 - v) * fall)
                                      for k, v in ends.items() if k.startswith(("train_", "test_", "average_"))}})
                long_cells.append({"optimizer": r.optimizer, "diverged": False,
                                   **{k: v for k, v in epochs[-1].items() if k.endswith(("_loss", "_accuracy"))}})
        ranking = ranking.merge(optimizer_grid.long_summary(pd.DataFrame(long_cells), cfg), on="optimizer",
                                how="left")
    else:
        ranking = ranking.assign(**dict.fromkeys(optimizer_grid.LONG_COLUMNS, np.nan))
    table.to_csv(folder / "cells.csv", index=False)
    ranking.to_csv(folder / "summary.csv", index=False)
    pd.concat(steps).to_csv(folder / "steps.csv", index=False)
    pd.DataFrame(epochs, columns=optimizer_grid.LABELS + EPOCH_COLUMNS).to_csv(folder / "long.csv", index=False)
    # The averaging runs: ASGD at its best lr and its neighbours, 4 epochs, averaged over the last 2.
    asgd = ranking.set_index("optimizer").loc["asgd"]
    search = [float(v) for v in asgd["lrs"].split()]
    k = search.index(asgd["best_lr"])
    tail = [{"optimizer": "asgd", "lr": lr, "seed": seed, "epoch": epoch, "step": 938 * epoch, "seconds": 3.0 * epoch,
             "evaluations": 938 * epoch, "train_loss": 0.1 / epoch + 0.01 * seed, "test_accuracy": 0.97,
             "average_train_loss": 0.1 / epoch - 0.005 * (epoch > 2), "average_test_accuracy": 0.972, "t0": 1876}
            for lr in search[max(0, k - 1): k + 2] for seed in (0, 1, 2) for epoch in (1, 2, 3, 4)]
    pd.DataFrame(tail).reindex(columns=optimizer_grid.LABELS + EPOCH_COLUMNS + ["t0"]).to_csv(
        folder / "averaging.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({
        "cells": len(table), "diverged_cells": int(table["diverged"].sum()), "rank_by": cfg.rank_by,
        "budget_steps": 938, "target_loss": cfg.target_loss, "smoothing_window": cfg.smoothing_window,
        "seeds": len(cfg.seeds), "lrs_per_optimizer": {k: len(v) for k, v in cfg.lrs.items()},
        "confidence": cfg.bootstrap.confidence,
        "excluded": dict(cfg.excluded), "tied_with_best": list(ranking.loc[ranking["tied_with_best"], "optimizer"]),
        "long_budget": {"ran": long_budget, "epochs": lb.epochs, "steps": 938 * lb.epochs, "seeds": len(lb.seeds),
                        "cells": len(long_cells), "lr": "each optimizer's best lr of the one-budget grid"},
        "averaging": {"ran": True, "optimizer": "asgd", "lrs": search[max(0, k - 1): k + 2], "best_lr": asgd["best_lr"],
                      "epochs": 4, "window": 2, "steps": 3752, "t0": 1876, "seeds": 3, "cells": 9},
        "ranking": {r.optimizer: {"rank": r.rank, "best_lr": r.best_lr, "score_mean": r.score_mean}
                    for r in ranking.itertuples()}}, default=float))
    # Grown by a fifth lr: its cells ran now, the rest were kept from two earlier runs.
    kept = len(table) - len(table) // 5
    record(folder, "optimizer_grid", cells=len(table) + len(long_cells) - kept, cells_kept=kept,
           cells_kept_in={"fixture-earlier-grid": kept - 9, "fixture-first-grid": 9})


def write_lbfgs(folder: Path) -> None:
    """lbfgs's outputs at the default config (L-BFGS full-batch on 5,000 images, 5 steps; SGD, momentum and
    Adam at batch 64 for 120 epochs, evaluated every eval_every-th epoch; SciPy's CG full batch for L-BFGS's
    evaluations, one row an iteration, its test accuracy at the end; 3 seeds), summarised by the study's own
    `targets_table` and `summarize`: L-BFGS ends lowest per example-gradient, Adam close behind, CG far above."""
    folder.mkdir(parents=True)
    c = load(composed(), lbfgs_study.Config).lbfgs
    cg = lbfgs_study.CG
    lrs = {c.optimizer: 1.0, "sgd": 0.1, "sgd_momentum": 0.0316, "adam": 0.00316, cg: float("nan")}
    batch = {c.optimizer: c.train_images, **dict.fromkeys(c.compare, c.batch_size), cg: c.train_images}
    per_epoch = {c.optimizer: (c.steps, 1), **dict.fromkeys(c.compare, (c.epochs, -(-c.train_images // c.batch_size))),
                 cg: (60, 1)}
    rate = {c.optimizer: 1.5, "sgd": 0.02, "sgd_momentum": 0.03, "adam": 0.05, cg: 0.0125}  # decades per epoch
    epochs, cells = [], []
    for name in [c.optimizer, *c.compare, cg]:
        n, steps = per_epoch[name]
        for seed in c.seeds:
            # L-BFGS: up to max_iter evaluations a step, and a few more for the line search; CG: its 101 over
            # 60 iterations (L-BFGS's 5 x (20 + seed), give or take the last line search).
            evaluations = (np.cumsum(np.full(n, 20 + seed)) if name == c.optimizer
                           else np.linspace(3, 5 * (20 + seed) + 1, n).round().astype(int) if name == cg
                           else steps * np.arange(1, n + 1))
            epoch = np.arange(1, n + 1)
            loss = 2.0 * 10 ** (-rate[name] * epoch * (1 + 0.02 * seed))
            # What was evaluated: L-BFGS every step, the first-order methods every eval_every-th epoch and the
            # last, CG its loss every iteration and the rest at the end.
            seen = (epoch % c.eval_every == 0) | (epoch == n) if name in c.compare else np.ones(n, bool)
            end = epoch == n if name == cg else seen
            epochs.append(pd.DataFrame({
                "optimizer": name, "seed": seed, "epoch": epoch, "step": steps * epoch,
                "seconds": evaluations * (0.1 if name in (c.optimizer, cg) else 0.002), "epoch_last_loss": loss,
                "evaluations": evaluations, "example_gradients": evaluations * batch[name],
                "train_loss": np.where(seen, loss, np.nan), "train_accuracy": np.where(end, 1 - loss / 4, np.nan),
                "test_loss": np.where(end, 0.3 + loss, np.nan),
                "test_accuracy": np.where(end, 0.93 - loss / 4, np.nan)}))
            cells.append({"optimizer": name, "seed": seed, "steps": steps * n, "diverged": False})
    table = pd.concat(epochs, ignore_index=True)
    for m in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
        table[f"average_{m}"] = np.nan
    # The full-batch methods' loss at each gradient evaluation: here at their steps' ends.
    full = table[table.optimizer.isin([c.optimizer, cg])]
    trace = full.assign(loss=full["epoch_last_loss"])[lbfgs_study.TRACE_COLUMNS]
    targets = lbfgs_study.targets_table(table, trace, dict.fromkeys(c.seeds, 2.3), c)
    summary = lbfgs_study.summarize(table, pd.DataFrame(cells), c, lrs, batch, targets)
    table.to_csv(folder / "epochs.csv", index=False)
    trace.to_csv(folder / "evaluations.csv", index=False)
    targets.to_csv(folder / "targets.csv", index=False)
    summary.to_csv(folder / "summary.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({
        "optimizer": c.optimizer, "compare": c.compare, "train_images": c.train_images, "seeds": len(c.seeds),
        "targets": c.targets, "loss_dtype": {c.optimizer: "float64", **dict.fromkeys(c.compare, "float32"),
                                             cg: "float64"},
        "lbfgs": {"max_iter": 20, "history_size": 100, "line_search_fn": "strong_wolfe"},
        "eval_every": c.eval_every, "cg": {"ran": True, "max_evaluations": {str(s): 5 * (20 + s) for s in c.seeds}},
        "parameters": 269_322, "memory_bytes": {"bfgs": 269_322**2 * 4, "lbfgs": (2 * 100 * 269_322 + 100) * 4},
        "results": {r.optimizer: {"lr": None if pd.isna(r.lr) else r.lr, "train_loss_mean": r.train_loss_mean}
                    for r in summary.itertuples()}}))
    # The cells: the lr search's and the first-order methods' (L-BFGS and CG train in the stage's process).
    record(folder, "lbfgs", cells=len(c.compare) * (len(c.search_factors) + len(c.seeds)))


def write_lr_adaptation(folder: Path) -> None:
    """lr_adaptation's outputs at the default config from synthetic cells, through the study's own tables:
    AdaGrad's loss levels off as its effective lr falls like 1/sqrt(step), RMSProp's lr holds and its loss
    goes on down; uncorrected Adam's first updates three times corrected Adam's."""
    folder.mkdir(parents=True)
    cfg = load(composed(), lr_adaptation_study.Config)
    c, per_epoch = cfg.lr_adaptation, 938
    lrs = {"adagrad": 0.0316, "rmsprop": 0.001, "adam": 0.00316, c.uncorrected: 0.00316}
    outputs = []
    for cell in lr_adaptation_study.build_cells(cfg, lrs):
        name, n = cell.labels["optimizer"], cell.max_steps
        step = np.arange(1, n + 1)
        floor = {"adagrad": 0.03, "rmsprop": 0.02, "adam": 0.02}.get(name, 0.3)
        loss = floor + 2.0 / np.sqrt(step) * (1 + 0.01 * cell.seed)
        probed = np.unique(np.r_[1, np.arange(c.probe_every, n + 1, c.probe_every)])
        median = 0.01 / np.sqrt(probed) if name == "adagrad" else np.full(len(probed), 0.01)
        probes = pd.DataFrame({"step": probed, "lr_q25": median / 2, "lr_median": median, "lr_q75": median * 2})
        sizes = pd.DataFrame({"step": np.arange(1, c.probe_updates + 1),
                              "update_norm": 0.3 if name == c.uncorrected else 0.1})
        probes = sizes.merge(probes, on="step", how="outer")[C.PROBE_COLUMNS]
        evaluated = name != c.uncorrected
        result = {"steps": n, "diverged": False, "train_loss": floor if evaluated else None,
                  "test_accuracy": 0.97 if evaluated else None}
        outputs.append(C.CellOutput(cell, result, pd.DataFrame({"step": step, "loss": loss}), pd.DataFrame(),
                                    probes=probes))
    probes = pd.concat([o.probes.assign(optimizer=o.cell.labels["optimizer"], seed=o.cell.seed) for o in outputs])
    epoch_loss = lr_adaptation_study.epoch_losses(outputs, per_epoch)
    lr_adaptation_study.summarize(outputs, probes, epoch_loss, c, lrs, per_epoch).to_csv(folder / "summary.csv", index=False)
    probes[["optimizer", "seed", *C.PROBE_COLUMNS]].to_csv(folder / "probes.csv", index=False)
    epoch_loss.to_csv(folder / "epoch_loss.csv", index=False)
    T.steps_table(outputs, ["optimizer", "seed"], c.curve_stride, c.smoothing_window).to_csv(
        folder / "steps.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({
        "optimizers": c.optimizers, "corrected": c.corrected, "uncorrected": c.uncorrected, "epochs": c.epochs,
        "steps_per_epoch": per_epoch, "early_steps": c.early_steps, "probe_every": c.probe_every,
        "probe_updates": c.probe_updates, "seeds": len(c.seeds), "lr_after_step": 150,
        "lr_source": "optimizer_grid best_lr", "lrs": lrs, "diverged": []}))
    record(folder, "lr_adaptation", cells=len(outputs))


def write_mode_connectivity(folder: Path) -> None:
    """mode_connectivity's outputs for 3 solutions (3 pairs) on 11 points of t: a bump of 0.8 nats on the
    straight line, 0.06 after weight matching, 0.03 on the trained curve (barriers by the study's own
    `barrier`), and Fig 6-3 from each solution to its init in the interpolate stage's shape (summarize_path)."""
    folder.mkdir(parents=True)
    labels = ("seed_0", "seed_1", "seed_2")
    pd.DataFrame([{"solution": lab, "seed": k, "steps": 4690, "epochs": 5, "diverged": False, "final_step_loss": 0.23,
                   "train_loss": 0.30 + 0.002 * k, "train_accuracy": 0.915, "test_loss": 0.29, "test_accuracy": 0.916}
                  for k, lab in enumerate(labels)]).to_csv(folder / "solutions.csv", index=False)
    t = np.linspace(0, 1, 11)
    rows, bars, matching = [], [], []
    for k, (a, b) in enumerate([("seed_0", "seed_1"), ("seed_0", "seed_2"), ("seed_1", "seed_2")]):
        pair = f"{a}~{b}"
        for path, height in (("linear", 0.8 + 0.05 * k), ("aligned", 0.06), ("curve", 0.03)):
            for split, at_0 in (("train", 0.30), ("test", 0.29)):
                loss = at_0 + 0.002 * t + 4 * height * t * (1 - t)
                acc = 0.915 - 0.2 * height * 4 * t * (1 - t)
                rows.append(pd.DataFrame({"pair": pair, "a": a, "b": b, "path": path, "split": split, "t": t,
                                          "loss": loss, "accuracy": acc}))
                bar = barrier(t, loss)
                bars.append({"pair": pair, "a": a, "b": b, "path": path, "split": split, "barrier": bar.height,
                             "barrier_t": bar.t, "loss_at_0": bar.loss_at_0, "loss_at_1": bar.loss_at_1,
                             "loss_max": float(loss.max()), "accuracy_min": float(acc.min()),
                             "accuracy_drop": barrier(t, -acc).height, "diverged": False,
                             "curve_steps": 938 if path == "curve" else 0,
                             "endpoint_loss": (bar.loss_at_0 + bar.loss_at_1) / 2})
        matching += [{"pair": pair, "a": a, "b": b, "layer": layer, "units": 256, "units_moved": 254, "sweeps": 12,
                      "converged": True, "similarity_identity": 2.5, "similarity_matched": 51.0} for layer in (1, 2)]
    pd.concat(rows, ignore_index=True).to_csv(folder / "paths.csv", index=False)
    pd.DataFrame(bars).to_csv(folder / "barriers.csv", index=False)
    pd.DataFrame(matching).to_csv(folder / "matching.csv", index=False)
    pd.DataFrame({"pair": "seed_0~seed_1", "step": np.arange(1, 11), "t": np.linspace(0.05, 0.95, 10),
                  "loss": np.linspace(0.6, 0.35, 10)}).to_csv(folder / "curve_steps.csv", index=False)
    pd.DataFrame([{"pair": pair, "epoch": e, "step": 938 * e, "barrier": 0.1 / e} for pair in
                  ("seed_0~seed_1", "seed_0~seed_2", "seed_1~seed_2") for e in (1, 2, 3)]).to_csv(
        folder / "curve_epochs.csv", index=False)
    alphas = alpha_grid(-2.0, 2.0, 0.05)
    bowl = np.exp(-alphas**2 / 0.18)
    lines, summaries = [], []
    for k, label in enumerate(labels):
        for split, at_0 in (("train", 0.30), ("test", 0.29)):
            loss = 2.304 + 0.001 * k - (2.304 - at_0) * bowl + 0.3 * np.clip(alphas - 1, 0, None) ** 2
            lines.append(pd.DataFrame({"alpha": alphas, "split": split, "theta_rand": "init", "loss": loss,
                                       "accuracy": 0.1 + 0.8 * bowl, "theta_opt": label}))
            summary = dataclasses.asdict(summarize_path(alphas, loss, flat_window=0.1, min_depth=1e-6))
            summaries.append({"theta_rand": "init", "split": split, **summary,
                              "minima_alphas": ";".join(f"{v:g}" for v in summary["minima_alphas"]),
                              "theta_opt": label})
    pd.concat(lines, ignore_index=True).to_csv(folder / "interpolation_path.csv", index=False)
    pd.DataFrame(summaries).to_csv(folder / "interpolation_summary.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({"solutions": 3, "pairs": 3, "curve_max_epochs": 6,
                                                     "curve_epochs_run": {pair: 3 for pair in (
                                                         "seed_0~seed_1", "seed_0~seed_2", "seed_1~seed_2")}}))
    record(folder, "mode_connectivity")
def write_edge_of_stability(folder: Path) -> None:
    """edge_of_stability's curves.csv, runs.csv and summary.json: GD at lr 0.2 and 0.4 sharpening to 2/lr and
    hovering just above it, at lr 0.1 still short of it, SGD at lr 0.01 and 0.1 far below its 2/lr (the study's
    own run summary)."""
    folder.mkdir(parents=True)
    curves, specs = synthetic_curves()
    curves.to_csv(folder / "curves.csv", index=False)
    runs = edge_of_stability_study.summarize(curves, specs, reach=0.9)
    runs.to_csv(folder / "runs.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({
        "subset_size": 5000, "parameters": 269_322, "steps": 200, "eval_every": 10, "reach": 0.9, "init_seed": 0,
        "optimizer": "sgd", "tol": 0.01, "max_products": 60, "basis_size": 8, "init_lambda_max": 0.47,
        "init_residual": 0.004, "init_products": 15, "init_converged": True,
        "products": 15 + int(curves["products"].sum()), "evaluations": len(curves), "unconverged_evaluations": 0,
        "runs": {r["run"]: {k: (None if pd.isna(v) else v) for k, v in r.items() if k != "run"}
                 for r in runs.astype(object).to_dict("records")}}, default=float))
    record(folder, "edge_of_stability")
def write_landscape_2d(folder: Path) -> None:
    """landscape_2d's random plane, path planes, paths and summary.json: test_claims' picture, a bowl around
    the SGD solution and two bent paths (the claim's three verdicts come from the same writer there)."""
    from test_claims import landscape_2d

    folder.mkdir(parents=True)
    for (_, name), value in landscape_2d().items():
        if name.endswith(".csv"):
            value.to_csv(folder / name, index=False)
        else:
            (folder / name).write_text(json.dumps(value))
    record(folder, "landscape_2d")
def write_interpolate_notebook(folder: Path) -> None:
    """interpolate_notebook's path.csv, summary.csv and summary.json on its default grid (step 0.01) for one
    fresh network on the training set: the notebook's barely trained net (2.10 at alpha = 0, chance at 1)."""
    folder.mkdir(parents=True)
    alphas = alpha_grid(-2.0, 2.0, 0.01)
    bowl = np.exp(-alphas**2 / 0.18)
    loss = 2.303 - 0.203 * bowl + 0.3 * np.clip(alphas - 1, 0, None) ** 2
    pd.DataFrame({"alpha": alphas, "split": "train", "theta_rand": "seed_1", "loss": loss,
                  "accuracy": 0.1 + 0.2 * bowl}).to_csv(folder / "path.csv", index=False)
    summary = summarize_path(alphas, loss, flat_window=0.1, min_depth=1e-6)
    pd.DataFrame([{"theta_rand": "seed_1", "split": "train", **dataclasses.asdict(summary),
                   "minima_alphas": ";".join(f"{v:g}" for v in summary.minima_alphas)}]) \
        .to_csv(folder / "summary.csv", index=False)
    (folder / "summary.json").write_text(json.dumps({
        "training": {"train_loss": 2.1, "train_accuracy": 0.3, "test_loss": 2.1, "test_accuracy": 0.3,
                     "steps": 37520, "diverged": False, "optimizer": "sgd", "lr": 1e-4,
                     "final_relu": True},
        "alphas": len(alphas), "alpha_step": 0.01, "flat_window": 0.1, "theta_rands": 1}))
    record(folder, "interpolate_notebook")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Upstream artifacts under data/<artifact> of a temp folder, and the params that made them: the cheap
    studies run for real (their Result written as the runner writes it), the others synthetic."""
    root = tmp_path_factory.mktemp("upstream")
    params = upstream_params()
    write_params(root / "params.yaml", params)
    threads = torch.get_num_threads()
    for study in (random_walk, surfaces, update_rules, optimizer_toys):
        name = study.__name__.rsplit(".", 1)[-1]
        folder = root / "data" / name
        folder.mkdir(parents=True)
        write(study.run(load(params, study.Config), Inputs()), folder)
        record(folder, name)
    torch.set_num_threads(threads)
    write_baseline(root / "data" / "baseline")
    write_interpolate(root / "data" / "interpolate")
    write_identifiability(root / "data" / "identifiability")
    write_hessian(root / "data" / "hessian")
    write_hessian_density(root / "data" / "hessian_density")
    write_momentum_speedup(root / "data" / "momentum_speedup")
    write_optimizer_grid(root / "data" / "optimizer_grid")
    write_lbfgs(root / "data" / "lbfgs")
    write_lr_adaptation(root / "data" / "lr_adaptation")
    write_mode_connectivity(root / "data" / "mode_connectivity")
    write_edge_of_stability(root / "data" / "edge_of_stability")
    write_landscape_2d(root / "data" / "landscape_2d")
    write_interpolate_notebook(root / "data" / "interpolate_notebook")
    yield root, params


@pytest.fixture(scope="module")
def built_without_long(upstream: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report stage on the same artifacts but a grid without the longer budget (the default profile)."""
    root, params = upstream
    work = tmp_path_factory.mktemp("report-short")
    data = work / "data"
    shutil.copytree(root / "data", data)
    shutil.rmtree(data / "optimizer_grid")
    write_optimizer_grid(data / "optimizer_grid", long_budget=False)
    out = work / "reports"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
        mp.chdir(work)
        execute(STAGE, stage_args(data, root / "params.yaml", out))
    return out


def stage_args(data: Path, params: Path, out: Path) -> list[str]:
    return ["--params", str(params), *(a for name in ARTIFACTS for a in (f"--{name.replace('_', '-')}",
                                                                            str(data / name))), "--out", str(out)]


@pytest.fixture(scope="module")
def built(upstream: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report stage run once on the fixture artifacts; its output folder."""
    root, params = upstream
    work = tmp_path_factory.mktemp("report")
    out = work / "reports"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
        mp.chdir(work)
        tracking.experiment_id("surfaces", "The toy studies.")  # as if the surfaces stage had run in this store
        execute(STAGE, stage_args(root / "data", root / "params.yaml", out))
        runs = mlflow.search_runs(experiment_names=["beyond-gd/report"])
        logged = {a.path for a in MlflowClient().list_artifacts(runs.loc[0, "run_id"])}
        client = MlflowClient()
        notes = {e.name: e.tags.get("mlflow.note.content", "") for e in client.search_experiments()}
    assert len(runs) == 1 and runs.loc[0, "status"] == "FINISHED"
    assert {"figures", "claims.csv", "index.html", "README.md", "metrics.json", "run.json"} <= logged
    # The report's experiment says what the stage computes; an upstream stage's (one that had run here) gets
    # the titles of the figures it feeds.
    assert notes["beyond-gd/report"] == STAGE.computes
    assert all(title in notes["beyond-gd/surfaces"] for title in report_build.figures_by_artifact()["surfaces"])
    return out


# --------------------------------------------------------------------------
# The stage end to end
# --------------------------------------------------------------------------
@pytest.mark.slow
def test_every_figure_is_a_valid_nonempty_image(built: Path) -> None:
    formats = REPORT["style"]["formats"]
    expected = {f"{spec.name}.{fmt}" for spec in FIGURES for fmt in formats} | {report_build.DRAWN}
    assert {p.name for p in (built / "figures").iterdir()} == expected
    for spec in FIGURES:
        assert re.fullmatch(r"(fig6-\d\d|extra)-[a-z0-9-]+", spec.name), spec.name
        for fmt in formats:
            path = built / "figures" / f"{spec.name}.{fmt}"
            assert path.stat().st_size > 1000, path
            if fmt == "png":
                with Image.open(path) as img:
                    img.verify()
                with Image.open(path) as img:
                    assert img.format == "PNG" and min(img.size) > 200, (path, img.size)
                    assert len(np.unique(np.asarray(img.convert("L")))) > 10, f"{path}: a blank image"
            elif fmt == "svg":
                assert ET.parse(path).getroot().tag.endswith("svg"), path


@pytest.mark.slow
def test_figures_do_not_depend_on_how_many_are_drawn_at_once(built: Path, upstream: tuple[Path, dict[str, Any]],
                                                              tmp_path: Path) -> None:
    """The stage drew its figures in worker processes (--jobs, one per CPU); one drawn here, in this process,
    is the same file, byte for byte."""
    cfg = load(upstream[1], report_study.Config).report
    (tmp_path / "figures").mkdir()
    for index, spec in enumerate(FIGURES):
        if spec.name in ("fig6-09-momentum", "extra-optimizer-grid-heatmap"):
            report_build._draw((index, tmp_path, {n: upstream[0] / "data" / n for n in ARTIFACTS}, cfg.style,
                                cfg.figures))
            for fmt in cfg.style.formats:
                name = f"figures/{spec.name}.{fmt}"
                assert (tmp_path / name).read_bytes() == (built / name).read_bytes(), name


@pytest.mark.slow
def test_a_rerun_redraws_only_the_figures_whose_inputs_or_style_changed(
        built: Path, upstream: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """Each figure's key (its inputs' bytes, style, params, code) is in figures/drawn.json: a re-run keeps a
    figure whose key is unchanged (its files, text and table exactly the last run's) and draws the others."""
    root, params = upstream
    cfg = load(params, report_study.Config).report
    last = json.loads((built / "figures" / report_build.DRAWN).read_text())
    assert set(last) == {spec.name for spec in FIGURES}

    def redraw(data: Path, style: Any, name: str) -> tuple[int, dict[str, Any]]:
        folder = tmp_path / name
        folder.mkdir()
        with report_build.Drawing(folder, Artifacts({n: data / n for n in ARTIFACTS}), style, cfg.figures, 1,
                                  built / "figures") as drawing:
            drawing.results()
        return drawing.redrawn, json.loads((folder / "figures" / report_build.DRAWN).read_text())

    assert redraw(root / "data", cfg.style, "same") == (0, last)  # nothing changed: every figure kept as it was
    for entry in last.values():
        for path in entry["files"].values():
            assert (tmp_path / "same" / path).read_bytes() == (built / path).read_bytes(), path
    # One input changed: only the figures that read it are drawn again.
    data = tmp_path / "data"
    shutil.copytree(root / "data", data)
    walks = pd.read_csv(data / "random_walk" / "std.csv")
    walks.iloc[0, -1] *= 1.5
    walks.to_csv(data / "random_walk" / "std.csv", index=False)
    readers = [spec.name for spec in FIGURES if any(n.artifact == "random_walk" and n.file == "std.csv"
                                                    for n in spec.needs)]
    count, record = redraw(data, cfg.style, "input")
    assert readers and count == len(readers)
    assert [name for name in last if record[name]["key"] != last[name]["key"]] == readers
    # A style change (every figure's pixels): everything is drawn again.
    assert redraw(root / "data", dataclasses.replace(cfg.style, dpi=cfg.style.dpi + 10), "style")[0] == len(FIGURES)
    # The stage itself keeps the figures of its output folder as the last run left it.
    out = tmp_path / "reports"
    shutil.copytree(built, out)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
        mp.chdir(tmp_path)
        result = execute(STAGE, stage_args(root / "data", root / "params.yaml", out))
    assert "(0 drawn" in result.lines[0], result.lines[0]
    assert (out / "README.md").read_text().split("## Provenance")[0] == (built / "README.md").read_text().split(
        "## Provenance")[0]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("src", "href") and v]


@pytest.mark.slow
def test_pages_reference_only_files_that_exist(built: Path) -> None:
    parser = _Links()
    parser.feed((built / "index.html").read_text())
    markdown = re.findall(r"\]\(([^)\s]+)\)", (built / "README.md").read_text())
    files = [link for link in parser.links + markdown if not link.startswith("#")]
    assert any(link.endswith(".png") for link in files) and "claims.csv" in files
    runs = [link for link in files if link.startswith(REPORT["mlflow_ui"] + "/")]
    assert runs, "no run id links to the MLflow UI"
    for link in runs:  # the UI's address of a run
        assert re.fullmatch(re.escape(REPORT["mlflow_ui"]) + r"/#/experiments/\d+/runs/[\w-]+", link), link
    for link in (link for link in files if link not in runs):
        assert "://" not in link and not link.startswith("/"), f"not a relative link: {link}"
        assert (built / link).is_file(), f"links to a missing file: {link}"
    for spec in FIGURES:  # every figure is on both pages
        assert f'id="{spec.name}"' in (built / "index.html").read_text()
        assert f"figures/{spec.name}." in (built / "README.md").read_text()


@pytest.mark.slow
def test_fig6_9_names_each_stalled_run_and_its_weakest_output_unit(built: Path) -> None:
    readme = (built / "README.md").read_text()
    assert "sgd 3 of 3 seeds reached 0.1" in readme
    assert "first-edition setup sgd seed 9 (dead output units: class 1, 5)" in readme
    assert ("first-edition setup sgd_momentum seed 9 (no dead output unit; class 7's unit positive on 1.2% of its "
            "images)") in readme


@pytest.mark.slow
def test_claims_table_verdicts_and_provenance(built: Path) -> None:
    table = pd.read_csv(built / "claims.csv")
    assert list(table.columns) == COLUMNS
    assert list(table["id"]) == [c.id for c in CLAIMS]
    for c, row in zip(CLAIMS, table.itertuples(), strict=True):
        assert row.kind == c.kind and row.verdict in registry.OUTCOMES[c.kind], row
    measured = table[table["kind"] == registry.MEASURED]
    metrics = json.loads((built / "metrics.json").read_text())
    assert sum(metrics[v.replace(" ", "_")] for v in registry.VERDICTS) == metrics["claims"] == len(measured)
    assert metrics["checks_failing"] == int((table["verdict"] == registry.FAILS).sum())
    page = (built / "index.html").read_text()
    for row in table.itertuples():
        assert f'<td class="verdict {row.verdict.replace(" ", "-")}">' in page
    for key in ("git commit", "params hash", "device", "libraries", "date (UTC)", "sha256"):
        assert key in page, key
    assert not any(built.parent.glob(".reports.*")), "a temp folder was left behind"


@pytest.mark.slow
def test_fixture_checks_hold_and_claims_decide(built: Path) -> None:
    """On the small fixture every check holds, and every measured claim either decides or says why it could
    not (a budget too short to reach a target reads not measured, with its reason); whether the resampling
    signs a decision is the verdict's business, tested in tests/test_claims.py."""
    table = pd.read_csv(built / "claims.csv").set_index("id")
    checks = table[table["kind"] == registry.CHECK]
    assert (checks["verdict"] == registry.HOLDS).all(), checks.loc[checks["verdict"] != registry.HOLDS, "measured"]
    measured = table[table["kind"] == registry.MEASURED]
    unmeasured = measured["decided"] == registry.NOT_MEASURED
    assert measured.loc[~unmeasured, "decided"].isin(registry.DECIDED).all()
    assert measured.loc[unmeasured, "note"].notna().all() and unmeasured.sum() < len(measured) / 2, measured["note"]


@pytest.mark.slow
def test_every_figure_is_drawn_where_the_longer_budget_ran(built: Path) -> None:
    metrics = json.loads((built / "metrics.json").read_text())
    assert metrics["figures"] == len(FIGURES)
    page = (built / "index.html").read_text()
    assert "Not drawn:" not in page and "(not drawn)" not in page
    assert "long: rank" in page and "The longer budget ran" in page


@pytest.mark.slow
def test_without_the_longer_budget_its_figure_is_listed_not_drawn(built_without_long: Path) -> None:
    """The default profile: the longer budget's figure is on both pages with its reason and no image, the
    other figures say it did not run, and the run counts only the figures drawn."""
    metrics = json.loads((built_without_long / "metrics.json").read_text())
    assert metrics["figures"] == len(FIGURES) - 1
    assert not list((built_without_long / "figures").glob("extra-long-budget.*"))
    page, readme = (built_without_long / "index.html").read_text(), (built_without_long / "README.md").read_text()
    for text in (page, readme):
        assert "Not drawn:" in text and "long_budget.enabled is false" in text
        assert "figures/extra-long-budget." not in text
    assert "long: rank" not in page  # the grid table has no columns for a budget that did not run
    # ASGD's figure reads its own averaging runs (on in this fixture), not the longer budget.
    assert "The averaging runs (" in page.split('id="extra-asgd-average"')[1].split("</figure>")[0]
    verdicts = pd.read_csv(built_without_long / "claims.csv").set_index("id")["verdict"]
    assert verdicts["little_consensus_on_the_best"] in registry.VERDICTS


def test_run_ids_link_to_the_mlflow_ui_and_kept_cells_name_their_runs(tmp_path: Path) -> None:
    """`mlflow_runs`: each run id a link to its page in the UI (<ui>/#/experiments/<id>/runs/<run id>); a
    stage of training cells says how many it ran and kept, and under which runs the kept ones were recorded
    (some of them before cells said so); both pages render the links, a record without its experiment's id
    stays plain text."""
    from beyond_gd.report import page
    from beyond_gd.report.artifacts import Need

    for stage, extra in (("optimizer_grid", {"cells": 0, "cells_kept": 225, "cells_kept_in": {"r1": 200, "r2": 5}}),
                         ("lbfgs", {"cells": 1, "cells_kept": 0}), ("baseline", {})):
        (tmp_path / stage).mkdir()
        record(tmp_path / stage, stage, **extra)
    (tmp_path / "baseline" / "run.json").write_text(json.dumps({"mlflow_run_id": "b", "mlflow_experiment": "x"}))
    artifacts = Artifacts({n: tmp_path / n for n in ("optimizer_grid", "lbfgs", "baseline")})
    ui, grid = "http://127.0.0.1:5000", ARTIFACTS.index("optimizer_grid") + 1
    pieces = report_build.mlflow_runs(artifacts, (Need("optimizer_grid", "x"), Need("lbfgs", "x"),
                                                  Need("baseline", "x")), ui)
    assert page.plain(pieces) == (
        "beyond-gd/optimizer_grid run fixture-optimizer_grid, which ran no cell: 225 cells kept from earlier runs "
        "(200 recorded under run r1, 5 recorded under run r2, 20 whose run is not recorded); "
        "beyond-gd/lbfgs run fixture-lbfgs with its 1 nested cell run; x run b")
    links = [p for p in pieces if isinstance(p, page.Link) and p.url]
    assert [(link.text, link.url) for link in links] == [
        ("fixture-optimizer_grid", f"{ui}/#/experiments/{grid}/runs/fixture-optimizer_grid"),
        ("r1", f"{ui}/#/experiments/{grid}/runs/r1"), ("r2", f"{ui}/#/experiments/{grid}/runs/r2"),
        ("fixture-lbfgs", f"{ui}/#/experiments/{ARTIFACTS.index('lbfgs') + 1}/runs/fixture-lbfgs")]
    figure = page.PageFigure("f", "F", "shows", "book", "measured", {"png": "figures/f.png"}, pieces)
    table = pd.DataFrame([{"id": "c", "kind": "measured", "figure": "F", "source": "§ s", "book": "b", "measured": "m",
                           "tolerance": "t", "verdict": "agrees", "decided": "agrees", "p_verdict": 1.0, "margin": 3.0,
                           "seeds": 5, "note": ""}])
    html_page = page.html_page([figure], table, {}, pd.DataFrame(), ui)
    markdown = page.markdown_page([figure], table, {}, pd.DataFrame(), ui)
    for link in links:
        assert f'<a href="{link.url}">{link.text}</a>' in html_page and f"[{link.text}]({link.url})" in markdown
    assert "x run b" in html_page and f"MLflow UI at {ui}" in markdown
    # Without a UI address, no links at all.
    assert not any(isinstance(p, page.Link) and p.url for p in report_build.mlflow_runs(
        artifacts, (Need("optimizer_grid", "x"),)))


# What a reader should never meet in a figure, a caption or a table: a Python repr (a dict, a list, a numpy
# scalar, None or nan where a number belongs).
REPR = re.compile(r"\{'|\['|np\.(?:float|int)\d*\(|\bNone\b|\bnan\b")
# A count of one with a plural noun ("1 outliers"); the words ending in s that are no plurals aside.
ONE_PLURAL = re.compile(r"(?<![\d.,\-−⁻×^])(?<![−+×] )\b1 ([A-Za-z-]+s)\b")
NOT_PLURAL = {"is", "was", "has", "as", "its", "this", "does", "thus", "plus", "less", "across"}


def reader_problems(where: str, text: str) -> list[str]:
    """`text`'s Python reprs and "1 <plural>"s, each as 'where: the offending words'."""
    found = [m.group(0) for m in REPR.finditer(text)]
    found += [m.group(0) for m in ONE_PLURAL.finditer(text) if m.group(1).lower() not in NOT_PLURAL]
    return [f"{where}: {word!r} in {text[:160]!r}" for word in found]


def drawn_texts(figure: Any) -> list[str]:
    """Every text matplotlib draws on `figure` (titles, labels, tick labels, legends, annotations)."""
    from matplotlib.text import Text

    figure.canvas.draw()  # tick labels exist once drawn
    return [t.get_text() for t in figure.findobj(Text) if t.get_visible() and t.get_text()]


def sparse_log_axes(figure: Any) -> list[str]:
    """The log axes of `figure` with fewer than two labelled ticks in view: a scale no value can be read from."""
    sparse = []
    for k, ax in enumerate(figure.axes):
        for name, axis in (("x", ax.xaxis), ("y", ax.yaxis)):
            if not ax.get_visible() or axis.get_scale() != "log" or not any(axis.get_ticklabels()):
                continue
            lo, hi = sorted(axis.get_view_interval())
            shown = {float(tick.get_loc()) for tick in [*axis.get_major_ticks(), *axis.get_minor_ticks()]
                     if lo <= tick.get_loc() <= hi and any(label.get_visible() and label.get_text()
                                                           for label in (tick.label1, tick.label2))}
            if len(shown) < 2:
                sparse.append(f"axes {k} {ax.get_title()!r}, {name}: labelled at {sorted(shown)} of [{lo:g}, {hi:g}]")
    return sparse


@pytest.mark.slow
def test_no_python_repr_or_one_plural_in_any_figure_caption_or_claim(upstream: tuple[Path, dict[str, Any]]) -> None:
    """Every figure drawn from the fixture artifacts in this process (the texts on it, its title, caption,
    measured text, table and runs) and every claim's measured text read as prose: no Python repr, no "1 outliers",
    and every log axis labelled at two ticks at least."""
    import matplotlib.pyplot as plt

    from beyond_gd.report import page
    from beyond_gd.report.style import apply

    root, params = upstream
    cfg = load(params, report_study.Config).report
    artifacts = Artifacts({n: root / "data" / n for n in ARTIFACTS})
    apply(cfg.style)
    problems: list[str] = []
    for spec in FIGURES:
        drawn = spec.draw(artifacts.view(spec.needs), cfg.figures, cfg.style)
        texts = {"title": spec.title, "shows": spec.shows, "book": spec.book, "measured": drawn.measured,
                 "MLflow runs": page.plain(report_build.mlflow_runs(artifacts, spec.needs, cfg.mlflow_ui))}
        if drawn.table is not None:
            texts["table"] = drawn.table.to_csv(index=False)
        if drawn.figure is not None:
            texts |= {f"on the figure ({k})": t for k, t in enumerate(drawn_texts(drawn.figure))}
            problems += [f"{spec.name}: {axis}" for axis in sparse_log_axes(drawn.figure)]
            plt.close(drawn.figure)
        problems += [p for where, text in texts.items() for p in reader_problems(f"{spec.name} {where}", text)]
    table = check_claims(CLAIMS, artifacts.view, cfg.claims, cfg.concepts, cfg.verdicts)
    problems += [p for row in table.itertuples() for what in ("measured", "note")
                 for p in reader_problems(f"claim {row.id} {what}", getattr(row, what))]
    assert not problems, "\n".join(problems)


def test_reader_problems_catch_reprs_and_one_plural() -> None:
    """The check above fails on what it is for, and passes prose."""
    for bad in ("{'sgd': 5} lrs", "lrs ['a', 'b']", "np.float64(0.5) nats", "lr None", "init: 1 outliers",
                "a loss of nan"):
        assert reader_problems("t", bad), bad
    for fine in ("5 lrs × 5 seeds", "1 outlier", "class 1 is", "0.1 seeds", "after epoch 1", "10 runs, 21 points",
                 "about C − 1 outliers"):
        assert not reader_problems("t", fine), fine


@pytest.mark.slow
def test_report_imports_no_training_code() -> None:
    code = ("import sys, beyond_gd.stages.report; "
            "print(' '.join(m for m in sys.modules if m.startswith('beyond_gd')))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # landscape.spectrum is numpy only: the outliers statistic the report shares with hessian_density.
    allowed = ("beyond_gd.studies.report", "beyond_gd.landscape", "beyond_gd.landscape.spectrum")
    forbidden = [m for m in loaded if m not in allowed and (
                 m.split(".")[1:2] and m.split(".")[1] in
                 ("training", "model", "optim", "landscape", "data", "cells", "launch", "toys")
                 or m.startswith("beyond_gd.studies."))]
    assert "torch" not in subprocess.run([sys.executable, "-c", "import sys, beyond_gd.stages.report; "
                                          "print(' '.join(sys.modules))"], capture_output=True, text=True,
                                         check=True).stdout.split()
    assert not forbidden, forbidden


# --------------------------------------------------------------------------
# Params and inputs: one-line errors, nothing written
# --------------------------------------------------------------------------
BAD = [
    (("style", "dpi"), 0, "report.style.dpi: must be > 0"),
    (("style", "formats"), ["bmp"], "report.style.formats: 'bmp' is not allowed"),
    (("style", "context"), "huge", "report.style.context: 'huge' is not allowed"),
    (("style", "palette"), "no-such-palette", "report.style.palette:"),
    (("style", "colormap"), "no-such-map", "report.style.colormap:"),
    (("style", "font_size"), 3, "report.style.font_size: unknown key"),
    (("figures", "band_z"), None, "report.figures.band_z:"),
    (("figures", "training_smooth_steps"), "many", "report.figures.training_smooth_steps:"),
    (("claims", "cg_n_steps"), -1, "report.claims.cg_n_steps: must be >= 0"),
    (("claims", "no_such_claim"), 0.1, "report.claims.no_such_claim: not a claim with a tolerance of its own"),
    # flat_region_near_alpha_1 takes "flat" from the concepts: a number of its own would be a second one.
    (("claims", "flat_region_near_alpha_1"), 0.2, "report.claims.flat_region_near_alpha_1: not a claim with"),
    (("concepts", "flat"), None, "report.concepts.flat:"),
    (("concepts", "steep"), 0.5, "report.concepts.steep: no claim uses it"),
    (("verdicts", "p_min"), 1.5, "report.verdicts.p_min: must be < 1"),
    (("verdicts", "resamples"), 0, "report.verdicts.resamples: must be > 0"),
    (("figurez",), {}, "report.figurez: unknown key"),
    (("mlflow_ui",), "127.0.0.1:5000", "report.mlflow_ui: must be an http(s) address"),
]


@pytest.mark.parametrize(("where", "value", "message"), BAD, ids=[b[2].split(":")[0] for b in BAD])
def test_bad_param_is_a_one_line_config_error(tmp_path: Path, where: tuple[str, ...], value: Any,
                                              message: str) -> None:
    """Params are checked before any input is read (the data folders here do not even exist)."""
    params = {"report": copy.deepcopy(REPORT)}
    node = params["report"]
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    out = tmp_path / "reports"
    with pytest.raises(ConfigError) as err:
        execute(STAGE, stage_args(tmp_path / "data", write_params(tmp_path / "p.yaml", params), out))
    assert str(err.value).startswith(message) and "\n" not in str(err.value), err.value
    assert not out.exists()


def test_a_claim_without_its_tolerance_is_named(tmp_path: Path) -> None:
    params = {"report": copy.deepcopy(REPORT)}
    del params["report"]["claims"]["adam_bias_factor"]
    with pytest.raises(ConfigError, match=r"^report\.claims\.adam_bias_factor: missing"):
        execute(STAGE, stage_args(tmp_path / "data", write_params(tmp_path / "p.yaml", params), tmp_path / "r"))


def test_a_concept_a_claim_uses_is_named_when_missing(tmp_path: Path) -> None:
    params = {"report": copy.deepcopy(REPORT)}
    del params["report"]["concepts"]["near_zero_barrier"]
    with pytest.raises(ConfigError, match=r"^report\.concepts\.near_zero_barrier: missing"):
        execute(STAGE, stage_args(tmp_path / "data", write_params(tmp_path / "p.yaml", params), tmp_path / "r"))


def test_default_tolerances_cover_exactly_the_registered_claims() -> None:
    assert set(REPORT["claims"]) == {c.id for c in CLAIMS if c.own_tolerance}
    assert load({"report": REPORT}, report_study.Config).report.claims == REPORT["claims"]


@pytest.mark.slow
def test_missing_artifact_is_a_one_line_data_error(upstream: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(upstream[0] / "data", data)
    (data / "random_walk" / "std.csv").unlink()
    out = tmp_path / "reports"
    with pytest.raises(DataError, match=r"std\.csv: missing \(an output of the stage behind --random-walk"):
        execute(STAGE, stage_args(data, write_params(tmp_path / "p.yaml", upstream[1]), out))
    assert not out.exists()


@pytest.mark.slow
def test_a_failure_part_way_leaves_the_old_report(upstream: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A figure that cannot be drawn stops the stage; the previous report stays whole, no temp folder stays."""
    data = tmp_path / "data"
    shutil.copytree(upstream[0] / "data", data)
    curve = data / "surfaces" / "fig6_1_curve.csv"  # the first figure's input: the stage fails at once
    pd.read_csv(curve).rename(columns={"loss": "los"}).to_csv(curve, index=False)
    out = tmp_path / "reports"
    out.mkdir()
    (out / "index.html").write_text("the previous report")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(KeyError, match="loss"):
        execute(STAGE, stage_args(data, write_params(tmp_path / "p.yaml", upstream[1]), out))
    assert (out / "index.html").read_text() == "the previous report"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".reports")) == []


def test_stage_arguments_are_the_registries_artifacts() -> None:
    """One --<artifact> argument per upstream stage some figure or claim reads, and no other."""
    assert sorted(report_build.artifact_names()) == sorted(ARTIFACTS)
    needs = report_build.needs()
    assert len(needs) == len(set(needs)) and {n.artifact for n in needs} == set(ARTIFACTS)


def test_dvc_yaml_declares_every_artifact_the_report_reads() -> None:
    """A figure's input missing from the report's deps would go stale silently; an extra one re-runs it needlessly."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["report"]
    read = {f"data/{need.artifact}/{need.file}" for need in report_build.needs()}  # the stage's default folders
    declared = {d for d in stage["deps"] if not d.startswith("src/")}
    assert read - declared == set(), "read but not declared"
    assert declared - read == set(), "declared but never read: a needless re-run"


def test_the_lbfgs_claims_read_loss_at_compute_by_the_stages_own_rule(tmp_path: Path) -> None:
    """The claims resample per seed what the lbfgs stage's summary.csv averages: each method's loss at L-BFGS's
    compute; their mean over seeds is the stage's number."""
    from beyond_gd.report.figures.extra_lbfgs import at_compute

    write_lbfgs(tmp_path / "lbfgs")
    epochs, summary = pd.read_csv(tmp_path / "lbfgs" / "epochs.csv"), pd.read_csv(tmp_path / "lbfgs" / "summary.csv")
    mean = at_compute(epochs, "lbfgs").groupby("optimizer")["train_loss"].mean()
    expected = summary.set_index("optimizer")["train_loss_at_lbfgs_compute"]
    pd.testing.assert_series_equal(mean.sort_index(), expected.sort_index(), check_names=False, rtol=1e-12)
