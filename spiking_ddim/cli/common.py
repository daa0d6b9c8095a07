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

from fs_neurons.names import UNET_METHOD

from ..calibration import SpikeBudget, calibrate, calibration_outcome, check_delta_fit, fit_delta
from ..convert import SiteReport
from ..defaults import DEFAULT_K, DELTA_COST, DELTA_IMAGES, DELTA_PRICE
from ..energy import EnergyConstants
from ..errors import SettingError
from ..outputs import OutputError, fresh_run_dir
from ..pipelines import SamplingOptions, check_conversion, convert_pipeline, read_prompts


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
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")


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


# The flag of each setting a library check names (spiking_ddim.errors.SettingError).
FLAGS = {"K": "--K", "method": "--method", "coding": "--coding", "delta_K": "--delta-K", "spiking": "--spiking",
         "components": "--convert", "spike_weight": "--delta-spike-weight", "price": "--delta-price",
         "cost": "--delta-cost", "num_images": "--delta-images", "steps": "--steps", "eta": "--eta",
         "prompts": "--prompt / --prompts", "guidance_scale": "--guidance-scale", "seed": "--seed"}
DELTA_FLAGS = ("delta_K", "delta_spike_weight", "delta_price", "delta_cost", "delta_images")


def flag_error(e: SettingError, flags: Optional[dict] = None) -> SystemExit:
    """The one-line exit of a bad setting, naming its flag (``flags`` overrides :data:`FLAGS`)."""
    flag = {**FLAGS, **(flags or {})}.get(e.name, e.name)
    return SystemExit(f"error: {flag}: {e}")


def check_flags(args: argparse.Namespace, steps: str = "steps") -> SamplingOptions:
    """Check every flag of a command that samples and may convert before anything is loaded
    (conversion, delta coding, sampling); ``steps``: the dest of the command's steps flag.
    The sampling options of the flags, to be resolved against the pipeline once loaded."""
    flags = {"steps": f"--{steps.replace('_', '-')}"}
    try:
        if hasattr(args, "coding"):
            coding = args.coding or "step"
            if coding != "delta":
                given = [flag for flag in DELTA_FLAGS if getattr(args, flag) is not None]
                if given:
                    raise SystemExit(f"error: --{given[0].replace('_', '-')} applies to --coding delta")
            if args.spiking == "all" and not getattr(args, "calibrate", False):
                raise SystemExit("error: --spiking all needs --calibrate: its input encoders are fitted to the inputs "
                                 "they see")
            check_conversion(conversion_names(args), DEFAULT_K if args.K is None else args.K, args.method or UNET_METHOD, coding,
                             args.delta_K, args.spiking or "swish")
            if coding == "delta":
                check_delta_fit(args.delta_spike_weight, args.delta_price or DELTA_PRICE, args.delta_cost or DELTA_COST,
                                DELTA_IMAGES if args.delta_images is None else args.delta_images)
        return SamplingOptions(getattr(args, steps), getattr(args, "eta", 0.0), prompts_from_flags(args),
                               args.guidance_scale).check()
    except SettingError as e:
        raise flag_error(e, flags) from None
    except (FileNotFoundError, ValueError) as e:  # a prompts file
        raise SystemExit(f"error: {e}") from None


def conversion_names(args: argparse.Namespace) -> list[str]:
    """The components --convert names (default: unet)."""
    return [c.strip() for c in (args.convert or "unet").split(",") if c.strip()]


def convert_from_flags(pipe: DiffusionPipeline, args: argparse.Namespace, options: SamplingOptions,
                       show: bool = True) -> str:
    """Convert ``pipe`` in place per --convert / --K / --method / --coding (checked before by
    :func:`check_flags`; with --coding delta, the encoders are fitted to the changes of
    ``options``' runs, under a progress bar); the conversion summary."""
    coding = args.coding or "step"
    reports = convert_pipeline(pipe, K=DEFAULT_K if args.K is None else args.K, method=args.method or UNET_METHOD,
                               components=conversion_names(args), coding=coding,
                               delta_K=args.delta_K if coding == "delta" else None, spiking=args.spiking or "swish")
    lines = [f"{n}: {r.summary()}" for n, r in reports.items()]
    if coding == "delta":
        images, price = args.delta_images or DELTA_IMAGES, args.delta_price or DELTA_PRICE
        cost = args.delta_cost or DELTA_COST
        with StageBars("delta coding: ", show) as bars:
            sites = fit_delta(pipe, options, num_images=images, spike_weight=args.delta_spike_weight,
                              progress=bars, price=price, cost=cost)
        spikes = sum(r["spikes_per_change"] for r in sites) / len(sites)
        weight = pipe.unet.fs_config.events("delta-fit")[-1]["spike_weight"]
        lines.append(f"delta coding: {len(sites)} encoders fitted to the changes of {images} images "
                     f"(spike weight {weight:g} per mean squared {price}{', by accumulates' if cost == 'acs' else ''}; "
                     f"{spikes:.3f} expected spikes per change on average)")
    return "\n".join(lines)


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


def calibrate_with_bar(pipe: DiffusionPipeline, options: SamplingOptions, num_images: int = 16, seed: int = 0,
                       show: bool = True, budget: Optional[SpikeBudget] = None) -> tuple[list[SiteReport], str]:
    """:func:`calibrate` under a progress bar; the site reports and a one-line summary."""
    with StageBars("calibrate: ", show) as bars:
        try:
            sites = calibrate(pipe, options, num_images=num_images, seed=seed, progress=bars, budget=budget)
        except ValueError as e:
            raise SystemExit(f"error: calibration: {e}") from None
    return sites, describe_calibration(calibration_outcome(sites), budget)


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
