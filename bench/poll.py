#!/usr/bin/env python3
"""Benchmark `monitor check` against the fake djangopackages server, like for like.

    .venv/bin/python bench/poll.py                    # N=10000, concurrency 8, 5 rounds
    .venv/bin/python bench/poll.py --packages 500     # a quick run
    .venv/bin/python bench/poll.py --json             # one JSON dict on stdout
    .venv/bin/python bench/poll.py --sources          # PyPI, GitHub and OSV on too (bench/README)

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
# --sources (every source on)
TARGET_GROWTH_SOURCES = 200.0  # bytes per package, unchanged re-check
TARGET_GROWTH_SHIFTED = 300.0  # bytes per package, every commits_over_52 shifted a week
TARGET_RSS_MIB_SOURCES = 300.0
TARGET_NOT_MODIFIED = 100.0  # % of the PyPI + GitHub requests of an unchanged check
TARGET_OSV_BATCHES = 1.0  # querybatch requests per 1,000 packages

PAGES_PATH = "/api/v4/packages/"
PLAIN_SCRIPT_IMPORTS = "import asyncio, json, aiohttp"

CHECK_CHILD = "--child-check"  # CONFIG WARMUP_CONFIG OUTPUT
BASELINE_CHILD = "--child-baseline"  # SPECFILE CONCURRENCY warm|cold

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


async def _fetch_all(specs: list[dict[str, Any]], concurrency: int) -> int:
    """Send every request (``method``, ``url``, ``headers``, ``body``) on one session and
    decode every JSON body (a 304 has none); how many package records came back from the
    djangopackages URLs."""
    import aiohttp

    semaphore = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, spec: dict[str, Any]) -> int:
        url = spec["url"]
        async with (
            semaphore,
            session.request(
                spec["method"], url, headers=spec["headers"], data=spec["body"]
            ) as resp,
        ):
            resp.raise_for_status()
            if resp.status == 304:
                await resp.read()
                return 0
            data = await resp.json(content_type=None)
        if PAGES_PATH not in url:
            return 0
        if isinstance(data, dict) and isinstance(data.get("results"), list):
            return len(data["results"])
        return 1

    async with aiohttp.ClientSession() as session:
        counts = await asyncio.gather(*(one(session, spec) for spec in specs))
    return sum(counts)


def _baseline_child(specfile: str, concurrency: str, mode: str) -> int:
    """Baseline: a plain aiohttp script's fetch loop over the requests in ``specfile`` (a
    JSON list). ``warm``: warm up (the loop over no requests), then time the loop; ``cold``:
    just run it (the parent times the process)."""
    import aiohttp  # noqa: F401  (what a plain script imports; the cold child pays for it)

    loaded = sorted(sys.modules)
    specs = json.loads(Path(specfile).read_text(encoding="utf-8"))
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
    records = asyncio.run(_fetch_all(specs, limit))
    seconds = time.perf_counter() - start
    _child_result(
        {
            "seconds": seconds,
            "requests": len(specs),
            "records": records,
            "new_modules": sorted(set(sys.modules) - modules),
            "modules": loaded if mode == "cold" else None,
        }
    )
    return 0


CHILDREN = {CHECK_CHILD: (_check_child, 3), BASELINE_CHILD: (_baseline_child, 3)}


# -- the server process -----------------------------------------------------------------------


SOURCE_APIS = ("pypi", "github", "osv")
GITHUB_TEMPLATE = "django/deps"
PYPI_TEMPLATE = "django-minify-html"
BENCH_VULNS = 3  # packages with a known vulnerability (--sources): OSV details get fetched
REPLAYED_HEADERS = ("If-None-Match", "Accept", "Authorization", "Content-Type")


def _source_world(records: dict[str, dict[str, Any]]) -> list[Any]:
    """Child process, ``--sources``: give every record its own PyPI project (a trimmed copy of
    a real body, version = its ``pypi_version``, released a week ago) and GitHub repository
    (a copy of a real body), and OSV a handful of vulnerabilities. Returns the fake APIs."""
    import copy
    from datetime import UTC, datetime, timedelta

    from tests.fake_github import FakeGitHub
    from tests.fake_osv import FakeOSV
    from tests.fake_pypi import FakePyPI, load_pypi_fixtures

    class IndexedGitHub(FakeGitHub):
        """FakeGitHub with dict lookups (its own scans every repository per request)."""

        def _lookup(self, table: dict[str, Any], full_name: str) -> Any:  # type: ignore[override]
            return table.get(full_name) or table.get(full_name.lower())

    template = load_pypi_fixtures()[PYPI_TEMPLATE]
    template["info"]["description"] = "A benchmark copy."  # 12 KB of README otherwise
    template["releases"] = dict(list(template["releases"].items())[-3:])
    pypi = FakePyPI({})
    github = IndexedGitHub(limit=10**9)
    template_repo = FakeGitHub().repos[GITHUB_TEMPLATE]
    github.repos = {GITHUB_TEMPLATE: template_repo}
    osv = FakeOSV()
    released = datetime.now(UTC) - timedelta(days=7)
    for i, (slug, record) in enumerate(records.items()):
        record["pypi_url"] = f"https://pypi.org/project/{slug}/"
        record["repo_url"] = f"https://github.com/owner/{slug}"
        body = copy.deepcopy(template)
        body["info"]["name"] = slug
        pypi.projects[slug] = body  # slugs are PEP 503-normal already
        version = record.get("pypi_version") or "1.0.0"
        pypi.release(slug, version, released)
        github.clone(GITHUB_TEMPLATE, f"owner/{slug}")
        if i < BENCH_VULNS:
            osv.add_vuln(f"PYSEC-BENCH-{i}", slug, [version], None, f"Bench issue {i}")
    del github.repos[GITHUB_TEMPLATE]
    return [pypi, github, osv]


def _shift_commits(records: dict[str, dict[str, Any]]) -> int:
    """A week passed, as djangopackages shows it: every record's ``commits_over_52`` drops
    its oldest week and gains the newest, 1-3 commits for a package with commits in the
    last 26 weeks and none for one without (a dead package stays dead: its revival would be
    a real event, and 2,000 at once is not what a weekly shift is). Every array changes:
    :func:`_with_old_commits` gave the dead ones commits further back."""
    shifted = 0
    for record in records.values():
        weeks = record.get("commits_over_52")
        if isinstance(weeks, list) and weeks:
            active = any(weeks[-26:])
            record["commits_over_52"] = [*weeks[1:], 1 + shifted % 3 if active else 0]
            shifted += 1
    return shifted


def _with_old_commits(records: dict[str, dict[str, Any]]) -> None:
    """Give each record with no commits in 52 weeks (the clones of django-mfa) a few 40-50
    weeks ago, so the weekly shift moves them while the package stays dead."""
    for i, record in enumerate(records.values()):
        weeks = record.get("commits_over_52")
        if isinstance(weeks, list) and len(weeks) == 52 and not any(weeks):
            weeks[2 + i % 10] = 1 + i % 4


def _bump_version(version: Any, draw: float) -> str:
    """The next release after ``version``: a major bump when ``draw`` < 0.02, a minor one
    when < 0.12, else a patch (``1.2.3`` -> ``2.0.0`` / ``1.3.0`` / ``1.2.4``); a version that
    is not ``N[.N[.N]]...`` (or none) becomes ``1.0.0``."""
    import re

    match = re.match(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", version or "")
    if match is None:
        return "1.0.0"
    major, minor, patch = (int(part or 0) for part in match.groups())
    if draw < 0.02:
        return f"{major + 1}.0.0"
    if draw < 0.12:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _mutate_records(
    records: dict[str, dict[str, Any]], seed: str, releases: float, stars: float
) -> dict[str, int]:
    """A week's news, the same for the same ``seed``: each record releases with probability
    ``releases`` (``pypi_version`` bumped, see :func:`_bump_version`) and moves its stars with
    probability ``stars`` (``repo_watchers`` up or down by 1-5 %, at least 1, never below 0).
    A dead record whose last old commit the shift just dropped (all 52 weeks zero) gets one
    27 weeks back, as :func:`_with_old_commits` gave it at the start: the next shifts keep
    changing it while it stays dead for every rule. Returns how many released, how many moved
    and how many dead records got an old commit."""
    import random

    rng = random.Random(seed)
    released = moved = replanted = 0
    for record in records.values():
        weeks = record.get("commits_over_52")
        if isinstance(weeks, list) and len(weeks) == 52 and not any(weeks):
            weeks[25] = 1  # 27 weeks ago: outside the last 26, so still "no commits"
            replanted += 1
        release, move, size, direction = rng.random(), rng.random(), rng.random(), rng.random()
        if release < releases:
            record["pypi_version"] = _bump_version(record.get("pypi_version"), rng.random())
            released += 1
        watchers = record.get("repo_watchers")
        if move < stars and isinstance(watchers, int):
            step = max(1, round(watchers * (0.01 + 0.04 * size)))
            up = direction < 0.5 or watchers < step
            record["repo_watchers"] = watchers + step if up else watchers - step
            moved += 1
    return {"released": released, "stars_moved": moved, "dead_with_old_commit": replanted}


def _serve(n: int, conn: Any, sources: bool = False) -> None:
    """Child process: serve N cloned packages (``sources``: with PyPI, GitHub and OSV);
    answer commands on ``conn`` until "stop", the parent's end closing, or
    ``SERVER_IDLE_LIMIT`` seconds without a command."""
    from aiohttp import web

    from tests.fakeupstream import FakeUpstream, clone_records

    class LoggingUpstream(FakeUpstream):
        """Also keeps each request's body (POSTs) and answer status, by log index."""

        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.bodies: dict[int, str] = {}
            self.statuses: dict[int, int] = {}

        @web.middleware
        async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
            body = await request.read() if request.can_read_body else b""
            index = len(self.log)  # the entry the parent's middleware appends, with no await
            if body:
                self.bodies[index] = body.decode()
            try:
                response = await FakeUpstream._middleware(self, request, handler)
            except web.HTTPException as exc:
                self.statuses[index] = exc.status
                raise
            self.statuses[index] = response.status
            return response

    records = clone_records(n)
    _with_old_commits(records)
    apis = _source_world(records) if sources else []
    up = LoggingUpstream(records, apis=apis)
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
                conn.send(
                    [
                        {
                            "method": r.method,
                            "path": r.path,
                            "query": r.query,
                            "headers": {
                                k: r.headers[k] for k in REPLAYED_HEADERS if k in r.headers
                            },
                            "body": up.bodies.get(i),
                            "status": up.statuses.get(i),
                        }
                        for i, r in enumerate(up.log[arg:], start=arg)
                    ]
                )
            elif command == "shift":
                conn.send(_shift_commits(up.records))
            elif command == "mutate":
                conn.send(_mutate_records(up.records, **arg))
            else:
                conn.send(None)


