"""The baseline MLP's training: the SGD solution of Figs 6-2 and 6-3."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.registry import Drawn, FigureParams, figure
from beyond_gd.report.style import Style, size

BASE = "baseline"


@figure("extra-baseline-training", title="The baseline MLP's training (the SGD solution of Figs 6-2, 6-3)",
        needs=(Need(BASE, "steps.csv"), Need(BASE, "epochs.csv"), Need(BASE, "summary.json")),
        shows="The book's MLP (784-256-256-10, ReLU) trained by SGD: cross-entropy per mini-batch step with its "
              "rolling mean (left, log scale), train and test loss per epoch (middle), accuracy (right). "
              "One seed: the checkpoint the landscape studies start from.",
        book="SGD(lr=0.01), batch size 64, cross-entropy on MNIST, saved as mnist.pt (the book gives no curve).")
def baseline_training(i: View, p: FigureParams, s: Style) -> Drawn:
    steps, epochs, m = i.csv(BASE, "steps.csv"), i.csv(BASE, "epochs.csv"), i.json(BASE)
    colors = sns.color_palette(n_colors=2)
    fig, axes = plt.subplots(1, 3, figsize=size(s))
    ax = axes[0]
    ax.plot(steps["step"], steps["loss"], color="0.7", lw=0.4, label="per mini-batch", rasterized=True)
    smooth = steps["loss"].rolling(p.training_smooth_steps, min_periods=1).mean()
    ax.plot(steps["step"], smooth, color=colors[0], lw=1.5, label=f"mean of {p.training_smooth_steps} steps")
    ax.set_yscale("log")
    ax.set(xlabel="mini-batch step", ylabel="training loss (cross-entropy, nats)", title="per step")
    ax.legend(fontsize="small")
    ax = axes[1]
    for split, color in zip(("train", "test"), colors, strict=True):
        ax.plot(epochs["epoch"], epochs[f"{split}_loss"], marker="o", ms=3, color=color, label=split)
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    ax.set(xlabel="epoch", ylabel="loss (cross-entropy, nats)", title="per epoch")
    ax.legend(fontsize="small")
    ax = axes[2]
    for split, color in zip(("train", "test"), colors, strict=True):
        ax.plot(epochs["epoch"], 100 * epochs[f"{split}_accuracy"], marker="o", ms=3, color=color, label=split)
    ax.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax.legend(fontsize="small")
    fig.tight_layout()
    measured = (f"After {m['steps']:,} steps ({len(epochs)} epochs): train loss {m['train_loss']:.3f}, test loss "
                f"{m['test_loss']:.3f}, test accuracy {m['test_accuracy']:.2%}"
                + (" (diverged)" if m.get("diverged") else "") + ".")
    return Drawn(fig, measured)
