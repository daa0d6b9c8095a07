"""What several commands do with their flags at run time: check them, turn them into library
arguments, drive progress bars, describe outcomes. Imported when a command runs, never for
``--help`` (the flags themselves are defined in :mod:`.flags`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

import torch
from diffusers import DiffusionPipeline
from tqdm import tqdm

from ..calibration import SpikeBudget, calibration_outcome
from ..codings import Coding, coding_class, coding_fields, coding_names
from ..convert import SiteReport
from ..energy import EnergyConstants
from ..errors import SettingError
from ..outputs import OutputError, fresh_run_dir
from ..pipelines import SamplingOptions, read_prompts
from ..recipe import Prepared, prepare, recalibrate
from ..spec import ConversionSpec
from .flags import flag_of


def prepare_output_dir(path: Path, overwrite: bool) -> Path:
    """An empty folder at ``path`` for a run that writes as it goes: refuses a non-empty one
    without ``overwrite``; with it, the old folder is removed whole first (never mixed)."""
    try:
        return fresh_run_dir(path, overwrite)
    except OutputError as e:
        raise SystemExit(f"error: {e}") from None


def resolve_device(name: str) -> torch.device:
    """--device as a torch device (``auto``: CUDA when available, else the CPU); a clear error
    for a malformed name or a GPU that is not there."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise SystemExit(f"error: --device {name!r} is not a device: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device {name!r}: spiking-ddim runs on cpu or cuda")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"error: --device {name}: no CUDA GPU is available here (torch.cuda.is_available() is "
                             "False); use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SystemExit(f"error: --device {name}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def require_positive(args: argparse.Namespace, *names: str) -> None:
    """Exit with a clear error when an integer flag among ``names`` (argparse dests) is < 1."""
    for name in names:
        if getattr(args, name) < 1:
            raise SystemExit(f"error: {flag_of(name)} must be >= 1, got {getattr(args, name)}")


class StageBars:
    """A ``progress(stage, done, total)`` callback of the library (calibration, encoder fits,
    searches, recording) shown as one tqdm bar per stage, each named ``prefix + stage``;
    a context manager that closes them."""

    def __init__(self, prefix: str = "", show: bool = True):
        self.prefix, self.show, self.bars = prefix, show, {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(total=total, desc=f"{self.prefix}{stage}", dynamic_ncols=True,
                                          disable=not self.show, mininterval=0.5)
        bar.total = total
        bar.update(done - bar.n)

    def __enter__(self) -> "StageBars":
        return self

    def __exit__(self, *_exc) -> None:
        for bar in self.bars.values():
            bar.close()


def prompts_from_flags(args: argparse.Namespace) -> Optional[tuple[str, ...]]:
    """--prompt and --prompts together, or None for none."""
    prompts = list(args.prompt or []) + (list(read_prompts(args.prompts)) if args.prompts else [])
    return tuple(prompts) or None


# The flag of each setting a library check names (spiking_ddim.errors.SettingError) where it is not
# "--" + the name with dashes (a coding's settings: --<coding>-<setting>).
FLAGS = {"components": "--convert", "budget": "--spike-budget / --energy-budget",
         "prompts": "--prompt / --prompts"}


def flag_error(e: SettingError, flags: Optional[dict] = None) -> SystemExit:
    """The one-line exit of a bad setting, naming its flag (``flags`` overrides :data:`FLAGS`)."""
    flag = {**FLAGS, **(flags or {})}.get(e.name, flag_of(e.name))
    return SystemExit(f"error: {flag}: {e}")


def coding_flags_given(args: argparse.Namespace, name: str) -> dict[str, object]:
    """The settings of the coding ``name`` whose flags (``--<name>-<setting>``, dest
    :meth:`Coding.setting`) ``args`` gives, by setting."""
    cls = coding_class(name)
    return {f.name: getattr(args, cls.setting(f.name)) for f in coding_fields(cls)
            if getattr(args, cls.setting(f.name), None) is not None}


def coding_from_flags(args: argparse.Namespace) -> Coding:
    """The coding of --coding and its own flags (``--<coding>-<setting>``); a flag of another
    coding is an error."""
    name = args.coding or ConversionSpec().coding.name
    for other in coding_names():
        given = coding_flags_given(args, other) if other != name else {}
        if given:
            flag = flag_of(coding_class(other).setting(next(iter(given))))
            raise SystemExit(f"error: {flag} applies to --coding {other}")
    return coding_of_flags(args, name)


def coding_of_flags(args: argparse.Namespace, name: str) -> Coding:
    """The coding ``name`` with the settings its flags (``--<name>-<setting>``) give; a bad
    value exits naming its flag."""
    try:
        return coding_class(name)(**coding_flags_given(args, name))
    except SettingError as e:
        raise flag_error(e) from None


def layer_bits_of_flags(args: argparse.Namespace) -> Optional[tuple[tuple[str, int], ...]]:
    """The (layer, bits) pairs of ``--layer-bits LAYER=BITS`` flags (None without any); a
    malformed one exits naming the flag."""
    items = getattr(args, "layer_bits", None)
    if not items:
        return None
    pairs = []
    for item in items:
        name, sep, bits = item.partition("=")
        if not sep or not name.strip() or not bits.strip().isdigit():
            raise SystemExit(f"error: --layer-bits: give LAYER=BITS, e.g. conv_out=16, got {item!r}")
        pairs.append((name.strip(), int(bits)))
    return tuple(pairs)


def spec_from_flags(args: argparse.Namespace, budget: Optional[SpikeBudget] = None,
                    fit_seed: Optional[int] = None) -> ConversionSpec:
    """The :class:`ConversionSpec` of a command's conversion flags (each flag that is given;
    the spec's defaults for the others); ``fit_seed``: the command's seed of its fits (where
    its --seed is one); a bad value exits naming its flag."""
    given = {"components": conversion_names(args), "K": args.K, "method": args.method, "spiking": args.spiking,
             "calibrate": getattr(args, "calibrate", None),
             "calibration_images": getattr(args, "calibration_images", None), "budget": budget,
             "seed": fit_seed, "weight_bits": args.weight_bits, "layer_bits": layer_bits_of_flags(args),
             "narrow_widths": args.narrow_widths}
    try:
        return ConversionSpec(coding=coding_from_flags(args), **{k: v for k, v in given.items() if v is not None})
    except SettingError as e:
        raise flag_error(e) from None


def check_flags(args: argparse.Namespace, steps: str = "steps", budget: Optional[SpikeBudget] = None,
                fit_seed: Optional[int] = None) -> tuple[Optional[ConversionSpec], SamplingOptions]:
    """Check every flag of a command that samples and may convert before anything is loaded
    (conversion, its coding, sampling); ``steps``: the dest of the command's steps flag. The
    conversion spec (None for a command without conversion flags) and the sampling options of
    the flags, to be resolved against the pipeline once loaded; ``budget`` and ``fit_seed``
    as :func:`spec_from_flags` takes them."""
    spec = spec_from_flags(args, budget, fit_seed) if hasattr(args, "coding") else None
    try:
        return spec, SamplingOptions(getattr(args, steps), getattr(args, "eta", 0.0), prompts_from_flags(args),
                                     args.guidance_scale).check()
    except SettingError as e:
        raise flag_error(e, {"steps": flag_of(steps)}) from None
    except (FileNotFoundError, ValueError) as e:  # a prompts file
        raise SystemExit(f"error: {e}") from None


def conversion_names(args: argparse.Namespace) -> list[str]:
    """The components --convert names (default: unet)."""
    return [c.strip() for c in (args.convert or "unet").split(",") if c.strip()]


def prepare_with_bars(pipe: DiffusionPipeline, spec: ConversionSpec, options: SamplingOptions, show: bool = True,
                      accelerator=None) -> tuple[Prepared, str]:
    """:func:`spiking_ddim.recipe.prepare` under progress bars; what it did, in words (the
    conversion per component, the calibration, the coding's fit)."""
    with StageBars("", show) as bars:
        try:
            done = prepare(pipe, spec, options, bars, accelerator)
        except SettingError as e:
            raise flag_error(e) from None
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    lines = [f"{n}: {r.summary()}" for n, r in done.reports.items()]
    if done.calibration is not None:
        lines.append(describe_calibration(calibration_outcome(done.calibration), spec.budget))
    if done.encoders:
        lines.append(spec.coding.describe_fit(done.encoders))
    return done, "\n".join(lines)


def recalibrate_with_bars(pipe: DiffusionPipeline, spec: ConversionSpec, options: SamplingOptions,
                          show: bool = True, accelerator=None) -> tuple[Optional[list[SiteReport]], str]:
    """:func:`spiking_ddim.recipe.recalibrate` (an already converted pipeline) under progress
    bars; the site reports (None off the main process) and what calibration did, in words."""
    with StageBars("", show) as bars:
        try:
            sites = recalibrate(pipe, spec, options, bars, accelerator)
        except ValueError as e:
            raise SystemExit(f"error: {e}") from None
    return sites, "" if sites is None else describe_calibration(calibration_outcome(sites), spec.budget)


def budget_from_flags(args: argparse.Namespace, constants: EnergyConstants = EnergyConstants()) -> Optional[SpikeBudget]:
    """The budget of --spike-budget / --energy-budget, or None; clear errors."""
    kind, value = next(((k, v) for k, v in (("spikes", args.spike_budget), ("energy", args.energy_budget))
                        if v is not None), (None, None))
    if kind is None:
        return None
    flag = {"spikes": "--spike-budget", "energy": "--energy-budget"}[kind]
    if not getattr(args, "calibrate", True):
        raise SystemExit(f"error: {flag} works through calibration: add --calibrate")
    try:
        return SpikeBudget(kind, value, constants)
    except ValueError as e:
        raise SystemExit(f"error: {flag}: {e}") from None


def describe_calibration(outcome: dict, budget: Optional[SpikeBudget]) -> str:
    """What a calibration did, in words that cannot be misread: error before and after, which
    way it moved, and every silenced site."""
    before, after, n = outcome["summed_mse_before"], outcome["summed_mse_after"], outcome["sites"]
    how = "" if budget is None else f" under the {budget.kind} budget {budget.value:g}"
    if after < before:
        change = f"{before / after:.2f}x lower" if after > 0 else "now zero"
    elif after > before:
        change = f"{after / before:.2f}x HIGHER: the budget costs accuracy" if before > 0 else "HIGHER"
    else:
        change = "unchanged"
    lines = [f"calibrated {n} sites{how}: summed MSE of the neurons on their own inputs {before:.4g} before, "
             f"{after:.4g} after ({change})"]
    silent = outcome["silent_sites"]
    if silent:
        lines.append(f"WARNING: {len(silent)} of {n} sites never spike{how} and output 0 everywhere: "
                     f"{', '.join(silent[:5])}{' ...' if len(silent) > 5 else ''}")
    return "\n".join(lines)
