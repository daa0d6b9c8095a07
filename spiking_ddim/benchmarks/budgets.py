"""The energy frontier of budgeted calibration (``eval/energy_frontier.py``): which budgeted
points beat the plain calibrated models, their table and their plot.

A point is a calibrated model under an SNN/ANN energy budget (``budget`` None: plain
calibration), optionally fine-tuned since (``finetuned``: its run's name), with
:mod:`.rows`' keys; the baseline is the plain calibrated rows of the network table
(``ours-unet+cal``, every K).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..metrics import spread_cells

# K: (energy ratio at most, at PSNR at least)
Targets = dict[int, tuple[float, float]]


def identity(p: dict) -> tuple:
    """What names a point of the results: K, budget and fine-tuning run (None if calibrated only)."""
    return p["K"], p["budget"], p.get("finetuned")


def label(p: dict) -> str:
    """A point's budget cell: the budget, or plain calibration, and its fine-tuning run."""
    budget = "none (plain calibration)" if p["budget"] is None else str(p["budget"])
    return budget + (f", fine-tuned ({p['finetuned']})" if p.get("finetuned") else "")


def run_name(path: Path) -> str:
    """A fine-tuned model's name in the results: its training run's directory (``train snn``
    writes the model to RUN/model)."""
    path = path.resolve()
    return path.parent.name if path.name == "model" else path.name


def check_finetuned(pipe: Any, path: Path) -> Any:
    """``pipe`` (loaded from ``path``) if its UNet is budgeted and fine-tuned, else ``ValueError``."""
    record = getattr(pipe.unet, "fs_config", None)
    if not record or not record.finetuned or not record.budget:
        raise ValueError(f"{path} is not a budgeted, fine-tuned FS model (train snn --calibrate --energy-budget R)")
    return pipe


def baseline_of(rows: list[dict]) -> list[dict]:
    """The plain calibrated, per-step, Swish-only ``ours-unet+cal`` rows of a network table."""
    return [{"K": r["K"], "psnr": r["psnr"], "kid_mean": r["kid_mean"], "energy_ratio": r["energy_ratio"]}
            for r in rows if r["method"] == "ours-unet+cal" and not r.get("finetuned")
            and (r.get("coding") or "step") == "step" and (r.get("spiking") or "swish") == "swish"]


def dominance(points: list[dict], baseline: list[dict]) -> list[dict]:
    """Per budgeted point: the plain calibrated model of equal or next higher energy, and whether
    the point is at least as good in PSNR."""
    out = []
    for p in points:
        if p["budget"] is None:
            continue
        rivals = [b for b in baseline if b["energy_ratio"] >= p["energy_ratio"]]
        best = min(rivals, key=lambda b: b["energy_ratio"]) if rivals else None
        out.append({"K": p["K"], "budget": p["budget"], "finetuned": p.get("finetuned"),
                    "energy_ratio": p["energy_ratio"], "psnr": p["psnr"],
                    "rival": None if best is None else f"ours-unet+cal K={best['K']}",
                    "rival_psnr": None if best is None else best["psnr"],
                    "rival_energy_ratio": None if best is None else best["energy_ratio"],
                    "dominates": best is None or p["psnr"] >= best["psnr"],
                    "pareto": all(b["psnr"] <= p["psnr"] for b in baseline if b["energy_ratio"] <= p["energy_ratio"])})
    return out


def _target_lines(points: list[dict], targets: Targets) -> list[str]:
    lines = ["", "Targets: " + "; ".join(f"K={K}: energy <= {e} at PSNR >= {q} dB" for K, (e, q) in targets.items())]
    for K, (e, q) in targets.items():
        met = [p for p in points if p["K"] == K and p["energy_ratio"] <= e and p["psnr"] >= q]
        lines.append(f"- K={K}: {'met' if met else 'not met'}" + (
            "" if met else f" (best PSNR at energy <= {e}: " + (
                f"{max(p['psnr'] for p in points if p['K'] == K and p['energy_ratio'] <= e):.2f} dB)"
                if any(p["K"] == K and p["energy_ratio"] <= e for p in points) else "no point that low)")))
    return lines


