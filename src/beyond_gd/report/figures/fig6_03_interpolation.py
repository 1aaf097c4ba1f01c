"""Fig 6-3: the loss on the line from the SGD solution to a random point."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from beyond_gd import measures
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import mark_endpoints
from beyond_gd.report.claims import graded
from beyond_gd.report.registry import (MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure, not_measured,
                                       resampled)
from beyond_gd.report.style import Style, size

IP = "interpolate"
MC = "mode_connectivity"
SPLIT_NAMES = {"train": "training set", "test": "test set"}


@figure("fig6-03-interpolation", title="Fig 6-3. The loss on the line from the SGD solution to a random point",
        needs=(Need(IP, "path.csv"), Need(IP, "summary.csv")),
        shows="Cross-entropy (left) and accuracy (middle) at θ(α) = (1 − α) θ_opt + α θ_rand against α, on the "
              "whole training and test sets: the mean over the random points θ_rand (the baseline's own "
              "initialisation and fresh ones) with the min–max band; α = 0 is the SGD solution, α = 1 the random "
              "point. Right: the slope |dL/dα| of the training loss between them, per θ_rand (log scale).",
        book="Along the line from a random initialisation to the SGD solution (α from −2 to 2) there is no "
             "troublesome local minimum; around α = 1 there is a flat region with a near-zero gradient; "
             "the picture is the same if we run the experiment over and over.")
def interpolation(i: View, p: FigureParams, s: Style) -> Drawn:
    path, summary = i.csv(IP, "path.csv"), i.csv(IP, "summary.csv")
    splits = [sp for sp in SPLIT_NAMES if sp in set(path["split"])]
    colors = dict(zip(SPLIT_NAMES, sns.color_palette(n_colors=2), strict=True))
    stats = path.groupby(["split", "alpha"]).agg(loss_mean=("loss", "mean"), loss_min=("loss", "min"),
                                                 loss_max=("loss", "max"), acc_mean=("accuracy", "mean"),
                                                 acc_min=("accuracy", "min"), acc_max=("accuracy", "max"))
    n_rand = path["theta_rand"].nunique()
    fig, axes = plt.subplots(1, 3, figsize=size(s, rows=1.1), gridspec_kw={"width_ratios": [1.2, 1, 1]})
    for ax, what, ylabel in ((axes[0], "loss", "loss (cross-entropy, nats)"), (axes[1], "acc", "accuracy (%)")):
        k = 100 if what == "acc" else 1
        for j, split in enumerate(splits):
            rows = stats.loc[split]
            lo, hi = k * rows[f"{what}_min"], k * rows[f"{what}_max"]
            # Train and test nearly coincide: the first band is filled, the second outlined, so both show.
            if j == 0:
                ax.fill_between(rows.index, lo, hi, color=colors[split], alpha=0.25, lw=0)
            else:
                ax.fill_between(rows.index, lo, hi, facecolor="none", edgecolor=colors[split], hatch="////",
                                lw=0.6, alpha=0.6)
            ax.plot(rows.index, k * rows[f"{what}_mean"], color=colors[split], lw=1.6, ls="-" if j == 0 else "--",
                    label=f"{SPLIT_NAMES[split]}: mean of {n_rand} θ_rand, band min–max")
        mark_endpoints(ax)
        ax.set(xlabel="α", ylabel=ylabel)
    axes[0].set_title("loss along the line")
    axes[1].set_title("accuracy along the line")
    axes[0].legend(fontsize="x-small", loc="upper center")

    ax = axes[2]
    train = path[path["split"] == training_split(splits)]
    # Two kinds of θ_rand, two colours: the run's own init, and fresh inits (one line per seed).
    kinds = {"init": ("the baseline's own init", sns.color_palette()[2]),
             "fresh": ("fresh inits (one line per seed)", "0.4")}
    labelled = set()
    for label in dict.fromkeys(train["theta_rand"]):
        rows = train[train["theta_rand"] == label].sort_values("alpha")
        slope = measures.abs_slope(rows["alpha"].to_numpy(), rows["loss"].to_numpy())
        inside = ((rows["alpha"] >= -0.25) & (rows["alpha"] <= 1.25)).to_numpy()
        kind = "init" if label == "init" else "fresh"
        name, color = kinds[kind]
        ax.plot(rows["alpha"][inside], slope[inside], color=color, lw=1.2, marker="o", ms=2,
                label=None if kind in labelled else name)
        labelled.add(kind)
    mark_endpoints(ax)
    ax.set_yscale("log")
    ax.set(xlabel="α", ylabel=f"|dL/dα| of the {SPLIT_NAMES[train['split'].iloc[0]]} loss (nats)",
           title="slope between the endpoints")
    ax.set_ylim(top=ax.get_ylim()[1] * 30)  # a decade and a half of headroom for the legend
    ax.legend(fontsize="x-small", loc="upper center")
    fig.tight_layout()
    tr = summary[summary["split"] == train["split"].iloc[0]]
    measured = (f"Training loss {tr['loss_at_0'].iloc[0]:.3f} at α = 0 and {tr['loss_at_1'].min():.3f}–"
                f"{tr['loss_at_1'].max():.3f} at α = 1 over {len(tr)} θ_rand; at most "
                f"{int(summary['local_minima'].max())} local minima strictly between 0 and 1 on any path (train "
                "and test); the mean slope "
                f"within the window around α = 1 is {tr['slope_ratio'].min():.2f}–{tr['slope_ratio'].max():.2f} "
                "× the mean slope between 0 and the window.")
    return Drawn(fig, measured)


def minima_between(path: pd.DataFrame, depth: float) -> pd.Series:
    """Per (θ_rand, split) path, the α strictly inside (0, 1) where the loss lies more than `depth` below both
    grid neighbours (a list, empty where there is none)."""
    def alphas(rows: pd.DataFrame) -> list[float]:
        rows = rows.sort_values("alpha")
        found = measures.local_minima(rows["alpha"].to_numpy(), rows["loss"].to_numpy(), depth, 0.0, 1.0)
        return [float(a) for a in rows["alpha"].to_numpy()[found]]

    return path.groupby(["theta_rand", "split"], sort=False)[["alpha", "loss"]].apply(alphas)


def training_split(splits: pd.Series | pd.Index) -> str:
    """The split whose loss the book plots: the training set's, else the one there is."""
    return "train" if "train" in set(splits) else next(iter(splits))


