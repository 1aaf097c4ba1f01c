"""L-BFGS as torch documents it (full batch, strong-Wolfe line search) beside first-order methods and SciPy's
non-linear CG, per example-gradient and per second; what BFGS and L-BFGS would hold in memory."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import decades, plain_log
from beyond_gd.report.grid import LB, band, colors, flag, linestyle, plural
from beyond_gd.report.claims import in_every
from beyond_gd.report.registry import (AGREES, DIFFERS, MEASURED, PARTLY, Decision, Drawn, FigureParams, Measured,
                                       claim, figure, not_measured, resampled)
from beyond_gd.report.style import Style, size
from beyond_gd.report.text import mean_std

CG = "cg"  # SciPy's non-linear CG in the stage's tables
# The panels: what is on x, what on y, their labels.
PANELS = (("example_gradients", "train_loss", "example-gradients (evaluations × batch, log scale)",
           "subset loss (nats, log scale)"),
          ("seconds", "train_loss", "seconds of training (log scale)", "subset loss (nats, log scale)"),
          ("example_gradients", "test_accuracy", "example-gradients (log scale)", "test accuracy"))


@figure("extra-lbfgs", title="L-BFGS full-batch against first-order methods, per gradient and per second",
        needs=(Need(LB, "epochs.csv"), Need(LB, "summary.csv"), Need(LB, "summary.json")),
        shows="L-BFGS with the whole training subset as its batch and a strong-Wolfe line search, beside SGD, SGD "
              "with momentum and Adam in mini-batches at the learning rates a short search on the same subset found "
              "best (a few multiples of the optimizer grid's), and "
              "SciPy's Polak-Ribière non-linear CG on the full batch for as many gradient evaluations as L-BFGS "
              "made, every method from the same initialisations on the same subset, for about equal compute. "
              "Each point is an evaluation: for L-BFGS the end of one full-batch step of up to max_iter inner "
              "iterations, for CG one iteration (its test accuracy only at the end), for the mini-batch methods "
              "every few epochs' end; the line is the mean over seeds, the band the lowest to the highest seed. "
              "Left: the loss of the whole subset against example-gradients (gradient evaluations × batch size, "
              "what the compute costs); middle: against seconds; right: test accuracy against example-gradients. "
              "Dashed: the target losses whose compute the claim compares. L-BFGS's and CG's final losses are "
              "evaluated by a float64 copy of the trained model (training is float32), the mini-batch methods' "
              "in float32, exact at the targets.",
        book="BFGS computes the inverse Hessian iteratively and uses it to optimize the parameters more "
             "efficiently; L-BFGS is its memory-efficient version. Second-order methods hold some promise but "
             "remain unpopular among practitioners; PyTorch supports L-BFGS for you to try on your own.",
        notes="L-BFGS with the whole training subset as its batch and a strong-Wolfe line search beside SGD, "
              "momentum and Adam at the best lrs of a search on the same subset, for about equal example-gradients: "
              "the subset's loss against example-gradients and against seconds, test accuracy against "
              "example-gradients, the compute each needs to reach fixed losses, and each method's loss at "
              "L-BFGS's compute and at its seconds.")
def lbfgs(i: View, p: FigureParams, s: Style) -> Drawn:
    epochs, summary, m = i.csv(LB, "epochs.csv"), i.csv(LB, "summary.csv"), i.json(LB)
    names = list(summary["optimizer"])
    color = colors(names)
    fig, axes = plt.subplots(1, len(PANELS), figsize=size(s, rows=1.25))
    rows = summary.set_index("optimizer")
    for ax, (x, y, xlabel, ylabel) in zip(axes, PANELS, strict=True):
        for name in names:
            full = name == m["optimizer"]
            mine = epochs[(epochs["optimizer"] == name) & epochs[y].notna()]  # the epoch ends evaluated
            label = _label(rows.loc[name], m["train_images"])
            if mine.groupby("seed").size().max() == 1:  # one point a seed (CG's test accuracy): where they end
                _end(ax, mine, x, y, color[name], label)
            else:
                band(ax, mine, x, y, color[name], at="epoch", lw=2.2 if full else 1.6 if name == CG else 1.3,
                     marker="o" if full else None, ms=4, ls="-." if name == CG else linestyle(name), label=label)
        ax.set_xscale("log")
        _log_ticks(ax.xaxis)
        if y == "train_loss":
            ax.set_yscale("log")
            _log_ticks(ax.yaxis)
            for t in m.get("targets", []):  # the losses whose compute the claim compares
                ax.axhline(t, color="0.6", ls="--", lw=0.8)
        ax.set(xlabel=xlabel, ylabel=ylabel)
    ref = rows.loc[m["optimizer"]]
    for ax, x in zip(axes, ("example_gradients", "seconds", "example_gradients"), strict=True):
        ax.axvline(ref[x], color="0.4", ls=":", lw=1)  # where L-BFGS's budget ends
    axes[0].set_title("per gradient")
    axes[1].set_title("per second")
    axes[2].set_title("test accuracy")
    ncols = len(names) if len(names) <= 4 else -(-len(names) // 2)  # two rows beyond four
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncols=ncols, fontsize="small",
               frameon=False)
    fig.tight_layout(rect=(0, 0.09 * -(-len(names) // ncols), 1, 1))
    return Drawn(fig, _measured(summary, m), _table(summary, m["optimizer"], m.get("targets", [])))


def _log_ticks(axis: plt.Axes) -> None:
    """Powers of ten alone on a log axis spanning three decades or more; below that also 2 and 5 times
    them (one or two decades of example-gradients would show a single label), thousands as 20k, millions
    as 1.5M."""
    lo, hi = sorted(axis.get_view_interval())
    if math.log10(hi / lo) >= 3:
        decades(axis)
        return
    plain_log(axis)
    if hi >= 1e4:
        axis.set_major_formatter(plt.FuncFormatter(lambda v, _: _count(v)))
        axis.set_minor_formatter(plt.FuncFormatter(lambda v, _: _count(v) if f"{v:.0e}"[0] in "25" else ""))


def _count(v: float) -> str:
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:g}{unit}"
    return f"{v:g}"


def _end(ax: plt.Axes, rows: pd.DataFrame, x: str, y: str, color: object, label: str) -> None:
    """The mean over seeds of one point each, with the lowest-to-highest seed as error bars."""
    mx, my = rows[x].mean(), rows[y].mean()
    ax.errorbar([mx], [my], xerr=[[mx - rows[x].min()], [rows[x].max() - mx]],
                yerr=[[my - rows[y].min()], [rows[y].max() - my]], color=color, marker="D", ms=5, capsize=2,
                ls="none", label=label)


def _label(r: pd.Series, images: int) -> str:
    lr = "SciPy" if pd.isna(r["lr"]) else f"lr {r['lr']:g}"
    return f"{r.name} ({'full batch' if r['batch_size'] >= images else f'batch {r.batch_size}'}, {lr})"


def _times(ratio: float) -> str:
    return f"{ratio:,.0f}×" if ratio >= 10 else f"{ratio:.2g}×"


def _measured(summary: pd.DataFrame, m: dict) -> str:
    t = summary.set_index("optimizer")
    ref, cfg = t.loc[m["optimizer"]], m["lbfgs"]
    text = (f"{m['optimizer']} (full batch of {m['train_images']:,} images, line search {cfg['line_search_fn']}, "
            f"max_iter {cfg['max_iter']}, history {cfg['history_size']}; {plural(m['seeds'], 'seed')}) ends at a "
            f"subset loss of {mean_std(ref['train_loss_mean'], ref['train_loss_std'], '.3g')} and test accuracy "
            f"{ref['test_accuracy_mean']:.2%} after {ref['example_gradients']:,.0f} example-gradients "
            f"({ref['evaluations']:.0f} evaluations) in {ref['seconds']:.1f} s. "
            + "; ".join(f"{name}: {t.loc[name, 'train_loss_at_lbfgs_compute']:.3g} at L-BFGS's compute "
                        f"({_times(t.loc[name, 'train_loss_at_lbfgs_compute'] / ref['train_loss_mean'])} L-BFGS's), "
                        f"{t.loc[name, 'train_loss_at_lbfgs_seconds']:.3g} at its seconds, "
                        f"{t.loc[name, 'train_loss_mean']:.3g} at the end of its own budget "
                        f"({t.loc[name, 'example_gradients']:,.0f} example-gradients, {t.loc[name, 'seconds']:.1f} s)"
                        + (", diverged" if flag(t.loc[name, "diverged"]) else "") for name in m["compare"]) + ".")
    if CG in t.index:
        cg = t.loc[CG]
        text += (f" SciPy's Polak-Ribière CG, full batch from the same initialisations, for as many gradient "
                 f"evaluations as L-BFGS ({cg['evaluations']:.0f} on average, {cg['steps']:,} iterations): loss "
                 f"{mean_std(cg['train_loss_mean'], cg['train_loss_std'], '.3g')} in {cg['seconds']:.1f} s, "
                 f"{_times(cg['train_loss_mean'] / ref['train_loss_mean'])} L-BFGS's, test accuracy "
                 f"{cg['test_accuracy_mean']:.2%}.")
        adam = t.loc["adam"]
        text += (f" At L-BFGS's compute Adam's loss is {_versus(adam['train_loss_at_lbfgs_compute'], ref)}; at "
                 f"L-BFGS's seconds, {_versus(adam['train_loss_at_lbfgs_seconds'], ref)}.")
    return (text + _to_targets(t, m) + " Test accuracy at the end: "
            + ", ".join(f"{n} {r.test_accuracy_mean:.2%}" for n, r in t.iterrows()) + ". " + _memory(m))


def _to_targets(t: pd.DataFrame, m: dict) -> str:
    """Each method's mean example-gradients and seconds to each target loss, over the seeds that reached it."""
    if not m.get("targets"):
        return ""
    parts = []
    for target in m["targets"]:
        key = f"{target:g}"
        parts.append(f"{key}: " + ", ".join(
            f"{n} {r[f'example_gradients_to_{key}']:,.0f} example-gradients in {r[f'seconds_to_{key}']:.1f} s"
            + ("" if r[f"reached_{key}"] == m["seeds"] else f" ({r[f'reached_{key}']:.0f} of {m['seeds']} seeds)")
            if r[f"reached_{key}"] else f"{n} not reached" for n, r in t.iterrows()))
    dtype = m.get("loss_dtype", {})
    kinds = {d: [n for n, e in dtype.items() if e == d] for d in dict.fromkeys(dtype.values())}
    evaluated = (" Final losses evaluated in " + "; in ".join(f"{d} for {', '.join(ns)}" for d, ns in kinds.items())
                 + "." if kinds else "")
    return evaluated + " Compute to the whole subset's loss " + "; ".join(parts) + "."


