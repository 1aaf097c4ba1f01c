"""The top of a Hessian spectrum split into outliers and bulk: numpy only, so that the report (which imports no
torch) and the hessian_density stage compute it with one function."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Outliers:
    count: int  # eigenvalues above the widest gap (0 where fewer than two values are given)
    gap: float  # lambda_count / lambda_count+1, the widest ratio among the candidates (NaN: none)
    edge: float  # lambda_count+1: where the bulk starts (NaN: none)


def outliers(top: np.ndarray) -> Outliers:
    """Split descending positive eigenvalues at their widest ratio gap: the outliers above, the bulk below.

    The outliers of a C-class network's Hessian sit apart from the bulk (Sagun et al. 2017; Papyan 2019);
    the widest ratio lambda_i / lambda_i+1 among the top values is where that separation is (if any).
    """
    top = np.asarray(top, dtype=np.float64)
    top = top[top > 0]
    if len(top) < 2:  # no gap to measure (too few values converged): no outliers found
        return Outliers(0, float("nan"), float("nan"))
    ratios = top[:-1] / top[1:]
    i = int(np.argmax(ratios))
    return Outliers(i + 1, float(ratios[i]), float(top[i + 1]))
