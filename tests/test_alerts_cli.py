"""Issue 3 acceptance through the CLI: alerts from real polls of the fake upstream."""

from __future__ import annotations

import json
import re
import textwrap
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.store import Store, iso, notice_of
from tests.conftest import FIVE, START, Monitor, vm_steps


def _firing(monitor: Monitor) -> list[tuple[str, str]]:
    return sorted(
        (a["rule"], a["package"]) for a in monitor.json("alerts") if a["status"] == "firing"
    )


def test_watching_the_five_fires_no_commits_for_django_mfa_only(monitor: Monitor) -> None:
    result = monitor.run("watch", *FIVE)
    assert result.exit_code == 0, result.output
    firing = _firing(monitor)
    assert [p for r, p in firing if r == "no-commits-26-weeks"] == ["django-mfa"]
    assert "[warning] FIRING no-commits-26-weeks django-mfa" in result.stdout
    assert result.stdout.count("no-commits-26-weeks") == 1


def test_new_version_alerts_once_and_fewer_stars_once(monitor: Monitor) -> None:
    monitor.run("watch", *FIVE)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    first = monitor.json("check")["transitions"]
    assert [(t["rule"], t["package"], t["status"], t["kind"]) for t in first] == [
        ("pypi-version-changed", "django-otp", "firing", "change")
    ]
    assert first[0]["summary"] == "django-otp 1.7.0 → 1.8.0"
    assert monitor.json("check")["transitions"] == []

    monitor.upstream.records["django-otp"]["repo_watchers"] = 610
    rules = [t["rule"] for t in monitor.json("check")["transitions"]]
    assert rules == ["watchers-dropped"]
    assert monitor.json("check")["transitions"] == []
    changes = [a for a in monitor.json("alerts") if a["kind"] == "change"]
    assert sorted(a["rule"] for a in changes) == ["pypi-version-changed", "watchers-dropped"]
    assert {a["status"] for a in changes} == {"fired"}


def test_commit_resolves_unknown_and_failure_keep_state(monitor: Monitor) -> None:
    monitor.run("watch", "django-mfa")
    record = monitor.upstream.records["django-mfa"]
    record["commits_over_52"] = []
    assert monitor.json("check")["transitions"] == []
    monitor.upstream.fail("django-mfa", [500, 500, 500])
    assert monitor.json("check")["transitions"] == []
    record["commits_over_52"] = [0] * 51 + [4]
    transitions = monitor.json("check")["transitions"]
    resolved = [(t["rule"], t["status"]) for t in transitions]
    assert ("no-commits-26-weeks", "resolved") in resolved
    assert all(status == "resolved" for _, status in resolved)
    assert ("no-commits-26-weeks", "django-mfa") not in _firing(monitor)