class Server:
    """The fake server in a separate (spawned) process."""

    def __init__(self, n: int, sources: bool = False):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(
            target=_serve, args=(n, child, sources), name="fakeupstream", daemon=True
        )
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

    def since(self, mark: int) -> list[dict[str, Any]]:
        """Every request since ``mark``: method, path, query, the headers a replay sends
        (``REPLAYED_HEADERS``), body (None when empty) and the status answered."""
        return list(self._ask("since", mark))

    def shift(self) -> int:
        """Shift every record's ``commits_over_52`` by a week; how many were shifted."""
        return int(self._ask("shift"))

    def mutate(self, seed: str, releases: float, stars: float) -> dict[str, int]:
        """A few releases and star moves (see ``_mutate_records``), deterministic from
        ``seed``; how many of each."""
        return dict(self._ask("mutate", {"seed": seed, "releases": releases, "stars": stars}))

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
def serving(n: int, sources: bool = False) -> Iterator[Server]:
    server = Server(n, sources)
    try:
        yield server
    finally:
        server.stop()


def split_requests(log: list[dict[str, Any]]) -> dict[str, int]:
    pages = sum(1 for r in log if r["path"] == PAGES_PATH)
    singles = sum(1 for r in log if r["path"].startswith(PAGES_PATH) and r["path"] != PAGES_PATH)
    return {"total": len(log), "pages": pages, "singles": singles}


