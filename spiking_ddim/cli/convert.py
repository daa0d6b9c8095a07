"""``spiking-ddim convert`` and ``spiking-ddim calibrate``: make and save a spiking pipeline.

    spiking-ddim convert --model DIR|HUB_ID --K 8 [--calibrate] --out fs-pipeline
    spiking-ddim calibrate --model fs-pipeline --out fs-pipeline-cal

``convert`` loads a diffusers pipeline (or bare UNet), replaces the Swish activations of
the chosen components by FS neurons from the bank, optionally calibrates every site to
the inputs it sees while the pipeline samples, scores the result against the original on
a few images of held-out seeds (--eval-images; the figures go into its record and model
card), saves the result in diffusers' layout
(``DiffusionPipeline.from_pretrained`` loads it once ``spiking_ddim`` is imported; so do
``spiking-ddim sample --model`` and ``train snn --model``) and prints the conversion
report. ``calibrate`` does the calibration step for a pipeline converted earlier.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from ..spec import spec_default
from .flags import add_budget_args, add_conversion_args, add_model_arg, add_sampling_args, help_text


def add_parser(sub: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = sub.add_parser("convert", help="convert a pipeline's Swish to FS neurons (optionally calibrate) and save it",
                       description=help_text(__doc__), formatter_class=fmt)
    add_model_arg(p)
    add_conversion_args(p)
    add_sampling_args(p)
    p.add_argument("--calibrate", action="store_true", help="refit every FS site to its recorded inputs")
    _add_calibration_args(p)
    p.set_defaults(run=run_convert)

    p = sub.add_parser("calibrate", help="calibrate a converted pipeline's FS sites to their inputs and save it",
                       description=help_text(__doc__), formatter_class=fmt)
    add_model_arg(p, required=True, what="a pipeline (or UNet) directory converted by spiking-ddim convert")
    add_sampling_args(p)
    _add_calibration_args(p)
    p.set_defaults(run=run_calibrate)


def _add_calibration_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("calibration")
    g.add_argument("--calibration-images", type=int, default=spec_default("calibration_images"),
                   help="images sampled to record each site's inputs (default: %(default)s)")
    g.add_argument("--steps", type=int, default=20, help="denoising steps of those runs (default: %(default)s)")
    g.add_argument("--seed", type=int, default=spec_default("seed"),
                   help="seed of the fits' runs (calibration, a coding's encoders) and searches (default: %(default)s)")
    add_budget_args(g)
    p.add_argument("--eval-images", type=int, default=8, metavar="N",
                   help="score the result against the model it was converted from on N images of held-out seeds "
                        "(PSNR and its per-image spread, spikes, energy), written into its record and model card; "
                        "0 skips it (default: %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="directory to save the converted pipeline to")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out (the whole folder)")


def _spec(args: argparse.Namespace):
    """The conversion spec of the flags (``calibrate``: of the calibration flags alone, with
    calibration on), checked before any work."""
    from ..errors import SettingError
    from ..spec import ConversionSpec
    from .common import budget_from_flags, check_flags, flag_error

    budget = budget_from_flags(args)
    if hasattr(args, "coding"):
        return check_flags(args, budget=budget, fit_seed=args.seed)[0]
    try:
        check_flags(args)
        return ConversionSpec(calibrate=True, calibration_images=args.calibration_images, budget=budget,
                              seed=args.seed)
    except SettingError as e:
        raise flag_error(e) from None


def _check_out(args: argparse.Namespace):
    """Flag errors and an occupied --out before any work; the conversion spec."""
    from .common import require_positive

    spec = _spec(args)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())) and not args.overwrite:
        raise SystemExit(f"error: {args.out} exists and is not empty; pass --overwrite to replace it")
    require_positive(args, "calibration_images", "steps")
    if args.eval_images < 0:
        raise SystemExit(f"error: --eval-images must be >= 0 (0 skips the evaluation), got {args.eval_images}")
    return spec


def _load(args: argparse.Namespace):
    from ..pipelines import SamplingOptions, load_pipeline
    from .common import prompts_from_flags

    try:
        pipe = load_pipeline(args.model, scheduler=args.scheduler)
        return pipe, SamplingOptions(args.steps, 0.0, prompts_from_flags(args), args.guidance_scale).resolve(pipe)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None


def _evaluate(pipe, reference, options, args: argparse.Namespace, reference_name: Optional[str] = None) -> None:
    """--eval-images: score the converted pipeline against ``reference`` on held-out seeds,
    into its record and model card (see spiking_ddim.comparison.evaluate_conversion)."""
    from ..comparison import evaluate_conversion
    from ..metrics import describe_psnr

    if not args.eval_images:
        return
    try:
        e = evaluate_conversion(pipe, reference, options, args.eval_images, reference_name=reference_name)
    except ValueError as err:
        raise SystemExit(f"error: evaluation: {err}") from None
    print(f"evaluated on {e['images']} held-out images against the source: {describe_psnr(e)}; "
          f"{e['spikes_per_neuron']:.3f} spikes per neuron per call; energy {e['energy_ratio']:.3f} of the ANN's "
          f"(45 nm), {e['memory_ratio']:.3f} memory-aware (in the record and the model card)")


def _save(pipe, sites, args: argparse.Namespace) -> None:
    import json
    from dataclasses import asdict

    from fs_neurons.utils.files import atomic_write_text

    from ..pipelines import save_pipeline

    save_pipeline(pipe, args.out)
    if sites is not None:
        atomic_write_text(args.out / "calibration.json", json.dumps([asdict(s) for s in sites], indent=1) + "\n")
        print(f"per-site calibration: {args.out / 'calibration.json'}")


def run_convert(args: argparse.Namespace) -> int:
    import copy

    from ..pipelines import converted_components
    from .common import prepare_with_bars

    spec = _check_out(args)
    pipe, options = _load(args)
    if converted_components(pipe):
        raise SystemExit(f"error: {args.model} is already converted; calibrate it with `spiking-ddim calibrate`")
    source = copy.deepcopy(pipe) if args.eval_images else None
    prepared, summary = prepare_with_bars(pipe, spec, options)
    print(summary)
    _evaluate(pipe, source, options, args)
    _save(pipe, prepared.calibration, args)
    print(f"wrote {args.out} (loads with spiking_ddim.load_pipeline, or sample --model {args.out})")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    from ..pipelines import converted_components
    from ..reference import reference_pipeline
    from .common import recalibrate_with_bars

    spec = _check_out(args)
    pipe, options = _load(args)
    if not converted_components(pipe):
        raise SystemExit(f"error: {args.model} has no FS neurons to calibrate; convert it first with "
                         "`spiking-ddim convert --model ... --calibrate`")
    sites, message = recalibrate_with_bars(pipe, spec, options)
    print(message)
    if args.eval_images:
        try:
            source, record = reference_pipeline(pipe, "source", args.scheduler)
        except (FileNotFoundError, OSError, ValueError) as e:
            raise SystemExit(f"error: evaluation needs the model it was converted from ({e}); or pass "
                             "--eval-images 0") from None
        _evaluate(pipe, source, options, args, record["model"])
    _save(pipe, sites, args)
    print(f"wrote {args.out}")
    return 0
