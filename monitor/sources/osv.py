"""The OSV source (SPEC §2.1): known vulnerabilities of the version in use, as field ``vulns``.

A watch applies when a PyPI name and a version in use are known (:meth:`OSVSource.key` gives
``NAME==VERSION``). A poll asks ``POST /v1/querybatch`` once per :data:`BATCH` distinct keys,
the batches sent concurrently, and follows ``next_page_token`` for the queries that have one
(a further querybatch holding only those, each with its ``page_token``). The answer lists
``(id, modified)`` pairs only:

- a watch's part has the fingerprint of its sorted pairs; when that is the fingerprint it
  was given, the part is ``unchanged`` and nothing more is asked;
- otherwise ``GET /v1/vulns/ID`` gives each vulnerability's details (summary, aliases, first
  fixed versions, ``withdrawn``), once per ``(id, modified)``: what a :class:`VulnCache`
  already holds is not fetched again. ``vulns`` is the sorted ids, withdrawn ones left out.

Failures are parts, never raised: a querybatch that fails (after the client's retries), or
whose answer is malformed, fails every part of its batch; a detail that fails fails the parts
that need it. Each error names the package and OSV.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeGuard
from urllib.parse import quote, urlsplit

import orjson
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from monitor.errors import InvalidRecord, SourceError
from monitor.names import is_pypi_watch, project_of
from monitor.snapshot import check_datetime
from monitor.sources import Context, Due, FieldKind, Part, PartStatus
from monitor.sources.http import JsonSource
from monitor.text import clip

log = logging.getLogger(__name__)

__all__ = [
    "BATCH",
    "DEFAULT_URL",
    "MemoryVulnCache",
    "OSVSource",
    "Vuln",
    "VulnCache",
    "osv_link",
    "project_name",
    "version_in_use",
]

DEFAULT_URL = "https://api.osv.dev"
BATCH = 1000  # queries per querybatch: the API's own limit
MAX_PAGES = 100  # querybatch pages followed per batch before it is taken as malformed
SUMMARY_MAX = 500
ALIASES_MAX = 50
FIXED_MAX = 50
VERSION_MAX = 100
ECOSYSTEM = "PyPI"
SUBJECT = "OSV"
_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")
_MODIFIED_MAX = 40  # characters of a datetime string (nanoseconds and an offset fit)
# A PyPI project name (PEP 508), as the last segment of a pypi_url.
_PROJECT = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")

Pair = tuple[str, str]  # (id, modified), as querybatch gives them


def osv_link(vuln_id: str) -> str:
    """The vulnerability's page on osv.dev, for messages."""
    return f"https://osv.dev/vulnerability/{quote(vuln_id, safe='')}"


def version_in_use(values: Mapping[str, Any]) -> str | None:
    """The watch's ``pinned`` version, else ``pypi.version``, else ``pypi_version`` (the
    first that is a non-blank string of at most 100 characters)."""
    for field in ("pinned", "pypi.version", "pypi_version"):
        value = values.get(field)
        if _usable_version(value):
            return value.strip()
    return None


def project_name(pypi_url: Any) -> str | None:
    """The PEP 503-normalised project name a ``pypi_url`` names (its last path segment), or
    None when it names none (empty, not a URL, not a project name)."""
    if type(pypi_url) is not str or not pypi_url.strip():
        return None
    try:
        path = urlsplit(pypi_url.strip()).path
    except ValueError:
        return None
    return _project(path.rstrip("/").rpartition("/")[2])


def _project(name: str) -> str | None:
    """``name`` PEP 503-normalised, or None when it is no project name."""
    return canonicalize_name(name) if _PROJECT.fullmatch(name) else None


