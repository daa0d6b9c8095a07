#!/usr/bin/env python
"""``python sample.py`` = ``spiking-ddim sample``: see ``python sample.py --help``."""

import sys

from spiking_ddim.cli.sample import main

if __name__ == "__main__":
    sys.exit(main())