def slope_ratios(summary: pd.DataFrame) -> pd.Series:
    """Per θ_rand, the training loss's mean |dL/dα| near α = 1 over its mean on [0, window) (the stage's)."""
    return summary[summary["split"] == training_split(summary["split"])].set_index("theta_rand")["slope_ratio"]


PESKY = "§ How pesky are spurious local minima in deep networks? (Fig 6-3)"


def per_line(path: pd.DataFrame, summary: pd.DataFrame, depth: float) -> pd.DataFrame:
    """One row per line (its θ_rand): whether it has a local minimum in (0, 1) on the training path, on any
    path, and the training loss's slope ratio near α = 1 (what the Fig 6-3 claims resample)."""
    minima = minima_between(path, depth).map(bool)
    split = minima.index.get_level_values("split")
    train = minima[split == training_split(split)].droplevel("split")
    rows = pd.DataFrame({"train_minimum": train, "any_minimum": minima.groupby(level="theta_rand", sort=False).any()})
    return rows.assign(slope_ratio=slope_ratios(summary).reindex(rows.index)).rename_axis("theta_rand").reset_index()


@claim("no_local_minimum_between_0_and_1", kind=MEASURED, figure="Fig 6-3", source=PESKY,
       book="On the straight line from the SGD solution (α = 0) to a random point (α = 1) there is no troublesome "
            "local minimum.",
       needs=(Need(IP, "path.csv"), Need(IP, "summary.csv")), uses=("local_minimum_depth",),
       tolerance="a local minimum: a point in 0 < α < 1 below both grid neighbours by more than "
                 "{local_minimum_depth:g} nats. agrees: none on any path; partly: on some training paths but not "
                 "all, or on test paths only; differs: on every training path (resampled over θ_rand)")
def no_local_minimum(i: View, tol: float, depth: float) -> Measured:
    if i.csv(IP, "path.csv").empty:
        return Measured("–", not_measured("the interpolate stage wrote no path"))
    minima = minima_between(i.csv(IP, "path.csv"), depth)
    units = per_line(i.csv(IP, "path.csv"), i.csv(IP, "summary.csv"), depth)

    def decide(u: pd.DataFrame) -> Decision:
        return graded(not u["any_minimum"].any(), not u["train_minimum"].all())

    where = "; ".join(f"{rand} ({split}) at α = {', '.join(f'{a:g}' for a in found)}"
                      for (rand, split), found in minima.items() if found)
    return resampled(f"{int((minima.map(len) == 0).sum())} of {len(minima)} paths (θ_rand × split) without a local "
                     "minimum in (0, 1)" + (f": {where}" if where else ""), units, decide, unit="theta_rand")


