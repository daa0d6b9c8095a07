"""Energy at matched precision: the ANN and the SNN priced at the same weight widths, under
three estimates, with each point's break-even.

The counts are a :class:`~spiking_ddim.energy.CostReport`'s (every layer's MACs, ACs,
spike events, outputs and weight width; every site's updates); this module prices them.
Every conv / linear layer has a weight width (``LayerCost.weight_bits``: 32 = float32,
else the integer width of :mod:`spiking_ddim.synapses`), and **both** networks are priced
at it, layer by layer: a float32 SNN against the float32 ANN, an 8-bit-synapse SNN
against the W8A8 ANN. Activations of an integer-weight layer are ``ann_activation_bits``
(8) wide in the ANN, and ``snn_analog_bits`` (16) wide where the SNN's input is analog
(the first conv, delta sites' exact activation); the simulation computes those in
float32 (a W8A16 ANN loses 0.16 dB against float32, ``eval/results/quantized_ann.md``).
Attention matmuls have no weights and stay float32 in both networks, as in the W8A8 ANN
that :mod:`spiking_ddim.quantization` runs.
Accumulators and neuron state are ``accumulator_bits`` / ``state_bits`` wide (32), or per
layer / site as given (:mod:`spiking_ddim.widths` measures the narrowest that hold them).

Operations (45 nm, Horowitz, ISSCC 2014): float32 MAC 4.6 pJ, add 0.9 pJ; integer add
8 / 16 / 32 bits 0.03 / 0.05 / 0.1 pJ, multiply 8 x 8 bits 0.2 pJ, scaled by the product
of the operand widths for others (an array multiplier's size; his 32 x 32 figure is
3.1 pJ, the table's entry for it). A MAC = a multiply + an add at the accumulator's
width; an AC (one spike reaching one output) = an add; a graded event (a b-bit value,
:mod:`fs_neurons.graded`) reaching one output = a multiply of the weight by its value + an
add, with the same weight read and accumulator traffic as an AC.

Estimates (:data:`ESTIMATES`):

* ``ops``: the layers' operations only, float32 figures for float32 layers (the field's
  count: MACs x 4.6 + ACs x 0.9 when nothing is quantised; activations, neuron updates and
  delta sites' exact activations are not priced, on either side).
* ``lemaire``: memory-aware after Lemaire et al. (ICONIP 2022), as
  :mod:`spiking_ddim.memory` (32-bit integer operations for float32 layers, SRAM by buffer
  size; the ANN's activation one MAC per element; a neuron update an add and a state
  read and write; a delta site's exact activation a MAC and a kept-value read and write), an access
  of b bits costing b / 32 of a 32-bit word's and buffers sized at their elements' widths:
  a dense MAC reads one weight and one input, each output is written once; every AC
  reads one weight and reads and writes its output's accumulator in SRAM (a
  read-modify-write per accumulate); each spike event is read from an input FIFO.
* ``output-stationary``: the same, except that an output's partial sum stays in a PE
  register for the whole of one call (the output-stationary dataflow of Chen, Emer and
  Sze, ISCA 2016, "Eyeriss", Sect. III; register access is folded into the add): a
  spike-fed call writes each output's accumulator once, and reads it once first where
  the output is kept across denoising steps (a delta-coded input). Dense layers are
  priced as under ``lemaire``, which already writes each output once. Weights and inputs
  are read once per use in both networks (no tile reuse is modelled on either side).

Break-even: the SNN's energy splits into a part proportional to its spike events (ACs,
their weight reads and accumulator traffic, FIFO reads) and the rest; the break-even is
the spikes per neuron per call at which the SNN would cost what the ANN costs, the point's
own spike rate scaled by (ANN - rest) / (event part); ``None`` where the rest alone costs
more than the ANN. Not counted: what :mod:`spiking_ddim.memory` leaves out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Mapping, Optional, Sequence

from ..memory import MemoryConstants

ESTIMATES = ("ops", "lemaire", "output-stationary")
FLOAT_BITS = 32
INT_ADD_PJ = {8: 0.03, 16: 0.05, 32: 0.1}  # Horowitz, ISSCC 2014, 45 nm
INT8_MUL_PJ = 0.2
INT32_MUL_PJ = 3.1
FLOAT32_MAC_PJ, FLOAT32_ADD_PJ = 4.6, 0.9


def int_add_pj(bits: int) -> float:
    """An integer add of ``bits`` (rounded up to 8, 16 or 32)."""
    return INT_ADD_PJ[next(b for b in (8, 16, 32) if bits <= b)]


def int_mul_pj(a_bits: int, b_bits: int) -> float:
    """An integer multiply of ``a_bits`` x ``b_bits``: 0.2 pJ x (a * b) / 64, 3.1 pJ at 32 x 32."""
    return INT32_MUL_PJ if a_bits >= 32 and b_bits >= 32 else INT8_MUL_PJ * a_bits * b_bits / 64


@dataclass(frozen=True)
class Widths:
    """Bit widths the networks are priced at, beside each layer's weight width."""

    ann_activation_bits: int = 8
    snn_analog_bits: int = 16
    accumulator_bits: int = 32
    state_bits: int = 32
    accumulators: Mapping[str, int] = field(default_factory=dict)  # layer name -> bits
    states: Mapping[str, int] = field(default_factory=dict)  # site name -> bits

    @classmethod
    def recorded(cls, widths: Optional[Mapping]) -> "Widths":
        """The widths a model records (``FSConfig.widths``: accumulators and states by name), or the defaults."""
        if not widths:
            return cls()
        return cls(accumulators=dict(widths["accumulators"]), states=dict(widths["states"]))

    def accumulator(self, layer: str) -> int:
        return self.accumulators.get(layer, self.accumulator_bits)

    def state(self, site: str) -> int:
        return self.states.get(site, self.state_bits)


