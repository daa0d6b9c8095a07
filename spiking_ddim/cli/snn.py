"""``spiking-ddim train snn`` (``python train.py snn``): fine-tune a spiking (FS) UNet with Accelerate.

Modes:
* fine-tune: start from a diffusers pipeline or UNet (plain: converted here with --K /
  --method / --convert, and calibrated with --calibrate; or an already converted one) and
  train the UNet's FS parameters through the surrogate gradient, its weights too with
  --train-unet (a converted decoder keeps its neurons). Losses: ``denoise`` (noise
  prediction on data), ``distill`` (match the original network's noise prediction at the
  same input) or ``both``. Distillation runs by default on the inputs the UNet sees when
  the original pipeline samples (``--distill-on trajectories``): latents for latent
  models, text embeddings of --prompts and classifier-free guidance for text models.
  Latent models take only that loss.
  The weights kept are those (EMA applied) whose images of --held-out further sampling
  runs are closest (MSE) to the original pipeline's from the same noise, scored at the
  start and every --validate-every steps: fine-tuning never leaves the model worse on
  them than it began.
* --from-scratch: the paper's setting, a fresh UNet with FS activations in place, all
  weights trained on the denoising loss.
"""

from __future__ import annotations

import argparse
import sys

from ..train_config import TrainConfig
from .flags import (
    add_budget_args,
    add_conversion_args,
    add_model_arg,
    add_reference_arg,
    add_sampling_args,
    add_train_args,
    add_unet_shape_args,
    help_text,
)

DEFAULTS = TrainConfig(steps=600, batch_size=32, lr=1e-3, weight_decay=0.0, ema_decay=0.99, checkpoint_every=100)


def add_snn_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "snn", help="fine-tune a converted (FS) UNet, or train one from scratch",
        description=help_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_arg(p, default=None, what="diffusers pipeline or UNet directory, or hub id: plain (converted here) or "
                                        "already converted (default: the embedded digits DDIM; not with --from-scratch)")
    add_conversion_args(p)
    add_sampling_args(p)
    p.add_argument("--calibrate", action="store_true", help="calibrate every site before training (when converting here)")
    add_budget_args(p)
    add_reference_arg(p)
    p.add_argument("--loss", choices=["denoise", "distill", "both"],
                   help="denoise: noise-prediction loss on data; distill: match the reference's noise prediction; "
                        "both (default: distill, or denoise with --from-scratch)")
    p.add_argument("--distill-on", choices=["data", "trajectories"], default="trajectories",
                   help="inputs of the distillation loss: data = noised training images at random timesteps; "
                        "trajectories = the UNet's inputs when the reference pipeline samples (--trajectories "
                        "images of --sampling-steps steps, computed once), each step's error weighted by how far "
                        "it moves that step's output (default: %(default)s)")
    p.add_argument("--trajectories", type=int, default=256, help="images sampled for --distill-on trajectories "
                                                                     "(default: %(default)s)")
    p.add_argument("--held-out", type=int, default=32,
                   help="when fine-tuning: images sampled from other seeds by the reference and the FS pipeline; "
                        "their MSE scores the model every --validate-every steps and the best-scoring weights are "
                        "saved (0: keep the final EMA weights) (default: %(default)s)")
    p.add_argument("--validate-every", type=int, default=DEFAULTS.validate_every,
                   help="steps between those scores (default: %(default)s)")
    p.add_argument("--sampling-steps", type=int, default=20, help="DDIM steps of those runs (default: %(default)s)")
    p.add_argument("--train-unet", action="store_true", help="train the UNet weights too, not only the FS parameters")
    p.add_argument("--freeze-neurons", action="store_true",
                   help="with --train-unet: keep the FS parameters as they are and train the weights only, so a "
                        "spike or energy budget's per-site choice stays (spikes still move a little with the "
                        "sites' inputs)")
    p.add_argument("--from-scratch", action="store_true",
                   help="the paper's setting: a fresh UNet with FS activations, all weights trained (denoise loss)")
    p.add_argument("--data", help="training images for --loss denoise / both, --distill-on data and --from-scratch: "
                                  "'digits' or an image folder (default: digits)")
    add_unet_shape_args(p, when="with --from-scratch: ")
    add_train_args(p, DEFAULTS)
    p.set_defaults(run=run_snn)


