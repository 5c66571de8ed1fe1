"""The djangopackages source against a fake API v4 on 127.0.0.1 (no internet).

Sleep is injected (the delays asked for are recorded, not waited) and jitter is fixed at its
maximum, so backoff delays read 1, 2, 4, ... seconds.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from typing import Any

import aiohttp
import pytest

from monitor import USER_AGENT
from monitor.errors import InvalidRecord, PackageNotFound, SourceError
from monitor.snapshot import BOOKKEEPING, parse_record, record_fingerprint, unix_seconds
from monitor.sources import PollResult, PollStatus
from monitor.sources.djangopackages import DjangoPackagesSource, GridNotFound
from monitor.sources.http import UNANSWERED_LIMIT, backoff_delay, retry_after_seconds
from tests.fakeupstream import FakeUpstream, Fault, load_fixtures, unused_url

FIXTURES = load_fixtures()
OTP = "django-otp"


@pytest.fixture
async def upstream():
    async with FakeUpstream() as up:
        yield up


@pytest.fixture
async def clones():
    async with FakeUpstream.with_clones(600) as up:
        yield up


@pytest.fixture
def make_source(session, sleeps):
    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    def make(base_url: str, **kwargs: Any) -> DjangoPackagesSource:
        kwargs.setdefault("timeout", 5)
        return DjangoPackagesSource(
            base_url, session=session, sleep=sleep, rng=lambda: 1.0, **kwargs
        )

    return make


async def poll_one(source: DjangoPackagesSource, slug: str = OTP) -> PollResult:
    [result] = await source.poll([slug])
    return result


# -- one package ---------------------------------------------------------------------------


@pytest.mark.parametrize("slug", sorted(FIXTURES))
async def test_fixture_records_are_fetched_and_normalised(upstream, make_source, slug):
    result = await make_source(upstream.url).fetch(slug)
    snapshot, package_id = result.snapshot, result.package_id

    record = FIXTURES[slug]
    assert snapshot.slug == slug
    assert package_id == record["id"]
    assert snapshot.category == 1  # ids whether or not the URL ends in ?format=api
    grid_ids = [int(url.split("/grids/")[1].split("/")[0]) for url in record["grids"]]
    assert snapshot.grids == tuple(sorted(grid_ids))
    assert snapshot.repo_watchers == record["repo_watchers"]
    assert snapshot.last_updated is not None and snapshot.last_updated.tzinfo is not None


async def test_a_package_is_fetched_by_id(upstream, make_source):
    result = await make_source(upstream.url).fetch("1867")
    assert (result.slug, result.snapshot.slug, result.package_id) == (OTP, OTP, 1867)


async def test_requests_carry_user_agent_and_accept(upstream, make_source):
    await make_source(upstream.url).fetch(OTP)
    headers = upstream.log[-1].headers
    assert headers["User-Agent"] == USER_AGENT
    assert headers["Accept"] == "application/json"


async def test_unknown_package_is_not_found_and_not_retried(upstream, make_source, sleeps):
    source = make_source(upstream.url)
    with pytest.raises(PackageNotFound, match="package 'django-otpp' not found on djangopackages"):
        await source.fetch("django-otpp")

    result = await poll_one(source, "django-otpp")
    assert result.status is PollStatus.NOT_FOUND
    assert result.snapshot is None
    assert result.error == "package 'django-otpp' not found on djangopackages"
    assert upstream.requests["/api/v4/packages/django-otpp/"] == 2
    assert sleeps == []


FAULTS = [
    # id, faults served first, source timeout, status, error (a prefix), sleeps, requests
    ("500-then-ok", [500], 5, "ok", None, [1.0], 2),
    ("503-twice-then-ok", [503, 503], 5, "ok", None, [1.0, 2.0], 3),
    ("500-forever", [500] * 3, 5, "failed", "django-otp: HTTP 500 after 3 attempts", [1, 2], 3),
    ("429-retry-after-seconds", [Fault.rate_limited(2)], 5, "ok", None, [2.0], 2),
    ("429-retry-after-capped", [Fault.rate_limited(3600)], 5, "ok", None, [60.0], 2),
    ("429-without-retry-after", [Fault.rate_limited()], 5, "ok", None, [1.0], 2),
    ("429-gets-two-more-attempts", [429] * 4, 5, "ok", None, [1, 2, 4, 8], 5),
    (
        "429-forever",
        [429] * 5,
        5,
        "failed",
        "django-otp: HTTP 429 (rate limited) after 5 attempts",
        [1, 2, 4, 8],
        5,
    ),
    ("403-not-retried", [403], 5, "failed", "django-otp: HTTP 403", [], 1),
    ("malformed-json", [Fault.malformed()], 5, "failed", "django-otp: malformed JSON: ", [], 1),
    (
        "not-an-object",
        [Fault.json([1, 2])],
        5,
        "failed",
        "django-otp: record: expected a JSON object, got list",
        [],
        1,
    ),
    (
        "oversized-content-length",
        [Fault.oversized()],
        5,
        "failed",
        "django-otp: response body over 5 MB",
        [],
        1,
    ),
    (
        "oversized-chunked",
        [Fault.oversized(chunked=True)],
        5,
        "failed",
        "django-otp: response body over 5 MB",
        [],
        1,
    ),
    ("slow-then-ok", [Fault.slow(1)], 0.1, "ok", None, [1.0], 2),
    (
        "slow-forever",
        [Fault.slow(1)] * 3,
        0.1,
        "failed",
        "django-otp: timed out after 0.1s (3 attempts)",
        [1, 2],
        3,
    ),
]


@pytest.mark.parametrize(
    ("faults", "timeout", "status", "error", "expected_sleeps", "requests"),
    [pytest.param(*case[1:], id=case[0]) for case in FAULTS],
)
async def test_upstream_faults(
    upstream, make_source, sleeps, faults, timeout, status, error, expected_sleeps, requests
):
    upstream.fail(OTP, faults)
    source = make_source(upstream.url, timeout=timeout)

    result = await poll_one(source)

    assert result.status == status
    if error is None:
        assert result.error is None
        assert result.snapshot is not None and result.snapshot.slug == OTP
        assert result.package_id == 1867
    else:
        assert result.error is not None and result.error.startswith(error), result.error
        assert result.snapshot is None
    assert sleeps == expected_sleeps
    assert upstream.requests[f"/api/v4/packages/{OTP}/"] == requests
    assert source.requests_sent == requests
    assert result.duration > 0


async def test_failures_raise_from_fetch(upstream, make_source):
    upstream.fail(OTP, [500] * 3)
    with pytest.raises(SourceError, match=r"^django-otp: HTTP 500 after 3 attempts$"):
        await make_source(upstream.url).fetch(OTP)


async def test_retry_after_as_an_http_date(upstream, make_source, sleeps):
    upstream.fail(OTP, [Fault.rate_limited(formatdate(time.time() + 10, usegmt=True))])
    result = await poll_one(make_source(upstream.url))
    assert result.status is PollStatus.OK
    [slept] = sleeps
    assert 8 <= slept <= 10


async def test_connection_refused(make_source, sleeps):
    result = await poll_one(make_source(unused_url()))
    assert result.status is PollStatus.FAILED
    assert result.error == "django-otp: connection refused (3 attempts)"
    assert sleeps == [1.0, 2.0]


SINGLES = 100_000  # a list count that makes pages dearer than single requests


async def test_an_unreachable_upstream_is_not_tried_request_after_request(make_source, sleeps):
    slugs = [f"package-{i}" for i in range(40)]
    source = make_source(unused_url())

    results = await source.poll(slugs, known_count=SINGLES)

    assert {r.status for r in results} == {PollStatus.FAILED}
    tried = [r for r in results if r.error.endswith(": connection refused (3 attempts)")]
    skipped = [r for r in results if r not in tried]
    # The slots free up one by one: a few more may start before the eighth gives up.
    assert UNANSWERED_LIMIT <= len(tried) < 2 * UNANSWERED_LIMIT
    assert {r.error.split(": ", 1)[1] for r in skipped} == {
        f"not tried: the last {UNANSWERED_LIMIT} requests got no answer (connection refused)"
    }
    assert source.requests_sent == len(tried) * 3


async def test_a_hung_upstream_fails_the_poll_in_one_round_of_timeouts(clones, make_source, sleeps):
    slugs = sorted(clones.records)[:40]
    for slug in slugs:
        clones.fail(slug, [Fault.slow(5)] * 3)  # answers long after the client's timeout
    source = make_source(clones.url, timeout=0.2)

    results = await source.poll(slugs, known_count=SINGLES)

    timed_out = [r for r in results if r.error.endswith(": timed out after 0.2s (3 attempts)")]
    skipped = [r for r in results if ": not tried: " in r.error]
    assert UNANSWERED_LIMIT <= len(timed_out) < 2 * UNANSWERED_LIMIT
    assert len(timed_out) + len(skipped) == 40
    assert source.requests_sent == len(timed_out) * 3  # not 40 * 3 timeouts


async def test_answers_between_failures_keep_every_package_tried(clones, make_source, sleeps):
    slugs = sorted(clones.records)[:150]
    dropped = slugs[::3]  # one in three never gets an answer: 50, but never 8 in a row
    for slug in dropped:
        clones.fail(slug, [Fault.drop()] * 6)  # aiohttp itself resends on a dropped keep-alive

    results = await make_source(clones.url).poll(slugs, known_count=SINGLES)

    failed = {r.slug: r.error for r in results if r.status is PollStatus.FAILED}
    assert failed == {slug: f"{slug}: server disconnected (3 attempts)" for slug in dropped}
    assert sum(r.status is PollStatus.OK for r in results) == 150 - len(dropped)


async def test_upstream_down_drops_connections(upstream, make_source, sleeps):
    upstream.down = True
    result = await poll_one(make_source(upstream.url))
    assert result.error == "django-otp: server disconnected (3 attempts)"
    assert sleeps == [1.0, 2.0]

    upstream.down = False
    assert (await poll_one(make_source(upstream.url))).status is PollStatus.OK


async def test_a_stopped_upstream_refuses_then_serves_on_the_same_port(upstream, make_source):
    url = upstream.url
    await upstream.stop()
    assert (await poll_one(make_source(url))).error == "django-otp: connection refused (3 attempts)"
    await upstream.start()
    assert upstream.url == url
    assert (await poll_one(make_source(url))).status is PollStatus.OK


WRONG_FIELDS = [
    ("repo_watchers", "many", "expected an integer or null, got a string"),
    ("commits_over_52", [1, 2, 3], "expected 0 or 52 weekly counts, got 3"),
    ("grids", "7", "expected a list, got a string"),
    ("last_updated", "yesterday", "not a datetime"),
]


@pytest.mark.parametrize(
    ("field", "value", "problem"), WRONG_FIELDS, ids=[case[0] for case in WRONG_FIELDS]
)
async def test_wrongly_typed_field_fails_naming_package_and_field(
    upstream, make_source, sleeps, field, value, problem
):
    upstream.records[OTP][field] = value
    source = make_source(upstream.url)

    result = await poll_one(source)
    assert result.status is PollStatus.FAILED
    assert result.error is not None
    assert result.error.startswith(f"django-otp: field {field!r}: {problem}")
    with pytest.raises(InvalidRecord) as raised:
        await source.fetch(OTP)
    assert (raised.value.package, raised.value.field) == (OTP, field)
    assert sleeps == []  # a bad record is not retried


async def test_empty_commits_become_unknown(upstream, make_source):
    upstream.records[OTP]["commits_over_52"] = []
    result = await make_source(upstream.url).fetch(OTP)
    assert result.snapshot.commits_over_52 is None


async def test_concurrency_is_bounded(upstream, make_source):
    for slug in FIXTURES:
        upstream.fail(slug, [Fault.slow(0.05)])
    source = make_source(upstream.url, concurrency=2)

    results = await source.poll(list(FIXTURES), known_count=10_000)  # singles: paging costs more

    assert all(r.status is PollStatus.OK for r in results)
    assert upstream.package_requests == 5
    assert upstream.max_in_flight == 2


# -- paging --------------------------------------------------------------------------------


def newest(up: FakeUpstream, n: int) -> list[str]:
    return sorted(up.records, key=lambda slug: up.records[slug]["id"], reverse=True)[:n]


@pytest.mark.parametrize("known_count", [600, None], ids=["known-count", "count-from-page-1"])
async def test_many_watched_packages_are_read_in_pages(clones, make_source, known_count):
    source = make_source(clones.url)
    seen: list[str] = []

    results = await source.poll(
        list(clones.records), known_count=known_count, on_result=lambda r: seen.append(r.slug)
    )

    assert [r.slug for r in results] == list(clones.records)
    assert all(r.status is PollStatus.OK for r in results)
    assert {r.package_id for r in results} == set(range(1, 601))
    assert sorted(seen) == sorted(clones.records)
    assert clones.page_requests == 3
    assert clones.package_requests == 0
    assert source.requests_sent == 3
    assert sorted(int(r.query["offset"]) for r in clones.log) == [0, 200, 400]
    assert {r.query["limit"] for r in clones.log} == {"200"}
    assert source.last_count == 600
    assert all(r.duration > 0 for r in results)
    assert len({r.duration for r in results}) <= 3  # one per page


async def test_few_watched_packages_are_fetched_singly(clones, make_source):
    slugs = ["django-mfa-0", "django-oauth-toolkit-301", "django-organizations-597"]
    source = make_source(clones.url)

    results = await source.poll(slugs, known_count=600)

    assert [r.status for r in results] == [PollStatus.OK] * 3
    assert (clones.page_requests, clones.package_requests) == (0, 3)
    assert source.last_count == 600


async def test_without_a_count_the_first_page_is_not_wasted(clones, make_source):
    source = make_source(clones.url)

    results = await source.poll([*newest(clones, 3), "django-mfa-0", "django-oauth-toolkit-1"])

    assert all(r.status is PollStatus.OK for r in results)
    # page 1 matched the three newest; two more pages would not save a request
    assert (clones.page_requests, clones.package_requests) == (1, 2)
    assert source.last_count == 600


async def test_a_stale_count_reads_the_extra_pages(clones, make_source):
    source = make_source(clones.url)
    results = await source.poll(list(clones.records), known_count=200)
    assert all(r.status is PollStatus.OK for r in results)
    assert (clones.page_requests, clones.package_requests) == (3, 0)
    assert source.last_count == 600


PAGE_FAULTS = [
    # id, faults for the second page, source timeout, page requests it takes
    ("500-after-retries", [500] * 3, 5, 3),
    ("timeout", [Fault.slow(1)] * 3, 0.25, 3),
    ("malformed-json", [Fault.malformed()], 5, 1),
    ("oversized", [Fault.oversized()], 5, 1),
    ("not-a-page", [Fault.json({"detail": "Something else."})], 5, 1),
]


@pytest.mark.parametrize(
    ("faults", "timeout", "attempts"), [pytest.param(*case[1:], id=case[0]) for case in PAGE_FAULTS]
)
async def test_a_failed_page_falls_back_to_single_requests(
    clones, make_source, faults, timeout, attempts
):
    clones.fail("/api/v4/packages/?offset=200", faults)
    source = make_source(clones.url, timeout=timeout)

    results = await source.poll(list(clones.records), known_count=600)

    assert all(r.status is PollStatus.OK for r in results), [r.error for r in results if r.error]
    assert clones.page_requests == 2 + attempts
    assert clones.package_requests == 200


async def test_a_bad_record_in_a_page_fails_alone(clones, make_source):
    clones.records["django-otp-3"]["repo_watchers"] = "many"

    results = await make_source(clones.url).poll(list(clones.records), known_count=600)

    failed = [r for r in results if r.status is not PollStatus.OK]
    assert [(r.slug, r.status) for r in failed] == [("django-otp-3", PollStatus.FAILED)]
    assert failed[0].error is not None
    assert failed[0].error.startswith("django-otp-3: field 'repo_watchers'")
    assert (clones.page_requests, clones.package_requests) == (3, 1)


async def test_a_package_missing_from_the_pages_is_not_found_by_its_own_url(clones, make_source):
    slugs = [*clones.records, "gone-package"]

    results = await make_source(clones.url).poll(slugs, known_count=600)

    assert results[-1].status is PollStatus.NOT_FOUND
    assert clones.requests["/api/v4/packages/gone-package/"] == 1
    assert (clones.page_requests, clones.package_requests) == (3, 1)


async def test_duplicate_slugs_give_one_result(upstream, make_source):
    source = make_source(upstream.url)
    assert [r.slug for r in await source.poll([OTP, OTP])] == [OTP]
    assert await source.poll([]) == []


# -- grids and search ----------------------------------------------------------------------


async def test_grid_members_are_fetched_through_the_configured_base_url(upstream, make_source):
    upstream.add_grid("two-factor", ["django-otp", "django-two-factor-auth"], id=426)
    upstream.public_url = "https://djangopackages.org"  # member URLs point at the real site

    source = make_source(upstream.url)
    by_slug = await source.grid_members("two-factor")
    by_id = await source.grid_members("426")

    assert [(m.snapshot.slug, m.package_id) for m in by_slug] == [
        (OTP, 1867),
        ("django-two-factor-auth", 1454),
    ]
    assert [(m.snapshot, m.package_id) for m in by_id] == [
        (m.snapshot, m.package_id) for m in by_slug
    ]
    assert upstream.requests["/api/v4/packages/1867/"] == 2


async def test_a_grid_member_that_is_gone_is_left_out(upstream, make_source):
    upstream.add_grid("auth", ["django-mfa", 999_999], id=7)
    members = await make_source(upstream.url).grid_members("auth")
    assert [m.snapshot.slug for m in members] == ["django-mfa"]


async def test_a_grid_member_failing_fails_the_grid(upstream, make_source):
    upstream.add_grid("auth", ["django-mfa", "django-otp"], id=7)
    upstream.fail(OTP, [500] * 3)
    with pytest.raises(SourceError) as raised:
        await make_source(upstream.url).grid_members("auth")
    assert str(raised.value) == "package 1867 of grid 'auth': HTTP 500 after 3 attempts"


async def test_unknown_grid(upstream, make_source):
    with pytest.raises(GridNotFound) as raised:
        await make_source(upstream.url).grid_members("nope")
    assert isinstance(raised.value, PackageNotFound)
    assert str(raised.value) == "grid 'nope' not found on djangopackages"


async def test_search_suggests_packages(upstream, make_source):
    upstream.add_grid("django-otp-things", ["django-otp"], id=1)
    suggestions = await make_source(upstream.url).search("django-otpp")
    assert suggestions[0] == OTP
    assert "django-otp-things" not in suggestions  # grids are not packages


@pytest.mark.parametrize(
    "fault", [500, Fault.json({"detail": "no"}), Fault.malformed()], ids=["500", "object", "bad"]
)
async def test_search_is_best_effort(upstream, make_source, sleeps, fault):
    upstream.fail("/api/v4/search/", [fault])
    assert await make_source(upstream.url).search("django-otpp") == []
    assert upstream.requests["/api/v4/search/"] == 1
    assert sleeps == []


# -- helpers and the fake itself -----------------------------------------------------------

NOW = datetime(2026, 2, 16, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("2", 2.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("3600", 60.0),
        ("-5", 0.0),
        (formatdate((NOW + timedelta(seconds=30)).timestamp(), usegmt=True), 30.0),
        (formatdate((NOW - timedelta(seconds=30)).timestamp(), usegmt=True), 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
    ids=["2", "0", "fraction", "capped", "negative", "date", "past-date", "junk", "empty", "none"],
)
def test_retry_after_seconds(header, seconds):
    assert retry_after_seconds(header, now=NOW) == seconds


def test_backoff_doubles_up_to_the_cap_with_full_jitter():
    assert [backoff_delay(n, lambda: 1.0) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff_delay(3, lambda: 0.5) == 2.0


def test_fake_upstream_serves_sync_callers_from_a_thread():
    async def fetch(url: str):
        async with aiohttp.ClientSession() as session:
            return await DjangoPackagesSource(url, session=session, retries=1).fetch(OTP)

    with FakeUpstream.in_thread() as up:
        up.records[OTP] = {**up.records[OTP], "pypi_version": "9.9"}
        snapshot = asyncio.run(fetch(up.url)).snapshot

        up.stop_serving()
        with pytest.raises(SourceError, match="connection refused"):
            asyncio.run(fetch(up.url))
        up.start_serving()
        asyncio.run(fetch(up.url))

    assert snapshot.pypi_version == "9.9"
    assert up.requests[f"/api/v4/packages/{OTP}/"] == 2


# -- fingerprints: unchanged records are not parsed ----------------------------------------


async def test_a_known_fingerprint_gives_unchanged_without_a_snapshot(upstream, make_source):
    record = upstream.records[OTP]
    known = {OTP: record_fingerprint(record)}
    record["last_fetched"] = "2026-11-23T01:02:03-05:00"  # bookkeeping moves: still unchanged

    (result,) = await make_source(upstream.url).poll(
        [OTP], fingerprints=known, fields=["commits_over_52"]
    )

    assert result.status is PollStatus.UNCHANGED
    assert result.snapshot is None and result.fingerprint == known[OTP]
    assert result.package_id == record["id"]
    expected = parse_record(record).values(["commits_over_52", "last_fetched", "modified"])
    assert result.values == {"slug": OTP, **expected}
    assert result.values["last_fetched"].isoformat() == "2026-11-23T01:02:03-05:00"


async def test_a_changed_record_is_parsed(upstream, make_source):
    record = upstream.records[OTP]
    known = {OTP: record_fingerprint(record)}
    record["repo_watchers"] += 1

    (result,) = await make_source(upstream.url).poll([OTP], fingerprints=known)

    assert result.status is PollStatus.OK
    assert result.snapshot == parse_record(record)
    assert result.fingerprint == record_fingerprint(record) != known[OTP]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("modified", "soon", "not a datetime"),
        ("last_fetched", 17, "expected a datetime string, got an integer"),
    ],
)
async def test_bad_bookkeeping_fails_an_unchanged_record_too(
    upstream, make_source, field, value, problem
):
    record = upstream.records[OTP]
    known = {OTP: record_fingerprint(record)}
    record[field] = value

    (result,) = await make_source(upstream.url).poll([OTP], fingerprints=known)

    assert result.status is PollStatus.FAILED
    assert result.error.startswith(f"{OTP}: field {field!r}: {problem}")


async def test_pages_report_unchanged_records_without_parsing_them(clones, make_source):
    slugs = sorted(clones.records)[:300]
    known = {slug: record_fingerprint(clones.records[slug]) for slug in slugs[:250]}
    for slug in slugs[250:260]:
        clones.records[slug]["repo_forks"] = 1

    results = await make_source(clones.url, page_size=200).poll(
        slugs, known_count=len(clones.records), fingerprints=known
    )

    statuses = [r.status for r in results]
    assert statuses == [PollStatus.UNCHANGED] * 250 + [PollStatus.OK] * 50
    assert clones.package_requests == 0


# -- list pages read again: recalled, not decoded ------------------------------------------


def _plain(results: list[PollResult]) -> list[PollResult]:
    """Results as comparable across polls (a duration is the poll's own)."""
    return [replace(result, duration=0.0) for result in results]


async def _poll_pages(
    source: DjangoPackagesSource,
    slugs: list[str],
    known: dict[str, bytes],
    pages: dict[bytes, bytes],
    fields: tuple[str, ...] = ("title", "repo_url"),
) -> tuple[list[PollResult], dict[bytes, bytes | None]]:
    read: dict[bytes, bytes | None] = {}
    results = await source.poll(
        slugs,
        known_count=600,
        fingerprints=known,
        fields=fields,
        recall=pages.get,
        on_page=read.__setitem__,
    )
    return results, read


def _recalls(read: dict[bytes, bytes | None]) -> dict[bytes, bytes]:
    return {digest: recall for digest, recall in read.items() if recall is not None}


async def test_a_page_read_again_is_recalled_as_decoding_it_would_report_it(clones, make_source):
    slugs = sorted(clones.records)[:300]
    known = {slug: record_fingerprint(clones.records[slug]) for slug in slugs[:250]}
    source = make_source(clones.url, page_size=200)
    first, read = await _poll_pages(source, slugs, known, {})
    assert len(read) == 3 and all(read.values())  # each page decoded, its recall made
    assert [r.status for r in first].count(PollStatus.OK) == 50

    stored = {r.slug: r.fingerprint for r in first}  # as the cycle would store them
    again, reread = await _poll_pages(source, slugs, stored, _recalls(read))
    assert reread == dict.fromkeys(read)  # every page recalled, none decoded
    decoding, _ = await _poll_pages(source, slugs, stored, {})
    assert _plain(again) == _plain(decoding)
    assert {r.status for r in again} == {PollStatus.UNCHANGED}
    for result in again:  # the bookkeeping as the watch row keeps it, worked out beforehand
        assert result.values is not None
        assert result.stamps == tuple(unix_seconds(result.values[n]) for n in BOOKKEEPING)
        assert None not in result.stamps
    assert clones.package_requests == 0


async def test_a_page_back_to_an_earlier_body_is_decoded_when_a_record_changed_since(
    clones, make_source
):
    slugs = sorted(clones.records)[:300]
    source = make_source(clones.url, page_size=200)
    known = {slug: record_fingerprint(clones.records[slug]) for slug in slugs}
    _, read = await _poll_pages(source, slugs, known, {})
    record = clones.records[slugs[7]]
    forks = record["repo_forks"]
    record["repo_forks"] = forks + 1234  # a change, stored...
    changed = {**known, slugs[7]: record_fingerprint(record)}
    record["repo_forks"] = forks  # ...and back: the page is byte for byte the first one
    results, reread = await _poll_pages(source, slugs, changed, _recalls(read))

    by_slug = {r.slug: r for r in results}
    assert by_slug[slugs[7]].status is PollStatus.OK
    assert by_slug[slugs[7]].snapshot == parse_record(record)
    assert sum(r.status is PollStatus.UNCHANGED for r in results) == 299
    assert sum(recall is not None for recall in reread.values()) == 1  # that page decoded


async def test_a_page_with_an_invalid_record_is_not_recalled(clones, make_source):
    slugs = sorted(clones.records)[:300]
    clones.records[slugs[3]]["repo_watchers"] = "many"
    source = make_source(clones.url, page_size=200)
    known = {slug: record_fingerprint(clones.records[slug]) for slug in slugs if slug != slugs[3]}
    _, read = await _poll_pages(source, slugs, known, {})
    assert len(read) == 2  # the page holding it has no recall: read again, it fails again
    again, _ = await _poll_pages(source, slugs, known, _recalls(read))
    assert [r.slug for r in again if r.status is PollStatus.FAILED] == [slugs[3]]
    assert clones.package_requests == 2  # fetched singly each time


async def test_a_recall_made_for_other_fields_is_not_used(clones, make_source):
    slugs = sorted(clones.records)[:300]
    source = make_source(clones.url, page_size=200)
    known = {slug: record_fingerprint(clones.records[slug]) for slug in slugs}
    _, read = await _poll_pages(source, slugs, known, {}, fields=("title",))
    results, reread = await _poll_pages(source, slugs, known, _recalls(read))
    assert all(reread.values())  # decoded again
    assert all("repo_url" in (r.values or {}) for r in results)
