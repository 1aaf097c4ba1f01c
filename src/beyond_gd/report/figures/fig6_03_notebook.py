"""Fig 6-3 as the book prints it: the companion notebook's network and line, beside the book's text's (ours)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd import measures
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import mark_endpoints
from beyond_gd.report.claims import graded
from beyond_gd.report.figures.fig6_03_interpolation import IP, slope_ratios, training_split
from beyond_gd.report.registry import (MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure, not_measured,
                                       resampled)
from beyond_gd.report.style import Style, size

NB = "interpolate_notebook"
BL = "baseline"


def grid_step(path: pd.DataFrame) -> float:
    """The grid's step: the most common gap between successive alphas (0 and 1 may add a shorter one)."""
    gaps = np.round(np.diff(np.sort(path["alpha"].unique())), 9)
    values, counts = np.unique(gaps, return_counts=True)
    return float(values[np.argmax(counts)])


def line_of(path: pd.DataFrame, fresh: bool) -> tuple[str, pd.DataFrame]:
    """The training split's line, sorted by α, from the first fresh θ_rand (`seed_<s>`: the notebook's kind) or
    from the run's own `init` (the interpolate stage's first), else from the first θ_rand there is."""
    rows = path[path["split"] == training_split(path["split"])]
    labels = list(dict.fromkeys(rows["theta_rand"]))
    wanted = [k for k in labels if (k != "init") == fresh]
    label = (wanted or labels)[0]
    return label, rows[rows["theta_rand"] == label].sort_values("alpha")


def lowest(line: pd.DataFrame) -> tuple[float, float]:
    """Where on the grid a line's loss is lowest, and that loss (NaN, NaN for a line with no finite loss)."""
    finite = line[np.isfinite(line["loss"])]
    if finite.empty:
        return float("nan"), float("nan")
    row = finite.loc[finite["loss"].idxmin()]
    return float(row["alpha"]), float(row["loss"])


def summary_row(summary: pd.DataFrame, label: str) -> pd.Series:
    rows = summary[summary["split"] == training_split(summary["split"])]
    return rows[rows["theta_rand"] == label].iloc[0]


@figure("fig6-03-notebook", title="Fig 6-3 as printed: the companion notebook's network, beside the book's text's",
        needs=(Need(NB, "path.csv"), Need(NB, "summary.csv"), Need(NB, "summary.json"), Need(IP, "path.csv"),
               Need(IP, "summary.csv"), Need(BL, "summary.json")),
        shows="The line θ(α) = (1 − α) θ_opt + α θ_rand on the training set, as the companion notebook that drew "
              "the printed figure sets it up (solid): its network ends in a ReLU on the logits, SGD runs at lr "
              "1e-4 for 40 epochs, α steps by 0.01 and θ_rand is a fresh network; beside it (dashed) the book's "
              "text as the interpolate stage runs it: no final ReLU, SGD at lr 0.01, α steps by 0.05, θ_rand the "
              "run's own initialisation. Top: the loss, both lines on one scale (left) and the notebook's on its "
              "own (right); bottom: the accuracy (left) and the slope |dL/dα| between the endpoints (right, "
              "log scale; shaded: the window around α = 1 where the flat-region claims read it). The table "
              "lists each difference and what it changes, measured.",
        book="The figure shows the loss descending from a flat region around the random point (α = 1) to the SGD "
             "solution (α = 0), with no local minimum in between (drawn from the companion notebook's run).",
        notes="The printed figure comes from the book's companion notebook, whose setup differs from the text's "
              "code in four ways, each a key of the section: a ReLU on the logits (`final_relu`), SGD at lr 1e-4 "
              "(`lr`, set on the `optimizers` entry the training names), α in steps of 0.01 (`path.alpha_step`) "
              "and a fresh random network as θ_rand (`path.theta_rand`). Training goes through the baseline's own"
              " run (`baseline.fit`), the lines through the interpolate study's (`interpolate.trace`), evaluated "
              "on the training set in full (the thorough profile adds the test set and more random points).\n\nThe "
              "same figure from the existing stages, no new code (everything downstream of `model` retrains): "
              "`dvc exp run -S model.final_relu=true -S optimizers.sgd.lr=1.0e-4 -S interpolate.alpha_step=0.01 "
              "-S 'interpolate.theta_rand=[fresh]' -S 'interpolate.fresh_seeds=[1]' -S "
              "'interpolate.splits=[train]'` (`tests/test_interpolate_notebook.py` checks that these give this "
              "section's values, and that the baseline so configured trains the same network bit for bit).")
