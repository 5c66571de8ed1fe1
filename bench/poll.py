#!/usr/bin/env python3
"""Benchmark `monitor check` against the fake djangopackages server, like for like.

    .venv/bin/python bench/poll.py                    # N=10000, concurrency 8, 5 rounds
    .venv/bin/python bench/poll.py --packages 500     # a quick run
    .venv/bin/python bench/poll.py --json             # one JSON dict on stdout

What it does (progress goes to stderr):

1. serves N packages cloned from the fixtures (``tests/fakeupstream.py``) from a separate
   process on 127.0.0.1 (so the server's CPU is not the client's), stopped at the end;
2. writes a ``monitor.toml`` in a temp dir and watches all N packages with the real CLI
   (``python -m monitor watch``, 2000 slugs per call) in a fresh database;
3. fixed costs, best of 3 whole processes: ``monitor --version`` and ``check`` with nothing
   watched;
4. check #1 (fresh database, the list's count not known yet) and check #2 (nothing changed
   upstream), each ``python -m monitor check --json`` timed as a whole process (cold): wall
   time, peak RSS (``wait4`` rusage), requests the server got (list pages vs single
   packages), and for check #2 the database growth (after a WAL checkpoint) per package;
5. ``--rounds K`` rounds, each interleaving four measurements, every one in its own child
   process (checks are unchanged re-checks, like check #2):

   - warm check: ``bench/poll.py --child-check`` imports ``monitor.cli``, runs one
     ``check --json`` against a separate empty config and database (which imports every
     module a check needs, creates an event loop and an aiohttp session, and touches
     nothing measured), then times with ``perf_counter`` only the real
     ``check --json`` (the click group called exactly as ``monitor.cli.main()`` calls it,
     with ``standalone_mode=False``, stdout to a file): config, rules, database, polling,
     recording, the JSON report;
   - cold check: ``python -m monitor check --json``, spawn to exit;
   - warm baseline (a): ``bench/poll.py --child-baseline ... warm`` imports aiohttp, runs
     the fetch loop once over no URLs (event loop + session, the same warm-up), then times
     only the fetch loop over the URLs check #1 requested: ``asyncio.run`` of one
     ``ClientSession``, ``Semaphore(--concurrency)``, ``GET`` + ``await resp.json()`` for
     every URL via ``gather``, session closed;
   - cold baseline (a): the same child without the warm-up, timed by the parent from spawn
     to exit. It imports what a plain script would (asyncio, json, aiohttp and the stdlib
     they pull in): this file imports ``tests.fakeupstream``, ``monitor``, ``argparse``,
     ``multiprocessing`` and ``sqlite3`` only in the parent's code paths, and the bench
     checks the child's module list against ``python -c "import asyncio, json, aiohttp"``.

   So both sides are measured the same way twice over: warm (in-process ``perf_counter``
   after the same kind of warm-up, gc collected first) and cold (whole process, the
   interpreter start and imports included). Each reports best (min) and median seconds;
   the ratios (baseline seconds / check seconds, warm with warm, cold with cold) use the
   bests, and the median of each round's own ratios is shown too (a round's runs are
   seconds apart, so a drift in CPU speed moves both sides alike);
6. baseline (b), as context: the warm fetch loop over the N single-package URLs;
7. with ``--profile FILE``, one more (unmeasured) cold check under cProfile.

Targets (PASS/FAIL lines, informational unless ``--strict``): warm throughput ratio (a) =
warm baseline (a) seconds / warm check seconds >= 0.5; growth of check #2 < 100
bytes/package; peak RSS of every check process < 200 MiB. The cold ratio gets a PASS/FAIL
line too, as context: ``--strict`` ignores it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlencode

# Only modules a plain ``import asyncio, json, aiohttp`` script has anyway are imported at
# module level: the child processes run this file too (see ``main``), and the cold baseline
# child must not pay for more imports than a plain script would.

SCRIPT = Path(__file__).resolve()
ROOT = SCRIPT.parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.fakeupstream (also in the spawned server)

PYTHON = sys.executable
WATCH_BATCH = 2000
PROCESS_TIMEOUT = 600.0  # seconds: a process running longer is killed (and fails)
SERVER_IDLE_LIMIT = 900.0  # the server exits when it gets no command for this long
SERVER_MAX_COMMANDS = 100_000

TARGET_RATIO = 0.5
TARGET_GROWTH = 100.0  # bytes per package
TARGET_RSS_MIB = 200.0

PAGES_PATH = "/api/v4/packages/"
PLAIN_SCRIPT_IMPORTS = "import asyncio, json, aiohttp"

CHECK_CHILD = "--child-check"  # CONFIG WARMUP_CONFIG OUTPUT
BASELINE_CHILD = "--child-baseline"  # URLFILE CONCURRENCY warm|cold

KINDS = ("warm_check", "cold_check", "warm_baseline_a", "cold_baseline_a")
LABELS = {
    "warm_check": "check, warm (timed in-process)",
    "cold_check": "check, cold (whole process)",
    "warm_baseline_a": "baseline (a), warm",
    "cold_baseline_a": "baseline (a), cold",
}


# -- the child processes (run this file; see main) ----------------------------------------------


def _child_result(data: dict[str, Any]) -> None:
    """The child's one JSON line on its real stdout, read by the parent."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


