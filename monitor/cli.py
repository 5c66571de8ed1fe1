"""The command line (SPEC §4). Library code raises; this module maps errors to exit codes.

Start-up stays light: only click and monitor's own small modules are imported here; aiohttp,
slack-sdk, jinja2 and sqlite-utils are imported inside the commands that use them.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from monitor import __version__
from monitor.diff import describe_change
from monitor.durations import parse_duration
from monitor.errors import MonitorError, NotWatchedError, PackageNotFound, UsageError
from monitor.text import json_safe, one_line, printable

if TYPE_CHECKING:
    from monitor.config import Config
    from monitor.cycle import CycleReport
    from monitor.names import Asked
    from monitor.store import Store

CHECK_DELIVERY_BUDGET = 30.0  # seconds `check` keeps retrying its deliveries


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    """What a command needs from the world; tests replace the clock and sleep."""

    config_path: str | None = None
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    rng: Callable[[], float] = random.random
    env: dict[str, str] | None = None
    read_only: bool = False  # a command that only reads: a missing database is not created
    _config: Config | None = field(default=None, repr=False)
    _rules: list[Any] | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            from monitor.config import find_config_path, load_config

            path = find_config_path(self.config_path, self.env)
            self._config = load_config(path, self.env)
        return self._config

    def store(self) -> Store:
        from monitor.store import Store

        if self.read_only and not self.config().database.exists():
            return Store(":memory:")  # nothing recorded yet, and reading creates nothing
        return Store(self.config().database)

    def where(self) -> str:
        """``/abs/monitor.db (config: /abs/monitor.toml)``: what a command read, for messages
        that would otherwise leave a user in the wrong folder guessing."""
        config = self.config()
        missing = "" if config.database.exists() else "not created yet; "
        return f"{config.database.resolve()} ({missing}config: {self.config_description()})"

    def config_description(self) -> str:
        path = self.config().path
        return str(path.resolve()) if path else "built-in defaults, no monitor.toml here"

    def rule_ids(self) -> list[str]:
        """The ids of the rules in force (what alerts and the digest show alerts of)."""
        return [rule.id for rule in self.rules()]

    def rules(self) -> list[Any]:
        """The loaded rules; a bad rule file raises RulesError (exit 2) before any work."""
        if self._rules is None:
            from monitor.rules import load_rules

            self._rules = load_rules(list(self.config().rule_paths))
        return self._rules


READ_ONLY_COMMANDS = frozenset({"list", "alerts", "history", "mutes", "status"})


class MonitorGroup(click.Group):
    """Turns a MonitorError into ``error: message`` on stderr and its exit code."""

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name in READ_ONLY_COMMANDS:
            ctx.ensure_object(Runtime).read_only = True
        return name, command, rest

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MonitorError as exc:
            self.fail(ctx, exc)
        except Exception as exc:
            error = _store_error(ctx, exc)
            if error is None:
                raise
            self.fail(ctx, error)

    @staticmethod
    def fail(ctx: click.Context, exc: MonitorError) -> NoReturn:
        """``error: message`` (and what helps) on stderr, then exit with the error's code."""
        from monitor.errors import RulesError

        lines = exc.problems if isinstance(exc, RulesError) else [f"error: {exc}"]
        for line in lines:
            echo(line, err=True)
        if isinstance(exc, PackageNotFound) and exc.hint:
            echo(f"hint: {exc.hint}", err=True)
        if isinstance(exc, PackageNotFound) and exc.suggestions:
            echo(f"did you mean: {', '.join(exc.suggestions)}?", err=True)
        runtime = ctx.find_object(Runtime)
        if isinstance(exc, NotWatchedError) and runtime and runtime._config is not None:
            echo(f"note: looked in {runtime.where()}", err=True)
        ctx.exit(exc.exit_code)


def _store_error(ctx: click.Context, exc: Exception) -> MonitorError | None:
    """A command's SQLite failure from outside the program (disk full, locked, read-only) as
    the user's error naming the database; None for anything else (a bug: its traceback)."""
    import sqlite3

    if not isinstance(exc, sqlite3.Error):
        return None
    from monitor.store import store_error

    runtime = ctx.find_object(Runtime)
    config = runtime._config if runtime else None  # loaded before any store is opened
    return store_error(exc, config.database) if config else None


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


