"""The weekly digest (SPEC §8) over a prepared history, with a fixed clock.

The history is written straight into a real Store: watches, snapshots built from copies of the
djangopackages fixtures, failed checks, and alerts firing, fired and resolved at known times.
The period is the 7 days before NOW.

    slug                    what happened                                   expected group
    django-two-factor-auth  package-not-found (critical) fired 1 day ago    critical firing
    django-otp              1.6.0 before the period; 1.7.0, 1.8.0 in it;    warning firing
                            no-commits (warning) + an info rule firing
    aaa-info                an info condition firing                        info firing
    django-organizations    2 failed polls in the period, 1 before          failures
    aaa-new                 watched 3 days ago, then 2.0 and more stars;    changed
                            commits unknown
    django-oauth-toolkit    lost stars in the period; commits all zero      changed
    aaa-quiet               watched 2 days ago, nothing since               quiet (table)
    django-mfa              nothing; title is hostile; commits unknown      quiet (table)
    gone                    unwatched (inactive)                            not listed
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.digest import (
    BLOCKS,
    NO_COMMITS,
    Digest,
    PackageDigest,
    build_digest,
    digest_data,
    digest_subject,
    render_html,
    render_text,
    sparkline,
)
from monitor.snapshot import parse_record
from monitor.store import Store, iso

FIXTURES = Path(__file__).parent / "fixtures" / "djangopackages"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
HOSTILE_TITLE = "<script>x</script> <!channel>"

EXPECTED_ORDER = [
    "django-two-factor-auth",
    "django-otp",
    "aaa-info",
    "django-organizations",
    "aaa-new",
    "django-oauth-toolkit",
    "aaa-quiet",
    "django-mfa",
]

# django-otp's commits: a known shape to check the sparkline's scaling.
OTP_COMMITS = [0] * 40 + [1, 2, 3, 4, 5, 6, 7, 14, 0, 0, 0, 7]


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def record(fixture: str, **fields: Any) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"{fixture}.json").read_text())
    data = copy.deepcopy(data)
    data.update(fields)
    return data


class History:
    """Writes watches, snapshots, checks and alerts into a store."""

    def __init__(self, store: Store):
        self.store = store

    def watch(self, slug: str, *, added: datetime, active: bool = True) -> int:
        return self.store.insert(
            "watches",
            {
                "slug": slug,
                "title": slug,
                "notify": "[]",
                "active": int(active),
                "added_at": iso(added),
                "failures": 0,
            },
        )

    def snapshot(self, watch_id: int, at: datetime, rec: dict[str, Any]) -> int:
        content = parse_record(rec).content_json()
        snapshot_id = self.store.insert(
            "snapshots",
            {
                "watch_id": watch_id,
                "taken_at": iso(at),
                "data": content,
            },
        )
        self.store.update("watches", watch_id, {"snapshot_id": snapshot_id})
        self.check(watch_id, at, "ok", snapshot_id=snapshot_id)
        return snapshot_id

    def check(
        self,
        watch_id: int,
        at: datetime,
        status: str,
        *,
        error: str | None = None,
        snapshot_id: int | None = None,
    ) -> None:
        self.store.insert(
            "checks",
            {
                "watch_id": watch_id,
                "checked_at": iso(at),
                "duration_ms": 120,
                "status": status,
                "error": error,
                "snapshot_id": snapshot_id,
            },
        )

    def alert(
        self,
        watch_id: int,
        rule: str,
        *,
        kind: str,
        severity: str,
        status: str,
        started: datetime,
        resolved: datetime | None = None,
        summary: str = "",
    ) -> None:
        self.store.insert(
            "alerts",
            {
                "episode": f"{rule}-{watch_id}-{iso(started)}",
                "rule": rule,
                "watch_id": watch_id,
                "kind": kind,
                "severity": severity,
                "status": status,
                "started_at": iso(started),
                "resolved_at": iso(resolved) if resolved else None,
                "summary": summary or f"{rule} on {watch_id}",
                "description": rule,
                "labels": "{}",
            },
        )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    db = Store(tmp_path / "monitor.db")
    h = History(db)
    with db.transaction():
        # critical firing: the package is gone since yesterday
        tfa = h.watch("django-two-factor-auth", added=ago(20))
        h.snapshot(tfa, ago(20), record("django-two-factor-auth"))
        h.check(tfa, ago(1), "not_found")
        h.alert(
            tfa,
            "package-not-found",
            kind="condition",
            severity="critical",
            status="firing",
            started=ago(1),
            summary="django-two-factor-auth: not found on djangopackages (404)",
        )

        # warning firing, with releases before and in the period
        otp = h.watch("django-otp", added=ago(30))
        otp_rec = {"commits_over_52": OTP_COMMITS}
        h.snapshot(
            otp,
            ago(30),
            record("django-otp", pypi_version="1.5.0", repo_watchers=100, repo_forks=10, **otp_rec),
        )
        h.snapshot(
            otp,
            ago(10),
            record("django-otp", pypi_version="1.6.0", repo_watchers=110, repo_forks=10, **otp_rec),
        )
        h.snapshot(
            otp,
            ago(5),
            record("django-otp", pypi_version="1.7.0", repo_watchers=120, repo_forks=12, **otp_rec),
        )
        h.snapshot(
            otp,
            ago(2),
            record("django-otp", pypi_version="1.8.0", repo_watchers=125, repo_forks=11, **otp_rec),
        )
        h.alert(
            otp,
            "pypi-version-changed",
            kind="change",
            severity="info",
            status="fired",
            started=ago(10),
            summary="django-otp 1.5.0 → 1.6.0",
        )
        h.alert(
            otp,
            "pypi-version-changed",
            kind="change",
            severity="info",
            status="fired",
            started=ago(5),
            summary="django-otp 1.6.0 → 1.7.0",
        )
        h.alert(
            otp,
            "pypi-version-changed",
            kind="change",
            severity="info",
            status="fired",
            started=ago(2),
            summary="django-otp 1.7.0 → 1.8.0",
        )
        h.alert(
            otp,
            "no-commits-26-weeks",
            kind="condition",
            severity="warning",
            status="firing",
            started=ago(20),
            summary="No commits in the last 26 weeks",
        )
        h.alert(
            otp,
            "few-participants",
            kind="condition",
            severity="info",
            status="firing",
            started=ago(4),
            summary="Few participants",
        )
        h.alert(
            otp,
            "poll-failing",
            kind="condition",
            severity="warning",
            status="resolved",
            started=ago(9),
            resolved=ago(3),
            summary="django-otp: polling failed 3 times",
        )
        h.alert(
            otp,
            "watchers-dropped",
            kind="condition",
            severity="warning",
            status="resolved",
            started=ago(40),
            resolved=ago(35),
            summary="old news",
        )

        # info firing only: after every warning, although its name sorts first
        info = h.watch("aaa-info", added=ago(30))
        h.snapshot(info, ago(30), record("django-organizations", slug="aaa-info", title="AAA info"))
        h.alert(
            info,
            "few-participants",
            kind="condition",
            severity="info",
            status="firing",
            started=ago(12),
            summary="Few participants",
        )

        # failed polls, no change
        org = h.watch("django-organizations", added=ago(30))
        h.snapshot(org, ago(30), record("django-organizations"))
        h.check(org, ago(8), "failed", error="HTTP 500 from djangopackages")
        h.check(org, ago(6), "failed", error="timed out")
        h.check(org, ago(4), "unchanged")
        h.check(org, ago(1), "failed", error="HTTP 503 from djangopackages")

        # added during the period, then changed
        new = h.watch("aaa-new", added=ago(3))
        h.snapshot(
            new,
            ago(3),
            record(
                "django-otp",
                slug="aaa-new",
                title="AAA new",
                pypi_version="1.0",
                repo_watchers=10,
                repo_forks=3,
                commits_over_52=[],
            ),
        )
        h.snapshot(
            new,
            ago(1),
            record(
                "django-otp",
                slug="aaa-new",
                title="AAA new",
                pypi_version="2.0",
                repo_watchers=12,
                repo_forks=3,
                commits_over_52=[],
            ),
        )

        # changed in the period (lost stars), no commits in a year
        oat = h.watch("django-oauth-toolkit", added=ago(60))
        zero = {"commits_over_52": [0] * 52}
        h.snapshot(oat, ago(60), record("django-oauth-toolkit", repo_watchers=50, **zero))
        h.snapshot(oat, ago(4), record("django-oauth-toolkit", repo_watchers=45, **zero))

        # added during the period, only its baseline
        quiet = h.watch("aaa-quiet", added=ago(2))
        h.snapshot(quiet, ago(2), record("django-mfa", slug="aaa-quiet", title="AAA quiet"))

        # nothing happened; hostile title; commits unknown
        mfa = h.watch("django-mfa", added=ago(20))
        h.snapshot(
            mfa,
            ago(20),
            record(
                "django-mfa",
                title=HOSTILE_TITLE,
                commits_over_52=[],
                repo_url="javascript:alert(1)",
            ),
        )
        h.check(mfa, ago(1), "unchanged")

        # unwatched: not in the digest
        gone = h.watch("gone", added=ago(30), active=False)
        h.snapshot(gone, ago(30), record("django-otp", slug="gone"))
        h.alert(
            gone,
            "no-commits-26-weeks",
            kind="condition",
            severity="critical",
            status="firing",
            started=ago(1),
        )
    yield db
    db.close()


@pytest.fixture
def digest(store: Store) -> Digest:
    return build_digest(store, now=NOW)


def package(digest: Digest, slug: str) -> PackageDigest:
    (found,) = [p for p in digest.packages if p.slug == slug]
    return found


def text_block(text: str, slug: str) -> str:
    """One package's block in the rendered text: from its ``== title (slug) — status ==``."""
    header = re.compile(rf"^== (?:{re.escape(slug)}|.* \({re.escape(slug)}\)) — ", re.M)
    start = header.search(text)
    assert start, f"no block for {slug}"
    end = text.find("\n== ", start.end())
    return text[start.start() : end if end != -1 else len(text)]


