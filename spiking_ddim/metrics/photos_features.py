"""An offline feature space for KID on 32x32 photographic crops: a small CNN that tells
which photograph a crop came from.

``PhotosCNN`` is trained by ``python eval/train_feature_net.py photos`` to name the source of
random crops (:func:`spiking_ddim.photos.random_crops`) among all nine photographs of
:data:`spiking_ddim.photos.PHOTOS` (training and held-out: the feature space has to tell
every texture it is asked about apart), on crops drawn with seeds that neither the
training set of the DDIM nor the held-out set of KID uses, and is shipped as
``spiking_ddim/metrics/assets/photos_cnn.safetensors``. ``PhotosFeatureExtractor`` wraps it
for torch-fidelity under the name ``photos-cnn`` (:mod:`.feature_nets`): uint8 RGB images
of any size are resized to 32x32; feature ``128`` is the 128-d penultimate layer,
``logits`` the nine photograph logits (so IS here measures how many photographs' textures a
set spans, not object classes).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .feature_nets import FEATURE_DIM, ShippedFeatureExtractor, accuracy, fit_classifier, load_weights, resized, signed

WEIGHTS = Path(__file__).resolve().parent / "assets" / "photos_cnn.safetensors"
NAME = "photos-cnn"
SIZE = 32
TRAIN_SEEDS = (100, 101)  # crops of the training and the held-out photographs it learns from
TEST_SEEDS = (200, 201)  # crops it is scored on


class PhotosCNN(nn.Module):
    """(N, 3, 32, 32) in [-1, 1] -> one logit per photograph; ``features`` gives the 128-d penultimate layer."""

    def __init__(self, classes: int = 9):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(128, 128, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(128 * 4 * 4, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def load_cnn(path: Path = WEIGHTS) -> PhotosCNN:
    from ..photos import PHOTOS

    return load_weights(PhotosCNN(len(PHOTOS)), path, "python eval/train_feature_net.py photos")


def to_photo_input(x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, 3, H, W) images -> (N, 3, 32, 32) float in [-1, 1]."""
    return resized(signed(x), SIZE)


class PhotosFeatureExtractor(ShippedFeatureExtractor):
    """torch-fidelity feature extractor ``photos-cnn`` (features ``128`` and ``logits``)."""

    SIZE = SIZE
    load = staticmethod(load_cnn)
    prepare = staticmethod(to_photo_input)


def labelled_crops(per_split: int, seeds: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_split`` crops of the training photographs (seed ``seeds[0]``) and as many of the
    held-out ones (``seeds[1]``), with the index in :data:`PHOTOS` of each one's photograph."""
    from ..photos import PHOTOS, random_crops

    names = list(PHOTOS)
    parts = [random_crops(per_split, split, SIZE, seed) for split, seed in zip(("train", "held-out"), seeds)]
    labels = torch.tensor([names.index(source) for _, sources in parts for source in sources])
    return torch.cat([crops for crops, _ in parts]), labels


def train_cnn(epochs: int = 8, per_split: int = 12_000, seed: int = 0) -> tuple[PhotosCNN, float]:
    """Train on labelled crops of every photograph; returns net and its accuracy on fresh crops."""
    from ..photos import PHOTOS

    torch.manual_seed(seed)
    x, y = labelled_crops(per_split, TRAIN_SEEDS)
    net = fit_classifier(PhotosCNN(len(PHOTOS)), x, y, epochs, seed, lr=1e-3)
    return net, accuracy(net, *labelled_crops(per_split // 6, TEST_SEEDS))
