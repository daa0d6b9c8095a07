"""The recipe from a plain pipeline to a spiking one, in one documented order.

:func:`prepare` runs a :class:`~spiking_ddim.spec.ConversionSpec` on a pipeline:

1. convert (:func:`spiking_ddim.pipelines.convert_pipeline`): FS neurons from the bank,
   the coding's encoders installed, low-bit synapses if the spec asks;
2. calibrate (:func:`spiking_ddim.calibration.calibrate`), if the spec asks: every site
   refitted to the inputs it sees, a fully spiking model's input encoders fitted;
3. fit the coding's encoders (:meth:`spiking_ddim.codings.Coding.fit`; delta coding's to
   the changes of the calibrated model's runs);
4. if the spec asks (``narrow_widths``), measure accumulator and state ranges on the
   calibration images and record the narrowest widths that hold them
   (:func:`record_widths`, :mod:`spiking_ddim.widths`).

Every command that converts (``sample``, ``convert``, ``train snn``) and every benchmark
script calls it. With an Accelerate ``accelerator``, the fits run on the main process and
every process then takes its result (:func:`spiking_ddim.sampling.broadcast_conversion`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from diffusers import DiffusionPipeline

from .calibration import calibrate
from .components import denoiser
from .convert import ConversionReport, SiteReport
from .energy import measure_cost
from .held_out import calibration_seeds
from .pipelines import Progress, SamplingOptions, convert_pipeline, generate
from .record import add_event
from .sampling import broadcast_conversion
from .spec import ConversionSpec
from .widths import choose_widths


@dataclass
class Prepared:
    """What :func:`prepare` did: one conversion report per component, the calibration's site
    reports (None without calibration) and the coding's per-encoder fit results ([] when it
    has nothing to fit). On processes other than the main one the fits' results are None."""

    reports: dict[str, ConversionReport]
    calibration: Optional[list[SiteReport]]
    encoders: Optional[list[dict]]


def _staged(progress: Progress, prefix: str) -> Progress:
    """``progress`` with every stage name prefixed (one bar per stage of each step)."""
    return None if progress is None else (lambda stage, done, total: progress(prefix + stage, done, total))


def prepare(pipe: DiffusionPipeline, spec: ConversionSpec, options: SamplingOptions, progress: Progress = None,
            accelerator: Optional[Any] = None) -> Prepared:
    """Convert, calibrate and fit the encoders of ``pipe`` in place, per ``spec`` (see the
    module docstring), the fits on ``options``' runs; ``progress(stage, done, total)`` with
    stages named ``calibrate: ...`` and ``<coding> coding: ...``. All of the conversion or
    none of it; a failed fit leaves a converted pipeline."""
    reports = convert_pipeline(pipe, K=spec.K, method=spec.method, components=spec.components,
                               bank_path=spec.bank_path, coding=spec.coding, spiking=spec.spiking,
                               weight_bits=spec.weight_bits, layer_bits=dict(spec.layer_bits) or None)
    calibration = encoders = None
    if accelerator is None or accelerator.is_main_process:
        if spec.calibrate:
            calibration = _calibrate(pipe, spec, options, progress)
        encoders = spec.coding.fit(pipe, options, seed=spec.seed,
                                   progress=_staged(progress, f"{spec.coding.name} coding: "))
        if spec.narrow_widths:
            record_widths(pipe, options, spec.calibration_images, spec.seed)
    if accelerator is not None:
        broadcast_conversion(pipe, accelerator)
    return Prepared(reports, calibration, encoders)


def record_widths(pipe: DiffusionPipeline, options: SamplingOptions, images: int = 16, seed: int = 0) -> dict:
    """Sample ``images`` images of the ``calibration-inputs`` stream of ``seed`` under the cost
    meter, choose every spike-fed layer's accumulator and every site's state width from the
    ranges seen (:func:`spiking_ddim.widths.choose_widths`) and record them in the UNet's
    record (with a ``widths`` event); returns them. Needs integer synapses (``weight_bits``)."""
    unet = denoiser(pipe)
    if not unet.fs_config.weight_bits:
        raise ValueError("accumulator widths are measured in units of the weights' integer steps: convert with "
                         "weight_bits (--weight-bits) first")
    seeds = calibration_seeds(images, seed)  # the calibration images: [[first, last + 1)]
    with measure_cost(unet) as meter:
        generate(pipe, range(images), options, seed=seeds[0][0])
    widths = choose_widths(meter.report())
    unet.fs_config = dataclasses.replace(unet.fs_config, widths=widths)
    add_event(unet, "widths", images=images, seed=seed, image_seeds=seeds,
              accumulators_16=sum(b == 16 for b in widths["accumulators"].values()),
              states_16=sum(b == 16 for b in widths["states"].values()))
    return widths


def refit_encoders(pipe: DiffusionPipeline, options: SamplingOptions, progress: Progress = None) -> list[dict]:
    """Fit the encoders of ``pipe``'s UNet coding again, with the coding's settings and the
    seed of its last fit, on ``options``' runs: for a model whose weights changed since
    (fine-tuning with ``--train-unet``), whose sites now see other values. The coding's
    per-encoder results ([] for a coding with nothing to fit); ``ValueError`` if the encoders
    were never fitted."""
    record = pipe.unet.fs_config
    if record.coding.fit_event is None:
        return []
    fits = record.events(record.coding.fit_event)
    if not fits:
        raise ValueError(f"the UNet's {record.coding.name} encoders were never fitted: prepare the pipeline first")
    return record.coding.fit(pipe, options, seed=fits[-1].get("seed", 0),
                             progress=_staged(progress, f"{record.coding.name} coding: "))


def recalibrate(pipe: DiffusionPipeline, spec: ConversionSpec, options: SamplingOptions, progress: Progress = None,
                accelerator: Optional[Any] = None) -> Optional[list[SiteReport]]:
    """Calibrate an already converted ``pipe`` with ``spec``'s calibration settings (images,
    seed, budget), as :func:`prepare`'s second step does; with an ``accelerator``, on the
    main process, every process then taking the result. The site reports (None elsewhere)."""
    sites = _calibrate(pipe, spec, options, progress) if accelerator is None or accelerator.is_main_process else None
    if accelerator is not None:
        broadcast_conversion(pipe, accelerator)
    return sites


def _calibrate(pipe: DiffusionPipeline, spec: ConversionSpec, options: SamplingOptions,
               progress: Progress) -> list[SiteReport]:
    try:
        return calibrate(pipe, options, num_images=spec.calibration_images, seed=spec.seed,
                         progress=_staged(progress, "calibrate: "), budget=spec.budget)
    except ValueError as e:
        raise ValueError(f"calibration: {e}") from None


__all__ = ["ConversionSpec", "Prepared", "prepare", "recalibrate", "record_widths", "refit_encoders"]
