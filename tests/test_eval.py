"""Image losses and KID: hand-made tensors, feature spaces, bad inputs, offline Inception."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from eval.image_loss import compare, psnr_from_mse
from eval.kid import INCEPTION_ENV, kid, resolve_extractor
from spiking_ddim.data import digits


def test_compare_on_hand_made_images():
    a = -torch.ones(2, 1, 2, 2)  # black
    b = a.clone()
    b[0, 0, 0, 0] = 1.0  # one white pixel of four in image 0 -> MSE 1/4 on [0, 1]
    m = compare(a, b)
    assert m["mse"] == [0.25, 0.0]
    assert m["mae"] == [0.25, 0.0]
    assert m["psnr"][0] == pytest.approx(10 * math.log10(4)) and math.isinf(m["psnr"][1])
    assert m["mean_mse"] == 0.125 and m["mean_psnr"] == pytest.approx(psnr_from_mse(0.125))


def test_compare_rejects_bad_batches():
    with pytest.raises(ValueError, match="differ in shape"):
        compare(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="NaN"):
        compare(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), float("nan")))


def test_kid_of_a_set_with_itself_is_near_zero_and_grows_for_different_sets():
    real = digits(16, "test")
    same = digits(16, "train")[:300]  # same distribution, other images
    blobs = torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    r_same = kid(real, same, "digits", subset_size=200, subsets=20)
    r_self = kid(real, real, "digits", subset_size=200, subsets=20)
    r_noise = kid(real, blobs, "digits", subset_size=200, subsets=20)
    # X vs X draws overlapping subsets, which biases the unbiased estimator slightly negative
    assert abs(r_self.mean) < 5e-2 and abs(r_same.mean) < 2e-2
    assert r_noise.mean > 0.5 and r_noise.mean > 20 * max(abs(r_same.mean), abs(r_self.mean))
    assert r_noise.label == "KID (digits features)" and r_noise.feature_extractor == "digits-cnn"


def test_digits_cnn_reaches_97_percent_on_held_out_digits():
    from eval.digits_features import accuracy, load_cnn
    from spiking_ddim.data import digit_labels

    assert accuracy(load_cnn(), digits(16, "test"), digit_labels("test")) >= 0.97


def write_images(folder, n, size=(16, 16), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_kid_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="contains no images"):
        kid(tmp_path / "empty", tmp_path / "empty", "digits")
    with pytest.raises(FileNotFoundError, match="not found"):
        kid(tmp_path / "missing", "digits", "digits")
    mixed = write_images(tmp_path / "mixed", 3)
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(mixed / "big.png")
    with pytest.raises(ValueError, match="mixed sizes"):
        kid(mixed, "digits", "digits")
    few = write_images(tmp_path / "few", 5)
    with pytest.raises(ValueError, match="subset size 50 is larger than the number of images"):
        kid("digits", few, "digits", subset_size=50)
    broken = write_images(tmp_path / "broken", 3)
    (broken / "003.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*003.png"):
        kid("digits", broken, "digits")


def test_missing_inception_weights_name_the_file_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv(INCEPTION_ENV, raising=False)

    def offline(*_a, **_k):
        raise OSError("network unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(FileNotFoundError, match=r"weights-inception-2015-12-05.*--inception-weights PATH"):
        resolve_extractor("inception")
    assert resolve_extractor("auto")[0] == "digits-cnn"  # offline auto falls back, labelled
    with pytest.raises(FileNotFoundError, match="given by --inception-weights not found"):
        resolve_extractor("inception", tmp_path / "nope.pth")


def test_random_weight_inception_through_torch_fidelity(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as m:  # build the network without downloading weights
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, *a, **k: None)
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for mod in net.modules():  # scale-preserving random weights, so the features are not ~0
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    weights = tmp_path / "random_inception.pth"
    torch.save(net.state_dict(), weights)
    monkeypatch.setenv(INCEPTION_ENV, str(weights))
    real = digits(16, "test")[:12]
    r_self = kid(real, real, "auto", subset_size=10, subsets=5)
    r_noise = kid(real, torch.rand(12, 3, 16, 16) * 2 - 1, "auto", subset_size=10, subsets=5)
    assert r_self.feature_extractor == "inception-v3-compat" and r_self.label == "KID (Inception)"
    assert math.isfinite(r_noise.mean) and r_noise.mean > r_self.mean