def html_block(html: str, slug: str) -> str:
    start = html.index(f'data-slug="{slug}"')
    end = html.find("data-slug=", start + 1)
    return html[start : end if end != -1 else len(html)]


# -- the numbers ---------------------------------------------------------------------------


def test_period_and_active_watches_only(digest: Digest) -> None:
    assert digest.since == NOW - timedelta(days=7)
    assert digest.until == NOW
    assert sorted(p.slug for p in digest.packages) == sorted(EXPECTED_ORDER)


@pytest.mark.parametrize(
    ("slug", "version", "new_versions"),
    [
        ("django-otp", "1.8.0", ["1.7.0", "1.8.0"]),  # 1.6.0 came before the period
        ("aaa-new", "2.0", ["2.0"]),  # the baseline's 1.0 is not a release in the period
        ("aaa-quiet", "3.2", []),
        ("django-organizations", "2.5.0", []),
        ("django-oauth-toolkit", "3.2.0", []),
    ],
    ids=["releases-in-period", "added-in-period", "baseline-only", "failures", "stars-only"],
)
def test_version_and_releases(
    digest: Digest, slug: str, version: str, new_versions: list[str]
) -> None:
    p = package(digest, slug)
    assert p.version == version
    assert p.new_versions == new_versions


def test_longer_period_lists_older_releases(store: Store) -> None:
    digest = build_digest(store, now=NOW, since=timedelta(days=14))
    assert package(digest, "django-otp").new_versions == ["1.6.0", "1.7.0", "1.8.0"]
    assert package(digest, "django-otp").stars_change == 25  # 125 - 100 (ago 30)
    assert digest_subject(digest).startswith("[monitor] digest (14d): ")


