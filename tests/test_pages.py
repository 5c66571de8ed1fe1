"""The status pages of a real ``monitor run --http`` (SPEC §10, issue 13): ``/`` lists the
watched packages most troubled first, ``/packages/NAME`` shows one; upstream text is escaped
and stripped of control and bidi characters; the responses carry the security headers.

In headless Chromium, both pages are measured and photographed at 1280 and 390 px (a phone:
no sideways scrolling). The screenshots are kept in the directory ``MONITOR_ARTIFACTS`` names
when it is set, else in the test's ``tmp_path``.
"""

from __future__ import annotations

import base64
import gzip
import html as htmllib
import os
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from monitor.text import BIDI
from tests.conftest import FIVE, FakeClock, Monitor
from tests.daemon import RunningMonitor
from tests.test_digest_html import DESKTOP, PHONE, chromium, needs_chromium

TOKEN = "pages-s3cret"
HOSTILE = "<script>alert(1)</script><!channel> \u202eevil\u202c \x1b[2J"
# critical firing (its repository, as PyPI names it, is unknown to GitHub), warning firing,
# last poll failed
LONG_TITLE = "Organizations" + "x" * 150  # no break opportunity in 120 characters
TROUBLED = ["pypi:django-otp", "django-mfa", "django-oauth-toolkit"]
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
        " form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def watched(monitor: Monitor, extra: str = "") -> None:
    """The five fixture packages and ``pypi:django-otp``, on all four sources;
    ``pypi:django-otp`` fires ``repo-gone`` (critical), django-mfa ``no-commits-26-weeks``
    (warning, muted), django-oauth-toolkit's last poll failed, django-otp's title is hostile
    and django-organizations' one long word. The clock is the real one's, so the daemon
    started next finds nothing due and the state stays as set here."""
    monitor.clock.now = datetime.now(UTC)
    monitor.configure(extra, interval="6h", sources=("pypi", "github", "osv"))
    result = monitor.run("watch", *FIVE, "pypi:django-otp")
    assert result.exit_code == 0, result.output
    monitor.upstream.records["django-otp"]["title"] = HOSTILE
    monitor.upstream.records["django-organizations"]["title"] = LONG_TITLE
    monitor.upstream.records["django-oauth-toolkit"]["repo_watchers"] = "many"  # invalid
    result = monitor.run("check")
    assert result.exit_code in (0, 1), result.output
    result = monitor.run(
        "mute", "django-mfa", "--rule", "no-commits-26-weeks", "--for", "7d", "--comment", "on it"
    )
    assert result.exit_code == 0, result.output
    firing = {(a["package"], a["rule"], a["severity"]) for a in monitor.json("alerts")}
    assert {("pypi:django-otp", "repo-gone", "critical")} <= firing
    assert {("django-mfa", "no-commits-26-weeks", "warning")} <= firing
    assert not {package for package, _, _ in firing} - {"pypi:django-otp", "django-mfa"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMonitor]:
    """One daemon for the tests that only read (the ``monitor`` fixture's setup, once)."""
    from tests.fakeupstream import FakeUpstream, load_fixtures
    from tests.sourceworld import World

    world = World(load_fixtures())
    with FakeUpstream.in_thread(apis=world.apis) as upstream:
        tmp_path = tmp_path_factory.mktemp("pages")
        monitor = Monitor(tmp_path, upstream, FakeClock(), tmp_path / "monitor.toml")
        watched(monitor)
        with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
            yield daemon


def get(daemon: RunningMonitor, path: str, **kwargs: Any) -> tuple[int, dict[str, str], str]:
    status, headers, body = daemon.request("GET", path, **kwargs)
    return status, headers, body.decode()


def slugs(page: str) -> list[str]:
    return re.findall(r'<tr class="[^"]*" data-slug="([^"]+)"', page)


# -- the list --------------------------------------------------------------------------------


def test_index_lists_the_troubled_first(served: RunningMonitor) -> None:
    status, headers, page = get(served, "/")
    assert status == 200
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    for name, value in HEADERS.items():
        assert headers[name] == value
    order = slugs(page)
    assert order[:3] == TROUBLED
    assert order[3:] == sorted(order[3:])  # the rest by name
    assert sorted(order) == sorted([*FIVE, "pypi:django-otp"])
    assert "<script" not in page.lower()  # no JavaScript of ours, none of theirs
    summary = page[page.index('class="summary"') : page.index("<table")]
    assert "<b>6</b> watched" in summary
    assert "1 critical" in summary and "1 warning" in summary and "0 info" in summary
    assert "1 last poll failed" in summary
    mfa = row(page, "django-mfa")
    assert "1 warning" in mfa and ">muted<" in mfa
    assert re.search(r'class="spark">[▁▂▃▄▅▆▇█]{52}<', row(page, "django-otp"))
    assert 'href="/packages/pypi%3Adjango-otp"' in page  # the name quoted in the link
    assert "poll failed" in row(page, "django-oauth-toolkit")


def row(page: str, slug: str) -> str:
    start = page.index(f'data-slug="{slug}"')
    return page[start : page.index("</tr>", start)]


