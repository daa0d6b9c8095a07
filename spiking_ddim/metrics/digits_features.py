"""An offline feature space for KID on digit images: a small CNN trained on the digits.

``DigitsCNN`` is trained by ``python eval/train_feature_net.py digits`` on the train split of
scikit-learn's digits (upscaled to 16x16) and shipped in the package as
``spiking_ddim/metrics/assets/digits_cnn.safetensors``.
``DigitsFeatureExtractor`` wraps it for torch-fidelity under the name ``digits-cnn``
(:mod:`.feature_nets`): uint8 images of any size are converted to 16x16 grayscale; feature
``128`` is the 128-d penultimate layer, ``logits`` the 10 digit logits.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .feature_nets import FEATURE_DIM, ShippedFeatureExtractor, accuracy, fit_classifier, load_weights, resized, signed

WEIGHTS = Path(__file__).resolve().parent / "assets" / "digits_cnn.safetensors"
NAME = "digits-cnn"
SIZE = 16


class DigitsCNN(nn.Module):
    """(N, 1, 16, 16) in [-1, 1] -> 10 logits; ``features`` gives the 128-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 4 * 4, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def load_cnn(path: Path = WEIGHTS) -> DigitsCNN:
    return load_weights(DigitsCNN(), path, "python eval/train_feature_net.py digits")


def to_digit_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images -> (N, 1, 16, 16) float in [-1, 1]."""
    x = signed(x)
    return resized(x if x.shape[1] == 1 else x.mean(1, keepdim=True), SIZE)


class DigitsFeatureExtractor(ShippedFeatureExtractor):
    """torch-fidelity feature extractor ``digits-cnn`` (features ``128`` and ``logits``)."""

    SIZE = SIZE
    load = staticmethod(load_cnn)
    prepare = staticmethod(to_digit_input)


def _shift(batch: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The batch rolled by one random shift of -1, 0 or 1 pixel along each axis."""
    dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
    return torch.roll(batch, shifts=(dx, dy), dims=(2, 3))


def train_cnn(epochs: int = 40, seed: int = 0) -> tuple[DigitsCNN, float]:
    """Train on the digits train split (random 1-pixel shifts); returns net and held-out accuracy."""
    from ..data import digit_labels, digits

    torch.manual_seed(seed)
    net = fit_classifier(DigitsCNN(), digits(SIZE, "train"), digit_labels("train"), epochs, seed, _shift)
    return net, accuracy(net, digits(SIZE, "test"), digit_labels("test"))
