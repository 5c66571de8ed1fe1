"""The djangopackages.org API v4 source (SPEC §2).

``fetch`` gets one package; ``poll`` gets many and never raises for one package's failure:
every package gets a :class:`PollResult`. When many packages are due, ``poll`` reads the list
endpoint in pages of ``page_size`` instead, if that takes fewer requests:

- with ``known_count`` (the list's ``count`` from last time), it pages when
  ``ceil(count / page_size) < len(slugs)``;
- without it, and for more than one slug, it reads the first page (which tells the count),
  keeps what it matched and then decides the same way for the rest;
- a page that fails (after retries, or malformed, oversized, not the expected shape) is
  dropped: every slug no page matched is fetched singly, so "not found" always comes from a
  404 of the package's own URL; a record in a page that fails validation is fetched singly
  too, so its failure is its own and its neighbours are unaffected;
- when a page spent its retries on 5xx, timeouts or no answer, the records it held have had
  their retries: each is tried singly once more, not as many times again, and its failure
  counts both (``timed out after 2s (4 attempts: 3 for its list page, 1 alone)``);
- when a page reports a larger ``count`` than planned for, the extra pages are read too if
  that is still cheaper than single requests for what is still missing.

"Not found" is believed only when it is the API's own: a 404 whose body is a JSON object with a
``detail`` key. Any other 404 (a wrong ``url``, a proxy) fails the package's poll, naming the
key to check. And when every package of a poll of two or more came back not found, and no
list page of this poll answered, the list endpoint is asked once (``?limit=1``): if it gives
no valid page either, the URL answers 404 for everything, and each package's poll fails so
instead of each firing ``package-not-found``.

Given the fingerprints of the packages' last stored records, ``poll`` reports a record that
still has its fingerprint as ``unchanged`` without parsing it (only the fields asked for and
the bookkeeping are validated); any other record is parsed into a snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeGuard, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import orjson
import xxhash

from monitor import fields as field_kinds
from monitor.errors import InvalidRecord, PackageNotFound, SourceError
from monitor.snapshot import (
    BOOKKEEPING,
    MAX_COUNT,
    parse_record,
    record_fingerprint,
    record_values,
    unix_seconds,
)
from monitor.sources import PollResult, PollStatus
from monitor.sources.http import FetchError, JsonSource, decoded

log = logging.getLogger(__name__)

PAGE_SIZE = 200
PACED_PAGES = 4  # list pages asked at once by a paced poll (see ``poll``'s ``pace``)
URL_KEY = "[sources.djangopackages] url"  # the config key a wrong URL is fixed in
T = TypeVar("T")
_LAST_SEGMENT = re.compile(r"/([^/]+)/?$")

__all__ = ["DjangoPackagesSource", "GridNotFound", "PollResult", "PollStatus"]


class GridNotFound(PackageNotFound):
    """The grid's own URL answered 404 (a :class:`PackageNotFound`, so it exits alike)."""

    def __init__(self, grid: str):
        super().__init__(grid)
        self.grid = grid
        self.args = (f"grid {grid!r} not found on djangopackages",)


