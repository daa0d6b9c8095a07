"""Spike, operation and energy accounting of a spiking (FS) model over real runs.

``with measure_cost(model) as meter: <run the model>`` counts every forward pass of
``model``; ``meter.report()`` gives a :class:`CostReport` and ``report.energy(num_images)``
an :class:`EnergyReport` per image. ``measure_cost(pipeline)`` counts a diffusers
pipeline's UNet (whose passes are the samples) and every other model component that runs
(decoder, text encoder), named ``<component>.<path>``. What is counted:

* FS sites (every :class:`~fs_neurons.FSNeuron`; inside an ``FSActivation`` each call site
  is one, named ``<path>[i]``): calls, neurons (input elements, summed over calls) and
  spikes; firing rate = spikes per neuron per call; neuron updates = K per neuron per
  call (the K compare-and-subtract steps), reported on their own, not priced as energy.
  A delta-coded site (:mod:`spiking_ddim.delta`) is one site too: its first call counts
  the spikes of its FS neuron's full code, every later call those of its encoder's code of
  the change (``<path>.encoders.<i>`` is named ``<path>[i]`` as well), and K + 1 updates
  per neuron (the graded activation, then the K steps of the change's code).
* Layers (``nn.Conv1d/2d/3d``, ``nn.ConvTranspose1d/2d/3d``, ``nn.Linear``) and the
  attention matmuls (``F.scaled_dot_product_attention``, ``torch.bmm``, ``baddbmm``,
  ``matmul``, ``@``), attributed to the module that calls them:
  ``ann_macs`` = multiply-accumulates with analog input, from shapes: output elements x
  (in channels / groups) x kernel taps for a conv, taps on zero padding included as dense
  hardware computes them (and as the usual counters count them); output elements x in
  features for a linear; n*m*p per (n, m) @ (m, p) product.
  In the SNN, a call whose input is an FS site's output (that very tensor, or passed on
  by ``nn.Dropout`` / ``nn.Identity``) costs accumulates instead: every spike adds its
  weight once into every output it reaches, so ACs = the layer applied to the spike-count
  map with every weight 1 and no bias, summed. Padding never spikes; stride, dilation
  and groups follow from the definition. Computed exactly as (out channels / groups) x
  sum over (channel, position) of count x fan-out(position), fan-out being the number of
  (output position, kernel tap) pairs that read that position. Every other call, and
  every matmul, costs its ``ann_macs`` as dense MACs (``snn_macs``).
* Not counted: biases, normalisation, softmax, elementwise and residual additions,
  interpolation, the scheduler's arithmetic, einsum, and ``F.conv*`` / ``F.linear``
  called outside a module.

Energy: MACs x E_MAC + ACs x E_AC, by default the 45 nm figures of Horowitz (ISSCC 2014)
that spiking papers use, E_MAC = 4.6 pJ and E_AC = 0.9 pJ (:class:`EnergyConstants`).
NeuroBench's names: Dense = ``ann_macs``, Eff_MACs = ``snn_macs``, Eff_ACs = ``snn_acs``
(per sample, i.e. per image per forward pass); activation sparsity = the share of the K
binary steps of all FS sites without a spike.

Beside it, two figures a sceptic asks for: the ratio to the same network with 8-bit
integer MACs (``ratio_int8``, E_MAC = 0.23 pJ), and a memory-aware estimate in which
weight, activation and neuron-state accesses cost by buffer size (``memory``, see
:mod:`spiking_ddim.memory`).
"""

from __future__ import annotations

import functools
import math
import re
import weakref
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.overrides import TorchFunctionMode

from fs_neurons import FSNeuron
from fs_neurons.delta import DeltaFSNeuron

from .memory import INT8_MAC_PJ, memory_energy

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

HOROWITZ_45NM = "45 nm, 32-bit float (Horowitz, ISSCC 2014)"
LAYER_TYPES = (nn.modules.conv._ConvNd, nn.Linear)
PASS_THROUGH = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Identity)


