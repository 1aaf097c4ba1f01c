"""The loss Hessian of the MLP (the text of "When the gradient points the wrong way")."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import mark_endpoints, plain_log, symlog
from beyond_gd.report.claims import at_most, graded
from beyond_gd.report.registry import (AGREES, DIFFERS, MEASURED, Decision, Drawn, FigureParams, Measured, claim,
                                       figure, not_measured, resampled)
from beyond_gd.report.style import Style, size

HS = "hessian"


@figure("extra-hessian-spectrum", title="The loss Hessian of the MLP: top eigenvalues, and along the Fig 6-3 line",
        needs=(Need(HS, "eigenvalues.csv"), Need(HS, "path.csv"), Need(HS, "summary.json")),
        shows="From Hessian-vector products only (Lanczos, Hutchinson; no dense Hessian), on a fixed subset of "
              "the data: the largest eigenvalues and the most negative one at the SGD solution (top left, "
              "symlog) with each Ritz pair's residual ‖Hy − λy‖ (top right, log; hollow: not converged by the "
              "stage's criterion); "
              "along the line θ(α) = (1 − α) θ_opt + α θ_init: λ_max, λ_min and the trace estimate with its "
              "standard error (bottom left, symlog), and the conditioning ratios λ_max / |λ_min| and "
              "λ_max / λ_k (bottom right, log).",
        book="The Hessian H describes the curvature; the problem is ill-conditioned when the gradient changes "
             "quickly under our feet, i.e. when H's eigenvalues are spread widely (the book gives no numbers).")
def hessian_spectrum(i: View, p: FigureParams, s: Style) -> Drawn:
    eig, path, m = i.csv(HS, "eigenvalues.csv"), i.csv(HS, "path.csv").sort_values("alpha"), i.json(HS)
    sol = m["solution"]
    at0 = eig[eig["alpha"] == 0.0]
    top, low = at0[at0["which"] == "top"].sort_values("rank"), at0[at0["which"] == "min"]
    k = len(top)
    colors = sns.color_palette(n_colors=4)
    fig, axes = plt.subplots(2, 2, figsize=size(s, rows=2))

    ax = axes[0, 0]
    ranks = np.arange(1, k + 2)
    values = np.r_[top["value"].to_numpy(), low["value"].to_numpy()]
    ax.vlines(ranks, 0, values, color=[colors[0]] * k + [colors[3]], lw=2)
    ax.scatter(ranks[:k], values[:k], color=colors[0], zorder=3, label=f"top {k} (λ_1 … λ_{k})")
    ax.scatter(ranks[k:], values[k:], color=colors[3], zorder=3, label="most negative")
    ax.axhline(0, color="0.3", lw=0.6)
    symlog(ax, values)
    ax.set_xticks(ranks, [*map(str, range(1, k + 1)), "min"])
    ax.set(xlabel="rank", ylabel="eigenvalue of H (nats / param²)", title="spectrum at the SGD solution (α = 0)")
    ax.legend(fontsize="small")

    ax = axes[0, 1]
    pairs = pd.concat([top, low])
    conv = pairs["converged"].astype(bool).to_numpy()
    pair_colors = np.array([colors[0]] * k + [colors[3]])
    ax.scatter(ranks[conv], pairs["residual"][conv], color=pair_colors[conv], zorder=3)
    ax.scatter(ranks[~conv], pairs["residual"][~conv], facecolor="none", edgecolor=pair_colors[~conv], zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(ranks, [*map(str, range(1, k + 1)), "min"])
    ax.set(xlabel="rank", ylabel="residual ‖Hy − λy‖ (nats / param²)",
           title="residuals at α = 0 (hollow: not converged)")

    ax = axes[1, 0]
    for which, rank, color, label in (("top", 1, colors[0], "λ_max"), ("min", 1, colors[3], "λ_min (most negative)")):
        rows = eig[(eig["which"] == which) & (eig["rank"] == rank)].sort_values("alpha")
        ok = rows["converged"].astype(bool).to_numpy()
        ax.plot(rows["alpha"], rows["value"], color=color, lw=1.2, label=label)
        ax.scatter(rows["alpha"][ok], rows["value"][ok], color=color, zorder=3)
        ax.scatter(rows["alpha"][~ok], rows["value"][~ok], facecolor="white", edgecolor=color, zorder=3)
    ax.errorbar(path["alpha"], path["trace"], yerr=path["trace_stderr"], color=colors[2], marker="s", ms=4,
                capsize=3, lw=1.2, label="trace (Hutchinson, ± 1 s.e.)")
    ax.axhline(0, color="0.3", lw=0.6)
    trace_ends = [path["trace"] + sign * path["trace_stderr"] for sign in (1, -1)]
    symlog(ax, np.concatenate([path["lambda_max"], path["lambda_min"], *trace_ends]))
    mark_endpoints(ax, "θ_init")
    ax.set(xlabel="α (0: SGD solution, 1: the baseline's init)", ylabel="nats / param²",
           title="curvature along the line (hollow: not converged)")
    ax.legend(fontsize="x-small", loc="center left")

    ax = axes[1, 1]
    ax.plot(path["alpha"], path["top_over_abs_min"], marker="o", color=colors[1], label="λ_max / |λ_min|")
    ax.plot(path["alpha"], path["top_over_kth"], marker="s", color=colors[0], label=f"λ_max / λ_{k}")
    ax.axhline(1, color="0.3", lw=0.6)
    ax.set_yscale("log")
    plain_log(ax.yaxis)
    mark_endpoints(ax, "θ_init")
    ax.set(xlabel="α (0: SGD solution, 1: the baseline's init)", ylabel="ratio", title="conditioning along the line")
    ax.legend(fontsize="small")
    fig.tight_layout()
    peak = path.loc[path["lambda_max"].idxmax()]
    unconverged = path["alpha"][~path["converged"].astype(bool)]
    measured = (f"At the SGD solution ({m['parameters']:,} parameters, {m['subset_size']:,} examples): λ_1 = "
                f"{sol['lambda_max']:.3g}, λ_{k} = {top['value'].iloc[-1]:.3g}, most negative {sol['lambda_min']:.3g}"
                f" (λ_max / |λ_min| = {sol['top_over_abs_min']:.0f}); trace {sol['trace']:.3g} ± "
                f"{sol['trace_stderr']:.2g}; largest residual {sol['max_residual']:.1e}. Along the line λ_max is "
                f"{path['lambda_max'].iloc[0]:.3g} at α = {path['alpha'].iloc[0]:g}, at most {peak['lambda_max']:.3g}"
                f" (α = {peak['alpha']:g}), {path['lambda_max'].iloc[-1]:.3g} at α = {path['alpha'].iloc[-1]:g}"
                + (f"; some eigenpair not converged at α = {', '.join(f'{a:g}' for a in unconverged)}"
                   if len(unconverged) else "") + ". " + _cost(m))
    return Drawn(fig, measured)


def _cost(m: dict) -> str:
    """What one product costs against one gradient, as the stage timed them at the SGD solution."""
    t = m["timing"]
    return (f"Each product is one double backward: at the SGD solution one Hessian-vector product took "
            f"{t['hvp_seconds']:.2g} s and one gradient of the same {m['subset_size']:,}-example loss "
            f"{t['gradient_seconds']:.2g} s (median of {t['repeats']}), {t['hvp_over_gradient']:.2g} gradients a "
            "product.")


SECOND_ORDER = "§ A brief view of second-order methods"


@claim("computing_the_hessian_is_hard", kind=MEASURED, figure="Hessian", source=SECOND_ORDER,
       book="Computing the Hessian is a computationally difficult task.",
       needs=(Need(HS, "summary.json"),), reaches=(AGREES, DIFFERS),
       tolerance="the float32 bytes of the MLP's dense n × n Hessian against {tol:g} GiB, the memory of the "
                 "largest machine this project's profiles target (the thorough profile's). agrees: more (the "
                 "matrix alone is out of reach); differs: it fits")
def hessian_is_hard(i: View, tol: float) -> Measured:
    n = i.json(HS).get("parameters")
    if not n:
        return Measured("–", not_measured("the hessian stage recorded no parameter count"))
    gib = n * n * 4 / 2**30
    return Measured(f"{n:,} parameters: a dense float32 Hessian holds {gib:,.0f} GiB",
                    Decision(AGREES if gib > tol else DIFFERS, gib, (tol,)),
                    fixed="bytes counted from the parameter count")


@claim("hessian_vector_product_costs_a_few_gradients", kind=MEASURED, figure="Hessian",
       source="Pearlmutter 1994 (the way around the difficulty the chapter names)",
       book="A Hessian-vector product costs a small constant number of gradients, with no Hessian formed: what "
            "makes the Hessian's spectrum measurable at all (Lanczos, Hutchinson).",
       needs=(Need(HS, "summary.json"),),
       tolerance="the median seconds of one Hessian-vector product / of one gradient, at the SGD solution on the "
                 "stage's subset. agrees: at most {tol:g} (the cheap-gradient bound of reverse-mode differentiation, "
                 "a gradient costs at most 4 evaluations of its function (Griewank & Walther 2008), applied to "
                 "the gradient's own graph); partly: at most twice that; "
                 "differs: more")
def hvp_cost(i: View, tol: float) -> Measured:
    t = i.json(HS).get("timing") or {}
    ratio = t.get("hvp_over_gradient", math.nan)
    if not math.isfinite(ratio):
        return Measured("–", not_measured("the hessian stage recorded no timing"))
    return Measured(f"{ratio:.2g} gradients ({t['hvp_seconds']:.3g} s against {t['gradient_seconds']:.3g} s)",
                    at_most(ratio, tol, 1.0),
                    fixed=f"a median of {t.get('repeats', '?')} timings on one machine, not a draw of the experiment")


@claim("momentum_cancels_oscillation", kind=MEASURED, figure="Hessian", source="§ Momentum-based optimization",
       book="An ill-conditioned Hessian shows as gradients that fluctuate wildly; momentum cancels the oscillation "
            "in the high-curvature directions while it accumulates movement toward the minimum.",
       needs=(Need(HS, "oscillation.csv"),),
       tolerance="from the SGD solution, mini-batch SGD and SGD with momentum at an lr of k / λ_max with k > 1 "
                 "(where gradient descent flips its sign along the top eigenvector each step), per batch-order "
                 "seed: the lag-1 autocorrelation of successive updates projected on the top Hessian eigenvector "
                 "(< 0: oscillating). Oscillates: SGD's below 0 and below its own along a random direction (the "
                 "control of average curvature); cancels: momentum's above 0. agrees: both; partly: one; differs: "
                 "neither (means over seeds, paired resamples)")
def momentum_cancels(i: View, tol: float) -> Measured:
    t = i.csv(HS, "oscillation.csv")
    t = t[(t["step_times_lambda_max"] > 1) & ~t["diverged"].astype(bool)] if len(t) else t
    runs = {(r.optimizer, r.direction) for r in t.itertuples()}
    if not {("sgd", "top"), ("sgd", "random"), ("sgd_momentum", "top")} <= runs:
        return Measured("–", not_measured("no SGD and momentum runs at an lr past 1 / λ_max in the hessian stage"))
    units = t.pivot_table(index="seed", columns=["optimizer", "direction"], values="autocorrelation")
    units.columns = [f"{o}:{d}" for o, d in units.columns]
    units = units.reset_index()

    def stats(u: pd.DataFrame) -> tuple[float, float, float]:
        return float(u["sgd:top"].mean()), float(u["sgd:random"].mean()), float(u["sgd_momentum:top"].mean())

    def decide(u: pd.DataFrame) -> Decision:
        sgd, control, momentum = stats(u)
        oscillates, cancels = sgd < 0 and sgd < control, momentum > 0
        # The statistic nearest to flipping: SGD's (to 0 or to its control) or momentum's (to 0).
        nearest = min((sgd, -momentum, sgd - control), key=abs)
        return graded(oscillates and cancels, oscillates or cancels, nearest, (0.0,))

    sgd, control, momentum = stats(units)
    k = ", ".join(f"{v:g}" for v in sorted(set(t["step_times_lambda_max"])))
    return resampled(f"lr {k} / λ_max: SGD's autocorrelation along the top eigenvector {sgd:+.2f} (random direction "
                     f"{control:+.2f}); momentum's {momentum:+.2f}", units, decide)
