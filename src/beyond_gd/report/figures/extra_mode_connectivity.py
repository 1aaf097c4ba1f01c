"""Mode connectivity: the straight line, the line after weight matching, and a trained curve between solutions."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import at_most, graded
from beyond_gd.report.registry import (AGREES, MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure,
                                       not_measured, resampled)
from beyond_gd.report.style import Style, size

MC = "mode_connectivity"
PATHS = {"linear": "straight line A → B", "aligned": "line A → B aligned (weight matching)",
         "curve": "trained Bézier curve A → B"}
SPLIT_NAMES = {"train": "training subset", "test": "test set"}


@figure("extra-mode-connectivity",
        title="Mode connectivity: from one SGD solution to another, straight, aligned, and along a trained curve",
        needs=(Need(MC, "paths.csv"), Need(MC, "barriers.csv"), Need(MC, "solutions.csv"),
               Need(MC, "matching.csv"), Need(MC, "curve_epochs.csv")),
        shows="Between every pair (A, B) of SGD solutions trained from different seeds with one recipe: the loss on "
              "a fixed training subset (left) and the test accuracy (middle) against t on three paths, the straight "
              "line (1 − t) A + t B, the same line after B's hidden units are permuted to line up with A's (weight "
              "matching, Ainsworth et al. 2023), and a quadratic Bézier curve between A and B whose control point "
              "was trained (Garipov et al. 2018); each the mean over pairs with the min–max band. Third: each pair's "
              "barrier, the largest rise of the loss above the chord between the endpoints (Frankle et al. 2020), "
              "beside the pair's own loss (dashed). Right: the curve's barrier after each epoch of its training, "
              "which stops when an epoch no longer lowers it by the share `mode_connectivity.curve.min_decrease`. "
              "Fig 6-2's permutation symmetry says each solution is one of (256!)² equivalent networks: the "
              "straight line between two of them mixes hidden units that do different jobs, the aligned line does "
              "not.",
        book="Most local minima of a deep network are about as good as the global one (the chapter's answer to "
             "\"are local minima a problem?\"); many are equivalent copies of each other under the permutation "
             "symmetry of Fig 6-2. Beyond the book: minima from different seeds are then joined by paths of "
             "low loss, straight ones once the symmetry is undone (Entezari et al. 2022; Ainsworth et al. 2023), "
             "curved ones without it (Garipov et al. 2018; Draxler et al. 2018).",
        notes="It trains one solution per seed of `mode_connectivity.seeds` with the baseline's recipe (the "
              "`baseline` section: the book's SGD, batch 64, 40 epochs; the baseline's own seed is the baseline "
              "itself, read from its checkpoints), then for every pair walks from A to B three ways: the "
              "straight line, the line after B's hidden units are aligned to A's by weight matching (Ainsworth et"
              " al. 2023, Algorithm 1: one linear assignment per hidden layer, by coordinate descent), and a "
              "quadratic Bézier curve whose control point is trained by SGD with t drawn per mini-batch (Garipov "
              "et al. 2018, started at the midpoint of A and B as trained). Each path's barrier is the largest "
              "rise of the loss above the chord between its endpoints (Frankle et al. 2020). The chapter's link: "
              "Fig 6-2's permutations make every solution one of (256!)² equivalent networks, and its claim that "
              "most local minima are about as good as the global one.\n\nIt also redraws Fig 6-3 \"over and over\" "
              "from each solution to its own init (`interpolation_path.csv`, `interpolation_summary.csv`, the "
              "interpolate stage's columns plus `theta_opt`): the claim `interpolation_holds_over_and_over` "
              "counts those lines beside the interpolate stage's.")
def mode_connectivity(i: View, p: FigureParams, s: Style) -> Drawn:
    paths, barriers = i.csv(MC, "paths.csv"), i.csv(MC, "barriers.csv")
    solutions, matching = i.csv(MC, "solutions.csv"), i.csv(MC, "matching.csv")
    colors = dict(zip(PATHS, sns.color_palette(n_colors=3), strict=True))
    n_pairs = barriers["pair"].nunique()
    curve_epochs = i.csv(MC, "curve_epochs.csv")
    fig, axes = plt.subplots(1, 4, figsize=size(s, rows=1.1), gridspec_kw={"width_ratios": [1.1, 1.1, 1, 0.9]})
    for ax, split, what, k, ylabel in ((axes[0], "train", "loss", 1, "loss (cross-entropy, nats)"),
                                       (axes[1], "test", "accuracy", 100, "test accuracy (%)")):
        rows = paths[paths["split"] == split]
        for name, label in PATHS.items():
            stats = rows[rows["path"] == name].groupby("t")[what].agg(["mean", "min", "max"])
            ax.fill_between(stats.index, k * stats["min"], k * stats["max"], color=colors[name], alpha=0.2, lw=0)
            ax.plot(stats.index, k * stats["mean"], color=colors[name], lw=1.6, marker="o", ms=2.5, label=label)
        ax.set(xlabel="t (0: solution A, 1: solution B)", ylabel=ylabel)
        ax.set_xlim(0, 1)
    axes[0].set_title(f"loss on the {SPLIT_NAMES['train']}")
    axes[1].set_title(f"accuracy on the {SPLIT_NAMES['test']}")
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(top=high + 0.45 * (high - low))  # room for the legend above the straight line's peak
    axes[0].legend(fontsize="x-small", loc="upper center", title=f"mean of {n_pairs} pairs, band min–max",
                   title_fontsize="x-small")

    ax = axes[2]
    train = barriers[barriers["split"] == "train"]
    pairs = list(dict.fromkeys(train["pair"]))
    width = 0.8 / len(PATHS)
    for j, name in enumerate(PATHS):
        heights = train[train["path"] == name].set_index("pair")["barrier"].reindex(pairs)
        xs = np.arange(len(pairs)) + (j - 1) * width
        ax.bar(xs, heights.to_numpy(), width=width, color=colors[name], label=name)
        for x, h in zip(xs, heights.to_numpy(), strict=True):
            ax.annotate("NaN" if np.isnan(h) else f"{h:.2f}", (x, 0 if np.isnan(h) else h), ha="center",
                        va="bottom", fontsize="xx-small")
    ax.set_xticks(np.arange(len(pairs)), [pr.replace("seed_", "").replace("~", "–") for pr in pairs],
                  fontsize="small")
    own = train[train["path"] == "linear"].set_index("pair")["endpoint_loss"].reindex(pairs).to_numpy()
    ax.hlines(own, np.arange(len(pairs)) - 0.45, np.arange(len(pairs)) + 0.45, colors="k", linestyles="--", lw=1,
              label="pair's own loss")
    ax.set(xlabel="pair of solutions (seeds)", ylabel="barrier on the training subset (nats)",
           title="barrier per pair")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # headroom for the legend above the bars
    ax.legend(fontsize="x-small", loc="upper center", ncol=2)

    ax = axes[3]
    for pair, rows in curve_epochs.groupby("pair", sort=False):
        ax.plot(rows["epoch"], rows["barrier"], marker="o", ms=3, lw=1.2,
                label=pair.replace("seed_", "").replace("~", "–"))
    ax.set(xlabel="curve training epoch", ylabel="curve barrier, training subset (nats)",
           title="the curve's training")
    ax.legend(fontsize="x-small", title="pair", title_fontsize="x-small")
    fig.tight_layout()

    def mean_range(split: str, name: str) -> str:
        h = barriers[(barriers["split"] == split) & (barriers["path"] == name)]["barrier"]
        return f"{name} {h.mean():.3f} ({h.min():.3f}–{h.max():.3f})"

    moved = matching[matching["units"] > 0]
    runs = curve_epochs.groupby("pair")["epoch"].max()
    measured = (f"{len(solutions)} solutions ({int(solutions['steps'].max()):,} SGD steps each, "
                f"{int(solutions['diverged'].sum())} diverged; test accuracy "
                f"{100 * solutions['test_accuracy'].min():.2f}–{100 * solutions['test_accuracy'].max():.2f}%, "
                f"training-subset loss {solutions['train_loss'].min():.3f}–{solutions['train_loss'].max():.3f}), "
                f"{n_pairs} pairs. Barrier on the training subset, mean (min–max) over pairs: "
                + ", ".join(mean_range("train", n) for n in PATHS) + "; on the test set: "
                + ", ".join(mean_range("test", n) for n in PATHS)
                + f"; the pairs' own training-subset loss {train['endpoint_loss'].min():.3f}–"
                f"{train['endpoint_loss'].max():.3f}. The curves trained {int(runs.min())}–{int(runs.max())} "
                "epochs until their barrier stopped falling"
                + (f". Weight matching moved {moved['units_moved'].mean():.0f} of {int(moved['units'].iloc[0])} "
                   "units a hidden layer on average." if len(moved) else "."))
    return Drawn(fig, measured, _table(barriers))


def _table(barriers: pd.DataFrame) -> pd.DataFrame:
    """Per pair: each path's barrier on both splits."""
    wide = barriers.pivot_table(index="pair", columns=["path", "split"], values="barrier", sort=False)
    wide.columns = [f"{path} ({split})" for path, split in wide.columns]
    return wide[[f"{p} ({sp})" for p in PATHS for sp in SPLIT_NAMES if f"{p} ({sp})" in wide]].round(4).reset_index()


