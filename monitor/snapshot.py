"""A snapshot is the normalised record of one package at one poll (SPEC §3).

``parse_record`` validates an API v4 record and normalises it: datetimes become aware
datetimes, ``[]`` commits become unknown (``None``), ``category`` and ``grids`` become ids.
A record that fails validation raises :class:`~monitor.errors.InvalidRecord` naming the
package and the field; it never becomes a snapshot.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

import orjson

from monitor.errors import InvalidRecord

# djangopackages' own bookkeeping: moves on every refresh, so it is not a change.
BOOKKEEPING = ("last_fetched", "modified")

_ID_IN_URL = re.compile(r"/(\d+)/?(?:\?.*)?$")
_URL_IDS: dict[str, int] = {}
_URL_IDS_MAX = 10_000


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

    def values(self, names: Iterable[str] = ()) -> dict[str, Any]:
        """Field name -> value, as rules see them (lists as lists): every field, or only
        ``names``."""
        out = {name: getattr(self, name) for name in names or FIELDS}
        for name in _LIST_FIELDS:
            value = out.get(name)
            if value is not None:
                out[name] = list(value)
        return out

    def fingerprint(self) -> bytes:
        """A 16-byte hash of :meth:`content`: equal exactly when the content is equal.

        Stored with each snapshot, so a poll tells "unchanged" without loading the old one.
        """
        content = list(_content_of(self))
        for i in _CONTENT_DATETIMES:
            if content[i] is not None:
                content[i] = content[i].astimezone(UTC)
        return hashlib.blake2b(orjson.dumps(content), digest_size=16).digest()

    def content(self) -> dict[str, Any]:
        """The JSON-able fields that count as change (bookkeeping left out), UTC datetimes."""
        return {name: json_value(getattr(self, name)) for name in CONTENT_FIELDS}

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
CONTENT_FIELDS = tuple(name for name in FIELDS if name not in BOOKKEEPING)
_DATETIME_FIELDS = frozenset({"last_updated", "last_fetched", "created", "modified"})
_content_of = attrgetter(*CONTENT_FIELDS)
_CONTENT_DATETIMES = [i for i, name in enumerate(CONTENT_FIELDS) if name in _DATETIME_FIELDS]
_LIST_FIELDS = ("commits_over_52", "participants", "grids")
_TEXT_FIELDS = (
    "title",
    "pypi_version",
    "repo_url",
    "repo_description",
    "pypi_url",
    "documentation_url",
)
_COUNT_FIELDS = ("repo_watchers", "repo_forks")
_DATETIME_ORDER = tuple(sorted(_DATETIME_FIELDS))


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
    that is not an object, or has no slug). This runs for every package of every poll, so it
    checks types with ``type(...) is`` (a bool is not an int here) and builds no closures.
    """
    if type(record) is not dict:
        name = package or "package"
        raise InvalidRecord(name, None, f"expected a JSON object, got {type(record).__name__}")
    get = record.get
    slug = get("slug")
    if type(slug) is not str or not slug:
        raise InvalidRecord(package or "package", "slug", "missing or not a non-empty string")

    values: dict[str, Any] = {"slug": slug}
    for key in _TEXT_FIELDS:
        value = get(key)
        if value is not None and type(value) is not str:
            raise InvalidRecord(slug, key, f"expected a string or null, got {_kind(value)}")
        values[key] = value
    for key in _COUNT_FIELDS:
        value = get(key)
        if value is not None and type(value) is not int:
            raise InvalidRecord(slug, key, f"expected an integer or null, got {_kind(value)}")
        values[key] = value
    for key in _DATETIME_ORDER:
        value = get(key)
        if value is not None:
            value = _datetime(slug, key, value)
        values[key] = value

    commits = get("commits_over_52")
    if commits is not None:
        if type(commits) is not list or not _all_of(commits, int):
            raise InvalidRecord(slug, "commits_over_52", "expected a list of integers")
        if len(commits) not in (0, 52):
            raise InvalidRecord(
                slug, "commits_over_52", f"expected 0 or 52 weekly counts, got {len(commits)}"
            )
        commits = tuple(commits) or None
    values["commits_over_52"] = commits

    participants = get("participants")
    if participants is not None:
        if type(participants) is not list or not _all_strings(participants):
            raise InvalidRecord(slug, "participants", "expected a list of strings")
        participants = tuple(participants)
    values["participants"] = participants

    grids = get("grids")
    if grids is not None:
        if type(grids) is not list:
            raise InvalidRecord(slug, "grids", f"expected a list, got {_kind(grids)}")
        grids = tuple(sorted({_ident(slug, "grids", g) for g in grids}))
    values["grids"] = grids

    category = get("category")
    values["category"] = None if category is None else _ident(slug, "category", category)
    return Snapshot(**values)


def _all_of(items: list[Any], kind: type) -> bool:
    """Every item is exactly of ``kind`` (so ``True`` is not an int)."""
    return not items or {*map(type, items)} == {kind}


def _all_strings(items: list[Any]) -> bool:
    try:
        "".join(items)  # decoded JSON has no str subclasses; anything else is a TypeError
    except TypeError:
        return False
    return True


def _datetime(slug: str, key: str, value: Any) -> datetime:
    if type(value) is not str:
        raise InvalidRecord(slug, key, f"expected a datetime string, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(slug, key, f"not a datetime: {value[:40]!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _ident(slug: str, key: str, value: Any) -> int:
    """An id, or the id at the end of a URL (``.../grids/66/`` or ``...?format=api``)."""
    if type(value) is int:
        return value
    if type(value) is str:
        ident = _URL_IDS.get(value)
        if ident is not None:
            return ident
        match = _ID_IN_URL.search(value)
        if match:
            ident = int(match.group(1))
            if len(_URL_IDS) < _URL_IDS_MAX:  # the same few grid and category URLs recur
                _URL_IDS[value] = ident
            return ident
    raise InvalidRecord(slug, key, f"expected a URL ending in an id, got {str(value)[:60]!r}")


def _kind(value: Any) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
    }.get(type(value), type(value).__name__)