@dataclass
class _Prices:
    """Per-operation and per-access prices of one estimate."""

    estimate: str
    c: MemoryConstants

    @property
    def memory(self) -> bool:
        return self.estimate != "ops"

    def mac(self, weight_bits: int, input_bits: int, acc_bits: int) -> float:
        if weight_bits >= FLOAT_BITS:
            return FLOAT32_MAC_PJ if not self.memory else self.c.mac_pj
        return int_mul_pj(weight_bits, input_bits) + int_add_pj(acc_bits)

    def add(self, bits: int, floating: bool) -> float:
        if floating:
            return FLOAT32_ADD_PJ if not self.memory else self.c.add_pj
        return int_add_pj(bits)

    def access(self, elements: float, bits: int) -> float:
        """One access of ``bits`` to a buffer of ``elements`` such values (0 in ``ops``)."""
        return self.c.word_pj(elements * bits / 8) * bits / 32 if self.memory else 0.0


@dataclass
class MatchedEnergy:
    """One estimate: joules per image of both networks at matched weight widths, the SNN's
    breakdown, its event-proportional part and its break-even (spikes per neuron per call)."""

    estimate: str
    ann_precision: str
    snn_precision: str
    ann_joules_per_image: float
    snn_joules_per_image: float
    ratio: float
    snn_breakdown: dict
    snn_event_joules_per_image: float
    break_even: Optional[float]


def _split(lay) -> tuple[float, float, float]:
    """(dense share of a layer's calls, dense weight reads, dense input reads) per the
    memory-aware model: a matmul reads two operands per MAC, a linear layer its input once."""
    share = lay.snn_macs / lay.ann_macs if lay.ann_macs else 0.0
    if lay.kind == "matmul":
        return share, 0.0, 2.0 * lay.ann_macs
    return share, float(lay.ann_macs), float(lay.ann_macs if lay.kind == "conv" else lay.inputs)


def _dense(p: _Prices, lay, share: float, act_bits: int, acc_bits: int, t: dict) -> None:
    """Add ``share`` of a layer's calls, computed densely, to table ``t``."""
    _, w_reads, in_reads = _split(lay)
    t["ops"] += share * lay.ann_macs * p.mac(lay.weight_bits, act_bits, acc_bits)
    t["weights"] += share * w_reads * p.access(lay.weights, lay.weight_bits)
    t["activations"] += share * (in_reads * p.access(lay.input_size, act_bits)
                                 + lay.outputs * p.access(lay.output_size, act_bits))


def _act_bits(weight_bits: int, integer_bits: int) -> int:
    """Activation width of a layer: float32 beside float32 weights, else ``integer_bits``."""
    return FLOAT_BITS if weight_bits >= FLOAT_BITS else integer_bits


def _is_float(layers: Sequence) -> bool:
    """Whether every layer has float32 weights (then activations are priced as float32 too)."""
    return all(lay.weight_bits >= FLOAT_BITS for lay in layers)


def _table() -> dict:
    return {"ops": 0.0, "weights": 0.0, "activations": 0.0, "state": 0.0}


def _price_ann(p: _Prices, layers: Sequence, sites: Sequence, w: Widths) -> dict:
    """The ANN: every layer dense; each activation (a site's element) one MAC (memory-aware estimates)."""
    t = _table()
    for lay in layers:
        _dense(p, lay, 1.0, _act_bits(lay.weight_bits, w.ann_activation_bits), w.accumulator_bits, t)
    if p.memory:
        act = FLOAT_BITS if _is_float(layers) else w.ann_activation_bits
        t["ops"] += sum(s.neurons for s in sites) * p.mac(act, act, w.accumulator_bits)
    return t


