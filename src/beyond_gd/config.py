"""Typed schemas for `params.yaml` and their validation.

`conf/` (Hydra) is the single source of every value; the dataclasses here and
beside each study only say what a section must hold, so no default is
repeated in code. A schema may nest: a field typed as another schema, or as
`dict[str, Schema]`, is validated the same way one level down, so every
problem, however deep, is one line naming the full key and what is allowed
(`surfaces.escape.lr: must be > 0, got -1`). A schema may also define
`check(self)` for rules that span its fields: it raises `ConfigError` with a
key relative to the schema, and the loader prefixes the section's path.

A study's `Config` is a schema whose fields are the top-level sections it
reads (`interpolate`, `model`, `runtime`, ...); `load(params, Config)` picks
those sections out of the whole params file. What a study reads is also what
DVC re-runs it on (`beyond_gd.pipeline` writes dvc.yaml's params from it), so
a Config says it where it reads less than a whole section: `entries(...)` for
the keys of a shared section it reads, `optimizer_names(...)` for a field that
names entries of the `optimizers` section (checked here to exist).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import types
import typing
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


def required(**checks: Any) -> Any:
    """A required field (no default: conf/ holds the value) with checks.

    Checks: gt / ge (numbers), choices (one of), each_in (every list item one
    of), nonempty (str, list or mapping), optional (null allowed), distinct
    (list items unique).
    """
    return field(metadata=checks)


OPTIMIZERS = "optimizers"  # the shared section of optimizer entries (conf/optimizers/)


def optimizer_names(**checks: Any) -> Any:
    """A required field that names entries of the `optimizers` section: a name, a list of names, or a
    mapping keyed by name. `load` checks that each is an entry; the stage declares those entries as DVC
    params (a mapping keyed by name, which grows with conf/, declares the whole section)."""
    return field(metadata={**checks, OPTIMIZERS: True})


def entries(*keys: str) -> Any:
    """A Config field for a shared section of which the study reads only `keys` (`model.in_dim`, ...):
    validated whole, declared as DVC params key by key, so an edit elsewhere in it re-runs nothing."""
    return field(metadata={"entries": keys})


def named_optimizers(obj: Any, where: str = "") -> list[tuple[str, Any, dataclasses.Field]]:
    """Every `optimizer_names` field of a validated schema, however deep: (its full key, its value, the
    field), in field order."""
    found = []
    for f in dataclasses.fields(obj):
        key, value = f"{where}.{f.name}" if where else f.name, getattr(obj, f.name)
        if f.metadata.get(OPTIMIZERS):
            found.append((key, value, f))
        elif dataclasses.is_dataclass(value):
            found += named_optimizers(value, key)
        elif isinstance(value, Mapping) and value and all(dataclasses.is_dataclass(v) for v in value.values()):
            for name, sub in value.items():
                found += named_optimizers(sub, f"{key}.{name}")
    return found


# --------------------------------------------------------------------------
# Sections every study shares
# --------------------------------------------------------------------------
@dataclass
class RuntimeConfig:
    device: str = required(choices=DEVICES)
    # Threads for intra-op parallelism; null means one per core.
    threads: int | None = required(gt=0, optional=True)


@dataclass
class ModelConfig:
    in_dim: int = required(gt=0)
    hidden_dim: int = required(gt=0)
    out_dim: int = required(gt=0)
    final_relu: bool = required()


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


def load(params: Mapping[str, Any], schema: type[T]) -> T:
    """The top-level sections `schema` names, each validated; other sections are ignored."""
    sections = {}
    for f in dataclasses.fields(schema):
        if f.name not in params:
            raise ConfigError(f"{f.name}: missing section (expected by {schema.__name__})")
        sections[f.name] = _value(params[f.name], _hints(schema)[f.name], f.name)
    cfg = schema(**sections)
    if OPTIMIZERS in sections:
        for key, value, _ in named_optimizers(cfg):
            names = [value] if isinstance(value, str) else [] if value is None else list(value)
            for name in names:
                if name not in sections[OPTIMIZERS]:
                    raise ConfigError(f"{key}: {name!r} is not in the optimizers section "
                                      f"(choose from {', '.join(sections[OPTIMIZERS])})")
    return _finish(cfg, "")


def dvc_params(cfg: Any) -> list[str]:
    """The params keys a loaded study Config reads, as its stage declares them in dvc.yaml: each section it
    reads, key by key where it reads `entries(...)`, and of `optimizers` the entries it names (below)."""
    keys: list[str] = []
    for f in dataclasses.fields(cfg):
        if f.name == OPTIMIZERS:
            keys += _optimizer_keys(cfg, f.metadata.get("entries", ()))
        else:
            keys += [f"{f.name}.{k}" for k in f.metadata["entries"]] if "entries" in f.metadata else [f.name]
    return keys


def _optimizer_keys(cfg: Any, fixed: tuple[str, ...]) -> list[str]:
    """One name as DVC templating (`optimizers.${baseline.optimizer}`, resolved when DVC runs the stage, so
    `dvc exp run -S baseline.optimizer=adam` declares the right entry); a list, or a name that may be null,
    as the entries it names now (DVC cannot template a list into keys); a mapping keyed by name as the whole
    section (it grows with conf/); no name at all, the whole section."""
    named = [f"{OPTIMIZERS}.{k}" for k in fixed]
    for key, value, f in named_optimizers(cfg):
        if isinstance(value, Mapping):
            return [OPTIMIZERS]
        if isinstance(value, str) and not f.metadata.get("optional"):
            named.append(f"{OPTIMIZERS}.${{{key}}}")
        else:
            named += [f"{OPTIMIZERS}.{n}" for n in ([value] if isinstance(value, str) else value or [])]
    return list(dict.fromkeys(named)) or [OPTIMIZERS]


def resolved(key: str, params: Mapping[str, Any]) -> str:
    """A params key with DVC's `${...}` templating filled in from `params`."""
    def value(match: re.Match[str]) -> str:
        node: Any = params
        for part in match.group(1).split("."):
            node = node[part]
        return str(node)

    return re.sub(r"\$\{([^}]+)\}", value, key)


