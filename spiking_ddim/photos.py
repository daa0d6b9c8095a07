"""Photographs that installed packages ship, cut into small RGB crops: data for a 32x32 RGB
testbed that needs no download.

:data:`PHOTOS` names each photograph, the package and file it comes from and its licence.
Training crops and held-out crops (for KID) come from disjoint photographs
(:data:`HELD_OUT`). :func:`random_crops` cuts ``n`` square windows of several sizes at random
places of the split's photographs, flips half of them left to right, and shrinks each to
``size`` by area averaging; it is a pure function of its seed (one ``torch.Generator``).
Images are float tensors in [-1, 1], shape (N, 3, size, size).
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fs_neurons.utils.choices import check_choice


class Photo(NamedTuple):
    """Where a photograph comes from: the package that ships it, its file there, its licence."""

    package: str  # the importable package (skimage, sklearn)
    path: str  # the file inside the package
    licence: str


PHOTOS = {
    "astronaut": Photo("skimage", "data/astronaut.png", "public domain (NASA)"),
    "chelsea": Photo("skimage", "data/chelsea.png", "CC0 (Stefan van der Walt)"),
    "coffee": Photo("skimage", "data/coffee.png", "CC0 (Rachel Michetti)"),
    "rocket": Photo("skimage", "data/rocket.jpg", "public domain (SpaceX)"),
    "retina": Photo("skimage", "data/retina.jpg", "CC0 1.0"),
    "hubble_deep_field": Photo("skimage", "data/hubble_deep_field.jpg", "public domain (NASA)"),
    "immunohistochemistry": Photo("skimage", "data/ihc.png", "no known copyright restrictions"),
    "china": Photo("sklearn", "datasets/images/china.jpg", "CC BY 2.0 (danielbuechele on Flickr)"),
    "flower": Photo("sklearn", "datasets/images/flower.jpg", "CC BY 2.0 (vultilion on Flickr)"),
}
HELD_OUT = ("coffee", "flower")  # photographs whose crops are never trained on
SPLITS = ("train", "held-out")
WINDOWS = (1, 2, 4)  # window sides, in multiples of the crop size, shrunk to it
SET_SIZES = {"train": 50_000, "test": 2_000}  # crops of the fixed sets: training, held-out (the real set of KID)
SET_SEEDS = {"train": 0, "test": 1}


def split_names(split: str) -> list[str]:
    """The photographs of ``split`` (``train`` or ``held-out``), in :data:`PHOTOS`' order."""
    check_choice("split", split, SPLITS)
    return [name for name in PHOTOS if (name in HELD_OUT) == (split == "held-out")]


@functools.lru_cache(maxsize=len(PHOTOS))
def load_photo(name: str) -> torch.Tensor:
    """Photograph ``name`` as float32 (3, H, W) in [0, 1] (grey or RGBA files made RGB)."""
    from PIL import Image

    check_choice("photo", name, tuple(PHOTOS))
    photo = PHOTOS[name]
    try:
        ref = resources.files(photo.package).joinpath(photo.path)
    except ModuleNotFoundError:
        raise ModuleNotFoundError(f"photo {name!r} ships with the {photo.package} package: install it") from None
    with resources.as_file(ref) as path, Image.open(path) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def random_crops(n: int, split: str = "train", size: int = 32, seed: int = 0,
                 windows: Sequence[int] = WINDOWS) -> tuple[torch.Tensor, list[str]]:
    """``n`` crops of the ``split``'s photographs and the photograph each came from: a
    photograph drawn uniformly, a square window of ``size`` times one of ``windows`` pixels
    at a uniform place, flipped left to right with probability 1/2, shrunk to ``size`` by
    area averaging. (n, 3, size, size) float32 in [-1, 1]; the same for the same arguments."""
    for what, value in (("n", n), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{what} must be an integer >= 1, got {value!r}")
    if not windows or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in windows):
        raise ValueError(f"windows must be integers >= 1 (multiples of size), got {windows!r}")
    names = split_names(split)
    g = torch.Generator().manual_seed(seed)
    crops, sources = [], []
    for _ in range(n):
        name = names[int(torch.randint(len(names), (), generator=g))]
        photo = load_photo(name)
        side = size * windows[int(torch.randint(len(windows), (), generator=g))]
        side = min(side, photo.shape[1], photo.shape[2])
        top = int(torch.randint(photo.shape[1] - side + 1, (), generator=g))
        left = int(torch.randint(photo.shape[2] - side + 1, (), generator=g))
        crop = photo[:, top:top + side, left:left + side]
        if bool(torch.rand((), generator=g) < 0.5):
            crop = crop.flip(-1)
        crops.append(F.adaptive_avg_pool2d(crop.unsqueeze(0), size)[0])
        sources.append(name)
    return (torch.stack(crops) * 2 - 1).clamp(-1, 1), sources


def photo_set(split: str = "train", size: int = 32) -> torch.Tensor:
    """The fixed set of ``split``: ``train`` (50,000 training crops, seed 0) or ``test``
    (2,000 held-out crops, seed 1, the real images of KID); (N, 3, size, size) in [-1, 1]."""
    check_choice("split", split, tuple(SET_SIZES))
    crops, _ = random_crops(SET_SIZES[split], "train" if split == "train" else "held-out", size, SET_SEEDS[split])
    return crops
