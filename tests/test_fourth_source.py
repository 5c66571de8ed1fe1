"""Adding a fourth source is its module plus a registry line (issue 11, done-when 6): the
source in tests/fourth_source.py is registered here, and from then on its config table, its
fields in rules and history, its secret and its failures work through the real CLI."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

from monitor import fields
from monitor.sources import SOURCES
from tests.conftest import Monitor
from tests.fakeupstream import FakeUpstream, load_fixtures
from tests.fourth_source import REGISTERED, FakeDownloads
from tests.sourceworld import World

OTP = "django-otp"
KEY = "k-123"
RULE = """\
rules:
  - id: few-downloads
    when: downloads.last_month < 1000
    severity: warning
    message: "{{ slug }} was downloaded {{ downloads.last_month }} times last month"
"""


@pytest.fixture
def registered() -> Iterator[None]:
    """The registry line, and the field registry re-read (it is cached per process)."""
    SOURCES["downloads"] = REGISTERED
    _forget_fields()
    yield
    del SOURCES["downloads"]
    _forget_fields()


def _forget_fields() -> None:
    for cached in (fields.known, fields.source_of, fields.of_source):
        cached.cache_clear()


@pytest.fixture
def downloads() -> FakeDownloads:
    return FakeDownloads(KEY)


@pytest.fixture
def upstream(downloads: FakeDownloads) -> Iterator[Any]:
    world = World(load_fixtures())
    with FakeUpstream.in_thread(apis=[*world.apis, downloads]) as up:
        up.world = world  # type: ignore[attr-defined]
        yield up


def _configure(monitor: Monitor, *, enabled: bool = True) -> None:
    (monitor.tmp_path / "team.yaml").write_text(RULE)
    monitor.configure(
        textwrap.dedent(f"""\
        [rules]
        paths = ["team.yaml"]

        [sources.downloads]
        url = "{monitor.upstream.url}"
        timeout = "2s"
        enabled = {str(enabled).lower()}
        api_key = "${{PYPISTATS_KEY}}"
        """)
    )


def test_a_registered_source_is_configured_polled_shown_and_read_by_rules(
    monitor: Monitor, downloads: FakeDownloads, registered: None
) -> None:
    monitor.env = {"PYPISTATS_KEY": KEY}
    _configure(monitor)
    downloads.downloads[OTP] = 5000
    watched = monitor.run("watch", OTP)
    assert watched.exit_code == 0, watched.output
    (baseline,) = monitor.json("history", OTP)
    assert baseline["snapshot"]["downloads.last_month"] == 5000
    (listed,) = monitor.json("list")
    assert listed["sources"]["downloads"] == OTP

    downloads.downloads[OTP] = 400
    monitor.clock.advance(hours=7)
    report = monitor.json("check")
    assert report["changed"] == [
        {"slug": OTP, "changes": [{"field": "downloads.last_month", "old": 5000, "new": 400}]}
    ]
    (transition,) = report["transitions"]
    assert (transition["rule"], transition["status"]) == ("few-downloads", "firing")
    assert transition["summary"] == f"{OTP} was downloaded 400 times last month"


def test_a_registered_source_fails_under_its_own_name(
    monitor: Monitor, downloads: FakeDownloads, registered: None
) -> None:
    monitor.env = {"PYPISTATS_KEY": "wrong"}  # the fake answers 403
    _configure(monitor)
    downloads.downloads[OTP] = 5000
    monitor.run("watch", OTP)
    monitor.clock.advance(hours=7)
    result = monitor.run("check", "--json")
    assert result.exit_code == 1
    (failure,) = json.loads(result.stdout)["failed"]
    assert failure["source"] == "downloads" and "pypistats" in failure["error"]


def test_its_secret_is_needed_only_when_it_polls(
    monitor: Monitor, downloads: FakeDownloads, registered: None
) -> None:
    _configure(monitor, enabled=False)  # PYPISTATS_KEY unset: a disabled source never needs it
    assert monitor.run("watch", OTP).exit_code == 0
    assert downloads.requests == 0

    _configure(monitor)
    result = monitor.run("check")
    assert result.exit_code == 2
    assert "sources.downloads.api_key: environment variable PYPISTATS_KEY is not set" in (
        result.stderr
    )


def test_its_keys_and_fields_are_checked_like_the_shipped_ones(
    monitor: Monitor, registered: None
) -> None:
    monitor.configure('[sources.downloads]\napi_kee = "x"\n')
    result = monitor.run("list")
    assert result.exit_code == 2 and "did you mean 'api_key'" in result.stderr

    (monitor.tmp_path / "typo.yaml").write_text(RULE.replace("last_month <", "last_mnth <"))
    result = monitor.run("rules", "check", str(monitor.tmp_path / "typo.yaml"))
    assert result.exit_code == 2 and "did you mean 'downloads.last_month'" in result.stderr


def test_without_the_registry_line_its_table_is_an_unknown_key(monitor: Monitor) -> None:
    monitor.configure('[sources.downloads]\napi_key = "x"\n')
    result = monitor.run("list")
    assert result.exit_code == 2 and "sources.downloads: unknown key" in result.stderr
