"""The digest (SPEC §8): what happened to every watched package over a period.

``build_digest`` reads the history in the store as of ``now`` (the clock is injected) and
returns a :class:`Digest`; ``render_text``, ``render_html``, ``digest_subject`` and
``digest_data`` turn it into what the notifiers send (email text + HTML, the webhook's
``package.digest`` ``data``, console lines). ``build_text`` gives the text alone, as
``monitor digest`` prints it, without holding a :class:`Digest`: each package's card is
rendered as the package is read, and the text comes in pieces. The period is
``[now - since, now]``; times are shown in the ``[schedule] timezone`` (``data`` keeps them
in UTC). The period is named after its length: "daily digest", "weekly digest", "monthly
digest", else "digest (3d)". The scheduled digest covers the time since the cron's previous
fire time, so a daily cron sends a daily digest (a day is a day of the wall clock: 23 or 25
hours across a DST change).

What each number means:

- **version** is the current ``pypi_version``; **new_versions** are versions that appear in a
  snapshot stored in the period and in no snapshot before it. The baseline snapshot of a
  package (its first one) only establishes what is known, so watching a package does not list
  its current version as a release.
- **stars_change** / **forks_change**: current value − the value at the start of the period
  (the newest snapshot before it), or − the first snapshot inside the period when the package
  was added during it; ``None`` when either side is unknown.
- **changed**: a snapshot other than the package's baseline was stored in the period.
- **firing**: condition alerts firing now; **resolved**: alerts whose ``resolved_at`` falls in
  the period; **fired**: the other alerts whose ``started_at`` falls in it. An alert is in one
  list only (SPEC §8): one still firing is not also "fired in the period", and one that fired
  and resolved in the period is listed as resolved (with both times).

Order: packages with firing alerts (highest severity first: critical, warning, info), then
those with failed polls in the period, then those that changed, then the rest (those with
alerts fired or resolved, then the **quiet** ones); by slug within each group. Each package
gets a card, except the quiet ones: they share one compact table (name, version, stars, forks).

Importing this module imports no jinja2 (``monitor --help`` stays fast); the render functions
import it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson

from monitor.alerts import BUILTIN_RULES, Severity
from monitor.history import backward, is_shift, replayed
from monitor.names import package_links
from monitor.notify.base import safe_url
from monitor.store import Store, iso
from monitor.text import one_line, printable

if TYPE_CHECKING:
    import jinja2

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_SINCE = timedelta(days=7)
SCHEDULED_DIGEST = "digest.scheduled"  # meta key: the fire time of the last one queued
DEFAULT_BASE_URL = "https://djangopackages.org"

BLOCKS = "▁▂▃▄▅▆▇█"
NO_COMMITS = "no commit data"
TEXT_CHUNK = 1 << 16  # characters: the text digest is written in pieces of about this size
READ_BATCH = 64  # packages read, then rendered, at a turn (configured_text)


@dataclass(frozen=True)
class PackageDigest:
    slug: str
    title: str
    version: str | None
    new_versions: list[str]
    stars: int | None
    stars_change: int | None
    forks: int | None
    forks_change: int | None
    commits: list[int] | None  # 52 weekly counts, oldest first; None when unknown
    sparkline: str  # 52 block characters, or "" when the commits are unknown
    fired: list[dict[str, Any]]  # {rule, kind, severity, summary, started_at}
    resolved: list[dict[str, Any]]  # {rule, kind, severity, summary, started_at, resolved_at}
    firing: list[dict[str, Any]]  # {rule, kind, severity, summary, started_at}
    failures: int
    last_error: str | None
    changed: bool
    url: str
    repo_url: str | None
    pypi_url: str | None
    pinned: str | None = None  # the version the team runs

    @property
    def severity(self) -> Severity | None:
        """The highest severity among the alerts firing now."""
        ranked = [_severity(alert["severity"]) for alert in self.firing]
        return max(ranked, key=lambda s: s.rank) if ranked else None

    @property
    def quiet(self) -> bool:
        """Nothing to report: no alert firing, fired or resolved, no failed poll, no change."""
        return not (self.firing or self.fired or self.resolved or self.failures or self.changed)

    @property
    def attention(self) -> tuple[int, int]:
        """Sort key of SPEC §8: (group, -severity rank); lower needs attention sooner. Within
        "the rest", packages with alerts fired or resolved come before the quiet ones, which
        share one table at the end."""
        severity = self.severity
        if severity is not None:
            return (0, -severity.rank)
        if self.failures:
            return (1, 0)
        if self.changed:
            return (2, 0)
        return (4, 0) if self.quiet else (3, 0)


@dataclass(frozen=True)
class Digest:
    since: datetime
    until: datetime
    packages: list[PackageDigest]
    totals: dict[str, int] = field(default_factory=dict)
    timezone: str = "UTC"  # the zone times are shown in (`[schedule] timezone`)


# -- building -------------------------------------------------------------------------------


def build_digest(
    store: Store,
    *,
    now: datetime,
    since: timedelta = DEFAULT_SINCE,
    base_url: str = DEFAULT_BASE_URL,
    timezone: str = "UTC",
    rules: Collection[str] | None = None,
) -> Digest:
    """The digest of every active watch over ``[now - since, now]``, times shown in
    ``timezone``. ``rules``: the ids of the rules in force; alerts of any other rule (one
    deleted or disabled since) are left out, the built-in alerts never.

    It reads what its period needs, one package at a time, so its time and memory do not
    grow with the history before the period: each package's latest values (``parts``), its
    history rows from the period's start on and the newest one before it, a field's value
    before the period only when the field changed since (indexed lookups), failed polls and
    alerts of the period (and those firing now)."""
    start, until = _period(now, since)
    packages = sorted(
        _packages(store, start=start, until=until, base_url=base_url, rules=rules),
        key=lambda p: (p.attention, p.slug),
    )
    totals = _totals()
    for p in packages:
        _tally(totals, p)
    return Digest(since=start, until=until, packages=packages, totals=totals, timezone=timezone)


def _period(now: datetime, since: timedelta) -> tuple[datetime, datetime]:
    until = now.astimezone(UTC)
    return until - since, until


def _packages(
    store: Store,
    *,
    start: datetime,
    until: datetime,
    base_url: str,
    rules: Collection[str] | None,
) -> Iterator[PackageDigest]:
    """Every active watch's card data over ``[start, until]``, by watch id, one at a time."""
    known = None if rules is None else {*rules, *(rule.id for rule in BUILTIN_RULES)}
    alerts = store.digest_alerts(start)
    # Failed polls before retention's cut are day counts (and the rows from it on, the
    # failures of each day after it): a period reaching before it reads both.
    cut = store.checks_kept_from()
    counted = store.failure_counts(start, cut) if cut is not None and start < cut else {}
    for watch, values in store.digest_watches():
        yield _package(
            store,
            watch,
            values,
            alerts.get(watch["id"], []),
            start=start,
            until=until,
            base_url=base_url,
            rules=known,
            counted=(counted.get(watch["id"], 0), cut) if counted else None,
        )


