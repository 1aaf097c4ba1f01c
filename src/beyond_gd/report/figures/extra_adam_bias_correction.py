"""Adam with and without its bias correction on the MLP, beside RMSProp: the first updates and the early loss."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from beyond_gd.measures import trailing_mean
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import graded
from beyond_gd.report.grid import LA, colors, linestyle, plural
from beyond_gd.report.registry import Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size
from beyond_gd.report.text import mean_std

SUMMARY = Need(LA, "summary.csv")
# Strided points of the early loss averaged for display (a 5-point trailing mean of every curve_stride-th step).
DISPLAY_WINDOW = 5


@figure("extra-adam-bias-correction", title="Adam with and without its bias correction, beside RMSProp",
        needs=(Need(LA, "steps.csv"), Need(LA, "probes.csv"), SUMMARY, Need(LA, "summary.json")),
        shows="Adam as torch runs it, the same update without the two corrections' divisions (the moments used "
              "raw, both starting at zero) at Adam's lr, and RMSProp at its own lr, on the MLP at batch 64. Left: "
              "the size (L2 norm) of each of the first updates, mean over seeds (log scale). Right: the mini-batch "
              "loss over the early steps (a short trailing mean of every few steps, mean over seeds).",
        book="Adam's moment estimates are biased towards zero because both start as zero vectors; it corrects "
             "them by 1 − β^i, which RMSProp does not, and that correction is why Adam has become popular.",
        notes="Adam without the correction is `optimizers.adam_uncorrected` (`src/beyond_gd/optim/adam.py`: "
              "torch's Adam update written out, with the two corrections' divisions as a switch), run at Adam's "
              "lr for `lr_adaptation.early_steps` steps.\n\nThe size of each of the first "
              "`lr_adaptation.probe_updates` updates, and the mini-batch loss over the early steps.")
def adam_bias_correction(i: View, p: FigureParams, s: Style) -> Drawn:
    steps, probes, summary, m = i.csv(LA, "steps.csv"), i.csv(LA, "probes.csv"), i.csv(LA, "summary.csv"), i.json(LA)
    names = [m["corrected"], m["uncorrected"], "rmsprop"]
    color = colors(names)
    rows = summary.set_index("optimizer")
    fig, (left, right) = plt.subplots(1, 2, figsize=size(s, rows=1.0))
    for name in names:
        label = f"{name} (lr {rows.loc[name, 'lr']:g})"
        sizes = probes[probes["optimizer"] == name].dropna(subset=["update_norm"]).groupby("step")["update_norm"]
        left.plot(sizes.mean(), color=color[name], ls=linestyle(name), label=label)
        early = steps[(steps["optimizer"] == name) & (steps["step"] <= m["early_steps"])].groupby("step")["loss"]
        curve = early.mean()
        right.plot(curve.index, trailing_mean(curve.to_numpy(), DISPLAY_WINDOW), color=color[name],
                   ls=linestyle(name), label=label)
    left.set(yscale="log", xlabel="update", ylabel="update size ‖Δθ‖₂")
    right.set(yscale="log", xlabel="step", ylabel="mini-batch loss (nats)")
    left.legend(fontsize="small")
    fig.tight_layout()
    t = rows
    text = "; ".join(f"{n}: first {m['probe_updates']} updates {mean_std(t.loc[n, 'update_norm_mean'], t.loc[n, 'update_norm_std'], '.3g')}"
                     f" on average, loss over the first {m['early_steps']:,} steps "
                     f"{mean_std(t.loc[n, 'loss_early_mean'], t.loc[n, 'loss_early_std'], '.4f')}" for n in names)
    return Drawn(fig, f"Mean ± std over {plural(m['seeds'], 'seed')}: {text}.")


def correction_effect(t: pd.DataFrame, corrected: str, uncorrected: str) -> tuple[float, float, float, float]:
    """(uncorrected / corrected mean size of the first updates; each one's mean early loss; the larger of
    their seed stds, the spread a difference of early losses must clear)."""
    ratio = t.loc[uncorrected, "update_norm_mean"] / t.loc[corrected, "update_norm_mean"]
    spread = np.nanmax([t.loc[corrected, "loss_early_std"], t.loc[uncorrected, "loss_early_std"], 0.0])
    return (float(ratio), float(t.loc[corrected, "loss_early_mean"]), float(t.loc[uncorrected, "loss_early_mean"]),
            float(spread))


@claim("bias_correction_fixes_first_steps", figure="Adam",
       book="Adam corrects the bias of its zero-initialised moment estimates (a weakness of RMSProp), which fixes "
            "its first steps.",
       needs=(SUMMARY, Need(LA, "summary.json")),
       tolerance="on the MLP at Adam's lr: agrees: without the correction the first updates are more than "
                 "{tol:.0%} larger on average and the early loss is higher by more than the seed std; partly: "
                 "larger updates, an early loss no worse beyond the seed std; differs: the updates within {tol:.0%}")
def bias_correction_fixes_first_steps(i: View, tol: float) -> Measured:
    m = i.json(LA)
    ratio, with_, without, spread = correction_effect(i.csv(LA, "summary.csv").set_index("optimizer"),
                                                      m["corrected"], m["uncorrected"])
    larger = bool(np.isfinite(ratio) and ratio > 1 + tol)
    return Measured(f"first {m['probe_updates']} updates ×{ratio:.2f} without the correction; loss over the first "
                    f"{m['early_steps']:,} steps {with_:.4f} with, {without:.4f} without (seed std up to "
                    f"{spread:.4f})", graded(larger and without - with_ > spread, larger))
