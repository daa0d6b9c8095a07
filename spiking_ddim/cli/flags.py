"""Flags that several commands share, each defined once. Importable without torch, so that
every ``--help`` is quick; what the flags mean is implemented in the library."""

from __future__ import annotations

import argparse
import re
import typing
from pathlib import Path

from fs_neurons.names import BANK_METHODS, UNET_METHOD
from fs_neurons.search_config import OursConfig

from ..codings import coding_class, coding_fields, coding_names
from ..defaults import (
    BETA_SCHEDULES,
    DEFAULT_MODEL,
    FEATURE_SPACES,
    INCEPTION_ENV,
    METRICS,
    PREDICTION_TYPES,
    SPIKING,
    TIMESTEP_SPACINGS,
)
from ..spec import spec_default
from ..train_config import LR_SCHEDULES, TrainConfig


def help_text(doc: str) -> str:
    """A module docstring as ``--help`` shows it: reST markup (double backquotes, roles such
    as :mod:`x`) removed."""
    return re.sub(r":[a-z]+:`([^`]+)`", r"\1", re.sub(r"``(.+?)``", r"\1", doc))


def flag_of(dest: str) -> str:
    """The flag of an argparse dest (or a setting a library error names): ``--`` and the name with dashes."""
    return "--" + dest.replace("_", "-")


def add_model_arg(p: argparse.ArgumentParser, required: bool = False, what: str = "",
                  default: str | None = str(DEFAULT_MODEL)) -> None:
    """--model: a pipeline or UNet directory, or a hub id."""
    p.add_argument("--model", required=required, default=None if required else default,
                   help=what or "hub id, local diffusers pipeline (or UNet) directory, plain or already converted "
                                "by this package, or a shipped model: embedded:digits (the default, 16x16 digits) or "
                                "embedded:photos (32x32 RGB photographic crops)")


def add_conversion_args(p: argparse.ArgumentParser) -> None:
    """--convert, --K, --method, --spiking, --coding and its delta flags: how a plain pipeline is converted."""
    p.add_argument("--convert", metavar="NAMES",
                   help="comma-separated components to convert: unet, and vae or vqvae (their decoder) "
                        "(default: unet)")
    p.add_argument("--K", type=int, help=f"FS time steps per neuron (default: {spec_default('K')})")
    p.add_argument("--method", choices=BANK_METHODS,
                   help=f"bank entry to initialise FS neurons: {UNET_METHOD} (fitted to diffusion UNets' Swish inputs), "
                        f"or the paper-protocol entries fitted on [-8, 12] (default: {UNET_METHOD})")
    p.add_argument("--spiking", choices=SPIKING,
                   help="swish: the Swish sites spike, every other layer input stays analog; all: also the analog "
                        "inputs of the UNet's conv / linear layers are sent as signed FS codes, except the first "
                        "layer's (the attention score matmuls stay analog); needs --calibrate, which fits them "
                        "(default: swish)")
    p.add_argument("--weight-bits", type=int, metavar="BITS",
                   help="quantise every conv / linear weight of the converted components symmetrically per output "
                        "channel to BITS bits (8: 8-bit synapses), before calibration and encoder fits (default: "
                        "float32 weights)")
    p.add_argument("--layer-bits", action="append", metavar="LAYER=BITS",
                   help="with --weight-bits: quantise this UNet layer to BITS instead (repeatable), e.g. "
                        "conv_out=16: the output layer at 16 bits, as quantised networks commonly keep their last "
                        "layer wider")
    p.add_argument("--narrow-widths", action="store_true", default=None,
                   help="once fitted, sample the calibration images and record for every spike-fed layer's "
                        "accumulator and every site's state the narrowest integer width (16 or 32 bits) that holds "
                        "its range (in units of one accumulate of the smallest weight step and spike level); "
                        "sampling then counts values beyond them and the matched-precision energy prices them; "
                        "needs --weight-bits (default: 32-bit accumulators and state, unchecked)")
    p.add_argument("--coding", choices=coding_names(),
                   help="how the FS sites code across denoising steps: " + "; ".join(
                       f"{name}: {coding_class(name).description}" for name in coding_names())
                   + f" (default: {spec_default('coding').name})")
    for name in coding_names():
        add_coding_args(p, name)


