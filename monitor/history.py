"""A watch's history read back (SPEC §4 ``history``): the stored rows hold only the fields
that changed at each poll, so the values before each change come from replaying the rows in
order. The first row is the watch's baseline (its full values); a later row may hold a
source's own baseline (turned on for a watched package), whose fields appear from null."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from monitor import fields
from monitor.diff import Change, diff_values


@dataclass(frozen=True, slots=True)
class Entry:
    """One poll that stored something. ``values``: every field's JSON value after it."""

    time: str
    changes: tuple[Change, ...]
    baseline: bool  # the watch's first entry: ``values`` is its snapshot
    sources: tuple[str, ...]  # sources whose first values this entry holds
    values: Mapping[str, Any]

    def to_json_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time,
            "changes": [c.to_json_dict() for c in self.changes],
        }
        if self.baseline:
            out["snapshot"] = dict(self.values)
        return out


def replay(rows: Iterable[Mapping[str, Any]]) -> Iterator[Entry]:
    """The entries of history rows (``taken_at``, ``data``, ``baselines``), oldest first."""
    current: dict[str, Any] = {}
    order = list(fields.known())
    for row in rows:
        delta = json.loads(row["data"])
        sources = tuple(json.loads(row.get("baselines") or "[]"))
        if not current:
            current.update(delta)
            yield Entry(row["taken_at"], (), True, sources, dict(current))
            continue
        names = [name for name in order if name in delta]
        names += sorted(name for name in delta if name not in names)  # a field no longer known
        changes = tuple(diff_values(current, delta, names))
        current.update(delta)
        yield Entry(row["taken_at"], changes, False, sources, dict(current))
