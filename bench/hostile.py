"""Crash and concurrency figures under abuse: a SIGKILL loop and concurrent processes.

    .venv/bin/python bench/hostile.py kills --kills 50         # SIGKILL run/check at random
    .venv/bin/python bench/hostile.py concurrent --seconds 120 # run beside 4 command loops

Both serve N cloned packages from the fake upstream (tests/fakeupstream.py) and a webhook
receiver on 127.0.0.1, bump PyPI versions of random packages between steps, and at the end
let one unkilled `check` finish what is pending (leases of killed senders are expired first,
as time would). Then they count, from the database and from what the receiver got:

- lost: a package whose stored version is not upstream's, an alert whose delivery is not
  delivered, or an alert id the receiver never saw;
- duplicated: two version alerts for one (package, version); a group received twice (the
  at-least-once window: a kill between the receiver's answer and the commit);
- corrupt: ``PRAGMA integrity_check`` not ``ok``;
- locked: any process output mentioning "database is locked", any traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from tests.fakeupstream import FakeUpstream  # noqa: E402

# Signed, so each group carries its webhook-id (the same on every retry).
SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """A webhook receiver in a thread: records each delivery's webhook-id and alert ids,
    answering after a random delay so kills land mid-send too."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.received: list[tuple[str, list[str]]] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        await asyncio.sleep(self.rng.random() * 0.3)
        ids = [f"{a['id']}:{a['status']}" for a in body["data"].get("alerts", [])]
        self.received.append((request.headers.get("webhook-id", ""), ids))
        return web.Response(text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    def __enter__(self) -> Receiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Bench:
    def __init__(self, workdir: Path, upstream: FakeUpstream, receiver: Receiver, seed: int):
        self.workdir = workdir
        self.upstream = upstream
        self.receiver = receiver
        self.rng = random.Random(seed)
        self.db = workdir / "monitor.db"
        self.config = workdir / "monitor.toml"
        self.config.write_text(
            f'database = "{self.db}"\n'
            f'[sources.djangopackages]\nurl = "{upstream.url}"\ntimeout = "2s"\n'
            '[schedule]\ninterval = "1s"\njitter = "0s"\n'
            f'[notifiers.hook]\ntype = "webhook"\nurl = "{receiver.url}"\nsecret = "{SECRET}"\n'
            '[defaults]\nnotify = ["hook"]\n'
        )
        self.outputs: list[str] = []
        self.bumps = 0

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "monitor", "--config", str(self.config), *args]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(*args), capture_output=True, text=True, cwd=ROOT)
        self.outputs.append(done.stdout + done.stderr)
        return done

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )

    def bump(self, count: int = 3) -> None:
        """Publish a new version of ``count`` random packages upstream."""
        for slug in self.rng.sample(sorted(self.upstream.records), count):
            record = self.upstream.records[slug]
            self.bumps += 1
            record["pypi_version"] = f"9.{self.bumps}.0"

    def settle(self) -> None:
        """What time would do after the kills: leases expire; one `check` finishes the rest."""
        with sqlite3.connect(self.db) as conn:
            conn.execute(
                "UPDATE outbox SET lease_until = NULL, next_attempt_at = created_at"
                " WHERE status = 'pending'"
            )
        for _ in range(3):
            self.run("check")
            with sqlite3.connect(self.db) as conn:
                pending = conn.execute(
                    "SELECT COUNT(*) FROM outbox WHERE status = 'pending'"
                ).fetchone()[0]
            if not pending:
                break

    def figures(self) -> dict[str, Any]:
        conn = sqlite3.connect(self.db)
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        stale = 0
        for slug, data in conn.execute(
            "SELECT w.slug, s.data FROM watches w JOIN snapshots s ON s.id = w.snapshot_id"
        ):
            if json.loads(data).get("pypi_version") != self.upstream.records[slug]["pypi_version"]:
                stale += 1
        alerts = conn.execute(
            "SELECT a.episode, w.slug, a.summary FROM alerts a JOIN watches w ON w.id = a.watch_id"
            " WHERE a.rule IN ('pypi-version-changed', 'major-version-bump')"
        ).fetchall()
        per_version = Counter((slug, summary) for _, slug, summary in alerts)
        undelivered = conn.execute(
            "SELECT id, status, attempts, last_error FROM outbox"
            " WHERE status != 'delivered' AND kind = 'alerts'"
        ).fetchall()
        attempts = conn.execute(
            "SELECT group_id, outcome, error FROM attempts WHERE group_id IN"
            " (SELECT id FROM outbox WHERE status != 'delivered')"
        ).fetchall()
        transitions = {
            f"{episode}:{status}"
            for episode, status in conn.execute(
                "SELECT a.episode, t.status FROM transitions t JOIN alerts a ON a.id = t.alert_id"
                " WHERE t.muted = 0"
            )
        }
        conn.close()
        seen = {alert for _, ids in self.receiver.received for alert in ids}
        groups = Counter(group for group, _ in self.receiver.received)
        text = "\n".join(self.outputs)
        missing = sorted(transitions - seen)
        return {
            "undelivered": [list(row) for row in undelivered],
            "their_attempts": [list(row) for row in attempts],
            "missing": missing[:10],
            "integrity": integrity,
            "version_alerts": len(alerts),
            "lost_changes": stale,
            "lost_deliveries": len(undelivered) + len(missing),
            "duplicate_alerts": sum(n - 1 for n in per_version.values() if n > 1),
            "groups_received": len(groups),
            "groups_received_twice": sum(1 for n in groups.values() if n > 1),
            "database_locked": text.count("database is locked"),
            "tracebacks": text.count("Traceback"),
        }


