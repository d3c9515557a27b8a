"""``python -m demo_core``: see :mod:`demo_core.cli`."""

import sys

from .cli import main

sys.exit(main())
