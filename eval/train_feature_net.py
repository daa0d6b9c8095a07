#!/usr/bin/env python
"""Train one of the package's own feature networks for offline FID / KID and ship it
(spiking_ddim/metrics/assets/): `digits` (a digit classifier on the digits train split) or
`photos` (a classifier of which photograph a 32x32 crop came from)."""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

from safetensors.torch import save_file

from fs_neurons.utils.files import atomic_write
from spiking_ddim.metrics import digits_features, photos_features

SPACES = {"digits": (digits_features, "the digits test split"), "photos": (photos_features, "fresh crops")}
EPOCHS = {name: inspect.signature(module.train_cnn).parameters["epochs"].default for name, (module, _) in SPACES.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("space", choices=sorted(SPACES), help="which feature network to train")
    p.add_argument("--epochs", type=int, help="training epochs (default: "
                   + ", ".join(f"{n} for {name}" for name, n in EPOCHS.items()) + ")")
    p.add_argument("--seed", type=int, default=0, help="seed (default: %(default)s)")
    p.add_argument("--out", type=Path, help="weights file (default: the shipped one)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing weights file")
    args = p.parse_args(argv)
    module, held_out = SPACES[args.space]
    out = args.out or module.WEIGHTS
    if out.exists() and not args.overwrite:
        print(f"error: {out} exists; pass --overwrite to replace it", file=sys.stderr)
        return 2
    net, acc = module.train_cnn(epochs=args.epochs or EPOCHS[args.space], seed=args.seed)
    atomic_write(out, lambda tmp: save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp)))
    print(f"held-out accuracy {100 * acc:.2f}% on {held_out}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
