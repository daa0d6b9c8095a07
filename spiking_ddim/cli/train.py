"""``spiking-ddim train`` (also ``python train.py``): fit neurons, build the bank, train networks.

    spiking-ddim train fs    ...   fit an FS neuron to an activation (TBPI, baselines, ours)
    spiking-ddim train bank  ...   build the shipped FS parameter bank
    spiking-ddim train ann   ...   train a diffusers UNet2DModel (DDPM/DDIM) on digits or images
    spiking-ddim train snn   ...   fine-tune a spiking (FS) UNet, or train one from scratch

Run ``spiking-ddim train <command> --help`` for every flag.
"""

from __future__ import annotations

import argparse

from .ann import add_ann_parser
from .flags import help_text
from .fs import add_bank_parser, add_fs_parser
from .snn import add_snn_parser

HELP = "fit FS neurons (fs), build the bank (bank), train a UNet (ann) or fine-tune a spiking one (snn)"


def add_commands(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="train_command", required=True, metavar="command")
    for add in (add_fs_parser, add_bank_parser, add_ann_parser, add_snn_parser):
        add(sub)


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_commands(sub.add_parser("train", help=HELP, description=help_text(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter))


def main(argv: list[str] | None = None) -> int:
    """``python train.py``: the same commands as ``spiking-ddim train``."""
    p = argparse.ArgumentParser(description=help_text(__doc__), formatter_class=argparse.RawDescriptionHelpFormatter)
    add_commands(p)
    args = p.parse_args(argv)
    from . import guarded

    return guarded(args.run, args)
