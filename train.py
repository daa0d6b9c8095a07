#!/usr/bin/env python
"""Training command line of spiking-ddim.

    python train.py fs    ...   fit an FS neuron to an activation (TBPI, baselines, ours)
    python train.py bank  ...   build the shipped FS parameter bank
    python train.py ann   ...   train a diffusers UNet2DModel (DDPM/DDIM) on digits or images
    python train.py snn   ...   fine-tune a spiking (FS) UNet, or train one from scratch

Run ``python train.py <command> --help`` for every flag.
"""

from __future__ import annotations

import argparse
import sys

from fs_neurons.cli import add_bank_parser, add_fs_parser
from spiking_ddim.cli_ann import add_ann_parser
from spiking_ddim.cli_snn import add_snn_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    add_fs_parser(sub)
    add_bank_parser(sub)
    add_ann_parser(sub)
    add_snn_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
