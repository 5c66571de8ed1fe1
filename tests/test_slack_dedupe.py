"""Issue 10, item 14: a `check` SIGKILLed while Slack holds its answer leaves one message, not
two: the next sender finds the message by the group id it carries and records it delivered.
A message that never reached Slack is posted again (at-least-once)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Monitor
from tests.fakes import TOKEN, FakeSlack, Reply

ROOT = Path(__file__).parent.parent


@pytest.fixture
def slack(bot_slack: FakeSlack) -> FakeSlack:
    return bot_slack


def _killed_mid_send(monitor: Monitor, slack: FakeSlack, held: Reply) -> None:
    """A real `monitor check` process, SIGKILLed while Slack holds its answer to the post."""
    monitor.env["SLACK_TOKEN"] = TOKEN
    monitor.configure(f"""
        [defaults]
        notify = ["slack"]

        [notifiers.slack]
        type = "slack"
        token = "${{SLACK_TOKEN}}"
        channel = "#deps"
        api_url = "{slack.api_url}"
        """)
    assert monitor.run("watch", "django-otp").exit_code == 0
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    slack.queue(held)
    child = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(monitor.config_path), "check"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "SLACK_TOKEN": TOKEN},
    )
    deadline = time.monotonic() + 30
    while not slack.calls("chat.postMessage"):
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    # Once the killed process's lease has expired, the next check takes the group over.
    monitor.clock.now = datetime.now(UTC) + timedelta(minutes=5)


def _delivery(monitor: Monitor) -> dict:
    (alert,) = monitor.json("alerts")
    (delivery,) = alert["deliveries"]
    return delivery


def test_a_post_slack_took_is_found_and_not_posted_again(
    monitor: Monitor, slack: FakeSlack
) -> None:
    answer = {"ok": True, "channel": FakeSlack.CHANNEL_ID, "ts": "1.0"}
    _killed_mid_send(monitor, slack, Reply(200, json=answer, delay=60))
    assert len(slack.messages) == 1  # Slack has it; the sender died before hearing so

    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    (message,) = slack.messages
    assert "django-otp 1.7.0 → 1.8.0" in message["text"]
    assert message["metadata"]["event_type"] == "monitor_alert_group"
    (lookup,) = slack.calls("conversations.history")
    assert lookup.query["channel"] == FakeSlack.CHANNEL_ID
    assert _delivery(monitor)["status"] == "delivered"
    store = monitor.store()
    try:
        outcomes = [r["outcome"] for r in store.query("SELECT outcome FROM attempts ORDER BY id")]
    finally:
        store.close()
    assert outcomes == ["interrupted", "delivered"]


def test_a_post_that_never_reached_slack_is_posted_again(
    monitor: Monitor, slack: FakeSlack
) -> None:
    # Slack holds the connection and never takes the message (it answers 503 at last).
    _killed_mid_send(monitor, slack, Reply(503, delay=60))
    assert slack.messages == []

    assert monitor.run("check").exit_code == 0
    (message,) = slack.messages
    assert "django-otp 1.7.0 → 1.8.0" in message["text"]
    assert len(slack.calls("conversations.history")) == 1
    assert _delivery(monitor)["status"] == "delivered"
