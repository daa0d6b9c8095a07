"""A new coding is one module and its registration: a toy coding, defined here and
registered by a fixture, converts, samples, saves, loads, describes itself and reverts
through the package's own paths, without a change anywhere else."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from tiny_models import tiny_ddpm
from torch import nn

from fs_neurons.state import Stateful
from spiking_ddim import convert_pipeline, generate, load_pipeline, revert_unet, save_pipeline
from spiking_ddim.codings import (
    Coding,
    DeltaCoding,
    StepCoding,
    as_coding,
    coding_from_json,
    coding_names,
    register_coding,
    unregister_coding,
)
from spiking_ddim.errors import SettingError
from spiking_ddim.pipelines import SamplingOptions
from spiking_ddim.run_state import install_run_clock, remove_run_clock
from spiking_ddim.sites import fs_activations

OPTIONS = SamplingOptions(steps=4)


class HoldEncoder(Stateful):
    """Sends, at every call of a run, what its neuron sent at the run's first call."""

    def __init__(self):
        super().__init__()
        self.sent = None

    def reset(self) -> None:
        self.sent = None

    def transmit(self, neuron, x, exact):
        if self.sent is None:
            self.sent = neuron(x)
        return self.sent.clone()


@dataclass(frozen=True)
class HoldCoding(Coding):
    """A toy coding across denoising steps: each site repeats its first step's code."""

    name = "hold"
    description = "each FS site repeats its first step's code"
    needs_denoiser = True

    def install(self, model):
        for _, act in fs_activations(model):
            act.encoders = nn.ModuleList(HoldEncoder() for _ in range(act.num_sites))
        install_run_clock(model)

    def remove(self, model):
        for _, act in fs_activations(model):
            act.encoders = None
        remove_run_clock(model)

    def summary(self):
        return "hold coding"

    def describe(self, fits):
        return "`hold` coding: every site repeats its first step's code"


@pytest.fixture
def hold():
    register_coding(HoldCoding)
    yield HoldCoding
    unregister_coding("hold")


def test_a_registered_toy_coding_converts_samples_saves_loads_and_reverts(hold, tmp_path):
    assert "hold" in coding_names()
    pipe, step = tiny_ddpm(), tiny_ddpm()
    convert_pipeline(pipe, K=4, method="ours", coding="hold")
    convert_pipeline(step, K=4, method="ours")
    record = pipe.unet.fs_config
    assert record.coding == HoldCoding() and record.label.endswith(" hold") and "hold coding" in record.summary()
    # within one run every call of a site sends the same value; the next run starts afresh
    act = fs_activations(pipe.unet)[0][1]
    sent = []
    handle = act.register_forward_hook(lambda _m, _a, out: sent.append(out.clone()))
    images = generate(pipe, range(2), OPTIONS)
    handle.remove()
    first_site = sent[::act.num_sites]
    assert len(first_site) == OPTIONS.steps and all(torch.equal(s, first_site[0]) for s in first_site)
    assert not torch.equal(images, generate(step, range(2), OPTIONS))  # the coding changed what was sent
    assert torch.equal(images, generate(pipe, range(2), OPTIONS))
    save_pipeline(pipe, tmp_path / "hold")
    assert "`hold` coding" in (tmp_path / "hold" / "README.md").read_text()
    loaded = load_pipeline(tmp_path / "hold", scheduler="pipeline")
    assert loaded.unet.fs_config.coding == HoldCoding()
    assert torch.equal(generate(loaded, range(2), OPTIONS), images)
    revert_unet(pipe.unet)
    assert not fs_activations(pipe.unet) and "run_clock" not in dict(pipe.unet.named_children())


def test_codings_are_found_by_name_and_read_back_from_their_json():
    assert coding_names()[:2] == ("step", "delta")
    assert as_coding(None) == StepCoding() and as_coding("delta") == DeltaCoding()
    delta = DeltaCoding(K=4, spike_weight=0.5, price="change", cost="spikes", images=3)
    assert coding_from_json(delta.to_json()) == delta
    assert DeltaCoding().resolve(16) == DeltaCoding(K=8, spike_weight=0.0002)  # min(K, 8); the price's weight
    assert DeltaCoding(price="change").resolve(4).spike_weight == 0.01
    with pytest.raises(SettingError, match="coding must be one of step, delta, graded, got 'sigma'"):
        as_coding("sigma")
    with pytest.raises(ValueError, match="has no setting 'steps'"):
        coding_from_json({"name": "delta", "steps": 3})
    for bad, setting in (({"K": 0}, "delta_K"), ({"spike_weight": -1.0}, "delta_spike_weight"),
                         ({"price": "values"}, "delta_price"), ({"images": 0}, "delta_images")):
        with pytest.raises(SettingError) as e:
            DeltaCoding(**bad)
        assert e.value.name == setting
    with pytest.raises(ValueError, match="already registered"):
        register_coding(type("Other", (StepCoding,), {"name": "delta"}))