def test_hostile_upstream_text_is_escaped_and_stripped(served: RunningMonitor) -> None:
    for path in ("/", "/packages/django-otp"):
        _, _, page = get(served, path)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;!channel&gt; evil" in page, path
        assert "<script>" not in page and "<!channel>" not in page
        assert not re.search(f"[{BIDI}\x00-\x08\x0b-\x1f\x7f]", page), path


def test_the_list_is_compressed_for_a_browser_that_accepts_it(served: RunningMonitor) -> None:
    status, headers, body = served.request("GET", "/", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("Content-Encoding") == "gzip"
    assert b"data-slug" in gzip.decompress(body)


# -- one package -----------------------------------------------------------------------------


def test_package_page_shows_fields_by_source_alerts_mutes_history(
    served: RunningMonitor,
) -> None:
    status, headers, page = get(served, "/packages/django-mfa")
    assert status == 200
    for name, value in HEADERS.items():
        assert headers[name] == value
    sources = re.findall(r'<section class="card" data-source="([a-z]+)">', page)
    assert sources == ["djangopackages", "pypi", "github", "osv"]
    firing = section(page, "Firing")
    assert "no-commits-26-weeks" in firing and "warning" in firing and "muted" in firing
    mutes = section(page, "Mutes")
    assert "rule no-commits-26-weeks" in mutes and "on it" in mutes
    assert re.search(r"muted until \d{4}-\d\d-\d\d \d\d:\d\d UTC <small>\(in [67] d\)", mutes)
    assert " by " in mutes  # who set it (the CLI's user)
    djangopackages = page[page.index('data-source="djangopackages"') :]
    assert "<dt>pypi_version</dt>" in djangopackages
    assert "<dt>pypi.version</dt>" in page and "<dt>github.stars</dt>" in page
    history = section(page, "History")
    assert "first values" in history


def section(page: str, heading: str) -> str:
    start = page.index(f"<h2>{heading}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start : end if end != -1 else None]


def test_package_page_of_a_pypi_watch_by_its_quoted_name(served: RunningMonitor) -> None:
    status, _, page = get(served, "/packages/pypi%3Adjango-otp")
    assert status == 200
    assert "pypi:django-otp" in page
    assert 'data-source="pypi"' in page and 'data-source="djangopackages"' not in page


def test_a_failed_poll_shows_its_error(served: RunningMonitor) -> None:
    _, _, page = get(served, "/packages/django-oauth-toolkit")
    assert "last poll failed" in page
    assert re.search(r'class="error">[^<]*repo_watchers', page), page


def test_an_unknown_package_is_404(served: RunningMonitor) -> None:
    status, headers, page = get(served, "/packages/%3Cscript%3Enope")
    assert status == 404
    assert headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
    assert "&lt;script&gt;nope</b> is not watched" in page


def test_with_a_token_the_pages_open_with_basic_auth(monitor: Monitor) -> None:
    watched(monitor, f'[http]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n')
    basic = {"Authorization": "Basic " + base64.b64encode(f"me:{TOKEN}".encode()).decode()}
    wrong = {"Authorization": "Basic " + base64.b64encode(b"me:nope").decode()}
    with RunningMonitor(monitor.config_path) as daemon:
        for path in ("/", "/packages/django-mfa"):
            status, headers, page = get(daemon, path)
            assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
            assert "django-mfa" not in page
            assert get(daemon, path, headers=wrong)[0] == 401
            status, _, page = get(daemon, path, headers=basic)
            assert status == 200 and "django-mfa" in page
        assert slugs(get(daemon, "/", headers=basic)[2])[:3] == TROUBLED


# -- a thousand packages ----------------------------------------------------------------------


def thousand(monitor: Monitor, n: int) -> Any:
    """An App over a store of ``n`` watched packages as a year of polling leaves them: the
    fixtures' records cloned (52 weeks of commits, ~40 participants each), every tenth
    package with a warning firing, every fiftieth with a critical one, every thirtieth with
    a failed last poll."""
    from monitor.app import App
    from monitor.config import load_config
    from monitor.snapshot import parse_record
    from monitor.store import Store, iso
    from tests.fakeupstream import clone_records

    now = datetime.now(UTC)
    store = Store(monitor.tmp_path / "thousand.db")
    with store.transaction():
        for i, record in enumerate(clone_records(n).values()):
            failed = i % 30 == 7
            watch_id = store.insert(
                "watches",
                {
                    "slug": record["slug"],
                    "title": record["title"],
                    "notify": "[]",
                    "active": 1,
                    "added_at": iso(now),
                    "failures": int(failed),
                    "last_checked_at": iso(now),
                    "last_status": "failed" if failed else "unchanged",
                    "last_error": "HTTP 503" if failed else None,
                },
            )
            store.insert(
                "parts",
                {
                    "watch_id": watch_id,
                    "source": "djangopackages",
                    "key": record["slug"],
                    "data": parse_record(record).content_json(),
                    "failures": 0,
                },
            )
            for severity, every in (("warning", 10), ("critical", 50)):
                if i % every == 3:
                    store.insert(
                        "alerts",
                        {
                            "episode": f"{severity}-{i}",
                            "rule": f"some-{severity}",
                            "watch_id": watch_id,
                            "kind": "condition",
                            "severity": severity,
                            "status": "firing",
                            "started_at": iso(now),
                        },
                    )
    return App(load_config(monitor.config_path), store, clock=lambda: now)


def test_the_list_of_a_thousand_packages_stays_small_and_quick(monitor: Monitor) -> None:
    from monitor.server.pages import render_index
    from tests.fakeupstream import clone_records

    app = thousand(monitor, 1000)
    render_index(app, ZoneInfo("UTC"))  # templates compiled
    started = time.perf_counter()
    page = render_index(app, ZoneInfo("UTC"))
    seconds = time.perf_counter() - started
    app.store.close()
    size, packed = len(page.encode()), len(gzip.compress(page.encode()))
    (artifacts(monitor.tmp_path) / "pages-index-1000.txt").write_text(
        f"{size} bytes, {packed} gzipped, rendered in {seconds * 1000:.0f} ms\n"
    )
    # critical (and warning) firing, then warning only, then a failed last poll, by name
    rank = [
        0 if i % 50 == 3 else 1 if i % 10 == 3 else 2 if i % 30 == 7 else 3 for i in range(1000)
    ]
    assert slugs(page) == [slug for _, slug in sorted(zip(rank, clone_records(1000), strict=True))]
    assert size < 1_000_000, size  # under 1 kB a package
    assert packed < 100_000, packed
    assert seconds < 2.0, seconds


# -- in a browser ----------------------------------------------------------------------------

PROBE = """
    const frame = document.getElementById("digest");
    frame.onload = () => {
      const doc = frame.contentDocument;
      const probe = document.getElementById("probe");
      probe.dataset.viewport = doc.documentElement.clientWidth;
      probe.dataset.scrollWidth = doc.documentElement.scrollWidth;
      const spark = doc.querySelector(".spark");
      probe.dataset.sparkLines = spark ? spark.getClientRects().length : 0;
      const row = doc.querySelector("tr[data-slug]");
      probe.dataset.cards = row && getComputedStyle(row).display === "block" ? 1 : 0;
      // anything drawn past the frame's right edge
      let over = 0;
      for (const el of doc.body.querySelectorAll("*")) {
        if (el.getBoundingClientRect().right > doc.documentElement.clientWidth + 0.5) over += 1;
      }
      probe.dataset.over = over;
    };
"""


def framed(html: str, width: int, height: int) -> str:
    """The page in a ``width`` × ``height`` px frame; on load, ``PROBE`` measures the frame's
    layout into the ``data-*`` attributes of ``<body id="probe">`` (as the digest's test)."""
    return (
        '<!DOCTYPE html><html><body id="probe" style="margin:0;overflow:hidden;background:#333">'
        f'<iframe id="digest" width="{width}" height="{height}" style="border:0;display:block"'
        f' srcdoc="{htmllib.escape(html)}"></iframe><script>{PROBE}</script></body></html>'
    )


def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("MONITOR_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


def measure(tmp_path: Path, html: str, width: int, name: str) -> dict[str, int]:
    """The page (its HTML as served) in a ``width`` px frame: its layout's figures, and a
    screenshot ``pages-NAME-WIDTH.png`` in :func:`artifacts`."""
    page = tmp_path / f"{name}-{width}-probe.html"
    page.write_text(framed(html, width, 40_000), encoding="utf-8")
    window = f"--window-size={max(width, 500)},1400"
    dom = chromium(tmp_path, window, "--dump-dom", page.as_uri())
    body = re.search(r'<body id="probe"[^>]*>', dom)
    assert body, dom[:500]
    found = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body.group(0)))
    assert found, f"the probe did not run: {body.group(0)}"
    shot = artifacts(tmp_path) / f"pages-{name}-{width}.png"
    chromium(tmp_path, window, f"--screenshot={shot}", page.as_uri())
    assert shot.stat().st_size > 0
    return {key: int(value) for key, value in found.items()}


@needs_chromium
@pytest.mark.parametrize("path", ["/", "/packages/django-mfa"], ids=["index", "package"])
def test_pages_read_at_1280_and_on_a_390px_phone(
    served: RunningMonitor, tmp_path: Path, path: str
) -> None:
    status, _, html = get(served, path)
    assert status == 200
    name = "index" if path == "/" else "package"
    phone = measure(tmp_path, html, PHONE, name)
    assert phone["viewport"] == PHONE
    assert phone["scroll-width"] <= PHONE, phone  # no sideways scrolling
    assert phone["over"] == 0, phone
    assert phone["spark-lines"] == 1, phone  # the 52 weeks on one line
    desktop = measure(tmp_path, html, DESKTOP, name)
    assert desktop["scroll-width"] <= DESKTOP, desktop
    assert desktop["spark-lines"] == 1, desktop
    if name == "index":
        assert (phone["cards"], desktop["cards"]) == (1, 0)  # cards on a phone, a table else
