"""What to watch for each PyPI name of a dependency file (SPEC §4, "Dependency files").

A name maps to the djangopackages package whose ``pypi_url`` names the same project
(:func:`~monitor.sources.pypi.project_name` of it equals the name, both PEP 503-normalised),
else to ``pypi:NAME`` when PyPI knows the project, else to nothing. The attempts, in order,
the first that answers winning (:class:`Resolved` ``how``):

1. ``slug``: the package whose slug is the name itself (``/api/v4/packages/NAME/``);
2. ``search``: the package results of djangopackages' search for the name, fetched one by
   one in the search's order until one's ``pypi_url`` names the project;
3. ``pypi``: PyPI's JSON API answers for the name (``pypi:NAME``); asked at the same time as
   the search (a round trip less for each name on PyPI alone), its answer used only when
   no search candidate names the project;
4. ``nowhere``: none of these (a private package); ``error`` is None, except when PyPI is
   turned off (``pypi=None``), when it says so: the name might be on PyPI.

A record whose ``pypi_url`` names another project is never the answer, whatever its slug (a
typo or a look-alike must not land on another project). ``failed`` means the answer is not
known because a request failed (not a 404): the own slug's record could not be fetched or
read, a search candidate could not be fetched and no other one matched, or PyPI failed;
``error`` says what. A search candidate whose record is invalid is passed over (it could not
be watched anyway), and so is one whose slug is not a plain slug or is all digits (the API
reads those as ids), as is a name that is all digits for step 1. The search itself is best
effort (:meth:`DjangoPackagesSource.search` answers ``[]`` on a failure), so a failed search
reads as no results.

In one :func:`resolve` call, each djangopackages record is fetched at most once, whichever
names ask for it and in which role (a name's own slug, another's search candidate), a 404
included; each search text is sent once, and each PyPI project asked once. At most
``concurrency`` names are in flight (a few workers, as :func:`poll_each`); the sources'
own semaphores bound their requests too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeGuard, TypeVar

from packaging.utils import canonicalize_name

from monitor.errors import InvalidRecord, PackageNotFound, SourceError
from monitor.names import pypi_watch
from monitor.sources import PollResult
from monitor.sources.djangopackages import DjangoPackagesSource
from monitor.sources.http import poll_each
from monitor.sources.pypi import PyPISource, project_name

log = logging.getLogger(__name__)

PYPI_OFF = "PyPI is turned off ([sources.pypi] enabled = false), so it was not asked"
_PLAIN_SLUG = re.compile(r"[A-Za-z0-9_-]{1,200}")
T = TypeVar("T")

__all__ = ["PYPI_OFF", "Resolved", "resolve"]


@dataclass(frozen=True, slots=True)
class Resolved:
    """What one PyPI name maps to."""

    name: str  # the PyPI name asked for (normalised)
    watch: str | None  # djangopackages slug, or "pypi:NAME", or None (found nowhere)
    # The djangopackages record fetched for a slug (status ok, snapshot parsed): the caller
    # stores it as the baseline without fetching again. None for pypi:/nowhere/failed.
    result: PollResult | None
    how: str  # "slug" | "search" | "pypi" | "nowhere" | "failed"
    # For "failed": the network/upstream failure (not a 404). For "nowhere": None, or
    # PYPI_OFF when PyPI was not asked.
    error: str | None = None


# A djangopackages record as one call knows it: the result, a 404, or why it failed.
_Record = PollResult | PackageNotFound | SourceError


async def resolve(
    names: Sequence[str],
    djangopackages: DjangoPackagesSource,
    pypi: PyPISource | None,
    *,
    concurrency: int = 8,
    on_progress: Callable[[int, int], None] | None = None,
    elsewhere: Mapping[str, str] | None = None,
) -> dict[str, Resolved]:
    """A :class:`Resolved` per distinct name (normalised; the keys, in the order first
    given). ``on_progress(done, total)`` is called after each name. Never raises for one
    name's failure (that is ``failed``). ``elsewhere`` maps slugs already known (watched)
    to their PyPI project: such a package is never fetched as the answer for another
    name."""
    wanted = list(dict.fromkeys(canonicalize_name(name) for name in names))
    resolver = _Resolver(djangopackages, pypi, elsewhere or {})
    done = 0

    def progress(_: Resolved) -> None:
        nonlocal done
        done += 1
        if on_progress is not None:
            on_progress(done, len(wanted))

    try:
        found = await poll_each(
            wanted, resolver.resolve_one, limit=max(concurrency, 1), on_part=progress
        )
    finally:
        await resolver.close()
    return {item.name: item for item in found}


class _Resolver:
    """One :func:`resolve` call: the attempts for a name, and what is already known."""

    def __init__(
        self,
        djangopackages: DjangoPackagesSource,
        pypi: PyPISource | None,
        elsewhere: Mapping[str, str],
    ):
        self.djangopackages = djangopackages
        self.pypi = pypi
        self.elsewhere = elsewhere
        self.records: _Once[_Record] = _Once()
        self.searches: _Once[list[str]] = _Once()

    async def close(self) -> None:
        await self.records.close()
        await self.searches.close()

    async def resolve_one(self, name: str) -> Resolved:
        try:
            return await self._attempts(name)
        except SourceError as exc:
            return Resolved(name, None, None, "failed", str(exc))
        except Exception as exc:  # a bug must not fail the other names
            log.exception("%s: unexpected error while resolving", name)
            return Resolved(name, None, None, "failed", f"{name}: unexpected error: {exc!r}")

    async def _attempts(self, name: str) -> Resolved:
        if not name.isdigit() and self._may_be(name, name):
            own = await self.record(name)
            if isinstance(own, SourceError):
                raise own
            if _names(own, name):
                return Resolved(name, name, own, "slug")
        # PyPI is asked alongside the search, not after it (each name waits for one round
        # trip less); its answer counts only when no search candidate names the project.
        on_pypi = None
        if self.pypi is not None:
            on_pypi = asyncio.ensure_future(self.pypi.exists(name))
            on_pypi.add_done_callback(_retrieved)
        try:
            found = await self._search(name)
        except BaseException:
            if on_pypi is not None:
                on_pypi.cancel()
            raise
        if found is not None:
            if on_pypi is not None:
                on_pypi.cancel()
            return found
        if on_pypi is None:
            return Resolved(name, None, None, "nowhere", PYPI_OFF)
        if await on_pypi:
            return Resolved(name, pypi_watch(name), None, "pypi")
        return Resolved(name, None, None, "nowhere")

    async def _search(self, name: str) -> Resolved | None:
        """The first search candidate whose record names ``name``'s project; None when none
        does. Raises the first candidate's failure when none does and one failed."""
        failure: SourceError | None = None
        for slug in await self.searches.get(name, lambda: self.djangopackages.search(name)):
            if slug == name or slug.isdigit() or not _PLAIN_SLUG.fullmatch(slug):
                continue
            if not self._may_be(slug, name):
                continue
            record = await self.record(slug)
            if isinstance(record, InvalidRecord):
                log.info("%s: search candidate passed over: %s", name, record)
            elif isinstance(record, SourceError):
                failure = failure or record
            elif _names(record, name):
                return Resolved(name, slug, record, "search")
        if failure is not None:
            raise failure
        return None

    def _may_be(self, slug: str, name: str) -> bool:
        """Whether the package ``slug`` may be the one of project ``name`` (not when it is
        known to be another project's)."""
        return self.elsewhere.get(slug, name) == name

    async def record(self, slug: str) -> _Record:
        return await self.records.get(slug, lambda: self._fetch(slug))

    async def _fetch(self, slug: str) -> _Record:
        try:
            return await self.djangopackages.fetch(slug)
        except (PackageNotFound, SourceError) as exc:
            return exc


def _retrieved(task: asyncio.Future[Any]) -> None:
    """Mark a side task's outcome as seen (a cancelled or unneeded one is not an error)."""
    if not task.cancelled():
        task.exception()


def _names(record: _Record, name: str) -> TypeGuard[PollResult]:
    """Whether ``record`` is a package whose ``pypi_url`` names the project ``name``."""
    if not isinstance(record, PollResult) or record.snapshot is None:
        return False
    return project_name(record.snapshot.pypi_url) == name


class _Once(Generic[T]):
    """Each key's coroutine run once per call; whoever asks later, or meanwhile, awaits the
    same task. Its coroutine must not raise for an expected failure (return it instead)."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Future[T]] = {}

    async def get(self, key: str, make: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._tasks[key] = task
        # Shielded: one asker being cancelled must not cancel the others' answer.
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel what nobody waits for any more (after a cancelled call)."""
        pending = [task for task in self._tasks.values() if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
