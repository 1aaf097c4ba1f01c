"""Adam's moment bias: E[m_i] / E[g] = 1 − β₁^i and E[v_i] / E[g²] = 1 − β₂^i."""

from __future__ import annotations

import matplotlib.pyplot as plt

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

UR = "update_rules"
MOMENTS = {"first": ("E[m_i] / E[g]", "β₁", "adam_beta1"), "second": ("E[v_i] / E[g²]", "β₂", "adam_beta2")}


@figure("extra-adam-bias", title="Adam's moment bias: E[m_i] / E[g] = 1 − β₁^i, E[v_i] / E[g²] = 1 − β₂^i",
        needs=(Need(UR, "adam_bias.csv"), Need(UR, "summary.json")),
        shows="Adam's uncorrected moving averages m_i and v_i (both start at 0) over E[g] and E[g²], measured "
              "on many streams of i.i.d. gradients, beside 1 − β^i (left, log axes); their relative difference "
              "(right).",
        book="Because m and v start at 0, E[m_i] = (1 − β₁^i) E[g] and E[v_i] = (1 − β₂^i) E[g²]; Adam divides "
             "each by its factor to remove the bias.")
def adam_bias(i: View, p: FigureParams, s: Style) -> Drawn:
    b, m = i.csv(UR, "adam_bias.csv"), i.json(UR)
    fig, axes = plt.subplots(1, 2, figsize=size(s, rows=0.95))
    for moment, rows in b.groupby("moment", sort=False):
        label, beta, key = MOMENTS[moment]
        line, = axes[0].plot(rows["step"], rows["measured"], marker="o", ms=3, ls="none", label=f"measured {label}")
        axes[0].plot(rows["step"], rows["theory"], color=line.get_color(), ls="--",
                     label=f"1 − {beta}^i ({beta} = {m[key]:g})")
        axes[1].plot(rows["step"], 100 * rows["rel_error"], marker="o", ms=3, color=line.get_color(), label=label)
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set(xlabel="step i", ylabel="uncorrected average / its target", title="the bias")
    axes[0].legend(fontsize="small")
    axes[1].axhline(0, color="0.3", ls="--")
    axes[1].set_xscale("log")
    axes[1].set(xlabel="step i", ylabel="measured / (1 − β^i) − 1 (%)", title="relative difference")
    axes[1].legend(fontsize="small")
    fig.tight_layout()
    measured = (f"E[m_1]/E[g] = {m['adam_bias_m1_ratio']:.4f} against 1 − β₁ = {1 - m['adam_beta1']:.4f}; "
                f"E[v_1]/E[g²] = {m['adam_bias_v1_ratio']:.5f} against 1 − β₂ = {1 - m['adam_beta2']:.5f}; the "
                f"largest relative difference over the {b['step'].nunique()} steps of either is "
                f"{m['adam_bias_max_abs_rel_error']:.1%}.")
    return Drawn(fig, measured)


@claim("adam_bias_factor", kind=CHECK, figure="Adam", source="§ Learning rate adaptation: Adam (its derivation)",
       book="With m_0 = v_0 = 0, E[m_i] = (1 - β₁^i) E[g] and E[v_i] = (1 - β₂^i) E[g²] for stationary "
            "gradients: the biases Adam's correction divides out (an identity, checked on synthetic streams).",
       needs=(Need(UR, "adam_bias.csv"),),
       tolerance="holds: |measured / (1 - β^i) - 1| <= {tol:.0%} for both moments at every step; fails "
                 "otherwise")
def adam_bias_factor(i: View, tol: float) -> Measured:
    b = i.csv(UR, "adam_bias.csv")
    inside = b["rel_error"].abs() <= tol
    worst = b.groupby("moment", sort=False)["rel_error"].agg(lambda e: e.abs().max())
    return Measured("largest relative difference " + ", ".join(f"{k} moment {v:.2%}" for k, v in worst.items())
                    + f" over steps 1-{b['step'].max()}; within at {int(inside.sum())} of {len(b)} (moment, step)",
                    holds(bool(len(b)) and bool(inside.all())))
