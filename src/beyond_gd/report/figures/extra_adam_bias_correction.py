"""Adam with and without its bias correction on the MLP, beside RMSProp: the first updates and the early loss."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from beyond_gd.measures import trailing_mean
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import graded
from beyond_gd.report.grid import LA, colors, linestyle, plural
from beyond_gd.report.registry import (MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure, not_measured,
                                       resampled)
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


@claim("bias_correction_fixes_first_steps", kind=MEASURED, figure="Adam",
       source="§ Learning rate adaptation: Adam",
       book="Adam's moment estimates start at zero and so are biased in the first steps; Adam corrects that "
            "bias (a weakness of RMSProp).",
       needs=(Need(LA, "probes.csv"), Need(LA, "summary.json")),
       tolerance="on the MLP at Adam's lr: the mean size of the first updates without the correction over with "
                 "it, paired by seed (the bias the correction divides out, seen on real gradients). agrees: more "
                 "than 1 + {tol:.0%}; partly: larger by less; differs: not larger")
def bias_correction_fixes_first_steps(i: View, tol: float) -> Measured:
    m, probes = i.json(LA), i.csv(LA, "probes.csv")
    pair = [m["corrected"], m["uncorrected"]]
    first = probes[(probes["step"] <= m["probe_updates"]) & probes["optimizer"].isin(pair)]
    if first.empty:
        return Measured("–", not_measured("lr_adaptation probed no update sizes"))
    units = first.groupby(["seed", "optimizer"])["update_norm"].mean().unstack("optimizer").reset_index()
    if not {m["corrected"], m["uncorrected"]} <= set(units.columns):
        return Measured("–", not_measured(f"lr_adaptation ran no {m['corrected']} or no {m['uncorrected']}"))

    def ratio(u: pd.DataFrame) -> float:
        return float(u[m["uncorrected"]].mean() / u[m["corrected"]].mean())

    def decide(u: pd.DataFrame) -> Decision:
        r = ratio(u)
        return graded(r > 1 + tol, r > 1, r, (1 + tol, 1.0))

    return resampled(f"first {m['probe_updates']} updates ×{ratio(units):.2f} the size without the correction "
                     f"(mean over {len(units)} seeds)", units, decide)
