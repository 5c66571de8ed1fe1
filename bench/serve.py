#!/usr/bin/env python3
"""Does ``monitor run`` still answer while a cycle records 10,000 changed packages?

    .venv/bin/python bench/serve.py                    # N=10000
    .venv/bin/python bench/serve.py --packages 2000    # a quick run
    .venv/bin/python bench/serve.py --json             # one JSON dict on stdout
    .venv/bin/python bench/serve.py --sources          # PyPI, GitHub and OSV on too

What it does (progress on stderr):

1. serves N packages cloned from the fixtures from a separate process (``bench/poll.py``'s
   fake server), watches them all with the real CLI, then shifts every record's
   ``commits_over_52`` a week upstream, so the next cycle changes every package;
2. makes every watch due and starts a real ``monitor run`` with ``[http]`` (a token) and
   ``[slack_app]`` in HTTP mode (a signing secret), so its first cycle polls and records
   N changed packages;
3. while that cycle runs, probes the server every ``--every`` seconds from two threads:
   ``GET /healthz``, and a signed Slack slash command (``POST /slack/commands``,
   ``/monitor status SLUG``), each timed from send to the last byte of the answer;
4. meanwhile a separate thread watches the database's write lock (``BEGIN IMMEDIATE`` with no
   busy wait, rolled back at once, every 20 ms): a probe counts as "during the write" when
   the lock was held when it was sent or answered, i.e. while the cycle's one recording
   transaction ran.

Target (PASS/FAIL, informational unless ``--strict``): every probe during the cycle, and in
particular during its write, answered in < 1 s (SPEC §10, issue 13). Also printed: the
cycle's duration, how long the write lock was held, and the daemon's peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
sys.path[:0] = [str(ROOT), str(SCRIPT.parent)]

from poll import WATCH_BATCH, progress, require_ok, run_cli, serving, write_config  # noqa: E402

TOKEN = "bench-token"
SIGNING_SECRET = "bench-signing-secret"
TARGET_SECONDS = 1.0
LOCK_SAMPLE = 0.02


class Responder(ThreadingHTTPServer):
    """Slack's ``response_url``: takes the bot's late answers, counts them."""

    def __init__(self) -> None:
        self.posts = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.posts += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/respond"


class LockWatcher(threading.Thread):
    """Samples whether the database's write lock is held; keeps the held intervals."""

    def __init__(self, db: Path):
        super().__init__(daemon=True)
        self.db = db
        self.stop = threading.Event()
        self.intervals: list[tuple[float, float]] = []

    def run(self) -> None:
        conn = sqlite3.connect(str(self.db), timeout=0, isolation_level=None)
        started: float | None = None
        while not self.stop.is_set():
            now = time.monotonic()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("ROLLBACK")
                held = False
            except sqlite3.OperationalError:
                held = True
            if held and started is None:
                started = now
            elif not held and started is not None:
                self.intervals.append((started, now))
                started = None
            time.sleep(LOCK_SAMPLE)
        if started is not None:
            self.intervals.append((started, time.monotonic()))
        conn.close()

    def held_at(self, moment: float) -> bool:
        return any(start <= moment <= end for start, end in self.intervals)


def slack_request(url: str, text: str, response_url: str) -> urllib.request.Request:
    body = urllib.parse.urlencode(
        {
            "command": "/monitor",
            "text": text,
            "user_id": "U0BENCH",
            "user_name": "bench",
            "channel_id": "C0BENCH",
            "team_id": "T0BENCH",
            "response_url": response_url,
            "trigger_id": "1.2.3",
        }
    ).encode()
    stamp = str(int(time.time()))
    digest = hmac.new(
        SIGNING_SECRET.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256
    ).hexdigest()
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }
    return urllib.request.Request(f"{url}/slack/commands", data=body, headers=headers)


def timed(request: urllib.request.Request | str) -> tuple[float, int]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = 0
    return time.monotonic() - started, status


def start_daemon(config: Path, workdir: Path) -> tuple[subprocess.Popen[str], list[dict[str, Any]]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(config), "run", "--log-format", "json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=workdir,
    )
    logs: list[dict[str, Any]] = []

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            try:
                logs.append(json.loads(line))
            except ValueError:
                logs.append({"event": "raw", "line": line})

    threading.Thread(target=read, daemon=True).start()
    return process, logs