def add_coding_args(p: argparse.ArgumentParser, name: str) -> None:
    """One flag per setting of the coding ``name`` (:mod:`spiking_ddim.codings`):
    ``--<name>-<setting>``, from the setting's field and its metadata (help, choices, metavar)."""
    cls = coding_class(name)
    hints = typing.get_type_hints(cls)
    for f in coding_fields(cls):
        kind = next((t for t in (int, float, str) if t in (hints[f.name], *typing.get_args(hints[f.name]))), str)
        default = "" if f.default is None else f" (default: {f.default})"
        dest = cls.setting(f.name)
        p.add_argument(flag_of(dest), dest=dest, type=kind,
                       choices=f.metadata.get("choices"), metavar=f.metadata.get("metavar"),
                       help=f"--coding {name}: {f.metadata.get('help', f.name)}{default}")


def add_sampling_args(p: argparse.ArgumentParser) -> None:
    """--scheduler, --prompt, --prompts, --guidance-scale: how a pipeline is called."""
    p.add_argument("--scheduler", choices=["ddim", "pipeline"], default="ddim",
                   help="ddim: a DDIMScheduler with the pipeline's scheduler configuration; pipeline: its own "
                        "(default: %(default)s)")
    p.add_argument("--prompt", action="append", metavar="TEXT",
                   help="text-conditional pipelines: a prompt (repeatable); image i gets prompt i mod the number "
                        "of prompts (default: a few built-in prompts)")
    p.add_argument("--prompts", type=Path, metavar="FILE", help="text-conditional pipelines: prompts, one per line")
    p.add_argument("--guidance-scale", type=float,
                   help="classifier-free guidance scale, >= 1 (1 = none) (default: the pipeline's)")