def _check_flags(args: argparse.Namespace) -> None:
    from .ann import check_tracker, check_unet_shape
    from .common import budget_from_flags, check_flags, coding_from_flags, require_positive

    budget = budget_from_flags(args)  # flag errors before any work
    if args.from_scratch:
        check_unet_shape(args)
        if coding_from_flags(args).needs_denoiser or args.spiking == "all":
            raise SystemExit(f"error: --coding {args.coding} and --spiking all fit their encoders to a trained "
                             "model's sampling runs; train from scratch with the defaults, then convert or fine-tune "
                             "the result with them")
        if args.model:
            raise SystemExit("error: conflicting flags: --from-scratch trains a fresh UNet, --model gives one")
        if args.loss in ("distill", "both"):
            raise SystemExit("error: conflicting flags: --from-scratch has no original network to distill from")
        if args.calibrate:
            raise SystemExit("error: conflicting flags: --calibrate needs a trained model, not --from-scratch")
        if args.freeze_neurons:
            raise SystemExit("error: conflicting flags: --from-scratch trains the FS parameters with the weights")
    if args.freeze_neurons and not args.train_unet:
        raise SystemExit("error: --freeze-neurons leaves nothing to train without --train-unet")
    args.loss = args.loss or ("denoise" if args.from_scratch else "distill")
    if args.data is not None and not (args.from_scratch or args.loss != "distill" or args.distill_on == "data"):
        raise SystemExit("error: conflicting flags: --data is used only with --loss denoise / both, --distill-on data "
                         "or --from-scratch")
    args.data = args.data or "digits"
    require_positive(args, "trajectories", "sampling_steps", "validate_every")
    if args.held_out < 0:
        raise SystemExit(f"error: --held-out must be >= 0, got {args.held_out}")
    args.conversion = check_flags(args, steps="sampling_steps", budget=budget, fit_seed=args.seed)[0]
    check_tracker(args)


def _prepare_pipelines(args: argparse.Namespace, show_progress: bool):
    """(student pipeline, reference pipeline, sampling options, reference record) for
    fine-tuning, per the flags: the reference is --reference (by default the model the
    student was converted from)."""
    import copy

    from ..defaults import DEFAULT_MODEL
    from ..pipelines import SamplingOptions, converted_components, load_pipeline
    from ..reference import reference_pipeline
    from .common import prepare_with_bars, prompts_from_flags

    try:
        pipe = load_pipeline(args.model or DEFAULT_MODEL, scheduler=args.scheduler)
        options = SamplingOptions(args.sampling_steps, 0.0, prompts_from_flags(args), args.guidance_scale).resolve(pipe)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    done = converted_components(pipe)
    if done:
        spec = pipe.unet.fs_config if "unet" in done else next(iter(done.values())).fs_config
        for flag, have in (("K", spec.K), ("method", spec.method), ("coding", spec.coding.name),
                           ("spiking", spec.spiking), ("weight_bits", spec.weight_bits),
                           ("narrow_widths", bool(spec.widths)), ("layer_bits", spec.layer_bits)):
            if getattr(args, flag) is not None and getattr(args, flag) != have:
                raise SystemExit(f"error: conflicting flags: --{flag} {getattr(args, flag)} but {args.model} is already "
                                 f"converted with {flag}={have}")
        if args.calibrate:
            raise SystemExit(f"error: conflicting flags: --calibrate but {args.model} is already converted")
        student, plain, how = pipe, None, args.reference or "source"
    else:
        if args.reference not in (None, "source", "self"):
            raise SystemExit("error: --reference PATH applies to an already converted --model; a plain model is its "
                             "own source")
        student, plain, how = copy.deepcopy(pipe), pipe, "source"
        _, message = prepare_with_bars(student, args.conversion, options, show=show_progress)
        if show_progress:
            print(message, file=sys.stderr)
    try:
        reference, record = reference_pipeline(student, how, args.scheduler, original=plain)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: reference: {e}") from None
    if show_progress:
        for warning in record.get("warnings", []):
            print(f"WARNING: reference: {warning}", file=sys.stderr)
    return student, reference, options, record


def _from_scratch(args: argparse.Namespace, images):
    """The paper's setting: a fresh UNet with FS activations, in a DDIMPipeline."""
    import torch
    from diffusers import DDIMPipeline

    from ..convert import convert_unet
    from ..diffusion import build_unet, sampling_scheduler
    from .ann import diffusion_settings

    torch.manual_seed(args.seed)
    args.image_size = images.shape[-1]
    unet = build_unet(args.image_size, images.shape[1], args.block_out_channels, args.layers_per_block,
                      args.attention_level, args.norm_groups)
    convert_unet(unet, K=args.conversion.K, method=args.conversion.method)
    return DDIMPipeline(unet=unet, scheduler=sampling_scheduler(**diffusion_settings(args)))


def run_snn(args: argparse.Namespace) -> int:
    from .ann import locked_run, train_config

    _check_flags(args)
    train_config(args)  # flag errors before any work
    return locked_run(args, _run_snn)