@dataclass(frozen=True)
class EnergyConstants:
    """Energy of one operation in picojoules (default: 45 nm, 32-bit float)."""

    mac_pj: float = 4.6
    ac_pj: float = 0.9
    int8_mac_pj: float = INT8_MAC_PJ  # the INT8 ANN's MAC
    source: str = HOROWITZ_45NM

    def __post_init__(self) -> None:
        for name in ("mac_pj", "ac_pj", "int8_mac_pj"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"energy constant {name.removesuffix('_pj')} must be a finite number of "
                                 f"picojoules >= 0, got {value!r}")

    @property
    def break_even(self) -> float:
        """Spikes per neuron per call at which a spike-fed layer's ACs cost as much as its
        MACs: E_MAC / E_AC (padding aside; infinite when an AC costs nothing)."""
        return self.mac_pj / self.ac_pj if self.ac_pj else math.inf

    @classmethod
    def parse(cls, items: Iterable[str]) -> "EnergyConstants":
        """Defaults overridden by ``NAME=PJ`` strings, e.g. ``["mac=3.1", "ac=0.1"]``."""
        names = {f.name.removesuffix("_pj"): f.name for f in fields(cls) if f.name.endswith("_pj")}
        values: dict[str, Any] = {}
        for item in items:
            name, sep, text = item.partition("=")
            if not sep or name.strip() not in names:
                raise ValueError(f"unknown energy constant {item!r}; give NAME=PICOJOULES with NAME one of "
                                 f"{', '.join(names)}")
            try:
                values[names[name.strip()]] = float(text)
            except ValueError:
                raise ValueError(f"energy constant {name.strip()} must be a number of picojoules, got {text!r}") from None
        if values:
            values["source"] = "user-given"
        return cls(**values)


@dataclass
class SiteCost:
    """One FS site over a run: ``neurons`` counts input elements over all calls."""

    name: str
    K: int
    calls: int = 0
    neurons: int = 0
    spikes: float = 0.0
    acs: float = 0.0  # accumulates its spikes cost in the layers they feed
    updates: int = 0  # neuron updates: K per neuron per call (K + 1 for a delta encoder's call)
    size: int = 0  # neurons per sample (one image), the largest call's: the site's state buffer
    graded: int = 0  # neurons of calls that computed the activation exactly (delta encoders), over all calls

    @property
    def firing_rate(self) -> float:
        """Spikes per neuron per call (0..K)."""
        return self.spikes / self.neurons if self.neurons else 0.0

    @property
    def acs_per_spike(self) -> float:
        """Accumulates one spike of this site costs downstream (its mean fan-out)."""
        return self.acs / self.spikes if self.spikes else 0.0

    @property
    def neuron_updates(self) -> int:
        return self.updates

    def __add__(self, other: "SiteCost") -> "SiteCost":
        return SiteCost(self.name, self.K, self.calls + other.calls, self.neurons + other.neurons,
                        self.spikes + other.spikes, self.acs + other.acs, self.updates + other.updates,
                        max(self.size, other.size), self.graded + other.graded)


@dataclass
class LayerCost:
    """One layer (``conv``, ``linear``) or one module's attention matmuls (``matmul``) over a run."""

    name: str
    kind: str
    calls: int = 0
    spike_calls: int = 0  # calls whose input was an FS site's output
    ann_macs: int = 0
    snn_macs: int = 0
    snn_acs: float = 0.0
    # for the memory-aware estimate (spiking_ddim.memory): elements over all calls, and buffer sizes
    inputs: int = 0  # input elements read (a matmul: both operands)
    outputs: int = 0  # output elements written
    spike_events: float = 0.0  # spikes arriving at the layer in spike-fed calls
    weights: int = 0  # the layer's weight elements (a matmul: 0, both operands count as inputs)
    input_size: int = 0  # input elements per sample, the largest call's
    output_size: int = 0  # output elements per sample, the largest call's

    def __add__(self, other: "LayerCost") -> "LayerCost":
        return LayerCost(self.name, self.kind, self.calls + other.calls, self.spike_calls + other.spike_calls,
                         self.ann_macs + other.ann_macs, self.snn_macs + other.snn_macs, self.snn_acs + other.snn_acs,
                         self.inputs + other.inputs, self.outputs + other.outputs,
                         self.spike_events + other.spike_events, max(self.weights, other.weights),
                         max(self.input_size, other.input_size), max(self.output_size, other.output_size))