def test_three_failed_polls_fire_poll_failing_and_success_resolves(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    for attempt in range(3):
        monitor.upstream.fail("django-otp", [503, 503, 503])
        result = monitor.run("check")
        assert result.exit_code == 1
        fired = "poll-failing" in result.stdout
        assert fired is (attempt == 2), result.stdout
    assert _firing(monitor) == [("poll-failing", "django-otp")]
    transitions = monitor.json("check")["transitions"]
    assert [(t["rule"], t["status"]) for t in transitions] == [("poll-failing", "resolved")]


def test_404_fires_package_not_found(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    del monitor.upstream.records["django-otp"]
    transitions = monitor.json("check")["transitions"]
    assert [(t["rule"], t["severity"]) for t in transitions] == [("package-not-found", "critical")]


def test_bad_rule_file_reports_three_problems_and_runs_nothing(monitor: Monitor) -> None:
    (monitor.tmp_path / "team.yaml").write_text(
        textwrap.dedent("""\
        rules:
          - id: typo
            when: repo_watchers > 1
            sevrity: info
          - id: bad-expression
            when: repo_watchers >
          - id: unknown-field
            when: repo_watcher > 1
        """)
    )
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    result = monitor.run("rules", "check", str(monitor.tmp_path / "team.yaml"))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3
    path = str(monitor.tmp_path / "team.yaml")
    assert lines[0].startswith(f"{path}:4:") and "did you mean 'severity'" in lines[0]
    assert lines[1].startswith(f"{path}:6:")
    assert lines[2].startswith(f"{path}:8:") and "repo_watchers" in lines[2]

    result = monitor.run("watch", "django-otp")
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 3
    assert monitor.upstream.package_requests == 0
    assert monitor.count("watches") == 0


def test_muted_alerts_are_recorded_not_delivered(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    result = monitor.run("mute", "django-otp", "--for", "1w", "--comment", "known")
    assert result.exit_code == 0, result.output
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.9.0"
    result = monitor.run("check")
    assert "(muted)" not in result.stdout.split("alert transitions")[0]
    assert "FIRING" not in result.stdout  # no console delivery
    (alert,) = monitor.json("alerts")
    assert alert["muted"] is True and alert["deliveries"] == []
    assert monitor.run("unmute", "django-otp").exit_code == 0
    result = monitor.run("check")
    assert "FIRING" not in result.stdout  # nothing retroactive
    assert monitor.json("alerts")[0]["muted"] is False


def test_mute_one_rule_only(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    monitor.run("mute", "django-otp", "--rule", "pypi-version-changed")
    record = monitor.upstream.records["django-otp"]
    record["pypi_version"], record["repo_forks"] = "1.9.0", 100
    result = monitor.run("check")
    assert "FIRING forks-dropped django-otp" in result.stdout  # delivered to the console
    assert "FIRING pypi-version-changed" not in result.stdout  # muted: not delivered
    assert "firing [info] pypi-version-changed django-otp: " in result.stdout  # but named
    assert monitor.run("mute", "django-otp", "--rule", "no-such-rule").exit_code == 2


def test_check_summary_names_each_transition(monitor: Monitor) -> None:
    monitor.run("watch", *FIVE)
    monitor.run("mute", "django-otp", "--rule", "pypi-version-changed")
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    monitor.upstream.records["django-mfa"]["commits_over_52"] = [0] * 51 + [3]
    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    summary = result.stdout.split("2 alert transitions", 1)[1]
    assert (
        "  firing [info] pypi-version-changed django-otp: django-otp 1.7.0 → 1.8.0 (muted)"
        in summary.splitlines()
    )
    assert any(
        line.startswith("  resolved [warning] no-commits-26-weeks django-mfa: ")
        and "(muted)" not in line
        for line in summary.splitlines()
    ), summary


def test_built_in_alerts_say_what_happened_once(monitor: Monitor) -> None:
    """A built-in alert's summary tells its description (and more), so a message that shows
    both (Slack, email) says it once (SPEC §7)."""
    from monitor.alerts import Notice
    from monitor.notify.base import said_once

    monitor.run("watch", "django-otp", "django-mfa")
    del monitor.upstream.records["django-otp"]
    monitor.upstream.records["django-mfa"]["repo_watchers"] = "many"  # invalid: polls fail
    for _ in range(3):
        monitor.clock.advance(hours=6)
        monitor.run("check")
    store = monitor.store()
    try:
        rows = store.query("SELECT notice FROM transitions")
    finally:
        store.close()
    notices = {n.rule: n for n in (Notice.from_json_dict(notice_of(r["notice"])) for r in rows)}
    for rule in ("package-not-found", "poll-failing"):
        description, summary = said_once(notices[rule])
        assert description == "" and summary, (rule, notices[rule])


# -- a year of alerts, a page at a time (issue 14) ------------------------------------------

YEAR = timedelta(days=365)


def add_alerts(store: Store, count: int, *, now: datetime = START, packages: int = 50) -> None:
    """``count`` alerts over ``packages`` packages (``pkg-N``, unwatched: no poll touches
    them) through the past year, newest last, runs of 7 raised at the same time: two change
    alerts for a condition alert, every tenth condition alert firing still; each with a
    transition delivered to the console, but every 97th failed and every 89th pending.
    Summaries are unique (``alert N``)."""
    with store.transaction() as conn:
        ids = [
            store.upsert_watch(
                f"pkg-{n}", package_id=None, title=None, notify=None, interval=None, now=now
            )
            for n in range(packages)
        ]
        for n in range(count):
            at = iso(now - YEAR + YEAR * (n // 7 * 7) / count)
            change = n % 3 != 0
            kind = "change" if change else "condition"
            status = "fired" if change else "firing" if n % 10 == 0 else "resolved"
            rule = "pypi-version-changed" if change else "no-commits-26-weeks"
            alert = conn.execute(
                "INSERT INTO alerts (episode, rule, watch_id, kind, severity, status,"
                " started_at, summary) VALUES (?, ?, ?, ?, 'info', ?, ?, ?)",
                (f"e{n}", rule, ids[n % packages], kind, status, at, f"alert {n}"),
            ).lastrowid
            transition = conn.execute(
                "INSERT INTO transitions (alert_id, status, repeat, at, notice)"
                " VALUES (?, 'firing', 0, ?, '{}')",
                (alert, at),
            ).lastrowid
            sent = "failed" if n % 97 == 0 else "pending" if n % 89 == 0 else "delivered"
            conn.execute(
                "INSERT INTO outbox (id, channel, kind, created_at, payload, status, attempts,"
                " last_error) VALUES (?, 'console', 'alerts', ?, '{}', ?, 1, ?)",
                (f"g{n}", at, sent, "console: boom" if sent == "failed" else None),
            )
            conn.execute(
                "INSERT INTO deliveries (transition_id, group_id, channel)"
                " VALUES (?, ?, 'console')",
                (transition, f"g{n}"),
            )
        for n in range(packages):
            store.unwatch(f"pkg-{n}")


def _pages(monitor: Monitor, *args: str) -> tuple[list[list[dict[str, Any]]], list[str]]:
    """Every page of ``alerts ARGS --json``, following the note on stderr; and the notes."""
    pages, notes = [], []
    command = ["alerts", *args, "--json"]
    while True:
        result = monitor.run(*command)
        assert result.exit_code == 0, result.output
        pages.append(json.loads(result.stdout))
        if not result.stderr:
            return pages, notes
        notes.append(result.stderr)
        next_command = re.search(r": monitor (alerts .*) shows the next", result.stderr)
        assert next_command, result.stderr
        command = next_command.group(1).split()


def test_alerts_all_pages_through_a_year_newest_first(monitor: Monitor) -> None:
    store = monitor.store()
    add_alerts(store, 1234)
    store.close()
    pages, notes = _pages(monitor, "--all", "--limit", "100")
    assert [len(page) for page in pages] == [100] * 12 + [34]
    assert notes[0].startswith("note: 100 shown, 1134 more (older): monitor alerts --all --before ")
    assert notes[0].endswith(" --limit 100 --json shows the next 100; --limit 0 shows every one\n")
    assert " 34 more " in notes[-1] and "shows the next 34;" in notes[-1]
    shown = [alert for page in pages for alert in page]
    assert [a["summary"] for a in shown] == [f"alert {n}" for n in reversed(range(1234))]
    everything = monitor.json("alerts", "--all", "--limit", "0")
    assert everything == shown  # one stream, the same alerts
    failed = [a for a in shown if a["deliveries"][0]["status"] == "failed"]
    assert len(failed) == 13 and failed[0]["deliveries"][0]["last_error"] == "console: boom"

    first = monitor.run("alerts", "--all", "--json")  # 200 by default
    assert len(json.loads(first.stdout)) == 200 and "1034 more" in first.stderr
    text = monitor.run("alerts", "--all", "--limit", "2")
    lines = text.stdout.splitlines()
    assert lines[0].startswith("RESOLVED [info] no-commits-26-weeks pkg-33 since 2026-11-2")
    assert lines[1:4:2] == ["         alert 1233", "         alert 1232"] and len(lines) == 4
    assert "note: 2 shown, 1232 more (older): monitor alerts --all --before " in text.stderr


def test_plain_alerts_pages_through_the_current_ones(monitor: Monitor) -> None:
    """Firing now, changes of the last 7 days, undelivered: as SPEC §4 says, paged alike."""
    from monitor.report import RECENT_CHANGES, is_current

    store = monitor.store()
    add_alerts(store, 3000)
    store.close()
    recent = iso(START - RECENT_CHANGES)
    expected = [
        a
        for a in monitor.json("alerts", "--all", "--limit", "0")
        if is_current(a["kind"], a["status"], a["started_at"], recent)
        or any(d["status"] in ("pending", "failed") for d in a["deliveries"])
    ]
    assert 150 < len(expected) < 600  # enough for pages, some of each kind
    assert {a["kind"] for a in expected if a["started_at"] < recent} == {"condition", "change"}
    pages, notes = _pages(monitor, "--limit", "40")
    assert [a for page in pages for a in page] == expected
    assert notes[0].startswith(f"note: 40 shown, {len(expected) - 40} more (older): ")
    assert "--all" not in notes[0]
    assert monitor.json("alerts", "--limit", "0") == expected


def test_before_an_unknown_alert_is_a_usage_error(monitor: Monitor) -> None:
    result = monitor.run("alerts", "--all", "--before", "999", "--json")
    assert result.exit_code == 2
    assert result.stdout == "" and "error: no alert has the id 999" in result.stderr
    result = monitor.run("alerts", "--all", "--before", "999", "--limit", "0", "--json")
    assert result.exit_code == 2 and result.stdout == ""  # nothing streamed before the error


@pytest.mark.parametrize("show_all", [True, False], ids=["all", "current"])
def test_a_page_reads_its_own_alerts_not_every_one(tmp_path: Path, show_all: bool) -> None:
    """A page's SQL (the alerts, their deliveries) costs the same with 10 times as many
    alerts in the history: read through the index newest first (``--all``), or from the
    current alerts' own indexes (plain), never by scanning every alert."""
    from monitor.report import list_alerts

    costs = []
    for older in (0, 9000):
        store = Store(tmp_path / f"{older}.db")
        add_alerts(store, 1000)
        with store.transaction() as conn:  # older history: resolved, delivered long ago
            conn.executemany(
                "INSERT INTO alerts (episode, rule, watch_id, kind, severity, status,"
                " started_at, summary) VALUES (?, 'no-commits-26-weeks', 1, 'condition',"
                " 'info', 'resolved', ?, 'old')",
                [(f"old{n}", iso(START - 2 * YEAR + timedelta(minutes=n))) for n in range(older)],
            )
        (middle,) = store.conn.execute(
            "SELECT id FROM alerts ORDER BY started_at DESC, id DESC LIMIT 1 OFFSET 500"
        ).fetchone()

        def page(store: Store = store, before: int | None = None) -> Any:
            return list_alerts(
                store, now=START, show_all=show_all, limit=50, before=before, count=False
            )

        costs.append([vm_steps(store, lambda b=b: page(before=b)) for b in (None, middle)])
        plan = " ".join(
            row[3]
            for row in store.conn.execute(
                "EXPLAIN QUERY PLAN SELECT a.*, w.slug FROM alerts a JOIN watches w"
                " ON w.id = a.watch_id WHERE a.started_at <= ? AND (a.started_at < ? OR a.id < ?)"
                " ORDER BY a.started_at DESC, a.id DESC LIMIT 50",
                ("2026-01-01", "2026-01-01", 1),
            )
        )
        assert "USING INDEX idx_alerts_started_at" in plan and "TEMP B-TREE" not in plan, plan
        store.close()
    print(f"VM steps/10 of a page (first, middle) at 1,000 and 10,000 alerts: {costs}")
    for small, big in zip(costs[0], costs[1], strict=True):
        assert big < small * 1.5, costs