def kills(bench: Bench, count: int) -> dict[str, Any]:
    killed = 0
    for step in range(count):
        bench.bump()
        child = bench.spawn("run") if step % 2 == 0 else bench.spawn("check")
        time.sleep(bench.rng.uniform(0.1, 2.5))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        out, err = child.communicate(timeout=30)
        bench.outputs.append(out + err)
        print(
            f"step {step + 1}/{count}: {'killed' if child.returncode < 0 else 'exited'}",
            file=sys.stderr,
        )
    bench.settle()
    return {"steps": count, "killed": killed, **bench.figures()}


def concurrent(bench: Bench, seconds: float) -> dict[str, Any]:
    daemon = bench.spawn("run")
    deadline = time.monotonic() + seconds
    counts: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    slugs = sorted(bench.upstream.records)

    def loop(name: str, *commands: tuple[str, ...]) -> None:
        i = 0
        while time.monotonic() < deadline:
            args = commands[i % len(commands)]
            i += 1
            done = bench.run(*args)
            counts[name] += 1
            if done.returncode not in (0, 1):
                failures[f"{name} rc {done.returncode}"] += 1

    slug = slugs[0]
    workers = [
        threading.Thread(target=loop, args=("check", ("check",))),
        threading.Thread(target=loop, args=("watch", ("unwatch", slug), ("watch", slug))),
        threading.Thread(target=loop, args=("alerts", ("alerts", "--all", "--json"))),
        threading.Thread(
            target=loop, args=("mute", ("mute", slugs[1], "--for", "1h"), ("unmute", slugs[1]))
        ),
    ]
    for worker in workers:
        worker.start()
    while time.monotonic() < deadline:
        bench.bump(2)
        time.sleep(1.0)
    for worker in workers:
        worker.join()
    daemon.send_signal(signal.SIGTERM)
    out, err = daemon.communicate(timeout=30)
    bench.outputs.append(out + err)
    bench.settle()
    return {
        "seconds": seconds,
        "commands": dict(counts),
        "unexpected_exit_codes": dict(failures),
        "daemon_rc": daemon.returncode,
        **bench.figures(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["kills", "concurrent"])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--packages", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeUpstream.in_thread(FakeUpstream.with_clones(args.packages).records) as upstream,
        Receiver(random.Random(args.seed)) as receiver,
    ):
        bench = Bench(Path(tmp), upstream, receiver, args.seed)
        watched = bench.run("watch", *sorted(upstream.records))
        assert watched.returncode == 0, watched.stderr
        if args.mode == "kills":
            figures = kills(bench, args.kills)
        else:
            figures = concurrent(bench, args.seconds)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
