"""Stage `report`: every figure and the claims check, from the earlier stages' artifacts only.

Arguments: one `--<artifact>` folder per upstream stage the registered figures
and claims read (`--baseline`, `--random-walk`, ...; see `--help`), and
`--out` (default `reports`). Writes, in `--out`, replaced as a whole only when
everything succeeded:
- `figures/<name>.<format>` for every registered figure (beyond_gd.report.figures);
- `claims.csv`: id, figure, book, measured, tolerance, verdict (beyond_gd.report.claims);
- `index.html` (self-contained apart from relative links to figures/) and
  `README.md`: each figure with what it shows, the book's claim and what we
  measured; the claims table; provenance (git commit, params hashes, device,
  library versions, date, a hash of every input file);
- `metrics.json`: how many claims agree, partly agree, differ.
Everything written is logged as artifacts of the stage's MLflow run.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


from beyond_gd.config import as_dict, load_params, required, section
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.report import build as report
from beyond_gd.report.artifacts import Artifacts
from beyond_gd.report.claims import CLAIMS, VERDICTS
from beyond_gd.report.figures import FigureParams
from beyond_gd.report.style import Style, check_names
from beyond_gd.stages.common import cli, parser

STAGE = "report"
LIBRARIES = ("numpy", "pandas", "matplotlib", "seaborn", "torch", "mlflow", "dvc", "hydra-core")


@dataclass
class _Sections:
    style: dict[str, Any] = required()
    figures: dict[str, Any] = required()
    # One tolerance per registered claim, by claim id.
    claims: dict[str, float] = required()


@dataclass
class ReportConfig:
    style: Style
    figures: FigureParams
    claims: dict[str, float]


def load_config(params: dict[str, Any]) -> ReportConfig:
    """Section `report`; every problem is one ConfigError naming `report.<part>.<key>`."""
    top = section(params, STAGE, _Sections)
    style = section({f"{STAGE}.style": top.style}, f"{STAGE}.style", Style)
    if problem := check_names(style):
        raise ConfigError(f"{STAGE}.style.{problem}")
    figures = section({f"{STAGE}.figures": top.figures}, f"{STAGE}.figures", FigureParams)
    known = [c.id for c in CLAIMS]
    for key in top.claims:
        if key not in known:
            raise ConfigError(f"{STAGE}.claims.{key}: unknown claim (known: {', '.join(known)})")
    for key in known:
        if key not in top.claims:
            raise ConfigError(f"{STAGE}.claims.{key}: missing (every registered claim needs its tolerance)")
        if not top.claims[key] >= 0:
            raise ConfigError(f"{STAGE}.claims.{key}: must be >= 0, got {top.claims[key]!r}")
    return ReportConfig(style, figures, dict(top.claims))


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    for name in report.artifact_names():
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, default=f"data/{name}",
                       help=f"the `{name}` stage's output folder (default: data/{name})")
    p.add_argument("--out", default="reports", help="folder for the report (replaced as a whole)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                   help="figures drawn at once, in processes (default: one per CPU); the files do not depend on it")
    args = p.parse_args(argv)
    params = load_params(args.params)
    cfg = load_config(params)
    artifacts = Artifacts({name: Path(getattr(args, name)) for name in report.artifact_names()})
    if missing := artifacts.missing(report.needs()):
        first, flag = artifacts.path(missing[0]), missing[0].artifact.replace("_", "-")
        raise DataError(f"{first}: missing (an output of the stage behind --{flag}; {len(missing)} input(s) "
                        "missing in all; run `dvc repro`)")

    out = Path(args.out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    used = {STAGE: as_dict(cfg)}
    try:
        with report.Drawing(tmp, artifacts, cfg.style, cfg.figures, max(1, args.jobs)) as drawing:
            # MLflow loads only now, while the workers draw (they need none of it): seconds of a re-run.
            import mlflow

            from beyond_gd.tracking import stage_run, write_metrics

            with stage_run(STAGE, used) as run:
                built = report.build(tmp, drawing, artifacts, cfg.claims, provenance(params, used, run.info.run_id))
                counts = {v: int((built.claims["verdict"] == v).sum()) for v in VERDICTS}
                metrics = {"claims": len(built.claims), **counts, "figures": len(built.figures)}
                write_metrics(tmp / "metrics.json", metrics)
                mlflow.log_metrics({f"claims_{k}": float(v) for k, v in counts.items()})
                mlflow.log_artifacts(str(tmp))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace_dir(tmp, out)
    print(f"{STAGE}: {len(built.figures)} figures, {len(built.claims)} claims ("
          + ", ".join(f"{n} {v}" for v, n in counts.items()) + f") -> {out / report.HTML}")


def provenance(params: dict[str, Any], used: dict[str, Any], run_id: str) -> dict[str, str]:
    """Where this report came from: code, params, machine, libraries, time."""
    from beyond_gd.tracking import cpu_name, params_hash, run_tags  # after the workers forked, as in main

    tags = run_tags(STAGE, used, None)
    libs = []
    for lib in LIBRARIES:
        try:
            libs.append(f"{lib} {version(lib)}")
        except PackageNotFoundError:
            continue
    return {
        "git commit": (tags["git_commit"] or "unknown") + (" (uncommitted changes)" if tags["git_dirty"] == "true"
                                                           else ""),
        "params hash (all of params.yaml)": params_hash(params),
        "params hash (report section)": tags["params_hash"],
        "device": f"{cpu_name()} ({platform.machine()}, {os.cpu_count()} cores); "
                  "the report draws only, on CPU",
        "python": platform.python_version(),
        "libraries": ", ".join(libs),
        "date (UTC)": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "MLflow run": f"{run_id} (experiment beyond-gd/{STAGE})",
    }


def _replace_dir(new: Path, final: Path) -> None:
    """Move `new` into place of `final`; the old folder is removed only once the new one is there."""
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(new, final)
    shutil.rmtree(old, ignore_errors=True)


if __name__ == "__main__":
    cli(main)