# -- vulnerability details ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Vuln:
    """One OSV record's details, as kept (once per ``(id, modified)``) and shown.

    ``fixed`` is the first fixed versions of every PyPI package it affects, sorted by
    version; ``affected`` the same per package (PEP 503 name, fixed versions), for a record
    that names more than one. ``summary`` is the record's ``summary``, else the first line of
    its ``details``, cut to 500 characters. ``withdrawn`` is the withdrawal datetime string.
    """

    id: str
    modified: str
    summary: str | None = None
    aliases: tuple[str, ...] = ()
    fixed: tuple[str, ...] = ()
    withdrawn: str | None = None
    affected: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @property
    def link(self) -> str:
        return osv_link(self.id)

    @property
    def modified_at(self) -> datetime:
        """``modified`` as an aware datetime (its strings do not sort: ``…00Z`` > ``…00.5Z``)."""
        parsed = check_datetime(self.id, "modified", self.modified)
        assert parsed is not None
        return parsed

    def fixed_for(self, name: str) -> tuple[str, ...]:
        """The first fixed versions of project ``name`` (any spelling); ``fixed`` when the
        record names no such PyPI package."""
        wanted = canonicalize_name(name)
        for package, fixed in self.affected:
            if package == wanted:
                return fixed
        return self.fixed

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "modified": self.modified,
            "summary": self.summary,
            "aliases": list(self.aliases),
            "fixed": list(self.fixed),
            "withdrawn": self.withdrawn,
            "affected": [[name, list(fixed)] for name, fixed in self.affected],
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Vuln:
        """A :class:`Vuln` from :meth:`to_json_dict`'s output (as stored)."""
        return cls(
            id=data["id"],
            modified=data["modified"],
            summary=data.get("summary"),
            aliases=tuple(data.get("aliases") or ()),
            fixed=tuple(data.get("fixed") or ()),
            withdrawn=data.get("withdrawn"),
            affected=tuple((name, tuple(fixed)) for name, fixed in data.get("affected") or ()),
        )

    @classmethod
    def from_record(cls, record: Any, *, subject: str) -> Vuln:
        """Validate an OSV record (``GET /v1/vulns/ID``); :class:`InvalidRecord` naming
        ``subject`` and the field otherwise."""
        if type(record) is not dict:
            raise InvalidRecord(subject, None, "expected an OSV record (a JSON object)")
        vuln_id = _vuln_id(subject, "id", record.get("id"))
        modified = _modified(subject, "modified", record.get("modified"))
        withdrawn = record.get("withdrawn")
        if withdrawn is not None:
            withdrawn = _modified(subject, "withdrawn", withdrawn)
        affected = _affected(subject, record.get("affected"))
        fixed = _sorted_versions({v for _, versions in affected for v in versions})
        return cls(
            id=vuln_id,
            modified=modified,
            summary=_summary(subject, record),
            aliases=_aliases(subject, record.get("aliases")),
            fixed=fixed[:FIXED_MAX],
            withdrawn=withdrawn,
            affected=affected,
        )


class VulnCache(Protocol):
    """Where details are kept between polls (the integrator's SQLite table).

    ``get`` gives the ones it holds of the pairs asked for; ``put`` keeps them (a pair it
    holds already is replaced); ``latest`` gives, per id asked for, the one with the newest
    ``modified`` (compared as datetimes: see :attr:`Vuln.modified_at`).
    """

    def get(self, ids_modified: Iterable[Pair]) -> dict[Pair, Vuln]: ...

    def put(self, vulns: Iterable[Vuln]) -> None: ...

    def latest(self, ids: Iterable[str]) -> dict[str, Vuln]: ...


class MemoryVulnCache:
    """A :class:`VulnCache` in a dict (tests, one-off commands)."""

    def __init__(self, vulns: Iterable[Vuln] = ()):
        self.vulns: dict[Pair, Vuln] = {}
        self.put(vulns)

    def get(self, ids_modified: Iterable[Pair]) -> dict[Pair, Vuln]:
        return {pair: self.vulns[pair] for pair in ids_modified if pair in self.vulns}

    def put(self, vulns: Iterable[Vuln]) -> None:
        for vuln in vulns:
            self.vulns[vuln.id, vuln.modified] = vuln

    def latest(self, ids: Iterable[str]) -> dict[str, Vuln]:
        wanted = set(ids)
        found: dict[str, Vuln] = {}
        for (vuln_id, _), vuln in self.vulns.items():
            if vuln_id in wanted:
                best = found.get(vuln_id)
                if best is None or vuln.modified_at > best.modified_at:
                    found[vuln_id] = vuln
        return found


