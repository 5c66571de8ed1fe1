"""Issue 10, items 5 and 10: what a channel sends is bounded whatever the upstream text, and
whatever a receiver answers never brings a configured secret into the output or the database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from monitor.notify import email as email_notifier
from monitor.notify import webhook as webhook_notifier
from tests.conftest import Monitor
from tests.fakes import SECRET, TOKEN, FakeSlack, FakeSMTPServer, FakeWebhookReceiver, Reply
from tests.fakeupstream import clone_records

# -- item 10: secrets echoed back by a receiver ----------------------------------------------

HOOK_SECRETS = ("T0K3N", "S3CR3T")
SLACK_SECRETS = tuple(FakeSlack.WEBHOOK_PATH.split("/")[3:])  # T…, B…, and the token itself


@pytest.fixture
def plain_hook() -> Iterator[FakeWebhookReceiver]:
    with FakeWebhookReceiver() as server:
        yield server


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def _every_output(monitor: Monitor, channel: str) -> str:
    """A change that fails to deliver, then every place its error is shown or stored."""
    monitor.run("watch", "django-otp")
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    results = [monitor.run("check"), monitor.run("alerts"), monitor.run("alerts", "--json")]
    results.append(monitor.run("notify-test", channel))
    store = monitor.store()
    try:
        stored = json.dumps(
            store.query("SELECT error FROM attempts") + store.query("SELECT last_error FROM outbox")
        )
    finally:
        store.close()
    return "".join(r.stdout + r.stderr for r in results) + stored


ECHOES = {
    "request-line": Reply.echoing(400),
    "request-line-cut": Reply.echoing(400, prefix="no such hook: " + "x" * 170),
    "path-only": Reply(400, body="unknown hook T0K3N"),
    "query-as-json": Reply(400, json={"error": "bad key", "key": "S3CR3T"}),
}


@pytest.mark.parametrize("echo", ECHOES.values(), ids=ECHOES.keys())
def test_a_webhook_url_echoed_back_is_redacted_everywhere(
    monitor: Monitor, plain_hook: FakeWebhookReceiver, echo: Reply
) -> None:
    monitor.configure(f"""
        [defaults]
        notify = ["hook"]

        [notifiers.hook]
        type = "webhook"
        url = "{plain_hook.url}/hooks/T0K3N?key=S3CR3T"
        """)
    plain_hook.queue(echo, echo)  # the alert, then notify-test
    everything = _every_output(monitor, "hook")
    assert "HTTP 400 from webhook" in everything and "[redacted]" in everything
    for secret in HOOK_SECRETS:
        assert secret not in everything


def test_a_slack_webhook_url_echoed_back_is_redacted_everywhere(
    monitor: Monitor, slack: FakeSlack
) -> None:
    monitor.configure(f"""
        [defaults]
        notify = ["team"]

        [notifiers.team]
        type = "slack"
        webhook_url = "{slack.webhook_url}"
        """)
    slack.queue(Reply.echoing(400, prefix="invalid_blocks "), Reply.echoing(400))
    everything = _every_output(monitor, "team")
    assert "invalid_blocks" in everything and "[redacted]" in everything
    for secret in SLACK_SECRETS:
        assert secret not in everything


# -- item 5: every channel's message is bounded -----------------------------------------------

PEOPLE_RULE = """\
rules:
  - id: people-changed
    description: The title or the participants changed
    when: changed("participants") or changed("title")
    severity: warning
"""


@pytest.fixture
def smtp() -> Iterator[FakeSMTPServer]:
    with FakeSMTPServer() as server:
        yield server


def _every_channel(
    monitor: Monitor, slack: FakeSlack, smtp: FakeSMTPServer, hook: FakeWebhookReceiver
) -> None:
    monitor.env.update({"SLACK_TOKEN": TOKEN, "WEBHOOK_SECRET": SECRET})
    (monitor.tmp_path / "people.yaml").write_text(PEOPLE_RULE)
    monitor.configure(f"""
        [rules]
        paths = ["people.yaml"]

        [defaults]
        notify = ["slack", "mail", "hook"]

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
        from = "monitor@example.com"
        to = ["deps@example.com"]

        [notifiers.hook]
        type = "webhook"
        url = "{hook.hook_url}"
        secret = "${{WEBHOOK_SECRET}}"
        """)


HOSTILE_TITLE = "<&>" * 350_000  # 1 MB, and five times that once escaped for Slack
PEOPLE = [f"user-{i}" for i in range(100_000)]


def test_a_1mb_title_and_100k_participants_fit_every_channel(
    monitor: Monitor, bot_slack: FakeSlack, smtp: FakeSMTPServer, hook: FakeWebhookReceiver
) -> None:
    _every_channel(monitor, bot_slack, smtp, hook)
    assert monitor.run("watch", "django-otp").exit_code == 0
    record = monitor.upstream.records["django-otp"]
    record["title"], record["participants"] = HOSTILE_TITLE, PEOPLE
    result = monitor.run("check")
    assert result.exit_code == 0, result.output

    (request,) = hook.requests
    assert request.verified is True and len(request.body) <= 256 * 1024
    (alert,) = request.json()["data"]["alerts"]
    assert alert["title"].endswith("…") and len(alert["title"]) <= 2000
    people = next(c for c in alert["changes"] if c["field"] == "participants")
    assert people["new"] == PEOPLE[:20] and people["counts"]["new"] == 100_000

    (message,) = bot_slack.messages
    assert len(message["blocks"]) <= 50 and len(message["text"]) <= 40_000
    for block in message["blocks"]:
        limit = 150 if block["type"] == "header" else 3000
        for text in [block.get("text", {}), *block.get("elements", [])]:
            assert len(text.get("text", "")) <= limit
    assert "…" in json.dumps(message["blocks"], ensure_ascii=False)

    (mail,) = smtp.messages
    for kind in ("plain", "html"):
        part = mail.get_body((kind,)).get_content()
        assert len(part) <= 256 * 1024 and "…" in part


def test_alerts_past_the_cap_are_counted_not_sent(
    monitor: Monitor,
    bot_slack: FakeSlack,
    smtp: FakeSMTPServer,
    hook: FakeWebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Smaller caps than the real ones, so twelve alerts with long titles overflow them.
    monkeypatch.setattr(email_notifier, "MAX_PART", 12_000)
    monkeypatch.setattr(webhook_notifier, "MAX_BODY", 12_000)
    _every_channel(monitor, bot_slack, smtp, hook)
    monitor.upstream.records.update(clone_records(12, first_id=5000))
    slugs = [s for s in monitor.upstream.records if s[-1].isdigit()]
    assert monitor.run("watch", *slugs).exit_code == 0
    hook.clear()
    smtp.mails.clear()
    for slug in slugs:
        monitor.upstream.records[slug]["title"] = "&" * 3000
    assert monitor.run("check").exit_code == 0

    (request,) = hook.requests
    data = request.json()["data"]
    assert request.verified is True and len(request.body) <= 12_000
    assert data["truncated"] > 0 and len(data["alerts"]) + data["truncated"] == 12
    (mail,) = smtp.messages
    for kind in ("plain", "html"):
        part = mail.get_body((kind,)).get_content()
        assert len(part) <= 12_000 and " more alerts" in part
