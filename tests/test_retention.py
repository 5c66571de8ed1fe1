"""Issue 14, retention: ``[history] keep`` compacts what grows per poll and per delivery,
``monitor db vacuum`` and the daemon give the space back; nothing a rule or an alert firing
now needs is compacted away."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.config import load_config
from monitor.retention import compact
from monitor.rules import load_rules
from monitor.scheduler import Daemon
from monitor.sources import Sources
from monitor.sources.djangopackages import DjangoPackagesSource
from monitor.store import Store, day_number, iso
from tests.conftest import START, Monitor, webhook_toml
from tests.daemon import RunningMonitor
from tests.fakes import FakeWebhookReceiver

LONG_AGO = START - timedelta(days=500)
RECENT = START - timedelta(days=1)


def _rows(monitor: Monitor, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
    store = monitor.store()
    try:
        return [tuple(row) for row in store.conn.execute(sql, params)]
    finally:
        store.close()


def _checks(monitor: Monitor) -> list[tuple[str, str]]:
    return sorted(
        _rows(
            monitor,
            "SELECT w.slug, c.checked_at FROM checks c JOIN watches w ON w.id = c.watch_id",
        )
    )


def _poll(monitor: Monitor, slug: str, *, failing: bool = False, at: datetime) -> None:
    monitor.clock.now = at
    monitor.upstream.down = failing
    result = monitor.run("check", slug)
    monitor.upstream.down = False
    assert result.exit_code == (1 if failing else 0), result.output


@pytest.fixture
def hook() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as server:
        yield server


@pytest.fixture
def year(monitor: Monitor, hook: FakeWebhookReceiver) -> Monitor:
    """500 days ago: django-otp's polls fail three times (poll-failing fires and is firing
    still), django-mfa's once, then it releases 9.9.9 (a change alert, delivered). A day ago:
    django-mfa fails once more and releases 9.9.10. Every alert goes to the webhook."""
    monitor.configure(webhook_toml(hook.hook_url))
    monitor.clock.now = LONG_AGO
    assert monitor.run("watch", "django-otp", "django-mfa").exit_code == 0
    for hours in (6, 12, 18):
        _poll(monitor, "django-otp", failing=True, at=LONG_AGO + timedelta(hours=hours))
    _poll(monitor, "django-mfa", failing=True, at=LONG_AGO + timedelta(hours=6))
    monitor.upstream.records["django-mfa"]["pypi_version"] = "9.9.9"
    _poll(monitor, "django-mfa", at=LONG_AGO + timedelta(hours=12))
    _poll(monitor, "django-mfa", failing=True, at=RECENT)
    monitor.upstream.records["django-mfa"]["pypi_version"] = "9.9.10"
    _poll(monitor, "django-mfa", at=RECENT + timedelta(hours=6))
    monitor.clock.now = START
    return monitor


def _groups(monitor: Monitor) -> dict[tuple[str, str], tuple[Any, ...]]:
    """(rule, transition status, repeat) of each delivered alert group -> (payload is kept,
    input is kept, attempts rows)."""
    rows = _rows(
        monitor,
        "SELECT a.rule || ' ' || t.status || ' ' || w.slug || ' ' || t.at, o.payload IS NOT NULL,"
        " o.input IS NOT NULL, (SELECT COUNT(*) FROM attempts x WHERE x.group_id = o.id),"
        " o.status FROM deliveries d JOIN transitions t ON t.id = d.transition_id"
        " JOIN alerts a ON a.id = t.alert_id JOIN watches w ON w.id = a.watch_id"
        " JOIN outbox o ON o.id = d.group_id",
    )
    return {tuple(row[0].split(" ", 1)): row[1:] for row in rows}


def test_old_failed_polls_go_but_stay_counted_and_recent_ones_stay(year: Monitor) -> None:
    long_ago = iso(LONG_AGO + timedelta(hours=6))
    assert ("django-mfa", long_ago) in _checks(year)
    kept = [
        "snapshots",
        "alerts",
        "transitions",
        "rule_states",
        "deliveries",
        "failed_days",
        "poll_days",
    ]
    before = {table: year.count(table) for table in kept}

    result = year.run("db", "vacuum")

    assert result.exit_code == 0, result.output
    assert "1 failed-poll rows" in result.stdout
    assert ("django-mfa", long_ago) not in _checks(year)
    assert ("django-mfa", iso(RECENT)) in _checks(year)  # within keep
    assert {table: year.count(table) for table in kept} == before  # never compacted
    store = year.store()
    try:
        ids = {w: store.watch(w).id for w in ("django-otp", "django-mfa")}  # type: ignore[union-attr]
        # the failures before the cut are still counted, per package and day
        counts = store.failure_counts(LONG_AGO - timedelta(days=1), START)
        assert counts == {ids["django-mfa"]: 2, ids["django-otp"]: 3}
        assert store.failure_counts(LONG_AGO + timedelta(days=2), START) == {ids["django-mfa"]: 1}
        cut = store.checks_kept_from()
        assert cut is not None and cut.hour == 0 and day_number(cut) == day_number(START) - 400
    finally:
        store.close()
    # what reads the history still works, over a period before the cut too
    assert year.run("status").exit_code == 0
    digest = year.run("digest", "--since", "600d")
    assert digest.exit_code == 0, digest.output
    assert "django-mfa" in digest.stdout
    # its failed polls: the one compacted into a day count and the one kept
    assert "poll failures: 2 (" in digest.stdout, digest.stdout
    assert "poll failures: 3\n" in digest.stdout  # rows kept for a firing alert: once
    history = year.json("history", "django-mfa")
    assert any("9.9.9" in json.dumps(entry) for entry in history)  # field history is whole


def test_an_alert_firing_since_long_ago_keeps_its_failed_polls_and_messages(
    year: Monitor,
) -> None:
    otp = [at for slug, at in _checks(year) if slug == "django-otp"]
    assert len(otp) == 3
    key = ("poll-failing", f"firing django-otp {iso(LONG_AGO + timedelta(hours=18))}")
    firing_group = _groups(year)[key]

    assert year.run("db", "vacuum").exit_code == 0

    assert [at for slug, at in _checks(year) if slug == "django-otp"] == otp
    firing = [a for a in year.json("alerts") if a["status"] == "firing"]
    assert ("poll-failing", "django-otp") in [(a["rule"], a["package"]) for a in firing]
    assert _groups(year)[key] == firing_group
    assert firing_group[:2] == (1, 1)  # its payload and input, untouched


def test_old_delivered_messages_lose_their_bodies_pending_and_recent_ones_do_not(
    year: Monitor,
) -> None:
    store = year.store()
    try:
        with store.transaction():  # a group still pending since long ago (a channel down)
            store.insert(
                "outbox",
                {
                    "id": "pending-long",
                    "channel": "hook",
                    "kind": "alerts",
                    "created_at": iso(LONG_AGO),
                    "input": '{"notices": []}',
                    "status": "pending",
                    "attempts": 3,
                    "next_attempt_at": iso(START + timedelta(hours=1)),
                },
            )
            store.insert(
                "attempts", {"group_id": "pending-long", "at": iso(LONG_AGO), "outcome": "retry"}
            )
    finally:
        store.close()
    groups = _groups(year)
    old = ("major-version-bump", f"firing django-mfa {iso(LONG_AGO + timedelta(hours=12))}")
    recent = ("pypi-version-changed", f"firing django-mfa {iso(RECENT + timedelta(hours=6))}")
    # a condition firing since long ago (no commits for 26 weeks): its message stays
    firing = ("no-commits-26-weeks", f"firing django-mfa {iso(LONG_AGO)}")
    assert groups[old] == groups[recent] == groups[firing] == (1, 1, 1, "delivered")

    result = year.run("db", "vacuum")

    assert result.exit_code == 0, result.output
    assert "1 delivered messages' bodies, 1 delivery attempts" in result.stdout
    after = _groups(year)
    assert after[old] == (0, 0, 0, "delivered")  # the row stays: deliveries refer to it
    assert after[recent] == after[firing] == (1, 1, 1, "delivered")
    pending = _rows(
        year,
        "SELECT input, (SELECT COUNT(*) FROM attempts WHERE group_id = o.id) FROM outbox o"
        " WHERE id = 'pending-long'",
    )
    assert pending == [('{"notices": []}', 1)]
    # `alerts --all` still tells how each old alert was delivered
    shown = [a for a in year.json("alerts", "--all") if a["package"] == "django-mfa"]
    assert {a["rule"] for a in shown} >= {"major-version-bump", "pypi-version-changed"}
    assert [d["status"] for a in shown for d in a["deliveries"]] == ["delivered"] * 3


def test_keep_forever_compacts_nothing(year: Monitor, hook: FakeWebhookReceiver) -> None:
    year.configure(webhook_toml(hook.hook_url) + '\n[history]\nkeep = "forever"\n')
    checks, groups = _checks(year), _groups(year)

    result = year.run("db", "vacuum")

    assert result.exit_code == 0, result.output
    assert 'nothing compacted ([history] keep = "forever")' in result.stdout
    assert (_checks(year), _groups(year)) == (checks, groups)


def test_a_shorter_keep_compacts_more(year: Monitor, hook: FakeWebhookReceiver) -> None:
    year.configure(webhook_toml(hook.hook_url) + '\n[history]\nkeep = "8d"\n')
    assert year.run("db", "vacuum").exit_code == 0
    assert ("django-mfa", iso(RECENT)) in _checks(year)  # a day old: kept
    year.clock.now = START + timedelta(days=9)
    assert year.run("db", "vacuum").exit_code == 0
    assert [slug for slug, _ in _checks(year)] == ["django-otp"] * 3  # its alert still fires


def test_replaced_vulnerability_details_go_the_newest_stay(tmp_path: Path) -> None:
    store = Store(tmp_path / "monitor.db")
    old, newer = iso(LONG_AGO), iso(LONG_AGO + timedelta(days=10))
    store.keep_vulns(
        [
            ("GHSA-1", old, '{"v": 1}'),  # replaced long ago: goes
            ("GHSA-1", newer, '{"v": 2}'),  # replaced a day ago: stays
            ("GHSA-1", iso(RECENT), '{"v": 3}'),  # the newest: stays
            ("GHSA-2", old, '{"v": 1}'),  # old but the only one: stays
        ]
    )
    compacted = compact(store, timedelta(days=400), START)
    assert compacted.vulns == 1
    kept = store.conn.execute("SELECT id, modified FROM vulns ORDER BY id, modified").fetchall()
    assert [tuple(row) for row in kept] == [
        ("GHSA-1", newer),
        ("GHSA-1", iso(RECENT)),
        ("GHSA-2", old),
    ]
    assert store.vulnerabilities(["GHSA-1"]) == {"GHSA-1": {"v": 3}}
    store.close()


def _bulky_history(monitor: Monitor, rows: int = 20_000, slug: str = "django-otp") -> None:
    """``rows`` failed polls of ``slug`` (watched from long ago if it is not watched yet),
    each with a 500-byte error."""
    if (monitor.tmp_path / "monitor.db").exists():
        store = monitor.store()
        watched = store.watch(slug) is not None
        store.close()
    else:
        watched = False
    if not watched:
        monitor.clock.now = LONG_AGO
        assert monitor.run("watch", slug).exit_code == 0
        monitor.clock.now = START
    store = monitor.store()
    try:
        watch_id = store.watch(slug).id  # type: ignore[union-attr]
        with store.transaction() as conn:
            conn.executemany(
                "INSERT INTO checks (watch_id, checked_at, duration_ms, status, error)"
                " VALUES (?, ?, 5, 'failed', ?)",
                [(watch_id, iso(LONG_AGO), f"{n} " + "x" * 500) for n in range(rows)],
            )
    finally:
        store.close()


def _size(monitor: Monitor) -> int:
    path = monitor.tmp_path / "monitor.db"
    return sum(p.stat().st_size for p in (path, path.with_name("monitor.db-wal")) if p.exists())


def _sizes(output: str) -> tuple[float, float]:
    """The sizes ``db vacuum`` printed, in kB."""
    found = re.findall(r"([0-9.]+) (MB|kB)", output)
    sizes = [float(n) * (1000 if unit == "MB" else 1) for n, unit in found]
    assert len(sizes) == 2, output
    return sizes[0], sizes[1]


def test_db_vacuum_gives_the_space_back(monitor: Monitor) -> None:
    _bulky_history(monitor)
    before = _size(monitor)
    assert before > 10_000_000

    result = monitor.run("db", "vacuum")

    assert result.exit_code == 0, result.output
    assert "20000 failed-poll rows" in result.stdout
    after = _size(monitor)
    assert after < 500_000  # the file itself shrank, its log emptied
    printed_before, printed_after = _sizes(result.stdout)
    assert printed_before > 10_000 and printed_after < 500
    assert "now in incremental auto-vacuum" not in result.stdout  # it was already


def test_db_vacuum_switches_an_old_database_to_incremental_auto_vacuum(monitor: Monitor) -> None:
    _bulky_history(monitor, rows=2_000)
    store = monitor.store()
    try:  # as a database made before this release: no auto-vacuum
        store.conn.execute("PRAGMA auto_vacuum = NONE")
        store.conn.execute("VACUUM")
        assert store.auto_vacuum() == 0
    finally:
        store.close()

    result = monitor.run("db", "vacuum")

    assert result.exit_code == 0, result.output
    assert "(now in incremental auto-vacuum)" in result.stdout
    store = monitor.store()
    try:
        assert store.auto_vacuum() == 2
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_a_new_database_is_in_incremental_auto_vacuum_and_wal(monitor: Monitor) -> None:
    assert monitor.run("watch", "django-otp").exit_code == 0
    store = monitor.store()
    try:
        assert store.auto_vacuum() == 2
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()


def test_db_vacuum_on_a_locked_database_is_exit_1(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _bulky_history(monitor, rows=10)
    monkeypatch.setattr("monitor.store.BUSY_TIMEOUT_MS", 100)
    holder = sqlite3.connect(monitor.tmp_path / "monitor.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process writing, for longer than we wait
        result = monitor.run("db", "vacuum")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert "is locked by another process" in result.stderr
    assert "Traceback" not in result.output
    assert len(_checks(monitor)) == 10  # nothing was compacted


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"3d"', "history.keep: '3d' is shorter than 8d"),
        ('"soon"', "history.keep: 'soon' is not a duration"),
        ("400", "history.keep: expected a string, got an integer"),
    ],
    ids=["too-short", "not-a-duration", "not-a-string"],
)
def test_a_bad_history_keep_is_exit_2(monitor: Monitor, value: str, message: str) -> None:
    monitor.configure(f"\n[history]\nkeep = {value}\n")
    result = monitor.run("db", "vacuum")
    assert result.exit_code == 2
    lines = monitor.config_path.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if text.startswith("keep ="))
    assert f"monitor.toml:{line}: {message}" in result.stderr  # the key's line
    assert not (monitor.tmp_path / "monitor.db").exists()


def _daemon_world(year: Monitor) -> None:
    """Nothing is due before the test ends: the daemon only compacts (and sends nothing)."""
    store = year.store()
    try:
        with store.transaction():
            store.conn.execute("UPDATE watches SET next_due_at = '2100-01-01T00:00:00Z'")
    finally:
        store.close()


async def _until(condition: Callable[[], Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


async def test_the_daemon_compacts_at_start(
    year: Monitor, caplog: pytest.LogCaptureFixture
) -> None:
    _bulky_history(year, rows=2_000, slug="django-mfa")
    _daemon_world(year)
    assert _size(year) > 1_000_000
    caplog.set_level("INFO", logger="monitor")
    config = load_config(year.config_path, {})
    store = year.store()

    @asynccontextmanager
    async def source() -> Any:
        async with aiohttp.ClientSession() as session:
            yield Sources(DjangoPackagesSource(year.upstream.url, session=session), [])

    stop = asyncio.Event()
    daemon = Daemon(config, store, load_rules(), source=source, clock=lambda: START)
    task = asyncio.create_task(daemon.run(stop))
    try:
        await _until(lambda: any(r.getMessage() == "compacted" for r in caplog.records))
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=5)
        store.close()
    [line] = [r for r in caplog.records if r.getMessage() == "compacted"]
    fields = line.fields  # type: ignore[attr-defined]
    assert (fields["checks"], fields["groups"], fields["attempts"]) == (2_001, 1, 1)
    assert fields["freed_pages"] > 200  # given back to the file system
    store = year.store()
    try:
        assert store.free_pages() == 0
        store.checkpoint()
    finally:
        store.close()
    assert _size(year) < 500_000
    assert fields["before"].startswith(str((START - timedelta(days=400)).date()))
    assert ("django-mfa", iso(LONG_AGO + timedelta(hours=6))) not in _checks(year)
    assert ("django-mfa", iso(RECENT)) in _checks(year)


def test_monitor_run_compacts_at_start(monitor: Monitor) -> None:
    """The real daemon, on the real clock: polls failed 500 days before today go."""
    now = datetime.now(UTC)
    _poll_failed = now - timedelta(days=500)
    monitor.clock.now = _poll_failed
    assert monitor.run("watch", "django-mfa").exit_code == 0
    _poll(monitor, "django-mfa", failing=True, at=_poll_failed + timedelta(hours=6))
    _poll(monitor, "django-mfa", failing=True, at=now - timedelta(days=1))
    _daemon_world(monitor)
    assert len(_checks(monitor)) == 2

    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
        [line] = daemon.wait_for(lambda: daemon.events("compacted"))
    assert line["checks"] == 1 and line["freed_pages"] >= 0
    assert [at for _, at in _checks(monitor)] == [iso(now - timedelta(days=1))]
