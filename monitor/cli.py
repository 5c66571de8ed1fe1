"""The command line (SPEC §4). Library code raises; this module maps errors to exit codes.

Start-up stays light: only click and monitor's own small modules are imported here; aiohttp,
slack-sdk, jinja2 and sqlite-utils are imported inside the commands that use them.
"""

from __future__ import annotations

import sys
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from monitor import __version__
from monitor.durations import parse_duration
from monitor.errors import MonitorError, NotWatchedError, PackageNotFound, UsageError
from monitor.text import json_safe, one_line, printable

if TYPE_CHECKING:  # (pathlib and random are a seventh of ``monitor --help``: not imported)
    from pathlib import Path

    from monitor.app import App
    from monitor.config import Config
    from monitor.cycle import CycleReport
    from monitor.store import Store

T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Runtime:
    """What a command needs from the world; tests replace the clock and sleep.

    (A plain class, not a dataclass: ``dataclasses`` and the ``inspect`` it imports are a
    seventh of ``monitor --help``'s start-up.)"""

    def __init__(
        self,
        config_path: str | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[Any]] | None = None,  # None: asyncio.sleep
        rng: Callable[[], float] | None = None,  # None: random.random
        env: dict[str, str] | None = None,
        read_only: bool = False,  # a command that only reads: a missing database is not made
    ):
        self.config_path = config_path
        self.clock = clock
        self.sleep = sleep
        self._rng = rng
        self.env = env
        self.read_only = read_only
        self._config: Config | None = None
        self._rules: list[Any] | None = None

    @property
    def rng(self) -> Callable[[], float]:
        """The injected random source, else ``random.random`` (imported only now)."""
        if self._rng is None:
            import random

            self._rng = random.random
        return self._rng

    def pause(self) -> Callable[[float], Awaitable[Any]]:
        """The sleep to use: the injected one, else asyncio's (imported only now: start-up
        stays light, ``monitor --help`` imports no asyncio)."""
        if self.sleep is not None:
            return self.sleep
        import asyncio

        return asyncio.sleep

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

    def app(self, console: Any = None) -> App:
        """The application layer over this command's store (:mod:`monitor.app`)."""
        from monitor.app import App

        return App(
            self.config(),
            self.store(),
            rules=self.rules,
            clock=self.clock,
            sleep=self.pause(),
            rng=self.rng,
            console=console,
        )

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


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a command's async work to completion (asyncio is imported only by the commands
    that need it, so ``monitor --help`` stays light).

    The work's result is handed back through a holder, not as the value of the coroutine
    given to ``asyncio.run``: on its way out, Python 3.11's runner takes the repr of its main
    task, result included, and a ``check`` of 10,000 changed packages spent most of a second
    writing a repr nobody reads."""
    import asyncio

    result: list[T] = []

    async def main() -> None:
        result.append(await work)

    asyncio.run(main())
    return result[0]


def _runtime(ctx: click.Context) -> Runtime:
    return ctx.find_object(Runtime) or Runtime()


PRETTY = "Print the JSON document indented, for reading (--json prints it compact)."


def _print_json(data: Any, *, pretty: bool = False) -> None:
    """The data as one JSON document and a newline, exactly: compact, or indented by two
    when ``pretty``; the characters a terminal would act on are written as ``\\uXXXX``
    escapes (JSON escapes C0 controls itself)."""
    click.echo(_json_document(data, pretty=pretty))


def _stream_json(chunks: Iterable[list[Any]], *, pretty: bool = False, nl: bool = True) -> None:
    """The items of ``chunks`` as one JSON array and a newline (what :func:`_print_json`
    prints of their concatenation), written a chunk at a time: only one chunk is ever in
    memory. Nothing is written before the first chunk is at hand (an error before it
    leaves stdout empty). ``nl=False``: no newline after it."""
    opened = False
    for chunk in chunks:
        if not chunk:
            continue
        body = _json_document(chunk, pretty=pretty).strip()[1:-1].strip(b"\n")
        click.echo((b"," if opened else b"[") + (b"\n" if pretty else b"") + body, nl=False)
        opened = True
    click.echo((b"\n]" if pretty else b"]") if opened else b"[]", nl=nl)


def _stream_json_object(data: dict[str, Any], lists: dict[str, Iterable[list[Any]]]) -> None:
    """``data`` as one compact JSON object and a newline (what :func:`_print_json` prints),
    the arrays of ``lists`` (keys of ``data``, whose values there are not read) written a
    chunk at a time (:func:`_stream_json`)."""
    for i, (key, value) in enumerate(data.items()):
        click.echo((b"," if i else b"{") + _json_document(key, pretty=False) + b":", nl=False)
        if key in lists:
            _stream_json(lists[key], nl=False)
        else:
            click.echo(_json_document(value, pretty=False), nl=False)
    click.echo(b"}" if data else b"{}")


def _json_document(data: Any, *, pretty: bool) -> bytes:
    """``data`` as UTF-8 JSON, through orjson. A value JSON has no type for is written as its
    ``str()``, datetimes and dataclasses included (as ``json.dumps(default=str)`` did); what
    orjson refuses (an integer beyond 64 bits, a lone surrogate) goes through the standard
    library's encoder instead, the surrogate as its ``\\uXXXX`` escape."""
    import orjson

    option = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    option |= orjson.OPT_PASSTHROUGH_DATACLASS | (orjson.OPT_INDENT_2 if pretty else 0)
    try:
        document = orjson.dumps(data, default=str, option=option)
    except orjson.JSONEncodeError:
        import json

        separators = (",", ": ") if pretty else (",", ":")
        text = json.dumps(
            data,
            indent=2 if pretty else None,
            separators=separators,
            ensure_ascii=False,
            default=str,
        )
        return json_safe(text).encode("utf-8", "backslashreplace")
    if document.isascii() and b"\x7f" not in document:
        return document  # orjson escaped every C0 control: nothing else to escape
    return json_safe(document.decode()).encode()


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
@click.option("--pretty", is_flag=True, help=PRETTY)
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
    pretty: bool,
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
    runtime = _runtime(ctx)
    as_json = as_json or pretty
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
        from pathlib import Path

        _watch_file(runtime, Path(requirements), prune, as_json, given, interval, pretty=pretty)
        return
    app = runtime.app(console=sys.stdout)
    outcome = _run(app.watch(list(names), grid=grid, pin=pin, notify=given, interval=interval))
    for line in outcome.lines:
        echo(line)
    if outcome.transitions:
        echo(f"{outcome.transitions} alert(s) raised (see: monitor alerts)")


