"""Checking the chapter's claims: the comparators that give verdicts, and `check_claims`, which runs them.

The claims themselves (`beyond_gd.report.registry.Claim`) live beside their
figure, in the figure's module under `beyond_gd.report.figures`; each claim's
`check` measures from the files it declared and returns its verdict through one
of the comparators below, so nothing types a verdict.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pandas as pd

from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.registry import AGREES, DIFFERS, PARTLY, VERDICTS, Claim

def check_claims(claims: Iterable[Claim], view: Callable[[Iterable[Need]], View],
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
