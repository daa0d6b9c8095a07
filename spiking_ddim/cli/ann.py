"""``spiking-ddim train ann`` (``python train.py ann``): train a diffusers UNet2DModel as a DDPM/DDIM with Accelerate.

Also the run-folder glue of ``train ann`` and ``train snn``: the lock on --out, a fresh
folder or a checked resume, and the run's record (:mod:`spiking_ddim.run_record`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

from ..train_config import TrainConfig
from .flags import add_train_args, add_unet_shape_args

MODEL_DIR = "model"


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The loop's settings from the flags; a clear error for one out of range."""
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      grad_accum=args.grad_accum, ema_decay=args.ema_decay, checkpoint_every=args.checkpoint_every,
                      log_every=args.log_every, seed=args.seed,
                      validate_every=getattr(args, "validate_every", TrainConfig.validate_every),
                      lr_scheduler=args.lr_scheduler, lr_warmup_steps=args.lr_warmup_steps)
    try:
        cfg.validate()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return cfg


def check_tracker(args: argparse.Namespace) -> None:
    """A clear error, before any work, when the --log-with tracker is not installed."""
    if args.log_with == "tensorboard":
        from accelerate.utils import is_tensorboard_available

        if not is_tensorboard_available():
            raise SystemExit("error: --log-with tensorboard: TensorBoard is not installed "
                             "(pip install 'spiking-ddim[tensorboard]')")


def make_accelerator(args: argparse.Namespace):
    """The Accelerator of a training run: devices, processes, --mixed-precision, gradient
    accumulation, and the --log-with tracker (its files under --out)."""
    import torch
    from accelerate import Accelerator

    log_with = None if args.log_with == "none" else args.log_with
    check_tracker(args)
    try:
        # Without cpu=True, Accelerate ignores torchrun's process group on a machine with no GPU.
        accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=args.mixed_precision,
                                  gradient_accumulation_steps=args.grad_accum, log_with=log_with,
                                  project_dir=str(args.out))
    except ValueError as e:  # e.g. fp16 without a GPU
        raise SystemExit(f"error: --mixed-precision {args.mixed_precision}: {e}") from None
    return accelerator


def begin_run(args: argparse.Namespace, command: str):
    """(loop settings, accelerator, checkpoint to resume or None, its run's record or None)
    of a training run: the folder made fresh or the resume checked, then the --log-with
    tracker started with the run's settings."""
    cfg = train_config(args)
    accelerator = make_accelerator(args)
    resume, previous = resume_path(args, command, accelerator)
    if args.log_with != "none":
        accelerator.init_trackers(f"train-{command}", config={k: v if isinstance(v, (int, float, str, bool)) else str(v)
                                                              for k, v in vars(args).items() if k != "run"})
    return cfg, accelerator, resume, previous


def resume_path(args: argparse.Namespace, command: str, accelerator) -> tuple[Path | None, dict | None]:
    """(checkpoint to resume from, its run's record), or (None, None) for a new run.

    A new run refuses a non-empty --out without --overwrite and with it removes the old run
    whole before anything is written (no old checkpoint survives to be rotated in). A resume
    refuses a folder that is not a checkpoint and any changed setting (see
    :mod:`spiking_ddim.run_record`). Call on every process; only the main one writes."""
    from ..run_record import check_resume, run_of_checkpoint, settings
    from ..training import checkpoints
    from .common import prepare_output_dir

    if args.resume is None:
        if accelerator.is_main_process:
            prepare_output_dir(args.out, args.overwrite)
        accelerator.wait_for_everyone()
        return None, None
    if args.resume == "latest":
        found = checkpoints(args.out / "checkpoints")
        if not found:
            raise SystemExit(f"error: --resume latest: no checkpoint in {args.out / 'checkpoints'}")
        path = found[-1]
    else:
        path = Path(args.resume)
        if not path.is_dir():
            raise SystemExit(f"error: checkpoint not found: {path}")
    if run_of_checkpoint(path) != args.out.resolve():
        raise SystemExit(f"error: --resume {path} is a checkpoint of {run_of_checkpoint(path)}, not of --out "
                         f"{args.out}; resume in the run's own folder")
    try:
        return path, check_resume(path, command, settings(vars(args)))
    except ValueError as e:
        raise SystemExit(f"error: --resume: {e}") from None


def locked_run(args: argparse.Namespace, body) -> int:
    """``body(args)`` holding the lock of --out (by the first process: RANK 0 under torchrun
    and accelerate launch), so no second run writes there. A new run that fails before its
    first checkpoint leaves no folder behind."""
    import shutil

    from ..outputs import OutputError, output_lock
    from ..training import checkpoints

    main = os.environ.get("RANK", "0") == "0"
    new = args.resume is None and not (args.out.is_dir() and any(args.out.iterdir()))
    with contextlib.ExitStack() as stack:
        if main:
            try:
                stack.enter_context(output_lock(args.out))
            except OutputError as e:
                raise SystemExit(f"error: {e}") from None
        try:
            return body(args)
        except BaseException:
            if main and new and not checkpoints(args.out / "checkpoints"):
                shutil.rmtree(args.out, ignore_errors=True)  # a new run that failed before any checkpoint: no trace
            raise


