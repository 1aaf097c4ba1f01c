"""The book's MNIST classifier, `Net(784, 256, 10)`."""

from __future__ import annotations

from torch import nn

from beyond_gd.config import ModelConfig


class Net(nn.Module):
    """Flatten -> Linear -> ReLU -> Linear -> ReLU -> Linear, as in the book.

    The layer indices are part of the contract: the book's checkpoints use the
    keys `classifier.1.*`, `classifier.3.*` and `classifier.5.*`.
    `final_relu` appends the companion notebook's ReLU on the logits (it has no
    parameters, so the keys do not change).
    """

    def __init__(self, in_dim: int, feature_dim: int, out_dim: int, final_relu: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Flatten(),
            nn.Linear(in_dim, feature_dim),
            nn.ReLU(),
            nn.Linear(feature_dim, feature_dim),
            nn.ReLU(),
            nn.Linear(feature_dim, out_dim),
        ]
        if final_relu:
            layers.append(nn.ReLU())
        self.classifier = nn.Sequential(*layers)

    def forward(self, x):  # noqa: ANN001, ANN201 - nn.Module's signature
        return self.classifier(x)


def build_model(cfg: ModelConfig) -> Net:
    return Net(cfg.in_dim, cfg.hidden_dim, cfg.out_dim, cfg.final_relu)