class DjangoPackagesSource(JsonSource):
    """Packages from ``base_url`` (e.g. ``https://djangopackages.org``) through ``session``.

    ``last_count`` is the best known size of the package list after a poll (what a page
    said, else the ``known_count`` given): persist it and pass it back next time.
    """

    def __init__(self, base_url: str, *, page_size: int = PAGE_SIZE, **client: Any):
        super().__init__(base_url, **client)
        self.page_size = max(page_size, 1)
        self.last_count: int | None = None

    def package_url(self, key: str | int) -> str:
        return f"{self.base_url}/api/v4/packages/{quote(str(key), safe='')}/"

    # -- telling "not found" from a wrong URL --------------------------------------------

    def not_its_404(self, subject: str) -> str:
        """The error for a 404 that is not the API's own."""
        return (
            f"{subject}: {_shown(self.base_url)} answers 404 without djangopackages'"
            f' {{"detail": ...}} body: check `{URL_KEY}`'
        )

    def everything_404(self, subject: str | None = None) -> str:
        """The error for a URL that answers 404 to the packages and to the list alike."""
        where = f"{subject}: " if subject else ""
        return (
            f"{where}djangopackages at {_shown(self.base_url)} answers 404 for everything:"
            f" check `{URL_KEY}`"
        )

    def _not_found(self, exc: FetchError, subject: str) -> bool:
        """Whether ``exc`` is the API's own "not found"; a 404 that is not (a wrong URL, a
        proxy) raises :class:`SourceError` naming the key to check."""
        if exc.status != 404:
            return False
        if not _is_api_404(exc.body):
            raise SourceError(self.not_its_404(subject)) from None
        return True

    async def lists_answer(self) -> bool:
        """Whether the list endpoint gives a valid page (one ``?limit=1`` request): what
        tells packages that are gone from a URL that answers 404 to everything."""
        try:
            fetched = await self._http.get_json(
                f"{self.base_url}/api/v4/packages/",
                params={"limit": 1},
                subject="packages list",
            )
        except SourceError as exc:
            log.info("%s", exc)
            return False
        return _page_of(fetched.data) is not None

    # -- one package ---------------------------------------------------------------------

    async def fetch(self, slug: str) -> PollResult:
        """One package by slug (or id, when all digits), parsed: an ``ok`` result for
        ``slug`` as asked, whatever slug the record gives (an id gives the record's own,
        validated as a plain slug): upstream text never names a watch.

        Raises :class:`PackageNotFound` on 404, :class:`SourceError` (or its
        :class:`InvalidRecord`) otherwise.
        """
        return await self._fetch(slug, subject=slug, slug=None if slug.isdigit() else slug)

    async def _fetch(self, key: str, *, subject: str, slug: str | None = None) -> PollResult:
        try:
            fetched = await self._http.get_json(self.package_url(key), subject=subject)
        except FetchError as exc:
            if self._not_found(exc, subject):
                raise PackageNotFound(key) from None
            raise
        return _Reading().result(fetched.data, fetched.duration, package=subject, slug=slug)

    # -- many packages -------------------------------------------------------------------

    async def poll(
        self,
        slugs: list[str],
        *,
        known_count: int | None = None,
        fingerprints: Mapping[str, bytes] | None = None,
        fields: Iterable[str] = (),
        on_result: Callable[[PollResult], None] | None = None,
        keep: bool = True,
        pace: Callable[[], Awaitable[None]] | None = None,
        recall: Callable[[bytes], bytes | None] | None = None,
        on_page: Callable[[bytes, bytes | None], None] | None = None,
    ) -> list[PollResult]:
        """A result per distinct slug, in the order given; ``on_result`` is called as each
        is known. Failures are results (``failed`` with the reason, or ``not_found``).
        ``keep=False``: the results are only handed to ``on_result`` (a cycle records them
        a batch at a time as they come) and none is returned. ``pace``: awaited before each
        list page is asked (at most :data:`PACED_PAGES` at once), so a caller that takes
        the results slower than they come holds a bounded number of them.

        ``fingerprints`` maps a slug to the fingerprint of its last stored record: a record
        that still has it is not parsed but reported ``unchanged``, carrying ``fields``.

        ``recall(hash)`` gives what reading a list page whose body has that hash gave to an
        earlier poll (its recall), if it was kept: a page that comes back the same, every
        package it holds still unchanged, is not decoded at all. ``on_page(hash, recall)``
        is told each page read (``recall`` None when it was recalled), for the next poll.
        """
        reading = _Reading(fingerprints or {}, tuple(fields))
        wanted = list(dict.fromkeys(slugs))
        results: dict[str, PollResult] = {}  # kept ones
        told: set[str] = set()
        held: dict[str, PollResult] = {}  # not found: told once the URL is known not at fault

        def done(result: PollResult) -> None:
            told.add(result.slug)
            if result.status is PollStatus.NOT_FOUND and len(wanted) > 1:
                held[result.slug] = result
                return
            if keep:
                results[result.slug] = result
            if on_result is not None:
                on_result(result)

        if known_count is not None:
            self.last_count = known_count
        page_answered = False
        tried: dict[str, int] = {}  # slug -> attempts a failed page spent on it
        if len(wanted) > 1:
            pager = _Pager(self, wanted, reading, done, pace)
            pager.recall, pager.on_page = recall, on_page
            await pager.run(known_count)
            page_answered = pager.count is not None
            if pager.failed_attempts:
                tried = dict.fromkeys(pager.missing - pager.invalid, pager.failed_attempts)
        await _all(
            self._poll_single(slug, reading, done, after_page=tried.get(slug, 0))
            for slug in wanted
            if slug not in told
        )
        if len(held) == len(wanted) > 1 and not page_answered and not await self.lists_answer():
            for slug, result in held.items():
                error = self.everything_404(slug)
                held[slug] = replace(result, status=PollStatus.FAILED, error=error)
        for slug, result in held.items():
            if keep:
                results[slug] = result
            if on_result is not None:
                on_result(result)
        return [results[slug] for slug in wanted] if keep else []

    async def _poll_single(
        self,
        slug: str,
        reading: _Reading,
        done: Callable[[PollResult], None],
        *,
        after_page: int = 0,
    ) -> None:
        """Poll one package; ``after_page``: the attempts a failed list page spent on it
        (then it gets one attempt more)."""
        start = time.monotonic()
        try:
            fetched = await self._http.get_json(
                self.package_url(slug), subject=slug, attempts=1 if after_page else None
            )
            result = reading.result(fetched.data, fetched.duration, package=slug, slug=slug)
        except FetchError as exc:
            if exc.status == 404 and _is_api_404(exc.body):
                error = str(PackageNotFound(slug))
                done(PollResult(slug, PollStatus.NOT_FOUND, None, error, None, exc.duration))
            else:
                error = (
                    self.not_its_404(slug) if exc.status == 404 else _counted(exc, slug, after_page)
                )
                done(PollResult(slug, PollStatus.FAILED, None, error, None, exc.duration))
        except InvalidRecord as exc:
            done(PollResult(slug, PollStatus.FAILED, None, str(exc), None, fetched.duration))
        except Exception as exc:  # a bug must not fail the other packages of the poll
            log.exception("%s: unexpected error while polling", slug)
            error = f"{slug}: unexpected error: {exc!r}"
            done(PollResult(slug, PollStatus.FAILED, None, error, None, time.monotonic() - start))
        else:
            done(result)

    # -- search and grids ----------------------------------------------------------------

    async def search(self, text: str) -> list[str]:
        """Package slugs suggested for ``text`` (best effort: ``[]`` on any error)."""
        try:
            fetched = await self._http.get_json(
                f"{self.base_url}/api/v4/search/",
                params={"q": text},
                subject=f"search {text!r}",
                attempts=1,
            )
        except SourceError as exc:
            log.debug("no suggestions: %s", exc)
            return []
        if not isinstance(fetched.data, list):
            return []
        slugs = [
            item["slug"]
            for item in fetched.data
            if isinstance(item, dict)
            and item.get("item_type") == "package"
            and isinstance(item.get("slug"), str)
        ]
        return list(dict.fromkeys(slugs))

    async def grid_keys(self, grid: str) -> list[str]:
        """The keys of the grid's members as they are now: the last segment of each member
        URL's path (an id), without repeats. Raises :class:`GridNotFound` when the grid's URL
        answers the API's 404, :class:`SourceError` on other failures, a 404 that is not the
        API's own included (naming the key to check)."""
        url = f"{self.base_url}/api/v4/grids/{quote(grid, safe='')}/"
        subject = f"grid {grid!r}"
        try:
            fetched = await self._http.get_json(url, subject=subject)
        except FetchError as exc:
            if not self._not_found(exc, subject):
                raise
            if not await self.lists_answer():
                raise SourceError(self.everything_404(subject)) from None
            raise GridNotFound(grid) from None
        members = fetched.data.get("packages") if isinstance(fetched.data, dict) else None
        if not isinstance(members, list):
            raise InvalidRecord(subject, "packages", "expected a list of package URLs")
        keys: list[str] = []
        for member in members:
            match = _LAST_SEGMENT.search(urlsplit(member).path) if isinstance(member, str) else None
            if match is None:
                raise InvalidRecord(subject, "packages", f"not a package URL: {str(member)[:80]!r}")
            keys.append(match.group(1))
        return list(dict.fromkeys(keys))

    async def grid_members(self, grid: str, keys: Iterable[str] | None = None) -> list[PollResult]:
        """The grid's members (those of ``keys``, default: :meth:`grid_keys`), fetched
        through ``base_url``. A member whose own URL answers 404 is left out (logged); other
        failures raise."""
        if keys is None:
            keys = await self.grid_keys(grid)
        found = await _all(self._member(grid, key) for key in dict.fromkeys(keys))
        return [member for member in found if member is not None]

    async def _member(self, grid: str, key: str) -> PollResult | None:
        try:
            return await self._fetch(key, subject=f"package {key} of grid {grid!r}")
        except PackageNotFound:
            log.warning("grid %r lists package %s, which is not found; left out", grid, key)
            return None


