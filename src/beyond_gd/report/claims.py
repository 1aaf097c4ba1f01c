"""Checking the chapter's claims: the comparators that decide, the resampling that says how sure a verdict
is, and `check_claims`, which runs every claim.

The claims themselves (`beyond_gd.report.registry.Claim`) live beside their figure, in the figure's module
under `beyond_gd.report.figures`; each claim's `check` measures from the files it declared and decides through
one of the comparators below, so nothing types a verdict.

A measured claim's verdict is then tested against what its run drew at random: the units it was decided from
(seeds, random starts or directions) are resampled with replacement (`cluster_resamples`, all rows of
a unit together, so that runs sharing a seed stay paired) and the claim decides again on each resample.
P(verdict) is the share of resamples that give the same verdict; the margin is the deciding statistic's
distance to its nearest threshold in units of its spread over the resamples. Too low a P or too small a margin
reads "inconclusive" (`VerdictRules`), with the number of units that the measured spread says would settle it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import pandas as pd

from beyond_gd.config import required
from beyond_gd.errors import ConfigError
from beyond_gd.report.artifacts import Need, View
from beyond_gd.report.registry import (AGREES, CHECK, DIFFERS, FAILS, HOLDS, INCONCLUSIVE, MEASURED, NOT_MEASURED,
                                       OUTCOMES, PARTLY, Claim, Decision, Measured)

# decided: the verdict from all the data, before the resampling tested it (what an inconclusive one leans to).
COLUMNS = ["id", "kind", "figure", "source", "book", "measured", "tolerance", "verdict", "decided", "p_verdict",
           "margin", "seeds", "note"]


@dataclass
class VerdictRules:
    """`report.verdicts`: how a measured verdict is tested against its own randomness."""

    # Resamples of the units per claim, and the seed they are drawn with (with the claim's id).
    resamples: int = required(gt=0)
    seed: int = required(ge=0)
    # A verdict that fewer than this share of resamples repeat is inconclusive.
    p_min: float = required(gt=0)
    # A deciding statistic closer to a threshold than this many of its spreads is inconclusive.
    margin_min: float = required(ge=0)

    def check(self) -> None:
        if not self.p_min < 1:
            raise ConfigError(f"p_min: must be < 1 (a share of resamples), got {self.p_min!r}")


@dataclass(frozen=True)
class Assessed:
    verdict: str
    p_verdict: float  # NaN where nothing was resampled (a check, a measurement that was not made)
    margin: float  # NaN where the decision has no threshold or nothing was resampled; inf: no spread
    seeds: int  # the units resampled (0: none)
    note: str  # why inconclusive and what would settle it, or why not measured


def assess(m: Measured, kind: str, rules: VerdictRules, seed: Sequence[int]) -> Assessed:
    """The verdict a reader can sign: the decision, tested on resamples of its units (module docstring)."""
    d = m.decision
    n = 0 if m.units is None else int(m.units[m.unit].nunique())
    if d.verdict == NOT_MEASURED:
        return Assessed(NOT_MEASURED, math.nan, math.nan, n, d.why)
    if kind == CHECK:
        return Assessed(d.verdict, math.nan, math.nan, n, "")
    if m.redraw is not None:
        rng = np.random.default_rng(seed)
        again = [m.redraw(rng) for _ in range(rules.resamples)]
        return _settled(m, d, again, m.draws, rules)
    if m.units is None or m.decide is None:
        if m.fixed:
            return Assessed(d.verdict, 1.0, math.nan, 0, f"nothing random to resample: {m.fixed}")
        return Assessed(INCONCLUSIVE, math.nan, math.nan, 0, f"leans {d.verdict}; one run, nothing to resample: "
                        "repeat it over seeds to settle it")
    if n < 2:
        return Assessed(INCONCLUSIVE, math.nan, math.nan, n, f"leans {d.verdict}; one {m.unit}, nothing to "
                        f"resample: more {m.unit}s would settle it")
    # A resample is a multiset of units (drawn sorted): one that repeats (3 seeds have 10) is decided once.
    decided: dict[bytes, Decision] = {}
    again = []
    for key, units in _resamples(m.units, m.unit, rules.resamples, seed):
        if key not in decided:
            decided[key] = m.decide(units())
        again.append(decided[key])
    return _settled(m, d, again, n, rules)


def _settled(m: Measured, d: Decision, again: list[Decision], n: int, rules: VerdictRules) -> Assessed:
    """The verdict from its resamples: P, the margin, and inconclusive where either is too small."""
    p = float(np.mean([a.verdict == d.verdict for a in again]))
    margin = _margin(d, np.array([a.statistic for a in again], dtype=np.float64))
    if m.caveat:
        return Assessed(INCONCLUSIVE, p, margin, n, f"leans {d.verdict} (P {p:.2f}, margin {margin:.2f}); "
                        f"{m.caveat}")
    if p >= rules.p_min and not margin < rules.margin_min:
        return Assessed(d.verdict, p, margin, n, "")
    return Assessed(INCONCLUSIVE, p, margin, n, f"leans {d.verdict} (P {p:.2f}, margin {margin:.2f}); "
                    + settle(n, margin, rules, m.unit))


def cluster_resamples(units: np.ndarray, resamples: int,
                      seed: int | Sequence[int]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Bootstrap resamples of rows by the unit each belongs to (`units`: its seed or random start, one per
    row): each draws as many units as there are, with replacement, and keeps every row of each drawn unit (a
    cluster bootstrap: the rows of one seed stay together, so runs that share a seed stay paired).

    Yields (row index, new unit of each of those rows), the new units numbered 0..n-1 in the order of the
    draw, sorted (a resample is the multiset of units drawn), so that a unit drawn twice counts as two."""
    for _, index, new in _cluster_draws(units, resamples, seed):
        yield index, new