def _merge(a: list, b: list, key: Callable) -> list:
    """Items of ``a`` and ``b`` in first-seen order, those with equal keys added."""
    out = {key(x): x for x in a}
    for x in b:
        out[key(x)] = out[key(x)] + x if key(x) in out else x
    return list(out.values())


@dataclass
class CostReport:
    """Totals of a run: ``samples`` = images x forward passes (sum of batch sizes)."""

    samples: int = 0
    forwards: int = 0
    sites: list[SiteCost] = field(default_factory=list)  # in the order first called
    layers: list[LayerCost] = field(default_factory=list)

    def __add__(self, other: "CostReport") -> "CostReport":
        """Runs of the same model (e.g. one per process) added up."""
        return CostReport(self.samples + other.samples, self.forwards + other.forwards,
                          _merge(self.sites, other.sites, lambda s: s.name),
                          _merge(self.layers, other.layers, lambda lay: (lay.name, lay.kind)))

    @property
    def spikes(self) -> float:
        return sum(s.spikes for s in self.sites)

    @property
    def neurons(self) -> int:
        return sum(s.neurons for s in self.sites)

    @property
    def firing_rate(self) -> float:
        """Mean spikes per neuron per call over all sites."""
        return self.spikes / self.neurons if self.neurons else 0.0

    def energy(self, num_images: int, constants: EnergyConstants = EnergyConstants()) -> "EnergyReport":
        """Per-image figures of a run that produced ``num_images`` images."""
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if self.samples == 0:
            raise ValueError("the meter saw no forward pass of the model; run it inside measure_cost(model)")
        return EnergyReport.of(self, num_images, constants)