def add_budget_args(p: argparse.ArgumentParser) -> None:
    """--spike-budget / --energy-budget: calibration that trades error for spikes."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--spike-budget", type=float, metavar="S",
                   help="with --calibrate: at most S > 0 spikes per neuron per call on average over all FS sites; "
                        "calibration picks per site how much error to trade for spikes")
    g.add_argument("--energy-budget", type=float, metavar="R",
                   help="with --calibrate: an SNN/ANN energy ratio of at most R > 0 per image (spikes priced by the "
                        "accumulates they trigger; the dense layers set a floor)")


def add_reference_arg(p: argparse.ArgumentParser) -> None:
    """--reference: what a converted model is scored against (see spiking_ddim.reference)."""
    p.add_argument("--reference", metavar="source|self|PATH",
                   help="what the FS model is compared with: source = the model it was converted from, as its record "
                        "names it (weights checked against the digest recorded at conversion); self = its own "
                        "weights with the original activations; or a pipeline directory / hub id (default: source)")


def add_metric_args(p: argparse.ArgumentParser) -> None:
    """--metrics, --feature-extractor, --inception-weights, --kid-subset-size."""
    p.add_argument("--metrics", nargs="+", choices=METRICS, default=["fid", "kid", "isc"],
                   help="generation metrics: fid, kid, isc (Inception Score, or the shipped classifier's), prc "
                        "(precision / recall) (default: fid kid isc)")
    p.add_argument("--feature-extractor", choices=FEATURE_SPACES, default="auto",
                   help="feature space of the metrics: Inception, or the package's digits or photos CNN; auto = "
                        "Inception if its weights are available locally, else photos against --real photos and "
                        "digits otherwise (default: %(default)s)")
    p.add_argument("--inception-weights", help=f"Inception weights file for offline metrics (or set {INCEPTION_ENV})")
    p.add_argument("--kid-subset-size", type=int, help="images per KID subset, 2 to the smaller set's size "
                                                       "(default: min(1000, smaller set))")


def add_energy_arg(p: argparse.ArgumentParser) -> None:
    """--energy NAME=PJ: the price of an operation."""
    p.add_argument("--energy", action="append", default=[], metavar="NAME=PJ",
                   help="energy per operation in picojoules, replacing the 45 nm default (mac=4.6, ac=0.9); "
                        "repeatable, e.g. --energy mac=3.1 --energy ac=0.1")


def add_device_arg(p: argparse.ArgumentParser, default: str = "auto") -> None:
    p.add_argument("--device", default=default,
                   help="auto (CUDA when available, else the CPU), cpu, cuda or cuda:N (default: %(default)s)")


def add_train_args(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """Flags of the shared training loop (train ann and train snn)."""
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=defaults.batch_size,
                   help="images per step and process (default: %(default)s)")
    g.add_argument("--lr", type=float, default=defaults.lr, help="AdamW learning rate (default: %(default)s)")
    g.add_argument("--lr-scheduler", choices=LR_SCHEDULES, default=defaults.lr_scheduler,
                   help="learning-rate schedule (diffusers' get_scheduler) (default: %(default)s)")
    g.add_argument("--lr-warmup-steps", type=int, default=defaults.lr_warmup_steps,
                   help="linear warm-up steps of constant_with_warmup, linear and cosine (default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                   help="AdamW weight decay (default: %(default)s)")
    g.add_argument("--grad-accum", type=int, default=defaults.grad_accum,
                   help="gradient accumulation steps (default: %(default)s)")
    g.add_argument("--ema-decay", type=float, default=defaults.ema_decay,
                   help="EMA decay of the saved weights (default: %(default)s)")
    g.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no",
                   help="autocast precision (bf16 is the usual choice on CPU, fp16 on GPU) (default: %(default)s)")
    g.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every,
                   help="steps between checkpoints (default: %(default)s)")
    g.add_argument("--log-every", type=int, default=defaults.log_every,
                   help="steps between log records (loss, learning rate) in OUT/log.jsonl (default: %(default)s)")
    g.add_argument("--log-with", choices=["none", "tensorboard"], default="none",
                   help="also log loss, learning rate and validation to an experiment tracker in OUT/ (tensorboard: "
                        "pip install spiking-ddim[tensorboard]) (default: %(default)s)")
    g.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue the run in --out from one of its checkpoints (RUN/checkpoints/step_N), or 'latest'; "
                        "every setting but --steps, --log-every and --checkpoint-every must match the run's")
    g.add_argument("--seed", type=int, default=defaults.seed,
                   help="seed of weights, batches and noise (default: %(default)s)")
    g.add_argument("--out", type=Path, required=True, help="output directory")
    g.add_argument("--overwrite", action="store_true",
                   help="start afresh in a non-empty output directory (the old run is deleted whole first)")


def add_unet_shape_args(p: argparse.ArgumentParser, when: str = "") -> None:
    """--image-size, --block-out-channels, --layers-per-block, --attention-level, --norm-groups: a new UNet's
    shape; --beta-schedule, --prediction-type, --timestep-spacing: its diffusion."""
    p.add_argument("--image-size", type=int, default=16, help=f"{when}training resolution (default: %(default)s)")
    p.add_argument("--block-out-channels", type=int, nargs="+", default=[32, 64, 64],
                   help=f"{when}UNet widths per level (default: %(default)s)")
    p.add_argument("--layers-per-block", type=int, default=2, help=f"{when}resnets per level (default: %(default)s)")
    p.add_argument("--attention-level", type=int, default=1,
                   help=f"{when}level (0-based) with self-attention, -1 for none (default: %(default)s)")
    p.add_argument("--norm-groups", type=int, default=None,
                   help=f"{when}GroupNorm groups, dividing every width (default: 8, or the narrowest width if smaller)")
    p.add_argument("--beta-schedule", choices=BETA_SCHEDULES, default=BETA_SCHEDULES[0],
                   help=f"{when}noise schedule, recorded in the saved pipeline's scheduler: squaredcos_cap_v2 (cosine) "
                        "or linear (DDPM's 1e-4 to 0.02, as google/ddpm-cifar10-32; no image left at DDIM's first "
                        "step) (default: %(default)s)")
    p.add_argument("--prediction-type", choices=PREDICTION_TYPES, default=PREDICTION_TYPES[0],
                   help=f"{when}what the UNet outputs: epsilon (the noise) or v_prediction (the velocity; at the "
                        "noisiest timestep it is the clean image, so the first sampling step sets an image's "
                        "colours; use with --timestep-spacing trailing) (default: %(default)s)")
    p.add_argument("--timestep-spacing", choices=TIMESTEP_SPACINGS, default=TIMESTEP_SPACINGS[0],
                   help=f"{when}DDIM timesteps of the saved scheduler: leading (20 steps: 950, 900, ..., 0) or "
                        "trailing (999, 949, ..., 49: sampling starts where no image is left, as the noise it "
                        "starts from has none) (default: %(default)s)")


def add_search_args(p: argparse.ArgumentParser) -> None:
    """The effort of ``ours`` fits, in counts (a fit never stops on time)."""
    g = p.add_argument_group("ours: search effort (counts; the same flags give the same fit on a busy machine)")
    g.add_argument("--pool", type=int, default=OursConfig.pool,
                   help="starting neurons refined with exact gradients per restart (default: %(default)s)")
    g.add_argument("--restarts", type=int, default=OursConfig.restarts,
                   help="independent pools whose best neurons are merged (default: %(default)s)")
    g.add_argument("--rounds", type=int, default=OursConfig.rounds,
                   help="mutation rounds after the pools (default: %(default)s)")
