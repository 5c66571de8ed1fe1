#!/usr/bin/env python3
"""Benchmark rule evaluation and the cycle's recording path, in-process.

    .venv/bin/python bench/rules.py                    # 10,000 snapshots
    .venv/bin/python bench/rules.py --snapshots 1000   # a quick run
    .venv/bin/python bench/rules.py --json             # one JSON dict on stdout

1. Builds N (old, new) record pairs cloned from the fixtures, the new ones varied (stars down
   by 15%, forks down, a new major version on PyPI, no commits for 26 weeks, stars up) so the
   change rules have changes to look at; parses them with ``monitor.snapshot.parse_record``.
2. Times every shipped rule (``monitor.rules.load_rules()``) evaluated on every new snapshot:
   ``rule.when.evaluate(new, old, now)`` (``old`` for change rules, ``None`` for condition
   rules, as the recorder does), ``UnknownValue`` caught. Also times ``parse_record``,
   ``Snapshot.values()`` and ``Snapshot.content_json()`` for context.
3. Times ``CycleRecorder(...).record(results)`` on a temp database with N watches, the
   results being ``monitor.sources.PollResult``s with status ``ok`` and the fingerprint of
   the record each snapshot was parsed from (``record_fingerprint``, as the source gives
   it): the baseline (old snapshots, ``baseline=True`` as ``watch`` does), then the changed
   snapshots, then the same snapshots again (unchanged: same fingerprint, so no diff).

Target (PASS/FAIL, informational unless ``--strict``): all rules over N snapshots < 1 s.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # for tests.fakeupstream

from monitor.config import Config  # noqa: E402
from monitor.cycle import CycleRecorder  # noqa: E402
from monitor.expr import UnknownValue  # noqa: E402
from monitor.rules import load_rules  # noqa: E402
from monitor.snapshot import Snapshot, parse_record, record_fingerprint  # noqa: E402
from monitor.sources import PollResult, PollStatus  # noqa: E402
from monitor.store import Store  # noqa: E402
from tests.fakeupstream import clone_records  # noqa: E402

TARGET_SECONDS = 1.0
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def vary(record: dict[str, Any], i: int) -> dict[str, Any]:
    """A later version of ``record``: one kind of change per package, in turn."""
    new = copy.deepcopy(record)
    kind = i % 5
    stars = new.get("repo_watchers")
    if kind == 0 and isinstance(stars, int):
        new["repo_watchers"] = stars - max(1, stars * 15 // 100)  # watchers/stars rules
    elif kind == 1 and isinstance(new.get("repo_forks"), int):
        new["repo_forks"] -= 1  # forks-dropped
    elif kind == 2:
        version = new.get("pypi_version") or "0.1"
        major = version.split(".")[0]
        new["pypi_version"] = f"{int(major) + 1}.0.0" if major.isdigit() else "1.0.0"
    elif kind == 3:
        commits = new.get("commits_over_52") or [1] * 52
        new["commits_over_52"] = commits[:26] + [0] * 26  # no-commits rules start to hold
    elif isinstance(stars, int):
        new["repo_watchers"] = stars + 7  # stars up: change rules see a change, none fires
    return new


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench(n: int) -> dict[str, Any]:
    rules = load_rules()
    records = list(clone_records(n).values())
    new_records = [vary(r, i) for i, r in enumerate(records)]

    parse_s, new_snaps = timed(lambda: [parse_record(r) for r in new_records])
    old_snaps = [parse_record(r) for r in records]
    values_s, new_values = timed(lambda: [s.values() for s in new_snaps])
    old_values = [s.values() for s in old_snaps]
    content_s, _ = timed(lambda: [s.content_json() for s in new_snaps])

    outcomes: Counter[tuple[str, str]] = Counter()

    def evaluate_all() -> None:
        for rule in rules:
            when = rule.when
            change = when.is_change
            for new, old in zip(new_values, old_values, strict=True):
                try:
                    result = "true" if when.evaluate(new, old if change else None, NOW) else "false"
                except UnknownValue:
                    result = "unknown"
                outcomes[rule.id, result] += 1

    eval_s, _ = timed(evaluate_all)
    evaluations = n * len(rules)

    per_rule = {
        rule.id: {
            "kind": "change" if rule.when.is_change else "condition",
            "true": outcomes[rule.id, "true"],
            "false": outcomes[rule.id, "false"],
            "unknown": outcomes[rule.id, "unknown"],
        }
        for rule in rules
    }

    recording = bench_recording(rules, records, new_records, old_snaps, new_snaps)

    rules_total = eval_s + values_s
    return {
        "snapshots": n,
        "rules": len(rules),
        "evaluations": evaluations,
        "parse_record_seconds": parse_s,
        "values_seconds": values_s,
        "content_json_seconds": content_s,
        "evaluate_seconds": eval_s,
        "evaluations_per_s": evaluations / eval_s,
        "rules_with_values_seconds": rules_total,
        "per_rule": per_rule,
        "recording": recording,
        "target": {
            "value": rules_total,
            "target": f"< {TARGET_SECONDS:g}",
            "pass": rules_total < TARGET_SECONDS,
        },
    }


def bench_recording(
    rules: list[Any],
    records: list[dict[str, Any]],
    new_records: list[dict[str, Any]],
    old_snaps: list[Snapshot],
    new_snaps: list[Snapshot],
) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="monitor-bench-rules-"))
    try:
        db = tmp / "bench.db"
        store = Store(db)
        config = Config(database=db)
        setup_s, _ = timed(lambda: insert_watches(store, records))
        steps = [
            ("baseline", old_snaps, records, True, NOW),
            ("changed", new_snaps, new_records, False, NOW + timedelta(hours=6)),
            ("unchanged", new_snaps, new_records, False, NOW + timedelta(hours=12)),
        ]
        out: dict[str, Any] = {"insert_watches_seconds": setup_s}
        for name, snaps, raw, baseline, now in steps:
            # Each snapshot with the fingerprint of the very record it was parsed from, as the
            # source gives it: the recorder diffs only when the fingerprint differs from the
            # stored one, so pairing new snapshots with old fingerprints would hide the changes.
            batch = [
                PollResult(s.slug, PollStatus.OK, s, None, r["id"], 0.0, record_fingerprint(r))
                for s, r in zip(snaps, raw, strict=True)
            ]
            recorder = CycleRecorder(store, config, rules, now=now)
            seconds, report = timed(
                lambda b=batch, r=recorder, bl=baseline: r.record(b, baseline=bl)
            )
            out[name] = {
                "seconds": seconds,
                "checked": report.checked,
                "unchanged": report.unchanged,
                "changed": len(report.changed),
                "transitions": len(report.transitions),
                "groups": len(report.groups),
            }
        store.close()
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def insert_watches(store: Store, records: list[dict[str, Any]]) -> None:
    with store.transaction():
        for record in records:
            store.upsert_watch(
                record["slug"],
                package_id=record["id"],
                title=record.get("title"),
                notify=[],
                interval=None,
                now=NOW,
            )


def report(r: dict[str, Any]) -> str:
    n = r["snapshots"]
    rec = r["recording"]

    def row(label: str, seconds: float, note: str = "") -> str:
        return f"{label:<42}{seconds:8.3f} s" + (f"   {note}" if note else "")

    lines = [
        f"rules benchmark: {r['rules']} shipped rules x {n} snapshots = "
        f"{r['evaluations']} evaluations",
        "",
        row(f"parse_record ({n} records)", r["parse_record_seconds"]),
        row(f"Snapshot.values() ({n})", r["values_seconds"]),
        row(f"Snapshot.content_json() ({n})", r["content_json_seconds"]),
        row(
            "evaluate all rules",
            r["evaluate_seconds"],
            f"{r['evaluations_per_s']:,.0f} evaluations/s",
        ),
        row("rules incl. values()", r["rules_with_values_seconds"]),
        "",
        "per rule                       kind        true   false  unknown",
    ]
    for rule_id, p in r["per_rule"].items():
        lines.append(f"  {rule_id:28} {p['kind']:9} {p['true']:6} {p['false']:7} {p['unknown']:8}")
    lines += [
        "",
        f"CycleRecorder.record ({n} poll results, temp database)",
        row(f"  insert {n} watches (one transaction)", rec["insert_watches_seconds"]),
    ]
    for name in ("baseline", "changed", "unchanged"):
        x = rec[name]
        lines.append(
            row(
                f"  {name} record",
                x["seconds"],
                f"{x['changed']} changed, {x['unchanged']} unchanged, "
                f"{x['transitions']} transitions, {x['groups']} groups",
            )
        )
    t = r["target"]
    verdict = "PASS" if t["pass"] else "FAIL"
    lines += [
        "",
        f"{verdict}  all rules over {n} snapshots (incl. values()): {t['value']:.3f} s "
        f"(target {t['target']} s)",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--snapshots", type=int, default=10_000, metavar="N")
    parser.add_argument("--json", action="store_true", help="print one JSON dict on stdout")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target fails")
    args = parser.parse_args()
    if args.snapshots < 1:
        parser.error("--snapshots must be >= 1")
    results = bench(args.snapshots)
    print(json.dumps(results, indent=2) if args.json else report(results))
    return 1 if args.strict and not results["target"]["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
