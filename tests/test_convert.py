"""Converting diffusers UNets: every Swish site replaced, fine neurons track the original,
round trips through save_pretrained, revert, GELU sites, bad input."""

import copy
import json

import pytest
import torch
from diffusers import UNet2DModel
from tiny_models import tiny_cond_unet, tiny_unet
from torch import nn

from fs_neurons import FSNeuron
from fs_neurons.functional import backend
from spiking_ddim import FSActivation, convert_unet, fs_activations, load_model, original_activations, revert_unet
from spiking_ddim.convert import SWISH_TYPES, find_activations
from spiking_ddim.fs_activation import SiteSignature


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 1, 8, 8, generator=g), torch.tensor([10, 700])


def test_every_swish_site_is_converted_and_reported():
    unet = tiny_unet()
    n_resnets = sum(1 for n, m in unet.named_modules() if type(m).__name__ == "ResnetBlock2D")
    report = convert_unet(unet, K=8, method="ours")
    assert not find_activations(unet, SWISH_TYPES)
    assert report.complete and not report.functional_calls and not report.remaining
    # each ResnetBlock2D: norm1, time embedding, norm2; plus time_embedding.act and conv_act
    assert len(report.sites) == 3 * n_resnets + 2
    assert len(report.modules) == n_resnets + 2
    resnet_sites = [s for s in report.sites if s.name.startswith("down_blocks.0.resnets.0.nonlinearity")]
    assert [s.signature for s in resnet_sites] == [[4, 8], [2, 32], [4, 8]]
    assert type(unet).__name__ == "SpikingUNet2DModel"
    assert "converted" in report.summary()


def test_the_default_entry_is_the_unet_fitted_one():
    from fs_neurons import load_entry

    unet = tiny_unet()
    convert_unet(unet, K=8)
    want = load_entry("swish", 8, "ours-unet")
    assert want.distribution == "swish_unet_inputs.json" and unet.fs_config.method == "ours-unet"
    for _, act in fs_activations(unet):
        for n in act.neurons:
            assert n.params()["h"] == pytest.approx(list(want.h)) and n.params()["T"] == pytest.approx(list(want.T))


def test_fine_neurons_reproduce_the_original_closely(fine_bank):
    bank, mse = fine_bank
    unet = tiny_unet().eval()
    x, t = inputs()
    with torch.no_grad():
        ref = unet(x, t).sample
    convert_unet(unet, K=20, method="ours", bank_path=bank)
    unet.eval()
    with torch.no_grad():
        out = unet(x, t).sample
    coarse = tiny_unet().eval()
    convert_unet(coarse, K=20, method="ours", bank_path=bank)
    for _, act in fs_activations(coarse):  # a deliberately poor neuron: one step
        for n in act.neurons:
            with torch.no_grad():
                n.d.zero_()
                n.d[0] = 1.0
    with torch.no_grad():
        bad = coarse(x, t).sample
    err, bad_err = (out - ref).abs().mean(), (bad - ref).abs().mean()
    assert mse < 2e-4
    assert err < 0.1 * ref.abs().mean()
    assert err < 0.2 * bad_err


def test_original_activations_equal_the_original_and_lookup_equals_simulation():
    unet = tiny_unet().eval()
    x, t = inputs()
    with torch.no_grad():
        ref = unet(x, t).sample
    convert_unet(unet, K=8, method="ours")
    unet.eval()
    with torch.no_grad():
        with original_activations(unet):
            torch.testing.assert_close(unet(x, t).sample, ref, atol=1e-5, rtol=1e-5)
        fast = unet(x, t).sample
        with backend(unet, "simulate"):
            sim = unet(x, t).sample
    torch.testing.assert_close(fast, sim, atol=1e-4, rtol=1e-4)


def test_save_pretrained_round_trip_is_identical(tmp_path):
    unet = tiny_unet()
    convert_unet(unet, K=8, method="tbpi")
    with torch.no_grad():  # make every site distinct, so a mixed-up site would show
        for i, (_, act) in enumerate(fs_activations(unet)):
            for j, n in enumerate(act.neurons):
                n.T.add_(0.01 * (i + j))
    unet.eval()
    x, t = inputs()
    with torch.no_grad():
        out = unet(x, t).sample
    unet.save_pretrained(tmp_path / "m")
    spec = json.loads((tmp_path / "m" / "spiking_config.json").read_text())
    assert spec["K"] == 8 and spec["method"] == "tbpi" and spec["base_class"] == "UNet2DModel"
    loaded = load_model(tmp_path / "m")
    assert type(loaded).__name__ == "SpikingUNet2DModel"
    with torch.no_grad():
        assert torch.equal(loaded(x, t).sample, out)
    again = type(loaded).from_pretrained(tmp_path / "m")  # the diffusers-style entry point
    with torch.no_grad():
        assert torch.equal(again(x, t).sample, out)


