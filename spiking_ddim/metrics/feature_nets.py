"""What the package's own feature networks share: a small classifier shipped as
safetensors, wrapped for torch-fidelity, and the loop that trains it.

A shipped network maps images to ``FEATURE_DIM``-d penultimate activations and class
logits. :class:`ShippedFeatureExtractor` serves them to torch-fidelity as feature ``128``
(FID, KID, precision / recall: the activations scaled to norm sqrt(128), which keeps KID's
polynomial kernel (x.y / d + 1)^3 in the range it has on Inception features; raw ReLU
activations make KID values of several hundred) and feature ``logits`` (the Inception
Score's class probabilities). Subclasses say how to load the network and how to turn
torch-fidelity's uint8 (N, 3, H, W) batches into its input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

FEATURE = "128"
LOGITS = "logits"
FEATURE_DIM = 128


def load_weights(net: nn.Module, path: Path, trainer: str) -> nn.Module:
    """``net`` with the weights in ``path``, in eval mode; a clear error naming ``trainer``
    (the command that makes the file) when it is missing."""
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"feature network not found: {path}; train it with `{trainer}`")
    net.load_state_dict(load_file(str(path)))
    return net.eval()


class ShippedFeatureExtractor(FeatureExtractorBase):
    """A torch-fidelity feature extractor over a shipped classifier (features ``128`` and
    ``logits``). Subclasses define ``load()`` (the network, with ``features`` and ``head``),
    ``prepare(x)`` (uint8 (N, 3, H, W) -> its input) and ``SIZE`` (its input side)."""

    SIZE = 32

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.net = self.load()

    @staticmethod
    def load() -> nn.Module:
        raise NotImplementedError

    @staticmethod
    def prepare(x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def get_provided_features_list():
        return (FEATURE, LOGITS)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return LOGITS if metric == "isc" else FEATURE

    @staticmethod
    def can_be_compiled():
        return False

    @classmethod
    def get_dummy_input_for_compile(cls):
        return torch.zeros(1, 3, cls.SIZE, cls.SIZE, dtype=torch.uint8)

    def forward(self, x):
        """The requested features, in ``features_list`` order."""
        f = self.net.features(self.prepare(x))
        out = {FEATURE: F.normalize(f, dim=1) * f.shape[1] ** 0.5, LOGITS: self.net.head(f)}
        return tuple(out[name] for name in self.features_list)


def signed(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1]."""
    return x.float() / 127.5 - 1


def resized(x: torch.Tensor, size: int) -> torch.Tensor:
    """(N, C, H, W) float shrunk or grown to ``size`` x ``size`` (antialiased bilinear)."""
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return x


def accuracy(net: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of ``images`` (N, C, H, W) whose largest logit is their label (N,)."""
    with torch.no_grad():
        return float((net(images).argmax(1) == labels).float().mean())


def fit_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int,
                   augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] = lambda b, g: b,
                   lr: float = 2e-3, batch_size: int = 64) -> nn.Module:
    """Cross-entropy training of ``net`` on images ``x`` (N, C, H, W) and labels ``y`` (N,)
    with Adam: shuffled batches, each passed through ``augment(batch, generator)``; one
    generator seeded by ``seed`` draws every shuffle and augmentation. Returns ``net`` in
    eval mode."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(x.shape[0], generator=g).split(batch_size):
            loss = F.cross_entropy(net(augment(x[idx], g)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()
