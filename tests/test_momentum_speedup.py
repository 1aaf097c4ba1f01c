"""momentum_speedup's tables over its cells (no training): steps to the target as censored data."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from beyond_gd import measures
from beyond_gd.studies import momentum_speedup
from conftest import config

# Both setups (the default runs only the PyTorch one): the tables over each.
CFG = config(momentum_speedup.Config, "momentum_speedup.run_setups=[pytorch,book_first_edition]")
C = CFG.momentum_speedup
NAMES = list(momentum_speedup.specs(CFG))
SEEDS = [0, 1, 2, 3]
# Per (setup, optimizer), each seed's steps to the target (None: not within the setup's cap).
STEPS = {("book_first_edition", "sgd"): (15_000, 14_600, None, 14_800),
         ("book_first_edition", "sgd_momentum"): (1_950, None, None, None),
         ("book_first_edition", "sgd_nesterov"): (2_100, 1_900, None, 2_000),
         ("book_first_edition", momentum_speedup.EQUAL_STEP): (1_880, 1_870, None, 1_900)}


def runs() -> pd.DataFrame:
    rows = []
    for setup in C.setups:
        for opt in NAMES:
            for seed, n in zip(SEEDS, STEPS.get((setup, opt), (23_500 if opt == "sgd" else 3_000,) * 4),
                               strict=True):
                rows.append({"setup": setup, "optimizer": opt, "seed": seed,
                             "steps_to_target": math.nan if n is None else n + (seed if setup == "pytorch" else 0)})
    for column in ("smoothed", "epoch_last", "train_loss"):
        for r in rows:
            r[f"steps_to_target_{column}"] = r["steps_to_target"]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return momentum_speedup.summary_table(runs(), dataclasses.replace(C, seeds=SEEDS), NAMES).set_index(
        ["setup", "optimizer"])


@pytest.mark.parametrize(("optimizer", "median", "stall"), [
    # 3 of 4 reached: S 3/4, 1/2 at the second reach (14,800), which is the median; 1 stalled.
    ("sgd", 14_800, 0.25),
    # 1 of 4: S never falls to 1/2: undefined, though the mean over the seeds that reached it is 1,950.
    ("sgd_momentum", math.nan, 0.75),
    ("sgd_nesterov", 2_000, 0.25),
])
def test_km_median_and_stall_rate_count_the_runs_that_never_reached(summary: pd.DataFrame, optimizer: str,
                                                                     median: float, stall: float) -> None:
    row = summary.loc[("book_first_edition", optimizer)]
    assert (math.isnan(row.km_median) and math.isnan(median)) or row.km_median == median
    assert row.stall_rate == pytest.approx(stall) and row.share_reached == pytest.approx(1 - stall)
    assert row.reached == round(4 * (1 - stall))
    steps = np.array([s if s is not None else C.setups["book_first_edition"].max_steps
                      for s in STEPS[("book_first_edition", optimizer)]], dtype=float)
    reached = np.array([s is not None for s in STEPS[("book_first_edition", optimizer)]])
    assert (math.isnan(row.km_median) and math.isnan(measures.km_median(steps, reached))) or \
        row.km_median == measures.km_median(steps, reached)


def test_km_ratios_divide_the_medians_and_are_undefined_with_one(summary: pd.DataFrame) -> None:
    book = summary.loc["book_first_edition"]
    assert book.loc["sgd_nesterov", "km_ratio"] == pytest.approx(14_800 / 2_000)
    assert math.isnan(book.loc["sgd_momentum", "km_ratio"]) and book.loc["sgd", "km_ratio"] == 1
    assert book.loc["sgd_nesterov", "km_equal_step_ratio"] == pytest.approx(1_880 / 2_000)
    # Every seed reached it in the PyTorch setup: the KM median is the plain median of the four.
    torch_rows = summary.loc["pytorch"]
    assert torch_rows.loc["sgd", "km_median"] == 23_501 and (torch_rows["stall_rate"] == 0).all()
    assert torch_rows.loc["sgd_momentum", "km_ratio"] == pytest.approx(23_501 / 3_001)


@pytest.mark.parametrize("run_setups", [["pytorch", "book_first_edition"], ["pytorch"]])
def test_the_stage_censors_never_reached_runs_at_their_setups_cap(fake_mnist_root, tmp_path,
                                                                  run_setups: list[str]) -> None:
    """A run of the study on fake MNIST with a target only some cells reach within 120 steps: runs.csv's
    `steps_or_cap` is the steps where reached and the setup's cap where not, and summary.csv's KM columns are
    measures.km_median over those. Only the setups of `run_setups` run; the others are listed as not run."""
    from test_cell_studies import TINY, here

    cfg = config(momentum_speedup.Config, *TINY, f"momentum_speedup.run_setups=[{','.join(run_setups)}]",
                 "momentum_speedup.seeds=[0,1]",
                 "momentum_speedup.optimizers=[sgd,sgd_momentum]", "momentum_speedup.target_loss=2.28",
                 "momentum_speedup.smoothing_window=5", "momentum_speedup.stop_margin=10",
                 "momentum_speedup.eval_batch_size=512", "momentum_speedup.setups.pytorch.max_steps=120",
                 "momentum_speedup.setups.book_first_edition.max_steps=90")
    inputs, _ = here(fake_mnist_root, tmp_path)
    result = momentum_speedup.run(cfg, inputs)
    table, summary = result.tables["runs.csv"], result.tables["summary.csv"]
    caps = table["setup"].map({"pytorch": 120, "book_first_edition": 90})
    assert (table["steps_or_cap"] == table["steps_to_target"].fillna(caps).astype(int)).all()
    for r in summary.itertuples():
        mine = table[(table.setup == r.setup) & (table.optimizer == r.optimizer)]
        median = measures.km_median(mine["steps_or_cap"].to_numpy(), mine["reached"].to_numpy(dtype=bool))
        assert (math.isnan(median) and math.isnan(r.km_median)) or median == r.km_median
        assert r.stall_rate == pytest.approx(1 - mine["reached"].mean())
    assert result.summary["setups"]["pytorch"]["sgd"]["stall_rate"] == summary.set_index(["setup", "optimizer"]).loc[
        ("pytorch", "sgd"), "stall_rate"]
    assert set(result.metrics) == {"speedup", "km_speedup"}
    assert list(result.summary["max_steps"]) == run_setups and set(table["setup"]) == set(run_setups)
    assert result.summary["not_run"] == [s for s in cfg.momentum_speedup.setups if s not in run_setups]
    assert set(summary["setup"]) == set(result.metrics["speedup"]) == set(run_setups)
