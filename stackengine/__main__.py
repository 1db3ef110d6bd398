"""``python -m stackengine``: the command line."""

from __future__ import annotations

import sys

from .cli import run

sys.exit(run())
