"""The meter: forward hooks that count every FS site's spikes and every layer's operations
while a model runs (what is counted: :mod:`spiking_ddim.energy`)."""

from __future__ import annotations

import functools
import math
import re
import weakref
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional, Union

import torch
from torch import nn

from fs_neurons import FSNeuron

from ..layer_types import LAYER_TYPES, PASS_THROUGH
from ..synapses import layer_weight_bits
from ..widths import accumulator_lsbs, finest_level, top
from .operations import MatmulSpy, layer_acs, layer_macs
from .report import CostReport, LayerCost, SiteCost

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline


def site_name(path: str) -> str:
    """``a.b.neurons.2`` (neuron 2 of an FSActivation) or ``a.b.encoders.2`` (its delta
    encoder) -> ``a.b[2]``; other paths unchanged."""
    return re.sub(r"\.(?:neurons|encoders)\.(\d+)$", r"[\1]", path)


class CostMeter:
    """Counts spikes and operations of every forward pass of ``model`` while open (see
    the module docstring); ``report()`` returns the totals so far. ``others`` are further
    modules by name prefix, whose operations count but whose passes are not samples.
    With ``ranges`` it also measures the ranges of accumulators (layers with integer
    weights) and site state (:mod:`spiking_ddim.widths`) and, given recorded ``widths``,
    counts the values beyond them."""

    def __init__(self, model: nn.Module, others: Optional[dict[str, nn.Module]] = None,
                 widths: Optional[dict[str, dict[str, int]]] = None, ranges: bool = False):
        self.parts = [("", model, True)] + [(f"{name}.", m, False) for name, m in (others or {}).items()]
        self.ranges = ranges or widths is not None
        self.recorded = widths
        self.widths = widths or {"accumulators": {}, "states": {}}
        self._inputs: dict[str, torch.Tensor] = {}  # an FS neuron's input, until its spikes are reported
        self._ranges: dict[Any, torch.Tensor] = {}  # site name: largest state value; layer key: in LSBs
        self._overflows: dict[Any, torch.Tensor] = {}
        self._sites: dict[str, SiteCost] = {}
        self._site_spikes: dict[str, torch.Tensor] = {}
        self._layers: dict[tuple[str, str], LayerCost] = {}
        self._layer_acs: dict[tuple[str, str], torch.Tensor] = {}
        self._layer_event_macs: dict[tuple[str, str], torch.Tensor] = {}
        self._layer_events: dict[tuple[str, str], torch.Tensor] = {}
        self._site_acs: dict[str, torch.Tensor] = {}  # ACs each site's spikes cost downstream
        # FS outputs -> (spike counts, graded event counts or None, site, whether a delta encoder's change,
        # bits of the events' values)
        self._spiking: dict[int, tuple[weakref.ref, torch.Tensor, Optional[torch.Tensor], str, bool, int]] = {}
        self._stack: list[str] = []
        self._spy = MatmulSpy(self._on_matmul)
        self._handles: list = []
        self._samples = 0
        self._forwards = 0

    def __enter__(self) -> "CostMeter":
        if self._handles:
            raise RuntimeError("this CostMeter is already counting")
        for prefix, model, samples in self.parts:
            for path, module in model.named_modules():
                self._watch(prefix + path, module, samples)
        return self

    def _watch(self, path: str, module: nn.Module, samples: bool) -> None:
        self._handles.append(module.register_forward_pre_hook(functools.partial(self._enter, path, samples),
                                                              with_kwargs=True))
        self._handles.append(module.register_forward_hook(functools.partial(self._exit, path), always_call=True))
        if isinstance(module, FSNeuron):
            self._handles.append(module.register_spike_hook(functools.partial(self._on_spikes, site_name(path))))
            if self.ranges:
                self._handles.append(module.register_forward_pre_hook(functools.partial(self._on_input,
                                                                                        site_name(path))))
        elif isinstance(module, LAYER_TYPES):
            self._handles.append(module.register_forward_hook(functools.partial(self._on_layer, path)))
        elif isinstance(module, PASS_THROUGH):
            self._handles.append(module.register_forward_hook(self._pass_through))

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._stack.clear()
        self._spiking.clear()
        self._inputs.clear()

    # module stack: the first module entered is the model; the matmul spy is on while inside it
    def _enter(self, path: str, samples: bool, module: nn.Module, args: tuple, kwargs: dict) -> None:
        if not self._stack:
            if samples:
                self._forwards += 1
                first = next((t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)), None)
                self._samples += first.shape[0] if first is not None and first.ndim > 0 else 1
            self._spy.__enter__()
        self._stack.append(path)

    def _exit(self, path: str, module: nn.Module, args: tuple, output: Any) -> None:
        if self._stack and self._stack[-1] == path:
            self._stack.pop()
            if not self._stack:
                self._spy.__exit__(None, None, None)
                self._spiking.clear()

    def _tag(self, out: torch.Tensor, count: torch.Tensor, events: Optional[torch.Tensor], site: str, graded: bool,
             value_bits: int) -> None:
        key = id(out)

        def forget(ref: weakref.ref) -> None:
            entry = self._spiking.get(key)
            if entry is not None and entry[0] is ref:
                del self._spiking[key]

        self._spiking[key] = (weakref.ref(out, forget), count, events, site, graded, value_bits)

    def _spikes_of(self, x: Any) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor], str, bool, int]]:
        """(spike-count map, graded-event map or None, site name, graded, value bits) when ``x``
        is an FS site's output, else None."""
        entry = self._spiking.get(id(x))
        return entry[1:] if entry is not None and entry[0]() is x else None

    def _on_spikes(self, name: str, neuron: FSNeuron, out: torch.Tensor, count: torch.Tensor) -> None:
        site = self._sites.get(name)
        if site is None:
            site = self._sites[name] = SiteCost(name, neuron.K)
            self._site_spikes[name] = torch.zeros((), dtype=torch.float64, device=count.device)
        # One pass over the counts: summed over the first dim (exact in float32 for < 2^24 / K
        # elements along it); every later sum runs on this smaller map.
        count = count.sum(dim=0, dtype=torch.float32) if count.ndim > 1 else count
        site.calls += 1
        site.neurons += out.numel()
        site.updates += out.numel() * neuron.updates_per_element
        site.size = max(site.size, out[0].numel() if out.ndim > 1 else out.numel())
        if neuron.graded:
            site.graded += out.numel()
        self._site_spikes[name] += count.sum(dtype=torch.float64)
        self._state_range(site, neuron, out)
        events = getattr(neuron, "last_events", None)  # a graded-change neuron's events: a value each, not a spike
        if events is not None:
            events = events.sum(dim=0, dtype=torch.float32) if events.ndim > 1 else events
            count = count - events
        self._tag(out, count, events, name, bool(neuron.graded), neuron.bits if events is not None else 0)

    def _on_input(self, name: str, neuron: FSNeuron, args: tuple) -> None:
        if args and isinstance(args[0], torch.Tensor):
            self._inputs[name] = args[0]

    def _note(self, key: Any, value: torch.Tensor, bits: Optional[int], limit: float) -> None:
        """Keep the largest of ``value`` under ``key``; count its elements beyond ``limit`` when ``bits``."""
        peak = value.amax().to(torch.float64)
        self._ranges[key] = torch.maximum(self._ranges[key], peak) if key in self._ranges else peak
        if bits is not None:
            self._overflows[key] = self._overflows.get(key, 0) + (value > limit).sum()

    def _state_range(self, site: SiteCost, neuron: FSNeuron, out: torch.Tensor) -> None:
        """A site's state this call: its input (a membrane's start) or its output (a kept
        value), their sum for a delta encoder (whose membrane starts at the change)."""
        x = self._inputs.pop(site.name, None)
        if not self.ranges:
            return
        site.lsb = min(site.lsb, finest_level(neuron))
        if x is None or x.shape != out.shape or not math.isfinite(site.lsb):
            return
        a, b = x.detach().abs(), out.detach().abs()
        value = a + b if neuron.graded else torch.maximum(a, b)
        bits = self.widths["states"].get(site.name)
        self._note(("site", site.name), value, bits, bits and top(bits) * site.lsb)

    def _layer(self, name: str, kind: str) -> LayerCost:
        key = (name, kind)
        if key not in self._layers:
            self._layers[key] = LayerCost(name, kind)
        return self._layers[key]

    def _on_layer(self, path: str, layer: nn.Module, args: tuple, out: torch.Tensor) -> None:
        x = args[0]
        cost = self._layer(path, "linear" if isinstance(layer, nn.Linear) else "conv")
        macs = layer_macs(layer, x, out)
        cost.calls += 1
        cost.ann_macs += macs
        _sizes(cost, x.numel(), out)
        cost.weights = layer.weight.numel()
        if cost.calls == 1:
            cost.weight_bits = layer_weight_bits(layer)
        spikes = self._spikes_of(x)
        if spikes is None:
            cost.snn_macs += macs
            return
        count, events, site, graded, value_bits = spikes
        cost.spike_calls += 1
        if graded:
            cost.kept_outputs += out.numel()
        lsb = self._sites[site].lsb
        if self.ranges and cost.weight_bits < 32 and math.isfinite(lsb):
            bits = self.widths["accumulators"].get(path)
            self._note(("layer", path), accumulator_lsbs(layer, out, lsb), bits, bits and top(bits))
        key = (path, cost.kind)
        acs = layer_acs(layer, count)
        self._layer_acs[key] = self._layer_acs.get(key, 0.0) + acs
        if events is not None:  # a graded event's value: one MAC per output it reaches
            macs = layer_acs(layer, events)
            self._layer_event_macs[key] = self._layer_event_macs.get(key, 0.0) + macs
            acs = acs + macs
            cost.event_bits = max(cost.event_bits, value_bits)
        arrivals = count.sum(dtype=torch.float64) + (0.0 if events is None else events.sum(dtype=torch.float64))
        self._layer_events[key] = self._layer_events.get(key, 0.0) + arrivals
        self._site_acs[site] = self._site_acs.get(site, 0.0) + acs

    def _pass_through(self, module: nn.Module, args: tuple, out: Any) -> None:
        spikes = self._spikes_of(args[0]) if args else None
        if spikes is not None and isinstance(out, torch.Tensor) and out is not args[0]:
            self._tag(out, *spikes)

    def _on_matmul(self, macs: int, operands: int, out: torch.Tensor) -> None:
        cost = self._layer(self._stack[-1] if self._stack[-1] else "<model>", "matmul")
        cost.calls += 1
        cost.ann_macs += macs
        cost.snn_macs += macs
        _sizes(cost, operands, out)

    def report(self) -> CostReport:
        """The totals so far (a copy; the meter goes on counting while open)."""
        sites = [replace(s, spikes=float(self._site_spikes[s.name]), acs=float(self._site_acs.get(s.name, 0.0)),
                         state_range=float(self._ranges.get(("site", s.name), 0.0)) / s.lsb
                         if math.isfinite(s.lsb) else 0.0,
                         overflows=int(self._overflows.get(("site", s.name), 0))) for s in self._sites.values()]
        layers = [replace(lay, snn_acs=float(self._layer_acs.get(key, 0.0)),
                          event_macs=float(self._layer_event_macs.get(key, 0.0)),
                          spike_events=float(self._layer_events.get(key, 0.0)),
                          accumulator_range=float(self._ranges.get(("layer", key[0]), 0.0)) if key[1] != "matmul" else 0.0,
                          overflows=int(self._overflows.get(("layer", key[0]), 0)) if key[1] != "matmul" else 0)
                  for key, lay in self._layers.items()]
        return CostReport(self._samples, self._forwards, sites, layers, self.recorded)


