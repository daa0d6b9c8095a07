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


def test_the_photos_cnn_names_the_photograph_of_fresh_crops():
    from spiking_ddim.metrics.feature_nets import accuracy
    from spiking_ddim.metrics.photos_features import TEST_SEEDS, labelled_crops, load_cnn

    x, y = labelled_crops(300, TEST_SEEDS)
    assert set(y.tolist()) == set(range(len(PHOTOS)))
    assert accuracy(load_cnn(), x, y) >= 0.95  # chance: 1/9; 99.1 % when trained


def test_kid_in_the_photos_space_tells_held_out_textures_from_training_ones(monkeypatch):
    """Against the held-out crops, ``auto`` (no Inception weights here) scores in the photos
    space; fresh crops of the same photographs come out near 0, crops of the training
    photographs far from it; an explicit other space is refused, not mixed."""
    from spiking_ddim.metrics import generation
    from spiking_ddim.metrics.generation import extract_features, generation_metrics

    monkeypatch.setattr(generation, "find_inception_weights", lambda path=None: None)
    real = extract_features("photos", "auto", metrics=("kid",), what="real")
    assert real.extractor == "photos-cnn" and real.n == 2000
    same = generation_metrics(real, random_crops(300, "held-out", seed=7)[0], metrics=("kid",))
    other = generation_metrics(real, random_crops(300, "train", seed=7)[0], metrics=("kid",))
    assert same.feature_extractor == other.feature_extractor == "photos-cnn"
    assert same.label("KID") == "KID (photos features)"
    assert abs(same.kid_mean) < 0.1 * other.kid_mean
    with pytest.raises(ValueError, match="different extractors"):
        generation_metrics(real, random_crops(10, "train", seed=7)[0], "digits", metrics=("kid",))