class StoreVulnCache:
    """A :class:`VulnCache` in the database's ``vulns`` table (:class:`monitor.store.Store`):
    details are fetched once per (id, modified) and kept across runs."""

    def __init__(self, store: Any):
        self.store = store

    def get(self, ids_modified: Iterable[Pair]) -> dict[Pair, Vuln]:
        rows = self.store.vuln_data(ids_modified)
        return {pair: Vuln.from_json_dict(orjson.loads(data)) for pair, data in rows.items()}

    def put(self, vulns: Iterable[Vuln]) -> None:
        self.store.keep_vulns(
            (v.id, v.modified, orjson.dumps(v.to_json_dict()).decode()) for v in vulns
        )

    def latest(self, ids: Iterable[str]) -> dict[str, Vuln]:
        return {i: Vuln.from_json_dict(d) for i, d in self.store.vulnerabilities(ids).items()}


# -- the source ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Query:
    """One distinct ``NAME==VERSION`` asked in a poll, and what it got."""

    key: str
    name: str
    version: str

    def body(self, page_token: str | None = None) -> dict[str, Any]:
        query: dict[str, Any] = {
            "package": {"name": self.name, "ecosystem": ECOSYSTEM},
            "version": self.version,
        }
        if page_token is not None:
            query["page_token"] = page_token
        return query


class OSVSource(JsonSource):
    """OSV's known vulnerabilities of each watch's version in use (SPEC §2.1, §3.1).

    ``requests_sent`` counts every HTTP request, retries included; ``batches_sent`` the
    querybatch requests (pages included, retries not).
    """

    name = "osv"
    fields: Mapping[str, FieldKind] = {"vulns": FieldKind.TEXTS}

    after = ("pypi",)  # reads PyPI's version in use from this cycle's answers

    @classmethod
    def from_config(cls, settings: Any, context: Context) -> OSVSource:
        """Built from ``[sources.osv]``; details are kept in the database."""
        return cls(
            settings.url, cache=StoreVulnCache(context.store), **context.client_options(settings)
        )

    def __init__(
        self, base_url: str = DEFAULT_URL, *, cache: VulnCache, batch: int = BATCH, **client: Any
    ):
        super().__init__(base_url, **client)
        self.cache = cache
        self.batch = min(max(batch, 1), BATCH)
        self.batches_sent = 0

    def key(self, watch: str, values: Mapping[str, Any]) -> str | None:
        """``NAME==VERSION``: the PyPI name (a ``pypi:`` watch's own, else ``pypi_url``'s)
        and the version in use (``pinned``, else ``pypi.version``, else ``pypi_version``);
        None when either is unknown."""
        name = (
            _project(project_of(watch))
            if is_pypi_watch(watch)
            else project_name(values.get("pypi_url"))
        )
        version = version_in_use(values)
        if name is None or version is None:
            return None
        return f"{name}=={version}"

    def details(self, ids: Iterable[str]) -> list[Vuln]:
        """The kept details of ``ids`` (the newest ``modified`` of each), in the order given;
        ids never fetched are left out. Asks nothing of OSV."""
        wanted = list(dict.fromkeys(ids))
        found = self.cache.latest(wanted)
        return [found[vuln_id] for vuln_id in wanted if vuln_id in found]

    async def poll(
        self, due: Sequence[Due], on_part: Callable[[Part], None] | None = None
    ) -> list[Part]:
        """A part per due watch, in order; ``on_part`` is called as each is known (a batch's
        parts together, once its details are in)."""
        return await _Poll(self, due, on_part).run()

    # -- requests (used by _Poll) ---------------------------------------------------------

    async def query(self, queries: list[dict[str, Any]]) -> list[Any]:
        """One querybatch: its ``results``, one per query, not yet validated. Raises
        :class:`SourceError` (:class:`InvalidRecord` for a wrong shape)."""
        self.batches_sent += 1
        fetched = await self._http.get_json(
            f"{self.base_url}/v1/querybatch",
            subject=f"{SUBJECT} querybatch",
            json_body={"queries": queries},
        )
        data = fetched.data
        results = data.get("results", []) if type(data) is dict else None
        if type(results) is not list:
            raise InvalidRecord(f"{SUBJECT} querybatch", "results", "expected a list")
        if len(results) != len(queries):
            raise InvalidRecord(
                f"{SUBJECT} querybatch",
                "results",
                f"{len(results)} results for {len(queries)} queries",
            )
        return results

    async def vuln(self, vuln_id: str) -> Vuln:
        """``GET /v1/vulns/ID``, validated."""
        subject = f"{SUBJECT} vulnerability {vuln_id}"
        fetched = await self._http.get_json(
            f"{self.base_url}/v1/vulns/{quote(vuln_id, safe='')}", subject=subject
        )
        vuln = Vuln.from_record(fetched.data, subject=subject)
        if vuln.id != vuln_id:
            raise InvalidRecord(subject, "id", f"the record is {vuln.id!r}")
        return vuln


