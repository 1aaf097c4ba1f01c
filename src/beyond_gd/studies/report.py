"""Every figure and the claims check, from the earlier stages' artifacts only.

Writes, in the work folder the runner moves into `reports/`:
`figures/<name>.<format>` for every registered figure (beyond_gd.report.figures);
`claims.csv` (`beyond_gd.report.claims.COLUMNS`: each claim's kind, statement, measurement, verdict,
P(verdict) and margin); `index.html`
(self-contained apart from relative links to figures/) and `README.md`, each
figure with what it shows, the book's claim and what we measured, the claims
table and the provenance (git commit, params hash, machine, library versions,
date, the MLflow runs, a hash of every input file). Nothing here trains or
evaluates a model.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
from dataclasses import dataclass

from beyond_gd import provenance
from beyond_gd.config import as_dict, required
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.report import build as report
from beyond_gd.report import claims
from beyond_gd.report.artifacts import Artifacts
from beyond_gd.report.claims import VerdictRules
from beyond_gd.report.figures import CLAIMS
from beyond_gd.report.registry import MEASURED, OUTCOMES, FigureParams
from beyond_gd.report.style import Style, check_names
from beyond_gd.study import Inputs, Result

# The installed versions the provenance names (make setup installs them from requirements.lock): the
# packages that compute the results (torch trains and differentiates, torchvision reads MNIST, numpy and scipy
# do the toy studies' and the statistics' maths, pandas the tables, matplotlib and seaborn draw), then the
# tools that run and record them.
LIBRARIES = ("torch", "torchvision", "numpy", "scipy", "pandas", "matplotlib", "seaborn", "hydra-core", "omegaconf",
             "dvc", "mlflow")


@dataclass
class ReportConfig:
    style: Style = required()
    figures: FigureParams = required()
    # Each claim's own tolerance, by claim id (a claim decided by shared concepts alone has none).
    claims: dict[str, float] = required()
    # One definition per concept that several claims use ("flat", "near zero"), by name.
    concepts: dict[str, float] = required()
    # How a measured verdict is tested against its own randomness (P(verdict), margin).
    verdicts: VerdictRules = required()
    # The MLflow UI's address (what `beyond-gd ui` serves): the page links every run id to the run there.
    mlflow_ui: str = required(nonempty=True)

    def check(self) -> None:
        if not re.fullmatch(r"https?://[^\s/#?]+(/[^\s#?]*)?", self.mlflow_ui):
            raise ConfigError(f"mlflow_ui: must be an http(s) address such as http://127.0.0.1:5000, got "
                              f"{self.mlflow_ui!r}")
        if problem := check_names(self.style):
            raise ConfigError(f"style.{problem}")
        own = [c.id for c in CLAIMS if c.own_tolerance]
        for key in self.claims:
            if key not in own:
                raise ConfigError(f"claims.{key}: not a claim with a tolerance of its own (those: {', '.join(own)})")
        for key in own:
            if key not in self.claims:
                raise ConfigError(f"claims.{key}: missing (the claim's tolerance reads it)")
            if not self.claims[key] >= 0:
                raise ConfigError(f"claims.{key}: must be >= 0, got {self.claims[key]!r}")
        used = sorted({u for c in CLAIMS for u in c.uses})
        for key in self.concepts:
            if key not in used:
                raise ConfigError(f"concepts.{key}: no claim uses it (used: {', '.join(used)})")
        for key in used:
            if key not in self.concepts:
                raise ConfigError(f"concepts.{key}: missing (a claim uses it)")


@dataclass
class Config:
    report: ReportConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.report
    artifacts = Artifacts({name: inputs.folder(name) for name in report.artifact_names()})
    if missing := artifacts.missing(report.needs()):
        first, flag = artifacts.path(missing[0]), missing[0].artifact.replace("_", "-")
        raise DataError(f"{first}: missing (an output of the stage behind --{flag}; {len(missing)} input(s) "
                        "missing in all; run `dvc repro`)")
    # Figures are drawn in worker processes, one per usable core (saving PNG and SVG is most of the time);
    # the files do not depend on how many.
    previous = inputs.previous / report.FIGURE_DIR if inputs.previous is not None else None
    with report.Drawing(inputs.workdir, artifacts, c.style, c.figures, provenance.usable_cores(),
                        previous) as drawing:
        built = report.build(inputs.workdir, drawing, artifacts, c.claims, c.concepts, c.verdicts,
                             _provenance(cfg, inputs.run_id), c.mlflow_ui)
    n = claims.counts(built.claims)
    return Result(
        # The headline in few columns (`dvc metrics show` makes one of each key): the measured claims by
        # verdict, and how many checks fail (the page gives the rest).
        metrics={"figures": len(built.figures), "claims": n["claims"],
                 **{v.replace(" ", "_"): n[v.replace(" ", "_")] for v in OUTCOMES[MEASURED]},
                 "checks_failing": n["checks_fails"]},
        made=(report.FIGURE_DIR, report.CLAIMS_CSV, report.HTML, report.MARKDOWN),
        feeds=report.figures_by_artifact(),
        lines=[f"{len(built.figures)} figures ({drawing.redrawn} drawn, the others kept from the last run); "
               f"{claims.headline(built.claims)}"],
    )


def _provenance(cfg: Config, run_id: str) -> dict[str, str]:
    """Where this report came from: code, params, machine, libraries, time, its MLflow run."""
    libs = provenance.library_versions(LIBRARIES)
    return {
        "git commit": (provenance.git_commit() or "unknown")
        + (" (uncommitted changes)" if provenance.git_dirty() else ""),
        "params hash (report section)": provenance.params_hash(as_dict(cfg)),
        "device": f"{provenance.cpu_name()} ({platform.machine()}, {os.cpu_count()} cores); the report draws only, "
                  "on CPU",
        "python": platform.python_version(),
        "libraries": ", ".join(f"{k} {v}" for k, v in libs.items()),
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "MLflow run": f"{run_id} (experiment beyond-gd/report)",
    }