def _totals() -> dict[str, int]:
    keys = ("packages", "firing", "fired", "resolved", "failures", "releases", "changed")
    return dict.fromkeys(keys, 0)


def _tally(totals: dict[str, int], p: PackageDigest) -> None:
    """Add one package to the digest's ``totals``."""
    totals["packages"] += 1
    totals["firing"] += len(p.firing)
    totals["fired"] += len(p.fired)
    totals["resolved"] += len(p.resolved)
    totals["failures"] += p.failures
    totals["releases"] += len(p.new_versions)
    totals["changed"] += p.changed


def configured_digest(
    store: Store,
    config: Any,
    *,
    now: datetime,
    since: timedelta = DEFAULT_SINCE,
    rules: Collection[str] | None = None,
) -> Digest:
    """:func:`build_digest` with the config's djangopackages URL and time zone."""
    return build_digest(
        store,
        now=now,
        since=since,
        base_url=config.djangopackages.url,
        timezone=config.schedule.timezone,
        rules=rules,
    )


# The fields a package's card reads of its values at the period's end (package_links' too),
# and those it compares with the period's start.
CURRENT_FIELDS = (
    "title",
    "pypi_version",
    "pypi.version",
    "repo_watchers",
    "repo_forks",
    "commits_over_52",
    "repo_url",
    "pypi_url",
    "github.repo",
    "pypi.repository",
)
CHANGE_FIELDS = ("repo_watchers", "repo_forks")