def _cluster_draws(units: np.ndarray, resamples: int,
                   seed: int | Sequence[int]) -> Iterator[tuple[bytes, np.ndarray, np.ndarray]]:
    _, codes = np.unique(np.asarray(units), return_inverse=True)
    members = [np.flatnonzero(codes == k) for k in range(codes.max() + 1)]
    sizes = np.array([len(m) for m in members])
    rng = np.random.default_rng(seed)
    for draw in np.sort(rng.integers(0, len(members), size=(resamples, len(members))), axis=1):
        yield draw.tobytes(), np.concatenate([members[k] for k in draw]), np.repeat(np.arange(len(draw)), sizes[draw])


def _resamples(rows: pd.DataFrame, unit: str, resamples: int,
               seed: Sequence[int]) -> Iterator[tuple[bytes, Callable[[], pd.DataFrame]]]:
    """(the multiset drawn, a function that builds its rows): built only where a decision is not cached."""
    columns = {c: rows[c].to_numpy() for c in rows.columns}
    # All-numeric rows (the grid's: a seed and a score per cell) as one float block: one array to index and
    # one to wrap, where a frame of many columns built column by column costs a millisecond a resample.
    block = rows.to_numpy(np.float64) if all(np.issubdtype(v.dtype, np.number) for v in columns.values()) else None
    at = rows.columns.get_loc(unit)
    for key, index, units in _cluster_draws(columns[unit], resamples, seed):
        def sample(index: np.ndarray = index, units: np.ndarray = units) -> pd.DataFrame:
            if block is not None:
                values = block[index]
                values[:, at] = units
                return pd.DataFrame(values, columns=rows.columns)
            return pd.DataFrame({c: units if c == unit else v[index] for c, v in columns.items()})
        yield key, sample


def _margin(d: Decision, again: np.ndarray) -> float:
    """|statistic - nearest threshold| / the statistic's std over the resamples."""
    if not d.thresholds or not math.isfinite(d.statistic):
        return math.nan
    distance = min(abs(d.statistic - t) for t in d.thresholds)
    finite = again[np.isfinite(again)]
    spread = float(finite.std()) if len(finite) > 1 else math.nan
    if spread == 0:
        return math.inf if distance > 0 else 0.0
    return distance / spread


def settle(n: int, margin: float, rules: VerdictRules, unit: str) -> str:
    """How many units would settle it, if the statistic stays where it is and its spread falls as 1/sqrt(n):
    enough for a margin of the larger of margin_min and the normal quantile of p_min."""
    if not math.isfinite(margin):
        return f"more {unit}s would settle it"
    if margin <= 0:
        return f"the statistic sits on its threshold: more {unit}s will not settle it soon"
    need = math.ceil(n * (max(rules.margin_min, NormalDist().inv_cdf(rules.p_min)) / margin) ** 2)
    if need > 100 * n:
        return f"the statistic sits on its threshold: more {unit}s will not settle it soon"
    if need <= n:  # the margin suffices, P does not: the statistic's resamples are lumpy (a count, a maximum)
        return f"more {unit}s would settle it (this run: {n})"
    return f"about {need} {unit}s would settle it (this run: {n})"


def check_claims(claims: Iterable[Claim], view: Callable[[Iterable[Need]], View], tolerances: Mapping[str, float],
                 concepts: Mapping[str, float], rules: VerdictRules) -> pd.DataFrame:
    """One row per claim (COLUMNS): what it says, what was measured, its verdict and how sure it is."""
    rows = []
    for c in claims:
        tol, used = tolerances.get(c.id, math.nan), {u: concepts[u] for u in c.uses}
        result = c.check(view(c.needs), tol, *used.values())
        if result.decision.verdict not in (*c.reaches, NOT_MEASURED):
            raise ValueError(f"claim {c.id}: verdict {result.decision.verdict!r} is not one it decides "
                             f"({', '.join(c.reaches)} or {NOT_MEASURED})")
        a = assess(result, c.kind, rules, (rules.seed, zlib.crc32(c.id.encode())))
        rows.append({"id": c.id, "kind": c.kind, "figure": c.figure, "source": c.source, "book": c.book,
                     "measured": result.value, "tolerance": c.tolerance.format(tol=tol, **used),
                     "verdict": a.verdict, "decided": result.decision.verdict, "p_verdict": a.p_verdict,
                     "margin": a.margin, "seeds": a.seeds, "note": a.note})
    return pd.DataFrame(rows, columns=COLUMNS)


