"""Cost and energy reports: what a :class:`~spiking_ddim.energy.meter.CostMeter` counted,
per site and per layer (:class:`CostReport`), priced per image (:class:`EnergyReport`) with
:class:`EnergyConstants` (picojoules per MAC and per AC) and the memory-aware estimate
(:mod:`spiking_ddim.memory`). Plain data and arithmetic: no torch."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Iterable, Optional

from ..memory import INT8_MAC_PJ, memory_energy
from .matched import Widths, ann_family, matched_energy

HOROWITZ_45NM = "45 nm, 32-bit float (Horowitz, ISSCC 2014)"


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
    lsb: float = math.inf  # the finest level its neurons send (smallest nonzero |d|): the unit of its state
    state_range: float = 0.0  # largest |membrane start or kept value| over the run, in lsb units
    overflows: int = 0  # state values beyond the site's recorded width (spiking_ddim.widths), over all calls

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
                        max(self.size, other.size), self.graded + other.graded,
                        min(self.lsb, other.lsb),
                        max(self.state_range, other.state_range), self.overflows + other.overflows)


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
    weight_bits: int = 32  # 32: float32 weights (and a matmul's); else the integer width (spiking_ddim.synapses)
    kept_outputs: int = 0  # outputs of calls fed by a delta encoder's change (kept across denoising steps)
    accumulator_range: float = 0.0  # spike-fed integer-weight layer: largest |output - bias| over the run, in
    # units of one accumulate of its channel's weight step by its site's finest level (spiking_ddim.widths)
    overflows: int = 0  # accumulator values beyond the layer's recorded width, over all calls
    event_macs: float = 0.0  # MACs of graded events (a value each, one MAC per output it reaches)
    event_bits: int = 0  # bits of those events' values

    def __add__(self, other: "LayerCost") -> "LayerCost":
        return LayerCost(self.name, self.kind, self.calls + other.calls, self.spike_calls + other.spike_calls,
                         self.ann_macs + other.ann_macs, self.snn_macs + other.snn_macs, self.snn_acs + other.snn_acs,
                         self.inputs + other.inputs, self.outputs + other.outputs,
                         self.spike_events + other.spike_events, max(self.weights, other.weights),
                         max(self.input_size, other.input_size), max(self.output_size, other.output_size),
                         min(self.weight_bits, other.weight_bits), self.kept_outputs + other.kept_outputs,
                         max(self.accumulator_range, other.accumulator_range), self.overflows + other.overflows,
                         self.event_macs + other.event_macs, max(self.event_bits, other.event_bits))


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
    widths: Optional[dict] = None  # the widths the model recorded and the meter checked (spiking_ddim.widths)

    def __add__(self, other: "CostReport") -> "CostReport":
        """Runs of the same model (e.g. one per process) added up."""
        return CostReport(self.samples + other.samples, self.forwards + other.forwards,
                          _merge(self.sites, other.sites, lambda s: s.name),
                          _merge(self.layers, other.layers, lambda lay: (lay.name, lay.kind)), self.widths or other.widths)

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

    def energy(self, num_images: int, constants: EnergyConstants = EnergyConstants(),
               widths: Optional[Widths] = None) -> "EnergyReport":
        """Per-image figures of a run that produced ``num_images`` images; ``widths``: those
        the matched-precision estimates price at (:mod:`spiking_ddim.energy.matched`; default:
        the recorded ones, 32 bits where none)."""
        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if self.samples == 0:
            raise ValueError("the meter saw no forward pass of the model; run it inside measure_cost(model)")
        return EnergyReport.of(self, num_images, constants, widths or Widths.recorded(self.widths))


@dataclass
class EnergyReport:
    """Operations and energy per generated image (a run of ``forwards_per_image`` passes),
    ANN (the same network with its original activations) against SNN."""

    num_images: int
    forwards_per_image: float
    ann_macs_per_image: float
    snn_macs_per_image: float  # dense MACs and graded events' MACs
    snn_event_macs_per_image: float  # of which graded events' (one per output an event's value reaches)
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
    matched: dict  # estimate -> both networks at matched weight widths (spiking_ddim.energy.matched)
    ann_family: dict  # the ANN at fp32, W8A8, W4A8, W8A16, W8A32 -> estimate -> J per image
    widths: Optional[dict]  # the recorded accumulator / state widths the run was checked against (None: none)
    overflows: dict  # accumulators / states -> values beyond their recorded widths, over the run
    constants: dict
    neurobench: dict
    by_kind: dict  # conv / linear / matmul -> ann_macs, snn_macs, snn_acs per image
    sites: list[dict]
    layers: list[dict]

    @classmethod
    def of(cls, report: CostReport, num_images: int, c: EnergyConstants, widths: Widths = Widths()) -> "EnergyReport":
        n = num_images
        joules = lambda macs, acs: (macs * c.mac_pj + acs * c.ac_pj) * 1e-12  # noqa: E731
        ann = sum(lay.ann_macs for lay in report.layers)
        macs = sum(lay.snn_macs + lay.event_macs for lay in report.layers)
        acs = sum(lay.snn_acs for lay in report.layers)
        updates = sum(s.neuron_updates for s in report.sites)
        steps = report.samples / n
        sparsity = 1 - report.spikes / updates if updates else 1.0
        ann_j, snn_j = joules(ann, 0) / n, joules(macs, acs) / n
        sites = [{"name": s.name, "part": network_part(s.name), "K": s.K, "neurons": s.neurons / report.samples,
                  "firing_rate": s.firing_rate, "spikes_per_image": s.spikes / n,
                  "acs_per_image": s.acs / n, "acs_per_spike": s.acs_per_spike,
                  "neuron_updates_per_image": s.neuron_updates / n, "state_range_lsbs": s.state_range,
                  "overflows": s.overflows} for s in report.sites]
        layers = [{"name": lay.name, "kind": lay.kind,
                   "input": "spikes" if lay.spike_calls == lay.calls else ("analog" if lay.spike_calls == 0 else "mixed"),
                   "ann_macs_per_image": lay.ann_macs / n, "snn_macs_per_image": (lay.snn_macs + lay.event_macs) / n,
                   "snn_acs_per_image": lay.snn_acs / n, "ann_joules_per_image": joules(lay.ann_macs, 0) / n,
                   "snn_joules_per_image": joules(lay.snn_macs + lay.event_macs, lay.snn_acs) / n,
                   "weight_bits": lay.weight_bits,
                   "accumulator_range_lsbs": lay.accumulator_range, "overflows": lay.overflows} for lay in report.layers]
        by_kind = {kind: {key: sum(row[f"{key}_per_image"] for row in layers if row["kind"] == kind)
                          for key in ("ann_macs", "snn_macs", "snn_acs")}
                   for kind in dict.fromkeys(row["kind"] for row in layers)}
        return cls(
            num_images=n, forwards_per_image=steps,
            ann_macs_per_image=ann / n, snn_macs_per_image=macs / n, snn_acs_per_image=acs / n,
            snn_event_macs_per_image=sum(lay.event_macs for lay in report.layers) / n,
            neuron_updates_per_image=updates / n, spikes_per_image=report.spikes / n,
            spikes_per_neuron=report.firing_rate, activation_sparsity=sparsity,
            ann_joules_per_image=ann_j, snn_joules_per_image=snn_j, ratio=snn_j / ann_j if ann_j else math.nan,
            ann_joules_per_step=ann_j / steps, snn_joules_per_step=snn_j / steps,
            ann_int8_joules_per_image=ann * c.int8_mac_pj * 1e-12 / n,
            ratio_int8=snn_j / (ann * c.int8_mac_pj * 1e-12 / n) if ann and c.int8_mac_pj else math.nan,
            memory=memory_energy(report.layers, report.sites, n).to_json(),
            matched={name: asdict(m) for name, m in
                     matched_energy(report.layers, report.sites, n, report.firing_rate, widths).items()},
            ann_family=ann_family(report.layers, report.sites, n), widths=report.widths,
            overflows={"accumulators": sum(lay.overflows for lay in report.layers),
                       "states": sum(s.overflows for s in report.sites)},
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
                f"ANN {m['ratio_int8']:.3f} (SNN {m['snn_joules_per_image']:.3e} J/image)\n"
                f"               at matched precision (SNN {self.matched['ops']['snn_precision']} against the "
                f"{self.matched['ops']['ann_precision']} ANN): "
                + ", ".join(f"{name} ratio {e['ratio']:.3f}" for name, e in self.matched.items())
                + ("" if self.widths is None else
                   f"\n               recorded widths checked: {self.overflows['accumulators']} accumulator and "
                   f"{self.overflows['states']} state values beyond them"))


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
