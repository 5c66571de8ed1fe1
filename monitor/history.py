"""A watch's history read back (SPEC §4 ``history``): the stored rows hold only the fields
that changed at each poll, so the values before each change come from replaying the rows in
order. The first row is the watch's baseline (its full values); a later row may hold a
source's own baseline (turned on for a watched package), whose fields appear from null.

A list of ints that slid (djangopackages' ``commits_over_52``, a 52-week window that moves a
week each week and whose newest week is counted again as the week goes) is stored as its
shift when that is shorter than the list: ``{"drop": [...], "cut": [...], "add": [...]}``,
the old list's first ``len(drop)`` items dropped, its last ``len(cut)`` items cut, and
``add`` appended (``cut`` left out when empty). A whole value of such a field is a list or
null, never an object, so the two cannot be mistaken. A shift is read forward from the
value before its row (:func:`forward`) or backward from the value after it
(:func:`backward`), which is how the digest reads back from the latest values."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from monitor import fields
from monitor.diff import Change, diff_values
from monitor.sources import FieldKind


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
        new = values_after(current, delta)
        changes = tuple(diff_values(current, new, names))
        current.update(new)
        yield Entry(row["taken_at"], changes, False, sources, dict(current))


def stored_change(change: Change) -> Any:
    """What a history row holds for ``change``: its new value as JSON, or, for a list of ints
    that slid (``new == old[k:n - r] + add`` for the list's length ``n``, ``k`` items dropped
    and ``r`` (0 or 1: the newest week counted again) cut), the shift when that is
    shorter."""
    return shift_of(change.field, fields.to_json(change.old), fields.to_json(change.new))


def shift_of(name: str, old: Any, new: Any) -> Any:
    """:func:`stored_change` of field ``name`` going from ``old`` to ``new`` (JSON values)."""
    if fields.known().get(name) is not FieldKind.INTS:
        return new
    if not (isinstance(old, list) and isinstance(new, list)):
        return new
    n = len(old)
    for k in range(n):  # the least slide is the shortest shift
        for r in (0, 1):
            kept = n - k - r
            if kept >= 0 and old[k : n - r] == new[:kept]:
                shift = {"drop": old[:k], "cut": old[n - r :], "add": new[kept:]}
                if not r:
                    del shift["cut"]
                return shift if len(orjson.dumps(shift)) < len(orjson.dumps(new)) else new
    return new


def is_shift(stored: Any) -> bool:
    """Whether a history row's value is a shift (see the module's docstring)."""
    return isinstance(stored, dict)


def forward(before: Any, stored: Any) -> Any:
    """A field's value after a history row that holds ``stored`` for it, from its value
    ``before`` the row."""
    if not is_shift(stored):
        return stored
    end = len(before) - len(stored.get("cut", ()))
    return before[len(stored["drop"]) : end] + stored["add"]


def backward(after: Any, stored: Any) -> Any:
    """A field's value before a history row that holds the shift ``stored`` for it, from its
    value ``after`` the row."""
    return stored["drop"] + after[: len(after) - len(stored["add"])] + stored.get("cut", [])


def repacked(rows: Iterable[Mapping[str, Any]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """One watch's history rows (``data`` decoded, oldest first) as :func:`stored_change`
    stores them now: ``(index, data)`` of each row that holds a whole list a shift would
    store in fewer bytes (a row written before shifts). The baseline stays whole."""
    current: dict[str, Any] = {}
    for index, row in enumerate(rows):
        if current:
            data = {
                name: stored if is_shift(stored) else shift_of(name, current.get(name), stored)
                for name, stored in row.items()
            }
            if data != row:
                yield index, data
        current.update(values_after(current, row))


def stored_notice(notice: Mapping[str, Any]) -> dict[str, Any]:
    """A notice's JSON as a transition row stores it: the new value of each change to a list
    of ints that slid as its shift (a weekly star move of 10,000 packages also lists their
    ``commits_over_52`` before and after)."""
    changes = notice.get("changes") or ()
    return {
        **notice,
        "changes": [{**c, "new": shift_of(c["field"], c["old"], c["new"])} for c in changes],
    }


def read_notice(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A notice's JSON as :func:`stored_notice` stored it, its changes whole again."""
    changes = stored.get("changes") or ()
    if not any(is_shift(c.get("new")) for c in changes):
        return dict(stored)
    return {**stored, "changes": [{**c, "new": forward(c["old"], c["new"])} for c in changes]}


def values_after(before: Mapping[str, Any], row: Mapping[str, Any]) -> dict[str, Any]:
    """A history row's fields with their values after it (its shifts applied to ``before``,
    the values before it)."""
    return {name: forward(before.get(name), stored) for name, stored in row.items()}


def replayed(value: Any, shifts: Sequence[Any]) -> Any:
    """``value`` moved forward through ``shifts``, given newest first."""
    for stored in reversed(shifts):
        value = forward(value, stored)
    return value
