"""``monitor run``: the daemon (SPEC §4 ``run``, §8).

APScheduler's AsyncIOScheduler drives these jobs (and a heartbeat), none of which overlaps itself
(``max_instances=1``, coalescing):

- the poll tick (every 30 s, or the shortest interval if shorter) polls the watches whose
  due time (kept in the database) has come; they form one cycle;
- the outbox job sends pending deliveries as they come due;
- the digest job queues the digest on the configured cron and time zone, covering the time
  since the cron's previous fire time;
- the compaction job, at start and then once a day, compacts the history older than
  ``[history] keep`` (:mod:`monitor.retention`) and gives the freed pages back.

Watches added, changed or removed by other commands are seen at the next tick: the database,
not this process, holds the schedule. SIGINT/SIGTERM stop it within seconds, whatever it is
doing: no job starts any more, the running ones get a short grace to finish, then they are
cancelled. A cancelled cycle stores nothing (it is recorded in one transaction, which never
waits on the network or yields to the event loop); a cancelled delivery keeps its lease until
it expires, then is sent again (at-least-once).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TextIO

from monitor.config import Config
from monitor.cycle import CycleReport, poll_and_record
from monitor.durations import parse_duration
from monitor.notify.base import one_line
from monitor.outbox import Outbox
from monitor.report import DAEMON_TICK
from monitor.store import Store, iso

if TYPE_CHECKING:
    from monitor.metrics import Metrics
    from monitor.retention import Compacted

log = logging.getLogger("monitor")

MAX_TICK = 30.0
OUTBOX_EVERY = 5.0
COMPACT_EVERY = 24 * 3600.0
# On SIGINT/SIGTERM: how long running jobs may go on, then how long cancelled ones may take
# to unwind; together well within the 5 s a stop may take.
STOP_GRACE = 2.0
CANCEL_GRACE = 1.0


def tick_seconds(config: Config, store: Store) -> float:
    """30 s, or the shortest poll interval when that is shorter."""
    intervals = [config.schedule.interval.total_seconds()]
    intervals += [parse_duration(text).total_seconds() for text in store.intervals()]
    return max(0.2, min(MAX_TICK, *intervals))


class Daemon:
    def __init__(
        self,
        config: Config,
        store: Store,
        rules: list[Any],
        *,
        source: Callable[[], AbstractAsyncContextManager[Any]],
        clock: Callable[[], datetime],
        queue_digest: Callable[[datetime], None] | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        console: TextIO | None = None,
        stop_grace: float = STOP_GRACE,
    ):
        self.config = config
        self.store = store
        self.rules = rules
        self.open_source = source
        self.clock = clock
        self.queue_digest = queue_digest
        self.metrics = daemon_metrics(config)
        # The console channel prints alerts on stdout: stderr is the log.
        self.outbox = Outbox(
            store,
            config,
            clock=clock,
            sleep=sleep,
            console=console,
            on_outcome=self.metrics.count_delivery,
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.stop_grace = stop_grace
        self.cycles = 0
        self.tick = tick_seconds(config, store)
        self._scheduler: Any = None
        self._beat: float | None = None  # time.monotonic() of the scheduler's last heartbeat
        self._send_again = False  # send_soon() came while the outbox job ran
        # One cycle at a time: a cycle's recorder assumes nothing else changes its watches
        # on this connection while it polls (poll_now's cycles, e.g. a release's burst of
        # GitHub events, would otherwise overlap each other and the due cycle, and alert twice).
        self._cycle = asyncio.Lock()

    # -- what the server beside it asks (from its own thread) -----------------------------

    def poll_now(self, slugs: list[str] | None) -> None:
        """Poll these watched packages (None: every one) in a cycle of their own, now."""
        scheduler = self._scheduler
        if scheduler is None or self._stopping:
            return
        job = self._tracked(lambda: self.poll_slugs(slugs), "poll-now")
        scheduler.add_job(job, "date", misfire_grace_time=None)

    def send_soon(self) -> None:
        """Run the outbox job now rather than at its next tick (and once more when it is
        running now: it may have looked before the new deliveries were committed). Before
        the scheduler starts there is nothing to do: the outbox job's first run is at once."""
        scheduler = self._scheduler
        self._send_again = True
        if scheduler is not None and not self._stopping:
            scheduler.modify_job("outbox", next_run_time=datetime.now(scheduler.timezone))

    def health(self) -> tuple[bool, str]:
        """(healthy, why not): the scheduler runs and ticked within two tick lengths."""
        from apscheduler.schedulers.base import STATE_RUNNING

        scheduler = self._scheduler
        if scheduler is None or self._stopping or scheduler.state != STATE_RUNNING:
            return False, "the scheduler is not running"
        beat = self._beat
        if beat is None or time.monotonic() - beat > 2 * self.tick:
            return False, "the scheduler has not ticked within two tick lengths"
        return True, ""

    async def heartbeat(self) -> None:
        self._beat = time.monotonic()

    # -- jobs -----------------------------------------------------------------------------

    async def poll_due(self) -> None:
        """One cycle: every watch whose due time has come."""
        with self.store.transaction():  # for `monitor status`: is the daemon ticking?
            tick = {"at": iso(self.clock()), "pid": os.getpid()}
            self.store.set_meta(DAEMON_TICK, json.dumps(tick))
        slugs = self.store.due_slugs(self.clock())
        if slugs:
            await self.poll_slugs(slugs)

    async def poll_slugs(self, slugs: list[str] | None) -> None:
        """One cycle of these watched packages (None: every one), then send what it queued."""
        started = time.monotonic()
        if slugs is None:
            slugs = self.store.watched_slugs()
        if not slugs:
            return
        from monitor.metrics import CycleTally

        tally = CycleTally()  # each source's answers, for the metrics
        async with self._cycle, self.open_source() as source:
            report = await poll_and_record(
                self.store,
                self.config,
                self.rules,
                tally.observing(source),
                slugs,
                now=self.clock(),
            )
        self.cycles += 1
        seconds = time.monotonic() - started
        self.metrics.count_cycle(tally, report, seconds=seconds, ended=time.time())
        log_outcomes(report)
        log.info(
            "cycle",
            extra={
                "fields": {
                    "polled": report.checked,
                    "changes": sum(len(c) for _, c in report.changed),
                    "changed_packages": len(report.changed),
                    "transitions": len(report.transitions),
                    "failures": len(report.failed),
                    "not_found": len(report.not_found),
                    "duration": round(seconds, 3),
                }
            },
        )
        await self.send_pending()

    async def send_pending(self) -> None:
        self._send_again = False
        drained = await self.outbox.drain(budget=0)
        if self._send_again:  # asked for while it drained
            self._send_again = False
            drained = await self.outbox.drain(budget=0)
        if drained.delivered or drained.failed:
            log.info(
                "outbox",
                extra={
                    "fields": {
                        "delivered": len(drained.delivered),
                        "failed": len(drained.failed),
                        "pending": len(drained.pending),
                    }
                },
            )

    async def digest(self) -> None:
        if self.queue_digest is not None:
            self.queue_digest(self.clock())
            log.info("digest", extra={"fields": {"queued": True}})
            await self.send_pending()

    async def compact(self) -> None:
        """Compact the history older than ``[history] keep``, then give the freed pages back,
        in a thread on a connection of its own: the loop goes on polling and sending, and
        each batch is a short transaction of its own. It stops between batches on SIGTERM."""
        keep = self.config.history.keep
        if keep is None:
            return
        compacted, freed = await asyncio.to_thread(self._compact, keep, self.clock())
        log.info("compacted", extra={"fields": {**compacted.fields(), "freed_pages": freed}})

    def _compact(self, keep: timedelta, now: datetime) -> tuple[Compacted, int]:
        from monitor.retention import compact, give_back

        store = Store(self.store.path)
        try:
            compacted = compact(store, keep, now, stopping=lambda: self._stopping)
            return compacted, give_back(store, stopping=lambda: self._stopping)
        finally:
            store.close()

    def _tracked(self, job: Callable[[], Awaitable[None]], name: str) -> Callable[[], Any]:
        async def run() -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)
            try:
                await job()
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                # Abandoned on SIGINT/SIGTERM after the grace: a cycle is cancelled only
                # outside its one transaction, so nothing half-done is stored. Ending quietly
                # keeps a traceback out of the log.
                log.info("abandoned", extra={"fields": {"job": name}})
            except Exception as exc:  # a failing job is logged, the daemon keeps going
                log.error(
                    "job failed",
                    exc_info=exc,
                    extra={"fields": {"job": name, "error": f"{type(exc).__name__}: {exc}"}},
                )
            finally:
                self._tasks.discard(task)

        return run

    async def run(self, stop: asyncio.Event) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        from monitor.cron import cron_trigger

        tick = self.tick = tick_seconds(self.config, self.store)
        scheduler = AsyncIOScheduler(timezone=self.config.schedule.timezone)
        options = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
        now = datetime.now(scheduler.timezone)
        # Each runs at once too: the first poll, what a restart left pending or what came
        # meanwhile, the first heartbeat, a compaction.
        every = (
            ("poll", self._tracked(self.poll_due, "poll"), tick),
            ("outbox", self._tracked(self.send_pending, "outbox"), min(OUTBOX_EVERY, tick)),
            ("heartbeat", self.heartbeat, tick),
            ("compact", self._tracked(self.compact, "compact"), COMPACT_EVERY),
        )
        for ident, job, seconds in every:
            scheduler.add_job(
                job, "interval", seconds=seconds, next_run_time=now, id=ident, **options
            )
        scheduler.add_job(
            self._tracked(self.digest, "digest"),
            cron_trigger(self.config.schedule.digest, self.config.schedule.timezone),
            id="digest",
            **options,
        )
        scheduler.start()
        self._scheduler = scheduler
        log.info("started", extra={"fields": {"tick": tick, "database": str(self.store.path)}})
        try:
            await stop.wait()
        finally:
            self._stopping = True
            scheduler.pause()  # no job starts during the grace
            await self._finish()
            # Only now: shutting the scheduler down cancels its running jobs at once.
            scheduler.shutdown(wait=False)
            await self.outbox.aclose()
            log.info("stopped", extra={"fields": {"cycles": self.cycles}})

    async def _finish(self) -> None:
        """Let in-flight jobs end for a moment, then abandon them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.stop_grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=CANCEL_GRACE)


def daemon_metrics(config: Config) -> Metrics:
    """The daemon's :class:`~monitor.metrics.Metrics`, with a series for each source and
    channel in the config (prometheus-client is imported here, not at ``monitor --help``)."""
    from monitor.metrics import PRIMARY, Metrics

    sources = [PRIMARY, *(name for name, table in config.sources.items() if table.enabled)]
    return Metrics(sources=sources, channels=list(config.notifiers))


def log_outcomes(report: CycleReport) -> None:
    """A warning per failed poll, and a line per alert transition, of one cycle."""
    for slug, error, source in report.failed:
        failure = {"package": slug, "source": source, "error": error}
        log.warning("poll failed", extra={"fields": failure})
    for slug, source, until in report.deferred:
        deferred = {"package": slug, "source": source, "until": until.isoformat()}
        log.info("poll deferred (rate limited)", extra={"fields": deferred})
    for slug in report.not_found:
        missing = {"package": slug, "source": "djangopackages", "error": "not found (404)"}
        log.warning("package not found", extra={"fields": missing})
    for transition in report.transitions:
        fields: dict[str, Any] = {
            "rule": transition.rule,
            "package": transition.package,
            "status": str(transition.status),
            "kind": str(transition.kind),
            "repeat": transition.repeat,
            "severity": str(transition.notice.severity),
            "muted": transition.muted,
            "summary": transition.notice.summary,
        }
        log.info("transition", extra={"fields": fields})


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


class LineFormatter(logging.Formatter):
    """``time level message key=value ...`` for people, or one JSON object per line.

    Any logger's records read the same: a library's name is given as ``logger``, and an
    exception becomes ``error`` (and, in JSON, a ``traceback`` string), never loose lines.
    """

    def __init__(self, as_json: bool):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}))
        if record.name != "monitor" and not record.name.startswith("monitor."):
            fields = {"logger": record.name, **fields}
        trace = None
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            fields.setdefault("error", f"{type(exc).__name__}: {exc}")
            trace = self.formatException(record.exc_info)
        moment = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="seconds")
        if self.as_json:
            if trace:
                fields["traceback"] = trace
            line = {"time": moment, "level": record.levelname.lower(), "event": record.getMessage()}
            return json.dumps({**line, **fields}, default=str)
        pairs = " ".join(f"{k}={one_line(str(v))}" for k, v in fields.items())
        text = f"{moment} {record.levelname.lower()} {one_line(record.getMessage())} {pairs}"
        return text.rstrip() + (f"\n{trace}" if trace else "")


class _SkippedTick(logging.Filter):
    """APScheduler's "skipped: maximum number of running instances reached" warning is a
    tick that came while the last cycle still ran: normal with many packages, so an info line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances" in str(record.msg):
            job = record.args[0] if isinstance(record.args, tuple) and record.args else None
            record.msg, record.args = "skipped", ()
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.fields = {"job": getattr(job, "id", str(job)), "reason": "still running"}
        return True


