"""AdaGrad against RMSProp on a cliff, a gently sloped plateau, then a bowl."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import contours
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

TOYS = "optimizer_toys"
OUTCOMES = Need(TOYS, "plateau_outcomes.csv")


@figure("extra-plateau", title="AdaGrad stalls on a plateau; RMSProp crosses it",
        needs=(Need(TOYS, "grids.npz"), Need(TOYS, "plateau_paths.csv"), OUTCOMES),
        shows="AdaGrad's and RMSProp's paths from one start down a cliff, across a gently sloped plateau, "
              "towards a bowl, at the same learning rates, on the surface's contours (top, one panel per lr; "
              "the star is the minimum); the distance moved per step (bottom, log axes).",
        book="AdaGrad's sum of squared gradients can shrink its learning rate on a flat region before it "
             "reaches a minimum; RMSProp's exponentially weighted average forgets the steep past.")
def plateau(i: View, p: FigureParams, s: Style) -> Drawn:
    g, paths, out = i.npz(TOYS, "grids.npz"), i.csv(TOYS, "plateau_paths.csv"), i.csv(TOYS, "plateau_outcomes.csv")
    lrs = sorted(paths["lr"].unique())
    colors = dict(zip(out["optimizer"].unique(), sns.color_palette(n_colors=out["optimizer"].nunique()),
                      strict=True))
    fig, axes = plt.subplots(2, len(lrs), figsize=size(s, rows=1.3), squeeze=False)
    for col, lr in enumerate(lrs):
        ax = axes[0, col]
        contours(ax, g["plateau_x"], g["plateau_y"], g["plateau_loss"])
        for name, rows in paths[paths["lr"] == lr].groupby("optimizer", sort=False):
            ax.plot(rows["x"], rows["y"], color=colors[name], lw=1.5, label=name)
            ax.scatter(rows["x"].iloc[-1], rows["y"].iloc[-1], color=colors[name], s=25, zorder=4)
        low = g["plateau_loss"].argmin()
        ax.scatter(g["plateau_x"][low % len(g["plateau_x"])], g["plateau_y"][low // len(g["plateau_x"])],
                   marker="*", s=120, color="k", zorder=5)
        ax.set(title=f"lr = {lr:g}", xlabel="x")
        ax = axes[1, col]
        for name, rows in paths[paths["lr"] == lr].groupby("optimizer", sort=False):
            ax.plot(rows["step"], rows["step_size"], color=colors[name], label=name)
        ax.set_yscale("log")
        ax.set(xlabel="step")
    axes[0, 0].set_ylabel("y")
    axes[1, 0].set_ylabel("distance moved per step")
    axes[0, 0].legend(fontsize="small")
    fig.tight_layout()
    rows = [f"{r.optimizer} at lr {r.lr:g}: " + (f"in the bowl at step {int(r.reached_step)}"
                                                  if r.reached_step == r.reached_step else
                                                  f"stalled at x = {r.final_x:.2f}, last step {r.last_step_size:.1e}")
            for r in out.itertuples()]
    return Drawn(fig, "; ".join(rows) + ".")


@claim("adagrad_stalls_on_plateau", kind=CHECK, figure="AdaGrad and RMSProp",
       source="§ Learning rate adaptation: RMSProp",
       book="A flat region can make AdaGrad shrink its learning rate before it reaches the minimum; RMSProp "
            "fixes that. (On a toy built with a plateau before a bowl, within the toy's step budget: a check "
            "of the mechanism.)",
       needs=(OUTCOMES,),
       tolerance="at the same lrs. holds: AdaGrad reaches the bowl at none of the lrs where RMSProp does (RMSProp "
                 "at {tol:g} or more); fails otherwise")
def adagrad_stalls(i: View, tol: float) -> Measured:
    out = i.csv(TOYS, "plateau_outcomes.csv")
    reached = out.assign(reached=out["reached_step"].notna()).pivot(index="lr", columns="optimizer",
                                                                     values="reached")
    rms = reached["rmsprop"]
    missed = int((rms & ~reached["adagrad"]).sum())
    return Measured(f"RMSProp reached the bowl at {int(rms.sum())} of {len(rms)} lrs, AdaGrad at "
                    f"{int(reached['adagrad'].sum())}; AdaGrad missed it at {missed} of RMSProp's {int(rms.sum())}",
                    holds(rms.sum() >= tol and missed == rms.sum()))
