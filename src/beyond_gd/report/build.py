"""Draw every registered figure, check every registered claim, write the pages into one folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from beyond_gd import provenance
from beyond_gd.config import as_dict
from beyond_gd.report import page
from beyond_gd.report.artifacts import Artifacts, Need
from beyond_gd.report.claims import VerdictRules, check_claims

# The registries as the figures package fills them: every figure module imported, so every figure and claim.
from beyond_gd.report.figures import CLAIMS, FIGURES
from beyond_gd.report.grid import plural
from beyond_gd.report.registry import FigureParams, FigureSpec
from beyond_gd.report.style import Style, apply, save
from beyond_gd.study import RECORD

FIGURE_DIR = "figures"
FIGURES_PACKAGE = "beyond_gd.report.figures"
# A figure's measured text, its files (format -> path relative to the page) and its table as the pages show it.
FigureResult = tuple[str, dict[str, str], page.RenderedTable | None]
CLAIMS_CSV = "claims.csv"
HTML, MARKDOWN = "index.html", "README.md"
# Every upstream stage's run record: the MLflow run (and experiment) that made its artifacts, and where it has
# them how many nested cell runs it ran and under which runs the cells it kept were recorded. The page names
# and links them under each figure.
RUN_RECORD = RECORD


def needs() -> list[Need]:
    """Every artifact file some figure or claim reads, and each artifact's run record, in first-use
    order (the stage's DVC deps)."""
    seen = dict.fromkeys(n for entry in (*FIGURES, *CLAIMS) for n in entry.needs)
    return list(seen | dict.fromkeys(Need(n.artifact, RUN_RECORD) for n in seen))


def run_url(ui: str, experiment_id: str, run_id: str) -> str:
    """A run's page in the MLflow UI served at `ui` (MLflow's own address scheme for a run)."""
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def mlflow_runs(artifacts: Artifacts, needs: tuple[Need, ...], ui: str = "") -> tuple[str | page.Link, ...]:
    """The MLflow runs whose artifacts a figure draws, named from each artifact's run record, each id a link to
    the run in the UI at `ui` (where a record names its experiment's id); for a stage of training cells, how
    many it ran, how many it kept from earlier runs and the stage runs those were recorded under."""
    def run(record: dict, run_id: str) -> page.Link:
        experiment = record.get("mlflow_experiment_id")
        return page.Link(run_id, run_url(ui, experiment, run_id) if ui and experiment else "")

    named: list[str | page.Link] = []
    for artifact in dict.fromkeys(n.artifact for n in needs):
        named += ["; "] if named else []
        record = artifacts.load(Need(artifact, RUN_RECORD))
        if "mlflow_run_id" not in record:
            named.append(f"{artifact}: no run recorded")
            continue
        named += [f"{record['mlflow_experiment']} run ", run(record, record["mlflow_run_id"])]
        if "cells" not in record:
            continue
        ran, kept = record["cells"], record.get("cells_kept", 0)
        named.append(f" with its {plural(ran, 'nested cell run')}" if ran else ", which ran no cell")
        if not kept:
            continue
        named.append(f"{'; ' if ran else ': '}{plural(kept, 'cell')} kept from earlier runs (")
        held = record.get("cells_kept_in", {})
        for k, (parent, count) in enumerate(held.items()):
            named += [", " if k else "", f"{count} recorded under run ", run(record, parent)]
        if unnamed := kept - sum(held.values()):
            named.append(f"{', ' if held else ''}{unnamed} whose run is not recorded")
        named.append(")")
    return tuple(named)


def inputs() -> dict[str, tuple[str, ...]]:
    """Every upstream stage the report reads, with the files of it that it reads (its DVC deps), sorted."""
    by_artifact: dict[str, list[str]] = {}
    for n in sorted(needs()):
        by_artifact.setdefault(n.artifact, []).append(n.file)
    return {artifact: tuple(files) for artifact, files in by_artifact.items()}


def artifact_names() -> list[str]:
    return list(dict.fromkeys(n.artifact for n in needs()))


def figures_by_artifact() -> dict[str, list[str]]:
    """Every artifact the report reads, with the titles of the figures that read it (in page order)."""
    return {name: [f.title for f in FIGURES if any(n.artifact == name for n in f.needs)] for name in artifact_names()}


@dataclass(frozen=True)
class Built:
    figures: list[page.PageFigure]  # the figures drawn (the run's metrics count these)
    not_drawn: list[page.PageFigure]  # listed on the page with the reason, no image: their data did not run
    claims: pd.DataFrame
    files: list[Path]  # every file written, relative to the folder


# Each figure's record of its last drawing in the figures folder: its key, measured text, files and table.
DRAWN = "drawn.json"
# The libraries whose versions change a figure's pixels.
DRAWING_LIBRARIES = ("matplotlib", "seaborn", "numpy", "pandas")


def shared_key() -> dict[str, Any]:
    """What every figure's key holds alike: the page's table rendering and the drawing libraries' versions."""
    return {"page": provenance.code_hash(page.__name__), "libraries": provenance.library_versions(DRAWING_LIBRARIES)}


def figure_key(spec: FigureSpec, artifacts: Artifacts, style: Style, params: FigureParams,
               shared: Mapping[str, Any]) -> str:
    """What a figure's files and text depend on: its inputs' bytes, the style, the figures' params, the
    code of its module and of what that imports (the other figure modules aside: the figures package's
    registry imports them all), and `shared` (`shared_key`)."""
    blob = json.dumps({
        "inputs": {f"{n.artifact}/{n.file}": artifacts.sha256(n) for n in spec.needs if not artifacts.missing([n])},
        "style": as_dict(style), "params": as_dict(params), "name": spec.name, "shared": shared,
        "code": provenance.code_hash(spec.draw.__module__, skip=(*provenance.RECORDING_ONLY, FIGURES_PACKAGE))},
        sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Drawing:
    """Every registered figure being drawn into `folder`/figures: by `jobs` worker processes, started at
    once, or in this process when `jobs` is 1 (at `results`). Use it as a context manager.

    Figures are independent, and saving PNG and SVG is most of the report's time; the files do not
    depend on `jobs`. Workers fork when the drawing starts, so what the caller imports afterwards
    (MLflow) loads while they draw. A figure that `previous` (the last run's figures folder) holds with
    the key it has now (`figure_key`) is copied from there, not drawn: a change to one figure's inputs,
    code or style redraws that figure only.
    """

    def __init__(self, folder: Path, artifacts: Artifacts, style: Style, params: FigureParams, jobs: int = 1,
                 previous: Path | None = None) -> None:
        self._out = folder / FIGURE_DIR
        self._out.mkdir()
        shared = shared_key()
        self._keys = [figure_key(spec, artifacts, style, params, shared) for spec in FIGURES]
        self._kept = _kept(previous, self._out, self._keys)
        self._tasks = [(index, folder, dict(artifacts.dirs), style, params) for index in range(len(FIGURES))
                       if index not in self._kept]
        workers = min(jobs, len(self._tasks))
        self._pool = ProcessPoolExecutor(max_workers=workers) if workers > 1 else None
        self._futures = [self._pool.submit(_draw, task) for task in self._tasks] if self._pool else []

    @property
    def redrawn(self) -> int:
        """How many figures this drawing draws (the others are kept from the last run)."""
        return len(self._tasks)

    def results(self) -> list[FigureResult]:
        drawn = ([_draw(task) for task in self._tasks] if self._pool is None
                 else [future.result() for future in self._futures])
        new = dict(zip((task[0] for task in self._tasks), drawn, strict=True))
        results = [self._kept.get(index) or new[index] for index in range(len(FIGURES))]
        record = {spec.name: {"key": key, "measured": measured, "files": files, "table": table}
                  for spec, key, (measured, files, table) in zip(FIGURES, self._keys, results, strict=True)}
        (self._out / DRAWN).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        return results

    def __enter__(self) -> Drawing:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def _kept(previous: Path | None, out: Path, keys: list[str]) -> dict[int, FigureResult]:
    """The figures `previous` holds drawn with the key they have now, their files copied into `out`."""
    try:
        record = json.loads((previous / DRAWN).read_text()) if previous is not None else {}
    except (OSError, ValueError):
        return {}
    kept = {}
    for index, (spec, key) in enumerate(zip(FIGURES, keys, strict=True)):
        entry = record.get(spec.name)
        if not isinstance(entry, dict) or entry.get("key") != key:
            continue
        files = entry["files"]
        if not all((previous / Path(path).name).is_file() for path in files.values()):
            continue
        for path in files.values():
            shutil.copy2(previous / Path(path).name, out / Path(path).name)
        kept[index] = (entry["measured"], files, entry["table"])
    return kept


def build(folder: Path, drawing: Drawing, artifacts: Artifacts, tolerances: Mapping[str, float],
          concepts: Mapping[str, float], rules: VerdictRules, provenance: Mapping[str, str],
          mlflow_ui: str = "") -> Built:
    """Collect the drawn figures, check every claim, write claims.csv, index.html and README.md; the run ids
    under each figure link to the MLflow UI at `mlflow_ui` (plain text without one)."""
    claims_under = claims_by_figure()
    shown = [page.PageFigure(spec.name, spec.title, spec.shows, spec.book, measured, files,
                             mlflow_runs(artifacts, spec.needs, mlflow_ui), table, claims_under.get(spec.name, ()))
             for spec, (measured, files, table) in zip(FIGURES, drawing.results(), strict=True)]
    claims = check_claims(CLAIMS, artifacts.view, tolerances, concepts, rules)
    claims.to_csv(folder / CLAIMS_CSV, index=False)
    inputs = pd.DataFrame([{"artifact": n.artifact, "file": n.file, "sha256 (first 12)": artifacts.digest(n)}
                           for n in sorted(needs())])
    (folder / HTML).write_text(page.html_page(shown, claims, provenance, inputs, mlflow_ui))
    (folder / MARKDOWN).write_text(page.markdown_page(shown, claims, provenance, inputs, mlflow_ui))
    files = [Path(p) for f in shown for p in f.files.values()] + [Path(FIGURE_DIR) / DRAWN, Path(CLAIMS_CSV),
                                                                  Path(HTML), Path(MARKDOWN)]
    return Built([f for f in shown if f.drawn], [f for f in shown if not f.drawn], claims, files)


def claims_by_figure() -> dict[str, tuple[str, ...]]:
    """Each claim under the first figure its module registered (a module's claims belong to its figure)."""
    first = {}
    for spec in FIGURES:
        first.setdefault(spec.draw.__module__, spec.name)
    under: dict[str, tuple[str, ...]] = {}
    for c in CLAIMS:
        under[first[c.module]] = (*under.get(first[c.module], ()), c.id)
    return under


def _draw(task: tuple[int, Path, dict[str, Path], Style, FigureParams]) -> FigureResult:
    """Draw and save FIGURES[index] (in this process or a worker): its measured text, files and table as
    the pages show it (no files for a figure not drawn, whose measured text says why)."""
    index, folder, dirs, style, params = task
    spec = FIGURES[index]
    apply(style)
    drawn = spec.draw(Artifacts(dirs).view(spec.needs), params, style)
    paths = save(drawn.figure, spec.name, folder / FIGURE_DIR, style) if drawn.figure is not None else []
    table = page.render_table(drawn.table) if drawn.table is not None else None
    return drawn.measured, {p.suffix[1:]: f"{FIGURE_DIR}/{p.name}" for p in paths}, table
