"""Text from outside, made safe to show a person (SPEC §9: control and bidi characters).

Upstream text (titles, descriptions, URLs, versions), alert summaries and receivers' answers
reach terminals, logs and messages. A terminal acts on control characters (``ESC ]0;…BEL``
sets its title, ``ESC [2J`` clears the screen) and a bidi override or isolate reorders the
characters after it, so what is shown is not what was sent. Every human output drops them,
whether or not it goes to a terminal; the stored data and ``--json`` keep them (JSON escapes
them).
"""

from __future__ import annotations

import re
import unicodedata

# C0 controls but tab and newline, DEL, and the C1 controls (U+0080-U+009F).
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
# The bidi embeddings and overrides (U+202A-U+202E), isolates (U+2066-U+2069) and the
# invisible direction marks (LRM, RLM, ALM): none belongs in a package title or a table.
BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[{_CONTROLS}{BIDI}]")
_UNSAFE_OR_LAYOUT = re.compile(f"[\t\n{_CONTROLS}{BIDI}]")


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, ending with "…" when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def printable(text: str) -> str:
    """``text`` without control or bidi characters; newlines and tabs (layout) are kept."""
    return _UNSAFE.sub("", text)


def one_line(text: str | None) -> str:
    """Text on one line, for a message or a table cell: control and bidi characters and
    line breaks become spaces, runs of white space one space."""
    return " ".join(_UNSAFE_OR_LAYOUT.sub(" ", text or "").split())


def width(text: str) -> int:
    """The columns ``text`` takes in a terminal: East Asian wide and full-width characters
    take two, combining marks and zero-width format characters none."""
    return sum(_char_width(char) for char in text)


def _char_width(char: str) -> int:
    if char.isascii():
        return 1
    if unicodedata.combining(char) or unicodedata.category(char) == "Cf":
        return 0
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def json_safe(document: str) -> str:
    """A JSON document with the control and bidi characters JSON leaves raw (DEL, C1, bidi)
    written as ``\\uXXXX`` escapes: the same data, safe to print. They can stand only inside
    strings (JSON's own syntax is ASCII), where an escape means the same character."""
    return _UNSAFE.sub(lambda match: f"\\u{ord(match.group()):04x}", document)