def _memory(m: dict) -> str:
    """What BFGS's dense inverse-Hessian approximation and L-BFGS's history hold for this network."""
    n, mem, history = m["parameters"], m["memory_bytes"], m["lbfgs"]["history_size"]
    return (f"Memory, in float32, for this network's {n:,} parameters ({_bytes(4 * n)}): BFGS's dense n × n "
            f"inverse-Hessian approximation would hold {_bytes(mem['bfgs'])}; L-BFGS's history of {history} "
            f"curvature pairs holds {_bytes(mem['lbfgs'])}, {mem['bfgs'] / mem['lbfgs']:,.0f} times less.")


def _bytes(b: float) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if b >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def _versus(value: float, ref: pd.Series) -> str:
    if pd.isna(value):
        return "not measured (no epoch of Adam ended within it)"
    lbfgs = ref["train_loss_mean"]
    return f"{value:.3g}, {'lower' if value < lbfgs else 'higher'} than L-BFGS's {lbfgs:.3g}"


def _table(summary: pd.DataFrame, lbfgs: str, targets: list[float]) -> pd.DataFrame:
    return pd.DataFrame({
        "optimizer": summary["optimizer"], "lr": ["—" if pd.isna(v) else f"{v:g}" for v in summary["lr"]],
        "batch": summary["batch_size"], "steps": summary["steps"],
        "subset loss": [mean_std(a, b, ".3g") for a, b in zip(summary["train_loss_mean"], summary["train_loss_std"],
                                                              strict=True)],
        "test accuracy": [f"{v:.4f}" for v in summary["test_accuracy_mean"]],
        "example-gradients": [f"{v:,.0f}" for v in summary["example_gradients"]],
        "evaluations": [f"{v:,.0f}" for v in summary["evaluations"]],
        "seconds": [f"{v:.1f}" for v in summary["seconds"]],
        "diverged": ["yes" if flag(v) else "" for v in summary["diverged"]],
        # Where L-BFGS's own compute and seconds ran out: the others' loss there (L-BFGS is the reference).
        **{f"loss at L-BFGS's {what}": ["(reference)" if name == lbfgs else f"{v:.3g}" for name, v in
                                        zip(summary["optimizer"], summary[f"train_loss_at_lbfgs_{what}"], strict=True)]
           for what in ("compute", "seconds")},
        **{f"example-gradients to {t:g}": [f"{v:,.0f}" if n else "not reached" for v, n in
                                          zip(summary[f"example_gradients_to_{t:g}"], summary[f"reached_{t:g}"],
                                              strict=True)] for t in targets},
    })


