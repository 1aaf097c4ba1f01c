"""The users' workflows, driven through the real commands on the smoke profile in a temporary clone.

One smoke reproduction (module fixture) serves every workflow, each of which
leaves the clone as it found it: reproduce and re-run cached; change one key
and re-run exactly what it affects; queued experiments side by side; a DVC
remote shared with a reviewer's fresh clone; the MLflow server's REST API;
provenance on every run. The commands are the README's. MLflow logs to the
project's own store (`mlflow.db` in the clone's root, found through DVC_ROOT),
as a user's would, not to the per-test store of conftest.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
import yaml
from PIL import Image

from beyond_gd.pipeline import declared
from conftest import clone_worktree, git, run

pytestmark = pytest.mark.slow
# Every stage writes a run.json naming its MLflow run, in its folder (one name per stage and folder).
STAGES = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]
FOLDER = {name: "reports" if name == "report" else f"data/{name}" for name in STAGES}


def user(cmd: str, repo: Path, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    """A README command, with the project's own MLflow store (no MLFLOW_TRACKING_URI)."""
    done = run(cmd.split(), repo, unset=("MLFLOW_TRACKING_URI",), timeout_s=timeout_s)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def ran(done: subprocess.CompletedProcess[str]) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` ran (not the ones it found up to date)."""
    return set(re.findall(r"Running stage '([\w-]+)'", done.stdout))


def mlflow_get(base: str, path: str, **query: Any) -> dict[str, Any]:
    url = f"{base}/api/2.0/mlflow/{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def mlflow_post(base: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def restore(repo: Path) -> None:
    """Back to the committed smoke reproduction: params, lock and report from git, data from DVC's cache."""
    git(repo, "checkout", "--", ".")
    user("dvc checkout --force", repo)
    assert json.loads(user("dvc status --json", repo).stdout) == {}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A clone with the smoke profile reproduced the README's way (compose, then `dvc repro`) and committed."""
    repo = clone_worktree(tmp_path_factory.mktemp("workflows") / "repo")
    user(f"{sys.executable} -m beyond_gd.compose profile=smoke", repo)
    done = user("dvc repro", repo, timeout_s=2400)  # every stage, on the smoke profile (about 200 s here)
    assert ran(done) == set(yaml.safe_load((repo / "dvc.yaml").read_text())["stages"])
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "smoke reproduction")
    yield repo


def test_reproduction_is_complete_and_then_cached(smoke: Path, tmp_path: Path) -> None:
    params = yaml.safe_load((smoke / "params.yaml").read_text())
    assert params["baseline"]["max_steps"] == 300
    raw = smoke / "data" / "mnist" / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
    summary = json.loads((smoke / "data" / "baseline" / "summary.json").read_text())
    assert summary["steps"] == 300 and not summary["diverged"]
    assert summary["test_accuracy"] > 0.5  # 300 SGD steps at lr 0.01 beat chance (0.1) by far

    assert ran(user("dvc repro", smoke)) == set()
    assert json.loads(user("dvc status --json", smoke).stdout) == {}
    # One headline file for the pipeline, in a few columns (DVC makes a column of every key of every metrics
    # file); each stage's own headline numbers, at most 5, are a plain output DVC still lists by name.
    shown = json.loads(user("dvc metrics show --json", smoke).stdout)
    files = {path: data["data"] for rev in shown.values() for path, data in rev["data"].items()}
    assert list(files) == ["reports/metrics.json"] and set(files["reports/metrics.json"]) >= {"claims", "figures"}
    table = user("dvc metrics show", smoke).stdout.splitlines()
    assert max(map(len, table)) <= 120, table
    stage_metrics = [f"data/{name}/metrics.json" for name in STAGES if (smoke / f"data/{name}/metrics.json").is_file()]
    assert len(stage_metrics) == len(STAGES) - 2  # mnist writes none; the report's is the headline
    detail = json.loads(user("dvc metrics show --json " + " ".join(stage_metrics), smoke).stdout)
    per_stage = {path: data["data"] for rev in detail.values() for path, data in rev["data"].items()}
    assert "test_accuracy" in per_stage["data/baseline/metrics.json"]
    assert max(len(d) for d in per_stage.values()) <= 5, {path: len(d) for path, d in per_stage.items()}
    plots = user(f"dvc plots show -o {tmp_path / 'plots'}", smoke)
    assert (tmp_path / "plots" / "index.html").stat().st_size > 1000
    # Every declared plot loads (DVC warns "failed to load" for a plot whose file or columns are missing).
    assert "failed to load" not in plots.stdout + plots.stderr, plots.stdout + plots.stderr


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(params: dict[str, Any]) -> None:
        *parents, key = path.split(".")
        node = params
        for name in parents:
            node = node[name]
        node[key] = value(node[key]) if callable(value) else value

    return edit


def downstream(stages: set[str]) -> set[str]:
    """`stages` and every stage that reads, directly or through others, what they write (their declared
    inputs, dvc.yaml's deps): what `dvc repro` runs after they change their outputs."""
    found = set(stages)
    while more := {name for name, stage in declared().items() if name not in found and found & set(stage.inputs)}:
        found |= more
    return found


EDITS = [
    # (key edited in params.yaml, edit, the stages its change reaches directly (its params: what
    # `dvc repro --dry` lists), and the stages a `dvc repro` then runs where that is not they and everything
    # downstream of them (`downstream`); a row with such a set runs for real, the others dry)
    # A real run: DVC carries the change through the outputs to the stages that read them.
    ("random_walk.momenta", _set("random_walk.momenta", lambda m: [*m[:-1], 0.95]), {"random_walk"},
     {"random_walk", "report"}),
    # mode_connectivity draws Fig 6-3 from its own solutions on the interpolate section's grid.
    ("interpolate.alpha_step", _set("interpolate.alpha_step", 0.2), {"interpolate", "mode_connectivity"}, None),
    # The grid's ranking is the lbfgs and lr_adaptation stages' input (their best lrs): they run again,
    # keeping their cells.
    ("optimizer_grid.lrs.sgd", _set("optimizer_grid.lrs.sgd", [0.05]), {"optimizer_grid"}, None),
    ("report.style.dpi", _set("report.style.dpi", 80), {"report"}, None),
    # An optimizer no stage but the grid reads: the baseline (its `optimizers.${baseline.optimizer}`),
    # momentum_speedup and update_rules stay put.
    ("optimizers.adadelta.rho", _set("optimizers.adadelta.rho", 0.95), {"optimizer_grid"}, None),
    # A real run: the smoke profile stops training at max_steps (300) within the first epoch, so a second
    # epoch changes no weight: DVC re-runs the baseline, finds mnist.pt unchanged and skips the
    # landscape stages; only the report (it reads the baseline's curves) follows. mode_connectivity
    # trains its endpoints by the baseline's recipe (the `baseline` section is its param), so it runs too.
    ("baseline.epochs", _set("baseline.epochs", 2), {"baseline", "mode_connectivity"},
     {"baseline", "mode_connectivity", "report"}),
    # New weights: everything that reads them runs again.
    ("baseline.seed", _set("baseline.seed", 1), {"baseline", "mode_connectivity"}, None),
]


def reruns(direct: set[str], real: set[str] | None) -> set[str]:
    """What a `dvc repro` runs after an edit of EDITS (the README's table)."""
    return real if real is not None else downstream(direct)


def test_each_edit_reruns_its_stage_and_what_depends_on_it(smoke: Path) -> None:
    """Each edit's direct stages from a dry run (its params, as dvc.yaml declares them); two of them run for
    real: one carried through the outputs to their readers, one whose outputs come out the same bytes."""
    try:
        for key, edit, direct, real in EDITS:
            before = (smoke / "params.yaml").read_text()
            params = yaml.safe_load(before)
            edit(params)
            (smoke / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            assert ran(user("dvc repro --dry", smoke)) == direct, key
            if real is None:
                (smoke / "params.yaml").write_text(before)
                continue
            assert ran(user("dvc repro", smoke)) == real, key
        assert ran(user("dvc repro", smoke)) == set()
    finally:
        restore(smoke)


def test_one_more_learning_rate_runs_only_its_cells(smoke: Path) -> None:
    """The grid keeps its finished cells (they persist in DVC's outputs): one more lr, one more cell run."""
    previous = json.loads((smoke / "data" / "optimizer_grid" / "run.json").read_text())["mlflow_run_id"]
    try:
        # The longer budget and the interior rule off, so that only the new lr's cells are new (its best lr
        # could move, and a best lr at an edge of [0.1, 0.2] would search on beyond it). The grid stage as the
        # target: what follows from its new outputs is the edits test's (DVC runs its readers).
        done = user("dvc exp run optimizer_grid -S profile=smoke -S optimizer_grid.lrs.sgd=[0.1,0.2] "
                    "-S optimizer_grid.long_budget.enabled=false -S optimizer_grid.extension.max_added=0", smoke)
        assert ran(done) == {"optimizer_grid"}
        record = json.loads((smoke / "data" / "optimizer_grid" / "run.json").read_text())
        grid = yaml.safe_load((smoke / "params.yaml").read_text())["optimizer_grid"]
        # The grid's cells and its averaging runs' (ASGD's best lr is unchanged, so they are all kept).
        averaging = json.loads((smoke / "data" / "optimizer_grid" / "summary.json").read_text())["averaging"]
        seeds = len(grid["seeds"])
        cells = sum(len(v) for v in grid["lrs"].values()) * seeds + averaging.get("cells", 0)
        assert record["cells"] == seeds and record["cells_kept"] == cells - seeds, record
        # The kept cells were recorded under the smoke reproduction's grid run, which run.json names (where
        # the cells' result.json say which run that was: `parent_run_id`).
        named = any("parent_run_id" in json.loads(p.read_text())
                    for p in (smoke / "data" / "optimizer_grid" / "cells").glob("*/result.json"))
        assert record["cells_kept_in"] == ({previous: cells - seeds} if named else {}), record
    finally:
        restore(smoke)


# What `make exps` runs (its one recipe line).
MAKE_EXPS = re.search(r"^exps:.*\n\t(.+)$", (Path(__file__).resolve().parents[1] / "Makefile").read_text(),
                      re.MULTILINE).group(1)
QUEUED = {  # experiment name -> its overrides (on top of the smoke profile)
    # Values no earlier test ran: DVC restores a stage it has run before with the same deps and params
    # from its run cache, without running it (so without a new MLflow run).
    "coarse-alpha": ["interpolate.alpha_step=0.25"],
    "walk-seed-7": ["random_walk.seed=7"],
    "low-dpi": ["report.style.dpi=60"],
}


def queue_logs(repo: Path) -> dict[str, str]:
    """The end of each queued experiment's log (`dvc queue logs`), for a failure's message."""
    return {name: run(["dvc", "queue", "logs", name], repo, timeout_s=60).stdout[-2000:] for name in QUEUED}


def test_queued_experiments_side_by_side(smoke: Path, tmp_path: Path) -> None:
    for name, overrides in QUEUED.items():
        sets = " ".join(f"-S {o}" for o in ["profile=smoke", *overrides])
        user(f"dvc exp run --queue --name {name} {sets}", smoke)
    try:
        # The workers are daemons: `run` hands commands files, not pipes, so this returns at once.
        user("dvc queue start --jobs 2", smoke)
        deadline = time.monotonic() + 900
        while re.search(r"\b(Queued|Running)\b", status := user("dvc queue status", smoke).stdout):
            if time.monotonic() > deadline:
                pytest.fail(f"queue not done in 900 s:\n{status}\n{queue_logs(smoke)}")
            time.sleep(3)
        assert status.count("Success") == len(QUEUED), (status, queue_logs(smoke))

        # All three, with their params and metrics, beside the baseline.
        shown = json.loads(user("dvc exp show --json", smoke).stdout)
        exps = {e["name"]: e for rev in shown for e in rev.get("experiments") or [] if e.get("name") in QUEUED}
        assert set(exps) == set(QUEUED)
        data = {name: e["revs"][0]["data"] for name, e in exps.items()}
        assert data["coarse-alpha"]["params"]["params.yaml"]["data"]["interpolate"]["alpha_step"] == 0.25
        assert data["walk-seed-7"]["params"]["params.yaml"]["data"]["random_walk"]["seed"] == 7
        for d in data.values():  # the headline metrics, beside the params
            assert "claims" in d["metrics"]["reports/metrics.json"]["data"]
        # Side by side in a 120-column terminal (`make exps`, the Makefile's own command): a line per param or
        # metric that differs, each experiment a column.
        table = run(MAKE_EXPS.split(), smoke, timeout_s=300, COLUMNS="120")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert max(len(line) for line in lines) <= 120, table.stdout
        # The experiments head the columns, in blocks as many as fit.
        names = {name for block in table.stdout.split("\n\n") for name in block.splitlines()[0].split()}
        assert set(QUEUED) <= names, table.stdout
        rows = {line.split()[0] for line in lines if line.startswith("  ")}
        assert {"interpolate.alpha_step", "random_walk.seed", "report.style.dpi"} <= rows, table.stdout

        # Their MLflow runs are in the workspace's store, tagged with the experiment's name.
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{smoke / 'mlflow.db'}")
        for name, stages in (("coarse-alpha", {"interpolate", "mode_connectivity", "report"}), ("walk-seed-7", {"random_walk", "report"}),
                             ("low-dpi", {"report"})):
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                                      filter_string=f"tags.dvc_exp_name = '{name}'")
            assert {r.data.tags["dvc_stage"] for r in runs} == stages, name
            assert all(r.info.status == "FINISHED" for r in runs)

        # dvc plots diff between two of them writes its HTML.
        user(f"dvc plots diff coarse-alpha walk-seed-7 -o {tmp_path / 'diff'}", smoke)
        page = (tmp_path / "diff" / "index.html").read_text()
        assert "coarse-alpha" in page and "walk-seed-7" in page

        # Applying one brings its figures back into the workspace.
        before = Image.open(smoke / "reports" / "figures" / "fig6-03-interpolation.png").size
        user("dvc exp apply low-dpi", smoke)
        after = Image.open(smoke / "reports" / "figures" / "fig6-03-interpolation.png").size
        assert yaml.safe_load((smoke / "params.yaml").read_text())["report"]["style"]["dpi"] == 60
        assert after[0] < before[0] * 0.5, (before, after)  # 60 dpi against 150
    finally:
        run(["dvc", "queue", "stop", "--kill"], smoke, timeout_s=120)
        restore(smoke)


def test_remote_push_then_a_fresh_clone_pulls_and_is_up_to_date(smoke: Path, tmp_path: Path) -> None:
    remote = tmp_path / "dvc-remote"
    user(f"dvc remote add --default reviewers {remote}", smoke)
    git(smoke, "commit", "-qm", "DVC remote for reviewers", ".dvc/config")
    user("dvc push", smoke)
    clone = tmp_path / "reviewer"
    subprocess.run(["git", "clone", "-q", str(smoke), str(clone)], check=True)
    user("dvc pull", clone)
    assert json.loads(user("dvc status --json", clone).stdout) == {}
    assert ran(user("dvc repro", clone)) == set()  # nothing trains
    for stage, folder in FOLDER.items():
        assert (clone / folder / "run.json").is_file(), stage

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["report"]["style"]["font_scale"] = 1.1
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert ran(user("dvc repro", clone)) == {"report"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mlflow_server(smoke: Path) -> Iterator[tuple[str, str]]:
    """What `make ui` starts (`beyond-gd ui`) on a free localhost port over the clone's store: its base
    address and the page it opens, printed as its only line (the server's output goes to its log)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    server = subprocess.Popen([str(Path(sys.executable).parent / "beyond-gd"), "ui", "--no-browser", "--port",
                               str(port)], cwd=smoke, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        # Printed once the server answers /health, and nothing before it: no warning, no server log line.
        line = server.stdout.readline()
        assert line.startswith("MLflow UI: "), line
        assert f"the server's log: {smoke / 'mlflow-ui.log'}" in line and (smoke / "mlflow-ui.log").is_file(), line
        yield base, line.split()[2]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_mlflow_server_serves_the_stage_runs(smoke: Path, mlflow_server: tuple[str, str]) -> None:
    base, landing = mlflow_server
    experiments = mlflow_post(base, "experiments/search", {"max_results": 100})["experiments"]
    by_name = {e["name"]: e["experiment_id"] for e in experiments}
    for stage in STAGES:
        assert f"beyond-gd/{stage}" in by_name, stage
        # The UI opens each experiment on its runs table, with a description of what the stage computes.
        tags = {t["key"]: t["value"] for t in next(e for e in experiments if e["name"] == f"beyond-gd/{stage}")["tags"]}
        assert tags["mlflow.experimentKind"] == "custom_model_development", stage
        assert tags["mlflow.note.content"].startswith(f"Stage `{stage}`"), stage
    assert "Feeds the report's figures" in {t["key"]: t["value"] for t in next(
        e for e in experiments if e["name"] == "beyond-gd/interpolate")["tags"]}["mlflow.note.content"]

    # `make ui` opens the grid's runs table in the UI's model-training view, through a shared view (an
    # experiment tag) that shows the metrics its cell runs carry, sorted by the score.
    grid_id = by_name["beyond-gd/optimizer_grid"]
    assert landing == (f"{base}/#/experiments/{grid_id}?viewStateShareKey=beyond-gd-runs"
                       "&workflowType=machine_learning")
    grid_tags = {t["key"]: t["value"] for t in mlflow_get(base, "experiments/get", experiment_id=grid_id)[
        "experiment"]["tags"]}
    view = json.loads(grid_tags["mlflow.sharedViewState.beyond-gd-runs"])
    assert view["orderByKey"] == "metrics.`train_loss`" and view["selectedColumns"][0] == view["orderByKey"]
    cell_runs = mlflow_post(base, "runs/search", {"experiment_ids": [grid_id], "max_results": 1000,
                                                  "filter": "tags.cell LIKE '%'"})["runs"]
    logged = {m["key"] for r in cell_runs for m in r["data"].get("metrics", [])}
    assert {c.removeprefix("metrics.`").removesuffix("`") for c in view["selectedColumns"]} <= logged, view

    # The baseline: its params, the loss at every step, the device tags.
    runs = mlflow_post(base, "runs/search", {"experiment_ids": [by_name["beyond-gd/baseline"]],
                                                      "filter": "attributes.status = 'FINISHED'"})["runs"]
    run_id = json.loads((smoke / "data" / "baseline" / "run.json").read_text())["mlflow_run_id"]
    baseline = next(r for r in runs if r["info"]["run_id"] == run_id)
    params = {p["key"]: p["value"] for p in baseline["data"]["params"]}
    tags = {t["key"]: t["value"] for t in baseline["data"]["tags"]}
    assert params["baseline.max_steps"] == "300" and params["baseline.optimizer"] == "sgd"
    assert params["optimizers.sgd.target"] == "torch.optim.SGD"
    assert tags["device"] == "cpu" and tags["device_name"]
    history = mlflow_get(base, "metrics/get-history", run_id=run_id, metric_key="train_loss_step",
                         max_results=1000)["metrics"]
    assert sorted(m["step"] for m in history) == list(range(1, 301))

    # The grid: one parent run, one nested child per cell.
    grid = json.loads((smoke / "data" / "optimizer_grid" / "run.json").read_text())
    children = mlflow_post(base, "runs/search", {
        "experiment_ids": [by_name["beyond-gd/optimizer_grid"]],
        "filter": f"tags.mlflow.parentRunId = '{grid['mlflow_run_id']}'", "max_results": 1000})["runs"]
    assert len(children) == grid["cells"]
    assert all({t["key"]: t["value"] for t in c["data"]["tags"]}["device"] == "cpu" for c in children)


def test_every_run_carries_its_provenance(smoke: Path) -> None:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{smoke / 'mlflow.db'}")
    head = git(smoke, "rev-parse", "HEAD").strip()
    for stage, folder in FOLDER.items():
        record = json.loads((smoke / folder / "run.json").read_text())
        run_ = client.get_run(record["mlflow_run_id"])
        tags = run_.data.tags
        assert record["mlflow_experiment"] == f"beyond-gd/{stage}"
        assert tags["dvc_stage"] == tags["stage"] == stage
        # Every run says where its numbers were computed, the numpy-only and drawing stages too.
        assert tags["device"] == "cpu", stage
        assert "dvc_exp_name" in tags and tags["git_dirty"] in ("true", "false")
        assert re.fullmatch(r"[0-9a-f]{40}", tags["git_commit"]) and re.fullmatch(r"[0-9a-f]{12,64}",
                                                                                tags["params_hash"])
    # The report names the runs each figure draws, and its provenance shows its own run's tags.
    page = (smoke / "reports" / "index.html").read_text()
    ui = yaml.safe_load((smoke / "params.yaml").read_text())["report"]["mlflow_ui"]
    for stage, folder in FOLDER.items():
        if stage not in ("mnist", "report"):  # the report draws nothing from the MNIST files themselves
            record = json.loads((smoke / folder / "run.json").read_text())
            # Each run id a link to the run in the MLflow UI.
            url = f"{ui}/#/experiments/{record['mlflow_experiment_id']}/runs/{record['mlflow_run_id']}"
            assert f'<a href="{url}">{record["mlflow_run_id"]}</a>' in page, stage
            assert client.get_run(record["mlflow_run_id"]).info.experiment_id == record["mlflow_experiment_id"], stage
    report_run = client.get_run(json.loads((smoke / "reports" / "run.json").read_text())["mlflow_run_id"])
    tags = report_run.data.tags
    assert tags["git_commit"] in page and tags["params_hash"] in page
    # The reproduction ran on a recomposed, not yet committed params.yaml: a dirty tree, said on the page.
    assert tags["git_commit"] != head and tags["git_dirty"] == "true" and "(uncommitted changes)" in page
