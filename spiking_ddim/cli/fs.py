"""``spiking-ddim train fs`` and ``train bank`` (also ``python train.py fs|bank``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fs_neurons.names import ACTIVATION_NAMES, METHODS, PAPER_POINTS, PAPER_RANGE, TENDENCIES
from fs_neurons.search_config import OursConfig

from .flags import add_search_args


def add_distribution_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("input distribution (default: the paper's uniform grid)")
    g.add_argument("--range", nargs=2, type=float, metavar=("LO", "HI"), default=list(PAPER_RANGE),
                   help="uniform inputs on [LO, HI] (default: %(default)s)")
    g.add_argument("--points", type=int, default=PAPER_POINTS, help="number of evenly spaced points (default: %(default)s)")
    g.add_argument("--gaussian", nargs=2, type=float, metavar=("MEAN", "STD"),
                   help="fit to N(MEAN, STD^2) inputs instead of a uniform range")
    g.add_argument("--samples", type=Path, metavar="FILE",
                   help="fit to recorded inputs: a .pt (tensor) or .npy file of samples")


def distribution_from_args(args: argparse.Namespace):
    """The input distribution (an :class:`fs_neurons.InputDistribution`) the flags ask for."""
    from fs_neurons.distribution import InputDistribution

    if args.gaussian and args.samples:
        raise SystemExit("error: --gaussian and --samples are mutually exclusive")
    try:
        if args.gaussian:
            return InputDistribution.gaussian(*args.gaussian)
        if args.samples:
            return InputDistribution.from_samples(load_samples(args.samples))
        return InputDistribution.uniform(*args.range, args.points)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def load_samples(path: Path):
    """A tensor of recorded inputs from a .pt or .npy file."""
    import torch

    if not path.is_file():
        raise SystemExit(f"error: samples file not found: {path}")
    try:
        if path.suffix == ".npy":
            import numpy as np

            return torch.from_numpy(np.load(path))
        return torch.as_tensor(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same message
        raise SystemExit(f"error: cannot read samples from {path}: {e}") from None


def search_config_from_args(args: argparse.Namespace) -> OursConfig:
    """The :class:`OursConfig` of the effort flags; a clear error for a value out of range."""
    for flag, least in (("pool", 1), ("restarts", 1), ("rounds", 0)):
        if getattr(args, flag) < least:
            raise SystemExit(f"error: --{flag} must be >= {least}, got {getattr(args, flag)}")
    return OursConfig(pool=args.pool, restarts=args.restarts, rounds=args.rounds)


def add_fs_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fs", help="fit an FS neuron to an activation (TBPI, its baselines, ours)",
        description="Fit a few-spikes neuron to an activation function, write its parameters, "
                    "loss curves and plots, and print its MSE (x100) beside the paper's.",
    )
    p.add_argument("--activation", default="swish", help=f"target: {', '.join(sorted(ACTIVATION_NAMES))} (default: %(default)s)")
    p.add_argument("--K", type=int, default=8, help="time steps per neuron (default: %(default)s)")
    p.add_argument("--method", choices=[*METHODS, "all"], default="all",
                   help="random / gaussian / tbpi (the paper's), ours (exact-gradient search), or all (default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=20_000, help="surrogate-training epochs per stage (paper: 20000)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate of surrogate training (default: %(default)s)")
    p.add_argument("--tendency", choices=["auto", *TENDENCIES], default="auto",
                   help="TBPI curve family; auto picks the smallest leave-one-out error (default: %(default)s)")
    p.add_argument("--noise-std", type=float, default=0.1, help="std of the gaussian baseline's noise (default: %(default)s)")
    add_search_args(p)
    add_distribution_args(p)
    p.add_argument("--out", type=Path, help="output directory (default: runs/fs-<activation>-K<K>-<method>)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty output directory")
    p.set_defaults(run=run_fs)


def run_fs(args: argparse.Namespace) -> int:

    from fs_neurons.distribution import InputDistribution
    from fs_neurons.methods import BASELINES, PAPER_TABLE, FSFit, fit_baselines, fit_ours
    from fs_neurons.neuron import check_K
    from fs_neurons.plots import plot_approximation, plot_losses, plot_tendency, stage_curves
    from fs_neurons.targets import resolve_activation
    from fs_neurons.utils.files import atomic_write_text

    from .common import StageBars, prepare_output_dir

    try:
        check_K(args.K)
        name, _ = resolve_activation(args.activation)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.epochs < 1:
        raise SystemExit(f"error: --epochs must be >= 1, got {args.epochs}")
    if not (0 < args.lr < float("inf")) or not (0 <= args.noise_std < float("inf")):
        raise SystemExit("error: --lr must be a finite number > 0 and --noise-std one >= 0")
    dist = distribution_from_args(args)
    out = prepare_output_dir(args.out or Path("runs") / f"fs-{name}-K{args.K}-{args.method}", args.overwrite)
    methods = METHODS if args.method == "all" else (args.method,)
    fits: dict[str, FSFit] = {}
    if any(m in BASELINES for m in methods):
        with StageBars() as bars:  # one bar per training stage, in epochs
            res = fit_baselines(name, args.K, [args.seed], dist, args.epochs, args.lr, args.tendency, args.noise_std,
                                progress=bars)
        fits.update({m: res[(m, args.seed)] for m in BASELINES if m in methods})
    if "ours" in methods:
        with StageBars() as bars:  # exact-gradient steps
            fits["ours"] = fit_ours(name, args.K, dist, args.seed, search_config_from_args(args), progress=bars)

    atomic_write_text(out / "fits.json", json.dumps([f.to_json() for f in fits.values()], indent=1) + "\n")
    plot_approximation(list(fits.values()), out / "approximation.png", dist)
    curves = {}
    for f in fits.values():
        curves.update(stage_curves(f))
    if curves:
        plot_losses(curves, out / "losses.png")
    if "tbpi" in fits:
        plot_tendency(fits["tbpi"], out / "tendency.png")
    if "ours" in fits:
        phases = fits["ours"].curves["search"]
        plot_losses({"ours (best after each phase)": (list(range(len(phases))), phases)}, out / "ours_search.png",
                    xlabel="search phase (pools, mutation rounds, polish)")

    paper_protocol = name == "swish" and dist.description == InputDistribution.uniform().description
    print(f"\n{name}, K={args.K}, inputs: {dist.description}")
    print(f"{'method':<10} {'MSE x100':>10} {'paper':>8} {'seconds':>8}")
    for m, f in fits.items():
        ref = PAPER_TABLE.get(m, {}).get(args.K) if paper_protocol else None
        print(f"{m:<10} {100 * f.mse:>10.4f} {ref if ref is not None else '-':>8} {f.seconds:>8.1f}")
    print(f"wrote {out}/fits.json and plots")
    return 0


def add_bank_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bank", help="build a parameter bank file from fitted results",
        description="Build fs_neurons/bank/<activation>.json on the paper's range [-8, 12]: the best fit per "
                    "(K, method) found in --from files (eval/fs_table.py results), and ours for every K = 2..K-max.",
    )
    p.add_argument("--activation", default="swish", help="target activation (default: %(default)s)")
    p.add_argument("--K-max", type=int, default=16,
                   help="ours entries for K = 2..K-max; K values not in --from files are fitted now (default: %(default)s)")
    p.add_argument("--from", dest="source", type=Path, action="append", default=[],
                   help="fits JSON (eval/results/fs_table_fits.json, a train.py fs fits.json) or an existing "
                        "bank file; the best fit per (K, method) wins; repeatable")
    p.add_argument("--seed", type=int, default=0, help="seed of ours fits made here (default: %(default)s)")
    add_search_args(p)
    p.add_argument("--out", type=Path, help="bank file to write (required; name the shipped bank, "
                                            "fs_neurons/bank/<activation>.json, to replace it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bank file")
    p.set_defaults(run=run_bank)


def _read_fits(src: Path, activation: str) -> list[dict]:
    """Fits of ``activation`` on the paper's range from a fits JSON list or a bank file."""
    from fs_neurons.bank import BankError, bank_activation, load_bank
    from fs_neurons.distribution import InputDistribution

    if not src.is_file():
        raise SystemExit(f"error: fits file not found: {src}")
    try:
        data = json.loads(src.read_text())
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {src} is not valid JSON: {e}") from None
    if isinstance(data, dict):  # a bank file
        try:
            if bank_activation(src) != activation:
                return []
            entries = load_bank(activation, src)
        except BankError as e:
            raise SystemExit(f"error: {e}") from None
        return [{"method": e.method, "K": e.K, "h": e.h, "d": e.d, "T": e.T, "mse": e.mse}
                for e in entries if e.range == PAPER_RANGE]
    return [f for f in data if f.get("activation") == activation and f.get("distribution", "") ==
            InputDistribution.uniform().description]


