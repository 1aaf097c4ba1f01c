"""The four studies made of training cells, run in this process on a tiny fake MNIST (fast).

Each study's `run(cfg, inputs)` (its cells, its ranking, its summaries and metrics) runs on a config
composed from conf/ with small overrides, its cells run by `launch.run_cells_here` (the same artifacts as a
launcher's jobs write, read back the same way). The real launcher on real MNIST is tests/test_cells.py's
slow part.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from beyond_gd import tuning
from beyond_gd import provenance
from beyond_gd.cell_tables import PROVENANCE
from beyond_gd.cells import CellOutput
from beyond_gd.config import load
from beyond_gd.errors import DataError
from beyond_gd.launch import cells_here
from beyond_gd.optim import second_order
from beyond_gd.model import build_model
from beyond_gd.study import Inputs, Result
from beyond_gd.studies import lbfgs, lr_adaptation, momentum_speedup, optimizer_grid
from conftest import FAKE_TRAIN, composed, config

pytestmark = pytest.mark.usefixtures("one_thread")

# The smoke profile on a narrow network: every study's code path in a second or two.
TINY = ("profile=smoke", "model.hidden_dim=32")


class Counted:
    """`inputs.run_cells` in this process, counting the cells run and kept."""

    def __init__(self, root: Path, sweep: Path, reuse: Path | None = None) -> None:
        self.run_cells = cells_here(root, sweep, reuse=reuse)
        self.ran = self.kept = 0

    def __call__(self, cells: list[Any]) -> list[CellOutput]:
        outputs = self.run_cells(cells)
        self.kept += sum(o.reused for o in outputs)
        self.ran += sum(not o.reused for o in outputs)
        return outputs


def here(root: Path, work: Path, reuse: Path | None = None, **folders: Path) -> tuple[Inputs, Counted]:
    work.mkdir(parents=True, exist_ok=True)
    counted = Counted(root, work / "cells", reuse)
    return Inputs("cpu", {"mnist": root, **folders}, work, run_cells=counted), counted


def grid_summary(tmp_path: Path, lrs: dict[str, float]) -> Path:
    """An optimizer grid's folder whose summary.csv holds `lrs` as the best learning rates."""
    grid = tmp_path / "optimizer_grid"
    grid.mkdir()
    pd.DataFrame({"optimizer": list(lrs), "best_lr": list(lrs.values())}).to_csv(grid / "summary.csv", index=False)
    return grid


# --------------------------------------------------------------------------
# optimizer_grid
# --------------------------------------------------------------------------
LRS = {"sgd": [0.01, 0.1, 1.0], "sgd_momentum": [0.01, 1000.0], "adam": [0.001, 0.01]}


def grid_config(lrs: dict[str, list[float]], *overrides: str) -> optimizer_grid.Config:
    params = composed(*TINY, "optimizer_grid.max_steps=40", "optimizer_grid.smoothing_window=10",
                      "optimizer_grid.curve_stride=10", "optimizer_grid.bootstrap.resamples=50",
                      "optimizer_grid.long_budget.max_steps=20", *overrides)
    params["optimizer_grid"]["lrs"] = lrs  # an override of a dict would merge into the default's
    return load(params, optimizer_grid.Config)


