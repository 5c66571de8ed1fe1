"""Issue 5: `monitor run` unattended — real subprocess, real scheduler, fake upstream."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.config import load_config
from monitor.cron import cron_trigger
from monitor.rules import load_rules
from monitor.scheduler import Daemon
from monitor.sources import Sources
from monitor.sources.djangopackages import DjangoPackagesSource
from monitor.store import Store
from tests.conftest import Monitor
from tests.daemon import wait_for
from tests.fakes import FakeWebhookReceiver
from tests.fakeupstream import unused_url

ROOT = Path(__file__).parent.parent


def _checks(monitor: Monitor, slug: str) -> int:
    store = monitor.store()
    try:
        return store.conn.execute(
            "SELECT polls FROM watches WHERE slug = ?",
            (slug,),
        ).fetchone()[0]
    finally:
        store.close()


def test_run_polls_alerts_picks_up_new_watches_and_stops_on_sigterm(monitor: Monitor) -> None:
    with FakeWebhookReceiver() as hook:
        monitor.configure(
            f"""
            [defaults]
            notify = ["hook"]

            [notifiers.hook]
            type = "webhook"
            url = "{hook.hook_url}"
            """,
            interval="1s",
        )
        monitor.clock.now = datetime.now(UTC)
        assert monitor.run("watch", "django-otp").exit_code == 0

        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(monitor.config_path), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            wait_for(lambda: _checks(monitor, "django-otp") >= 2)
            monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
            wait_for(
                lambda: any(
                    a["rule"] == "pypi-version-changed"
                    for e in hook.events
                    for a in e["data"]["alerts"]
                )
            )

            monitor.clock.now = datetime.now(UTC)
            assert monitor.run("watch", "django-mfa").exit_code == 0  # while run runs
            wait_for(lambda: _checks(monitor, "django-mfa") >= 2)

            started = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            _, stderr = daemon.communicate(timeout=10)
            assert time.monotonic() - started < 5
            assert daemon.returncode == 0, stderr
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.communicate()
    assert "cycle" in stderr and "polled=" in stderr  # a log line per cycle
    assert "stopped" in stderr
    alerts = [
        e for e in hook.events for a in e["data"]["alerts"] if a["rule"] == "pypi-version-changed"
    ]
    assert len(alerts) == 1  # once, however many cycles ran


async def test_outage_fires_poll_failing_and_run_recovers(tmp_path: Path) -> None:
    from tests.fakeupstream import FakeUpstream

    async with FakeUpstream() as upstream:
        (tmp_path / "monitor.toml").write_text(
            f'database = "monitor.db"\n[sources.djangopackages]\nurl = "{upstream.url}"\n'
            'timeout = "500ms"\n[schedule]\ninterval = "200ms"\njitter = "0s"\n'
        )
        config = load_config(tmp_path / "monitor.toml", {})
        store = Store(config.database)
        now = datetime.now(UTC)
        for slug in ("django-otp", "django-mfa"):
            store.upsert_watch(slug, package_id=None, title=slug, notify=[], interval=None, now=now)

        async def no_wait(_seconds: float) -> None:
            await asyncio.sleep(0)

        @asynccontextmanager
        async def source() -> Any:
            async with aiohttp.ClientSession() as session:
                yield Sources(
                    DjangoPackagesSource(upstream.url, session=session, timeout=0.5, sleep=no_wait),
                    [],
                )

        def firing(rule: str) -> bool:
            return bool(
                store.query("SELECT 1 FROM alerts WHERE rule = ? AND status = 'firing'", (rule,))
            )

        async def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, "timed out waiting"
                await asyncio.sleep(0.05)

        stop = asyncio.Event()
        daemon = Daemon(config, store, load_rules(), source=source, clock=lambda: datetime.now(UTC))
        task = asyncio.create_task(daemon.run(stop))
        await until(lambda: store.query("SELECT 1 FROM snapshots"))
        upstream.down = True
        await until(lambda: firing("poll-failing"))
        failed = store.query("SELECT COUNT(*) AS n FROM checks WHERE status = 'failed'")[0]["n"]
        assert failed >= 3 * 2  # both packages failed three times before it fired
        assert not task.done()  # run keeps going
        upstream.down = False
        await until(lambda: not firing("poll-failing"))
        resolved = store.query("SELECT COUNT(*) AS n FROM transitions WHERE status = 'resolved'")[
            0
        ]["n"]
        assert resolved == 2
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        store.close()


@pytest.mark.parametrize(
    ("cron", "timezone", "after", "expected_local"),
    [
        ("0 8 * * mon", "Europe/Amsterdam", "2026-11-22T12:00:00+00:00", "2026-11-23 08:00 Mon"),
        ("0 8 * * 1", "America/New_York", "2026-11-23T12:00:00+00:00", "2026-11-23 08:00 Mon"),
        ("30 9 * * 0", "Asia/Tokyo", "2026-11-22T12:00:00+00:00", "2026-11-29 09:30 Sun"),
        ("0 8 * * 7", "UTC", "2026-11-22T07:59:00+00:00", "2026-11-22 08:00 Sun"),
    ],
    ids=["names", "monday-is-1", "sunday-is-0", "sunday-is-7"],
)
def test_digest_cron_fires_at_the_configured_local_time(
    cron: str, timezone: str, after: str, expected_local: str
) -> None:
    trigger = cron_trigger(cron, timezone)
    fire = trigger.get_next_fire_time(None, datetime.fromisoformat(after))
    assert fire.strftime("%Y-%m-%d %H:%M %a") == expected_local
    assert str(fire.tzinfo) == timezone


def test_digest_send_goes_through_the_outbox(monitor: Monitor) -> None:
    with FakeWebhookReceiver() as hook:
        monitor.configure(f"""
            [notifiers.hook]
            type = "webhook"
            url = "{hook.hook_url}"
            digest = true
            """)
        monitor.run("watch", "django-otp", "django-mfa")
        hook.queue(503)
        result = monitor.run("digest", "--send", "--html", str(monitor.tmp_path / "d.html"))
        assert result.exit_code == 0, result.output
        assert "django-mfa" in result.stdout and "django-otp" in result.stdout
        assert "<html" in (monitor.tmp_path / "d.html").read_text().lower()
        assert [r.status for r in hook.requests] == [503, 200]  # retried like any delivery
        (event,) = hook.events
        assert event["type"] == "package.digest"
        assert event["data"]["packages"][0]["slug"] == "django-mfa"  # firing first


def test_two_daemons_queue_the_scheduled_digest_once(monitor: Monitor) -> None:
    from monitor.digest import queue_scheduled_digest

    monitor.configure(f"""
        [notifiers.mail]
        type = "webhook"
        url = "{unused_url()}/"  # nothing listens: deliveries stay pending
        digest = true
        """)
    monitor.run("watch", "django-otp")
    config = load_config(monitor.config_path)
    fired = datetime(2026, 11, 23, 8, 0, 0, 300_000, tzinfo=UTC)
    first, second = monitor.store(), monitor.store()  # two daemons' connections
    try:
        # Both fire within the same second of the same schedule: one digest between them.
        queued = queue_scheduled_digest(first, config, now=fired)
        again = queue_scheduled_digest(second, config, now=fired.replace(microsecond=900_000))
        assert len(queued) == 1 and again == []
        # A week later the schedule fires again: a new digest.
        assert len(queue_scheduled_digest(second, config, now=fired + timedelta(days=7))) == 1
    finally:
        first.close()
        second.close()
    assert monitor.count("outbox") == 2
    # `monitor digest --send` is a person asking: it always queues.
    result = monitor.run("digest", "--send")
    assert result.exit_code == 1  # refused: the new digest stays pending
    assert "mail: pending" in result.stderr
    assert monitor.count("outbox") == 3


def test_log_lines_for_people_and_machines() -> None:
    import json
    import logging

    from monitor.scheduler import LineFormatter

    record = logging.LogRecord("monitor", logging.INFO, __file__, 1, "cycle", None, None)
    record.fields = {"polled": 3, "failures": 1}
    assert LineFormatter(as_json=False).format(record).endswith(" info cycle polled=3 failures=1")
    line = json.loads(LineFormatter(as_json=True).format(record))
    assert line["event"] == "cycle" and line["polled"] == 3 and line["level"] == "info"


class _Lines:
    """A child's stderr, read line by line in a thread, so a test can wait for a line."""

    def __init__(self, stream: Any):
        import threading

        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def join(self) -> list[str]:
        self._thread.join(timeout=10)
        return self.lines