def run_bank(args: argparse.Namespace) -> int:
    from dataclasses import asdict, replace

    from tqdm import tqdm

    from fs_neurons.bank import BankEntry, bank_path, write_bank
    from fs_neurons.methods import fit_ours
    from fs_neurons.targets import resolve_activation

    try:
        name, _ = resolve_activation(args.activation)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.K_max < 2:
        raise SystemExit(f"error: --K-max must be >= 2 (ours entries are built for K = 2..K-max), got {args.K_max}")
    if args.out is None:
        raise SystemExit("error: pass --out FILE: the bank is written only where you name it (the shipped bank is "
                         f"replaced only when --out names it: {bank_path(name)})")
    out = args.out
    if out.is_dir():
        raise SystemExit(f"error: --out {out} is a directory; name the bank file to write")
    if out.exists() and not args.overwrite:
        raise SystemExit(f"error: {out} exists; pass --overwrite to replace it")
    config = search_config_from_args(args)
    best: dict[tuple[str, int], dict] = {}
    for src in args.source:
        for f in _read_fits(src, name):
            key = (f["method"], f["K"])
            if key not in best or f["mse"] < best[key]["mse"]:
                best[key] = f
    missing = [K for K in range(2, args.K_max + 1) if ("ours", K) not in best]
    for K in tqdm(missing, desc="ours for missing K", unit="K", dynamic_ncols=True):
        best[("ours", K)] = asdict(fit_ours(name, K, seed=args.seed, config=config))
    entries = []
    for (method, K), f in sorted(best.items(), key=lambda kv: (METHODS.index(kv[0][0]), kv[0][1])):
        entry = BankEntry(K, method, PAPER_RANGE, tuple(f["h"]), tuple(f["d"]), tuple(f["T"]), 0.0)
        entries.append(replace(entry, mse=entry.recompute_mse(name)))
    if not entries:
        raise SystemExit("error: no entries to write")
    write_bank(out, name, entries)
    print(f"wrote {len(entries)} entries to {out}", file=sys.stderr)
    return 0