@pytest.mark.parametrize(
    ("slug", "stars", "stars_change", "forks", "forks_change"),
    [
        ("django-otp", 125, 15, 11, 1),  # against the snapshot of 10 days ago
        ("aaa-new", 12, 2, 3, 0),  # added in the period: against its first snapshot
        ("aaa-quiet", 184, 0, 78, 0),
        ("django-oauth-toolkit", 45, -5, 829, 0),
    ],
    ids=["before-period", "added-in-period", "baseline-only", "lost-stars"],
)
def test_stars_and_forks_change(
    digest: Digest, slug: str, stars: int, stars_change: int, forks: int, forks_change: int
) -> None:
    p = package(digest, slug)
    assert (p.stars, p.stars_change, p.forks, p.forks_change) == (
        stars,
        stars_change,
        forks,
        forks_change,
    )


def test_unknown_stars_have_unknown_change(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    h = History(store)
    with store.transaction():
        w = h.watch("django-otp", added=ago(30))
        h.snapshot(w, ago(30), record("django-otp", repo_watchers=None))
        h.snapshot(w, ago(1), record("django-otp", repo_watchers=5))
    p = package(build_digest(store, now=NOW), "django-otp")
    assert (p.stars, p.stars_change) == (5, None)
    assert "stars: 5 (change unknown)" in render_text(build_digest(store, now=NOW))
    store.close()


def test_changed(digest: Digest) -> None:
    changed = {p.slug for p in digest.packages if p.changed}
    assert changed == {"django-otp", "aaa-new", "django-oauth-toolkit"}


def test_alerts_fired_resolved_and_firing(digest: Digest) -> None:
    otp = package(digest, "django-otp")
    # few-participants started in the period but still fires: listed once, as firing
    assert [(a["rule"], a["summary"]) for a in otp.fired] == [
        ("pypi-version-changed", "django-otp 1.6.0 → 1.7.0"),
        ("pypi-version-changed", "django-otp 1.7.0 → 1.8.0"),
    ]
    assert otp.fired[0]["started_at"] == iso(ago(5))
    assert otp.fired[0]["severity"] == "info"
    assert [(a["rule"], a["resolved_at"]) for a in otp.resolved] == [("poll-failing", iso(ago(3)))]
    # highest severity first; started before the period is still firing
    assert [(a["rule"], a["severity"]) for a in otp.firing] == [
        ("no-commits-26-weeks", "warning"),
        ("few-participants", "info"),
    ]
    tfa = package(digest, "django-two-factor-auth")
    assert [a["rule"] for a in tfa.fired] == []
    assert [a["rule"] for a in tfa.firing] == ["package-not-found"]
    assert package(digest, "django-mfa").firing == []


def test_an_alert_is_listed_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    h = History(store)
    with store.transaction():
        w = h.watch("django-otp", added=ago(30))
        h.snapshot(w, ago(30), record("django-otp"))
        h.alert(
            w,
            "r-firing",
            kind="condition",
            severity="warning",
            status="firing",
            started=ago(2),
            summary="still firing, started in the period",
        )
        h.alert(
            w,
            "r-flapped",
            kind="condition",
            severity="warning",
            status="resolved",
            started=ago(4),
            resolved=ago(3),
            summary="fired and resolved in the period",
        )
        h.alert(
            w,
            "r-change",
            kind="change",
            severity="info",
            status="fired",
            started=ago(1),
            summary="a change in the period",
        )
    digest = build_digest(store, now=NOW)
    otp = package(digest, "django-otp")
    assert [a["rule"] for a in otp.firing] == ["r-firing"]
    assert [a["rule"] for a in otp.resolved] == ["r-flapped"]
    assert [a["rule"] for a in otp.fired] == ["r-change"]
    assert (digest.totals["firing"], digest.totals["resolved"], digest.totals["fired"]) == (1, 1, 1)
    for rendered in (render_text(digest), render_html(digest)):
        for summary in ("still firing, started", "fired and resolved", "a change in the"):
            assert rendered.count(summary) == 1, (summary, rendered)
    store.close()


def test_failures(digest: Digest) -> None:
    org = package(digest, "django-organizations")
    assert org.failures == 2  # the one 8 days ago is before the period
    assert org.last_error == "HTTP 503 from djangopackages"
    tfa = package(digest, "django-two-factor-auth")
    assert (tfa.failures, tfa.last_error) == (0, None)  # not_found is not a failed poll


def test_links(store: Store) -> None:
    digest = build_digest(store, now=NOW, base_url="https://packages.example.org/")
    otp = package(digest, "django-otp")
    assert otp.url == "https://packages.example.org/packages/p/django-otp/"
    assert otp.repo_url == "https://github.com/django-otp/django-otp"
    assert otp.pypi_url == "http://pypi.python.org/pypi/django-otp"
    assert package(digest, "django-mfa").repo_url is None  # javascript: is never a link


def test_totals_and_subject(digest: Digest) -> None:
    assert digest.totals == {
        "packages": 8,
        "firing": 4,
        "fired": 2,  # still firing is not also "fired in the period"
        "resolved": 1,
        "failures": 2,
        "releases": 3,
        "changed": 3,
    }
    assert digest_subject(digest) == "[monitor] weekly digest: 8 packages, 4 firing, 3 releases"


# -- the sparkline -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([0] * 52, "▁" * 52),
        ([3] * 52, "█" * 52),
        ([0] * 51 + [9], "▁" * 51 + "█"),
        ([0, 1, 2, 3, 4, 5, 6, 7] * 6 + [0, 1, 2, 3], BLOCKS * 6 + BLOCKS[:4]),
        ([1] + [0] * 50 + [100], "▂" + "▁" * 50 + "█"),  # any commit shows above zero
        ([50] * 26 + [100] * 26, "▅" * 26 + "█" * 26),  # half of the max: 3.5 rounds up to 4
        (None, ""),
        ([], ""),
    ],
    ids=["all-zero", "flat", "last-week", "each-level", "tiny-week", "half", "none", "empty"],
)
def test_sparkline(counts: list[int] | None, expected: str) -> None:
    assert sparkline(counts) == expected


