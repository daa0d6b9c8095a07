"""``spiking-ddim sample`` (also ``python sample.py``): sample a diffusion pipeline and its spiking (FS) conversion from identical noise.

--model takes any diffusers pipeline with a UNet (DDPM, DDIM, latent diffusion, Stable
Diffusion; hub id or local directory) or a bare UNet directory. Both pipelines sample
through the pipeline's own __call__ (latents decoded, prompts and guidance applied), every
image from its own generator, so the original and the FS pipeline see identical noise.

With no arguments: load the embedded default (a small DDIM trained on digits), convert
every Swish to FS neurons, sample 1000 images from both models with a DDIM scheduler,
save PNGs and a side-by-side grid, and print the FS model's image loss against the
original (MSE, PSNR), FID, KID and IS of both against held-out real images, and the
energy of both per image: ANN MACs against the SNN's accumulates (ACs, one per spike per
output it reaches) and remaining MACs, priced at 4.6 pJ / MAC and 0.9 pJ / AC (45 nm,
Horowitz 2014). metrics.json holds every figure, per FS site and per layer too;
firing_rates.png and energy.png plot them.

The FS model is scored against --reference: by default the model it was converted from
(for an already converted --model, the source its record names, checked against the
weight digest recorded at conversion), so a fine-tuned model is never scored against its
own moved weights. The output folder is written whole or not at all (a staging folder
moved into place at the end); metrics.json records the model's history (conversion,
calibration, budget, fine-tuning), the reference, the scheduler and every setting.

Several processes split the images (torchrun --nproc_per_node 2 sample.py ..., or
accelerate launch): each image is computed exactly as one process computes it with the
same --batch-size and threads per process. A different batch size, thread count or
machine changes FS images slightly (FS neurons are discontinuous): the spread this
causes is measured by eval/noise_floor.py (eval/results/noise_floor.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from .flags import (
    add_budget_args,
    add_conversion_args,
    add_device_arg,
    add_energy_arg,
    add_metric_args,
    add_model_arg,
    add_reference_arg,
    add_sampling_args,
    help_text,
)

HELP = "sample a pipeline and its FS conversion from identical noise; print image loss, FID/KID, spikes, energy"


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_arguments(sub.add_parser("sample", help=HELP, description=help_text(__doc__),
                                 formatter_class=argparse.RawDescriptionHelpFormatter))


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=help_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_model_arg(p)
    add_conversion_args(p)
    add_sampling_args(p)
    p.add_argument("--calibrate", action="store_true", help="refit every FS site to its recorded inputs before sampling")
    add_budget_args(p)
    p.add_argument("--steps", type=int, default=20, help="denoising steps (default: %(default)s)")
    p.add_argument("--eta", type=float, default=0.0, help="DDIM eta in [0, 1], 0 = deterministic (default: %(default)s)")
    p.add_argument("--num-images", type=int, default=1000,
                   help="images per model; KID and FID need several hundred to be more than noise (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=100, help="images per batch (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="image i uses seed SEED+i (default: %(default)s)")
    add_device_arg(p)
    add_reference_arg(p)
    p.add_argument("--real", help="real images for FID / KID / IS: a folder, 'digits' (the held-out digits) or "
                                  "'photos' (2,000 held-out photographic crops); default: the built-in set of an "
                                  "embedded model and of models converted from it; 'none' skips these metrics")
    add_metric_args(p)
    add_energy_arg(p)
    p.add_argument("--out", type=Path, help="output directory (default: runs/sample-<date>-<time>)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty output directory (the whole folder, at the end of a successful run)")
    p.set_defaults(run=run)


def main(argv: list[str] | None = None) -> int:
    """``python sample.py``: the same flags as ``spiking-ddim sample``."""
    from . import guarded

    args = build_parser().parse_args(argv)
    return guarded(run, args)


def run(args: argparse.Namespace) -> int:
    import contextlib
    import time

    from accelerate import Accelerator
    from accelerate.utils import broadcast_object_list
    from tqdm import tqdm

    from ..comparison import MetricSettings, compare_and_write
    from ..outputs import OutputError, check_output, staged_output
    from ..pipelines import scheduler_record
    from .common import resolve_device

    constants, spec = _checked(args)
    device = resolve_device(args.device)
    real = _real_images(args)
    # Without cpu=True, Accelerate ignores torchrun's process group on a machine with no GPU.
    accelerator = Accelerator(cpu=device.type == "cpu")
    main_process = accelerator.is_main_process
    if args.out is None:  # one timestamped directory, chosen by the main process
        args.out = Path(broadcast_object_list([time.strftime("runs/sample-%Y%m%d-%H%M%S")])[0])
    try:
        check_output(args.out, args.overwrite)
    except OutputError as e:
        raise SystemExit(f"error: {e}") from None

    settings = MetricSettings(args.metrics, args.feature_extractor, args.inception_weights, args.kid_subset_size)
    with contextlib.ExitStack() as stack:
        staging = [None]
        if main_process:  # the output's lock before any work: a second writer is refused at once
            try:
                staging = [str(stack.enter_context(staged_output(args.out, args.overwrite)))]
            except OutputError as e:
                raise SystemExit(f"error: {e}") from None
        staging = Path(broadcast_object_list(staging)[0])
        original, fs_pipe, options, summary, reference = _pipelines(args, spec, device, accelerator, staging)
        real_features = _real_features(args, real) if main_process else None
        if main_process:
            print(summary, file=sys.stderr)
            print(f"reference: {reference['description']}", file=sys.stderr)
            for warning in reference.get("warnings", []):
                print(f"WARNING: reference: {warning}", file=sys.stderr)
            scheduler = scheduler_record(fs_pipe)
            if scheduler["source"].startswith("DEFAULT"):
                print(f"WARNING: scheduler: {scheduler['source']}", file=sys.stderr)
        with tqdm(total=args.num_images, desc="sample (original + FS)", unit="img", dynamic_ncols=True,
                  disable=not main_process) as bar:
            result = compare_and_write(original, fs_pipe, options, staging, args.num_images, args.batch_size,
                                       args.seed, reference, accelerator, real_features, settings, constants,
                                       run={"model": str(args.model)}, progress=bar.update)
        accelerator.wait_for_everyone()
    if main_process:
        _print(result, reference, args, _record(fs_pipe).coding)
        print(f"wrote {args.out}/original, {args.out}/fs, comparison.png, firing_rates.png, energy.png, metrics.json")
    return 0


def _checked(args: argparse.Namespace):
    """(energy constants, conversion spec) of the flags, every flag checked before any work."""
    from ..energy import EnergyConstants
    from .common import budget_from_flags, check_flags, require_positive

    try:
        constants = EnergyConstants.parse(args.energy)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    require_positive(args, "steps", "num_images", "batch_size")
    spec, _ = check_flags(args, budget=budget_from_flags(args, constants))
    _check_held_out(args, spec)
    return constants, spec


def _check_held_out(args: argparse.Namespace, spec) -> None:
    """Refuse, before any work, scored images whose seeds this run's own fits (calibration,
    a coding's encoders) would use: they are drawn from other streams, so only an unusual
    --seed can reach them."""
    from ..errors import SettingError
    from ..held_out import check_held_out
    from .common import flag_error

    try:
        check_held_out(spec.fit_seeds(), args.seed, args.num_images)
    except SettingError as e:
        raise flag_error(e) from None


def _record(pipe):
    """The record of ``pipe``'s UNet (else of its first converted component)."""
    from ..pipelines import converted_components

    done = converted_components(pipe)
    return (done["unet"] if "unet" in done else next(iter(done.values()))).fs_config


