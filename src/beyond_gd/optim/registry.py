"""Optimizers by name, built from an `optimizer` config section.

A name maps to a class; the config's `kwargs` are that class's keyword
arguments, checked against its signature so a typo is an error naming the
key rather than a silent default. The chapter's own optimizers (conf/optimizer/)
are these classes with the book's constructor arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

import torch

from beyond_gd.config import OptimizerConfig
from beyond_gd.errors import ConfigError

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adadelta": torch.optim.Adadelta,
    "asgd": torch.optim.ASGD,
    "lbfgs": torch.optim.LBFGS,
}


def optimizer_kwargs(cls: type[torch.optim.Optimizer]) -> list[str]:
    """The keyword arguments a config may set (all but `params` and `lr`)."""
    names = inspect.signature(cls.__init__).parameters
    return [n for n in names if n not in ("self", "params", "lr")]


def build_optimizer(
    cfg: OptimizerConfig, params: Iterable[torch.nn.Parameter], key: str = "optimizer"
) -> torch.optim.Optimizer:
    if cfg.name not in OPTIMIZERS:
        raise ConfigError(f"{key}.name: {cfg.name!r} is not allowed (choose from {', '.join(OPTIMIZERS)})")
    cls = OPTIMIZERS[cfg.name]
    allowed = optimizer_kwargs(cls)
    for name in cfg.kwargs:
        if name not in allowed:
            raise ConfigError(
                f"{key}.kwargs.{name}: not an argument of torch.optim.{cls.__name__} (allowed: {', '.join(allowed)})"
            )
    try:
        return cls(params, lr=cfg.lr, **cfg.kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{key}.kwargs: torch.optim.{cls.__name__} refused them ({exc})") from None
