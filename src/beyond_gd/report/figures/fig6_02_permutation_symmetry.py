"""Fig 6-2: permuting a layer's neurons (or rescaling a ReLU unit) gives an equivalent network."""

from __future__ import annotations

import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd import measures
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.claims import graded, holds
from beyond_gd.report.registry import (AGREES, CHECK, DIFFERS, MEASURED, Decision, Drawn, FigureParams, Measured,
                                       claim, figure, not_measured, resampled)
from beyond_gd.report.style import Style, size

ID = "identifiability"
SYMMETRIES = ("permutation", "rescaling", "both")  # the transforms that leave the function unchanged
CONTROL = "control"  # incoming weights permuted alone: a real change, for scale
NEGATIVE = "negative_rescaling"  # the rescaling with k < 0: the chapter's "any non-zero k", not a ReLU symmetry
# The book's model, Net(784, 256, 10): two hidden Linear-ReLU layers of 256 neurons, hence "(256!)^2".
BOOK_HIDDEN_WIDTH, BOOK_HIDDEN_LAYERS = 256, 2


@figure("fig6-02-permutation-symmetry", title="Fig 6-2. Permuting a layer's neurons gives an equivalent network",
        needs=(Need(ID, "example.json"), Need(ID, "trials.csv"), Need(ID, "summary.json")),
        shows="Top: a 3-neuron hidden layer before and after a permutation of its neurons (each neuron keeps "
              "its incoming and outgoing weights; line width ∝ |weight|, colour = sign), with the outputs on "
              "probe inputs. Bottom left: on the trained MLP, the largest change of any test logit (relative "
              "to the largest logit) and of the test loss (relative), per trial and worst case, under random "
              "permutations of both hidden layers, positive rescalings (ReLU unit in × k, out × 1/k), both, "
              "the same rescalings with k < 0 (the chapter's \"any non-zero k\"), and a control that is no "
              "symmetry (incoming weights permuted alone); log scale, float32 "
              "epsilon dotted. Bottom right: log10 of the number of orderings (n!)^l of l layers of n neurons.",
        book="Permuting the neurons of a layer gives an equivalent network: a layer of n neurons has n! "
             "orderings, l such layers (n!)^l; scaling a ReLU unit's incoming weights by k and its outgoing "
             "weights by 1/k changes nothing either.")
