"""The chapter's update rules beside torch.optim."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.claims import all_beyond, all_within
from beyond_gd.report.registry import Drawn, FigureParams, Measured, claim, figure
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


@claim("update_rules_same_maths", figure="Update rules",
       book="The chapter's equations (SGD, momentum, Nesterov, AdaGrad, RMSProp with and without momentum, "
            "Adam with bias correction) are what torch.optim computes, where the algebra is the same.",
       needs=(Need(UR, "findings.csv"),),
       tolerance="largest |book - torch| <= {tol:g}. agrees: in every comparison whose algebra is the same; "
                 "partly: in some; differs: in none")
def rules_same(i: View, tol: float) -> Measured:
    f = i.csv(UR, "findings.csv")
    same = f[f["same_maths"]]
    return Measured(f"{len(same)} comparisons, largest difference {same['max_abs_diff'].max():.1e}"
                    + "".join(f"; {r.rule} ({r.case}) {r.max_abs_diff:.1e}" for r in same.itertuples()
                              if not r.max_abs_diff <= tol), all_within(same["max_abs_diff"], tol))


@claim("update_rules_torch_differs", figure="Update rules",
       book="Where torch.optim's definitions differ from the chapter's text (an lr-free momentum buffer, "
            "Nesterov's stored point, AdaGrad's delta and initial_accumulator_value, RMSProp's momentum not "
            "Nesterov's, Adam's eps placement), the runs differ.",
       needs=(Need(UR, "findings.csv"),),
       tolerance="largest |book - torch| > {tol:g}. agrees: in every comparison whose definitions differ; "
                 "partly: in some; differs: in none")
def rules_differ(i: View, tol: float) -> Measured:
    f = i.csv(UR, "findings.csv")
    differ = f[~f["same_maths"]]
    return Measured(f"{len(differ)} comparisons, smallest difference {differ['max_abs_diff'].min():.1e}"
                    + "".join(f"; {r.rule} ({r.case}) {r.max_abs_diff:.1e}" for r in differ.itertuples()
                              if not r.max_abs_diff > tol), all_beyond(differ["max_abs_diff"], tol))