class _History:
    """What a package's card needs of its history, read back from the newest row to the
    period's start: the rows in the period (oldest first), those after its end (a digest of
    the past), and the newest row before it. Rows hold only the fields that changed, so a
    field's value at a moment is the one in the newest row up to then that holds it: among
    the rows read, else the package's latest values (``parts``) when no row read holds it,
    else looked up before the period (an index serves the fields of CHANGE_FIELDS). A row
    holding a shift of a list (``commits_over_52``'s weekly slide) moves the value before it
    forward, or the value after it backward: see :meth:`_at`."""

    def __init__(
        self,
        store: Store,
        watch_id: int,
        latest: Mapping[str, Any] | None,
        *,
        start: datetime,
        until: datetime,
    ):
        self.store = store
        self.watch_id = watch_id
        self.latest = latest  # None: no source has values (a store written by hand)
        self.period: list[tuple[int, dict[str, Any]]] = []
        self.after: list[dict[str, Any]] = []
        self.before: tuple[int, dict[str, Any]] | None = None
        rows = store.digest_history(watch_id)
        try:
            for ident, taken_at, data in rows:
                at = _when(taken_at)
                if at < start:
                    self.before = (ident, orjson.loads(data))
                    break
                if at <= until:
                    self.period.append((ident, orjson.loads(data)))
                else:
                    self.after.append(orjson.loads(data))
        finally:
            rows.close()
        self.period.reverse()

    @property
    def known(self) -> bool:
        """Something was stored up to the period's end."""
        return bool(self.period) or self.before is not None

    def at_end(self, name: str) -> Any:
        """The field's value at the period's end."""
        return self._at(name, self.after, [data for _, data in reversed(self.period)])

    def at_start(self, name: str) -> Any:
        """The field's value at the period's start (the newest row before it)."""
        return self._at(name, [*self.after, *(data for _, data in reversed(self.period))], [])

    def seen_before(self, version: str) -> bool:
        """Whether ``pypi_version`` was ``version`` at some time before the period."""
        if self.before is None:
            return False
        ident, data = self.before
        if data.get("pypi_version") == version:
            return True
        return self.store.digest_version_seen(self.watch_id, version, ident)

    def _at(self, name: str, newer: list[dict[str, Any]], older: list[dict[str, Any]]) -> Any:
        """The field's value at a moment: ``newer``, the rows read after it, and ``older``,
        the period's rows up to it, newest first. A row may hold a shift of the value
        (:mod:`monitor.history`): the newest whole value up to the moment moved forward
        through the shifts since, else the latest value moved backward through the rows after
        the moment when these hold shifts only, else the whole value before the period."""
        shifts: list[Any] = []
        for data in older:
            if name in data:
                if not is_shift(data[name]):
                    return replayed(data[name], shifts)
                shifts.append(data[name])
        if self.latest is not None:
            later = [data[name] for data in newer if name in data]
            if all(map(is_shift, later)):
                value = self.latest.get(name)
                for stored in later:
                    value = backward(value, stored)
                return value
        value, earlier = self._before(name)
        return replayed(value, shifts + earlier)

    def _before(self, name: str) -> tuple[Any, list[Any]]:
        """The field's newest whole value in the rows up to the newest one before the period,
        and the shifts stored since (newest first)."""
        if self.before is None:
            return None, []
        ident, data = self.before
        lookup = self.store.digest_value_before
        found = (ident, data[name]) if name in data else lookup(self.watch_id, name, ident)
        shifts = []
        while found is not None and is_shift(found[1]):
            shifts.append(found[1])
            found = lookup(self.watch_id, name, found[0])
        return (None if found is None else found[1]), shifts


