"""Fig 6-9: training with and without momentum, both setups, several seeds."""

from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.measures import km_median, share_reached_by
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.axes import plain_log
from beyond_gd.report.claims import all_within, graded
from beyond_gd.report.registry import (AGREES, MEASURED, PARTLY, Decision, Drawn, FigureParams, Measured, claim,
                                       figure, not_measured, resampled)
from beyond_gd.report.style import Style, size
from beyond_gd.report.text import mean_std

MO = "momentum_speedup"
SETUP_TITLES = {"book_first_edition": "first-edition setup", "pytorch": "PyTorch setup"}
# The costs the momentum stage can time the target by (`momentum_speedup.setups.<setup>.cost`).
COST_NAMES = {"smoothed": "trailing mean", "epoch_last": "epoch's last mini-batch"}


@figure("fig6-09-momentum", title="Fig 6-9. Training with and without momentum: steps to a cost of 0.1",
        needs=(Need(MO, "steps.csv"), Need(MO, "epochs.csv"), Need(MO, "runs.csv"), Need(MO, "summary.csv"),
               Need(MO, "summary.json")),
        shows="The training cost against mini-batch steps for SGD(lr=0.01), with momentum 0.9 and with Nesterov "
              "momentum, in both setups: the first edition's (batch 100 on 55,000 images, He init, a ReLU on the "
              "logits; left) and the PyTorch baseline's (batch 64, torch's init; right). Lines: the trailing mean "
              "of the per-step cost, one per seed (each run stops a little after reaching the target; one that "
              "never reaches it runs to the step cap); faint "
              "dots: the cost of each epoch's last mini-batch, per seed, which is what the book plotted. Dashed: the "
              "target cost; large dots on it: each optimizer's Kaplan-Meier median of the steps to reach it (by "
              "the setup's cost, the runs that never reached it censored at the step cap; none where fewer than "
              "half reached it); grey verticals: the book's 18,000 and 2,000 steps. Below: the Kaplan-Meier "
              "share of seeds that had reached the target by each step, per optimizer; where it ends below 1 at "
              "the cap, the rest stalled.",
        book="Reaching a cost of 0.1 takes almost 18,000 mini-batch steps without momentum and just over 2,000 "
             "with it (a ratio of about 9).",
        notes="Every cell evaluates the whole training split at each epoch end "
              "(`momentum_speedup.eval_batch_size`): the crossing is timed three ways (the trailing mean, the "
              "epoch's last mini-batch, the training split's loss), and with the first edition's ReLU on the "
              "logits the output units that are zero on every training image are counted, and the unit positive "
              "on the smallest share of its own class's images is found. The page says how many seeds of each "
              "optimizer reached the target and names each stalled run with its dead output units, or its weakest"
              " one.\n\nSteps to the target are censored data: a run that never reached it within its setup's "
              "cap (`momentum_speedup.setups.<setup>.max_steps`) is censored there, and each optimizer's steps are "
              "the Kaplan-Meier median (`measures.km_median`), undefined where fewer than half of the seeds "
              "reached it, beside the stall rate (the share of seeds that never did); the ratio claims divide KM "
              "medians, and an undefined median makes them inconclusive.\n\nThe setups that run are "
              "`momentum_speedup.run_setups`: the default profile runs the PyTorch setup only, the thorough "
              "profile the first edition's too; a claim over every setup reads inconclusive while one has not "
              "run, and names it.")
