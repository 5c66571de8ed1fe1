"""The OSV source against a fake OSV API on 127.0.0.1 (tests/fake_osv.py; no internet).

Sleep is injected (backoff delays are recorded, not waited)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monitor.sources import Due, Part, PartState, PartStatus
from monitor.sources.osv import (
    MemoryVulnCache,
    OSVSource,
    Vuln,
    osv_link,
    project_name,
)
from tests.fake_osv import FakeOSV
from tests.fakeupstream import FakeUpstream, Fault

# Real advisories, as OSV has them (ids, aliases, fixed versions; summaries shortened).
SQLI = "GHSA-2hrw-hx67-34x6"  # Django: SQL injection in QuerySet.values() on JSONField
SQLI_CVE = "CVE-2024-42005"
DOS = "PYSEC-2024-156"  # Django: denial of service in floatformat
DOS_CVE = "CVE-2024-41989"


@pytest.fixture
def osv() -> FakeOSV:
    osv = FakeOSV()
    osv.add_vuln(
        SQLI,
        "Django",
        ["4.2.0", "4.2.14", "5.0.7"],
        ["4.2.15", "5.0.8"],
        "Django SQL injection vulnerability",
        aliases=[SQLI_CVE, "PYSEC-2024-70"],
    )
    osv.add_vuln(
        DOS,
        "django",
        ["4.2.14", "5.0.7"],
        ["5.0.8", "4.2.15"],
        "Django denial-of-service in floatformat",
        aliases=[DOS_CVE],
        modified="2024-08-10T04:25:53.871Z",
    )
    return osv


@pytest.fixture
async def upstream(osv):
    async with FakeUpstream({}, apis=[osv]) as up:
        yield up


@pytest.fixture
def cache() -> MemoryVulnCache:
    return MemoryVulnCache()


@pytest.fixture
def make_source(upstream, session, sleeps, cache):
    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        await asyncio.sleep(0)

    def make(**kwargs: Any) -> OSVSource:
        kwargs.setdefault("cache", cache)
        return OSVSource(
            upstream.url, session=session, sleep=sleep, rng=lambda: 1.0, timeout=5, **kwargs
        )

    return make


def due(key: str, *, watch: str | None = None, fingerprint: bytes | None = None) -> Due:
    name = key.partition("==")[0]
    return Due(watch or name, key, state=PartState(fingerprint=fingerprint))


def vulns(part: Part) -> list[str]:
    assert part.status is PartStatus.OK, part.error
    assert part.values is not None
    return part.values["vulns"]


# -- many watches ----------------------------------------------------------------------------


async def test_2500_watches_take_three_querybatch_requests(osv, upstream, make_source):
    for name in ("pkg-5", "pkg-1500"):  # one vulnerability in the answers of two batches
        osv.vulns[SQLI]["affected"].append(
            {"package": {"ecosystem": "PyPI", "name": name}, "versions": ["1.0"], "ranges": []}
        )
    upstream.fail(f"/v1/vulns/{SQLI}", [Fault.slow(0.2)])  # still fetching when both need it
    osv.add_vuln("PYSEC-2023-1", "pkg-7", ["1.0"], "1.1", "Path traversal", aliases=["CVE-2023-1"])
    osv.add_vuln("PYSEC-2023-2", "pkg-2400", ["1.0"], None, "XSS")
    source = make_source()
    seen: list[Part] = []

    parts = await source.poll([due(f"pkg-{i}==1.0") for i in range(2500)], seen.append)

    assert osv.batch_requests == source.batches_sent == 3
    assert len(osv.queries) == 2500
    assert osv.queries[0] == {"package": {"name": "pkg-0", "ecosystem": "PyPI"}, "version": "1.0"}
    assert [p.watch for p in parts] == [f"pkg-{i}" for i in range(2500)]
    assert sorted(p.watch for p in seen) == sorted(p.watch for p in parts)
    assert {p.watch: vulns(p) for p in parts if vulns(p)} == {
        "pkg-5": [SQLI],
        "pkg-7": ["PYSEC-2023-1"],
        "pkg-1500": [SQLI],
        "pkg-2400": ["PYSEC-2023-2"],
    }
    # One detail request per vulnerability, though SQLI is in two batches' answers.
    assert sorted(osv.detail_ids) == sorted([SQLI, "PYSEC-2023-1", "PYSEC-2023-2"])
    assert source.requests_sent == 3 + 3


async def test_a_batch_never_holds_more_than_the_api_takes(osv, make_source):
    source = make_source(batch=5000)
    parts = await source.poll([due(f"pkg-{i}==1.0") for i in range(1001)])
    assert osv.batch_requests == 2
    assert all(p.status is PartStatus.OK for p in parts)


async def test_watches_with_one_key_share_a_query(osv, make_source):
    source = make_source()
    parts = await source.poll(
        [due("django==5.0.7", watch="django"), due("django==5.0.7", watch="pypi:django")]
    )
    assert len(osv.queries) == 1
    assert [vulns(p) for p in parts] == [[SQLI, DOS], [SQLI, DOS]]
    assert [p.watch for p in parts] == ["django", "pypi:django"]


async def test_no_due_watches_no_request(osv, make_source):
    source = make_source()
    assert await source.poll([]) == []
    assert source.requests_sent == 0


# -- paging ----------------------------------------------------------------------------------


async def test_next_page_token_is_followed_for_the_queries_that_have_one(osv, make_source):
    for n in range(5):
        osv.add_vuln(f"PYSEC-2022-{n}", "wagtail", ["2.0"], "2.1", f"issue {n}")
    osv.page_size = 2
    source = make_source()

    parts = await source.poll([due("wagtail==2.0"), due("django==4.2.0"), due("otp==1.0")])

    assert vulns(parts[0]) == [f"PYSEC-2022-{n}" for n in range(5)]
    assert vulns(parts[1]) == [SQLI]
    assert vulns(parts[2]) == []
    assert osv.batch_requests == 3  # pages of 2, 2 and 1
    assert [q["package"]["name"] for q in osv.queries] == ["wagtail", "django", "otp"] + [
        "wagtail"
    ] * 2
    assert all("page_token" in q for q in osv.queries[3:])


async def test_a_page_token_given_twice_fails_the_batch(upstream, make_source):
    answer = {"results": [{"vulns": [], "next_page_token": "again"}]}
    upstream.fail("/v1/querybatch", [Fault.json(answer), Fault.json(answer)])
    [part] = await make_source().poll([due("django==5.0.7")])
    assert part.status is PartStatus.FAILED
    assert "django: OSV querybatch: field 'next_page_token'" in (part.error or "")


# -- details, kept once per (id, modified) -----------------------------------------------------


async def test_details_are_fetched_once_per_id_and_modified(osv, make_source, cache):
    source = make_source()
    [first] = await source.poll([due("django==5.0.7")])
    assert vulns(first) == [SQLI, DOS]
    assert osv.detail_requests == 2

    # A new watch on the same version: nothing to fingerprint against, details from the cache.
    [again] = await source.poll([due("django==5.0.7", watch="pypi:django")])
    assert vulns(again) == [SQLI, DOS]
    assert again.fingerprint == first.fingerprint
    assert osv.detail_requests == 2

    osv.touch(SQLI)
    [touched] = await source.poll([due("django==5.0.7", fingerprint=first.fingerprint)])
    assert vulns(touched) == [SQLI, DOS]
    assert touched.fingerprint != first.fingerprint
    assert sorted(osv.detail_ids[:2]) == [SQLI, DOS]
    assert osv.detail_ids[2:] == [SQLI]
    assert len(cache.vulns) == 3  # both versions of SQLI are kept


async def test_an_unchanged_fingerprint_needs_no_details(osv, make_source, cache):
    [first] = await make_source().poll([due("django==5.0.7")])
    cache.vulns.clear()  # even with nothing kept
    osv.detail_requests = 0

    [part] = await make_source().poll([due("django==5.0.7", fingerprint=first.fingerprint)])

    assert part.status is PartStatus.UNCHANGED
    assert part.values is None
    assert part.fingerprint == first.fingerprint
    assert osv.detail_requests == 0


async def test_no_vulnerabilities_has_a_fingerprint_too(osv, make_source):
    [first] = await make_source().poll([due("django==5.1")])
    assert vulns(first) == []
    [second] = await make_source().poll([due("django==5.1", fingerprint=first.fingerprint)])
    assert second.status is PartStatus.UNCHANGED
    assert osv.detail_requests == 0


async def test_withdrawn_vulnerabilities_are_left_out(osv, make_source):
    source = make_source()
    osv.withdraw(SQLI)
    [part] = await source.poll([due("django==4.2.14")])
    assert vulns(part) == [DOS]
    [withdrawn] = source.details([SQLI])
    assert withdrawn.withdrawn == osv.vulns[SQLI]["withdrawn"]


async def test_details_for_messages(osv, make_source, cache):
    source = make_source()
    await source.poll([due("django==5.0.7")])
    osv.touch(DOS)
    osv.vulns[DOS]["summary"] = "Django: potential denial-of-service in floatformat"
    await source.poll([due("django==5.0.7")])

    sqli, dos = source.details([SQLI, DOS, "GHSA-none-none-none"])

    assert sqli.id == SQLI
    assert sqli.summary == "Django SQL injection vulnerability"
    assert sqli.aliases == (SQLI_CVE, "PYSEC-2024-70")
    assert sqli.fixed == ("4.2.15", "5.0.8")
    assert sqli.fixed_for("Django") == ("4.2.15", "5.0.8")
    assert sqli.link == osv_link(SQLI) == f"https://osv.dev/vulnerability/{SQLI}"
    assert dos.summary == "Django: potential denial-of-service in floatformat"  # the newest
    assert dos.modified == osv.vulns[DOS]["modified"]
    assert len(cache.vulns) == 3


def test_vuln_json_round_trip():
    vuln = Vuln.from_record(
        {
            "id": "GHSA-xxxx-yyyy-zzzz",
            "modified": "2024-01-02T03:04:05Z",
            "details": "\n\nA long story.\nMore.",
            "aliases": ["CVE-2024-1"],
            "affected": [
                {
                    "package": {"ecosystem": "PyPI", "name": "Foo_Bar"},
                    "ranges": [
                        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.10"}]},
                        {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.9"}]},
                        {"type": "GIT", "events": [{"introduced": "0"}, {"fixed": "abc123"}]},
                    ],
                },
                {
                    "package": {"ecosystem": "npm", "name": "foo"},
                    "ranges": [{"type": "SEMVER", "events": [{"fixed": "9.9.9"}]}],
                },
            ],
        },
        subject="test",
    )
    assert vuln.summary == "A long story."
    assert vuln.fixed == ("1.9", "1.10")
    assert vuln.affected == (("foo-bar", ("1.9", "1.10")),)
    assert Vuln.from_json_dict(vuln.to_json_dict()) == vuln


def test_a_long_summary_is_cut():
    record = {"id": "PYSEC-1", "modified": "2024-01-02T03:04:05Z", "summary": "x" * 2000}
    summary = Vuln.from_record(record, subject="t").summary
    assert summary is not None and len(summary) == 500 and summary.endswith("…")


# -- failures --------------------------------------------------------------------------------


async def test_a_failing_batch_fails_its_own_parts_only(osv, make_source, sleeps):
    osv.add_vuln("PYSEC-2023-9", "pkg-9", ["1.0"], "1.1", "issue")
    osv.fail_batch("pkg-1500", [500, 500, 500])
    source = make_source()

    parts = await source.poll([due(f"pkg-{i}==1.0") for i in range(2500)])

    failed = [p for p in parts if p.status is PartStatus.FAILED]
    assert [p.watch for p in failed] == [f"pkg-{i}" for i in range(1000, 2000)]
    assert failed[0].error == "pkg-1000: OSV querybatch: HTTP 500 after 3 attempts"
    assert vulns(parts[9]) == ["PYSEC-2023-9"]
    assert all(p.status is PartStatus.OK for p in parts[2000:])
    assert len(sleeps) == 2


async def test_a_failing_detail_fails_the_parts_that_need_it(upstream, osv, make_source):
    upstream.fail(f"/v1/vulns/{SQLI}", [503, 503, 503])
    source = make_source()

    parts = await source.poll([due("django==4.2.0"), due("django==5.0.7"), due("django==5.1")])

    assert [p.status for p in parts] == [PartStatus.FAILED, PartStatus.FAILED, PartStatus.OK]
    assert parts[0].error == f"django: OSV vulnerability {SQLI}: HTTP 503 after 3 attempts"
    assert parts[0].fingerprint is None
    # What was fetched is kept: the next poll asks only for what failed.
    osv.detail_ids.clear()
    parts = await source.poll([due("django==5.0.7")])
    assert vulns(parts[0]) == [SQLI, DOS]
    assert osv.detail_ids == [SQLI]


async def test_a_vulnerability_gone_before_its_details_fails_the_part(osv, upstream, make_source):
    upstream.fail(f"/v1/vulns/{SQLI}", [Fault.json({"code": 5, "message": "Bug not found."}, 404)])
    [part] = await make_source().poll([due("django==4.2.0")])
    assert part.status is PartStatus.FAILED
    assert part.error == f"django: OSV vulnerability {SQLI}: HTTP 404 (not found)"


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"results": []}, "field 'results': 0 results for 2 queries"),
        ({"results": {}}, "field 'results': expected a list"),
        ([], "field 'results': expected a list"),
        ({"results": [{}, {"vulns": {}}]}, "field 'vulns': expected a list"),
        ({"results": [{}, {"vulns": ["GHSA-1"]}]}, "field 'vulns': expected objects"),
        (
            {"results": [{}, {"vulns": [{"id": "../x", "modified": "2024-01-01T00:00:00Z"}]}]},
            "field 'id': not an OSV id: '../x'",
        ),
        (
            {"results": [{}, {"vulns": [{"id": "GHSA-1", "modified": "yesterday"}]}]},
            "field 'modified': not a datetime: 'yesterday'",
        ),
        (
            {"results": [{}, {"vulns": [], "next_page_token": 7}]},
            "field 'next_page_token': expected a string",
        ),
    ],
    ids=["count", "not-a-list", "not-an-object", "vulns", "vuln", "id", "modified", "token"],
)
async def test_a_malformed_answer_fails_the_batch(upstream, make_source, answer, problem):
    upstream.fail("/v1/querybatch", [Fault.json(answer)])
    parts = await make_source().poll([due("django==5.0.7"), due("wagtail==2.0")])
    assert [p.status for p in parts] == [PartStatus.FAILED] * 2
    assert parts[0].error is not None and parts[0].error.startswith("django: ")
    assert problem in parts[0].error
    assert "OSV querybatch" in parts[0].error


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"summary": 7}, "field 'summary': expected a string"),
        ({"aliases": "CVE-1"}, "field 'aliases': expected a list of strings"),
        ({"affected": [{"package": "django"}]}, "field 'affected': expected objects"),
        ({"withdrawn": "soon"}, "field 'withdrawn': not a datetime"),
        ({"id": "GHSA-other"}, "field 'id': the record is 'GHSA-other'"),
    ],
    ids=["summary", "aliases", "affected", "withdrawn", "other-id"],
)
async def test_a_malformed_record_fails_the_parts_that_need_it(osv, make_source, change, problem):
    record = osv.vulns[SQLI]
    record.update(change, affected=[*record["affected"], *change.get("affected", [])])
    parts = await make_source().poll([due("django==4.2.0"), due("django==4.2.14")])
    assert parts[0].status is PartStatus.FAILED
    assert parts[0].error is not None
    assert parts[0].error.startswith(f"django: OSV vulnerability {SQLI}: ")
    assert problem in parts[0].error
    assert parts[1].status is PartStatus.FAILED  # it needs SQLI too
    assert osv.detail_requests == 2


async def test_osv_down_fails_every_part_naming_osv(upstream, make_source):
    await upstream.stop()
    parts = await make_source(retries=1).poll([due("django==5.0.7"), due("wagtail==2.0")])
    assert [p.status for p in parts] == [PartStatus.FAILED] * 2
    assert parts[1].error == "wagtail: OSV querybatch: connection refused (1 attempt)"


async def test_a_bad_key_fails_its_own_part(make_source):
    parts = await make_source().poll([Due("x", "no version"), due("django==5.1")])
    assert parts[0].status is PartStatus.FAILED
    assert parts[0].error == "x: OSV: bad key 'no version'"
    assert parts[1].status is PartStatus.OK


# -- which watches apply ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("watch", "values", "key"),
    [
        (
            "django",
            {
                "pypi_url": "https://pypi.org/project/Django/",
                "pinned": "4.2.1",
                "pypi.version": "5.0",
                "pypi_version": "4.0",
            },
            "django==4.2.1",
        ),
        (
            "django",
            {
                "pypi_url": "https://pypi.org/project/Django/",
                "pypi.version": "5.0",
                "pypi_version": "4.0",
            },
            "django==5.0",
        ),
        (
            "django",
            {"pypi_url": "https://pypi.org/project/Django", "pypi_version": "4.0"},
            "django==4.0",
        ),
        (
            "django",
            {"pypi_url": "http://pypi.python.org/pypi/Django", "pinned": " 4.0 "},
            "django==4.0",
        ),
        ("pypi:Django_Otp", {"pypi.version": "1.5.4"}, "django-otp==1.5.4"),
        (
            "pypi:django-otp",
            {"pypi_url": "https://pypi.org/project/other/", "pinned": "1.0"},
            "django-otp==1.0",
        ),
        (
            "django",
            {"pypi_url": "https://pypi.org/project/Django/", "pinned": None, "pypi_version": "4.0"},
            "django==4.0",
        ),
        ("django", {"pypi_url": "https://pypi.org/project/Django/", "pinned": ""}, None),
        ("django", {"pypi_url": "https://pypi.org/project/Django/"}, None),
        ("django", {"pypi_url": None, "pypi_version": "4.0"}, None),
        ("django", {"pypi_url": "", "pypi_version": "4.0"}, None),
        ("django", {"pypi_version": "4.0"}, None),
        ("pypi:django", {}, None),
        ("django", {"pypi_url": "https://pypi.org/", "pypi_version": "4.0"}, None),
    ],
    ids=[
        "pinned-first",
        "then-pypi.version",
        "then-pypi_version",
        "old-pypi-url",
        "pypi-watch",
        "pypi-watch-name-wins",
        "null-pinned",
        "blank-pinned",
        "no-version",
        "null-url",
        "blank-url",
        "no-url",
        "pypi-watch-no-version",
        "url-without-project",
    ],
)
def test_key(session, cache, watch, values, key):
    assert OSVSource(session=session, cache=cache).key(watch, values) == key


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://pypi.org/project/Django-OTP/", "django-otp"),
        ("https://pypi.python.org/pypi/zope.interface", "zope-interface"),
        ("not a url", None),
        ("https://pypi.org/project/bad name/", None),
        (42, None),
    ],
)
def test_project_name(url, name):
    assert project_name(url) == name


async def test_the_fake_refuses_over_1000_queries_like_osv(upstream, session):
    query = {"package": {"name": "django", "ecosystem": "PyPI"}, "version": "5.0.7"}
    async with session.post(
        f"{upstream.url}/v1/querybatch", json={"queries": [query] * 1001}
    ) as response:
        assert response.status == 400
        assert (await response.json())["message"] == "Too many queries."
