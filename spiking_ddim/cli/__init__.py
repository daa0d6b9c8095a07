"""The ``spiking-ddim`` command: one entry point, a subcommand per job.

    spiking-ddim sample     sample a pipeline and its FS conversion; image loss, FID/KID, energy
    spiking-ddim convert    convert a pipeline to FS neurons (optionally calibrated) and save it
    spiking-ddim calibrate  calibrate a converted pipeline and save it
    spiking-ddim train      fs | bank | ann | snn: fit neurons, build the bank, train networks
    spiking-ddim metrics    FID / KID / IS and image loss of image folders
    spiking-ddim bench      check a device (GPU): sample, calibrate, train, speed

This package is the command-line layer: the libraries (``fs_neurons``, the rest of
``spiking_ddim``) never import it. ``sample.py`` and ``train.py`` at the top of the
repository are thin wrappers of ``sample`` and ``train``.
"""

from __future__ import annotations

import argparse

from . import bench, convert, metrics, sample, train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spiking-ddim", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    for module in (sample, convert, train, metrics, bench):
        module.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
