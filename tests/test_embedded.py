"""The shipped models by name: the digits default and the 32x32 RGB photos DDIM."""

import pytest
import torch

from spiking_ddim.embedded import EMBEDDED_MODELS, embedded_model, model_location
from spiking_ddim.pipelines import SamplingOptions, convert_pipeline, generate, load_pipeline
from spiking_ddim.provenance import describe_source, source_name

PHOTOS = EMBEDDED_MODELS["photos"]


@pytest.mark.parametrize("key", sorted(EMBEDDED_MODELS))
def test_an_embedded_model_is_found_by_name_record_name_and_directory(key):
    model = EMBEDDED_MODELS[key]
    for name in (f"embedded:{key}", model.name, model.directory, model.directory / "unet", str(model.directory)):
        assert embedded_model(name) is model
        assert source_name(name) == model.name
    assert model_location(f"embedded:{key}") == model.directory and describe_source(model.name) == model.words
    assert embedded_model(model.directory.parent) is None and model_location("some/hub-id") == "some/hub-id"


def test_an_unknown_embedded_name_lists_those_that_exist():
    with pytest.raises(ValueError, match=r"no embedded model 'embedded:cifar'; the package ships "
                                         r"embedded:digits, embedded:photos"):
        load_pipeline("embedded:cifar")


def test_the_photos_model_is_shaped_like_the_cifar10_ddpm():
    """4 resolutions (32, 16, 8, 4), two ResNet blocks per level, GroupNorm with 32 groups,
    self-attention on the 16x16 maps and in the middle block (4x4), RGB in and out."""
    unet = load_pipeline("embedded:photos").unet
    c = unet.config
    assert (c.sample_size, c.in_channels, c.out_channels, c.layers_per_block) == (32, 3, 3, 2)
    assert len(c.block_out_channels) == 4 and all(w % 32 == 0 for w in c.block_out_channels)
    norms = [m for m in unet.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and {m.num_groups for m in norms} == {32}
    assert [len(b.resnets) for b in unet.down_blocks] == [2] * 4
    seen = []
    hooks = [m.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape[-2:])))
             for m in unet.modules() if type(m).__name__ == "Attention"]
    with torch.no_grad():
        unet(torch.zeros(1, 3, 32, 32), torch.tensor([10]))
    for h in hooks:
        h.remove()
    assert set(seen) == {(16, 16), (4, 4)}  # the 16x16 level (down and up) and the middle block
    assert sum(p.numel() for p in unet.parameters()) > 2_000_000


def test_the_photos_model_samples_by_name_and_its_fs_conversion_follows_it():
    pipe = load_pipeline("embedded:photos")
    options = SamplingOptions(steps=3)
    ann = generate(pipe, range(3), options)
    assert ann.shape == (3, 3, 32, 32) and torch.isfinite(ann).all() and ann.abs().max() <= 1
    assert (ann[0] - ann[1]).abs().mean() > 0.05  # seeds give different images
    assert (ann[0, 0] - ann[0, 1]).abs().mean() > 0.005  # colour: the channels differ
    convert_pipeline(pipe, K=8)
    fs = generate(pipe, range(3), options)
    psnr = 10 * torch.log10(4 / ((fs - ann) ** 2).mean())
    assert 15 < psnr < 80  # the FS network follows the ANN, and it is not the ANN
    assert pipe.unet.fs_config.source_model == PHOTOS.name


@pytest.mark.parametrize("groups", [0, 5])
def test_norm_groups_that_do_not_divide_every_width_are_a_one_line_error(groups, tmp_path, cli, monkeypatch):
    from spiking_ddim import data
    from spiking_ddim.diffusion import build_unet

    message = f"norm groups must be >= 1 and divide every width, got {groups} for widths"
    with pytest.raises(ValueError, match=message):
        build_unet(32, 3, [32, 64], 1, -1, groups)

    def no_data(*_):
        raise AssertionError("training images loaded before the flags were checked")

    monkeypatch.setattr(data, "load_images", no_data)
    for command in (["ann"], ["snn", "--from-scratch"]):
        code, _, err = cli("train", *command, "--data", "photos", "--image-size", "32", "--block-out-channels", "32",
                           "64", "--norm-groups", groups, "--steps", "1", "--out", tmp_path / command[0])
        assert code != 0 and f"error: --norm-groups: {message}" in err and err.count("\n") <= 1
        assert not (tmp_path / command[0]).exists()
