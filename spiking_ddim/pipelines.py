"""Diffusers pipelines with FS neurons: load, convert, sample and record them.

A pipeline (DDPMPipeline, DDIMPipeline, LDMPipeline, StableDiffusionPipeline, ...) is
converted component by component: its UNet by default, the decoder of its VAE / VQ-VAE on
request, never its text encoder. It then keeps working through its own ``__call__``, so
latents are decoded, prompts encoded and classifier-free guidance applied as the pipeline
does it. :func:`generate` calls it with one generator per image, seeded by the image's
index, so an image gets the same noise in any batch or process and an original pipeline
and its FS copy run from identical noise. Images come back as float32 (N, C, H, W) tensors
in [-1, 1] on the CPU. :func:`record_denoiser_calls` keeps the UNet's inputs and outputs
of such runs (for distillation).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, Union

import torch
from diffusers import DDIMPipeline, DDIMScheduler, DiffusionPipeline
from torch import nn

from fs_neurons.names import UNET_METHOD
from fs_neurons.utils.choices import check_choice
from fs_neurons.utils.files import atomic_directory

from .codings import Coding
from .components import CONVERTIBLE, DECODERS, decoder, denoiser  # noqa: F401 - part of this module's API
from .convert import ConversionReport, check_settings, convert_unet, revert_unet
from .embedded import model_location
from .errors import SettingError
from .model_card import write_model_card
from .modeling import load_model  # importing modeling also lets diffusers find the Spiking<Base> classes
from .run_state import step_coding

# prompts for calibration and distillation of a text-conditional model when none are given
DEFAULT_PROMPTS = ("a photograph of a cat sitting on a wooden table", "a red sports car on a mountain road",
                   "a portrait of an old man with a beard, studio lighting", "a bowl of fruit, oil painting",
                   "a lighthouse on a rocky coast at sunset", "a city street at night in the rain")
# pipelines that hand their generators to scheduler.step, so that eta > 0 noise is per image
ETA_FROM_GENERATORS = ("DDIMPipeline", "StableDiffusionPipeline")


@dataclass(frozen=True)
class SamplingOptions:
    """How to call a pipeline: denoising steps, DDIM eta, prompts (image i gets
    ``prompts[i % len(prompts)]``) and classifier-free guidance scale (None: the pipeline's default)."""

    steps: int = 20
    eta: float = 0.0
    prompts: Optional[tuple[str, ...]] = None
    guidance_scale: Optional[float] = None

    def check(self) -> "SamplingOptions":
        """The checks that need no pipeline, before anything is loaded: steps >= 1, eta in
        [0, 1], prompts non-empty, a guidance scale >= 1. Raises :class:`SettingError`
        naming the setting; returns these options."""
        if self.steps < 1:
            raise SettingError("steps", f"steps must be >= 1, got {self.steps}")
        if not (0.0 <= self.eta <= 1.0):
            raise SettingError("eta", f"eta must be in [0, 1] (0: deterministic DDIM, 1: DDPM-like noise), got {self.eta}")
        if self.prompts is not None and (not self.prompts or any(not p.strip() for p in self.prompts)):
            raise SettingError("prompts", "prompts must be non-empty strings")
        if self.guidance_scale is not None and not (1.0 <= self.guidance_scale < float("inf")):
            raise SettingError("guidance_scale", f"guidance scale must be a finite number >= 1 (1 = no guidance), "
                                                 f"got {self.guidance_scale}")
        return self

    def resolve(self, pipe: DiffusionPipeline) -> "SamplingOptions":
        """These options checked (:meth:`check`) and checked against ``pipe``; a text model
        with no prompts gets :data:`DEFAULT_PROMPTS`. Raises ``ValueError`` naming the flag
        that does not fit."""
        self.check()
        name, params = type(pipe).__name__, _call_parameters(pipe)
        train_steps = pipe.scheduler.config.get("num_train_timesteps", None) if hasattr(pipe, "scheduler") else None
        if train_steps is not None and self.steps > train_steps:
            raise ValueError(f"steps must be at most the scheduler's {train_steps} training timesteps, got {self.steps}")
        if self.eta > 0 and ("eta" not in params or name not in ETA_FROM_GENERATORS):
            raise ValueError(f"eta > 0 needs a pipeline that draws the step noise from the per-image generators "
                             f"({', '.join(ETA_FROM_GENERATORS)}); {name} does not: use eta 0")
        conditional = "prompt" in params
        if self.prompts is not None and not conditional:
            raise ValueError(f"{name} is unconditional: it takes no prompt (drop --prompt / --prompts)")
        if self.guidance_scale is not None and "guidance_scale" not in params:
            raise ValueError(f"{name} has no classifier-free guidance (drop --guidance-scale)")
        prompts = self.prompts or (DEFAULT_PROMPTS if conditional else None)
        return replace(self, prompts=tuple(prompts) if prompts else None)


def read_prompts(path: Union[str, os.PathLike]) -> tuple[str, ...]:
    """Prompts from a text file, one per line (blank lines and lines starting with # skipped)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    prompts = tuple(line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    if not prompts:
        raise ValueError(f"prompts file {path} has no prompts (one per line)")
    return prompts


def _call_parameters(pipe: DiffusionPipeline) -> set[str]:
    return set(inspect.signature(pipe.__call__).parameters)


def load_pipeline(name_or_path: Union[str, os.PathLike], scheduler: str = "ddim") -> DiffusionPipeline:
    """A diffusers pipeline from a local directory, hub id or embedded model's name
    (``embedded:photos``, :mod:`.embedded`), FS components included; a bare
    UNet directory becomes a DDIMPipeline. ``scheduler="ddim"`` swaps the pipeline's scheduler
    for a DDIMScheduler of the same configuration; ``"pipeline"`` keeps it. A safety checker
    is not loaded (it would blank images, not change the model under test).

    Raises ``FileNotFoundError`` for a missing or non-diffusers directory and ``OSError``
    when a hub id cannot be fetched."""
    check_choice("scheduler", scheduler, ("ddim", "pipeline"))
    text = str(model_location(name_or_path))
    path = Path(text).expanduser()
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") != 1:
        if not path.is_dir():
            raise FileNotFoundError(f"model directory not found: {path}")
        if (path / "model_index.json").is_file():
            pipe = _from_pretrained(path, path / "model_index.json")
        elif (path / "config.json").is_file():
            pipe = _bare_unet_pipeline(path)
        else:
            raise FileNotFoundError(f"{path} is not a diffusers pipeline (model_index.json) or model (config.json)")
    else:
        try:
            pipe = _from_pretrained(text, DiffusionPipeline.load_config(text))
        except Exception as e:  # noqa: BLE001 - offline, unknown repo, auth: one message
            raise OSError(f"cannot fetch model {text!r} (a pipeline) from the Hugging Face hub ({type(e).__name__}: "
                          f"{' '.join(str(e).split())[:300]}). Offline? Pass a local diffusers directory instead.") from None
    return use_ddim_scheduler(pipe) if scheduler == "ddim" else pipe


def _bare_unet_pipeline(path: Path) -> DiffusionPipeline:
    """A DDIMPipeline around the UNet in ``path``, with the scheduler found beside it (or the
    training default); the pipeline's ``scheduler_source`` says which."""
    from .diffusion import load_scheduler

    try:
        class_name = json.loads((path / "config.json").read_text()).get("_class_name", "")
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"corrupt model config {path / 'config.json'}: {e}") from None
    if not str(class_name).startswith("UNet"):
        raise ValueError(f"{path} holds a {class_name or 'model of unknown class'}, not a UNet: pass a pipeline "
                         "directory (with model_index.json) or a UNet directory")
    scheduler, where = load_scheduler(path)
    pipe = DDIMPipeline(unet=load_model(path), scheduler=scheduler)
    pipe.register_to_config(_name_or_path=str(path))
    pipe.scheduler_source = where
    return pipe


