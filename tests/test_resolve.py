"""monitor.resolve against the fake djangopackages and the fake PyPI, on one loopback server.

The fake's search answers by closeness of slugs and words (``tests/fakeupstream.py``), so
``djangorestframework`` finds ``django-rest-framework``. Requests are counted by path.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import aiohttp
import pytest

from monitor.resolve import PYPI_OFF, Resolved, resolve
from monitor.sources import PollStatus
from monitor.sources.djangopackages import DjangoPackagesSource
from monitor.sources.pypi import PyPISource
from tests.fake_pypi import FakePyPI
from tests.fakeupstream import FakeUpstream, Fault, load_fixtures

OTP = "django-otp"  # a fixture whose pypi_url names its own slug
DRF = "djangorestframework"  # on PyPI; on djangopackages as DRF_SLUG
DRF_SLUG = "django-rest-framework"


def record(slug: str, project: str, *, id: int) -> dict[str, Any]:
    """A valid record (the django-otp fixture's) for ``slug`` whose pypi_url names
    ``project``."""
    body = copy.deepcopy(load_fixtures()[OTP])
    body.update(slug=slug, title=slug, id=id, pypi_url=f"https://pypi.org/project/{project}/")
    return body


@pytest.fixture
def pypi() -> FakePyPI:
    fake = FakePyPI()  # django, djangorestframework, wagtail, django-crispy-forms, ...
    fake.clone("django-minify-html", "requests")
    return fake


@pytest.fixture
async def upstream(pypi):
    records = load_fixtures()
    records[DRF_SLUG] = record(DRF_SLUG, DRF, id=9001)
    async with FakeUpstream(records, apis=[pypi]) as up:
        yield up


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as session:
        yield session


async def _no_sleep(_: float) -> None:
    await asyncio.sleep(0)


@pytest.fixture
def sources(upstream, session):
    def make(*, concurrency: int = 8, pypi: bool = True):
        options: dict[str, Any] = dict(
            session=session, timeout=5, retries=2, concurrency=concurrency, sleep=_no_sleep
        )
        return (
            DjangoPackagesSource(upstream.url, rng=lambda: 0, **options),
            PyPISource(upstream.url, rng=lambda: 0, **options) if pypi else None,
        )

    return make


def requested(upstream: FakeUpstream, prefix: str) -> int:
    return sum(n for path, n in upstream.requests.items() if path.startswith(prefix))


async def test_a_name_whose_slug_names_it_maps_to_the_slug_alone(upstream, sources):
    found = await resolve([OTP], *sources())

    [otp] = found.values()
    assert (otp.name, otp.watch, otp.how, otp.error) == (OTP, OTP, "slug", None)
    assert otp.result is not None and otp.result.status is PollStatus.OK
    assert otp.result.slug == OTP and otp.result.snapshot.pypi_url.endswith("/django-otp")
    assert dict(upstream.requests) == {f"/api/v4/packages/{OTP}/": 1}  # no search, no PyPI


async def test_names_are_normalised_and_asked_once(upstream, sources):
    found = await resolve(["Django_OTP", "django.otp", OTP], *sources())

    assert list(found) == [OTP]
    assert found[OTP].how == "slug"
    assert upstream.requests[f"/api/v4/packages/{OTP}/"] == 1


async def test_a_name_found_only_by_search_maps_to_the_other_slug(upstream, sources):
    found = await resolve([DRF], *sources())

    drf = found[DRF]
    assert (drf.watch, drf.how, drf.error) == (DRF_SLUG, "search", None)
    assert drf.result is not None and drf.result.slug == DRF_SLUG
    assert upstream.requests[f"/api/v4/packages/{DRF}/"] == 1  # its own slug first: 404
    assert upstream.requests["/api/v4/search/"] == 1
    # PyPI knows it too, and is asked alongside the search (one round trip less for the
    # names on PyPI alone), but djangopackages' answer comes first
    assert requested(upstream, "/pypi/") <= 1


async def test_an_own_slug_naming_another_project_is_not_the_answer(upstream, sources):
    upstream.records["wagtail"] = record("wagtail", "wagtail-fork", id=9002)

    found = await resolve(["wagtail"], *sources())

    assert found["wagtail"] == Resolved("wagtail", "pypi:wagtail", None, "pypi")
    assert upstream.requests["/api/v4/packages/wagtail/"] == 1  # not again as a candidate
    assert upstream.requests["/pypi/wagtail/json"] == 1


async def test_an_own_slug_naming_another_project_falls_to_the_search(upstream, sources):
    upstream.records["django-filter"] = record("django-filter", "django-filter-fork", id=9003)
    upstream.records["django-filters"] = record("django-filters", "django-filter", id=9004)

    found = await resolve(["django-filter"], *sources())

    assert (found["django-filter"].watch, found["django-filter"].how) == (
        "django-filters",
        "search",
    )
    assert found["django-filter"].result.slug == "django-filters"


async def test_a_name_on_pypi_alone_maps_to_a_pypi_watch(upstream, sources):
    found = await resolve(["requests"], *sources())

    assert found["requests"] == Resolved("requests", "pypi:requests", None, "pypi")
    assert upstream.requests["/api/v4/packages/requests/"] == 1
    assert upstream.requests["/pypi/requests/json"] == 1
    assert upstream.requests["/simple/requests/"] == 0  # existence costs one request


async def test_a_private_name_is_found_nowhere(upstream, sources):
    found = await resolve(["acme-internal-lib"], *sources())

    assert found["acme-internal-lib"] == Resolved("acme-internal-lib", None, None, "nowhere")
    assert upstream.requests["/pypi/acme-internal-lib/json"] == 1


async def test_with_pypi_off_a_name_not_on_djangopackages_is_nowhere_saying_why(upstream, sources):
    found = await resolve(["requests", OTP], *sources(pypi=False))

    assert found["requests"] == Resolved("requests", None, None, "nowhere", PYPI_OFF)
    assert found[OTP].how == "slug"
    assert requested(upstream, "/pypi/") == 0


async def test_an_invalid_search_candidate_is_passed_over(upstream, sources):
    upstream.records[DRF_SLUG]["repo_watchers"] = "many"

    found = await resolve([DRF], *sources())

    assert found[DRF] == Resolved(DRF, f"pypi:{DRF}", None, "pypi")


@pytest.mark.parametrize(
    ("name", "fault_key", "in_error", "then_asked"),
    [
        pytest.param(OTP, OTP, "django-otp", [], id="own-slug-500"),
        pytest.param(DRF, DRF_SLUG, DRF_SLUG, [], id="search-candidate-500"),
        pytest.param(
            "requests",
            "/pypi/requests/json",
            "requests (PyPI)",
            ["/api/v4/search/"],
            id="pypi-500",
        ),
    ],
)
async def test_an_upstream_failure_is_failed_not_nowhere(
    upstream, sources, name, fault_key, in_error, then_asked
):
    upstream.fail(fault_key, [500, 500])  # retries=2: both attempts fail

    found = await resolve([name, "wagtail"], *sources())

    failed = found[name]
    assert (failed.watch, failed.result, failed.how) == (None, None, "failed")
    assert in_error in failed.error and "500" in failed.error
    assert found["wagtail"].how == "pypi"  # the other names are still resolved
    if fault_key == OTP:  # the own slug failed: the answer is unknown, nothing else asked
        assert upstream.requests["/api/v4/search/"] == 1  # wagtail's
        assert upstream.requests[f"/pypi/{OTP}/json"] == 0
    if fault_key == DRF_SLUG:  # asked alongside the search, its answer not used
        assert upstream.requests[f"/pypi/{DRF}/json"] <= 1
    for path in then_asked:
        assert upstream.requests[path] >= 1


async def test_no_record_or_search_is_fetched_twice(upstream, sources):
    # DRF_SLUG is a search candidate of two names and the own slug of a third; "ghost" is a
    # candidate (gone: 404) for "ghost-hunter" and the own slug of "ghost".
    upstream.fail(
        "/api/v4/search/?q=ghost-hunter",
        [Fault.json([{"item_type": "package", "slug": "ghost", "title": "Ghost"}])],
    )
    names = [DRF, f"{DRF}-stubs", DRF_SLUG, "ghost", "ghost-hunter", DRF]

    found = await resolve(names, *sources())

    assert {n: r.how for n, r in found.items()} == {
        DRF: "search",
        f"{DRF}-stubs": "nowhere",
        DRF_SLUG: "nowhere",  # its record names djangorestframework, not django-rest-framework
        "ghost": "nowhere",
        "ghost-hunter": "nowhere",
    }
    assert upstream.requests[f"/api/v4/packages/{DRF_SLUG}/"] == 1
    assert upstream.requests["/api/v4/packages/ghost/"] == 1
    searches = [r.query["q"] for r in upstream.log if r.path == "/api/v4/search/"]
    assert sorted(searches) == sorted(set(names))
    twice = {p: n for p, n in upstream.requests.items() if n > 1 and p != "/api/v4/search/"}
    assert twice == {}


async def test_at_most_concurrency_names_are_in_flight(upstream, sources):
    names = [f"package-{i}" for i in range(6)]
    for i, name in enumerate(names):
        upstream.records[name] = record(name, name, id=9100 + i)
        upstream.fail(name, [Fault.slow(0.03)])

    found = await resolve(names, *sources(concurrency=20), concurrency=2)

    assert {r.how for r in found.values()} == {"slug"}
    assert upstream.package_requests == 6
    assert upstream.max_in_flight == 2


async def test_progress_is_told_after_each_name(upstream, sources):
    seen: list[tuple[int, int]] = []
    names = [OTP, DRF, "requests", "acme-internal-lib", "Django_OTP"]  # 4 distinct

    found = await resolve(names, *sources(), on_progress=lambda *p: seen.append(p))

    assert len(found) == 4
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


async def test_no_names_ask_nothing(upstream, sources):
    seen: list[tuple[int, int]] = []
    assert await resolve([], *sources(), on_progress=lambda *p: seen.append(p)) == {}
    assert seen == [] and not upstream.requests
