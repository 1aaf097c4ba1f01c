"""AdaGrad against RMSProp on a cliff, a gently sloped plateau, then a bowl."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import contours
from beyond_gd.report.claims import holds
from beyond_gd.report.registry import CHECK, Drawn, FigureParams, Measured, claim, figure
from beyond_gd.report.style import Style, size

TOYS = "optimizer_toys"
OUTCOMES = Need(TOYS, "plateau_outcomes.csv")


@figure("extra-plateau", title="AdaGrad and RMSProp across a plateau: steps to the bowl",
        needs=(Need(TOYS, "grids.npz"), Need(TOYS, "plateau_paths.csv"), OUTCOMES),
        shows="AdaGrad's and RMSProp's paths from one start down a cliff, across a gently sloped plateau, "
              "towards a bowl, at the same learning rates, each run until it lands in the bowl or reaches the "
              "step cap, on the surface's contours (top, one panel per lr; the star is the minimum, a ring a run "
              "that stopped at the cap outside the bowl); the distance moved per step (bottom, log axes).",
        book="AdaGrad's sum of squared gradients can shrink its learning rate on a flat region before it "
             "reaches a minimum; RMSProp's exponentially weighted average forgets the steep past.",
        notes="Both optimizers are torch.optim's definitions with the `optimizers` entries' arguments, run as "
              "float arithmetic (`toys.plateau.descend_to_bowl`; a test holds them to torch.optim's own paths), "
              "so that a run can go on to `optimizer_toys.plateau.max_steps`: a run not in the bowl by then is "
              "censored, and only such a run is said to stall.")
def plateau(i: View, p: FigureParams, s: Style) -> Drawn:
    g, paths, out = i.npz(TOYS, "grids.npz"), i.csv(TOYS, "plateau_paths.csv"), i.csv(TOYS, "plateau_outcomes.csv")
    lrs = sorted(paths["lr"].unique())
    colors = dict(zip(out["optimizer"].unique(), sns.color_palette(n_colors=out["optimizer"].nunique()),
                      strict=True))
    fig, axes = plt.subplots(2, len(lrs), figsize=size(s, rows=1.3), squeeze=False)
    ends = out.set_index(["optimizer", "lr"])
    for col, lr in enumerate(lrs):
        ax = axes[0, col]
        contours(ax, g["plateau_x"], g["plateau_y"], g["plateau_loss"])
        for name, rows in paths[paths["lr"] == lr].groupby("optimizer", sort=False):
            ax.plot(rows["x"], rows["y"], color=colors[name], lw=1.5, label=name)
            censored = pd.isna(ends.loc[(name, lr), "reached_step"])
            ax.scatter(rows["x"].iloc[-1], rows["y"].iloc[-1], s=45 if censored else 25, zorder=4,
                       facecolors="none" if censored else colors[name], edgecolors=colors[name])
        low = g["plateau_loss"].argmin()
        ax.scatter(g["plateau_x"][low % len(g["plateau_x"])], g["plateau_y"][low // len(g["plateau_x"])],
                   marker="*", s=120, color="k", zorder=5)
        ax.set(title=f"lr = {lr:g}", xlabel="x")
        ax = axes[1, col]
        for name, rows in paths[(paths["lr"] == lr) & (paths["step"] > 0)].groupby("optimizer", sort=False):
            ax.plot(rows["step"], rows["step_size"], color=colors[name], label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlabel="step")
    axes[0, 0].set_ylabel("y")
    axes[1, 0].set_ylabel("distance moved per step")
    axes[0, 0].legend(fontsize="small")
    fig.tight_layout()
    cap = int(out["max_steps"].max())
    rows = [f"{r.optimizer} at lr {r.lr:g}: " + (f"in the bowl at step {int(r.reached_step):,}"
                                                  if pd.notna(r.reached_step) else
                                                  f"not in the bowl within the {cap:,}-step cap (x = {r.final_x:.2f}, "
                                                  f"last step {r.last_step_size:.1e})")
            for r in out.itertuples()]
    return Drawn(fig, "; ".join(rows) + ".")


def plateau_outcomes(out: pd.DataFrame, slow: str = "adagrad", fast: str = "rmsprop") -> pd.DataFrame:
    """Per lr: each optimizer's steps to the bowl (NaN: not within its cap) and what `slow` did where `fast` got
    there: "stalls" (never within the cap), "slower" (later than `fast`), "not slower" (as soon or sooner);
    "-" where `fast` did not get there."""
    steps = out.pivot(index="lr", columns="optimizer", values="reached_step").astype("float64")
    a, b = steps[slow], steps[fast]
    outcome = np.where(b.isna(), "-", np.where(a.isna(), "stalls", np.where(a > b, "slower", "not slower")))
    return pd.DataFrame({slow: a, fast: b, "outcome": outcome}, index=steps.index)


@claim("adagrad_stalls_on_plateau", kind=CHECK, figure="AdaGrad and RMSProp",
       source="§ Learning rate adaptation: RMSProp",
       book="A flat region can make AdaGrad shrink its learning rate before it reaches the minimum, so that it "
            "crosses the flat region more slowly than RMSProp, or not at all; RMSProp fixes that. (On a toy "
            "built with a plateau before a bowl, each run until it reaches the bowl or a step cap far beyond "
            "RMSProp's arrival: a check of the mechanism; AdaGrad \"stalls\" at an lr only where it never "
            "reaches the bowl within the cap.)",
       needs=(OUTCOMES,),
       tolerance="at the same lrs, steps to the bowl. holds: at every lr where RMSProp reaches it (at {tol:g} or "
                 "more), AdaGrad reaches it later (slower) or not within the cap (stalls); fails otherwise")
def adagrad_stalls(i: View, tol: float) -> Measured:
    out = i.csv(TOYS, "plateau_outcomes.csv")
    table = plateau_outcomes(out)
    crossed = table[table["outcome"] != "-"]
    cap = int(out["max_steps"].max())
    said = "; ".join(f"lr {lr:g}: {r.outcome}, AdaGrad "
                     + ("not within the cap" if pd.isna(r.adagrad) else f"{r.adagrad:,.0f} steps")
                     + f" against RMSProp's {r.rmsprop:,.0f}"
                     + (f" ({r.adagrad / r.rmsprop:,.0f}x)" if r.outcome == "slower" else "")
                     for lr, r in crossed.iterrows())
    counts = {k: int((crossed["outcome"] == k).sum()) for k in ("slower", "stalls", "not slower")}
    return Measured(f"cap {cap:,} steps; RMSProp reached the bowl at {len(crossed)} of {len(table)} lrs; where it "
                    f"did, AdaGrad slower at {counts['slower']}, stalls at {counts['stalls']}, not slower at "
                    f"{counts['not slower']}" + (f" ({said})" if said else ""),
                    holds(len(crossed) >= tol and counts["not slower"] == 0))
