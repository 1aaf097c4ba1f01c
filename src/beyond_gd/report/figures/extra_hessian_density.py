"""The loss Hessian's eigenvalue density at the init, during training and at the SGD solution."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.landscape import spectrum
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import graded
from beyond_gd.report.grid import plural
from beyond_gd.report.registry import (MEASURED, Decision, Drawn, FigureParams, Measured, claim, figure, not_measured,
                                       resampled)
from beyond_gd.report.style import Style, size

HD = "hessian_density"
# The density's floor on the log axis: an outlier's weight is about 1/n (n ~ 2.7e5 parameters).
FLOOR = 1e-9


@figure("extra-hessian-density", title="The loss Hessian's eigenvalue density, from the init to the SGD solution",
        needs=(Need(HD, "density.csv"), Need(HD, "top.csv"), Need(HD, "summary.json")),
        shows="Stochastic Lanczos quadrature on a fixed training subset, from Hessian-vector products only: per "
              "point of the baseline's training (its init, its checkpoints, its solution), the Ritz values of "
              "several random starts broadened by a Gaussian and averaged (log density, so that the bulk near zero "
              "and the outliers, each about 1/n of the mass, both show). Ticks: the converged top eigenvalues; "
              "dashed: the bulk's edge, where a clear gap among them puts it (none drawn where the gap is not clear).",
        book="The chapter asks whether the landscape's critical points and ill-conditioning trouble descent; it "
             "gives no spectrum. The literature since: a bulk near zero and about C − 1 outliers for C classes "
             "(Sagun et al. 2017; Papyan 2019), a negative part that shrinks in training (Ghorbani et al. 2019).",
        notes="Stochastic Lanczos quadrature (`src/beyond_gd/landscape/density.py`): at each point, "
              "`hessian_density.starts` Lanczos runs from random starts; each run's Ritz values and weights are a"
              " Gauss quadrature of the spectrum, their Gaussian-broadened mean a density. The outliers are the "
              "converged top eigenvalues above the widest ratio gap among the largest "
              "`hessian_density.candidates`, counted only where that gap is clear (`landscape/spectrum.py`: a "
              "robust z of at least `hessian_density.gap_z` against the start's other ratios, the same count in a "
              "share `hessian_density.gap_agreement` of the starts), else \"no clear gap\"; the negative mass is "
              "the quadrature's weight below each fixed cut of `hessian_density.negative_cuts`, the same at every "
              "point (the claim reads `hessian_density.claim_cut`).")
def hessian_density(i: View, p: FigureParams, s: Style) -> Drawn:
    dens, top, m = i.csv(HD, "density.csv"), i.csv(HD, "top.csv"), i.json(HD)
    order = m["order"]
    cols = min(2, len(order))
    rows = -(-len(order) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=size(s, rows=rows), squeeze=False)
    colors = sns.color_palette(n_colors=len(order))
    for ax, point, color in zip(axes.flat, order, colors, strict=False):
        d, pt = dens[dens["point"] == point], m["points"][point]
        ax.semilogy(d["eigenvalue"], np.maximum(d["density"], FLOOR), color=color, lw=1.2)
        values = top.loc[top["point"] == point, "value"].unique()
        ax.plot(values, np.full(len(values), FLOOR * 3), "|", color="0.2", ms=10)
        if pt["outliers"]:
            ax.axvline(pt["bulk_edge"], color="0.4", ls="--", lw=0.8)
        ax.axvline(0, color="0.6", lw=0.6)
        ax.set_ylim(FLOOR, None)
        count = "no clear gap" if pt["outliers"] is None else plural(pt["outliers"], "outlier")
        ax.set(xlabel="eigenvalue of H", ylabel="density",
               title=f"{at(point)}: {count}, negative mass {pt['negative_mass']:.3f} (< −{m['claim_cut']:g})")
    for ax in axes.flat[len(order):]:
        ax.set_visible(False)
    fig.tight_layout()
    cuts = ", ".join(f"−{c:g}" for c in m["negative_cuts"])
    measured = (f"{m['starts']} starts × {m['lanczos_steps']} Lanczos steps per point on {m['subset_size']:,} "
                f"training images ({m['parameters']:,} parameters, {m['classes']} classes). Negative mass: the mean "
                f"± std over starts of the weight below each fixed cut, {cuts} in turn (the claim's: "
                f"−{m['claim_cut']:g}). "
                + "; ".join(f"{at(p_)}: λ_max {pt['lambda_max']:.3g}, {_outliers(pt)}, "
                            f"mass within ±{m['claim_cut']:g} of zero {pt['zero_mass']:.3f}, "
                            f"negative mass {_sweep(pt)}, trace {pt['trace']:.3g}"
                            for p_, pt in m["points"].items()) + ".")
    return Drawn(fig, measured)


@claim("hessian_outliers_near_class_count", kind=MEASURED, figure="Hessian density",
       source="Sagun, Bottou & LeCun (2017); Papyan (2019); beyond the chapter",
       book="At a trained network's solution the Hessian's spectrum is a bulk near zero plus about C − 1 outliers "
            "for C classes.",
       needs=(Need(HD, "top.csv"), Need(HD, "summary.json")),
       tolerance="outliers: the converged top eigenvalues above the widest ratio gap at the last point (the "
                 "solution), where that gap is clear: in each start it stands out of the start's other ratios "
                 "(robust z ≥ hessian_density.gap_z) and a share ≥ hessian_density.gap_agreement of the starts "
                 "put it at the same count (resampled over starts). agrees: between C − 1 − {tol:g} and "
                 "C + {tol:g}; partly: between C / 2 and 2C; differs: otherwise; no clear gap: inconclusive "
                 "(leaning to the starts' most common count); not measured: fewer than two converged top values")
def outliers_near_classes(i: View, tol: float) -> Measured:
    m, top = i.json(HD), i.csv(HD, "top.csv")
    if "gap_z" not in m:
        return Measured("–", not_measured("hessian_density's summary names no gap test: re-run the stage"))
    last = m["order"][-1]
    pt, c = m["points"][last], m["classes"]
    units = top[top["point"] == last]
    if units.empty:
        return Measured(f"{at(last)}: {_outliers(pt)}", not_measured("no top eigenvalue converged at the solution"))

    def count(u: pd.DataFrame, starts: int = 0) -> spectrum.Outliers:
        """The starts' consensus; `starts` pads the starts with no converged value (absent from top.csv)."""
        gaps = [spectrum.widest_gap(g.sort_values("rank")["value"].to_numpy(), m["gap_min_others"])
                for _, g in u.groupby("start")]
        gaps += [spectrum.Gap(0, math.nan, math.nan, math.nan)] * max(0, starts - len(gaps))
        return spectrum.consensus(gaps, m["gap_agreement"], m["gap_z"])

    def decide(u: pd.DataFrame) -> Decision:
        out = count(u)
        n = out.lean if out.count is None else out.count
        if n == 0:
            return not_measured("fewer than two converged top eigenvalues: no gap to read")
        return graded(c - 1 - tol <= n <= c + tol, c / 2 <= n <= 2 * c, n, (c - 1 - tol, c + tol))

    whole = count(units, m["starts"])
    caveat = "" if whole.count is not None else (
        f"{at(last)}, {whole.why}: the count is not read; a real gap would stand out in more converged top "
        "values (more Lanczos steps) and agree over more starts")
    return resampled(f"{at(last)} (C = {c}): {_outliers(pt)}; top {', '.join(f'{v:.3g}' for v in pt['top'])}",
                     units, decide, unit="start", caveat=caveat)


