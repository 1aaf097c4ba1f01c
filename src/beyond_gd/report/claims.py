"""The claim machinery: a registry of the chapter's claims, the comparators that give verdicts, `evaluate`.

A claim (`Claim`) is an id, the figure it belongs to, the book's statement,
the artifact files it reads, how its tolerance reads, and a `check` that
measures from those files and returns the measured value (text) and a verdict
computed by one of the comparators below; nothing types a verdict. Each
claim's tolerance is `report.claims.<id>` in params, one number per claim.

The claims themselves live beside their figure, in the figure's module under
`beyond_gd.report.figures` (importing that package registers them all):

    @claim("steps_to_cost_0_1", figure="Fig 6-9", book="...", needs=(...), tolerance="ratio within {tol:.0%}")
    def steps_ratio(i: Inputs, tol: float) -> Measured: ...

Every claim can come out each way: "agrees" when the book's statement holds
within the tolerance, "partly" when it holds only in a weaker form or in some
setups but not others, "differs" when the opposite holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

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
    tolerance: str  # how the tolerance reads; "{tol}" is its value, "{<other id>}" another claim's it uses
    check: Callable[..., Measured]  # (inputs, tol, *the tolerances of `uses`) -> Measured
    # Other claims whose tolerances this one's check also takes, in order: a definition ("flat",
    # "a local minimum") then has one number, wherever it is used.
    uses: tuple[str, ...] = ()


CLAIMS: list[Claim] = []


def claim(id: str, *, figure: str, book: str, needs: tuple[Need, ...], tolerance: str,
          uses: tuple[str, ...] = ()) -> Callable:
    def register(check: Callable[..., Measured]) -> Callable:
        if any(c.id == id for c in CLAIMS):
            raise ValueError(f"claim {id!r} registered twice")
        CLAIMS.append(Claim(id, figure, book, needs, tolerance, check, uses))
        return check

    return register


def evaluate(claims: Iterable[Claim], view: Callable[[Iterable[Need]], Inputs],
             tolerances: dict[str, float]) -> pd.DataFrame:
    """One row per claim: id, figure, book, measured, tolerance, verdict."""
    rows = []
    for c in claims:
        tol, used = tolerances[c.id], {u: tolerances[u] for u in c.uses}
        result = c.check(view(c.needs), tol, *used.values())
        if result.verdict not in VERDICTS:
            raise ValueError(f"claim {c.id}: verdict {result.verdict!r} is not one of {VERDICTS}")
        rows.append({"id": c.id, "figure": c.figure, "book": c.book, "measured": result.value,
                     "tolerance": c.tolerance.format(tol=tol, **used), "verdict": result.verdict})
    return pd.DataFrame(rows, columns=["id", "figure", "book", "measured", "tolerance", "verdict"])


# --------------------------------------------------------------------------
# Comparators: measured numbers (or what they establish) in, a verdict out
# --------------------------------------------------------------------------
def graded(holds: bool, weaker: bool) -> str:
    """The statement holds within tolerance: agrees; only in its weaker form: partly; neither: differs."""
    return AGREES if holds else PARTLY if weaker else DIFFERS


def in_every(holds: Iterable[bool]) -> str:
    """It holds in every setup (seed, path, comparison): agrees; in some but not others: partly; in none: differs."""
    holds = list(holds)
    return AGREES if holds and all(holds) else PARTLY if any(holds) else DIFFERS


def all_within(errors: Iterable[float], tol: float) -> str:
    """Every |error| <= tol: agrees; some: partly; none: differs (a NaN error is never within)."""
    return in_every(abs(e) <= tol for e in errors)


def all_beyond(values: Iterable[float], tol: float) -> str:
    """Every |value| > tol (a difference that is real): agrees; some: partly; none: differs."""
    return in_every(abs(v) > tol for v in values)


def at_most(value: float, limit: float, slack: float) -> str:
    """value <= limit: agrees; within a relative slack above it: partly; beyond: differs."""
    return graded(value <= limit, value <= limit * (1 + slack))


def at_least(value: float, threshold: float) -> str:
    """value >= threshold: agrees; positive but short of it: partly; <= 0: differs."""
    return graded(value >= threshold, value > 0)


# The claims live beside their figures: importing the figures registers them, so CLAIMS is whole wherever
# it is imported from (last: the figure modules import the names above).
import beyond_gd.report.figures  # noqa: E402, F401
