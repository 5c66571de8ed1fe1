"""Durations as users write them: ``30s``, ``15m``, ``6h``, ``7d``, ``2w``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d{1,12}(?:\.\d{1,9})?)(ms|s|m|h|d|w)")
# The longest duration anything here means: a century. Beyond it a date computed from "now"
# could leave datetime's range (year 9999), so the text is refused where it is read instead.
LONGEST = timedelta(days=36525)


def parse_duration(text: str) -> timedelta:
    """Parse a duration; raise ``ValueError`` with a readable message when it is not one or
    is longer than :data:`LONGEST` (100 years)."""
    cleaned = str(text).strip().lower()
    if len(cleaned) > 100:
        raise ValueError(f"{str(text)[:40]!r}… is not a duration (use e.g. 30s, 15m, 6h or 7d)")
    pos = 0
    seconds = 0.0
    for match in _PART.finditer(cleaned):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not cleaned or pos != len(cleaned):
        raise ValueError(f"{text!r} is not a duration (use e.g. 30s, 15m, 6h, 7d, 2w or 1h30m)")
    if seconds > LONGEST.total_seconds():
        raise ValueError(f"{text!r} is longer than 100 years (36525d)")
    return timedelta(seconds=seconds)
