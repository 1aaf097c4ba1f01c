"""AdaGrad, RMSProp and Adam over a long budget on the MLP: the loss, and each one's effective learning rate."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import graded
from beyond_gd.report.grid import LA, band, colors, linestyle, plural
from beyond_gd.report.registry import Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size
from beyond_gd.report.text import mean_std

SUMMARY = Need(LA, "summary.csv")


@figure("extra-lr-adaptation", title="AdaGrad, RMSProp and Adam over ten epochs: loss and effective learning rate",
        needs=(Need(LA, "steps.csv"), Need(LA, "probes.csv"), SUMMARY, Need(LA, "summary.json")),
        shows="Each method at the learning rate the optimizer grid found best, on the whole training set at batch "
              "64. Left: the mean mini-batch loss over the last epoch of steps (over the steps so far in the first "
              "epoch; log scale); the line is the mean "
              "over seeds, the band the lowest to the highest seed. Right: the per-parameter effective learning "
              "rate lr / (δ + √r) (Adam's on its bias-corrected moments), its median over the network's parameters "
              "(line, mean over seeds) and its quartiles (band), log axes.",
        book="AdaGrad scales each parameter's learning rate by the inverse square root of its accumulated squared "
             "gradients; empirically it tends to lower the learning rate too early, so it does not work well for "
             "some deep models. RMSProp's exponentially weighted average of the squared gradients remedies that.",
        notes="The effective learning rate is read from each optimizer's own state "
              "(`src/beyond_gd/optim/probes.py`) through torch's step hooks.\n\nEach method on the whole training "
              "set for `lr_adaptation.epochs` epochs at its best lr from the grid's one-epoch search: the mean "
              "mini-batch loss over the last epoch of steps, and the median and quartiles over parameters of lr /"
              " (δ + √r), every `lr_adaptation.probe_every` steps.")
def lr_adaptation(i: View, p: FigureParams, s: Style) -> Drawn:
    steps, probes, summary, m = i.csv(LA, "steps.csv"), i.csv(LA, "probes.csv"), i.csv(LA, "summary.csv"), i.json(LA)
    names = m["optimizers"]
    color = colors(names)
    fig, (left, right) = plt.subplots(1, 2, figsize=size(s, rows=1.0))
    rows = summary.set_index("optimizer")
    for name in names:
        label = f"{name} (lr {rows.loc[name, 'lr']:g})"
        band(left, steps[steps["optimizer"] == name], "step", "smoothed", color[name], ls=linestyle(name),
             label=label)
        lr = probes[probes["optimizer"] == name].dropna(subset=["lr_median"]).groupby("step")
        right.fill_between(lr["lr_q25"].mean().index, lr["lr_q25"].mean(), lr["lr_q75"].mean(), color=color[name],
                           alpha=0.25, lw=0)
        right.plot(lr["lr_median"].mean(), color=color[name], ls=linestyle(name), label=label)
    left.set_yscale("log")
    left.set(xlabel="step", ylabel="mean mini-batch loss over the last epoch (nats)")
    right.set(xscale="log", yscale="log", xlabel="step", ylabel="effective learning rate (median, quartiles)")
    left.legend(fontsize="small")
    fig.tight_layout()
    return Drawn(fig, _measured(summary, m))


def _measured(summary: pd.DataFrame, m: dict) -> str:
    t = summary.set_index("optimizer")
    parts = [f"{n}: first epoch {mean_std(t.loc[n, 'first_epoch_loss_mean'], t.loc[n, 'first_epoch_loss_std'], '.4f')}"
             f", epoch {m['epochs']} {mean_std(t.loc[n, 'last_epoch_loss_mean'], t.loc[n, 'last_epoch_loss_std'], '.4f')}"
             f"; median effective lr {t.loc[n, 'lr_median_after_updates']:.3g} at step {m['lr_after_step']:,}"
             f" and {t.loc[n, 'lr_median_end']:.3g} at the end (× {mean_std(t.loc[n, 'lr_decay_mean'], t.loc[n, 'lr_decay_std'], '.3g')})"
             for n in m["optimizers"]]
    return (f"Mean mini-batch loss per epoch, mean ± std over {plural(m['seeds'], 'seed')}, each at the grid's best "
            f"lr (its one-epoch search): " + "; ".join(parts) + ".")


def late_and_early(t: pd.DataFrame, tol: float) -> tuple[bool, bool, bool, str]:
    """(AdaGrad's effective lr decays more than RMSProp's, AdaGrad keeps up in the first epoch, falls behind in
    the last; the text): within `tol` relative of RMSProp's loss is keeping up, beyond it falling behind."""
    a, r = t.loc["adagrad"], t.loc["rmsprop"]
    decays = a["lr_decay_mean"] < r["lr_decay_mean"]
    early = a["first_epoch_loss_mean"] / r["first_epoch_loss_mean"]
    late = a["last_epoch_loss_mean"] / r["last_epoch_loss_mean"]
    text = (f"effective-lr decay AdaGrad ×{a['lr_decay_mean']:.3g} vs RMSProp ×{r['lr_decay_mean']:.3g}; "
            f"AdaGrad's loss / RMSProp's: first epoch {early:.2f}, last {late:.2f}")
    return bool(decays), bool(early <= 1 + tol), bool(late > 1 + tol), text


@claim("adagrad_decays_too_early", figure="AdaGrad and RMSProp",
       book="AdaGrad's accumulated squared gradients lower its learning rate too early in deep networks; RMSProp's "
            "exponentially weighted average fixes that.",
       needs=(SUMMARY,),
       tolerance="on the MLP over the long budget, each at its best lr: agrees: AdaGrad's effective lr decays more "
                 "than RMSProp's, its loss is within {tol:.0%} of RMSProp's in the first epoch and more than {tol:.0%} "
                 "above it in the last; partly: the decay or the late gap, not both; differs: neither")
def adagrad_decays_too_early(i: View, tol: float) -> Measured:
    decays, early, late, text = late_and_early(i.csv(LA, "summary.csv").set_index("optimizer"), tol)
    return Measured(text, graded(decays and early and late, decays or late))