def _run_snn(args: argparse.Namespace) -> int:
    from ..diffusion import noise_schedule_of
    from ..finetune import FinetuneLoss, trainable
    from ..pipelines import decoder
    from ..training import config_json, train
    from .ann import begin_run, record_writer

    cfg, accelerator, resume, previous = begin_run(args, "snn")
    needs_data = args.loss in ("denoise", "both") or args.distill_on == "data"
    reference = None
    if args.from_scratch:
        images = _load_images(args.data, args.image_size)
        student, teacher, options = _from_scratch(args, images), None, None
    else:
        student, teacher, options, reference = _prepare_pipelines(args, accelerator.is_main_process)
        if needs_data and decoder(teacher) is not None:
            raise SystemExit(f"error: {type(teacher).__name__} is a latent model: --loss denoise / both and "
                             "--distill-on data need training images in the UNet's space; use --loss distill "
                             "--distill-on trajectories")
        images = _load_images(args.data, teacher.unet.config.sample_size) if needs_data else None
    unet = student.unet
    params = trainable(unet, args.train_unet or args.from_scratch, not args.freeze_neurons)
    calls, weights, validate = _teacher_inputs(args, student, teacher, options, accelerator)
    unet.train()
    loss_fn = FinetuneLoss(args.loss, cfg.batch_size, accelerator.device,
                           noise_schedule_of(student.scheduler), images, calls, weights,
                           teacher.unet if teacher is not None else None)
    on_start = record_writer(accelerator, args, "snn", resume, previous,
                             {"train": config_json(cfg), "trainable_parameters": sum(p.numel() for p in params),
                              "reference_used": reference})
    result = train(accelerator, unet, params, loss_fn, cfg, args.out, resume, validate, on_start=on_start)
    if accelerator.is_main_process:
        result.apply(params)
        _finish(args, cfg, student, options, result, reference, trained_from_reference=teacher is not None)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def _teacher_inputs(args: argparse.Namespace, student, teacher, options, accelerator):
    """(trajectory calls, their weights, the held-out score) from the reference ``teacher``
    (None each without one, or where the flags do not ask for them)."""
    from functools import partial

    from ..finetune import TRAJECTORY_SEED, image_error, trajectory_calls
    from ..pipelines import generate
    from .common import StageBars

    calls = weights = validate = None
    if teacher is not None:
        teacher.to(accelerator.device)
        if args.loss in ("distill", "both") and args.distill_on == "trajectories":
            with StageBars("train snn: ", accelerator.is_main_process) as bars:  # the reference's calls to learn from
                calls, weights = trajectory_calls(teacher, options, range(args.trajectories), progress=bars)
        if args.held_out > 0:
            student.to(accelerator.device)
            held_out = range(args.trajectories, args.trajectories + args.held_out)
            reference_images = generate(teacher, held_out, options, TRAJECTORY_SEED)
            validate = partial(image_error, student, held_out, options, reference_images)
    return calls, weights, validate


def _finish(args: argparse.Namespace, cfg, student, options, result, reference, trained_from_reference: bool) -> None:
    """Record the fine-tuning in the UNet's history, refit its coding's encoders to trained
    weights, save the pipeline and print what training did (main process)."""
    from ..held_out import trajectory_seeds
    from ..pipelines import save_pipeline
    from ..record import add_event
    from .ann import MODEL_DIR

    unet = student.unet
    student.to("cpu")
    unet.eval()
    scores = [r["validation"] for r in result.records if "validation" in r]
    losses = [r["loss"] for r in result.records if "loss" in r]
    add_event(unet, "finetune", run=str(args.out.resolve()), steps=cfg.steps, kept_step=result.step,
              loss=args.loss, distill_on=args.distill_on, train_unet=bool(args.train_unet or args.from_scratch),
              freeze_neurons=args.freeze_neurons, from_scratch=args.from_scratch, lr=cfg.lr,
              batch_size=cfg.batch_size, seed=cfg.seed, reference=reference, trajectories=args.trajectories,
              held_out=args.held_out, image_seeds=trajectory_seeds(args.trajectories, args.held_out)
              if trained_from_reference else [],
              held_out_mse_start=scores[0] if scores else None, held_out_mse_kept=min(scores) if scores else None)
    if args.train_unet:
        _refit_encoders(student, options)
    save_pipeline(student, args.out / MODEL_DIR)
    print(f"training loss {losses[0]:.5f} -> {losses[-1]:.5f}; wrote {args.out / MODEL_DIR} (loads in spiking-ddim "
          "sample --model)")
    if scores:
        print(f"held-out image MSE against {reference['description'] if reference else 'the reference'}: "
              f"{scores[0]:.4g} at the start, {min(scores):.4g} kept (step {result.step})")


def _refit_encoders(student, options) -> None:
    """Trained weights change what every site sees from step to step: fit the coding's
    encoders again, as the model's last fit did (nothing for per-step coding)."""
    from ..recipe import refit_encoders
    from .common import StageBars

    with StageBars("refit to the trained weights: ") as bars:
        sites = refit_encoders(student, options, progress=bars)
    if sites:
        print(f"{student.unet.fs_config.coding.name} coding: {len(sites)} encoders refitted to the trained weights' "
              "changes", file=sys.stderr)


def _load_images(data: str, size: int):
    from ..data import load_images

    try:
        return load_images(data, size, "train")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