def notebook_interpolation(i: View, p: FigureParams, s: Style) -> Drawn:
    nb_path, nb_sum, nb = i.csv(NB, "path.csv"), i.csv(NB, "summary.csv"), i.json(NB)
    ip_path, ip_sum, base = i.csv(IP, "path.csv"), i.csv(IP, "summary.csv"), i.json(BL)
    nb_label, nb_line = line_of(nb_path, fresh=True)
    ip_label, ip_line = line_of(ip_path, fresh=False)
    nb_row, ip_row = summary_row(nb_sum, nb_label), summary_row(ip_sum, ip_label)
    nb_ratio, ip_ratio = slope_ratios(nb_sum)[nb_label], slope_ratios(ip_sum)[ip_label]
    nb_step, ip_step = grid_step(nb_path), grid_step(ip_path)
    train = nb["training"]
    colors = sns.color_palette(n_colors=2)
    relu = "final ReLU" if train["final_relu"] else "no final ReLU"
    styles = {"notebook": (nb_line, colors[0], "-", f"notebook: {relu}, lr {train['lr']:g}, θ_rand {nb_label}"),
              "ours": (ip_line, colors[1], "--", f"book's text (interpolate): θ_rand {ip_label}")}

    fig, axes = plt.subplots(2, 2, figsize=size(s, rows=2.1))
    both, zoom, acc, slope = axes.flat
    for line, color, ls, label in styles.values():
        alphas, loss = line["alpha"].to_numpy(), line["loss"].to_numpy()
        both.plot(alphas, loss, color=color, ls=ls, lw=1.6, label=label)
        acc.plot(alphas, 100 * line["accuracy"], color=color, ls=ls, lw=1.6)
        inside = (alphas >= -0.25) & (alphas <= 1.25)
        slope.plot(alphas[inside], measures.abs_slope(alphas, loss)[inside], color=color, ls=ls, lw=1.2,
                   marker="o", ms=1.5)
    # The notebook's loss spans a few tenths of a nat: on its own axis, ours (clipped) for the shape.
    nb_loss = nb_line["loss"].to_numpy()
    finite = nb_loss[np.isfinite(nb_loss)]
    zoom.plot(nb_line["alpha"], nb_loss, color=colors[0], lw=1.6)
    zoom.plot(ip_line["alpha"], ip_line["loss"], color=colors[1], ls="--", lw=1.0, alpha=0.6)
    if len(finite):
        pad = max(0.05 * float(np.ptp(finite)), 1e-3)
        zoom.set_ylim(float(finite.min()) - pad, float(finite.max()) + pad)
    both.set(xlabel="α", ylabel="training loss (cross-entropy, nats)", title="loss along the line")
    zoom.set(xlabel="α", ylabel="training loss (nats)", title="the notebook's loss on its own scale")
    acc.set(xlabel="α", ylabel="training accuracy (%)", title="accuracy along the line")
    slope.set_yscale("log")
    slope.set(xlabel="α", ylabel="|dL/dα| of the training loss (nats)", title="slope between the endpoints")
    slope.axvspan(1 - nb["flat_window"], 1 + nb["flat_window"], color="0.85", lw=0,
                  label=f"flat-region window, α = 1 ± {nb['flat_window']:g}")
    for ax in axes.flat:
        mark_endpoints(ax)
    slope.legend(fontsize="x-small", loc="lower left")
    fig.legend(*both.get_legend_handles_labels(), loc="upper center", ncol=2, fontsize="small", frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.95))

    nb_end, ip_end = train["train_loss"], base["train_loss"]
    (nb_low_at, nb_low), (ip_low_at, ip_low) = lowest(nb_line), lowest(ip_line)
    table = pd.DataFrame({
        "difference": ["final ReLU on the logits", "SGD learning rate", "training loss at the end (nats)",
                       "α grid step", "θ_rand", "loss at α = 0 (nats)", "loss at α = 1 (nats)",
                       "slope near α = 1 / before", "local minima in (0, 1)", "barrier on [0, 1] (nats)",
                       "lowest loss on the line (nats, at α)"],
        "notebook (interpolate_notebook)": [
            "yes" if train["final_relu"] else "no", f"{train['lr']:g}", f"{nb_end:.4f}", f"{nb_step:g}", nb_label,
            f"{nb_row['loss_at_0']:.4f}", f"{nb_row['loss_at_1']:.4f}", f"{nb_ratio:.3f}",
            str(int(nb_row["local_minima"])), f"{nb_row['barrier']:.4f}", f"{nb_low:.4f} at {nb_low_at:g}"],
        "book's text (baseline, interpolate)": [
            "no (the book's text)", "0.01 (the book's text)", f"{ip_end:.4f}", f"{ip_step:g}", ip_label,
            f"{ip_row['loss_at_0']:.4f}", f"{ip_row['loss_at_1']:.4f}", f"{ip_ratio:.3f}",
            str(int(ip_row["local_minima"])), f"{ip_row['barrier']:.4f}", f"{ip_low:.4f} at {ip_low_at:g}"],
    })
    descent_nb, descent_ip = nb_row["loss_at_1"] - nb_row["loss_at_0"], ip_row["loss_at_1"] - ip_row["loss_at_0"]
    measured = (
        f"The notebook's final ReLU and lr {train['lr']:g} leave its network at training loss {nb_end:.3f} after "
        f"{train['steps']} steps (ours: {ip_end:.3f}), so α = 0 lies only {descent_nb:.3f} nats below α = 1 "
        f"({nb_row['loss_at_0']:.3f} → {nb_row['loss_at_1']:.3f}; ours {descent_ip:.3f} nats, "
        f"{ip_row['loss_at_0']:.3f} → {ip_row['loss_at_1']:.3f}). "
        f"Near α = 1 the slope is {nb_ratio:.3f} × its mean before the window (ours {ip_ratio:.3f}), on a grid "
        f"of step {nb_step:g} (ours {ip_step:g}) from θ_rand {nb_label} (ours {ip_label}); "
        f"{int(nb_row['local_minima'])} local minima in (0, 1) (ours {int(ip_row['local_minima'])}); barrier "
        f"{nb_row['barrier']:.4f} nats (ours {ip_row['barrier']:.4f}). The line's lowest loss lies at α = "
        f"{nb_low_at:g} ({nb_low:.3f} nats; ours at α = {ip_low_at:g}, {ip_low:.3f})"
        + (f": the notebook's network is no minimum of its own line, whose loss goes on descending "
           f"{nb_row['loss_at_0'] - nb_low:.3f} nats past it." if nb_low_at < 0 else ".")
        + (" The notebook's training DIVERGED." if train["diverged"] else ""))
    return Drawn(fig, measured, table)


