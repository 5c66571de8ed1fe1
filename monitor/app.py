"""The application layer: what monitor does, for every front end (SPEC §4, §10).

The command line, the Slack bot and the HTTP API all call :class:`App`: watch, unwatch,
list, history, alerts, mute, unmute, mutes, readiness, status and check now. Each returns
dataclasses (or the JSON shapes of SPEC §4 through ``to_json_dict``) and raises
:class:`~monitor.errors.MonitorError` for the user's mistakes; front ends only parse and
render. SQL stays in :mod:`monitor.store`.

An App works on one :class:`~monitor.store.Store` (one SQLite connection) on one thread; the
server makes one per request, on a worker thread, so a long write elsewhere never holds up its
event loop.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from monitor.durations import parse_duration
from monitor.errors import MonitorError, NotWatchedError, PackageNotFound, UsageError

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.cycle import CycleReport
    from monitor.names import Asked
    from monitor.readiness import Readiness
    from monitor.store import Store

DELIVERY_BUDGET = 30.0  # seconds a command keeps retrying its own deliveries (SPEC §7)
BUILTIN_MUTABLE = ("package-not-found", "poll-failing")


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WatchRow:
    """A watched package as ``list --json`` shows it (SPEC §4)."""

    slug: str
    title: str | None
    pypi_version: str | None
    repo_watchers: int | None
    repo_forks: int | None
    last_checked: str | None
    last_status: str | None
    notify: list[str]
    interval: str | None
    pinned: str | None
    sources: dict[str, str | None]
    origin: str | None
    firing: dict[str, int]
    muted: bool  # every rule of the package
    muted_rules: list[str]  # or only these
    latest: str | None = None  # the version djangopackages or else PyPI gives

    def to_json_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["latest"]
        return out

    @property
    def trouble(self) -> tuple[int, int, int, int]:
        """Sorts the most troubled first: firing by severity, then a failed last poll."""
        firing = self.firing
        failed = self.last_status in ("failed", "not_found")
        return (-firing["critical"], -firing["warning"], -firing["info"], -int(failed))


@dataclass(frozen=True)
class Alert:
    """An alert as ``alerts --json`` shows it (SPEC §4)."""

    rule: str
    package: str
    kind: str
    status: str
    severity: str
    started_at: str
    resolved_at: str | None
    summary: str
    muted: bool
    deliveries: list[dict[str, Any]]

    def to_json_dict(self) -> dict[str, Any]:
        # asdict's deep copy, without its recursion: 30,000 alerts took 3 s through asdict
        out = dict(vars(self))
        out["deliveries"] = [dict(d) for d in self.deliveries]
        return out


@dataclass(frozen=True)
class AlertPage:
    """A page of alerts, newest first: ``more`` come after it (0: none), the next page
    starting after the alert whose id is ``next_before`` (None when there is none)."""

    alerts: list[Alert]
    more: int
    next_before: int | None


@dataclass(frozen=True)
class Mute:
    """An active mute: ``rule`` None mutes every rule, ``until`` None is forever."""

    package: str
    rule: str | None
    until: str | None
    comment: str | None
    created_at: str
    set_by: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WatchOutcome:
    """What ``watch`` did: a line per package for people, the names newly watched, the
    cycle that took their baselines, and the deliveries left undelivered."""

    lines: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    report: CycleReport | None = None
    undelivered: list[str] = field(default_factory=list)

    @property
    def transitions(self) -> int:
        return len(self.report.transitions) if self.report else 0


@dataclass
class CheckOutcome:
    report: CycleReport
    undelivered: list[str]


class App:
    """The use cases over one store. ``rules`` is read when first needed (a bad rule file
    is then a :class:`~monitor.errors.RulesError`)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        *,
        rules: Callable[[], list[Any]] | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        console: TextIO | None = None,
    ):
        self.config = config
        self.store = store
        self._rules_loader = rules
        self._rules: list[Any] | None = None
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.console = console  # where the console channel prints

    # -- rules ------------------------------------------------------------------------

    def rules(self) -> list[Any]:
        if self._rules is None:
            if self._rules_loader is not None:
                self._rules = self._rules_loader()
            else:
                from monitor.rules import load_rules

                self._rules = load_rules(list(self.config.rule_paths))
        return self._rules

    def rule_ids(self) -> list[str]:
        return [rule.id for rule in self.rules()]

    @asynccontextmanager
    async def sources(self) -> AsyncIterator[Any]:
        """Every enabled source on one aiohttp session."""
        from monitor.sources import open_sources

        async with open_sources(
            self.config, self.store, sleep=self.sleep, rng=self.rng, clock=self.clock
        ) as sources:
            yield sources

    # -- reading ------------------------------------------------------------------------

    def watches(self, names: Sequence[str] | None = None) -> list[WatchRow]:
        """The watched packages by name (``list``); of ``names`` only, when given."""
        from monitor.report import muted_rules
        from monitor.sources import SOURCES

        rows = self.store.watch_rows(names)
        mutes = muted_rules([m.to_json_dict() for m in self.mutes()])
        keys = self.store.part_keys([row["id"] for row in rows])
        firing = self.store.firing_counts()
        latest = self.store.latest_parts(["pypi"], names)  # PyPI's where djangopackages has none
        items = []
        for row in rows:
            data = json.loads(row["data"]) if row["data"] else {}
            muted = mutes.get(row["slug"], [])
            sources = keys.get(row["id"], {})
            version = data.get("pypi_version")
            items.append(
                WatchRow(
                    slug=row["slug"],
                    title=data.get("title", row["title"]),
                    pypi_version=version,
                    repo_watchers=data.get("repo_watchers"),
                    repo_forks=data.get("repo_forks"),
                    last_checked=row["last_checked_at"],
                    last_status=row["last_status"],
                    notify=json.loads(row["notify"] or "[]"),
                    interval=row["interval"],
                    pinned=row["pinned"],
                    sources={name: sources.get(name) for name in SOURCES},
                    origin=row["origin"],
                    firing=firing.get(row["id"], {"critical": 0, "warning": 0, "info": 0}),
                    muted=muted is None,
                    muted_rules=muted or [],
                    latest=version
                    or latest.get(row["slug"], {}).get("pypi", {}).get("pypi.version"),
                )
            )
        return items

    def watched(self, name: str) -> Any:
        """The watch named ``name``; NotWatchedError when there is none."""
        watch = self.store.watch(name)
        if watch is None:
            raise NotWatchedError(f"{name!r} is not watched (see: monitor list)")
        return watch

    def history(self, name: str) -> list[Any]:
        """The package's history entries, oldest first (:class:`monitor.history.Entry`)."""
        from monitor.history import replay

        return list(replay(self.store.history(self.watched(name).id)))

    def alerts(
        self, *, show_all: bool = False, limit: int | None = None, before: int | None = None
    ) -> list[Alert]:
        """The alerts ``alerts`` shows (every one ever raised with ``show_all``), newest
        first: all of them, or the ``limit`` after the alert with id ``before``."""
        return self.alert_page(show_all=show_all, limit=limit, before=before).alerts

    def alert_page(
        self, *, show_all: bool = False, limit: int | None = None, before: int | None = None
    ) -> AlertPage:
        """A page of :meth:`alerts`, and how many come after it. Only the page's alerts are
        read; an id ``before`` of no alert is a UsageError."""
        from monitor.report import list_alerts

        rows = list_alerts(
            self.store,
            now=self.clock(),
            show_all=show_all,
            rules=None if show_all else self.rule_ids(),  # --all: no rule file read
            limit=limit,
            before=before,
        )
        more = rows.more or 0
        return AlertPage([Alert(**item) for item in rows.items], more, rows.last if more else None)

    def alert_chunks(
        self, *, show_all: bool = False, before: int | None = None, size: int = 1000
    ) -> Iterator[list[Alert]]:
        """Every alert of :meth:`alerts`, ``size`` at a time (what is in memory stays one
        chunk)."""
        from monitor.report import alert_chunks

        for chunk in alert_chunks(
            self.store,
            now=self.clock(),
            show_all=show_all,
            rules=None if show_all else self.rule_ids(),  # --all: no rule file read
            before=before,
            size=size,
        ):
            yield [Alert(**item) for item in chunk]

    def mutes(self) -> list[Mute]:
        from monitor.report import list_mutes

        return [Mute(**m) for m in list_mutes(self.store, now=self.clock())]

    def readiness(self, django_version: str) -> list[Readiness]:
        from monitor import readiness as ready

        version = ready.django_version(django_version)
        pypi = self.config.sources["pypi"].enabled
        return ready.readiness(self.store, version, pypi=pypi)

    def status(self) -> dict[str, Any]:
        from monitor.report import status_report

        config = self.config
        return status_report(
            self.store,
            now=self.clock(),
            database=str(config.database.resolve()),
            exists=config.database.exists(),
            config=str(config.path.resolve()) if config.path else None,
            url=config.djangopackages.url,
            others={name: table.url for name, table in config.sources.items() if table.enabled},
        )

    # -- changing -----------------------------------------------------------------------

    def mute(
        self,
        name: str,
        *,
        rule: str | None = None,
        duration: str | None = None,
        comment: str | None = None,
        set_by: str | None = None,
    ) -> Mute:
        """Stop delivering a package's alerts (of ``rule`` only, when given) for
        ``duration`` (None: until unmuted). They are still recorded."""
        self.watched(name)
        if rule is not None:
            known = {*self.rule_ids(), *BUILTIN_MUTABLE}
            if rule not in known:
                from monitor.errors import UnknownRule, did_you_mean

                raise UnknownRule(f"no rule named {rule!r}{did_you_mean(rule, sorted(known))}")
        try:
            length = parse_duration(duration) if duration else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        now = self.clock()
        until = now + length if length else None
        self.store.add_mute(name, rule, until=until, comment=comment, set_by=set_by, now=now)
        from monitor.store import iso

        return Mute(name, rule, iso(until) if until else None, comment, iso(now), set_by)

    def unmute(self, name: str, rule: str | None = None) -> int:
        """Remove the package's mutes (of ``rule`` only); NotWatchedError when none."""
        removed = self.store.remove_mutes(name, rule)
        if removed == 0:
            raise NotWatchedError(f"{name} has no mute" + (f" for {rule}" if rule else ""))
        return removed

    def unwatch(self, names: Sequence[str]) -> list[str]:
        """Stop watching these packages (history is kept); none is changed when one of them
        is not watched."""
        store = self.store
        with store.transaction():
            missing = [n for n in names if store.watch(n) is None]
            if missing:
                raise NotWatchedError(f"not watched: {', '.join(missing)}")
            for name in names:
                store.unwatch(name)
        return list(names)

    async def watch(
        self,
        names: Sequence[str] = (),
        *,
        grid: str | None = None,
        pin: str | None = None,
        notify: list[str] | None = None,
        interval: str | None = None,
        deliver: bool = True,
    ) -> WatchOutcome:
        """Watch packages by name (or a grid's members): fetch each new one, store its
        baseline, evaluate rules and deliver what fires; a watched one only gets the options
        given. Nothing is stored when a name is unknown (PackageNotFound)."""
        from monitor.names import parse_asked

        if bool(names) == bool(grid):
            raise UsageError("give package names or a grid (one of them)")
        if pin is not None and len(names) != 1:
            raise UsageError("a pin goes with exactly one NAME (or write NAME==VERSION)")
        if interval is not None:
            try:
                parse_duration(interval)
            except ValueError as exc:
                raise UsageError(f"interval: {exc}") from None
        self.config.check_channels(notify or [], "notify")
        self.rules()
        asked: dict[str, Asked] = {}
        for text in names:
            one = parse_asked(text)
            if pin is not None:
                if one.pinned not in (None, pin):
                    raise UsageError(f"{text!r} and pin {pin} name two versions")
                one = replace(one, pinned=pin)
            asked.setdefault(one.name, one)
        store = self.store
        existing = [a for a in asked.values() if store.watch(a.name)]
        fresh = [a for a in asked.values() if a not in existing]
        if not fresh and not grid:
            with store.transaction():
                lines = self._update_options(existing, notify, interval)
            return WatchOutcome(lines)
        outcome = await self._watch_new(fresh, grid, existing, notify, interval)
        if deliver and outcome.report is not None:
            outcome.undelivered = await self.deliver(outcome.report.groups)
        return outcome

    async def _watch_new(
        self,
        asked: list[Asked],
        grid: str | None,
        existing: list[Asked],
        notify: list[str] | None,
        interval: str | None,
    ) -> WatchOutcome:
        """Fetch and baseline the packages not watched yet (``asked``, or the grid's members
        that are not); update the options of the ``existing`` ones (and of the grid's watched
        members) in the same transaction, so a failure changes nothing."""
        from monitor.cycle import CycleRecorder, poll_parts, without_record
        from monitor.names import Asked, is_pypi_watch, project_of

        store = self.store
        async with self.sources() as sources:
            source = sources.djangopackages
            pypi = next((s for s in sources.others if s.name == "pypi"), None)
            if grid:
                keys = await source.grid_keys(grid)
                watched = self._watched_members(keys)
                existing = [*existing, *(Asked(slug, None, slug) for slug in watched.values())]
                fetched = await source.grid_members(grid, [k for k in keys if k not in watched])
                asked = [Asked(result.slug, None, result.slug) for result in fetched]
            else:
                listed = [a for a in asked if not is_pypi_watch(a.name)]
                on_pypi = [a for a in asked if is_pypi_watch(a.name)]
                if on_pypi and pypi is None:
                    raise UsageError(
                        f"{on_pypi[0].name} is watched through PyPI, which is turned off"
                        " ([sources.pypi] enabled = false)"
                    )
                found = await _find_slugs(source, pypi, listed)
                asked = [a for a, _ in found] + on_pypi
                fetched = [r for _, r in found] + [without_record(a.name) for a in on_pypi]
            recorder = CycleRecorder(
                store, self.config, self.rules(), now=self.clock(), rng=self.rng
            )
            recorder.pins = {a.name: a.pinned for a in asked}
            fetched = await poll_parts(recorder, fetched, sources.others)
            for result in fetched:
                if is_pypi_watch(result.slug):
                    _require_on_pypi(result)
        now = self.clock()
        by_name = {a.name: a for a in (*asked, *existing)}
        kept: dict[str, str] = {}
        recorder.render_baselines(fetched)  # user templates run before the write lock is taken
        with store.transaction():
            # A member whose id was not known to its watch is still watched under its slug;
            # a name found under its other spelling may be watched already.
            already = store.watches([result.slug for result in fetched])
            fetched = [result for result in fetched if result.slug not in already]
            updates = list(dict.fromkeys([*(a.name for a in existing), *already]))
            lines = self._update_options([by_name[n] for n in updates], notify, interval)
            for result in fetched:
                one = by_name[result.slug]
                store.upsert_watch(
                    result.slug,
                    package_id=result.package_id,
                    title=result.snapshot.title if result.snapshot else project_of(result.slug),
                    notify=notify,
                    interval=interval,
                    now=now,
                    pinned=one.pinned,
                )
                kept[result.slug] = self._kept_options(result.slug, notify, interval)
            report = recorder.record(fetched, baseline=True)
        for result in fetched:
            line = _watched_line(result, by_name[result.slug])
            lines.append(f"watching {result.slug} ({line}){kept[result.slug]}")
        return WatchOutcome(lines, [result.slug for result in fetched], report)

    def _watched_members(self, keys: list[str]) -> dict[str, str]:
        """Grid member key -> the watched package's slug, for the keys (ids, or slugs) that
        name a watched package."""
        store = self.store
        watches = store.watches(store.watched_slugs())
        by_id = {str(w.package_id): w.slug for w in watches.values() if w.package_id is not None}
        return {key: by_id.get(key, key) for key in keys if key in by_id or key in watches}

    def _update_options(
        self, asked: list[Asked], notify: list[str] | None, interval: str | None
    ) -> list[str]:
        """Set the options given on these watched packages (a pin given replaces the pin); a
        line for each saying what changed, or that nothing did."""
        from monitor.report import option_change
        from monitor.store import KEEP

        lines = []
        for one in asked:
            pinned = one.pinned if one.pinned is not None else KEEP
            changed = self.store.set_watch_options(
                one.name, notify=notify, interval=interval, pinned=pinned
            )
            if changed:
                what = ", ".join(option_change(name, *values) for name, values in changed.items())
                lines.append(f"updated {one.name}: {what}")
            elif notify is None and interval is None and one.pinned is None:
                lines.append(
                    f"{one.name}: already watched, nothing changed"
                    " (--notify, --interval and NAME==VERSION change its options)"
                )
            else:
                lines.append(f"{one.name}: already watched with these options, nothing changed")
        return lines

    def _kept_options(self, slug: str, notify: list[str] | None, interval: str | None) -> str:
        """What a package watched again after unwatch keeps of its earlier options, for the
        line that reports it ("" when nothing)."""
        watch = self.store.watch(slug)
        if watch is None:
            return ""
        kept = [f"--notify {channel}" for channel in watch.notify if notify is None]
        if interval is None and watch.interval is not None:
            kept.append(f"--interval {watch.interval}")
        return f"; it keeps its earlier {' '.join(kept)}" if kept else ""

    async def check(
        self,
        names: Sequence[str] = (),
        *,
        on_result: Callable[[Any], None] | None = None,
        deliver: bool = True,
    ) -> CheckOutcome:
        """Poll the named watched packages (all when none are named) now, record, deliver.
        A name not watched is a UsageError and nothing is polled."""
        from monitor.cycle import poll_and_record

        self.rules()
        watched = self.to_check(names) if names else None  # None: every one (poll_and_record)
        async with self.sources() as sources:
            report = await poll_and_record(
                self.store,
                self.config,
                self.rules(),
                sources,
                watched,
                now=self.clock(),
                rng=self.rng,
                on_result=on_result,
            )
        undelivered = await self.deliver(report.groups) if deliver else []
        return CheckOutcome(report, undelivered)

    async def deliver(self, groups: list[str], *, budget: float = DELIVERY_BUDGET) -> list[str]:
        """Send these groups (and anything else due) for up to ``budget`` seconds; a line for
        each left undelivered (``channel: status: error``)."""
        from monitor.outbox import Outbox

        outbox = Outbox(
            self.store,
            self.config,
            clock=self.clock,
            sleep=self.sleep,
            rng=self.rng,
            console=self.console,
        )
        try:
            drained = await outbox.drain(budget=budget, only=groups)
        finally:
            await outbox.aclose()
        stuck = [g for g, _ in drained.failed] + list(drained.pending)
        lines = []
        for row in self.store.group_statuses(stuck) if stuck else []:
            # Errors start with the channel's name, as this line does: name it once.
            error = (row["last_error"] or "not sent yet").removeprefix(f"{row['channel']}: ")
            lines.append(f"{row['channel']}: {row['status']}: {error}")
        return lines

    # -- the HTTP API (issue 13, h-api) -------------------------------------------------

    def to_check(self, names: Sequence[str] = ()) -> list[str]:
        """The watched packages ``check`` would poll: the named ones, each once, or every one
        when none is named; a UsageError naming those not watched, as ``check`` says."""
        watched = self.store.watched_slugs()
        if not names:
            return watched
        known = set(watched)
        missing = [name for name in names if name not in known]
        if missing:
            raise UsageError(f"not watched: {', '.join(missing)} (see: monitor list)")
        return list(dict.fromkeys(names))

    # -- the status pages (SPEC §10: monitor/server/pages.py) ---------------------------

    def commit_series(self) -> dict[str, list[int]]:
        """slug -> the 52 weekly commit counts djangopackages gives, oldest first (only the
        watched packages that have them)."""
        return self.store.commit_counts()

    def last_cycle(self) -> dict[str, Any] | None:
        """The newest poll time among the watches (``at``) and how its polls went (status
        -> count), as ``status`` shows it; None before any poll."""
        rows = self.store.last_poll()
        if not rows:
            return None
        return {"at": rows[0]["at"], **{row["status"]: row["n"] for row in rows}}

    def watch_row(self, name: str) -> WatchRow:
        """One watched package as :meth:`watches` shows it; NotWatchedError when not watched."""
        self.watched(name)
        return self.watches([name])[0]

    def last_error(self, name: str) -> str | None:
        """Why the package's last poll failed; None when it did not."""
        return self.store.last_error(self.watched(name).id)

    def package_sources(self, name: str) -> list[dict[str, Any]]:
        """What each source gave the package last, in the sources' order: ``source``,
        ``key`` (what it is polled under), ``values`` (its fields' JSON values),
        ``failures`` (consecutive), ``last_error``, ``deferred_until``."""
        from monitor.sources import SOURCES

        watch = self.watched(name)
        parts = self.store.parts([watch.id]).get(watch.id, {})
        known = ["djangopackages", *SOURCES]
        order = [*known, *sorted(set(parts) - set(known))]
        return [
            {
                "source": source,
                "key": part.key,
                "values": json.loads(part.data) if part.data else {},
                "failures": part.failures,
                "last_error": part.last_error,
                "deferred_until": part.deferred_until,
            }
            for source in order
            if (part := parts.get(source)) is not None
        ]

    def package_alerts(self, name: str, *, limit: int = 30) -> list[Alert]:
        """The package's alerts newest first: all those firing, then the ``limit`` newest
        others. Their ``deliveries`` are not read (empty)."""
        watch = self.watched(name)
        mutes = [m for m in self.mutes() if m.package == name]
        return [
            Alert(
                **row,
                package=name,
                muted=any(m.rule in (None, row["rule"]) for m in mutes),
                deliveries=[],
            )
            for row in self.store.package_alerts(watch.id, limit)
        ]

    # -- /metrics and GitHub events (issue 13: ops) --------------------------------------

    def gauges(self) -> dict[str, Any]:
        """What ``/metrics`` reads of the database when scraped: ``outbox_pending`` (groups),
        ``firing`` (severity -> condition alerts firing on watched packages), ``watches``,
        and ``rate_limited_until`` (each enabled source besides djangopackages -> the Unix
        time its kept rate limit ends, or None)."""
        limits = {}
        for name, table in self.config.sources.items():
            if table.enabled:
                until = self.store.get_meta(f"{name}.limited_until")
                limits[name] = datetime.fromisoformat(until).timestamp() if until else None
        return {
            "outbox_pending": self.store.outbox_counts().get("pending", 0),
            "firing": self.store.firing_by_severity(),
            "watches": self.store.watch_count(),
            "rate_limited_until": limits,
        }

    def watching_repositories(self, full_names: Sequence[str]) -> list[str]:
        """The watched packages whose GitHub repository is one of ``full_names``
        (``OWNER/REPO``, case-insensitive): the key their GitHub part was last polled under."""
        return self.store.slugs_by_part_key("github", full_names)


