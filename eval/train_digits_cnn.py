#!/usr/bin/env python
"""Train the digits feature network used for offline FID / KID and ship it in the package
(spiking_ddim/metrics/assets/digits_cnn.safetensors)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from safetensors.torch import save_file

from fs_neurons.utils.files import atomic_write
from spiking_ddim.metrics.digits_features import WEIGHTS, train_cnn


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=40, help="training epochs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--out", type=Path, default=WEIGHTS, help="weights file (default: the shipped one)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing weights file")
    args = p.parse_args(argv)
    if args.out.exists() and not args.overwrite:
        print(f"error: {args.out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    net, acc = train_cnn(args.epochs, args.seed)
    atomic_write(args.out, lambda tmp: save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp)))
    print(f"held-out accuracy {100 * acc:.2f}% on the digits test split; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
