"""``/metrics`` and ``/healthz`` (SPEC §10 "Metrics and health", issue 13).

``/metrics`` is scraped from a real ``monitor run --http`` and read with prometheus-client's
own parser; ``/healthz`` is asked of a daemon and server made in this process, so the test can
stall the scheduler's event loop, stop it and take its database away.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import HttpConfig, load_config
from monitor.scheduler import Daemon
from monitor.server import Server, ServerContext
from monitor.sources import open_sources
from monitor.store import Store
from tests.conftest import Monitor, webhook_toml
from tests.daemon import RunningMonitor
from tests.fakes import FakeWebhookReceiver
from tests.sourceworld import World

TOKEN = "metrics-token"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(daemon: RunningMonitor) -> tuple[bytes, Samples]:
    """One scrape: the body, and every sample by name and labels (after checking that each
    family is monitor's and the text parses)."""
    status, headers, body = daemon.request("GET", "/metrics", token=TOKEN)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        assert family.name.startswith("monitor_"), family.name
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return body, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def database(monitor: Monitor, sql: str) -> list[Any]:
    store = monitor.store()
    try:
        return [tuple(row) for row in store.conn.execute(sql)]
    finally:
        store.close()


def test_metrics_parse_and_move_with_the_cycles(monitor: Monitor) -> None:
    with FakeWebhookReceiver() as hook:
        monitor.configure(
            webhook_toml(hook.hook_url) + f'\n[http]\ntoken = "{TOKEN}"\n',
            interval="1s",
            sources=("github",),
        )
        monitor.clock.now = datetime.now(UTC)
        assert monitor.run("watch", "django-otp", "django-mfa").exit_code == 0
        with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
            assert daemon.request("GET", "/metrics")[0] == 401  # behind the token, like pages

            # after a cycle of the daemon's own
            daemon.wait_for(lambda: daemon.events("cycle"))
            body, first = scrape(daemon)
            assert (
                value(first, "monitor_polls_total", source="djangopackages", outcome="ok")
                + (
                    value(
                        first, "monitor_polls_total", source="djangopackages", outcome="unchanged"
                    )
                )
                >= 2
            )
            assert value(first, "monitor_last_cycle_end_timestamp_seconds") > time.time() - 60
            assert value(first, "monitor_watches") == 2
            assert (
                value(first, "monitor_deliveries_total", channel="hook", outcome="delivered") == 0
            )
            assert (
                value(first, "monitor_rate_limited_until_timestamp_seconds", source="github") == 0
            )
            print(f"\nscrape: {len(body)} bytes, {len(first)} samples")

            # a release and an archived repository: polls change, alerts fire and are delivered
            monitor.upstream.records["django-otp"]["pypi_version"] = "9.0.0"
            world = monitor.upstream.world  # type: ignore[attr-defined]
            world.github.archive(World.repo(monitor.upstream.records["django-mfa"]))
            daemon.wait_for(lambda: len(hook.events) >= 1 and daemon.events("delivery"))
            cycles = len(daemon.events("cycle"))
            daemon.wait_for(lambda: len(daemon.events("cycle")) > cycles)  # one cycle more
            _, second = scrape(daemon)

        def moved(name: str, **labels: str) -> float:
            return value(second, name, **labels) - value(first, name, **labels)

        assert moved("monitor_polls_total", source="djangopackages", outcome="changed") >= 1
        assert moved("monitor_polls_total", source="github", outcome="changed") >= 1
        polls = sum(v for (n, _), v in second.items() if n == "monitor_polls_total")
        assert polls > sum(v for (n, _), v in first.items() if n == "monitor_polls_total")
        assert moved("monitor_poll_duration_seconds_count", source="github") >= 1
        assert moved("monitor_cycle_duration_seconds_count") >= 1
        assert moved("monitor_deliveries_total", channel="hook", outcome="delivered") >= 1
        assert value(second, "monitor_last_cycle_end_timestamp_seconds") > value(
            first, "monitor_last_cycle_end_timestamp_seconds"
        )

        # the gauges say what the database says
        firing = dict(
            database(
                monitor,
                "SELECT severity, COUNT(*) FROM alerts"
                " WHERE status = 'firing' AND kind = 'condition' GROUP BY severity",
            )
        )
        assert firing, "repo-archived fires"
        for severity in ("critical", "warning", "info"):
            assert value(second, "monitor_alerts_firing", severity=severity) == firing.get(
                severity, 0
            )
        [(pending,)] = database(monitor, "SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
        assert value(second, "monitor_outbox_pending") == pending
        assert value(second, "monitor_watches") == 2


# -- /healthz ------------------------------------------------------------------------------


class DaemonThread:
    """A :class:`Daemon` running on an event loop of its own thread, as ``monitor run`` runs
    it, with the server beside it."""

    def __init__(self, monitor: Monitor):
        monitor.configure(interval="200ms")  # a tick of 0.2 s: unhealthy after 0.4 s
        self.config = load_config(monitor.config_path, {})
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.daemon: Daemon | None = None
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.server: Server | None = None

    def _main(self) -> None:
        self.loop.run_until_complete(self._run())

    async def _run(self) -> None:
        config = self.config
        store = Store(config.database)

        def clock() -> datetime:
            return datetime.now(UTC)

        def sources() -> Any:
            return open_sources(config, store, sleep=asyncio.sleep, rng=random.random, clock=clock)

        self.daemon = Daemon(config, store, [], source=sources, clock=clock)
        self.server = Server(
            ServerContext(config, [], self.daemon, clock, HttpConfig(listen="127.0.0.1:0"))
        )
        await asyncio.to_thread(self.server.start)
        try:
            await self.daemon.run(self.stop)
        finally:
            store.close()

    def healthz(self) -> int:
        assert self.server is not None and self.server.url is not None
        try:
            with urllib.request.urlopen(self.server.url + "/healthz", timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return error.code

    def stall(self, seconds: float) -> None:
        """Block the scheduler's event loop, as a stuck job would."""
        self.loop.call_soon_threadsafe(time.sleep, seconds)

    def stop_scheduler(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(10)
        assert not self.thread.is_alive()


# The server keeps its context under a plain string key (aiohttp would have a web.AppKey).


@pytest.fixture
def running(monitor: Monitor) -> Iterator[DaemonThread]:
    daemon = DaemonThread(monitor)
    daemon.thread.start()
    try:
        RunningMonitor.wait_for(
            lambda: (
                (daemon.server is not None and daemon.server.url) or not daemon.thread.is_alive()
            )
        )
        assert daemon.thread.is_alive(), "the daemon or its server did not start"
        yield daemon
    finally:
        if daemon.thread.is_alive():
            daemon.stop_scheduler()
        if daemon.server is not None:
            daemon.server.stop()


def test_healthz_is_503_while_the_scheduler_is_stuck_or_stopped(running: DaemonThread) -> None:
    assert RunningMonitor.wait_for(lambda: running.healthz() == 200, timeout=10)

    running.stall(1.2)  # no tick for 1.2 s: more than two tick lengths
    time.sleep(0.7)
    assert running.healthz() == 503
    assert RunningMonitor.wait_for(lambda: running.healthz() == 200, timeout=10)  # it recovers

    running.stop_scheduler()  # the server still answers; the scheduler is gone
    assert running.server is not None and running.server.url is not None
    assert running.healthz() == 503


def test_healthz_is_503_when_the_database_does_not_answer(running: DaemonThread) -> None:
    assert RunningMonitor.wait_for(lambda: running.healthz() == 200, timeout=10)
    path = running.config.database
    kept = path.with_name("kept.db")
    path.rename(kept)
    path.mkdir()  # the database is now a folder: nothing can open it
    try:
        assert running.healthz() == 503
    finally:
        path.rmdir()
        kept.rename(path)
    assert RunningMonitor.wait_for(lambda: running.healthz() == 200, timeout=10)


def test_metrics_show_every_family_before_anything_happens(running: DaemonThread) -> None:
    """Before any cycle or delivery the counters are there at 0, for each source."""
    assert running.server is not None and running.server.url is not None
    with urllib.request.urlopen(running.server.url + "/metrics", timeout=5) as response:
        text = response.read().decode()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "monitor_polls",
        "monitor_poll_duration_seconds",
        "monitor_cycle_duration_seconds",
        "monitor_deliveries",
        "monitor_last_cycle_end_timestamp_seconds",
        "monitor_outbox_pending",
        "monitor_alerts_firing",
        "monitor_watches",
        "monitor_rate_limited_until_timestamp_seconds",
    } <= names
    assert 'monitor_polls_total{outcome="deferred",source="djangopackages"} 0.0' in text
