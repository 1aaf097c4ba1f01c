"""MNIST sources: IDX encoding, the pickle conversion, checksums, all-or-nothing writes, the `mnist` study."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from beyond_gd.data import mnist
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.stage import write
from beyond_gd.stages.mnist import STAGE
from beyond_gd.studies import mnist as mnist_study
from beyond_gd.study import Inputs
from conftest import config

def synthetic_pickle(rng: np.random.Generator, sizes=(5, 3, 4), side: int = 4) -> tuple[bytes, dict]:
    """A small pickle in the classic layout, and the uint8 data it encodes."""
    splits, raw = [], {}
    for name, n in zip(("train", "valid", "test"), sizes, strict=True):
        pix = rng.integers(0, 256, size=(n, side * side), dtype=np.uint8)
        lab = rng.integers(0, 10, size=n).astype(np.int64)
        splits.append(((pix / 256).astype(np.float32), lab))
        raw[name] = (pix, lab)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as fh:
        pickle.dump(tuple(splits), fh)
    return buf.getvalue(), raw

@pytest.mark.parametrize("shape", [(7,), (3, 4, 5), (0, 28, 28)])
def test_idx_round_trip(shape: tuple[int, ...]) -> None:
    arr = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    np.testing.assert_array_equal(mnist.decode_idx(mnist.encode_idx(arr)), arr)

def test_idx_header_matches_lecun_layout() -> None:
    data = mnist.encode_idx(np.zeros((2, 28, 28), dtype=np.uint8))
    assert data[:16] == bytes.fromhex("00000803" "00000002" "0000001c" "0000001c")

def test_pickle_conversion_recovers_exact_bytes() -> None:
    blob, raw = synthetic_pickle(np.random.default_rng(1))
    files = mnist.pickle_to_idx(blob)
    train_x = mnist.decode_idx(files["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(train_x.reshape(len(train_x), -1),
                                  np.concatenate([raw["train"][0], raw["valid"][0]]))
    np.testing.assert_array_equal(mnist.decode_idx(files["train-labels-idx1-ubyte"]),
                                  np.concatenate([raw["train"][1], raw["valid"][1]]))
    np.testing.assert_array_equal(mnist.decode_idx(files["t10k-images-idx3-ubyte"]).reshape(4, -1), raw["test"][0])
    assert train_x.shape == (8, 4, 4)

def test_pixels_off_the_1_256_grid_are_refused() -> None:
    with pytest.raises(ValueError, match="1/256"):
        mnist.pixels_to_uint8(np.array([0.5, 0.3], dtype=np.float32))

def test_pickle_that_would_run_code_is_refused() -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb") as fh:
        pickle.dump(Evil(), fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        mnist.pickle_to_idx(buf.getvalue())

def write_local(folder: Path, files: dict[str, bytes], gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return folder

def test_checksum_mismatch_names_source_and_file_and_writes_nothing(tmp_path: Path) -> None:
    src = write_local(tmp_path / "src", {name: b"corrupt" for name in mnist.FILES})
    out = tmp_path / "out" / "MNIST" / "raw"
    with pytest.raises(DataError) as err:
        source, files = mnist.fetch(["local"], {"local": lambda: mnist.from_local(src)}, log=lambda _: None)
        mnist.write_raw(files, out)
    msg = str(err.value)
    assert "'local'" in msg and "train-images-idx3-ubyte has MD5 " + hashlib.md5(b"corrupt").hexdigest() in msg
    assert not out.exists() and not (tmp_path / "out").exists()

def test_fetch_moves_on_to_the_next_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = {name: f"good {name}".encode() for name in mnist.FILES}
    monkeypatch.setattr(mnist, "MD5", {n: hashlib.md5(b).hexdigest() for n, b in good.items()})
    tried: list[str] = []

    def broken() -> dict[str, bytes]:
        tried.append("torchvision")
        raise DataError("MNIST source 'torchvision': offline")

    loaders = {"torchvision": broken, "local": lambda: mnist.from_local(write_local(tmp_path / "gz", good, gz=True))}
    source, files = mnist.fetch(["torchvision", "local"], loaders, log=lambda _: None)
    assert (source, files, tried) == ("local", good, ["torchvision"])
    mnist.write_raw(files, tmp_path / "root" / "MNIST" / "raw")
    assert sorted(p.name for p in (tmp_path / "root" / "MNIST" / "raw").iterdir()) == sorted(mnist.FILES)

def test_no_source_works_lists_every_failure(tmp_path: Path) -> None:
    with pytest.raises(DataError,
                       match=r"no MNIST source worked: .*'local': mnist.local_dir is not set.*'local': neither"):
        mnist.fetch(["local", "local2"], {"local": lambda: mnist.from_local(None),
                                          "local2": lambda: mnist.from_local(tmp_path)}, log=lambda _: None)

def test_failed_write_leaves_no_partial_folder(tmp_path: Path) -> None:
    out = tmp_path / "MNIST" / "raw"
    with pytest.raises(KeyError):
        mnist.write_raw({"train-images-idx3-ubyte": b"only one"}, out)
    assert not out.exists()
    assert list(tmp_path.joinpath("MNIST").iterdir()) == []

# --------------------------------------------------------------------------
# The study: verified files into torchvision's layout under the stage's folder
# --------------------------------------------------------------------------
def synthetic_idx(rng: np.random.Generator, n_train: int = 12, n_test: int = 5) -> dict[str, bytes]:
    arrays = [rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8)]
    return {name: mnist.encode_idx(a) for name, a in zip(mnist.FILES, arrays, strict=True)}


def test_study_writes_torchvisions_layout_from_the_first_source_that_verifies(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = synthetic_idx(np.random.default_rng(0))
    monkeypatch.setattr(mnist, "MD5", {n: hashlib.md5(b).hexdigest() for n, b in files.items()})
    corrupt = write_local(tmp_path / "corrupt", {name: b"corrupt" for name in mnist.FILES})
    good = write_local(tmp_path / "gz", files, gz=True)
    cfg = config(mnist_study.Config, "mnist.sources=[local]", f"mnist.local_dir={corrupt}")
    with pytest.raises(DataError, match=r"^no MNIST source worked: MNIST source 'local': train-images-idx3-ubyte "
                                        r"has MD5"):
        mnist_study.run(cfg, Inputs(workdir=tmp_path / "work"))

    cfg = config(mnist_study.Config, "mnist.sources=[local]", f"mnist.local_dir={good}")
    result = mnist_study.run(cfg, Inputs(workdir=tmp_path / "work"))
    assert result.files == {f"MNIST/raw/{name}": data for name, data in files.items()}
    assert result.outputs() == list(STAGE.outputs) == ["MNIST"]
    assert result.tags == {"mnist_source": "local"} and result.logged["bytes"] == sum(map(len, files.values()))

    # The stage's folder is a torchvision root: what the training studies load.
    root = tmp_path / "data" / "mnist"
    write(result, root)
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir()) == sorted(mnist.FILES)
    x, y = mnist.load_tensors(root, train=True, device=torch.device("cpu"))
    assert x.shape == (12, 784) and y.shape == (12,) and 0 <= x.min() and x.max() <= 1
    np.testing.assert_array_equal((x * 255).round().to(torch.uint8).numpy().reshape(12, 28, 28),
                                  mnist.decode_idx(files["train-images-idx3-ubyte"]))
    np.testing.assert_array_equal(y.numpy(), mnist.decode_idx(files["train-labels-idx1-ubyte"]))


@pytest.mark.parametrize(("present", "what"), [
    ((), "no such folder"),
    (mnist.FILES[:3], f"{mnist.FILES[3]} missing"),
])
def test_loading_a_root_without_the_files_names_the_folder_and_the_stage(tmp_path: Path, present: tuple[str, ...],
                                                                         what: str) -> None:
    raw = tmp_path / "MNIST" / "raw"
    for name in present:
        raw.mkdir(parents=True, exist_ok=True)
        (raw / name).write_bytes(b"")
    with pytest.raises(DataError) as err:
        mnist.load_tensors(tmp_path, train=True, device=torch.device("cpu"))
    assert str(err.value) == f"{raw}: {what} (run `dvc repro mnist`)"


@pytest.mark.parametrize(("override", "message"), [
    ("mnist.sources=[ftp]", "mnist.sources: 'ftp' is not allowed"),
    ("mnist.sources=[]", "mnist.sources: must not be empty"),
    ("mnist.timeout_s=0", "mnist.timeout_s: must be > 0"),
    ("+mnist.root=x", "mnist.root: unknown key"),
])
def test_bad_mnist_param_names_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(mnist_study.Config, override)
    assert str(err.value).startswith(message) and "\n" not in str(err.value), err.value


@pytest.mark.slow
def test_real_files_verify_and_load_in_torchvision(mnist_root: Path, tmp_path: Path) -> None:
    from torchvision.datasets import MNIST

    mnist.verify(mnist.from_local(mnist_root / "MNIST" / "raw"), "fixture")
    train, test = MNIST(str(mnist_root), train=True), MNIST(str(mnist_root), train=False)
    assert (len(train), len(test)) == (60000, 10000)
    assert train.data.dtype.is_floating_point is False and int(train.data.max()) == 255
    # The study, with the real checksums, copies them into a root of the same layout.
    cfg = config(mnist_study.Config, "mnist.sources=[local]", f"mnist.local_dir={mnist_root / 'MNIST' / 'raw'}")
    write(mnist_study.run(cfg, Inputs(workdir=tmp_path)), tmp_path / "mnist")
    # The loader decodes the raw files itself: the same tensors as torchvision's dataset, both splits.
    for split, ds in ((True, train), (False, test)):
        x, y = mnist.load_tensors(tmp_path / "mnist", train=split, device=torch.device("cpu"))
        assert x.shape == (len(ds), 784) and x.dtype == torch.float32 and y.dtype == ds.targets.dtype
        assert torch.equal(x, ds.data.reshape(len(ds), -1).float().div(255)) and torch.equal(y, ds.targets)
