"""The PyPI source against a fake PyPI on 127.0.0.1 (no internet), served by FakeUpstream.

Sleep is injected (the delays asked for are recorded, not waited) and jitter is fixed at its
maximum, so backoff delays read 1, 2, 4, ... seconds.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from monitor import USER_AGENT
from monitor.errors import InvalidRecord
from monitor.sources import Due, FieldKind, Part, PartState, PartStatus, Source
from monitor.sources import pypi as pypi_module
from monitor.sources.pypi import (
    FIELDS,
    PyPISource,
    pack_etags,
    parse_project,
    project_name,
    unpack_etags,
)
from tests.fake_pypi import FakePyPI, load_pypi_fixtures
from tests.fakeupstream import FakeUpstream, Fault

PROJECTS = load_pypi_fixtures()


@pytest.fixture
def pypi() -> FakePyPI:
    return FakePyPI()


@pytest.fixture
async def upstream(pypi):
    async with FakeUpstream(apis=[pypi]) as up:
        yield up


@pytest.fixture
def make_source(session, sleeps, upstream):
    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    def make(**kwargs: Any) -> PyPISource:
        kwargs.setdefault("timeout", 5)
        return PyPISource(upstream.url, session=session, sleep=sleep, rng=lambda: 1.0, **kwargs)

    return make


@pytest.fixture
def source(make_source) -> PyPISource:
    return make_source()


async def poll_one(source: PyPISource, key: str, state: PartState | None = None) -> Part:
    [part] = await source.poll([Due(f"pypi:{key}", key, {}, state or PartState())])
    return part


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# -- the fields of the real responses -------------------------------------------------------

EXPECTED = {
    "django-minify-html": {
        "pypi.version": "1.0.0",
        "pypi.released_at": utc("2021-12-28T10:37:18.583101Z"),
        "pypi.requires_python": ">=3.8",
        "pypi.django": ["2.2", "3.0", "3.1", "3.2", "4.0"],
        "pypi.python": ["3.8", "3.9", "3.10"],
        "pypi.yanked": [],
        "pypi.license": "MIT",
        "pypi.repository": "https://github.com/adamchainz/django-minify-html",
        "pypi.status": "active",
    },
    "django-crispy-forms": {
        "pypi.version": "1.14.0",
        "pypi.released_at": utc("2022-01-25T08:08:34.739304Z"),
        "pypi.requires_python": ">=3.7",
        "pypi.django": ["2.2", "3.2", "4.0"],
        "pypi.python": ["3.7", "3.8", "3.9", "3.10"],
        "pypi.yanked": [],
        "pypi.license": "MIT",
        "pypi.repository": "https://github.com/django-crispy-forms/django-crispy-forms",
        "pypi.status": "active",
    },
    "djangorestframework": {
        "pypi.version": "3.13.1",
        "pypi.released_at": utc("2021-12-15T15:18:42.237445Z"),
        "pypi.requires_python": ">=3.6",
        "pypi.django": ["2.2", "3.0", "3.1", "3.2", "4.0"],
        "pypi.python": ["3.6", "3.7", "3.8", "3.9", "3.10"],
        "pypi.yanked": [],  # 2.4.7 has no files: not yanked
        "pypi.license": "BSD",
        "pypi.repository": "https://github.com/encode/django-rest-framework",
        "pypi.status": "active",
    },
    "wagtail": {
        "pypi.version": "2.16.1",
        "pypi.released_at": utc("2022-02-11T13:58:20.278624Z"),
        "pypi.requires_python": ">=3.7",
        "pypi.django": ["3.2", "4.0"],
        "pypi.python": ["3.7", "3.8", "3.9", "3.10"],
        "pypi.yanked": [],
        "pypi.license": "BSD",
        "pypi.repository": None,
        "pypi.status": "active",
    },
    "django": {
        "pypi.version": "4.0.2",
        "pypi.released_at": utc("2022-02-01T07:56:23.036066Z"),
        "pypi.requires_python": ">=3.8",
        "pypi.django": [],  # only "Framework :: Django", no version
        "pypi.python": ["3.8", "3.9", "3.10"],
        "pypi.yanked": [],  # 1.0.1-1.1.2 have no files
        "pypi.license": "BSD-3-Clause",
        "pypi.repository": "https://github.com/django/django",
        "pypi.status": "active",
    },
}


def test_the_expected_table_covers_every_fixture():
    assert sorted(EXPECTED) == sorted(PROJECTS)


def test_the_source_has_the_spec_fields(source):
    checked: Source = source  # the protocol (mypy) and its members (here)
    assert checked.name == "pypi"
    assert dict(source.fields) == {
        "pypi.version": FieldKind.TEXT,
        "pypi.released_at": FieldKind.DATETIME,
        "pypi.requires_python": FieldKind.TEXT,
        "pypi.django": FieldKind.TEXTS,
        "pypi.python": FieldKind.TEXTS,
        "pypi.yanked": FieldKind.TEXTS,
        "pypi.license": FieldKind.TEXT,
        "pypi.repository": FieldKind.TEXT,
        "pypi.status": FieldKind.TEXT,
    }


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_fixture_fields(source, name):
    part = await poll_one(source, name)
    assert part.status is PartStatus.OK, part.error
    assert (part.watch, part.source, part.error) == (f"pypi:{name}", "pypi", None)
    assert part.values == EXPECTED[name]
    assert part.values["pypi.version"] == PROJECTS[name]["info"]["version"]
    assert part.duration > 0
    assert unpack_etags(part.etag)[0] and unpack_etags(part.etag)[1]


async def test_both_apis_are_asked_with_their_headers(upstream, source):
    await poll_one(source, "wagtail")
    by_path = {entry.path: entry.headers for entry in upstream.log}
    assert set(by_path) == {"/pypi/wagtail/json", "/simple/wagtail/"}
    assert by_path["/simple/wagtail/"]["Accept"] == "application/vnd.pypi.simple.v1+json"
    assert by_path["/pypi/wagtail/json"]["Accept"] == "application/json"
    assert {h["User-Agent"] for h in by_path.values()} == {USER_AGENT}
    assert not any("If-None-Match" in h for h in by_path.values())
    assert source.requests_sent == 2


# -- field derivation ------------------------------------------------------------------------

CLASSIFIERS = [
    # id, classifiers, pypi.django, pypi.python
    ("none", [], [], []),
    (
        "by-version-not-text",
        [
            "Framework :: Django :: 4.10",
            "Framework :: Django :: 4.2",
            "Framework :: Django :: 4.0",
            "Framework :: Django :: 4.2",
            "Framework :: Django :: 10.0",
            "Framework :: Django",
            "Framework :: Django :: 5",
            "Framework :: Django CMS :: 3.11",
            "Programming Language :: Python :: 3.10",
            "Programming Language :: Python :: 3.9",
            "Programming Language :: Python :: 3.13",
            "Programming Language :: Python :: 3",
            "Programming Language :: Python :: 3 :: Only",
            "Programming Language :: Python :: 2.7",
            "Programming Language :: Python :: Implementation :: CPython",
        ],
        ["4.0", "4.2", "4.10", "10.0"],
        ["3.9", "3.10", "3.13"],
    ),
]


@pytest.mark.parametrize(
    ("classifiers", "django", "python"),
    [c[1:] for c in CLASSIFIERS],
    ids=[c[0] for c in CLASSIFIERS],
)
async def test_django_and_python_versions_from_classifiers(
    pypi, source, classifiers, django, python
):
    pypi.set_classifiers("django-minify-html", classifiers)
    part = await poll_one(source, "django-minify-html")
    assert (part.values["pypi.django"], part.values["pypi.python"]) == (django, python)


async def test_yanked_releases_are_sorted_by_version(pypi, source):
    for version in ("3.2.10", "4.0", "3.2.9", "1.1"):  # 1.1 has no files: never yanked
        pypi.yank("django", version)
    pypi.project("django")["releases"]["4.0.1"][0]["yanked"] = True  # one file of two
    pypi.project("django")["releases"]["not a version"] = [{"yanked": True}]
    part = await poll_one(source, "django")
    assert part.values["pypi.yanked"] == ["3.2.9", "3.2.10", "4.0", "not a version"]


async def test_a_yanked_current_version(pypi, source):
    pypi.yank("django-minify-html", "1.0.0")
    part = await poll_one(source, "django-minify-html")
    assert part.values["pypi.yanked"] == ["1.0.0"]
    assert part.values["pypi.version"] == "1.0.0"


async def test_a_new_release(pypi, source):
    pypi.release("django-minify-html", "1.1.0", datetime(2026, 11, 20, 9, 30, tzinfo=UTC))
    part = await poll_one(source, "django-minify-html")
    assert part.values["pypi.version"] == "1.1.0"
    assert part.values["pypi.released_at"] == datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


async def test_no_files_no_release_time(pypi, source):
    pypi.project("wagtail")["urls"] = []
    part = await poll_one(source, "wagtail")
    assert part.values["pypi.released_at"] is None


LICENSES = [
    # id, license_expression, license, pypi.license
    ("expression-first", "MIT OR Apache-2.0", "MIT", "MIT OR Apache-2.0"),
    ("empty-expression", "", "BSD", "BSD"),
    ("no-expression", None, "Apache 2.0", "Apache 2.0"),
    ("full-text", None, "Copyright (c) 2022\n\nPermission is hereby granted...", None),
    ("too-long", None, "x" * 101, None),
    ("100-chars", None, "x" * 100, "x" * 100),
    ("empty", None, "", None),
    ("none", None, None, None),
]


@pytest.mark.parametrize(
    ("expression", "text", "expected"), [c[1:] for c in LICENSES], ids=[c[0] for c in LICENSES]
)
async def test_license(pypi, source, expression, text, expected):
    info = pypi.project("wagtail")["info"]
    info["license_expression"], info["license"] = expression, text
    part = await poll_one(source, "wagtail")
    assert part.values["pypi.license"] == expected


async def test_empty_requires_python_is_unknown(pypi, source):
    pypi.project("wagtail")["info"]["requires_python"] = ""
    part = await poll_one(source, "wagtail")
    assert part.values["pypi.requires_python"] is None


@pytest.mark.parametrize("status", ["quarantined", "archived", "deprecated"])
async def test_project_status(pypi, source, status):
    pypi.status["wagtail"] = status
    part = await poll_one(source, "wagtail")
    assert part.values["pypi.status"] == status


async def test_simple_api_404_means_active(upstream, source):
    upstream.fail("/simple/wagtail/", [404])
    part = await poll_one(source, "wagtail")
    assert part.status is PartStatus.OK
    assert part.values["pypi.status"] == "active"
    json_etag, simple_etag = unpack_etags(part.etag)
    assert json_etag is not None and simple_etag is None


# -- conditional requests --------------------------------------------------------------------


async def first_poll(source: PyPISource, name: str) -> PartState:
    part = await poll_one(source, name)
    assert part.status is PartStatus.OK
    return PartState(etag=part.etag, values=part.values)


async def test_unchanged_answers_cost_no_parsing(pypi, upstream, source, monkeypatch):
    state = await first_poll(source, "django")
    upstream.reset()

    def no_parsing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed an unchanged answer")

    monkeypatch.setattr(pypi_module, "parse_project", no_parsing)
    monkeypatch.setattr(pypi_module, "parse_status", no_parsing)
    part = await poll_one(source, "django", state)

    assert part.status is PartStatus.UNCHANGED, part.error
    assert (part.values, part.error, part.etag) == (None, None, state.etag)
    assert pypi.not_modified == 2
    json_etag, simple_etag = unpack_etags(state.etag)
    sent = {entry.path: entry.headers.get("If-None-Match") for entry in upstream.log}
    assert sent == {"/pypi/django/json": json_etag, "/simple/django/": simple_etag}


async def test_only_the_status_changed(pypi, source, monkeypatch):
    state = await first_poll(source, "wagtail")
    pypi.status["wagtail"] = "archived"

    def no_parsing(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("parsed an unchanged JSON API answer")

    monkeypatch.setattr(pypi_module, "parse_project", no_parsing)
    part = await poll_one(source, "wagtail", state)

    assert part.status is PartStatus.OK
    assert part.values == {**EXPECTED["wagtail"], "pypi.status": "archived"}
    assert pypi.not_modified == 1
    assert unpack_etags(part.etag)[0] == unpack_etags(state.etag)[0]
    assert unpack_etags(part.etag)[1] != unpack_etags(state.etag)[1]


async def test_only_the_project_changed(pypi, source):
    pypi.status["wagtail"] = "deprecated"
    state = await first_poll(source, "wagtail")
    pypi.yank("wagtail", "2.16.1")
    part = await poll_one(source, "wagtail", state)

    assert part.status is PartStatus.OK
    assert part.values == {
        **EXPECTED["wagtail"],
        "pypi.yanked": ["2.16.1"],
        "pypi.status": "deprecated",
    }
    assert pypi.not_modified == 1
    assert unpack_etags(part.etag)[1] == unpack_etags(state.etag)[1]


@pytest.mark.parametrize(
    ("missing", "conditional"),
    [
        ("pypi.status", {"/pypi/wagtail/json": True, "/simple/wagtail/": False}),
        ("pypi.yanked", {"/pypi/wagtail/json": False, "/simple/wagtail/": True}),
    ],
)
async def test_no_etag_is_sent_for_a_half_without_stored_values(
    upstream, source, missing, conditional
):
    state = await first_poll(source, "wagtail")
    values = {k: v for k, v in state.values.items() if k != missing}
    upstream.reset()
    part = await poll_one(source, "wagtail", PartState(etag=state.etag, values=values))

    assert part.status is PartStatus.OK
    assert part.values == EXPECTED["wagtail"]
    sent = {entry.path: "If-None-Match" in entry.headers for entry in upstream.log}
    assert sent == conditional


@pytest.mark.parametrize(
    "etag", ["", "garbage", '"abc"', '["a"]', "[1, 2]", '{"a": 1}', "[null, null]", "[[], {}]"]
)
async def test_a_garbled_stored_etag_is_a_fresh_poll(upstream, source, etag):
    values = {**EXPECTED["wagtail"], "pypi.version": "0.1"}
    part = await poll_one(source, "wagtail", PartState(etag=etag, values=values))
    assert part.status is PartStatus.OK
    assert part.values == EXPECTED["wagtail"]
    assert not any("If-None-Match" in entry.headers for entry in upstream.log)


def test_etags_pack_and_unpack():
    assert unpack_etags(pack_etags('"a"', 'W/"b"')) == ('"a"', 'W/"b"')
    assert unpack_etags(pack_etags(None, '"b"')) == (None, '"b"')
    assert pack_etags(None, None) is None
    assert unpack_etags(None) == (None, None)


# -- failures --------------------------------------------------------------------------------


async def test_unknown_project_is_not_found(upstream, source, sleeps):
    part = await poll_one(source, "no-such-project")
    assert part.status is PartStatus.NOT_FOUND
    assert part.values == dict.fromkeys(FIELDS)
    assert part.etag is None
    assert upstream.requests["/pypi/no-such-project/json"] == 1
    assert sleeps == []


async def test_json_api_5xx_fails_naming_pypi(upstream, source, sleeps):
    upstream.fail("/pypi/django/json", [500, 502, 503])
    part = await poll_one(source, "django")
    assert part.status is PartStatus.FAILED
    assert part.error == "pypi:django (PyPI): HTTP 503 after 3 attempts"
    assert part.values is None and part.etag is None
    assert sleeps == [1.0, 2.0]


async def test_json_api_recovers_within_its_retries(upstream, source, sleeps):
    upstream.fail("/pypi/django/json", [500])
    part = await poll_one(source, "django")
    assert part.status is PartStatus.OK
    assert sleeps == [1.0]


async def test_simple_api_5xx_fails_the_part(upstream, source):
    upstream.fail("/simple/django/", [500, 500, 500])
    part = await poll_one(source, "django")
    assert part.status is PartStatus.FAILED
    assert part.error == "pypi:django (PyPI Simple API): HTTP 500 after 3 attempts"


async def test_simple_api_403_fails_the_part(upstream, source):
    upstream.fail("/simple/django/", [403])
    part = await poll_one(source, "django")
    assert part.status is PartStatus.FAILED
    assert part.error == "pypi:django (PyPI Simple API): HTTP 403"


async def test_malformed_json_fails(upstream, source):
    upstream.fail("/pypi/django/json", [Fault.malformed()])
    part = await poll_one(source, "django")
    assert part.status is PartStatus.FAILED
    assert part.error.startswith("pypi:django (PyPI): malformed JSON")


async def test_oversized_body_fails(make_source):
    part = await poll_one(make_source(max_body=100_000), "django")  # django.json: 500 KB
    assert part.status is PartStatus.FAILED
    assert part.error == "pypi:django (PyPI): response body over 100000 bytes"


def set_path(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        body = body[step]
    body[path[-1]] = value


WRONG = [
    # id, where in django-minify-html's body, value, field named in the error
    ("version-int", ("info", "version"), 5, "'info.version': expected a string or null"),
    ("info-list", ("info",), [], "'info': expected an object, got a list"),
    ("urls-object", ("urls",), {}, "'urls': expected a list, got an object"),
    ("upload-time-text", ("urls", 0, "upload_time_iso_8601"), "soon", "'urls[0].upload_time"),
    ("upload-time-int", ("urls", 1, "upload_time_iso_8601"), 7, "'urls[1].upload_time"),
    ("file-not-object", ("urls", 0), "a file", "'urls[0]': expected an object"),
    ("requires-python", ("info", "requires_python"), 3.8, "'info.requires_python'"),
    ("classifiers-text", ("info", "classifiers"), "Django", "'info.classifiers'"),
    ("classifiers-mixed", ("info", "classifiers"), ["a", 1], "'info.classifiers'"),
    ("releases-list", ("releases",), [], "'releases': expected an object, got a list"),
    ("release-files", ("releases", "1.0.0"), {}, "'releases[\"1.0.0\"]': expected a list"),
    (
        "yanked-text",
        ("releases", "1.0.0", 0, "yanked"),
        "yes",
        "'releases[\"1.0.0\"][0].yanked': expected true",
    ),
    ("license-int", ("info", "license"), 1, "'info.license': expected a string"),
    ("expression-list", ("info", "license_expression"), ["MIT"], "'info.license_expression'"),
]


@pytest.mark.parametrize(
    ("path", "value", "named"), [w[1:] for w in WRONG], ids=[w[0] for w in WRONG]
)
async def test_a_wrong_type_fails_naming_the_field(pypi, source, path, value, named):
    set_path(pypi.project("django-minify-html"), path, value)
    part = await poll_one(source, "django-minify-html")
    assert part.status is PartStatus.FAILED
    assert part.error.startswith("pypi:django-minify-html (PyPI): field ")
    assert named in part.error
    assert part.values is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ([1, 2], "(PyPI): record: expected a JSON object, got a list"),
        ({"info": None}, "'info': expected an object, got null"),
    ],
    ids=["list", "no-info"],
)
async def test_a_body_of_the_wrong_shape_fails(pypi, source, body, named):
    pypi.projects["django-minify-html"] = body
    part = await poll_one(source, "django-minify-html")
    assert part.status is PartStatus.FAILED
    assert named in part.error


@pytest.mark.parametrize(
    ("page", "named"),
    [
        ([], "Simple API: expected a JSON object, got a list"),
        ({"project-status": "archived"}, "'project-status': expected an object"),
        ({"project-status": {"status": 1}}, "'project-status.status': expected a string"),
    ],
    ids=["list", "status-text", "status-int"],
)
async def test_a_simple_answer_of_the_wrong_shape_fails(upstream, source, page, named):
    upstream.fail("/simple/wagtail/", [Fault.json(page)])
    part = await poll_one(source, "wagtail")
    assert part.status is PartStatus.FAILED
    assert part.error.startswith("pypi:wagtail (PyPI): ")
    assert named in part.error


async def test_one_watch_failing_leaves_the_others_alone(pypi, upstream, source, monkeypatch):
    pypi.project("wagtail")["info"]["version"] = 5
    upstream.fail("/pypi/django/json", [500, 500, 500])
    real = pypi_module.parse_project

    def buggy(data: Any, *, package: str) -> dict[str, Any]:
        if package.startswith("crispy"):
            raise RuntimeError("a bug")
        return real(data, package=package)

    monkeypatch.setattr(pypi_module, "parse_project", buggy)
    seen: list[str] = []
    due = [
        Due("wagtail", "wagtail"),
        Due("django", "django"),
        Due("crispy", "django-crispy-forms"),
        Due("gone", "no-such-project"),
        Due("drf", "djangorestframework"),
    ]
    parts = await source.poll(due, on_part=lambda part: seen.append(part.watch))

    assert [(p.watch, p.status) for p in parts] == [
        ("wagtail", PartStatus.FAILED),
        ("django", PartStatus.FAILED),
        ("crispy", PartStatus.FAILED),
        ("gone", PartStatus.NOT_FOUND),
        ("drf", PartStatus.OK),
    ]
    assert parts[2].error == "crispy (PyPI): unexpected error: RuntimeError('a bug')"
    assert parts[4].values == EXPECTED["djangorestframework"]
    assert sorted(seen) == sorted(d.watch for d in due)


async def test_concurrency_is_bounded(pypi, upstream, make_source):
    for i in range(4):
        pypi.clone("django-minify-html", f"copy-{i}")
        upstream.fail(f"/pypi/copy-{i}/json", [Fault.slow(0.02)])
        upstream.fail(f"/simple/copy-{i}/", [Fault.slow(0.02)])
    source = make_source(concurrency=3)
    parts = await source.poll([Due(f"pypi:copy-{i}", f"copy-{i}") for i in range(4)])
    assert {p.status for p in parts} == {PartStatus.OK}
    assert upstream.max_in_flight == 3
    assert source.requests_sent == 8


# -- which projects a watch names -----------------------------------------------------------

P = "https://pypi.org/project/"
KEYS = [
    # id, watch, values, key
    ("pypi-watch", "pypi:django-otp", {}, "django-otp"),
    ("pypi-watch-normalised", "pypi:Django_OTP", {}, "django-otp"),
    ("pypi-watch-wins", "pypi:wagtail", {"pypi_url": P + "django/"}, "wagtail"),
    ("pypi-watch-empty", "pypi:", {}, None),
    ("pypi-watch-garbage", "pypi:not a name", {}, None),
    ("project-url", "otp", {"pypi_url": P + "Django-OTP/"}, "django-otp"),
    ("old-url", "otp", {"pypi_url": "http://pypi.python.org/pypi/django-otp"}, "django-otp"),
    ("underscores", "x", {"pypi_url": P + "django_two_factor/"}, "django-two-factor"),
    ("dots", "x", {"pypi_url": P + "zope.Interface"}, "zope-interface"),
    ("runs", "x", {"pypi_url": P + "a__b.-c/"}, "a-b-c"),
    ("version-url", "x", {"pypi_url": P + "Django/4.0.2/"}, "django"),
    ("last-segment", "x", {"pypi_url": "https://example.com/mirror/My_Pkg/"}, "my-pkg"),
    ("query", "x", {"pypi_url": P + "django-otp/?x=1#y"}, "django-otp"),
    ("spaces", "x", {"pypi_url": "  https://pypi.org/project/wagtail/  "}, "wagtail"),
    ("quoted", "x", {"pypi_url": P + "django%2Dotp/"}, "django-otp"),
    ("no-url", "x", {}, None),
    ("null", "x", {"pypi_url": None}, None),
    ("empty", "x", {"pypi_url": ""}, None),
    ("not-text", "x", {"pypi_url": 5}, None),
    ("not-http", "x", {"pypi_url": "ftp://pypi.org/project/django/"}, None),
    ("no-scheme", "x", {"pypi_url": "pypi.org/project/django/"}, None),
    ("no-path", "x", {"pypi_url": "https://pypi.org/"}, None),
    ("project-only", "x", {"pypi_url": P}, None),
    ("pypi-only", "x", {"pypi_url": "https://pypi.python.org/pypi"}, None),
    ("named-pypi", "x", {"pypi_url": "https://pypi.org/project/pypi/"}, "pypi"),
    ("garbage-segment", "x", {"pypi_url": P + "<script>/"}, None),
    ("bad-port", "x", {"pypi_url": "http://[::1/project/x/"}, None),
]


@pytest.mark.parametrize(
    ("watch", "values", "key"), [k[1:] for k in KEYS], ids=[k[0] for k in KEYS]
)
def test_key(source, watch, values, key):
    assert source.key(watch, values) == key


def test_project_name_of_a_url():
    assert project_name("https://pypi.org/project/Django-OTP/") == "django-otp"
    assert project_name(None) is None


@pytest.mark.parametrize(
    ("info", "expected"),
    [
        # a source-like label wins over an earlier other one
        (
            {
                "project_urls": {
                    "Changelog": "https://github.com/a/changes/blob/main/CHANGES.md",
                    "Source": "https://github.com/b/real.git",
                }
            },
            "https://github.com/b/real",
        ),
        # any GitHub URL before home_page; nothing on GitHub: None
        ({"project_urls": {"Docs": "https://github.com/c/d/wiki"}}, "https://github.com/c/d"),
        ({"project_urls": None, "home_page": "https://github.com/e/f/"}, "https://github.com/e/f"),
        ({"project_urls": {"Homepage": "https://gitlab.com/g/h"}, "home_page": None}, None),
    ],
)
def test_the_repository_is_the_github_url_pypi_names(info, expected):
    data = {"info": {"version": "1.0", "classifiers": [], **info}, "urls": [], "releases": {}}
    assert parse_project(data, package="p")["pypi.repository"] == expected


def test_project_urls_that_are_not_an_object_are_invalid():
    data = {"info": {"version": "1.0", "project_urls": ["x"]}, "urls": [], "releases": {}}
    with pytest.raises(InvalidRecord, match="project_urls"):
        parse_project(data, package="p")