def _watch_file(
    runtime: Runtime,
    path: Path,
    prune: bool,
    as_json: bool,
    notify: list[str] | None,
    interval: str | None,
    *,
    pretty: bool = False,
) -> None:
    """``watch -r FILE``: see :mod:`monitor.watchfile`. Exit 1 when a name could not be
    resolved because a request failed, or an alert could not be delivered."""
    from monitor.deps import read_dependencies

    deps = read_dependencies(path)
    store = runtime.store()
    imported = _run(_import_file(runtime, store, deps, prune, notify, interval, as_json))
    if as_json:
        _print_json([row.to_json_dict() for row in imported.rows], pretty=pretty)
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
        async with runtime.app().sources() as sources:
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
    if imported.report is not None:
        app = runtime.app(console=sys.stderr if quiet else sys.stdout)
        imported.undelivered = await app.deliver(imported.report.groups)
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


@asynccontextmanager
async def _sources(runtime: Runtime) -> AsyncIterator[Any]:
    """Every enabled source on one aiohttp session for the whole command."""
    from monitor.sources import open_sources

    async with open_sources(
        runtime.config(),
        runtime.store(),
        sleep=runtime.pause(),
        rng=runtime.rng,
        clock=runtime.clock,
    ) as sources:
        yield sources


@cli.command()
@click.argument("slugs", nargs=-1, required=True)
@click.pass_context
def unwatch(ctx: click.Context, slugs: tuple[str, ...]) -> None:
    """Stop watching packages (their history is kept)."""
    for name in _runtime(ctx).app().unwatch(slugs):
        echo(f"unwatched {name}")


@cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--pretty", is_flag=True, help=PRETTY)
@click.pass_context
def list_(ctx: click.Context, as_json: bool, pretty: bool) -> None:
    """List watched packages with version, stars, forks, the last check and mutes."""
    runtime = _runtime(ctx)
    items = runtime.app().watches()
    if as_json or pretty:
        _print_json([item.to_json_dict() for item in items], pretty=pretty)
        return
    if not items:
        echo(f"no packages watched in {runtime.where()}; add one with: monitor watch SLUG")
        return
    header = ("package", "version", "pinned", "stars", "forks", "last checked", "status", "muted")
    table = [header] + [
        (
            i.slug,
            i.latest or "-",
            i.pinned or "-",
            _num(i.repo_watchers),
            _num(i.repo_forks),
            i.last_checked or "-",
            i.last_status or "-",
            "all" if i.muted else ",".join(i.muted_rules) or "-",
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
@click.option("--pretty", is_flag=True, help=PRETTY)
@click.pass_context
def check(ctx: click.Context, slugs: tuple[str, ...], as_json: bool, pretty: bool) -> None:
    """Poll watched packages now (all, or the named ones), evaluate rules, notify.

    Exit 0 when every poll succeeded and every notification was delivered, 1 otherwise,
    2 when a named package is not watched.
    """
    runtime = _runtime(ctx)
    as_json = as_json or pretty
    runtime.rules()
    shown = not as_json and sys.stderr.isatty()  # a progress bar: how many it counts to
    count = (len(set(slugs)) or runtime.store().watch_count()) if shown else 0
    app = runtime.app(console=sys.stderr if as_json else sys.stdout)

    async def check_now() -> Any:
        with _progress("checking", count, shown=shown) as step:
            return await app.check(slugs, on_result=(lambda _r: step()) if step else None)

    outcome = _run(check_now())
    report, undelivered = outcome.report, outcome.undelivered
    if as_json and not pretty:
        # a changed cycle of 10,000 packages is 17 MB of JSON: its changes a chunk at a time
        data = report.to_json_dict(changed=False)
        data["undelivered"] = undelivered
        _stream_json_object(data, {"changed": report.changed_json()})
    elif as_json:
        data = report.to_json_dict()
        data["undelivered"] = undelivered
        _print_json(data, pretty=pretty)
    else:
        _print_summary(report, undelivered)
    if report.failed or undelivered:
        sys.exit(1)


@contextmanager
def _progress(label: str, length: int, *, shown: bool) -> Iterator[Callable[[], None] | None]:
    """A progress bar on stderr when it is a terminal (and ``shown``, and there is more than
    one step): yields the function to call after each step, else None."""
    if not (shown and sys.stderr.isatty() and length > 1):
        yield None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield lambda: bar.update(1)


def _print_summary(report: CycleReport, undelivered: list[str]) -> None:
    from monitor.diff import describe_change

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
@click.option("--pretty", is_flag=True, help=PRETTY)
@click.pass_context
def history(ctx: click.Context, slug: str, as_json: bool, pretty: bool) -> None:
    """Show how a watched package changed over time, oldest first."""
    from monitor.diff import describe_change

    entries = [entry.to_json_dict() for entry in _runtime(ctx).app().history(slug)]
    if as_json or pretty:
        _print_json(entries, pretty=pretty)
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


ALERTS_SHOWN = 200  # alerts shows at most this many unless --limit says otherwise


@cli.command()
@click.option("--all", "show_all", is_flag=True, help="Show every alert ever raised.")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=ALERTS_SHOWN,
    show_default=True,
    metavar="N",
    help="Show at most N alerts, newest first; 0 shows every one.",
)
@click.option(
    "--before",
    type=click.IntRange(min=1),
    metavar="ID",
    help="Show those after the alert with this id (the note on stderr gives it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--pretty", is_flag=True, help=PRETTY)
@click.pass_context
def alerts(
    ctx: click.Context,
    show_all: bool,
    limit: int,
    before: int | None,
    as_json: bool,
    pretty: bool,
) -> None:
    """Show alerts: firing now, changes of the last 7 days, and undelivered ones; newest
    first, at most --limit of them (a note on stderr says how many more, and how to see
    them)."""
    app = _runtime(ctx).app()
    if limit == 0:  # every one, a chunk at a time
        chunks = (
            [a.to_json_dict() for a in chunk]
            for chunk in app.alert_chunks(show_all=show_all, before=before)
        )
        if as_json or pretty:
            _stream_json(chunks, pretty=pretty)
        elif not sum(_print_alerts(chunk) for chunk in chunks):
            _no_alerts(show_all)
        return
    page = app.alert_page(show_all=show_all, limit=limit, before=before)
    items = [a.to_json_dict() for a in page.alerts]
    if as_json or pretty:
        _print_json(items, pretty=pretty)
    elif not _print_alerts(items):
        _no_alerts(show_all)
    if page.more:
        again = " ".join(
            ["monitor alerts", *(["--all"] if show_all else []), f"--before {page.next_before}"]
            + ([f"--limit {limit}"] if limit != ALERTS_SHOWN else [])
            + (["--pretty" if pretty else "--json"] if as_json or pretty else [])
        )
        echo(
            f"note: {len(items)} shown, {page.more} more (older): {again} shows the next"
            f" {min(limit, page.more)}; --limit 0 shows every one",
            err=True,
        )


def _no_alerts(show_all: bool) -> None:
    echo("no alerts" + ("" if show_all else " (use --all for history)"))


def _print_alerts(items: list[dict[str, Any]]) -> int:
    """Alerts as lines for people; how many."""
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
    return len(items)


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
    from monitor.errors import UnknownRule

    try:
        muted = (
            _runtime(ctx)
            .app()
            .mute(slug, rule=rule, duration=for_, comment=comment, set_by=_user())
        )
    except UnknownRule as exc:
        raise UsageError(f"--rule: {exc}") from None
    what = f"{slug} ({rule})" if rule else slug
    echo(f"muted {what}" + (f" until {muted.until}" if muted.until else ""))


def _user() -> str | None:
    """Who runs this command, for ``monitor mutes``."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container): say nothing
        return None


@cli.command()
@click.argument("slug")
@click.option("--rule", metavar="RULE", help="Unmute only this rule's mute.")
@click.pass_context
def unmute(ctx: click.Context, slug: str, rule: str | None) -> None:
    """Deliver a package's alerts again (nothing is sent retroactively)."""
    _runtime(ctx).app().unmute(slug, rule)
    echo(f"unmuted {slug}" + (f" ({rule})" if rule else ""))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--pretty", is_flag=True, help=PRETTY)
@click.pass_context
def mutes(ctx: click.Context, as_json: bool, pretty: bool) -> None:
    """List active mutes: package, rule (or all), until (or forever), comment, when set."""
    items = _runtime(ctx).app().mutes()
    if as_json or pretty:
        _print_json([m.to_json_dict() for m in items], pretty=pretty)
        return
    if not items:
        echo("no active mutes")
        return
    header = ("package", "rule", "until", "set", "by", "comment")
    _print_table(
        [header]
        + [
            (
                m.package,
                m.rule or "all",
                m.until or "forever",
                m.created_at,
                m.set_by or "-",
                one_line(m.comment) or "-",
            )
            for m in items
        ]
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.option("--pretty", is_flag=True, help=PRETTY)
@click.pass_context
def status(ctx: click.Context, as_json: bool, pretty: bool) -> None:
    """What the daemon and sources are doing: the last cycle, what is due next, source
    health, pending and failed deliveries, active mutes, the database and config in use."""
    runtime = _runtime(ctx)
    report = runtime.app().status()
    if as_json or pretty:
        _print_json(report, pretty=pretty)
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
@click.option("--pretty", is_flag=True, help=PRETTY)
@click.pass_context
def readiness(ctx: click.Context, django_version: str, as_json: bool, pretty: bool) -> None:
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
    answers = runtime.app().readiness(version)
    if answers and not pypi:
        echo(
            "note: the pypi source is off ([sources.pypi] enabled = false), so no package's"
            " declared Django versions are known",
            err=True,
        )
    if as_json or pretty:
        _print_json([a.to_json_dict() for a in answers], pretty=pretty)
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
@click.option("--pretty", is_flag=True, help=PRETTY)
@click.pass_context
def rules_list(ctx: click.Context, as_json: bool, pretty: bool) -> None:
    """List the loaded rules (shipped, then [rules] paths), disabled ones included."""
    from monitor.rules import list_rules

    infos = list_rules(list(_runtime(ctx).config().rule_paths))
    if as_json or pretty:
        _print_json([info.to_json_dict() for info in infos], pretty=pretty)
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
        from uuid import uuid4

        notifier = make_notifier(config, channel)  # an unset ${VAR} it needs: exit 2
        try:
            group_id = uuid4().hex
            try:
                payload = notifier.render_test(group_id=group_id, created_at=runtime.clock())
            except Exception as exc:
                raise cannot_render(channel, notifier, exc) from None
            await notifier.send(payload, group_id=group_id)
        finally:
            await notifier.aclose()

    _run(send())
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
        configured_text,
        html_chunks,
        queue_digest_groups,
        text_chunks,
        write_file,
    )

    runtime = _runtime(ctx)
    config = runtime.config()
    store = runtime.store()
    now = runtime.clock()
    period = parse_duration(since)
    rules_in_force = runtime.rule_ids()
    if html_path:
        built = configured_digest(store, config, now=now, since=period, rules=rules_in_force)
        if html_path == "-":
            for chunk in html_chunks(built):  # stdout holds the HTML document alone
                echo(chunk, nl=False)
        else:
            try:
                write_file(html_path, html_chunks(built))
            except OSError as exc:
                raise MonitorError(f"cannot write {html_path}: {exc.strerror or exc}") from None
            echo(f"wrote {html_path}", err=True)
    if html_path != "-":
        # The text alone is rendered as its packages are read, with no digest held whole,
        # and written in pieces: megabytes for 10,000 packages (issue 14).
        if html_path:
            text = text_chunks(built)
        else:
            text = configured_text(store, config, now=now, since=period, rules=rules_in_force)
        for chunk in text:
            echo(chunk, nl=False)
        echo()
    if send:
        groups = queue_digest_groups(store, config, now=now, since=period, rules=rules_in_force)
        undelivered = _run(runtime.app(console=sys.stderr).deliver(groups))
        for line in undelivered:
            echo(f"undelivered: {line}", err=True)
        if undelivered:
            sys.exit(1)
        echo(f"digest sent to {len(groups)} channel(s)", err=True)


@cli.command()
@click.option(
    "--http",
    "listen",
    metavar="ADDRESS",
    help="Also serve the status pages, JSON API, /metrics, /healthz and the Slack and GitHub"
    " endpoints on ADDRESS, e.g. 127.0.0.1:8080 (default: [http] listen; none).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines for people, or one JSON object per line.",
)
@click.pass_context
def run(ctx: click.Context, listen: str | None, log_format: str) -> None:
    """The daemon: poll packages when due, deliver notifications, send the digest on its cron.

    With --http (or [http] listen) it also serves the status pages, the JSON API, /metrics,
    /healthz and GitHub's webhooks; with [slack_app] it answers /monitor commands in Slack.
    An address other than loopback needs [http] token. Stops within 5 s on SIGINT/SIGTERM
    with exit 0.
    """
    import logging

    from monitor.scheduler import setup_logging

    setup_logging(log_format == "json")  # first: every line on stderr is a log line
    log = logging.getLogger("monitor")
    try:
        try:
            _run_daemon(_runtime(ctx), listen)
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


def _run_daemon(runtime: Runtime, listen: str | None) -> None:
    import asyncio

    from monitor.scheduler import Daemon, install_signal_handlers

    config = runtime.config()
    http = config.serving(listen)  # a bad address or a missing token: exit 2 before anything
    if config.slack_app is not None:
        config.slack_app.check_environment()
    store = runtime.store()
    rules_loaded = runtime.rules()
    rules_in_force = runtime.rule_ids()

    def queue_digest(now: datetime) -> None:
        from monitor.digest import queue_scheduled_digest

        queue_scheduled_digest(store, config, now=now, rules=rules_in_force)

    async def daemon() -> None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
        scheduler = Daemon(
            config,
            store,
            rules_loaded,
            source=lambda: _sources(runtime),
            clock=runtime.clock,
            queue_digest=queue_digest,
            console=sys.stdout,
        )
        if http is None and config.slack_app is None:
            await scheduler.run(stop)
            return
        from monitor.server import Server, ServerContext

        server = Server(ServerContext(config, rules_loaded, scheduler, runtime.clock, http))
        await asyncio.to_thread(server.start)

        async def stop_server() -> None:
            await stop.wait()
            await asyncio.to_thread(server.stop)  # beside the scheduler's own stop

        stopping = asyncio.ensure_future(stop_server())
        try:
            await scheduler.run(stop)
        finally:
            stop.set()
            await stopping

    asyncio.run(daemon())


# -- db ----------------------------------------------------------------------------------


@cli.group()
def db() -> None:
    """The database file: compact old history, give the space back."""


@db.command("vacuum")
@click.pass_context
def db_vacuum(ctx: click.Context) -> None:
    """Compact the history older than [history] keep now (as `monitor run` does once a day),
    then rewrite the database file without its free space.

    Failed polls older than keep lose their rows (they stay counted per package and day),
    delivered messages lose their bodies, replaced vulnerability details go. Field history,
    alerts and transitions are kept whole, and so is all an alert firing now needs. What an
    older monitor stored in a longer form is rewritten in today's (a slid commit list as its
    shift, an alert's notice deflated), reading back the same. A database made before
    incremental auto-vacuum is switched to it, so that `monitor run` gives space back by
    itself from then on. Prints what was compacted and the file's size
    before and after. The rewrite needs a moment without other writers: if the database
    stays locked, exit 1.
    """
    from monitor.retention import compact, repack

    runtime = _runtime(ctx)
    keep = runtime.config().history.keep
    store = runtime.store()
    try:
        store.checkpoint()
        before = _file_size(store.path)
        compacted = compact(store, keep, runtime.clock())
        repacked = repack(store)
        switched = store.auto_vacuum() != 2
        store.vacuum()
        store.checkpoint()
        after = _file_size(store.path)
    finally:
        store.close()
    echo(compacted.describe())
    echo(repacked.describe())
    mode = " (now in incremental auto-vacuum)" if switched else ""
    echo(f"{store.path}: {_megabytes(before)} -> {_megabytes(after)}{mode}")


def _file_size(path: Path) -> int:
    """The database's bytes on disk, its write-ahead log included."""
    wal = path.with_name(path.name + "-wal")
    return sum(p.stat().st_size for p in (path, wal) if p.exists())


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB" if size >= 100_000 else f"{size / 1000:.1f} kB"


def main() -> None:
    cli(obj=Runtime(), prog_name="monitor")
