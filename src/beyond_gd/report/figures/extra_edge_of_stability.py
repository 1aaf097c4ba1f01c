"""Beyond the book: full-batch gradient descent at the edge of stability (Cohen et al. 2021)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.claims import graded
from beyond_gd.report.registry import MEASURED, Drawn, FigureParams, Measured, claim, figure, not_measured
from beyond_gd.report.style import Style, size

EOS = "edge_of_stability"
GD, SGD = "gd", "sgd"
LINE = {GD: "-", SGD: ":"}
MARKER = {GD: None, SGD: "o"}
KIND_NAMES = {GD: "GD (full batch)", SGD: "SGD"}
# Indices into the (colorblind) palette of 10: warm and blue hues for GD, the others for SGD, so no GD run
# shares a near colour with an SGD run.
GD_COLORS, SGD_COLORS = (0, 1, 5, 8, 9), (2, 4, 7, 6, 3)


@figure("extra-edge-of-stability", title="Full-batch gradient descent at the edge of stability",
        needs=(Need(EOS, "curves.csv"), Need(EOS, "runs.csv"), Need(EOS, "summary.json")),
        shows="The sharpness λ_max (the largest eigenvalue of the Hessian of the training subset's loss, by a "
              "warm-started Lanczos on Hessian-vector products run to a residual tolerance) against the step, for "
              "full-batch gradient descent (solid) and mini-batch SGD (dotted, markers) from the same "
              "initialisation, each with its stability limit 2 / lr as a dashed line of its colour (top, log; an "
              "estimate short of the tolerance is a cross, left out of every statistic); the subset's training "
              "loss of the same runs (bottom, log).",
        book="Not in the book, which treats a learning rate as fixed against a fixed curvature. Cohen et al. "
             "(2021): under full-batch GD the sharpness rises (progressive sharpening) until it reaches 2 / lr, "
             "the limit of stability on a quadratic, and then hovers just above it while the loss goes on "
             "falling, non-monotonically; SGD's sharpness stays below 2 / lr.",
        notes="The sharpness is tracked by `src/beyond_gd/landscape/sharpness.py`: a thick-restart Lanczos on "
              "the Hessian-vector products of `src/beyond_gd/landscape/hessian.py`, warm-started from the "
              "previous evaluation's top Ritz vector and run until ‖Hy − θy‖ ≤ `edge_of_stability.tol` × θ or "
              "`edge_of_stability.max_products` products.\n\nBeyond the book, which takes a learning rate "
              "against a fixed curvature: "
              "from one fresh initialisation, gradient descent on a fixed subset of "
              "`edge_of_stability.subset_size` training images at each of `edge_of_stability.gd_lrs`, and "
              "mini-batch SGD on the same subset at `edge_of_stability.sgd_lrs`, each for "
              "`edge_of_stability.steps` steps; every `edge_of_stability.eval_every` steps the subset's loss and "
              "λ_max, the largest eigenvalue of its Hessian, against the quadratic stability limit 2 / lr.")
def edge_of_stability(i: View, p: FigureParams, s: Style) -> Drawn:
    curves, runs, m = i.csv(EOS, "curves.csv"), i.csv(EOS, "runs.csv"), i.json(EOS)
    colors = run_colors(runs)
    fig, axes = plt.subplots(2, 1, figsize=size(s, rows=2.2), sharex=True, gridspec_kw={"height_ratios": [1.4, 1]})
    top, bottom = axes
    for r in runs.itertuples():
        rows = curves[curves["run"] == r.run].sort_values("step")
        color, label = colors[r.run], f"{KIND_NAMES[r.kind]}, lr {r.lr:g}"
        good = rows["converged"].astype(bool)
        top.plot(rows.loc[good, "step"], rows.loc[good, "lambda_max"], color=color, ls=LINE[r.kind],
                 marker=MARKER[r.kind], ms=3, lw=1.6, label=label + (" (diverged)" if r.diverged else ""))
        short = rows[~good & rows["lambda_max"].notna()]
        top.plot(short["step"], short["lambda_max"], color=color, ls="none", marker="x", ms=4)
        top.axhline(r.two_over_lr, color=color, ls="--", lw=1.0, alpha=0.8)
        # At the left, where every run is still far below its edge.
        top.annotate(f"2/lr = {r.two_over_lr:g}", (rows["step"].min(), r.two_over_lr), color=color,
                     fontsize="x-small", ha="left", va="bottom")
        if pd.notna(r.reached_step):
            top.axvline(r.reached_step, color=color, ls=(0, (1, 3)), lw=0.8)
        bottom.plot(rows["step"], rows["loss"], color=color, ls=LINE[r.kind], marker=MARKER[r.kind], ms=3, lw=1.4,
                    label=label)
    top.set_yscale("log")
    plain_log(top.yaxis)
    top.set(ylabel="λ_max of the subset loss", title=f"sharpness, and 2 / lr dashed (dotted vertical: λ_max first "
                                                      f"≥ {m['reach']:g} × 2 / lr)")
    top.legend(fontsize="x-small", loc="upper right", ncol=2)
    bottom.set_yscale("log")
    plain_log(bottom.yaxis)
    bottom.set(xlabel="step", ylabel="training loss (nats)",
               title=f"loss on the {m['subset_size']:,}-image training subset")
    fig.tight_layout()
    parts = []
    for r in runs.itertuples():
        if pd.notna(r.reached_step):
            parts.append(f"{KIND_NAMES[r.kind]} at lr {r.lr:g} reached {m['reach']:g} × 2/lr = "
                         f"{m['reach'] * r.two_over_lr:.3g} at step {int(r.reached_step)}, then λ_max / (2/lr) had "
                         f"median {r.ratio_median:.2f} (quartiles {r.ratio_q25:.2f}–{r.ratio_q75:.2f}, "
                         f"{int(r.hover_evaluations)} evaluation{'' if r.hover_evaluations == 1 else 's'})")
        else:
            parts.append(f"{KIND_NAMES[r.kind]} at lr {r.lr:g} stayed at most {r.max_ratio:.2g} × 2/lr")
        if r.diverged:
            parts[-1] += " and diverged"
    measured = (f"From λ_max = {m['init_lambda_max']:.3g} at the initialisation, over {m['steps']} steps, λ_max "
                f"every {m['eval_every']} ({m['parameters']:,} parameters, {m['subset_size']:,} images): "
                + "; ".join(parts) + f". {m['products']:,} Hessian-vector products; "
                f"{m['unconverged_evaluations']} of {m['evaluations']:,} estimates short of the tolerance "
                f"(‖Hy − θy‖ ≤ {m['tol']:g} θ within {m['max_products']} products), left out of every number here.")
    return Drawn(fig, measured)


def run_colors(runs: pd.DataFrame) -> dict[str, tuple[float, float, float]]:
    """One colour per run, GD and SGD from separate parts of the palette (cycling past its ten)."""
    palette = sns.color_palette(n_colors=10)
    out = {}
    for kind, picks in ((GD, GD_COLORS), (SGD, SGD_COLORS)):
        for k, name in enumerate(runs.loc[runs["kind"] == kind, "run"]):
            out[name] = palette[picks[k % len(picks)]]
    return out


def gd_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["kind"] == GD]


@claim("gd_hovers_at_edge_of_stability", kind=MEASURED, figure="Edge of stability",
       source="Cohen, Kaur, Li, Kolter & Talwalkar (2021); beyond the chapter",
       book="Under full-batch gradient descent the sharpness λ_max rises until it reaches 2 / lr and then hovers "
            "right at, or just above, 2 / lr.",
       needs=(Need(EOS, "runs.csv"), Need(EOS, "summary.json")),
       tolerance="reached the edge: λ_max >= reach × 2 / lr at an evaluation (the stage's one rule, also for SGD); "
                 "per GD lr that reached it before its last evaluation, the median of λ_max / (2 / lr) after that; "
                 "only estimates that met the residual tolerance count (the others are counted). agrees: every "
                 "such lr's median is within {tol:g} of 1; partly: some are, or none is; differs: no lr reaches "
                 "the edge. A lr still short of the edge when its budget ends is named and not graded: more steps "
                 "would settle it")
def gd_hovers(i: View, tol: float) -> Measured:
    gd, m = gd_runs(i.csv(EOS, "runs.csv")), i.json(EOS)
    if gd.empty:
        return Measured("–", not_measured("edge_of_stability ran no GD lr"))
    hovered = gd["ratio_median"].notna()
    within = hovered & ((gd["ratio_median"] - 1).abs() <= tol)
    off = (gd.loc[hovered, "ratio_median"] - 1).abs()
    text = "; ".join(_gd_text(r) for r in gd.itertuples())
    return Measured(f"λ_max / (2 / lr) {text} (reach {m['reach']:g}); within the band at {int(within.sum())} of "
                    f"the {int(hovered.sum())} that hovered; " + _left_out(gd),
                    graded(bool(hovered.any() and within[hovered].all()), bool(gd["reached_step"].notna().any()),
                           float(off.max()) if len(off) else math.nan, (tol,)))


def _gd_text(r: object) -> str:
    """One GD run's part of the claim: its hovering median, or where it stood when its budget ended."""
    if pd.isna(r.reached_step):
        return f"lr {r.lr:g}: not reached in {int(r.steps)} steps (at most {r.max_ratio:.3f}; not graded)"
    if pd.isna(r.ratio_median):
        return f"lr {r.lr:g}: reached at its last evaluation, step {int(r.reached_step)} (not graded)"
    n = int(r.hover_evaluations)
    return (f"lr {r.lr:g}: median {r.ratio_median:.3f} over {n} evaluation{'' if n == 1 else 's'} after step "
            f"{int(r.reached_step)}")