SECOND_ORDER = "§ A brief view of second-order methods"
EPOCHS = (Need(LB, "epochs.csv"), Need(LB, "summary.json"))


def at_compute(epochs: pd.DataFrame, reference: str) -> pd.DataFrame:
    """One row per (seed, optimizer): each method's training-subset loss at its last evaluation within the
    example-gradients `reference` used (the most any of its seeds used), the lbfgs stage's own rule for
    summary.csv's train_loss_at_lbfgs_compute, here per seed so that the seeds can be resampled."""
    limit = epochs.loc[epochs["optimizer"] == reference, "example_gradients"].max() * (1 + 1e-9)
    inside = epochs[(epochs["example_gradients"] <= limit) & epochs["train_loss"].notna()]
    return inside.groupby(["optimizer", "seed"], sort=False).tail(1)[["seed", "optimizer", "train_loss"]]


def _mean_loss(u: pd.DataFrame) -> pd.Series:
    return u.groupby("optimizer")["train_loss"].mean()


TARGETS = (Need(LB, "targets.csv"), Need(LB, "summary.json"))


def compute_gains(units: pd.DataFrame, reference: str, others: list[str]) -> dict[tuple[str, float], float]:
    """Per (method of `others`, target): the mean over seeds of log10(its example-gradients to the target /
    `reference`'s), each seed paired by its init. A run that never reached the target within its budget needs
    more than any that did: +inf where only the other method failed, -inf where only the reference did, the
    seed left out where both did (and the pair where they did on every seed); infinities of both signs: nan."""
    cols = ["seed", "target", "reached", "example_gradients"]
    ref = units.loc[units["optimizer"] == reference, cols]
    gains: dict[tuple[str, float], float] = {}
    for name in others:
        mine = units.loc[units["optimizer"] == name, cols].merge(ref, on=["seed", "target"], suffixes=("", "_ref"))
        for target, group in mine.groupby("target"):
            values = [_gain(r.reached, r.example_gradients, r.reached_ref, r.example_gradients_ref)
                      for r in group.itertuples()]
            values = [v for v in values if not math.isnan(v)]
            if not values:
                continue
            infinite = {v for v in values if math.isinf(v)}
            gains[(name, float(target))] = (math.nan if len(infinite) > 1 else infinite.pop() if infinite
                                            else float(np.mean(values)))
    return gains