def barrier_pairs(i: View) -> pd.DataFrame:
    """Per pair of solutions, the training-subset barrier of each path (columns linear, aligned, curve) and
    the pair's own loss (`endpoint_loss`, the mean of its endpoints'), the scale a barrier is read against."""
    rows = i.csv(MC, "barriers.csv")
    rows = rows[rows["split"] == "train"]
    wide = rows.pivot_table(index="pair", columns="path", values="barrier", sort=False, dropna=False).reindex(
        columns=["linear", "aligned", "curve"])
    return wide.assign(endpoint_loss=rows[rows["path"] == "linear"].set_index("pair")["endpoint_loss"])


def _pairs(i: View) -> pd.DataFrame:
    """barrier_pairs as rows to resample, one per pair of solutions (each pair its own two seeds)."""
    return barrier_pairs(i).rename_axis(columns=None).reset_index()


@claim("weight_matching_lowers_barrier", kind=MEASURED, figure="Mode connectivity",
       source="Ainsworth, Hayase & Srinivasa (2023); Entezari et al. (2022); beyond the chapter",
       book="After aligning one solution's hidden units to another's by weight matching, the loss barrier on the "
            "straight line between them drops, for wide enough networks to near zero (with the permutation "
            "symmetry undone, SGD solutions are linearly connected, as Entezari et al. conjecture).",
       needs=(Need(MC, "barriers.csv"),), uses=("near_zero_barrier",),
       tolerance="barriers on the training subset, per pair of solutions. agrees: the aligned barrier near zero "
                 "(<= {near_zero_barrier:g} x the pair's own loss, its endpoints' mean) on every pair; partly: below "
                 "the raw barrier on every pair but "
                 "not near zero, or near zero on some; differs: below the raw barrier on no pair")