def _price_snn(p: _Prices, layers: Sequence, sites: Sequence, w: Widths) -> tuple[dict, float]:
    """The SNN's table and its event-proportional part (pJ over the run)."""
    t, events = _table(), 0.0
    output_stationary = p.estimate == "output-stationary"
    for lay in layers:
        acc = w.accumulator(lay.name)
        share = _split(lay)[0]
        _dense(p, lay, share, _act_bits(lay.weight_bits, w.snn_analog_bits), acc, t)
        fed = lay.snn_acs + lay.event_macs  # each reads a weight and updates an accumulator
        ops = (lay.snn_acs * p.add(acc, lay.weight_bits >= FLOAT_BITS)
               + lay.event_macs * p.mac(lay.weight_bits, lay.event_bits or FLOAT_BITS, acc))
        weights = fed * p.access(lay.weights, lay.weight_bits)
        fifo = lay.spike_events * p.access(p.c.fifo_words, FLOAT_BITS)
        if output_stationary:  # once per output and call, (read where kept and) written
            accumulators = ((1 - share) * lay.outputs + lay.kept_outputs) * p.access(lay.output_size, acc)
        else:  # a read-modify-write per accumulate
            accumulators = 2 * fed * p.access(lay.output_size, acc)
            events += accumulators
        t["ops"] += ops
        t["weights"] += weights
        t["activations"] += accumulators + fifo
        events += ops + weights + fifo
    if p.memory:
        floating = _is_float(layers)
        analog = FLOAT_BITS if floating else w.snn_analog_bits
        for s in sites:
            bits = w.state(s.name)
            t["ops"] += s.updates * p.add(bits, floating) + s.graded * p.mac(analog, analog, bits)
            t["state"] += 2 * (s.updates + s.graded) * p.access(s.size, bits)
    return t, events


def _precision(layers: Sequence, activations: str) -> str:
    bits = sorted({lay.weight_bits for lay in layers if lay.kind != "matmul"})
    if bits == [FLOAT_BITS] or not bits:
        return "float32"
    return "W" + "/".join(map(str, bits)) + activations


def _checked(num_images: int) -> None:
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")


def ann_energy(layers: Sequence, sites: Sequence, num_images: int, weight_bits: Optional[int] = None,
               widths: Widths = Widths(), c: MemoryConstants = MemoryConstants(),
               layer_bits: Mapping[str, int] = {}) -> dict[str, float]:
    """Joules per image of the ANN under every estimate of :data:`ESTIMATES`, its conv /
    linear weights ``weight_bits`` wide (the layers ``layer_bits`` names: theirs; None: each
    layer's own width) and its activations ``widths.ann_activation_bits`` wide (float32
    beside float32 weights)."""
    _checked(num_images)
    if weight_bits is not None:
        layers = [lay if lay.kind == "matmul" else replace(lay, weight_bits=layer_bits.get(lay.name, weight_bits))
                  for lay in layers]
    return {e: sum(_price_ann(_Prices(e, c), layers, sites, widths).values()) * 1e-12 / num_images for e in ESTIMATES}


ANN_FAMILY = ((32, 32), (8, 8), (4, 8), (8, 16), (8, 32))  # (weight bits, activation bits); 32, 32: float32


def precision_label(weight_bits: int, activation_bits: int) -> str:
    """``fp32`` or ``W8A8``-style."""
    return "fp32" if weight_bits >= FLOAT_BITS and activation_bits >= FLOAT_BITS else f"W{weight_bits}A{activation_bits}"


def ann_family(layers: Sequence, sites: Sequence, num_images: int,
               c: MemoryConstants = MemoryConstants()) -> dict[str, dict[str, float]]:
    """Joules per image of the run's network as an ANN at every precision of
    :data:`ANN_FAMILY` (label -> estimate -> J), the same counts priced by :func:`ann_energy`."""
    return {precision_label(w, a): ann_energy(layers, sites, num_images, w, Widths(ann_activation_bits=a), c)
            for w, a in ANN_FAMILY}


def matched_energy(layers: Sequence, sites: Sequence, num_images: int, spikes_per_neuron: float,
                   widths: Widths = Widths(), c: MemoryConstants = MemoryConstants()) -> dict[str, MatchedEnergy]:
    """Every estimate of :data:`ESTIMATES` (module docstring) of a run that made ``num_images``
    images, from its :class:`~spiking_ddim.energy.LayerCost` / :class:`~spiking_ddim.energy.SiteCost`
    totals and its mean spikes per neuron per call."""
    anns = ann_energy(layers, sites, num_images, None, widths, c)
    out = {}
    for estimate, ann in anns.items():
        table, events = _price_snn(_Prices(estimate, c), layers, sites, widths)
        snn = sum(table.values()) * 1e-12 / num_images
        events *= 1e-12 / num_images
        rest = snn - events
        even = spikes_per_neuron * (ann - rest) / events if events > 0 and ann > rest else None
        out[estimate] = MatchedEnergy(
            estimate, _precision(layers, f"A{widths.ann_activation_bits}"),
            _precision(layers, f", spikes, analog A{widths.snn_analog_bits}"), ann, snn,
            snn / ann if ann else math.nan, {k: v * 1e-12 / num_images for k, v in table.items()}, events, even)
    return out
