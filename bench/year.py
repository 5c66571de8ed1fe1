#!/usr/bin/env python3
"""A year at N packages: weekly upstream change against ``monitor check``, on a simulated clock.

    .venv/bin/python bench/year.py                              # N=10000, 52 weeks, 6 days
    .venv/bin/python bench/year.py --packages 1000 --weeks 4    # a quick run
    .venv/bin/python bench/year.py --json                       # one JSON dict on stdout

What it does (progress goes to stderr; ``bench/README.md`` has the why):

1. serves N packages from ``bench/poll.py``'s fake djangopackages (a separate process), writes
   ``poll.py``'s config (djangopackages only) and watches all N with the real CLI at T0 (the
   current hour, UTC), 2000 slugs per ``watch`` call;
2. each week w = 1..W: the server shifts every ``commits_over_52`` a week (so ~every package
   changes) and "mutates" (a seeded few % release a new version, a few % move their stars);
   then, the clock at T0 + w weeks, the *changed* check, then ``--days D`` *unchanged* checks
   a simulated day apart. After the changed check and after the first unchanged one, the warm
   plain aiohttp loop (``poll.py --child-baseline ... warm``) replays exactly the requests that
   check sent: ratio = loop seconds / check seconds. The database is WAL-checkpointed and
   measured after every check;
3. at the end (clock = the last check's): ``digest``, ``history SLUG``, ``history SLUG --json``,
   ``alerts --all --json``, ``list --json``; ``monitor --help`` as 15 whole processes
   (median); one more unchanged check 6 hours after the last (the same-day probe, for the
   database projection); table sizes (``dbstat``); PASS/FAIL per goal.

Every monitor command runs in a fresh child process (``year.py --child-cli``) that imports
``monitor.cli``, runs a warm-up ``check --json`` on an empty config, collects garbage, then
times with ``perf_counter`` the real command, called as ``monitor.cli.main()`` calls the click
group but with ``obj=Runtime(clock=lambda: NOW)`` and ``standalone_mode=False``, stdout to a
file. It reports the seconds, the exit code and its peak RSS (``VmHWM``: see
``_peak_rss_kib`` for why not ``ru_maxrss``) as a JSON line.

Goals (informational; ``--strict`` exits 1 when one fails): changed check >= 0.5 of the
plain loop and unchanged check >= 0.8 of it (median of the weekly ratios); peak RSS of a
changed check < 150 MiB; database after a year of 6-hour polls < 150 MB (projected when the
run is shorter than 52 weeks or polls less than daily, see ``project_db``); ``digest`` < 2 s
and < 100 MiB; ``alerts --all --json`` < 1 s; ``monitor --help`` < 0.08 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
if str(SCRIPT.parent) not in sys.path:
    sys.path.insert(0, str(SCRIPT.parent))

import poll  # noqa: E402  (bench/poll.py: the server, the CLI runners, the baseline child)

CLI_CHILD = "--child-cli"  # CONFIG WARMUP_CONFIG NOW_ISO OUTFILE -- ARGS...

RELEASE_SHARE = 0.03  # of the packages release each week
STAR_SHARE = 0.05  # of the packages move their stars each week
YEAR_WEEKS = 52
POLLS_PER_DAY = 4  # the default 6-hour interval
HELP_RUNS = 15
SAME_DAY_HOURS = 6  # the probe: one more unchanged check this long after the last one

GOAL_RATIO_CHANGED = 0.5
GOAL_RATIO_UNCHANGED = 0.8
GOAL_RSS_MIB = 150.0
GOAL_DB_MB = 150.0
GOAL_DIGEST_SECONDS = 2.0
GOAL_DIGEST_MIB = 100.0
GOAL_ALERTS_SECONDS = 1.0
GOAL_HELP_SECONDS = 0.08

COUNTED_TABLES = ("checks", "snapshots", "transitions", "outbox")


# -- the child process --------------------------------------------------------------------------


def _invoke(args: list[str], now: datetime) -> int:
    """The CLI in this process, as ``monitor.cli.main()`` runs it but with the clock at
    ``now`` and ``standalone_mode=False``; the exit code."""
    import click

    from monitor import cli

    try:
        rv = cli.cli.main(
            args=args,
            prog_name="monitor",
            obj=cli.Runtime(clock=lambda: now),
            standalone_mode=False,
        )
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return rv if isinstance(rv, int) else 0


def _peak_rss_kib() -> int:
    """This process's peak RSS in KiB: Linux's ``VmHWM``, the high-water mark of this very
    process image. ``getrusage``'s ``ru_maxrss`` is not that: Linux carries it over ``fork``
    and ``execve``, so a child's starts at its parent's peak (a parent at 300 MiB spawns
    children whose ``ru_maxrss`` is >= 300 MiB); it is the fallback where there is no /proc."""
    import resource

    with suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _cli_child(argv: list[str]) -> int:
    """``CONFIG WARMUP_CONFIG NOW_ISO OUTFILE -- ARGS...``: warm up, then time one command."""
    if len(argv) < 5 or argv[4] != "--":
        raise SystemExit(f"{CLI_CHILD} CONFIG WARMUP_CONFIG NOW_ISO OUTFILE -- ARGS... (internal)")
    import gc
    import resource

    import monitor.cli  # noqa: F401  (the import is part of the warm-up, not of the timing)

    config, warmup, now_iso, output = argv[:4]
    args = argv[5:]
    now = datetime.fromisoformat(now_iso)
    out = Path(output)
    start = time.perf_counter()
    with poll._stdout_to(out.with_name(out.name + ".warmup")):
        warmup_code = _invoke(["--config", warmup, "check", "--json"], now)
    warmup_seconds = time.perf_counter() - start
    warmup_rss = _peak_rss_kib()
    gc.collect()
    with poll._stdout_to(out):
        start = time.perf_counter()
        code = _invoke(["--config", config, *args], now)
        seconds = time.perf_counter() - start
    poll._child_result(
        {
            "seconds": seconds,
            "exit_code": code,
            "maxrss_kib": _peak_rss_kib(),
            "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "warmup_seconds": warmup_seconds,
            "warmup_exit_code": warmup_code,
            "warmup_maxrss_kib": warmup_rss,
        }
    )
    return 0


# -- measuring ----------------------------------------------------------------------------------


def db_counts(db: Path) -> dict[str, int]:
    """Rows of the tables in ``COUNTED_TABLES`` that exist, and outbox groups per status."""
    import sqlite3

    conn = sqlite3.connect(db)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        counts = {
            table: int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
            for table in COUNTED_TABLES
            if table in names
        }
        if "outbox" in names:
            for status, count in conn.execute("SELECT status, count(*) FROM outbox GROUP BY 1"):
                counts[f"outbox_{status}"] = int(count)
    finally:
        conn.close()
    return counts


class Year:
    """Runs monitor commands (each in a ``--child-cli`` process) and baselines, and measures."""

    def __init__(
        self,
        server: poll.Server,
        workdir: Path,
        config: Path,
        warmup: Path,
        n: int,
        concurrency: int,
    ):
        self.server, self.workdir, self.config, self.warmup = server, workdir, config, warmup
        self.db = workdir / "monitor.db"
        self.n, self.concurrency = n, concurrency
        self.db_bytes = 0

    def command(self, name: str, now: datetime, args: list[str]) -> dict[str, Any]:
        """One command at ``now``: seconds (in-process, warm), exit code, peak RSS."""
        output = self.workdir / f"{name}.out"
        argv = [poll.PYTHON, str(SCRIPT), CLI_CHILD, str(self.config), str(self.warmup)]
        argv += [now.isoformat(), str(output), "--", *args]
        run = poll.run_process(argv, cwd=self.workdir, name=name)
        poll.require_ok(run, f"bench child {name}")
        lines = run.stdout.read_text(encoding="utf-8").splitlines()
        if not lines:
            raise RuntimeError(f"bench child {name} printed nothing")
        line = json.loads(lines[-1])
        if line["warmup_exit_code"] != 0:
            raise RuntimeError(f"{name}: the warm-up check exited {line['warmup_exit_code']}")
        if line["exit_code"] != 0:
            poll.progress(f"WARNING: {name} ({' '.join(args[:3])}) exited {line['exit_code']}")
        return {
            "seconds": line["seconds"],
            "exit_code": line["exit_code"],
            "peak_rss_mib": line["maxrss_kib"] / 1024,
            "warmup_peak_rss_mib": line["warmup_maxrss_kib"] / 1024,
            "ru_maxrss_mib": line["ru_maxrss_kib"] / 1024,
            "process_seconds": run.wall,
            "output_bytes": output.stat().st_size,
            "_output": output,
        }

    def check(self, name: str, now: datetime) -> dict[str, Any]:
        """``check --json`` at ``now``: the command's figures, the report's counts, the
        requests it sent and the database (WAL checkpointed) after it."""
        mark = self.server.mark()
        sample = self.command(name, now, ["check", "--json"])
        log = self.server.since(mark)
        output = sample.pop("_output")
        report = json.loads(output.read_text(encoding="utf-8"))
        output.unlink()  # ~18 MB for a changed check at N=10000: a year's would fill a disk
        size = poll.checkpoint_size(self.db)
        sample.update(
            {
                "now": now.isoformat(),
                "checked": report.get("checked"),
                "unchanged": report.get("unchanged"),
                "changed": len(report.get("changed") or ()),
                "failed": len(report.get("failed") or ()),
                "transitions": len(report.get("transitions") or ()),
                "undelivered": len(report.get("undelivered") or ()),
                "requests": poll.split_requests(log),
                "db_bytes": size,
                "db_growth_bytes": size - self.db_bytes,
                "_specs": poll.request_specs(self.server.url, log),
            }
        )
        self.db_bytes = size
        return sample

    def baseline(self, name: str, check: dict[str, Any]) -> dict[str, Any]:
        """The warm plain loop over exactly the requests ``check`` sent, and the ratio."""
        specs = check.pop("_specs")
        specfile = self.workdir / f"{name}.requests.json"
        specfile.write_text(json.dumps(specs), encoding="utf-8")
        run, line = poll.run_child(
            [poll.BASELINE_CHILD, str(specfile), str(self.concurrency), "warm"],
            cwd=self.workdir,
            name=name,
        )
        specfile.unlink()
        return {
            "seconds": line["seconds"],
            "requests": line["requests"],
            "records": line["records"],
            "ru_maxrss_mib": run.maxrss_kib / 1024,  # wait4: includes the parent's peak
            "ratio": line["seconds"] / check["seconds"],
        }

    def watch(self, slugs: list[str], now: datetime) -> dict[str, Any]:
        batches = [slugs[i : i + poll.WATCH_BATCH] for i in range(0, len(slugs), poll.WATCH_BATCH)]
        runs = [self.command(f"watch{i}", now, ["watch", *b]) for i, b in enumerate(batches)]
        for i, run in enumerate(runs):
            if run["exit_code"] != 0:
                raise RuntimeError(f"monitor watch (batch {i + 1}) exited {run['exit_code']}")
            run.pop("_output")
        self.db_bytes = poll.checkpoint_size(self.db)
        return {
            "seconds": sum(r["seconds"] for r in runs),
            "calls": len(runs),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
            "db_bytes": self.db_bytes,
        }

    def week(self, week: int, now: datetime, days: int, seed: str) -> dict[str, Any]:
        shifted = self.server.shift()
        news = self.server.mutate(f"{seed}:{week}", RELEASE_SHARE, STAR_SHARE)
        changed = self.check(f"w{week}-changed", now)
        changed_baseline = self.baseline(f"w{week}-changed-baseline", changed)
        unchanged: list[dict[str, Any]] = []
        unchanged_baseline = None
        for day in range(1, days + 1):
            sample = self.check(f"w{week}-day{day}", now + timedelta(days=day))
            if day == 1:
                unchanged_baseline = self.baseline(f"w{week}-day1-baseline", sample)
            sample.pop("_specs", None)
            unchanged.append(sample)
        return {
            "week": week,
            "shifted": shifted,
            **news,
            "changed_check": changed,
            "changed_baseline": changed_baseline,
            "unchanged_checks": unchanged,
            "unchanged_baseline": unchanged_baseline,
            "unchanged_median_seconds": (
                poll.median([c["seconds"] for c in unchanged]) if unchanged else None
            ),
            "db_bytes": self.db_bytes,
            "counts": db_counts(self.db),
        }

    def end(self, now: datetime, slug: str) -> dict[str, Any]:
        """The read commands after the year, each in its own child at ``now``."""
        commands = {
            "digest": ["digest"],
            "history": ["history", slug],
            "history_json": ["history", slug, "--json"],
            "alerts_all_json": ["alerts", "--all", "--json"],
            "list_json": ["list", "--json"],
        }
        out = {}
        for key, args in commands.items():
            sample = self.command(f"end-{key}", now, args)
            sample.pop("_output")
            out[key] = {"args": args, **sample}
        return out

    def help_seconds(self) -> dict[str, Any]:
        """``python -m monitor --help``, whole processes, ``HELP_RUNS`` times, after one
        untimed run that may write the package's bytecode (``.pyc``), as a user's first run
        or ``pip install`` does: with ``PYTHONDONTWRITEBYTECODE`` set (CI, this machine) and
        no ``__pycache__`` yet, every run would compile ``monitor/cli.py`` again (10 ms)."""
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run(
            [poll.PYTHON, "-m", "monitor", "--help"],
            cwd=self.workdir,
            env=env,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        walls = []
        for i in range(HELP_RUNS):
            run = poll.run_cli(["--help"], cwd=self.workdir, name=f"help{i}")
            poll.require_ok(run, "monitor --help")
            walls.append(run.wall)
        return {"median": poll.median(walls), "best": min(walls), "samples": walls}


def project_db(
    weeks: list[dict[str, Any]], watch_bytes: int, probe_growth: int, days: int
) -> dict[str, Any]:
    """The database after 52 weeks of 6-hour polls, from what this run stored.

    A week of 6-hour polls is 7 days x ``POLLS_PER_DAY`` polls; this run made 1 + ``days``
    (one a day with the default ``--days 6``). The polls it did not make are added at what
    such a poll was measured to store: a poll on a day that already had one at the growth of
    the same-day probe (0 when the store keeps unchanged polls as per-day counts), a poll on
    a day without one (``--days`` < 6) at the median growth of this run's unchanged checks
    (with ``--days 0``, at the probe's).
    A run shorter than 52 weeks is extended at its median weekly growth."""
    if not weeks:
        return {"bytes": watch_bytes, "projected": False}
    weekly = [w["db_bytes"] for w in weeks]
    growths = [b - a for a, b in zip([watch_bytes, *weekly], weekly, strict=False)]
    unchanged = [c["db_growth_bytes"] for w in weeks for c in w["unchanged_checks"]]
    # --days 0 measured no poll on a day of its own: the probe's growth stands in for one
    new_day = poll.median([float(g) for g in unchanged]) if unchanged else float(probe_growth)
    missing_days = 6 - days  # per week, days without a poll of this run
    same_day_polls = 7 * (POLLS_PER_DAY - 1)  # per week: every poll but a day's first
    extra_per_week = missing_days * new_day + same_day_polls * probe_growth
    per_week = poll.median([float(g) for g in growths]) + extra_per_week
    measured = weekly[-1] + extra_per_week * len(weeks)
    total = measured + per_week * (YEAR_WEEKS - len(weeks))
    return {
        "bytes": int(total),
        "projected": len(weeks) < YEAR_WEEKS or extra_per_week > 0,
        "measured_bytes": weekly[-1],
        "weekly_growth_median_bytes": per_week - extra_per_week,
        "unchanged_check_growth_median_bytes": new_day,
        "same_day_probe_growth_bytes": probe_growth,
        "added_per_week_bytes": extra_per_week,
    }


def goal(value: float | None, op: str, limit: float) -> dict[str, Any]:
    if value is None:
        return {"value": None, "target": f"{op} {limit:g}", "pass": None}
    return poll.target(value, op, limit)


def goals(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    weeks, end = r["weeks_data"], r["end"]
    changed = [w["changed_baseline"]["ratio"] for w in weeks]
    unchanged = [w["unchanged_baseline"]["ratio"] for w in weeks if w["unchanged_baseline"]]
    return {
        "ratio_changed": goal(poll.median(changed) if changed else None, ">=", GOAL_RATIO_CHANGED),
        "ratio_unchanged": goal(
            poll.median(unchanged) if unchanged else None, ">=", GOAL_RATIO_UNCHANGED
        ),
        "changed_peak_rss_mib": goal(
            max((w["changed_check"]["peak_rss_mib"] for w in weeks), default=None),
            "<",
            GOAL_RSS_MIB,
        ),
        "db_year_mb": goal(r["db_projection"]["bytes"] / 1e6, "<", GOAL_DB_MB),
        "digest_seconds": goal(end["digest"]["seconds"], "<", GOAL_DIGEST_SECONDS),
        "digest_peak_rss_mib": goal(end["digest"]["peak_rss_mib"], "<", GOAL_DIGEST_MIB),
        "alerts_all_json_seconds": goal(
            end["alerts_all_json"]["seconds"], "<", GOAL_ALERTS_SECONDS
        ),
        "help_seconds": goal(r["help"]["median"], "<", GOAL_HELP_SECONDS),
    }


def year(n: int, weeks: int, days: int, seed: int, concurrency: int, keep: bool) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="monitor-year-"))
    started = time.perf_counter()
    t0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    results: dict[str, Any] = {
        "packages": n,
        "weeks": weeks,
        "days": days,
        "seed": seed,
        "concurrency": concurrency,
        "release_share": RELEASE_SHARE,
        "star_share": STAR_SHARE,
        "t0": t0.isoformat(),
        "workdir": str(workdir) if keep else None,
    }
    try:
        poll.progress(f"starting the fake server with {n} packages")
        with poll.serving(n) as server:
            config = poll.write_config(workdir, server.url, concurrency)
            (workdir / "warmup").mkdir()
            warmup = poll.write_config(workdir / "warmup", server.url, concurrency)
            y = Year(server, workdir, config, warmup, n, concurrency)
            poll.progress(f"watching {n} packages at {t0.isoformat()}")
            results["watch"] = y.watch(server.slugs, t0)
            data = []
            now = t0
            for w in range(1, weeks + 1):
                now = t0 + timedelta(weeks=w)
                poll.progress(f"week {w}/{weeks} ({now:%Y-%m-%d}): changed check + {days} days")
                data.append(y.week(w, now, days, str(seed)))
                poll.progress(week_line(data[-1]))
            results["weeks_data"] = data
            last = now + timedelta(days=days)
            poll.progress("after the year: digest, history, alerts, list; --help x15")
            results["end"] = y.end(last, server.slugs[0])
            results["end_now"] = last.isoformat()
            results["help"] = y.help_seconds()
            before = y.db_bytes
            probe = y.check("probe-same-day", last + timedelta(hours=SAME_DAY_HOURS))
            probe.pop("_specs")
            results["same_day_probe"] = probe
            results["db_projection"] = project_db(
                data, results["watch"]["db_bytes"], probe["db_bytes"] - before, days
            )
            results["db_bytes"] = y.db_bytes
            results["counts"] = db_counts(y.db)
            results["tables"] = dict(sorted(poll.table_bytes(y.db).items(), key=lambda kv: -kv[1]))
    finally:
        if keep:
            poll.progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["goals"] = goals(results)
    results["total_seconds"] = time.perf_counter() - started
    return results


# -- the report ---------------------------------------------------------------------------------


HEADER = (
    f"{'week':>4}  {'changed':>8} {'ratio':>6} {'RSS MiB':>8}  {'unch. s':>8} {'ratio':>6}"
    f"  {'DB MB':>8}  {'changed':>8} {'released':>8} {'stars':>6}  {'transitions':>11}"
    f"  {'outbox':>6}"
)


def week_line(w: dict[str, Any]) -> str:
    c, b, u = w["changed_check"], w["changed_baseline"], w["unchanged_baseline"]
    median_u = w["unchanged_median_seconds"]
    transitions = c["transitions"] + sum(x["transitions"] for x in w["unchanged_checks"])
    return (
        f"{w['week']:>4}  {c['seconds']:8.3f} {b['ratio']:6.2f} {c['peak_rss_mib']:8.1f}  "
        + (f"{median_u:8.3f} {u['ratio']:6.2f}" if u else f"{'-':>8} {'-':>6}")
        + f"  {w['db_bytes'] / 1e6:8.2f}  {c['changed']:>8} {w['released']:>8}"
        f" {w['stars_moved']:>6}  {transitions:>11}  {w['counts'].get('outbox', 0):>6}"
    )


def requests_line(r: dict[str, Any]) -> str:
    """What the last week's checks sent (the plain loop replays the same)."""
    if not r["weeks_data"]:
        return ""
    last = r["weeks_data"][-1]
    text = []
    for label, check in (
        ("changed", last["changed_check"]),
        ("unchanged", last["unchanged_checks"]),
    ):
        if isinstance(check, list):
            if not check:
                continue
            check = check[0]
        q = check["requests"]
        text.append(f"{label} check {q['pages']} list pages + {q['singles']} single packages")
    return "requests (last week): " + "; ".join(text)


def report(r: dict[str, Any]) -> str:
    n, watch, end = r["packages"], r["watch"], r["end"]
    lines = [
        f"a year at {n} packages: {r['weeks']} weeks, a changed check + {r['days']} unchanged"
        f" a week, concurrency {r['concurrency']}, seed {r['seed']}, T0 {r['t0']}",
        f"watch: {watch['calls']} call(s), {watch['seconds']:.2f} s, database"
        f" {watch['db_bytes'] / 1e6:.2f} MB",
        requests_line(r),
        "",
        "per week: changed check seconds (warm, in-process) and plain-loop ratio, its peak RSS;",
        "unchanged checks' median seconds and the first one's ratio; DB after the week",
        "(checkpointed); packages changed, released, stars moved; alert transitions of the week",
        "(all its checks); outbox groups (total)",
        HEADER,
        *(week_line(w) for w in r["weeks_data"]),
        "",
        f"after the year (clock {r['end_now']}), each in its own warmed-up process:",
    ]
    for s in end.values():
        lines.append(
            f"  {' '.join(s['args']):<36}{s['seconds']:8.3f} s  peak RSS {s['peak_rss_mib']:6.1f}"
            f" MiB  exit {s['exit_code']}  {s['output_bytes']} bytes out"
        )
    h, p, proj = r["help"], r["same_day_probe"], r["db_projection"]
    lines += [
        f"  {'monitor --help (whole process)':<36}{h['median']:8.3f} s  median of {HELP_RUNS}"
        f" (best {h['best']:.3f})",
        "",
        f"same-day probe (unchanged check {SAME_DAY_HOURS} h after the last):"
        f" {p['seconds']:.3f} s, database {proj['same_day_probe_growth_bytes']:+d} bytes",
        f"database: {r['db_bytes'] / 1e6:.2f} MB measured; after {YEAR_WEEKS} weeks of"
        f" {24 // POLLS_PER_DAY}-hour polls {proj['bytes'] / 1e6:.2f} MB"
        + (" (projected, see db_projection)" if proj["projected"] else ""),
        "rows: " + ", ".join(f"{k} {v}" for k, v in r["counts"].items()),
        "table and index sizes (dbstat): "
        + (", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in r["tables"].items()) or "n/a"),
        "",
    ]
    names = {
        "ratio_changed": ("changed check / plain loop, median of weeks", ""),
        "ratio_unchanged": ("unchanged check / plain loop, median of weeks", ""),
        "changed_peak_rss_mib": ("peak RSS of a changed check (max of weeks)", " MiB"),
        "db_year_mb": ("database after a year of 6-hour polls", " MB"),
        "digest_seconds": ("digest after the year", " s"),
        "digest_peak_rss_mib": ("digest peak RSS", " MiB"),
        "alerts_all_json_seconds": ("alerts --all --json", " s"),
        "help_seconds": ("monitor --help, median", " s"),
    }
    for key, t in r["goals"].items():
        label, unit = names[key]
        if t["pass"] is None:
            lines.append(f"n/a   {label}: not measured (target {t['target']}{unit})")
            continue
        verdict = "PASS" if t["pass"] else "FAIL"
        lines.append(f"{verdict}  {label}: {t['value']:.3f}{unit} (target {t['target']}{unit})")
    lines += [
        "(peak RSS is that of one run; 'flat in N' needs runs at two N)",
        "",
        f"total benchmark time {r['total_seconds']:.1f} s",
    ]
    return "\n".join(lines)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == CLI_CHILD:  # internal: a measured child process
        return _cli_child(sys.argv[2:])

    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=10_000, metavar="N")
    parser.add_argument("--weeks", type=int, default=YEAR_WEEKS, metavar="W")
    parser.add_argument(
        "--days", type=int, default=6, metavar="D", help="unchanged checks a week, a day apart"
    )
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", action="store_true", help="print one JSON dict on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal fails")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (database, logs)")
    args = parser.parse_args()
    if args.packages < 2 or args.weeks < 1 or not 0 <= args.days <= 6 or args.concurrency < 1:
        parser.error("--packages >= 2, --weeks >= 1, 0 <= --days <= 6, --concurrency >= 1")
    results = year(args.packages, args.weeks, args.days, args.seed, args.concurrency, args.keep)
    print(json.dumps(results, indent=2) if args.json else report(results))
    failed = [k for k, t in results["goals"].items() if t["pass"] is False]
    return 1 if args.strict and failed else 0


if __name__ == "__main__":
    sys.exit(main())