def weight_matching_lowers(i: View, tol: float, near_zero: float) -> Measured:
    units = _pairs(i)

    def decide(u: pd.DataFrame) -> Decision:
        if u.empty or u["aligned"].isna().all():
            return not_measured("no pair of solutions was aligned")
        near, lower = u["aligned"] <= near_zero * u["endpoint_loss"], u["aligned"] < u["linear"]
        return graded(bool(near.all()), bool(lower.all() or near.any()) and bool(lower.any()),
                      float((u["aligned"] / u["endpoint_loss"]).max()), (near_zero,))

    lower = units["aligned"] < units["linear"]
    return resampled("aligned / raw barrier per pair (nats; the pair's own loss): " + ", ".join(
        f"{r.pair} {r.aligned:.3f} / {r.linear:.3f} ({r.endpoint_loss:.3f})" for r in units.itertuples())
        + f"; lower on {int(lower.sum())} of {len(units)}, near zero on "
        f"{int((units['aligned'] <= near_zero * units['endpoint_loss']).sum())}", units, decide, unit="pair")


@claim("curve_connects_minima", kind=MEASURED, figure="Mode connectivity",
       source="Garipov, Izmailov, Podoprikhin, Vetrov & Wilson (2018); beyond the chapter",
       book="Two solutions trained from different seeds are joined by a simple curve (a quadratic Bézier curve "
            "with one trained control point) along which the training loss stays near that of the endpoints: a "
            "barrier near zero.",
       needs=(Need(MC, "barriers.csv"), Need(MC, "summary.json")), uses=("near_zero_barrier",),
       tolerance="barriers on the training subset, per pair of solutions. agrees: the curve's barrier near zero "
                 "(<= {near_zero_barrier:g} x the pair's own loss, its endpoints' mean) on every pair; partly: not "
                 "so, but below the straight line's "
                 "barrier on some pairs; differs: below it on no pair. A curve that trained to its epoch cap (its "
                 "barrier still falling, or not known to have stopped) leaves any verdict short of agrees "
                 "inconclusive: more training can only lower its barrier")
