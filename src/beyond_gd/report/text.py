"""How numbers read on the page, where more than one figure or claim writes them."""

from __future__ import annotations

import pandas as pd


def mean_std(mean: float, std: float, spec: str = ",.0f") -> str:
    """'1,234 ± 56'; the mean alone when there is no spread (one seed); 'not reached' when there is no mean."""
    if pd.isna(mean):
        return "not reached"
    return f"{mean:{spec}}" + (f" ± {std:{spec}}" if pd.notna(std) else "")