def test_grid_scores_each_optimizer_at_its_lowest_loss_lr_and_records_a_diverging_lr(
        fake_mnist_root: Path, tmp_path: Path) -> None:
    cfg = grid_config(LRS, "optimizer_grid.extension.max_added=0")  # the configured search alone (rule below)
    inputs, counted = here(fake_mnist_root, tmp_path)
    result = optimizer_grid.run(cfg, inputs)
    cells, ranking = result.tables["cells.csv"], result.tables["summary.csv"]
    seeds = cfg.optimizer_grid.seeds
    grid_cells = sum(map(len, LRS.values())) * len(seeds)
    assert len(cells) == grid_cells and counted.ran == grid_cells + len(LRS) * len(cfg.optimizer_grid.long_budget.seeds)

    # The diverging lr is recorded, not raised: its cells stop early, unevaluated, and it is never "best".
    bad = cells[cells.lr == 1000.0]
    assert len(bad) == len(seeds) and bad["diverged"].all() and (bad["stopped_by"] == "diverged").all()
    assert (bad["steps"] < 40).all() and bad["final_loss"].isna().all() and bad["train_loss"].isna().all()
    good = cells[cells.lr != 1000.0]
    assert (~good["diverged"]).all() and (good["steps"] == 40).all() and good["test_accuracy"].notna().all()
    assert result.metrics["diverged_cells"] == len(seeds) == result.summary["diverged_cells"]
    # No provenance in the tables: where and when a cell ran stays in its result.json.
    assert not set(PROVENANCE) & set(cells.columns)

    # Each optimizer's best lr is the one of lowest mean training loss over seeds, among those that never
    # diverged; the ranking is by that loss.
    mean = good.groupby(["optimizer", "lr"])["train_loss"].mean()
    expected = {name: float(mean[name].idxmin()) for name in LRS}
    by_name = ranking.set_index("optimizer")
    assert {n: by_name.loc[n, "best_lr"] for n in LRS} == expected
    assert expected["sgd"] == 0.1  # inside its search, not at an edge: the grid's choice is not trivial here
    assert not by_name.loc["sgd", "best_lr_at_edge"] and by_name.loc["adam", "best_lr_at_edge"]
    assert [by_name.loc[n, "score_mean"] for n in LRS] == pytest.approx([mean[n].min() for n in LRS])
    assert list(ranking["score_mean"]) == sorted(ranking["score_mean"]) and list(ranking["rank"]) == [1, 2, 3]
    assert str(by_name.loc["sgd_momentum", "diverged_lrs"]) == "1000"
    assert result.metrics[f"best_{cfg.optimizer_grid.rank_by}"] == ranking["score_mean"].iloc[0]

    # The longer budget runs at each best lr, and its curves are the best lr's.
    long = result.tables["long.csv"]
    assert {(r.optimizer, r.lr) for r in long.itertuples()} == set(expected.items())
    assert long.groupby(["optimizer", "seed"])["step"].max().eq(20).all()
    curve = result.tables["curves/sgd.csv"]
    at_best = result.tables["steps.csv"].query("optimizer == 'sgd' and lr == 0.1")
    assert np.allclose(curve["loss"], at_best.groupby("step")["smoothed"].mean().to_numpy())


def test_the_interior_rule_searches_on_beyond_an_edge_and_runs_only_the_lrs_it_adds(
        fake_mnist_root: Path, tmp_path: Path) -> None:
    """Each optimizer best at an edge of its configured search gets the next lr beyond that edge (max_added 1
    here), only those cells train, and the ranking, its searches and the summary are of the grown grid."""
    off = "optimizer_grid.long_budget.enabled=false"
    first, _ = here(fake_mnist_root, tmp_path / "configured")
    configured = optimizer_grid.run(grid_config(LRS, off, "optimizer_grid.extension.max_added=0"), first)
    best = configured.tables["summary.csv"].set_index("optimizer")["best_lr"]
    expected = {n: [lr] for n in LRS if (lr := tuning.beyond_edge(LRS[n], best[n])) is not None}
    assert expected, "the tiny grid has an optimum at an edge to extend (adam's, above)"

    cfg = grid_config(LRS, off, "optimizer_grid.extension.max_added=1")
    inputs, counted = here(fake_mnist_root, tmp_path / "extended")
    result = optimizer_grid.run(cfg, inputs)
    seeds = len(cfg.optimizer_grid.seeds)
    assert counted.ran == (sum(map(len, LRS.values())) + sum(map(len, expected.values()))) * seeds
    ranking = result.tables["summary.csv"].set_index("optimizer")
    for name, lrs in LRS.items():
        grown = sorted(lrs + expected.get(name, []))
        assert ranking.loc[name, "lrs"] == " ".join(f"{v:g}" for v in grown)
        assert str(ranking.loc[name, "lrs_added"]) == " ".join(f"{v:g}" for v in expected.get(name, [])) or (
            name not in expected and pd.isna(ranking.loc[name, "lrs_added"]))
    assert result.summary["extension"]["added"] == expected
    # The best lr is picked over the grown search.
    cells = result.tables["cells.csv"]
    mean = cells[~cells["diverged"]].groupby(["optimizer", "lr"])["train_loss"].mean()
    assert {n: ranking.loc[n, "best_lr"] for n in LRS} == {n: float(mean[n].idxmin()) for n in LRS}