def test_package_sparkline(digest: Digest) -> None:
    otp = package(digest, "django-otp")
    assert otp.commits == OTP_COMMITS
    assert len(otp.sparkline) == 52
    assert otp.sparkline == "▁" * 40 + "▂▂▃▃▄▄▅█▁▁▁▅"
    oat = package(digest, "django-oauth-toolkit")
    assert oat.sparkline == "▁" * 52
    mfa = package(digest, "django-mfa")
    assert (mfa.commits, mfa.sparkline) == (None, "")


# -- the order, in data, text and HTML ------------------------------------------------------


def test_order_in_data(digest: Digest) -> None:
    assert [p.slug for p in digest.packages] == EXPECTED_ORDER
    data = digest_data(digest)
    assert [p["slug"] for p in data["packages"]] == EXPECTED_ORDER


def test_order_in_text(digest: Digest) -> None:
    text = render_text(digest)
    cards, quiet = EXPECTED_ORDER[:-2], EXPECTED_ORDER[-2:]
    positions = [text.index(text_block(text, slug)) for slug in cards]
    positions += [text.index(f"({slug})", positions[-1]) for slug in quiet]
    assert positions == sorted(positions)


def test_order_in_html(digest: Digest) -> None:
    html = render_html(digest)
    assert re.findall(r'data-slug="([^"]+)"', html) == EXPECTED_ORDER


