"""Sources: where snapshots come from (SPEC §2).

Each source lives in its own module and is imported by the command that needs it, so
``monitor --help`` never imports aiohttp:

- :mod:`monitor.sources.djangopackages` — the djangopackages.org API v4 (the primary source:
  it names the watch and gives its record);
- the plug-ins of :data:`SOURCES` (:mod:`~monitor.sources.pypi`,
  :mod:`~monitor.sources.github`, :mod:`~monitor.sources.osv`), each a :class:`Source` built
  from its ``[sources.NAME]`` table, adding its namespaced fields as a :class:`Part`;
- :mod:`monitor.sources.http` — one polite request for a JSON document (retries, a timeout,
  a size cap, conditional requests), shared by the sources.

The outcome of polling one package is a :class:`PollResult` (djangopackages' answer, with the
other sources' parts), defined here (no aiohttp needed) so the store and the CLI can use it
without importing a source.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from monitor.snapshot import Snapshot


class PollStatus(StrEnum):
    OK = "ok"
    UNCHANGED = "unchanged"  # the record's fingerprint is the one the poll was given
    NOT_FOUND = "not_found"
    FAILED = "failed"


@dataclass(slots=True)  # not frozen: a frozen one's __init__ costs 1.7 µs, 10,000 a cycle
class PollResult:
    """One package's poll (treated as immutable: :func:`dataclasses.replace` makes another).

    - ``ok``: ``snapshot`` is the parsed record, ``fingerprint`` the record's
      (:func:`~monitor.snapshot.record_fingerprint`);
    - ``unchanged``: the record's fingerprint is the one given for the package, so it was
      not parsed; ``values`` holds the fields asked for (validated, as
      :meth:`Snapshot.values` gives them), bookkeeping included;
    - ``not_found`` / ``failed``: ``error`` says why.

    ``package_id`` is djangopackages' id when the record gave one; ``duration`` is seconds
    of the request(s).
    """

    slug: str
    status: PollStatus
    snapshot: Snapshot | None
    error: str | None
    package_id: int | None
    duration: float
    fingerprint: bytes | None = None
    values: dict[str, Any] | None = None
    # ``unchanged``: the bookkeeping in ``values`` as Unix seconds, as the watch row keeps them
    # (worked out once per record: a list page recalled keeps them too). None otherwise.
    stamps: tuple[int | None, ...] | None = None
    # The other sources' answers for this watch (source name -> Part), added by the cycle;
    # an enabled source missing here does not apply to the watch (SPEC §2.1).
    parts: Mapping[str, Part] = field(default_factory=dict)


class FieldKind(StrEnum):
    """What a field holds: how it is validated, stored as JSON and read back."""

    TEXT = "text"
    INT = "int"
    BOOL = "bool"
    DATETIME = "datetime"  # an aware datetime; stored as a UTC ISO string
    TEXTS = "texts"  # a list of strings
    INTS = "ints"  # a list of integers (djangopackages' commit counts and grids)


class PartStatus(StrEnum):
    """How one source's poll of one watch went."""

    OK = "ok"  # ``values`` holds every field of the source (None where unknown)
    UNCHANGED = "unchanged"  # the source says nothing changed (a 304): no values
    NOT_FOUND = "not_found"  # the source's own "no such project" (the cycle decides)
    FAILED = "failed"  # ``error`` says why; counts towards poll-failing
    DEFERRED = "deferred"  # rate limited until ``until``: not a failure, nothing changes


@dataclass(frozen=True, slots=True)
class PartState:
    """What the store kept of a (watch, source) after its last successful poll: the
    conditional-request validator (``etag``; a source may pack several in it), a
    fingerprint of the answer, and the values the source gave then (qualified names)."""

    etag: str | None = None
    fingerprint: bytes | None = None
    values: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Due:
    """One watch to poll from one source. ``key`` is what :meth:`Source.key` gave (a PyPI
    project name, ``OWNER/REPO``); ``values`` the watch's newest known values of every
    source (qualified names; this cycle's answers of earlier sources included), e.g. OSV's
    version in use; ``state`` the source's own for this watch."""

    watch: str
    key: str
    values: Mapping[str, Any] = field(default_factory=dict)
    state: PartState = PartState()


@dataclass(frozen=True, slots=True)
class Part:
    """One source's answer for one watch. ``values`` maps the source's qualified field
    names to validated values (:class:`FieldKind`); ``etag``/``fingerprint`` are the new
    state to keep (None: keep nothing); ``until`` ends a deferral."""

    watch: str
    source: str
    status: PartStatus
    values: dict[str, Any] | None = None
    error: str | None = None
    etag: str | None = None
    fingerprint: bytes | None = None
    until: datetime | None = None
    duration: float = 0.0