@click.group(cls=MonitorGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Config file (else $MONITOR_CONFIG, else ./monitor.toml, else defaults).",
)
@click.version_option(__version__, prog_name="monitor")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Watch Python/Django packages on djangopackages.org and alert on health changes.

    \b
    Quick start:
      monitor watch django-otp django-mfa    # subscribe and take a baseline
      monitor check                          # poll now, print changes and alerts
      monitor run                            # the daemon: poll on schedule, deliver, digest
    """
    runtime = ctx.ensure_object(Runtime)
    if config_path:
        runtime.config_path = config_path


def echo(text: str = "", *, err: bool = False, nl: bool = True) -> None:
    """Show ``text`` to a person: every human line of every command goes through here, so
    none carries a control or bidi character from upstream (SPEC §9), terminal or not."""
    click.echo(printable(text), err=err, nl=nl)


def _runtime(ctx: click.Context) -> Runtime:
    return ctx.find_object(Runtime) or Runtime()


def _print_json(data: Any) -> None:
    """The data as one JSON document, exactly; the characters a terminal would act on are
    written as ``\\uXXXX`` escapes (JSON escapes C0 controls itself)."""
    click.echo(json_safe(json.dumps(data, indent=2, ensure_ascii=False, default=str)))


# -- watch / unwatch / list ---------------------------------------------------------------


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--grid", metavar="GRID", help="Watch every member of this grid (slug or id).")
@click.option(
    "-r",
    "--requirements",
    "requirements",
    metavar="FILE",
    help="Watch what a dependency file requires: requirements*.txt, pyproject.toml, uv.lock"
    " or poetry.lock.",
)
@click.option(
    "--prune", is_flag=True, help="With -r: unwatch what came from FILE and is no longer in it."
)
@click.option(
    "--pin", metavar="VERSION", help="The version you run (one NAME): the same as NAME==VERSION."
)
@click.option("--json", "as_json", is_flag=True, help="With -r: print one JSON document.")
@click.option(
    "--notify",
    "notify",
    multiple=True,
    metavar="CHANNEL",
    help="Channel to alert (a [notifiers.NAME] or 'console'); repeatable.",
)
@click.option(
    "--interval",
    callback=_duration,
    metavar="DURATION",
    help="Poll interval for these packages, e.g. 1h or 1d (default: [schedule] interval).",
)
@click.pass_context
def watch(
    ctx: click.Context,
    names: tuple[str, ...],
    grid: str | None,
    requirements: str | None,
    prune: bool,
    pin: str | None,
    as_json: bool,
    notify: tuple[str, ...],
    interval: str | None,
) -> None:
    """Subscribe to packages: fetch each once, store it as the baseline, evaluate rules.

    \b
    NAME is a djangopackages slug (django-otp), or pypi:NAME for a project on PyPI
    alone (pypi:requests); NAME==VERSION (or --pin VERSION) says which version you run,
    so pinned-yanked, vulnerable-version and the like are about that one:
      monitor watch django-otp==1.7.0 pypi:requests
      monitor watch -r requirements.txt --prune

    A slug not found as typed is tried lower-cased with '_' as '-'. An unknown name is
    an error (with suggestions, and the pypi:NAME to use when PyPI knows it) and then
    nothing is stored. Watching a package that is already watched (named, or a member of
    --grid) fetches nothing and changes only the options given: --notify alone keeps the
    interval, --interval alone keeps the channels, a pin replaces the pin. A package
    watched again after unwatch keeps its earlier options unless given.

    -r FILE maps each requirement to a djangopackages package (by its PyPI name) or to
    pypi:NAME, skips and lists what is found nowhere, remembers the file, and prints what
    happened to each requirement; run again, it updates pins and adds new names.
    """
    from monitor.names import parse_asked

    runtime = _runtime(ctx)
    if sum(map(bool, (names, grid, requirements))) != 1:
        raise UsageError("give package names, --grid GRID or -r FILE (one of them)")
    if (prune or as_json) and not requirements:
        raise UsageError("--prune and --json go with -r FILE")
    if pin is not None and len(names) != 1:
        raise UsageError("--pin goes with exactly one NAME (or write NAME==VERSION)")
    config = runtime.config()
    config.check_channels(notify, "--notify")
    runtime.rules()
    given = list(notify) or None  # None: not given, so each watch keeps its own
    if requirements:
        _watch_file(runtime, Path(requirements), prune, as_json, given, interval)
        return
    store = runtime.store()
    asked: dict[str, Asked] = {}
    for text in names:
        one = parse_asked(text)
        if pin is not None:
            if one.pinned not in (None, pin):
                raise UsageError(f"{text!r} and --pin {pin} name two versions")
            one = replace(one, pinned=pin)
        asked.setdefault(one.name, one)
    existing = [a for a in asked.values() if store.watch(a.name)]
    fresh = [a for a in asked.values() if a not in existing]
    if not fresh and not grid:
        with store.transaction():
            lines = _update_options(store, existing, given, interval)
        for line in lines:
            echo(line)
        return
    report = asyncio.run(_watch_new(runtime, store, fresh, grid, existing, given, interval))
    if report.transitions:
        echo(f"{len(report.transitions)} alert(s) raised (see: monitor alerts)")


async def _watch_new(
    runtime: Runtime,
    store: Store,
    asked: list[Asked],
    grid: str | None,
    existing: list[Asked],
    notify: list[str] | None,
    interval: str | None,
) -> CycleReport:
    """Fetch and baseline the packages not watched yet (``asked``, or the grid's members
    that are not); update the options of the ``existing`` ones (and of the grid's watched
    members) in the same transaction, so a failure changes nothing."""
    from monitor.cycle import CycleRecorder, poll_parts, without_record
    from monitor.names import Asked, is_pypi_watch, project_of

    config = runtime.config()
    async with _sources(runtime) as sources:
        source = sources.djangopackages
        pypi = next((s for s in sources.others if s.name == "pypi"), None)
        if grid:
            keys = await source.grid_keys(grid)
            watched = _watched_members(store, keys)
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
        rules = runtime.rules()
        recorder = CycleRecorder(store, config, rules, now=runtime.clock(), rng=runtime.rng)
        recorder.pins = {a.name: a.pinned for a in asked}
        fetched = await poll_parts(recorder, fetched, sources.others)
        for result in fetched:
            if is_pypi_watch(result.slug):
                _require_on_pypi(result)
    now = runtime.clock()
    by_name = {a.name: a for a in (*asked, *existing)}
    kept: dict[str, str] = {}
    recorder.render_baselines(fetched)  # user templates run before the write lock is taken
    with store.transaction():
        # A member whose id was not known to its watch is still watched under its slug;
        # a name found under its other spelling may be watched already.
        already = store.watches([result.slug for result in fetched])
        fetched = [result for result in fetched if result.slug not in already]
        updates = list(dict.fromkeys([*(a.name for a in existing), *already]))
        lines = _update_options(store, [by_name[n] for n in updates], notify, interval)
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
            kept[result.slug] = _kept_options(store, result.slug, notify, interval)
        report = recorder.record(fetched, baseline=True)
    for line in lines:
        echo(line)
    for result in fetched:
        line = _watched_line(result, by_name[result.slug])
        echo(f"watching {result.slug} ({line}){kept[result.slug]}")
    await _deliver(runtime, store, report, console=sys.stdout)
    return report


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


def _watch_file(
    runtime: Runtime,
    path: Path,
    prune: bool,
    as_json: bool,
    notify: list[str] | None,
    interval: str | None,
) -> None:
    """``watch -r FILE``: see :mod:`monitor.watchfile`. Exit 1 when a name could not be
    resolved because a request failed, or an alert could not be delivered."""
    from monitor.deps import read_dependencies

    deps = read_dependencies(path)
    store = runtime.store()
    imported = asyncio.run(_import_file(runtime, store, deps, prune, notify, interval, as_json))
    if as_json:
        _print_json([row.to_json_dict() for row in imported.rows])
    else:
        _print_import(deps, imported)
    if imported.failed or imported.undelivered:
        sys.exit(1)


async def _import_file(
    runtime: Runtime,
    store: Store,
    deps: Any,
    prune: bool,
    notify: list[str] | None,
    interval: str | None,
    quiet: bool,
) -> Any:
    from monitor.watchfile import import_file

    with _progress("resolving", len(deps.wanted), shown=not quiet) as step:
        async with _sources(runtime) as sources:
            imported = await import_file(
                store,
                runtime.config(),
                runtime.rules(),
                sources,
                deps,
                origin=str(deps.path.resolve()),
                prune=prune,
                notify=notify,
                interval=interval,
                now=runtime.clock(),
                rng=runtime.rng,
                on_progress=(lambda _done, _total: step()) if step else None,
            )
    console = sys.stderr if quiet else sys.stdout
    imported.undelivered = await _deliver(runtime, store, imported.report, console=console)
    return imported


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _print_import(deps: Any, imported: Any) -> None:
    from monitor.watchfile import ADDED, LEFT, REMOVED, SKIPPED, UNCHANGED, UPDATED

    header = ("requirement", "watch", "pinned", "what happened")
    table = [header] + [
        (
            _cut(one_line(row.requirement) or "-", 60),
            row.watch or "-",
            row.pinned or "-",
            row.action + (f": {row.reason}" if row.reason else ""),
        )
        for row in imported.rows
    ]
    _print_table(table)
    counts = {a: imported.count(a) for a in (ADDED, UPDATED, UNCHANGED, SKIPPED, REMOVED, LEFT)}
    if not counts[ADDED] and not counts[UPDATED] and not counts[REMOVED]:
        echo(f"{deps.path}: nothing changed ({counts[UNCHANGED]} already watched as they are)")
    summary = ", ".join(f"{n} {action}" for action, n in counts.items() if n)
    echo(f"{deps.path}: {summary or 'no requirements'}")
    if imported.report is not None and imported.report.transitions:
        echo(f"{len(imported.report.transitions)} alert(s) raised (see: monitor alerts)")


def _watched_members(store: Store, keys: list[str]) -> dict[str, str]:
    """Grid member key -> the watched package's slug, for the keys (ids, or slugs) that
    name a watched package."""
    watches = store.watches(store.watched_slugs())
    by_id = {str(w.package_id): w.slug for w in watches.values() if w.package_id is not None}
    return {key: by_id.get(key, key) for key in keys if key in by_id or key in watches}


def _update_options(
    store: Store, asked: list[Asked], notify: list[str] | None, interval: str | None
) -> list[str]:
    """Set the options given on these watched packages (a pin given replaces the pin); a
    line for each saying what changed, or that nothing did."""
    from monitor.report import option_change
    from monitor.store import KEEP

    lines = []
    for one in asked:
        pinned = one.pinned if one.pinned is not None else KEEP
        changed = store.set_watch_options(one.name, notify=notify, interval=interval, pinned=pinned)
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


def _kept_options(store: Store, slug: str, notify: list[str] | None, interval: str | None) -> str:
    """What a package watched again after unwatch keeps of its earlier options, for the
    line that reports it ("" when nothing)."""
    watch = store.watch(slug)
    if watch is None:
        return ""
    kept = [f"--notify {channel}" for channel in watch.notify if notify is None]
    if interval is None and watch.interval is not None:
        kept.append(f"--interval {watch.interval}")
    return f"; it keeps its earlier {' '.join(kept)}" if kept else ""


@asynccontextmanager
async def _sources(runtime: Runtime) -> AsyncIterator[Any]:
    """Every enabled source on one aiohttp session for the whole command."""
    from monitor.sources import open_sources

    async with open_sources(
        runtime.config(), runtime.store(), sleep=runtime.sleep, rng=runtime.rng, clock=runtime.clock
    ) as sources:
        yield sources


@cli.command()
@click.argument("slugs", nargs=-1, required=True)
@click.pass_context
def unwatch(ctx: click.Context, slugs: tuple[str, ...]) -> None:
    """Stop watching packages (their history is kept)."""
    store = _runtime(ctx).store()
    with store.transaction():
        missing = [s for s in slugs if store.watch(s) is None]
        if missing:
            raise NotWatchedError(f"not watched: {', '.join(missing)}")
        for slug in slugs:
            store.unwatch(slug)
    for slug in slugs:
        echo(f"unwatched {slug}")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def list_(ctx: click.Context, as_json: bool) -> None:
    """List watched packages with version, stars, forks, the last check and mutes."""
    from monitor.report import list_mutes, muted_rules
    from monitor.sources import SOURCES

    runtime = _runtime(ctx)
    store = runtime.store()
    rows = store.query(
        "SELECT w.*, p.data FROM watches w LEFT JOIN parts p ON p.watch_id = w.id"
        " AND p.source = 'djangopackages' WHERE w.active = 1 ORDER BY w.slug"
    )
    mutes = muted_rules(list_mutes(store, now=runtime.clock()))
    keys = store.part_keys([row["id"] for row in rows])
    firing = store.firing_counts()
    items = []
    for row in rows:
        data = json.loads(row["data"]) if row["data"] else {}
        muted = mutes.get(row["slug"], [])
        sources = keys.get(row["id"], {})
        items.append(
            {
                "slug": row["slug"],
                "title": data.get("title", row["title"]),
                "pypi_version": data.get("pypi_version"),
                "repo_watchers": data.get("repo_watchers"),
                "repo_forks": data.get("repo_forks"),
                "last_checked": row["last_checked_at"],
                "last_status": row["last_status"],
                "notify": json.loads(row["notify"] or "[]"),
                "interval": row["interval"],
                "pinned": row["pinned"],
                "sources": {name: sources.get(name) for name in SOURCES},
                "origin": row["origin"],
                "firing": firing.get(row["id"], {"critical": 0, "warning": 0, "info": 0}),
                "muted": muted is None,  # every rule of the package
                "muted_rules": muted or [],  # or only these
            }
        )
    if as_json:
        _print_json(items)
        return
    if not items:
        echo(f"no packages watched in {runtime.where()}; add one with: monitor watch SLUG")
        return
    latest = store.latest_parts(["pypi"])  # PyPI's version where djangopackages has none
    header = ("package", "version", "pinned", "stars", "forks", "last checked", "status", "muted")
    table = [header] + [
        (
            i["slug"],
            str(
                i["pypi_version"]
                or latest.get(i["slug"], {}).get("pypi", {}).get("pypi.version")
                or "-"
            ),
            i["pinned"] or "-",
            _num(i["repo_watchers"]),
            _num(i["repo_forks"]),
            i["last_checked"] or "-",
            i["last_status"] or "-",
            "all" if i["muted"] else ",".join(i["muted_rules"]) or "-",
        )
        for i in items
    ]
    _print_table(table)


def _print_table(table: Sequence[Sequence[str]]) -> None:
    from monitor.report import table_lines

    for line in table_lines(table):
        echo(line)


def _num(value: Any) -> str:
    return "-" if value is None else str(value)


# -- check --------------------------------------------------------------------------------


@cli.command()
@click.argument("slugs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def check(ctx: click.Context, slugs: tuple[str, ...], as_json: bool) -> None:
    """Poll watched packages now (all, or the named ones), evaluate rules, notify.

    Exit 0 when every poll succeeded and every notification was delivered, 1 otherwise,
    2 when a named package is not watched.
    """
    runtime = _runtime(ctx)
    runtime.rules()
    store = runtime.store()
    watched = store.watched_slugs()
    if slugs:
        missing = [s for s in slugs if s not in set(watched)]
        if missing:
            raise UsageError(f"not watched: {', '.join(missing)} (see: monitor list)")
        watched = list(dict.fromkeys(slugs))
    console = sys.stderr if as_json else sys.stdout
    report, undelivered = asyncio.run(_check(runtime, store, watched, console, as_json))
    if as_json:
        data = report.to_json_dict()
        data["undelivered"] = undelivered
        _print_json(data)
    else:
        _print_summary(report, undelivered)
    if report.failed or undelivered:
        sys.exit(1)


async def _check(
    runtime: Runtime, store: Store, slugs: list[str], console: Any, quiet: bool
) -> tuple[CycleReport, list[str]]:
    from monitor.cycle import poll_and_record

    with _progress("checking", len(slugs), shown=not quiet) as step:
        async with _sources(runtime) as sources:
            report = await poll_and_record(
                store,
                runtime.config(),
                runtime.rules(),
                sources,
                slugs,
                now=runtime.clock(),
                rng=runtime.rng,
                on_result=(lambda _r: step()) if step else None,
            )
    undelivered = await _deliver(runtime, store, report, console=console)
    return report, undelivered


@contextmanager
def _progress(label: str, length: int, *, shown: bool) -> Iterator[Callable[[], None] | None]:
    """A progress bar on stderr when it is a terminal (and ``shown``, and there is more than
    one step): yields the function to call after each step, else None."""
    if not (shown and sys.stderr.isatty() and length > 1):
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield lambda: bar.update(1)


async def _deliver(
    runtime: Runtime, store: Store, report: CycleReport, console: Any = None
) -> list[str]:
    return await _deliver_groups(runtime, store, report.groups, console=console)


async def _deliver_groups(
    runtime: Runtime, store: Store, groups: list[str], console: Any = None
) -> list[str]:
    """Send these groups (and anything else due); return the ones left undelivered."""
    from monitor.outbox import Outbox

    outbox = Outbox(
        store,
        runtime.config(),
        clock=runtime.clock,
        sleep=runtime.sleep,
        rng=runtime.rng,
        console=console,
    )
    try:
        drained = await outbox.drain(budget=CHECK_DELIVERY_BUDGET, only=groups)
    finally:
        await outbox.aclose()
    stuck = [g for g, _ in drained.failed] + list(drained.pending)
    if not stuck:
        return []
    marks = ",".join("?" * len(stuck))
    rows = store.query(
        f"SELECT channel, status, last_error FROM outbox WHERE id IN ({marks})", stuck
    )
    lines = []
    for row in rows:
        # Errors start with the channel's name, as this line does: name it once.
        error = (row["last_error"] or "not sent yet").removeprefix(f"{row['channel']}: ")
        lines.append(f"{row['channel']}: {row['status']}: {error}")
    return lines


def _print_summary(report: CycleReport, undelivered: list[str]) -> None:
    changed = len(report.changed)
    echo(
        f"checked {report.checked}: {report.unchanged} unchanged, {changed} changed, "
        f"{len(report.failed)} failed, {len(report.not_found)} not found, "
        f"{len(report.transitions)} alert transitions"
    )
    for slug, changes in report.changed:
        echo(f"  {slug}:")
        for change in changes:
            echo(f"    {describe_change(change.to_json_dict())}")
    for transition in report.transitions:
        echo(f"  {_transition_line(transition)}")
    for slug, error, _source in report.failed:
        echo(f"  FAILED {error if error.startswith(slug) else f'{slug}: {error}'}")
    for line in _deferrals(report):
        echo(f"  {line}")
    for slug in report.not_found:
        echo(f"  {slug}: NOT FOUND on djangopackages")
    for slug, rule, error in report.rule_errors:
        echo(f"  RULE ERROR {rule} on {slug}: {error} (its state is kept)")
    for line in undelivered:
        echo(f"  undelivered: {line}")


def _deferrals(report: CycleReport) -> list[str]:
    """``github: rate limited until 10:42 UTC, 37 deferred``, a line per source."""
    by_source: dict[str, list[Any]] = {}
    for _slug, source, until in report.deferred:
        by_source.setdefault(source, []).append(until)
    return [
        f"{source}: rate limited until {max(untils).astimezone(UTC):%H:%M} UTC,"
        f" {len(untils)} deferred"
        for source, untils in by_source.items()
    ]


def _transition_line(transition: Any) -> str:
    """``firing [info] pypi-version-changed django-otp: django-otp 1.7.0 → 1.8.0 (muted)``:
    lower case, unlike a console delivery's ``FIRING``, since this line sends nothing."""
    notice = transition.notice
    status = "repeat" if transition.repeat else str(transition.status)
    summary = one_line(notice.summary) or one_line(notice.description)
    muted = " (muted)" if transition.muted else ""
    return f"{status} [{notice.severity}] {transition.rule} {transition.package}: {summary}{muted}"


