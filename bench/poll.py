#!/usr/bin/env python3
"""Benchmark `monitor check` against the fake djangopackages server, in one run.

    .venv/bin/python bench/poll.py                    # N=10000, concurrency 8
    .venv/bin/python bench/poll.py --packages 500     # a quick run
    .venv/bin/python bench/poll.py --json             # one JSON dict on stdout

What it does (progress goes to stderr):

1. serves N packages cloned from the fixtures (``tests/fakeupstream.py``) from a separate
   process on 127.0.0.1 (so the server's CPU is not the client's), stopped at the end;
2. writes a ``monitor.toml`` in a temp dir and watches all N packages with the real CLI
   (``python -m monitor watch``, 2000 slugs per call) in a fresh database;
3. runs ``python -m monitor check --json`` twice (nothing changed upstream): wall time,
   packages/s, peak RSS of the check process (``wait4`` rusage), requests the server got
   (list pages vs single packages), and the database growth of the second check (after a
   WAL checkpoint) in bytes per package;
4. baseline, in this process: a plain aiohttp fetch-and-decode loop (one session, a
   semaphore of ``--concurrency``, ``await resp.json()``) over (a) the very URLs the first
   check requested and (b) the N single-package URLs; throughput ratio check / baseline.

Targets (PASS/FAIL lines, informational unless ``--strict``): ratio (a) >= 0.5, growth
< 100 bytes/package, peak RSS < 200 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.fakeupstream (also in the spawned server)

PYTHON = sys.executable
WATCH_BATCH = 2000
PROCESS_TIMEOUT = 600.0  # seconds: a CLI process running longer is killed (and fails)
SERVER_IDLE_LIMIT = 900.0  # the server exits when it gets no command for this long
SERVER_MAX_COMMANDS = 100_000

TARGET_RATIO = 0.5
TARGET_GROWTH = 100.0  # bytes per package
TARGET_RSS_MIB = 200.0

PAGES_PATH = "/api/v4/packages/"


# -- the server process -----------------------------------------------------------------------


def _serve(n: int, conn: Any) -> None:
    """Child process: serve N cloned packages; answer commands on ``conn`` until "stop",
    the parent's end closing, or ``SERVER_IDLE_LIMIT`` seconds without a command."""
    from tests.fakeupstream import FakeUpstream

    up = FakeUpstream.with_clones(n)
    with up.run_in_thread():
        conn.send({"url": up.url, "slugs": list(up.records)})
        for _ in range(SERVER_MAX_COMMANDS):
            if not conn.poll(SERVER_IDLE_LIMIT):
                break
            try:
                command, arg = conn.recv()
            except EOFError:
                break
            if command == "stop":
                break
            if command == "mark":
                conn.send(len(up.log))
            elif command == "since":
                conn.send([(r.path, r.query) for r in up.log[arg:]])
            else:
                conn.send(None)


class Server:
    """The fake server in a separate (spawned) process."""

    def __init__(self, n: int):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve, args=(n, child), name="fakeupstream", daemon=True)
        self._proc.start()
        child.close()
        try:
            if not self._conn.poll(120):
                raise RuntimeError("the fake server did not start within 120 s")
            info = self._conn.recv()
        except EOFError:
            self.stop()
            raise RuntimeError("the fake server process died while starting") from None
        except BaseException:
            self.stop()
            raise
        self.url: str = info["url"]
        self.slugs: list[str] = info["slugs"]

    def _ask(self, command: str, arg: Any = None) -> Any:
        self._conn.send((command, arg))
        if not self._conn.poll(120):
            raise RuntimeError(f"the fake server did not answer {command!r} within 120 s")
        return self._conn.recv()

    def mark(self) -> int:
        """A position in the server's request log."""
        return int(self._ask("mark"))

    def since(self, mark: int) -> list[tuple[str, dict[str, str]]]:
        """(path, query) of every request since ``mark``."""
        return list(self._ask("since", mark))

    def stop(self) -> None:
        if self._proc.is_alive():
            with suppress(OSError, ValueError):
                self._conn.send(("stop", None))
            self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._conn.close()


@contextmanager
def serving(n: int) -> Any:
    server = Server(n)
    try:
        yield server
    finally:
        server.stop()