# Requests by kind (--sources): name -> does this path belong to it.
KIND_OF_PATH = {
    "list_pages": lambda p: p == PAGES_PATH,
    "single_packages": lambda p: p.startswith(PAGES_PATH) and p != PAGES_PATH,
    "pypi_json": lambda p: p.startswith("/pypi/"),
    "pypi_simple": lambda p: p.startswith("/simple/"),
    "github": lambda p: p.startswith("/repos/"),
    "osv_batch": lambda p: p == "/v1/querybatch",
    "osv_details": lambda p: p.startswith("/v1/vulns/"),
}


def requests_by_kind(log: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """``{kind: {"requests", "not_modified"}}`` for every kind, plus ``other``."""
    out = {kind: {"requests": 0, "not_modified": 0} for kind in (*KIND_OF_PATH, "other")}
    for r in log:
        kind = next((k for k, is_kind in KIND_OF_PATH.items() if is_kind(r["path"])), "other")
        out[kind]["requests"] += 1
        out[kind]["not_modified"] += r["status"] == 304
    return out


def request_urls(base: str, log: list[dict[str, Any]]) -> list[str]:
    return [f"{base}{r['path']}" + (f"?{urlencode(r['query'])}" if r["query"] else "") for r in log]


def request_specs(base: str, log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What a replay sends: method, URL, the replayed headers, body."""
    return [
        {"method": r["method"], "url": url, "headers": r["headers"], "body": r["body"]}
        for r, url in zip(log, request_urls(base, log), strict=True)
    ]


def spec_key(spec: dict[str, Any]) -> str:
    """A request spec as one comparable string."""
    return json.dumps(spec, sort_keys=True)


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


def table_bytes(db: Path) -> dict[str, int]:
    """Bytes of pages per table and index (SQLite's ``dbstat``; empty when not compiled in)."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name").fetchall()
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()
    return {str(name): int(size) for name, size in rows}


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


def write_config(workdir: Path, url: str, concurrency: int, sources: bool = False) -> Path:
    """The bench's ``monitor.toml``: djangopackages at ``url``; PyPI, GitHub and OSV there
    too with ``sources`` (GitHub with a dummy token: its 304s are free), else turned off."""
    tables = ""
    for name in SOURCE_APIS:
        tables += f"\n[sources.{name}]\n"
        if not sources:
            tables += "enabled = false\n"
            continue
        tables += f'url = {json.dumps(url)}\nconcurrency = {concurrency}\ntimeout = "30s"\n'
        if name == "github":
            tables += 'token = "bench-dummy-token"\n'
    path = workdir / "monitor.toml"
    path.write_text(
        'database = "monitor.db"\n'
        "\n"
        "[sources.djangopackages]\n"
        f"url = {json.dumps(url)}\n"
        f"concurrency = {concurrency}\n"
        'timeout = "30s"\n'
        f"{tables}"
        "\n"
        "[schedule]\n"
        'jitter = "0s"\n',
        encoding="utf-8",
    )
    return path


def fixed_costs(workdir: Path, url: str, concurrency: int, sources: bool) -> dict[str, float]:
    """Best of 3 each: ``--version`` (interpreter + CLI import) and ``check --json`` with
    nothing watched (a check's fixed cost: imports, config, rules, database)."""
    empty = workdir / "empty"
    empty.mkdir()
    config = write_config(empty, url, concurrency, sources)
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
    tables_before = table_bytes(db)
    mark = server.mark()
    run = run_cli(["--config", str(config), "check", "--json"], cwd=workdir, name=name)
    log = server.since(mark)
    size_after = checkpoint_size(db)
    tables_after = table_bytes(db)
    growth = {
        name: size - tables_before.get(name, 0)
        for name, size in tables_after.items()
        if size != tables_before.get(name, 0)
    }
    require_ok(run, f"monitor check ({name})")
    report = require_checked(run.stdout, n, name)
    return {
        "seconds": run.wall,
        "packages_per_s": n / run.wall,
        "peak_rss_mib": run.maxrss_kib / 1024,
        "requests": split_requests(log),
        "by_kind": requests_by_kind(log),
        "growth_by_table": dict(sorted(growth.items(), key=lambda kv: -kv[1])),
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
        """``concurrency``: the baselines'; ``urls_a``: the requests of (a), a JSON list."""
        self.server, self.workdir, self.config, self.warmup = server, workdir, config, warmup
        self.n, self.concurrency, self.urls_a = n, concurrency, urls_a
        specs = json.loads(urls_a.read_text(encoding="utf-8"))
        self.expected_a = sorted(spec_key(spec) for spec in specs)

    def _requests(self, mark: int) -> dict[str, Any]:
        log = self.server.since(mark)
        mine = sorted(spec_key(spec) for spec in request_specs(self.server.url, log))
        return {
            **split_requests(log),
            "by_kind": requests_by_kind(log),
            "same_urls_as_a": mine == self.expected_a,
        }

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
    n: int,
    concurrency: int,
    rounds: int,
    keep: bool,
    profile: Path | None,
    sources: bool = False,
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    started = time.perf_counter()
    # The baselines' concurrency: the check's per source (one source), or with --sources
    # the total the check may use across its four sources (a semaphore each).
    baseline_concurrency = concurrency * (1 + len(SOURCE_APIS)) if sources else concurrency
    try:
        progress(f"starting the fake server with {n} packages" + (" + sources" if sources else ""))
        with serving(n, sources) as server:
            slugs = server.slugs
            config = write_config(workdir, server.url, concurrency, sources)
            db = workdir / "monitor.db"
            results: dict[str, Any] = {
                "packages": n,
                "concurrency": concurrency,
                "baseline_concurrency": baseline_concurrency,
                "sources": sources,
                "rounds": rounds,
                "server": server.url,
            }

            progress("fixed costs (best of 3)")
            results["fixed_seconds"] = fixed_costs(workdir, server.url, concurrency, sources)

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
            watch_log = server.since(mark)
            results["watch"] = {
                "seconds": watch_seconds,
                "calls": len(batches),
                "requests": split_requests(watch_log),
                "by_kind": requests_by_kind(watch_log),
                "db_bytes": checkpoint_size(db),
            }

            progress("check #1 (cold; fresh database: the list's count is not known yet)")
            first = check_once(server, workdir, config, db, n, "check1")
            progress("check #2 (cold; nothing changed upstream; database growth measured)")
            second = check_once(server, workdir, config, db, n, "check2")
            results["checks_rows"] = count_rows(db, "checks")

            specs_1 = request_specs(server.url, first.pop("_log"))
            specs_2 = request_specs(server.url, second.pop("_log"))
            urls = [spec["url"] for spec in specs_1]
            second["same_urls_as_check1"] = sorted(urls) == sorted(s["url"] for s in specs_2)
            results["check1"] = first
            results["check2"] = second
            # (a): the requests of check #1 (without sources: the same as #2's); with sources,
            # those of the unchanged check #2, the If-None-Match headers it sent included.
            specs_a = specs_2 if sources else specs_1
            urls_a = workdir / "requests_a.json"
            urls_a.write_text(json.dumps(specs_a), encoding="utf-8")
            urls_b = workdir / "requests_b.json"
            urls_b.write_text(
                json.dumps(
                    [
                        {
                            "method": "GET",
                            "url": f"{server.url}{PAGES_PATH}{slug}/",
                            "headers": {},
                            "body": None,
                        }
                        for slug in slugs
                    ]
                ),
                encoding="utf-8",
            )

            warmup_dir = workdir / "warmup"
            warmup_dir.mkdir()
            warmup = write_config(warmup_dir, server.url, concurrency, sources)
            b = Bench(server, workdir, config, warmup, n, baseline_concurrency, urls_a)
            samples: list[dict[str, Any]] = []
            for k in range(1, rounds + 1):
                progress(
                    f"round {k}/{rounds}: warm check, cold check, "
                    f"warm baseline (a), cold baseline (a) ({len(specs_a)} requests)"
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

            if sources:
                shifted = server.shift()
                progress(f"check #3 (cold; {shifted} records' commits_over_52 shifted a week)")
                third = check_once(server, workdir, config, db, n, "check3")
                third.pop("_log")
                third["shifted_records"] = shifted
                third["growth_without_alert_tables_bytes_per_package"] = (
                    _growth_without_alerts(third) / n
                )
                results["check3"] = third
                results["sources_summary"] = sources_summary(second, n)
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
    if sources:
        peak_rss = max(peak_rss, results["check3"]["peak_rss_mib"])
        summary_s = results["sources_summary"]
        results["targets"] = {
            "ratio_warm": target(results["ratio_warm"], ">=", TARGET_RATIO),
            "growth_bytes_per_package": target(
                second["growth_bytes_per_package"], "<", TARGET_GROWTH_SOURCES
            ),
            "growth_shifted_bytes_per_package": target(
                results["check3"]["growth_bytes_per_package"], "<", TARGET_GROWTH_SHIFTED
            ),
            "peak_rss_mib": target(peak_rss, "<", TARGET_RSS_MIB_SOURCES),
            "not_modified_percent": target(
                summary_s["not_modified_percent"], ">=", TARGET_NOT_MODIFIED
            ),
            "osv_batches_per_1000": target(
                summary_s["osv_batches_per_1000"], "<=", TARGET_OSV_BATCHES
            ),
        }
    else:
        results["targets"] = {
            "ratio_warm": target(results["ratio_warm"], ">=", TARGET_RATIO),
            "growth_bytes_per_package": target(
                second["growth_bytes_per_package"], "<", TARGET_GROWTH
            ),
            "peak_rss_mib": target(peak_rss, "<", TARGET_RSS_MIB),
        }
    results["context"] = {"ratio_cold": target(results["ratio_cold"], ">=", TARGET_RATIO)}
    results["total_seconds"] = time.perf_counter() - started
    return results


def target(value: float, op: str, limit: float) -> dict[str, Any]:
    ok = {">=": value >= limit, "<=": value <= limit, "<": value < limit}[op]
    return {"value": value, "target": f"{op} {limit:g}", "pass": ok}


def sources_summary(check: dict[str, Any], n: int) -> dict[str, Any]:
    """--sources: an unchanged check's conditional requests and OSV batching."""
    by_kind = check["by_kind"]
    conditional = [by_kind[k] for k in ("pypi_json", "pypi_simple", "github")]
    sent = sum(k["requests"] for k in conditional)
    not_modified = sum(k["not_modified"] for k in conditional)
    return {
        "conditional_requests": sent,
        "conditional_not_modified": not_modified,
        "not_modified_percent": 100.0 * not_modified / sent if sent else 0.0,
        "osv_batches": by_kind["osv_batch"]["requests"],
        # per started thousand: 1 means one querybatch per 1,000 watches (the API's limit)
        "osv_batches_per_1000": by_kind["osv_batch"]["requests"] / -(-n // 1000),
    }


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
    ]
    if r["sources"]:
        lines += sources_report(r)
        baseline_what = [
            "  checks: unchanged re-checks; baseline (a): plain aiohttp requests + resp.json()",
            f"  (none for a 304) replaying the {c2['requests']['total']} requests check #2 sent",
            "  (GET/POST, same URLs, same If-None-Match/Accept/Authorization headers, same OSV",
            "  bodies), one session, ONE Semaphore("
            f"{r['baseline_concurrency']}) = the check's total concurrency across its",
            f"  {1 + len(SOURCE_APIS)} sources ({r['concurrency']} each); each in its own process",
        ]
    else:
        baseline_what = [
            "  checks: unchanged re-checks; baseline (a): plain aiohttp GET + resp.json() over the",
            f"  {r['check1']['requests']['total']} URLs check #1 requested, one session, "
            f"Semaphore({r['baseline_concurrency']}); each in its own process",
        ]
    lines += [
        f"{r['rounds']} rounds of: warm check, cold check, warm baseline (a), cold baseline (a)",
        *baseline_what,
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
        "growth_shifted_bytes_per_package": (
            "db growth, check with commits_over_52 shifted",
            " bytes/package",
        ),
        "not_modified_percent": ("PyPI+GitHub requests answered 304, unchanged check", " %"),
        "osv_batches_per_1000": ("OSV querybatch requests per 1,000 packages", ""),
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


def _growth_text(check: dict[str, Any], n: int) -> str:
    return ", ".join(f"{name} {size / n:+.0f}" for name, size in check["growth_by_table"].items())


ALERT_TABLES = ("transition", "outbox", "alert", "deliver")


def _growth_without_alerts(check: dict[str, Any]) -> int:
    """dbstat growth of the tables and indexes that hold no alert state."""
    return sum(
        size
        for name, size in check["growth_by_table"].items()
        if not any(word in name for word in ALERT_TABLES)
    )


def sources_report(r: dict[str, Any]) -> list[str]:
    """--sources: requests per kind (and 304s) of the watch and each check, the shifted check."""
    n = r["packages"]
    phases = [("watch", r["watch"]), ("check #1", r["check1"]), ("check #2", r["check2"])]
    phases.append(("check #3 shifted", r["check3"]))
    lines = [
        "requests per source: sent/304 (with --sources; check #2 = the unchanged cycle)",
        f"  {'':<18}" + "".join(f"{name:>18}" for name, _ in phases),
    ]
    for kind in (*KIND_OF_PATH, "other"):
        cells = [p["by_kind"][kind] for _, p in phases]
        if kind == "other" and not any(c["requests"] for c in cells):
            continue
        lines.append(
            f"  {kind:<18}" + "".join(f"{c['requests']:>11}/{c['not_modified']:<6}" for c in cells)
        )
    s, c3 = r["sources_summary"], r["check3"]
    row = "  {:<40}{}".format
    lines += [
        row(
            "PyPI+GitHub 304s, check #2",
            f"{s['conditional_not_modified']}/{s['conditional_requests']} = "
            f"{s['not_modified_percent']:.2f} %",
        ),
        row(
            "OSV querybatch per 1,000 packages",
            f"{s['osv_batches_per_1000']:.3f}   ({s['osv_batches']} for {n} packages; "
            "per started thousand)",
        ),
        "check #3 (cold; every record's commits_over_52 shifted a week)",
        row("wall time", f"{c3['seconds']:8.3f} s"),
        row("peak RSS", f"{c3['peak_rss_mib']:8.1f} MiB"),
        row(
            "result",
            f"{c3['unchanged']} unchanged, {c3['changed']} changed, "
            f"{c3['transitions']} transitions",
        ),
        row(
            "database",
            f"{c3['db_bytes_before']} -> {c3['db_bytes_after']} bytes "
            f"({c3['growth_bytes_per_package']:.1f} bytes/package)",
        ),
        row("growth by table/index (dbstat)", _growth_text(c3, n)),
        row(
            "  without the alert tables",
            f"{_growth_without_alerts(c3) / n:+.0f} bytes/package (transitions, outbox, alerts,"
            " deliveries and their indexes left out)",
        ),
        row("  same, unchanged check #2", _growth_text(r["check2"], n) or "none"),
        "",
    ]
    return lines


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
    parser.add_argument(
        "--sources",
        action="store_true",
        help="also serve and poll PyPI, GitHub and OSV (every source on)",
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
    results = bench(args.packages, args.concurrency, args.rounds, args.keep, profile, args.sources)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(report(results))
    failed = [k for k, t in results["targets"].items() if not t["pass"]]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