@claim("notebook_solution_shows_flat_region", kind=MEASURED, figure="Fig 6-3",
       source="§ Flat regions in the error surface (the printed Fig 6-3, from the companion notebook)",
       book="The printed Fig 6-3 (the companion notebook's barely trained network) shows a flat region around "
            "α = 1 and a descent from it to the solution at α = 0.",
       needs=(Need(NB, "summary.csv"),), uses=("flat",),
       tolerance="on the notebook's training-set lines: flat (mean |dL/dα| near α = 1 at most {flat:g} × its mean "
                 "on [0, window)), and a descent: the loss at α = 0 at least {tol:g} nats below the loss at α = 1. "
                 "agrees: both on every θ_rand; partly: flat on some θ_rand, or a descent on every one with the "
                 "slope only lower (ratio < 1) near α = 1; differs: otherwise (resampled over θ_rand)")
def notebook_flat_region(i: View, tol: float, flat: float) -> Measured:
    summary = i.csv(NB, "summary.csv")
    if summary.empty:
        return Measured("–", not_measured("interpolate_notebook wrote no line"))
    ratio = slope_ratios(summary)
    rows = summary[summary["split"] == training_split(summary["split"])].set_index("theta_rand")
    descent = (rows["loss_at_1"] - rows["loss_at_0"]).reindex(ratio.index)
    units = pd.DataFrame({"theta_rand": ratio.index, "ratio": ratio.to_numpy(), "descent": descent.to_numpy()})

    def decide(u: pd.DataFrame) -> Decision:
        is_flat, descends = u["ratio"] <= flat, u["descent"] >= tol
        return graded(bool((is_flat & descends).all()),
                      bool(is_flat.any() or (descends.all() and (u["ratio"] < 1).all())), float(u["ratio"].max()),
                      (flat,))

    return resampled("; ".join(f"{k}: slope ratio {ratio[k]:.3f}, descent {descent[k]:.3f} nats" for k in ratio.index)
                     + f"; flat on {int((ratio <= flat).sum())} and descending on {int((descent >= tol).sum())} of "
                     f"{len(ratio)} θ_rand", units, decide, unit="theta_rand")
