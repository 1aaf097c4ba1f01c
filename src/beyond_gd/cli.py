"""`beyond-gd`: what the pipeline holds, and its report, from a checkout's root.

    beyond-gd stages          each stage: the params it reads, where it writes, the figures it feeds
    beyond-gd figures         each figure of the report: the stages it reads, its claims and their verdicts
    beyond-gd open            open reports/index.html in a browser
    beyond-gd ui              the MLflow UI over this checkout's store, opened on the optimizer grid's runs
    beyond-gd exps            DVC's experiments side by side: a line per param or metric that differs
    beyond-gd costs           where the last reproduction's time went: seconds per stage and part, CPU, FLOP rate
    beyond-gd params [o ...]  recompose params.yaml from conf/ with Hydra overrides (what `dvc exp run` does)
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import warnings
import webbrowser
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

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
    exps = sub.add_parser("exps", help="DVC's experiments side by side, one line per param or metric that differs")
    exps.add_argument("--width", type=int, default=None, help="columns to fit (default: the terminal's)")
    costs = sub.add_parser("costs", help="where the last reproduction's time went, per stage (from its run records)")
    costs.add_argument("--no-peak", action="store_true", help="skip timing this machine's matmul peak (about 1 s)")
    compose = sub.add_parser("params", help="recompose params.yaml from conf/")
    compose.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=smoke baseline.epochs=3")
    args = p.parse_args(argv)
    root = workspace_root()
    if args.command == "params":
        from beyond_gd import compose as composer

        composer.main(args.overrides)
    elif args.command == "costs":
        import torch

        from beyond_gd import costs as cost

        torch.set_num_threads(1)  # a cell's thread: the peak its arithmetic rate is set against
        peak = None if args.no_peak else cost.matmul_peak()
        print(cost.format_table(cost.stage_costs(*cost.read_records(root), peak), peak))
    elif args.command == "ui":
        serve_ui(args.host, args.port, not args.no_browser)
    elif args.command == "exps":
        width = args.width or shutil.get_terminal_size((120, 40)).columns
        print(experiments(_dvc_json(root, "exp", "show", "--json", "--hide-queued"), width))
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

    from beyond_gd.report.build import claims_by_figure
    from beyond_gd.report.figures import FIGURES

    table = root / "reports" / "claims.csv"
    verdicts = pd.read_csv(table).set_index("id")["verdict"].to_dict() if table.is_file() else {}
    under = claims_by_figure()  # as the page places them
    lines = []
    for spec in FIGURES:
        reads = ", ".join(dict.fromkeys(n.artifact for n in spec.needs))
        lines += [f"{spec.name}: {spec.title}", f"  reads: {reads}"]
        lines += [f"  claim {c}: {verdicts.get(c, 'not yet checked')}" for c in under.get(spec.name, ())]
    return "\n".join(lines)


# Where `beyond-gd ui` opens: the optimizer grid's runs table (one run per training cell, the cells' scores as
# columns), sorted by the score the grid ranks by (conf/optimizer_grid: rank_by); sorting by a metric also shows
# the cells as rows of their own rather than folded under their stage's run (MLflow's UI nests runs only when
# sorted by time or not at all).
LANDING = ("optimizer_grid", "train_loss")
# The runs table's columns and order travel as a view MLflow's UI shares: an experiment tag named by the
# address's `viewStateShareKey` (the UI's "Share" button writes the same), holding the view as JSON.
VIEW_KEY = "beyond-gd-runs"
VIEW_TAG = "mlflow.sharedViewState."
LOG = "mlflow-ui.log"  # the server's own output, beside the store


def serve_ui(host: str, port: int, browse: bool) -> None:
    """`mlflow ui` over the pipeline's store, its output in a log file; once it answers, the address of the
    runs table it opens on, last."""
    from beyond_gd.provenance import workspace_root

    with _quiet_mlflow():  # importing MLflow may warn of its own dependencies
        from beyond_gd.tracking import tracking_uri

    mlflow = Path(sys.executable).with_name("mlflow")
    store = tracking_uri()
    # Beside the store where it is a file (the default: mlflow.db in the workspace), else in the workspace.
    folder = Path(store.removeprefix("sqlite:///")).parent if store.startswith("sqlite:///") else workspace_root()
    log = folder / LOG
    base = f"http://{host}:{port}"
    with log.open("w") as out:
        # One worker: a UI for one user (with the default four it took 28 s to answer here, on two cores; 18 s
        # with one).
        server = subprocess.Popen([str(mlflow), "ui", "--backend-store-uri", store, "--host", host,
                                   "--port", str(port), "--workers", "1"], stdout=out, stderr=subprocess.STDOUT)
    # A SIGTERM to this process alone (`kill`) stops the server too, through the `finally` below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                tail = "".join(log.read_text().splitlines(keepends=True)[-5:])
                sys.exit(f"error: the MLflow UI stopped (exit {server.returncode}); the end of {log}:\n{tail}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"error: the MLflow UI did not answer on {base} in 120 s (its log: {log})")
                time.sleep(1)
        url = landing_url(base)
        print(f"MLflow UI: {url}  (Ctrl-C stops it; the server's log: {log})", flush=True)
        if browse:
            webbrowser.open(url)
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.terminate()
        server.wait(timeout=30)


def landing_url(base: str) -> str:
    """The runs table `ui` opens on: the optimizer grid's (else the experiment whose runs carry the most
    metrics), its metric columns shown, in model-training mode (MLflow 3's UI otherwise opens every
    experiment in its GenAI view, traces, unless the browser remembers otherwise)."""
    with _quiet_mlflow():
        from mlflow.tracking import MlflowClient

        from beyond_gd.tracking import EXPERIMENT_PREFIX, experiment_name, tracking_uri

        client = MlflowClient(tracking_uri=tracking_uri())
        stage, sort = LANDING
        exp = client.get_experiment_by_name(experiment_name(stage))
        runs = client.search_runs([exp.experiment_id], max_results=1000) if exp else []
        if not runs:
            sort = ""
            ours = [e for e in client.search_experiments() if e.name.startswith(f"{EXPERIMENT_PREFIX}/")]
            found = [(e, client.search_runs([e.experiment_id], max_results=1000)) for e in ours]
            exp, runs = max(found, key=lambda f: sum(len(r.data.metrics) for r in f[1]), default=(None, []))
        if exp is None:
            return f"{base}/#/experiments?workflowType=machine_learning"
        client.set_experiment_tag(exp.experiment_id, VIEW_TAG + VIEW_KEY,
                                  json.dumps(runs_view([r.data.metrics for r in runs], sort)))
    return f"{base}/#/experiments/{exp.experiment_id}?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning"


def runs_view(metrics: list[Mapping[str, float]], sort: str = "", most: int = 10) -> dict[str, Any]:
    """A runs-table view (MLflow UI's shared view state): as columns the metrics at least half of the runs
    carry (`sort` first, the rest by name, `most` in all), sorted by `sort` (ascending) where one is given."""
    counts: dict[str, int] = {}
    for run in metrics:
        for key in run:
            counts[key] = counts.get(key, 0) + 1
    common = sorted(k for k, n in counts.items() if 2 * n >= len(metrics))
    keys = ([sort] if sort in counts else []) + [k for k in common if k != sort]
    view: dict[str, Any] = {"selectedColumns": [_column("metrics", k) for k in keys[:most]]}
    if sort in counts:
        view |= {"orderByKey": _column("metrics", sort), "orderByAsc": True}
    return view


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's name of a column (makeCanonicalSortKey)


class _quiet_mlflow:
    """MLflow's client without its notes: no deprecation warnings, no store-migration log lines."""

    def __enter__(self) -> None:
        self._warnings = warnings.catch_warnings()
        self._warnings.__enter__()
        warnings.simplefilter("ignore")
        self._levels = {name: logging.getLogger(name).level for name in ("mlflow", "alembic")}
        for name in self._levels:
            logging.getLogger(name).setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)
        self._warnings.__exit__(*exc)