def curve_connects(i: View, tol: float, near_zero: float) -> Measured:
    units = _pairs(i)

    def decide(u: pd.DataFrame) -> Decision:
        if u.empty or u["curve"].isna().all():
            return not_measured("no curve was trained")
        return graded(bool((u["curve"] <= near_zero * u["endpoint_loss"]).all()),
                      bool((u["curve"] < u["linear"]).any()), float((u["curve"] / u["endpoint_loss"]).max()),
                      (near_zero,))

    run = i.json(MC)
    capped = sorted(p for p, e in run["curve_epochs_run"].items() if e >= run["curve_max_epochs"])
    caveat = (f"the curves of {len(capped)} of {len(units)} pairs trained to the cap of {run['curve_max_epochs']} "
              "epochs before their barrier was seen to stop falling: more epochs (the thorough profile's 20) would "
              "settle it"
              if capped and decide(units).verdict != AGREES else "")
    return resampled("curve / straight-line barrier per pair (nats; the pair's own loss): " + ", ".join(
        f"{r.pair} {r.curve:.3f} / {r.linear:.3f} ({r.endpoint_loss:.3f})" for r in units.itertuples())
        + f"; near zero on {int((units['curve'] <= near_zero * units['endpoint_loss']).sum())} of {len(units)}, "
        "below the line on "
        f"{int((units['curve'] < units['linear']).sum())}", units, decide, unit="pair", caveat=caveat)


@claim("minima_about_as_good_as_global", kind=MEASURED, figure="Mode connectivity",
       source="§ How pesky are spurious local minima in deep networks?",
       book="Recent studies suggest that most local minima have error rates and generalization very close to "
            "those of the global minimum: read on the MLP as, the solutions training finds from different seeds "
            "err about equally, on the training set and on the test set.",
       needs=(Need(MC, "solutions.csv"),),
       tolerance="the median over the seeds' solutions of each one's gap in error rate to the best solution found "
                 "(the global minimum's stand-in), on the training subset or the test set, whichever is larger; "
                 "the solutions resampled. agrees: at most {tol:.1%} (about twice the binomial std of the "
                 "difference of two accuracies near 97% on 10,000 images: what the test set cannot tell from "
                 "none); partly: at most twice that; differs: more")
def minima_as_good(i: View, tol: float) -> Measured:
    solutions = i.csv(MC, "solutions.csv")
    splits = ["train_accuracy", "test_accuracy"]
    units = solutions[~solutions["diverged"].astype(bool)][["seed", *splits]].dropna()
    if len(units) < 2:
        return Measured("–", not_measured("fewer than two solutions trained without diverging"))
    best = units[splits].max()

    def gap(u: pd.DataFrame) -> float:
        return float((best - u[splits]).median().max())

    def decide(u: pd.DataFrame) -> Decision:
        return at_most(gap(u), tol, 1.0)

    return resampled(f"{len(units)} solutions: test error {1 - best['test_accuracy']:.2%} to "
                     f"{1 - units['test_accuracy'].min():.2%}, training error {1 - best['train_accuracy']:.2%} to "
                     f"{1 - units['train_accuracy'].min():.2%}; median gap to the best {gap(units):.2%}", units, decide)
