"""Quantised ANN baselines (``eval/quantized_ann.py``): the original UNet at lower precision
(:mod:`spiking_ddim.quantization`), measured like every other row, and their table.

A row holds its ``precision`` (``W8A8``...), :mod:`.rows`' keys, and the energy of the
quantised network itself under every estimate E of :mod:`spiking_ddim.energy.matched`
(``ops``, ``lemaire``, ``output_stationary``): ``joules_per_image_E`` and its ratio to the
float32 ANN's, ``vs_fp32_E``. The W8A8 row also keeps the earlier figures: 8-bit integer
MACs of 0.23 pJ (``joules_per_image``) and the memory-aware estimate with one-byte accesses
to 32-bit-sized buffers (``memory_joules_per_image``), over the 32-bit ANN's
(``energy_vs_fp32``, ``memory_vs_fp32``).
"""

from __future__ import annotations

from typing import Optional

from ..embedded import model_flag, results_model
from ..energy import CostReport, measure_cost
from ..energy.matched import ESTIMATES, Widths, ann_energy
from ..metrics import spread_cells
from ..pipelines import generate
from ..quantization import Precision, quantize_pipeline
from .rows import OriginalRun, energy_fields, kid_fields, quality_fields, sample_metered


def ann_row(run: OriginalRun, precision: Precision, num_images: int, batch_size: int, seed: int,
            calibration_images: int = 16) -> dict:
    """The row of the original UNet quantised to ``precision`` (scales calibrated on
    ``calibration_images`` images of the calibration stream), scored against ``run``; its
    energy under every estimate comes from :func:`reprice`."""
    import copy

    pipe = quantize_pipeline(copy.deepcopy(run.pipe), precision, run.options, images=calibration_images)
    images, energy, seconds = sample_metered(pipe, run.options, num_images, batch_size, seed)
    row = {"precision": precision.label, "weight_bits": precision.weight_bits,
           "activation_bits": precision.activation_bits, "calibration_images": calibration_images,
           **quality_fields(run.images, images), **kid_fields(run.real, images), **energy_fields(energy),
           "joules_per_image": None, "memory_joules_per_image": None, "sample_seconds": round(seconds, 1)}
    if (precision.weight_bits, precision.activation_bits) == (8, 8):
        memory = energy.memory
        row.update(joules_per_image=energy.ann_int8_joules_per_image,
                   memory_joules_per_image=memory["ann_int8_joules_per_image"])
    row["energy_vs_fp32"] = None if row["joules_per_image"] is None else \
        row["joules_per_image"] / energy.ann_joules_per_image
    row["memory_vs_fp32"] = None if row["memory_joules_per_image"] is None else \
        row["memory_joules_per_image"] / energy.memory["ann_joules_per_image"]
    return row


def _joules(precision: Optional[Precision], cost: CostReport) -> dict[str, float]:
    """The ANN of ``cost``'s counts (one image) at ``precision`` (None: float32), per estimate."""
    if precision is None:
        return ann_energy(cost.layers, cost.sites, 1, 32, Widths(ann_activation_bits=32))
    return ann_energy(cost.layers, cost.sites, 1, precision.weight_bits,
                      Widths(ann_activation_bits=precision.activation_bits), layer_bits=dict(precision.layer_bits))


def priced(precision: Precision, cost: CostReport) -> dict:
    """``joules_per_image_E`` and ``vs_fp32_E`` of the ANN at ``precision`` under every
    estimate E, from the counts of one image (:func:`cost_of`)."""
    mine, fp32 = _joules(precision, cost), _joules(None, cost)
    row = {}
    for estimate in ESTIMATES:
        key = estimate.replace("-", "_")
        row[f"joules_per_image_{key}"] = mine[estimate]
        row[f"vs_fp32_{key}"] = mine[estimate] / fp32[estimate]
    return row


def cost_of(pipe, options) -> CostReport:
    """The counts of one image of ``pipe`` (an ANN: they do not depend on the image)."""
    with measure_cost(pipe) as meter:
        generate(pipe, [0], options)
    return meter.report()


def reprice(data: dict, cost: CostReport) -> dict:
    """``data`` (quantized_ann.json) with every row's and the float32 ANN's energy priced from ``cost``."""
    rows = [{**r, **priced(Precision.parse(r["precision"]), cost)} for r in data["rows"]]
    fp32 = {e.replace("-", "_"): j for e, j in _joules(None, cost).items()}
    return {**data, "fp32_joules_per_image": fp32, "rows": rows}


def markdown(data: dict) -> str:
    """quantized_ann.md: one row per precision."""
    model = results_model(data)
    lines = [f"# Quantised ANN baselines: {model.words} at lower precision", "",
             f"{data['num_images']} images per row, {data['steps']} DDIM steps, seeds {data['seed']}..; every conv / "
             "linear layer fake-quantised with brevitas (`spiking_ddim.quantization`): weights symmetric per output "
             "channel, layer inputs symmetric per tensor with scales calibrated on 16 images of the calibration "
             "stream; attention score matmuls, norms, Swish and residual additions in float. PSNR against the 32-bit "
             "original from the same noise (of the mean MSE; median / p5 per image; < 30 dB: share of images), KID "
             f"({model.real} features) against {model.real_words} (original: {data['original_kid']:.5f}). Energy per "
             "image of "
             "the quantised network, uJ, and its ratio to the float32 ANN's, under the three estimates of "
             "`spiking_ddim.energy.matched`: the 45 nm operation count (integer MAC = multiply scaled by the operand "
             "widths + 32-bit add), Lemaire's memory-aware estimate and the same with an output-stationary dataflow "
             f"(accesses at the values' widths). Written by `python eval/quantized_ann.py{model_flag(model)}`.",
             "", "| precision | PSNR (dB) | median / p5 (dB) | < 30 dB | KID | ops (uJ) | vs fp32 | Lemaire (uJ) | "
             "vs fp32 | output-stationary (uJ) | vs fp32 | sample s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fp32 = data["fp32_joules_per_image"]
    lines.append("| fp32 (original) | - | - | - | " + f"{data['original_kid']:.5f} | " + " | ".join(
        f"{fp32[e] * 1e6:.1f} | 1.000" for e in ("ops", "lemaire", "output_stationary")) + " | - |")
    for r in data["rows"]:
        energy = " | ".join(f"{r[f'joules_per_image_{e}'] * 1e6:.1f} | {r[f'vs_fp32_{e}']:.3f}"
                            for e in ("ops", "lemaire", "output_stationary"))
        lines.append(f"| {r['precision']} | {r['psnr']:.2f} | {spread_cells(r)} | {r['kid_mean']:.5f} | {energy} | "
                     f"{r['sample_seconds']} |")
    w8a8 = next((r for r in data["rows"] if r["precision"] == "W8A8" and r["joules_per_image"]), None)
    if w8a8:
        lines += ["", f"Earlier figures of W8A8 (8-bit adds, one-byte accesses to buffers sized at 32-bit words): "
                      f"{w8a8['joules_per_image'] * 1e6:.1f} uJ at 45 nm ({w8a8['energy_vs_fp32']:.3f} of the 32-bit "
                      f"ANN), {w8a8['memory_joules_per_image'] * 1e6:.1f} uJ memory-aware "
                      f"({w8a8['memory_vs_fp32']:.3f})."]
    return "\n".join(lines) + "\n"