@dataclass
class EnergyReport:
    """Operations and energy per generated image (a run of ``forwards_per_image`` passes),
    ANN (the same network with its original activations) against SNN."""

    num_images: int
    forwards_per_image: float
    ann_macs_per_image: float
    snn_macs_per_image: float
    snn_acs_per_image: float
    neuron_updates_per_image: float
    spikes_per_image: float
    spikes_per_neuron: float
    activation_sparsity: float
    ann_joules_per_image: float
    snn_joules_per_image: float
    ratio: float
    ann_joules_per_step: float
    snn_joules_per_step: float
    ann_int8_joules_per_image: float  # the same network with 8-bit integer MACs
    ratio_int8: float  # SNN / INT8 ANN
    memory: dict  # the memory-aware estimate (spiking_ddim.memory.MemoryEnergy), per image
    constants: dict
    neurobench: dict
    by_kind: dict  # conv / linear / matmul -> ann_macs, snn_macs, snn_acs per image
    sites: list[dict]
    layers: list[dict]

    @classmethod
    def of(cls, report: CostReport, num_images: int, c: EnergyConstants) -> "EnergyReport":
        n = num_images
        joules = lambda macs, acs: (macs * c.mac_pj + acs * c.ac_pj) * 1e-12  # noqa: E731
        ann = sum(lay.ann_macs for lay in report.layers)
        macs = sum(lay.snn_macs for lay in report.layers)
        acs = sum(lay.snn_acs for lay in report.layers)
        updates = sum(s.neuron_updates for s in report.sites)
        steps = report.samples / n
        sparsity = 1 - report.spikes / updates if updates else 1.0
        ann_j, snn_j = joules(ann, 0) / n, joules(macs, acs) / n
        sites = [{"name": s.name, "part": network_part(s.name), "K": s.K, "neurons": s.neurons / report.samples,
                  "firing_rate": s.firing_rate, "spikes_per_image": s.spikes / n,
                  "acs_per_image": s.acs / n, "acs_per_spike": s.acs_per_spike,
                  "neuron_updates_per_image": s.neuron_updates / n} for s in report.sites]
        layers = [{"name": lay.name, "kind": lay.kind,
                   "input": "spikes" if lay.spike_calls == lay.calls else ("analog" if lay.spike_calls == 0 else "mixed"),
                   "ann_macs_per_image": lay.ann_macs / n, "snn_macs_per_image": lay.snn_macs / n,
                   "snn_acs_per_image": lay.snn_acs / n, "ann_joules_per_image": joules(lay.ann_macs, 0) / n,
                   "snn_joules_per_image": joules(lay.snn_macs, lay.snn_acs) / n} for lay in report.layers]
        by_kind = {kind: {key: sum(row[f"{key}_per_image"] for row in layers if row["kind"] == kind)
                          for key in ("ann_macs", "snn_macs", "snn_acs")}
                   for kind in dict.fromkeys(row["kind"] for row in layers)}
        return cls(
            num_images=n, forwards_per_image=steps,
            ann_macs_per_image=ann / n, snn_macs_per_image=macs / n, snn_acs_per_image=acs / n,
            neuron_updates_per_image=updates / n, spikes_per_image=report.spikes / n,
            spikes_per_neuron=report.firing_rate, activation_sparsity=sparsity,
            ann_joules_per_image=ann_j, snn_joules_per_image=snn_j, ratio=snn_j / ann_j if ann_j else math.nan,
            ann_joules_per_step=ann_j / steps, snn_joules_per_step=snn_j / steps,
            ann_int8_joules_per_image=ann * c.int8_mac_pj * 1e-12 / n,
            ratio_int8=snn_j / (ann * c.int8_mac_pj * 1e-12 / n) if ann and c.int8_mac_pj else math.nan,
            memory=memory_energy(report.layers, report.sites, n).to_json(),
            constants={"mac_pj": c.mac_pj, "ac_pj": c.ac_pj, "int8_mac_pj": c.int8_mac_pj, "source": c.source},
            neurobench={"Dense": ann / report.samples, "Eff_MACs": macs / report.samples,
                        "Eff_ACs": acs / report.samples, "ActivationSparsity": sparsity,
                        "per": "sample (one image through one forward pass)"},
            by_kind=by_kind, sites=sites, layers=layers,
        )

    @property
    def firing_rates(self) -> dict[str, float]:
        """Site name -> spikes per neuron per call, in network order."""
        return {s["name"]: s["firing_rate"] for s in self.sites}

    def to_json(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """J per image of both networks, their ratio, ACs and MACs per image; the ratios to the
        INT8 ANN and under the memory-aware estimate."""
        m = self.memory
        return (f"ANN {self.ann_joules_per_image:.3e} J/image ({self.ann_joules_per_step:.3e} J/step), SNN "
                f"{self.snn_joules_per_image:.3e} J/image ({self.snn_joules_per_step:.3e} J/step), "
                f"ratio {self.ratio:.3f}; SNN {self.snn_acs_per_image:.3e} ACs + {self.snn_macs_per_image:.3e} "
                f"MACs per image (ANN {self.ann_macs_per_image:.3e} MACs; {self.constants['mac_pj']} pJ/MAC, "
                f"{self.constants['ac_pj']} pJ/AC)\n"
                f"               against an INT8 ANN ({self.constants['int8_mac_pj']} pJ/MAC): ratio "
                f"{self.ratio_int8:.3f}; memory-aware (Lemaire et al.): ratio {m['ratio']:.3f}, against an INT8 "
                f"ANN {m['ratio_int8']:.3f} (SNN {m['snn_joules_per_image']:.3e} J/image)")


def network_part(name: str) -> str:
    """Where a site or layer sits in a diffusers UNet: ``time`` (time / class embedding),
    ``in``, ``down``, ``mid``, ``up``, ``out`` or ``other``; or the pipeline component
    (``vae``, ``vqvae``, ``text_encoder``) it belongs to."""
    head = name.split(".", 1)[0].split("[", 1)[0]
    if head in ("vae", "vqvae") or head.startswith("text_encoder"):
        return head
    if head.startswith(("time_", "class_", "add_")):
        return "time"
    parts = {"conv_in": "in", "down_blocks": "down", "mid_block": "mid", "up_blocks": "up",
             "conv_norm_out": "out", "conv_act": "out", "conv_out": "out"}
    return parts.get(head, "other")


# --- operation counts of one call ------------------------------------------------------

def layer_macs(layer: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """Dense MACs of one call of a conv, transposed conv or linear layer (bias not counted)."""
    if isinstance(layer, nn.Linear):
        return out.numel() * layer.in_features
    taps = math.prod(layer.kernel_size)
    if layer.transposed:
        return x.numel() * (layer.out_channels // layer.groups) * taps
    return out.numel() * (layer.in_channels // layer.groups) * taps


def layer_acs(layer: nn.Module, spike_count: torch.Tensor) -> torch.Tensor:
    """Accumulates of a conv, transposed conv or linear layer whose input spikes
    ``spike_count`` times per element (the input's shape, or that shape without its first
    dim when summed over it): the layer with all weights 1 and no bias applied to the count
    map, summed. A float64 scalar on the count's device."""
    if isinstance(layer, nn.Linear):
        return spike_count.sum(dtype=torch.float64) * layer.out_features
    spatial = tuple(spike_count.shape[-len(layer.kernel_size):])
    per_position = spike_count.sum(dim=tuple(range(spike_count.ndim - len(spatial))), dtype=torch.float64)
    fan = _fanout(type(layer), spatial, layer.kernel_size, layer.stride, layer.padding, layer.dilation,
                  layer.padding_mode, layer.output_padding, str(spike_count.device))
    return (per_position * fan).sum() * (layer.out_channels // layer.groups)


@functools.lru_cache(maxsize=512)
def _fanout(kind: type, spatial: tuple, kernel_size, stride, padding, dilation, padding_mode, output_padding,
            device: str) -> torch.Tensor:
    """Per input position: the (output position, kernel tap) pairs of a one-channel conv
    of this geometry that read it, i.e. d(sum of outputs)/d(input) with unit weights."""
    kwargs = {"stride": stride, "padding": padding, "dilation": dilation, "bias": False, "padding_mode": padding_mode}
    if issubclass(kind, nn.modules.conv._ConvTransposeNd):
        kwargs["output_padding"] = output_padding
    probe = kind(1, 1, kernel_size, **kwargs).to(torch.float64)
    with torch.inference_mode(False), torch.enable_grad():
        nn.init.ones_(probe.weight)
        x = torch.zeros(1, 1, *spatial, dtype=torch.float64, requires_grad=True)
        probe(x).sum().backward()
    return x.grad[0, 0].to(device)


def _matmul_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    return out.numel() * args[0].shape[-1]


def _baddbmm_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    return out.numel() * args[1].shape[-1]


def _sdpa_macs(args: tuple, kwargs: dict, out: torch.Tensor) -> int:
    q = args[0] if args else kwargs["query"]
    k = args[1] if len(args) > 1 else kwargs["key"]
    rows = out.numel() // out.shape[-1]  # batch x heads x query length
    return rows * k.shape[-2] * (q.shape[-1] + out.shape[-1])  # q k^T, then (scores) v


MATMUL_MACS: dict[Callable, Callable[[tuple, dict, torch.Tensor], int]] = {
    torch.matmul: _matmul_macs, torch.Tensor.matmul: _matmul_macs, torch.bmm: _matmul_macs,
    torch.Tensor.bmm: _matmul_macs, torch.baddbmm: _baddbmm_macs, torch.Tensor.baddbmm: _baddbmm_macs,
    F.scaled_dot_product_attention: _sdpa_macs,
}


class _MatmulSpy(TorchFunctionMode):
    """Reports the MACs of every matmul-like call made while it is active."""

    def __init__(self, on_matmul: Callable[[int, int, torch.Tensor], None]):
        super().__init__()
        self.on_matmul = on_matmul

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        count = MATMUL_MACS.get(func)
        if count is not None:
            operands = sum(t.numel() for t in (*args, *kwargs.values())[:3] if isinstance(t, torch.Tensor))
            self.on_matmul(count(args, kwargs, out), operands, out)
        return out


# --- the meter ----------------------------------------------------------------------------

def site_name(path: str) -> str:
    """``a.b.neurons.2`` (neuron 2 of an FSActivation) or ``a.b.encoders.2`` (its delta
    encoder) -> ``a.b[2]``; other paths unchanged."""
    return re.sub(r"\.(?:neurons|encoders)\.(\d+)$", r"[\1]", path)


class CostMeter:
    """Counts spikes and operations of every forward pass of ``model`` while open (see
    the module docstring); ``report()`` returns the totals so far. ``others`` are further
    modules by name prefix, whose operations count but whose passes are not samples."""

    def __init__(self, model: nn.Module, others: Optional[dict[str, nn.Module]] = None):
        self.parts = [("", model, True)] + [(f"{name}.", m, False) for name, m in (others or {}).items()]
        self._sites: dict[str, SiteCost] = {}
        self._site_spikes: dict[str, torch.Tensor] = {}
        self._layers: dict[tuple[str, str], LayerCost] = {}
        self._layer_acs: dict[tuple[str, str], torch.Tensor] = {}
        self._layer_events: dict[tuple[str, str], torch.Tensor] = {}
        self._site_acs: dict[str, torch.Tensor] = {}  # ACs each site's spikes cost downstream
        self._spiking: dict[int, tuple[weakref.ref, torch.Tensor, str]] = {}  # FS outputs -> spike counts, site
        self._stack: list[str] = []
        self._spy = _MatmulSpy(self._on_matmul)
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

    def _tag(self, out: torch.Tensor, count: torch.Tensor, site: str) -> None:
        key = id(out)

        def forget(ref: weakref.ref) -> None:
            entry = self._spiking.get(key)
            if entry is not None and entry[0] is ref:
                del self._spiking[key]

        self._spiking[key] = (weakref.ref(out, forget), count, site)

    def _spikes_of(self, x: Any) -> Optional[tuple[torch.Tensor, str]]:
        """(spike-count map, site name) when ``x`` is an FS site's output, else None."""
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
        if isinstance(neuron, DeltaFSNeuron):
            site.graded += out.numel()
        self._site_spikes[name] += count.sum(dtype=torch.float64)
        self._tag(out, count, name)

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
        spikes = self._spikes_of(x)
        if spikes is None:
            cost.snn_macs += macs
            return
        count, site = spikes
        cost.spike_calls += 1
        key = (path, cost.kind)
        acs = layer_acs(layer, count)
        self._layer_acs[key] = self._layer_acs.get(key, 0.0) + acs
        self._layer_events[key] = self._layer_events.get(key, 0.0) + count.sum(dtype=torch.float64)
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
        sites = [replace(s, spikes=float(self._site_spikes[s.name]), acs=float(self._site_acs.get(s.name, 0.0)))
                 for s in self._sites.values()]
        layers = [replace(lay, snn_acs=float(self._layer_acs.get(key, 0.0)),
                          spike_events=float(self._layer_events.get(key, 0.0))) for key, lay in self._layers.items()]
        return CostReport(self._samples, self._forwards, sites, layers)


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
    of a pipeline's UNet passes and its other model components::

        with measure_cost(fs_pipe) as meter:
            images = generate(fs_pipe, range(16), SamplingOptions(steps=20))
        print(meter.report().energy(16).summary())
    """
    if isinstance(model, nn.Module):
        return CostMeter(model)
    from .components import denoiser

    unet = denoiser(model)
    return CostMeter(unet, {n: m for n, m in model.components.items() if isinstance(m, nn.Module) and m is not unet})
