"""Issue 10, item 3: `monitor run` stops soon after SIGTERM whatever it is doing — polling an
upstream that never answers, rendering messages, delivering to a receiver that never answers
— with exit status 0, a "stopped" line, and a database the next `check` goes on from.

Real processes (SIGTERM needs one); each waits generously for what takes a few seconds (the
running job's grace, then its cancellation)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from monitor.config import load_config
from monitor.rules import load_rules
from monitor.scheduler import Daemon
from monitor.sources import Sources
from monitor.sources.djangopackages import DjangoPackagesSource
from monitor.store import Store
from tests.conftest import FIVE, POLLS_SQL, Monitor
from tests.fakes import FakeWebhookReceiver, Reply
from tests.fakeupstream import Fault

ROOT = Path(__file__).parent.parent
NEVER = 3600.0  # seconds: longer than any test waits

# Every message render takes as long as a template may run (SPEC §6 bounds it), so a cycle
# with many alerts spends minutes rendering; the marker file says rendering has begun.
SLOW_RENDERS = """\
import sys, time
from pathlib import Path
from monitor.rules import Rule

_render = Rule.render_message
_marker = Path(sys.argv[2])

def _slow(rule, context):
    _marker.touch()
    time.sleep(0.2)
    return _render(rule, context)

Rule.render_message = _slow
"""
RUN = """
import sys
from monitor.cli import main
sys.argv = ["monitor", "--config", sys.argv[1], "run"]
main()
"""


def _wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


@contextmanager
def _daemon(monitor: Monitor, prelude: str = "") -> Iterator[subprocess.Popen[str]]:
    """`monitor run` in its own process (after ``prelude``), killed if a test leaves it."""
    marker = monitor.tmp_path / "rendering"
    daemon = subprocess.Popen(
        [sys.executable, "-c", prelude + RUN, str(monitor.config_path), str(marker)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        yield daemon
    finally:
        if daemon.poll() is None:
            daemon.kill()
            print(daemon.communicate()[1], file=sys.stderr)  # its log, for the failure


def _sigterm(daemon: subprocess.Popen[str]) -> str:
    """Stop the daemon as a service manager would; its log."""
    daemon.send_signal(signal.SIGTERM)
    _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr
    assert "stopped" in stderr
    return stderr


def _counts(monitor: Monitor) -> dict[str, int]:
    tables = ("snapshots", "alerts", "transitions", "outbox")
    return {"polls": monitor.polls()} | {table: monitor.count(table) for table in tables}


def _watch_five_due(monitor: Monitor, extra: str = "") -> None:
    """FIVE watched a day ago, so the daemon's first tick polls them all."""
    monitor.configure(extra, timeout="60s")  # the daemon's polls wait as long as we like
    monitor.clock.now = datetime.now(UTC) - timedelta(days=1)
    assert monitor.run("watch", *FIVE).exit_code == 0
    monitor.clock.now = datetime.now(UTC)


def test_sigterm_mid_poll_abandons_the_cycle(monitor: Monitor) -> None:
    _watch_five_due(monitor)
    before = _counts(monitor)
    monitor.upstream.fail("/api/v4/packages/", [Fault.slow(NEVER)])
    with _daemon(monitor) as daemon:
        _wait_for(lambda: monitor.upstream.in_flight > 0)
        assert "abandoned" in _sigterm(daemon)
    assert _counts(monitor) == before  # nothing of the cycle is stored
    monitor.upstream.reset()
    report = monitor.json("check")
    assert report["checked"] == 5 and report["failed"] == []
    assert _counts(monitor) == {**before, "polls": before["polls"] + 5}


def test_sigterm_mid_render_abandons_the_cycle(monitor: Monitor) -> None:
    _watch_five_due(monitor)
    rules = "".join(
        f"  - id: many-{n}\n    when: repo_watchers >= 0\n    message: '{{{{ slug }}}} {n}'\n"
        for n in range(60)
    )
    (monitor.tmp_path / "team.yaml").write_text("rules:\n" + rules)
    monitor.configure('[rules]\npaths = ["team.yaml"]\n', timeout="60s")
    before = _counts(monitor)
    with _daemon(monitor, SLOW_RENDERS) as daemon:
        _wait_for((monitor.tmp_path / "rendering").exists)  # 300 renders: a minute
        assert "abandoned" in _sigterm(daemon)
    assert _counts(monitor) == before
    transitions = monitor.json("check")["transitions"]
    assert len(transitions) == 300  # each rule fires once per package, here
    assert {t["summary"] for t in transitions if t["rule"] == "many-7"} == {
        f"{slug} 7" for slug in FIVE
    }
    assert monitor.count("alerts") == before["alerts"] + 300


def test_sigterm_mid_delivery_leaves_the_delivery_to_be_sent_again(monitor: Monitor) -> None:
    with FakeWebhookReceiver() as hook:
        _watch_five_due(
            monitor,
            f"""
            [defaults]
            notify = ["hook"]

            [notifiers.hook]
            type = "webhook"
            url = "{hook.hook_url}"
            timeout = "60s"
            """,
        )
        hook.clear()
        hook.queue(Reply(200, delay=NEVER))
        monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
        with _daemon(monitor) as daemon:
            _wait_for(lambda: hook.requests)
            _sigterm(daemon)
        store = monitor.store()
        try:
            [group] = store.query("SELECT * FROM outbox WHERE status = 'pending'")
        finally:
            store.close()
        assert group["lease_until"] is not None  # kept until it expires: at-least-once

        monitor.clock.now = datetime.now(UTC) + timedelta(minutes=5)  # the lease is over
        report = monitor.json("check")
        assert report["transitions"] == [] and report["undelivered"] == []
        resent = [r.json() for r in hook.requests[1:]]
    assert [a["rule"] for event in resent for a in event["data"]["alerts"]] == [
        "pypi-version-changed"
    ]
    assert monitor.count("alerts") - monitor.count("alerts WHERE kind = 'condition'") == 1


async def test_a_cycle_that_ends_within_the_grace_is_recorded(tmp_path: Path) -> None:
    """Stopping lets a running cycle finish for a moment rather than cancel it at once."""
    from tests.fakeupstream import FakeUpstream

    async with FakeUpstream() as upstream:
        (tmp_path / "monitor.toml").write_text(
            f'database = "monitor.db"\n[sources.djangopackages]\nurl = "{upstream.url}"\n'
        )
        config = load_config(tmp_path / "monitor.toml", {})
        store = Store(config.database)
        now = datetime.now(UTC)
        store.upsert_watch(
            "django-otp", package_id=None, title=None, notify=[], interval=None, now=now
        )
        polling, release = asyncio.Event(), asyncio.Event()

        class HeldSource(DjangoPackagesSource):
            """Its poll waits until the test releases it."""

            async def poll(self, *args: Any, **kwargs: Any) -> Any:
                polling.set()
                await release.wait()
                return await super().poll(*args, **kwargs)

        @asynccontextmanager
        async def held_source() -> AsyncIterator[Any]:
            async with aiohttp.ClientSession() as session:
                yield Sources(HeldSource(upstream.url, session=session, timeout=5), [])

        daemon = Daemon(
            config,
            store,
            load_rules(),
            source=held_source,
            clock=lambda: datetime.now(UTC),
            stop_grace=NEVER,
        )
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop))
        await polling.wait()
        stop.set()
        await asyncio.sleep(0)
        release.set()  # the poll answers after the stop was asked for
        await asyncio.wait_for(running, timeout=30)
        assert daemon.cycles == 1
        assert store.conn.execute(POLLS_SQL).fetchone()[0] == 1
        store.close()
