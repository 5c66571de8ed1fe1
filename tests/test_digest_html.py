"""The HTML digest as mail: under 100,000 bytes for 100 packages (Gmail clips at ~102 KB), and
readable on a 390 px phone screen without sideways scrolling (SPEC §8).

The phone check renders the digest in headless Chromium inside a 390 px wide frame (headless
windows are at least 500 px wide) and reads the frame's ``scrollWidth``; its screenshots, at 390
and 1280 px, are left in the test's ``tmp_path`` to look at.
"""

from __future__ import annotations

import html as htmllib
import random
import re
import subprocess
from pathlib import Path

import pytest

from monitor.digest import Digest, build_digest, render_html
from monitor.store import Store
from tests.fakeupstream import clone_records
from tests.test_digest import NOW, History, ago

CHROMIUM = Path("/usr/bin/chromium")
PHONE = 390
DESKTOP = 1280
MAIL_LIMIT = 100_000  # bytes
LONG_WORD = "x" * 150  # no break opportunity anywhere


def realistic_digest(tmp_path: Path, n: int, *, quiet: int = 0) -> Digest:
    """``n`` packages, every one with something to report (stars move every week), 9 in 10
    with a 52-week sparkline; a quarter with a warning firing, a sixth released, an eighth
    with a resolved alert, a tenth with failed polls; a title and an error with a 150-character
    word. Then ``quiet`` packages with nothing to report, one with a 150-character title."""
    rng = random.Random(n)
    store = Store(tmp_path / f"realistic-{n}.db")
    h = History(store)
    with store.transaction():
        for i, rec in enumerate(clone_records(n).values()):
            slug = rec["slug"]
            commits = [max(0, round(rng.gauss(3, 4))) for _ in range(52)] if i % 10 != 9 else []
            rec.update(pypi_version="1.4.0", repo_watchers=1000 + 7 * i, repo_forks=100 + i)
            rec["commits_over_52"] = commits
            if i == 1:
                rec["title"] = f"Django {LONG_WORD}"
            w = h.watch(slug, added=ago(60))
            h.snapshot(w, ago(60), rec)
            h.snapshot(
                w,
                ago(3),
                {
                    **rec,
                    "repo_watchers": rec["repo_watchers"] + rng.randint(1, 40),
                    "pypi_version": "1.5.0" if i % 6 == 0 else "1.4.0",
                },
            )
            if i % 4 == 0:
                h.alert(
                    w,
                    "no-commits-26-weeks",
                    kind="condition",
                    severity="warning",
                    status="firing",
                    started=ago(2),
                    summary=f"{slug}: no commits in the last 26 weeks",
                )
            if i % 6 == 0:
                h.alert(
                    w,
                    "pypi-version-changed",
                    kind="change",
                    severity="info",
                    status="fired",
                    started=ago(3),
                    summary=f"{slug}: 1.4.0 → 1.5.0",
                )
            if i % 8 == 0:
                h.alert(
                    w,
                    "poll-failing",
                    kind="condition",
                    severity="warning",
                    status="resolved",
                    started=ago(5),
                    resolved=ago(4),
                    summary=f"{slug}: polling failed 3 times",
                )
            if i % 10 == 0:
                error = f"HTTP 503 from djangopackages {LONG_WORD}" if i == 0 else "timed out"
                h.check(w, ago(1), "failed", error=error)
        for i, rec in enumerate(clone_records(quiet, first_id=n + 1).values()):
            rec["slug"] = f"quiet-{rec['slug']}"
            if i == 0:
                rec["title"] = f"Quiet {LONG_WORD}"
            h.snapshot(h.watch(rec["slug"], added=ago(60)), ago(60), rec)
    digest = build_digest(store, now=NOW, timezone="Europe/Amsterdam")
    store.close()
    return digest