# -- digest data ---------------------------------------------------------------------------


def test_digest_data_is_json(digest: Digest) -> None:
    data = json.loads(json.dumps(digest_data(digest)))
    assert data["since"] == "2026-11-15T10:00:00Z"
    assert data["until"] == "2026-11-22T10:00:00Z"
    assert data["totals"]["firing"] == 4
    otp = data["packages"][1]
    assert otp["slug"] == "django-otp"
    assert otp["version"] == "1.8.0"
    assert otp["new_versions"] == ["1.7.0", "1.8.0"]
    assert (otp["stars"], otp["stars_change"], otp["forks"], otp["forks_change"]) == (
        125,
        15,
        11,
        1,
    )
    assert otp["commits"] == OTP_COMMITS
    assert len(otp["sparkline"]) == 52
    assert [a["rule"] for a in otp["firing"]] == ["no-commits-26-weeks", "few-participants"]
    assert otp["links"]["djangopackages"] == "https://djangopackages.org/packages/p/django-otp/"
    assert data["packages"][-1]["title"] == HOSTILE_TITLE  # data is data; renderers escape


# -- quiet packages ------------------------------------------------------------------------


def test_quiet_packages_share_one_table(digest: Digest) -> None:
    assert [p.slug for p in digest.packages if p.quiet] == ["aaa-quiet", "django-mfa"]
    text = render_text(digest)
    table = text[text.index("== nothing to report") :].split("\n--\n")[0]
    assert table.splitlines() == [
        "== nothing to report: 2 packages ==",
        "  package                                     version  stars  forks",
        "  AAA quiet (aaa-quiet)                       3.2        184     78",
        f"  {HOSTILE_TITLE} (django-mfa)  3.2        184     78",
    ]
    assert "== AAA quiet" not in text  # no card of their own
    html = render_html(digest)
    quiet = html[html.index('class="quiet"') :]
    assert re.findall(r'data-slug="([^"]+)"', quiet) == ["aaa-quiet", "django-mfa"]
    assert re.findall(r'data-slug="([^"]+)"', html).count("aaa-quiet") == 1


