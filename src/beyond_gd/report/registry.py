"""The report's two registries, figures and claims, and what an entry of each is.

Every figure module under `beyond_gd.report.figures` registers its figures
(`@figure`) and the claims that belong to them (`@claim`) here when it is
imported; `beyond_gd.report.figures` imports every one of them, in page order,
so `FIGURES` and `CLAIMS` are whole once that package is imported (read them
from there). This module imports no figure, so a figure module, the claim
comparators (`beyond_gd.report.claims`) and the page builder all import it
without a circle.

A figure (`FigureSpec`) is a file stem, a title, the artifact files it reads
(`needs`), what it shows, the book's claim, and a `draw` function that takes
those files (a `View`) with the figure params and style and returns the
matplotlib Figure, a sentence of what we measured, and optionally a table.
A figure whose data this profile did not produce (the optimizer grid's longer
budget outside the thorough profile) returns `Drawn(None, measured=<why>)`:
the page lists it with that reason and no image, and nothing is saved.

A claim (`Claim`) is an id, its kind, the figure it belongs to, where its statement comes from (the chapter's
section, a paper, or a control of ours), the statement, the artifact files it reads, how its tolerance reads,
and a `check` that measures from those files. Two kinds:

- `measured`: a statement about training or the landscape that real data could settle either way. Its check
  returns a `Decision` (agrees, partly or differs on a deciding statistic, with the thresholds where the
  verdict changes), and the rows it was decided from (`units`, one or more rows per seed, random start or
  direction) with the function that decides again from any resample of them; `beyond_gd.report.claims` draws
  the resamples, reports P(verdict) and the margin, and reads "inconclusive" where they are too small.
  Missing data is "not measured", never "differs".
- `check`: maths the code must reproduce (a closed form, an identity, a constructed toy). It holds or fails
  and has no book verdict; the page counts checks apart.

Nothing types a verdict: the check returns it through one of the comparators of `beyond_gd.report.claims`.
Each claim's tolerance is `report.claims.<id>` in params; a concept several claims share ("near zero",
"flat", "at an edge of its search") is one number under `report.concepts`, which a claim takes by `uses`.

    @figure("fig6-09-momentum", title=..., needs=(Need("momentum_speedup", "steps.csv"),), shows=..., book=...)
    def momentum_curves(i: View, p: FigureParams, s: Style) -> Drawn: ...

    @claim("steps_to_cost_0_1", kind=MEASURED, figure="Fig 6-9", source="§ Momentum-based optimization",
           book="...", needs=(...), tolerance="ratio within {tol:.0%}")
    def steps_ratio(i: View, tol: float) -> Measured: ...
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from beyond_gd.config import required
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.style import Style

MEASURED, CHECK = "measured", "check"
KINDS = (MEASURED, CHECK)
# What a measurement decides; then what the resampling can turn it into, and what missing data reads as.
AGREES, PARTLY, DIFFERS = "agrees", "partly", "differs"
DECIDED = (AGREES, PARTLY, DIFFERS)
INCONCLUSIVE, NOT_MEASURED = "inconclusive", "not measured"
VERDICTS = (*DECIDED, INCONCLUSIVE, NOT_MEASURED)
# A check's outcomes.
HOLDS, FAILS = "holds", "fails"
OUTCOMES = {MEASURED: VERDICTS, CHECK: (HOLDS, FAILS, NOT_MEASURED)}


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------
@dataclass
class FigureParams:
    """`report.figures`: the numbers a figure needs beyond its style."""

    # Rolling mean over this many mini-batch steps for the per-step training loss.
    training_smooth_steps: int = required(gt=0)
    # Fig 6-8's shared y-range, as a multiple of the largest raw step.
    random_walk_y_range_factor: float = required(gt=0)
    # z of the binomial confidence bands (Wilson) on shares of runs.
    band_z: float = required(gt=0)
    # Fig 6-1: noisy runs drawn per starting basin (at most what the stage saved).
    trajectories_per_basin: int = required(gt=0)


class Drawn(NamedTuple):
    figure: Figure | None  # None: not drawn (its data did not run in this profile); `measured` says why
    measured: str  # what the artifacts say, in a sentence or two, with numbers
    table: pd.DataFrame | None = None  # shown under the figure, if any


@dataclass(frozen=True)
class FigureSpec:
    name: str  # file stem under figures/: fig6-NN-... for the book's figures, extra-... for the rest
    title: str
    needs: tuple[Need, ...]
    shows: str  # what the figure shows
    book: str  # the book's claim it illustrates
    draw: Callable[[View, FigureParams, Style], Drawn]
    # How it is computed beyond its stage's params (methods, papers, which keys drive what): the chapter
    # map's text for it (docs/chapter-map.md, generated); paragraphs split by blank lines.
    notes: str = ""


FIGURES: list[FigureSpec] = []


def figure(name: str, *, title: str, needs: tuple[Need, ...], shows: str, book: str, notes: str = "") -> Callable:
    """Register `draw` as the figure `name`; the page shows figures in registration order."""

    def register(draw: Callable[[View, FigureParams, Style], Drawn]) -> Callable:
        if any(f.name == name for f in FIGURES):
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES.append(FigureSpec(name, title, needs, shows, book, draw, notes))
        return draw

    return register


# --------------------------------------------------------------------------
# Claims
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    """A verdict and the statistic that decided it: `thresholds` are where on `statistic` the verdict changes
    (the margin is the distance to the nearest one). NOT_MEASURED carries its reason in `why`."""

    verdict: str  # one of DECIDED or NOT_MEASURED (a check: HOLDS, FAILS or NOT_MEASURED)
    statistic: float = math.nan
    thresholds: tuple[float, ...] = ()
    why: str = ""


def not_measured(why: str) -> Decision:
    """Missing data: the reason names what is missing (a stage that did not run this, a run with no rows)."""
    return Decision(NOT_MEASURED, why=why)


@dataclass(frozen=True)
class Measured:
    value: str  # what we measured, as the table shows it
    decision: Decision  # from a comparator
    # The rows the decision was made from, `unit` naming the column of what the run drew at random (the
    # seed); a resample draws units with replacement and keeps all rows of each (paired where optimizers,
    # setups or lrs share a seed). `decide` decides again from such a resample.
    units: pd.DataFrame | None = None
    decide: Callable[[pd.DataFrame], Decision] | None = None
    unit: str = "seed"
    # A measurement with nothing random in it (a closed form, a library's arithmetic): why, in a few words.
    # Its verdict stands with P = 1; a measured claim with neither `units` nor `fixed` reads inconclusive.
    fixed: str = ""
    # Instead of rows to resample, a parametric redraw (a count of a million Monte Carlo samples as a
    # binomial draw): decides again from one draw of the generator; `draws` is how many samples it stands for.
    redraw: Callable[[np.random.Generator], Decision] | None = None
    draws: int = 0
    # A flaw of the experiment that no resampling sees (a tuned optimum at an edge of its search): the verdict
    # reads inconclusive, this says why.
    caveat: str = ""


def resampled(value: str, units: pd.DataFrame, decide: Callable[[pd.DataFrame], Decision],
              unit: str = "seed", caveat: str = "") -> Measured:
    """A measured claim's result: the decision from all `units`, and how to decide again from a resample."""
    return Measured(value, decide(units), units, decide, unit, caveat=caveat)


