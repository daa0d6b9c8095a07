"""``spiking-ddim train ann`` (``python train.py ann``): train a diffusers UNet2DModel as a DDPM/DDIM with Accelerate."""

from __future__ import annotations

import argparse
import contextlib
import os
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers import DDIMPipeline, UNet2DModel

from ..data import grid, load_images, save_png, to_uint8
from ..diffusion import TRAIN_SCHEDULER, denoising_loss, train_scheduler
from ..outputs import OutputError, output_lock
from ..run_record import check_resume, run_of_checkpoint, settings, write_record
from ..training import TrainConfig, checkpoints, config_json, train
from .common import prepare_output_dir

MODEL_DIR = "model"


def add_train_args(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """Flags of the shared training loop (ann and snn)."""
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=defaults.batch_size, help="images per step and process (default: %(default)s)")
    g.add_argument("--lr", type=float, default=defaults.lr, help="AdamW learning rate (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay (default: %(default)s)")
    g.add_argument("--grad-accum", type=int, default=defaults.grad_accum, help="gradient accumulation steps (default: %(default)s)")
    g.add_argument("--ema-decay", type=float, default=defaults.ema_decay, help="EMA decay of the saved weights (default: %(default)s)")
    g.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no",
                   help="autocast precision (bf16 is the usual choice on CPU, fp16 on GPU) (default: %(default)s)")
    g.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every, help="steps between checkpoints (default: %(default)s)")
    g.add_argument("--log-every", type=int, default=defaults.log_every, help="steps between log records (default: %(default)s)")
    g.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue the run in --out from one of its checkpoints (RUN/checkpoints/step_N), or 'latest'; "
                        "every setting but --steps, --log-every and --checkpoint-every must match the run's")
    g.add_argument("--seed", type=int, default=defaults.seed, help="seed of weights, batches and noise (default: %(default)s)")
    g.add_argument("--out", type=Path, required=True, help="output directory")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh in a non-empty output directory (the old run is deleted whole first)")


def train_config(args: argparse.Namespace) -> TrainConfig:
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                      grad_accum=args.grad_accum, ema_decay=args.ema_decay, checkpoint_every=args.checkpoint_every,
                      log_every=args.log_every, seed=args.seed,
                      validate_every=getattr(args, "validate_every", TrainConfig.validate_every))
    try:
        cfg.validate()
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    return cfg


def make_accelerator(mixed_precision: str, grad_accum: int) -> Accelerator:
    try:
        # Without cpu=True, Accelerate ignores torchrun's process group on a machine with no GPU.
        return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision,
                           gradient_accumulation_steps=grad_accum)
    except ValueError as e:  # e.g. fp16 without a GPU
        raise SystemExit(f"error: --mixed-precision {mixed_precision}: {e}") from None


def resume_path(args: argparse.Namespace, command: str, accelerator: Accelerator) -> tuple[Path | None, dict | None]:
    """(checkpoint to resume from, its run's record), or (None, None) for a new run.

    A new run refuses a non-empty --out without --overwrite and with it removes the old run
    whole before anything is written (no old checkpoint survives to be rotated in). A resume
    refuses a folder that is not a checkpoint and any changed setting (see
    :mod:`spiking_ddim.run_record`). Call on every process; only the main one writes."""
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
    and accelerate launch), so no second run writes there."""
    with contextlib.ExitStack() as stack:
        if os.environ.get("RANK", "0") == "0":
            try:
                stack.enter_context(output_lock(args.out))
            except OutputError as e:
                raise SystemExit(f"error: {e}") from None
        return body(args)


def record_writer(accelerator: Accelerator, args: argparse.Namespace, command: str, resume: Path | None,
                  previous: dict | None, extra: dict):
    """The ``on_start`` of :func:`train`: writes the run's record once the state has loaded."""
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
                   help="'digits' (scikit-learn's bundled 8x8 digits, upscaled) or an image folder (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=16, help="training resolution (default: %(default)s)")
    p.add_argument("--block-out-channels", type=int, nargs="+", default=[32, 64, 64], help="UNet widths (default: %(default)s)")
    p.add_argument("--layers-per-block", type=int, default=2, help="resnets per UNet level (default: %(default)s)")
    p.add_argument("--attention-level", type=int, default=1,
                   help="UNet level (0-based) with self-attention, -1 for none (default: %(default)s)")
    p.add_argument("--samples", type=int, default=64, help="DDIM samples in OUT/samples.png at the end (default: %(default)s)")
    add_train_args(p, TrainConfig())
    p.set_defaults(run=run_ann)


def build_unet(args: argparse.Namespace, channels: int) -> UNet2DModel:
    levels = len(args.block_out_channels)
    down = ["AttnDownBlock2D" if i == args.attention_level else "DownBlock2D" for i in range(levels)]
    up = ["AttnUpBlock2D" if levels - 1 - i == args.attention_level else "UpBlock2D" for i in range(levels)]
    return UNet2DModel(sample_size=args.image_size, in_channels=channels, out_channels=channels,
                       layers_per_block=args.layers_per_block, block_out_channels=tuple(args.block_out_channels),
                       down_block_types=tuple(down), up_block_types=tuple(up),
                       norm_num_groups=min(8, min(args.block_out_channels)))


def save_pipeline(unet: UNet2DModel, path: Path, scheduler_config: dict) -> None:
    """``DDIMPipeline(unet, DDIM scheduler).save_pretrained(path)``, atomically."""
    from diffusers import DDIMScheduler

    from ..pipelines import save_pipeline as save

    save(DDIMPipeline(unet=unet, scheduler=DDIMScheduler(**scheduler_config)), path)


def run_ann(args: argparse.Namespace) -> int:
    train_config(args)  # flag errors before any work
    return locked_run(args, _run_ann)


def _run_ann(args: argparse.Namespace) -> int:
    cfg = train_config(args)
    accelerator = make_accelerator(args.mixed_precision, cfg.grad_accum)
    resume, previous = resume_path(args, "ann", accelerator)
    try:
        images = load_images(args.data, args.image_size, "train")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    torch.manual_seed(cfg.seed)
    unet = build_unet(args, images.shape[1])
    scheduler = train_scheduler()

    def loss_fn(model, g, _step):
        return denoising_loss(model, images, scheduler, cfg.batch_size, g)

    on_start = record_writer(accelerator, args, "ann", resume, previous, {"train": config_json(cfg)})
    result = train(accelerator, unet, list(unet.parameters()), loss_fn, cfg, args.out, resume, on_start=on_start)
    if accelerator.is_main_process:
        unet = result.model
        result.apply(list(unet.parameters()))
        unet = unet.to("cpu").eval()
        save_pipeline(unet, args.out / MODEL_DIR, TRAIN_SCHEDULER)
        if args.samples > 0:
            from ..pipelines import SamplingOptions, generate, load_pipeline

            x = generate(load_pipeline(args.out / MODEL_DIR), range(args.samples), SamplingOptions(steps=50))
            save_png(grid(to_uint8(x)), args.out / "samples.png")
        print(f"wrote {args.out / MODEL_DIR} (diffusers DDIMPipeline layout) and {args.out / 'samples.png'}")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0
