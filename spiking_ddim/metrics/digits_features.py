"""An offline feature space for KID on digit images: a small CNN trained on the digits.

``DigitsCNN`` is trained by ``python eval/train_digits_cnn.py`` on the train split of
scikit-learn's digits (upscaled to 16x16) and shipped in the package as
``spiking_ddim/metrics/assets/digits_cnn.safetensors``.
``DigitsFeatureExtractor`` wraps it for torch-fidelity under the name ``digits-cnn``:
uint8 images of any size and channel count are converted to 16x16 grayscale; feature
``128`` (FID, KID, precision / recall) is the 128-d penultimate activations scaled to norm
sqrt(128), and feature ``logits`` (the Inception Score's class probabilities) the 10 digit
logits. The scaling
keeps KID's polynomial kernel (x.y / d + 1)^3 in the range it has on Inception features;
the raw ReLU activations are large enough to make KID values of several hundred.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

WEIGHTS = Path(__file__).resolve().parent / "assets" / "digits_cnn.safetensors"
NAME = "digits-cnn"
FEATURE = "128"
LOGITS = "logits"
SIZE = 16


class DigitsCNN(nn.Module):
    """(N, 1, 16, 16) in [-1, 1] -> 10 logits; ``features`` gives the 128-d penultimate layer."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def load_cnn(path: Path = WEIGHTS) -> DigitsCNN:
    from safetensors.torch import load_file

    if not path.is_file():
        raise FileNotFoundError(f"digits feature network not found: {path}; train it with `python eval/train_digits_cnn.py`")
    net = DigitsCNN()
    net.load_state_dict(load_file(str(path)))
    return net.eval()


def to_digit_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) images -> (N, 1, 16, 16) float in [-1, 1]."""
    x = x.float() / 127.5 - 1
    if x.shape[1] == 3:
        x = x.mean(1, keepdim=True)
    if x.shape[-2:] != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=True)
    return x


class DigitsFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity feature extractor ``digits-cnn`` (features ``128`` and ``logits``)."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        self.net = load_cnn()

    @staticmethod
    def get_provided_features_list():
        return (FEATURE, LOGITS)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return LOGITS if metric == "isc" else FEATURE

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)

    def forward(self, x):
        """The requested features, in ``features_list`` order."""
        f = self.net.features(to_digit_input(x))
        out = {FEATURE: F.normalize(f, dim=1) * f.shape[1] ** 0.5, LOGITS: self.net.head(f)}
        return tuple(out[name] for name in self.features_list)


def accuracy(net: DigitsCNN, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(images).argmax(1) == labels).float().mean())


def train_cnn(epochs: int = 40, seed: int = 0) -> tuple[DigitsCNN, float]:
    """Train on the digits train split (random 1-pixel shifts); returns net and held-out accuracy."""
    from ..data import digit_labels, digits

    torch.manual_seed(seed)
    x, y = digits(SIZE, "train"), digit_labels("train")
    xt, yt = digits(SIZE, "test"), digit_labels("test")
    net = DigitsCNN()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(x.shape[0], generator=g).split(64):
            dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
            batch = torch.roll(x[idx], shifts=(dx, dy), dims=(2, 3))
            loss = F.cross_entropy(net(batch), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    return net, accuracy(net, xt, yt)