@dataclass(frozen=True)
class Claim:
    id: str
    kind: str  # MEASURED or CHECK
    figure: str
    # Where the statement comes from: the chapter's section ("§ Momentum-based optimization"), a paper
    # ("Cohen et al. 2021"), or "control" (a control of ours, with what it controls for in `book`).
    source: str
    book: str  # the statement, in our words: what the chapter (or the paper) says, no more
    needs: tuple[Need, ...]
    tolerance: str  # how the tolerance reads; "{tol}" is its value, "{<name>}" a concept's it uses
    check: Callable[..., Measured]  # (view, tol, *the values of `uses`) -> Measured
    # Concepts (report.concepts) whose definitions this claim's check also takes, in order: a definition
    # ("flat", "near zero") then has one number, wherever it is used.
    uses: tuple[str, ...] = ()
    # The verdicts its check can decide (not measured aside): a statement true or false as a whole (torch
    # does what the sentence says, or not) has no "partly".
    reaches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.reaches:
            object.__setattr__(self, "reaches", DECIDED if self.kind == MEASURED else (HOLDS, FAILS))

    @property
    def own_tolerance(self) -> bool:
        """Whether it has a number of its own (`report.claims.<id>`): its tolerance text reads "{tol}"."""
        return "{tol" in self.tolerance

    @property
    def module(self) -> str:
        """The figure module that registered it: the page shows it under that module's first figure."""
        return self.check.__module__


CLAIMS: list[Claim] = []


def claim(id: str, *, kind: str, figure: str, source: str, book: str, needs: tuple[Need, ...], tolerance: str,
          uses: tuple[str, ...] = (), reaches: tuple[str, ...] = ()) -> Callable:
    """Register `check` as the claim `id`; the claims table lists claims in registration order."""
    if kind not in KINDS:
        raise ValueError(f"claim {id!r}: kind {kind!r} is not one of {KINDS}")

    def register(check: Callable[..., Measured]) -> Callable:
        if any(c.id == id for c in CLAIMS):
            raise ValueError(f"claim {id!r} registered twice")
        CLAIMS.append(Claim(id, kind, figure, source, book, needs, tolerance, check, uses, reaches))
        return check

    return register
