"""`beyond-gd`: what the pipeline holds, and its report, from a checkout's root.

    beyond-gd stages          each stage: the params it reads, where it writes, the figures it feeds
    beyond-gd figures         each figure of the report: the stages it reads, its claims and their verdicts
    beyond-gd open            open reports/index.html in a browser
    beyond-gd ui              the MLflow UI over this checkout's store, opened on the baseline's runs table
    beyond-gd params [o ...]  recompose params.yaml from conf/ with Hydra overrides (what `dvc exp run` does)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
import webbrowser
from pathlib import Path

import yaml

from beyond_gd.provenance import workspace_root


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="beyond-gd", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("stages", help="the stages, their params, outputs and figures")
    sub.add_parser("figures", help="the figures, their claims and verdicts")
    sub.add_parser("open", help="open the report in a browser")
    ui = sub.add_parser("ui", help="the MLflow UI over this checkout's store")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--no-browser", action="store_true", help="print the address only")
    compose = sub.add_parser("params", help="recompose params.yaml from conf/")
    compose.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=smoke baseline.epochs=3")
    args = p.parse_args(argv)
    root = workspace_root()
    if args.command == "params":
        from beyond_gd import compose as composer

        composer.main(args.overrides)
    elif args.command == "ui":
        serve_ui(args.host, args.port, not args.no_browser)
    elif args.command == "open":
        page = root / "reports" / "index.html"
        if not page.is_file():
            sys.exit(f"error: {page}: missing (run `dvc repro`)")
        webbrowser.open(page.as_uri())
        print(page)
    else:
        print(stages(root) if args.command == "stages" else figures(root))


def stages(root: Path) -> str:
    """One block per stage of dvc.yaml: what it computes, reads and writes, and the figures it feeds."""
    from beyond_gd.report.build import figures_by_artifact

    feeds = figures_by_artifact()
    lines = []
    for name, stage in _dvc(root)["stages"].items():
        outs = sorted({Path(next(iter(o)) if isinstance(o, dict) else o).parent.as_posix()
                       for o in stage.get("outs", [])})
        lines += [f"{name}: {stage.get('desc', '').split(': ', 1)[-1]}",
                  f"  params: {', '.join(stage.get('params', []))}", f"  writes: {', '.join(outs)}"]
        lines += [f"  feeds: {title}" for title in feeds.get(name, [])]
    return "\n".join(lines)


def figures(root: Path) -> str:
    """One block per figure: its title, the stages it reads, its claims with the last report's verdicts."""
    import pandas as pd

    from beyond_gd.report.figures import CLAIMS, FIGURES

    table = root / "reports" / "claims.csv"
    verdicts = pd.read_csv(table).set_index("id")["verdict"].to_dict() if table.is_file() else {}
    lines = []
    for spec in FIGURES:
        reads = ", ".join(dict.fromkeys(n.artifact for n in spec.needs))
        lines += [f"{spec.name}: {spec.title}", f"  reads: {reads}"]
        module = spec.draw.__module__
        lines += [f"  claim {c.id}: {verdicts.get(c.id, 'not yet checked')}" for c in CLAIMS
                  if c.check.__module__ == module and any(n in spec.needs for n in c.needs)]
    return "\n".join(lines)


def serve_ui(host: str, port: int, browse: bool) -> None:
    """`mlflow ui` over the pipeline's store; once it answers, the address of the baseline's runs table."""
    from beyond_gd.tracking import tracking_uri

    mlflow = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", tracking_uri(), "--host", host,
                               "--port", str(port)])
    base = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 120
        while server.poll() is None:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"error: the MLflow UI did not answer on {base} in 120 s")
                time.sleep(1)
        url = landing_url(base)
        print(f"MLflow UI: {url}  (Ctrl-C stops it)", flush=True)
        if browse:
            webbrowser.open(url)
        server.wait()
    finally:
        server.terminate()


def landing_url(base: str, stage: str = "baseline") -> str:
    """A stage's runs table. MLflow 3's UI opens every experiment in its GenAI view (traces) unless it is in
    its model-training mode, which the browser remembers or the address asks for (`workflowType`)."""
    from mlflow.tracking import MlflowClient

    from beyond_gd.tracking import experiment_name, tracking_uri

    exp = MlflowClient(tracking_uri=tracking_uri()).get_experiment_by_name(experiment_name(stage))
    page = f"experiments/{exp.experiment_id}" if exp else "experiments"
    return f"{base}/#/{page}?workflowType=machine_learning"


def _dvc(root: Path) -> dict:
    path = root / "dvc.yaml"
    if not path.is_file():
        sys.exit(f"error: {path}: missing (run beyond-gd from the repository's root)")
    return yaml.safe_load(path.read_text())


if __name__ == "__main__":
    main()
