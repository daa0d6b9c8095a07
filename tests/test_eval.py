"""Image losses, FID / KID / IS: hand-made tensors, feature spaces, bad inputs, offline Inception."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from spiking_ddim.data import digits
from spiking_ddim.metrics.generation import INCEPTION_ENV, extract_features, generation_metrics, resolve_extractor
from spiking_ddim.metrics.image_loss import compare, describe_psnr, psnr_from_mse, psnr_spread


def test_compare_on_hand_made_images():
    a = -torch.ones(2, 1, 2, 2)  # black
    b = a.clone()
    b[0, 0, 0, 0] = 1.0  # one white pixel of four in image 0 -> MSE 1/4 on [0, 1]
    m = compare(a, b)
    assert m["mse"] == [0.25, 0.0]
    assert m["mae"] == [0.25, 0.0]
    assert m["psnr"][0] == pytest.approx(10 * math.log10(4)) and math.isinf(m["psnr"][1])
    assert m["mean_mse"] == 0.125 and m["mean_psnr"] == pytest.approx(psnr_from_mse(0.125))


def test_a_few_diverged_images_move_the_mean_mse_psnr_but_not_the_median():
    """19 images off by 1/255 in every pixel (48.13 dB each) and one off by 0.5 (6.02 dB):
    the mean-MSE PSNR falls to about 19 dB; the median stays at 48.13 dB, the 5th
    percentile (the lowest of 20) is the diverged image, and 5% lie below 30 dB."""
    a = torch.zeros(20, 1, 4, 4)
    b = a + 2 / 255  # 1/255 on the [0, 1] scale
    b[7] = 1.0  # 0.5 on the [0, 1] scale
    m = compare(a, b)
    close = 20 * math.log10(255)
    assert m["psnr_median"] == pytest.approx(close) and m["psnr_p5"] == pytest.approx(10 * math.log10(4))
    assert m["share_below_30db"] == 0.05
    assert m["mean_psnr"] == pytest.approx(-10 * math.log10((19 / 255 ** 2 + 0.25) / 20))
    assert m["mean_psnr"] < 20 < m["psnr_median"]
    line = describe_psnr(m)
    assert "median 48.13" in line and "5th percentile 6.02 dB" in line and "5.0% below 30 dB" in line
    # identical images have an infinite PSNR: the median is then an actual image's, not NaN
    assert compare(a, a.clone())["psnr_median"] == math.inf
    with pytest.raises(ValueError, match="non-empty"):
        psnr_spread([])


def test_compare_rejects_bad_batches():
    with pytest.raises(ValueError, match="differ in shape"):
        compare(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 3, 3))
    with pytest.raises(ValueError, match="NaN"):
        compare(torch.zeros(1, 1, 2, 2), torch.full((1, 1, 2, 2), float("nan")))


def test_fid_kid_and_is_separate_a_set_from_itself_its_twin_and_noise():
    real = digits(16, "test")
    same = digits(16, "train")[:300]  # same distribution, other images
    blobs = torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    feats = extract_features(real, "digits", metrics=("fid", "kid", "isc", "prc"))
    kw = dict(metrics=("fid", "kid", "isc", "prc"), kid_subset_size=200, kid_subsets=20)
    r_self = generation_metrics(feats, real, "digits", **kw)
    r_same = generation_metrics(feats, same, "digits", **kw)
    r_noise = generation_metrics(feats, blobs, "digits", **kw)
    assert abs(r_self.fid) < 1e-6 and r_self.precision == r_self.recall == 1.0
    assert 0.3 < r_same.fid < 5 and r_noise.fid > 10 * r_same.fid
    # X vs X draws overlapping subsets, which biases the unbiased estimator slightly negative
    assert abs(r_self.kid_mean) < 5e-2 and abs(r_same.kid_mean) < 2e-2
    assert r_noise.kid_mean > 0.5 and r_noise.kid_mean > 20 * max(abs(r_same.kid_mean), abs(r_self.kid_mean))
    assert r_same.isc_mean > 7 and r_noise.isc_mean < 4  # ten clear classes vs noise (at most 10)
    assert r_noise.precision < 0.2 < 0.7 < r_same.precision
    assert r_noise.feature_extractor == "digits-cnn" and r_noise.n_real == 359 and r_noise.n_fake == 300
    assert [r_noise.label(m) for m in ("FID", "KID", "IS")] == [
        "FID (digits features)", "KID (digits features)", "IS (digits classifier)"]
    assert not r_noise.notes and any(n.startswith(("KID unreliable", "KID below 0")) for n in r_same.notes)  # ~0: noise


def test_few_images_are_flagged_unreliable():
    r = generation_metrics("digits", digits(16, "train")[:40], "digits")
    assert r.kid_subset_size == 40 and r.isc_mean is not None and r.precision is None
    assert any(n.startswith("FID unreliable: 40 images per set are not more than the 128 feature dims")
               for n in r.notes)


def test_digits_cnn_reaches_97_percent_on_held_out_digits():
    from spiking_ddim.data import digit_labels
    from spiking_ddim.metrics.digits_features import accuracy, load_cnn

    assert accuracy(load_cnn(), digits(16, "test"), digit_labels("test")) >= 0.97


def write_images(folder, n, size=(16, 16), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0]), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def test_metrics_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="contains no images"):
        generation_metrics(tmp_path / "empty", tmp_path / "empty", "digits")
    with pytest.raises(FileNotFoundError, match="not found"):
        generation_metrics(tmp_path / "missing", "digits", "digits")
    with pytest.raises(ValueError, match="NaN"):
        generation_metrics("digits", torch.full((4, 1, 16, 16), float("nan")), "digits")
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['lpips'\]"):
        generation_metrics("digits", "digits", "digits", metrics=("fid", "lpips"))
    with pytest.raises(ValueError, match="lack layer 'logits', which isc needs"):
        generation_metrics("digits", extract_features("digits", "digits", metrics=("kid",)), "digits", metrics=("isc",))
    mixed = write_images(tmp_path / "mixed", 3)
    Image.fromarray(np.zeros((20, 20), dtype=np.uint8)).save(mixed / "big.png")
    with pytest.raises(ValueError, match="mixed sizes"):
        generation_metrics(mixed, "digits", "digits")
    few = write_images(tmp_path / "few", 5)
    with pytest.raises(ValueError, match="subset size 50 is larger than the number of images"):
        generation_metrics("digits", few, "digits", kid_subset_size=50)
    broken = write_images(tmp_path / "broken", 3)
    (broken / "003.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image .*003.png"):
        generation_metrics("digits", broken, "digits")


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
    r_self = generation_metrics(real, real, "auto", kid_subset_size=10, kid_subsets=5)
    r_noise = generation_metrics(real, torch.rand(12, 3, 16, 16) * 2 - 1, "auto", kid_subset_size=10, kid_subsets=5)
    assert r_self.feature_extractor == "inception-v3-compat" and r_self.label("KID") == "KID (Inception)"
    assert math.isfinite(r_noise.kid_mean) and r_noise.kid_mean > r_self.kid_mean
    assert abs(r_self.fid) < 1e-3 < r_noise.fid and r_noise.label("IS") == "IS (Inception)"
    assert 1 <= r_noise.isc_mean <= 1008  # softmax over Inception's 1008 logits


def test_metrics_command_scores_each_fake_folder(tmp_path, capsys):
    from spiking_ddim.cli import main
    from spiking_ddim.data import save_png, to_uint8

    for name, images in (("digits", digits(16, "train")[:60]),
                         ("noise", torch.rand(60, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(to_uint8(images)):
            save_png(img, tmp_path / name / f"{i:03d}.png")
    assert main(["metrics", "--real", "digits", "--fake", str(tmp_path / "digits"), str(tmp_path / "noise"),
                 "--original", str(tmp_path / "digits"), "--feature-extractor", "digits", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    good, bad = out[str(tmp_path / "digits")], out[str(tmp_path / "noise")]
    assert good["fid"] < bad["fid"] and good["kid_mean"] < bad["kid_mean"] and good["isc_mean"] > bad["isc_mean"]
    assert good["space"] == "digits features" and good["n_fake"] == 60 and good["precision"] is None
    # image loss against the original's images of the same names: zero for the same images
    assert good["image_loss"]["mse"] == 0 and bad["image_loss"]["mse"] > 0.05 and bad["image_loss"]["psnr"] < 15
    assert main(["metrics", "--real", "digits", "--fake", str(tmp_path / "nowhere"), "--feature-extractor", "digits"]) == 2
    assert "image folder not found" in capsys.readouterr().err
    (tmp_path / "noise" / "000.png").rename(tmp_path / "noise" / "renamed.png")
    assert main(["metrics", "--fake", str(tmp_path / "noise"), "--original", str(tmp_path / "digits")]) == 2
    assert "has no image named renamed.png" in capsys.readouterr().err
