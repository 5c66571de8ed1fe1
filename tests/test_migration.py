"""A database made by the release before field history (schema 3: a whole snapshot per
change) migrates in place and reads the same: ``history``, ``alerts`` and the digest print
what that release printed (tests/fixtures/db, made by make_schema3.py at that release)."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from monitor.store import SCHEMA_VERSION
from tests.conftest import FIVE, Monitor

DB = Path(__file__).parent / "fixtures" / "db"
MADE_AT = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # the fixture's clock when it was made


def _old_database(monitor: Monitor) -> None:
    shutil.copy(DB / "schema3.db", monitor.tmp_path / "monitor.db")
    old_url = re.search(r"http://127\.0\.0\.1:\d+", (DB / "schema3-digest.txt").read_text())
    assert old_url is not None
    # nothing is polled here: the links the digest prints use the same base URL as then
    monitor.config_path.write_text(
        f'database = "monitor.db"\n[sources.djangopackages]\nurl = "{old_url.group(0)}"\n'
    )
    monitor.clock.now = MADE_AT


def test_the_schema_3_fixture_is_what_it_says() -> None:
    conn = sqlite3.connect(DB / "schema3.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
        assert conn.execute("SELECT COUNT(*) FROM snapshots").fetchone()[0] == 10
    finally:
        conn.close()


def test_history_reads_the_same_after_the_migration(monitor: Monitor) -> None:
    _old_database(monitor)
    expected = json.loads((DB / "schema3-history.json").read_text())
    for slug in FIVE:
        assert monitor.json("history", slug) == expected[slug], slug
    store = monitor.store()
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # whole snapshots became the fields that changed: the later rows are small
        sizes = [len(row[0]) for row in store.conn.execute("SELECT data FROM snapshots")]
        assert min(sizes) < 200
        parts = store.conn.execute("SELECT COUNT(*) FROM parts").fetchone()[0]
        assert parts == 5  # each watch's latest djangopackages values, kept at hand
    finally:
        store.close()


def test_alerts_and_the_digest_read_the_same_after_the_migration(monitor: Monitor) -> None:
    _old_database(monitor)
    expected_alerts = json.loads((DB / "schema3-alerts.json").read_text())
    assert monitor.json("alerts", "--all") == expected_alerts
    digest = monitor.run("digest", "--since", "30d")
    assert digest.exit_code == 0, digest.output
    assert digest.stdout == (DB / "schema3-digest.txt").read_text()


def test_a_migrated_database_goes_on_polling_without_false_changes(monitor: Monitor) -> None:
    _old_database(monitor)
    monitor.configure()
    upstream = monitor.upstream
    otp = upstream.records["django-otp"]
    # the upstream as the fixture left it (make_schema3.py's last state)
    otp["pypi_version"] = "2.0.0"
    otp["repo_watchers"] += 50
    otp["commits_over_52"] = [*otp["commits_over_52"][1:], 3]
    mfa = upstream.records["django-mfa"]
    mfa["participants"] = [*mfa["participants"][:1], "newcomer"]
    upstream.records["django-organizations"]["commits_over_52"] = []
    upstream.records["django-oauth-toolkit"]["title"] = "OAuth Toolkit"
    monitor.clock.advance(hours=7)
    report = monitor.json("check")
    assert report["changed"] == [] and report["unchanged"] == 5
    assert [t for t in report["transitions"] if t["kind"] == "change"] == []


# -- schema 5: the release before the bot (every source, pins, origins, mutes) -----------------


def _schema5(monitor: Monitor) -> dict[str, Any]:
    """The fixture made by make_schema5.py at that release, as this user's database; what
    that release printed of it."""
    shutil.copy(DB / "schema5.db", monitor.tmp_path / "monitor.db")
    expected = json.loads((DB / "schema5-expected.json").read_text())
    monitor.configure(sources=("pypi", "github", "osv"))  # nothing is polled here
    monitor.clock.now = datetime.fromisoformat(expected["made_at"])
    return expected


def test_the_schema_5_fixture_is_what_it_says() -> None:
    conn = sqlite3.connect(DB / "schema5.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 5
        assert conn.execute("SELECT COUNT(*) FROM mutes").fetchone()[0] == 2
        sources = {row[0] for row in conn.execute("SELECT DISTINCT source FROM parts")}
        assert sources == {"djangopackages", "pypi", "github", "osv"}
    finally:
        conn.close()


def test_a_schema_5_database_reads_the_same_after_the_migration(monitor: Monitor) -> None:
    expected = _schema5(monitor)
    for name, entries in expected["history"].items():
        assert monitor.json("history", name) == entries, name
    assert monitor.json("alerts", "--all") == expected["alerts"]
    assert monitor.json("list") == expected["list"]
    # mutes gained who set them: unknown for those set before
    assert monitor.json("mutes") == [{**m, "set_by": None} for m in expected["mutes"]]
    store = monitor.store()
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # schema 9: no watch has a quiet key yet (its next poll evaluates every rule), and
        # no list page is recalled
        quiet = store.conn.execute("SELECT COUNT(*), COUNT(quiet) FROM watches").fetchone()
        assert quiet[0] > 0 and quiet[1] == 0
        assert store.conn.execute("SELECT COUNT(*) FROM list_pages").fetchone()[0] == 0
    finally:
        store.close()
    lines = monitor.run("mutes").stdout.splitlines()
    assert lines[0].split() == ["package", "rule", "until", "set", "by", "comment"]
    assert lines[1].split()[4] == "-"  # no one recorded


def test_a_migrated_schema_5_database_takes_new_mutes_with_who(monitor: Monitor) -> None:
    _schema5(monitor)
    assert monitor.run("unmute", "django-otp").exit_code == 0
    assert monitor.run("mute", "django-otp", "--rule", "vulnerable-version").exit_code == 0
    (mute,) = [m for m in monitor.json("mutes") if m["package"] == "django-otp"]
    assert mute["rule"] == "vulnerable-version" and mute["set_by"]


def test_a_schema_5_database_counts_its_polls_by_day_after_the_migration(
    monitor: Monitor,
) -> None:
    conn = sqlite3.connect(DB / "schema5.db")
    try:
        before = dict(conn.execute("SELECT status, COUNT(*) FROM checks GROUP BY status"))
        failed_days = conn.execute(
            "SELECT COUNT(DISTINCT substr(checked_at, 1, 10) || ' ' || watch_id) FROM checks"
            " WHERE status IN ('failed', 'not_found')"
        ).fetchone()[0]
        newest = dict(
            conn.execute(
                "SELECT watch_id, last_fetched FROM checks c WHERE id = (SELECT MAX(id)"
                " FROM checks WHERE watch_id = c.watch_id)"
            )
        )
    finally:
        conn.close()
    assert before.get("unchanged", 0) + before.get("ok", 0) > 0  # something to count
    _schema5(monitor)
    store = monitor.store()
    try:
        counted = store.conn.execute(
            "SELECT SUM(ok), SUM(unchanged), SUM(failed), SUM(not_found) FROM poll_days"
        ).fetchone()
        statuses = ("ok", "unchanged", "failed", "not_found")
        assert tuple(counted) == tuple(before.get(s, 0) for s in statuses)
        assert store.conn.execute("SELECT SUM(polls) FROM watches").fetchone()[0] == sum(
            before.values()
        )
        failed = store.conn.execute(
            "SELECT COALESCE(SUM(failed), 0), COALESCE(SUM(not_found), 0), COUNT(*)"
            " FROM failed_days"
        ).fetchone()
        assert tuple(failed[:2]) == (before.get("failed", 0), before.get("not_found", 0))
        assert failed[2] == failed_days  # one row a package and day with a failed poll
        kept = dict(store.conn.execute("SELECT status, COUNT(*) FROM checks GROUP BY status"))
        assert kept == {s: n for s, n in before.items() if s in ("failed", "not_found")}
        moved = dict(store.conn.execute("SELECT id, last_fetched FROM watches"))
        assert {w: moved[w] for w in newest} == newest
    finally:
        store.close()