@contextmanager
def _stdout_to(path: Path) -> Iterator[None]:
    """Send file descriptor 1 (and so ``sys.stdout``) to ``path`` for a while."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with path.open("wb") as out:
            os.dup2(out.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def _invoke_monitor(args: list[str]) -> int:
    """Run the CLI in this process as ``monitor.cli.main()`` does, but with these
    arguments and ``standalone_mode=False``; return the exit code."""
    from monitor import cli

    try:
        rv = cli.cli.main(args=args, prog_name="monitor", obj=cli.Runtime(), standalone_mode=False)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return rv if isinstance(rv, int) else 0


def _check_child(config: str, warmup_config: str, output: str) -> int:
    """Warm check: import, one check on the empty warm-up config, then time one check."""
    import gc

    import monitor.cli  # noqa: F401  (the import is part of the warm-up, not of the timing)

    out = Path(output)
    start = time.perf_counter()
    with _stdout_to(out.with_name(out.name + ".warmup")):
        warmup_code = _invoke_monitor(["--config", warmup_config, "check", "--json"])
    warmup_seconds = time.perf_counter() - start
    gc.collect()
    modules = set(sys.modules)
    with _stdout_to(out):
        start = time.perf_counter()
        code = _invoke_monitor(["--config", config, "check", "--json"])
        seconds = time.perf_counter() - start
    _child_result(
        {
            "seconds": seconds,
            "exit_code": code,
            "warmup_seconds": warmup_seconds,
            "warmup_exit_code": warmup_code,
            "new_modules": sorted(set(sys.modules) - modules),
        }
    )
    return 0


async def _fetch_all(urls: list[str], concurrency: int) -> int:
    """GET and decode every URL on one session; how many package records came back."""
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
        counts = await asyncio.gather(*(one(session, url) for url in urls))
    return sum(counts)


def _baseline_child(urlfile: str, concurrency: str, mode: str) -> int:
    """Baseline: a plain aiohttp script's fetch loop. ``warm``: warm up (the loop over no
    URLs), then time the loop; ``cold``: just run it (the parent times the process)."""
    import aiohttp  # noqa: F401  (what a plain script imports; the cold child pays for it)

    loaded = sorted(sys.modules)
    urls = Path(urlfile).read_text(encoding="utf-8").split()
    limit = int(concurrency)
    modules = set(sys.modules)
    if mode == "warm":
        import gc

        asyncio.run(_fetch_all([], limit))
        gc.collect()
        modules = set(sys.modules)
    elif mode != "cold":
        raise SystemExit(f"{BASELINE_CHILD}: mode must be warm or cold, not {mode!r}")
    start = time.perf_counter()
    records = asyncio.run(_fetch_all(urls, limit))
    seconds = time.perf_counter() - start
    _child_result(
        {
            "seconds": seconds,
            "requests": len(urls),
            "records": records,
            "new_modules": sorted(set(sys.modules) - modules),
            "modules": loaded if mode == "cold" else None,
        }
    )
    return 0


CHILDREN = {CHECK_CHILD: (_check_child, 3), BASELINE_CHILD: (_baseline_child, 3)}


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
        import multiprocessing

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
def serving(n: int) -> Iterator[Server]:
    server = Server(n)
    try:
        yield server
    finally:
        server.stop()


def split_requests(log: list[tuple[str, dict[str, str]]]) -> dict[str, int]:
    pages = sum(1 for path, _ in log if path == PAGES_PATH)
    singles = sum(1 for path, _ in log if path.startswith(PAGES_PATH) and path != PAGES_PATH)
    return {"total": len(log), "pages": pages, "singles": singles}


def request_urls(base: str, log: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [f"{base}{path}" + (f"?{urlencode(query)}" if query else "") for path, query in log]


# -- running processes --------------------------------------------------------------------------


class Run(NamedTuple):
    wall: float  # seconds, spawn to exit
    returncode: int
    maxrss_kib: int
    stdout: Path
    stderr: Path


def run_process(argv: list[str], *, cwd: Path, name: str, timeout: float = PROCESS_TIMEOUT) -> Run:
    """Run ``argv`` and measure it: wall time from spawn to exit, and the peak RSS of that
    very process (``os.wait4`` gives the rusage of one child)."""
    out, err = cwd / f"{name}.stdout", cwd / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=stdout, stderr=stderr)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, proc.returncode, usage.ru_maxrss, out, err)


def run_cli(args: list[str], *, cwd: Path, name: str, profile: Path | None = None) -> Run:
    """``python -m monitor ARGS``; with ``profile``, under cProfile (stats written there)."""
    prefix = ["-m", "cProfile", "-o", str(profile)] if profile else []
    return run_process([PYTHON, *prefix, "-m", "monitor", *args], cwd=cwd, name=name)


def run_child(args: list[str], *, cwd: Path, name: str) -> tuple[Run, dict[str, Any]]:
    """``python bench/poll.py ARGS`` (a child mode): the run, and its JSON line."""
    run = run_process([PYTHON, str(SCRIPT), *args], cwd=cwd, name=name)
    require_ok(run, f"bench child {name}")
    lines = run.stdout.read_text(encoding="utf-8").splitlines()
    if not lines:
        raise RuntimeError(f"bench child {name} printed nothing")
    return run, json.loads(lines[-1])


def require_ok(run: Run, what: str) -> None:
    if run.returncode != 0:
        tail = run.stderr.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{what} exited {run.returncode}; stderr ends:\n{tail}")


def checkpoint_size(db: Path) -> int:
    """The database file's size with the WAL folded in (run when no process uses it)."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return db.stat().st_size