def momentum_curves(i: View, p: FigureParams, s: Style) -> Drawn:
    steps, epochs, runs = i.csv(MO, "steps.csv"), i.csv(MO, "epochs.csv"), i.csv(MO, "runs.csv")
    summary, m = i.csv(MO, "summary.csv"), i.json(MO)
    setups = list(dict.fromkeys(summary["setup"]))
    optimizers = list(dict.fromkeys(summary["optimizer"]))
    colors = dict(zip(optimizers, sns.color_palette(n_colors=len(optimizers)), strict=True))
    fig, axes = plt.subplots(2, len(setups), figsize=size(s, rows=1.75), sharey="row", sharex="col",
                             squeeze=False, gridspec_kw={"height_ratios": (2.2, 1)})
    for ax, setup in zip(axes[0], setups, strict=True):
        rows = summary[summary["setup"] == setup].set_index("optimizer")
        for opt, dashes in zip(optimizers, itertools.cycle(("-", "--", ":", "-.")), strict=False):
            # One line per seed: seeds stop at different steps and a stuck seed stays high, so a mean
            # over seeds would jump wherever one of them ends.
            for k, (_seed, run) in enumerate(steps[(steps["setup"] == setup) & (steps["optimizer"] == opt)]
                                             .groupby("seed")):
                ax.plot(run["step"], run["smoothed"], color=colors[opt], ls=dashes, lw=1.2, alpha=0.9,
                        label=opt if k == 0 else None)
            last = epochs[(epochs["setup"] == setup) & (epochs["optimizer"] == opt)]
            ax.scatter(last["step"], last["epoch_last_loss"], color=colors[opt], s=4, alpha=0.35, lw=0)
            median = rows.loc[opt, "km_median"]
            if pd.notna(median):
                ax.scatter([median], [m["target_loss"]], color=colors[opt], s=45, zorder=4, edgecolor="white")
        for book in rows["book_steps"].dropna():
            ax.axvline(book, color="0.45", ls=":", lw=1.2)
            ax.text(book, 0.98, f" book {book:,.0f}", transform=ax.get_xaxis_transform(), rotation=90,
                    va="top", ha="right", fontsize="x-small", color="0.3")
        ax.axhline(m["target_loss"], color="0.3", ls="--", lw=1)
        ax.set_yscale("log")
        plain_log(ax.yaxis)
        ax.set(title=SETUP_TITLES.get(setup, setup))
        ax.legend(fontsize="small", title=f"{int(rows['seeds'].iloc[0])} seeds", title_fontsize="small")
    caps = _caps(runs, m)
    for ax, setup in zip(axes[1], setups, strict=True):
        for opt, dashes in zip(optimizers, itertools.cycle(("-", "--", ":", "-.")), strict=False):
            times, reached = censored(runs, setup, opt, caps[setup])
            grid = np.r_[0, np.sort(times[reached]), caps[setup]]
            ax.step(grid, share_reached_by(times, reached, grid), where="post", color=colors[opt], ls=dashes,
                    lw=1.2)
        ax.axhline(0.5, color="0.6", ls=":", lw=1)
        ax.set(xlabel="mini-batch step", ylim=(-0.03, 1.03))
    axes[0][0].set_ylabel(f"training cost, mean of {m['smoothing_window']} steps (nats)")
    axes[1][0].set_ylabel(f"share of seeds that\nreached {m['target_loss']:g} (KM)")
    fig.tight_layout()
    measured = "; ".join(
        f"{SETUP_TITLES.get(setup, setup)}: "
        + ", ".join(f"{r.optimizer} {int(r.reached)} of {int(r.seeds)} seeds reached {m['target_loss']:g} "
                    f"(stall rate {r.stall_rate:.0%}), KM median "
                    + ("undefined" if pd.isna(r.km_median) else f"{r.km_median:,.0f} steps")
                    for r in summary[summary["setup"] == setup].itertuples())
        + ", KM ratio " + ", ".join(f"{m['baseline']}/{r.optimizer} {_ratio(r.km_ratio)}"
                                    for r in summary[summary["setup"] == setup].itertuples()
                                    if r.optimizer != m["baseline"])
        for setup in setups) + (f" (target cost {m['target_loss']:g}, timed as the table says; a run that never "
                                "reached it is censored at its setup's step cap, and a KM median is undefined "
                                "where fewer than half of the seeds reached it; the book: 18,000 and 2,000, "
                                "ratio 9). The first epoch whose last mini-batch "
                                "alone fell below the target comes much earlier and scatters widely (table): "
                                "one mini-batch's cost is too noisy to time the crossing." + _stalled(m))
    return Drawn(fig, measured, _momentum_table(summary, m["baseline"]))


def _caps(runs: pd.DataFrame, m: dict) -> dict[str, float]:
    """Each setup's step cap (summary.json; where it has none, the most steps any of the setup's runs took)."""
    given = m.get("max_steps") or {}
    return {setup: float(given.get(setup, pd.to_numeric(rows["steps" if "steps" in rows else "steps_to_target"]).max()))
            for setup, rows in runs.groupby("setup", sort=False)}


