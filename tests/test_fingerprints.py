"""Unchanged records are recognised by fingerprint before they are parsed (SPEC §3).

The fast path must decide exactly what the long way would: the same checks, the same rule
verdicts, the same validation, and nothing missed when another process writes meanwhile.
"""

from __future__ import annotations

import copy
import sqlite3
import textwrap
from datetime import timedelta
from typing import Any

import sqlite_utils

from monitor.config import Config
from monitor.cycle import CycleRecorder
from monitor.rules import load_rules
from monitor.snapshot import parse_record, record_fingerprint
from monitor.sources import PollResult, PollStatus
from monitor.store import FAILED_CHECKS, MIGRATIONS, Store
from tests.conftest import FIVE, START, Monitor
from tests.fakeupstream import load_fixtures

OTP = "django-otp"


def _fingerprints(monitor: Monitor) -> dict[str, bytes | None]:
    """slug -> the fingerprint of its latest djangopackages record (kept in its part)."""
    store = monitor.store()
    try:
        rows = store.conn.execute(
            "SELECT w.slug, p.fingerprint FROM watches w JOIN parts p"
            " ON p.watch_id = w.id AND p.source = 'djangopackages'"
        ).fetchall()
    finally:
        store.close()
    return dict(rows)


# -- through the CLI ------------------------------------------------------------------------


def test_an_unchanged_check_takes_the_fingerprint_path(monitor: Monitor) -> None:
    monitor.run("watch", *FIVE)
    stored = _fingerprints(monitor)
    assert stored == {slug: record_fingerprint(monitor.upstream.records[slug]) for slug in FIVE}

    report = monitor.json("check")
    assert (report["checked"], report["unchanged"], report["changed"]) == (5, 5, [])
    assert monitor.count("snapshots") == 5
    assert _fingerprints(monitor) == stored


def test_the_same_content_in_another_form_is_unchanged(monitor: Monitor) -> None:
    monitor.run("watch", OTP)
    record = monitor.upstream.records[OTP]
    # Another URL style and key order: a new fingerprint, but no change in content.
    reshaped = {key: record[key] for key in reversed(list(record))}
    reshaped["category"] += "?format=api"
    reshaped["grids"] = [f"{url}?format=api" for url in record["grids"]]
    monitor.upstream.records[OTP] = reshaped

    report = monitor.json("check")
    assert (report["unchanged"], report["changed"], report["transitions"]) == (1, [], [])
    assert monitor.count("snapshots") == 1
    assert _fingerprints(monitor) == {OTP: record_fingerprint(reshaped)}  # next time: fast


def test_condition_rules_count_unchanged_polls(monitor: Monitor) -> None:
    (monitor.tmp_path / "team.yaml").write_text(
        textwrap.dedent("""\
        rules:
          - id: popular
            when: repo_watchers > 500
            for: 3
            severity: info
        """)
    )
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    monitor.run("watch", OTP)  # holds once (621 stars)
    assert monitor.json("check")["transitions"] == []  # twice, unchanged
    transitions = monitor.json("check")["transitions"]  # three times, unchanged: fires
    assert [(t["rule"], t["status"]) for t in transitions] == [("popular", "firing")]
    assert transitions[0]["summary"].startswith("django-otp")

    monitor.upstream.records[OTP]["repo_watchers"] = 400  # the shipped star rules fire too
    transitions = monitor.json("check")["transitions"]
    assert [t["status"] for t in transitions if t["rule"] == "popular"] == ["resolved"]


def test_snapshots_from_before_fingerprints_are_filled_in(monitor: Monitor) -> None:
    monitor.run("watch", *FIVE)
    store = monitor.store()
    with store.transaction():
        store.conn.execute("UPDATE snapshots SET fingerprint = NULL")
        store.conn.execute("UPDATE parts SET fingerprint = NULL")
    store.close()

    report = monitor.json("check")
    assert (report["unchanged"], report["changed"]) == (5, [])
    assert monitor.count("snapshots") == 5
    assert _fingerprints(monitor) == {
        slug: record_fingerprint(monitor.upstream.records[slug]) for slug in FIVE
    }


def test_a_schema_1_database_is_migrated(tmp_path) -> None:
    path = tmp_path / "monitor.db"
    conn = sqlite3.connect(path)
    MIGRATIONS[0](sqlite_utils.Database(conn))
    conn.execute("PRAGMA user_version = 1")
    conn.execute("INSERT INTO watches (slug, added_at) VALUES ('django-otp', '2026-01-01')")
    conn.execute("INSERT INTO snapshots (watch_id, taken_at, data) VALUES (1, '2026-01-01', '{}')")
    conn.commit()
    conn.close()

    store = Store(path)
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        row = store.conn.execute("SELECT data, fingerprint FROM snapshots").fetchone()
        assert tuple(row) == ("{}", None)
        # Only failed checks are indexed per watch, and the digest's query uses that index.
        plan = store.conn.execute(f"EXPLAIN QUERY PLAN {FAILED_CHECKS}", (1,)).fetchall()
        assert "USING INDEX idx_checks_failed" in plan[0][3]
    finally:
        store.close()


# -- another process writes while we poll ---------------------------------------------------


def _ok(record: dict[str, Any]) -> PollResult:
    snapshot = parse_record(record)
    return PollResult(OTP, PollStatus.OK, snapshot, None, 1, 0.1, record_fingerprint(record))


def _recorder(store: Store, hours: int) -> CycleRecorder:
    now = START + timedelta(hours=hours)
    return CycleRecorder(store, Config(database=store.path), load_rules(), now=now)


def test_an_unchanged_result_is_compared_with_what_another_process_stored(tmp_path) -> None:
    old = load_fixtures()[OTP]
    new = {**copy.deepcopy(old), "pypi_version": "1.8.0"}
    ours, theirs = Store(tmp_path / "monitor.db"), Store(tmp_path / "monitor.db")
    try:
        with ours.transaction():
            ours.upsert_watch(OTP, package_id=1, title=OTP, notify=[], interval=None, now=START)
        _recorder(ours, 0).record([_ok(old)], baseline=True)

        # We read the stored fingerprint and poll: upstream still has the old record...
        recorder = _recorder(ours, 2)
        known = recorder.prepare([OTP])
        assert known == {OTP: record_fingerprint(old)}
        values = parse_record(old).values(["commits_over_52", "last_fetched", "modified"])
        unchanged = PollResult(
            OTP, PollStatus.UNCHANGED, None, None, 1, 0.1, known[OTP], {"slug": OTP, **values}
        )
        # ...while another process records the new version.
        _recorder(theirs, 1).record([_ok(new)])

        report = recorder.record([unchanged])
    finally:
        ours.close()
        theirs.close()

    # What we saw differs from the newest stored snapshot: a change, not "unchanged".
    assert report.unchanged == 0
    changed = [(slug, [(c.field, c.old, c.new) for c in cs]) for slug, cs in report.changed]
    assert changed == [(OTP, [("pypi_version", "1.8.0", "1.7.0")])]
    assert [(t.rule, str(t.status)) for t in report.transitions] == [
        ("pypi-version-changed", "firing")
    ]
