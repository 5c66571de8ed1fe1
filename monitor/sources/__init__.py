"""Sources: where snapshots come from (SPEC §2).

Each source lives in its own module and is imported by the command that needs it, so
``monitor --help`` never imports aiohttp:

- :mod:`monitor.sources.djangopackages` — the djangopackages.org API v4 (the primary source);
- :mod:`monitor.sources.http` — one polite GET of a JSON document, with retries, a timeout
  and a size cap, shared by the sources.

The outcome of polling one package is a :class:`PollResult`, defined here (no aiohttp needed)
so the store and the CLI can use it without importing a source.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from monitor.snapshot import Snapshot


class PollStatus(StrEnum):
    OK = "ok"
    UNCHANGED = "unchanged"  # the record's fingerprint is the one the poll was given
    NOT_FOUND = "not_found"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PollResult:
    """One package's poll.

    - ``ok``: ``snapshot`` is the parsed record, ``fingerprint`` the record's
      (:func:`~monitor.snapshot.record_fingerprint`);
    - ``unchanged``: the record's fingerprint is the one given for the package, so it was
      not parsed; ``values`` holds the fields asked for (validated, as
      :meth:`Snapshot.values` gives them), bookkeeping included;
    - ``not_found`` / ``failed``: ``error`` says why.

    ``package_id`` is djangopackages' id when the record gave one; ``duration`` is seconds
    of the request(s).
    """

    slug: str
    status: PollStatus
    snapshot: Snapshot | None
    error: str | None
    package_id: int | None
    duration: float
    fingerprint: bytes | None = None
    values: dict[str, Any] | None = None


__all__ = ["PollResult", "PollStatus"]