def censored(runs: pd.DataFrame, setup: str, optimizer: str, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """One (setup, optimizer)'s steps to the target per seed, a run that never reached it at the cap, and which
    reached it."""
    value = pd.to_numeric(runs.loc[(runs["setup"] == setup) & (runs["optimizer"] == optimizer),
                                   "steps_to_target"]).to_numpy(dtype=np.float64)
    reached = np.isfinite(value)
    return np.where(reached, value, cap), reached


def _steps(median: float) -> str:
    return "undefined" if pd.isna(median) else f"{median:,.0f}"


def _ratio(value: float) -> str:
    return "undefined" if pd.isna(value) else f"{value:.2f}"


def _stalled(m: dict) -> str:
    """The runs that never reached the target, each with the output units dead at its end and the unit positive
    on the smallest share of its own class's images (ReLU on the logits)."""
    if not m.get("stalled"):
        return ""
    runs = [f"{SETUP_TITLES.get(r['setup'], r['setup'])} {r['optimizer']} seed {r['seed']} ("
            + (f"dead output units: class {r['dead_units'].replace(' ', ', ')}" if r["dead_units"] else
               "no dead output unit" + _weakest(r)) + ")" for r in m["stalled"]]
    return (" Stalled, never reaching the target within the step cap: " + "; ".join(runs) + ". A dead output "
            "unit is zero on every training image: with the ReLU on the logits it gets no gradient, and its class "
            "can never be predicted again; a unit positive on few of its own class's images is nearly so.")


def _weakest(r: dict) -> str:
    share = r.get("weakest_share")
    if share is None or pd.isna(share) or r.get("weakest_unit", -1) < 0:
        return ""
    return f"; class {r['weakest_unit']}'s unit positive on {share:.1%} of its images"


def _momentum_table(summary: pd.DataFrame, baseline: str) -> pd.DataFrame:
    def steps(prefix: str) -> list[str]:
        return [mean_std(r[f"{prefix}steps_mean"], r[f"{prefix}steps_std"])
                + ("" if r[f"{prefix}reached"] == r["seeds"] else f" [{int(r[f'{prefix}reached'])}/{int(r['seeds'])}]")
                for _, r in summary.iterrows()]

    return pd.DataFrame({
        "setup": summary["setup"], "optimizer": summary["optimizer"],
        "cost timed": summary["cost"].map(COST_NAMES),
        "steps to 0.1, KM median (censored at the cap)": [_steps(v) for v in summary["km_median"]],
        "stall rate (never reached by the cap)": [f"{v:.0%}" for v in summary["stall_rate"]],
        f"KM ratio {baseline}/optimizer": [_ratio(v) for v in summary["km_ratio"]],
        "steps to 0.1 over the seeds reaching it (mean ± std) [seeds]": steps(""),
        "range over seeds": [f"{a:,.0f}–{b:,.0f}" if pd.notna(a) else "–" for a, b in
                             zip(summary["steps_min"], summary["steps_max"], strict=True)],
        f"ratio {baseline}/optimizer, paired seeds reaching it": [
            mean_std(a, b, ".2f") for a, b in zip(summary["ratio_mean"], summary["ratio_std"], strict=True)],
        "first epoch-end mini-batch below 0.1 (step)": steps("epoch_last_"),
        "first epoch end with the training-set loss below 0.1 (step)": steps("train_loss_"),
        "book steps": [f"{v:,.0f}" if pd.notna(v) else "–" for v in summary["book_steps"]],
        "book ratio": [f"{v:g}" if pd.notna(v) else "–" for v in summary["book_ratio"]],
    })


SECTION = "§ Momentum-based optimization (Fig 6-9)"


def seed_steps(i: View) -> tuple[pd.DataFrame, dict]:
    """runs.csv as one row per seed: the steps to the target (by each setup's cost; NaN: not reached within the
    step cap) of every (setup, optimizer), in columns `<setup>/<optimizer>`. Seeds are shared by the setups
    and optimizers (the init and the batch order), so a resample of rows keeps every comparison paired."""
    runs, m = i.csv(MO, "runs.csv"), i.json(MO)
    wide = runs.assign(key=runs["setup"] + "/" + runs["optimizer"]).pivot(index="seed", columns="key",
                                                                          values="steps_to_target")
    return wide.astype("float64").reset_index(), {**m, "max_steps": _caps(runs, m)}


def median_steps(units: pd.DataFrame, key: str, cap: float) -> float:
    """The Kaplan-Meier median of one `<setup>/<optimizer>` column's steps, a seed that never reached the target
    censored at the cap (NaN: fewer than half of the seeds reached it)."""
    value = units[key].to_numpy(dtype=np.float64)
    reached = np.isfinite(value)
    return km_median(np.where(reached, value, cap), reached)


def km_ratio(units: pd.DataFrame, setup: str, over: str, under: str, cap: float) -> float:
    """over's KM median of the steps to the target / under's, in one setup (NaN where either is undefined)."""
    return median_steps(units, f"{setup}/{over}", cap) / median_steps(units, f"{setup}/{under}", cap)


def _setups(units: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(k.split("/")[0] for k in units.columns if "/" in k))


def undefined_medians(units: pd.DataFrame, keys: list[str], caps: dict[str, float]) -> str:
    """The caveat of a claim that divides or compares KM medians: the `<setup>/<optimizer>` of `keys` whose
    median is undefined, each with how many seeds reached the target, and what would settle it ("" if none)."""
    missing = [k for k in dict.fromkeys(keys) if math.isnan(median_steps(units, k, caps[k.split("/")[0]]))]
    if not missing:
        return ""
    parts = [f"{k.replace('/', ' ')} ({int(units[k].notna().sum())} of {len(units)} seeds within the "
             f"{caps[k.split('/')[0]]:,.0f}-step cap)" for k in missing]
    return ("the Kaplan-Meier median of the steps to the target is undefined for " + ", ".join(parts)
            + ": fewer than half of the seeds reached it; more seeds, or a longer cap, would settle it")


def caveats(units: pd.DataFrame, keys: list[str], m: dict) -> str:
    """A claim over every setup: the setups configured but not run (`momentum_speedup.run_setups`), then the
    undefined medians of `keys` ("" if neither)."""
    skipped = ("" if not m.get("not_run") else
               "not run: the " + ", ".join(SETUP_TITLES.get(s, s) for s in m["not_run"]) + " (where the book's "
               "numbers come from; momentum_speedup.run_setups, the thorough profile runs every setup)")
    medians = "" if reached_none(units, keys) else undefined_medians(units, keys, m["max_steps"])
    return "; ".join(p for p in (skipped, medians) if p)


def reached_none(units: pd.DataFrame, keys: list[str]) -> bool:
    """No seed of any of the `keys` reached the target: nothing measured (too short a cap), not a stall rate."""
    return not any(units[k].notna().any() for k in keys)


@claim("momentum_steps_ratio_about_9", kind=MEASURED, figure="Fig 6-9", source=SECTION,
       book="Momentum cuts the mini-batch steps to a cost of 0.1 about 9-fold (almost 18,000 without, just over "
            "2,000 with it, SGD at lr 0.01 and momentum 0.9).",
       needs=(Need(MO, "runs.csv"), Need(MO, "summary.csv"), Need(MO, "summary.json")),
       tolerance="ratio: SGD's Kaplan-Meier median of the steps to a cost of 0.1 / momentum's (each setup's "
                 "cost; a seed that never reached it censored at the step cap), resampled by seed. agrees: within "
                 "{tol:.0%} of the book's 9 in every setup; partly: in some, or momentum faster in every setup but "
                 "farther from 9; differs: neither; inconclusive: a median undefined (fewer than half of the seeds "
                 "reached the target); not measured: no seed of either reached it")
def momentum_ratio(i: View, tol: float) -> Measured:
    units, m = seed_steps(i)
    caps = m["max_steps"]
    summary = i.csv(MO, "summary.csv")
    book = summary[summary["book_ratio"].notna() & (summary["optimizer"] != m["baseline"])]
    pairs = [(r.setup, r.optimizer, float(r.book_ratio)) for r in book.itertuples()]
    keys = [f"{s}/{o}" for s, o, _ in pairs] + [f"{s}/{m['baseline']}" for s, _, _ in pairs]

    def decide(u: pd.DataFrame) -> Decision:
        if reached_none(u, keys):
            return not_measured("no seed reached the target with either optimizer")
        ratios = [(km_ratio(u, s, m["baseline"], o, caps[s]), b) for s, o, b in pairs]
        measured = [(r, b) for r, b in ratios if math.isfinite(r)]
        if not measured:
            return not_measured("no Kaplan-Meier median ratio is defined: fewer than half of the seeds reached "
                                "the target in every setup")
        d = all_within([r / b - 1 for r, b in measured], tol)
        faster = all(r > 1 for r, _ in measured)
        return graded(d.verdict == AGREES, d.verdict == PARTLY or faster, d.statistic, d.thresholds)

    return resampled("; ".join(f"{s}: {_ratio(km_ratio(units, s, m['baseline'], o, caps[s]))} (book {b:g})"
                               for s, o, b in pairs), units, decide,
                     caveat=caveats(units, keys, m))


@claim("momentum_steps_18000_and_2000", kind=MEASURED, figure="Fig 6-9", source=SECTION,
       book="Reaching a cost of 0.1 takes almost 18,000 mini-batch steps without momentum and just over 2,000 "
            "with it.",
       needs=(Need(MO, "runs.csv"), Need(MO, "summary.csv"), Need(MO, "summary.json")),
       tolerance="|steps / book steps - 1| <= {tol:.0%} (steps to a cost of 0.1 timed by each setup's cost: the "
                 "Kaplan-Meier median over seeds, a seed that never reached it censored at the step cap). agrees: "
                 "for both optimizers in every setup; partly: for some; differs: for none; inconclusive: a median "
                 "undefined (fewer than half of the seeds reached the target); not measured: no seed reached it")
def momentum_steps(i: View, tol: float) -> Measured:
    units, m = seed_steps(i)
    caps = m["max_steps"]
    rows = i.csv(MO, "summary.csv")
    rows = rows[rows["book_steps"].notna()]
    keys = [(f"{r.setup}/{r.optimizer}", r.setup, float(r.book_steps)) for r in rows.itertuples()]

    def decide(u: pd.DataFrame) -> Decision:
        if reached_none(u, [k for k, _, _ in keys]):
            return not_measured("no run reached the target within its step cap")
        medians = [(median_steps(u, k, caps[s]), book) for k, s, book in keys]
        errors = [med / book - 1 for med, book in medians if math.isfinite(med)]
        if not errors:
            return not_measured("no Kaplan-Meier median is defined: fewer than half of the seeds reached the "
                                "target everywhere")
        return all_within(errors, tol)

    def said(k: str, s: str, book: float) -> str:
        med = median_steps(units, k, caps[s])
        n = f"{int(units[k].notna().sum())} of {len(units)} seeds"
        return (f"{k.replace('/', ' ')}: " + (f"undefined ({n})" if math.isnan(med) else
                                              f"{med:,.0f} ({med / book - 1:+.0%}, {n})"))

    names = [k for k, _, _ in keys]
    return resampled("; ".join(said(*k) for k in keys), units, decide,
                     caveat=caveats(units, names, m))


@claim("momentum_is_the_larger_step", kind=MEASURED, figure="Fig 6-9", source=SECTION,
       book="The momentum term increases the step we take (hence momentum may need a lower lr than plain SGD): "
            "read as the account of Fig 6-9's speed-up, SGD at the equal effective step ε/(1 − m) needs about "
            "as many steps to a cost of 0.1 as momentum m.",
       needs=(Need(MO, "runs.csv"), Need(MO, "summary.json")),
       tolerance="equal-step SGD's Kaplan-Meier median of the steps to a cost of 0.1 / momentum's (a seed that "
                 "never reached it censored at the step cap), resampled by seed: within {tol:.0%} of 1. agrees: in "
                 "every setup; partly: in some; differs: in none (momentum faster or slower than its larger step "
                 "explains); inconclusive: a median undefined (fewer than half of the seeds reached the target)")
def momentum_is_the_larger_step(i: View, tol: float) -> Measured:
    units, m = seed_steps(i)
    if m.get("equal_step") is None:
        return Measured("–", not_measured("momentum_speedup ran no equal-step control (equal_step_of: null)"))
    caps = m["max_steps"]
    setups = _setups(units)
    keys = [f"{s}/{o}" for s in setups for o in (m["equal_step"], m["equal_step_of"])]

    def decide(u: pd.DataFrame) -> Decision:
        if reached_none(u, keys):
            return not_measured("no seed reached the target with the equal-step SGD or momentum")
        ratios = [km_ratio(u, s, m["equal_step"], m["equal_step_of"], caps[s]) for s in setups]
        measured = [r for r in ratios if math.isfinite(r)]
        if not measured:
            return not_measured("no Kaplan-Meier median ratio is defined: fewer than half of the seeds reached "
                                "the target in every setup")
        return all_within([r - 1 for r in measured], tol)

    ratios = [_ratio(km_ratio(units, s, m["equal_step"], m["equal_step_of"], caps[s])) for s in setups]
    return resampled(f"{m['equal_step']} (lr {m['equal_step_lr']:.3g}) / {m['equal_step_of']}, KM medians of the "
                     "steps: " + "; ".join(f"{s} {r}" for s, r in zip(setups, ratios, strict=True)), units, decide,
                     caveat=caveats(units, keys, m))
