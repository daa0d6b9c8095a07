"""A results row: one model measured against the original, with one set of keys in every
results file the benchmarks write.

Keys (every row): ``psnr`` (dB, of the mean MSE against the original's images from the
same noise), ``mse``, ``psnr_median`` / ``psnr_p5`` (the median and 5th-percentile
per-image PSNR), ``share_below_30db``; ``kid_mean`` / ``kid_std`` (against held-out real
images, where scored); the energy per image of :func:`energy_fields`: ``energy_ratio`` (SNN
/ ANN, 45 nm operation count), ``energy_ratio_int8`` (against an INT8 ANN),
``memory_ratio`` / ``memory_ratio_int8`` (memory-aware estimate), joules per image and
per step, ``snn_acs_per_image``, ``snn_macs_per_image``, ``spikes_per_neuron`` (per neuron
per call); at matched weight widths (:mod:`spiking_ddim.energy.matched`), per estimate E
(``ops``, ``lemaire``, ``output_stationary``): ``matched_ratio_E``, ``matched_snn_joules_E`` and
``matched_ann_joules_E`` (per image) and ``break_even_E``
(spikes per neuron per call at which the SNN costs what the ANN costs; None: never), with
``matched_ann_precision`` / ``matched_snn_precision``. Rows are merged by a key of the caller's (:func:`merge_rows`); a table's rows
share their settings (:func:`settings_conflict`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Hashable, NamedTuple, Optional

import torch
from diffusers import DiffusionPipeline

from ..embedded import EMBEDDED_MODELS, PREFIX, embedded_model
from ..energy import EnergyConstants, EnergyReport, measure_cost
from ..held_out import check_pipeline_held_out
from ..metrics import compare, extract_features, generation_metrics
from ..pipelines import SamplingOptions, load_pipeline
from ..sampling import generate_many

SPREAD = ("psnr_median", "psnr_p5", "share_below_30db")  # the per-image PSNR spread of a row


def quality_fields(reference: Optional[torch.Tensor], images: torch.Tensor) -> dict:
    """PSNR, MSE and the per-image spread of ``images`` against ``reference`` (both (N, C,
    H, W) in [-1, 1]); the original's own row (``reference`` None): MSE 0, the rest None."""
    if reference is None:
        return {"psnr": None, "mse": 0.0, **{k: None for k in SPREAD}}
    m = compare(reference, images)
    return {"psnr": m["mean_psnr"], "mse": m["mean_mse"], **{k: m[k] for k in SPREAD}}


def kid_fields(real: Any, images: torch.Tensor, feature_extractor: str = "auto") -> dict:
    """``kid_mean`` and ``kid_std`` of ``images`` against the real images' features ``real``
    (in their feature space unless ``feature_extractor`` names another)."""
    kid = generation_metrics(real, images, feature_extractor, metrics=("kid",))
    return {"kid_mean": kid.kid_mean, "kid_std": kid.kid_std}


def energy_fields(energy: EnergyReport) -> dict:
    """The energy keys of a row (see the module docstring), from an energy report."""
    m = energy.memory
    return {"energy_ratio": energy.ratio, "energy_ratio_int8": energy.ratio_int8,
            "memory_ratio": m["ratio"], "memory_ratio_int8": m["ratio_int8"],
            "snn_joules_per_image": energy.snn_joules_per_image, "snn_joules_per_step": energy.snn_joules_per_step,
            "ann_joules_per_image": energy.ann_joules_per_image, "ann_joules_per_step": energy.ann_joules_per_step,
            "memory_snn_joules_per_image": m["snn_joules_per_image"],
            "memory_ann_joules_per_image": m["ann_joules_per_image"],
            "memory_ann_int8_joules_per_image": m["ann_int8_joules_per_image"],
            "spikes_per_neuron": energy.spikes_per_neuron, "snn_acs_per_image": energy.snn_acs_per_image,
            "snn_macs_per_image": energy.snn_macs_per_image, **matched_fields(energy)}


