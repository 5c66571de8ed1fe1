"""Changes between two snapshots: ``(field, old, new)``, with who joined or left a list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitor.snapshot import BOOKKEEPING, FIELDS, Snapshot, json_value


@dataclass(frozen=True, slots=True)
class Change:
    field: str
    old: Any
    new: Any
    added: tuple[Any, ...] = ()
    removed: tuple[Any, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-able form; datetimes as UTC ISO strings, lists as lists."""
        out: dict[str, Any] = {
            "field": self.field,
            "old": json_value(self.old),
            "new": json_value(self.new),
        }
        if self.added or self.removed:
            out["added"] = list(self.added)
            out["removed"] = list(self.removed)
        return out


def diff(old: Snapshot, new: Snapshot) -> list[Change]:
    """Every field that differs, in field order; bookkeeping fields never count."""
    changes = []
    for name in FIELDS:
        if name in BOOKKEEPING:
            continue
        before, after = getattr(old, name), getattr(new, name)
        if before == after:
            continue
        added: tuple[Any, ...] = ()
        removed: tuple[Any, ...] = ()
        if name == "participants" or name == "grids":
            was, now = set(before or ()), set(after or ())
            added = tuple(sorted(now - was))
            removed = tuple(sorted(was - now))
        changes.append(Change(name, before, after, added, removed))
    return changes
