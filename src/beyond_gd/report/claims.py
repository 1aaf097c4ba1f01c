"""The chapter's claims, checked against the artifacts: a registry of entries, one per claim.

An entry (`Claim`) is an id, the figure it belongs to, the book's statement,
the artifact files it reads, how its tolerance reads, and a `check` that
measures from those files and returns the measured value (text) and a verdict
computed by one of the comparators below; nothing here types a verdict. Each
claim's tolerance is `report.claims.<id>` in params. Adding a claim is one
decorated function and one line of conf/report/default.yaml:

    @claim("steps_to_cost_0_1", figure="Fig 6-9", book="...", needs=(...), tolerance="ratio within {tol:.0%}")
    def steps_ratio(i: Inputs, tol: float) -> Measured: ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from beyond_gd.report.artifacts import Inputs, Need

AGREES, PARTLY, DIFFERS = "agrees", "partly", "differs"
VERDICTS = (AGREES, PARTLY, DIFFERS)


@dataclass(frozen=True)
class Measured:
    value: str  # what we measured, as the table shows it
    verdict: str  # one of VERDICTS, from a comparator


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str
    book: str  # the book's statement (or the theory the pipeline checks it by)
    needs: tuple[Need, ...]
    tolerance: str  # how the tolerance reads; "{tol}" is replaced by its value
    check: Callable[[Inputs, float], Measured]


CLAIMS: list[Claim] = []


def claim(id: str, *, figure: str, book: str, needs: tuple[Need, ...], tolerance: str) -> Callable:
    def register(check: Callable[[Inputs, float], Measured]) -> Callable:
        if any(c.id == id for c in CLAIMS):
            raise ValueError(f"claim {id!r} registered twice")
        CLAIMS.append(Claim(id, figure, book, needs, tolerance, check))
        return check

    return register


def evaluate(claims: Iterable[Claim], view: Callable[[Iterable[Need]], Inputs],
             tolerances: dict[str, float]) -> pd.DataFrame:
    """One row per claim: id, figure, book, measured, tolerance, verdict."""
    rows = []
    for c in claims:
        tol = tolerances[c.id]
        result = c.check(view(c.needs), tol)
        if result.verdict not in VERDICTS:
            raise ValueError(f"claim {c.id}: verdict {result.verdict!r} is not one of {VERDICTS}")
        rows.append({"id": c.id, "figure": c.figure, "book": c.book, "measured": result.value,
                     "tolerance": c.tolerance.format(tol=tol), "verdict": result.verdict})
    return pd.DataFrame(rows, columns=["id", "figure", "book", "measured", "tolerance", "verdict"])


# --------------------------------------------------------------------------
# Comparators: measured numbers and a tolerance in, a verdict out
# --------------------------------------------------------------------------
def all_within(errors: Iterable[float], tol: float) -> str:
    """Every |error| <= tol: agrees; some: partly; none: differs."""
    inside = [abs(e) <= tol for e in errors]
    return AGREES if all(inside) else PARTLY if any(inside) else DIFFERS


def all_beyond(values: Iterable[float], tol: float) -> str:
    """Every |value| > tol (a difference that is real): agrees; some: partly; none: differs."""
    beyond = [abs(v) > tol for v in values]
    return AGREES if all(beyond) else PARTLY if any(beyond) else DIFFERS


def at_most(value: float, limit: float, slack: float) -> str:
    """value <= limit: agrees; within a relative slack above it: partly; beyond: differs."""
    return AGREES if value <= limit else PARTLY if value <= limit * (1 + slack) else DIFFERS


def at_least(value: float, threshold: float) -> str:
    """value >= threshold: agrees; positive but short of it: partly; <= 0: differs."""
    return AGREES if value >= threshold else PARTLY if value > 0 else DIFFERS


def both(*conditions: bool) -> str:
    """Every part of a claim holds: agrees; some: partly; none: differs."""
    return AGREES if all(conditions) else PARTLY if any(conditions) else DIFFERS


SURF, RW, UR = "surfaces", "random_walk", "update_rules"
SURF_METRICS = Need(SURF, "metrics.json")


# --------------------------------------------------------------------------
# The claims, in the chapter's order
# --------------------------------------------------------------------------
@claim("noise_escapes_shallow_minima", figure="Fig 6-1",
       book="Mini-batch noise pushes us out of shallow local minima, but not out of deep ones.",
       needs=(SURF_METRICS,), tolerance="escape share from the shallow minimum exceeds the deep one's by >= {tol:g}")
def noise_escapes(i: Inputs, tol: float) -> Measured:
    m = i.json(SURF)
    gap = m["escape_share_shallow"] - m["escape_share_deep"]
    return Measured(f"left the shallow minimum {m['escape_share_shallow']:.1%}, the deep one "
                    f"{m['escape_share_deep']:.1%} (gap {gap:.2f})", at_least(gap, tol))


ID, IP = "identifiability", "interpolate"
SYMMETRIES = ("permutation", "rescaling", "both")
# The book's model, Net(784, 256, 10): two hidden Linear-ReLU layers of 256 neurons, hence "(256!)^2".
BOOK_HIDDEN_WIDTH, BOOK_HIDDEN_LAYERS = 256, 2


@claim("identifiability_round_off", figure="Fig 6-2",
       book="Permuting a layer's neurons, or scaling a ReLU unit's incoming weights by k and its outgoing ones "
            "by 1/k, gives an equivalent network: the outputs do not change.",
       needs=(Need(ID, "metrics.json"),),
       tolerance="relative change of logits and test loss <= {tol:g} float32 epsilons under the symmetries, "
                 "above it for the control")
def identifiability(i: Inputs, tol: float) -> Measured:
    m = i.json(ID)
    limit = tol * m["float32_eps"]

    def changes(name: str) -> tuple[float, float]:
        return m[name]["rel_logit_change"], m[name]["test_loss_change"] / m["test_loss"]

    sym = [v for name in SYMMETRIES for v in changes(name)]
    control = changes("control")
    return Measured(f"symmetries: at most {max(sym[0::2]) / m['float32_eps']:.1f} ε on the logits, "
                    f"{max(sym[1::2]) / m['float32_eps']:.2f} ε on the test loss, "
                    f"{int(max(m[n]['predictions_changed'] for n in SYMMETRIES))} predictions changed; control "
                    f"{control[0]:.2g} and {control[1]:.2g} (relative)",
                    both(all(v <= limit for v in sym), all(v > limit for v in control)))


@claim("equivalent_orderings_256_factorial_squared", figure="Fig 6-2",
       book="A layer of n neurons has n! orderings, l such layers (n!)^l: (256!)^2 for the chapter's MLP "
            "(log10 ≈ 1013.9).",
       needs=(Need(ID, "metrics.json"),), tolerance="|log10 measured - log10 (256!)^2| <= {tol:g}")
def equivalent_orderings(i: Inputs, tol: float) -> Measured:
    m = i.json(ID)
    book = BOOK_HIDDEN_LAYERS * math.lgamma(BOOK_HIDDEN_WIDTH + 1) / math.log(10)
    return Measured(f"log10 = {m['log10_orderings']:.4f} for {m['hidden_layers']} hidden layers (book "
                    f"{book:.4f})", all_within([m["log10_orderings"] - book], tol))


@claim("no_local_minimum_between_0_and_1", figure="Fig 6-3",
       book="On the line from the SGD solution (α = 0) to a random point (α = 1) the training loss has no "
            "troublesome local minimum.",
       needs=(Need(IP, "path.csv"),),
       tolerance="no training-loss point in 0 < α < 1 below both grid neighbours by more than {tol:g} nats, "
                 "on every θ_rand")
def no_local_minimum(i: Inputs, tol: float) -> Measured:
    minima = {label: _dips(rows, tol) for label, rows in _paths(i.csv(IP, "path.csv"), "train")}
    found = {label: alphas for label, alphas in minima.items() if alphas}
    where = "; ".join(f"{label} at α = {', '.join(f'{a:g}' for a in alphas)}" for label, alphas in found.items())
    return Measured(f"{len(minima) - len(found)} of {len(minima)} training-loss paths without a local minimum in "
                    f"(0, 1)" + (f" ({where})" if where else ""),
                    AGREES if not found else PARTLY if len(found) < len(minima) else DIFFERS)


@claim("flat_region_near_alpha_1", figure="Fig 6-3",
       book="Around α = 1 (the random point) the training loss has a flat region with a near-zero gradient.",
       needs=(Need(IP, "summary.csv"),),
       tolerance="mean |dL/dα| near α = 1 <= {tol:g} × the mean on [0, window), on every θ_rand")
def flat_region(i: Inputs, tol: float) -> Measured:
    s = i.csv(IP, "summary.csv")
    train = s[s["split"] == "train"]
    steep = train[train["slope_ratio"] > tol]
    return Measured(f"slope near 1 / slope before: {train['slope_ratio'].min():.3f}–{train['slope_ratio'].max():.3f} "
                    f"over {len(train)} θ_rand (|dL/dα| near 1: {train['slope_near_1'].min():.2g}–"
                    f"{train['slope_near_1'].max():.2g} nats)"
                    + "".join(f"; not flat for {r.theta_rand} ({r.slope_ratio:.2f})" for r in steep.itertuples()),
                    all_within(train["slope_ratio"], tol))


@claim("interpolation_holds_over_and_over", figure="Fig 6-3",
       book="The picture holds \"if we run this experiment over and over\": every random point gives the same "
            "shape.",
       needs=(Need(IP, "summary.csv"),),
       tolerance="on every θ_rand and split: no local minimum in (0, 1) (the stage's count) and flatter near α = 1 "
                 "than before; at least {tol:g} θ_rand")
def over_and_over(i: Inputs, tol: float) -> Measured:
    s = i.csv(IP, "summary.csv")
    holds = ((s["local_minima"] == 0) & (s["slope_ratio"] < 1)).groupby(s["theta_rand"]).all()
    n, ok = len(holds), int(holds.sum())
    return Measured(f"holds for {ok} of {n} θ_rand ({', '.join(holds.index)}) on {s['split'].nunique()} split(s); "
                    f"loss at α = 1 from {s['loss_at_1'].min():.3f} to {s['loss_at_1'].max():.3f}",
                    AGREES if ok == n >= tol else PARTLY if ok > 0 else DIFFERS)


def _paths(path: pd.DataFrame, split: str) -> Iterable[tuple[str, pd.DataFrame]]:
    rows = path[path["split"] == split]
    for label in dict.fromkeys(rows["theta_rand"]):
        yield label, rows[rows["theta_rand"] == label].sort_values("alpha")


def _dips(rows: pd.DataFrame, depth: float) -> list[float]:
    """The α in (0, 1) where the loss lies more than `depth` below both grid neighbours."""
    alpha, loss = rows["alpha"].to_numpy(), rows["loss"].to_numpy()
    inner = np.flatnonzero((alpha > 0) & (alpha < 1))
    inner = inner[(inner > 0) & (inner < len(alpha) - 1)]
    below = np.minimum(loss[inner - 1], loss[inner + 1]) - loss[inner] > depth
    return [float(a) for a in alpha[inner][below]]


@claim("minima_share_k_over_3_to_the_d", figure="Fig 6-4",
       book="With k critical points, about k/3 are minima in 1-D and k/3^d in d dimensions.",
       needs=(Need(SURF, "fig6_4_minima_share.csv"),),
       tolerance="share falls with d and stays within a factor {tol:g} of 1/3^d at every d")
def minima_share(i: Inputs, tol: float) -> Measured:
    t = i.csv(SURF, "fig6_4_minima_share.csv").sort_values("d")
    seen = t[t["minima"] > 0]
    ratio = seen["share"] / seen["book_share"]
    # Where no sample was a minimum, the 95% upper bound stands in for the share.
    ratio_all = np.where(t["minima"] > 0, t["share"], t["share_high"]) / t["book_share"]
    falls = bool(np.all(np.diff(t["share"]) <= 0) and seen["share"].is_monotonic_decreasing)
    within = bool(np.all((ratio_all >= 1 / tol) & (ratio_all <= tol)))
    worst = seen.iloc[int(np.argmin(ratio))] if len(seen) else t.iloc[0]
    return Measured(f"d = 1: {t['share'].iloc[0]:.3f} (book 0.333); measured / book from {ratio.iloc[0]:.2f} "
                    f"(d = 1) to {ratio.min():.1e} (d = {int(worst['d'])}); "
                    f"{'falls' if falls else 'does not fall'} with d", both(falls, within))


@claim("saddle_hessian_signs", figure="Fig 6-5",
       book="The saddle looks like a minimum along A-B and a maximum along C-D: its Hessian has eigenvalues "
            "of both signs.",
       needs=(SURF_METRICS, Need(SURF, "fig6_5_cuts.csv")),
       tolerance="eigenvalues beyond ±{tol:g}; each cut's extremum at the saddle")
def saddle_signs(i: Inputs, tol: float) -> Measured:
    m, cuts = i.json(SURF), i.csv(SURF, "fig6_5_cuts.csv")
    lo, hi = m["saddle_hessian_eig_min"], m["saddle_hessian_eig_max"]
    at_saddle = {name: rows.loc[rows["s"].abs().idxmin(), "z"] for name, rows in cuts.groupby("cut")}
    ab_min = bool(at_saddle["A-B"] <= cuts.loc[cuts["cut"] == "A-B", "z"].min() + tol)
    cd_max = bool(at_saddle["C-D"] >= cuts.loc[cuts["cut"] == "C-D", "z"].max() - tol)
    return Measured(f"eigenvalues {lo:g}, {hi:g}; A-B {'minimum' if ab_min else 'no minimum'} and C-D "
                    f"{'maximum' if cd_max else 'no maximum'} at the saddle", both(lo < -tol < tol < hi, ab_min,
                                                                                    cd_max))


@claim("gradient_angle_up_to_90", figure="Fig 6-6",
       book="On elliptical contours the gradient can point up to 90° away from the direction to the minimum.",
       needs=(Need(SURF, "fig6_6_largest_angle.csv"),),
       tolerance="largest angle grows with κ, never above 90°, within {tol:g}° of 90° at the largest κ")
def gradient_angle(i: Inputs, tol: float) -> Measured:
    t = i.csv(SURF, "fig6_6_largest_angle.csv").sort_values("condition_number")
    angles = t["largest_angle_deg"].to_numpy()
    grows = bool(np.all(np.diff(angles) >= -1e-9) and angles.max() <= 90)
    near = bool(90 - angles[-1] <= tol)
    return Measured(f"{angles[-1]:.2f}° at κ = {t['condition_number'].iloc[-1]:g} "
                    f"(theory {t['theory_deg'].iloc[-1]:.2f}°); {'grows' if grows else 'does not grow'} with κ",
                    both(grows, near))


@claim("gradient_turns_on_ellipses", figure="Fig 6-7",
       book="Along the steepest-descent line the gradient changes direction; on circular contours it would not.",
       needs=(SURF_METRICS,), tolerance="turn > {tol:g}° on the ellipse, <= {tol:g}° on the circle")
def gradient_turns(i: Inputs, tol: float) -> Measured:
    m = i.json(SURF)
    return Measured(f"ellipse {m['turn_deg_ellipse']:.1f}°, circle {m['turn_deg_circle']:.2g}°",
                    both(m["turn_deg_ellipse"] > tol, m["turn_deg_circle"] <= tol))


@claim("momentum_reduces_volatility", figure="Fig 6-8",
       book="Momentum sharply reduces the volatility of the updates; the larger it is, the smoother the walk.",
       needs=(Need(RW, "std.csv"),),
       tolerance="std falls at every larger momentum, to <= {tol:g} × the no-momentum std at the largest")
def momentum_volatility(i: Inputs, tol: float) -> Measured:
    t = i.csv(RW, "std.csv").sort_values("momentum")
    falls = bool(np.all(np.diff(t["measured_std"]) < 0))
    fraction = t["measured_std"].iloc[-1] / t["measured_std"].iloc[0]
    return Measured(f"std {t['measured_std'].iloc[0]:.2f} at m = {t['momentum'].iloc[0]:g} → "
                    f"{t['measured_std'].iloc[-1]:.2f} at m = {t['momentum'].iloc[-1]:g} ({fraction:.1%})",
                    both(falls, fraction <= tol))


@claim("random_walk_std_ewma_theory", figure="Fig 6-8",
       book="(Theory for the book's smoothing) the smoothed steps' std is sqrt((1 - m)/(1 + m)) × the raw std.",
       needs=(Need(RW, "std.csv"),), tolerance="|measured / theory - 1| <= {tol:.0%} at every momentum")
def random_walk_theory(i: Inputs, tol: float) -> Measured:
    t = i.csv(RW, "std.csv")
    worst = t.iloc[int((t["ratio"] - 1).abs().argmax())]
    return Measured(f"largest |ratio - 1| {abs(worst['ratio'] - 1):.2%} (m = {worst['momentum']:g}) over "
                    f"{len(t)} momenta", all_within(t["ratio"] - 1, tol))


MO, OG = "momentum", "optimizer_grid"


@claim("momentum_steps_ratio_about_9", figure="Fig 6-9",
       book="Momentum cuts the mini-batch steps to a cost of 0.1 about 9-fold (18,000 without, 2,000 with).",
       needs=(Need(MO, "summary.csv"), Need(MO, "metrics.json")),
       tolerance="|ratio / book ratio - 1| <= {tol:.0%} in every setup (ratio: SGD's steps / momentum's to a "
                 "cost of 0.1 timed by each setup's cost, mean over seeds, paired by seed)")
def momentum_ratio(i: Inputs, tol: float) -> Measured:
    summary, m = i.csv(MO, "summary.csv"), i.json(MO)
    rows = summary[summary["book_ratio"].notna() & (summary["optimizer"] != m["baseline"])]
    errors = [math.inf if pd.isna(r.ratio_mean) else r.ratio_mean / r.book_ratio - 1
              for r in rows.itertuples()]
    return Measured("; ".join(f"{r.setup}: {_ratio_text(r)} (book {r.book_ratio:g})" for r in rows.itertuples()),
                    all_within(errors, tol))


@claim("momentum_steps_18000_and_2000", figure="Fig 6-9",
       book="Reaching a cost of 0.1 takes almost 18,000 mini-batch steps without momentum and just over 2,000 "
            "with it.",
       needs=(Need(MO, "summary.csv"),),
       tolerance="|steps / book steps - 1| <= {tol:.0%} for both optimizers in every setup (steps to a "
                 "cost of 0.1 timed by each setup's cost, mean over the seeds that reached it)")
def momentum_steps(i: Inputs, tol: float) -> Measured:
    rows = i.csv(MO, "summary.csv")
    rows = rows[rows["book_steps"].notna()]
    errors = [math.inf if pd.isna(r.steps_mean) else r.steps_mean / r.book_steps - 1
              for r in rows.itertuples()]
    return Measured("; ".join(
        f"{r.setup} {r.optimizer}: " + ("not reached" if pd.isna(r.steps_mean) else
                                       f"{r.steps_mean:,.0f} ({error:+.0%}, {int(r.reached)} of "
                                       f"{int(r.seeds)} seeds)")
        for r, error in zip(rows.itertuples(), errors, strict=True)), all_within(errors, tol))


def _ratio_text(r: tuple) -> str:
    if pd.isna(r.ratio_mean):
        return "not reached"
    return f"{r.ratio_mean:.2f}" + (f" ± {r.ratio_std:.2f}" if pd.notna(r.ratio_std) else "")


@claim("cg_two_steps_in_2d", figure="Fig 6-10",
       book="Conjugate gradient reaches the minimum of a 2-D quadratic in 2 steps; steepest descent zig-zags.",
       needs=(SURF_METRICS,), tolerance="<= 2 steps, distance to the minimum after step 2 <= {tol:g}")
def cg_two_steps(i: Inputs, tol: float) -> Measured:
    m = i.json(SURF)
    return Measured(f"CG {m['cg_2d_iterations']} steps (distance {m['cg_2d_distance_after_2_steps']:.1e}), "
                    f"steepest descent {m['sd_2d_iterations']}",
                    both(m["cg_2d_iterations"] is not None and m["cg_2d_iterations"] <= 2,
                         m["cg_2d_distance_after_2_steps"] <= tol))


@claim("cg_n_steps", figure="Fig 6-10",
       book="Conjugate gradient minimises an n-dimensional quadratic in at most n steps.",
       needs=(SURF_METRICS,), tolerance="<= n iterations (partly: <= n × (1 + {tol:g}), float round-off)")
def cg_n_steps(i: Inputs, tol: float) -> Measured:
    m = i.json(SURF)
    its = m["cg_nd_iterations"]
    verdict = DIFFERS if its is None else at_most(its, m["nd_dim"], tol)  # None: never reached the tolerance
    return Measured(f"CG {its} iterations for n = {m['nd_dim']} (κ = {m['nd_condition_number']:g}); "
                    f"steepest descent {m['sd_nd_iterations']}", verdict)


@claim("adam_bias_factor", figure="Adam",
       book="With v_0 = 0, E[v_i] = (1 - β₂^i) E[g²]: the bias Adam's correction divides out.",
       needs=(Need(UR, "adam_bias.csv"),), tolerance="|measured / (1 - β₂^i) - 1| <= {tol:.0%} at every step")
def adam_bias(i: Inputs, tol: float) -> Measured:
    b = i.csv(UR, "adam_bias.csv")
    return Measured(f"largest relative difference {b['rel_error'].abs().max():.2%} over steps 1-{len(b)}",
                    all_within(b["rel_error"], tol))


@claim("update_rules_same_maths", figure="Update rules",
       book="The chapter's equations (SGD, momentum, Nesterov, AdaGrad, RMSProp with and without momentum, "
            "Adam with bias correction) are what torch.optim computes, where the algebra is the same.",
       needs=(Need(UR, "findings.csv"),), tolerance="largest |book - torch| <= {tol:g} in every such comparison")
def rules_same(i: Inputs, tol: float) -> Measured:
    f = i.csv(UR, "findings.csv")
    same = f[f["same_maths"]]
    return Measured(f"{len(same)} comparisons, largest difference {same['max_abs_diff'].max():.1e}",
                    all_within(same["max_abs_diff"], tol))


@claim("update_rules_torch_differs", figure="Update rules",
       book="Where torch.optim's definitions differ from the chapter's text (an lr-free momentum buffer, "
            "Nesterov's stored point, AdaGrad's delta and initial_accumulator_value, RMSProp's momentum not "
            "Nesterov's, Adam's eps placement), the runs differ.",
       needs=(Need(UR, "findings.csv"),), tolerance="largest |book - torch| > {tol:g} in every such comparison")
def rules_differ(i: Inputs, tol: float) -> Measured:
    f = i.csv(UR, "findings.csv")
    differ = f[~f["same_maths"]]
    return Measured(f"{len(differ)} comparisons, smallest difference {differ['max_abs_diff'].min():.1e}",
                    all_beyond(differ["max_abs_diff"], tol))


# The chapter's "most popular" optimizers besides plain mini-batch SGD, by their
# entries in the `optimizers` section (conf/optimizer/).
POPULAR = ("momentum", "rmsprop", "rmsprop_momentum", "adam", "adadelta")


@claim("popular_optimizers_beat_sgd", figure="Optimizer grid",
       book="Momentum, RMSProp, RMSProp with momentum, Adam and AdaDelta (the chapter's most popular optimizers) "
            "train the network better than plain mini-batch SGD.",
       needs=(Need(OG, "summary.csv"),),
       tolerance="each, at its best lr, ends the same budget with a training cost at least {tol:.0%} below SGD's "
                 "at its best lr (mean over seeds)")
def popular_beat_sgd(i: Inputs, tol: float) -> Measured:
    summary = i.csv(OG, "summary.csv").set_index("optimizer")
    sgd = summary.loc["sgd", "final_loss_mean"]
    gains = {name: 1 - summary.loc[name, "final_loss_mean"] / sgd for name in POPULAR if name in summary.index}
    return Measured(f"SGD {sgd:.3f}; " + ", ".join(
        f"{name} {summary.loc[name, 'final_loss_mean']:.3f} ({-gain:+.0%})" for name, gain in gains.items()),
        both(*(gain >= tol for gain in gains.values())) if gains else DIFFERS)
