"""A changed cycle is recorded a batch at a time (``cycle.BATCH`` packages per transaction),
yet sends one message per channel; killed between two batches it loses nothing and sends
nothing twice (issue 14, SPEC §1).

The packages here are clones of the fixtures; every one of them releases, so each poll that
is recorded fires exactly one release alert. The webhook receiver is where "lost" and
"twice" are counted: each package's release must reach it exactly once.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor import cycle
from monitor.outbox import OPEN_HOLD
from monitor.sources.djangopackages import PACED_PAGES, PAGE_SIZE, DjangoPackagesSource
from tests.conftest import POLLS_SQL, Monitor, webhook_toml
from tests.fakes import FakeWebhookReceiver
from tests.fakeupstream import clone_records

ROOT = Path(__file__).parent.parent
PACKAGES = 3 * cycle.BATCH + 100  # four batches
# A release fires one of these (a major one supersedes the plain change).
RELEASE_RULES = ("pypi-version-changed", "major-version-bump")


@contextmanager
def _released_world(monitor: Monitor) -> Iterator[tuple[FakeWebhookReceiver, list[str]]]:
    """PACKAGES clones watched (their baselines recorded), then every one released."""
    records = clone_records(PACKAGES, first_id=1000)
    monitor.upstream.records.update(records)
    with FakeWebhookReceiver() as hook:
        monitor.configure(webhook_toml(hook.hook_url))
        slugs = sorted(records)
        assert monitor.run("watch", *slugs).exit_code == 0
        for record in records.values():
            record["pypi_version"] = "99.0.0"
        hook.clear()
        yield hook, slugs


def _released(monitor: Monitor, hook: FakeWebhookReceiver) -> Counter[str]:
    """How many times each package's release was delivered, as the database recorded it
    (a webhook body lists as many alerts as fit in 256 KiB and counts the rest as
    ``truncated``); checked against what reached the receiver."""
    store = monitor.store()
    try:
        rows = store.query(
            "SELECT w.slug, o.status FROM transitions t JOIN alerts a ON a.id = t.alert_id"
            " JOIN watches w ON w.id = a.watch_id JOIN deliveries d ON d.transition_id = t.id"
            " JOIN outbox o ON o.id = d.group_id"
            f" WHERE a.rule IN {RELEASE_RULES}"
        )
    finally:
        store.close()
    assert {row["status"] for row in rows} == {"delivered"}
    received = [a["package"] for event in hook.events for a in event["data"]["alerts"]]
    assert len(received) == len(set(received))  # no package twice at the receiver
    cut = sum(event["data"].get("truncated", 0) for event in hook.events)
    assert len(received) + cut == len(rows)
    return Counter(row["slug"] for row in rows)


def _polls(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute(POLLS_SQL).fetchone()[0])
    finally:
        conn.close()


def test_a_changed_cycle_of_many_batches_sends_one_message_per_channel(
    monitor: Monitor,
) -> None:
    with _released_world(monitor) as (hook, slugs):
        report = monitor.json("check")
        assert len(report["changed"]) == PACKAGES
        assert len(hook.events) == 1  # one message for the whole cycle
        assert _released(monitor, hook) == Counter({slug: 1 for slug in slugs})
    store = monitor.store()
    try:
        # the notices are read from the transitions, not stored a second time
        [group] = store.query(
            "SELECT DISTINCT o.input, o.status FROM outbox o JOIN deliveries d"
            " ON d.group_id = o.id JOIN transitions t ON t.id = d.transition_id"
            f" JOIN alerts a ON a.id = t.alert_id WHERE a.rule IN {RELEASE_RULES}"
        )
        assert group == {"input": '{"notices_from": "deliveries"}', "status": "delivered"}
    finally:
        store.close()


def test_a_changed_cycle_records_batches_as_results_come_and_holds_few(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cycle records each batch while later list pages are still being polled, and
    asks for a page only while less than a batch waits: the results it holds (told by
    djangopackages, not yet written) stay bounded, whatever the number of packages."""
    monkeypatch.setattr(cycle, "BATCH", 100)
    db = monitor.tmp_path / "monitor.db"
    in_hand: list[int] = []
    poll = DjangoPackagesSource.poll

    async def counting(self: DjangoPackagesSource, *args: Any, **kwargs: Any) -> Any:
        told, written_before = kwargs["on_result"], _polls(db)

        def note(result: Any) -> None:
            in_hand.append(len(in_hand) + 1 - (_polls(db) - written_before))
            told(result)

        return await poll(self, *args, **{**kwargs, "on_result": note})

    with _released_world(monitor) as (hook, slugs):
        monkeypatch.setattr(DjangoPackagesSource, "poll", counting)
        report = monitor.json("check")
        assert len(report["changed"]) == PACKAGES
        assert _released(monitor, hook) == Counter({slug: 1 for slug in slugs})
    assert len(in_hand) == PACKAGES
    # at most a batch waiting when the last pages were asked, those pages, a batch in hand
    bound = 2 * cycle.BATCH + PACED_PAGES * PAGE_SIZE
    assert bound < PACKAGES
    assert max(in_hand) <= bound


