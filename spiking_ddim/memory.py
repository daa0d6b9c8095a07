"""A memory-aware energy estimate, beside the operation count of :mod:`spiking_ddim.energy`.

After Lemaire et al., "An analytical estimation of spiking neural networks energy
efficiency" (ICONIP 2022, arXiv:2210.13107), the model behind spikingjelly's
``LemaireEnergyProfiler``: energy = operations + memory accesses, each access priced by
the size of the buffer it reads or writes. spikingjelly's profiler is not used: it counts
spikingjelly neurons and binary spike tensors, while our FS sites emit graded values with
a spike count per element (``CostMeter`` already has them), and it has no notion of delta
state. The formulas below follow the paper's; the counts come from a
:class:`spiking_ddim.energy.CostReport`'s layers and sites.

Per image (every figure summed over the run's forward passes), with 32-bit words:

* Operations: a MAC costs ``mul_pj + add_pj``, an accumulate ``add_pj``.
* Dense layer call (the ANN; the SNN where the input is analog): MACs; each MAC reads one
  weight (weight buffer: the layer's weights) and one input word (a linear layer reads its
  input once; input buffer: the input of one image); every output is written once
  (output buffer: the output of one image). Attention matmuls are dense in both networks:
  a MAC reads its two operands.
* Spike-fed layer call (SNN): one accumulate per AC (the exact count of
  :mod:`spiking_ddim.energy`), each reading one weight and reading and writing one
  output accumulator (buffer: the output of one image); each arriving spike is read once
  from an input FIFO of ``fifo_words``. A graded event (:mod:`fs_neurons.graded`) costs
  the same per output it reaches, with a MAC in place of the accumulate.
* FS sites: each neuron update (K per neuron per call) adds once and reads and writes its
  membrane potential (buffer: the site's neurons of one image). A delta site's exact
  activation costs one MAC per neuron and call, and its kept value (the state of delta
  coding) is read and written once per neuron and call. The ANN's activation costs one MAC
  per element and call (its evaluation, e.g. by table or polynomial, is not modelled further).
* Not counted: biases, normalisation, residual additions, softmax, the scheduler,
  addressing logic, DRAM (everything is assumed to fit on chip), leakage.

The INT8 ANN is the same network with 8-bit weights and activations: ``int8_mac_pj``
per MAC and memory accesses of one byte (a quarter of a 32-bit word's energy).

Constants (:class:`MemoryConstants`, changeable): 45 nm, Horowitz (ISSCC 2014): 32-bit
integer add 0.1 pJ, multiply 3.1 pJ; 8-bit multiply 0.2 pJ + add 0.03 pJ; SRAM access per
32-bit word by buffer size, linear between 0 B: 0 pJ, 8 KiB: 10 pJ, 32 KiB: 20 pJ, 1 MiB:
100 pJ, and 100 pJ above (the breakpoints Lemaire et al. use).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

KIB = 1024
INT8_MAC_PJ = 0.23  # an 8-bit integer MAC at 45 nm: multiply 0.2 pJ + add 0.03 pJ (Horowitz, ISSCC 2014)


@dataclass(frozen=True)
class MemoryConstants:
    """Operation energies (pJ), SRAM access energy per 32-bit word by buffer size ((bytes, pJ)
    breakpoints, linear between them, flat beyond the last), the input FIFO's words."""

    add_pj: float = 0.1
    mul_pj: float = 3.1
    int8_mac_pj: float = INT8_MAC_PJ
    sram: tuple[tuple[float, float], ...] = ((0.0, 0.0), (8 * KIB, 10.0), (32 * KIB, 20.0), (1024 * KIB, 100.0))
    fifo_words: int = 1000
    source: str = "Lemaire et al. (ICONIP 2022) with 45 nm figures of Horowitz (ISSCC 2014)"

    def __post_init__(self) -> None:
        xs = [x for x, _ in self.sram]
        if len(self.sram) < 2 or xs != sorted(xs) or len(set(xs)) != len(xs):
            raise ValueError("sram breakpoints must be at least 2 (bytes, pJ) pairs with increasing sizes")
        if min(min(v for _, v in self.sram), self.add_pj, self.mul_pj, self.int8_mac_pj) < 0 or self.fifo_words < 1:
            raise ValueError("energies must be >= 0 and fifo_words >= 1")

    def word_pj(self, buffer_bytes: float) -> float:
        """Energy of one 32-bit access to a buffer of ``buffer_bytes``."""
        points = self.sram
        if buffer_bytes >= points[-1][0]:
            return points[-1][1]
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            if buffer_bytes <= x1:
                return y0 + (y1 - y0) * (max(buffer_bytes, x0) - x0) / (x1 - x0)
        return points[-1][1]

    @property
    def mac_pj(self) -> float:
        return self.add_pj + self.mul_pj


