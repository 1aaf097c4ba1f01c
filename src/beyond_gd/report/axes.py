"""Axis helpers shared by several figures: log ticks, contours, framing, endpoint marks."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def plain_log(axis: plt.Axes) -> None:
    """Tick labels 0.5, 2, 300 rather than 5×10⁻¹ on a log axis spanning few decades."""
    fmt = plt.FuncFormatter(lambda v, _: f"{v:g}")
    axis.set_major_formatter(fmt)
    # Minor ticks labelled at 2 and 5 times a power of ten (its leading digit, 0.2 included).
    axis.set_minor_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def decades(axis: plt.Axes) -> None:
    """Tick labels 10⁻⁶, 10⁻³ at the powers of ten only, on a log axis spanning many decades."""
    axis.set_major_locator(plt.LogLocator(base=10, numticks=12))
    axis.set_major_formatter(plt.LogFormatterMathtext())
    axis.set_minor_formatter(plt.NullFormatter())


def symlog(ax: plt.Axes, values: np.ndarray) -> None:
    """Symmetric log y where the values span decades or both signs, linear within the smallest |value| seen."""
    values = values[np.isfinite(values)]
    nonzero = np.abs(values[values != 0])
    if len(nonzero) and (values.min() < 0 < values.max() or nonzero.max() / nonzero.min() > 30):
        ax.set_yscale("symlog", linthresh=float(10 ** np.floor(np.log10(nonzero.min()))))
        # Autoscaling leaves no margin on a symlog axis: half a decade beyond the extremes, so no point is cut.
        lo, hi = values.min(), values.max()
        ax.set_ylim(lo * 3 if lo < 0 else lo / 3, hi * 3 if hi > 0 else hi / 3)


def contours(ax: plt.Axes, x: np.ndarray, y: np.ndarray, z: np.ndarray, levels: int = 14) -> None:
    """Contours of a quadratic bowl, spaced geometrically so the narrow valley shows as well as the rim."""
    low = z.max() * 1e-3 if z.min() >= 0 else None
    spaced = np.geomspace(low, z.max(), levels) if low else levels
    ax.contour(x, y, z, levels=spaced, cmap="Greys_r", linewidths=0.8, alpha=0.8)


def frame(ax: plt.Axes, x: np.ndarray, y: np.ndarray, margin: float) -> None:
    """Limit an equal-aspect panel to a square around the points drawn, plus a margin."""
    cx, cy = (np.min(x) + np.max(x)) / 2, (np.min(y) + np.max(y)) / 2
    half = max(np.ptp(x), np.ptp(y)) / 2 + margin
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(cy - half, cy + half)


def mark_endpoints(ax: plt.Axes, at_1: str = "θ_rand") -> None:
    """Dashed lines at α = 0 (the SGD solution) and α = 1, named on a top axis where they hide no data."""
    for alpha in (0, 1):
        ax.axvline(alpha, color="0.35", ls="--", lw=0.9)
    top = ax.secondary_xaxis("top")
    top.set_xticks([0, 1], ["θ_opt", at_1], fontsize="x-small")
    top.tick_params(length=0, pad=1)