def count_rows(db: Path, table: str) -> int:
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


# -- the measurements ---------------------------------------------------------------------------


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


def require_checked(output: Path, n: int, name: str) -> dict[str, Any]:
    """The check's JSON report; every package checked, none failed."""
    report = json.loads(output.read_text(encoding="utf-8"))
    if report.get("checked") != n or report.get("failed"):
        raise RuntimeError(
            f"{name}: checked {report.get('checked')} of {n}, "
            f"failed: {(report.get('failed') or [])[:3]}"
        )
    return report


def check_once(
    server: Server, workdir: Path, config: Path, db: Path, n: int, name: str
) -> dict[str, Any]:
    """Check #1 / #2: a cold check, with the database growth."""
    size_before = checkpoint_size(db)
    mark = server.mark()
    run = run_cli(["--config", str(config), "check", "--json"], cwd=workdir, name=name)
    log = server.since(mark)
    size_after = checkpoint_size(db)
    require_ok(run, f"monitor check ({name})")
    report = require_checked(run.stdout, n, name)
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


class Bench:
    """The per-round measurements; each returns one sample dict with ``seconds``."""

    def __init__(
        self,
        server: Server,
        workdir: Path,
        config: Path,
        warmup: Path,
        n: int,
        concurrency: int,
        urls_a: Path,
    ):
        self.server, self.workdir, self.config, self.warmup = server, workdir, config, warmup
        self.n, self.concurrency, self.urls_a = n, concurrency, urls_a
        self.expected_a = sorted(urls_a.read_text(encoding="utf-8").split())

    def _requests(self, mark: int) -> dict[str, Any]:
        log = self.server.since(mark)
        same = sorted(request_urls(self.server.url, log)) == self.expected_a
        return {**split_requests(log), "same_urls_as_a": same}

    def warm_check(self, name: str) -> dict[str, Any]:
        output = self.workdir / f"{name}.check.json"
        mark = self.server.mark()
        run, line = run_child(
            [CHECK_CHILD, str(self.config), str(self.warmup), str(output)],
            cwd=self.workdir,
            name=name,
        )
        requests = self._requests(mark)
        if line["exit_code"] != 0 or line["warmup_exit_code"] != 0:
            raise RuntimeError(
                f"{name}: check exited {line['exit_code']} (warm-up {line['warmup_exit_code']});"
                f" see {run.stderr}"
            )
        require_checked(output, self.n, name)
        return {
            "seconds": line["seconds"],
            "process_seconds": run.wall,
            "warmup_seconds": line["warmup_seconds"],
            "peak_rss_mib": run.maxrss_kib / 1024,
            "exit_code": line["exit_code"],
            "new_modules": line["new_modules"],
            "requests": requests,
        }

    def cold_check(self, name: str) -> dict[str, Any]:
        mark = self.server.mark()
        run = run_cli(
            ["--config", str(self.config), "check", "--json"], cwd=self.workdir, name=name
        )
        requests = self._requests(mark)
        require_ok(run, f"monitor check ({name})")
        require_checked(run.stdout, self.n, name)
        return {
            "seconds": run.wall,
            "peak_rss_mib": run.maxrss_kib / 1024,
            "exit_code": run.returncode,
            "requests": requests,
        }

    def baseline(self, name: str, mode: str, urls: Path | None = None) -> dict[str, Any]:
        mark = self.server.mark()
        run, line = run_child(
            [BASELINE_CHILD, str(urls or self.urls_a), str(self.concurrency), mode],
            cwd=self.workdir,
            name=name,
        )
        requests = self._requests(mark)
        if line["records"] != self.n:
            raise RuntimeError(f"{name}: {line['records']} records came back, not {self.n}")
        sample = {
            "seconds": line["seconds"] if mode == "warm" else run.wall,
            "loop_seconds": line["seconds"],
            "process_seconds": run.wall,
            "peak_rss_mib": run.maxrss_kib / 1024,
            "records": line["records"],
            "new_modules": line["new_modules"],
            "requests": requests,
        }
        if line["modules"] is not None:
            sample["_modules"] = line["modules"]
        return sample


