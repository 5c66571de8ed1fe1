"""Issue 9: mutes, status and the database in use, through the CLI (SPEC §4)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.cli import Runtime, cli
from tests.conftest import FIVE, Monitor
from tests.fakeupstream import unused_url


@pytest.mark.parametrize("command", ["list", "status", "mutes", "alerts", "history"])
def test_read_only_commands_create_no_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [command, "django-otp"] if command == "history" else [command]
    result = CliRunner().invoke(cli, args, obj=Runtime(env={}), catch_exceptions=False)
    assert result.exit_code == (1 if command == "history" else 0), result.output
    assert list(tmp_path.iterdir()) == []
    if command in ("list", "history"):
        assert f"{tmp_path / 'monitor.db'} (not created yet; config: built-in defaults" in (
            result.output
        )


def test_list_names_the_database_and_config_when_nothing_is_watched(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    monitor.run("unwatch", "django-otp")
    result = monitor.run("list")
    assert result.stdout.strip() == (
        f"no packages watched in {monitor.tmp_path / 'monitor.db'}"
        f" (config: {monitor.config_path}); add one with: monitor watch SLUG"
    )


def test_mutes_lists_active_mutes(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp", "django-mfa")
    assert monitor.run("mute", "django-otp", "--comment", "known\x1b[31m").exit_code == 0
    monitor.run("mute", "django-mfa", "--rule", "no-commits-26-weeks", "--for", "2d")
    monitor.run("mute", "django-mfa", "--rule", "pypi-version-changed", "--for", "1h")
    monitor.clock.advance(hours=2)  # the 1h mute is over

    user = getpass.getuser()  # who set a mute from the command line
    assert monitor.json("mutes") == [
        {
            "package": "django-mfa",
            "rule": "no-commits-26-weeks",
            "until": "2026-11-24T10:00:00Z",
            "comment": None,
            "created_at": "2026-11-22T10:00:00Z",
            "set_by": user,
        },
        {
            "package": "django-otp",
            "rule": None,
            "until": None,
            "comment": "known\x1b[31m",
            "created_at": "2026-11-22T10:00:00Z",
            "set_by": user,
        },
    ]
    lines = monitor.run("mutes").stdout.splitlines()
    assert lines[0].split() == ["package", "rule", "until", "set", "by", "comment"]
    assert lines[1].split() == [
        "django-mfa",
        "no-commits-26-weeks",
        "2026-11-24T10:00:00Z",
        "2026-11-22T10:00:00Z",
        user,
        "-",
    ]
    assert lines[2].split()[:6] == [
        "django-otp",
        "all",
        "forever",
        "2026-11-22T10:00:00Z",
        user,
        "known",
    ]
    assert "\x1b" not in monitor.run("mutes").stdout  # control characters stripped

    listed = {i["slug"]: i for i in monitor.json("list")}
    assert (listed["django-otp"]["muted"], listed["django-otp"]["muted_rules"]) == (True, [])
    assert (listed["django-mfa"]["muted"], listed["django-mfa"]["muted_rules"]) == (
        False,
        ["no-commits-26-weeks"],
    )
    rows = {line.split()[0]: line.split() for line in monitor.run("list").stdout.splitlines()}
    assert rows["package"][-1] == "muted"
    assert rows["django-otp"][-1] == "all" and rows["django-mfa"][-1] == "no-commits-26-weeks"

    alerts = monitor.run("alerts").stdout
    assert "no-commits-26-weeks django-mfa since 2026-11-22T10:00:00Z (muted)" in alerts

    monitor.run("unmute", "django-otp")
    monitor.run("unmute", "django-mfa")
    assert monitor.run("mutes").stdout.strip() == "no active mutes"


def test_status_shows_cycle_due_sources_deliveries_mutes_and_paths(monitor: Monitor) -> None:
    monitor.configure(
        f"""
        [defaults]
        notify = ["hook"]

        [notifiers.hook]
        type = "webhook"
        url = "{unused_url()}/"  # nothing listens: deliveries stay pending
        """
    )
    monitor.run("watch", *FIVE)
    monitor.run("mute", "django-otp")
    monitor.clock.advance(hours=1)
    monitor.upstream.records["django-mfa"]["repo_watchers"] = "many"
    checked_at = monitor.clock().isoformat().replace("+00:00", "Z")
    monitor.run("check")

    status = monitor.json("status")
    assert status["database"] == str(monitor.tmp_path / "monitor.db")
    assert status["database_exists"] is True
    assert status["config"] == str(monitor.config_path)
    assert status["watches"] == 5
    assert status["daemon"] is None  # `run` never ticked on this database
    assert status["last_cycle"] == {"at": checked_at, "failed": 1, "unchanged": 4}
    assert status["due_now"] == 0
    assert status["next_due"][0]["slug"] == "django-mfa"
    assert status["next_due"][0]["at"] > checked_at
    source = status["sources"]["djangopackages"]
    assert source["url"] == monitor.upstream.url and source["failing"] == 1
    assert source["last_error"]["package"] == "django-mfa"
    assert "repo_watchers" in source["last_error"]["error"]
    assert status["deliveries"] == {"pending": 1, "failed": 0}
    assert [m["package"] for m in status["mutes"]] == ["django-otp"]

    text = monitor.run("status").stdout
    assert f"database:   {monitor.tmp_path / 'monitor.db'}" in text
    assert f"config:     {monitor.config_path}" in text
    assert f"last cycle: {checked_at}: 1 failed, 4 unchanged" in text
    assert f"1 failing; last error {checked_at}: django-mfa: field 'repo_watchers'" in text
    assert "deliveries: 1 pending, 0 failed" in text
    assert "mutes:      1 active (see: monitor mutes)" in text
    json.dumps(status)
