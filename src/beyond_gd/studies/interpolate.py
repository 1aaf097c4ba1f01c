"""Fig 6-3: loss and accuracy on the line from the SGD solution to random points.

theta(alpha) = (1 - alpha) theta_opt + alpha theta_rand, on every split in
full. theta_rand is `init` (the baseline's own initialisation) or `seed_<s>`
(a fresh initialisation drawn as the baseline would with seed s).
Tables: `path.csv` (theta_rand, split, alpha: loss and accuracy), `curves.csv`
(one row per alpha: mean, min and max over the theta_rands of each split's
loss and its mean accuracy, fixed columns for `dvc plots`), `summary.csv` (per
theta_rand and split: local minima strictly inside (0, 1), barrier, slopes
near alpha = 1 and before it, losses at 0 and 1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from beyond_gd.config import ModelConfig, RuntimeConfig, required
from beyond_gd.data.mnist import load_tensors
from beyond_gd.errors import ConfigError
from beyond_gd.landscape.interpolation import State, alpha_grid, path_loss, sub_state, summarize_path
from beyond_gd.model import build_model, fresh_init, load_state
from beyond_gd.study import Inputs, Result, Series

THETA_RAND = ("init", "fresh")
SPLITS = ("train", "test")


@dataclass
class InterpolateConfig:
    # The grid: arange(alpha_start, alpha_stop, alpha_step), plus 0 and 1.
    alpha_start: float = required()
    alpha_stop: float = required()
    alpha_step: float = required(gt=0)
    # init: the baseline's own initialisation; fresh: one new init per fresh_seeds entry.
    theta_rand: list[str] = required(each_in=THETA_RAND, nonempty=True)
    fresh_seeds: list[int] = required(distinct=True, each_ge=0)
    splits: list[str] = required(each_in=SPLITS, nonempty=True)
    batch_size: int = required(gt=0)
    # Parameter sets per vmapped forward pass.
    alpha_chunk: int = required(gt=0)
    # Half-width of the "near alpha = 1" window for the slope comparison.
    flat_window: float = required(gt=0)
    # A local minimum must lie this far (in loss) below both neighbours to count.
    min_depth: float = required(ge=0)

    def check(self) -> None:
        if self.alpha_stop <= self.alpha_start:
            raise ConfigError(f"alpha_stop: must be > alpha_start ({self.alpha_start}), got {self.alpha_stop}")
        if "fresh" in self.theta_rand and not self.fresh_seeds:
            raise ConfigError("fresh_seeds: must not be empty when theta_rand holds fresh")
        if self.flat_window >= 1:
            raise ConfigError(f"flat_window: must be < 1 (the window lies inside [0, 1]), got {self.flat_window}")


@dataclass
class Config:
    interpolate: InterpolateConfig
    model: ModelConfig
    runtime: RuntimeConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c, device = cfg.interpolate, inputs.torch_device
    model = build_model(cfg.model).to(device)
    baseline = inputs.folder("baseline")
    theta_opt = load_state(baseline / "mnist.pt", model, device)
    init = load_state(baseline / "init.pt", model, device) if "init" in c.theta_rand else None
    thetas = random_points(c, cfg.model, init, device)
    alphas = alpha_grid(c.alpha_start, c.alpha_stop, c.alpha_step)
    data = {split: load_tensors(inputs.folder("mnist"), train=split == "train", device=device) for split in c.splits}
    path, table, splits = trace(c, model, theta_opt, thetas, data, progress=inputs.progress)
    first = c.splits[0]
    return Result(
        metrics={f"{first}_local_minima_max": splits[first]["local_minima_max"],
                 f"{first}_slope_ratio_max": splits[first]["slope_ratio_max"]},
        summary={"alphas": len(alphas), "theta_rands": len(thetas), **splits},
        tables={"path.csv": path, "curves.csv": _curves(path), "summary.csv": table},
        series=series(path, alphas),
        lines=lines(splits, len(thetas)),
    )


def random_points(c: InterpolateConfig, model: ModelConfig, init: State | None,
                  device: torch.device) -> dict[str, State]:
    """The theta_rands by label: `init` (the training run's own, given) and `seed_<s>` per fresh seed."""
    thetas = {"init": init} if "init" in c.theta_rand and init is not None else {}
    if "fresh" in c.theta_rand:
        thetas.update({f"seed_{s}": fresh_init(model, s, device) for s in c.fresh_seeds})
    return thetas


def trace(c: InterpolateConfig, model: nn.Module, theta_opt: State, thetas: dict[str, State],
          data: dict[str, tuple[torch.Tensor, torch.Tensor]], *,
          progress: bool) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, dict[str, float | int | bool]]]:
    """Every (theta_rand, split) line on c's grid: path.csv, summary.csv and each split's worst case.

    `model` is the book's Net (its `classifier`), `data` the splits of c.splits by name.
    """
    alphas = alpha_grid(c.alpha_start, c.alpha_stop, c.alpha_step)
    frames, summaries = [], []
    paths = [(label, split) for label in thetas for split in c.splits]
    for label, split in tqdm(paths, desc="interpolate", unit="path", disable=not progress):
        x, y = data[split]
        loss, acc = path_loss(model.classifier, sub_state(theta_opt, "classifier."),
                              sub_state(thetas[label], "classifier."), torch.from_numpy(alphas), x, y,
                              batch_size=c.batch_size, alpha_chunk=c.alpha_chunk)
        frames.append(pd.DataFrame({"alpha": alphas, "split": split, "theta_rand": label, "loss": loss,
                                    "accuracy": acc}))
        summary = summarize_path(alphas, loss, flat_window=c.flat_window, min_depth=c.min_depth)
        summaries.append({"theta_rand": label, "split": split, **dataclasses.asdict(summary)})
    path = pd.concat(frames, ignore_index=True)
    table = pd.DataFrame(summaries)
    splits = {split: _aggregate(table[table.split == split]) for split in c.splits}
    return path, table.assign(minima_alphas=table.minima_alphas.map(lambda a: ";".join(f"{v:g}" for v in a))), splits


