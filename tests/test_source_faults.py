"""Source faults that used to mislead (issue 9): a wrong source URL, or a proxy answering 404
to everything, is a source failure naming the key to check, never a `package-not-found` storm;
a record a failed list page held is tried once more singly, and messages count every attempt.

Through the CLI against real loopback servers (the fake djangopackages, or a tiny aiohttp app
standing in for a misconfigured proxy), plus the source itself where the CLI cannot reach.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import pytest
from aiohttp import web

from monitor.errors import PackageNotFound, SourceError
from monitor.sources import PollStatus
from monitor.sources.djangopackages import DjangoPackagesSource
from tests.conftest import FIVE, Monitor
from tests.fakeupstream import FakeUpstream, Fault

URL_KEY = "[sources.djangopackages] url"
EVERYTHING_404 = "answers 404 for everything: check `[sources.djangopackages] url`"


@contextmanager
def serving(app: web.Application) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 from a thread (for tests that go through the sync CLI)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="proxy", daemon=True)
    thread.start()
    runner = web.AppRunner(app, access_log=None)

    async def start() -> str:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    try:
        yield asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def proxy_answering_404(body: bytes, content_type: str) -> web.Application:
    """A proxy in front of nothing: 404 with ``body`` to every request."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=404, body=body, content_type=content_type)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


def point_at(monitor: Monitor, url: str) -> None:
    """Rewrite the config's source URL (the mistake under test)."""
    text = monitor.config_path.read_text()
    monitor.config_path.write_text(
        text.replace(f'url = "{monitor.upstream.url}"', f'url = "{url}"')
    )


@contextmanager
def wrong_url(monitor: Monitor, kind: str) -> Iterator[None]:
    if kind == "extra-api-v4":  # the fake answers aiohttp's own plain-text 404 there
        point_at(monitor, f"{monitor.upstream.url}/api/v4")
        yield
        return
    body, content_type = {
        "proxy-empty-404": (b"", "text/html"),
        "proxy-json-404": (json.dumps({"detail": "Not found."}).encode(), "application/json"),
    }[kind]
    with serving(proxy_answering_404(body, content_type)) as url:
        point_at(monitor, url)
        yield


WRONG_URLS = ["extra-api-v4", "proxy-empty-404", "proxy-json-404"]


@pytest.mark.parametrize("kind", WRONG_URLS)
def test_a_wrong_source_url_fails_the_check_instead_of_paging_everyone(
    monitor: Monitor, kind: str
) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0
    outbox, transitions = monitor.count("outbox"), monitor.count("transitions")

    with wrong_url(monitor, kind):
        result = monitor.run("check", "--json")

    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    assert report["not_found"] == [] and report["transitions"] == []
    assert sorted(f["slug"] for f in report["failed"]) == FIVE
    for failure in report["failed"]:
        assert URL_KEY in failure["error"], failure["error"]
        assert failure["error"].startswith(failure["slug"] + ": ")
    assert "package-not-found" not in result.output
    assert (monitor.count("outbox"), monitor.count("transitions")) == (outbox, transitions)
    assert {item["last_status"] for item in monitor.json("list")} == {"failed"}


@pytest.mark.parametrize("kind", WRONG_URLS)
def test_watch_against_a_wrong_source_url_is_a_source_error(monitor: Monitor, kind: str) -> None:
    with wrong_url(monitor, kind):
        result = monitor.run("watch", "django-otp")

    assert result.exit_code == 1
    assert URL_KEY in result.stderr, result.stderr
    assert "not found on djangopackages" not in result.stderr
    assert monitor.count("watches") == 0


def test_one_package_deleted_upstream_still_fires_package_not_found(monitor: Monitor) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0
    del monitor.upstream.records["django-otp"]

    report = monitor.json("check")

    assert report["failed"] == [] and report["not_found"] == ["django-otp"]
    assert [(t["rule"], t["package"]) for t in report["transitions"]] == [
        ("package-not-found", "django-otp")
    ]


def test_every_package_deleted_while_the_list_works_is_not_found_for_each(
    monitor: Monitor,
) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0
    monitor.upstream.records.clear()

    report = monitor.json("check")

    assert report["failed"] == [] and sorted(report["not_found"]) == FIVE
    fired = sorted(t["package"] for t in report["transitions"] if t["rule"] == "package-not-found")
    assert fired == FIVE


# -- the source: when the list endpoint is asked, and what it settles ----------------------


@pytest.fixture
async def fake():
    async with FakeUpstream() as up:
        yield up


@pytest.fixture
async def source(fake):
    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    async with aiohttp.ClientSession() as session:
        yield DjangoPackagesSource(
            fake.url, session=session, sleep=no_wait, rng=lambda: 1.0, timeout=5
        )


SINGLES = 100_000  # a list count that makes pages dearer than single requests


def probes(up: FakeUpstream) -> list[dict[str, str]]:
    return [r.query for r in up.log if r.path == "/api/v4/packages/"]


async def test_all_not_found_while_the_list_answers_is_not_found(fake, source):
    fake.records.clear()

    results = await source.poll(FIVE, known_count=SINGLES)

    assert {r.status for r in results} == {PollStatus.NOT_FOUND}
    assert probes(fake) == [{"limit": "1"}]  # asked once, as no page was read