def _gain(reached: object, compute: float, reached_ref: object, compute_ref: float) -> float:
    if flag(reached) and flag(reached_ref):
        return math.log10(compute / compute_ref)
    if flag(reached_ref):
        return math.inf
    return -math.inf if flag(reached) else math.nan


@claim("lbfgs_optimizes_more_efficiently", kind=MEASURED, figure="L-BFGS", source=SECOND_ORDER,
       book="BFGS (and L-BFGS, its memory-efficient version) uses its approximation of the inverse Hessian to "
            "optimize the parameters more efficiently: per gradient computed, L-BFGS gets further than the "
            "first-order methods.",
       needs=TARGETS,
       tolerance="the example-gradients each method needs to bring the training subset's loss (float64 for "
                 "L-BFGS, float32 for the cells, both exact there) to each of the stage's target losses, all far "
                 "above float32's resolution of a nat: log10(a first-order method's / L-BFGS's), per seed "
                 "(paired by init), mean over seeds, paired resamples; a run that never reaches a target within "
                 "its budget loses to one that does. agrees: L-BFGS sooner at every target than every first-order "
                 "method compared; partly: in some of these comparisons; differs: in none")
def lbfgs_efficient(i: View, tol: float) -> Measured:
    m = i.json(LB)
    units = i.csv(LB, "targets.csv")
    others = [n for n in m["compare"] if n in set(units["optimizer"])]
    if m["optimizer"] not in set(units["optimizer"]) or not others:
        return Measured("–", not_measured("L-BFGS or the first-order methods have no compute to a target"))
    gains = compute_gains(units, m["optimizer"], others)
    if not gains:
        return Measured("–", not_measured("no method reached any target within its budget"))

    def decide(u: pd.DataFrame) -> Decision:
        g = compute_gains(u, m["optimizer"], others)
        finite = [v for v in g.values() if math.isfinite(v)]
        return Decision(in_every((v > 0 for v in g.values()), "targets reached").verdict,
                        min(finite, key=abs) if finite else math.nan, (0.0,))

    return resampled(_gains_text(units, m["optimizer"], gains), units[units["optimizer"].isin(
        [m["optimizer"], *others])], decide)