def test_sigkill_between_batches_loses_nothing_and_sends_nothing_twice(
    monitor: Monitor,
) -> None:
    with _released_world(monitor) as (hook, slugs):
        db = monitor.tmp_path / "monitor.db"
        watched = _polls(db)
        checking = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(monitor.config_path), "check"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        lock = sqlite3.connect(db, timeout=30, isolation_level=None)
        try:
            deadline = time.monotonic() + 60
            while _polls(db) == watched:  # until a first batch is committed
                assert checking.poll() is None, checking.communicate()[1]
                assert time.monotonic() < deadline, "no batch was committed"
                time.sleep(0.002)
            lock.execute("BEGIN IMMEDIATE")  # the next batch waits for the write lock ...
            written = _polls(db) - watched
            checking.send_signal(signal.SIGKILL)  # ... and the process dies waiting
            checking.wait(30)
            lock.execute("ROLLBACK")
        finally:
            lock.close()
            if checking.poll() is None:
                checking.kill()
            checking.communicate()
        assert written % cycle.BATCH == 0 and 0 < written < PACKAGES  # whole batches only
        assert hook.events == []  # the cycle's group was held open: nothing sent yet

        # The next check records the rest; the outbox sends the dead cycle's group once its
        # hold is over, and the new cycle's own.
        monitor.clock.now = datetime.now(UTC) + OPEN_HOLD + timedelta(minutes=1)
        report = monitor.json("check")
        assert len(report["changed"]) == PACKAGES - written
        assert report["undelivered"] == []
        assert len(hook.events) == 2
        assert _released(monitor, hook) == Counter({slug: 1 for slug in slugs})
        # and nothing more on a third check
        monitor.clock.now += timedelta(hours=1)
        report = monitor.json("check")
        assert report["changed"] == [] and len(hook.events) == 2


def test_a_cycle_that_fails_midway_sends_what_its_written_batches_decided_at_once(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """djangopackages' poll breaks after some batches were written: those batches stay
    (whole), and their delivery group is released there and then, not once its hold
    expires; the next check records the rest and every release goes out once."""
    monkeypatch.setattr(cycle, "BATCH", 100)
    db = monitor.tmp_path / "monitor.db"
    poll = DjangoPackagesSource.poll

    async def breaking(self: DjangoPackagesSource, *args: Any, **kwargs: Any) -> Any:
        told, seen = kwargs["on_result"], []

        def note(result: Any) -> None:
            seen.append(result.slug)
            if len(seen) > 3 * cycle.BATCH and _polls(db) >= written_before + cycle.BATCH:
                raise RuntimeError("the source broke")
            told(result)

        written_before = _polls(db)
        return await poll(self, *args, **{**kwargs, "on_result": note})

    with _released_world(monitor) as (hook, slugs):
        before = _polls(db)
        monkeypatch.setattr(DjangoPackagesSource, "poll", breaking)
        with pytest.raises(RuntimeError, match="the source broke"):  # a bug: it propagates
            monitor.run("check")
        written = _polls(db) - before
        assert 0 < written < PACKAGES and written % cycle.BATCH == 0
        store = monitor.store()
        try:
            statuses = {row["status"] for row in store.query("SELECT status FROM outbox")}
        finally:
            store.close()
        assert "open" not in statuses  # released by the failing cycle itself
        monkeypatch.setattr(DjangoPackagesSource, "poll", poll)
        assert monitor.run("check").exit_code == 0
        assert _released(monitor, hook) == Counter({slug: 1 for slug in slugs})
