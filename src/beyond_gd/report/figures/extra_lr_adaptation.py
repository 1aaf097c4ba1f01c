"""AdaGrad, RMSProp and Adam over a long budget on the MLP: the loss, and each one's effective learning rate."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import graded
from beyond_gd.report.grid import LA, band, colors, linestyle, plural
from beyond_gd.report.registry import (MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure, not_measured,
                                       resampled)
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


def epoch_losses(i: View) -> pd.DataFrame:
    """epoch_loss.csv as one row per seed: each optimizer's mean mini-batch loss over its first and its last
    epoch (`<optimizer>/first`, `<optimizer>/last`); the seeds are shared by the optimizers."""
    e = i.csv(LA, "epoch_loss.csv")
    ends = e.sort_values("epoch").groupby(["optimizer", "seed"])["loss"].agg(first="first", last="last")
    wide = ends.unstack("optimizer")
    wide.columns = [f"{opt}/{end}" for end, opt in wide.columns]
    return wide.reset_index()


@claim("adagrad_decays_too_early", kind=MEASURED, figure="AdaGrad and RMSProp",
       source="§ Learning rate adaptation: AdaGrad",
       book="Empirically, AdaGrad tends to lower the learning rate too early, so it does not work especially well "
            "for some deep models.",
       needs=(SUMMARY, Need(LA, "epoch_loss.csv")),
       tolerance="on the MLP over the long budget, each at the grid's best lr, against RMSProp (the chapter's fix), "
                 "losses paired by seed: agrees: AdaGrad's effective lr decays more than RMSProp's, its first-epoch "
                 "loss within {tol:.0%} of RMSProp's (it keeps up early) and its last-epoch loss more than {tol:.0%} "
                 "above (it falls behind late); partly: the decay or the late gap, not both; differs: neither")
def adagrad_decays_too_early(i: View, tol: float) -> Measured:
    t, units = i.csv(LA, "summary.csv").set_index("optimizer"), epoch_losses(i)
    if not {"adagrad", "rmsprop"} <= set(t.index):
        return Measured("–", not_measured("lr_adaptation ran no adagrad or no rmsprop"))
    decays = bool(t.loc["adagrad", "lr_decay_mean"] < t.loc["rmsprop", "lr_decay_mean"])

    def ratios(u: pd.DataFrame) -> tuple[float, float]:
        return tuple(float(u[f"adagrad/{end}"].mean() / u[f"rmsprop/{end}"].mean()) - 1 for end in ("first", "last"))

    def decide(u: pd.DataFrame) -> Decision:
        early, late = ratios(u)
        keeps_up, behind = early <= tol, late > tol
        nearest = min((early, late), key=lambda v: abs(v - tol))
        return graded(decays and keeps_up and behind, decays or behind, nearest, (tol,))

    early, late = ratios(units)
    return resampled(f"effective-lr decay AdaGrad ×{t.loc['adagrad', 'lr_decay_mean']:.3g} vs RMSProp "
                     f"×{t.loc['rmsprop', 'lr_decay_mean']:.3g}; AdaGrad's loss / RMSProp's: first epoch "
                     f"{early + 1:.2f}, last {late + 1:.2f}", units, decide)
