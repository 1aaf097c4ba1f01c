"""Every figure of the report: a registry of entries, one module per figure (or pair of figures).

An entry (`FigureSpec`) is a file stem, a title, the artifact files it reads
(`needs`), what it shows, the book's claim, and a `draw` function that takes
those files (an `Inputs` view) with the figure params and style and returns
the matplotlib Figure, a sentence of what we measured, and optionally a table.
A figure whose data this profile did not produce (the optimizer grid's longer
budget outside the thorough profile) returns `Drawn(None, measured=<why>)`:
the page lists it with that reason and no image, and nothing is saved.
A figure's module holds its drawing, its caption and the claims that belong to
it (`beyond_gd.report.claims.claim`); importing this package imports every
figure module, so it registers every figure and every claim, in page order.
Adding the figure of a new stage is one module, and one line in the import
list at the end of this file:

    @figure("fig6-09-momentum", title=..., needs=(Need("momentum_speedup", "steps.csv"),), shows=..., book=...)
    def momentum_curves(i: Inputs, p: FigureParams, s: Style) -> Drawn: ...

Figures only draw what the artifacts hold: no model is trained or evaluated
(closed-form theory curves, such as the EWMA's std, are evaluated to be drawn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import pandas as pd
from matplotlib.figure import Figure

from beyond_gd.config import required
from beyond_gd.report.artifacts import Inputs, Need
from beyond_gd.report.style import Style


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
    draw: Callable[[Inputs, FigureParams, Style], Drawn]


FIGURES: list[FigureSpec] = []


def figure(name: str, *, title: str, needs: tuple[Need, ...], shows: str, book: str) -> Callable:
    """Register `draw` as the figure `name`; the page shows figures in registration order."""

    def register(draw: Callable[[Inputs, FigureParams, Style], Drawn]) -> Callable:
        if any(f.name == name for f in FIGURES):
            raise ValueError(f"figure {name!r} registered twice")
        FIGURES.append(FigureSpec(name, title, needs, shows, book, draw))
        return draw

    return register


# The figure modules in page order (importing one registers its figure and its claims): the chapter's
# figures, each followed by the later studies that sharpen it (Fig 6-3 in two dimensions and between
# solutions; the Hessian, its density and the edge of stability beside the text on curvature), then what the
# chapter asks the reader to try and the training the MNIST figures start from. Static imports, so dvc.yaml's
# code deps can be checked.
from beyond_gd.report.figures import (  # noqa: E402, F401
    fig6_01_noise_escapes,
    fig6_02_permutation_symmetry,
    fig6_03_interpolation,
    fig6_03_notebook,
    extra_landscape_2d,
    extra_mode_connectivity,
    fig6_04_critical_points,
    fig6_05_saddle,
    fig6_06_gradient_angle,
    fig6_07_gradient_turns,
    extra_hessian_spectrum,
    extra_hessian_density,
    extra_edge_of_stability,
    fig6_08_random_walk,
    fig6_09_momentum,
    fig6_10_conjugate_gradient,
    extra_nesterov_quadratic,
    extra_optimizer_grid,
    extra_optimizer_grid_heatmap,
    extra_long_budget,
    extra_asgd_average,
    extra_lbfgs,
    extra_update_rules,
    extra_adam_bias,
    extra_adam_bias_correction,
    extra_plateau,
    extra_lr_adaptation,
    extra_baseline_training,
)
