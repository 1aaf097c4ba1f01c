"""Tidy tables over many training cells (long format), from their artifacts (`cells.CellOutput`).

The studies made of cells build their tables here. Nothing here runs a cell,
so nothing here is part of a cell's key (`beyond_gd.cell_job.cell_key`):
editing a table re-runs the stage, and every finished cell is kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from beyond_gd.cells import EPOCH_COLUMNS, CellOutput
from beyond_gd.errors import DataError
from beyond_gd.measures import trailing_mean


def steps_table(outputs: list[CellOutput], labels: list[str], stride: int, window: int) -> pd.DataFrame:
    """labels..., step, loss, smoothed: every `stride`-th step of each cell (the curves' full
    resolution stays in each cell's steps.csv); `smoothed` is the trailing mean over `window` steps."""
    frames = []
    for o in outputs:
        loss = o.steps["loss"].to_numpy()
        keep = o.steps["step"].to_numpy() % stride == 0
        frames.append(pd.DataFrame({**{k: o.cell.labels[k] for k in labels}, "step": o.steps["step"][keep],
                                    "loss": loss[keep], "smoothed": trailing_mean(loss, window)[keep]}))
    return pd.concat(frames, ignore_index=True)


def epochs_table(outputs: list[CellOutput], labels: list[str]) -> pd.DataFrame:
    """labels..., then the EpochRow fields, one row per cell and epoch."""
    return pd.concat([o.epochs.assign(**{k: o.cell.labels[k] for k in labels})[labels + EPOCH_COLUMNS]
                      for o in outputs], ignore_index=True)


# Where, when and by which runs a cell ran (its own MLflow run, the stage's run it was recorded under):
# in its result.json, not in the tables, which are then the same for a grid run from scratch and one that
# kept finished cells (measured seconds aside).
PROVENANCE = ("pid", "host", "started_at", "finished_at", "mlflow_run_id", "parent_run_id", "cell_key")


def cells_table(outputs: list[CellOutput]) -> pd.DataFrame:
    """One row per cell: its result.json, where and when it ran aside."""
    return pd.DataFrame([{k: v for k, v in o.result.items() if k not in PROVENANCE} for o in outputs])


# What `seed_stats` gives of a group beside its count, in this order: the columns a summary takes.
STATS = ("mean", "std", "min", "max")


def seed_stats(frame: pd.DataFrame, by: list[str], column: str) -> pd.DataFrame:
    """Per group: how many seeds have a finite `column` (n), their mean, sample std (ddof 1), min and max."""
    finite = frame.assign(**{column: pd.to_numeric(frame[column], errors="coerce")
                             .replace([np.inf, -np.inf], np.nan)})
    return finite.groupby(by, sort=False)[column].agg(["count", *STATS]).rename(columns={"count": "n"})


def best_lrs(summary: pd.DataFrame, names: list[str], key: str) -> dict[str, float]:
    """The best learning rates the optimizer grid found (its summary.csv), for the optimizers a later stage
    names at `key`; a name with none is one line naming it."""
    best = summary.set_index("optimizer")["best_lr"]
    missing = [n for n in names if n not in best or pd.isna(best[n])]
    if missing:
        raise DataError(f"optimizer_grid/summary.csv: no best lr for {', '.join(missing)} (every lr diverged, or "
                        f"not in the grid); {key} names optimizers of the grid")
    return {n: float(best[n]) for n in names}