def test_quiet_packages_take_a_line_each(tmp_path: Path) -> None:
    """32 packages, 30 of them quiet: the text is two cards and a table (it was 317 lines)."""
    store = Store(tmp_path / "m.db")
    h = History(store)
    with store.transaction():
        for i in range(32):
            w = h.watch(f"pkg-{i:02}", added=ago(30))
            h.snapshot(w, ago(30), record("django-otp", slug=f"pkg-{i:02}", title=f"pkg-{i:02}"))
            if i < 2:
                h.snapshot(w, ago(1), record("django-otp", slug=f"pkg-{i:02}", repo_forks=1))
    digest = build_digest(store, now=NOW)
    text = render_text(digest)
    assert len(text.splitlines()) < 70, text
    assert text.count("== ") == 3  # two cards and the table
    assert all(f"  pkg-{i:02}  " in text for i in range(2, 32))
    html = render_html(digest)
    assert html.count('class="package"') == 2
    store.close()


# -- the text ------------------------------------------------------------------------------


def test_text_blocks(digest: Digest) -> None:
    text = render_text(digest)
    assert text.startswith("monitor weekly digest: 2026-11-15 10:00 UTC – 2026-11-22 10:00 UTC\n")
    otp = text_block(text, "django-otp")
    assert otp.startswith("== django-otp — warning firing ==")
    assert "version: 1.8.0" in otp
    assert "released in the period: 1.7.0, 1.8.0" in otp
    assert "1.6.0" not in otp.split("still firing")[0]
    assert "stars: 125 (+15)" in otp
    assert "forks: 11 (+1)" in otp
    assert f"commits, 52 weeks: {'▁' * 40}▂▂▃▃▄▄▅█▁▁▁▅ 49 total" in otp
    assert "still firing:\n    [warning] no-commits-26-weeks: No commits" in otp
    assert "[info] few-participants" in otp
    assert "fired in the period:" in otp
    assert "django-otp 1.7.0 → 1.8.0" in otp
    assert "resolved in the period:\n    [warning] poll-failing" in otp
    assert "poll failures" not in otp
    assert "djangopackages: https://djangopackages.org/packages/p/django-otp/" in otp

    oat = text_block(text, "django-oauth-toolkit")
    assert oat.startswith("== Django OAuth Toolkit (django-oauth-toolkit) — changed ==")
    assert "stars: 45 (−5)" in oat
    assert f"commits, 52 weeks: {'▁' * 52} 0 total" in oat

    org = text_block(text, "django-organizations")
    assert "poll failures: 2 (last: HTTP 503 from djangopackages)" in org

    new = text_block(text, "aaa-new")
    assert f"commits, 52 weeks: {NO_COMMITS}" in new
    assert "released in the period: none" in oat
    assert "javascript:" not in text  # django-mfa's repository URL is dropped
    assert "packages/p/gone/" not in text


