"""Optimizers from config: a torch.optim class and its arguments, built by Hydra's `instantiate`.

Each file of conf/optimizers/ is an instantiate config, as Hydra's docs and the
lightning-hydra-template write them:

    _target_: torch.optim.SGD
    _partial_: true          # instantiate gives a factory; the model's parameters come later
    lr: 0.01
    momentum: 0.9

`OptimizerSpec.from_params` validates one such section (the target must be a
torch.optim optimizer, or one of the project's own in `OWN`; every other key
one of its arguments), so a typo is an error naming the key rather than a
silent default; `build` calls
`hydra.utils.instantiate` on it.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate

from beyond_gd.errors import ConfigError
from beyond_gd.optim import adam

PREFIX = "torch.optim."
# The project's own optimizers a config may name beside torch.optim's: ablations torch has no switch for.
# Imported here, not by name at run time, so every stage that builds optimizers declares their code.
OWN: dict[str, type[torch.optim.Optimizer]] = {"beyond_gd.optim.adam.Adam": adam.Adam}
# The devices torch.optim has fused kernels for (torch.utils._foreach_utils._get_fused_kernels_supported_devices
# of torch 2.14, less those this project does not run on).
_FUSED_DEVICES = ("cpu", "cuda", "mps")
# Hydra's own keys in an instantiate config.
_HYDRA_KEYS = ("_target_", "_partial_")


def torch_optimizers() -> dict[str, type[torch.optim.Optimizer]]:
    """Every optimizer class torch.optim exports, by its `_target_` path, and the project's own (`OWN`)."""
    found = {f"{PREFIX}{name}": cls for name, cls in vars(torch.optim).items()
             if isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer) and cls is not torch.optim.Optimizer}
    return found | OWN


@dataclass
class OptimizerSpec:
    """One optimizer: its torch.optim class path, learning rate and other keyword arguments."""

    target: str
    lr: float
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def cls(self) -> type[torch.optim.Optimizer]:
        """The class `build` instantiates: from the registry, else by its path as `instantiate` finds it (a
        spec built in code, not validated by `from_params`, may name any importable optimizer)."""
        return torch_optimizers().get(self.target) or get_class(self.target)

    @property
    def class_name(self) -> str:
        return self.target.removeprefix(PREFIX) if self.target.startswith(PREFIX) else self.target

    def with_lr(self, lr: float) -> OptimizerSpec:
        return dataclasses.replace(self, lr=lr)

    def with_kwargs(self, **kwargs: Any) -> OptimizerSpec:
        return dataclasses.replace(self, kwargs={**self.kwargs, **kwargs})

    def default(self, name: str) -> Any:
        """A keyword argument as the spec gives it, else the class's own default (None: the class has none)."""
        if name in self.kwargs:
            return self.kwargs[name]
        parameter = inspect.signature(self.cls.__init__).parameters.get(name)
        return None if parameter is None else parameter.default

    def fusable(self, params: list[torch.nn.Parameter]) -> bool:
        """Whether `build` asks for torch's fused implementation (one kernel for every parameter's update): the
        class has one, the spec chooses no implementation itself (fused, foreach, differentiable unset), and
        the parameters are floating point on a device torch fuses on. On CPU torch's default is its loop
        over parameters; fused, one thread at batch 64 on the MLP of conf/model took Adam from 396 to 546
        and Adagrad from 395 to 591 steps a second, SGD from 687 to 714 (measured on this project's 2-core
        machine); the update is the same to float rounding (tests/test_optim.py)."""
        if "fused" not in inspect.signature(self.cls.__init__).parameters:
            return False
        if any(self.kwargs.get(k) is not None for k in ("fused", "foreach")) or self.kwargs.get("differentiable"):
            return False
        return all(p.is_floating_point() and p.device.type in _FUSED_DEVICES for p in params)

    def as_hydra(self) -> dict[str, Any]:
        """The instantiate config this spec stands for (conf/optimizers/ form)."""
        return {"_target_": self.target, "_partial_": True, "lr": self.lr, **self.kwargs}

    def build(self, params: Iterable[torch.nn.Parameter], key: str = "optimizer") -> torch.optim.Optimizer:
        """The optimizer over `params`, via `instantiate`, fused where it can be (`fusable`); torch's refusal
        is one line naming `key`."""
        params = list(params)
        extra = {"fused": True} if self.fusable(params) else {}
        try:
            factory = instantiate(self.as_hydra(), **extra)
            return factory(params)
        except (ValueError, TypeError, InstantiationException) as exc:
            detail = " ".join(str(exc).split())
            raise ConfigError(f"{key}: {self.target} refused its arguments ({detail})") from None

    @classmethod
    def from_params(cls, raw: Any, where: str) -> OptimizerSpec:
        """Validate one instantiate section; every problem is one line naming `where.<key>`."""
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a mapping with _target_, _partial_, lr and the class's arguments")
        known = torch_optimizers()
        target = raw.get("_target_")
        if target not in known:
            raise ConfigError(f"{where}._target_: {target!r} is not allowed (choose from {', '.join(sorted(known))})")
        if raw.get("_partial_") is not True:
            raise ConfigError(f"{where}._partial_: must be true (the parameters are passed when the model exists)")
        lr = raw.get("lr")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
            raise ConfigError(f"{where}.lr: must be > 0, got {lr!r}")
        allowed = [n for n in inspect.signature(known[target].__init__).parameters if n not in ("self", "params")]
        kwargs = {k: v for k, v in raw.items() if k not in (*_HYDRA_KEYS, "lr")}
        for name in kwargs:
            if name not in allowed:
                raise ConfigError(f"{where}.{name}: not an argument of {target} (allowed: {', '.join(allowed)})")
        spec = cls(target, float(lr), dict(kwargs))
        spec.build([torch.nn.Parameter(torch.zeros(1))], key=where)  # torch checks the values (momentum < 0, ...)
        return spec

