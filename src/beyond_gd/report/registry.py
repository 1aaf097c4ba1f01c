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

A claim (`Claim`) is an id, the figure it belongs to, the book's statement,
the artifact files it reads, how its tolerance reads, and a `check` that
measures from those files and returns the measured value (text) and a verdict
computed by one of the comparators of `beyond_gd.report.claims`; nothing types
a verdict. Each claim's tolerance is `report.claims.<id>` in params, one number
per claim. Every claim can come out each way: "agrees" when the book's
statement holds within the tolerance, "partly" when it holds only in a weaker
form or in some setups but not others, "differs" when the opposite holds.

    @figure("fig6-09-momentum", title=..., needs=(Need("momentum_speedup", "steps.csv"),), shows=..., book=...)
    def momentum_curves(i: View, p: FigureParams, s: Style) -> Drawn: ...

    @claim("steps_to_cost_0_1", figure="Fig 6-9", book="...", needs=(...), tolerance="ratio within {tol:.0%}")
    def steps_ratio(i: View, tol: float) -> Measured: ...
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
from matplotlib.figure import Figure

from beyond_gd.config import required
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.style import Style

AGREES, PARTLY, DIFFERS = "agrees", "partly", "differs"
VERDICTS = (AGREES, PARTLY, DIFFERS)


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
class Measured:
    value: str  # what we measured, as the table shows it
    verdict: str  # one of VERDICTS, from a comparator


@dataclass(frozen=True)
class Claim:
    id: str
    figure: str
    book: str  # the book's statement (or the theory the pipeline checks it by)
    needs: tuple[Need, ...]
    tolerance: str  # how the tolerance reads; "{tol}" is its value, "{<other id>}" another claim's it uses
    check: Callable[..., Measured]  # (view, tol, *the tolerances of `uses`) -> Measured
    # Other claims whose tolerances this one's check also takes, in order: a definition ("flat",
    # "a local minimum") then has one number, wherever it is used.
    uses: tuple[str, ...] = ()


CLAIMS: list[Claim] = []


def claim(id: str, *, figure: str, book: str, needs: tuple[Need, ...], tolerance: str,
          uses: tuple[str, ...] = ()) -> Callable:
    """Register `check` as the claim `id`; the claims table lists claims in registration order."""

    def register(check: Callable[..., Measured]) -> Callable:
        if any(c.id == id for c in CLAIMS):
            raise ValueError(f"claim {id!r} registered twice")
        CLAIMS.append(Claim(id, figure, book, needs, tolerance, check, uses))
        return check

    return register
