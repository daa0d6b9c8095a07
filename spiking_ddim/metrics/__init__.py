"""Metrics of a spiking diffusion model against its original, as plain functions.

    from spiking_ddim.metrics import compare, generation_metrics, measure_cost
    loss = compare(original_images, fs_images)          # per-image MSE / MAE / PSNR and its spread, (N, C, H, W) in [-1, 1]
    r = generation_metrics("digits", fs_images, "digits")  # FID, KID, IS through torch-fidelity
    with measure_cost(pipe) as meter: ...               # spikes, MACs, ACs -> energy per image

Image loss (:mod:`.image_loss`), generation metrics in Inception or the shipped digits
feature space (:mod:`.generation`, :mod:`.digits_features`), and the energy accounting of
:mod:`spiking_ddim.energy`, re-exported here.
"""

from ..energy import CostReport, EnergyConstants, EnergyReport, measure_cost
from .generation import (
    INCEPTION_ENV,
    METRICS,
    GenerationMetrics,
    check_metric_args,
    extract_features,
    generation_metrics,
)
from .image_loss import LOW_PSNR_DB, compare, describe_psnr, psnr_from_mse, psnr_spread, spread_cells, x0_mae

__all__ = ["INCEPTION_ENV", "LOW_PSNR_DB", "METRICS", "CostReport", "EnergyConstants", "EnergyReport", "GenerationMetrics",
           "check_metric_args", "compare", "describe_psnr", "extract_features", "generation_metrics", "measure_cost",
           "psnr_from_mse", "psnr_spread", "spread_cells", "x0_mae"]
