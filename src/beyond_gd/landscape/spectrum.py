"""The top of a Hessian spectrum split into outliers and bulk: numpy only, so that the report (which imports no
torch) and the hessian_density stage compute it with one function.

The outliers of a C-class network's Hessian sit apart from the bulk (Sagun et al. 2017; Papyan 2019): the
widest ratio lambda_i / lambda_i+1 among the top values is where that separation would be. A widest ratio
always exists, so it counts as a gap only where it is real: it stands out of the other ratios of its start
(a robust z of its log against theirs: `widest_gap`), and the random starts put it at the same place
(`consensus`). Otherwise there is no clear gap, and no count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The median absolute deviation times this is the standard deviation of a normal sample (1 / Phi^-1(3/4)).
MAD_TO_STD = 1.4826


@dataclass(frozen=True)
class Gap:
    """One start's widest ratio gap among its descending positive top eigenvalues."""

    count: int  # values above the gap (0: no gap measured, fewer than two positive values)
    ratio: float  # lambda_count / lambda_count+1 (NaN: none)
    edge: float  # lambda_count+1, where the bulk starts (NaN: none)
    # How far log(ratio) stands above the logs of the start's other ratios: (x - median) / (1.4826 MAD).
    # NaN: fewer than `min_others` other ratios to measure their spread; inf: they do not spread at all.
    z: float


def robust_z(x: float, others: np.ndarray) -> float:
    """(x - median) / (1.4826 x the median absolute deviation) of `others`: a z-score that one more outlier
    among them barely moves (Iglewicz & Hoaglin 1993). Others that do not spread: inf above, 0 at, -inf below."""
    others = np.asarray(others, dtype=np.float64)
    mid = float(np.median(others))
    spread = MAD_TO_STD * float(np.median(np.abs(others - mid)))
    if spread == 0:
        return float(np.sign(x - mid) * np.inf) if x != mid else 0.0
    return (x - mid) / spread


def widest_gap(top: np.ndarray, min_others: int) -> Gap:
    """The widest ratio among descending positive eigenvalues `top`, and its robust z against the other
    ratios (their logs: the ratios are scale-free, their logs additive); `min_others` other ratios at least
    for a z."""
    top = np.asarray(top, dtype=np.float64)
    top = top[top > 0]
    if len(top) < 2:  # no gap to measure (too few values converged)
        return Gap(0, float("nan"), float("nan"), float("nan"))
    logs = np.log(top[:-1] / top[1:])
    i = int(np.argmax(logs))
    others = np.delete(logs, i)
    z = robust_z(float(logs[i]), others) if len(others) >= min_others else float("nan")
    return Gap(i + 1, float(np.exp(logs[i])), float(top[i + 1]), z)


@dataclass(frozen=True)
class Outliers:
    """The outliers the starts agree on."""

    count: int | None  # the outliers above a clear gap; None: no clear gap
    gap: float  # the agreeing starts' median gap ratio (NaN: no clear gap)
    edge: float  # their median bulk edge (NaN: no clear gap)
    agreement: float  # the share of starts with a clear gap at the most common count (0: none clear)
    z: float  # the smallest z among those starts (NaN: none)
    # The most common count among the starts that measured a gap, clear or not (0: none did): what a reading
    # without the significance test would say, and what an inconclusive claim leans to.
    lean: int
    why: str  # where there is no clear gap: why, in words ("" where clear)


def consensus(gaps: Sequence[Gap], agreement: float, z_min: float) -> Outliers:
    """The count of outliers where the gap is clear: a start's widest gap is clear when its z >= `z_min`; the
    count stands when at least a share `agreement` of all starts has a clear gap at that same count.
    Ties between counts go to the smaller count (deterministic; a tie never reaches a share above 1/2)."""
    measured = [g.count for g in gaps if g.count > 0]
    lean = _mode(measured)
    clear = [g for g in gaps if g.count > 0 and g.z >= z_min]
    if not gaps or not measured:
        return Outliers(None, float("nan"), float("nan"), 0.0, float("nan"), 0,
                        "fewer than two converged top eigenvalues: no gap to read")
    n = _mode([g.count for g in clear])
    agreeing = [g for g in clear if g.count == n]
    share = len(agreeing) / len(gaps)
    if clear and share >= agreement:
        return Outliers(n, float(np.median([g.ratio for g in agreeing])), float(np.median([g.edge for g in agreeing])),
                        share, float(min(g.z for g in agreeing)), lean, "")
    counts = ", ".join(str(g.count) if g.count else "none" for g in gaps)
    zs = ", ".join("–" if np.isnan(g.z) else f"{g.z:.1f}" for g in gaps)
    why = (f"no clear gap: the starts' widest gaps sit at {counts} outliers with robust z {zs} (a clear gap: z >= "
           f"{z_min:g}, at one count in at least {agreement:.0%} of the starts)")
    return Outliers(None, float("nan"), float("nan"), share, float("nan"), lean, why)


def _mode(values: Sequence[int]) -> int:
    """The most common value, the smaller on a tie; 0 for none."""
    if not values:
        return 0
    tally = Counter(values)
    return min(tally, key=lambda v: (-tally[v], v))