def split_requests(log: list[tuple[str, dict[str, str]]]) -> dict[str, int]:
    pages = sum(1 for path, _ in log if path == PAGES_PATH)
    singles = sum(1 for path, _ in log if path.startswith(PAGES_PATH) and path != PAGES_PATH)
    return {"total": len(log), "pages": pages, "singles": singles}


# -- running the CLI ----------------------------------------------------------------------------


@dataclass
class Run:
    wall: float  # seconds
    returncode: int
    maxrss_kib: int
    stdout: Path
    stderr: Path


def run_cli(
    args: list[str],
    *,
    cwd: Path,
    name: str,
    timeout: float = PROCESS_TIMEOUT,
    profile: Path | None = None,
) -> Run:
    """Run ``python -m monitor ARGS`` and measure it: wall time, and the peak RSS of that
    very process (``os.wait4`` gives the rusage of one child). With ``profile``, run it
    under cProfile, writing the stats there."""
    out, err = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    with out.open("wb") as stdout, err.open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [PYTHON, *prefix, "-m", "monitor", *args], cwd=cwd, stdout=stdout, stderr=stderr
        )
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, proc.returncode, usage.ru_maxrss, out, err)


def require_ok(run: Run, what: str) -> None:
    if run.returncode != 0:
        tail = run.stderr.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{what} exited {run.returncode}; stderr ends:\n{tail}")