class _Pager:
    """Reads list pages for one ``poll`` and reports the packages it matches."""

    def __init__(
        self,
        source: DjangoPackagesSource,
        wanted: list[str],
        reading: _Reading,
        done: Callable[[PollResult], None],
        pace: Callable[[], Awaitable[None]] | None = None,
    ):
        self.source = source
        self.reading = reading
        self.pace = pace
        self.paced = asyncio.Semaphore(PACED_PAGES)
        self.size = source.page_size
        self.done = done
        self.missing = set(wanted)  # not matched in any page yet
        self.invalid: set[str] = set()  # failed validation in a page: fetched singly
        self.count: int | None = None  # the largest count a page reported
        self.failed_attempts = 0  # the most a page spent before failing on 5xx/timeouts
        self.read: set[int] = set()  # offsets requested
        self.recall: Callable[[bytes], bytes | None] | None = None  # see poll
        self.on_page: Callable[[bytes, bytes | None], None] | None = None

    def pages(self, count: int) -> int:
        return max(1, math.ceil(count / self.size))

    def worth_it(self, offsets: list[int]) -> bool:
        return 0 < len(offsets) < len(self.missing - self.invalid)

    async def run(self, known_count: int | None) -> None:
        if known_count is None:
            offsets = [0]  # it tells the count; what it matches is kept
        else:
            offsets = [i * self.size for i in range(self.pages(known_count))]
            if not self.worth_it(offsets):
                return
        while offsets:
            self.read.update(offsets)
            await _all(self.paced_page(offset) for offset in offsets)
            if self.count is None:
                return  # no page answered: everything goes single
            self.source.last_count = self.count
            offsets = [
                i * self.size
                for i in range(self.pages(self.count))
                if i * self.size not in self.read
            ]
            if not self.worth_it(offsets):
                return

    async def paced_page(self, offset: int) -> None:
        if self.pace is None:
            await self.page(offset)
            return
        async with self.paced:
            await self.pace()
            await self.page(offset)

    async def page(self, offset: int) -> None:
        source = self.source
        subject = f"packages page at offset {offset}"
        try:
            fetched = await source._http.get_json(
                f"{source.base_url}/api/v4/packages/",
                params={"limit": self.size, "offset": offset},
                subject=subject,
                decode=False,
            )
            digest = xxhash.xxh3_128_digest(fetched.data)  # 30 GB/s; sha256 is 1.5 here
            if self.recalled(digest, fetched.duration):
                return
            fetched = decoded(fetched, subject)
        except FetchError as exc:
            log.info("%s; its packages are fetched singly", exc)
            if exc.reason is not None and exc.status != 429:  # the upstream is struggling
                self.failed_attempts = max(self.failed_attempts, exc.attempts)
            return
        page = _page_of(fetched.data)
        if page is None:
            log.info("%s: not a page of packages; its packages are fetched singly", subject)
            return
        count, records = page
        self.count = count if self.count is None else max(self.count, count)
        recall: _Recall | None = _Recall(self.reading.fields, count)
        for record in records:
            slug = record.get("slug") if isinstance(record, dict) else None
            if recall is not None:
                recall.slugs.append(slug if isinstance(slug, str) else None)
            if not isinstance(slug, str) or slug not in self.missing or slug in self.invalid:
                continue
            try:
                result = self.reading.result(record, fetched.duration, package=slug, slug=slug)
            except Exception as exc:  # InvalidRecord, or a bug: the single fetch reports it
                log.info("%s (in %s); fetching it singly", exc, subject)
                self.invalid.add(slug)
                recall = None  # recalled, it would have to fail the same way
                continue
            self.missing.discard(slug)
            if recall is not None:
                recall.add(result)
            self.done(result)
        if recall is not None and self.on_page is not None:
            self.on_page(digest, recall.dumps())

    def recalled(self, digest: bytes, duration: float) -> bool:
        """Report the packages of a page whose body is one read before (one :attr:`recall`
        knows by its hash) as that reading found them, without decoding it, if every package
        of it still wanted was unchanged then and still has that record's fingerprint.
        False (decode the page) when not."""
        on_page = self.on_page
        stored = self.recall(digest) if self.recall and on_page else None
        if stored is None or on_page is None:
            return False
        recall = orjson.loads(stored)
        if recall["form"] != _RECALL_FORM or recall["fields"] != list(self.reading.fields):
            return False
        known = recall["known"]
        wanted = [
            s for s in dict.fromkeys(recall["slugs"]) if s in self.missing and s not in self.invalid
        ]
        fingerprints = self.reading.fingerprints
        unchanged = []
        for slug in wanted:
            entry = known.get(slug)
            fingerprint = fingerprints.get(slug)
            if entry is None or fingerprint is None or entry[0] != fingerprint.hex():
                return False  # a record read as changed, or not read: decode the page
            unchanged.append((slug, fingerprint, entry))
        count = recall["count"]
        self.count = count if self.count is None else max(self.count, count)
        names = _carried(self.reading.fields)
        dated = [i for i, name in enumerate(names) if name in _DATETIMES or name in BOOKKEEPING]
        status = PollStatus.UNCHANGED
        self.missing.difference_update(wanted)
        for slug, fingerprint, (_, package_id, row, stamps) in unchanged:
            for i in dated:  # as field_kinds.from_json reads them, for the few there are
                if row[i] is not None:
                    row[i] = datetime.fromisoformat(row[i])
            values = dict(zip(names, row, strict=True))
            result = PollResult(
                slug, status, None, None, package_id, duration, fingerprint, values, tuple(stamps)
            )
            self.done(result)
        on_page(digest, None)
        return True