async def test_all_not_found_while_the_list_fails_is_a_source_failure(fake, source):
    fake.records.clear()
    fake.fail("/api/v4/packages/", [404])
    seen: list[tuple[str, PollStatus]] = []

    results = await source.poll(
        FIVE, known_count=SINGLES, on_result=lambda r: seen.append((r.slug, r.status))
    )

    assert {r.status for r in results} == {PollStatus.FAILED}
    assert [r.error for r in results] == [
        f"{slug}: djangopackages at {fake.url} {EVERYTHING_404}" for slug in FIVE
    ]
    assert sorted(seen) == [(slug, PollStatus.FAILED) for slug in FIVE]  # reported once, settled


async def test_a_page_that_answered_settles_it_without_asking_again(fake, source):
    fake.records.clear()
    results = await source.poll(FIVE)  # no count known: the first page is read
    assert {r.status for r in results} == {PollStatus.NOT_FOUND}
    assert probes(fake) == [{"limit": "200", "offset": "0"}]


@pytest.mark.parametrize(
    "slugs", [["django-otp"], ["django-otp", "django-mfa"]], ids=["one", "two"]
)
async def test_not_found_among_found_is_not_found_without_asking_the_list(fake, source, slugs):
    del fake.records["django-otp"]
    results = await source.poll(slugs, known_count=SINGLES)
    assert results[0].status is PollStatus.NOT_FOUND
    assert probes(fake) == []


@pytest.mark.parametrize(
    "fault",
    [Fault(status=404, body=""), Fault(status=404, body="<h1>Not Found</h1>"), Fault.json([], 404)],
    ids=["empty", "html", "json-not-an-object"],
)
async def test_a_404_without_the_apis_body_is_a_source_failure(fake, source, fault):
    fake.fail("django-otp", [fault, fault])

    [result] = await source.poll(["django-otp"])
    with pytest.raises(SourceError) as raised:
        await source.fetch("django-otp")

    assert result.status is PollStatus.FAILED
    assert result.error is not None and URL_KEY in result.error
    assert not isinstance(raised.value, PackageNotFound)
    assert URL_KEY in str(raised.value)
    assert fake.requests["/api/v4/packages/django-otp/"] == 2  # not retried


async def test_a_grid_behind_a_wrong_url_is_a_source_error(fake, source):
    fake.fail("/api/v4/grids/two-factor/", [Fault(status=404, body="")])
    with pytest.raises(SourceError, match=re.escape(URL_KEY)) as raised:
        await source.grid_members("two-factor")
    assert not isinstance(raised.value, PackageNotFound)


async def test_an_unknown_grid_while_the_list_fails_is_a_source_error(fake, source):
    fake.fail("/api/v4/packages/", [404])
    with pytest.raises(SourceError, match=re.escape(EVERYTHING_404)) as raised:
        await source.grid_members("nope")
    assert not isinstance(raised.value, PackageNotFound)


# -- a record a failed list page held is tried once more singly, and counted honestly ------


def test_one_hung_package_costs_its_page_and_one_more_timeout(monitor: Monitor) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0
    monitor.configure(timeout="200ms")
    up = monitor.upstream
    up.reset()
    # The first list page holds the hung record: it times out as often as it is asked.
    up.fail("/api/v4/packages/?offset=0", [Fault.slow(1.0)] * 3)
    up.fail("django-otp", [Fault.slow(1.0)] * 3)

    result = monitor.run("check", "--json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["failed"] == [
        {
            "slug": "django-otp",
            "error": "django-otp: timed out after 0.2s (4 attempts: 3 for its list page, 1 alone)",
            "source": "djangopackages",
        }
    ]
    assert report["unchanged"] == 4
    assert up.page_requests == 3
    assert up.requests["/api/v4/packages/django-otp/"] == 1


@pytest.fixture
async def clones():
    async with FakeUpstream.with_clones(600) as up:
        yield up


@pytest.mark.parametrize(
    ("page_faults", "single_faults", "error", "singles"),
    [
        pytest.param(
            [500] * 3,
            [500] * 3,
            "HTTP 500 after 4 attempts (3 for its list page, 1 alone)",
            1,
            id="5xx",
        ),
        pytest.param([500] * 3, [], None, 1, id="5xx-page-record-ok-alone"),
        # A page that answered, but badly, says nothing about the upstream: full retries.
        pytest.param([Fault.malformed()], [500] * 2, None, 3, id="malformed-page"),
        pytest.param([429] * 5, [500] * 2, None, 3, id="rate-limited-page"),
    ],
)
async def test_the_records_of_a_failed_page_get_one_single_attempt(
    clones, page_faults, single_faults, error, singles
):
    async def no_wait(_: float) -> None:
        await asyncio.sleep(0)

    held = next(slug for slug, record in clones.records.items() if record["id"] == 300)
    clones.fail("/api/v4/packages/?offset=200", page_faults)
    clones.fail(held, single_faults)

    async with aiohttp.ClientSession() as session:
        source = DjangoPackagesSource(clones.url, session=session, sleep=no_wait, rng=lambda: 1.0)
        results = await source.poll(list(clones.records), known_count=600)

    failed = [(r.slug, r.error) for r in results if r.status is not PollStatus.OK]
    assert failed == ([] if error is None else [(held, f"{held}: {error}")])
    assert clones.requests[f"/api/v4/packages/{held}/"] == singles
    assert clones.package_requests == 200 + singles - 1  # the page's others: once each