def test_revert_restores_the_original_model():
    unet = tiny_unet().eval()
    x, t = inputs()
    with torch.no_grad():
        ref = unet(x, t).sample
    convert_unet(unet, K=4, method="ours")
    revert_unet(unet)
    unet.eval()
    assert type(unet) is UNet2DModel and not fs_activations(unet)
    assert len(find_activations(unet, SWISH_TYPES)) > 0
    with torch.no_grad():
        torch.testing.assert_close(unet(x, t).sample, ref, atol=1e-5, rtol=1e-5)


def test_a_deep_copy_of_a_converted_model_counts_its_own_call_sites():
    # a teacher copied from a converted student (train.py snn --model <converted>) runs
    # alternately with it; each must reset its own site counters
    original = tiny_unet()
    x, t = inputs()
    with torch.no_grad():
        want = original(x, t).sample
    student = tiny_unet()
    convert_unet(student, K=8, method="ours")
    teacher = copy.deepcopy(student)
    with torch.no_grad():
        fs_first = student(x, t).sample
        for _ in range(3):
            with original_activations(teacher):
                assert torch.allclose(teacher(x, t).sample, want, atol=1e-5)
            assert torch.equal(student(x, t).sample, fs_first)
    revert_unet(teacher)
    with torch.no_grad():
        assert torch.allclose(teacher(x, t).sample, want, atol=1e-5)
        assert torch.equal(student(x, t).sample, fs_first)


def test_conditional_unet_and_gelu_sites(tmp_path):
    unet = tiny_cond_unet().eval()
    report = convert_unet(unet, K=8, method="ours", convert_gelu=True)
    kinds = {s.activation for s in report.sites}
    assert kinds == {"swish", "gelu"} and report.complete
    assert any("ff.net.0" in m for m in report.modules)  # the transformer's GEGLU
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(1, 1, 8, 8, generator=g), torch.tensor([5])
    cond = torch.randn(1, 4, 8, generator=g)
    with torch.no_grad():
        out = unet(x, t, encoder_hidden_states=cond).sample
    unet.save_pretrained(tmp_path / "c")
    with torch.no_grad():
        assert torch.equal(load_model(tmp_path / "c")(x, t, encoder_hidden_states=cond).sample, out)


def test_functional_swish_is_reported():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.act = nn.SiLU()

        def forward(self, x):
            return torch.nn.functional.silu(self.lin(self.act(x)))

    net = Net()
    report = convert_unet(net, K=4, example_inputs=((torch.randn(2, 4),), {}))
    assert report.modules == ["act"]
    assert report.functional_calls == ["lin"] or report.functional_calls == ["<model>"]
    assert not report.complete and "F.silu" in report.summary()


def test_site_order_is_checked():
    act = FSActivation("swish", [FSNeuron(2), FSNeuron(2)], [SiteSignature(4, 8), SiteSignature(2, 32)])
    act(torch.randn(1, 8, 2, 2))
    with pytest.raises(RuntimeError, match="call site 1 expected"):
        act(torch.randn(1, 8, 2, 2))
    act.reset_calls()
    act(torch.randn(1, 8, 2, 2))
    act(torch.randn(1, 32))
    with pytest.raises(RuntimeError, match="called 3 times"):
        act(torch.randn(1, 8, 2, 2))


def test_bad_conversions(tmp_path):
    with pytest.raises(ValueError, match="no Swish"):
        convert_unet(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), example_inputs=((torch.randn(1, 2),), {}))
    with pytest.raises(ValueError, match="K"):
        convert_unet(tiny_unet(), K=0)
    with pytest.raises(ValueError, match=r"the bank has no tbpi entry for K=7 \(it holds K = 4, 8, 12, 16\)"):
        convert_unet(tiny_unet(), K=7, method="tbpi")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path / "empty")
    unet = tiny_unet()
    convert_unet(unet, K=4)
    unet.save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "diffusion_pytorch_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt weights"):
        load_model(tmp_path / "m")


def test_hub_id_while_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="cannot fetch model 'some-org/some-ddim'.*Offline"):
        load_model("some-org/some-ddim")