def setup_logging(as_json: bool, stream: TextIO | None = None) -> None:
    """Route every log record of the process through one :class:`LineFormatter` on stderr:
    monitor's own from info up, libraries' (APScheduler, asyncio, aiohttp…) from warning up,
    Python warnings, and exceptions nobody caught in a thread or a finaliser. With JSON, each
    line on stderr is then one JSON object."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LineFormatter(as_json))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.handlers.clear()
    log.setLevel(logging.INFO)
    log.propagate = True
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _SkippedTick) for f in scheduler_log.filters):
        scheduler_log.addFilter(_SkippedTick())
    logging.captureWarnings(False)  # then again: installed anew even if someone replaced it
    logging.captureWarnings(True)
    sys.unraisablehook = _log_unraisable
    threading.excepthook = _log_thread_exception


def _log_unraisable(args: Any) -> None:
    error = args.exc_value or args.exc_type
    log.error(
        "unraisable exception",
        exc_info=(args.exc_type, error, args.exc_traceback) if args.exc_value else None,
        extra={"fields": {"where": repr(args.object), "error": repr(error)}},
    )


def _log_thread_exception(args: Any) -> None:
    if args.exc_type is SystemExit:
        return
    log.error(
        "thread failed",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra={"fields": {"thread": getattr(args.thread, "name", None)}},
    )
