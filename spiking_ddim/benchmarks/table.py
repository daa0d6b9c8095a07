"""The network table (``eval/ddim_table.py``): one row per model (the original, then each K,
method and coding), their markdown table and plots.

A job is (K, method, coding): method a bank entry, ``+cal`` for calibrated; coding ``step``
or ``delta``, ``+all`` for fully spiking (calibrated methods only). :func:`job_spec` is the
conversion a job names, :func:`row` one model's measured row (:mod:`.rows`' keys and the
table's own: ``method``, ``coding``, ``x0``-MAE, FID, the energy by operation type and the
firing rate per site), :func:`merge` the rows of a partial re-run into a table.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from diffusers import DiffusionPipeline

from ..codings import Coding, coding_class, coding_names, row_fields
from ..energy import EnergyConstants
from ..metrics import generation_metrics, spread_cells, x0_mae
from ..pipelines import SamplingOptions
from ..spec import ConversionSpec
from .rows import energy_fields, merge_rows, quality_fields, sample_metered

METHODS = ["random", "gaussian", "tbpi", "ours", "ours-unet", "ours+cal", "ours-unet+cal"]
CODINGS = [f"{name}{suffix}" for suffix in ("", "+all") for name in coding_names()]


def job_spec(K: int, method: str, coding: str, components: list[str], codings: dict[str, Coding],
             seed: int = 0) -> ConversionSpec:
    """The conversion of a job; ``codings``: the coding object of each coding name (its settings)."""
    name, _, spiking = coding.partition("+")
    return ConversionSpec(components=tuple(components), K=K, method=method.replace("+cal", ""),
                          coding=codings.get(name) or coding_class(name)(), spiking=spiking or "swish",
                          calibrate=method.endswith("+cal"), seed=seed)


def plan_jobs(Ks: list[int], methods: list[str], codings: list[str]) -> tuple[list[tuple[int, str, str]], list[str]]:
    """The jobs (K, method, coding) of a table, and the combinations skipped (fully spiking
    codings with an uncalibrated method)."""
    jobs = [(K, m, c) for K in Ks for m in methods for c in codings if m.endswith("+cal") or not c.endswith("+all")]
    skipped = sorted({f"{c} with {m}" for m in methods for c in codings if c.endswith("+all") and not m.endswith("+cal")})
    return jobs, skipped


def real_images(pipe: DiffusionPipeline, real: Optional[str], feature_extractor: str = "auto",
                inception_weights: Optional[str] = None) -> tuple[Any, Optional[torch.Tensor]]:
    """The features of the real images ``real`` (digits or a folder; None: none) for FID /
    KID, and the images themselves at the UNet's size for x0-MAE (pixel-space models only)."""
    from ..data import load_images
    from ..metrics import extract_features
    from ..pipelines import decoder

    if real is None:
        return None, None
    features = extract_features(real, feature_extractor, inception_weights, ("fid", "kid"), what="real")
    pixels = decoder(pipe) is None  # x0-MAE needs clean images in the UNet's own space
    return features, load_images(real, pipe.unet.config.sample_size, "test") if pixels else None


@dataclass
class Scoring:
    """How every row of a table is measured: sampling ``options``, the ``settings`` every row
    shares (num_images, steps, seed, ...), the batch size, energy ``constants``, the real
    images' features for FID / KID (``real``; None: none) and real images for x0-MAE
    (``held_out``; None: none) with the feature extractor and Inception weights."""

    options: SamplingOptions
    settings: dict
    batch_size: int
    constants: EnergyConstants
    real: Any = None
    held_out: Optional[torch.Tensor] = None
    feature_extractor: str = "auto"
    inception_weights: Optional[str] = None