@claim("flat_region_near_alpha_1", kind=MEASURED, figure="Fig 6-3", source="§ Flat regions in the error surface",
       book="Around α = 1 the loss along the line has a peculiar flat region where the gradient is near zero.",
       needs=(Need(IP, "summary.csv"),), uses=("flat",),
       tolerance="flat: the mean |dL/dα| near α = 1 at most {flat:g} × its mean on [0, window) (training loss). "
                 "agrees: flat on every θ_rand; partly: flat on some, or flatter (ratio < 1) on all; differs: flat "
                 "on none and somewhere as steep as before (resampled over θ_rand)")
def flat_region(i: View, tol: float, flat: float) -> Measured:
    ratio = slope_ratios(i.csv(IP, "summary.csv"))
    units = ratio.rename("slope_ratio").rename_axis("theta_rand").reset_index()

    def decide(u: pd.DataFrame) -> Decision:
        r = u["slope_ratio"]
        if r.isna().all():
            return not_measured("no slope ratio measured")
        return graded(bool((r <= flat).all()), bool((r <= flat).any() or (r < 1).all()),
                      float(r.max()), (flat,))

    return resampled("slope near 1 / slope before: " + ", ".join(f"{k} {v:.3f}" for k, v in ratio.items())
                     + f"; flat on {int((ratio <= flat).sum())} of {len(ratio)} θ_rand", units, decide,
                     unit="theta_rand")


def every_line(i: View) -> tuple[pd.DataFrame, pd.DataFrame]:
    """path.csv and summary.csv of every Fig 6-3 line: the interpolate stage's (from the baseline's solution,
    `theta_opt` baseline) and mode_connectivity's (from each seed's solution), each line's `theta_rand` made
    `<theta_opt>/<theta_rand>` so that one key names it."""
    parts = [tuple(i.csv(IP, f).assign(theta_opt="baseline") for f in ("path.csv", "summary.csv")),
             (i.csv(MC, "interpolation_path.csv"), i.csv(MC, "interpolation_summary.csv"))]
    path, summary = (pd.concat([part[k] for part in parts], ignore_index=True) for k in (0, 1))
    return tuple(t.assign(theta_rand=t["theta_opt"] + "/" + t["theta_rand"].astype(str)) for t in (path, summary))


@claim("interpolation_holds_over_and_over", kind=MEASURED, figure="Fig 6-3", source=PESKY,
       book="Run over and over, the experiment finds no truly troublesome local minimum to trap us: read as "
            "every line, from several solutions (the baseline's and mode_connectivity's seeds') to several random "
            "points, without a local minimum between α = 0 and 1.",
       needs=(Need(IP, "path.csv"), Need(IP, "summary.csv"), Need(MC, "interpolation_path.csv"),
              Need(MC, "interpolation_summary.csv")),
       uses=("local_minimum_depth",),
       tolerance="no local minimum (a point in 0 < α < 1 more than {local_minimum_depth:g} nats below both "
                 "neighbours) on any split of a line (θ_opt → θ_rand). agrees: on every line, at least {tol:g} of "
                 "them; partly: on some, or on fewer lines; differs: on none (resampled over lines)")
def over_and_over(i: View, tol: float, depth: float) -> Measured:
    path, summary = every_line(i)
    if path.empty:
        return Measured("–", not_measured("no line was interpolated"))
    units = per_line(path, summary, depth)

    def decide(u: pd.DataFrame) -> Decision:
        clear = ~u["any_minimum"]
        return graded(bool(clear.all()) and len(u) >= tol, bool(clear.any()))

    clear = ~units["any_minimum"]
    from_baseline = int(units["theta_rand"].str.startswith("baseline/").sum())
    return resampled(f"no local minimum on {int(clear.sum())} of {len(units)} lines ({from_baseline} from the "
                     "baseline's solution, the others from mode_connectivity's)"
                     + (f" (fewer than {tol:g})" if len(units) < tol else "")
                     + "".join(f"; {r.theta_rand}: a local minimum" for r in units.itertuples() if r.any_minimum),
                     units, decide, unit="theta_rand")
