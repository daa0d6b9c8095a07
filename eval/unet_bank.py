#!/usr/bin/env python
"""Build the ``ours-unet`` bank entries: FS-Swish neurons fitted to the inputs that
diffusion UNets give their Swish sites, the converter's default.

The distribution (``fs_neurons/bank/swish_unet_inputs.json``) pools, with equal weight:

* the embedded digits DDIM: every site's recorded inputs over 16 sampled images and their
  20 DDIM steps, one weight per site (2000 quantiles each, :func:`pooled_site_inputs`);
* a GroupNorm-then-Swish site of any UNet: GroupNorm makes each group zero-mean with unit
  variance before the learned scale, so N(0, 1) and N(0, 2^2) (a learned scale of 2), one
  half each.

The embedded model's sites are heavier-tailed than a normal (1% / 99% quantiles -2.8 / 2.4,
extremes -8.9 / 10.8). For each K = 2..16, ``ours`` is fitted to the distribution. The
entries are written into fs_neurons/bank/swish.json (replacing earlier ``ours-unet``
entries), and the MSE of ours-unet, ours and tbpi on the distribution is written to
eval/results/unet_bank.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from fs_neurons import InputDistribution, fit_ours, fs_mse
from fs_neurons.bank import (
    BANK_DIR,
    BankEntry,
    load_bank,
    load_distribution,
    load_entry,
    write_bank,
    write_distribution,
)
from fs_neurons.exact import OursConfig
from fs_neurons.names import UNET_METHOD
from fs_neurons.targets import resolve_activation
from fs_neurons.utils.files import atomic_write_text
from spiking_ddim.calibration import pooled_site_inputs
from spiking_ddim.defaults import DEFAULT_MODEL
from spiking_ddim.pipelines import SamplingOptions, load_pipeline
from spiking_ddim.recipe import ConversionSpec, prepare

DISTRIBUTION = "swish_unet_inputs.json"
RESULTS = Path(__file__).resolve().parent / "results"


def unet_distribution(points: int) -> InputDistribution:
    """The pooled distribution described in the module docstring, as ``points`` quantiles."""
    pipe = load_pipeline(DEFAULT_MODEL)
    fs = copy.deepcopy(pipe)
    prepare(fs, ConversionSpec(K=8, method="ours"), SamplingOptions())  # any neurons: recording runs the original Swish
    embedded = pooled_site_inputs(fs)
    n = embedded.numel() // 2
    p = torch.linspace(-1, 1, n + 2, dtype=torch.float64)[1:-1]
    normal = torch.erfinv(p) * 2 ** 0.5
    pooled = torch.cat([embedded, normal, 2 * normal])
    dist = InputDistribution.from_samples(pooled, max_points=points)
    return InputDistribution(dist.x, dist.w, f"Swish inputs of diffusion UNets: the embedded digits DDIM's sites "
                                             f"(16 images x 20 steps, equal weight per site) and GroupNorm-then-Swish "
                                             f"N(0, 1), N(0, 4), equal halves; {points} quantiles")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--K", type=int, nargs="+", default=list(range(2, 17)), help="K values (default: 2..16)")
    p.add_argument("--points", type=int, default=8000, help="quantiles of the distribution (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=OursConfig.rounds,
                   help="mutation rounds of each fit, after its pools (a count: fits never stop on time; "
                        "default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="fit seed (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace the distribution, the entries and the results")
    args = p.parse_args(argv)
    results = RESULTS / "unet_bank.json"
    if results.exists() and not args.overwrite:
        print(f"error: {results} exists; pass --overwrite to rebuild the ours-unet entries", file=sys.stderr)
        return 2
    write_distribution(BANK_DIR / DISTRIBUTION, unet_distribution(args.points))
    dist = load_distribution(DISTRIBUTION)  # the rounded points as shipped
    _, target = resolve_activation("swish")
    entries = [e for e in load_bank("swish") if e.method != UNET_METHOD]
    rows = []
    for K in tqdm(args.K, desc="ours-unet", unit="K", dynamic_ncols=True):
        t0 = time.perf_counter()
        fit = fit_ours("swish", K, dist, seed=args.seed, config=OursConfig(rounds=args.rounds))
        entries.append(BankEntry(K, UNET_METHOD, (dist.lo, dist.hi), tuple(fit.h), tuple(fit.d), tuple(fit.T),
                                 fit.mse, DISTRIBUTION))
        row = {"K": K, "seconds": round(time.perf_counter() - t0, 1), "ours-unet": fit.mse}
        for method in ("ours", "tbpi"):
            try:
                e = load_entry("swish", K, method)
                row[method] = fs_mse(e.h, e.d, e.T, target, dist)
            except ValueError:
                row[method] = None
        rows.append(row)
    write_bank(BANK_DIR / "swish.json", "swish", entries)
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results, json.dumps({"distribution": dist.description, "points": dist.x.numel(),
                                           "mse_on_distribution": rows}, indent=1) + "\n")
    for r in rows:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