def row(name: str, pipe: DiffusionPipeline, reference: Optional[torch.Tensor], scoring: Scoring,
        finetuned: bool = False) -> tuple[dict, torch.Tensor]:
    """One table row for ``pipe`` (original or converted, scored against the original's
    ``reference`` images; None for the original itself), and its images."""
    n, seed, options = scoring.settings["num_images"], scoring.settings["seed"], scoring.options
    images, energy, seconds = sample_metered(pipe, options, n, scoring.batch_size, seed, scoring.constants)
    record = getattr(pipe.unet, "fs_config", None)
    out = {"K": record.K if record else None, "method": name, "calibrated": bool(record and record.calibrated),
           "finetuned": finetuned, **row_fields(record.coding if record else None),
           "spiking": record.spiking if record else None,
           "mae_x0": None if scoring.held_out is None else x0_mae(pipe.unet, pipe.scheduler, scoring.held_out,
                                                                  seed=seed),
           "fid": None, "kid_mean": None, "kid_std": None, "feature_extractor": None, "kid_label": "KID",
           "fid_label": "FID", **energy_fields(energy), "ann_macs_per_image": energy.ann_macs_per_image,
           "energy_by_kind": energy.by_kind, "site_firing_rates": energy.firing_rates,
           "sample_seconds": round(seconds, 1), "num_images": n, "steps": options.steps, "settings": scoring.settings}
    if record is None:
        out["spikes_per_neuron"] = None
    if scoring.real is not None:
        r = generation_metrics(scoring.real, images, scoring.feature_extractor, scoring.inception_weights,
                               ("fid", "kid"))
        out.update(fid=r.fid, kid_mean=r.kid_mean, kid_std=r.kid_std, feature_extractor=r.feature_extractor,
                   kid_label=r.label("KID"), fid_label=r.label("FID"))
    return {**out, **quality_fields(reference, images)}, images


def table_rows(pipe: DiffusionPipeline, jobs: list[tuple[str, ConversionSpec]], finetuned: list[DiffusionPipeline],
               scoring: Scoring, progress: Optional[Callable[[str], None]] = None) -> list[dict]:
    """The original's row, one per job (its method label and the conversion, made by
    :func:`spiking_ddim.recipe.prepare` on a copy of ``pipe``, with the seconds of its fits
    and its coding's fit settings) and one per fine-tuned pipeline; ``progress(label)``
    before each row."""
    from ..recipe import prepare

    tick = progress or (lambda _label: None)
    tick("original")
    first, reference = row("original", pipe, None, scoring)
    rows = [first]
    for method, spec in jobs:
        tick(f"K={spec.K} {method} {spec.coding.name}{'+all' if spec.spiking == 'all' else ''}")
        fs = copy.deepcopy(pipe)
        t0 = time.perf_counter()
        done = prepare(fs, spec, scoring.options)
        seconds = round(time.perf_counter() - t0, 1) if spec.calibrate or done.encoders else None
        rows.append({**row(method, fs, reference, scoring)[0], "calibration_seconds": seconds,
                     **fit_fields(fs.unet.fs_config.coding)})
    for tuned in finetuned:
        record = tuned.unet.fs_config
        tick(f"fine-tuned K={record.K} {record.method}")
        rows.append(row(record.method + ("+cal" if record.calibrated else ""), tuned, reference, scoring,
                        finetuned=True)[0])
    return rows


def fit_fields(coding: Coding) -> dict:
    """A row's spike weight, price and cost: those its coding's encoders were fitted with
    (None each for a coding without them)."""
    return {key: getattr(coding, key, None) for key in ("spike_weight", "price", "cost")}


def coding_label(r: dict) -> str:
    """A row's coding as the table writes it: step, delta, step+all or delta+all (rows written
    before codings were recorded are step); "-" for the original."""
    if r["method"] == "original":
        return "-"
    return (r.get("coding") or "step") + ("+all" if r.get("spiking") == "all" else "")


def series(r: dict) -> str:
    """A row's curve in the plots: its method, and its coding where that is not step."""
    coding = coding_label(r)
    return r["method"] if coding in ("step", "-") else f"{r['method']} {coding}"


