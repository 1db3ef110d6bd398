"""What the terminal progress bars look like, for the progress tests: one line's
pattern, and a text stream that says it is a terminal."""

from __future__ import annotations

import io
import re

LINE = re.compile(
    r"^(?P<label>\S*) +(?P<pct>\d+)% \[(?P<bar>[#.]{20})\] (?P<count>.*?)"
    r"  elapsed (?P<elapsed>\d+:\d\d)  (?P<eta>ETA (?:\d+:)?\d+:\d\d|ETA -:--|failed)$"
)


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True