def _dvc_json(root: Path, *args: str) -> Any:
    dvc = Path(sys.executable).with_name("dvc")
    done = subprocess.run([str(dvc) if dvc.exists() else "dvc", *args], cwd=root, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"error: dvc {' '.join(args)}: {(done.stderr.strip().splitlines() or ['failed'])[-1]}")
    return json.loads(done.stdout)


def experiments(shown: list[dict[str, Any]], width: int = 120) -> str:
    """`dvc exp show --json` turned on its side: one line per param or metric whose value differs between
    the commits and experiments shown (DVC's --only-changed), one column per experiment, in blocks that fit
    `width` columns. DVC's own table keeps a column per param and metric: with --only-changed and the deps and
    dates dropped, three experiments that change three params and two metrics took 150 columns (measured);
    --precision rounds only its CSV, and --no-pager folds the columns that do not fit into "…"."""
    columns: list[tuple[str, dict[str, Any]]] = []
    for commit in shown:
        if commit.get("rev") == "workspace":
            continue  # the workspace is its commit plus whatever is being edited
        columns.append((commit.get("name") or commit["rev"][:7], _values(commit)))
        for exp in commit.get("experiments") or []:
            rev = exp["revs"][0]
            columns.append((exp.get("name") or rev["rev"][:7], _values(rev)))
    if not columns:
        return "no experiments (dvc exp run --queue ..., then dvc queue start)"
    keys = list(dict.fromkeys(k for _, values in columns for k in values))
    changed = [k for k in keys if len({json.dumps(v.get(k), sort_keys=True) for _, v in columns}) > 1]
    if not changed:
        return "the experiments shown do not differ in any param or metric"
    cell = 14  # a value or an experiment's name, cut to fit
    label = max(len(k) for k in changed) + 2
    per_block = max(1, (width - label) // (cell + 2))
    blocks = []
    for start in range(0, len(columns), per_block):
        block = columns[start:start + per_block]
        lines = ["".ljust(label) + "  ".join(_cut(name, cell).ljust(cell) for name, _ in block).rstrip()]
        for kind in ("params", "metrics"):
            rows = [k for k in changed if k.startswith(f"{kind}:")]
            if rows:
                lines.append(kind)
            lines += [f"  {k.split(':', 1)[1]}".ljust(label) + "  ".join(
                _cut(_shown(v.get(k)), cell).ljust(cell) for _, v in block).rstrip() for k in rows]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _values(rev: dict[str, Any]) -> dict[str, Any]:
    """A commit's or an experiment's params and metrics, flattened: 'params:key.sub' and 'metrics:key', where a
    project has several files of a kind each key led by its file's short name (`_short`); nothing for a
    failed one."""
    data = rev.get("data") or {}
    out: dict[str, Any] = {}
    for kind in ("params", "metrics"):
        files = data.get(kind) or {}
        names = _short([p for p in files if not (kind == "params" and p == "params.yaml")])
        for path, content in files.items():
            lead = f"{names[path]}." if path in names and len(files) > 1 else ""
            out |= {f"{kind}:{lead}{k}": v for k, v in _flat(content.get("data") or {})}
    return out


def _short(paths: list[str]) -> dict[str, str]:
    """Each path by the fewest of its last folders that tell it from the others, the file name dropped where
    all share it: data/interpolate/metrics.json and reports/metrics.json read interpolate and reports."""
    parts = {p: p.split("/") for p in paths}
    if len(paths) > 1 and len({q[-1] for q in parts.values()}) == 1:
        parts = {p: q[:-1] or q for p, q in parts.items()}
    short = {}
    for p, q in parts.items():
        n = 1
        while n < len(q) and sum("/".join(r[-n:]) == "/".join(q[-n:]) for r in parts.values()) > 1:
            n += 1
        short[p] = "/".join(q[-n:])
    return short


def _flat(data: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _dvc(root: Path) -> dict:
    path = root / "dvc.yaml"
    if not path.is_file():
        sys.exit(f"error: {path}: missing (run beyond-gd from the repository's root)")
    return yaml.safe_load(path.read_text())


if __name__ == "__main__":
    main()