def _sizes(cost: LayerCost, inputs: int, out: torch.Tensor) -> None:
    """Add one call's input and output elements to ``cost`` and keep the largest per-sample sizes
    (a sample: one entry of the output's first dim)."""
    batch = out.shape[0] if out.ndim > 1 else 1
    cost.inputs += inputs
    cost.outputs += out.numel()
    cost.input_size = max(cost.input_size, inputs // batch)
    cost.output_size = max(cost.output_size, out.numel() // batch)


def measure_cost(model: Union[nn.Module, "DiffusionPipeline"]) -> CostMeter:
    """A context manager counting spikes and operations of ``model``'s forward passes, or
    of a pipeline's UNet passes and its other model components; for a model with integer
    synapses (its record's ``weight_bits``) also the ranges of accumulators and state,
    checked against the widths its record holds (``fs_config.widths``,
    :mod:`spiking_ddim.widths`)::

        with measure_cost(fs_pipe) as meter:
            images = generate(fs_pipe, range(16), SamplingOptions(steps=20))
        print(meter.report().energy(16).summary())
    """
    if isinstance(model, nn.Module):
        return CostMeter(model, **_width_settings(model))
    from ..components import denoiser

    unet = denoiser(model)
    return CostMeter(unet, {n: m for n, m in model.components.items() if isinstance(m, nn.Module) and m is not unet},
                     **_width_settings(unet))


def _width_settings(model: nn.Module) -> dict:
    """The recorded widths to check, and whether to measure ranges (integer synapses)."""
    record = getattr(model, "fs_config", None)
    return {"widths": getattr(record, "widths", None), "ranges": bool(getattr(record, "weight_bits", None))}
