"""The book's MNIST classifier, `Net(784, 256, 10)`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from beyond_gd.config import ModelConfig
from beyond_gd.errors import ConfigError, DataError
from beyond_gd.runtime import seed_everything


class Net(nn.Module):
    """Flatten -> Linear -> ReLU -> Linear -> ReLU -> Linear, as in the book.

    The layer indices are part of the contract: the book's checkpoints use the
    keys `classifier.1.*`, `classifier.3.*` and `classifier.5.*`.
    `final_relu` appends the companion notebook's ReLU on the logits (it has no
    parameters, so the keys do not change).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, final_relu: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, out_dim),
        ]
        if final_relu:
            layers.append(nn.ReLU())
        self.classifier = nn.Sequential(*layers)

    def forward(self, x):  # noqa: ANN001, ANN201 - nn.Module's signature
        return self.classifier(x)


def build_model(cfg: ModelConfig) -> Net:
    return Net(cfg.in_dim, cfg.hidden_dim, cfg.out_dim, cfg.final_relu)


def load_state(path: Path, model: nn.Module, device: torch.device) -> dict[str, torch.Tensor]:
    """A checkpoint's state_dict on `device`, checked against `model` (one-line errors)."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: not found (run `dvc repro baseline`)") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())[:300]
        raise ConfigError(f"model: {path} does not fit the model section ({detail})") from None
    return state


def fresh_init(cfg: ModelConfig, seed: int, device: torch.device) -> dict[str, torch.Tensor]:
    """The initialisation the baseline stage would draw with `baseline.seed = seed`.

    Same calls in the same order (seed_everything, then build_model on the CPU),
    so seed 0 reproduces the baseline's own init.pt when it was trained with seed 0.
    """
    seed_everything(seed)
    return {k: v.to(device) for k, v in build_model(cfg).state_dict().items()}
