#!/usr/bin/env python3
"""Benchmark ``build_digest`` over a year of history (issue 14).

    .venv/bin/python bench/digest.py                    # N=10000 packages, 52 weeks
    .venv/bin/python bench/digest.py --packages 2000    # a quick run
    .venv/bin/python bench/digest.py --db /tmp/year.db  # keep (and reuse) the database

Writes the history straight into a fresh store, in the schema's format (no polling): each
package gets a baseline snapshot (its whole djangopackages content, cloned from the
fixtures) and a ``parts`` row, then 52 weekly rows: every package's ``commits_over_52``
shifts a week, ~5 % release (``pypi_version``, with a fired ``pypi-version-changed``
alert) and ~5 % move stars; one check per package per week (0.2 % of them failed); a few
condition alerts fire and resolve along the way. Then a child process opens the store and
times ``build_digest`` (weekly, ending just after the last poll) and ``render_text`` (the
email's text part), and reports its peak RSS (``VmHWM``) after each, and after
``render_html`` too; another times ``build_text`` written to /dev/null (what ``monitor
digest`` prints, each card rendered as its package is read) and reports its peak RSS; a
third only imports and opens.
Targets: build_digest < 2 s; build_text < 2 s and its peak RSS < 100 MiB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "djangopackages"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
WEEKS = 52


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build(path: Path, packages: int, seed: int = 14) -> None:
    sys.path.insert(0, str(ROOT))
    from monitor.snapshot import parse_record
    from monitor.store import Store

    store = Store(path)  # the schema
    store.close()
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = OFF")
    rng = random.Random(seed)
    records = [json.loads(p.read_text()) for p in sorted(FIXTURES.glob("*.json"))]
    start = NOW - timedelta(weeks=WEEKS, hours=12)  # the last poll: 12 hours before NOW
    contents: list[dict] = []
    conn.execute("BEGIN")
    for n in range(packages):
        record = dict(records[n % len(records)])
        slug = f"pkg-{n:05d}"
        record.update(slug=slug, title=f"Package {n}", pypi_version="1.0.0")
        record["commits_over_52"] = [rng.randrange(4) for _ in range(52)]
        content = json.loads(parse_record(record).content_json())
        contents.append(content)
        conn.execute(
            "INSERT INTO watches (id, slug, title, notify, active, added_at, failures)"
            " VALUES (?, ?, ?, '[]', 1, ?, 0)",
            (n + 1, slug, content["title"], iso(start)),
        )
    snapshot_id = 0
    check_rows: list[tuple] = []
    snapshot_rows: list[tuple] = []
    alert_rows: list[tuple] = []

    def flush() -> None:
        conn.executemany(
            "INSERT INTO snapshots (id, watch_id, taken_at, data, baselines)"
            " VALUES (?, ?, ?, ?, ?)",
            snapshot_rows,
        )
        conn.executemany(
            "INSERT INTO checks (watch_id, checked_at, duration_ms, status, error, snapshot_id)"
            " VALUES (?, ?, 100, ?, ?, ?)",
            check_rows,
        )
        conn.executemany(
            "INSERT INTO alerts (episode, rule, watch_id, kind, severity, status, started_at,"
            " resolved_at, summary, description, labels)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '', '{}')",
            alert_rows,
        )
        snapshot_rows.clear()
        check_rows.clear()
        alert_rows.clear()

    at = iso(start)
    for n, content in enumerate(contents):
        snapshot_id += 1
        data = json.dumps(content, sort_keys=True)
        snapshot_rows.append((snapshot_id, n + 1, at, data, '["djangopackages"]'))
        check_rows.append((n + 1, at, "ok", None, snapshot_id))
    flush()
    quiet_since: dict[int, str] = {}
    for week in range(1, WEEKS + 1):
        at = iso(start + timedelta(weeks=week))
        for n, content in enumerate(contents):
            watch_id = n + 1
            # A quiet package (every 7th) fires no-commits at 13 weeks, resolves at the 40th.
            if n % 7 == 0 and week == 13:
                quiet_since[watch_id] = at
            if n % 7 == 0 and week == 40:
                alert_rows.append(
                    (
                        f"q-{watch_id}",
                        "no-commits-13-weeks",
                        watch_id,
                        "condition",
                        "warning",
                        "resolved",
                        quiet_since[watch_id],
                        at,
                        "No commits in the last 13 weeks",
                    )
                )
            if n % 11 == 0 and week == 20:  # firing still
                alert_rows.append(
                    (
                        f"f-{watch_id}",
                        "few-participants",
                        watch_id,
                        "condition",
                        "info",
                        "firing",
                        at,
                        None,
                        "Few participants",
                    )
                )
            if rng.random() < 0.002:
                check_rows.append((watch_id, at, "failed", "HTTP 500 from djangopackages", None))
                continue
            delta: dict = {}
            commits = [*content["commits_over_52"][1:], rng.randrange(4) if n % 7 else 0]
            delta["commits_over_52"] = commits
            roll = rng.random()
            if roll < 0.05:
                major, minor, _ = (int(x) for x in content["pypi_version"].split("."))
                old = content["pypi_version"]
                delta["pypi_version"] = f"{major}.{minor + 1}.0"
                alert_rows.append(
                    (
                        f"v-{watch_id}-{week}",
                        "pypi-version-changed",
                        watch_id,
                        "change",
                        "info",
                        "fired",
                        at,
                        None,
                        f"{content['slug']} {old} → {delta['pypi_version']}",
                    )
                )
            elif roll < 0.10:
                delta["repo_watchers"] = (content["repo_watchers"] or 0) + rng.randrange(-5, 20)
            content.update(delta)
            snapshot_id += 1
            snapshot_rows.append((snapshot_id, watch_id, at, json.dumps(delta), None))
            check_rows.append((watch_id, at, "ok", None, snapshot_id))
        flush()
    for n, content in enumerate(contents):
        conn.execute(
            "INSERT INTO parts (watch_id, source, key, data, failures)"
            " VALUES (?, 'djangopackages', ?, ?, 0)",
            (n + 1, content["slug"], json.dumps(content, sort_keys=True)),
        )
    conn.execute(
        "UPDATE watches SET snapshot_id = (SELECT MAX(id) FROM snapshots s"
        " WHERE s.watch_id = watches.id)"
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def _peak_rss_mib() -> float:
    """This process's peak RSS: ``VmHWM`` (``ru_maxrss`` would carry over the parent's peak
    through fork + exec on Linux), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(path: str, mode: str) -> None:
    sys.path.insert(0, str(ROOT))
    from monitor.digest import build_digest, build_text, render_html, render_text
    from monitor.store import Store

    store = Store(path)
    out: dict = {}
    if mode == "digest":
        began = time.perf_counter()
        digest = build_digest(store, now=NOW)
        out["build_digest_s"] = time.perf_counter() - began
        out["peak_rss_built_mib"] = _peak_rss_mib()
        began = time.perf_counter()
        render_text(digest)  # what `monitor digest` prints
        out["render_s"] = time.perf_counter() - began
        out["peak_rss_text_mib"] = _peak_rss_mib()
        render_html(digest)  # the email's other part
        out["totals"] = digest.totals
    elif mode == "text":
        began = time.perf_counter()
        with open(os.devnull, "w", encoding="utf-8") as sink:
            for chunk in build_text(store, now=NOW):  # what `monitor digest` prints
                sink.write(chunk)
        out["text_s"] = time.perf_counter() - began
    out["peak_rss_mib"] = _peak_rss_mib()
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packages", type=int, default=10_000)
    parser.add_argument("--db", help="the database (built when missing)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", nargs=2, metavar=("DB", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.db) if args.db else Path(tmp) / "year.db"
        if not path.exists():
            began = time.perf_counter()
            build(path, args.packages)
            print(f"built {path} in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        print(f"database: {path.stat().st_size / 2**20:.0f} MiB")

        def run(mode: str) -> dict:
            cmd = [sys.executable, __file__, "--child", str(path), mode]
            return json.loads(subprocess.run(cmd, check=True, capture_output=True).stdout)

        opened = run("open")
        runs = [run("digest") for _ in range(args.runs)]
        texts = [run("text") for _ in range(args.runs)]
        best = min(r["build_digest_s"] for r in runs)
        rss = max(r["peak_rss_mib"] for r in runs)
        print(f"totals: {runs[0]['totals']}")
        each = [round(r["build_digest_s"], 2) for r in runs]
        print(f"build_digest: best {best:.2f} s of {args.runs} {each}")
        print(f"render_text: {min(r['render_s'] for r in runs):.2f} s")
        built = max(r["peak_rss_built_mib"] for r in runs)
        text = max(r["peak_rss_text_mib"] for r in runs)
        print(
            f"peak RSS: {built:.0f} MiB after build_digest, {text:.0f} MiB after render_text,"
            f" {rss:.0f} MiB after render_html too"
            f" (imports + open only: {opened['peak_rss_mib']:.0f} MiB)"
        )
        streamed = min(r["text_s"] for r in texts)
        streamed_rss = max(r["peak_rss_mib"] for r in texts)
        print(f"build_text (monitor digest): best {streamed:.2f} s, peak {streamed_rss:.0f} MiB")
        print(f"{'PASS' if best < 2 else 'FAIL'} build_digest < 2 s")
        print(f"{'PASS' if streamed < 2 else 'FAIL'} build_text < 2 s")
        print(f"{'PASS' if streamed_rss < 100 else 'FAIL'} peak RSS (build_text) < 100 MiB")


if __name__ == "__main__":
    main()