def test_the_record_is_typed_frozen_and_round_trips_through_json(tmp_path):
    import dataclasses
    import json

    from spiking_ddim import load_model
    from spiking_ddim.record import FSConfig, RecordError, add_event

    unet = tiny_unet()
    convert_unet(unet, K=4, source=str(tmp_path), component="unet")
    record = unet.fs_config
    assert isinstance(record, FSConfig) and record.base_class == "UNet2DModel" and record.act_fn == "silu"
    assert FSConfig.from_json(json.loads(json.dumps(record.to_json()))) == record
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.K = 8
    add_event(unet, "calibrate", budget={"kind": "spikes", "value": 1.0})
    assert unet.fs_config is not record and not record.calibrated  # a new record; the old one is unchanged
    assert unet.fs_config.calibrated and unet.fs_config.budget == {"kind": "spikes", "value": 1.0}
    unet.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["_class_name"] == "UNet2DModel" and "spiking_ddim.load_model" in saved["act_fn"]
    assert "quantization_config" not in saved
    card = (tmp_path / "m" / "README.md").read_text()  # the model card, from the record
    assert "library_name: diffusers" in card and "K=4" in card and "under the spikes budget 1" in card
    assert load_model(tmp_path / "m").fs_config == unet.fs_config
    old = {**record.to_json(), "format": 2, "calibrated": True, "budget": None}
    del old["history"]
    assert [e["event"] for e in FSConfig.from_json(old).history] == ["convert", "calibrate"]
    with pytest.raises(RecordError, match="coding must be one of step, delta"):
        FSConfig.from_json({**record.to_json(), "coding": "sigma"})
    with pytest.raises(RecordError, match="delta_K must be an integer >= 1"):
        FSConfig.from_json({**record.to_json(), "coding": "delta"})


def test_only_supported_diffusers_classes_are_converted():
    from diffusers import UNet1DModel

    with pytest.raises(ValueError, match="spiking_ddim converts the diffusers models"):
        convert_unet(UNet1DModel())


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules())


def _fail_at(n: int, function):
    """``function``, except that its ``n``-th call raises."""
    calls = [0]

    def wrapped(*args, **kwargs):
        calls[0] += 1
        if calls[0] == n:
            raise RuntimeError(f"injected failure at call {n}")
        return function(*args, **kwargs)
    return wrapped


@pytest.mark.parametrize("stage,coding,spiking", [
    ("attach_site_counter", "step", "swish"),  # the 5th hook of the Swish sites
    ("input_counter", "step", "all"),  # a hook of the fully spiking model's input encoders
    ("install_encoders", "delta", "swish"),  # the delta encoders, after they are in place
    ("FSConfig", "step", "swish"),  # the record
    ("add_event", "delta", "all"),  # its history
    ("as_spiking_class", "step", "swish"),  # the class swap, the last step
])
def test_a_conversion_that_fails_at_any_stage_leaves_the_model_as_it_was(monkeypatch, stage, coding, spiking):
    import spiking_ddim.convert as convert
    import spiking_ddim.delta as delta
    import spiking_ddim.sites as sites

    unet = tiny_unet()
    x, t = inputs()
    with torch.no_grad():
        before = unet(x, t).sample
    keys, hooks, cls = set(unet.state_dict()), _hooks(unet), type(unet)
    if stage == "attach_site_counter":
        monkeypatch.setattr(sites, "attach_site_counter", _fail_at(5, sites.attach_site_counter))
    elif stage == "input_counter":
        swish_sites = len(find_activations(unet, SWISH_TYPES))
        monkeypatch.setattr(sites, "attach_site_counter", _fail_at(swish_sites + 3, sites.attach_site_counter))
    elif stage == "install_encoders":
        install = delta.install_encoders

        def install_then_fail(model, make):
            install(model, make)
            raise RuntimeError("injected failure after the encoders")
        monkeypatch.setattr(delta, "install_encoders", install_then_fail)
    else:
        monkeypatch.setattr(convert, stage, _fail_at(1, getattr(convert, stage)))
    with pytest.raises(RuntimeError, match="injected failure"):
        convert_unet(unet, K=4, coding=coding, spiking=spiking)
    assert type(unet) is cls and not hasattr(unet, "fs_config")
    assert not fs_activations(unet) and len(find_activations(unet, SWISH_TYPES)) > 0
    assert not any(hasattr(m, "input_encoder") for m in unet.modules())
    assert _hooks(unet) == hooks and set(unet.state_dict()) == keys
    with torch.no_grad():
        assert torch.equal(unet(x, t).sample, before)
    monkeypatch.undo()
    convert_unet(unet, K=4, coding=coding, spiking=spiking)  # and a later conversion goes through
    assert unet.fs_config.coding.name == coding and unet.fs_config.spiking == spiking