def checkpoint_size(db: Path) -> int:
    """The database file's size with the WAL folded in (run when no process uses it)."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return db.stat().st_size


def count_rows(db: Path, table: str) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


# -- the baseline -------------------------------------------------------------------------------


async def _fetch_all(urls: list[str], concurrency: int) -> tuple[float, int]:
    """Seconds to GET and decode every URL; and how many package records came back."""
    import aiohttp

    semaphore = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, url: str) -> int:
        async with semaphore, session.get(url) as resp:
            resp.raise_for_status()
            data = await resp.json()
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            return len(data["results"])
        return 1

    async with aiohttp.ClientSession() as session:
        start = time.perf_counter()
        counts = await asyncio.gather(*(one(session, url) for url in urls))
        elapsed = time.perf_counter() - start
    return elapsed, sum(counts)


def baseline(urls: list[str], concurrency: int) -> tuple[float, int]:
    return asyncio.run(_fetch_all(urls, concurrency))


# -- the benchmark ------------------------------------------------------------------------------


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def write_config(workdir: Path, url: str, concurrency: int) -> Path:
    path = workdir / "monitor.toml"
    path.write_text(
        'database = "monitor.db"\n'
        "\n"
        "[sources.djangopackages]\n"
        f"url = {json.dumps(url)}\n"
        f"concurrency = {concurrency}\n"
        'timeout = "30s"\n'
        "\n"
        "[schedule]\n"
        'jitter = "0s"\n',
        encoding="utf-8",
    )
    return path


def fixed_costs(workdir: Path, url: str, concurrency: int) -> dict[str, float]:
    """Best of 3 each: ``--version`` (interpreter + CLI import) and ``check --json`` with
    nothing watched (a check's fixed cost: imports, config, rules, database)."""
    empty = workdir / "empty"
    empty.mkdir()
    config = write_config(empty, url, concurrency)
    out: dict[str, float] = {}
    for key, args in (("version", ["--version"]), ("empty_check", ["check", "--json"])):
        best = float("inf")
        for i in range(3):
            run = run_cli(["--config", str(config), *args], cwd=empty, name=f"{key}{i}")
            require_ok(run, f"monitor {' '.join(args)}")
            best = min(best, run.wall)
            out[f"{key}_peak_rss_mib"] = run.maxrss_kib / 1024
        out[key] = best
    return out


def check_once(
    server: Server, workdir: Path, config: Path, db: Path, n: int, name: str
) -> dict[str, Any]:
    size_before = checkpoint_size(db)
    mark = server.mark()
    run = run_cli(["--config", str(config), "check", "--json"], cwd=workdir, name=name)
    log = server.since(mark)
    size_after = checkpoint_size(db)
    require_ok(run, f"monitor check ({name})")
    report = json.loads(run.stdout.read_text(encoding="utf-8"))
    if report.get("checked") != n or report.get("failed"):
        raise RuntimeError(
            f"{name}: checked {report.get('checked')} of {n}, failed: {report.get('failed')[:3]}"
        )
    return {
        "seconds": run.wall,
        "packages_per_s": n / run.wall,
        "peak_rss_mib": run.maxrss_kib / 1024,
        "requests": split_requests(log),
        "unchanged": report.get("unchanged"),
        "changed": len(report.get("changed") or ()),
        "transitions": len(report.get("transitions") or ()),
        "db_bytes_before": size_before,
        "db_bytes_after": size_after,
        "growth_bytes_per_package": (size_after - size_before) / n,
        "_log": log,
    }


def bench(n: int, concurrency: int, keep: bool, profile: Path | None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    started = time.perf_counter()
    try:
        progress(f"starting the fake server with {n} packages")
        with serving(n) as server:
            slugs = server.slugs
            config = write_config(workdir, server.url, concurrency)
            db = workdir / "monitor.db"
            results: dict[str, Any] = {
                "packages": n,
                "concurrency": concurrency,
                "server": server.url,
            }

            results["fixed_seconds"] = fixed_costs(workdir, server.url, concurrency)

            batches = [slugs[i : i + WATCH_BATCH] for i in range(0, len(slugs), WATCH_BATCH)]
            progress(f"watching {n} packages ({len(batches)} watch calls)")
            mark = server.mark()
            watch_seconds = 0.0
            for i, batch in enumerate(batches):
                run = run_cli(
                    ["--config", str(config), "watch", *batch], cwd=workdir, name=f"watch{i}"
                )
                require_ok(run, f"monitor watch (batch {i + 1})")
                watch_seconds += run.wall
            results["watch"] = {
                "seconds": watch_seconds,
                "calls": len(batches),
                "requests": split_requests(server.since(mark)),
                "db_bytes": checkpoint_size(db),
            }

            progress("check #1 (fresh database: the list's count is not known yet)")
            first = check_once(server, workdir, config, db, n, "check1")
            progress("check #2 (nothing changed upstream; database growth measured)")
            second = check_once(server, workdir, config, db, n, "check2")
            results["checks_rows"] = count_rows(db, "checks")

            log = first.pop("_log")
            second.pop("_log")
            results["check1"] = first
            results["check2"] = second

            urls_a = [
                f"{server.url}{path}" + (f"?{urlencode(query)}" if query else "")
                for path, query in log
            ]
            progress(f"baseline (a): the {len(urls_a)} URLs check #1 requested")
            seconds_a, records_a = baseline(urls_a, concurrency)
            urls_b = [f"{server.url}{PAGES_PATH}{slug}/" for slug in slugs]
            progress(f"baseline (b): {len(urls_b)} single-package URLs")
            seconds_b, records_b = baseline(urls_b, concurrency)
            results["baseline_a"] = {
                "requests": len(urls_a),
                "records": records_a,
                "seconds": seconds_a,
                "packages_per_s": n / seconds_a,
            }
            results["baseline_b"] = {
                "requests": len(urls_b),
                "records": records_b,
                "seconds": seconds_b,
                "packages_per_s": n / seconds_b,
            }
            results["ratio_a"] = seconds_a / first["seconds"]
            results["ratio_b"] = seconds_b / first["seconds"]
            results["ratio_a_check2"] = seconds_a / second["seconds"]
            variable = first["seconds"] - results["fixed_seconds"]["empty_check"]
            results["ratio_a_without_fixed_cost"] = seconds_a / variable if variable > 0 else None

            if profile is not None:
                progress(f"check #3 under cProfile (not measured) -> {profile}")
                run = run_cli(
                    ["--config", str(config), "check", "--json"],
                    cwd=workdir,
                    name="check3",
                    profile=profile,
                )
                require_ok(run, "monitor check (check3, profiled)")
                results["profile"] = {"path": str(profile), "seconds": run.wall}
    finally:
        if keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["targets"] = {
        "ratio_a": {
            "value": results["ratio_a"],
            "target": f">= {TARGET_RATIO}",
            "pass": results["ratio_a"] >= TARGET_RATIO,
        },
        "growth_bytes_per_package": {
            "value": results["check2"]["growth_bytes_per_package"],
            "target": f"< {TARGET_GROWTH:g}",
            "pass": results["check2"]["growth_bytes_per_package"] < TARGET_GROWTH,
        },
        "peak_rss_mib": {
            "value": max(results["check1"]["peak_rss_mib"], results["check2"]["peak_rss_mib"]),
            "target": f"< {TARGET_RSS_MIB:g}",
            "pass": max(results["check1"]["peak_rss_mib"], results["check2"]["peak_rss_mib"])
            < TARGET_RSS_MIB,
        },
    }
    results["total_seconds"] = time.perf_counter() - started
    return results


def report(r: dict[str, Any]) -> str:
    n = r["packages"]
    w, c1, c2, a, b = r["watch"], r["check1"], r["check2"], r["baseline_a"], r["baseline_b"]

    def reqs(x: dict[str, int]) -> str:
        return f"{x['total']} requests ({x['pages']} list pages, {x['singles']} single packages)"

    lines = [
        f"monitor check benchmark: {n} packages, concurrency {r['concurrency']}, "
        f"server {r['server']} (separate process)",
        "",
        f"CLI start (--version, best of 3)    {r['fixed_seconds']['version']:8.3f} s",
        f"check, nothing watched (best of 3)  {r['fixed_seconds']['empty_check']:8.3f} s   "
        f"(peak RSS {r['fixed_seconds']['empty_check_peak_rss_mib']:.1f} MiB)",
        f"watch (not measured, {w['calls']} calls)    {w['seconds']:8.3f} s   "
        f"{reqs(w['requests'])}",
        f"  database after watch              {w['db_bytes'] / 1e6:8.2f} MB",
        "",
    ]
    for label, c in (("check #1 (count unknown)", c1), ("check #2 (unchanged)", c2)):
        lines += [
            f"{label}",
            f"  wall time                         {c['seconds']:8.3f} s",
            f"  throughput                        {c['packages_per_s']:8.0f} packages/s",
            f"  peak RSS                          {c['peak_rss_mib']:8.1f} MiB",
            f"  requests                          {reqs(c['requests'])}",
            f"  requests per package              {c['requests']['total'] / n:8.4f}",
            f"  result                            {c['unchanged']} unchanged, "
            f"{c['changed']} changed, {c['transitions']} transitions",
            f"  database                          {c['db_bytes_before']} -> "
            f"{c['db_bytes_after']} bytes ({c['growth_bytes_per_package']:.1f} bytes/package)",
        ]
    lines += [
        f"  checks rows in the database       {r['checks_rows']}",
        "",
        "baseline: plain aiohttp GET + resp.json(), one session, "
        f"Semaphore({r['concurrency']}), in-process",
        f"  (a) the URLs check #1 requested   {a['seconds']:8.3f} s   {a['requests']} requests, "
        f"{a['records']} records, {a['packages_per_s']:.0f} packages/s",
        f"  (b) N single-package URLs         {b['seconds']:8.3f} s   {b['requests']} requests, "
        f"{b['packages_per_s']:.0f} packages/s",
        "",
        "check throughput / baseline throughput",
        f"  check #1 vs (a)                   {r['ratio_a']:8.3f}",
        f"  check #2 vs (a)                   {r['ratio_a_check2']:8.3f}",
        f"  check #1 vs (b) (context)         {r['ratio_b']:8.3f}",
        "  check #1 minus the empty check's time, vs (a) (context)  "
        + (
            f"{r['ratio_a_without_fixed_cost']:.3f}"
            if r["ratio_a_without_fixed_cost"] is not None
            else "n/a"
        ),
        "",
    ]
    names = {
        "ratio_a": ("throughput ratio (a)", ""),
        "growth_bytes_per_package": ("db growth, unchanged check", " bytes/package"),
        "peak_rss_mib": ("peak RSS of check", " MiB"),
    }
    for key, t in r["targets"].items():
        label, unit = names[key]
        verdict = "PASS" if t["pass"] else "FAIL"
        lines.append(f"{verdict}  {label}: {t['value']:.3f}{unit} (target {t['target']}{unit})")
    if "profile" in r:
        p = r["profile"]
        lines += ["", f"profiled check #3: {p['seconds']:.3f} s under cProfile -> {p['path']}"]
    lines += ["", f"total benchmark time {r['total_seconds']:.1f} s"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=10_000, metavar="N")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON dict on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, logs)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="also run a third (unmeasured) check under cProfile, stats written to FILE",
    )
    args = parser.parse_args()
    if args.packages < 2 or args.concurrency < 1:
        parser.error("--packages must be >= 2 and --concurrency >= 1")
    profile = args.profile.resolve() if args.profile else None
    results = bench(args.packages, args.concurrency, args.keep, profile)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report(results))
    failed = [k for k, t in results["targets"].items() if not t["pass"]]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
