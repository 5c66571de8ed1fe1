"""Issue 10, items 5 and 10: what a channel sends is bounded whatever the upstream text, and
whatever a receiver answers never brings a configured secret into the output or the database."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import Monitor
from tests.fakes import FakeSlack, FakeWebhookReceiver, Reply

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