def _key(r: dict) -> tuple:
    coding = coding_label(r)
    return (r["K"] or 0, r["method"] != "original", r["finetuned"], CODINGS.index(coding) if coding in CODINGS else -1,
            METHODS.index(r["method"]) if r["method"] in METHODS else len(METHODS), r["method"])


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """``old`` with the rows of ``new`` replacing those of the same (K, method, coding, finetuned), in table order."""
    return merge_rows(old, new, _key)


def _cell(r: dict, key: str, fmt: str) -> str:
    value = r.get(key)
    return "-" if value is None else ("inf" if isinstance(value, float) and math.isinf(value) else format(value, fmt))


def _weight(r: dict) -> str:
    if r.get("spike_weight") is None:
        return ""
    return f" (W={r['spike_weight']:g}" + (" per value" if r.get("price") == "value" else "") + (
        ", by ACs" if r.get("cost") == "acs" else "") + ")"


def _kid_cell(r: dict) -> str:
    return "-" if r.get("kid_mean") is None else f"{r['kid_mean']:.5f} +- {r['kid_std']:.5f}"


def markdown(rows: list[dict], model: str, pipeline: str, convert: str, constants: EnergyConstants, floor: str) -> str:
    """ddim_table.md: the settings, the noise ``floor`` sentence and one line per row; ``model``
    names the model in words."""
    first = rows[0]
    kid_label, fid_label, n, steps = first["kid_label"], first.get("fid_label", "FID"), first["num_images"], first["steps"]
    lines = [f"# Spiking diffusion: FS neurons in {model} ({pipeline}, converted: {convert})",
             "",
             f"{n} samples per row, {steps} DDIM steps (eta 0), same seeds for every row. "
             f"PSNR / MSE: FS samples vs the original's from identical noise (PSNR of the mean MSE; median / p5: "
             "the median and 5th-percentile per-image PSNR; < 30 dB: the share of images below 30 dB); x0-MAE: the paper's image loss on "
             f"held-out images; {fid_label} and {kid_label} against held-out real images. Cost per generated image "
             f"({steps} forward passes): ACs and MACs of the SNN, energy ratio SNN / ANN at "
             f"{constants.mac_pj} pJ per MAC and {constants.ac_pj} pJ per AC "
             f"(the ANN: {first['ann_macs_per_image']:.4g} MACs, {first['ann_joules_per_image'] * 1e3:.3g} mJ); "
             "the same SNN cost against the ANN with 8-bit integer MACs (0.23 pJ), and the memory-aware estimate "
             "(SRAM accesses by buffer size, docs/energy.md). Coding: step sends every site's full code at every "
             "denoising step, delta only changes between steps (docs/delta.md; W: the encoders' spike price, "
             "by ACs: priced by the accumulates a spike causes), +all: "
             "fully spiking. Fit s: seconds of calibration and delta fitting. "
             "Written by `python eval/ddim_table.py`.",
             "", floor, "",
             f"| K | method | coding | fine-tuned | PSNR (dB) | median / p5 (dB) | < 30 dB | MSE | x0-MAE | {fid_label} | {kid_label} | spikes/neuron | "
             "ACs/image | MACs/image | energy SNN/ANN | SNN/INT8 ANN | memory-aware SNN/ANN | fit s | "
             "sample s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['K'] or '-'} | {r['method']} | {coding_label(r)}{_weight(r)} | {'yes' if r['finetuned'] else 'no'} | "
                     f"{_cell(r, 'psnr', '.2f')} | {spread_cells(r)} | {r['mse']:.2e} | {_cell(r, 'mae_x0', '.4f')} | "
                     f"{_cell(r, 'fid', '.3f')} | {_kid_cell(r)} | {_cell(r, 'spikes_per_neuron', '.3f')} | "
                     f"{_cell(r, 'snn_acs_per_image', '.3e')} | {_cell(r, 'snn_macs_per_image', '.3e')} | "
                     f"{_cell(r, 'energy_ratio', '.3f')} | {_cell(r, 'energy_ratio_int8', '.3f')} | "
                     f"{_cell(r, 'memory_ratio', '.3f')} | {_cell(r, 'calibration_seconds', '')} | "
                     f"{r['sample_seconds']} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """ddim_table.png: KID, x0-MAE and PSNR against K, one curve per method (and coding)."""
    from fs_neurons.utils.figures import new_figure, save_figure

    original = next(r for r in rows if r["method"] == "original")
    fig, axes = new_figure(1, 3, figsize=(15, 4.2))
    for ax, key, title in zip(axes, ("kid_mean", "mae_x0", "psnr"),
                              (original["kid_label"], "image loss (x0-MAE)", "PSNR vs original (dB)")):
        for name in dict.fromkeys(series(r) for r in rows if r["method"] != "original"):
            pts = sorted((r["K"], r[key]) for r in rows if series(r) == name and not r["finetuned"]
                         and r[key] is not None)
            if pts:
                ax.plot(*zip(*pts), "o-", label=name)
        tuned = sorted((r["K"], r[key]) for r in rows if r["finetuned"] and r[key] is not None)
        if tuned:
            ax.plot(*zip(*tuned), "k*", markersize=12, label="fine-tuned")
        if original[key] is not None:
            ax.axhline(original[key], color="gray", ls="--", label="original")
        ax.set_xlabel("K")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].set_yscale("log")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)


def plot_costs(rows: list[dict], firing_path: Path, energy_path: Path, constants: EnergyConstants) -> None:
    """Firing rate per site and energy by operation type of one method at every K
    (ours+cal where the table has it)."""
    from ..plots import plot_energy_split, plot_firing_rates

    have = [r for r in rows if r.get("site_firing_rates") and not r["finetuned"] and coding_label(r) == "step"]
    if not have:
        return
    method = "ours+cal" if any(r["method"] == "ours+cal" for r in have) else have[-1]["method"]
    chosen = sorted((r for r in have if r["method"] == method), key=lambda r: r["K"])
    plot_firing_rates({f"K={r['K']}": r["site_firing_rates"] for r in chosen}, firing_path,
                      break_even=constants.break_even, title=f"{method}: spikes per neuron per call, per site")
    plot_energy_split({f"K={r['K']} {method}": r["energy_by_kind"] for r in chosen}, constants, energy_path,
                      steps=chosen[0]["steps"])


def plot_frontier(rows: list[dict], path: Path) -> None:
    """ddim_frontier.png: PSNR and KID against SNN energy per image, one curve per method, one point per K."""
    from fs_neurons.utils.figures import new_figure, save_figure

    original = next(r for r in rows if r["method"] == "original")
    rows = [r for r in rows if r.get("snn_joules_per_image") is not None and r["method"] != "original"]
    fig, axes = new_figure(1, 2, figsize=(12, 4.4))
    for ax, key, title in zip(axes, ("psnr", "kid_mean"), ("PSNR vs original (dB)", original["kid_label"])):
        for name in dict.fromkeys(series(r) for r in rows):
            pts = sorted((r["snn_joules_per_image"] * 1e3, r[key], r["K"]) for r in rows
                         if series(r) == name and not r["finetuned"] and r[key] is not None)
            if pts:
                line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
                for x, y, K in pts:
                    ax.annotate(f"K={K}", (x, y), textcoords="offset points", xytext=(-5, 7), ha="right", fontsize=6,
                                color=line.get_color())
        tuned = [r for r in rows if r["finetuned"] and r[key] is not None]
        if tuned:
            ax.plot([r["snn_joules_per_image"] * 1e3 for r in tuned], [r[key] for r in tuned], "k*", markersize=12,
                    label="fine-tuned")
        ax.axvline(original["ann_joules_per_image"] * 1e3, color="gray", ls="--", label="ANN energy")
        if key == "kid_mean" and original[key] is not None:
            ax.axhline(original[key], color="gray", ls=":", label="ANN KID")
            ax.set_yscale("log")
        ax.set_xlabel("SNN energy per image (mJ)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("quality per energy: better is up-left for PSNR, down-left for KID", fontsize=10)
    save_figure(fig, path)