@pytest.mark.parametrize("n", [30, 100])
def test_html_stays_under_the_mail_clipping_size(tmp_path: Path, n: int) -> None:
    digest = realistic_digest(tmp_path, n)
    assert all(not p.quiet for p in digest.packages)  # a card each: the heaviest case
    html = render_html(digest)
    size = len(html.encode())
    (tmp_path / f"digest-{n}.html").write_text(html, encoding="utf-8")
    assert size < MAIL_LIMIT * n / 100, f"{size} bytes for {n} packages"
    assert html.count('class="spark"') == n - n // 10


# -- in a browser ----------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: the 390 px phone check needs it (apt-get install chromium)",
)


def chromium(tmp_path: Path, *args: str) -> str:
    """Run headless Chromium with a fresh profile; return what it wrote on stdout."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    result = subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


PROBE = """
    const frame = document.getElementById("digest");
    frame.onload = () => {
      const doc = frame.contentDocument;
      const spark = doc.querySelector(".spark");
      const probe = document.getElementById("probe");
      probe.dataset.viewport = doc.documentElement.clientWidth;
      probe.dataset.scrollWidth = doc.documentElement.scrollWidth;
      probe.dataset.sparkLines = spark ? spark.getClientRects().length : 0;
      probe.dataset.sparkWidth = spark ? Math.ceil(spark.getBoundingClientRect().width) : 0;
      // quiet table cells other than the name (version, stars, forks) broken over lines
      let wrapped = 0;
      for (const cell of doc.querySelectorAll(".quiet td:not(:first-child)")) {
        const range = doc.createRange();
        range.selectNodeContents(cell);
        const tops = new Set([...range.getClientRects()].map((rect) => Math.round(rect.top)));
        if (tops.size > 1) wrapped += 1;
      }
      probe.dataset.quietWrapped = wrapped;
    };
"""


def framed(html: str, width: int, height: int) -> str:
    """The digest in a ``width`` × ``height`` px frame; on load, ``PROBE`` measures the frame's
    layout into the ``data-*`` attributes of ``<body id="probe">``."""
    return (
        '<!DOCTYPE html><html><body id="probe" style="margin:0;overflow:hidden;background:#333">'
        f'<iframe id="digest" width="{width}" height="{height}" style="border:0;display:block"'
        f' srcdoc="{htmllib.escape(html)}"></iframe><script>{PROBE}</script></body></html>'
    )


def measure(tmp_path: Path, html: str, width: int, name: str) -> dict[str, int]:
    page = tmp_path / f"{name}-probe.html"
    # A frame taller than the digest: no vertical scrollbar eats into the width (a phone's
    # scrollbars overlay the page).
    page.write_text(framed(html, width, 40_000), encoding="utf-8")
    dom = chromium(tmp_path, f"--window-size={max(width, 500)},2400", "--dump-dom", page.as_uri())
    body = re.search(r'<body id="probe"[^>]*>', dom)
    assert body, dom[:500]
    found = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body.group(0)))
    assert found, f"the probe did not run: {body.group(0)}"
    chromium(
        tmp_path,
        f"--window-size={max(width, 500)},2400",
        f"--screenshot={tmp_path / f'{name}-{width}.png'}",
        page.as_uri(),
    )
    return {key: int(value) for key, value in found.items()}


@needs_chromium
def test_html_reads_on_a_390px_phone(tmp_path: Path) -> None:
    html = render_html(realistic_digest(tmp_path, 30, quiet=10))
    assert html.count("<tr data-slug=") == 10
    phone = measure(tmp_path, html, PHONE, "digest")
    assert phone["viewport"] == PHONE
    assert phone["scroll-width"] <= PHONE, phone  # no sideways scrolling
    assert phone["spark-lines"] == 1, phone  # the 52 weeks on one line
    assert phone["quiet-wrapped"] == 0, phone  # numbers are not broken to fit long names
    desktop = measure(tmp_path, html, DESKTOP, "digest")
    assert desktop["scroll-width"] <= DESKTOP, desktop
    assert desktop["spark-lines"] == 1, desktop
    assert desktop["spark-width"] > phone["spark-width"]  # larger where there is room
    assert (tmp_path / "digest-390.png").stat().st_size > 0