@dataclass
class MemoryEnergy:
    """Joules per image of the ANN (32-bit), the INT8 ANN and the SNN under the memory-aware
    estimate, with the SNN's and the ANN's breakdown (ops, weights, activations, state)."""

    ann_joules_per_image: float
    ann_int8_joules_per_image: float
    snn_joules_per_image: float
    ratio: float  # SNN / ANN (32-bit), both memory-aware
    ratio_int8: float  # SNN / INT8 ANN, both memory-aware
    ann_breakdown: dict
    snn_breakdown: dict
    constants: dict

    def to_json(self) -> dict:
        return asdict(self)


def memory_energy(layers: Sequence, sites: Sequence, num_images: int,
                  c: MemoryConstants = MemoryConstants()) -> MemoryEnergy:
    """The memory-aware estimate (module docstring) of a run that made ``num_images`` images,
    from its :class:`~spiking_ddim.energy.LayerCost` and :class:`~spiking_ddim.energy.SiteCost` totals."""
    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    word = 4
    ann = {"ops": 0.0, "weights": 0.0, "activations": 0.0, "state": 0.0}
    ann8 = dict(ann)
    snn = dict(ann)
    for lay in layers:
        w_pj = c.word_pj(lay.weights * word)
        in_pj, out_pj = c.word_pj(lay.input_size * word), c.word_pj(lay.output_size * word)
        if lay.kind == "matmul":
            dense_reads = (0.0, 2.0 * lay.ann_macs)  # (weight reads, input reads) per MAC: both operands are inputs
        else:
            input_reads = lay.ann_macs if lay.kind == "conv" else lay.inputs
            dense_reads = (float(lay.ann_macs), float(input_reads))
        for table, mac_pj, scale in ((ann, c.mac_pj, 1.0), (ann8, c.int8_mac_pj, 0.25)):
            table["ops"] += lay.ann_macs * mac_pj
            table["weights"] += dense_reads[0] * w_pj * scale
            table["activations"] += (dense_reads[1] * in_pj + lay.outputs * out_pj) * scale
        share = lay.snn_macs / lay.ann_macs if lay.ann_macs else 0.0  # the dense (analog-input) part of its calls
        fed = lay.snn_acs + lay.event_macs  # accumulates and graded events' MACs: a weight and an accumulator each
        snn["ops"] += (lay.snn_macs + lay.event_macs) * c.mac_pj + lay.snn_acs * c.add_pj
        snn["weights"] += share * dense_reads[0] * w_pj + fed * w_pj
        snn["activations"] += (share * (dense_reads[1] * in_pj + lay.outputs * out_pj)
                               + 2 * fed * out_pj + lay.spike_events * c.word_pj(c.fifo_words * word))
    for site in sites:
        state_pj = c.word_pj(site.size * word)
        snn["ops"] += site.updates * c.add_pj + site.graded * c.mac_pj
        snn["state"] += 2 * site.updates * state_pj + 2 * site.graded * state_pj
        ann["ops"] += site.neurons * c.mac_pj  # the ANN's activation, once per element
        ann8["ops"] += site.neurons * c.int8_mac_pj
    per_image = {name: {k: v * 1e-12 / num_images for k, v in t.items()} for name, t in
                 (("ann", ann), ("ann8", ann8), ("snn", snn))}
    totals = {name: sum(t.values()) for name, t in per_image.items()}
    return MemoryEnergy(
        ann_joules_per_image=totals["ann"], ann_int8_joules_per_image=totals["ann8"],
        snn_joules_per_image=totals["snn"],
        ratio=totals["snn"] / totals["ann"] if totals["ann"] else float("nan"),
        ratio_int8=totals["snn"] / totals["ann8"] if totals["ann8"] else float("nan"),
        ann_breakdown=per_image["ann"], snn_breakdown=per_image["snn"],
        constants={**asdict(c), "sram": [list(p) for p in c.sram]},
    )
