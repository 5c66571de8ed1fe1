"""A hostile upstream's records (issue 10, items 1, 12 and 13; SPEC §9).

One bad record is its own package's failed poll, naming the package and the field: the
neighbours are recorded, ``check --json`` still prints its JSON, and ``poll-failing`` counts
it. Values must be plausible, not only well typed (no negative stars, no year 9999 west of
UTC), and the record's ``slug`` never names a watch: the name asked for does.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from monitor.sources import PollStatus
from monitor.sources.djangopackages import DjangoPackagesSource
from tests.conftest import Monitor
from tests.fakeupstream import FakeUpstream

OTP, MFA = "django-otp", "django-mfa"


def _check(monitor: Monitor, exit_code: int) -> dict[str, Any]:
    result = monitor.run("check", "--json")
    assert result.exit_code == exit_code, result.output
    return json.loads(result.stdout)  # the JSON is printed whatever went wrong


def _firing(report: dict[str, Any]) -> list[tuple[str, str]]:
    return [(t["rule"], t["package"]) for t in report["transitions"] if t["status"] == "firing"]


# -- item 1: one record's dates ------------------------------------------------------------

DATES = [
    ("last_updated", "9999-12-31T23:59:59-14:00"),
    ("created", "0001-01-01T00:00:00+14:00"),
    ("last_updated", "0001-01-01T00:00:00"),  # naive: taken as UTC, still out of range
    ("last_fetched", "9999-12-31T23:59:59-14:00"),  # bookkeeping: the unchanged fast path
]


@pytest.mark.parametrize(("field", "value"), DATES, ids=[f"{f}={v}" for f, v in DATES])
def test_a_date_out_of_range_fails_its_package_alone(
    monitor: Monitor, field: str, value: str
) -> None:
    assert monitor.run("watch", OTP, MFA).exit_code == 0
    monitor.upstream.records[OTP][field] = value
    monitor.upstream.records[MFA]["repo_watchers"] += 1  # a neighbour's real change

    reports = [_check(monitor, 1) for _ in range(3)]

    for report in reports:
        (failure,) = report["failed"]
        assert failure["slug"] == OTP
        assert failure["error"].startswith(f"{OTP}: field {field!r}: date out of range")
    assert [c["slug"] for c in reports[0]["changed"]] == [MFA]
    assert _firing(reports[2]) == [("poll-failing", OTP)]
    assert monitor.count("snapshots") == 3  # two baselines and the neighbour's change


# -- item 13: counts and ids ---------------------------------------------------------------

COUNTS = [
    ("repo_watchers", -5, "out of range: -5"),
    ("repo_forks", -1, "out of range: -1"),
    ("repo_watchers", 10**16, "out of range: 10000000000000000"),
    ("repo_watchers", True, "expected an integer or null, got a boolean"),
    ("commits_over_52", [0] * 51 + [-3], "out of range: -3"),
    ("category", -3, "out of range: -3"),
    ("grids", [5, -1], "out of range: -1"),
    ("grids", ["https://djangopackages.org/api/v4/grids/" + "9" * 5000 + "/"], "expected a URL"),
]


@pytest.mark.parametrize(
    ("field", "value", "problem"), COUNTS, ids=[f"{c[0]}={str(c[1])[:20]}" for c in COUNTS]
)
def test_an_implausible_count_fails_the_poll_instead_of_firing(
    monitor: Monitor, field: str, value: Any, problem: str
) -> None:
    assert monitor.run("watch", OTP).exit_code == 0
    monitor.upstream.records[OTP][field] = value

    report = _check(monitor, 1)

    (failure,) = report["failed"]
    assert failure["error"].startswith(f"{OTP}: field {field!r}: {problem}")
    assert report["transitions"] == []  # no "-100.8 %" stars drop
    assert monitor.count("snapshots") == 1


def test_an_id_sqlite_cannot_hold_is_ignored(monitor: Monitor) -> None:
    assert monitor.run("watch", OTP, MFA).exit_code == 0
    monitor.upstream.records[OTP]["id"] = 2**64 - 1  # what orjson still reads as an int
    monitor.upstream.records[MFA]["repo_watchers"] += 1

    report = _check(monitor, 0)

    assert [c["slug"] for c in report["changed"]] == [MFA]
    assert report["unchanged"] == 1


# -- item 12: the record's slug ------------------------------------------------------------


def test_the_watch_is_keyed_by_the_slug_asked_for(monitor: Monitor) -> None:
    monitor.upstream.records[OTP]["slug"] = "someone-else"

    watched = monitor.run("watch", OTP)

    assert watched.exit_code == 0 and f"watching {OTP} " in watched.output
    assert [w["slug"] for w in monitor.json("list")] == [OTP]
    report = _check(monitor, 0)
    assert report["unchanged"] == 1 and report["transitions"] == []


HOSTILE_SLUG = "evil\r\nBcc: x@y"


def test_a_slug_that_is_not_a_plain_slug_names_nothing(monitor: Monitor) -> None:
    monitor.upstream.records[OTP]["slug"] = HOSTILE_SLUG

    watched = monitor.run("watch", OTP)

    assert watched.exit_code == 1
    assert f"{OTP}: field 'slug': not a plain slug" in watched.output
    assert "\r" not in watched.output
    assert monitor.json("list") == []


def test_a_slug_turning_hostile_fails_the_poll_not_the_watch(monitor: Monitor) -> None:
    assert monitor.run("watch", OTP).exit_code == 0
    monitor.upstream.records[OTP]["slug"] = HOSTILE_SLUG

    report = _check(monitor, 1)

    (failure,) = report["failed"]
    assert failure["error"].startswith(f"{OTP}: field 'slug': not a plain slug")
    assert report["not_found"] == [] and report["transitions"] == []
    assert [w["slug"] for w in monitor.json("list")] == [OTP]


def test_a_grid_member_with_a_hostile_slug_is_not_watched(monitor: Monitor) -> None:
    monitor.upstream.add_grid("two-factor", [OTP, MFA], id=7)
    monitor.upstream.records[OTP]["slug"] = HOSTILE_SLUG

    watched = monitor.run("watch", "--grid", "two-factor")

    assert watched.exit_code == 1 and "field 'slug': not a plain slug" in watched.output
    assert monitor.json("list") == []


# -- through the source: one hostile record among good ones --------------------------------

HOSTILE = [
    ("last_updated", "9999-12-31T23:59:59-14:00"),
    ("modified", "0001-01-01T00:00:00+14:00"),
    ("repo_watchers", -5),
    ("commits_over_52", [0] * 51 + [-1]),
    ("participants", [{"login": "x"}]),
    ("category", {"id": 1}),
    ("slug", HOSTILE_SLUG),
    ("slug", None),
]


@pytest.fixture
async def fake() -> Any:
    async with FakeUpstream() as up:
        yield up


@pytest.mark.parametrize("paged", [True, False], ids=["list-page", "single"])
@pytest.mark.parametrize(
    ("field", "value"), HOSTILE, ids=[f"{f}-{i}" for i, (f, _) in enumerate(HOSTILE)]
)
async def test_one_hostile_record_fails_only_its_package(
    fake: FakeUpstream, paged: bool, field: str, value: Any
) -> None:
    fake.records[OTP][field] = value

    async with aiohttp.ClientSession() as session:
        source = DjangoPackagesSource(fake.url, session=session, sleep=_no_sleep, rng=lambda: 0)
        results = await source.poll(list(fake.records), known_count=None if paged else 10_000)

    outcome = {r.slug: (r.status, r.error) for r in results}
    status, error = outcome.pop(OTP)
    assert status is PollStatus.FAILED and error is not None
    assert error.startswith(f"{OTP}: field {field!r}: ")
    assert {s for s, _ in outcome.values()} == {PollStatus.OK}
    assert fake.page_requests == (1 if paged else 0)


async def test_hostile_text_is_kept_as_received(fake: FakeUpstream) -> None:
    title = "\x1b]0;PWNED\x07<!channel>\u202eevil\x00" + "x" * 1_000_000
    fake.records[OTP]["title"] = title

    async with aiohttp.ClientSession() as session:
        source = DjangoPackagesSource(fake.url, session=session, sleep=_no_sleep)
        result = await source.fetch(OTP)

    assert result.snapshot is not None and result.snapshot.title == title


async def _no_sleep(delay: float) -> None:
    await asyncio.sleep(0)
