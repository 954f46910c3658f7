"""``python -m asignals.redis``: the operator's command line (see `asignals.redis._cli`)."""

import sys

from ._cli import main

sys.exit(main())