def test_json_log_names_failures_and_transitions_and_stays_json_on_sigterm(
    monitor: Monitor,
) -> None:
    import json

    from tests.fakeupstream import Fault

    monitor.configure(interval="1s")
    monitor.clock.now = datetime.now(UTC)
    assert monitor.run("watch", "django-otp", "django-mfa").exit_code == 0
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"  # fires an alert
    monitor.upstream.records["django-mfa"]["repo_watchers"] = "many"  # fails every poll

    args = ["--config", str(monitor.config_path), "run", "--log-format", "json"]
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    stderr = _Lines(daemon.stderr)
    try:
        wait_for(lambda: any('"cycle"' in line for line in stderr.lines))
        monitor.upstream.fail("/api/v4/packages/", [Fault.slow(30)] * 5)  # the next page hangs
        wait_for(lambda: monitor.upstream.in_flight > 0)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.wait()
    lines = stderr.join()
    assert daemon.stdout is not None and daemon.stderr is not None
    stdout = daemon.stdout.read()
    daemon.stdout.close()
    daemon.stderr.close()
    assert daemon.returncode == 0, lines
    events = [json.loads(line) for line in lines]  # every line is one JSON object
    failures = [e for e in events if e["level"] == "warning" and e.get("package") == "django-mfa"]
    assert failures and "repo_watchers" in failures[0]["error"], events
    transitions = [e for e in events if e["event"] == "transition"]
    assert {
        (t["rule"], t["package"], t["status"], t["severity"], t["muted"]) for t in transitions
    } >= {("pypi-version-changed", "django-otp", "firing", "info", False)}
    assert events[-1]["event"] == "stopped"
    assert "FIRING pypi-version-changed django-otp" in stdout  # the console channel: stdout
    assert monitor.json("status")["daemon"]["pid"] == daemon.pid  # `status` saw it tick