def as_dict(cfg: Any) -> dict[str, Any]:
    """A validated section back as plain data (for MLflow params and hashes)."""
    return dataclasses.asdict(cfg)


def _schema(raw: Any, schema: type[T], where: str) -> T:
    """One mapping checked against one schema, recursing into nested schemas."""
    if hasattr(schema, "from_params"):  # a section type that validates itself (optimizers)
        return schema.from_params(raw, where)  # type: ignore[attr-defined]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping with keys {_names(schema)}")
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for name in raw:
        if name not in fields:
            raise ConfigError(f"{where}.{name}: unknown key (allowed: {_names(schema)})")
    for name in fields:
        if name not in raw:
            raise ConfigError(f"{where}.{name}: missing (required by {schema.__name__})")
    hints = _hints(schema)
    nested = {name: _value(raw[name], hints[name], f"{where}.{name}") for name in fields
              if _is_nested(hints[name])}
    plain = {name: raw[name] for name in fields if name not in nested}
    try:
        # OmegaConf converts and type-checks the leaves ("8" -> 8, "many" -> error).
        merged = OmegaConf.merge(OmegaConf.structured(_leaf_schema(schema)), OmegaConf.create(plain))
        values = OmegaConf.to_container(merged)
    except OmegaConfBaseException as exc:
        sub = getattr(exc, "full_key", None) or ""
        expected = f" (expected {_type_name(hints[sub])})" if sub in hints else ""
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{where}.{sub}: {msg}{expected}" if sub else f"{where}: {msg}") from None
    for name, value in values.items():  # type: ignore[union-attr]
        _check(f"{where}.{name}", value, fields[name].metadata)
    for name, value in nested.items():
        _check(f"{where}.{name}", value, fields[name].metadata)
    return _finish(schema(**values, **nested), where)  # type: ignore[arg-type]


def _value(raw: Any, hint: Any, where: str) -> Any:
    """A nested field: a schema, or a mapping name -> schema."""
    if _is_schema(hint):
        return _schema(raw, hint, where)
    inner = typing.get_args(hint)[1]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be a mapping of name -> {inner.__name__} sections")
    return {name: _schema(sub, inner, f"{where}.{name}") for name, sub in raw.items()}


def _finish(obj: T, where: str) -> T:
    """Run the schema's own cross-field `check`, naming keys from the section's path."""
    if hasattr(obj, "check"):
        try:
            obj.check()  # type: ignore[attr-defined]
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}" if where else str(exc)) from None
    return obj


def _is_schema(hint: Any) -> bool:
    return isinstance(hint, type) and (dataclasses.is_dataclass(hint) or hasattr(hint, "from_params"))


def _is_nested(hint: Any) -> bool:
    """A schema, or dict[str, schema]."""
    if _is_schema(hint):
        return True
    args = typing.get_args(hint)
    return typing.get_origin(hint) is dict and len(args) == 2 and _is_schema(args[1])


@functools.cache
def _hints(schema: type) -> dict[str, Any]:
    return typing.get_type_hints(schema)


@functools.cache
def _leaf_schema(schema: type) -> type:
    """The schema without its nested fields, for OmegaConf to type-check the leaves."""
    hints = _hints(schema)
    leaves = [(f.name, hints[f.name]) for f in dataclasses.fields(schema) if not _is_nested(hints[f.name])]
    return dataclasses.make_dataclass(f"{schema.__name__}Leaves", leaves)


def _type_name(hint: Any) -> str:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return " | ".join(_type_name(a) for a in typing.get_args(hint))
    return getattr(hint, "__name__", str(hint)) if not typing.get_args(hint) else str(hint)


def _names(schema: type) -> str:
    if not dataclasses.is_dataclass(schema):
        return schema.__name__
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
    if checks.get("distinct") and len(set(value)) != len(value):
        raise ConfigError(f"{key}: must be distinct, got {list(value)}")
    for item in value if "each_in" in checks else ():
        if item not in checks["each_in"]:
            raise ConfigError(f"{key}: {item!r} is not allowed (choose from {', '.join(checks['each_in'])})")
    for item in value if "each_ge" in checks else ():
        if not item >= checks["each_ge"]:
            raise ConfigError(f"{key}: each must be >= {checks['each_ge']}, got {list(value)}")
    for item in value if "each_gt" in checks else ():
        if not item > checks["each_gt"]:
            raise ConfigError(f"{key}: each must be > {checks['each_gt']}, got {list(value)}")