def permutation_symmetry(i: View, p: FigureParams, s: Style) -> Drawn:
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
    order = [*SYMMETRIES, *([NEGATIVE] if NEGATIVE in set(t["transform"]) else []), CONTROL]
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
    labels = {NEGATIVE: "rescaling, k < 0\n(not a symmetry)", CONTROL: "control\n(not a symmetry)"}
    ax.set_xticks(x, [labels.get(name, name) for name in order])
    ax.set(ylabel="relative change (log scale)", title=f"the trained MLP, {t['trial'].nunique()} trials")
    ax.legend(fontsize="x-small", loc="upper left")

    ax = fig.add_subplot(grid[1, 1])
    layers = int(m["hidden_layers"])
    n = np.unique(np.geomspace(2, 1000, 200).round())  # from 2: log10 1! = 0 has no place on a log axis
    for l, color in zip((1, 2, 3), sns.color_palette("Greys_r", 4), strict=False):
        ax.plot(n, [measures.log10_orderings([v] * l) for v in n], color=color, lw=1.5,
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
    plain_log(ax.xaxis)
    plain_log(ax.yaxis)
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
    while measures.log10_orderings([n + 1] * layers) <= log10_orderings + 1e-9:
        n += 1
    return n


@claim("identifiability_round_off", kind=CHECK, figure="Fig 6-2", source="§ Model identifiability",
       book="Permuting a layer's neurons, or scaling a ReLU unit's incoming weights by k > 0 and its outgoing "
            "ones by 1/k, gives an equivalent network: the outputs do not change (an identity of the maths, "
            "checked on the trained MLP in float32).",
       needs=(Need(ID, "summary.json"),), uses=("round_off_float32",),
       tolerance="holds: permutations, rescalings (k > 0) and both change the logits and the test loss by <= "
                 "{round_off_float32:g} float32 epsilons (relative), and the control beyond it (the check sees a "
                 "real change); fails otherwise")
def identifiability(i: View, tol: float, round_off: float) -> Measured:
    m = i.json(ID)
    eps = m["float32_eps"]

    def change(name: str) -> tuple[float, float]:
        return m[name]["rel_logit_change"], m[name]["test_loss_change"] / m["test_loss"]

    exact = [max(change(name)) <= round_off * eps for name in SYMMETRIES]
    seen = max(change(CONTROL)) > round_off * eps
    logits, loss = (max(change(name)[k] for name in SYMMETRIES) / eps for k in (0, 1))
    return Measured(f"symmetries: at most {logits:.3g} ε on the logits, {loss:.3g} ε on the test loss, "
                    f"{int(max(m[n]['predictions_changed'] for n in SYMMETRIES))} predictions changed; control "
                    f"{change(CONTROL)[0]:.2g} and {change(CONTROL)[1]:.2g} (relative)",
                    holds(all(exact) and seen))


@claim("rescaling_any_nonzero_k", kind=MEASURED, figure="Fig 6-2", source="§ Model identifiability",
       book="For a ReLU unit, multiplying all its incoming weights by any non-zero constant k and its outgoing "
            "weights by 1/k leaves the network's behaviour unchanged.",
       needs=(Need(ID, "trials.csv"), Need(ID, "summary.json")), uses=("round_off_float32",),
       reaches=(AGREES, DIFFERS),
       tolerance="the trained MLP rescaled with k < 0 (the same |k| as the k > 0 trials): agrees: the logits and "
                 "the test loss change by <= {round_off_float32:g} float32 epsilons (relative) in every "
                 "trial, as for k > 0; differs: they change beyond it (any non-zero k fails: only k > 0 is a "
                 "symmetry of ReLU) (resampled over trials)")
def rescaling_any_k(i: View, tol: float, round_off: float) -> Measured:
    trials, m = i.csv(ID, "trials.csv"), i.json(ID)
    rows = trials[trials["transform"] == NEGATIVE]
    if rows.empty:
        return Measured("–", not_measured("identifiability tried no rescaling with k < 0"))
    base = rows["test_loss"] - rows["test_loss_change"]
    units = pd.DataFrame({"trial": rows["trial"].to_numpy(),
                          "change": np.maximum(rows["rel_logit_change"], rows["test_loss_change"] / base.abs())
                          .to_numpy() / m["float32_eps"]})

    def decide(u: pd.DataFrame) -> Decision:
        worst = float(u["change"].max())
        return graded(worst <= round_off, False, float(u["change"].min()), (round_off,))

    return resampled(f"k < 0: logits or test loss change by {units['change'].min():.3g} to {units['change'].max():.3g} "
                     f"ε (relative), {int(rows['predictions_changed'].max()):,} predictions changed at most; k > 0: "
                     f"{m['rescaling']['rel_logit_change'] / m['float32_eps']:.3g} ε", units, decide, unit="trial")


@claim("equivalent_orderings_256_factorial_squared", kind=CHECK, figure="Fig 6-2", source="§ Model identifiability",
       book="A layer of n neurons has n! orderings, all giving the same outputs; l such layers have (n!)^l: "
            "(256!)^2 for the chapter's MLP (log10 ≈ 1013.9). (Counting, checked with the diagram's layer.)",
       needs=(Need(ID, "example.json"), Need(ID, "summary.json")),
       tolerance="holds: every ordering of the diagram's layer changes its outputs by <= {tol:g} float32 "
                 "epsilons (relative to the largest output) and the MLP's count is (256!)^2; fails otherwise")
def orderings(i: View, tol: float) -> Measured:
    ex, m = i.json(ID, "example.json"), i.json(ID)
    largest = max(abs(v) for row in ex["outputs"] for v in row)
    worst = max(ex["max_output_change"]) / largest / m["float32_eps"]
    book = measures.log10_orderings([BOOK_HIDDEN_WIDTH] * BOOK_HIDDEN_LAYERS)
    # Both sides are the same lgamma sum in float64 (1e-13 relative); another width or depth is >= 2.4 apart.
    books_mlp = math.isclose(m["log10_orderings"], book, rel_tol=1e-12)
    return Measured(f"{len(ex['orderings'])} orderings of a {len(ex['perm'])}-neuron layer, largest output change "
                    f"{worst:.3g} ε; the MLP: log10 = {m['log10_orderings']:.4f} for {m['hidden_layers']} hidden "
                    f"layers (book (256!)^2: {book:.4f})", holds(worst <= tol and books_mlp))