def counts(claims: pd.DataFrame) -> dict[str, int]:
    """The headline: measured claims by verdict, checks apart (what metrics.json and the page's summary say)."""
    measured = claims[claims["kind"] == MEASURED]["verdict"]
    checks = claims[claims["kind"] == CHECK]["verdict"]
    return {"claims": len(measured), **{v.replace(" ", "_"): int((measured == v).sum()) for v in OUTCOMES[MEASURED]},
            "checks": len(checks), **{f"checks_{v.replace(' ', '_')}": int((checks == v).sum())
                                      for v in OUTCOMES[CHECK]}}


def headline(claims: pd.DataFrame) -> str:
    """The counts in words: "35 measured claims: 9 agree, ...; 13 checks: 13 hold, 0 fail"."""
    n = counts(claims)
    verdicts = ", ".join(f"{n[v.replace(' ', '_')]} {v}" for v in OUTCOMES[MEASURED])
    checks = ", ".join(f"{n['checks_' + v.replace(' ', '_')]} {v}" for v in OUTCOMES[CHECK])
    return f"{n['claims']} measured claims ({verdicts}); {n['checks']} checks ({checks})"


# --------------------------------------------------------------------------
# Comparators: measured numbers (or what they establish) in, a decision out
# --------------------------------------------------------------------------
def graded(holds: bool, weaker: bool, statistic: float = math.nan, thresholds: tuple[float, ...] = ()) -> Decision:
    """The statement holds within tolerance: agrees; only in its weaker form: partly; neither: differs.
    `statistic` and `thresholds`, where given, say what decided it (for the margin)."""
    return Decision(AGREES if holds else PARTLY if weaker else DIFFERS, statistic, thresholds)


def holds(ok: bool) -> Decision:
    """A check's outcome."""
    return Decision(HOLDS if ok else FAILS)


def in_every(holds: Iterable[bool], what: str = "setups") -> Decision:
    """It holds in every setup (seed, path, comparison): agrees; in some but not others: partly; in none:
    differs; no setup at all: not measured. No statistic: a claim that wants a margin passes the one of the
    setup nearest to flipping (`graded`)."""
    holds = list(holds)
    if not holds:
        return Decision(NOT_MEASURED, why=f"no {what} to compare")
    return Decision(AGREES if all(holds) else PARTLY if any(holds) else DIFFERS)


def all_within(errors: Iterable[float], tol: float, what: str = "setups") -> Decision:
    """Every |error| <= tol: agrees; some: partly; none: differs (a NaN error is never within); none measured:
    not measured. The statistic is the |error| nearest tol."""
    errors = [abs(e) for e in errors]
    if not errors:
        return Decision(NOT_MEASURED, why=f"no {what} to compare")
    verdict = in_every((e <= tol for e in errors), what).verdict
    finite = [e for e in errors if math.isfinite(e)]
    return Decision(verdict, min(finite, key=lambda e: abs(e - tol)) if finite else math.nan, (tol,))


def all_beyond(values: Iterable[float], tol: float, what: str = "setups") -> Decision:
    """Every |value| > tol (a difference that is real): agrees; some: partly; none: differs."""
    values = [abs(v) for v in values]
    if not values:
        return Decision(NOT_MEASURED, why=f"no {what} to compare")
    verdict = in_every((v > tol for v in values), what).verdict
    finite = [v for v in values if math.isfinite(v)]
    return Decision(verdict, min(finite, key=lambda v: abs(v - tol)) if finite else math.nan, (tol,))


def at_most(value: float, limit: float, slack: float) -> Decision:
    """value <= limit: agrees; within a relative slack above it: partly; beyond: differs; NaN: not measured."""
    if math.isnan(value):
        return Decision(NOT_MEASURED, why="no value measured")
    return graded(value <= limit, value <= limit * (1 + slack), value, (limit, limit * (1 + slack)))


def at_least(value: float, threshold: float) -> Decision:
    """value >= threshold: agrees; positive but short of it: partly; <= 0: differs; NaN: not measured."""
    if math.isnan(value):
        return Decision(NOT_MEASURED, why="no value measured")
    return graded(value >= threshold, value > 0, value, (threshold, 0.0))


def beyond_tie(gain: float, tie: float) -> Decision:
    """A relative gain (> 0: better) beyond a tie: better by more than `tie`: agrees; within it either way:
    partly (as good, not better); worse by more: differs; NaN: not measured."""
    if math.isnan(gain):
        return Decision(NOT_MEASURED, why="no gain measured")
    return Decision(AGREES if gain > tie else DIFFERS if gain < -tie else PARTLY, gain, (tie, -tie))
