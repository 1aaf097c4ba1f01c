"""Every figure of the report: a registry of entries, one per figure.

An entry (`FigureSpec`) is a file stem, a title, the artifact files it reads
(`needs`), what it shows, the book's claim, and a `draw` function that takes
those files (an `Inputs` view) with the figure params and style and returns
the matplotlib Figure, a sentence of what we measured, and optionally a table.
Adding the figure of a new stage is one decorated function here:

    @figure("fig6-09-momentum", title=..., needs=(Need("momentum", "curves.csv"),), shows=..., book=...)
    def momentum_curves(i: Inputs, p: FigureParams, s: Style) -> Drawn: ...

Figures only draw what the artifacts hold: no model is trained or evaluated
(closed-form theory curves, such as the EWMA's std, are evaluated to be drawn).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from beyond_gd.config import required
from beyond_gd.report.artifacts import Inputs, Need
from beyond_gd.report.style import Style, size


@dataclass
class FigureParams:
    """`report.figures`: the numbers a figure needs beyond its style."""

    # Rolling mean over this many mini-batch steps for the per-step training loss.
    training_smooth_steps: int = required(gt=0)
    # Fig 6-8's shared y-range, as a multiple of the largest raw step.
    random_walk_y_range_factor: float = required(gt=0)
    # z of the binomial confidence bands (Wilson) on shares of runs.
    band_z: float = required(gt=0)
    # Fig 6-1: noisy runs drawn per starting basin (at most what the stage saved).
    trajectories_per_basin: int = required(gt=0)


class Drawn(NamedTuple):
    figure: Figure
    measured: str  # what the artifacts say, in a sentence or two, with numbers
    table: pd.DataFrame | None = None  # shown under the figure, if any


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem under figures/: fig6-NN-... for the book's figures, extra-... for the rest
    title: str
    needs: tuple[Need, ...]
    shows: str  # what the figure shows
    book: str  # the book's claim it illustrates
    draw: Callable[[Inputs, FigureParams, Style], Drawn]


FIGURES: list[FigureSpec] = []


def figure(name: str, *, title: str, needs: tuple[Need, ...], shows: str, book: str) -> Callable:
    """Register `draw` as the figure `name`; the page shows figures in registration order."""

    def register(draw: Callable[[Inputs, FigureParams, Style], Drawn]) -> Callable:
        if any(f.name == name for f in FIGURES):
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES.append(FigureSpec(name, title, needs, shows, book, draw))
        return draw

    return register


SURF = "surfaces"
GRIDS = Need(SURF, "grids.npz")
SURF_METRICS = Need(SURF, "metrics.json")


# --------------------------------------------------------------------------
# Fig 6-1: noise escapes shallow minima, not deep ones
# --------------------------------------------------------------------------
@figure("fig6-01-noise-escapes", title="Fig 6-1. Mini-batch noise escapes shallow minima, not deep ones",
        needs=(Need(SURF, "fig6_1_curve.csv"), Need(SURF, "fig6_1_critical_points.csv"),
               Need(SURF, "fig6_1_trajectories.csv"), Need(SURF, "fig6_1_escapes.csv"), SURF_METRICS),
        shows="A 1-D loss with a shallow local minimum, a deep local minimum and the global one (left); "
              "noisy gradient descent started at each minimum (middle: position against step, some runs); "
              "the share of runs that left their starting basin against the noise level, with 95% bands (right).",
        book="The noise of mini-batch gradients can push us out of shallow local minima, but not out of deep ones.")
def noise_escapes(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    curve, crit = i.csv(SURF, "fig6_1_curve.csv"), i.csv(SURF, "fig6_1_critical_points.csv")
    traj, esc, m = i.csv(SURF, "fig6_1_trajectories.csv"), i.csv(SURF, "fig6_1_escapes.csv"), i.json(SURF)
    minima = crit[crit["kind"] == "minimum"]
    basins = list(minima["basin"])
    colors = dict(zip(basins, sns.color_palette(n_colors=len(basins)), strict=True))
    fig, axes = plt.subplots(1, 3, figsize=size(s), gridspec_kw={"width_ratios": [1.2, 1.2, 1]})

    ax = axes[0]
    ax.plot(curve["x"], curve["loss"], color="0.2", lw=1.5)
    for _, row in minima.iterrows():
        ax.scatter(row["x"], row["loss"], color=colors[row["basin"]], s=50, zorder=3,
                   label=f"{row['basin']} minimum (barrier {row['barrier']:.2f})")
    maxima = crit[crit["kind"] == "maximum"]
    ax.scatter(maxima["x"], maxima["loss"], marker="^", color="0.4", s=35, zorder=3, label="maximum")
    ax.set(xlabel="parameter x", ylabel="loss f(x)", title="the loss")
    fig.legend(*ax.get_legend_handles_labels(), loc="lower center", ncols=4, fontsize="small", frameon=False)

    ax = axes[1]
    shown = traj[traj["run"] < p.trajectories_per_basin]
    for (basin, _run), rows in shown.groupby(["start_basin", "run"], sort=False):
        ax.plot(rows["step"], rows["x"], color=colors[basin], lw=0.7, alpha=0.45)
    for _, row in minima.iterrows():
        ax.axhline(row["x"], color=colors[row["basin"]], ls="--", lw=1)
    ax.set(xlabel="step", ylabel="parameter x", title=f"noisy descent ({shown['run'].nunique()} runs per start)")

    ax = axes[2]
    left = esc[esc["end_basin"] != esc["start_basin"]].groupby(["start_basin", "noise_scale"], sort=False)
    share = left["share"].sum().reset_index()
    runs = esc.groupby(["start_basin", "noise_scale"], sort=False)["runs"].sum().reset_index()
    share = share.merge(runs, on=["start_basin", "noise_scale"])
    for basin in basins:
        rows = share[share["start_basin"] == basin].sort_values("noise_scale")
        lo, hi = _wilson(rows["share"].to_numpy(), rows["runs"].to_numpy(), p.band_z)
        ax.plot(rows["noise_scale"], rows["share"], marker="o", color=colors[basin], label=f"from the {basin} minimum")
        ax.fill_between(rows["noise_scale"], lo, hi, color=colors[basin], alpha=0.2, lw=0)
    ax.set(xlabel="gradient-noise std", ylabel="share of runs that left the basin", ylim=(-0.03, 1.03),
           title="escapes")
    ax.legend(fontsize="small")
    fig.tight_layout(rect=(0, 0.07, 1, 1))  # the bottom strip holds the legend of the minima
    measured = (f"At the stage's noise level {m['escape_share_shallow']:.0%} of the runs left the shallow minimum "
                f"(barrier {m['barrier_shallow']:.2f}), {m['escape_share_deep']:.0%} the deep one "
                f"(barrier {m['barrier_deep']:.2f}) and {m['escape_share_global']:.0%} the global one.")
    return Drawn(fig, measured)


def _wilson(share: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial share: sound at 0 and 1, unlike the normal one."""
    denom = 1 + z**2 / n
    centre = (share + z**2 / (2 * n)) / denom
    half = z * np.sqrt(share * (1 - share) / n + z**2 / (4 * n**2)) / denom
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


# --------------------------------------------------------------------------
# Fig 6-2: permutation symmetry (model identifiability)
# --------------------------------------------------------------------------
ID = "identifiability"
SYMMETRIES = ("permutation", "rescaling", "both")  # the transforms that leave the function unchanged
CONTROL = "control"  # incoming weights permuted alone: a real change, for scale


@figure("fig6-02-permutation-symmetry", title="Fig 6-2. Permuting a layer's neurons gives an equivalent network",
        needs=(Need(ID, "example.json"), Need(ID, "trials.csv"), Need(ID, "metrics.json")),
        shows="Top: a 3-neuron hidden layer before and after a permutation of its neurons (each neuron keeps "
              "its incoming and outgoing weights; line width ∝ |weight|, colour = sign), with the outputs on "
              "probe inputs. Bottom left: on the trained MLP, the largest change of any test logit (relative "
              "to the largest logit) and of the test loss (relative), per trial and worst case, under random "
              "permutations of both hidden layers, positive rescalings (ReLU unit in × k, out × 1/k), both, "
              "and a control that is no symmetry (incoming weights permuted alone); log scale, float32 "
              "epsilon dotted. Bottom right: log10 of the number of orderings (n!)^l of l layers of n neurons.",
        book="Permuting the neurons of a layer gives an equivalent network: a layer of n neurons has n! "
             "orderings, l such layers (n!)^l; scaling a ReLU unit's incoming weights by k and its outgoing "
             "weights by 1/k changes nothing either.")
