"""Issue 3 acceptance through the CLI: alerts from real polls of the fake upstream."""

from __future__ import annotations

import json
import textwrap

from tests.conftest import FIVE, Monitor


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
    notices = {n.rule: n for n in (Notice.from_json_dict(json.loads(r["notice"])) for r in rows)}
    for rule in ("package-not-found", "poll-failing"):
        description, summary = said_once(notices[rule])
        assert description == "" and summary, (rule, notices[rule])