# -- history ------------------------------------------------------------------------------


@cli.command()
@click.argument("slug")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def history(ctx: click.Context, slug: str, as_json: bool) -> None:
    """Show how a watched package changed over time, oldest first."""
    from monitor.history import replay

    store = _runtime(ctx).store()
    watch_row = store.watch(slug)
    if watch_row is None:
        raise NotWatchedError(f"{slug!r} is not watched (see: monitor list)")
    entries = [entry.to_json_dict() for entry in replay(store.history(watch_row.id))]
    if as_json:
        _print_json(entries)
        return
    for entry in entries:
        if "snapshot" in entry:
            snap = entry["snapshot"]
            echo(
                f"{entry['time']}  baseline: {snap.get('pypi_version') or 'no release'},"
                f" {_num(snap.get('repo_watchers'))} stars,"
                f" {_num(snap.get('repo_forks'))} forks"
            )
            continue
        echo(f"{entry['time']}")
        for change in entry["changes"]:
            echo(f"  {describe_change(change)}")


# -- alerts, mute, unmute -----------------------------------------------------------------


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Show every alert ever raised.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def alerts(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """Show alerts: firing now, changes of the last 7 days, and undelivered ones."""
    from monitor.report import list_alerts

    runtime = _runtime(ctx)
    items = list_alerts(
        runtime.store(), now=runtime.clock(), show_all=show_all, rules=runtime.rule_ids()
    )
    if as_json:
        _print_json(items)
        return
    if not items:
        echo("no alerts" + ("" if show_all else " (use --all for history)"))
        return
    for item in items:
        muted = " (muted)" if item["muted"] else ""
        echo(
            f"{item['status'].upper():8} [{item['severity']}] {item['rule']} "
            f"{item['package']} since {item['started_at']}{muted}"
        )
        echo(f"         {item['summary']}")
        for d in item["deliveries"]:
            if d["status"] != "delivered":
                reason = (d["last_error"] or "").removeprefix(f"{d['channel']}: ")
                error = f": {reason}" if reason else ""
                echo(
                    f"         {d['channel']}: {d['status']} after {d['attempts']} "
                    f"attempt(s){error}"
                )


@cli.command()
@click.argument("slug")
@click.option("--rule", metavar="RULE", help="Mute only this rule (default: every rule).")
@click.option(
    "--for",
    "for_",
    callback=_duration,
    metavar="DURATION",
    help="Mute for this long, e.g. 2w (default: until unmuted).",
)
@click.option("--comment", metavar="TEXT", help="Why it is muted.")
@click.pass_context
def mute(
    ctx: click.Context, slug: str, rule: str | None, for_: str | None, comment: str | None
) -> None:
    """Stop delivering a package's alerts (they are still recorded)."""
    from monitor.store import iso

    runtime = _runtime(ctx)
    store = runtime.store()
    if store.watch(slug) is None:
        raise NotWatchedError(f"{slug!r} is not watched (see: monitor list)")
    if rule is not None:
        known = {r.id for r in runtime.rules()} | {"package-not-found", "poll-failing"}
        if rule not in known:
            from monitor.errors import did_you_mean

            raise UsageError(f"--rule: no rule named {rule!r}{did_you_mean(rule, sorted(known))}")
    now = runtime.clock()
    until = now + parse_duration(for_) if for_ else None
    with store.transaction():
        store.insert(
            "mutes",
            {
                "slug": slug,
                "rule": rule,
                "until": iso(until) if until else None,
                "comment": comment,
                "created_at": iso(now),
            },
        )
    what = f"{slug} ({rule})" if rule else slug
    echo(f"muted {what}" + (f" until {iso(until)}" if until else ""))


@cli.command()
@click.argument("slug")
@click.option("--rule", metavar="RULE", help="Unmute only this rule's mute.")
@click.pass_context
def unmute(ctx: click.Context, slug: str, rule: str | None) -> None:
    """Deliver a package's alerts again (nothing is sent retroactively)."""
    store = _runtime(ctx).store()
    with store.transaction() as conn:
        if rule is None:
            cursor = conn.execute("DELETE FROM mutes WHERE slug = ?", (slug,))
        else:
            cursor = conn.execute("DELETE FROM mutes WHERE slug = ? AND rule = ?", (slug, rule))
    if cursor.rowcount == 0:
        raise NotWatchedError(f"{slug} has no mute" + (f" for {rule}" if rule else ""))
    echo(f"unmuted {slug}" + (f" ({rule})" if rule else ""))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def mutes(ctx: click.Context, as_json: bool) -> None:
    """List active mutes: package, rule (or all), until (or forever), comment, when set."""
    from monitor.report import list_mutes

    runtime = _runtime(ctx)
    items = list_mutes(runtime.store(), now=runtime.clock())
    if as_json:
        _print_json(items)
        return
    if not items:
        echo("no active mutes")
        return
    header = ("package", "rule", "until", "set", "comment")
    _print_table(
        [header]
        + [
            (
                m["package"],
                m["rule"] or "all",
                m["until"] or "forever",
                m["created_at"],
                one_line(m["comment"]) or "-",
            )
            for m in items
        ]
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What the daemon and sources are doing: the last cycle, what is due next, source
    health, pending and failed deliveries, active mutes, the database and config in use."""
    from monitor.report import status_report

    runtime = _runtime(ctx)
    config = runtime.config()
    report = status_report(
        runtime.store(),
        now=runtime.clock(),
        database=str(config.database.resolve()),
        exists=config.database.exists(),
        config=str(config.path.resolve()) if config.path else None,
        url=config.djangopackages.url,
        others={name: table.url for name, table in config.sources.items() if table.enabled},
    )
    if as_json:
        _print_json(report)
        return
    for line in _status_lines(report, runtime.config_description()):
        echo(line)


def _status_lines(report: dict[str, Any], config: str) -> list[str]:
    exists = "" if report["database_exists"] else " (not created yet)"
    lines = [f"database:   {report['database']}{exists}", f"config:     {config}"]
    lines.append(f"watches:    {report['watches']}")
    daemon = report["daemon"]
    lines.append(
        f"daemon:     last tick {daemon['at']} (pid {daemon['pid']})"
        if daemon
        else "daemon:     never ticked on this database (start it with: monitor run)"
    )
    cycle = report["last_cycle"]
    if cycle:
        counts = ", ".join(f"{n} {s}" for s, n in cycle.items() if s != "at")
        lines.append(f"last cycle: {cycle['at']}: {counts}")
    else:
        lines.append("last cycle: none yet")
    upcoming = ", ".join(f"{d['slug']} {d['at'] or 'now'}" for d in report["next_due"])
    lines.append(f"next due:   {report['due_now']} due now; {upcoming or 'nothing watched'}")
    lines.append("sources:")
    for name, source in report["sources"].items():
        error = source["last_error"]
        health = f"{source['failing']} failing" if source["failing"] else "ok"
        when = f" {error['at']}" if error and error["at"] else ""
        last = f"; last error{when}: {one_line(error['error'])}" if error else ""
        limited = source.get("rate_limited_until")
        limit = f"; rate limited until {limited}" if limited else ""
        lines.append(f"  {name} ({source['url']}): {health}{last}{limit}")
    deliveries = report["deliveries"]
    lines.append(f"deliveries: {deliveries['pending']} pending, {deliveries['failed']} failed")
    mutes = report["mutes"]
    lines.append(f"mutes:      {len(mutes)} active" + (" (see: monitor mutes)" if mutes else ""))
    return lines


# -- readiness ----------------------------------------------------------------------------


@cli.command()
@click.argument("django_version", metavar="DJANGO_VERSION")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def readiness(ctx: click.Context, django_version: str, as_json: bool) -> None:
    """Can we move to Django X.Y? For each watched package, whether its latest release
    declares support for DJANGO_VERSION (its "Framework :: Django :: X.Y" classifiers on PyPI),
    with its latest and pinned versions.

    \b
      no       it declares other Django versions only (the newest is shown)
      unknown  it declares none, or PyPI was not read (pypi source off)
      yes      it declares DJANGO_VERSION

    Listed no, then unknown, then yes. Exit 0: a "no" is an answer, not a failure.

    \b
    Example:
      monitor readiness 6.0
      monitor readiness 5.2 --json
    """
    from monitor import readiness as ready

    runtime = _runtime(ctx)
    version = ready.django_version(django_version)  # exit 2 before anything is read
    runtime.read_only = True  # reading creates no database
    pypi = runtime.config().sources["pypi"].enabled
    answers = ready.readiness(runtime.store(), version, pypi=pypi)
    if answers and not pypi:
        echo(
            "note: the pypi source is off ([sources.pypi] enabled = false), so no package's"
            " declared Django versions are known",
            err=True,
        )
    if as_json:
        _print_json([a.to_json_dict() for a in answers])
        return
    if not answers:
        echo(f"no packages watched in {runtime.where()}; add one with: monitor watch SLUG")
        return
    header = ("package", "verdict", "declared", "latest", "pinned")
    _print_table(
        [header]
        + [
            (a.name, str(a.verdict), _declared(a), a.latest or "-", a.pinned or "-")
            for a in answers
        ]
    )
    counts = {str(verdict): sum(a.verdict == verdict for a in answers) for verdict in ready.Verdict}
    echo(
        f"Django {version}: {counts['yes']} yes, {counts['no']} no,"
        f" {counts['unknown']} unknown of {len(answers)} watched"
    )


def _declared(answer: Any) -> str:
    """``newest declared: 5.2`` for a no, ``4.2–6.0`` (the range declared) for a yes."""
    if not answer.declared:
        return "-"
    if answer.verdict == "no":
        return f"newest declared: {answer.newest_declared}"
    first, last = answer.declared[0], answer.declared[-1]
    return first if first == last else f"{first}–{last}"


# -- rules, notify-test -------------------------------------------------------------------


@cli.group()
def rules() -> None:
    """Rule files: validate them, list the loaded rules."""


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
@click.pass_context
def rules_check(ctx: click.Context, paths: tuple[str, ...]) -> None:
    """Validate rule files (default: [rules] paths), loaded after the shipped rules as
    `check` loads them, so a file replacing or disabling a shipped rule is fine.

    Prints path:line: message for every problem; exit 2 when there is any.
    """
    from pathlib import Path

    from monitor.rules import check_rule_files, shipped_rules_dir

    targets = [Path(p) for p in paths] if paths else list(_runtime(ctx).config().rule_paths)
    problems = check_rule_files(targets)
    for problem in problems:
        echo(problem, err=True)
    if problems:
        sys.exit(2)
    echo(f"ok: {', '.join(str(t) for t in [shipped_rules_dir(), *targets])}")


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.pass_context
def rules_list(ctx: click.Context, as_json: bool) -> None:
    """List the loaded rules (shipped, then [rules] paths), disabled ones included."""
    from monitor.rules import list_rules

    infos = list_rules(list(_runtime(ctx).config().rule_paths))
    if as_json:
        _print_json([info.to_json_dict() for info in infos])
        return
    header = ("rule", "kind", "severity", "enabled", "origin")
    table = [header] + [
        (
            info.id,
            str(info.kind) if info.kind else "-",
            str(info.severity),
            "yes" if info.enabled else "no",
            info.origin,
        )
        for info in infos
    ]
    _print_table(table)


@cli.command("notify-test")
@click.argument("channel")
@click.pass_context
def notify_test(ctx: click.Context, channel: str) -> None:
    """Send a test message to CHANNEL and report success or the exact error."""
    from monitor.outbox import cannot_render, make_notifier

    runtime = _runtime(ctx)
    config = runtime.config()
    config.check_channels([channel], "notify-test")

    async def send() -> None:
        notifier = make_notifier(config, channel)  # an unset ${VAR} it needs: exit 2
        try:
            group_id = uuid.uuid4().hex
            try:
                payload = notifier.render_test(group_id=group_id, created_at=runtime.clock())
            except Exception as exc:
                raise cannot_render(channel, notifier, exc) from None
            await notifier.send(payload, group_id=group_id)
        finally:
            await notifier.aclose()

    asyncio.run(send())
    echo(f"{channel}: test message delivered")


# -- run, digest ---------------------------------------------------------------------------


@cli.command()
@click.option(
    "--send",
    is_flag=True,
    help="Queue it for every notifier with digest = true "
    "(the console when none has) and deliver it now.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Also write the HTML version to FILE; '-' prints only the HTML, on stdout.",
)
@click.option(
    "--since",
    default="7d",
    show_default=True,
    callback=_duration,
    metavar="DURATION",
    help="The period the digest covers.",
)
@click.pass_context
def digest(ctx: click.Context, send: bool, html_path: str | None, since: str) -> None:
    """Print the digest: versions, releases, stars, forks, commits, alerts.

    Times are shown in [schedule] timezone; the digest is named after its period
    ("weekly digest" for 7d). A FILE that cannot be written is an error (exit 1) before
    anything is printed or sent.
    """
    from monitor.digest import (
        configured_digest,
        queue_digest_groups,
        render_html,
        render_text,
        write_file,
    )

    runtime = _runtime(ctx)
    config = runtime.config()
    store = runtime.store()
    now = runtime.clock()
    period = parse_duration(since)
    rules_in_force = runtime.rule_ids()
    built = configured_digest(store, config, now=now, since=period, rules=rules_in_force)
    if html_path == "-":
        echo(render_html(built), nl=False)  # stdout holds the HTML document alone
    elif html_path:
        try:
            write_file(html_path, render_html(built))
        except OSError as exc:
            raise MonitorError(f"cannot write {html_path}: {exc.strerror or exc}") from None
        echo(f"wrote {html_path}", err=True)
    if html_path != "-":
        echo(render_text(built))
    if send:
        groups = queue_digest_groups(store, config, now=now, since=period, rules=rules_in_force)
        undelivered = asyncio.run(_deliver_groups(runtime, store, groups, console=sys.stderr))
        for line in undelivered:
            echo(f"undelivered: {line}", err=True)
        if undelivered:
            sys.exit(1)
        echo(f"digest sent to {len(groups)} channel(s)", err=True)


@cli.command()
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines for people, or one JSON object per line.",
)
@click.pass_context
def run(ctx: click.Context, log_format: str) -> None:
    """The daemon: poll packages when due, deliver notifications, send the digest on its cron.

    Stops within 5 s on SIGINT/SIGTERM with exit 0.
    """
    import logging

    from monitor.scheduler import setup_logging

    setup_logging(log_format == "json")  # first: every line on stderr is a log line
    log = logging.getLogger("monitor")
    try:
        try:
            _run_daemon(_runtime(ctx))
        except Exception as exc:  # e.g. a full disk at start: the user's error, not a crash
            error = _store_error(ctx, exc)
            if error is None:
                raise
            raise error from None
    except MonitorError as exc:
        from monitor.errors import RulesError

        for problem in exc.problems if isinstance(exc, RulesError) else [str(exc)]:
            log.error("error", extra={"fields": {"error": problem}})
        ctx.exit(exc.exit_code)
    except Exception as exc:  # a bug: logged like any other line, not a loose traceback
        log.critical("crashed", exc_info=exc)
        ctx.exit(1)


def _run_daemon(runtime: Runtime) -> None:
    from monitor.scheduler import Daemon, install_signal_handlers

    config = runtime.config()
    store = runtime.store()
    rules_loaded = runtime.rules()
    rules_in_force = runtime.rule_ids()

    def queue_digest(now: datetime) -> None:
        from monitor.digest import queue_scheduled_digest

        queue_scheduled_digest(store, config, now=now, rules=rules_in_force)

    async def daemon() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        await Daemon(
            config,
            store,
            rules_loaded,
            source=lambda: _sources(runtime),
            clock=runtime.clock,
            queue_digest=queue_digest,
            console=sys.stdout,
        ).run(stop)

    asyncio.run(daemon())


def main() -> None:
    cli(obj=Runtime(), prog_name="monitor")