def matched_fields(energy: EnergyReport) -> dict:
    """The matched-precision keys of a row (see the module docstring)."""
    row = {"matched_ann_precision": energy.matched["ops"]["ann_precision"],
           "matched_snn_precision": energy.matched["ops"]["snn_precision"]}
    for name, e in energy.matched.items():
        key = name.replace("-", "_")
        row[f"matched_ratio_{key}"] = e["ratio"]
        row[f"matched_snn_joules_{key}"] = e["snn_joules_per_image"]
        row[f"matched_ann_joules_{key}"] = e["ann_joules_per_image"]
        row[f"break_even_{key}"] = e["break_even"]
    return row


def sample_metered(pipe: DiffusionPipeline, options: SamplingOptions, num_images: int, batch_size: int, seed: int,
                   constants: EnergyConstants = EnergyConstants()) -> tuple[torch.Tensor, EnergyReport, float]:
    """Images ``seed .. seed + num_images - 1`` of ``pipe`` under the cost meter, after
    checking that no fit of the model saw them: (images, energy per image, seconds)."""
    check_pipeline_held_out(pipe, seed, num_images)
    t0 = time.perf_counter()
    with measure_cost(pipe) as meter:
        images = generate_many(pipe, num_images, options, batch_size, seed)
    return images, meter.report().energy(num_images, constants), time.perf_counter() - t0


def measure(pipe: DiffusionPipeline, reference: torch.Tensor, real: Any, options: SamplingOptions, num_images: int,
            batch_size: int, seed: int) -> dict:
    """A row of ``pipe`` against the original's ``reference`` images: quality, KID (against
    ``real``, digits features; none when ``real`` is None) and energy."""
    images, energy, _ = sample_metered(pipe, options, num_images, batch_size, seed)
    row = {**quality_fields(reference, images), **energy_fields(energy)}
    if real is not None:
        row.update(kid_fields(real, images))
    return row


class OriginalRun(NamedTuple):
    """The original network's run every row is scored against: its pipeline, the sampling
    options, the held-out real images' features, its images and their KID."""

    pipe: DiffusionPipeline
    options: SamplingOptions
    real: Any
    images: torch.Tensor
    kid_mean: float


def original_run(options: SamplingOptions, num_images: int, batch_size: int, seed: int,
                 model: str = "embedded:digits") -> OriginalRun:
    """An embedded model's run (the digits DDIM by default): images ``seed ..`` and their KID
    against its held-out real set, in that set's own feature space."""
    embedded = embedded_model(model)
    if embedded is None:
        raise ValueError(f"benchmarks run on an embedded model "
                         f"({', '.join(PREFIX + key for key in EMBEDDED_MODELS)}), got {model!r}")
    pipe = load_pipeline(embedded.directory)
    real = extract_features(embedded.real, embedded.real, metrics=("kid",), what="real")
    images = generate_many(pipe, num_images, options, batch_size, seed)
    return OriginalRun(pipe, options, real, images, kid_fields(real, images)["kid_mean"])


def settings_conflict(rows: list[dict], settings: dict) -> Optional[str]:
    """Why rows of an existing table cannot sit beside rows made with ``settings`` (None: they can).
    Rows written before settings were recorded are compared on their num_images and steps."""
    for r in rows:
        old = r.get("settings") or {"num_images": r.get("num_images"), "steps": r.get("steps")}
        diff = [f"{k}: {old[k]!r} in the table, {settings[k]!r} now" for k in old if k in settings
                and old[k] != settings[k]]
        if diff:
            return f"row K={r.get('K')} {r.get('method')} was made with other settings ({'; '.join(diff)})"
    return None


def merge_rows(old: list[dict], new: list[dict], key: Callable[[dict], Hashable], sort: bool = True) -> list[dict]:
    """``old`` with the rows of ``new`` replacing those of the same ``key``: sorted by the
    key, or (``sort`` False) each new row in the place of the one it replaces, else last."""
    if sort:
        fresh = {key(r) for r in new}
        return sorted([r for r in old if key(r) not in fresh] + new, key=key)
    rows = list(old)
    for r in new:
        at = next((i for i, o in enumerate(rows) if key(o) == key(r)), len(rows))
        rows = rows[:at] + [r] + [o for o in rows[at:] if key(o) != key(r)]
    return rows
