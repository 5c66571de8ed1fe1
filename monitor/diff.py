"""Changes between two snapshots: ``(field, old, new)``, with who joined or left a list."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from monitor.snapshot import BOOKKEEPING, FIELDS, Snapshot, json_value
from monitor.text import clip


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


def diff_values(
    old: Mapping[str, Any], new: Mapping[str, Any], names: Iterable[str]
) -> list[Change]:
    """The changes among ``names`` between two value maps (a missing value is None), with
    who joined and who left for set-like lists (:func:`monitor.fields.is_set_like`)."""
    from monitor.fields import is_set_like

    changes = []
    for name in names:
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        added: tuple[Any, ...] = ()
        removed: tuple[Any, ...] = ()
        if is_set_like(name):
            was, now = set(before or ()), set(after or ())
            added = tuple(sorted(now - was))
            removed = tuple(sorted(was - now))
        changes.append(Change(name, before, after, added, removed))
    return changes


def describe_change(change: Mapping[str, Any], limit: int = 80) -> str:
    """A change for people: ``field: old → new``; ``field: +joined, −left`` for lists that
    say who came and went; weekly commit counts as their 52-week totals; null as unknown."""
    name = str(change.get("field", "?"))
    added, removed = change.get("added") or (), change.get("removed") or ()
    if added or removed:
        parts = [f"+{a}" for a in added] + [f"−{r}" for r in removed]
        return f"{name}: {clip(', '.join(parts), limit)}"
    old, new = change.get("old"), change.get("new")
    if name == "commits_over_52":
        old = sum(old) if isinstance(old, list | tuple) else None
        new = sum(new) if isinstance(new, list | tuple) else None
        return f"{name}: {_value(old, limit)} → {_value(new, limit)} commits in 52 weeks"
    return f"{name}: {_value(old, limit)} → {_value(new, limit)}"


def _value(value: Any, limit: int) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, list | tuple):
        return clip(", ".join(map(str, value)) if value else "(none)", limit)
    return clip(str(json_value(value)), limit)