def _package(
    store: Store,
    watch: dict[str, Any],
    latest: Mapping[str, Any] | None,
    alerts: list[dict[str, Any]],
    *,
    start: datetime,
    until: datetime,
    base_url: str,
    rules: set[str] | None = None,
    counted: tuple[int, datetime | None] | None = None,
) -> PackageDigest:
    """One package's card. ``latest``: its sources' latest values; ``alerts``: its alerts
    that may matter (firing now, started or resolved about the period), by start;
    ``counted``: its failed polls counted by day before retention's cut, and the cut."""
    watch_id, slug = watch["id"], watch["slug"]
    history = _History(store, watch_id, latest, start=start, until=until)
    period = history.period
    current: dict[str, Any] = {}
    reference: dict[str, Any] = {}
    if history.known:
        current = {name: history.at_end(name) for name in CURRENT_FIELDS}
        # The reference for "change over the period": the value at its start, else (a
        # package added during it) its first snapshot inside the period: its baseline.
        if history.before is not None:
            reference = {name: history.at_start(name) for name in CHANGE_FIELDS}
        else:
            reference = period[0][1]

    # Versions that appear in the period and in no snapshot before it; the baseline
    # snapshot (the package's first) only says what was already there.
    seen: set[str] = set()
    new_versions: list[str] = []
    for index, (_, data) in enumerate(period):
        version = data.get("pypi_version")
        if not version or version in seen:
            continue
        seen.add(version)
        if history.before is None and index == 0:
            continue
        if not history.seen_before(version):
            new_versions.append(one_line(version))

    commits = current.get("commits_over_52")
    commits = list(commits) if commits else None

    if rules is not None:
        alerts = [a for a in alerts if a["rule"] in rules]
    # Each alert is listed once: still firing, else resolved in the period, else fired in it.
    still_firing = [a for a in alerts if a["kind"] == "condition" and a["status"] == "firing"]
    resolved_rows = [
        a
        for a in alerts
        if a["status"] == "resolved" and _in_period(a["resolved_at"], start, until)
    ]
    listed = {a["id"] for a in still_firing} | {a["id"] for a in resolved_rows}
    fired = [
        _alert(a)
        for a in alerts
        if a["id"] not in listed and _in_period(a["started_at"], start, until)
    ]
    resolved = [_alert(a, resolved=True) for a in resolved_rows]
    firing = sorted(
        (_alert(a) for a in still_firing),
        key=lambda a: (-_severity(a["severity"]).rank, a["started_at"], a["rule"]),
    )

    earlier, cut = counted or (0, None)
    failures, last_error = _failures(store, watch_id, start=max(start, cut or start), until=until)
    failures += earlier
    title = one_line(current.get("title") or watch.get("title") or slug) or slug
    links = package_links(base_url.rstrip("/"), slug, current)
    return PackageDigest(
        slug=slug,
        title=title,
        version=one_line(version) if (version := _latest(current)) else None,
        new_versions=new_versions,
        stars=current.get("repo_watchers"),
        stars_change=_change(current.get("repo_watchers"), reference.get("repo_watchers")),
        forks=current.get("repo_forks"),
        forks_change=_change(current.get("repo_forks"), reference.get("repo_forks")),
        commits=commits,
        sparkline=sparkline(commits),
        fired=fired,
        resolved=resolved,
        firing=firing,
        failures=failures,
        last_error=last_error,
        changed=len(period) > 1 or (bool(period) and history.before is not None),
        url=links["djangopackages"] or links["pypi"] or "",
        repo_url=safe_url(links["repo"]),
        pypi_url=safe_url(links["pypi"]),
        pinned=one_line(watch["pinned"]) if watch.get("pinned") else None,
    )


