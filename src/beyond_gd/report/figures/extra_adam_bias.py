"""Adam's second-moment bias, E[v_i] / E[g²] = 1 − β₂^i."""

from __future__ import annotations

import matplotlib.pyplot as plt

from beyond_gd.report.artifacts import Inputs, Need
from beyond_gd.report.claims import Measured, all_within, claim
from beyond_gd.report.figures import Drawn, FigureParams, figure
from beyond_gd.report.style import Style, size

UR = "update_rules"


@figure("extra-adam-bias", title="Adam's second-moment bias: E[v_i] / E[g²] = 1 − β₂^i",
        needs=(Need(UR, "adam_bias.csv"), Need(UR, "summary.json")),
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


@claim("adam_bias_factor", figure="Adam",
       book="With v_0 = 0, E[v_i] = (1 - β₂^i) E[g²]: the bias Adam's correction divides out.",
       needs=(Need(UR, "adam_bias.csv"),),
       tolerance="|measured / (1 - β₂^i) - 1| <= {tol:.0%}. agrees: at every step; partly: at some; differs: at "
                 "none")
def adam_bias_factor(i: Inputs, tol: float) -> Measured:
    b = i.csv(UR, "adam_bias.csv")
    inside = b["rel_error"].abs() <= tol
    return Measured(f"largest relative difference {b['rel_error'].abs().max():.2%} over steps 1-{len(b)}; within "
                    f"at {int(inside.sum())} of {len(b)} steps", all_within(b["rel_error"], tol))
