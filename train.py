#!/usr/bin/env python
"""``python train.py`` = ``spiking-ddim train``: see ``python train.py --help``."""

import sys

from spiking_ddim.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
