"""The GitHub source against a fake GitHub REST API on 127.0.0.1 (no internet).

Sleep and the clock are injected: retries wait for nothing, and a rate limit ends when the
test advances the clock. Rate-limit tests poll with ``concurrency=1`` so that the number of
requests sent before the limit is known exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from monitor import USER_AGENT
from monitor.sources import Due, Part, PartState, PartStatus
from monitor.sources.github import (
    DEFAULT_DEFER,
    DEFAULT_URL,
    FIELDS,
    MAX_DEFER,
    GitHubSource,
    github_repo,
)
from tests.conftest import START, FakeClock
from tests.fake_github import FakeGitHub
from tests.fakeupstream import FakeUpstream, Fault

DEPS = "django/deps"
PAGINATOR = "pydanny/dj-paginator"
TOKEN = "ghp_not-a-real-token"
RESET = START + timedelta(minutes=30)


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub(reset_at=int(RESET.timestamp()))


@pytest.fixture
async def upstream(github):
    async with FakeUpstream(apis=[github]) as up:
        yield up


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_source(upstream, session, clock):
    def make(**kwargs: Any) -> GitHubSource:
        kwargs.setdefault("timeout", 5)
        return GitHubSource(
            upstream.url, session=session, sleep=clock.sleep, rng=lambda: 1.0, clock=clock,
            **kwargs,
        )  # fmt: skip

    return make


def due(key: str = DEPS, watch: str | None = None, etag: str | None = None) -> Due:
    return Due(watch or key.split("/")[1], key, state=PartState(etag=etag))


async def poll_one(source: GitHubSource, item: Due | str = DEPS) -> Part:
    [part] = await source.poll([item if isinstance(item, Due) else due(item)])
    return part


def path(key: str) -> str:
    return f"/repos/{key}"


# -- fields ----------------------------------------------------------------------------------

REAL = {
    DEPS: {
        "github.found": True,
        "github.repo": "django/deps",
        "github.archived": False,
        "github.stars": 401,
        "github.forks": 85,
        "github.subscribers": 96,
        "github.open_issues": 7,
        "github.pushed_at": datetime(2023, 12, 19, 21, 59, 33, tzinfo=UTC),
        "github.license": None,
    },
    PAGINATOR: {
        "github.found": True,
        "github.repo": "pydanny/dj-paginator",
        "github.archived": True,
        "github.stars": 36,
        "github.forks": 4,
        "github.subscribers": 5,
        "github.open_issues": 5,
        "github.pushed_at": datetime(2016, 11, 7, 8, 42, 39, tzinfo=UTC),
        "github.license": "BSD-3-Clause",
    },
}


@pytest.mark.parametrize("key", sorted(REAL))
async def test_fields_of_the_real_bodies(make_source, key):
    part = await poll_one(make_source(), key)
    assert part.status is PartStatus.OK, part.error
    assert (part.watch, part.source, part.error) == (key.split("/")[1], "github", None)
    assert part.values == REAL[key]
    assert set(part.values) == set(FIELDS)
    assert part.etag and part.fingerprint


async def test_the_source_describes_itself(make_source):
    source = make_source()
    assert source.name == "github"
    assert DEFAULT_URL == "https://api.github.com"
    assert dict(source.fields) == {
        "github.found": "bool",
        "github.repo": "text",
        "github.archived": "bool",
        "github.stars": "int",
        "github.forks": "int",
        "github.subscribers": "int",
        "github.open_issues": "int",
        "github.pushed_at": "datetime",
        "github.license": "text",
    }


@pytest.mark.parametrize(
    ("spdx", "expected"),
    [("MIT", "MIT"), ("NOASSERTION", None), (None, None)],
    ids=["spdx", "noassertion", "null-spdx"],
)
async def test_license_is_the_spdx_id(github, make_source, spdx, expected):
    body = github.clone(PAGINATOR, "someone/licensed")
    body["license"] = {**body["license"], "spdx_id": spdx}
    part = await poll_one(make_source(), "someone/licensed")
    assert part.values is not None
    assert part.values["github.license"] == expected


async def test_a_repository_unknown_to_github_is_data_not_a_failure(make_source):
    part = await poll_one(make_source(), "djangopackages/does-not-exist")
    assert part.status is PartStatus.OK
    assert part.error is None
    assert part.values == {**dict.fromkeys(FIELDS), "github.found": False}


async def test_a_404_without_githubs_body_fails_naming_the_url_key(upstream, make_source):
    upstream.fail(path(DEPS), [Fault(status=404, body="<html>Not Found</html>")])
    part = await poll_one(make_source(), DEPS)
    assert part.status is PartStatus.FAILED
    assert part.error is not None
    assert part.error.startswith("deps: GitHub django/deps: ")
    assert "[sources.github] url" in part.error


# -- requests --------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, TOKEN], ids=["anonymous", "token"])
async def test_headers_sent(upstream, github, make_source, token):
    await poll_one(make_source(token=token))
    [request] = upstream.log
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["accept"] == "application/vnd.github+json"
    assert headers["x-github-api-version"] == "2022-11-28"
    assert headers["user-agent"] == USER_AGENT
    assert "if-none-match" not in headers
    assert github.authorization == [None if token is None else f"Bearer {TOKEN}"]


@pytest.mark.parametrize("token", [None, TOKEN], ids=["anonymous", "token"])
async def test_second_poll_is_conditional_and_unchanged(upstream, github, make_source, token):
    source = make_source(token=token)
    first = await poll_one(source)
    assert first.status is PartStatus.OK
    budget = github.remaining

    second = await poll_one(source, due(DEPS, etag=first.etag))
    assert upstream.log[-1].headers["If-None-Match"] == first.etag
    assert github.served == [200, 304]
    assert second.status is PartStatus.UNCHANGED
    assert (second.values, second.error) == (None, None)
    assert second.etag == first.etag
    # GitHub does not count a 304 to an authorised request
    assert github.remaining == (budget if token else budget - 1)


async def test_a_changed_repository_answers_in_full_despite_the_etag(github, make_source):
    source = make_source()
    first = await poll_one(source)
    github.archive(DEPS)
    second = await poll_one(source, due(DEPS, etag=first.etag))
    assert second.status is PartStatus.OK
    assert second.values is not None
    assert second.values["github.archived"] is True
    assert second.etag != first.etag
    assert second.fingerprint != first.fingerprint


async def test_a_renamed_repository_is_followed_to_its_new_name(upstream, github, make_source):
    github.clone(PAGINATOR, "pydanny/paginator")
    del github.repos[PAGINATOR]
    github.renamed[PAGINATOR] = "pydanny/paginator"
    part = await poll_one(make_source(), PAGINATOR)
    assert part.status is PartStatus.OK, part.error
    assert part.values is not None
    assert part.values["github.repo"] == "pydanny/paginator"
    assert github.served == [301, 200]
    assert upstream.requests[path(PAGINATOR)] == upstream.requests["/repos/pydanny/paginator"] == 1


async def test_lookups_keep_the_case_they_were_given(upstream, make_source):
    part = await poll_one(make_source(), "Django/Deps")
    assert part.values is not None
    assert part.values["github.repo"] == "django/deps"
    assert upstream.requests["/repos/Django/Deps"] == 1


async def test_parts_come_in_order_and_each_is_told(make_source):
    told: list[Part] = []
    keys = [PAGINATOR, "djangopackages/does-not-exist", DEPS]
    parts = await make_source().poll([due(k, watch=k) for k in keys], told.append)
    assert [p.watch for p in parts] == keys
    assert sorted(p.watch for p in told) == sorted(keys)


# -- failures --------------------------------------------------------------------------------


async def test_5xx_after_retries_fails_naming_the_watch_and_github(upstream, make_source, clock):
    upstream.fail(path(DEPS), [500, 502, 503])
    source = make_source(retries=3)
    parts = await source.poll([due(DEPS, watch="django-deps"), due(PAGINATOR)])
    assert parts[0].status is PartStatus.FAILED
    assert parts[0].error == "django-deps: GitHub django/deps: HTTP 503 after 3 attempts"
    assert parts[1].status is PartStatus.OK
    assert clock.slept == [1.0, 2.0]
    assert source.limited_until is None


async def test_a_timeout_fails_the_watch(upstream, make_source):
    upstream.fail(path(DEPS), [Fault.slow(1)])
    part = await poll_one(make_source(timeout=0.05, retries=1))
    assert part.status is PartStatus.FAILED
    assert part.error == "deps: GitHub django/deps: timed out after 0.05s (1 attempt)"


def _set(body: dict[str, Any], key: str, value: Any) -> None:
    body[key] = value


BAD_BODIES = [
    ("stars", lambda b: _set(b, "stargazers_count", "many"), "'stargazers_count'"),
    ("forks", lambda b: _set(b, "forks_count", -1), "'forks_count'"),
    ("archived", lambda b: _set(b, "archived", "yes"), "'archived'"),
    ("pushed", lambda b: _set(b, "pushed_at", "last week"), "'pushed_at'"),
    ("license", lambda b: _set(b, "license", "MIT"), "'license'"),
    ("spdx", lambda b: _set(b, "license", {"spdx_id": 3}), "'license.spdx_id'"),
    ("full-name", lambda b: b.pop("full_name"), "'full_name'"),
]


@pytest.mark.parametrize(
    ("spoil", "field"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
async def test_wrong_types_fail_naming_watch_github_and_field(github, make_source, spoil, field):
    spoil(github.repos[DEPS])
    source = make_source()
    parts = await source.poll([due(DEPS, watch="django-deps"), due(PAGINATOR)])
    assert parts[0].status is PartStatus.FAILED
    assert parts[0].error is not None
    assert parts[0].error.startswith(f"django-deps: GitHub django/deps: field {field}: ")
    assert parts[1].status is PartStatus.OK


@pytest.mark.parametrize(
    ("body", "problem"),
    [('{"full_name": ', "malformed JSON"), ("[1, 2]", "record: expected a JSON object")],
    ids=["malformed", "not-an-object"],
)
async def test_a_body_that_is_not_a_repository_fails(upstream, make_source, body, problem):
    upstream.fail(path(DEPS), [Fault(status=200, body=body)])
    part = await poll_one(make_source())
    assert part.status is PartStatus.FAILED
    assert part.error is not None
    assert part.error.startswith("deps: GitHub django/deps: ")
    assert problem in part.error


async def test_an_oversized_body_fails(upstream, make_source):
    upstream.fail(path(DEPS), [Fault.oversized(2048, chunked=True)])
    part = await poll_one(make_source(max_body=1024))
    assert part.status is PartStatus.FAILED
    assert part.error == "deps: GitHub django/deps: response body over 1024 bytes"


async def test_a_key_that_is_not_owner_repo_fails_without_a_request(upstream, make_source):
    part = await poll_one(make_source(), Due("x", "no-slash"))
    assert part.status is PartStatus.FAILED
    assert part.error is not None
    assert "OWNER/REPO" in part.error
    assert upstream.log == []


async def test_403_without_rate_limit_headers_fails(upstream, make_source):
    upstream.fail(path(DEPS), [403])
    source = make_source()
    parts = await source.poll([due(DEPS), due(PAGINATOR)])
    assert parts[0].status is PartStatus.FAILED
    assert parts[0].error == "deps: GitHub django/deps: HTTP 403"
    assert parts[1].status is PartStatus.OK
    assert source.limited_until is None


# -- rate limits -----------------------------------------------------------------------------

ALL = [DEPS, PAGINATOR, "djangopackages/does-not-exist"]


async def test_spent_budget_defers_until_the_reset_then_polls_again(
    upstream, github, make_source, clock
):
    github.remaining = 0
    source = make_source(concurrency=1)
    parts = await source.poll([due(k) for k in ALL])
    assert [p.status for p in parts] == [PartStatus.DEFERRED] * 3
    assert {p.until for p in parts} == {RESET}
    assert {p.error for p in parts} == {None}
    assert source.limited_until == RESET
    assert github.served == [403]
    assert source.requests_sent == 1

    clock.advance(minutes=29)
    parts = await source.poll([due(k) for k in ALL])
    assert [p.status for p in parts] == [PartStatus.DEFERRED] * 3
    assert len(upstream.log) == 1  # no request before the reset
    assert source.requests_sent == 1

    clock.advance(minutes=1)
    github.remaining = 60
    parts = await source.poll([due(k) for k in ALL])
    assert [p.status for p in parts] == [PartStatus.OK] * 3
    assert len(upstream.log) == 4
    assert source.limited_until is None


async def test_the_limit_is_kept_across_processes(upstream, make_source, clock):
    source = make_source(limited_until=RESET)
    part = await poll_one(source)
    assert (part.status, part.until) == (PartStatus.DEFERRED, RESET)
    assert upstream.log == []
    clock.advance(minutes=30)
    assert (await poll_one(make_source(limited_until=RESET))).status is PartStatus.OK


async def test_remaining_zero_on_a_200_uses_it_and_defers_the_rest(github, make_source):
    github.remaining = 1
    source = make_source(concurrency=1)
    parts = await source.poll([due(k) for k in ALL])
    assert [p.status for p in parts] == [PartStatus.OK, PartStatus.DEFERRED, PartStatus.DEFERRED]
    assert parts[0].values == REAL[DEPS]
    assert parts[1].until == parts[2].until == RESET
    assert github.served == [200]


async def test_remaining_zero_on_a_404_keeps_it_as_data(github, make_source):
    github.remaining = 1
    source = make_source(concurrency=1)
    parts = await source.poll([due("djangopackages/does-not-exist"), due(DEPS)])
    assert parts[0].status is PartStatus.OK
    assert parts[0].values is not None
    assert parts[0].values["github.found"] is False
    assert (parts[1].status, parts[1].until) == (PartStatus.DEFERRED, RESET)


async def test_in_flight_requests_finish_when_the_limit_is_hit(github, make_source):
    github.remaining = 1
    parts = await make_source(concurrency=8).poll([due(k) for k in ALL])
    assert len(github.served) == 3  # all three were sent before any answer came
    assert sorted(github.served) == [200, 403, 403]
    statuses = [p.status for p in parts]
    assert statuses.count(PartStatus.OK) == 1
    assert statuses.count(PartStatus.DEFERRED) == 2


@pytest.mark.parametrize(
    "retry_after",
    ["120", format_datetime(START + timedelta(seconds=120), usegmt=True)],
    ids=["seconds", "http-date"],
)
@pytest.mark.parametrize("status", [429, 403])
async def test_retry_after_defers(upstream, github, make_source, clock, status, retry_after):
    upstream.fail(path(DEPS), [Fault(status=status, headers={"Retry-After": retry_after})])
    source = make_source(concurrency=1)
    parts = await source.poll([due(k) for k in ALL])
    until = START + timedelta(seconds=120)
    assert [(p.status, p.until) for p in parts] == [(PartStatus.DEFERRED, until)] * 3
    assert len(upstream.log) == 1
    clock.advance(seconds=120)
    assert (await poll_one(source)).status is PartStatus.OK


async def test_retry_after_and_a_spent_budget_wait_for_the_later(upstream, make_source):
    headers = {"Retry-After": "60", "X-RateLimit-Remaining": "0"}
    headers["X-RateLimit-Reset"] = str(int(RESET.timestamp()))
    upstream.fail(path(DEPS), [Fault(status=403, headers=headers)])
    part = await poll_one(make_source())
    assert (part.status, part.until) == (PartStatus.DEFERRED, RESET)


@pytest.mark.parametrize(
    ("headers", "until"),
    [
        ({}, START + DEFAULT_DEFER),
        ({"x-ratelimit-remaining": "0"}, START + DEFAULT_DEFER),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1000"}, START + DEFAULT_DEFER),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "soon"}, START + DEFAULT_DEFER),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "99999999999"}, START + MAX_DEFER),
        ({"retry-after": "86400"}, START + MAX_DEFER),
    ],
    ids=["bare", "no-reset", "reset-past", "reset-unreadable", "reset-far", "retry-after-far"],
)
async def test_odd_rate_limit_answers_still_defer_for_a_bounded_time(
    upstream, make_source, headers, until
):
    upstream.fail(path(DEPS), [Fault(status=429, headers=headers)])
    part = await poll_one(make_source())
    assert (part.status, part.until) == (PartStatus.DEFERRED, until)


async def test_a_limit_passed_back_is_bounded_too(make_source):
    source = make_source(limited_until=datetime(2999, 1, 1))
    assert source.limited_until == START + MAX_DEFER


async def test_unchanged_answers_keep_telling_the_budget(github, make_source):
    source = make_source(concurrency=1)
    first = await poll_one(source)
    github.remaining = 1
    parts = await source.poll([due(DEPS, etag=first.etag), due(PAGINATOR)])
    assert [p.status for p in parts] == [PartStatus.UNCHANGED, PartStatus.DEFERRED]


# -- which watches -----------------------------------------------------------------------------

URLS = [
    ("https://github.com/django/deps", "django/deps"),
    ("http://github.com/django/deps", "django/deps"),
    ("https://www.github.com/django/deps", "django/deps"),
    ("https://GitHub.com/Django/Deps", "Django/Deps"),
    ("https://github.com/django/deps/", "django/deps"),
    ("https://github.com/django/deps.git", "django/deps"),
    ("https://github.com/django/deps.git/", "django/deps"),
    ("https://github.com/django/deps/tree/main/docs", "django/deps"),
    ("https://github.com/django/deps?tab=readme#usage", "django/deps"),
    ("  https://github.com/jazzband/django-model-utils \n", "jazzband/django-model-utils"),
    ("https://github.com/a-b/c_d.e", "a-b/c_d.e"),
    ("https://github.com/django", None),
    ("https://github.com/django/", None),
    ("https://github.com/", None),
    ("https://gitlab.com/django/deps", None),
    ("https://github.com.evil.example/django/deps", None),
    ("https://gist.github.com/django/deps", None),
    ("git@github.com:django/deps.git", None),
    ("ftp://github.com/django/deps", None),
    ("github.com/django/deps", None),
    ("https://github.com/orgs/django", None),
    ("https://github.com/sponsors/django", None),
    ("https://github.com/django/..", None),
    ("https://github.com/django/.git", None),
    ("https://github.com/dj%20ango/deps", None),
    ("https://github.com:99999/django/deps", None),
    ("https://[github.com/django/deps", None),
    ("", None),
    (None, None),
    (42, None),
]


@pytest.mark.parametrize(("url", "expected"), URLS, ids=[repr(u) for u, _ in URLS])
def test_github_repo(url, expected):
    assert github_repo(url) == expected


async def test_key_comes_from_the_repo_url(make_source):
    source = make_source()
    assert source.key("deps", {"repo_url": "https://github.com/django/deps.git"}) == DEPS
    assert source.key("x", {"repo_url": "https://bitbucket.org/x/y"}) is None
    assert source.key("x", {"repo_url": None}) is None
    assert source.key("pypi:x", {}) is None
    assert source.repo_url("Django/Deps") == f"{source.base_url}/repos/Django/Deps"