def _failures(
    store: Store, watch_id: int, *, start: datetime, until: datetime
) -> tuple[int, str | None]:
    """The package's failed polls in the period, and the error of the last of them."""
    count, last_error = 0, None
    rows = store.digest_failed_checks(watch_id)  # newest first
    try:
        for checked_at, error in rows:
            at = _when(checked_at)
            if at < start:
                break
            if at <= until:
                if not count:
                    last_error = one_line(error) or None
                count += 1
    finally:
        rows.close()
    return count, last_error


def _latest(values: Mapping[str, Any]) -> Any:
    """The latest release: djangopackages' ``pypi_version``, else PyPI's (a pypi: watch)."""
    return values.get("pypi_version") or values.get("pypi.version")


def _when(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _in_period(text: str | None, start: datetime, until: datetime) -> bool:
    if not text:
        return False
    return start <= _when(text) <= until


def _change(current: int | None, reference: int | None) -> int | None:
    if current is None or reference is None:
        return None
    return current - reference


def _severity(value: str) -> Severity:
    try:
        return Severity(value)
    except ValueError:
        return Severity.INFO


def _alert(row: dict[str, Any], *, resolved: bool = False) -> dict[str, Any]:
    alert = {
        "rule": one_line(row["rule"]),
        "kind": row["kind"],
        "severity": str(_severity(row["severity"])),
        "summary": one_line(row["summary"]),
        "started_at": iso(_when(row["started_at"])),
    }
    if resolved:
        alert["resolved_at"] = iso(_when(row["resolved_at"]))
    return alert


def sparkline(counts: list[int] | None) -> str:
    """One block character per week, scaled to the busiest week (``█``).

    A week without commits is ``▁``; a week with any commits is at least ``▂``, so activity
    never looks like silence. Unknown counts (``None`` or ``[]``) give ``""``.
    """
    if not counts:
        return ""
    return "".join(BLOCKS[level] for level in _levels(counts, len(BLOCKS) - 1))


def _levels(counts: list[int], top: int) -> list[int]:
    """Each count on a scale of 0..``top``: 0 for none, at least 1 for any, ``top`` for max."""
    peak = max(max(counts), 0)
    if peak == 0:
        return [0 for _ in counts]
    # Rounded half up, in integers: count * top / peak.
    return [0 if count <= 0 else max(1, (2 * count * top + peak) // (2 * peak)) for count in counts]


# -- rendering ------------------------------------------------------------------------------


def digest_subject(digest: Digest) -> str:
    """``[monitor] weekly digest: 12 packages, 2 firing`` (+ releases when there are any)."""
    totals = digest.totals
    parts = [_plural(totals.get("packages", 0), "package"), f"{totals.get('firing', 0)} firing"]
    if totals.get("releases"):
        parts.append(_plural(totals["releases"], "release"))
    return f"[monitor] {_period_name(digest)}: {', '.join(parts)}"


def digest_data(digest: Digest) -> dict[str, Any]:
    """The digest as JSON-able data (the webhook ``package.digest`` body's ``data``)."""
    return {
        "since": iso(digest.since),
        "until": iso(digest.until),
        "totals": dict(digest.totals),
        "packages": [
            {
                "slug": p.slug,
                "title": p.title,
                "version": p.version,
                "pinned": p.pinned,
                "new_versions": list(p.new_versions),
                "stars": p.stars,
                "stars_change": p.stars_change,
                "forks": p.forks,
                "forks_change": p.forks_change,
                "commits": list(p.commits) if p.commits is not None else None,
                "sparkline": p.sparkline,
                "fired": [dict(a) for a in p.fired],
                "resolved": [dict(a) for a in p.resolved],
                "firing": [dict(a) for a in p.firing],
                "failures": p.failures,
                "last_error": p.last_error,
                "changed": p.changed,
                "links": {"djangopackages": p.url, "repo": p.repo_url, "pypi": p.pypi_url},
            }
            for p in digest.packages
        ],
    }


def render_text(digest: Digest) -> str:
    """The plain-text digest (terminal, console channel, the email's text part): fields are
    one line each, and the whole is kept free of control and bidi characters (SPEC §9)."""
    return "".join(text_chunks(digest))


def text_chunks(digest: Digest) -> Iterator[str]:
    """:func:`render_text`'s text in pieces of about ``TEXT_CHUNK`` characters."""
    cards = _TextCards(ZoneInfo(digest.timezone))
    for p in digest.packages:
        cards.add(p)
    return _text_document(digest, cards)


def build_text(
    store: Store,
    *,
    now: datetime,
    since: timedelta = DEFAULT_SINCE,
    base_url: str = DEFAULT_BASE_URL,
    timezone: str = "UTC",
    rules: Collection[str] | None = None,
) -> Iterator[str]:
    """The text of :func:`build_digest`'s digest (what ``monitor digest`` prints), in pieces
    to write as they come. Each package's card is rendered as the package is read, and only
    the cards are kept (UTF-8), not the packages' data nor the whole text: a year's digest of
    10,000 packages is megabytes (issue 14). Everything is read and every card rendered
    before this returns (the totals head the text), so an error leaves nothing half-written.
    """
    start, until = _period(now, since)
    cards, totals = _TextCards(ZoneInfo(timezone)), _totals()
    packages = _packages(store, start=start, until=until, base_url=base_url, rules=rules)
    # Read and rendered by turns of READ_BATCH packages, not one: reading and rendering
    # each evict the other from the CPU's caches (a tenth of the time, turn by turn).
    while batch := list(islice(packages, READ_BATCH)):
        for p in batch:
            cards.add(p)
            _tally(totals, p)
    cards.sort()
    head = Digest(since=start, until=until, packages=[], totals=totals, timezone=timezone)
    return _text_document(head, cards)


def configured_text(
    store: Store,
    config: Any,
    *,
    now: datetime,
    since: timedelta = DEFAULT_SINCE,
    rules: Collection[str] | None = None,
) -> Iterator[str]:
    """:func:`build_text` with the config's djangopackages URL and time zone."""
    return build_text(
        store,
        now=now,
        since=since,
        base_url=config.djangopackages.url,
        timezone=config.schedule.timezone,
        rules=rules,
    )


class _TextCards:
    """The text digest's packages, added as they are read: the card of each one to report,
    rendered there and then (UTF-8), and the table row of each quiet one, both in the order
    added until :meth:`sort` puts them in the digest's (:func:`build_digest`'s)."""

    def __init__(self, zone: ZoneInfo):
        self.zone = zone
        # A macro: calling it makes no new template context per card, as render() would.
        template = template_environment(html=False).get_template("digest_card.txt.j2")
        self.card: Callable[[dict[str, Any]], str] = template.module.card  # type: ignore[attr-defined]
        self.cards: list[tuple[tuple[tuple[int, int], str], bytes]] = []
        self.quiet: list[tuple[str, tuple[str, str, str, str]]] = []  # slug, row

    def add(self, p: PackageDigest) -> None:
        if p.quiet:
            row = _quiet_context(p)
            self.quiet.append((p.slug, (row["name"], row["version"], row["stars"], row["forks"])))
        else:
            card = self.card(_package_context(p, self.zone))
            self.cards.append(((p.attention, p.slug), card.encode()))

    def sort(self) -> None:
        self.cards.sort(key=lambda card: card[0])
        self.quiet.sort(key=lambda row: row[0])


def _text_document(head: Digest, cards: _TextCards) -> Iterator[str]:
    """The text digest headed by ``head`` (its period and totals; its packages are not read),
    printable, in pieces of about ``TEXT_CHUNK`` characters."""
    quiet = [row for _, row in cards.quiet]
    context = _head_context(head, ZoneInfo(head.timezone))
    context["cards"] = [card for _, card in cards.cards]  # the template decodes each
    context["quiet"] = quiet
    context["quiet_lines"] = _quiet_table(quiet) if quiet else []
    template = template_environment(html=False).get_template("digest.txt.j2")
    return (printable(chunk) for chunk in _joined(template.generate(context)))


def render_html(digest: Digest) -> str:
    return "".join(html_chunks(digest))


def html_chunks(digest: Digest) -> Iterator[str]:
    """:func:`render_html`'s document in pieces of about ``TEXT_CHUNK`` characters (megabytes
    for 10,000 packages: ``monitor digest --html`` writes it as it is rendered)."""
    template = template_environment(html=True).get_template("digest.html.j2")
    return _joined(template.generate(_context(digest)))


def _joined(pieces: Iterable[str]) -> Iterator[str]:
    """A template's small pieces of output joined into ones of about ``TEXT_CHUNK``."""
    held: list[str] = []
    size = 0
    for piece in pieces:
        held.append(piece)
        size += len(piece)
        if size >= TEXT_CHUNK:
            yield "".join(held)
            held, size = [], 0
    yield "".join(held)


def write_file(path: str, text: str | Iterable[str]) -> None:
    """Write ``text`` (or its pieces, as they come) to ``path`` whole or not at all: into a
    new file beside it, renamed over it once written. Raises ``OSError``, or what making the
    pieces raised; nothing is left behind then."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.writelines([text] if isinstance(text, str) else text)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


@cache
def template_environment(*, html: bool) -> jinja2.Environment:
    """The environment of monitor's own templates (``monitor/templates``): the digest's and
    the status pages'; autoescaped for HTML."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def _context(digest: Digest) -> dict[str, Any]:
    zone = ZoneInfo(digest.timezone)
    return {
        **_head_context(digest, zone),
        "packages": [_package_context(p, zone) for p in digest.packages if not p.quiet],
        "quiet": [_quiet_context(p) for p in digest.packages if p.quiet],
    }


def _head_context(digest: Digest, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "subject": digest_subject(digest),
        "period": _period_name(digest),
        "since": _display(digest.since, zone),
        "until": _display(digest.until, zone),
        "totals": digest.totals,
    }


def _quiet_context(p: PackageDigest) -> dict[str, Any]:
    return {
        "slug": p.slug,
        "name": p.title if p.title == p.slug else f"{p.title} ({p.slug})",
        "title": p.title,
        "version": (p.version or "no PyPI release")
        + (f" (you run {p.pinned})" if p.pinned else ""),
        "stars": _count(p.stars),
        "forks": _count(p.forks),
        "url": safe_url(p.url),
    }


def _quiet_table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    """The quiet packages (name, version, stars, forks) as aligned text lines: name and
    version left, numbers right."""
    from monitor.report import table_lines

    return table_lines([("package", "version", "stars", "forks"), *rows], right={2, 3})


def _package_context(p: PackageDigest, zone: ZoneInfo) -> dict[str, Any]:
    severity = p.severity
    if severity is not None:
        status = f"{severity} firing"
    elif p.failures:
        status = "poll failures"
    elif p.changed:
        status = "changed"
    else:
        status = "quiet"
    return {
        "slug": p.slug,
        "title": p.title,
        "status": status,
        "severity": str(severity) if severity else None,
        "version": p.version or "no PyPI release",
        "pinned": p.pinned,
        "new_versions": p.new_versions,
        "stars": _count(p.stars),
        "stars_change": _signed(p.stars_change),
        "forks": _count(p.forks),
        "forks_change": _signed(p.forks_change),
        "sparkline": p.sparkline or NO_COMMITS,
        "commits_known": p.commits is not None,
        "commits_total": sum(p.commits) if p.commits else 0,
        "fired": [_alert_context(a, zone) for a in p.fired],
        "resolved": [_alert_context(a, zone) for a in p.resolved],
        "firing": [_alert_context(a, zone) for a in p.firing],
        "failures": p.failures,
        "last_error": p.last_error,
        "changed": p.changed,
        "url": safe_url(p.url),
        "repo_url": p.repo_url,
        "pypi_url": p.pypi_url,
    }


def _alert_context(alert: dict[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    resolved_at = alert.get("resolved_at")
    return {
        **alert,
        "started_at": _display(_when(alert["started_at"]), zone),
        "resolved_at": _display(_when(resolved_at), zone) if resolved_at else None,
    }


def _period_name(digest: Digest) -> str:
    """Named after the period's length, in time elapsed or on the wall clock of the digest's
    zone (a daily cron's day is 23 hours long when the clocks go forward)."""
    span = digest.until - digest.since
    zone = ZoneInfo(digest.timezone)
    start, end = (m.astimezone(zone).replace(tzinfo=None) for m in (digest.since, digest.until))
    for length in (span, end - start):
        if length == timedelta(days=1):
            return "daily digest"
        if length == timedelta(days=7):
            return "weekly digest"
    months = (end.year * 12 + end.month) - (start.year * 12 + start.month)
    if months == 1 and (end.day, end.time()) == (start.day, start.time()):
        return "monthly digest"
    if span % timedelta(days=1) == timedelta(0):
        return f"digest ({span.days}d)"
    hours = span / timedelta(hours=1)
    return f"digest ({hours:g}h)"


def _display(moment: datetime, zone: ZoneInfo) -> str:
    """``2026-11-22 11:00 CET``; a zone without an abbreviation shows its offset (UTC-03)."""
    local = moment.astimezone(zone)
    name = local.tzname() or ""
    if not name or name[0] in "+-":
        name = "UTC" + local.strftime("%z").removesuffix("00")
    return f"{local:%Y-%m-%d %H:%M} {name}"


def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def _signed(value: int | None) -> str:
    if value is None:
        return "change unknown"
    if value == 0:
        return "±0"
    return f"{value:+,}".replace("-", "−")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def queue_digest_groups(
    store: Store,
    config: Any,
    *,
    now: datetime,
    since: timedelta = DEFAULT_SINCE,
    scheduled: str | None = None,
    rules: Collection[str] | None = None,
) -> list[str]:
    """Queue the digest in the outbox for every notifier with ``digest = true`` (the console
    when none has); return the group ids. Sent like any delivery, retried like any.

    ``scheduled`` names the schedule's fire time this digest is for: it is queued once for
    it, by whichever process gets there first, and ``[]`` is returned to the others.
    """
    from monitor.outbox import queue_group

    digest = configured_digest(store, config, now=now, since=since, rules=rules)
    content = {
        "subject": digest_subject(digest),
        "text": render_text(digest),
        "html": render_html(digest),
        "data": digest_data(digest),
    }
    channels = [name for name, notifier in config.notifiers.items() if notifier.digest]
    with store.transaction():
        if scheduled is not None:
            if store.get_meta(SCHEDULED_DIGEST) == scheduled:
                return []
            store.set_meta(SCHEDULED_DIGEST, scheduled)
        return [
            queue_group(store, config, channel, "digest", [], now=now, digest=content)
            for channel in channels or ["console"]
        ]


def queue_scheduled_digest(
    store: Store, config: Any, *, now: datetime, rules: Collection[str] | None = None
) -> list[str]:
    """The digest the cron fired for at ``now``: it covers the time since the cron's previous
    fire time, up to this one (a daily cron sends a daily digest). The fire time names the
    digest, so two daemons on one database queue it once between them."""
    fire_time, since = scheduled_period(config.schedule.digest, config.schedule.timezone, now)
    return queue_digest_groups(
        store, config, now=fire_time, since=since, scheduled=iso(fire_time), rules=rules
    )


def scheduled_period(cron: str, timezone: str, now: datetime) -> tuple[datetime, timedelta]:
    """The cron's latest fire time at or before ``now``, in UTC, and the time since the fire
    time before it. Were the cron never to have fired (a 30 February), the minute of ``now``
    and the default period."""
    from monitor.cron import last_fire_time

    fire = last_fire_time(cron, timezone, now)
    previous = last_fire_time(cron, timezone, fire - timedelta(microseconds=1)) if fire else None
    if fire is None or previous is None:
        return now.astimezone(UTC).replace(second=0, microsecond=0), DEFAULT_SINCE
    fire = fire.astimezone(UTC)  # elapsed time: aware datetimes in one zone subtract naively
    return fire, fire - previous.astimezone(UTC)
