"""Draw every registered figure, check every registered claim, write the pages into one folder."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from beyond_gd.report import page
from beyond_gd.report.artifacts import Artifacts, Need
from beyond_gd.report.claims import CLAIMS, evaluate
from beyond_gd.report.figures import FIGURES, FigureParams
from beyond_gd.report.style import Style, apply, save

FIGURE_DIR = "figures"
CLAIMS_CSV = "claims.csv"
HTML, MARKDOWN = "index.html", "README.md"


def needs() -> list[Need]:
    """Every artifact file some figure or claim reads, in first-use order (the stage's DVC deps)."""
    seen = dict.fromkeys(n for entry in (*FIGURES, *CLAIMS) for n in entry.needs)
    return list(seen)


def artifact_names() -> list[str]:
    return list(dict.fromkeys(n.artifact for n in needs()))


@dataclass(frozen=True)
class Built:
    figures: list[page.PageFigure]
    claims: pd.DataFrame
    files: list[Path]  # every file written, relative to the folder


def build(folder: Path, artifacts: Artifacts, style: Style, params: FigureParams, tolerances: dict[str, float],
          provenance: Mapping[str, str]) -> Built:
    """Write figures/, claims.csv, index.html and README.md into `folder` (which must exist)."""
    apply(style)
    (folder / FIGURE_DIR).mkdir()
    shown = []
    for spec in FIGURES:
        drawn = spec.draw(artifacts.view(spec.needs), params, style)
        paths = save(drawn.figure, spec.name, folder / FIGURE_DIR, style)
        files = {p.suffix[1:]: f"{FIGURE_DIR}/{p.name}" for p in paths}
        shown.append(page.PageFigure(spec.name, spec.title, spec.shows, spec.book, drawn.measured, files,
                                     drawn.table))
    claims = evaluate(CLAIMS, artifacts.view, tolerances)
    claims.to_csv(folder / CLAIMS_CSV, index=False)
    inputs = pd.DataFrame([{"artifact": n.artifact, "file": n.file, "sha256 (first 12)": artifacts.digest(n)}
                           for n in sorted(needs())])
    (folder / HTML).write_text(page.html_page(shown, claims, provenance, inputs))
    (folder / MARKDOWN).write_text(page.markdown_page(shown, claims, provenance, inputs))
    files = [Path(p) for f in shown for p in f.files.values()] + [Path(CLAIMS_CSV), Path(HTML), Path(MARKDOWN)]
    return Built(shown, claims, files)
