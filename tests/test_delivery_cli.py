"""Issue 4 acceptance: alerts from `check` reach Slack, email and signed webhooks (SPEC §7),
through the durable outbox, against real servers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Monitor
from tests.fakes import SECRET, TOKEN, FakeSlack, FakeSMTPServer, FakeWebhookReceiver, Reply
from tests.fakeupstream import clone_records

PASSWORD = "smtp-pa55word-secret"
ROOT = Path(__file__).parent.parent


@pytest.fixture
def slack(bot_slack: FakeSlack) -> FakeSlack:
    return bot_slack


@pytest.fixture
def smtp() -> Iterator[FakeSMTPServer]:
    with FakeSMTPServer(auth={"monitor": PASSWORD}) as server:
        yield server


def _configure(
    monitor: Monitor,
    slack: FakeSlack,
    smtp: FakeSMTPServer,
    hook: FakeWebhookReceiver,
    notify: str = '"slack", "mail", "hook"',
) -> None:
    monitor.env.update({"SLACK_TOKEN": TOKEN, "SMTP_PASSWORD": PASSWORD, "WEBHOOK_SECRET": SECRET})
    monitor.configure(f"""
        [defaults]
        notify = [{notify}]

        [notifiers.slack]
        type = "slack"
        token = "${{SLACK_TOKEN}}"
        channel = "#deps"
        api_url = "{slack.api_url}"

        [notifiers.mail]
        type = "email"
        host = "127.0.0.1"
        port = {smtp.port}
        security = "none"
        username = "monitor"
        password = "${{SMTP_PASSWORD}}"
        from = "monitor@example.com"
        to = ["deps@example.com"]

        [notifiers.hook]
        type = "webhook"
        url = "{hook.hook_url}"
        secret = "${{WEBHOOK_SECRET}}"
        """)


def test_an_alert_from_check_reaches_every_channel(
    monitor: Monitor, slack: FakeSlack, smtp: FakeSMTPServer, hook: FakeWebhookReceiver
) -> None:
    _configure(monitor, slack, smtp, hook)
    assert monitor.run("watch", "django-otp").exit_code == 0
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    result = monitor.run("check")
    assert result.exit_code == 0, result.output

    (event,) = hook.events
    assert hook.requests[0].verified is True
    assert event["type"] == "package.alerts" and event["timestamp"].endswith("Z")
    (alert,) = event["data"]["alerts"]
    assert alert["rule"] == "pypi-version-changed" and alert["kind"] == "change"
    assert alert["status"] == "firing" and alert["repeat"] is False
    assert alert["summary"] == "django-otp 1.7.0 → 1.8.0"
    assert alert["changes"] == [{"field": "pypi_version", "old": "1.7.0", "new": "1.8.0"}]
    assert alert["links"]["djangopackages"] == (f"{monitor.upstream.url}/packages/p/django-otp/")
    assert alert["links"]["repo"] == "https://github.com/django-otp/django-otp"

    (message,) = slack.messages
    assert message["channel"] == "#deps"
    assert "django-otp 1.7.0 → 1.8.0" in message["text"]
    blocks = json.dumps(message["blocks"], ensure_ascii=False)
    assert "/packages/p/django-otp/|django-otp>" in blocks
    assert "1.7.0 → 1.8.0" in blocks and "info" in blocks.lower()

    (mail,) = smtp.messages
    assert "django-otp" in mail["Subject"] and "1 alert" in mail["Subject"]
    assert mail.get_content_type() == "multipart/alternative"
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "django-otp 1.7.0 → 1.8.0" in text and "django-otp 1.7.0 → 1.8.0" in html


def test_hostile_upstream_text_cannot_ping_and_is_escaped(
    monitor: Monitor, slack: FakeSlack, smtp: FakeSMTPServer, hook: FakeWebhookReceiver
) -> None:
    _configure(monitor, slack, smtp, hook)
    monitor.run("watch", "django-otp")
    record = monitor.upstream.records["django-otp"]
    record["title"] = record["repo_description"] = "<!channel> & <b>x</b>"
    record["repo_forks"] = 1
    assert monitor.run("check").exit_code == 0
    raw = json.dumps(slack.messages, ensure_ascii=False)
    assert "<!channel>" not in raw and "&lt;!channel&gt; &amp; &lt;b&gt;x&lt;/b&gt;" in raw
    assert '"link_names"' not in raw
    html = smtp.messages[0].get_body(("html",)).get_content()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html


def _webhook_only(monitor: Monitor, hook: FakeWebhookReceiver) -> None:
    monitor.env["WEBHOOK_SECRET"] = SECRET
    monitor.configure(f"""
        [defaults]
        notify = ["hook"]

        [notifiers.hook]
        type = "webhook"
        url = "{hook.hook_url}"
        secret = "${{WEBHOOK_SECRET}}"
        """)


def _attempts(monitor: Monitor) -> list[dict]:
    store = monitor.store()
    try:
        return store.query("SELECT at, outcome, error FROM attempts ORDER BY id")
    finally:
        store.close()


def test_500_three_times_then_200_is_delivered_once_after_four_attempts(
    monitor: Monitor, hook: FakeWebhookReceiver
) -> None:
    _webhook_only(monitor, hook)
    monitor.run("watch", "django-otp")
    hook.queue(500, 500, 500, 200)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    assert [r.status for r in hook.requests] == [500, 500, 500, 200]
    assert len({r.headers["webhook-id"] for r in hook.requests}) == 1
    assert len({r.body for r in hook.requests}) == 1  # the same bytes every time
    assert [a["outcome"] for a in _attempts(monitor)] == ["retry"] * 3 + ["delivered"]
    (alert,) = monitor.json("alerts")
    assert alert["deliveries"] == [
        {
            "channel": "hook",
            "transition": "firing",
            "status": "delivered",
            "attempts": 4,
            "last_error": None,
        }
    ]


def test_404_is_failed_not_retried_and_shown(monitor: Monitor, hook: FakeWebhookReceiver) -> None:
    _webhook_only(monitor, hook)
    monitor.run("watch", "django-otp")
    hook.queue(404)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    result = monitor.run("check")
    assert result.exit_code == 1
    assert "undelivered: hook: failed" in result.stdout
    assert len(hook.requests) == 1
    monitor.clock.advance(hours=1)
    monitor.run("check")
    assert len(hook.requests) == 1  # never retried
    (alert,) = monitor.json("alerts")
    (delivery,) = alert["deliveries"]
    assert delivery["status"] == "failed" and "404" in delivery["last_error"]
    listed = monitor.run("alerts").stdout
    # The channel is named once (the error's own "hook: " prefix is not repeated).
    assert "hook: failed after 1 attempt(s): HTTP 404 from webhook" in listed


def test_429_retry_after_is_honoured(monitor: Monitor, hook: FakeWebhookReceiver) -> None:
    _webhook_only(monitor, hook)
    monitor.run("watch", "django-otp")
    hook.queue(Reply.rate_limited(2), 200)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    assert monitor.run("check").exit_code == 0
    first, second = (datetime.fromisoformat(a["at"]) for a in _attempts(monitor))
    assert second - first >= timedelta(seconds=2)
    assert sum(monitor.clock.slept) >= 2


def test_notifier_down_keeps_deliveries_pending_then_delivers_once(
    monitor: Monitor, hook: FakeWebhookReceiver
) -> None:
    _webhook_only(monitor, hook)
    monitor.run("watch", "django-otp")
    hook.queue(*[503] * 12)  # down for longer than `check` keeps trying (~30 s)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    result = monitor.run("check")
    assert result.exit_code == 1 and "undelivered: hook: pending" in result.stdout
    assert monitor.json("alerts")[0]["deliveries"][0]["status"] == "pending"
    hook.clear()
    monitor.clock.advance(hours=1)
    assert monitor.run("check").exit_code == 0
    assert len(hook.events) == 1
    monitor.clock.advance(hours=1)
    monitor.run("check")
    assert len(hook.events) == 1  # never resent once delivered


def test_sigkill_while_sending_then_next_check_delivers_one_webhook_id(
    monitor: Monitor, hook: FakeWebhookReceiver
) -> None:
    _webhook_only(monitor, hook)
    monitor.run("watch", "django-otp")
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    hook.queue(Reply(200, delay=30))  # the first attempt hangs: the transition is stored
    env = {**os.environ, "WEBHOOK_SECRET": SECRET}
    child = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(monitor.config_path), "check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    deadline = time.monotonic() + 20
    while not hook.requests:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=10)

    # The killed process held a lease; once it expires the next check sends the same group.
    monitor.clock.now = datetime.now(UTC) + timedelta(minutes=5)
    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    assert monitor.json("check")["transitions"] == []
    delivered = [r for r in hook.requests if r.status == 200]
    assert len(delivered) >= 1
    assert len({r.headers["webhook-id"] for r in hook.requests}) == 1
    assert len(monitor.json("alerts")) == 1


def test_ten_changes_make_one_message_per_channel(
    monitor: Monitor, slack: FakeSlack, smtp: FakeSMTPServer, hook: FakeWebhookReceiver
) -> None:
    _configure(monitor, slack, smtp, hook)
    monitor.upstream.records.update(clone_records(10, first_id=5000))
    slugs = [s for s in monitor.upstream.records if s[-1].isdigit()]
    assert len(slugs) == 10
    assert monitor.run("watch", *slugs).exit_code == 0
    slack.clear(), hook.clear()
    smtp.mails.clear()
    for slug in slugs:
        monitor.upstream.records[slug]["pypi_version"] = "99.0"
    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    assert len(slack.messages) == 1 and len(smtp.messages) == 1 and len(hook.events) == 1
    # Each package fires major-version-bump (superseding pypi-version-changed): 10 alerts, one
    # message.
    assert len(hook.events[0]["data"]["alerts"]) == 10
    # (Python folds a 70-77 character subject right after "Subject:"; its parser keeps the
    # space that folding leaves.)
    subject = smtp.messages[0]["Subject"].strip()
    assert subject.startswith("[monitor] 10 alerts (10 warning): ")
    assert subject.endswith(" +8 more")


def test_secrets_never_appear_in_output(
    monitor: Monitor, slack: FakeSlack, smtp: FakeSMTPServer, hook: FakeWebhookReceiver
) -> None:
    _configure(monitor, slack, smtp, hook)
    monitor.run("watch", "django-otp")
    slack.queue(*[Reply.slack_error("invalid_auth")])
    smtp.queue(*[535] * 3)
    hook.queue(403)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    outputs = [
        monitor.run("check", "--json"),
        monitor.run("alerts", "--json"),
        monitor.run("alerts", "--all"),
        monitor.run("notify-test", "hook"),
    ]
    hook.queue(403)
    outputs.append(monitor.run("notify-test", "hook"))
    store = monitor.store()
    recorded = json.dumps(store.query("SELECT error FROM attempts")) + json.dumps(
        store.query("SELECT last_error FROM outbox")
    )
    store.close()
    everything = "".join(r.stdout + r.stderr for r in outputs) + recorded
    # every channel failed, so every error path (and its redaction) ran
    assert "invalid_auth" in recorded and "403" in recorded and "535" in recorded
    for secret in (TOKEN, PASSWORD, SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in everything


def test_notify_test_reports_success_and_the_exact_error(
    monitor: Monitor, hook: FakeWebhookReceiver
) -> None:
    _webhook_only(monitor, hook)
    result = monitor.run("notify-test", "hook")
    assert result.exit_code == 0 and "hook: test message delivered" in result.stdout
    assert hook.requests[0].verified is True
    hook.queue(410)
    result = monitor.run("notify-test", "hook")
    assert result.exit_code == 1 and "410" in result.stderr
    assert monitor.run("notify-test", "nope").exit_code == 2


def test_an_undelivered_line_names_the_channel_once(
    monitor: Monitor, hook: FakeWebhookReceiver
) -> None:
    _webhook_only(monitor, hook)
    monitor.run("watch", "django-otp")
    hook.queue(*[503] * 12)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    result = monitor.run("check")
    assert result.exit_code == 1
    [line] = [line for line in result.stdout.splitlines() if "undelivered" in line]
    assert line.strip().startswith("undelivered: hook: pending: HTTP 503 from webhook")
    assert line.count(" hook: ") == 1


def test_an_unset_notifier_variable_is_needed_only_by_that_channel(
    monitor: Monitor, slack: FakeSlack, hook: FakeWebhookReceiver
) -> None:
    monitor.env.update({"WEBHOOK_SECRET": SECRET})  # SLACK_BOT_TOKEN is not set
    monitor.configure(f"""
        [defaults]
        notify = ["team-slack", "hook"]

        [notifiers.team-slack]
        type = "slack"
        token = "${{SLACK_BOT_TOKEN}}"
        channel = "#deps"
        api_url = "{slack.api_url}"

        [notifiers.hook]
        type = "webhook"
        url = "{hook.hook_url}"
        secret = "${{WEBHOOK_SECRET}}"
        """)
    assert monitor.run("watch", "django-otp").exit_code == 0
    assert monitor.run("list").exit_code == 0
    assert monitor.run("history", "django-otp").exit_code == 0

    result = monitor.run("notify-test", "team-slack")
    assert result.exit_code == 2
    assert "notifiers.team-slack.token: environment variable SLACK_BOT_TOKEN is not set" in (
        result.stderr
    )
    assert monitor.run("notify-test", "hook").exit_code == 0

    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    result = monitor.run("check")
    assert result.exit_code == 1, result.output
    assert "undelivered: team-slack: pending: " in result.stdout
    assert "SLACK_BOT_TOKEN is not set" in result.stdout
    assert len(hook.events) == 2  # the test message and the alert
    assert monitor.count("transitions") == 1
    [alert] = monitor.json("alerts")
    deliveries = {d["channel"]: d for d in alert["deliveries"]}
    assert deliveries["team-slack"]["status"] == "pending"
    assert "notifiers.team-slack.token" in deliveries["team-slack"]["last_error"]
    assert slack.messages == []

    monitor.env["SLACK_BOT_TOKEN"] = TOKEN
    monitor.clock.advance(hours=1)
    assert monitor.run("check").exit_code == 0
    [message] = slack.messages
    assert "django-otp 1.7.0 → 1.8.0" in message["text"]
    assert len(hook.events) == 2  # nothing sent twice