def markdown(data: dict, targets: Targets, floor: str) -> str:
    """energy_frontier.md: one row per point with its rival and verdicts, and the targets."""
    points = data["points"]
    lines = ["# Energy frontier: budgeted calibration of the embedded digits DDIM", "",
             f"{data['num_images']} images per point, {data['steps']} DDIM steps, seeds {data['seed']}..; PSNR against "
             f"the original from the same noise (of the mean MSE; median / p5: the median and 5th-percentile per-image "
             f"PSNR; < 30 dB: the share of images below 30 dB); KID (digits features) against held-out digits (original: "
             f"{data['original_kid']:.5f}); energy: SNN/ANN per image (4.6 pJ / MAC, 0.9 pJ / AC). Written by "
             "`python eval/energy_frontier.py`.", "", floor, "",
             "dominates: at least the PSNR of the plain calibrated model of equal or next higher energy (the "
             "target's reading); Pareto: no plain calibrated model of equal or lower energy has a higher PSNR.", "",
             "| K | energy budget | energy SNN/ANN | spikes/neuron | PSNR (dB) | median / p5 (dB) | < 30 dB | KID "
             "| plain calibration at >= energy | dominates | Pareto |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    by_point = {identity(c): c for c in data["dominance"]}
    for p in points:
        c = by_point.get(identity(p))
        rival = "-" if c is None else (f"{c['rival']}: {c['rival_psnr']:.2f} dB at {c['rival_energy_ratio']:.3f}"
                                       if c["rival"] else "none")
        lines.append(f"| {p['K']} | {label(p)} | "
                     f"{p['energy_ratio']:.3f} | {p['spikes_per_neuron']:.3f} | {p['psnr']:.2f} | {spread_cells(p)} | "
                     f"{p['kid_mean']:.5f} | "
                     f"{rival} | {'-' if c is None else ('yes' if c['dominates'] else 'no')} | "
                     f"{'-' if c is None else ('yes' if c['pareto'] else 'no')} |")
    return "\n".join(lines + _target_lines(points, targets)) + "\n"


def plot(data: dict, targets: Targets, path: Path) -> None:
    """energy_frontier.png: PSNR and KID against energy, one curve per K, the baseline dashed."""
    from fs_neurons.utils.figures import new_figure, save_figure

    points, baseline = data["points"], data["baseline"]
    fig, axes = new_figure(1, 2, figsize=(11, 4.2))
    for K in sorted({p["K"] for p in points}):
        ps = sorted((p for p in points if p["K"] == K and not p.get("finetuned")), key=lambda p: p["energy_ratio"])
        tuned = [p for p in points if p["K"] == K and p.get("finetuned")]
        for ax, key in zip(axes, ("psnr", "kid_mean")):
            line, = ax.plot([p["energy_ratio"] for p in ps], [p[key] for p in ps], "o-",
                            label=f"K={K}, budgeted calibration")
            if tuned:
                ax.plot([p["energy_ratio"] for p in tuned], [p[key] for p in tuned], "D", color=line.get_color(),
                        markerfacecolor="none", label=f"K={K}, budgeted + fine-tuned weights")
    base = sorted(baseline, key=lambda b: b["energy_ratio"])
    for ax, key in zip(axes, ("psnr", "kid_mean")):
        ax.plot([b["energy_ratio"] for b in base], [b[key] for b in base], "s--", color="gray",
                label="plain calibration, K=4..16")
        for b in base:
            ax.annotate(f"K={b['K']}", (b["energy_ratio"], b[key]), textcoords="offset points", xytext=(-6, 8),
                        ha="right", fontsize=7, color="gray")
        ax.set_xlabel("energy per image, SNN / ANN")
        ax.margins(y=0.1)  # room for the labels above the top points
    for K, (e, q) in targets.items():
        axes[0].plot([e], [q], "*", markersize=12, label=f"target K={K}")
    axes[1].axhline(data["original_kid"], color="k", lw=0.8, label="original")
    axes[0].set_ylabel("PSNR vs original (dB)")
    axes[1].set_ylabel("KID (digits features)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    save_figure(fig, path)
