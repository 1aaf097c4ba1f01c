"""Stage `interpolate`: Fig 6-3, loss and accuracy on the line from the SGD solution to a random point.

Outputs (in `--out`):
- `path.csv`: long format, one row per (theta_rand, split, alpha): loss and accuracy
  on the whole split at `(1 - alpha) * theta_opt + alpha * theta_rand`.
  theta_rand is `init` (the baseline's own initialisation) or `seed_<s>` (a
  fresh initialisation drawn as train_baseline would with seed s).
- `curves.csv`: wide, one row per alpha: mean, min and max over the theta_rands
  of each split's loss and mean accuracy (fixed columns, for `dvc plots`).
- `summary.csv`: one row per (theta_rand, split): local minima strictly inside
  (0, 1), barrier, slopes near alpha = 1 and before it, losses at 0 and 1.
- `metrics.json`: those summaries aggregated over theta_rands, and the stage time.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import mlflow
import pandas as pd
import torch
from tqdm.auto import tqdm

from beyond_gd.config import required, section
from beyond_gd.data.mnist import load_tensors
from beyond_gd.errors import ConfigError
from beyond_gd.landscape.interpolation import alpha_grid, path_loss, sub_state, summarize_path
from beyond_gd.model import fresh_init, load_state
from beyond_gd.stages.common import cli, staged
from beyond_gd.stages.trained import setup
from beyond_gd.tracking import log_series, stage_run, write_metrics

STAGE = "interpolate"
OUTPUTS = ("path.csv", "curves.csv", "summary.csv", "metrics.json")
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
    fresh_seeds: list[int] = required()
    splits: list[str] = required(each_in=SPLITS, nonempty=True)
    batch_size: int = required(gt=0)
    # Parameter sets per vmapped forward pass.
    alpha_chunk: int = required(gt=0)
    # Half-width of the "near alpha = 1" window for the slope comparison.
    flat_window: float = required(gt=0)
    # A local minimum must lie this far (in loss) below both neighbours to count.
    min_depth: float = required(ge=0)


def load_config(params: dict[str, Any]) -> InterpolateConfig:
    """The `interpolate` section, with the checks that span fields."""
    cfg = section(params, STAGE, InterpolateConfig)
    if cfg.alpha_stop <= cfg.alpha_start:
        raise ConfigError(f"{STAGE}.alpha_stop: must be > {STAGE}.alpha_start ({cfg.alpha_start}), "
                          f"got {cfg.alpha_stop}")
    if "fresh" in cfg.theta_rand and not cfg.fresh_seeds:
        raise ConfigError(f"{STAGE}.fresh_seeds: must not be empty when {STAGE}.theta_rand holds fresh")
    if len(set(cfg.fresh_seeds)) != len(cfg.fresh_seeds) or any(s < 0 for s in cfg.fresh_seeds):
        raise ConfigError(f"{STAGE}.fresh_seeds: must be distinct integers >= 0, got {cfg.fresh_seeds}")
    if cfg.flat_window >= 1:
        raise ConfigError(f"{STAGE}.flat_window: must be < 1 (the window lies inside [0, 1]), got {cfg.flat_window}")
    return cfg


def main(argv: list[str] | None = None) -> None:
    st = setup(STAGE, __doc__, load_config, argv)
    cfg, args, model, device = st.cfg, st.args, st.model, st.device
    theta_opt = load_state(st.baseline / "mnist.pt", model, device)
    thetas = {"init": load_state(st.baseline / "init.pt", model, device)} if "init" in cfg.theta_rand else {}
    if "fresh" in cfg.theta_rand:
        thetas.update({f"seed_{s}": fresh_init(st.model_cfg, s, device) for s in cfg.fresh_seeds})
    data = {split: load_tensors(args.data, train=split == "train", device=device) for split in cfg.splits}
    alphas = alpha_grid(cfg.alpha_start, cfg.alpha_stop, cfg.alpha_step)
    alphas_t = torch.from_numpy(alphas)

    out = st.out
    with stage_run(STAGE, st.read, device) as run, staged(*(out / name for name in OUTPUTS)) as paths:
        tmp = dict(zip(OUTPUTS, paths, strict=True))
        start = time.perf_counter()
        frames, summaries = [], []
        cells = [(label, split) for label in thetas for split in cfg.splits]
        for label, split in tqdm(cells, desc=STAGE, unit="path", disable=args.no_progress):
            x, y = data[split]
            loss, acc = path_loss(model.classifier, sub_state(theta_opt, "classifier."),
                                  sub_state(thetas[label], "classifier."), alphas_t, x, y,
                                  batch_size=cfg.batch_size, alpha_chunk=cfg.alpha_chunk)
            frames.append(pd.DataFrame({"alpha": alphas, "split": split, "theta_rand": label,
                                        "loss": loss, "accuracy": acc}))
            summary = summarize_path(alphas, loss, flat_window=cfg.flat_window, min_depth=cfg.min_depth)
            summaries.append({"theta_rand": label, "split": split, **dataclasses.asdict(summary)})
        seconds = time.perf_counter() - start

        path = pd.concat(frames, ignore_index=True)
        summary_df = pd.DataFrame(summaries)
        metrics = {"seconds": seconds, "alphas": len(alphas), "theta_rands": len(thetas),
                   **{split: _aggregate(summary_df[summary_df.split == split]) for split in cfg.splits}}
        path.to_csv(tmp["path.csv"], index=False)
        _curves(path).to_csv(tmp["curves.csv"], index=False)
        summary_df.assign(minima_alphas=summary_df.minima_alphas.map(lambda a: ";".join(f"{v:g}" for v in a))) \
            .to_csv(tmp["summary.csv"], index=False)
        write_metrics(tmp["metrics.json"], metrics)

        steps = list(range(len(alphas)))
        log_series(run.info.run_id, {"alpha": alphas} | {
            f"{split}_{kind}/{label}": path.loc[(path.split == split) & (path.theta_rand == label), kind].to_numpy()
            for label, split in cells for kind in ("loss", "accuracy")}, steps)
        mlflow.log_metrics({f"{split}.{k}": float(v) for split in cfg.splits
                            for k, v in metrics[split].items()} | {"seconds": seconds})
    for split in cfg.splits:
        m = metrics[split]
        print(f"{STAGE}: {split}: loss {m['loss_at_0']:.4f} at 0, {m['loss_at_1_mean']:.4f} at 1; "
              f"local minima in (0, 1): at most {m['local_minima_max']}; slope near 1 / before: "
              f"{m['slope_ratio_max']:.3g} (worst of {len(thetas)})")
    print(f"{STAGE}: {len(cells)} paths x {len(alphas)} alphas in {seconds:.1f} s")


def _aggregate(rows: pd.DataFrame) -> dict[str, float | int | bool]:
    """One split's summaries over all theta_rands: worst case for each claim."""
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


if __name__ == "__main__":
    cli(main)
