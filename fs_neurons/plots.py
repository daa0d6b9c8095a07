"""PNG plots of fits: parameter tendencies, target vs FS output, loss curves."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch

from .distribution import InputDistribution
from .methods import FSFit
from .piecewise import fs_piecewise
from .targets import resolve_activation
from .tendency import evaluate_tendency
from .utils.figures import new_figure, save_figure

PathLike = Union[str, Path]


def _save(fig, path: PathLike) -> Path:
    return save_figure(fig, path, dpi=120)


def plot_tendency(fit: FSFit, path: PathLike) -> Path:
    """The paper's figure: pre-trained h(t), d(t), T(t) with the fitted tendency curves,
    and the values after retraining."""
    if fit.pretrained is None or fit.tendency is None:
        raise ValueError("plot_tendency needs a TBPI fit (pre-trained parameters and tendencies)")
    t = np.arange(1, fit.K + 1)
    dense = np.linspace(1, fit.K, 200)
    fig, axes = new_figure(1, 3, figsize=(13, 3.8))
    for ax, name in zip(axes, ("h", "d", "T")):
        tf = fit.tendency[name]
        ax.plot(t, fit.pretrained[name], "o", label="pre-trained")
        ax.plot(dense, evaluate_tendency(tf, dense), "-", label=f"{tf.kind} fit")
        ax.plot(t, getattr(fit, name), "x", label="after retraining")
        ax.set_title(f"{name}(t) = {tf.formula()}", fontsize=9)
        ax.set_xlabel("time step t")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"TBPI tendencies, {fit.activation}, K={fit.K}", fontsize=10)
    return _save(fig, path)


def plot_approximation(fits: Sequence[FSFit], path: PathLike, dist: InputDistribution | None = None) -> Path:
    """Target activation and FS outputs over the fitting range, with the errors below."""
    dist = dist or InputDistribution.uniform()
    _, target = resolve_activation(fits[0].activation)
    x = torch.linspace(dist.lo, dist.hi, 4000, dtype=torch.float64)
    y = target(x).numpy()
    fig, (top, bottom) = new_figure(2, 1, figsize=(8, 6), sharex=True, height_ratios=[3, 1.4])
    top.plot(x, y, "k-", lw=2, label=fits[0].activation)
    for f in fits:
        out, _ = fs_piecewise(torch.tensor(f.h), torch.tensor(f.d), torch.tensor(f.T)).evaluate(x)
        label = f"{f.method} K={f.K} (MSE x100 {100 * f.mse:.4f})"
        top.step(x, out.numpy(), where="post", lw=1, label=label)
        bottom.plot(x, out.numpy() - y, lw=0.8, label=label)
    top.legend(fontsize=8)
    top.grid(alpha=0.3)
    bottom.set_xlabel("input x")
    bottom.set_ylabel("FS - target")
    bottom.grid(alpha=0.3)
    return _save(fig, path)


def plot_losses(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: PathLike, xlabel: str = "epoch") -> Path:
    """Loss curves, log scale: ``{label: (x values, losses)}``."""
    fig, ax = new_figure(figsize=(7, 4))
    for label, (xs, ys) in curves.items():
        ax.plot(xs, np.asarray(ys) * 100, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("MSE x 100")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return _save(fig, path)


def stage_curves(fit: FSFit) -> dict[str, tuple[list[float], list[float]]]:
    """A fit's surrogate-training curves laid end to end on one epoch axis."""
    out, offset = {}, 0
    for stage in ("pretrain", "retrain"):
        if stage in fit.curves:
            ys = fit.curves[stage]
            every = fit.curve_every[stage]
            xs = [offset + i * every for i in range(len(ys))]
            out[f"{fit.method} {stage}"] = (xs, ys)
            offset = xs[-1]
    return out
