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
:mod:`spiking_ddim.memory`); and both networks at matched weight widths under the
operation count, Lemaire's memory-aware dataflow and an output-stationary one, with each
point's break-even (``matched``, see :mod:`spiking_ddim.energy.matched`), and the same
counts as an ANN at fp32, W8A8, W4A8, W8A16 and W8A32 (``ann_family``).

The parts: :mod:`~spiking_ddim.energy.operations` (the operation counts of one call),
:mod:`~spiking_ddim.energy.meter` (the hooks that add them up while a model runs) and
:mod:`~spiking_ddim.energy.report` (the totals, priced per image). Neurons declare what
they cost: ``updates_per_element`` (neuron updates per input element and call) and
``graded`` (whether a call computes the activation exactly first, as a delta encoder's).
"""

from .meter import CostMeter, measure_cost, site_name
from .operations import layer_acs, layer_macs
from .report import HOROWITZ_45NM, CostReport, EnergyConstants, EnergyReport, LayerCost, SiteCost, network_part

__all__ = ["HOROWITZ_45NM", "CostMeter", "CostReport", "EnergyConstants",
           "EnergyReport", "LayerCost", "SiteCost", "layer_acs", "layer_macs", "measure_cost", "network_part",
           "site_name"]
