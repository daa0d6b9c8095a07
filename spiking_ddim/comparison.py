"""The main job as a library function: sample a reference pipeline and its FS conversion
from identical noise, score the FS images, count their energy, and write it all to a folder.

:func:`compare_and_write` samples images ``0..N-1`` (image i from seed + i) of both
pipelines batch by batch (this process's share of the batches under Accelerate), writes
``original/`` and ``fs/`` PNGs, and on the main process ``metrics.json`` (image loss per
image, its mean and the spread of the per-image PSNR, generation metrics against real features, spikes and energy per image,
the FS model's history, the reference, the scheduler and every setting),
``comparison.png``, ``firing_rates.png`` and ``energy.png``. Images are (N, C, H, W) in
[-1, 1]; MSE and PSNR on the [0, 1] scale; energy in joules per image.
:func:`evaluate_conversion` is the same measurement on a few held-out images, for the
record and the model card of a conversion.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import gather_object
from diffusers import DiffusionPipeline

from fs_neurons.utils.files import atomic_write_text
from fs_neurons.utils.seeds import stream

from .codings import row_fields
from .data import save_png, to_uint8
from .energy import CostReport, EnergyConstants, EnergyReport, measure_cost
from .held_out import check_pipeline_held_out
from .metrics import compare, generation_metrics, psnr_from_mse, psnr_spread
from .metrics.generation import Features, GenerationMetrics
from .pipelines import SamplingOptions, converted_components, scheduler_record
from .plots import plot_comparison, plot_energy_split, plot_firing_rates
from .record import add_event
from .sampling import generate_many, plan_batches, sample_pairs
from .sites import fs_activations


@dataclass
class Comparison:
    """What :func:`compare_and_write` measured (main process): ``metrics`` (as written to
    metrics.json), the generation ``scores`` per model, the ``energy`` report, and a
    one-line ``header`` naming the FS model's history and the reference."""

    metrics: dict
    scores: dict[str, GenerationMetrics] = field(default_factory=dict)
    energy: Optional[EnergyReport] = None
    header: str = ""


@dataclass(frozen=True)
class MetricSettings:
    """How the generation metrics are computed (see :func:`spiking_ddim.metrics.generation_metrics`)."""

    metrics: Sequence[str] = ("fid", "kid", "isc")
    feature_extractor: str = "auto"
    inception_weights: Optional[str] = None
    kid_subset_size: Optional[int] = None


def compare_and_write(original: DiffusionPipeline, fs_pipe: DiffusionPipeline, options: SamplingOptions, out: Path,
                      num_images: int, batch_size: int, seed: int, reference: dict, accelerator: Accelerator,
                      real_features: Optional[Features] = None, metric_settings: MetricSettings = MetricSettings(),
                      constants: EnergyConstants = EnergyConstants(), run: Optional[dict] = None,
                      progress: Optional[Callable[[int], None]] = None) -> Optional[Comparison]:
    """Sample, score and write the comparison of ``fs_pipe`` with ``original`` into ``out``
    (an empty folder); ``run``: extra settings recorded in metrics.json (the model as
    given, say); ``progress(n)`` after each batch of n images. Returns the
    :class:`Comparison` on the main process, None on the others. Raises
    :class:`~spiking_ddim.errors.SettingError` (``seed``) before sampling when a scored image's
    seed is one a fit of the model saw (:mod:`spiking_ddim.held_out`)."""
    components = converted_components(fs_pipe)
    check_pipeline_held_out(fs_pipe, seed, num_images)  # no scored image was seen by a fit
    sampled = _sample_and_save(original, fs_pipe, options, out, num_images, batch_size, seed, accelerator, progress)
    if sampled is None:
        return None
    rows, cost = sampled
    energy = cost.energy(num_images, constants)
    scores = {} if real_features is None else {
        name: generation_metrics(real_features, out / name, metric_settings.feature_extractor,
                                 metric_settings.inception_weights, metric_settings.metrics,
                                 metric_settings.kid_subset_size) for name in ("original", "fs")}
    record = (components["unet"] if "unet" in components else next(iter(components.values()))).fs_config
    history = record.provenance()
    mean_mse = sum(r["mse"] for r in rows) / len(rows)
    psnr = psnr_from_mse(mean_mse)
    metrics = {
        **(run or {}), "pipeline": type(fs_pipe).__name__, "converted": sorted(components),
        "K": record.K, "method": record.method, **row_fields(record.coding),
        "spiking": record.spiking, "weight_bits": record.weight_bits, "layer_bits": record.layer_bits,
        "calibrated": history["calibrated"],
        "budget": history["budget"], "finetuned": history["finetuned"], "history": history["history"],
        "source": history["source"], "reference": reference, "scheduler": scheduler_record(fs_pipe),
        "steps": options.steps, "eta": options.eta, "prompts": list(options.prompts or []),
        "guidance_scale": options.guidance_scale, "num_images": num_images, "batch_size": batch_size, "seed": seed,
        "processes": accelerator.num_processes, "threads_per_process": torch.get_num_threads(),
        "images_written": {"original": len(rows), "fs": len(rows)},
        "sites": sum(a.num_sites for m in components.values() for _, a in fs_activations(m)),
        "mse": mean_mse, "psnr": psnr, **psnr_spread([r["psnr"] for r in rows]),
        "spikes_per_neuron_per_call": energy.spikes_per_neuron, "spikes_per_image": energy.spikes_per_image,
        **metric_entries(scores), "energy": energy.to_json(), "per_image": rows,
    }
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    header = f"FS ({history['summary']}; {', '.join(sorted(components))})"
    _write_comparison(out, rows, f"{header}\nvs {reference['description']}: mean PSNR {psnr:.2f} dB over "
                                 f"{num_images} images, {options.steps} steps")
    name = record.label
    plot_firing_rates({name: energy.firing_rates}, out / "firing_rates.png", K=record.K,
                      break_even=constants.break_even, title=f"{name}: spikes per neuron per call, per site")
    plot_energy_split({name: energy.by_kind}, constants, out / "energy.png", steps=options.steps,
                      memory={name: energy.memory})
    return Comparison(metrics, scores, energy, header)


