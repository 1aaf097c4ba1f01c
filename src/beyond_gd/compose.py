"""Compose conf/ into params.yaml exactly as `dvc exp run` does (`make params`).

`dvc repro` never composes (only `dvc exp run` does, through DVC's Hydra
integration): after editing conf/, run this, or use `dvc exp run`, so
params.yaml and conf/ agree.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dvc.utils.hydra import compose_and_dump


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. profile=smoke train.epochs=3")
    p.add_argument("--conf", default="conf", help="Hydra config folder (default: conf)")
    p.add_argument("--out", default="params.yaml", help="file to write (default: params.yaml)")
    args = p.parse_args(argv)
    # DVC's defaults for its Hydra integration: config_name "config", plugins in .dvc/hydra_plugins.
    compose_and_dump(args.out, str(Path(args.conf).resolve()), None, "config",
                     str(Path(".dvc/hydra_plugins").resolve()), args.overrides)
    print(f"composed {args.conf}/ -> {args.out}" + (f" with {' '.join(args.overrides)}" if args.overrides else ""))


if __name__ == "__main__":
    main()
