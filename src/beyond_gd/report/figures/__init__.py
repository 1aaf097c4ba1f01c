"""Every figure of the report, one module per figure (or pair of figures), imported here in page order.

A figure's module holds its drawing, its caption and the claims that belong to
it, each registered in `beyond_gd.report.registry` (`@figure`, `@claim`) when
the module is imported. This package imports every figure module, so
`FIGURES` and `CLAIMS` as read from here are whole, in page order. Adding the
figure of a new stage is one module, and one line in the import list below.

Figures only draw what the artifacts hold: no model is trained or evaluated
(closed-form theory curves, such as the EWMA's std, are evaluated to be drawn).
"""

from __future__ import annotations

from beyond_gd.report.registry import CLAIMS, FIGURES

# The figure modules in page order (importing one registers its figures and its claims): the chapter's
# figures, each followed by the later studies that sharpen it (Fig 6-3 in two dimensions and between
# solutions; the Hessian, its density and the edge of stability beside the text on curvature), then what the
# chapter asks the reader to try and the training the MNIST figures start from. Static imports: the report
# stage's code deps are read from the import statements.
from beyond_gd.report.figures import (  # noqa: F401 - imported to register their figures and claims
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

__all__ = ["CLAIMS", "FIGURES"]
