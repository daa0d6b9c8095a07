"""``python train.py snn``: fine-tune a spiking (FS) UNet with Accelerate.

Modes:
* fine-tune: start from a diffusers model (plain: converted here with --K/--method, and
  calibrated with --calibrate; or an already converted one) and train every site's FS
  parameters through the surrogate gradient, the UNet weights too with --train-unet.
  Losses: ``denoise`` (noise prediction on data), ``distill`` (match the original network's
  noise prediction at the same noisy input and timestep) or ``both``. Distillation runs on
  the original network's own DDIM trajectories by default (``--distill-on``).
* --from-scratch: the paper's setting, a fresh UNet with FS activations in place, all
  weights trained on the denoising loss.
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fs_neurons.cli import require_positive, tqdm_progress
from fs_neurons.files import atomic_write_text
from fs_neurons.methods import METHODS
from fs_neurons.neuron import check_K

from .cli_ann import MODEL_DIR, add_train_args, build_unet, make_accelerator, resume_path, save_pipeline, train_config
from .convert import convert_unet, fs_activations, set_mode
from .data import load_images
from .diffusion import TRAIN_SCHEDULER, ddim_noise_gain, ddim_trajectories, load_scheduler, noisy_batch, train_scheduler
from .training import TrainConfig, config_json, train

TRAJECTORY_SEED = 1_000_000  # first seed of the teacher's DDIM runs for --distill-on trajectories
DEFAULTS = TrainConfig(steps=600, batch_size=32, lr=1e-3, weight_decay=0.0, ema_decay=0.99, checkpoint_every=100)


def add_snn_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "snn", help="fine-tune a converted (FS) UNet, or train one from scratch",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", help="diffusers model directory or hub id: plain (converted here) or already converted "
                                   "(default: the embedded digits DDIM; not with --from-scratch)")
    p.add_argument("--K", type=int, help="FS time steps when converting here (default: 8)")
    p.add_argument("--method", choices=METHODS, help="bank entry for the FS neurons when converting here (default: ours)")
    p.add_argument("--calibrate", action="store_true", help="calibrate every site before training (when converting here)")
    p.add_argument("--loss", choices=["denoise", "distill", "both"],
                   help="denoise: noise-prediction loss on data; distill: match the original network's noise "
                        "prediction; both (default: distill, or denoise with --from-scratch)")
    p.add_argument("--distill-on", choices=["data", "trajectories"], default="trajectories",
                   help="inputs of the distillation loss: data = noised training images at random timesteps; "
                        "trajectories = the original network's own DDIM trajectories (--trajectories runs of "
                        "--sampling-steps steps, computed once), the inputs it sees when sampling, each step's "
                        "error weighted by how far it moves that step's output (default: %(default)s)")
    p.add_argument("--trajectories", type=int, default=256, help="DDIM runs for --distill-on trajectories "
                                                                     "(default: %(default)s)")
    p.add_argument("--sampling-steps", type=int, default=20, help="DDIM steps of those runs (default: %(default)s)")
    p.add_argument("--train-unet", action="store_true", help="train the UNet weights too, not only the FS parameters")
    p.add_argument("--from-scratch", action="store_true",
                   help="the paper's setting: a fresh UNet with FS activations, all weights trained (denoise loss)")
    p.add_argument("--data", default="digits", help="'digits' or an image folder (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=16, help="with --from-scratch: resolution (default: %(default)s)")
    p.add_argument("--block-out-channels", type=int, nargs="+", default=[32, 64, 64], help="with --from-scratch: UNet widths")
    p.add_argument("--layers-per-block", type=int, default=2, help="with --from-scratch: resnets per level")
    p.add_argument("--attention-level", type=int, default=1, help="with --from-scratch: level with self-attention (-1: none)")
    add_train_args(p, DEFAULTS)
    p.set_defaults(run=run_snn)


def _check_flags(args: argparse.Namespace) -> None:
    if args.from_scratch:
        if args.model:
            raise SystemExit("error: conflicting flags: --from-scratch trains a fresh UNet, --model gives one")
        if args.loss in ("distill", "both"):
            raise SystemExit("error: conflicting flags: --from-scratch has no original network to distill from")
        if args.calibrate:
            raise SystemExit("error: conflicting flags: --calibrate needs a trained model, not --from-scratch")
    args.loss = args.loss or ("denoise" if args.from_scratch else "distill")
    require_positive(args, "trajectories", "sampling_steps")
    if args.K is not None:
        try:
            check_K(args.K)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None


def _prepare_models(args: argparse.Namespace, images: torch.Tensor, show_progress: bool):
    """(student, teacher or None, scheduler for sampling) according to the flags."""
    from .modeling import DEFAULT_MODEL, load_model, resolve_model_dir

    K, method = args.K or 8, args.method or "ours"
    if args.from_scratch:
        torch.manual_seed(args.seed)
        args.image_size = images.shape[-1]
        unet = build_unet(args, images.shape[1])
        convert_unet(unet, K=K, method=method)
        return unet, None, None
    try:
        model_dir = resolve_model_dir(args.model or DEFAULT_MODEL)
        unet = load_model(model_dir)
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    scheduler = load_scheduler(model_dir)
    spec = getattr(unet, "fs_conversion", None)
    if spec is not None:
        for flag, have in (("K", spec["K"]), ("method", spec["method"])):
            if getattr(args, flag) is not None and getattr(args, flag) != have:
                raise SystemExit(f"error: conflicting flags: --{flag} {getattr(args, flag)} but {model_dir} is already "
                                 f"converted with {flag}={have}")
        if args.calibrate:
            raise SystemExit(f"error: conflicting flags: --calibrate but {model_dir} is already converted")
        teacher = copy.deepcopy(unet)
        set_mode(teacher, "ann")  # the same weights with the original activations
        return unet, teacher.eval().requires_grad_(False), scheduler
    teacher = copy.deepcopy(unet).eval().requires_grad_(False)
    try:
        convert_unet(unet, K=K, method=method)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.calibrate:
        from .calibrate import calibrate

        unet.eval()
        with tqdm(desc="calibrate sites", unit="site", dynamic_ncols=True, disable=not show_progress) as bar:
            calibrate(unet, scheduler, seed=args.seed, progress=tqdm_progress(bar))
    return unet, teacher, scheduler


def trainable(unet: torch.nn.Module, train_unet: bool) -> list[torch.nn.Parameter]:
    """FS parameters always; every other weight only with ``train_unet``."""
    fs = {id(p) for _, act in fs_activations(unet) for p in act.parameters()}
    for p in unet.parameters():
        p.requires_grad_(train_unet or id(p) in fs)
    return [p for p in unet.parameters() if p.requires_grad]


def run_snn(args: argparse.Namespace) -> int:
    _check_flags(args)
    cfg = train_config(args)
    resume = resume_path(args)
    accelerator = make_accelerator(args.mixed_precision, cfg.grad_accum)
    try:
        images = load_images(args.data, args.image_size if args.from_scratch else _model_size(args), "train")
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    unet, teacher, scheduler = _prepare_models(args, images, accelerator.is_main_process)
    params = trainable(unet, args.train_unet or args.from_scratch)
    noise_scheduler = train_scheduler()
    if teacher is not None:
        teacher.to(accelerator.device)
    runs = None
    if args.loss in ("distill", "both") and args.distill_on == "trajectories":
        # the same seeds on every process; far from the seeds sample.py and eval/ use
        seeds = range(TRAJECTORY_SEED, TRAJECTORY_SEED + args.trajectories)
        x, t, eps = ddim_trajectories(teacher, scheduler, seeds, args.sampling_steps)
        # weight each step by its noise gain squared: the loss is the error of the step's output
        weight = ddim_noise_gain(scheduler, t) ** 2
        runs = (x, t, eps, weight / weight.mean())
    unet.train()
    if accelerator.is_main_process:
        atomic_write_text(args.out / "train_config.json", json.dumps(
            {"command": "snn", **{k: v for k, v in vars(args).items() if k != "run"}, "train": config_json(cfg),
             "trainable_parameters": sum(p.numel() for p in params)}, indent=1, default=str) + "\n")

    def loss_fn(model, g, _step):
        device = accelerator.device
        _, noise, t, xt = noisy_batch(images, noise_scheduler, cfg.batch_size, g, device)
        loss = torch.zeros((), device=device)
        if args.loss in ("denoise", "both"):
            loss = loss + F.mse_loss(model(xt, t).sample.float(), noise.float())
        if args.loss in ("distill", "both"):
            if runs is not None:
                idx = torch.randint(0, runs[0].shape[0], (cfg.batch_size,), generator=g)
                xt, t, target, weight = (r[idx].to(device) for r in runs)
            else:
                with torch.no_grad():
                    target = teacher(xt, t).sample.float()
                weight = torch.ones(cfg.batch_size, device=device)
            err = (model(xt, t).sample.float() - target).pow(2).mean(dim=(1, 2, 3))
            loss = loss + (weight * err).mean()
        return loss

    unet, ema, records = train(accelerator, unet, params, loss_fn, cfg, args.out, resume)
    if accelerator.is_main_process:
        ema.copy_to(params)
        unet = unet.to("cpu").eval()
        unet.fs_conversion["finetuned"] = True
        save_pipeline(unet, args.out / MODEL_DIR, TRAIN_SCHEDULER)
        first, last = records[0]["loss"], records[-1]["loss"]
        print(f"training loss {first:.5f} -> {last:.5f}; wrote {args.out / MODEL_DIR} (loads in sample.py --model)")
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


def _model_size(args: argparse.Namespace) -> int:
    """Resolution of the model to fine-tune (its config's sample_size)."""
    from .modeling import DEFAULT_MODEL, resolve_model_dir

    try:
        cfg = json.loads((resolve_model_dir(args.model or DEFAULT_MODEL) / "config.json").read_text())
    except (FileNotFoundError, OSError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    size = cfg.get("sample_size") or 32
    return size[0] if isinstance(size, list) else size