async def _all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Run ``coros`` concurrently; the first to fail cancels the others and is raised as is
    (not wrapped in an ExceptionGroup, so callers see a :class:`SourceError`)."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(coro) for coro in coros]
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    return [task.result() for task in tasks]


_DATED = field_kinds.FieldKind.DATETIME
_DATETIMES = frozenset(n for n, kind in field_kinds.DJANGOPACKAGES.items() if kind is _DATED)
# The form of a page's recall (_Recall): raise it when reading a record changes, so that what
# an earlier version read is read again.
_RECALL_FORM = 2


def _stamps(values: Mapping[str, Any]) -> tuple[int | None, ...]:
    """:attr:`PollResult.stamps` of an ``unchanged`` result's values."""
    return tuple(unix_seconds(values.get(name)) for name in BOOKKEEPING)


def _carried(fields: tuple[str, ...]) -> tuple[str, ...]:
    """The values an ``unchanged`` result carries, when it is asked for ``fields``."""
    return ("slug", *fields, *BOOKKEEPING)


@dataclass
class _Recall:
    """What reading one list page gave, as :meth:`_Pager.recalled` reports it again: the
    slug of each record, and of each package matched its fingerprint, id and the values an
    ``unchanged`` result carries."""

    fields: tuple[str, ...]
    count: int
    slugs: list[str | None] = field(default_factory=list)
    known: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, result: PollResult) -> None:
        """Keep a package's fingerprint, id, the values an ``unchanged`` result carries (in
        :func:`_carried` order: the names are not repeated for each package) and its
        bookkeeping as Unix seconds (:attr:`PollResult.stamps`)."""
        if result.fingerprint is None:
            return
        if result.values is not None:
            values = result.values
        elif result.snapshot is not None:
            values = {"slug": result.slug, **result.snapshot.values(_carried(self.fields)[1:])}
        else:
            return
        # orjson writes datetimes as ISO 8601, which from_json reads back
        row = [values.get(name) for name in _carried(self.fields)]
        stamps = result.stamps or _stamps(values)
        self.known[result.slug] = [result.fingerprint.hex(), result.package_id, row, stamps]

    def dumps(self) -> bytes:
        return orjson.dumps(
            {
                "form": _RECALL_FORM,
                "fields": list(self.fields),
                "count": self.count,
                "slugs": self.slugs,
                "known": self.known,
            }
        )


