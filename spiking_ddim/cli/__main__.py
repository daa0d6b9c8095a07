"""``python -m spiking_ddim.cli`` = ``spiking-ddim``."""

import sys

from . import main

sys.exit(main())
