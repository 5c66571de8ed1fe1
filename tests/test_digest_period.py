"""The digest's period and clock (SPEC §8): named after its length, not always "weekly"; the
scheduled one covers the time since the cron's previous fire time; times are shown in
``[schedule] timezone``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.config import load_config
from monitor.digest import (
    Digest,
    build_digest,
    digest_subject,
    queue_scheduled_digest,
    render_html,
    render_text,
    scheduled_period,
)
from monitor.store import Store
from tests.conftest import Monitor
from tests.test_digest import NOW, History, ago, record


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


@pytest.mark.parametrize(
    ("since", "until", "timezone", "name"),
    [
        ("2026-11-21T08:00Z", "2026-11-22T08:00Z", "UTC", "daily digest"),
        ("2026-11-15T08:00Z", "2026-11-22T08:00Z", "UTC", "weekly digest"),
        # 08:00 to 08:00 in Amsterdam while the clocks go forward: 23 hours, one day
        ("2026-03-28T07:00Z", "2026-03-29T06:00Z", "Europe/Amsterdam", "daily digest"),
        ("2026-03-28T07:00Z", "2026-03-29T06:00Z", "UTC", "digest (23h)"),
        ("2026-10-01T06:00Z", "2026-11-01T07:00Z", "Europe/Amsterdam", "monthly digest"),
        ("2026-11-20T08:00Z", "2026-11-23T08:00Z", "UTC", "digest (3d)"),  # mon-fri, on Monday
        ("2026-11-08T08:00Z", "2026-11-22T08:00Z", "UTC", "digest (14d)"),
        ("2026-11-22T00:00Z", "2026-11-22T12:00Z", "UTC", "digest (12h)"),
    ],
    ids=["day", "week", "dst-day", "23h", "month", "weekend", "two-weeks", "half-day"],
)
def test_period_name(since: str, until: str, timezone: str, name: str) -> None:
    totals = dict.fromkeys(("packages", "firing", "fired", "resolved", "failures", "releases"), 0)
    digest = Digest(utc(since), utc(until), [], totals, timezone)
    assert digest_subject(digest) == f"[monitor] {name}: 0 packages, 0 firing"
    assert render_text(digest).startswith(f"monitor {name}: ")
    assert f">monitor {name}</h1>" in render_html(digest)


@pytest.mark.parametrize(
    ("cron", "timezone", "now", "fire", "span"),
    [
        ("0 8 * * *", "UTC", "2026-11-22T08:00:00.300Z", "2026-11-22T08:00Z", timedelta(days=1)),
        ("0 8 * * mon", "UTC", "2026-11-23T08:00:01Z", "2026-11-23T08:00Z", timedelta(days=7)),
        ("0 8 * * 1-5", "UTC", "2026-11-23T08:00Z", "2026-11-23T08:00Z", timedelta(days=3)),
        ("0 8 * * 1-5", "UTC", "2026-11-24T08:00Z", "2026-11-24T08:00Z", timedelta(days=1)),
        (
            "0 8 * * *",
            "Europe/Amsterdam",
            "2026-03-29T06:00:00.5Z",
            "2026-03-29T06:00Z",
            timedelta(hours=23),
        ),
        ("0 */6 * * *", "UTC", "2026-11-22T12:00:02Z", "2026-11-22T12:00Z", timedelta(hours=6)),
    ],
    ids=["daily", "weekly", "weekdays-monday", "weekdays-tuesday", "daily-dst", "6-hourly"],
)
def test_scheduled_period_is_since_the_previous_fire_time(
    cron: str, timezone: str, now: str, fire: str, span: timedelta
) -> None:
    assert scheduled_period(cron, timezone, utc(now)) == (utc(fire), span)


@pytest.mark.parametrize(
    ("cron", "timezone", "subject"),
    [
        ("0 8 * * *", "UTC", "[monitor] daily digest: "),
        ("0 8 * * mon", "UTC", "[monitor] weekly digest: "),
        ("0 */4 * * *", "UTC", "[monitor] digest (4h): "),
        ("0 9 * * *", "Europe/Amsterdam", "[monitor] daily digest: "),
    ],
    ids=["daily", "weekly", "4-hourly", "daily-amsterdam"],
)
def test_scheduled_digest_names_its_period(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch, cron: str, timezone: str, subject: str
) -> None:
    monitor.configure(f"""\
        digest = "{cron}"
        timezone = "{timezone}"
        """)
    monitor.run("watch", "django-otp")
    queued: list[dict[str, Any]] = []

    def queue_group(*args: Any, digest: dict[str, Any], **kwargs: Any) -> str:
        queued.append(digest)
        return "group"

    monkeypatch.setattr("monitor.outbox.queue_group", queue_group)
    config = load_config(monitor.config_path)
    store = monitor.store()
    try:
        # Monday 23 November 2026, 08:00 UTC = 09:00 in Amsterdam: every cron above fires.
        fired = datetime(2026, 11, 23, 8, 0, 0, 400_000, tzinfo=UTC)
        assert queue_scheduled_digest(store, config, now=fired) == ["group"]
    finally:
        store.close()
    (content,) = queued
    assert content["subject"].startswith(subject)
    assert content["text"].startswith("monitor " + subject.removeprefix("[monitor] "))
    assert "weekly" not in content["html"] or "weekly" in subject


def test_times_are_shown_in_the_schedule_timezone(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    h = History(store)
    with store.transaction():
        w = h.watch("django-otp", added=ago(30))
        h.snapshot(w, ago(30), record("django-otp"))
        h.alert(w, "r", kind="condition", severity="warning", status="firing", started=ago(1.5))
    digest = build_digest(store, now=NOW, timezone="Europe/Amsterdam")
    text, html = render_text(digest), render_html(digest)
    for rendered in (text, html):
        assert "2026-11-15 11:00 CET – 2026-11-22 11:00 CET" in rendered
        assert "(since 2026-11-20 23:00 CET)" in rendered
        assert "UTC" not in rendered
    assert build_digest(store, now=NOW).since == digest.since  # data stays in UTC
    sao_paulo = render_text(build_digest(store, now=NOW, timezone="America/Sao_Paulo"))
    assert sao_paulo.startswith("monitor weekly digest: 2026-11-15 07:00 UTC-03 – ")
    store.close()


def test_digest_command_shows_the_configured_timezone(monitor: Monitor) -> None:
    monitor.configure('timezone = "Asia/Tokyo"\n')
    monitor.run("watch", "django-otp")
    result = monitor.run("digest", "--since", "1d")
    assert result.exit_code == 0, result.output
    # the fake clock's 2026-11-22 10:00 UTC is 19:00 in Tokyo
    assert result.stdout.startswith(
        "monitor daily digest: 2026-11-21 19:00 JST – 2026-11-22 19:00 JST\n"
    )