@dataclass(frozen=True)
class _Reading:
    """How one poll turns a package's record into its result."""

    fingerprints: Mapping[str, bytes] = field(default_factory=dict)  # slug -> last stored
    fields: tuple[str, ...] = ()  # what an ``unchanged`` result carries

    def result(
        self, record: Any, duration: float, *, package: str, slug: str | None = None
    ) -> PollResult:
        """The result for the watched ``slug`` (default: the record's own): ``unchanged``,
        not parsed, when the record's fingerprint is the stored one, else ``ok`` with the
        snapshot. Raises :class:`InvalidRecord` naming ``package``."""
        if type(record) is not dict:
            parse_record(record, package=package)  # raises, naming the package
        fingerprint = record_fingerprint(record)
        package_id = _package_id(record)
        if slug is not None and fingerprint == self.fingerprints.get(slug):
            values = record_values(record, (*self.fields, *BOOKKEEPING), package=package)
            status = PollStatus.UNCHANGED
            return PollResult(
                slug, status, None, None, package_id, duration, fingerprint, values, _stamps(values)
            )
        snapshot = parse_record(record, package=package)
        return PollResult(
            slug or snapshot.slug, PollStatus.OK, snapshot, None, package_id, duration, fingerprint
        )


def _package_id(record: Any) -> int | None:
    """The record's ``id``, when it is a plausible one (an id that SQLite cannot hold must
    not fail the recording of the whole poll)."""
    ident = record.get("id") if isinstance(record, dict) else None
    return ident if _is_count(ident) and ident <= MAX_COUNT else None


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _counted(exc: FetchError, slug: str, after_page: int) -> str:
    """The error for a single request, counting the attempts its list page spent too."""
    if not after_page or exc.reason is None:
        return str(exc)
    total = after_page + exc.attempts
    split = f"{after_page} for its list page, {exc.attempts} alone"
    if exc.status is not None:
        return f"{slug}: {exc.reason} after {total} attempts ({split})"
    return f"{slug}: {exc.reason} ({total} attempts: {split})"


def _page_of(data: Any) -> tuple[int, list[Any]] | None:
    """``(count, results)`` of a valid list page, else None."""
    count = data.get("count") if isinstance(data, dict) else None
    records = data.get("results") if isinstance(data, dict) else None
    if not isinstance(records, list) or not _is_count(count):
        return None
    return count, records


def _is_api_404(body: bytes) -> bool:
    """Whether a 404's body is the API's own: a JSON object with ``detail``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and "detail" in data


def _shown(url: str) -> str:
    """``url`` for messages: without user info, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
