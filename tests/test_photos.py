"""The photographs of the RGB testbed (spiking_ddim.photos): shipped by installed packages,
crops deterministic for a seed, training and held-out crops from disjoint photographs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spiking_ddim.photos import HELD_OUT, PHOTOS, load_photo, random_crops, split_names


def test_every_photograph_loads_as_rgb_with_its_licence():
    for name, photo in PHOTOS.items():
        image = load_photo(name)
        assert image.shape[0] == 3 and min(image.shape[1:]) >= 128 and photo.licence
        assert 0 <= float(image.min()) and float(image.max()) <= 1 and float(image.std()) > 0.02


def test_training_and_held_out_crops_come_from_disjoint_photographs():
    train, held_out = split_names("train"), split_names("held-out")
    assert train and held_out and not set(train) & set(held_out) and set(held_out) == set(HELD_OUT)
    assert set(train) | set(held_out) == set(PHOTOS)
    _, sources = random_crops(64, "held-out", seed=3)
    assert set(sources) <= set(held_out)
    _, sources = random_crops(64, "train", seed=3)
    assert set(sources) <= set(train) and len(set(sources)) > 1


def test_crops_are_a_function_of_their_seed():
    a, sa = random_crops(16, seed=5)
    b, sb = random_crops(16, seed=5)
    c, _ = random_crops(16, seed=6)
    assert torch.equal(a, b) and sa == sb and not torch.equal(a, c)
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32 and -1 <= float(a.min()) and float(a.max()) <= 1


def test_a_window_of_the_crop_size_is_a_patch_of_its_photograph_possibly_flipped():
    crops, sources = random_crops(3, "held-out", seed=0, windows=(1,))  # the smaller photographs: a quick search
    for crop, name in zip(crops, sources):
        photo = (load_photo(name) * 2 - 1).unsqueeze(0)
        # the squared distance of the crop (or its mirror) to every 32 x 32 patch; at its nearest patch, equal
        energy = F.avg_pool2d(photo.pow(2).sum(1, keepdim=True), 32, stride=1) * 32 * 32
        errors = []
        for c in (crop, crop.flip(-1)):
            distance = (energy - 2 * F.conv2d(photo, c.unsqueeze(0)))[0, 0]
            top, left = divmod(int(distance.argmin()), distance.shape[1])
            errors.append(float((photo[0, :, top:top + 32, left:left + 32] - c).abs().max()))
        assert min(errors) < 1e-6


def test_bad_crop_settings_are_clear_errors():
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        random_crops(0)
    with pytest.raises(ValueError, match="split must be one of train, held-out"):
        random_crops(4, "test")
    with pytest.raises(ValueError, match="windows must be integers >= 1"):
        random_crops(4, windows=(0,))
