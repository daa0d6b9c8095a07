"""Quantised ANN baselines (``eval/quantized_ann.py``): the original UNet at lower precision
(:mod:`spiking_ddim.quantization`), measured like every other row, and their table.

A row holds its ``precision`` (``W8A8``...), :mod:`.rows`' keys, and the energy of the
quantised network itself where this package can price it: an 8-bit integer MAC (W8A8) at
45 nm (``joules_per_image``) and under the memory-aware estimate with one-byte accesses
(``memory_joules_per_image``), each also over the 32-bit ANN's (``energy_vs_fp32``,
``memory_vs_fp32``); the package has no price for other precisions (None).
"""

from __future__ import annotations

from ..metrics import spread_cells
from ..quantization import Precision, quantize_pipeline
from .rows import OriginalRun, energy_fields, kid_fields, quality_fields, sample_metered


def ann_row(run: OriginalRun, precision: Precision, num_images: int, batch_size: int, seed: int,
            calibration_images: int = 16) -> dict:
    """The row of the original UNet quantised to ``precision`` (scales calibrated on
    ``calibration_images`` images of the calibration stream), scored against ``run``."""
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


def _cell(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(data: dict) -> str:
    """quantized_ann.md: one row per precision."""
    lines = ["# Quantised ANN baselines: the embedded digits DDIM at lower precision", "",
             f"{data['num_images']} images per row, {data['steps']} DDIM steps, seeds {data['seed']}..; every conv / "
             "linear layer fake-quantised with brevitas (`spiking_ddim.quantization`): weights symmetric per output "
             "channel, layer inputs symmetric per tensor with scales calibrated on 16 images of the calibration "
             "stream; attention score matmuls, norms, Swish and residual additions in float. PSNR against the 32-bit "
             "original from the same noise (of the mean MSE; median / p5 per image; < 30 dB: share of images), KID "
             f"(digits features) against held-out digits (original: {data['original_kid']:.5f}). Energy per image of "
             "the quantised network where priced: 8-bit integer MACs at 45 nm (0.23 pJ) and the memory-aware estimate "
             "with one-byte accesses; the package has no price for the other precisions. Written by "
             "`python eval/quantized_ann.py`.",
             "", "| precision | PSNR (dB) | median / p5 (dB) | < 30 dB | KID | energy (uJ / image, 45 nm) | vs 32-bit "
             "ANN | memory-aware (uJ / image) | vs 32-bit ANN | sample s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        lines.append(f"| {r['precision']} | {r['psnr']:.2f} | {spread_cells(r)} | {r['kid_mean']:.5f} | "
                     f"{_cell(r['joules_per_image'] and r['joules_per_image'] * 1e6, '.1f')} | "
                     f"{_cell(r['energy_vs_fp32'], '.3f')} | "
                     f"{_cell(r['memory_joules_per_image'] and r['memory_joules_per_image'] * 1e6, '.1f')} | "
                     f"{_cell(r['memory_vs_fp32'], '.3f')} | {r['sample_seconds']} |")
    return "\n".join(lines) + "\n"