def _watched_line(result: Any, asked: Asked) -> str:
    """What ``watch`` says of a new watch: version, stars, pin, the name typed."""
    if result.snapshot is not None:
        snapshot = result.snapshot
        stars = snapshot.repo_watchers if snapshot.repo_watchers is not None else "?"
        what = f"{snapshot.pypi_version or 'no release'}, {stars} stars"
    else:
        part = result.parts.get("pypi")
        version = (part.values or {}).get("pypi.version") if part else None
        what = f"{version or 'no release'} on PyPI"
    if asked.pinned:
        what += f"; you run {asked.pinned}"
    typed = asked.typed.split("==")[0].strip()
    if typed != result.slug:
        what += f"; asked for {typed}"
    return what


def _require_on_pypi(result: Any) -> None:
    """A pypi:NAME watch needs PyPI to know the project (404: unknown; failed: say why)."""
    from monitor.errors import SourceError
    from monitor.names import project_of
    from monitor.sources import PartStatus

    part = result.parts.get("pypi")
    if part is None or part.status is PartStatus.NOT_FOUND:
        raise PackageNotFound(project_of(result.slug), where="PyPI")
    if part.status is PartStatus.FAILED:
        raise SourceError(part.error or f"{result.slug}: PyPI failed")


async def _find_slugs(source: Any, pypi: Any, asked: list[Asked]) -> list[tuple[Asked, Any]]:
    """Each asked slug's record, the slug tried lower-cased with ``_`` as ``-`` when not
    found as typed (then the watch takes the name found). Raises :class:`PackageNotFound`
    for the first found nowhere, with suggestions, and the pypi:NAME to use when PyPI
    knows a project of that name (never watched silently: a typo must not land on a
    look-alike)."""
    from monitor.errors import SourceError
    from monitor.names import project_of, pypi_watch, slug_fallback

    results = await asyncio.gather(*(source.fetch(a.name) for a in asked), return_exceptions=True)
    found: list[tuple[Asked, Any]] = []
    missing: list[Asked] = []
    for one, result in zip(asked, results, strict=True):
        other = slug_fallback(one.name) if isinstance(result, PackageNotFound) else None
        if other is not None:
            try:
                result = await source.fetch(other)
            except PackageNotFound as exc:
                result = exc
            else:
                one = replace(one, name=result.slug)
        if isinstance(result, PackageNotFound):
            missing.append(one)
        elif isinstance(result, BaseException):
            raise result
        else:
            found.append((one, result))
    if missing:
        if not await source.lists_answer():
            # the packages' URLs and the list's alike: the URL is wrong, not the names
            raise SourceError(source.everything_404())
        name = missing[0].name
        hint = None
        watch = pypi_watch(name)
        if pypi is not None and await pypi.exists(project_of(watch)):
            hint = (
                f"PyPI has a project {project_of(watch)!r}: to watch it"
                f" through PyPI alone, run: monitor watch {watch}"
            )
        suggestions = await source.search(name)
        raise PackageNotFound(name, [s for s in suggestions if s != name][:5], hint=hint)
    return found


__all__ = [
    "Alert",
    "AlertPage",
    "App",
    "CheckOutcome",
    "MonitorError",
    "Mute",
    "WatchOutcome",
    "WatchRow",
]