def test_averaging_runs_asgd_about_its_best_lr_at_a_constant_lr_and_averages_the_tail(
        fake_mnist_root: Path, tmp_path: Path) -> None:
    """ASGD again at its best lr and the lrs beside it in its search, with lambd 0 (a constant step) and t0 at
    the start of the last `window / epochs` share of the run; only those cells are added."""
    search = [0.01, 0.1, 1.0]
    cfg = grid_config({"sgd": [0.1], "asgd": search}, "optimizer_grid.long_budget.enabled=false",
                      "optimizer_grid.extension.max_added=0", "optimizer_grid.averaging.max_steps=30",
                      "optimizer_grid.averaging.seeds=[0,1]", "optimizer_grid.averaging.epochs=4",
                      "optimizer_grid.averaging.window=1")
    inputs, counted = here(fake_mnist_root, tmp_path)
    result = optimizer_grid.run(cfg, inputs)
    best = result.tables["summary.csv"].set_index("optimizer").loc["asgd", "best_lr"]
    k, run, tail = search.index(best), result.summary["averaging"], result.tables["averaging.csv"]
    assert run["ran"] and run["lrs"] == search[max(0, k - 1): k + 2] == sorted(tail["lr"].unique())
    assert run["steps"] == 30 and run["t0"] == 30 - round(30 / 4) and (tail["t0"] == run["t0"]).all()
    seeds = len(cfg.optimizer_grid.seeds)
    assert counted.ran == 4 * seeds + len(run["lrs"]) * 2
    cells = optimizer_grid.build_cells(cfg, {"asgd": run["lrs"]}, [0, 1], 30, "averaging-", t0=run["t0"], lambd=0.0)
    assert all(c.optimizer.kwargs["lambd"] == 0.0 and c.optimizer.kwargs["t0"] == run["t0"] for c in cells)
    ends = tail.sort_values("epoch").groupby(["lr", "seed"]).last()
    assert ends["average_train_loss"].notna().all() and (ends["average_train_loss"] != ends["train_loss"]).all()


def test_averaging_runs_off_run_no_cell_and_say_so(fake_mnist_root: Path, tmp_path: Path) -> None:
    """`averaging.enabled: false` (the default profile's): ASGD in the grid, yet only the grid's cells run, and
    summary.json records the runs as switched off, which the claim and the figure read."""
    cfg = grid_config({"sgd": [0.1], "asgd": [0.01, 0.1]}, "optimizer_grid.long_budget.enabled=false",
                      "optimizer_grid.extension.max_added=0", "optimizer_grid.averaging.enabled=false")
    inputs, counted = here(fake_mnist_root, tmp_path)
    result = optimizer_grid.run(cfg, inputs)
    assert counted.ran == 3 * len(cfg.optimizer_grid.seeds)
    assert result.summary["averaging"] == {"ran": False, "enabled": False, "optimizer": "asgd"}
    assert result.tables["averaging.csv"].empty
    assert "averaging: not run (averaging.enabled: false)" in result.lines[-1]


def test_kept_cells_reproduce_the_tables_of_a_run_from_scratch(fake_mnist_root: Path, tmp_path: Path) -> None:
    """Growing a grid runs only its new cells, and its tables are those of the grown grid from scratch."""
    small = {"sgd": [0.1], "adam": [0.001]}
    grown = {"sgd": [0.1, 0.01], "adam": [0.001]}
    # No longer budget, and the configured searches alone (the interior rule: above).
    off = ("optimizer_grid.long_budget.enabled=false", "optimizer_grid.extension.max_added=0")
    first, _ = here(fake_mnist_root, tmp_path / "first")
    optimizer_grid.run(grid_config(small, *off), first)
    again, counted = here(fake_mnist_root, tmp_path / "again", reuse=tmp_path / "first" / "cells")
    kept = optimizer_grid.run(grid_config(grown, *off), again)
    seeds = len(grid_config(grown, *off).optimizer_grid.seeds)
    assert (counted.ran, counted.kept) == (seeds, 2 * seeds)  # only the new lr's seeds ran
    scratch_inputs, fresh = here(fake_mnist_root, tmp_path / "scratch")
    scratch = optimizer_grid.run(grid_config(grown, *off), scratch_inputs)
    assert (fresh.ran, fresh.kept) == (3 * seeds, 0)

    assert_same_but_seconds(kept, scratch)
    # A kept cell's artifact is the earlier one, copied whole.
    name = "sgd-lr0.1-s0"
    assert ((tmp_path / "again" / "cells" / name / "result.json").read_bytes()
            == (tmp_path / "first" / "cells" / name / "result.json").read_bytes())