def permutation_symmetry(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    ex, trials, m = i.json(ID, "example.json"), i.csv(ID, "trials.csv"), i.json(ID)
    fig = plt.figure(figsize=size(s, rows=2.0))
    grid = fig.add_gridspec(2, 2, height_ratios=[0.85, 1], width_ratios=[1.25, 1], hspace=0.3, wspace=0.28)
    top = grid[0, :].subgridspec(1, 2, wspace=0.08)
    perm = list(ex["perm"])
    same = np.array_equal(ex["outputs"], ex["outputs_permuted"])
    _layer_diagram(fig.add_subplot(top[0, 0]), ex["w_in"], ex["w_out"], list(range(len(perm))),
                   f"a network with a {len(perm)}-neuron hidden layer", "outputs on the probes", ex["outputs"])
    _layer_diagram(fig.add_subplot(top[0, 1]), ex["w_in_permuted"], ex["w_out_permuted"], perm,
                   "its neurons reordered (" + ", ".join(f"h{k + 1}" for k in perm) + "), weights moved with them",
                   "outputs " + ("identical" if same else "changed"), ex["outputs_permuted"])
    signs = sns.color_palette(n_colors=2)
    fig.legend([plt.Line2D([], [], color=c, lw=2.5) for c in signs], ["weight > 0", "weight < 0"],
               loc="upper center", bbox_to_anchor=(0.5, 0.985), ncols=2, fontsize="x-small", frameon=False)

    ax = fig.add_subplot(grid[1, 0])
    t = trials.assign(logit=trials["rel_logit_change"], loss=trials["test_loss_change"]
                      / (trials["test_loss"] - trials["test_loss_change"]).abs())
    # An exact 0 (possible for the loss) has no place on a log axis: it is drawn at a floor 3 decades below eps.
    floor = m["float32_eps"] * 1e-3
    order = [*SYMMETRIES, CONTROL]
    colors = dict(zip(("logit", "loss"), sns.color_palette(n_colors=2), strict=True))
    labels = {"logit": "largest |Δ logit| / largest |logit|", "loss": "|Δ test loss| / test loss"}
    x = np.arange(len(order))
    for j, what in enumerate(("logit", "loss")):
        worst = t.groupby("transform")[what].max().reindex(order).clip(lower=floor)
        ax.bar(x + (j - 0.5) * 0.38, worst - floor, bottom=floor, width=0.36, color=colors[what], alpha=0.55,
               label=f"{labels[what]} (worst trial)")
        for k, name in enumerate(order):
            pts = t.loc[t["transform"] == name, what].clip(lower=floor)
            ax.scatter(np.full(len(pts), k + (j - 0.5) * 0.38), pts, s=10, color=colors[what], zorder=3,
                       edgecolor="k", linewidth=0.3)
    ax.axhline(m["float32_eps"], color="0.2", ls=":", label=f"float32 epsilon {m['float32_eps']:.1e}")
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, 30 * max(1.0, t[["logit", "loss"]].max().max()))
    ax.set_xticks(x, ["permutation", "rescaling", "both", "control\n(not a symmetry)"])
    ax.set(ylabel="relative change (log scale)", title=f"the trained MLP, {t['trial'].nunique()} trials")
    ax.legend(fontsize="x-small", loc="upper left")

    ax = fig.add_subplot(grid[1, 1])
    layers = int(m["hidden_layers"])
    n = np.unique(np.geomspace(2, 1000, 200).round())  # from 2: log10 1! = 0 has no place on a log axis
    for l, color in zip((1, 2, 3), sns.color_palette("Greys_r", 4), strict=False):
        ax.plot(n, [l * math.lgamma(v + 1) / math.log(10) for v in n], color=color, lw=1.5,
                ls="-" if l == layers else "--", label=f"{l} layer{'s' if l > 1 else ''}: log10 (n!)" +
                (f"^{l}" if l > 1 else ""))
    width = _width_of(m["log10_orderings"], layers)
    ax.scatter([width], [m["log10_orderings"]], color=sns.color_palette()[3], s=60, zorder=3,
               label=f"the MLP: {layers} layers of {width}")
    ax.annotate(f"({width}!)^{layers} ≈ 10^{m['log10_orderings']:.1f}", (width, m["log10_orderings"]),
                xytext=(-12, 12), textcoords="offset points", ha="right", fontsize="small", weight="bold")
    ex_n = len(perm)
    ax.scatter([ex_n], [math.log10(math.factorial(ex_n))], color="k", s=25, zorder=3,
               label=f"the diagram: {ex_n}! = {math.factorial(ex_n)}")
    ax.set_xscale("log")
    ax.set_yscale("log")  # log10 of the count spans 0.3 to thousands
    _plain_log(ax.xaxis)
    _plain_log(ax.yaxis)
    ax.set(xlabel="neurons per hidden layer n", ylabel="log10 (equivalent orderings)",
           title="how many equivalent networks")
    ax.legend(fontsize="x-small", loc="lower right")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.93, bottom=0.08)
    worst_sym = max(m[name]["rel_logit_change"] for name in SYMMETRIES)
    worst_loss = max(m[name]["test_loss_change"] for name in SYMMETRIES)
    measured = (f"All {len(ex['orderings'])} orderings of the diagram's layer give the same outputs (largest change "
                f"{max(ex['max_output_change']):.1g}). On the trained MLP, permutations and rescalings move the "
                f"logits by at most {worst_sym:.1e} of the largest logit ({worst_sym / m['float32_eps']:.1f} "
                f"float32 epsilons) and the test loss by {worst_loss:.1e} nats, with "
                f"{int(max(m[name]['predictions_changed'] for name in SYMMETRIES))} predictions changed; the "
                f"control moves the logits by {m[CONTROL]['rel_logit_change']:.2f} of the largest and the test loss "
                f"by {m[CONTROL]['test_loss_change']:.2f} nats ({int(m[CONTROL]['predictions_changed']):,} "
                "predictions changed). Equivalent orderings: "
                f"10^{m['log10_orderings']:.1f}.")
    return Drawn(fig, measured)


def _layer_diagram(ax: plt.Axes, w_in: list[list[float]], w_out: list[list[float]], ids: list[int], title: str,
                   caption: str, outputs: list[list[float]]) -> None:
    """Inputs, one hidden layer, outputs as circles; each hidden neuron in the colour of its identity `ids[slot]`."""
    n_in, n_hidden, n_out = len(w_in[0]), len(w_in), len(w_out)
    ys = {n: np.linspace(0.85, 0.15, n) if n > 1 else np.array([0.5]) for n in (n_in, n_hidden, n_out)}
    xs = (0.08, 0.45, 0.82)
    neuron_colors = sns.color_palette(n_colors=max(3, n_hidden) + 2)[2:]
    signs = sns.color_palette(n_colors=2)  # positive, negative weights
    scale = 4.0 / max(np.abs(w_in).max(), np.abs(w_out).max())
    for h in range(n_hidden):
        for k in range(n_in):
            w = w_in[h][k]
            ax.plot([xs[0], xs[1]], [ys[n_in][k], ys[n_hidden][h]], color=signs[w < 0], lw=0.4 + scale * abs(w),
                    alpha=0.7, zorder=1, solid_capstyle="round")
        for o in range(n_out):
            w = w_out[o][h]
            ax.plot([xs[1], xs[2]], [ys[n_hidden][h], ys[n_out][o]], color=signs[w < 0], lw=0.4 + scale * abs(w),
                    alpha=0.7, zorder=1, solid_capstyle="round")
    for k in range(n_in):
        _node(ax, xs[0], ys[n_in][k], f"x{k + 1}", "0.85")
    for h, ident in enumerate(ids):
        _node(ax, xs[1], ys[n_hidden][h], f"h{ident + 1}", neuron_colors[ident])
    for o in range(n_out):
        _node(ax, xs[2], ys[n_out][o], f"y{o + 1}", "0.85")
    shown = "  ".join("(" + ", ".join(f"{v:.3f}" for v in row) + ")" for row in outputs[:3])
    ax.text(0.5, 0.0, f"{caption}: {shown}" + (" …" if len(outputs) > 3 else ""), ha="center", va="top",
            fontsize="x-small", transform=ax.transAxes)
    ax.set(xlim=(0, 0.9), ylim=(0.05, 0.95), title=title)
    ax.title.set_fontsize("small")
    ax.axis("off")


def _node(ax: plt.Axes, x: float, y: float, label: str, color: Any) -> None:
    ax.scatter([x], [y], s=700, color=color, edgecolor="0.2", linewidth=1, zorder=2)
    ax.text(x, y, label, ha="center", va="center", fontsize="small", weight="bold", zorder=3)


def _width_of(log10_orderings: float, layers: int) -> int:
    """n with layers × log10(n!) = log10_orderings (equal widths): the point to mark on the curve."""
    n = 1
    while layers * math.lgamma(n + 2) / math.log(10) <= log10_orderings + 1e-9:
        n += 1
    return n


# --------------------------------------------------------------------------
# Fig 6-3: the loss along the line from the SGD solution to a random point
# --------------------------------------------------------------------------
IP = "interpolate"
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
def interpolation(i: Inputs, p: FigureParams, s: Style) -> Drawn:
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
        _mark_endpoints(ax)
        ax.set(xlabel="α", ylabel=ylabel)
    axes[0].set_title("loss along the line")
    axes[1].set_title("accuracy along the line")
    axes[0].legend(fontsize="x-small", loc="upper center")

    ax = axes[2]
    train = path[path["split"] == ("train" if "train" in splits else splits[0])]
    # Two kinds of θ_rand, two colours: the run's own init, and fresh inits (one line per seed).
    kinds = {"init": ("the baseline's own init", sns.color_palette()[2]),
             "fresh": ("fresh inits (one line per seed)", "0.4")}
    labelled = set()
    for label in dict.fromkeys(train["theta_rand"]):
        rows = train[train["theta_rand"] == label].sort_values("alpha")
        slope = np.abs(np.gradient(rows["loss"].to_numpy(), rows["alpha"].to_numpy()))
        inside = ((rows["alpha"] >= -0.25) & (rows["alpha"] <= 1.25)).to_numpy()
        kind = "init" if label == "init" else "fresh"
        name, color = kinds[kind]
        ax.plot(rows["alpha"][inside], slope[inside], color=color, lw=1.2, marker="o", ms=2,
                label=None if kind in labelled else name)
        labelled.add(kind)
    _mark_endpoints(ax)
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


