"""One look for every figure (seaborn on matplotlib), from `report.style`, and reproducible files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the report runs under DVC, in worker processes, with no display

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from beyond_gd.config import required  # noqa: E402

CONTEXTS = ("paper", "notebook", "talk", "poster")
THEMES = ("white", "whitegrid", "ticks", "dark", "darkgrid")
FORMATS = ("png", "svg", "pdf")


@dataclass
class Style:
    context: str = required(choices=CONTEXTS)
    theme: str = required(choices=THEMES)
    palette: str = required(nonempty=True)
    # A sequential colormap for surfaces and contour fills.
    colormap: str = required(nonempty=True)
    font_scale: float = required(gt=0)
    dpi: int = required(gt=0)
    formats: list[str] = required(each_in=FORMATS, nonempty=True)
    # Figure width, and the height of one row of panels, in inches.
    width_in: float = required(gt=0)
    row_height_in: float = required(gt=0)


def check_names(style: Style) -> str | None:
    """The first palette/colormap name matplotlib or seaborn does not know, as 'key: message'."""
    try:
        sns.color_palette(style.palette)
    except (ValueError, KeyError):
        return f"palette: {style.palette!r} is not a seaborn or matplotlib palette"
    if style.colormap not in matplotlib.colormaps:
        return f"colormap: {style.colormap!r} is not a matplotlib colormap"
    return None


def apply(style: Style) -> None:
    sns.set_theme(context=style.context, style=style.theme, palette=style.palette, font_scale=style.font_scale,
                  rc={"figure.dpi": style.dpi, "savefig.dpi": style.dpi, "image.cmap": style.colormap,
                      # Fixed ids in SVGs, so an unchanged figure is an unchanged file.
                      "svg.hashsalt": "beyond-gd", "axes.titleweight": "bold"})


def size(style: Style, rows: float = 1.0, width: float = 1.0) -> tuple[float, float]:
    """A figure size: `width` of the page width, `rows` panel rows tall."""
    return style.width_in * width, style.row_height_in * rows


def save(fig: Figure, stem: str, folder: Path, style: Style) -> list[Path]:
    """`folder/stem.<format>` for every format; no dates or versions inside, so reruns give the same bytes."""
    # One tight bounding box for every format: bbox_inches="tight" measures every artist again per format.
    bbox = fig.get_tightbbox(fig.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    paths = []
    for fmt in style.formats:
        path = folder / f"{stem}.{fmt}"
        metadata = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None},
                    "pdf": {"CreationDate": None, "Producer": None, "Creator": None}}[fmt]
        fig.savefig(path, format=fmt, dpi=style.dpi, bbox_inches=bbox, metadata=metadata)
        paths.append(path)
    plt.close(fig)
    return paths