class Source(Protocol):
    """A source of fields besides djangopackages (SPEC §2.1), built from its
    ``[sources.NAME]`` table by ``from_config``.

    ``name`` is its config name and the prefix of its fields; ``fields`` maps each qualified
    field it gives to its kind. ``key`` says whether it applies to a watch, given the
    watch's name and newest known values: the key to poll it under, or None. ``poll`` polls
    a batch and never raises for one watch's failure: a :class:`Part` per due watch, in
    order, ``on_part`` called as each is known. ``requests_sent`` counts HTTP requests.
    """

    name: str
    fields: Mapping[str, FieldKind]
    requests_sent: int

    def key(self, watch: str, values: Mapping[str, Any]) -> str | None: ...

    async def poll(
        self, due: Sequence[Due], on_part: Callable[[Part], None] | None = None
    ) -> list[Part]: ...


@dataclass(frozen=True)
class Registered:
    """A source as the registry knows it, before its module is imported (reading the config
    must not import aiohttp): where its class is, what messages call it, its default base
    URL, and its own ``[sources.NAME]`` keys beside ``url``, ``timeout``, ``concurrency`` and
    ``enabled`` (``secrets`` among them may use an unset ``${VAR}`` until the source is made)."""

    target: str  # "module:Class"
    title: str
    url: str
    options: Mapping[str, type] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()


# The sources besides djangopackages (which names the watch and gives its record), in the
# order a cycle polls them: a source may read what an earlier one found this cycle (OSV reads
# PyPI's version). A new source is its module plus a line here.
SOURCES: dict[str, Registered] = {
    "pypi": Registered("monitor.sources.pypi:PyPISource", "PyPI", "https://pypi.org"),
    "github": Registered(
        "monitor.sources.github:GitHubSource",
        "GitHub",
        "https://api.github.com",
        options={"token": str},
        secrets=frozenset({"token"}),
    ),
    "osv": Registered("monitor.sources.osv:OSVSource", "OSV", "https://api.osv.dev"),
}


def source_classes() -> dict[str, Any]:
    """name -> the source's class (importing each source's module)."""
    from importlib import import_module

    classes = {}
    for name, registered in SOURCES.items():
        module_name, _, class_name = registered.target.partition(":")
        classes[name] = getattr(import_module(module_name), class_name)
    return classes


def title(name: str) -> str:
    """What messages call a source: ``GitHub`` for ``github``."""
    registered = SOURCES.get(name)
    return registered.title if registered is not None else name


@dataclass(frozen=True)
class Context:
    """What a source is built with besides its table (``from_config(table, context)``):
    the command's session, database, sleep, randomness and clock."""

    session: Any
    store: Any
    sleep: Callable[[float], Any]
    rng: Callable[[], float]
    clock: Callable[[], datetime]

    def client_options(self, settings: Any) -> dict[str, Any]:
        """The constructor arguments every source takes from its table and the command."""
        return {
            "session": self.session,
            "timeout": settings.timeout,
            "concurrency": settings.concurrency,
            "sleep": self.sleep,
            "rng": self.rng,
        }


@dataclass
class Sources:
    """The sources one command or cycle polls: djangopackages (which names the watch and
    gives its record) and the enabled others, in :data:`SOURCES` order."""

    djangopackages: Any
    others: list[Any]


@asynccontextmanager
async def open_sources(
    config: Any,
    store: Any,
    *,
    sleep: Callable[[float], Any],
    rng: Callable[[], float],
    clock: Callable[[], datetime],
) -> AsyncIterator[Sources]:
    """Every enabled source on one aiohttp session, built from its ``[sources.NAME]``
    table; on leaving, what a source keeps between runs (GitHub's rate-limit reset) is
    saved in the database's meta table."""
    import aiohttp

    from monitor.sources.djangopackages import DjangoPackagesSource

    settings = config.djangopackages
    enabled = {name: s for name, s in config.sources.items() if s.enabled}
    limit = sum(s.concurrency for s in (settings, *enabled.values())) * 2
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit)) as session:
        primary = DjangoPackagesSource(
            settings.url,
            session=session,
            timeout=settings.timeout,
            concurrency=settings.concurrency,
            sleep=sleep,
            rng=rng,
        )
        classes = source_classes()
        context = Context(session, store, sleep, rng, clock)
        others = [classes[name].from_config(table, context) for name, table in enabled.items()]
        try:
            yield Sources(primary, others)
        finally:
            _keep_state(store, others)


def _keep_state(store: Any, sources: Sequence[Any]) -> None:
    for source in sources:
        until = getattr(source, "limited_until", None)
        key = f"{source.name}.limited_until"
        value = until.isoformat() if until is not None else None
        if store.get_meta(key) != value:
            with store.transaction():
                if value is None:
                    store.conn.execute("DELETE FROM meta WHERE key = ?", (key,))
                else:
                    store.set_meta(key, value)


def kept_limit(store: Any, name: str) -> datetime | None:
    """The rate-limit reset a source saved last time, if any."""
    value = store.get_meta(f"{name}.limited_until")
    return datetime.fromisoformat(value) if value else None


__all__ = [
    "Due",
    "FieldKind",
    "Part",
    "PartState",
    "PartStatus",
    "PollResult",
    "PollStatus",
    "Registered",
    "Source",
]