def plain_script_modules(workdir: Path) -> list[str]:
    """``sys.modules`` of a plain script that imports asyncio, json and aiohttp."""
    code = f"{PLAIN_SCRIPT_IMPORTS}, sys; print(json.dumps(sorted(sys.modules)))"
    run = run_process([PYTHON, "-c", code], cwd=workdir, name="plain-modules")
    require_ok(run, "the plain-script import check")
    return list(json.loads(run.stdout.read_text(encoding="utf-8")))


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarise(samples: list[dict[str, Any]], n: int) -> dict[str, Any]:
    seconds = [s["seconds"] for s in samples]
    return {
        "best": min(seconds),
        "median": median(seconds),
        "packages_per_s_best": n / min(seconds),
        "samples": seconds,
        "peak_rss_mib": max(s["peak_rss_mib"] for s in samples),
    }


def bench(
    n: int, concurrency: int, rounds: int, keep: bool, profile: Path | None
) -> dict[str, Any]:
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
                "rounds": rounds,
                "server": server.url,
            }

            progress("fixed costs (best of 3)")
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

            progress("check #1 (cold; fresh database: the list's count is not known yet)")
            first = check_once(server, workdir, config, db, n, "check1")
            progress("check #2 (cold; nothing changed upstream; database growth measured)")
            second = check_once(server, workdir, config, db, n, "check2")
            results["checks_rows"] = count_rows(db, "checks")

            urls = request_urls(server.url, first.pop("_log"))
            urls_2 = request_urls(server.url, second.pop("_log"))
            second["same_urls_as_check1"] = sorted(urls_2) == sorted(urls)
            results["check1"] = first
            results["check2"] = second
            urls_a = workdir / "urls_a.txt"
            urls_a.write_text("\n".join(urls) + "\n", encoding="utf-8")
            urls_b = workdir / "urls_b.txt"
            urls_b.write_text(
                "".join(f"{server.url}{PAGES_PATH}{slug}/\n" for slug in slugs), encoding="utf-8"
            )

            warmup_dir = workdir / "warmup"
            warmup_dir.mkdir()
            warmup = write_config(warmup_dir, server.url, concurrency)
            b = Bench(server, workdir, config, warmup, n, concurrency, urls_a)
            samples: list[dict[str, Any]] = []
            for k in range(1, rounds + 1):
                progress(
                    f"round {k}/{rounds}: warm check, cold check, "
                    f"warm baseline (a), cold baseline (a) ({len(urls)} URLs)"
                )
                samples.append(
                    {
                        "warm_check": b.warm_check(f"round{k}-warm-check"),
                        "cold_check": b.cold_check(f"round{k}-cold-check"),
                        "warm_baseline_a": b.baseline(f"round{k}-warm-baseline", "warm"),
                        "cold_baseline_a": b.baseline(f"round{k}-cold-baseline", "cold"),
                    }
                )
            child_modules = samples[0]["cold_baseline_a"]["_modules"]
            for s in samples:
                s["cold_baseline_a"].pop("_modules", None)
            plain = plain_script_modules(workdir)
            results["cold_baseline_imports"] = {
                "plain_script": PLAIN_SCRIPT_IMPORTS,
                "modules": len(child_modules),
                "plain_script_modules": len(plain),
                "extra_modules": sorted(set(child_modules) - set(plain)),
            }
            for s in samples:  # each round's own ratios: its four runs were seconds apart
                s["ratio_warm"] = s["warm_baseline_a"]["seconds"] / s["warm_check"]["seconds"]
                s["ratio_cold"] = s["cold_baseline_a"]["seconds"] / s["cold_check"]["seconds"]
            results["round_samples"] = samples
            summary = {kind: summarise([s[kind] for s in samples], n) for kind in KINDS}
            results["summary"] = summary

            progress(f"baseline (b): {n} single-package URLs (warm, context)")
            single = b.baseline("baseline-b", "warm", urls_b)
            results["baseline_b"] = {
                "requests": single["requests"]["total"],
                "records": single["records"],
                "seconds": single["seconds"],
                "packages_per_s": n / single["seconds"],
            }

            results["ratio_warm"] = (
                summary["warm_baseline_a"]["best"] / summary["warm_check"]["best"]
            )
            results["ratio_cold"] = (
                summary["cold_baseline_a"]["best"] / summary["cold_check"]["best"]
            )
            results["ratio_b_warm"] = single["seconds"] / summary["warm_check"]["best"]
            results["ratio_warm_round_median"] = median([s["ratio_warm"] for s in samples])
            results["ratio_cold_round_median"] = median([s["ratio_cold"] for s in samples])
            cold_a = summary["cold_baseline_a"]["best"]
            results["ratio_cold_check1"] = cold_a / first["seconds"]
            results["ratio_cold_check2"] = cold_a / second["seconds"]

            if profile is not None:
                progress(f"one more check under cProfile (not measured) -> {profile}")
                run = run_cli(
                    ["--config", str(config), "check", "--json"],
                    cwd=workdir,
                    name="check-profiled",
                    profile=profile,
                )
                require_ok(run, "monitor check (profiled)")
                results["profile"] = {"path": str(profile), "seconds": run.wall}
    finally:
        if keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    peak_rss = max(
        first["peak_rss_mib"],
        second["peak_rss_mib"],
        summary["warm_check"]["peak_rss_mib"],
        summary["cold_check"]["peak_rss_mib"],
    )
    results["targets"] = {
        "ratio_warm": target(results["ratio_warm"], ">=", TARGET_RATIO),
        "growth_bytes_per_package": target(second["growth_bytes_per_package"], "<", TARGET_GROWTH),
        "peak_rss_mib": target(peak_rss, "<", TARGET_RSS_MIB),
    }
    results["context"] = {"ratio_cold": target(results["ratio_cold"], ">=", TARGET_RATIO)}
    results["total_seconds"] = time.perf_counter() - started
    return results