def assert_same_but_seconds(a: Result, b: Result) -> None:
    def measured(key: str) -> bool:
        return "second" in key or key in ("wall_seconds",)

    assert sorted(a.tables) == sorted(b.tables)
    for name, frame in a.tables.items():
        other = b.tables[name]
        keep = [c for c in frame.columns if not measured(c)]
        pd.testing.assert_frame_equal(frame[keep], other[keep], check_exact=True, obj=name)
    assert a.metrics == b.metrics and a.summary == b.summary and a.lines == b.lines


# --------------------------------------------------------------------------
# momentum_speedup
# --------------------------------------------------------------------------
def test_momentum_speedup_stops_cells_at_the_target_and_pairs_ratios_by_seed(fake_mnist_root: Path,
                                                                             tmp_path: Path) -> None:
    cfg = config(momentum_speedup.Config, *TINY, "momentum_speedup.seeds=[0,1]",
                 "momentum_speedup.optimizers=[sgd,sgd_momentum]", "momentum_speedup.target_loss=2.28",
                 "momentum_speedup.smoothing_window=5", "momentum_speedup.stop_margin=10",
                 "momentum_speedup.eval_batch_size=512", "momentum_speedup.setups.pytorch.max_steps=300",
                 "momentum_speedup.setups.book_first_edition.max_steps=300",
                 "momentum_speedup.run_setups=[pytorch,book_first_edition]")
    c = cfg.momentum_speedup
    inputs, counted = here(fake_mnist_root, tmp_path)
    result = momentum_speedup.run(cfg, inputs)
    runs, summary = result.tables["runs.csv"], result.tables["summary.csv"]
    names = ["sgd", "sgd_momentum", momentum_speedup.EQUAL_STEP]
    assert counted.ran == len(runs) == len(names) * len(c.setups) * len(c.seeds)

    # A cell that reached the target stopped at the end of the epoch in which every criterion had crossed
    # plus the margin; one that did not ran its whole budget.
    per_epoch = {"pytorch": math.ceil(FAKE_TRAIN / 64), "book_first_edition": math.ceil(FAKE_TRAIN / 100)}
    stopped = runs[runs.stopped_by == "target"]
    assert len(stopped) > 0 and set(runs.stopped_by) <= {"target", "cap"}
    for r in stopped.itertuples():
        last = max(r.steps_to_target_smoothed, r.steps_to_target_epoch_last, r.steps_to_target_train_loss)
        assert last + c.stop_margin <= r.steps < last + c.stop_margin + per_epoch[r.setup]
        assert r.steps % per_epoch[r.setup] == 0
    assert (runs.loc[runs.stopped_by == "cap", "steps"] == 300).all()
    assert (runs["reached"] == runs["steps_to_target"].notna()).all()

    # The ratio is the baseline's steps over the optimizer's, seed by seed, then averaged (here every
    # optimizer of both setups shares a seed that reached the target with the baseline).
    assert summary["ratio_mean"].notna().all()
    for (setup, name), row in summary.set_index(["setup", "optimizer"]).iterrows():
        mine = runs[(runs.setup == setup) & (runs.optimizer == name)].set_index("seed")["steps_to_target"]
        base = runs[(runs.setup == setup) & (runs.optimizer == c.baseline)].set_index("seed")["steps_to_target"]
        ratios = (base / mine).astype(float).dropna()
        assert row.reached == mine.notna().sum()
        if len(ratios):
            assert row.ratio_mean == pytest.approx(ratios.mean()), (setup, name)
        else:
            assert np.isnan(row.ratio_mean)
    assert result.metrics["speedup"]["pytorch"] == result.summary["setups"]["pytorch"]["sgd_momentum"]["ratio_mean"]
    # Output units behind the first edition's ReLU only; the stalled runs are listed with theirs.
    book, torch_runs = runs[runs.setup == "book_first_edition"], runs[runs.setup == "pytorch"]
    assert book.weakest_unit.between(0, 9).all() and (torch_runs.weakest_unit == -1).all()
    assert len(result.summary["stalled"]) == int((~runs["reached"]).sum())