def scheduler_record(pipe: DiffusionPipeline) -> dict:
    """The scheduler a pipeline samples with: class, configuration and where it came from."""
    config = {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
    where = getattr(pipe, "scheduler_source", None) or "the pipeline's scheduler configuration"
    return {"class": type(pipe.scheduler).__name__, "source": where, "config": config}


def use_ddim_scheduler(pipe: DiffusionPipeline) -> DiffusionPipeline:
    """Give ``pipe`` a DDIMScheduler with its scheduler's configuration (in place; returns it)."""
    if not isinstance(pipe.scheduler, DDIMScheduler):
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    return pipe


def _from_pretrained(source: Union[str, Path], index: Union[Path, dict]) -> DiffusionPipeline:
    if isinstance(index, Path):
        try:
            index = json.loads(index.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"corrupt pipeline index {index}: {e}") from None
    kwargs = {"safety_checker": None, "requires_safety_checker": False} if "safety_checker" in index else {}
    return DiffusionPipeline.from_pretrained(str(source), **kwargs)


def converted_components(pipe: DiffusionPipeline) -> dict[str, nn.Module]:
    """Components of ``pipe`` that hold FS neurons, by name."""
    return {n: m for n, m in pipe.components.items() if isinstance(m, nn.Module) and hasattr(m, "fs_config")}


def convert_pipeline(pipe: DiffusionPipeline, K: int = 8, method: str = UNET_METHOD, components: Sequence[str] = ("unet",),
                     bank_path: Optional[str] = None, coding: Union[str, Coding] = "step",
                     spiking: str = "swish", weight_bits: Optional[int] = None,
                     layer_bits: Optional[dict[str, int]] = None) -> dict[str, ConversionReport]:
    """Convert the named components of ``pipe`` in place (``unet``; ``vae`` / ``vqvae``: the
    decoder) and return one report per component; all or nothing. ``coding`` (a name or a
    coding object, :mod:`spiking_ddim.codings`): how the sites code across denoising steps,
    e.g. ``"delta"`` (fit its encoders with ``coding.fit`` before sampling; a coding across
    steps applies to the UNet, decoders keep per-step coding); ``spiking="all"``: FS encoders
    on the UNet's layers' analog inputs (calibrate to fit them); ``weight_bits``: every
    converted component's conv / linear weights quantised (:mod:`spiking_ddim.synapses`), the
    UNet's layers that ``layer_bits`` names at their own widths.
    Each component records
    the pipeline's source (``pipe.config._name_or_path``, set by :func:`load_pipeline`) and
    a digest of its weights. Raises ``ValueError`` for a pipeline without a UNet, a
    component it does not have or that cannot be converted, one already converted, or a
    component with no Swish."""
    coding = check_conversion(components, K, method, coding, spiking, bank_path)
    check_components(pipe, components)
    source = pipe.config.get("_name_or_path") or None
    reports: dict[str, ConversionReport] = {}
    try:
        for name in dict.fromkeys(components):
            reports[name] = convert_unet(pipe.components[name], K=K, method=method, bank_path=bank_path, source=source,
                                         component=name,
                                         coding=coding if name == "unet" or not coding.needs_denoiser else "step",
                                         spiking=spiking if name == "unet" else "swish", weight_bits=weight_bits,
                                         layer_bits=layer_bits if name == "unet" else None)
    except BaseException:
        for name in reports:
            revert_unet(pipe.components[name])
        raise
    # re-register: model_index.json then names the Spiking<Base> classes (see modeling)
    pipe.register_modules(**{name: pipe.components[name] for name in reports})
    return reports


def check_conversion(components: Sequence[str], K: int = 8, method: str = UNET_METHOD,
                     coding: Union[str, Coding] = "step", spiking: str = "swish",
                     bank_path: Optional[str] = None) -> Coding:
    """The checks of :func:`convert_pipeline` that need no pipeline, before anything is
    loaded: the component names (at least one, each convertible), the settings of
    :func:`spiking_ddim.convert.check_settings`, and a coding across denoising steps or full
    spiking only with the UNet among the components (decoders keep per-step coding). Raises
    :class:`SettingError` (``components`` for the names); returns the resolved coding."""
    if not components:
        raise SettingError("components", "name at least one component to convert")
    unknown = [n for n in components if n not in CONVERTIBLE]
    if unknown:
        raise SettingError("components", f"{unknown[0]!r} is not a component spiking-ddim converts: "
                                          f"{', '.join(CONVERTIBLE)} (text encoders stay as they are)")
    coding = check_settings(K, method, coding, spiking, bank_path)
    for odd, value, default, what in ((coding.needs_denoiser, coding.name, "step", "coding"),
                                      (spiking != "swish", spiking, "swish", "spiking")):
        if odd and "unet" not in components:
            raise SettingError(what, f"{what} {value!r} applies to the UNet (a denoiser called once per denoising "
                                     f"step; decoders keep {default!r}): add unet to the components")
    return coding


def check_components(pipe: DiffusionPipeline, components: Sequence[str]) -> None:
    """``ValueError`` unless :func:`convert_pipeline` can convert ``components`` of ``pipe``."""
    denoiser(pipe)
    if not components:
        raise ValueError("name at least one component to convert")
    for name in components:
        if name not in pipe.components or pipe.components[name] is None:
            have = ", ".join(n for n in CONVERTIBLE if isinstance(getattr(pipe, n, None), nn.Module))
            raise ValueError(f"{type(pipe).__name__} has no component {name!r} (it can convert: {have})")
        if name not in CONVERTIBLE:
            raise ValueError(f"component {name!r} is not converted: spiking-ddim converts {', '.join(CONVERTIBLE)} "
                             "(text encoders stay as they are)")
        if hasattr(pipe.components[name], "fs_config"):
            raise ValueError(f"component {name!r} is already converted")


def save_pipeline(pipe: DiffusionPipeline, path: Union[str, os.PathLike]) -> None:
    """``pipe.save_pretrained(path)`` (safetensors), written atomically; FS components save
    with their conversion and load back with :func:`load_pipeline`; a converted pipeline
    gets a model card (README.md, :mod:`spiking_ddim.model_card`)."""
    with atomic_directory(path) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        done = converted_components(pipe)
        if done:
            write_model_card(tmp, {n: m.fs_config for n, m in done.items()}, pipeline=True)


@torch.no_grad()
def generate(pipe: DiffusionPipeline, indices: Sequence[int], options: SamplingOptions, seed: int = 0) -> torch.Tensor:
    """Images ``indices`` from ``pipe.__call__``: image i from ``torch.Generator().manual_seed(seed + i)``
    with prompt ``prompts[i % len(prompts)]``; float32 (len(indices), C, H, W) in [-1, 1] on the CPU.
    Turns the pipeline's own progress bar off."""
    options = options.resolve(pipe)
    params = _call_parameters(pipe)
    kwargs: dict = {"generator": [torch.Generator().manual_seed(seed + int(i)) for i in indices],
                    "num_inference_steps": options.steps, "output_type": "np"}
    if options.prompts is not None:
        kwargs["prompt"] = [options.prompts[int(i) % len(options.prompts)] for i in indices]
    else:
        kwargs["batch_size"] = len(indices)
    if "eta" in params:
        kwargs["eta"] = options.eta
    if options.guidance_scale is not None:
        kwargs["guidance_scale"] = options.guidance_scale
    pipe.set_progress_bar_config(disable=True)
    images = pipe(**kwargs).images
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() * 2 - 1


@dataclass
class DenoiserCalls:
    """The UNet's calls during sampling, one row per batch element (CFG halves included), on the
    CPU: ``sample`` (N, C, H, W), ``timestep`` (N,), ``encoder_hidden_states`` (N, L, D) or None,
    ``output`` (N, C, H, W)."""

    sample: torch.Tensor
    timestep: torch.Tensor
    encoder_hidden_states: Optional[torch.Tensor]
    output: torch.Tensor

    def __len__(self) -> int:
        return self.sample.shape[0]

    def rows(self, idx: torch.Tensor) -> "DenoiserCalls":
        ehs = self.encoder_hidden_states
        return DenoiserCalls(self.sample[idx], self.timestep[idx], None if ehs is None else ehs[idx], self.output[idx])

    def to(self, device: torch.device) -> "DenoiserCalls":
        ehs = self.encoder_hidden_states
        return DenoiserCalls(self.sample.to(device), self.timestep.to(device),
                             None if ehs is None else ehs.to(device), self.output.to(device))

    def run(self, unet: nn.Module) -> torch.Tensor:
        """``unet`` on these inputs, moved to its device and dtype: its prediction (N, C, H, W),
        on its device. Recorded calls are not steps of one run: a delta-coded model codes
        each in full (:func:`spiking_ddim.run_state.step_coding`)."""
        weight = next(unet.parameters())
        move = {"device": weight.device, "dtype": weight.dtype}
        ehs = self.encoder_hidden_states
        kwargs = {} if ehs is None else {"encoder_hidden_states": ehs.to(**move)}
        with step_coding(unet):
            return unet(self.sample.to(**move), self.timestep.to(weight.device), **kwargs).sample


_RECORDED = ("sample", "timestep", "encoder_hidden_states")


# progress(stage, done, total) of a long library call, one count per stage (shown by the CLI as a bar per stage)
Progress = Optional[Callable[[str, int, int], None]]


@contextlib.contextmanager
def counting_denoiser_calls(pipe: DiffusionPipeline, images: int, batch_size: int, options: SamplingOptions,
                            progress: Progress, stage: str) -> Iterator[None]:
    """Inside the block, ``progress(stage, done, total)`` after every call of ``pipe``'s
    denoiser: ``total`` = the denoising steps of sampling ``images`` images in batches of
    ``batch_size`` with ``options`` (a pipeline that calls its denoiser more often counts on
    past it, ``total`` then grows with ``done``)."""
    if progress is None:
        yield
        return
    total = -(-images // batch_size) * options.steps
    done = [0]

    def count(*_args) -> None:
        done[0] += 1
        progress(stage, done[0], max(total, done[0]))

    progress(stage, 0, total)
    handle = denoiser(pipe).register_forward_hook(count)
    try:
        yield
    finally:
        handle.remove()


def record_denoiser_calls(pipe: DiffusionPipeline, indices: Sequence[int], options: SamplingOptions, seed: int = 0,
                          batch_size: int = 64, progress: Progress = None) -> DenoiserCalls:
    """Sample images ``indices`` (as :func:`generate`) and keep every call of the pipeline's
    UNet: what a converted UNet sees when it samples (latents, timesteps, text embeddings
    and classifier-free guidance as the pipeline does them); ``progress("record calls",
    done, total)`` counts them. Raises ``ValueError`` when the pipeline passes the UNet
    conditioning other than text embeddings."""
    unet = denoiser(pipe)
    calls: list[tuple] = []

    def hook(_module, args, kwargs, output):
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        extra = [k for k, v in kwargs.items()
                 if k not in _RECORDED + ("return_dict",) and v is not None and not (isinstance(v, dict) and not v)]
        if extra:
            raise ValueError(f"{type(pipe).__name__} passes its UNet {', '.join(extra)}; recording keeps sample, "
                             "timestep and encoder_hidden_states only")
        t = torch.as_tensor(t).reshape(-1).expand(sample.shape[0])
        ehs = kwargs.get("encoder_hidden_states")
        out = output.sample if hasattr(output, "sample") else output[0]
        calls.append((sample.float().cpu(), t.long().cpu(), None if ehs is None else ehs.float().cpu(), out.float().cpu()))

    handle = unet.register_forward_hook(hook, with_kwargs=True)
    try:
        with counting_denoiser_calls(pipe, len(indices), batch_size, options, progress, "record calls"):
            for start in range(0, len(indices), batch_size):
                generate(pipe, indices[start:start + batch_size], options, seed)
    finally:
        handle.remove()
    ehs = None if calls[0][2] is None else torch.cat([c[2] for c in calls])
    return DenoiserCalls(torch.cat([c[0] for c in calls]), torch.cat([c[1] for c in calls]), ehs,
                         torch.cat([c[3] for c in calls]))
