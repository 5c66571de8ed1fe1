"""Issue 9, item 3: a group is rendered when it is first sent, not when it is recorded.

A notifier whose render raises fails its own channel's delivery, with the reason; every check,
snapshot and transition is still recorded and the other channels get their message (SPEC §9).
A database from before (schema 2, payload rendered at queue time) still sends the same bytes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from monitor.config import Config, NotifierConfig
from monitor.notify.slack import SlackNotifier
from monitor.notify.webhook import WebhookNotifier
from monitor.outbox import Outbox, queue_group
from monitor.store import MIGRATIONS, Store
from tests.conftest import START, FakeClock, Monitor
from tests.fakes import SECRET, FakeSlack, FakeWebhookReceiver
from tests.test_notifiers import make_notice


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def _configure(monitor: Monitor, slack: FakeSlack, hook: FakeWebhookReceiver) -> None:
    monitor.env["WEBHOOK_SECRET"] = SECRET
    monitor.configure(f"""
        [defaults]
        notify = ["team-slack", "hook"]

        [notifiers.team-slack]
        type = "slack"
        webhook_url = "{slack.webhook_url}"

        [notifiers.hook]
        type = "webhook"
        url = "{hook.hook_url}"
        secret = "${{WEBHOOK_SECRET}}"
        """)


def _broken_render(self: Any, *args: Any, **kwargs: Any) -> Any:
    raise KeyError("x")


def test_a_render_that_raises_fails_its_channel_and_everything_is_recorded(
    monitor: Monitor,
    slack: FakeSlack,
    hook: FakeWebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _configure(monitor, slack, hook)
    assert monitor.run("watch", "django-otp").exit_code == 0
    checks, snapshots = monitor.polls(), monitor.count("snapshots")
    monkeypatch.setattr(SlackNotifier, "render_alerts", _broken_render)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"

    result = monitor.run("check")
    assert result.exit_code == 1, result.output
    reason = "cannot render the message: KeyError: 'x'"
    assert f"undelivered: team-slack: failed: {reason}" in result.stdout
    assert monitor.polls() == checks + 1
    assert monitor.count("snapshots") == snapshots + 1
    assert monitor.count("transitions") == 1
    assert slack.messages == []
    [event] = hook.events  # the other channel is not affected
    assert event["data"]["alerts"][0]["summary"] == "django-otp 1.7.0 → 1.8.0"
    [alert] = monitor.json("alerts")
    deliveries = {d["channel"]: d for d in alert["deliveries"]}
    assert deliveries["hook"]["status"] == "delivered"
    assert deliveries["team-slack"]["status"] == "failed"
    assert deliveries["team-slack"]["attempts"] == 1
    assert deliveries["team-slack"]["last_error"] == f"team-slack: {reason}"
    assert reason in monitor.run("alerts").stdout

    # Permanent: not retried; and the next check records as usual.
    monitor.clock.advance(hours=7)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.9.0"
    result = monitor.run("check")
    assert result.exit_code == 1
    assert monitor.polls() == checks + 2
    assert monitor.count("transitions") == 2
    assert len(hook.events) == 2
    store = monitor.store()
    try:
        attempts = store.query("SELECT group_id FROM attempts WHERE outcome = 'failed'")
    finally:
        store.close()
    assert len(attempts) == 2  # one per group, none repeated

    monkeypatch.undo()
    monitor.clock.advance(hours=7)
    monitor.upstream.records["django-otp"]["pypi_version"] = "2.0.0"
    assert monitor.run("check").exit_code == 0
    assert len(slack.messages) == 1


def _config(hook: FakeWebhookReceiver) -> Config:
    hook_settings = {"url": hook.hook_url, "secret": SECRET}
    return Config(
        notifiers={
            "console": NotifierConfig("console", "console"),
            "hook": NotifierConfig("hook", "webhook", settings=hook_settings),
        }
    )


def _schema_2(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    db = sqlite_utils.Database(conn)
    for migrate in MIGRATIONS[:2]:
        migrate(db)
    conn.execute("PRAGMA user_version = 2")
    conn.close()


def test_a_pending_group_from_schema_2_sends_the_bytes_it_was_rendered_with(
    tmp_path: Path, hook: FakeWebhookReceiver
) -> None:
    path = tmp_path / "monitor.db"
    _schema_2(path)
    rendered = WebhookNotifier("hook", {"url": hook.hook_url, "secret": SECRET}).render_alerts(
        [make_notice()], group_id="old-group", created_at=START
    )
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "INSERT INTO outbox (id, channel, kind, created_at, payload, status, attempts,"
        " next_attempt_at) VALUES ('old-group', 'hook', 'alerts', '2026-11-22T10:00:00Z', ?,"
        " 'pending', 0, '2026-11-22T10:00:00Z')",
        (json.dumps(rendered),),
    )
    conn.close()

    store = Store(path)  # migrates to the newest schema
    try:
        assert store.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        hook.queue(503)
        clock = FakeClock(START)
        outbox = Outbox(store, _config(hook), clock=clock, sleep=clock.sleep, rng=lambda: 0.5)
        report = asyncio.run(_drain(outbox, budget=30))
    finally:
        store.close()
    assert report.delivered == ["old-group"]
    first, second = hook.requests
    assert first.body == second.body == rendered["body"].encode()
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == "old-group"
    assert second.verified


async def _drain(outbox: Outbox, budget: float) -> Any:
    try:
        return await outbox.drain(budget=budget)
    finally:
        await outbox.aclose()


def test_a_group_is_rendered_once_and_every_retry_sends_those_bytes(
    tmp_path: Path, hook: FakeWebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(tmp_path / "monitor.db")
    config = _config(hook)
    renders: list[str] = []
    render = WebhookNotifier.render_alerts

    def counting(self: Any, notices: Any, **kwargs: Any) -> Any:
        renders.append(kwargs["group_id"])
        return render(self, notices, **kwargs)

    monkeypatch.setattr(WebhookNotifier, "render_alerts", counting)
    with store.transaction():
        group = queue_group(store, config, "hook", "alerts", [make_notice()], now=START)
    [row] = store.query("SELECT payload, input FROM outbox")
    assert row["payload"] is None and json.loads(row["input"])["notices"][0]["package"]
    assert renders == []  # nothing rendered while recording

    hook.queue(500, 500)
    clock = FakeClock(START)
    for _ in range(3):  # three processes, one attempt each
        outbox = Outbox(store, config, clock=clock, sleep=clock.sleep, rng=lambda: 0.5)
        asyncio.run(_drain(outbox, budget=0))
        clock.advance(minutes=5)
    store.close()
    assert renders == [group]
    assert [r.status for r in hook.requests] == [500, 500, 200]
    assert len({r.body for r in hook.requests}) == 1
    assert {r.headers["webhook-id"] for r in hook.requests} == {group}


def test_each_attempt_is_logged_without_secrets(
    tmp_path: Path, hook: FakeWebhookReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="monitor.outbox")
    store = Store(tmp_path / "monitor.db")
    config = _config(hook)
    with store.transaction():
        group = queue_group(store, config, "hook", "alerts", [make_notice()], now=START)
    hook.queue(503, 404)
    clock = FakeClock(START)
    outbox = Outbox(store, config, clock=clock, sleep=clock.sleep, rng=lambda: 0.5)
    asyncio.run(_drain(outbox, budget=30))
    with store.transaction():
        second = queue_group(store, config, "hook", "alerts", [make_notice()], now=clock())
    outbox = Outbox(store, config, clock=clock, sleep=clock.sleep, rng=lambda: 0.5)
    asyncio.run(_drain(outbox, budget=30))
    store.close()
    records = [r for r in caplog.records if r.name == "monitor.outbox"]
    seen = [(r.levelname, r.fields["outcome"], r.fields["group"]) for r in records]  # type: ignore[attr-defined]
    assert seen == [
        ("WARNING", "retry", group),
        ("WARNING", "failed", group),
        ("INFO", "delivered", second),
    ]
    fields = [r.fields for r in records]  # type: ignore[attr-defined]
    assert [f["attempts"] for f in fields] == [1, 2, 1]
    assert all(f["channel"] == "hook" for f in fields)
    assert fields[0]["error"].startswith("hook: HTTP 503 from webhook")
    assert "error" not in fields[2]
    text = json.dumps(fields) + caplog.text
    for secret in (hook.hook_url, SECRET, SECRET.removeprefix("whsec_")):
        assert secret not in text


def test_notify_test_reports_a_render_that_raises(
    monitor: Monitor, slack: FakeSlack, hook: FakeWebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    _configure(monitor, slack, hook)
    monkeypatch.setattr(SlackNotifier, "render_test", _broken_render)
    result = monitor.run("notify-test", "team-slack")
    assert result.exit_code == 1
    assert "team-slack: cannot render the message: KeyError: 'x'" in result.stderr
    assert slack.messages == []
