"""``python -m p2pd`` is the ``p2pd`` command."""

import sys

from .cli import main

sys.exit(main())
