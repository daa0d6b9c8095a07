"""The noise floor of a results table: how far its figures move when only the arithmetic
changes (batch size, threads, processes: its order; instruction sets: another CPU).

:data:`VARIANTS` are the runs of ``eval/noise_floor.py`` (one ``spiking-ddim sample`` each),
:data:`GROUPS` the two groups whose spread (max - min over the group) is reported per
figure (:data:`FIGURES`, keys of :func:`figures_of`); :func:`floor_line` is the sentence
every ranked table prints above itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

ORDER, CPU = "arithmetic order", "another CPU"
DEFAULT = "batch 100, 2 threads"
ISA_ENV = {"avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
           "sse4.1": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                      "MKL_ENABLE_INSTRUCTIONS": "SSE4_2"}}
# name: (batch size, threads per process, processes, environment, the CPU flag it needs or None)
VARIANTS = {
    DEFAULT: (100, 2, 1, {}, None),
    "batch 50, 2 threads": (50, 2, 1, {}, None),
    "batch 100, 1 thread": (100, 1, 1, {}, None),
    "2 processes x 1 thread": (100, 1, 2, {}, None),
    "ATen avx2": (100, 2, 1, {"ATEN_CPU_CAPABILITY": "avx2"}, "avx2"),
    "ATen default": (100, 2, 1, {"ATEN_CPU_CAPABILITY": "default"}, None),
    "AVX2 machine (ATen, oneDNN, MKL)": (100, 2, 1, ISA_ENV["avx2"], "avx2"),
    "SSE4.1 machine (ATen, oneDNN, MKL)": (100, 2, 1, ISA_ENV["sse4.1"], "sse4_1"),
}
# The spread of each group is over its variants; both hold the default run.
GROUPS = {ORDER: [DEFAULT, "batch 50, 2 threads", "batch 100, 1 thread", "2 processes x 1 thread"],
          CPU: [DEFAULT, "ATen avx2", "ATen default", "AVX2 machine (ATen, oneDNN, MKL)",
                "SSE4.1 machine (ATen, oneDNN, MKL)"]}
FIGURES = {"psnr": "PSNR (dB, mean MSE)", "psnr_median": "median PSNR", "psnr_p5": "5th pct PSNR",
           "share_below_30db": "< 30 dB", "mse": "MSE", "fid": "FID (fs)", "kid_mean": "KID (fs)",
           "energy_ratio": "energy SNN/ANN", "spikes_per_neuron": "spikes/neuron"}


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (``/proc/cpuinfo``; empty where it is not there)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def figures_of(metrics: dict) -> dict:
    """The :data:`FIGURES` of one ``sample`` run's metrics.json."""
    return {"psnr": metrics["psnr"], "psnr_median": metrics["psnr_median"], "psnr_p5": metrics["psnr_p5"],
            "share_below_30db": metrics["share_below_30db"], "mse": metrics["mse"],
            "fid": metrics["fid"]["fs"]["value"], "kid_mean": metrics["kid"]["fs"]["mean"],
            "energy_ratio": metrics["energy"]["ratio"], "spikes_per_neuron": metrics["spikes_per_neuron_per_call"]}


def spreads(rows: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per group, per figure: max - min over the group's variants that ran."""
    out = {}
    for group, names in GROUPS.items():
        ran = [rows[n] for n in names if n in rows]
        if len(ran) > 1:
            out[group] = {k: max(r[k] for r in ran) - min(r[k] for r in ran) for k in FIGURES}
    return out


def load_floor(folder: Path) -> Optional[dict]:
    """The last measurement (``folder``/noise_floor.json), or None."""
    path = folder / "noise_floor.json"
    return json.loads(path.read_text()) if path.is_file() else None


def floor_line(data: Optional[dict]) -> str:
    """One sentence for a ranked table: how far its figures move with the arithmetic's order
    and with the CPU, for the PSNR of the mean MSE, the median per-image PSNR and KID."""
    if not data:
        return "Noise floor: not measured yet (`python eval/noise_floor.py`); rows that differ little are not ranked."
    per_k = sorted(data["spread"].items(), key=lambda kv: int(kv[0]))

    def moves(group: str) -> str:
        have = [(K, s[group]) for K, s in per_k if group in s]
        if not have:
            return "not measured"
        fig = lambda key, unit="": " / ".join(f"{s[key]:.2g}" for _, s in have) + unit  # noqa: E731
        return (f"PSNR by up to {fig('psnr', ' dB')} (K={' / '.join(K for K, _ in have)}), the median per-image "
                f"PSNR by {fig('psnr_median', ' dB')}, KID by {fig('kid_mean')}")

    return (f"Noise floor (`eval/noise_floor.py`, {data['num_images']} images, {data['steps']} steps): another "
            f"batch size, thread count or process count moves {moves(ORDER)}; another CPU (the instruction sets "
            f"{', '.join(data.get('cpu_capabilities', [])) or 'of this machine'} played on one machine) moves "
            f"{moves(CPU)}. Rows closer than that are not ordered by these figures (docs/trust.md).")


def markdown(data: dict) -> str:
    """noise_floor.md: every run's figures per K and variant, and each group's spread."""
    lines = ["# Noise floor of the main job", "",
             f"`spiking-ddim sample` on the embedded digits DDIM, {data['num_images']} images, {data['steps']} DDIM "
             "steps, default conversion (ours-unet), run once per variant. Arithmetic order: only the batch size, the "
             "threads per process or the number of processes change. Another CPU: the instruction sets ATen, oneDNN "
             "and MKL may use are capped by environment variables (the `environment` of each run in the JSON), "
             f"so this machine ({data.get('cpu', 'unknown')}; PyTorch's own capability "
             f"{data.get('torch_capability', '?')}; instruction sets run: "
             f"{', '.join(data.get('cpu_capabilities', [])) or '?'}) computes as an older CPU would. Every difference "
             "below is arithmetic through discontinuous neurons. Written by `python eval/noise_floor.py`.", ""]
    for K, rows in data["runs"].items():
        lines += [f"## K={K}", "", "| variant | " + " | ".join(FIGURES.values()) + " | seconds |",
                  "|---" * (len(FIGURES) + 2) + "|"]
        for name, r in rows.items():
            lines.append(f"| {name} | " + " | ".join(f"{r[k]:.5g}" for k in FIGURES) + f" | {r['seconds']} |")
        for group, spread in data["spread"][K].items():
            lines.append(f"| **spread, {group}** | " + " | ".join(f"**{spread[k]:.3g}**" for k in FIGURES) + " | |")
        lines.append("")
    return "\n".join(lines)