def _gains_text(units: pd.DataFrame, reference: str, gains: dict[tuple[str, float], float]) -> str:
    """L-BFGS's mean example-gradients to each target, and each method's times those."""
    parts = []
    for target in sorted({t for _, t in gains}, reverse=True):
        ref = units[(units["optimizer"] == reference) & (units["target"] == target)]
        hit = ref[ref["reached"].map(flag)]
        head = (f"to {target:g}: L-BFGS {hit['example_gradients'].mean():,.0f}" if len(hit) == len(ref)
                else f"to {target:g}: L-BFGS {len(hit)} of {len(ref)} seeds")
        parts.append(head + " (" + ", ".join(f"{n} {_factor(v)}" for (n, t), v in gains.items() if t == target) + ")")
    return "; ".join(parts)


def _factor(gain: float) -> str:
    if math.isnan(gain):
        return "mixed"
    if math.isinf(gain):
        return "never" if gain > 0 else "reached, L-BFGS never"
    return _times(10**gain)


@claim("nonlinear_cg_trains_deep_networks", kind=MEASURED, figure="L-BFGS",
       source=SECOND_ORDER + " (after Møller 1993)",
       book="With a small modification, conjugate gradient descent generalizes to the non-convex error surfaces of "
            "deep networks.",
       needs=EPOCHS,
       tolerance="SciPy's non-linear (Polak-Ribière) CG on the MLP, full batch, for L-BFGS's gradient evaluations, "
                 "against plain SGD at the same example-gradients (per seed, mean over seeds, paired resamples): "
                 "log10(CG's loss / SGD's). agrees: CG as low or lower (<= 0); partly: higher, but CG trained "
                 "(its loss below ln 10, chance); differs: not below chance")
def cg_trains(i: View, tol: float) -> Measured:
    epochs = i.csv(LB, "epochs.csv")
    mine = epochs[epochs["optimizer"] == CG]
    units = at_compute(epochs, CG)
    if mine.empty or not {CG, "sgd"} <= set(units["optimizer"]):
        return Measured("–", not_measured("CG or plain SGD did not run in the lbfgs stage"))

    def decide(u: pd.DataFrame) -> Decision:
        loss = _mean_loss(u)
        ratio = math.log10(loss[CG] / loss["sgd"])
        if ratio <= 0:
            return Decision(AGREES, ratio, (0.0,))
        return Decision(PARTLY if loss[CG] < math.log(10) else DIFFERS, ratio, (0.0,))

    loss = _mean_loss(units)
    return resampled(f"at CG's compute: CG {loss[CG]:.3g}, SGD {loss['sgd']:.3g} (chance {math.log(10):.3g})",
                     units, decide)


@claim("lbfgs_saves_memory", kind=MEASURED, figure="L-BFGS", source=SECOND_ORDER,
       book="In its original form BFGS has a significant memory footprint; L-BFGS is a more memory-efficient "
            "version.",
       needs=(Need(LB, "summary.json"),),
       tolerance="float32 bytes of BFGS's n × n inverse-Hessian estimate / those of L-BFGS's history (2 × "
                 "history_size n-vectors) for the MLP. agrees: at least {tol:g}× less (a significant saving: "
                 "two orders of magnitude); partly: less; differs: not less")
def lbfgs_memory(i: View, tol: float) -> Measured:
    b = i.json(LB).get("memory_bytes")
    if not b:
        return Measured("–", not_measured("the lbfgs stage recorded no memory counts"))
    ratio = b["bfgs"] / b["lbfgs"]
    return Measured(f"BFGS {b['bfgs'] / 2**30:,.0f} GiB, L-BFGS {b['lbfgs'] / 2**20:,.1f} MiB: {ratio:,.0f}× less",
                    Decision(AGREES if ratio >= tol else PARTLY if ratio > 1 else DIFFERS, ratio, (tol, 1.0)),
                    fixed="bytes counted from the parameter count")