# --------------------------------------------------------------------------
# lbfgs
# --------------------------------------------------------------------------
LBFGS_LRS = {"sgd": 0.1, "sgd_momentum": 0.0316, "adam": 0.001}


def test_lbfgs_searches_the_lrs_on_its_subset_and_times_each_target(fake_mnist_root: Path, tmp_path: Path) -> None:
    cfg = config(lbfgs.Config, *TINY, "lbfgs.train_images=256", "lbfgs.targets=[3.0,1e-4]")
    c = cfg.lbfgs
    inputs, counted = here(fake_mnist_root, tmp_path, optimizer_grid=grid_summary(tmp_path, LBFGS_LRS))
    result = lbfgs.run(cfg, inputs)
    epochs, summary = result.tables["epochs.csv"], result.tables["summary.csv"].set_index("optimizer")
    # The search's cells and the first-order methods' are cells; L-BFGS and CG train in the stage's process.
    assert counted.ran == len(c.compare) * (len(c.search_factors) + len(c.seeds))
    # The study asks for no target, so its cells record no steps to one.
    for folder in sorted((tmp_path / "cells").iterdir()):
        if (folder / "result.json").is_file():
            record = json.loads((folder / "result.json").read_text())
            assert {k: record[k] for k in record if k.startswith(("steps_to_target", "seconds_to_target"))} == {
                "steps_to_target": None, "steps_to_target_smoothed": None, "steps_to_target_epoch_last": None,
                "seconds_to_target": None}
    search = result.tables["search.csv"]
    assert len(search) == len(c.compare) * len(c.search_factors)
    assert search.groupby("optimizer")["chosen"].sum().eq(1).all()
    for name, rows in search.groupby("optimizer"):
        assert rows.lr.tolist() == pytest.approx([LBFGS_LRS[name] * f for f in c.search_factors])
        ok = rows[~rows.diverged]
        assert summary.loc[name, "lr"] == ok.loc[ok.train_loss.idxmin(), "lr"]  # the lowest loss at equal compute
    full = epochs[epochs.optimizer == "lbfgs"]
    assert list(full["step"]) == list(range(1, c.steps + 1)) and full["train_loss"].notna().all()
    assert (full["example_gradients"] == full["evaluations"] * c.train_images).all()
    assert summary.loc["lbfgs", "loss_dtype"] == "float64" and summary.loc["sgd", "loss_dtype"] == "float32"
    sgd = epochs[epochs.optimizer == "sgd"]
    assert list(sgd["train_loss"].notna()) == [e % c.eval_every == 0 or e == sgd["epoch"].max() for e in sgd["epoch"]]
    assert (sgd["example_gradients"] == sgd["step"] * c.batch_size).all()
    assert summary.loc["lbfgs", "batch_size"] == c.train_images
    # L-BFGS's loss at every gradient evaluation, counted as the training loop counts them.
    trace = result.tables["evaluations.csv"]
    mine = trace[trace.optimizer == "lbfgs"]
    assert mine.evaluations.tolist() == list(range(1, full.evaluations.iloc[-1] + 1))
    assert mine.seconds.is_monotonic_increasing and (mine.example_gradients == mine.evaluations * c.train_images).all()
    # Every method and seed has a row per target; 3 nats is above the init's loss (reached at once), 1e-4 out of
    # reach of 256 fake images in 2 steps or 3 epochs.
    targets = result.tables["targets.csv"].set_index(["optimizer", "seed", "target"])
    assert len(targets) == (2 + len(c.compare)) * len(c.seeds) * len(c.targets)
    assert targets.xs(3.0, level="target").reached.all() and not targets.xs(1e-4, level="target").reached.any()
    assert (targets.xs(3.0, level="target").example_gradients <= c.train_images).all()
    reached = targets[targets.reached]
    assert (reached.example_gradients <= reached.budget_example_gradients).all()
    assert summary.loc["lbfgs", "reached_3"] == len(c.seeds) and summary.loc["lbfgs", "reached_0.0001"] == 0
    # CG from the same init for L-BFGS's gradient evaluations (its last line search may overshoot).
    cg, budget = epochs[epochs.optimizer == "cg"], full["evaluations"].iloc[-1]
    assert budget <= cg["evaluations"].iloc[-1] <= budget + 10
    assert result.summary["cg"]["max_evaluations"] == {"0": budget}
    assert result.summary["parameters"] == second_order.parameter_count(build_model(cfg.model))
    # A grid without a best lr for a compared optimizer is a one-line error naming the file.
    pd.DataFrame({"optimizer": ["sgd"], "best_lr": [0.1]}).to_csv(tmp_path / "optimizer_grid" / "summary.csv",
                                                                 index=False)
    with pytest.raises(DataError, match=r"^optimizer_grid/summary\.csv: no best lr for sgd_momentum, adam"):
        lbfgs.run(cfg, inputs)