def _sample_and_save(original: DiffusionPipeline, fs_pipe: DiffusionPipeline, options: SamplingOptions, out: Path,
                     num_images: int, batch_size: int, seed: int, accelerator: Accelerator,
                     progress: Optional[Callable[[int], None]]) -> Optional[tuple[list[dict], CostReport]]:
    """Sample this process's batches of both pipelines, write their PNGs, and gather every
    process's per-image error (index, MSE, PSNR) and cost; on the main process (rows by
    index, the summed cost), None on the others."""
    for sub in ("original", "fs"):
        (out / sub).mkdir(exist_ok=True)
    batches = plan_batches(num_images, batch_size, accelerator.process_index, accelerator.num_processes)
    per_image: list[dict] = []

    def save(idx, a, b):
        for i, x, y in zip(idx, to_uint8(a), to_uint8(b)):
            save_png(x, out / "original" / f"{i:05d}.png")
            save_png(y, out / "fs" / f"{i:05d}.png")
        m = compare(a, b)
        per_image.extend({"index": i, "mse": m["mse"][k], "psnr": m["psnr"][k]} for k, i in enumerate(idx))
        if progress is not None:
            progress(len(idx))

    with measure_cost(fs_pipe) as meter:
        sample_pairs(original, fs_pipe, batches, options, seed, save)
    rows = gather_object(per_image)
    costs = gather_object([meter.report()])
    accelerator.wait_for_everyone()
    if not accelerator.is_main_process:
        return None
    rows.sort(key=lambda r: r["index"])
    if [r["index"] for r in rows] != list(range(num_images)):
        raise RuntimeError(f"sampled {len(rows)} images, expected indices 0..{num_images - 1}")
    return rows, sum(costs, CostReport())


@torch.no_grad()
def evaluate_conversion(fs_pipe: DiffusionPipeline, reference: DiffusionPipeline, options: SamplingOptions,
                        images: int = 8, batch_size: int = 8, reference_name: Optional[str] = None) -> dict:
    """Score a converted pipeline against ``reference`` (the model it was converted from) on
    ``images`` images from the held-out ``evaluation`` seed stream, the same noise for both:
    PSNR of the mean MSE with its per-image spread, spikes per neuron per call, and the
    energy per image over the ANN's (45 nm count, against an INT8 ANN, memory-aware). The
    figures go into every converted component's history as an ``evaluate`` event (the model
    card shows them) and are returned. A few images: a check a card can carry, not a benchmark."""
    seed = stream("evaluation")
    check_pipeline_held_out(fs_pipe, seed, images)
    original = generate_many(reference, images, options, batch_size, seed)
    with measure_cost(fs_pipe) as meter:
        fs = generate_many(fs_pipe, images, options, batch_size, seed)
    m, energy = compare(original, fs), meter.report().energy(images)
    figures = {"reference": reference_name, "images": images, "image_seeds": [[seed, seed + images]],
               "steps": options.steps, "psnr": m["mean_psnr"], **psnr_spread(m["psnr"]),
               "spikes_per_neuron": energy.spikes_per_neuron, "energy_ratio": energy.ratio,
               "energy_ratio_int8": energy.ratio_int8, "memory_ratio": energy.memory["ratio"],
               "memory_ratio_int8": energy.memory["ratio_int8"]}
    for model in converted_components(fs_pipe).values():
        add_event(model, "evaluate", **figures)
    return figures


def metric_entries(scores: dict[str, GenerationMetrics]) -> dict:
    """metrics.json entries ``fid``, ``kid``, ``is`` (and ``precision_recall``), each
    {model: figures with their label}, and ``metric_notes`` {model: [unreliable figures]}."""
    out: dict = {"fid": {}, "kid": {}, "is": {}}
    for name, r in scores.items():
        if r.fid is not None:
            out["fid"][name] = {"value": r.fid, "label": r.label("FID")}
        if r.kid_mean is not None:
            out["kid"][name] = {"mean": r.kid_mean, "std": r.kid_std, "subset_size": r.kid_subset_size,
                                "subsets": r.kid_subsets, "n_real": r.n_real, "label": r.label("KID")}
        if r.isc_mean is not None:
            out["is"][name] = {"mean": r.isc_mean, "std": r.isc_std, "label": r.label("IS")}
        if r.precision is not None:
            out.setdefault("precision_recall", {})[name] = {"precision": r.precision, "recall": r.recall}
    out["metric_notes"] = {name: r.notes for name, r in scores.items()}
    return out


def _write_comparison(out: Path, rows: list[dict], title: str, pairs: int = 16) -> None:
    """comparison.png: the first ``pairs`` images of the original and the FS model, labelled, with PSNRs."""
    from PIL import Image

    n = min(len(rows), pairs)
    stacks = []
    for sub in ("original", "fs"):
        arrays = [np.asarray(Image.open(out / sub / f"{i:05d}.png")) for i in range(n)]
        stacks.append(np.stack([a[..., None] if a.ndim == 2 else a for a in arrays]))
    plot_comparison(stacks[0], stacks[1], out / "comparison.png", [r["psnr"] for r in rows[:n]], title)