class _Poll:
    """One :meth:`OSVSource.poll`."""

    def __init__(
        self, source: OSVSource, due: Sequence[Due], on_part: Callable[[Part], None] | None
    ):
        self.source = source
        self.due = due
        self.on_part = on_part
        self.parts: list[Part | None] = [None] * len(due)
        self.watches: dict[str, list[int]] = {}  # key -> the indexes of its due watches
        self.details: dict[str, asyncio.Future[Vuln]] = {}  # id -> its fetch, this poll

    async def run(self) -> list[Part]:
        queries: dict[str, _Query] = {}
        for index, item in enumerate(self.due):
            query = _parse_key(item.key)
            if query is None:
                self._done(index, self._failed(item, f"{item.watch}: OSV: bad key {item.key!r}"))
                continue
            queries.setdefault(query.key, query)
            self.watches.setdefault(query.key, []).append(index)
        distinct = list(queries.values())
        size = self.source.batch
        try:
            await asyncio.gather(
                *(self._batch(distinct[i : i + size]) for i in range(0, len(distinct), size))
            )
        finally:
            for task in self.details.values():
                task.cancel()
        parts = [part for part in self.parts if part is not None]
        assert len(parts) == len(self.due), "every due watch has its part"
        return parts

    async def _batch(self, batch: list[_Query]) -> None:
        """Query one batch, fetch the details its changed parts need, emit its parts."""
        start = time.monotonic()
        try:
            found = await self._paged(batch)
        except SourceError as exc:
            self._fail_batch(batch, str(exc), start)
            return
        except Exception as exc:  # a bug must not fail the other batches of the poll
            log.exception("OSV: unexpected error in a querybatch")
            self._fail_batch(batch, f"OSV querybatch: unexpected error: {exc!r}", start)
            return
        await self._answer(batch, found, start)

    async def _paged(self, batch: list[_Query]) -> dict[str, list[Pair]]:
        """Each query's (id, modified) pairs, every page followed."""
        found: dict[str, list[Pair]] = {query.key: [] for query in batch}
        pending: list[tuple[_Query, str | None]] = [(query, None) for query in batch]
        tokens: set[str] = set()
        for _ in range(MAX_PAGES):
            results = await self.source.query([query.body(token) for query, token in pending])
            following: list[tuple[_Query, str | None]] = []
            for (query, _), result in zip(pending, results, strict=True):
                pairs, token = _result(result, query)
                found[query.key].extend(pairs)
                if token is not None:
                    if token in tokens:
                        raise InvalidRecord(
                            f"{SUBJECT} querybatch", "next_page_token", "the same token twice"
                        )
                    tokens.add(token)
                    following.append((query, token))
            if not following:
                return found
            pending = following
        raise InvalidRecord(
            f"{SUBJECT} querybatch", "next_page_token", f"still paging after {MAX_PAGES} pages"
        )

    async def _answer(
        self, batch: list[_Query], found: dict[str, list[Pair]], start: float
    ) -> None:
        """Emit the batch's parts: unchanged ones at once, the others with their details."""
        changed: list[tuple[_Query, bytes]] = []
        for query in batch:
            fingerprint = _fingerprint(found[query.key])
            for index in self.watches[query.key]:
                if fingerprint == self.due[index].state.fingerprint:
                    self._done(index, self._part(index, PartStatus.UNCHANGED, start, fingerprint))
            if any(self.parts[index] is None for index in self.watches[query.key]):
                changed.append((query, fingerprint))
        needed = {pair for query, _ in changed for pair in found[query.key]}
        vulns, errors = await self._vulns(needed)
        for query, fingerprint in changed:
            pairs = sorted(set(found[query.key]))
            error = next((errors[pair] for pair in pairs if pair in errors), None)
            if error is not None:
                self._fail_query(query, error, start)
                continue
            ids = sorted({vuln_id for vuln_id, _ in pairs if vulns[vuln_id].withdrawn is None})
            for index in self.watches[query.key]:
                if self.parts[index] is None:
                    part = self._part(index, PartStatus.OK, start, fingerprint, {"vulns": ids})
                    self._done(index, part)

    async def _vulns(self, needed: set[Pair]) -> tuple[dict[str, Vuln], dict[Pair, str]]:
        """The details of ``needed`` by id (kept ones, else fetched and kept), and the error
        of each pair whose details could not be had."""
        cached = self.source.cache.get(needed) if needed else {}
        vulns = {vuln_id: vuln for (vuln_id, _), vuln in cached.items()}
        missing = sorted(pair for pair in needed if pair not in cached)
        ids = list(dict.fromkeys(vuln_id for vuln_id, _ in missing))
        outcomes = await asyncio.gather(*map(self._fetch, ids), return_exceptions=True)
        errors: dict[str, str] = {}
        fetched: list[Vuln] = []
        for vuln_id, outcome in zip(ids, outcomes, strict=True):
            if isinstance(outcome, Vuln):
                vulns[vuln_id] = outcome
                fetched.append(outcome)
            elif isinstance(outcome, SourceError):
                errors[vuln_id] = str(outcome)
            elif isinstance(outcome, Exception):
                log.error("OSV: unexpected error fetching %s", vuln_id, exc_info=outcome)
                errors[vuln_id] = f"OSV vulnerability {vuln_id}: unexpected error: {outcome!r}"
            else:
                raise outcome  # cancelled
        if fetched:
            self.source.cache.put(fetched)
        return vulns, {pair: errors[pair[0]] for pair in missing if pair[0] in errors}

    def _fetch(self, vuln_id: str) -> Awaitable[Vuln]:
        """The fetch of ``vuln_id``'s details, shared by the batches of this poll."""
        task = self.details.get(vuln_id)
        if task is None:
            task = asyncio.ensure_future(self.source.vuln(vuln_id))
            self.details[vuln_id] = task
        return asyncio.shield(task)

    def _fail_batch(self, batch: list[_Query], error: str, start: float) -> None:
        for query in batch:
            self._fail_query(query, error, start)

    def _fail_query(self, query: _Query, error: str, start: float) -> None:
        """Fail the parts of ``query``'s watches not yet known: ``NAME: error``."""
        duration = time.monotonic() - start
        for index in self.watches[query.key]:
            if self.parts[index] is None:
                failed = self._failed(self.due[index], f"{query.name}: {error}", duration)
                self._done(index, failed)

    def _part(
        self,
        index: int,
        status: PartStatus,
        start: float,
        fingerprint: bytes,
        values: dict[str, Any] | None = None,
    ) -> Part:
        return Part(
            self.due[index].watch,
            self.source.name,
            status,
            values=values,
            fingerprint=fingerprint,
            duration=time.monotonic() - start,
        )

    def _failed(self, item: Due, error: str, duration: float = 0.0) -> Part:
        return Part(item.watch, self.source.name, PartStatus.FAILED, error=error, duration=duration)

    def _done(self, index: int, part: Part) -> None:
        self.parts[index] = part
        if self.on_part is not None:
            self.on_part(part)


