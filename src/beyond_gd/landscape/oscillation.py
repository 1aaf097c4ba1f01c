"""Do successive updates oscillate along a direction? Statistics of one run's update projections.

The chapter's § Momentum-based optimization: an ill-conditioned Hessian shows as gradients that fluctuate
wildly, and momentum (the velocity, an exponentially weighted average of past gradients) cancels the
oscillation in the high-curvature directions while it accumulates movement towards the minimum. On a
quadratic, along an eigendirection u of eigenvalue λ, gradient descent at lr multiplies the displacement
x_t = (θ_t − θ*)·u by 1 − lr λ each step, and with it the update p_t = Δθ_t·u = −lr λ x_t: for
lr λ > 1 the update flips sign every step (p_{t+1} / p_t = 1 − lr λ < 0), below 1 it keeps it. Heavy-ball
momentum β adds β p_{t−1} to each update, which damps the flip.

Given the projections p_t of successive updates on one unit direction, this module says how much they
oscillate; no I/O, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Oscillation:
    # sum_t p_t p_{t+1} / sum_t p_t^2: -1 for signs that alternate, 1 for a constant update, ~0 for noise.
    autocorrelation: float
    # The share of successive pairs with p_t p_{t+1} < 0: 1 when every step reverses the last.
    sign_flip_share: float
    # sqrt(mean p_t^2): how far each update moves along the direction.
    rms_projection: float
    # The projections the statistics cover (a diverged run's are cut at the first non-finite one).
    updates: int


def oscillation(projections: np.ndarray) -> Oscillation:
    """The lag-1 autocorrelation, sign-flip share and rms of successive update projections p_0 .. p_{T-1}.

    The autocorrelation is uncentred: an oscillation is about zero (the update reverses), not about the
    mean update, and centring would call a steady drift with small wobbles an oscillation. Its
    denominator sums over every t, so it lies in [-1, 1] (Cauchy-Schwarz), and on a geometric sequence
    p_{t+1} = c p_t it tends to c. The sequence is cut at its first non-finite value (a run that diverged);
    with fewer than two values left, or all of them zero, the ratios are NaN.
    """
    p = np.asarray(projections, dtype=np.float64).ravel()
    bad = np.flatnonzero(~np.isfinite(p))
    p = p[: bad[0]] if len(bad) else p
    rms = float(np.sqrt(np.mean(p**2))) if len(p) else float("nan")
    if len(p) < 2:
        return Oscillation(float("nan"), float("nan"), rms, len(p))
    lagged = p[:-1] * p[1:]
    energy = float(np.sum(p**2))
    autocorrelation = float(np.sum(lagged) / energy) if energy > 0 else float("nan")
    return Oscillation(autocorrelation, float(np.mean(lagged < 0)), rms, len(p))
