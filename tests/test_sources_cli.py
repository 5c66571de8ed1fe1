"""More sources through the CLI (issue: PyPI, GitHub and OSV in one snapshot per package):
real loopback fakes of all four APIs, the real cycle and store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import FIVE, Monitor
from tests.fakes import SECRET, TOKEN, FakeSlack, FakeSMTPServer, FakeWebhookReceiver

ALL = ("pypi", "github", "osv")
OTP = "django-otp"
OTP_REPO = "django-otp/django-otp"


def _transitions(report: dict[str, Any], rule: str) -> list[str]:
    return [f"{t['status']} {t['package']}" for t in report["transitions"] if t["rule"] == rule]


def test_watching_shows_every_source_in_history_and_list(monitor: Monitor) -> None:
    monitor.configure(sources=ALL)
    assert monitor.run("watch", OTP).exit_code == 0

    (baseline,) = monitor.json("history", OTP)
    snapshot = baseline["snapshot"]
    assert snapshot["pypi_version"] == "1.7.0"  # djangopackages' fields keep their names
    assert snapshot["pypi.version"] == "1.7.0"
    assert snapshot["pypi.django"] == ["2.2", "3.0", "3.1", "3.2", "4.0"]
    assert snapshot["github.repo"] == OTP_REPO and snapshot["github.archived"] is False
    assert snapshot["github.stars"] == 401
    assert snapshot["vulns"] == []
    (listed,) = monitor.json("list")
    assert listed["sources"] == {"pypi": OTP, "github": OTP_REPO, "osv": f"{OTP}==1.7.0"}


def test_an_archived_repository_fires_once_and_resolves(monitor: Monitor) -> None:
    monitor.configure(sources=ALL)
    monitor.run("watch", OTP)
    github = monitor.upstream.world.github

    github.archive(OTP_REPO)
    monitor.clock.advance(hours=7)
    first = monitor.json("check")
    assert _transitions(first, "repo-archived") == [f"firing {OTP}"]
    (fired,) = [t for t in first["transitions"] if t["rule"] == "repo-archived"]
    assert fired["severity"] == "critical"
    monitor.clock.advance(hours=7)
    assert _transitions(monitor.json("check"), "repo-archived") == []  # still firing, not again

    github.archive(OTP_REPO, archived=False)
    monitor.clock.advance(hours=7)
    assert _transitions(monitor.json("check"), "repo-archived") == [f"resolved {OTP}"]


def test_turning_a_source_on_sends_nothing_and_off_makes_its_fields_unknown(
    monitor: Monitor,
) -> None:
    monitor.run("watch", *FIVE)  # djangopackages only
    monitor.configure(sources=ALL)
    monitor.clock.advance(hours=7)
    on = monitor.json("check")
    assert on["transitions"] == [] and on["changed"] == []
    history = monitor.json("history", OTP)
    assert len(history) == 2  # the sources' own baseline: their fields appearing
    assert {c["field"] for c in history[1]["changes"]} >= {"pypi.version", "github.stars"}
    assert all(c["old"] is None for c in history[1]["changes"])

    monitor.upstream.world.github.archive(OTP_REPO)
    monitor.upstream.reset()
    monitor.configure(sources=("pypi", "osv"))  # GitHub off: its fields are unknown
    monitor.clock.advance(hours=7)
    off = monitor.json("check")
    assert off["transitions"] == []
    assert not any(entry.startswith("/repos/") for entry in monitor.upstream.requests)


def test_pypi_down_keeps_pypi_rules_and_fails_naming_pypi(monitor: Monitor) -> None:
    monitor.configure(sources=ALL)
    monitor.run("watch", OTP)
    up = monitor.upstream
    up.world.pypi.yank(OTP, "1.7.0")  # would fire nothing: nothing is pinned
    for _ in range(3):
        up.fail(f"/pypi/{OTP}/json", [500] * 3)
        up.records[OTP]["repo_watchers"] -= 100  # a djangopackages change each poll
        monitor.clock.advance(hours=7)
        result = monitor.run("check", "--json")
        assert result.exit_code == 1
        report = json.loads(result.stdout)
        (failure,) = report["failed"]
        assert failure["source"] == "pypi" and "PyPI" in failure["error"]
        # the djangopackages rules still fire on djangopackages' changes
        assert _transitions(report, "watchers-dropped") or _transitions(
            report, "stars-dropped-10-percent"
        )
    assert _transitions(report, "poll-failing") == [f"firing {OTP}"]
    (notice,) = [t for t in report["transitions"] if t["rule"] == "poll-failing"]
    assert "PyPI" in notice["summary"]


def test_github_rate_limit_defers_without_failing_or_asking(monitor: Monitor) -> None:
    monitor.configure(sources=ALL)
    monitor.run("watch", *FIVE)
    github = monitor.upstream.world.github
    github.remaining = 0
    github.archive(OTP_REPO)  # not seen while deferred: nothing fires

    monitor.clock.advance(hours=7)
    github.reset_at = int(monitor.clock.now.timestamp()) + 3600
    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    assert "github: rate limited until" in result.output and "deferred" in result.output
    before = sum(n for path, n in monitor.upstream.requests.items() if path.startswith("/repos/"))

    monitor.clock.advance(minutes=30)  # before the reset: no GitHub request at all
    report = monitor.json("check")
    after = sum(n for path, n in monitor.upstream.requests.items() if path.startswith("/repos/"))
    assert after == before
    assert {d["source"] for d in report["deferred"]} == {"github"}
    assert report["failed"] == [] and report["transitions"] == []
    status = monitor.json("status")
    assert status["sources"]["github"]["rate_limited_until"] is not None
    assert status["sources"]["pypi"]["failing"] == 0


def test_an_unchanged_second_check_is_all_304s_and_stores_nothing(monitor: Monitor) -> None:
    monitor.configure(sources=ALL)
    monitor.run("watch", *FIVE)
    up = monitor.upstream
    up.reset()
    batches = up.world.osv.batch_requests
    history_rows = monitor.count("snapshots")

    monitor.clock.advance(hours=7)
    report = monitor.json("check")

    assert report["unchanged"] == 5 and report["changed"] == []
    asked = [r for r in up.log if r.path.startswith(("/pypi/", "/simple/", "/repos/"))]
    assert len(asked) == 15
    assert all("If-None-Match" in r.headers for r in asked)
    assert up.world.pypi.not_modified == 10
    assert up.world.osv.batch_requests == batches + 1  # one querybatch for the five
    assert monitor.count("snapshots") == history_rows


@pytest.fixture
def smtp() -> Iterator[FakeSMTPServer]:
    with FakeSMTPServer() as server:
        yield server


def test_a_vulnerability_reaches_slack_email_and_webhook(
    monitor: Monitor, bot_slack: FakeSlack, smtp: FakeSMTPServer, hook: FakeWebhookReceiver
) -> None:
    monitor.env.update({"SLACK_TOKEN": TOKEN, "WEBHOOK_SECRET": SECRET})
    extra = f"""
        [defaults]
        notify = ["slack", "mail", "hook"]

        [notifiers.slack]
        type = "slack"
        token = "${{SLACK_TOKEN}}"
        channel = "#deps"
        api_url = "{bot_slack.api_url}"

        [notifiers.mail]
        type = "email"
        host = "127.0.0.1"
        port = {smtp.port}
        security = "none"
        from = "monitor@example.com"
        to = ["deps@example.com"]

        [notifiers.hook]
        type = "webhook"
        url = "{hook.hook_url}"
        secret = "${{WEBHOOK_SECRET}}"
        """
    monitor.configure(extra, sources=ALL)
    assert monitor.run("watch", OTP).exit_code == 0
    monitor.upstream.world.osv.add_vuln(
        "GHSA-8x94-hmjh-97hq",
        OTP,
        versions=["1.6.0", "1.7.0"],
        fixed="1.7.1",
        summary="django-otp accepts a reused TOTP token",
        aliases=["CVE-2026-12345"],
    )
    monitor.clock.advance(hours=7)
    report = monitor.json("check")
    assert _transitions(report, "vulnerable-version") == [f"firing {OTP}"]

    link = "https://osv.dev/vulnerability/GHSA-8x94-hmjh-97hq"
    (event,) = hook.events
    (alert,) = [a for a in event["data"]["alerts"] if a["rule"] == "vulnerable-version"]
    assert alert["severity"] == "critical"
    for text in (alert["summary"],):
        assert "GHSA-8x94-hmjh-97hq" in text and "reused TOTP token" in text
        assert "CVE-2026-12345" in text and "1.7.1" in text and link in text
    assert alert["links"]["repo"] == f"https://github.com/{OTP_REPO}"

    (message,) = bot_slack.messages
    blocks = json.dumps(message["blocks"], ensure_ascii=False)
    for needle in ("GHSA-8x94-hmjh-97hq", "reused TOTP token", "CVE-2026-12345", "1.7.1", link):
        assert needle in blocks, needle

    (mail,) = smtp.messages
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    for needle in ("GHSA-8x94-hmjh-97hq", "reused TOTP token", "CVE-2026-12345", "1.7.1", link):
        assert needle in text and needle in html, needle

    monitor.upstream.world.osv.withdraw("GHSA-8x94-hmjh-97hq")
    monitor.clock.advance(hours=7)
    assert _transitions(monitor.json("check"), "vulnerable-version") == [f"resolved {OTP}"]