# -- validation ---------------------------------------------------------------------------


def _usable_version(value: Any) -> TypeGuard[str]:
    return type(value) is str and 0 < len(value.strip()) <= VERSION_MAX


def _parse_key(key: str) -> _Query | None:
    name, sep, version = key.partition("==")
    if not sep or not _PROJECT.fullmatch(name) or not _usable_version(version):
        return None
    return _Query(f"{name}=={version}", name, version)


def _fingerprint(pairs: Iterable[Pair]) -> bytes:
    """16 bytes of sha256 over the sorted distinct pairs."""
    return hashlib.sha256(orjson.dumps(sorted(set(pairs)))).digest()[:16]


def _result(result: Any, query: _Query) -> tuple[list[Pair], str | None]:
    """One query's result: its pairs and its next page's token. A query without any
    vulnerability gets ``{}`` (no ``vulns``)."""
    subject = f"{query.name}: {SUBJECT} querybatch"
    if type(result) is not dict:
        raise InvalidRecord(subject, "results", "expected an object per query")
    vulns = result.get("vulns", [])
    if type(vulns) is not list:
        raise InvalidRecord(subject, "vulns", "expected a list")
    pairs: list[Pair] = []
    for item in vulns:
        if type(item) is not dict:
            raise InvalidRecord(subject, "vulns", "expected objects with id and modified")
        pairs.append(
            (
                _vuln_id(subject, "id", item.get("id")),
                _modified(subject, "modified", item.get("modified")),
            )
        )
    token = result.get("next_page_token") or None
    if token is not None and (type(token) is not str or len(token) > 10_000):
        raise InvalidRecord(subject, "next_page_token", "expected a string")
    return pairs, token


