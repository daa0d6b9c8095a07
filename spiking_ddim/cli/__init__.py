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
import errno
import signal
import sys
from typing import Callable

from . import bench, convert, metrics, sample, train
from .flags import help_text


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="spiking-ddim", description=help_text(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="command")
    for module in (sample, convert, train, metrics, bench):
        module.add_parser(sub)
    return p


def guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """``run(args)`` with the failures every command shares turned into one-line errors: a
    full disk or other write failure, Ctrl-C, SIGTERM (raised as SystemExit, so staged outputs
    and locks are cleaned up on the way out)."""
    def terminate(signum, _frame):
        raise SystemExit(f"error: stopped by signal {signum}; nothing partial was published")

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        return run(args)
    except KeyboardInterrupt:
        print("error: interrupted; nothing partial was published", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
            where = f" ({e.filename})" if e.filename else ""
            print(f"error: cannot write{where}: {e.strerror}; nothing partial was published", file=sys.stderr)
            return 1
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return guarded(args.run, args)
