"""A snapshot is the normalised record of one package at one poll (SPEC §3).

``parse_record`` validates an API v4 record and normalises it: datetimes become aware
datetimes, ``[]`` commits become unknown (``None``), ``category`` and ``grids`` become ids.
A record that fails validation raises :class:`~monitor.errors.InvalidRecord` naming the
package and the field; it never becomes a snapshot.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from monitor.errors import InvalidRecord

# djangopackages' own bookkeeping: moves on every refresh, so it is not a change.
BOOKKEEPING = ("last_fetched", "modified")

_ID_IN_URL = re.compile(r"/(\d+)/?(?:\?.*)?$")


@dataclass(frozen=True, slots=True)
class Snapshot:
    slug: str
    title: str | None = None
    pypi_version: str | None = None
    repo_url: str | None = None
    repo_description: str | None = None
    repo_watchers: int | None = None
    repo_forks: int | None = None
    commits_over_52: tuple[int, ...] | None = None
    participants: tuple[str, ...] | None = None
    last_updated: datetime | None = None
    last_fetched: datetime | None = None
    created: datetime | None = None
    modified: datetime | None = None
    pypi_url: str | None = None
    documentation_url: str | None = None
    grids: tuple[int, ...] | None = None
    category: int | None = None

    def values(self) -> dict[str, Any]:
        """Field name -> value, as rules see them (lists as lists)."""
        out: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def content(self) -> dict[str, Any]:
        """The JSON-able fields that count as change (bookkeeping left out), UTC datetimes."""
        return {name: json_value(getattr(self, name)) for name in FIELDS if name not in BOOKKEEPING}

    def content_json(self) -> str:
        """Canonical JSON of :meth:`content`: equal snapshots give equal strings."""
        return json.dumps(self.content(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def to_json_dict(self) -> dict[str, Any]:
        return {name: json_value(getattr(self, name)) for name in FIELDS}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Snapshot:
        """Rebuild from :meth:`to_json_dict` or :meth:`content` output (trusted data)."""
        kwargs: dict[str, Any] = {}
        for name in FIELDS:
            value = data.get(name)
            if value is not None and name in _DATETIME_FIELDS:
                value = datetime.fromisoformat(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)


FIELDS: tuple[str, ...] = tuple(f.name for f in fields(Snapshot))
_DATETIME_FIELDS = frozenset({"last_updated", "last_fetched", "created", "modified"})
_TEXT_FIELDS = (
    "title",
    "pypi_version",
    "repo_url",
    "repo_description",
    "pypi_url",
    "documentation_url",
)
_COUNT_FIELDS = ("repo_watchers", "repo_forks")


def json_value(value: Any) -> Any:
    """A field value as JSON: datetimes as UTC ISO strings, tuples as lists."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple):
        return list(value)
    return value


def parse_record(record: Any, *, package: str | None = None) -> Snapshot:
    """Validate and normalise one API v4 package record.

    ``package`` names the package in error messages when the record itself cannot (a record
    that is not an object, or has no slug).
    """
    name = package or "package"
    if not isinstance(record, dict):
        raise InvalidRecord(name, None, f"expected a JSON object, got {type(record).__name__}")
    slug = record.get("slug")
    if not isinstance(slug, str) or not slug:
        raise InvalidRecord(name, "slug", "missing or not a non-empty string")
    name = slug

    def text(key: str) -> str | None:
        value = record.get(key)
        if value is None or isinstance(value, str):
            return value
        raise InvalidRecord(name, key, f"expected a string or null, got {_kind(value)}")

    def count(key: str) -> int | None:
        value = record.get(key)
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise InvalidRecord(name, key, f"expected an integer or null, got {_kind(value)}")

    def when(key: str) -> datetime | None:
        value = record.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise InvalidRecord(name, key, f"expected a datetime string, got {_kind(value)}")
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRecord(name, key, f"not a datetime: {value[:40]!r}") from None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    def ident(key: str, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            match = _ID_IN_URL.search(value)
            if match:
                return int(match.group(1))
        raise InvalidRecord(name, key, f"expected a URL ending in an id, got {str(value)[:60]!r}")

    commits = record.get("commits_over_52")
    if commits is not None:
        if not isinstance(commits, list) or not all(
            isinstance(c, int) and not isinstance(c, bool) for c in commits
        ):
            raise InvalidRecord(name, "commits_over_52", "expected a list of integers")
        if len(commits) not in (0, 52):
            raise InvalidRecord(
                name, "commits_over_52", f"expected 0 or 52 weekly counts, got {len(commits)}"
            )
        commits = tuple(commits) or None

    participants = record.get("participants")
    if participants is not None:
        if not isinstance(participants, list) or not all(isinstance(p, str) for p in participants):
            raise InvalidRecord(name, "participants", "expected a list of strings")
        participants = tuple(participants)

    grids = record.get("grids")
    if grids is not None:
        if not isinstance(grids, list):
            raise InvalidRecord(name, "grids", f"expected a list, got {_kind(grids)}")
        grids = tuple(sorted({ident("grids", g) for g in grids}))

    category = record.get("category")
    if category is not None:
        category = ident("category", category)

    return Snapshot(
        slug=slug,
        **{key: text(key) for key in _TEXT_FIELDS},
        **{key: count(key) for key in _COUNT_FIELDS},
        commits_over_52=commits,
        participants=participants,
        **{key: when(key) for key in sorted(_DATETIME_FIELDS)},
        grids=grids,
        category=category,
    )


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)
