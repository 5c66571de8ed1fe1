"""Watching what is already watched (SPEC §4, issue 9): only the options given change, and a
grid's members that are already watched are not re-fetched, so their news reaches the next
poll, which alerts on it. Through the CLI against the fake upstream."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Monitor

OTP = "django-otp"
CI = '[notifiers.ci]\ntype = "webhook"\nurl = "http://127.0.0.1:9/hook"\n'


@pytest.fixture
def team(monitor: Monitor) -> Monitor:
    """django-otp watched with both options set: alerts to `ci`, polled daily."""
    monitor.configure(CI)
    result = monitor.run("watch", OTP, "--notify", "ci", "--interval", "1d")
    assert result.exit_code == 0, result.output
    return monitor


def options(monitor: Monitor, slug: str = OTP) -> tuple[list[str], str | None]:
    (item,) = [i for i in monitor.json("list") if i["slug"] == slug]
    return item["notify"], item["interval"]


def next_due(monitor: Monitor, slug: str = OTP) -> Any:
    store = monitor.store()
    try:
        (row,) = store.query("SELECT next_due_at FROM watches WHERE slug = ?", (slug,))
    finally:
        store.close()
    return row["next_due_at"]


RE_WATCHES = [
    # id, extra arguments, options after, whether the next poll is moved, what it says
    ("interval-alone", ["--interval", "2h"], (["ci"], "2h"), True, "interval 2h (was 1d)"),
    (
        "notify-alone",
        ["--notify", "console"],
        (["console"], "1d"),
        False,
        "notify console (was ci)",
    ),
    ("plain", [], (["ci"], "1d"), False, "already watched, nothing changed"),
    ("same-options", ["--interval", "1d"], (["ci"], "1d"), False, "nothing changed"),
]


@pytest.mark.parametrize(
    ("args", "after", "moved", "says"),
    [pytest.param(*case[1:], id=case[0]) for case in RE_WATCHES],
)
def test_re_watching_changes_only_the_options_given(
    team: Monitor, args: list[str], after: tuple[list[str], str | None], moved: bool, says: str
) -> None:
    due = next_due(team)
    fetched = team.upstream.package_requests

    result = team.run("watch", OTP, *args)

    assert result.exit_code == 0, result.output
    assert options(team) == after
    assert says in result.stdout
    assert (next_due(team) != due) is moved
    assert team.upstream.package_requests == fetched  # options only, never a re-fetch


def test_a_package_watched_again_after_unwatch_keeps_its_options_unless_given(
    team: Monitor,
) -> None:
    assert team.run("unwatch", OTP).exit_code == 0

    result = team.run("watch", OTP, "--interval", "6h")

    assert result.exit_code == 0, result.output
    assert options(team) == (["ci"], "6h")
    assert "keeps its earlier --notify ci" in result.stdout


def test_options_of_watched_packages_are_not_changed_when_the_watch_fails(team: Monitor) -> None:
    result = team.run("watch", OTP, "django-otpp", "--interval", "2h")
    assert result.exit_code == 1
    assert options(team) == (["ci"], "1d")


# -- grids ---------------------------------------------------------------------------------


def test_watch_grid_does_not_swallow_a_watched_members_new_release(monitor: Monitor) -> None:
    assert monitor.run("watch", OTP).exit_code == 0
    monitor.upstream.records[OTP]["pypi_version"] = "1.8.0"
    monitor.upstream.add_grid("two-factor", [OTP, "django-two-factor-auth"], id=7)
    monitor.upstream.reset()

    result = monitor.run("watch", "--grid", "two-factor", "--notify", "console")

    assert result.exit_code == 0, result.output
    assert "watching django-two-factor-auth" in result.stdout
    assert f"watching {OTP}" not in result.stdout
    assert monitor.upstream.requests["/api/v4/packages/1867/"] == 0  # django-otp: not re-fetched
    assert options(monitor) == (["console"], None)

    report = monitor.json("check", OTP)
    assert report["changed"] == [
        {"slug": OTP, "changes": [{"field": "pypi_version", "old": "1.7.0", "new": "1.8.0"}]}
    ]
    assert [(t["rule"], t["package"]) for t in report["transitions"]] == [
        ("pypi-version-changed", OTP)
    ]


def test_watch_grid_of_watched_members_only_fetches_nothing(monitor: Monitor) -> None:
    assert monitor.run("watch", OTP, "django-two-factor-auth").exit_code == 0
    monitor.upstream.add_grid("two-factor", [OTP, "django-two-factor-auth"], id=7)
    monitor.upstream.reset()

    result = monitor.run("watch", "--grid", "7")

    assert result.exit_code == 0, result.output
    assert monitor.upstream.package_requests == 0
    assert result.stdout.count("already watched, nothing changed") == 2