def wait_for(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def event(logs: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((entry for entry in list(logs) if entry.get("event") == name), None)


def bench(n: int, every: float, keep: bool, sources: bool = False) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="monitor-bench-http-"))
    responder = Responder()
    threading.Thread(target=responder.serve_forever, daemon=True).start()
    try:
        progress(f"starting the fake server with {n} packages" + (" + sources" if sources else ""))
        with serving(n, sources) as server:
            config = write_config(workdir, server.url, 8, sources)
            config.write_text(
                config.read_text(encoding="utf-8").replace('[schedule]\njitter = "0s"\n', "")
                + f'\n[http]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n'
                + f'\n[slack_app]\nsigning_secret = "{SIGNING_SECRET}"\n'
                + '\n[schedule]\njitter = "0s"\ninterval = "6h"\n',
                encoding="utf-8",
            )
            slugs = server.slugs
            batches = [slugs[i : i + WATCH_BATCH] for i in range(0, len(slugs), WATCH_BATCH)]
            progress(f"watching {n} packages ({len(batches)} watch calls)")
            for i, batch in enumerate(batches):
                run = run_cli(["--config", str(config), "watch", *batch], cwd=workdir, name=f"w{i}")
                require_ok(run, f"monitor watch (batch {i + 1})")
            shifted = server.shift()
            db = workdir / "monitor.db"
            conn = sqlite3.connect(str(db))
            conn.execute("UPDATE watches SET next_due_at = NULL")  # every watch due now
            conn.commit()
            conn.close()
            progress(f"{shifted} records shifted upstream; starting monitor run")

            locks = LockWatcher(db)
            process, logs = start_daemon(config, workdir)
            try:
                listening = wait_for(lambda: event(logs, "listening"), 60, "listening")
                url = listening["url"]
                locks.start()
                probes: list[dict[str, Any]] = []
                slug = slugs[0]
                done = threading.Event()

                def probe(kind: str) -> None:
                    while not done.is_set():
                        sent = time.monotonic()
                        if kind == "healthz":
                            seconds, status = timed(f"{url}/healthz")
                        else:
                            request = slack_request(url, f"status {slug}", responder.url)
                            seconds, status = timed(request)
                        probes.append(
                            {"kind": kind, "sent": sent, "seconds": seconds, "status": status}
                        )
                        time.sleep(max(0.0, every - seconds))

                probers = [threading.Thread(target=probe, args=(k,)) for k in ("healthz", "slack")]
                cycle_started = time.monotonic()
                for prober in probers:
                    prober.start()
                while event(logs, "cycle") is None:
                    if process.poll() is not None:
                        raise RuntimeError(f"monitor run exited: {logs[-5:]}")
                    time.sleep(0.05)
                done.set()
                for prober in probers:
                    prober.join(60)
                cycle_ended = time.monotonic()
                locks.stop.set()
                locks.join(5)
                cycle = event(logs, "cycle") or {}
                rss = _peak_rss_mib(process.pid)
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    finally:
        responder.shutdown()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            progress(f"kept {workdir}")
    for probe in probes:
        probe["during_write"] = locks.held_at(probe["sent"]) or locks.held_at(
            probe["sent"] + probe["seconds"]
        )
    held = sum(end - start for start, end in locks.intervals)
    longest = max((end - start for start, end in locks.intervals), default=0.0)
    return {
        "packages": n,
        "sources": sources,
        "cycle": {k: cycle.get(k) for k in ("polled", "changed_packages", "duration")},
        "cycle_seconds_seen": cycle_ended - cycle_started,
        "write_lock_held_seconds": held,
        "longest_write_lock_seconds": longest,
        "daemon_peak_rss_mib": rss,
        "probes": _summary(probes),
        "probes_during_write": _summary([p for p in probes if p["during_write"]]),
    }


def _peak_rss_mib(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def _summary(probes: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("healthz", "slack"):
        seconds = sorted(p["seconds"] for p in probes if p["kind"] == kind)
        statuses = sorted({p["status"] for p in probes if p["kind"] == kind})
        if not seconds:
            out[kind] = {"count": 0}
            continue
        out[kind] = {
            "count": len(seconds),
            "median": seconds[len(seconds) // 2],
            "p99": seconds[min(len(seconds) - 1, int(len(seconds) * 0.99))],
            "max": seconds[-1],
            "statuses": statuses,
        }
    return out


def report(r: dict[str, Any]) -> str:
    lines = [
        f"packages: {r['packages']}{' (all four sources)' if r['sources'] else ''};"
        f" cycle: polled {r['cycle']['polled']}, changed {r['cycle']['changed_packages']},"
        f" {r['cycle']['duration']} s (daemon's log)",
        f"write lock held {r['write_lock_held_seconds']:.2f} s in all,"
        f" longest {r['longest_write_lock_seconds']:.2f} s;"
        f" daemon peak RSS {r['daemon_peak_rss_mib'] or 0:.0f} MiB",
    ]
    ok = True
    for label, key in (("whole cycle", "probes"), ("during the write", "probes_during_write")):
        for kind, s in r[key].items():
            if not s["count"]:
                lines.append(f"{label:18} {kind:8} no probes")
                ok = ok and key == "probes"
                continue
            lines.append(
                f"{label:18} {kind:8} {s['count']:4} probes: median {s['median'] * 1000:6.1f} ms,"
                f" p99 {s['p99'] * 1000:6.1f} ms, max {s['max'] * 1000:6.1f} ms,"
                f" statuses {s['statuses']}"
            )
            ok = ok and s["max"] < TARGET_SECONDS and set(s["statuses"]) <= {200, 503}
    verdict = "PASS" if ok else "FAIL"
    lines.append(f"{verdict}: every probe answered in < {TARGET_SECONDS:.0f} s")
    r["pass"] = ok
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=10_000)
    parser.add_argument("--every", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--strict", action="store_true")
    parser.add_argument("--sources", action="store_true", help="PyPI, GitHub and OSV on too")
    args = parser.parse_args()
    os.environ.pop("MONITOR_CONFIG", None)
    result = bench(args.packages, args.every, args.keep, args.sources)
    text = report(result)
    print(json.dumps(result, indent=2) if args.json else text)
    return 1 if args.strict and not result["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
