"""What every stage's `main` shares: arguments, one-line errors, atomic outputs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from beyond_gd.errors import BeyondGDError


def parser(description: str | None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="composed params file (default: params.yaml)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def cli(main: Callable[[list[str] | None], None]) -> None:
    """Run a stage's main; a known error is one line on stderr and exit 2."""
    try:
        main(None)
    except BeyondGDError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


@contextmanager
def staged(*paths: str | Path) -> Iterator[list[Path]]:
    """Temp paths beside each output, moved into place only if the block succeeds.

    A stage that fails part-way leaves none of its outputs behind (old or new).
    """
    finals = [Path(p) for p in paths]
    temps = [f.with_name(f".{f.name}.tmp-{os.getpid()}") for f in finals]
    for f in finals:
        f.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield temps
        for tmp in temps:
            if not tmp.exists():
                raise FileNotFoundError(f"{tmp}: the stage did not write this output")
    except BaseException:
        for path in temps + finals:
            path.unlink(missing_ok=True)
        raise
    for tmp, final in zip(temps, finals, strict=True):
        os.replace(tmp, final)