@claim("negative_mass_shrinks_in_training", kind=MEASURED, figure="Hessian density",
       source="Ghorbani, Krishnan & Xiao (2019); Sagun et al. (2017); beyond the chapter",
       book="The Hessian's negative eigenvalues, a visible share of the spectrum at the init, lose their mass as "
            "training goes on.",
       needs=(Need(HD, "ritz.csv"), Need(HD, "summary.json")),
       tolerance="negative mass: a start's quadrature weight on Ritz values below one fixed cut, the same at "
                 "every point (−hessian_density.claim_cut, in the Hessian's own units), averaged over starts "
                 "(resampled). agrees: at the last point at most {tol:g} × at the first; partly: smaller, not by "
                 "that much; differs: not smaller")
def negative_mass_shrinks(i: View, tol: float) -> Measured:
    m, ritz = i.json(HD), i.csv(HD, "ritz.csv")
    if "claim_cut" not in m:
        return Measured("–", not_measured("hessian_density's summary names no claim_cut: re-run the stage"))
    first, last, cut = m["order"][0], m["order"][-1], m["claim_cut"]
    below = ritz[ritz["point"].isin((first, last))]
    below = below.assign(neg=below["weight"].where(below["value"] < -cut, 0.0))
    units = below.groupby(["start", "point"])["neg"].sum().unstack("point").reset_index()

    def decide(u: pd.DataFrame) -> Decision:
        a, b = u[first].mean(), u[last].mean()
        if not a > 0:
            return not_measured(f"no negative mass below −{cut:g} {at(first)}: nothing to shrink")
        return graded(b / a <= tol, b / a < 1, b / a, (tol, 1.0))

    a, b = m["points"][first]["negative_mass"], m["points"][last]["negative_mass"]
    return resampled(f"negative mass below −{cut:g}: {a:.4f} {at(first)}, {b:.4f} {at(last)} "
                     f"(×{b / a if a > 0 else math.inf:.2f}); along the way "
                     + ", ".join(f"{at(p_)} {pt['negative_mass']:.4f}" for p_, pt in m["points"].items()),
                     units, decide, unit="start")


def at(point: str) -> str:
    """A point of the baseline's training as prose: the stage's ids are init, epoch_<n> and solution."""
    if point.startswith("epoch_"):
        return f"after epoch {point.removeprefix('epoch_')}"
    return f"at the {point}"


def _outliers(pt: dict) -> str:
    """A point's outliers as text: the count above a clear gap, else why there is none."""
    if pt["outliers"] is None:
        return pt["no_clear_gap"] or "no clear gap"
    z = "∞" if pt["gap_z"] is None or math.isinf(pt["gap_z"]) else f"{pt['gap_z']:.1f}"
    return (f"{plural(pt['outliers'], 'outlier')} above {pt['bulk_edge']:.3g} (gap ×{pt['gap']:.2f}, robust z "
            f"≥ {z}, {pt['gap_agreement']:.0%} of the starts)")


def _sweep(pt: dict) -> str:
    """A point's negative mass at every cut, with its spread over starts."""
    return " | ".join(f"{s['mean']:.4f} ± {_std(s['std'])}" for s in pt["negative_sweep"])


def _std(x: float | None) -> str:
    """A standard deviation over starts (null in JSON where one start gave nothing to spread)."""
    return "–" if x is None else f"{x:.2g}"
