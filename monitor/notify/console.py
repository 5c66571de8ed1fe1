"""The console notifier: the counts, then one human line per notice, most severe first, on a
text stream (stderr by default).

It is the channel used when no notifier is configured, and it never fails.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TextIO

from monitor.alerts import Notice
from monitor.notify.base import Notifier, ordered, said_once, severity_counts, status_word
from monitor.text import one_line, printable


def notice_line(notice: Notice) -> str:
    """``[warning] FIRING no-commits-26-weeks django-mfa: django-mfa: No commits in …``"""
    description, summary = said_once(notice)
    return (
        f"[{notice.severity}] {status_word(notice)} {one_line(notice.rule)} "
        f"{one_line(notice.package)}: {summary or description}"
    )


class ConsoleNotifier(Notifier):
    """Payload: ``{"lines": [str, ...]}``, written one per line to ``stream``, without control
    or bidi characters (SPEC §9) whatever the payload holds."""

    type = "console"
    KEYS = frozenset()

    def __init__(
        self,
        name: str = "console",
        settings: Mapping[str, Any] | None = None,
        *,
        timeout: float = 30.0,
        stream: TextIO | None = None,
    ):
        super().__init__(name, settings or {}, timeout=timeout)
        self._stream = stream

    @property
    def stream(self) -> TextIO:
        # Looked up at send time so a replaced sys.stderr (pytest's capsys) is honoured.
        return self._stream if self._stream is not None else sys.stderr

    def render_alerts(
        self, notices: list[Notice], *, group_id: str, created_at: datetime
    ) -> dict[str, Any]:
        lines = [notice_line(notice) for notice in ordered(notices)]
        return {"lines": [f"monitor: {severity_counts(notices)}", *lines]}

    def render_digest(
        self,
        *,
        subject: str,
        text: str,
        html: str,
        data: dict[str, Any],
        group_id: str,
        created_at: datetime,
    ) -> dict[str, Any]:
        return {"lines": [one_line(subject), *text.rstrip("\n").splitlines()]}

    def render_test(self, *, group_id: str, created_at: datetime) -> dict[str, Any]:
        return {"lines": [f"[info] TEST {self.name}: monitor can reach this channel"]}

    async def send(self, payload: dict[str, Any], *, group_id: str) -> None:
        lines = payload.get("lines") or []
        try:
            self.stream.write("".join(f"{printable(line)}\n" for line in lines))
            self.stream.flush()
        except (OSError, ValueError):
            # A closed or broken stream: there is nowhere left to report it; never fail.
            pass