def series(path: pd.DataFrame, alphas: np.ndarray) -> list[Series]:
    """Each path's loss and accuracy per alpha, for MLflow."""
    paths = path[["theta_rand", "split"]].drop_duplicates().itertuples(index=False)
    return [Series(range(len(alphas)), {"alpha": alphas} | {
        f"{split}_{kind}/{label}": path.loc[(path.split == split) & (path.theta_rand == label), kind].to_numpy()
        for label, split in paths for kind in ("loss", "accuracy")})]


def lines(splits: dict[str, dict[str, float | int | bool]], theta_rands: int) -> list[str]:
    return [f"{split}: loss {m['loss_at_0']:.4f} at 0, {m['loss_at_1_mean']:.4f} at 1; local minima in (0, 1): "
            f"at most {m['local_minima_max']}; slope near 1 / before: {m['slope_ratio_max']:.3g} "
            f"(worst of {theta_rands})" for split, m in splits.items()]


def _aggregate(rows: pd.DataFrame) -> dict[str, float | int | bool]:
    """One split's summaries over all theta_rands: the worst case for each claim."""
    return {
        "loss_at_0": float(rows.loss_at_0.iloc[0]),
        "loss_at_1_mean": float(rows.loss_at_1.mean()),
        "loss_at_1_min": float(rows.loss_at_1.min()),
        "loss_at_1_max": float(rows.loss_at_1.max()),
        "local_minima_max": int(rows.local_minima.max()),
        "local_minima_strict_max": int(rows.local_minima_strict.max()),
        "barrier_max": float(rows.barrier.max()),
        "monotone_all": bool(rows.monotone_0_to_1.all()),
        "slope_near_1_mean": float(rows.slope_near_1.mean()),
        "slope_between_mean": float(rows.slope_between.mean()),
        "slope_ratio_mean": float(rows.slope_ratio.mean()),
        "slope_ratio_max": float(rows.slope_ratio.max()),
    }


def _curves(path: pd.DataFrame) -> pd.DataFrame:
    """Per alpha: mean/min/max loss and mean accuracy of each split over the theta_rands."""
    stats = path.groupby(["split", "alpha"]).agg(loss_mean=("loss", "mean"), loss_min=("loss", "min"),
                                                 loss_max=("loss", "max"), accuracy_mean=("accuracy", "mean"))
    wide = stats.unstack("split")
    wide.columns = [f"{split}_{stat}" for stat, split in wide.columns]
    return wide.reset_index()