def _mark_endpoints(ax: plt.Axes, at_1: str = "θ_rand") -> None:
    """Dashed lines at α = 0 (the SGD solution) and α = 1, named on a top axis where they hide no data."""
    for alpha in (0, 1):
        ax.axvline(alpha, color="0.35", ls="--", lw=0.9)
    top = ax.secondary_xaxis("top")
    top.set_xticks([0, 1], ["θ_opt", at_1], fontsize="x-small")
    top.tick_params(length=0, pad=1)


# --------------------------------------------------------------------------
# Fig 6-4: the three kinds of critical point; the share of minima against d
# --------------------------------------------------------------------------
@figure("fig6-04-critical-points", title="Fig 6-4. Critical points: minimum, maximum, flat; minima get rare with d",
        needs=(Need(SURF, "fig6_4_curves.csv"), Need(SURF, "fig6_4_minima_share.csv")),
        shows="The three kinds of critical point at x = 0 in one dimension (left); the share of random symmetric "
              "(GOE) Hessians with every eigenvalue positive, i.e. of critical points that are minima, against "
              "the dimension d, with 95% Wilson intervals, beside the book's 1/3^d (right, log scale).",
        book="A critical point is a minimum, a maximum or a flat (saddle) point; with k critical points about "
             "k/3 are minima in 1-D and k/3^d in d dimensions, so in high dimensions minima are rare and saddle "
             "points common.")
def critical_points(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    curves, share = i.csv(SURF, "fig6_4_curves.csv"), i.csv(SURF, "fig6_4_minima_share.csv")
    fig = plt.figure(figsize=size(s))
    grid = fig.add_gridspec(1, 4, width_ratios=[1, 1, 1, 2.4], wspace=0.45)
    names = {"minimum": "minimum", "maximum": "maximum", "flat": "flat (saddle)"}
    for j, kind in enumerate(names):
        ax = fig.add_subplot(grid[0, j])
        rows = curves[curves["kind"] == kind]
        ax.plot(rows["x"], rows["loss"], color=sns.color_palette()[j], lw=2)
        at = rows.iloc[(rows["x"].abs()).argmin()]
        ax.scatter(at["x"], at["loss"], color="0.1", zorder=3, s=25)
        ax.set(title=names[kind], xlabel="x", ylabel="f(x)" if j == 0 else None)

    ax = fig.add_subplot(grid[0, 3])
    seen, none = share[share["minima"] > 0], share[share["minima"] == 0]
    ax.fill_between(seen["d"], seen["share_low"], seen["share_high"], alpha=0.25, lw=0)
    ax.plot(seen["d"], seen["share"], marker="o", label="measured (GOE Hessians)")
    if len(none):
        ax.scatter(none["d"], none["share_high"], marker="v", color=sns.color_palette()[0], facecolor="none",
                   label=f"none in {int(none['samples'].iloc[0]):,} samples: 95% upper bound")
    ax.plot(share["d"], share["book_share"], ls="--", color="0.25", label="book: 1/3^d")
    ax.plot(share["d"], share["goe_asymptotic"], ls=":", color="0.5", label="GOE large-d law 3^(-d²/4)")
    ax.set_yscale("log")
    # Down to a decade below the smallest measured value; the GOE law runs on below it.
    floor = 0.1 * min(seen["share_low"].replace(0, np.nan).min(), none["share_high"].min() if len(none) else 1)
    ax.set_ylim(bottom=floor)
    ax.set(xlabel="dimension d", ylabel="share that are minima", title="minima among critical points")
    ax.set_xticks(share["d"])
    # Below the panel: wherever the curves fall (they move with d and the sample count), it hides none.
    ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=2, frameon=False)
    last = seen.iloc[-1]
    measured = (f"1-D: {share['share'].iloc[0]:.3f} of critical points are minima (book 1/3); "
                f"d = {int(last['d'])}: {last['share']:.1e} against the book's {last['book_share']:.1e}; "
                f"the share falls faster than 1/3^d, as the GOE law exp(-d² ln3 / 4) says.")
    return Drawn(fig, measured)


# --------------------------------------------------------------------------
# Fig 6-5: a saddle point
# --------------------------------------------------------------------------
@figure("fig6-05-saddle", title="Fig 6-5. A saddle point: a minimum from A to B, a maximum from C to D",
        needs=(GRIDS, Need(SURF, "fig6_5_cuts.csv"), SURF_METRICS),
        shows="The surface z = x² − y² in 3-D with the cuts A–B (along x) and C–D (along y) drawn on it "
              "(left); "
              "the height along each cut (right).",
        book="Cutting the surface from A to B the critical point looks like a minimum, from C to D like a "
             "maximum: a saddle point.")
def saddle(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    g, cuts, m = i.npz(SURF, "grids.npz"), i.csv(SURF, "fig6_5_cuts.csv"), i.json(SURF)
    x, y = np.meshgrid(g["fig6_5_x"], g["fig6_5_y"])
    fig = plt.figure(figsize=size(s, rows=1.25))
    grid = fig.add_gridspec(1, 2, width_ratios=[1.2, 1], wspace=0.25)
    ax3 = fig.add_subplot(grid[0, 0], projection="3d", computed_zorder=False)
    ax3.plot_surface(x, y, g["fig6_5_z"], cmap=s.colormap, alpha=0.75, linewidth=0, antialiased=True, zorder=1)
    colors = sns.color_palette(n_colors=2)
    ax = fig.add_subplot(grid[0, 1])
    for (name, rows), color in zip(cuts.groupby("cut", sort=True), colors, strict=True):
        start, end = name.split("-")
        ax3.plot(rows["x"], rows["y"], rows["z"], color=color, lw=3, zorder=3)
        for label, row in ((start, rows.iloc[0]), (end, rows.iloc[-1])):
            ax3.text(row["x"], row["y"], row["z"] + 0.4, label, color=color, fontsize="large", weight="bold",
                     zorder=4)
        looks = "a minimum" if rows["z"].iloc[len(rows) // 2] <= rows["z"].min() + 1e-12 else "a maximum"
        ax.plot(rows["s"], rows["z"], color=color, lw=2, label=f"{start} → {end}: looks like {looks}")
    ax3.scatter([0], [0], [0], color="k", s=30, zorder=5)
    ax3.set(xlabel="x", ylabel="y", zlabel="")
    ax3.set_title("z = f(x, y)")
    ax3.view_init(elev=28, azim=-55)
    ax.scatter([0], [0], color="k", zorder=3, label="the saddle point")
    ax.set(xlabel="position along the cut", ylabel="height z", title="the two cuts")
    ax.legend(fontsize="small")
    measured = (f"Hessian eigenvalues {m['saddle_hessian_eig_min']:g} and {m['saddle_hessian_eig_max']:g}: "
                "one negative, one positive, so the critical point at the origin is a saddle.")
    return Drawn(fig, measured)


# --------------------------------------------------------------------------
# Fig 6-6: the gradient versus the way to the minimum
# --------------------------------------------------------------------------
@figure("fig6-06-gradient-angle", title="Fig 6-6. The gradient can point far from the minimum",
        needs=(GRIDS, Need(SURF, "fig6_6_gradients.csv"), Need(SURF, "fig6_6_largest_angle.csv"), SURF_METRICS),
        shows="Contours of an ill-conditioned quadratic with the descent direction −∇f at grid points, coloured "
              "by its angle to the straight way to the minimum (left); the largest such angle against the "
              "condition number, measured over directions and from theory, arccos(2√κ / (1 + κ)) (right).",
        book="On elliptical contours the gradient's direction can be up to 90° away from the direction to "
             "the minimum.")
def gradient_angle(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    g, arrows = i.npz(SURF, "grids.npz"), i.csv(SURF, "fig6_6_gradients.csv").dropna(subset=["angle_deg"])
    sweep, m = i.csv(SURF, "fig6_6_largest_angle.csv"), i.json(SURF)
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=1.1), gridspec_kw={"width_ratios": [1.15, 1]})
    ax = axes[0]
    _contours(ax, g["fig6_6_x"], g["fig6_6_y"], g["fig6_6_loss"])
    spacing = np.diff(np.unique(arrows["x"])).min()
    norm = np.hypot(arrows["grad_x"], arrows["grad_y"])
    q = ax.quiver(arrows["x"], arrows["y"], -arrows["grad_x"] / norm * 0.8 * spacing,
                  -arrows["grad_y"] / norm * 0.8 * spacing, arrows["angle_deg"], angles="xy", scale_units="xy",
                  scale=1, cmap="rocket_r", width=0.006, clim=(0, 90))
    fig.colorbar(q, ax=ax, label="angle of −∇f to the minimum (°)")
    ax.scatter([0], [0], marker="*", s=150, color="k", zorder=3, label="minimum")
    ax.set(xlabel="w₁", ylabel="w₂", title=f"descent directions, κ = {m['condition_number']:g}", aspect="equal")
    ax.legend(loc="upper left", fontsize="small")

    ax = axes[1]
    ax.plot(sweep["condition_number"], sweep["theory_deg"], color="0.3", ls="--", label="theory arccos(2√κ/(1+κ))")
    ax.plot(sweep["condition_number"], sweep["largest_angle_deg"], marker="o", ls="none", label="measured")
    ax.axhline(90, color="0.5", ls=":", label="90°")
    ax.axvline(m["condition_number"], color=sns.color_palette()[1], ls=":", label="left panel")
    ax.set_xscale("log")
    ax.set(xlabel="condition number κ = λmax / λmin", ylabel="largest angle (°)", ylim=(0, 95),
           title="worst case against κ")
    ax.legend(fontsize="small", loc="lower right")
    top = sweep.iloc[sweep["condition_number"].argmax()]
    measured = (f"Largest angle {m['largest_angle_deg']:.1f}° at κ = {m['condition_number']:g} "
                f"(theory {m['largest_angle_theory_deg']:.1f}°); {top['largest_angle_deg']:.1f}° at "
                f"κ = {top['condition_number']:g}: it approaches 90° as κ grows, never reaching it.")
    return Drawn(fig, measured)


def _contours(ax: plt.Axes, x: np.ndarray, y: np.ndarray, z: np.ndarray, levels: int = 14) -> None:
    """Contours of a quadratic bowl, spaced geometrically so the narrow valley shows as well as the rim."""
    low = z.max() * 1e-3 if z.min() >= 0 else None
    spaced = np.geomspace(low, z.max(), levels) if low else levels
    ax.contour(x, y, z, levels=spaced, cmap="Greys_r", linewidths=0.8, alpha=0.8)


def _frame(ax: plt.Axes, x: np.ndarray, y: np.ndarray, margin: float) -> None:
    """Limit an equal-aspect panel to a square around the points drawn, plus a margin."""
    cx, cy = (np.min(x) + np.max(x)) / 2, (np.min(y) + np.max(y)) / 2
    half = max(np.ptp(x), np.ptp(y)) / 2 + margin
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy - half, cy + half)