def test_text_strips_control_characters(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    h = History(store)
    with store.transaction():
        w = h.watch("django-otp", added=ago(30))
        h.snapshot(w, ago(30), record("django-otp", title="evil\x1b[31m\ntitle"))
        h.check(w, ago(1), "failed", error="boom\r\nInjected: header")
    text = render_text(build_digest(store, now=NOW))
    assert "\x1b" not in text
    assert "== evil [31m title (django-otp)" in text
    assert "(last: boom Injected: header)" in text
    store.close()


def test_empty_digest(tmp_path: Path) -> None:
    store = Store(tmp_path / "m.db")
    digest = build_digest(store, now=NOW)
    assert digest.packages == []
    assert digest_subject(digest) == "[monitor] weekly digest: 0 packages, 0 firing"
    assert "No packages are watched." in render_text(digest)
    assert "No packages are watched." in render_html(digest)
    store.close()


# -- the HTML ------------------------------------------------------------------------------


def test_html_escapes_upstream_text(digest: Digest) -> None:
    html = render_html(digest)
    assert "<script" not in html
    assert "<!channel>" not in html
    assert "&lt;script&gt;x&lt;/script&gt; &lt;!channel&gt;" in html
    assert "javascript:" not in html


def test_html_references_nothing_external(digest: Digest) -> None:
    html = render_html(digest)
    assert "<link" not in html.lower()
    assert "<img" not in html.lower()
    assert "<script" not in html.lower()
    assert "url(" not in html.lower()
    assert not re.search(r"\ssrc\s*=", html, re.I)
    # every http(s) URL in the document is the target of a link
    for match in re.finditer(r"https?:", html, re.I):
        assert re.search(r'<a href="$', html[: match.start()]), html[match.start() - 80 :][:160]
    assert '<a href="https://djangopackages.org/packages/p/django-otp/"' in html
    assert '<a href="https://github.com/django-otp/django-otp">' in html


def test_html_blocks(digest: Digest) -> None:
    html = render_html(digest)
    otp = html_block(html, "django-otp")
    assert "1.8.0" in otp
    assert "released in the period: 1.7.0, 1.8.0" in otp
    assert "stars 125 <small>(+15)</small>" in otp
    assert "(+1)" in otp
    assert "Still firing" in otp and "no-commits-26-weeks" in otp
    assert "Fired in the period" in otp and "django-otp 1.7.0 → 1.8.0" in otp
    assert "Resolved in the period" in otp and "poll-failing" in otp
    assert "Poll failures" not in otp
    org = html_block(html, "django-organizations")
    assert "Poll failures: 2" in org and "HTTP 503 from djangopackages" in org
    new = html_block(html, "aaa-new")
    assert NO_COMMITS in new
    assert 'class="spark"' not in new


def test_html_sparkline(digest: Digest) -> None:
    """The HTML sparkline is the text's block characters (a few hundred bytes, not 52 styled
    cells), followed by the year's total."""
    otp = html_block(render_html(digest), "django-otp")
    spark = package(digest, "django-otp").sparkline
    assert f'<span class="spark">{spark}</span> <small>49 commits in 52 weeks</small>' in otp
    assert "<td" not in otp


# -- import weight ---------------------------------------------------------------------------


def test_import_is_light() -> None:
    code = (
        "import sys, monitor.digest; "
        "print([m for m in ('jinja2', 'aiohttp', 'slack_sdk') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert out.stdout.strip() == "[]"
