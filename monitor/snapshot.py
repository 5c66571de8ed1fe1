"""A snapshot is the normalised record of one package at one poll (SPEC §3).

``parse_record`` validates an API v4 record and normalises it: datetimes become aware
datetimes, ``[]`` commits become unknown (``None``), ``category`` and ``grids`` become ids.
A record that fails validation raises :class:`~monitor.errors.InvalidRecord` naming the
package and the field; it never becomes a snapshot. Nothing else escapes: whatever a
normaliser raises on a value no check foresaw is that field's ``InvalidRecord`` too, so one
hostile record fails its own package's poll, never the poll of its neighbours.

Values must be plausible, not only well typed, so that every later step (storing, diffing,
rules, formatting in any time zone) can use them: a slug is a plain ``[A-Za-z0-9_-]`` slug of
at most 200 characters (it may name a watch); counts and ids are integers from 0 to 10^15
(exact as JSON numbers anywhere, and in SQLite); datetimes lie from 1970 to 2999 in UTC (a
naive one is taken as UTC). Text is kept as received, however hostile: output escapes it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import orjson

from monitor.errors import InvalidRecord

# djangopackages' own bookkeeping: moves on every refresh, so it is not a change.
BOOKKEEPING = ("last_fetched", "modified")


def unix_seconds(value: datetime | None) -> int | None:
    """A bookkeeping time as the watch row keeps it: whole Unix seconds."""
    return int(value.timestamp()) if value else None


_ID_IN_URL = re.compile(r"/(\d{1,16})/?(?:\?.*)?$")
_URL_IDS: dict[str, int] = {}
_URL_IDS_MAX = 10_000
_URL_IDS_KEY_MAX = 300  # longer URLs are not cached: the cache stays small
_PLAIN_SLUG = re.compile(r"[A-Za-z0-9_-]{1,200}")
MAX_COUNT = 10**15
_EARLIEST_YEAR, _LATEST_YEAR = 1970, 2999


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

    def content(self) -> dict[str, Any]:
        """The JSON-able fields that count as change (bookkeeping left out), UTC datetimes."""
        return {name: json_value(getattr(self, name)) for name in CONTENT_FIELDS}

    def content_json(self) -> str:
        """Canonical JSON of :meth:`content`: equal snapshots give equal strings."""
        return orjson.dumps(self.content(), option=orjson.OPT_SORT_KEYS).decode()

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


def json_value(value: Any) -> Any:
    """A field value as JSON: datetimes as UTC ISO strings, tuples as lists."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple):
        return list(value)
    return value


def parse_record(record: Any, *, package: str | None = None) -> Snapshot:
    """Validate and normalise one API v4 package record.

    ``package`` names the package in error messages (default: the record's slug): the
    watched name, which a record cannot change.
    """
    slug = _slug_of(record, package)
    named = package or slug
    values = []
    name = ""
    try:
        for name in FIELDS[1:]:
            values.append(_NORMALISE[name](named, name, record.get(name)))
    except InvalidRecord:
        raise
    except Exception as exc:
        raise _invalid(named, name, exc) from exc
    return Snapshot(slug, *values)


def record_values(
    record: Any, names: Iterable[str], *, package: str | None = None
) -> dict[str, Any]:
    """Some fields of a record, validated and normalised as :func:`parse_record` does, and
    shaped as :meth:`Snapshot.values` gives them (lists as lists)."""
    slug = _slug_of(record, package)
    named = package or slug
    out: dict[str, Any] = {"slug": slug}
    name = ""
    try:
        for name in names:
            if name != "slug":
                value = _NORMALISE[name](named, name, record.get(name))
                out[name] = list(value) if type(value) is tuple else value
    except InvalidRecord:
        raise
    except Exception as exc:
        raise _invalid(named, name, exc) from exc
    return out


def record_fingerprint(record: dict[str, Any]) -> bytes:
    """A 16-byte hash of a record as received, bookkeeping left out.

    Stored with the snapshot made from the record: a later record with the same fingerprint
    has the same content, so it needs no parsing to be known unchanged. Records that differ
    only in form (key order, URL style, time zone) get different fingerprints; the diff of
    their snapshots then finds no change.
    """
    content = record.copy()
    for key in BOOKKEEPING:
        content.pop(key, None)
    return hashlib.sha256(orjson.dumps(content)).digest()[:16]  # sha256: CPU-accelerated


def _slug_of(record: Any, package: str | None) -> str:
    if type(record) is not dict:
        name = package or "package"
        raise InvalidRecord(name, None, f"expected a JSON object, got {type(record).__name__}")
    slug = record.get("slug")
    if type(slug) is not str or not slug:
        raise InvalidRecord(package or "package", "slug", "missing or not a non-empty string")
    if not _PLAIN_SLUG.fullmatch(slug):
        shown = f"{slug[:40]!r}{'…' if len(slug) > 40 else ''}"
        problem = f"not a plain slug ([A-Za-z0-9_-], at most 200 characters): {shown}"
        raise InvalidRecord(package or "package", "slug", problem)
    return slug