@pytest.fixture
def restore_logging() -> Any:
    import logging
    import threading
    import warnings

    root, own = logging.getLogger(), logging.getLogger("monitor")
    saved = (root.handlers[:], root.level, own.handlers[:], own.level, own.propagate)
    hooks = (sys.unraisablehook, threading.excepthook, warnings.showwarning)
    yield
    root.handlers[:], root.level, own.handlers[:], own.level, own.propagate = saved
    logging.captureWarnings(False)
    sys.unraisablehook, threading.excepthook, warnings.showwarning = hooks


def test_every_logger_and_warning_becomes_one_json_line(restore_logging: Any) -> None:
    import io
    import json
    import logging
    import warnings

    from monitor.scheduler import setup_logging

    stream = io.StringIO()
    setup_logging(as_json=True, stream=stream)
    logging.getLogger("monitor.outbox").info(
        "delivery", extra={"fields": {"channel": "hook", "outcome": "delivered"}}
    )
    logging.getLogger("apscheduler.scheduler").warning(
        'Execution of job "%s" skipped: maximum number of running instances reached (%d)',
        "poll",
        1,
    )
    logging.getLogger("apscheduler.executors.default").info("Running job")  # quieted
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("asyncio").exception("Task exception was never retrieved")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("something is deprecated", DeprecationWarning, stacklevel=1)

    lines = stream.getvalue().splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["event"] for e in events][:3] == [
        "delivery",
        "skipped",
        "Task exception was never retrieved",
    ]
    assert events[0]["channel"] == "hook" and "logger" not in events[0]
    assert events[1]["level"] == "info" and events[1]["logger"] == "apscheduler.scheduler"
    assert events[2]["error"] == "RuntimeError: boom\nsecond line"
    assert "Traceback" in events[2]["traceback"]
    assert events[3]["logger"] == "py.warnings" and "deprecated" in events[3]["event"]
    assert len(events) == 4


def test_run_reports_a_bad_rule_file_as_json_lines(monitor: Monitor) -> None:
    import json

    (monitor.tmp_path / "team.yaml").write_text("rules:\n  - id: x\n    when: stars >\n")
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    args = ["--config", str(monitor.config_path), "run", "--log-format", "json"]
    done = subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 2
    (event,) = [json.loads(line) for line in done.stderr.splitlines()]
    assert event["level"] == "error" and "team.yaml:3:" in event["error"]