def _plain_log(axis: plt.Axes) -> None:
    """Tick labels 0.5, 2, 300 rather than 5×10⁻¹ on a log axis spanning few decades."""
    fmt = plt.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    # Minor ticks labelled at 2 and 5 times a power of ten (its leading digit, 0.2 included).
    axis.set_minor_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


# --------------------------------------------------------------------------
# Fig 6-7: the gradient turns along the steepest-descent line
# --------------------------------------------------------------------------
@figure("fig6-07-gradient-turns", title="Fig 6-7. Along the steepest-descent line the gradient turns",
        needs=(GRIDS, Need(SURF, "fig6_7_line.csv"), SURF_METRICS),
        shows="The steepest-descent line chosen at a start point, with the normalised descent direction "
              "−∇f/|∇f| at points along it, on circular and on elliptical contours (left, middle); the angle of "
              "the gradient from its direction at the start against the distance moved (right).",
        book="Moving along the direction of steepest descent chosen at the start, the gradient changes "
             "direction under our feet; on circular contours it would not.")
def gradient_turns(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    g, line, m = i.npz(SURF, "grids.npz"), i.csv(SURF, "fig6_7_line.csv"), i.json(SURF)
    fig, axes = plt.subplots(1, 3, figsize=size(s), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    colors = dict(zip(("circle", "ellipse"), sns.color_palette(n_colors=2), strict=True))
    titles = {"circle": "circular contours", "ellipse": "elliptical contours"}
    line = line.copy()
    for surface, rows in line.groupby("surface", sort=False):
        line.loc[rows.index, "distance"] = np.hypot(rows["x"] - rows["x"].iloc[0], rows["y"] - rows["y"].iloc[0])
    for ax, surface in zip(axes[:2], ("circle", "ellipse"), strict=True):
        rows = line[line["surface"] == surface]
        # Arrows 1.5x the spacing of the points, the panel zoomed to the line: the turn shows.
        length = 1.5 * np.hypot(np.diff(rows["x"]), np.diff(rows["y"])).mean()
        _contours(ax, g["fig6_7_x"], g["fig6_7_y"], g[f"fig6_7_{surface}_loss"], levels=24)
        ax.plot(rows["x"], rows["y"], color=colors[surface], lw=4, alpha=0.35, solid_capstyle="round",
                label="steepest-descent line")
        # Arrows start on the line and are drawn in black so the circle's, lying along it, still show.
        ax.quiver(rows["x"], rows["y"], -rows["unit_grad_x"] * length, -rows["unit_grad_y"] * length,
                  angles="xy", scale_units="xy", scale=1, color="k", width=0.006, label="−∇f / |∇f|", zorder=3)
        _frame(ax, rows["x"], rows["y"], margin=2.5 * length)
        ax.set(xlabel="w₁", ylabel="w₂", title=titles[surface], aspect="equal")
        ax.legend(fontsize="x-small", loc="lower left")
    ax = axes[2]
    for surface, rows in line.groupby("surface", sort=False):
        ax.plot(rows["distance"], rows["turn_deg"], marker="o", color=colors[surface], label=titles[surface])
    ax.axhline(90, color="0.5", ls=":")
    ax.set(xlabel="distance moved along the line", ylabel="gradient's turn from the start (°)", ylim=(-3, 95),
           title="how far the gradient turned")
    ax.legend(fontsize="small")
    fig.tight_layout()
    measured = (f"At the end of the line the gradient has turned {m['turn_deg_ellipse']:.1f}° on the ellipse "
                f"and {m['turn_deg_circle']:.1g}° on the circle.")
    return Drawn(fig, measured)


# --------------------------------------------------------------------------
# Extra (text of "When the gradient points the wrong way"): the Hessian spectrum
# --------------------------------------------------------------------------
HS = "hessian"


@figure("extra-hessian-spectrum", title="The loss Hessian of the MLP: top eigenvalues, and along the Fig 6-3 line",
        needs=(Need(HS, "eigenvalues.csv"), Need(HS, "path.csv"), Need(HS, "metrics.json")),
        shows="From Hessian-vector products only (Lanczos, Hutchinson; no dense Hessian), on a fixed subset of "
              "the data: the largest eigenvalues and the most negative one at the SGD solution (top left, "
              "symlog) with each Ritz pair's residual ‖Hy − λy‖ (top right, log; hollow: not converged by the "
              "stage's criterion); "
              "along the line θ(α) = (1 − α) θ_opt + α θ_init: λ_max, λ_min and the trace estimate with its "
              "standard error (bottom left, symlog), and the conditioning ratios λ_max / |λ_min| and "
              "λ_max / λ_k (bottom right, log).",
        book="The Hessian H describes the curvature; the problem is ill-conditioned when the gradient changes "
             "quickly under our feet, i.e. when H's eigenvalues are spread widely (the book gives no numbers).")
def hessian_spectrum(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    eig, path, m = i.csv(HS, "eigenvalues.csv"), i.csv(HS, "path.csv").sort_values("alpha"), i.json(HS)
    sol = m["solution"]
    at0 = eig[eig["alpha"] == 0.0]
    top, low = at0[at0["which"] == "top"].sort_values("rank"), at0[at0["which"] == "min"]
    k = len(top)
    colors = sns.color_palette(n_colors=4)
    fig, axes = plt.subplots(2, 2, figsize=size(s, rows=2))

    ax = axes[0, 0]
    ranks = np.arange(1, k + 2)
    values = np.r_[top["value"].to_numpy(), low["value"].to_numpy()]
    ax.vlines(ranks, 0, values, color=[colors[0]] * k + [colors[3]], lw=2)
    ax.scatter(ranks[:k], values[:k], color=colors[0], zorder=3, label=f"top {k} (λ_1 … λ_{k})")
    ax.scatter(ranks[k:], values[k:], color=colors[3], zorder=3, label="most negative")
    ax.axhline(0, color="0.3", lw=0.6)
    _symlog(ax, values)
    ax.set_xticks(ranks, [*map(str, range(1, k + 1)), "min"])
    ax.set(xlabel="rank", ylabel="eigenvalue of H (nats / param²)", title="spectrum at the SGD solution (α = 0)")
    ax.legend(fontsize="small")

    ax = axes[0, 1]
    pairs = pd.concat([top, low])
    conv = pairs["converged"].astype(bool).to_numpy()
    pair_colors = np.array([colors[0]] * k + [colors[3]])
    ax.scatter(ranks[conv], pairs["residual"][conv], color=pair_colors[conv], zorder=3)
    ax.scatter(ranks[~conv], pairs["residual"][~conv], facecolor="none", edgecolor=pair_colors[~conv], zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(ranks, [*map(str, range(1, k + 1)), "min"])
    ax.set(xlabel="rank", ylabel="residual ‖Hy − λy‖ (nats / param²)",
           title="residuals at α = 0 (hollow: not converged)")

    ax = axes[1, 0]
    for which, rank, color, label in (("top", 1, colors[0], "λ_max"), ("min", 1, colors[3], "λ_min (most negative)")):
        rows = eig[(eig["which"] == which) & (eig["rank"] == rank)].sort_values("alpha")
        ok = rows["converged"].astype(bool).to_numpy()
        ax.plot(rows["alpha"], rows["value"], color=color, lw=1.2, label=label)
        ax.scatter(rows["alpha"][ok], rows["value"][ok], color=color, zorder=3)
        ax.scatter(rows["alpha"][~ok], rows["value"][~ok], facecolor="white", edgecolor=color, zorder=3)
    ax.errorbar(path["alpha"], path["trace"], yerr=path["trace_stderr"], color=colors[2], marker="s", ms=4,
                capsize=3, lw=1.2, label="trace (Hutchinson, ± 1 s.e.)")
    ax.axhline(0, color="0.3", lw=0.6)
    trace_ends = [path["trace"] + sign * path["trace_stderr"] for sign in (1, -1)]
    _symlog(ax, np.concatenate([path["lambda_max"], path["lambda_min"], *trace_ends]))
    _mark_endpoints(ax, "θ_init")
    ax.set(xlabel="α (0: SGD solution, 1: the baseline's init)", ylabel="nats / param²",
           title="curvature along the line (hollow: not converged)")
    ax.legend(fontsize="x-small", loc="center left")

    ax = axes[1, 1]
    ax.plot(path["alpha"], path["top_over_abs_min"], marker="o", color=colors[1], label="λ_max / |λ_min|")
    ax.plot(path["alpha"], path["top_over_kth"], marker="s", color=colors[0], label=f"λ_max / λ_{k}")
    ax.axhline(1, color="0.3", lw=0.6)
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    _mark_endpoints(ax, "θ_init")
    ax.set(xlabel="α (0: SGD solution, 1: the baseline's init)", ylabel="ratio", title="conditioning along the line")
    ax.legend(fontsize="small")
    fig.tight_layout()
    peak = path.loc[path["lambda_max"].idxmax()]
    unconverged = path["alpha"][~path["converged"].astype(bool)]
    measured = (f"At the SGD solution ({m['parameters']:,} parameters, {m['subset_size']:,} examples): λ_1 = "
                f"{sol['lambda_max']:.3g}, λ_{k} = {top['value'].iloc[-1]:.3g}, most negative {sol['lambda_min']:.3g}"
                f" (λ_max / |λ_min| = {sol['top_over_abs_min']:.0f}); trace {sol['trace']:.3g} ± "
                f"{sol['trace_stderr']:.2g}; largest residual {sol['max_residual']:.1e}. Along the line λ_max is "
                f"{path['lambda_max'].iloc[0]:.3g} at α = {path['alpha'].iloc[0]:g}, at most {peak['lambda_max']:.3g}"
                f" (α = {peak['alpha']:g}), {path['lambda_max'].iloc[-1]:.3g} at α = {path['alpha'].iloc[-1]:g}"
                + (f"; some eigenpair not converged at α = {', '.join(f'{a:g}' for a in unconverged)}"
                   if len(unconverged) else "") + ".")
    return Drawn(fig, measured)


def _symlog(ax: plt.Axes, values: np.ndarray) -> None:
    """Symmetric log y where the values span decades or both signs, linear within the smallest |value| seen."""
    values = values[np.isfinite(values)]
    nonzero = np.abs(values[values != 0])
    if len(nonzero) and (values.min() < 0 < values.max() or nonzero.max() / nonzero.min() > 30):
        ax.set_yscale("symlog", linthresh=float(10 ** np.floor(np.log10(nonzero.min()))))
        # Autoscaling leaves no margin on a symlog axis: half a decade beyond the extremes, so no point is cut.
        lo, hi = values.min(), values.max()
        ax.set_ylim(lo * 3 if lo < 0 else lo / 3, hi * 3 if hi > 0 else hi / 3)


# --------------------------------------------------------------------------
# Fig 6-8: momentum smooths a random walk
# --------------------------------------------------------------------------
RW = "random_walk"


@figure("fig6-08-random-walk", title="Fig 6-8. Momentum smooths a random walk",
        needs=(Need(RW, "walks.csv"), Need(RW, "metrics.json")),
        shows="A walk of random integer steps (top: no momentum) and, below, fresh walks smoothed by the "
              "exponentially weighted average new = m·prev + (1 − m)·step for each momentum m, on one shared "
              "y-range of 1.5× the largest raw step; grey dots: the raw steps being smoothed.",
        book="Momentum sharply reduces the volatility of the updates; the larger it is, the less sensitive "
             "the walk is to new steps (early errors persist).")
def random_walk(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    walks, m = i.csv(RW, "walks.csv"), i.json(RW)
    momenta = list(dict.fromkeys(walks["momentum"]))  # the stage's order: no momentum first (on top)
    reach = p.random_walk_y_range_factor * walks["raw"].abs().max()
    fig, axes = plt.subplots(len(momenta), 1, sharex=True, sharey=True,
                             figsize=size(s, rows=0.45 * len(momenta), width=0.8))
    color = sns.color_palette()[0]
    for ax, mom in zip(np.atleast_1d(axes), momenta, strict=True):
        rows = walks[walks["momentum"] == mom]
        if mom > 0:
            ax.scatter(rows["step"], rows["raw"], s=4, color="0.6", label="raw step", zorder=1)
        ax.plot(rows["step"], rows["smoothed"], color=color, lw=1.4, label="smoothed (momentum)", zorder=2)
        ax.axhline(0, color="0.3", lw=0.5)
        ax.set_ylim(-reach, reach)
        ax.text(0.01, 0.93, "no momentum" if mom == 0 else f"momentum {mom:g}", transform=ax.transAxes,
                va="top", weight="bold", fontsize="small")
    np.atleast_1d(axes)[-1].set_xlabel("step")
    fig.supylabel("update (step units)")
    handles = {h.get_label(): h for ax in np.atleast_1d(axes) for h in ax.get_children() if h.get_label() in
               ("raw step", "smoothed (momentum)")}
    fig.legend(handles.values(), handles.keys(), loc="upper right", ncols=2, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    stds = {mom: rows["smoothed"].std() for mom, rows in walks.groupby("momentum")}
    measured = (f"Raw steps from {walks['raw'].min()} to {walks['raw'].max()} (theory mean "
                f"{m['raw_mean_theory']:g}, std {m['raw_std_theory']:.2f}); std of the drawn walks: "
                + ", ".join(f"m = {k:g}: {v:.2f}" for k, v in stds.items()) + ".")
    return Drawn(fig, measured)


@figure("fig6-08-std-vs-momentum", title="Fig 6-8 (measured). The smoothed walk's std against EWMA theory",
        needs=(Need(RW, "std.csv"), Need(RW, "metrics.json")),
        shows="The standard deviation of the smoothed steps (many walks, after a burn-in) against 1 − m on "
              "a log axis, beside the stationary EWMA theory sqrt((1 − m)/(1 + m)) × the raw std (left), and "
              "their ratio (right).",
        book="Momentum sharply reduces the volatility of the updates (the book gives no number; the EWMA of "
             "i.i.d. steps predicts how much).")
def random_walk_std(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    std, m = i.csv(RW, "std.csv"), i.json(RW)
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=0.95))
    ax = axes[0]
    grid = np.linspace(std["momentum"].min(), std["momentum"].max(), 200)
    ax.plot(1 - grid, m["raw_std_theory"] * np.sqrt((1 - grid) / (1 + grid)), color="0.3", ls="--",
            label="theory √((1−m)/(1+m)) σ")
    ax.plot(1 - std["momentum"], std["measured_std"], marker="o", ls="none", label="measured")
    ax.axhline(m["raw_std_theory"], color="0.6", ls=":", label="raw step std σ")
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    _momentum_axis(ax, std["momentum"])
    ax.set(ylabel="std of the smoothed steps (step units)", title="volatility")
    ax.legend(fontsize="small", loc="lower left")
    ax = axes[1]
    ax.plot(1 - std["momentum"], std["ratio"], marker="o")
    ax.axhline(1, color="0.3", ls="--")
    _momentum_axis(ax, std["momentum"])
    spread = max(0.01, 1.2 * (std["ratio"] - 1).abs().max())
    ax.set(ylabel="measured / theory", ylim=(1 - spread, 1 + spread), title="agreement with theory")
    fig.tight_layout()
    top = std.iloc[std["momentum"].argmax()]
    measured = (f"std falls from {std['measured_std'].iloc[0]:.2f} (m = {std['momentum'].iloc[0]:g}) to "
                f"{top['measured_std']:.2f} (m = {top['momentum']:g}); measured/theory within "
                f"{(std['ratio'] - 1).abs().max():.2%} at every momentum.")
    return Drawn(fig, measured)


def _momentum_axis(ax: plt.Axes, momenta: pd.Series) -> None:
    """x on a log scale of 1 - m, so 0.9 and 0.99 stand apart, ticked with the momenta themselves."""
    ax.set_xscale("log")
    ax.invert_xaxis()  # momentum grows to the right
    labels, last = [], None
    for m in sorted(momenta):  # a label closer than 0.1 decade to the previous one would overprint it
        keep = last is None or np.log10((1 - last) / (1 - m)) >= 0.1
        labels.append(f"{m:g}" if keep else "")
        last = m if keep else last
    ax.set_xticks(1 - np.array(sorted(momenta)), labels)
    ax.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("momentum m (axis: log of 1 − m)")


# --------------------------------------------------------------------------
# Fig 6-9: training with and without momentum (both setups, several seeds)
# --------------------------------------------------------------------------
MO = "momentum"
SETUP_TITLES = {"book_first_edition": "first-edition setup", "pytorch": "PyTorch setup"}
# The costs the momentum stage can time the target by (`momentum.setups.<setup>.cost`).
COST_NAMES = {"smoothed": "trailing mean", "epoch_last": "epoch's last mini-batch"}


@figure("fig6-09-momentum", title="Fig 6-9. Training with and without momentum: steps to a cost of 0.1",
        needs=(Need(MO, "steps.csv"), Need(MO, "epochs.csv"), Need(MO, "summary.csv"), Need(MO, "metrics.json")),
        shows="The training cost against mini-batch steps for SGD(lr=0.01), with momentum 0.9 and with Nesterov "
              "momentum, in both setups: the first edition's (batch 100 on 55,000 images, He init, a ReLU on the "
              "logits; left) and the PyTorch baseline's (batch 64, torch's init; right). Lines: the trailing mean "
              "of the per-step cost, one per seed (each run stops a little after reaching the target; one that "
              "never reaches it runs to the step cap); faint "
              "dots: the cost of each epoch's last mini-batch, per seed, which is what the book plotted. Dashed: the "
              "target cost; large dots on it: each optimizer's mean steps to reach it (by the setup's cost); "
              "grey verticals: the book's 18,000 and 2,000 steps.",
        book="Reaching a cost of 0.1 takes almost 18,000 mini-batch steps without momentum and just over 2,000 "
             "with it (a ratio of about 9).")
def momentum_curves(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    steps, epochs = i.csv(MO, "steps.csv"), i.csv(MO, "epochs.csv")
    summary, m = i.csv(MO, "summary.csv"), i.json(MO)
    setups = list(dict.fromkeys(summary["setup"]))
    optimizers = list(dict.fromkeys(summary["optimizer"]))
    colors = dict(zip(optimizers, sns.color_palette(n_colors=len(optimizers)), strict=True))
    fig, axes = plt.subplots(1, len(setups), figsize=size(s, rows=1.15), sharey=True, squeeze=False)
    for ax, setup in zip(axes[0], setups, strict=True):
        rows = summary[summary["setup"] == setup].set_index("optimizer")
        for opt, dashes in zip(optimizers, itertools.cycle(("-", "--", ":", "-.")), strict=False):
            # One line per seed: seeds stop at different steps and a stuck seed stays high, so a mean
            # over seeds would jump wherever one of them ends.
            for k, (_seed, run) in enumerate(steps[(steps["setup"] == setup) & (steps["optimizer"] == opt)]
                                             .groupby("seed")):
                ax.plot(run["step"], run["smoothed"], color=colors[opt], ls=dashes, lw=1.2, alpha=0.9,
                        label=opt if k == 0 else None)
            last = epochs[(epochs["setup"] == setup) & (epochs["optimizer"] == opt)]
            ax.scatter(last["step"], last["epoch_last_loss"], color=colors[opt], s=4, alpha=0.35, lw=0)
            reached = rows.loc[opt, "steps_mean"]
            if pd.notna(reached):
                ax.scatter([reached], [m["target_loss"]], color=colors[opt], s=45, zorder=4, edgecolor="white")
        for book in rows["book_steps"].dropna():
            ax.axvline(book, color="0.45", ls=":", lw=1.2)
            ax.text(book, 0.98, f" book {book:,.0f}", transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="right", fontsize="x-small", color="0.3")
        ax.axhline(m["target_loss"], color="0.3", ls="--", lw=1)
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.set(xlabel="mini-batch step", title=SETUP_TITLES.get(setup, setup))
        ax.legend(fontsize="small", title=f"{int(rows['seeds'].iloc[0])} seeds", title_fontsize="small")
    axes[0][0].set_ylabel(f"training cost, mean of {m['smoothing_window']} steps (nats)")
    fig.tight_layout()
    measured = "; ".join(
        f"{SETUP_TITLES.get(setup, setup)}: "
        + ", ".join(f"{r.optimizer} {_mean_std(r.steps_mean, r.steps_std)} steps"
                    + (f" ({int(r.reached)} of {int(r.seeds)} seeds reached it)" if r.reached < r.seeds else "")
                    for r in summary[summary["setup"] == setup].itertuples())
        + ", ratio " + ", ".join(f"{m['baseline']}/{r.optimizer} "
                                 f"{_mean_std(r.ratio_mean, r.ratio_std, '.2f')}"
                                 for r in summary[summary["setup"] == setup].itertuples()
                                 if r.optimizer != m["baseline"])
        for setup in setups) + (f" (target cost {m['target_loss']:g}, timed as the table says; "
                                "the book: 18,000 and 2,000, ratio 9). The first epoch whose last mini-batch "
                                "alone fell below the target comes much earlier and scatters widely (table): "
                                "one mini-batch's cost is too noisy to time the crossing.")
    return Drawn(fig, measured, _momentum_table(summary, m["baseline"]))


def _mean_std(mean: float, std: float, spec: str = ",.0f") -> str:
    if pd.isna(mean):
        return "not reached"
    return f"{mean:{spec}}" + (f" ± {std:{spec}}" if pd.notna(std) else "")


def _momentum_table(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    def steps(prefix: str) -> list[str]:
        return [_mean_std(r[f"{prefix}steps_mean"], r[f"{prefix}steps_std"])
                + ("" if r[f"{prefix}reached"] == r["seeds"] else f" [{int(r[f'{prefix}reached'])}/{int(r['seeds'])}]")
                for _, r in summary.iterrows()]

    return pd.DataFrame({
        "setup": summary["setup"], "optimizer": summary["optimizer"],
        "cost timed": summary["cost"].map(COST_NAMES),
        "steps to 0.1 (mean ± std) [seeds reaching it]": steps(""),
        "range over seeds": [f"{a:,.0f}–{b:,.0f}" if pd.notna(a) else "–" for a, b in
                             zip(summary["steps_min"], summary["steps_max"], strict=True)],
        f"ratio {baseline}/optimizer": [_mean_std(a, b, ".2f") for a, b in
                                        zip(summary["ratio_mean"], summary["ratio_std"], strict=True)],
        "first epoch-end mini-batch below 0.1 (step)": steps("epoch_last_"),
        "book steps": [f"{v:,.0f}" if pd.notna(v) else "–" for v in summary["book_steps"]],
        "book ratio": [f"{v:g}" if pd.notna(v) else "–" for v in summary["book_ratio"]],
    })


# --------------------------------------------------------------------------
# Fig 6-10: steepest descent zig-zags; conjugate gradient does not
# --------------------------------------------------------------------------
@figure("fig6-10-conjugate-gradient", title="Fig 6-10. Steepest descent zig-zags; conjugate gradient does not",
        needs=(GRIDS, Need(SURF, "fig6_10_paths.csv"), Need(SURF, "fig6_10_convergence.csv"), SURF_METRICS),
        shows="Steepest descent with exact line search and linear conjugate gradient from one start on a 2-D "
              "quadratic (left); the relative error (f − f*)/(f(x₀) − f*) against the iteration on an "
              "ill-conditioned n-dimensional quadratic, log axes (right).",
        book="Steepest descent with line search zig-zags on elongated contours; conjugate directions fix it, "
             "reaching the minimum of an n-dimensional quadratic in n steps.")
def conjugate_gradient(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    g, paths = i.npz(SURF, "grids.npz"), i.csv(SURF, "fig6_10_paths.csv")
    conv, m = i.csv(SURF, "fig6_10_convergence.csv"), i.json(SURF)
    names = {"steepest_descent": "steepest descent", "conjugate_gradient": "conjugate gradient"}
    colors = dict(zip(names, sns.color_palette(n_colors=2), strict=True))
    counts_2d = {"steepest_descent": m["sd_2d_iterations"], "conjugate_gradient": m["cg_2d_iterations"]}
    counts_nd = {"steepest_descent": m["sd_nd_iterations"], "conjugate_gradient": m["cg_nd_iterations"]}
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=1.1))
    ax = axes[0]
    _contours(ax, g["fig6_10_x"], g["fig6_10_y"], g["fig6_10_loss"])
    for method, rows in paths.groupby("method", sort=False):
        ax.plot(rows["x"], rows["y"], marker="o", ms=3 if method == "steepest_descent" else 6,
                lw=1 if method == "steepest_descent" else 2.2, color=colors[method],
                label=f"{names[method]}: {counts_2d[method]} steps")
    start = paths.iloc[0]
    ax.scatter(start["x"], start["y"], s=60, color="k", zorder=4, label="start")
    ax.scatter([0], [0], marker="*", s=150, color="k", zorder=4)
    _frame(ax, paths["x"], paths["y"], margin=0.5)  # the paths fill the panel: the zig-zag shows
    ax.set(xlabel="w₁", ylabel="w₂", title="2-D quadratic", aspect="equal")
    ax.legend(fontsize="small", loc="upper left")
    ax = axes[1]
    for method, rows in conv.groupby("method", sort=False):
        rows = rows[(rows["iteration"] > 0) & (rows["rel_energy_error"] > 0)]
        ax.plot(rows["iteration"], rows["rel_energy_error"], color=colors[method],
                label=f"{names[method]}: {counts_nd[method]} iterations")
    ax.axvline(m["nd_dim"], color="0.4", ls=":", label=f"n = {m['nd_dim']}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="iteration", ylabel="relative error (f − f*) / (f(x₀) − f*)",
           title=f"n = {m['nd_dim']}, κ = {m['nd_condition_number']:g}")
    ax.legend(fontsize="small", loc="lower left")
    fig.tight_layout()
    measured = (f"2-D: conjugate gradient reaches the minimum in {m['cg_2d_iterations']} steps (distance "
                f"{m['cg_2d_distance_after_2_steps']:.1e} after step 2), steepest descent needs "
                f"{m['sd_2d_iterations']} (bound {m['sd_2d_bound']}). n = {m['nd_dim']}: CG "
                f"{m['cg_nd_iterations']} iterations, steepest descent {m['sd_nd_iterations']} "
                f"(bound {m['sd_nd_bound']}).")
    return Drawn(fig, measured)


# --------------------------------------------------------------------------
# Extra ("try these optimizers"): the optimizer comparison grid
# --------------------------------------------------------------------------
OG = "optimizer_grid"


@figure("extra-optimizer-grid", title="The optimizer comparison: every optimizer of the chapter at its best lr",
        needs=(Need(OG, "steps.csv"), Need(OG, "cells.csv"), Need(OG, "summary.csv"), Need(OG, "metrics.json")),
        shows="Each optimizer on the MLP at its best learning rate of the grid (the lowest mean final training "
              "cost over seeds; an lr where any seed diverged is never best), the same budget for all: the "
              "trailing-mean training cost against mini-batch steps, mean over seeds with the lowest-to-highest "
              "band (left); test error at the end of the budget, one dot per seed (middle); mini-batch steps to "
              "the target cost, one dot per seed (right; missing: never reached).",
        book="Mini-batch SGD, with momentum, RMSProp, RMSProp with momentum, Adam and AdaDelta are the most "
             "popular optimizers; try them all on the feed-forward network.")
def optimizer_grid(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    steps, cells, summary, m = (i.csv(OG, "steps.csv"), i.csv(OG, "cells.csv"), i.csv(OG, "summary.csv"),
                                i.json(OG))
    usable = summary[summary["best_lr"].notna()].sort_values("rank")
    colors = dict(zip(summary.sort_values("rank")["optimizer"], sns.color_palette(n_colors=len(summary)),
                      strict=True))
    labels = {r.optimizer: f"#{r.rank} {r.optimizer} (lr {r.best_lr:g})" for r in usable.itertuples()}
    fig, axes = plt.subplots(1, 3, figsize=size(s, rows=1.3), gridspec_kw={"width_ratios": [1.6, 1, 1]})
    at_best = cells.merge(usable[["optimizer", "best_lr"]], left_on=["optimizer", "lr"],
                          right_on=["optimizer", "best_lr"])

    ax = axes[0]
    for r in usable.itertuples():
        rows = steps[(steps["optimizer"] == r.optimizer) & (steps["lr"] == r.best_lr)]
        band = _seed_band(rows, "smoothed")
        ax.plot(band["step"], band["mean"], color=colors[r.optimizer], lw=1.3, label=labels[r.optimizer])
        ax.fill_between(band["step"], band["min"], band["max"], color=colors[r.optimizer], alpha=0.2, lw=0)
    ax.axhline(m["target_loss"], color="0.3", ls="--", lw=1)
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.set(xlabel="mini-batch step", ylabel=f"training cost, mean of {m['smoothing_window']} steps (nats)",
           title=f"training cost ({m['budget_steps']:,} steps, {int(summary['seeds'].iloc[0])} seeds)")

    order = list(usable["optimizer"])
    at_best["test_error"] = 100 * (1 - at_best["test_accuracy"])
    for ax, column, xlabel in ((axes[1], "test_error", "test error (%, log scale)"),
                               (axes[2], "steps_to_target", f"steps to a cost of {m['target_loss']:g}")):
        for rank, opt in enumerate(order):
            values = at_best.loc[at_best["optimizer"] == opt, column].dropna()
            ax.scatter(values, [rank] * len(values), color=colors[opt], s=28, zorder=3)
            if len(values):
                ax.plot([values.min(), values.max()], [rank, rank], color=colors[opt], lw=1.5)
        ax.set_yticks(range(len(order)), order if ax is axes[1] else [])
        ax.set_ylim(len(order) - 0.5, -0.5)
        ax.set(xlabel=xlabel)
    axes[1].set_xscale("log")  # from ~3% to chance (90%): decades
    _plain_log(axes[1].xaxis)
    axes[1].set_title("test error at the end")
    axes[2].set_title("speed")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncols=5, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))  # the bottom strip holds the legend

    never = summary[summary["best_lr"].isna()]["optimizer"].tolist()
    best, sgd = usable.iloc[0], usable[usable["optimizer"] == "sgd"]
    measured = (f"Ranked by mean final training cost after {m['budget_steps']:,} steps: "
                + ", ".join(f"{r.optimizer} {r.final_loss_mean:.3f}" for r in usable.itertuples())
                + (f"; every lr diverged for {', '.join(never)}" if never else "")
                + f". Best: {best.optimizer} (lr {best.best_lr:g}, test accuracy {best.test_accuracy_mean:.2%})"
                + (f"; plain SGD {sgd['final_loss_mean'].iloc[0]:.3f} at lr {sgd['best_lr'].iloc[0]:g}"
                   if len(sgd) else "")
                + f". {m['diverged_cells']} of {m['cells']} cells diverged (see the heat map).")
    return Drawn(fig, measured, _grid_table(summary))


def _seed_band(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per step, the mean, lowest and highest value over the seeds that ran that long."""
    return rows.groupby("step")[column].agg(["mean", "min", "max"]).reset_index()


def _flag(value: Any) -> bool:
    """A boolean cell of a reindexed table: NaN (no such cell) is False."""
    return bool(value) if pd.notna(value) else False


def _grid_table(summary: pd.DataFrame) -> pd.DataFrame:
    t = summary.sort_values("rank")

    def num(column: str, spec: str) -> list[str]:
        return [_mean_std(a, b, spec) if pd.notna(a) else "–" for a, b in zip(t[f"{column}_mean"], t[f"{column}_std"],
                                                                              strict=True)]

    return pd.DataFrame({
        "rank": t["rank"], "optimizer": t["optimizer"], "torch.optim": t["torch_name"],
        "lrs tried": t["lrs"],
        "best lr": [("–" if pd.isna(v) else f"{v:g}" + (" (grid edge)" if edge else ""))
                    for v, edge in zip(t["best_lr"], t["best_lr_at_edge"], strict=True)],
        "diverged at lr": t["diverged_lrs"].fillna("").replace("", "–"),
        "final cost": num("final_loss", ".4f"), "test accuracy": num("test_accuracy", ".4f"),
        "steps to target": num("steps_to_target", ",.0f"), "seconds to target": num("seconds_to_target", ".1f"),
        "steps/s": [f"{v:,.0f}" for v in t["steps_per_second_mean"]],
    })


@figure("extra-optimizer-grid-heatmap", title="The optimizer comparison: final cost over optimizer × learning rate",
        needs=(Need(OG, "cells.csv"), Need(OG, "summary.csv"), Need(OG, "metrics.json")),
        shows="The final training cost (trailing mean over the budget's last steps, mean over seeds; colour on a log "
              "scale) of every cell of the grid: rows are optimizers in rank order, columns learning rates. "
              "Grey, ✕: at least one seed diverged (recorded, not crashed); boxed: the optimizer's best lr; "
              "blank: not in that optimizer's grid.",
        book="Readers are urged to try the optimizers on the feed-forward network (the book gives no learning "
             "rates beyond its examples).")
def optimizer_heatmap(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    cells, summary, m = i.csv(OG, "cells.csv"), i.csv(OG, "summary.csv"), i.json(OG)
    order = list(summary.sort_values("rank")["optimizer"])
    lrs = sorted(cells["lr"].unique())
    grouped = cells.groupby(["optimizer", "lr"])
    loss = grouped["final_loss"].mean().unstack("lr").reindex(index=order, columns=lrs)
    diverged = grouped["diverged"].any().unstack("lr").reindex(index=order, columns=lrs)
    fig, ax = plt.subplots(figsize=size(s, rows=1.6, width=0.8))
    finite = loss.where(~diverged.map(_flag))
    sns.heatmap(finite, ax=ax, cmap=s.colormap + "_r", norm=LogNorm(), annot=finite.map(
        lambda v: "" if pd.isna(v) else f"{v:.3f}"), fmt="", linewidths=0.5, linecolor="white",
        cbar_kws={"label": "final training cost (nats, log scale)"}, xticklabels=[f"{lr:g}" for lr in lrs],
        annot_kws={"fontsize": "x-small"})
    ax.grid(False)
    _plain_log(ax.collections[0].colorbar.ax.yaxis)
    for r, opt in enumerate(order):
        for c, lr in enumerate(lrs):
            if _flag(diverged.loc[opt, lr]):
                ax.add_patch(plt.Rectangle((c, r), 1, 1, facecolor="0.88", edgecolor="white", lw=0.5,
                                           hatch="///"))
                ax.text(c + 0.5, r + 0.5, "✕ diverged", ha="center", va="center", color="#b2182b",
                        fontsize="x-small", weight="bold")
        best = summary.loc[summary["optimizer"] == opt, "best_lr"].iloc[0]
        if pd.notna(best):
            ax.add_patch(plt.Rectangle((lrs.index(best), r), 1, 1, fill=False, edgecolor="black", lw=2))
    ax.set(xlabel="learning rate", ylabel="optimizer (rank order)")
    ax.tick_params(axis="y", rotation=0)
    fig.tight_layout()
    bad = cells[cells["diverged"]].groupby("optimizer")["lr"].unique()
    measured = (f"{m['diverged_cells']} of {m['cells']} cells (optimizer × lr × seed) diverged, at "
                + "; ".join(f"{opt} at lr {', '.join(f'{v:g}' for v in sorted(v))}" for opt, v in bad.items())
                + ". Best lr at the edge of its grid for: "
                + (", ".join(summary.loc[summary["best_lr_at_edge"].astype(bool), "optimizer"]) or "none") + ".")
    return Drawn(fig, measured)


# --------------------------------------------------------------------------
# Extra: the update rules beside torch.optim, Adam's bias, the baseline's training
# --------------------------------------------------------------------------
UR = "update_rules"


@figure("extra-update-rules", title="The chapter's update rules beside torch.optim",
        needs=(Need(UR, "findings.csv"), Need(UR, "metrics.json")),
        shows="For each comparison of a rule written from the chapter's equations with the matching torch.optim "
              "call on one stream of mini-batch gradients: the largest difference of any parameter over the "
              "run (log scale), coloured by whether the algebra says the two are the same; the dotted line "
              "is the agreement tolerance.",
        book="The chapter's equations for momentum, Nesterov, AdaGrad, RMSProp (with momentum) and Adam, and "
             "its torch.optim constructor calls; where torch's definitions differ from the text, the report "
             "says so.")
def update_rules(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    f, m = i.csv(UR, "findings.csv"), i.json(UR)
    f = f.assign(label=f["rule"] + ": " + f["case"],
                 kind=np.where(f["same_maths"], "same maths as the book", "torch differs from the book"),
                 shown=f["max_abs_diff"].clip(lower=1e-18))  # an exact 0 has no place on a log axis
    fig, ax = plt.subplots(figsize=size(s, rows=0.11 * len(f) + 0.4, width=0.9))
    kinds = dict(zip(("same maths as the book", "torch differs from the book"), sns.color_palette(n_colors=2),
                     strict=True))
    rows = np.arange(len(f))[::-1]  # the first comparison on top
    floor = 10 ** np.floor(np.log10(f["shown"].min()) - 1)  # bars grow from here: a log axis has no 0
    for kind, color in kinds.items():
        mask = (f["kind"] == kind).to_numpy()
        ax.barh(rows[mask], f["shown"][mask] - floor, left=floor, color=color, label=kind, height=0.7)
    ax.set_xscale("log")
    ax.set_xlim(left=floor)
    ax.set_yticks(rows, f["label"])
    ax.axvline(m["tolerance"], color="0.2", ls=":", label=f"tolerance {m['tolerance']:g}")
    ax.set(xlabel=f"largest |book − torch| over {m['steps']} steps (parameter units)", ylabel=None)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3, frameon=False)
    fig.tight_layout()
    table = f[["rule", "case", "book_form", "torch_form", "max_abs_diff", "agrees", "same_maths"]].rename(
        columns={"book_form": "book form", "torch_form": "torch form", "max_abs_diff": "max |diff|",
                 "same_maths": "same maths"})
    table["max |diff|"] = table["max |diff|"].map(lambda v: f"{v:.2e}")
    measured = (f"{m['agree']} of {m['comparisons']} comparisons agree to {m['tolerance']:g} (largest "
                f"{m['max_diff_same_maths']:.1e}), exactly those where the maths is the same; the "
                f"{m['comparisons'] - m['same_maths']} differences are real (smallest {m['min_diff_differing']:.1e}).")
    return Drawn(fig, measured, table)


@figure("extra-adam-bias", title="Adam's second-moment bias: E[v_i] / E[g²] = 1 − β₂^i",
        needs=(Need(UR, "adam_bias.csv"), Need(UR, "metrics.json")),
        shows="The uncorrected second-moment average v_i of Adam (v_0 = 0) over E[g²], measured on many "
              "streams of i.i.d. gradients, beside 1 − β₂^i (left, log axes); their relative difference (right).",
        book="Because v starts at 0, E[v_i] = (1 − β₂^i) E[g²]; Adam divides v_i by 1 − β₂^i to remove "
             "the bias.")
def adam_bias(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    b, m = i.csv(UR, "adam_bias.csv"), i.json(UR)
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=0.95))
    ax = axes[0]
    ax.plot(b["step"], b["theory"], color="0.3", ls="--", label=f"1 − β₂^i (β₂ = {m['adam_beta2']:g})")
    ax.plot(b["step"], b["measured"], marker="o", ms=3, ls="none", label="measured E[v_i] / E[g²]")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="step i", ylabel="E[v_i] / E[g²]", title="the bias")
    ax.legend(fontsize="small")
    ax = axes[1]
    ax.plot(b["step"], 100 * b["rel_error"], marker="o", ms=3)
    ax.axhline(0, color="0.3", ls="--")
    ax.set_xscale("log")
    ax.set(xlabel="step i", ylabel="measured / (1 − β₂^i) − 1 (%)", title="relative difference")
    fig.tight_layout()
    measured = (f"E[v_1]/E[g²] = {m['adam_bias_v1_ratio']:.5f} against 1 − β₂ = {1 - m['adam_beta2']:.5f}; the "
                f"largest relative difference over the {len(b)} steps is {m['adam_bias_max_abs_rel_error']:.1%}.")
    return Drawn(fig, measured)


BASE = "baseline"


@figure("extra-baseline-training", title="The baseline MLP's training (the SGD solution of Figs 6-2, 6-3)",
        needs=(Need(BASE, "steps.csv"), Need(BASE, "epochs.csv"), Need(BASE, "metrics.json")),
        shows="The book's MLP (784-256-256-10, ReLU) trained by SGD: cross-entropy per mini-batch step with its "
              "rolling mean (left, log scale), train and test loss per epoch (middle), accuracy (right). "
              "One seed: the checkpoint the landscape studies start from.",
        book="SGD(lr=0.01), batch size 64, cross-entropy on MNIST, saved as mnist.pt (the book gives no curve).")
def baseline_training(i: Inputs, p: FigureParams, s: Style) -> Drawn:
    steps, epochs, m = i.csv(BASE, "steps.csv"), i.csv(BASE, "epochs.csv"), i.json(BASE)
    colors = sns.color_palette(n_colors=2)
    fig, axes = plt.subplots(1, 3, figsize=size(s))
    ax = axes[0]
    ax.plot(steps["step"], steps["loss"], color="0.7", lw=0.4, label="per mini-batch", rasterized=True)
    smooth = steps["loss"].rolling(p.training_smooth_steps, min_periods=1).mean()
    ax.plot(steps["step"], smooth, color=colors[0], lw=1.5, label=f"mean of {p.training_smooth_steps} steps")
    ax.set_yscale("log")
    ax.set(xlabel="mini-batch step", ylabel="training loss (cross-entropy, nats)", title="per step")
    ax.legend(fontsize="small")
    ax = axes[1]
    for split, color in zip(("train", "test"), colors, strict=True):
        ax.plot(epochs["epoch"], epochs[f"{split}_loss"], marker="o", ms=3, color=color, label=split)
    ax.set_yscale("log")
    _plain_log(ax.yaxis)
    ax.set(xlabel="epoch", ylabel="loss (cross-entropy, nats)", title="per epoch")
    ax.legend(fontsize="small")
    ax = axes[2]
    for split, color in zip(("train", "test"), colors, strict=True):
        ax.plot(epochs["epoch"], 100 * epochs[f"{split}_accuracy"], marker="o", ms=3, color=color, label=split)
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax.legend(fontsize="small")
    fig.tight_layout()
    measured = (f"After {m['steps']:,} steps ({len(epochs)} epochs): train loss {m['train_loss']:.3f}, test loss "
                f"{m['test_loss']:.3f}, test accuracy {m['test_accuracy']:.2%}"
                + (" (diverged)" if m.get("diverged") else "") + ".")
    return Drawn(fig, measured)