def _invalid(package: str, name: str, exc: Exception) -> InvalidRecord:
    """What a field's normaliser raised, as an :class:`InvalidRecord` naming the package and
    the field: a value no check foresaw must fail this record alone, not the whole poll."""
    return InvalidRecord(package, name, f"unusable value ({type(exc).__name__}: {str(exc)[:80]})")


# -- one normaliser per field: (package, field, value as received) -> value, or InvalidRecord.
# Type checks use ``type(...) is`` (decoded JSON has no subclasses, and a bool is no int).


def _text(package: str, key: str, value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    raise InvalidRecord(package, key, f"expected a string or null, got {_kind(value)}")


def _count(package: str, key: str, value: Any) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidRecord(package, key, f"expected an integer or null, got {_kind(value)}")
    return _in_range(package, key, value)


def _in_range(package: str, key: str, value: int) -> int:
    """A count or id: from 0 (a negative count would read as a collapse) to MAX_COUNT."""
    if 0 <= value <= MAX_COUNT:
        return value
    shown = str(value) if abs(value) < 10**30 else "a number of over 30 digits"
    raise InvalidRecord(package, key, f"out of range: {shown} (expected 0 to 10^15)")


def _datetime(package: str, key: str, value: Any) -> datetime | None:
    if value is None:
        return None
    if type(value) is not str:
        raise InvalidRecord(package, key, f"expected a datetime string, got {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRecord(package, key, f"not a datetime: {value[:40]!r}") from None
    # The year as written: within 1970-2999 the date's UTC form (which diffs, sorts and
    # stores compare) cannot leave datetime's range, as 9999-12-31T23:59-14:00 would.
    if not _EARLIEST_YEAR <= parsed.year <= _LATEST_YEAR:
        raise InvalidRecord(package, key, f"date out of range (years 1970 to 2999): {value[:40]!r}")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _commits(package: str, key: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if type(value) is not list or (value and {*map(type, value)} != {int}):
        raise InvalidRecord(package, key, "expected a list of integers")
    if len(value) not in (0, 52):
        raise InvalidRecord(package, key, f"expected 0 or 52 weekly counts, got {len(value)}")
    if value and not (min(value) >= 0 and max(value) <= MAX_COUNT):
        for count in value:
            _in_range(package, key, count)  # raises for the first count out of range
    return tuple(value) or None  # [] means djangopackages has no repository data: unknown


def _logins(package: str, key: str, value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    try:
        if type(value) is list:
            "".join(value)  # a TypeError unless every item is a string
            return tuple(value)
    except TypeError:
        pass
    raise InvalidRecord(package, key, "expected a list of strings")


def _grids(package: str, key: str, value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if type(value) is not list:
        raise InvalidRecord(package, key, f"expected a list, got {_kind(value)}")
    return tuple(sorted({_ident(package, key, item) for item in value}))


def _category(package: str, key: str, value: Any) -> int | None:
    return None if value is None else _ident(package, key, value)


def _ident(package: str, key: str, value: Any) -> int:
    """An id, or the id at the end of a URL (``.../grids/66/`` or ``...?format=api``)."""
    if type(value) is int:
        return _in_range(package, key, value)
    if type(value) is str:
        ident = _URL_IDS.get(value)
        if ident is not None:
            return ident
        match = _ID_IN_URL.search(value)
        if match:
            ident = _in_range(package, key, int(match.group(1)))
            if len(_URL_IDS) < _URL_IDS_MAX and len(value) <= _URL_IDS_KEY_MAX:  # they recur
                _URL_IDS[value] = ident
            return ident
    raise InvalidRecord(package, key, f"expected a URL ending in an id, got {str(value)[:60]!r}")


_NORMALISE: dict[str, Callable[[str, str, Any], Any]] = {
    **dict.fromkeys(_TEXT_FIELDS, _text),
    **dict.fromkeys(_COUNT_FIELDS, _count),
    **dict.fromkeys(_DATETIME_FIELDS, _datetime),
    "commits_over_52": _commits,
    "participants": _logins,
    "grids": _grids,
    "category": _category,
}
assert set(_NORMALISE) == set(FIELDS[1:]), "every field but slug has a normaliser"


# The validators, for the other sources' fields (SPEC §3.1: each part is validated alike).
check_text = _text
check_count = _count
check_datetime = _datetime


def check_bool(package: str, key: str, value: Any) -> bool | None:
    if value is None or type(value) is bool:
        return value
    raise InvalidRecord(package, key, f"expected true, false or null, got {_kind(value)}")


def check_texts(package: str, key: str, value: Any) -> list[str] | None:
    if value is None:
        return None
    return list(_logins(package, key, value) or ())


def kind_of(value: Any) -> str:
    """What a decoded JSON value is, for error messages ("an object", "null"...)."""
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


_kind = kind_of