def record_writer(accelerator, args: argparse.Namespace, command: str, resume: Path | None,
                  previous: dict | None, extra: dict):
    """The ``on_start`` of :func:`spiking_ddim.training.train`: writes the run's record once the state has loaded."""
    from ..run_record import settings, write_record

    def write(_step: int) -> None:
        if accelerator.is_main_process:
            write_record(args.out, command, settings(vars(args)), extra, resume, previous)
    return write


def add_ann_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ann", help="train a diffusers UNet2DModel (DDPM loss) on digits or an image folder",
        description="Train a UNet2DModel with the DDPM noise-prediction loss (diffusers scheduler noise), "
                    "EMA, checkpoints and exact resume, on one CPU/GPU or several processes "
                    "(accelerate launch / torchrun). Writes OUT/model in diffusers' DDIMPipeline layout.",
    )
    p.add_argument("--data", default="digits",
                   help="'digits' (scikit-learn's bundled 8x8 digits, upscaled), 'photos' (50,000 RGB crops of the "
                        "photographs scikit-image and scikit-learn ship, spiking_ddim.photos) or an image folder "
                        "(default: %(default)s)")
    add_unet_shape_args(p)
    p.add_argument("--init-from", metavar="MODEL", default=None,
                   help="start from this trained UNet's weights (a pipeline folder, its unet/ folder or an embedded: "
                        "name) instead of random ones; its shape must be the one the flags above build, its "
                        "prediction type may differ (fine-tuning an epsilon model into a v_prediction one) "
                        "(default: random weights)")
    p.add_argument("--samples", type=int, default=64, help="DDIM samples in OUT/samples.png at the end (default: %(default)s)")
    add_train_args(p, TrainConfig())
    p.set_defaults(run=run_ann)


def check_unet_shape(args: argparse.Namespace) -> None:
    """A new UNet's shape flags checked before any work (--norm-groups against the widths)."""
    from ..diffusion import group_count

    try:
        group_count(args.block_out_channels, args.norm_groups)
    except ValueError as e:
        raise SystemExit(f"error: --norm-groups: {e}") from None


def diffusion_settings(args: argparse.Namespace) -> dict:
    """A new model's scheduler settings from --beta-schedule, --prediction-type and
    --timestep-spacing (for its training noise and its saved DDIM scheduler alike)."""
    return {"beta_schedule": args.beta_schedule, "prediction_type": args.prediction_type,
            "timestep_spacing": args.timestep_spacing}


def initial_weights(unet, source: str) -> None:
    """Load the UNet of ``source`` (a pipeline, UNet folder or embedded: name) into ``unet``;
    a one-line error when it is missing or shaped otherwise."""
    from ..pipelines import load_pipeline

    try:
        state = load_pipeline(source).unet.state_dict()
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: --init-from {source}: {str(e).splitlines()[0]}") from None
    mine = unet.state_dict()
    differ = sorted(set(mine) ^ set(state)) + [k for k in mine if k in state and mine[k].shape != state[k].shape]
    if differ:
        raise SystemExit(f"error: --init-from {source}: its UNet is not the shape the flags build ({len(differ)} "
                         f"weights missing, extra or shaped otherwise, e.g. {differ[0]}); pass the flags it was "
                         "trained with")
    unet.load_state_dict(state)


def run_ann(args: argparse.Namespace) -> int:
    train_config(args)  # flag errors before any work
    check_unet_shape(args)
    return locked_run(args, _run_ann)


def _run_ann(args: argparse.Namespace) -> int:
    import torch
    from diffusers import DDIMPipeline

    from ..data import image_grid, load_images, save_png
    from ..diffusion import build_unet, denoising_loss, sampling_scheduler, train_scheduler
    from ..pipelines import SamplingOptions, generate, load_pipeline, save_pipeline
    from ..training import config_json, train

    cfg, accelerator, resume, previous = begin_run(args, "ann")
    try:
        images = load_images(args.data, args.image_size, "train")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    torch.manual_seed(cfg.seed)
    try:
        unet = build_unet(args.image_size, images.shape[1], args.block_out_channels, args.layers_per_block,
                          args.attention_level, args.norm_groups)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.init_from:
        initial_weights(unet, args.init_from)
    scheduler = train_scheduler(**diffusion_settings(args))

    def loss_fn(model, g, _step):
        return denoising_loss(model, images, scheduler, cfg.batch_size, g)

    on_start = record_writer(accelerator, args, "ann", resume, previous, {"train": config_json(cfg)})
    result = train(accelerator, unet, list(unet.parameters()), loss_fn, cfg, args.out, resume, on_start=on_start)
    if accelerator.is_main_process:
        unet = result.model
        result.apply(list(unet.parameters()))
        unet = unet.to("cpu").eval()
        save_pipeline(DDIMPipeline(unet=unet, scheduler=sampling_scheduler(**diffusion_settings(args))),
                      args.out / MODEL_DIR)
        if args.samples > 0:
            x = generate(load_pipeline(args.out / MODEL_DIR), range(args.samples), SamplingOptions(steps=50))
            save_png(image_grid(x), args.out / "samples.png")
        print(f"wrote {args.out / MODEL_DIR} (diffusers DDIMPipeline layout) and {args.out / 'samples.png'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0