def _print(result, reference: dict, args: argparse.Namespace, coding) -> None:
    from ..metrics import describe_psnr

    m, energy = result.metrics, result.energy
    print(f"\n{result.header}\n  vs {reference['description']}, {m['pipeline']}, {m['num_images']} images, "
          f"{m['steps']} steps:")
    print(f"  image loss   MSE {m['mse']:.6f}   {describe_psnr(m)}")
    most = coding.most_spikes(m["K"])
    print(f"  spikes       {energy.spikes_per_neuron:.3f} per neuron per call (of at most {most}), "
          f"{energy.spikes_per_image:.4g} per image")
    print(f"  energy       {energy.summary()}")
    if not result.scores:
        print("  FID / KID    skipped (no real images: pass --real DIR)")
    for name, r in result.scores.items():
        print(f"  {name:<9} vs {r.n_real} real: " + "   ".join(r.lines()))
        for note in r.notes:
            print(f"  {name:<9} note: {note}")


def _pipelines(args: argparse.Namespace, spec, device, accelerator, staging: Path):
    """(reference pipeline, FS pipeline, resolved sampling options, conversion summary,
    reference record) for the flags: a plain --model prepared per ``spec`` (the fits on the
    main process, which writes calibration.json into ``staging``)."""
    import copy

    from ..held_out import check_pipeline_held_out
    from ..pipelines import SamplingOptions, converted_components, load_pipeline
    from ..reference import reference_pipeline
    from .common import prepare_with_bars, prompts_from_flags, recalibrate_with_bars

    try:
        pipe = load_pipeline(args.model, scheduler=args.scheduler)
        options = SamplingOptions(args.steps, args.eta, prompts_from_flags(args), args.guidance_scale).resolve(pipe)
        done = converted_components(pipe)
        if done:
            _refuse_conversion_flags(args)
            summary = "\n".join(f"{n}: already converted ({m.fs_config.summary()})" for n, m in done.items())
            check_pipeline_held_out(pipe, args.seed, args.num_images)  # its fits' images are never scored
            plain = None
            if spec.calibrate:
                sites, message = recalibrate_with_bars(pipe, spec, options, accelerator.is_main_process, accelerator)
                summary += "\n" + message
                if sites is not None:
                    _write_calibration(staging, sites)
        else:
            plain = copy.deepcopy(pipe)
            prepared, summary = prepare_with_bars(pipe, spec, options, accelerator.is_main_process, accelerator)
            if prepared.calibration is not None:
                _write_calibration(staging, prepared.calibration)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    try:
        original, reference = reference_pipeline(pipe, args.reference or "source", args.scheduler, original=plain)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: reference: {e}") from None
    return original.to(device), pipe.to(device), options, summary, reference