# --------------------------------------------------------------------------
# lr_adaptation
# --------------------------------------------------------------------------
def test_lr_adaptation_probes_and_evaluates_only_the_long_runs(fake_mnist_root: Path, tmp_path: Path) -> None:
    # Batches of 3,000 (the whole fake split each step): an "epoch" of MNIST's 60,000 images is 20 steps.
    cfg = config(lr_adaptation.Config, *TINY, "lr_adaptation.batch_size=3000", "lr_adaptation.early_steps=20",
                 "lr_adaptation.probe_every=5", "lr_adaptation.probe_updates=10",
                 "lr_adaptation.smoothing_window=5")
    c = cfg.lr_adaptation
    lrs = {"adagrad": 0.0316, "rmsprop": 0.001, "adam": 0.00316}
    inputs, counted = here(fake_mnist_root, tmp_path, optimizer_grid=grid_summary(tmp_path, lrs))
    result = lr_adaptation.run(cfg, inputs)
    probes, summary = result.tables["probes.csv"], result.tables["summary.csv"].set_index("optimizer")
    assert counted.ran == (len(c.optimizers) + 1) * len(c.seeds)
    assert list(summary.index) == [*c.optimizers, c.uncorrected]
    assert summary.loc[c.uncorrected, "lr"] == summary.loc["adam", "lr"] == 0.00316
    assert summary.loc[c.uncorrected, "steps"] == c.early_steps and summary.loc["adam", "steps"] == 20 * c.epochs
    assert result.summary["steps_per_epoch"] == 20
    for name, rows in probes.groupby("optimizer"):
        sizes = rows.dropna(subset=["update_norm"])
        assert list(sizes["step"]) == list(range(1, c.probe_updates + 1)) and (sizes["update_norm"] > 0).all()
        lr = rows.dropna(subset=["lr_median"])
        assert list(lr["step"]) == [1, *range(c.probe_every, summary.loc[name, "steps"] + 1, c.probe_every)], name
    ada = probes[probes.optimizer == "adagrad"].dropna(subset=["lr_median"])["lr_median"]
    assert ada.is_monotonic_decreasing  # a running sum of squares only grows
    first = probes[probes.step == 1].set_index("optimizer")["update_norm"]
    assert 2.5 < first[c.uncorrected] / first["adam"] < 3.3  # 1 / sqrt(1 - beta2) * (1 - beta1) = 3.16 at step 1
    # The long runs are evaluated at their end; the uncorrected runs never.
    assert summary[["train_loss_mean", "test_accuracy_mean"]].drop(index=c.uncorrected).notna().all().all()
    assert summary.loc[c.uncorrected, ["train_loss_mean", "test_accuracy_mean"]].isna().all()


@pytest.mark.parametrize("study", [momentum_speedup, optimizer_grid, lbfgs, lr_adaptation])
def test_a_cell_study_imports_no_other_study(study: Any) -> None:
    """What two cell studies share (the grid's best lrs, MNIST's size, the tables) has a home of its own."""
    studies = provenance.PACKAGE_ROOT / "beyond_gd" / "studies"
    others = [p.name for p in provenance.code_closure(study.__name__) if p.parent == studies and p.name != "__init__.py"]
    assert others == [Path(study.__file__).name]