def _left_out(runs: pd.DataFrame) -> str:
    """How many of these runs' estimates missed the residual tolerance and were left out."""
    return (f"{int(runs['unconverged'].sum())} of {int(runs['estimates'].sum() + runs['unconverged'].sum())} "
            "estimates short of the residual tolerance left out")


@claim("sgd_stays_below_edge", kind=MEASURED, figure="Edge of stability",
       source="Cohen et al. (2021), sec. 3; Jastrzebski et al. (2020); beyond the chapter",
       book="With mini-batch SGD the sharpness stays below 2 / lr.",
       needs=(Need(EOS, "runs.csv"), Need(EOS, "summary.json")),
       tolerance="reached the edge as for GD: λ_max >= reach × 2 / lr at an evaluation, with λ_max sampled as the "
                 "stage samples it, from the estimates that met the residual tolerance. agrees: no SGD lr reaches "
                 "it; partly: some do; differs: every SGD lr does")
def sgd_below(i: View, tol: float) -> Measured:
    runs, m = i.csv(EOS, "runs.csv"), i.json(EOS)
    sgd = runs[runs["kind"] == SGD]
    if sgd.empty:
        return Measured("–", not_measured("edge_of_stability ran no SGD lr"))
    below = sgd["reached_step"].isna().to_numpy()
    return Measured("largest λ_max / (2 / lr): " + ", ".join(f"lr {r.lr:g} {r.max_ratio:.3f}"
                                                             for r in sgd.itertuples())
                    + f" (reach {m['reach']:g}); below it at {int(np.sum(below))} of {len(sgd)} lrs; "
                    + _left_out(sgd),
                    graded(bool(below.all()), bool(below.any()), float(sgd["max_ratio"].max()), (m["reach"],)))
