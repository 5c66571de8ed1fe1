"""End to end through the CLI, against the fake upstream on 127.0.0.1 (SPEC §4, §9)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.conftest import FIVE, Monitor
from tests.fakeupstream import Fault


def test_watch_stores_five_and_list_shows_them(monitor: Monitor) -> None:
    result = monitor.run("watch", *FIVE)
    assert result.exit_code == 0, result.output
    assert "watching django-otp (1.7.0, 621 stars)" in result.stdout

    listed = {item["slug"]: item for item in monitor.json("list")}
    assert sorted(listed) == FIVE
    otp = listed["django-otp"]
    assert (otp["pypi_version"], otp["repo_watchers"], otp["repo_forks"]) == ("1.7.0", 621, 117)
    assert otp["last_checked"] == "2026-11-22T10:00:00Z"
    assert otp["last_status"] == "ok"
    assert otp["notify"] == [] and otp["interval"] is None
    assert monitor.count("snapshots") == 5


def test_change_upstream_is_reported_by_check_and_history(monitor: Monitor) -> None:
    monitor.run("watch", *FIVE)
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    monitor.upstream.records["django-otp"]["repo_watchers"] = 600
    monitor.clock.advance(hours=6)

    report = monitor.json("check")
    assert report["checked"] == 5 and report["unchanged"] == 4
    assert report["changed"] == [
        {
            "slug": "django-otp",
            "changes": [
                {"field": "pypi_version", "old": "1.7.0", "new": "1.8.0"},
                {"field": "repo_watchers", "old": 621, "new": 600},
            ],
        }
    ]

    history = monitor.json("history", "django-otp")
    assert len(history) == 2
    assert history[0]["snapshot"]["pypi_version"] == "1.7.0"
    assert history[1]["time"] == "2026-11-22T16:00:00Z"
    assert {c["field"] for c in history[1]["changes"]} == {"pypi_version", "repo_watchers"}


def test_unchanged_check_adds_no_snapshot_but_records_the_check(monitor: Monitor) -> None:
    monitor.run("watch", *FIVE)
    # djangopackages' own bookkeeping moves on every refresh: not a change.
    monitor.upstream.records["django-otp"]["last_fetched"] = "2026-11-21T10:00:00-05:00"
    monitor.upstream.records["django-otp"]["modified"] = "2026-11-21T11:30:00-05:00"
    before = monitor.count("snapshots")
    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    assert "5 unchanged, 0 changed" in result.stdout
    assert monitor.count("snapshots") == before
    assert monitor.polls() == 10
    statuses = {item["last_status"] for item in monitor.json("list")}
    assert statuses == {"unchanged"}
    # an unchanged poll is a count on its watch row and in its day's, not a row of its own;
    # the bookkeeping of the newest poll is on the watch row
    store = monitor.store()
    try:
        assert store.conn.execute("SELECT COUNT(*) FROM checks").fetchone()[0] == 0
        assert store.conn.execute("SELECT COUNT(*) FROM failed_days").fetchone()[0] == 0
        polls = store.conn.execute("SELECT slug, polls FROM watches").fetchall()
        assert sorted(tuple(row) for row in polls) == [(slug, 2) for slug in sorted(FIVE)]
        days = store.conn.execute("SELECT ok, unchanged, failed, not_found FROM poll_days")
        assert [tuple(row) for row in days] == [(5, 5, 0, 0)]
        stamps = store.conn.execute(
            "SELECT last_fetched, modified FROM watches WHERE slug = 'django-otp'"
        ).fetchone()
        assert tuple(stamps) == (
            int(datetime(2026, 11, 21, 15, tzinfo=UTC).timestamp()),
            int(datetime(2026, 11, 21, 16, 30, tzinfo=UTC).timestamp()),
        )
    finally:
        store.close()


def test_a_failed_poll_keeps_its_error_and_counts_in_its_day(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    monitor.upstream.fail("/api/v4/packages/django-otp/", [500] * 10)
    monitor.upstream.fail("/api/v4/packages/", [500] * 10)
    result = monitor.run("check")
    assert "failed" in result.output, result.output
    store = monitor.store()
    try:
        rows = store.conn.execute("SELECT status, error FROM checks").fetchall()
        assert [row[0] for row in rows] == ["failed"] and rows[0][1]
        counted = store.conn.execute("SELECT ok, failed FROM poll_days").fetchone()
        assert tuple(counted) == (1, 1)
        failed = store.conn.execute("SELECT watch_id, failed, not_found FROM failed_days")
        assert [tuple(row[1:]) for row in failed] == [(1, 0)]
    finally:
        store.close()


def test_participants_change_says_who_joined_and_left(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    record = monitor.upstream.records["django-otp"]
    leaver = record["participants"][0]
    record["participants"] = [*record["participants"][1:], "newcomer"]
    report = monitor.json("check")
    (change,) = report["changed"][0]["changes"]
    assert change["field"] == "participants"
    assert change["added"] == ["newcomer"] and change["removed"] == [leaver]


def test_watch_unknown_slug_suggests_and_stores_nothing(monitor: Monitor) -> None:
    result = monitor.run("watch", "django-otp", "django-otpp")
    assert result.exit_code == 1
    assert "error: package 'django-otpp' not found on djangopackages" in result.stderr
    assert "django-otp" in result.stderr.split("did you mean:")[1]
    assert monitor.count("watches") == 0 and monitor.count("snapshots") == 0


def test_watch_again_updates_options_without_fetching(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    fetched = monitor.upstream.package_requests
    result = monitor.run("watch", "django-otp", "--interval", "1d", "--notify", "console")
    assert result.exit_code == 0, result.output
    assert monitor.upstream.package_requests == fetched
    (item,) = monitor.json("list")
    assert item["interval"] == "1d" and item["notify"] == ["console"]


def test_watch_grid_stores_member_slugs(monitor: Monitor) -> None:
    monitor.upstream.add_grid("two-factor", ["django-otp", "django-two-factor-auth"], id=7)
    result = monitor.run("watch", "--grid", "two-factor")
    assert result.exit_code == 0, result.output
    assert [i["slug"] for i in monitor.json("list")] == ["django-otp", "django-two-factor-auth"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["history", "nope"], 1, "'nope' is not watched"),
        (["unwatch", "nope"], 1, "not watched: nope"),
        (["check", "nope"], 2, "not watched: nope"),
        (["watch", "django-otp", "--interval", "soon"], 2, "is not a duration"),
        (["watch", "django-otp", "--notify", "team-slak"], 2, "no notifier named 'team-slak'"),
        (["watch"], 2, "give package names, --grid"),
    ],
    ids=["history", "unwatch", "check", "interval", "notify", "nothing"],
)
def test_usage_errors(monitor: Monitor, args: list[str], code: int, message: str) -> None:
    result = monitor.run(*args)
    assert result.exit_code == code
    assert message in result.stderr


def test_unwatch_keeps_history_and_rewatch_continues(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    assert monitor.run("unwatch", "django-otp").exit_code == 0
    assert monitor.json("list") == []
    monitor.upstream.records["django-otp"]["repo_forks"] = 118
    monitor.run("watch", "django-otp")
    history = monitor.json("history", "django-otp")
    assert len(history) == 2 and history[1]["changes"][0]["field"] == "repo_forks"


# -- SPEC §9: polling faults, injected through the CLI ------------------------------------


def _watch_then(monitor: Monitor, faults: list[Fault | int]) -> dict:
    assert monitor.run("watch", "django-otp").exit_code == 0
    monitor.upstream.fail("django-otp", faults)
    return monitor.json("check")


def test_500_then_success_is_retried_and_ok(monitor: Monitor) -> None:
    report = _watch_then(monitor, [500])
    assert report["failed"] == [] and report["unchanged"] == 1
    assert monitor.clock.slept, "the retry backed off through the injected sleep"


@pytest.mark.parametrize(
    ("faults", "reason"),
    [
        ([500, 500, 500], "HTTP 500"),
        ([Fault.malformed()], "malformed JSON"),
        ([Fault.oversized()], "5 MB"),
        ([Fault.drop()] * 10, "django-otp"),
    ],
    ids=["5xx-after-retries", "malformed-json", "over-5mb", "connection-dropped"],
)
def test_failed_poll_stores_nothing_and_exits_1(
    monitor: Monitor, faults: list[Fault | int], reason: str
) -> None:
    report = _watch_then(monitor, faults)
    (failure,) = report["failed"]
    assert failure["slug"] == "django-otp" and reason in failure["error"]
    assert monitor.count("snapshots") == 1
    assert monitor.run("check").exit_code == 0  # the next poll works again
    assert monitor.json("list")[0]["last_status"] == "unchanged"


def test_wrong_field_type_fails_naming_package_and_field(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    monitor.upstream.records["django-otp"]["repo_watchers"] = "many"
    result = monitor.run("check", "--json")
    assert result.exit_code == 1
    (failure,) = json.loads(result.stdout)["failed"]
    assert "django-otp" in failure["error"] and "repo_watchers" in failure["error"]
    assert monitor.count("snapshots") == 1


def test_timeout_fails_the_poll(monitor: Monitor) -> None:
    monitor.configure(timeout="200ms")
    report = _watch_then(monitor, [Fault.slow(1.0)] * 3)
    (failure,) = report["failed"]
    assert "timed out" in failure["error"]


def test_connection_refused_fails_every_poll(monitor: Monitor) -> None:
    from tests.fakeupstream import unused_url

    monitor.run("watch", "django-otp")
    monitor.upstream.url = unused_url()
    monitor.configure()
    result = monitor.run("check", "--json")
    assert result.exit_code == 1
    (failure,) = json.loads(result.stdout)["failed"]
    assert "refused" in failure["error"] or "connect" in failure["error"]


def test_429_waits_for_retry_after(monitor: Monitor) -> None:
    report = _watch_then(monitor, [Fault.rate_limited(2)])
    assert report["failed"] == []
    assert 2 in monitor.clock.slept


def test_empty_commits_become_unknown_and_are_a_change(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    monitor.upstream.records["django-otp"]["commits_over_52"] = []
    report = monitor.json("check")
    (change,) = report["changed"][0]["changes"]
    assert change["field"] == "commits_over_52" and change["new"] is None


def test_404_on_check_is_not_found_not_failed(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    del monitor.upstream.records["django-otp"]
    report = monitor.json("check")
    assert report["failed"] == [] and report["not_found"] == ["django-otp"]
    assert monitor.json("list")[0]["last_status"] == "not_found"


# -- issue 9: alerts a team can trust (CLI items) -----------------------------------------


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (["watch", "django-otp", "--notify", "slak"], "--notify"),
        (["notify-test", "slak"], "notify-test"),
    ],
    ids=["watch", "notify-test"],
)
def test_unknown_channel_is_a_usage_error_with_a_suggestion(
    monitor: Monitor, args: list[str], hint: str
) -> None:
    monitor.configure('[notifiers.team-slack]\ntype = "console"\n')
    result = monitor.run(*args)
    assert result.exit_code == 2
    assert hint in result.stderr and "no notifier named 'slak'" in result.stderr
    assert "did you mean 'team-slack'?" in result.stderr
    assert "channels: console, team-slack" in result.stderr
    assert "monitor.toml" not in result.stderr  # not a config-file error
    assert monitor.upstream.package_requests == 0


@pytest.mark.parametrize(
    ("name", "choices", "expected"),
    [
        ("slak", ["console", "team-slack"], "team-slack"),
        ("team-slak", ["console", "team-slack"], "team-slack"),
        ("email", ["console", "team-email", "team-slack"], "team-email"),
        ("sevrity", ["severity", "when"], "severity"),
        ("pypi-version-chnged", ["pypi-version-changed", "forks-dropped"], "pypi-version-changed"),
        ("xyz", ["console", "team-slack"], None),
    ],
    ids=["part", "whole", "substring", "key", "rule", "nothing-near"],
)
def test_did_you_mean(name: str, choices: list[str], expected: str | None) -> None:
    from monitor.errors import did_you_mean

    assert did_you_mean(name, choices) == (f" (did you mean '{expected}'?)" if expected else "")


def test_mute_unknown_rule_suggests_the_near_one(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    result = monitor.run("mute", "django-otp", "--rule", "pypi-version-chnged")
    assert result.exit_code == 2
    assert "did you mean 'pypi-version-changed'?" in result.stderr
    assert monitor.count("mutes") == 0


@pytest.mark.parametrize(
    ("interval", "jitter", "due"),
    [
        ("1m", "5m", "2026-11-22T10:01:03Z"),  # capped at a tenth of 1m: 6s, rng 0.5 -> 3s
        ("6h", "5m", "2026-11-22T16:02:30Z"),  # under the cap: as configured
    ],
    ids=["capped", "as-configured"],
)
def test_jitter_is_capped_at_a_tenth_of_the_interval(
    monitor: Monitor, interval: str, jitter: str, due: str
) -> None:
    monitor.configure(interval=interval)
    text = monitor.config_path.read_text().replace('jitter = "0s"', f'jitter = "{jitter}"')
    monitor.config_path.write_text(text)
    assert monitor.run("watch", "django-otp").exit_code == 0
    store = monitor.store()
    try:
        (row,) = store.query("SELECT next_due_at FROM watches")
    finally:
        store.close()
    assert row["next_due_at"] == due