def _vuln_id(subject: str, field: str, value: Any) -> str:
    if type(value) is str and _ID.fullmatch(value):
        return value
    shown = repr(value[:60]) if type(value) is str else f"not a string ({type(value).__name__})"
    raise InvalidRecord(subject, field, f"not an OSV id: {shown}")


def _modified(subject: str, field: str, value: Any) -> str:
    """A datetime string, kept as given (it is half of the cache key)."""
    if type(value) is not str or len(value) > _MODIFIED_MAX:
        raise InvalidRecord(subject, field, "expected a datetime string")
    check_datetime(subject, field, value)
    return value


def _summary(subject: str, record: dict[str, Any]) -> str | None:
    """``summary``, else the first non-blank line of ``details``; cut to 500 characters."""
    for field in ("summary", "details"):
        value = record.get(field)
        if value is None:
            continue
        if type(value) is not str:
            raise InvalidRecord(subject, field, "expected a string")
        line = next((line.strip() for line in value[:10_000].splitlines() if line.strip()), "")
        if line:
            return clip(line if field == "details" else value.strip(), SUMMARY_MAX)
    return None


def _aliases(subject: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if type(value) is not list or not all(type(alias) is str for alias in value):
        raise InvalidRecord(subject, "aliases", "expected a list of strings")
    return tuple(clip(alias, 100) for alias in value[:ALIASES_MAX])


def _affected(subject: str, value: Any) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Per PyPI package the record affects: its PEP 503 name and the versions of its
    ranges' ``fixed`` events (git ranges, whose events are commits, left out)."""
    if value is None:
        return ()
    if type(value) is not list:
        raise InvalidRecord(subject, "affected", "expected a list")
    fixed: dict[str, set[str]] = {}
    for entry in value:
        package = entry.get("package") if type(entry) is dict else None
        if type(package) is not dict:
            raise InvalidRecord(subject, "affected", "expected objects with a package")
        name = package.get("name")
        if package.get("ecosystem") != ECOSYSTEM or type(name) is not str:
            continue
        versions = fixed.setdefault(canonicalize_name(name), set())
        versions.update(_fixed_events(subject, entry.get("ranges")))
    return tuple(
        (name, _sorted_versions(versions)[:FIXED_MAX]) for name, versions in sorted(fixed.items())
    )


def _fixed_events(subject: str, ranges: Any) -> Iterable[str]:
    if ranges is None:
        return
    if type(ranges) is not list:
        raise InvalidRecord(subject, "affected.ranges", "expected a list")
    for span in ranges:
        events = span.get("events") if type(span) is dict else None
        if type(events) is not list:
            raise InvalidRecord(subject, "affected.ranges", "expected objects with events")
        if span.get("type") == "GIT":
            continue
        for event in events:
            if type(event) is not dict:
                raise InvalidRecord(subject, "affected.ranges.events", "expected objects")
            version = event.get("fixed")
            if version is None:
                continue
            if type(version) is not str:
                raise InvalidRecord(subject, "affected.ranges.events.fixed", "expected a string")
            if version.strip():
                yield clip(version.strip(), VERSION_MAX)


def _sorted_versions(versions: Iterable[str]) -> tuple[str, ...]:
    """By PEP 440 order; versions that are not PEP 440 after, by text."""

    def order(version: str) -> tuple[int, Version, str]:
        try:
            return (0, Version(version), version)
        except InvalidVersion:
            return (1, _NO_VERSION, version)

    return tuple(sorted(set(versions), key=order))


_NO_VERSION = Version("0")
