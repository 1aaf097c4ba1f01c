"""The chapter's update rules beside torch.optim."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import graded, holds
from beyond_gd.report.registry import (AGREES, CHECK, DIFFERS, MEASURED, Drawn, FigureParams, Measured, claim, figure,
                                       not_measured)
from beyond_gd.report.style import Style, size

UR = "update_rules"


@figure("extra-update-rules", title="The chapter's update rules beside torch.optim",
        needs=(Need(UR, "findings.csv"), Need(UR, "summary.json")),
        shows="For each comparison of a rule written from the chapter's equations with the matching torch.optim "
              "call on one stream of mini-batch gradients: the largest difference of any parameter over the "
              "run (log scale), coloured by whether the algebra says the two are the same; the dotted line "
              "is the agreement tolerance.",
        book="The chapter's equations for momentum, Nesterov, AdaGrad, RMSProp (with momentum) and Adam, and "
             "its torch.optim constructor calls; where torch's definitions differ from the text, the report "
             "says so.")
def update_rules(i: View, p: FigureParams, s: Style) -> Drawn:
    f, m = i.csv(UR, "findings.csv"), i.json(UR)
    f = f.assign(label=f["rule"] + ": " + f["case"],
                 kind=np.where(f["same_maths"], "same maths as the book", "torch differs from the book"),
                 shown=f["max_abs_diff"].clip(lower=1e-18))  # an exact 0 has no place on a log axis
    fig, ax = plt.subplots(figsize=size(s, rows=0.11 * len(f) + 0.4, width=0.9))
    kinds = dict(zip(("same maths as the book", "torch differs from the book"), sns.color_palette(n_colors=2),
                     strict=True))
    rows = np.arange(len(f))[::-1]  # the first comparison on top
    floor = 10 ** np.floor(np.log10(f["shown"].min()) - 1)  # bars grow from here: a log axis has no 0
    for kind, color in kinds.items():
        mask = (f["kind"] == kind).to_numpy()
        ax.barh(rows[mask], f["shown"][mask] - floor, left=floor, color=color, label=kind, height=0.7)
    ax.set_xscale("log")
    ax.set_xlim(left=floor)
    ax.set_yticks(rows, f["label"])
    ax.axvline(m["tolerance"], color="0.2", ls=":", label=f"tolerance {m['tolerance']:g}")
    ax.set(xlabel=f"largest |book − torch| over {m['steps']} steps (parameter units)", ylabel=None)
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=3, frameon=False)
    fig.tight_layout()
    table = f[["rule", "case", "book_form", "torch_form", "max_abs_diff", "agrees", "same_maths"]].rename(
        columns={"book_form": "book form", "torch_form": "torch form", "max_abs_diff": "max |diff|",
                 "same_maths": "same maths"})
    table["max |diff|"] = table["max |diff|"].map(lambda v: f"{v:.2e}")
    measured = (f"{m['agree']} of {m['comparisons']} comparisons agree to {m['tolerance']:g} (largest "
                f"{m['max_diff_same_maths']:.1e}), exactly those where the maths is the same; the "
                f"{m['comparisons'] - m['same_maths']} differences are real (smallest {m['min_diff_differing']:.1e}).")
    return Drawn(fig, measured, table)


# The comparisons whose torch side is what the chapter's text says of PyTorch (rules.COMPARISONS' rule and
# case): each is a claim of its own, with a verdict on the chapter's sentence.
TEXT_ADAGRAD = ("adagrad", "book's delta as initial_accumulator_value")
TEXT_RMSPROP = ("rmsprop_nesterov", "the text: RMSProp's momentum is Nesterov's")
ARITHMETIC = "both sides are float64 arithmetic on one fixed gradient stream: nothing random decides it"


def _about_text(f: pd.DataFrame) -> pd.Series:
    return pd.Series([(r, c) in (TEXT_ADAGRAD, TEXT_RMSPROP) for r, c in zip(f["rule"], f["case"], strict=True)],
                     index=f.index)


@claim("update_rules_same_maths", kind=CHECK, figure="Update rules",
       source="§ Momentum-based optimization; § Learning rate adaptation (the update equations)",
       book="The chapter's equations (SGD, momentum, Nesterov, AdaGrad, RMSProp with and without momentum, "
            "Adam with bias correction) are what torch.optim computes, where the algebra is the same.",
       needs=(Need(UR, "findings.csv"),), uses=("round_off_float64",),
       tolerance="holds: largest |book - torch| <= {round_off_float64:g} in every comparison whose algebra is the "
                 "same; fails otherwise")
def rules_same(i: View, tol: float, round_off: float) -> Measured:
    f = i.csv(UR, "findings.csv")
    same = f[f["same_maths"]]
    return Measured(f"{len(same)} comparisons, largest difference {same['max_abs_diff'].max():.1e}"
                    + "".join(f"; {r.rule} ({r.case}) {r.max_abs_diff:.1e}" for r in same.itertuples()
                              if not r.max_abs_diff <= round_off),
                    holds(bool(len(same)) and bool((same["max_abs_diff"] <= round_off).all())))


@claim("update_rules_torch_differs", kind=CHECK, figure="Update rules", source="control (torch.optim's own docs)",
       book="Where torch.optim documents a definition other than the chapter's (an lr-free momentum buffer, "
            "Nesterov's stored look-ahead point, AdaGrad's eps under the book's call, Adam's eps placement), the "
            "comparison sees the difference: the check that it could.",
       needs=(Need(UR, "findings.csv"),), uses=("round_off_float64",),
       tolerance="holds: largest |book - torch| > {round_off_float64:g} in every comparison whose definitions "
                 "differ (the chapter's two sentences on PyTorch apart: claims of their own); fails otherwise")
def rules_differ(i: View, tol: float, round_off: float) -> Measured:
    f = i.csv(UR, "findings.csv")
    differ = f[~f["same_maths"] & ~_about_text(f)]
    return Measured(f"{len(differ)} comparisons, smallest difference {differ['max_abs_diff'].min():.1e}"
                    + "".join(f"; {r.rule} ({r.case}) {r.max_abs_diff:.1e}" for r in differ.itertuples()
                              if not r.max_abs_diff > round_off),
                    holds(bool(len(differ)) and bool((differ["max_abs_diff"] > round_off).all())))


def _text_claim(f: pd.DataFrame, key: tuple[str, str], round_off: float) -> Measured:
    """The chapter's sentence holds where torch, called as the sentence says, runs the chapter's rule."""
    row = f[(f["rule"] == key[0]) & (f["case"] == key[1])]
    if row.empty:
        return Measured("–", not_measured(f"update_rules ran no comparison {key[0]} ({key[1]})"))
    r = row.iloc[0]
    diff = float(r["max_abs_diff"])
    return Measured(f"torch: {r['torch_form']}; largest |book - torch| {diff:.1e} over the run",
                    graded(diff <= round_off, False, diff, (round_off,)), fixed=ARITHMETIC)


@claim("pytorch_adagrad_merges_delta", kind=MEASURED, figure="Update rules",
       source="§ Learning rate adaptation: AdaGrad",
       book="In PyTorch, AdaGrad's δ and the initial gradient accumulator are merged into one argument, "
            "initial_accumulator_value.",
       needs=(Need(UR, "findings.csv"),), uses=("round_off_float64",),
       reaches=(AGREES, DIFFERS),
       tolerance="torch's Adagrad with initial_accumulator_value = δ (and its own eps 0) against the chapter's "
                 "rule with δ. agrees: the same run (largest difference <= {round_off_float64:g}); differs: not "
                 "(torch keeps δ apart, as its eps)")
def adagrad_delta(i: View, tol: float, round_off: float) -> Measured:
    return _text_claim(i.csv(UR, "findings.csv"), TEXT_ADAGRAD, round_off)


@claim("pytorch_rmsprop_momentum_is_nesterov", kind=MEASURED, figure="Update rules",
       source="§ Learning rate adaptation: RMSProp",
       book="PyTorch's RMSProp can be used with momentum, specifically Nesterov momentum.",
       needs=(Need(UR, "findings.csv"),), uses=("round_off_float64",),
       reaches=(AGREES, DIFFERS),
       tolerance="torch's RMSprop(momentum=m) against the chapter's RMSProp with Nesterov momentum (the gradient "
                 "at the look-ahead point). agrees: the same run (largest difference <= {round_off_float64:g}); "
                 "differs: not (torch's momentum is classical)")
def rmsprop_nesterov(i: View, tol: float, round_off: float) -> Measured:
    return _text_claim(i.csv(UR, "findings.csv"), TEXT_RMSPROP, round_off)