def target(value: float, op: str, limit: float) -> dict[str, Any]:
    ok = value >= limit if op == ">=" else value < limit
    return {"value": value, "target": f"{op} {limit:g}", "pass": ok}


# -- the report ---------------------------------------------------------------------------------


def report(r: dict[str, Any]) -> str:
    n = r["packages"]
    w, c1, c2, b = r["watch"], r["check1"], r["check2"], r["baseline_b"]
    fixed, summary, samples = r["fixed_seconds"], r["summary"], r["round_samples"]

    def reqs(x: dict[str, int]) -> str:
        return f"{x['total']} requests ({x['pages']} list pages, {x['singles']} single packages)"

    def row(label: str, text: str) -> str:
        return f"  {label:<40}{text}"

    lines = [
        f"monitor check benchmark: {n} packages, concurrency {r['concurrency']}, "
        f"server {r['server']} (separate process)",
        "",
        "fixed costs (whole process, best of 3)",
        row("CLI start (--version)", f"{fixed['version']:8.3f} s"),
        row(
            "check, nothing watched",
            f"{fixed['empty_check']:8.3f} s   "
            f"(peak RSS {fixed['empty_check_peak_rss_mib']:.1f} MiB)",
        ),
        row(
            f"watch ({w['calls']} call(s), not measured)",
            f"{w['seconds']:8.3f} s   {reqs(w['requests'])}",
        ),
        row("database after watch", f"{w['db_bytes'] / 1e6:8.2f} MB"),
        "",
    ]
    for label, c in (
        ("check #1 (cold; count unknown)", c1),
        ("check #2 (cold; unchanged)", c2),
    ):
        lines += [
            label,
            row("wall time", f"{c['seconds']:8.3f} s"),
            row("throughput", f"{c['packages_per_s']:8.0f} packages/s"),
            row("peak RSS", f"{c['peak_rss_mib']:8.1f} MiB"),
            row("requests", reqs(c["requests"])),
            row("requests per package", f"{c['requests']['total'] / n:8.4f}"),
            row(
                "result",
                f"{c['unchanged']} unchanged, {c['changed']} changed, "
                f"{c['transitions']} transitions",
            ),
            row(
                "database",
                f"{c['db_bytes_before']} -> {c['db_bytes_after']} bytes "
                f"({c['growth_bytes_per_package']:.1f} bytes/package)",
            ),
        ]
    lines += [
        row("same URLs as check #1", "yes" if c2["same_urls_as_check1"] else "NO"),
        row("checks rows in the database", str(r["checks_rows"])),
        "",
        f"{r['rounds']} rounds of: warm check, cold check, warm baseline (a), cold baseline (a)",
        "  checks: unchanged re-checks; baseline (a): plain aiohttp GET + resp.json() over the",
        f"  {r['check1']['requests']['total']} URLs check #1 requested, one session, "
        f"Semaphore({r['concurrency']}); each in its own process",
        "  warm: timed in-process after a warm-up; cold: the whole process, spawn to exit",
        "",
        f"  {'':<40}{'best':>8}  {'median':>8}  {'pkg/s best':>10}  {'peak RSS':>9}  samples (s)",
    ]
    for kind in KINDS:
        s = summary[kind]
        lines.append(
            f"  {LABELS[kind]:<40}{s['best']:8.3f}  {s['median']:8.3f}  "
            f"{s['packages_per_s_best']:10.0f}  {s['peak_rss_mib']:5.1f} MiB  "
            + " ".join(f"{x:.3f}" for x in s["samples"])
        )
    new_check = sorted({m for s in samples for m in s["warm_check"]["new_modules"]})
    new_base = sorted({m for s in samples for m in s["warm_baseline_a"]["new_modules"]})
    same = all(s[kind]["requests"]["same_urls_as_a"] for s in samples for kind in KINDS)
    imports = r["cold_baseline_imports"]
    extra = imports["extra_modules"]
    lines += [
        "",
        row(
            "modules first imported while timed",
            f"warm check {len(new_check)}, warm baseline {len(new_base)}"
            + (f"  ({', '.join((new_check + new_base)[:6])})" if new_check or new_base else ""),
        ),
        row(
            "cold baseline child's imports",
            f"{imports['modules']} modules; {len(extra)} beyond `{imports['plain_script']}`"
            + (f" ({', '.join(extra[:6])})" if extra else ""),
        ),
        row("every round requested URLs (a)", "yes" if same else "NO (see --json)"),
        "",
        "throughput ratio = baseline seconds / check seconds (from the bests; the per-round",
        "medians, each round's pair run seconds apart, show how much CPU-speed noise moved them)",
        row("warm: baseline (a) / check", f"{r['ratio_warm']:8.3f}"),
        row("cold: baseline (a) / check", f"{r['ratio_cold']:8.3f}"),
        row(
            "warm, median of per-round ratios",
            f"{r['ratio_warm_round_median']:8.3f}   (rounds: "
            + " ".join(f"{s['ratio_warm']:.3f}" for s in samples)
            + ")",
        ),
        row(
            "cold, median of per-round ratios",
            f"{r['ratio_cold_round_median']:8.3f}   (rounds: "
            + " ".join(f"{s['ratio_cold']:.3f}" for s in samples)
            + ")",
        ),
        row("cold: baseline (a) / check #1 (context)", f"{r['ratio_cold_check1']:8.3f}"),
        row("cold: baseline (a) / check #2 (context)", f"{r['ratio_cold_check2']:8.3f}"),
        row(
            "warm: baseline (b) / check (context)",
            f"{r['ratio_b_warm']:8.3f}   (b): {b['requests']} single-package URLs, "
            f"{b['seconds']:.3f} s, {b['packages_per_s']:.0f} packages/s",
        ),
        "",
    ]
    names = {
        "ratio_warm": ("throughput ratio (a), warm", ""),
        "growth_bytes_per_package": ("db growth, unchanged check", " bytes/package"),
        "peak_rss_mib": ("peak RSS of every check process", " MiB"),
        "ratio_cold": ("throughput ratio (a), cold (context, not used by --strict)", ""),
    }
    for key, t in (*r["targets"].items(), *r["context"].items()):
        label, unit = names[key]
        verdict = "PASS" if t["pass"] else "FAIL"
        lines.append(f"{verdict}  {label}: {t['value']:.3f}{unit} (target {t['target']}{unit})")
    if "profile" in r:
        p = r["profile"]
        lines += ["", f"profiled check: {p['seconds']:.3f} s under cProfile -> {p['path']}"]
    lines += ["", f"total benchmark time {r['total_seconds']:.1f} s"]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:  # internal: a measured child process
        child, nargs = CHILDREN[sys.argv[1]]
        if len(sys.argv) != 2 + nargs:
            raise SystemExit(f"{sys.argv[1]} takes {nargs} arguments (internal use)")
        return child(*sys.argv[2:])

    import argparse  # here, not at the top: the child processes do without it

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=10_000, metavar="N")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--rounds", type=int, default=5, metavar="K", help="rounds of the four measurements"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON dict on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, logs)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="FILE",
        help="also run one more (unmeasured) check under cProfile, stats written to FILE",
    )
    args = parser.parse_args()
    if args.packages < 2 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--packages must be >= 2, --concurrency >= 1 and --rounds >= 1")
    profile = args.profile.resolve() if args.profile else None
    results = bench(args.packages, args.concurrency, args.rounds, args.keep, profile)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report(results))
    failed = [k for k, t in results["targets"].items() if not t["pass"]]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