def _refuse_conversion_flags(args: argparse.Namespace) -> None:
    """``ValueError`` naming the conversion flags given for an already converted --model."""
    from ..codings import coding_class, coding_names
    from .common import coding_flags_given
    from .flags import flag_of

    given = [flag_of(dest) for dest in ("K", "method", "convert", "spiking", "coding", "weight_bits",
                                                 "layer_bits", "narrow_widths")
             if getattr(args, dest) is not None]
    given += [flag_of(coding_class(name).setting(setting)) for name in coding_names()
              for setting in coding_flags_given(args, name)]
    if given:
        raise ValueError(f"{args.model} is already converted; {', '.join(given)} apply to plain pipelines")


def _write_calibration(out: Path, sites: list) -> None:
    import json
    from dataclasses import asdict

    from fs_neurons.utils.files import atomic_write_text

    atomic_write_text(out / "calibration.json", json.dumps([asdict(s) for s in sites], indent=1) + "\n")


def _real_images(args: argparse.Namespace) -> Optional[str]:
    """The --real source (None: no generation metrics), checked with the metric flags before any work."""
    from ..data import BUILT_IN_SETS, count_images
    from ..embedded import embedded_model
    from ..metrics import check_metric_args
    from ..provenance import recorded_source

    try:
        source = embedded_model(args.model) or embedded_model(recorded_source(args.model))
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    real = args.real or (source.real if source is not None else None)
    if real is None or real == "none":
        return None
    try:
        n_real = None if real in BUILT_IN_SETS else count_images(real)
        check_metric_args(n_real, args.num_images, args.metrics, args.kid_subset_size)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: generation metrics: {e}") from None
    return real


def _real_features(args: argparse.Namespace, real: Optional[str]):
    """The real images' features (before sampling, so a bad set fails early), or None."""
    from ..metrics import check_metric_args, extract_features

    if real is None:
        return None
    try:
        feats = extract_features(real, args.feature_extractor, args.inception_weights, args.metrics, what="real")
        check_metric_args(feats.n, args.num_images, args.metrics, args.kid_subset_size)
        return feats
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: generation metrics: {e}") from None
