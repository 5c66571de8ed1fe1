"""Rule lifecycle cases as data (like `promtool test rules`): tests/rules_cases/*.yaml.

Each case starts from a fixture package and runs a sequence of polls through the real cycle
recorder and store; after each poll it compares the transitions of the rules under test.

    package: django-mfa              # the fixture to start from
    rules: [no-commits-26-weeks]     # shipped/built-in rules under test, or
    inline: [{id: ..., when: ...}]   # rules written to a user rule file (their transitions
                                     # are compared, unless `rules` names others)
    mute: true                       # mute the package before the first poll
    steps:                           # the first step is the watch (baseline)
      - set: {repo_watchers: 600}    # change the upstream record (kept for later steps);
                                     # last_week_commits: N, commits_over_52: zeros,
                                     # quiet_weeks: N (a commit a week, then N without)
        fail: HTTP 500               # or: the poll failed with this reason
        not_found: true              # or: the package's URL answered 404
        advance: 1d                  # clock step before this poll (default 1h)
        expect: [firing RULE, resolved RULE, repeat RULE]
        summary / severity / muted:  # checked on the first transition

The other sources (SPEC §2.1, §3.1) are given per source, with qualified field names:

    parts:                           # each source's values at the start; a source named
      pypi: {pypi.version: "1.7.0"}  # here (or later in a `set`) applies to the watch, and
      github: {github.found: true}   # its part comes with every poll: `ok` with all of its
      osv: {vulns: []}               # fields (null where not given; datetimes as ISO text)
    project_django: "5.2"            # Config(project_django=...), only when given
    pinned: "1.2.0"                  # the watch's pin before the first poll
    steps:
      - set: {pypi.version: "1.8.0", vulns: [PYSEC-1]}  # a key with a dot, or `vulns`,
                                     # changes that source's values (kept for later steps)
        pinned: "1.2.1"              # re-pin (null: unpin) before this poll
        defer: github                # that source's part is DEFERRED this poll (rate limit)
        fail_source: pypi            # that source's part is FAILED this poll
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor import fields
from monitor.config import Config
from monitor.cycle import CycleRecorder
from monitor.durations import parse_duration
from monitor.rules import load_rules
from monitor.snapshot import parse_record
from monitor.sources import SOURCES, FieldKind, Part, PartStatus, PollResult, PollStatus
from monitor.store import Store, iso
from tests.conftest import START
from tests.fakeupstream import load_fixtures

CASES = sorted((Path(__file__).parent / "rules_cases").glob("*.yaml"))
CASE_KEYS = {"package", "rules", "inline", "mute", "steps", "parts", "project_django", "pinned"}
STEP_KEYS = {
    *("set", "fail", "not_found", "advance", "expect", "summary", "severity", "muted"),
    *("pinned", "defer", "fail_source"),
}


def _apply(record: dict[str, Any], changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if key == "last_week_commits":
            weeks = record["commits_over_52"] or [0] * 52
            record["commits_over_52"] = [*weeks[:-1], value]
        elif key == "commits_over_52" and value == "zeros":
            record["commits_over_52"] = [0] * 52
        elif key == "quiet_weeks":  # no commits in the last N weeks, one a week before
            record["commits_over_52"] = [1] * (52 - value) + [0] * value
        else:
            record[key] = value


def _is_part_field(key: str) -> bool:
    """A key of a step's ``set`` that names another source's field, not the record's."""
    return "." in key or key == "vulns"


def _source_fields(source: str) -> list[str]:
    return [name for name, owner in fields.source_of().items() if owner == source]


def _part_value(name: str, value: Any) -> Any:
    """A case's value as a source gives it: datetimes aware (ISO text in YAML)."""
    if value is None or fields.known().get(name) is not FieldKind.DATETIME:
        return value
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _set_parts(
    parts: dict[str, dict[str, Any]], changes: dict[str, Any], of: str | None = None
) -> None:
    """Apply qualified field values to their sources' values (a new source starts null);
    ``of``: the source they must all belong to."""
    owners = fields.source_of()
    for key, value in changes.items():
        source = owners.get(key, "?")
        assert source in SOURCES, f"{key} is no field of pypi, github or osv"
        assert of in (None, source), f"{key} is a field of {source}, not of {of}"
        values = parts.setdefault(source, dict.fromkeys(_source_fields(source)))
        values[key] = _part_value(key, value)


def _with_parts(
    outcome: PollResult, parts: dict[str, dict[str, Any]], step: dict[str, Any], now: datetime
) -> PollResult:
    """``outcome`` carrying a part per source of the case: OK with the source's full values,
    or DEFERRED / FAILED as the step says."""
    answers = {}
    for source, values in parts.items():
        if step.get("defer") == source:
            part = Part(outcome.slug, source, PartStatus.DEFERRED, until=now + timedelta(hours=1))
        elif step.get("fail_source") == source:
            part = Part(outcome.slug, source, PartStatus.FAILED, error=f"{source}: HTTP 500")
        else:
            part = Part(outcome.slug, source, PartStatus.OK, values=dict(values))
        answers[source] = part
    return dataclasses.replace(outcome, parts=answers)


def _pin(store: Store, slug: str, version: str | None) -> None:
    store.conn.execute("UPDATE watches SET pinned = ? WHERE slug = ?", (version, slug))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_rule_case(path: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    extra = []
    if "inline" in case:
        rule_file = tmp_path / "rules.yaml"
        rule_file.write_text(yaml.safe_dump({"rules": case["inline"]}))
        extra.append(rule_file)
        watched = {r["id"] for r in case["inline"] if r.get("enabled", True)}
    if "rules" in case:
        watched = set(case["rules"])
    rules = load_rules(extra)
    store = Store(tmp_path / "monitor.db")
    options: dict[str, Any] = {}
    if "project_django" in case:  # a config key added with the other sources
        options["project_django"] = case["project_django"]
    config = Config(database=tmp_path / "monitor.db", **options)
    parts: dict[str, dict[str, Any]] = {}  # source -> its values, as upstream has them now
    for source, values in (case.get("parts") or {}).items():
        assert source in SOURCES, f"{path.name}: no source {source!r}"
        parts[source] = dict.fromkeys(_source_fields(source))
        _set_parts(parts, values or {}, source)
    record = copy.deepcopy(load_fixtures()[case["package"]])
    slug = record["slug"]
    now = START
    store.upsert_watch(
        slug, package_id=record["id"], title=record["title"], notify=[], interval=None, now=now
    )
    if "pinned" in case:
        _pin(store, slug, case["pinned"])
    if case.get("mute"):
        store.insert("mutes", {"slug": slug, "rule": None, "created_at": iso(now)})

    assert set(case) <= CASE_KEYS, f"{path.name}: unknown keys {set(case) - CASE_KEYS}"
    for number, step in enumerate(case["steps"]):
        assert set(step) <= STEP_KEYS, f"{path.name}: unknown keys {set(step) - STEP_KEYS}"
        for key in ("defer", "fail_source"):
            assert key not in step or step[key] in parts, f"{path.name}: {key} names no part"
        now += parse_duration(step.get("advance", "1h"))
        changes = step.get("set", {})
        _apply(record, {k: v for k, v in changes.items() if not _is_part_field(k)})
        _set_parts(parts, {k: v for k, v in changes.items() if _is_part_field(k)})
        if "pinned" in step:
            _pin(store, slug, step["pinned"])
        if "fail" in step:
            outcome = PollResult(slug, PollStatus.FAILED, None, step["fail"], None, 0.0)
        elif step.get("not_found"):
            outcome = PollResult(slug, PollStatus.NOT_FOUND, None, None, None, 0.0)
        else:
            snapshot = parse_record(json.loads(json.dumps(record)))
            outcome = PollResult(slug, PollStatus.OK, snapshot, None, None, 0.0)
        if parts:
            outcome = _with_parts(outcome, parts, step, now)
        report = CycleRecorder(store, config, rules, now=now).record(
            [outcome], baseline=number == 0
        )
        got = [
            f"{'repeat' if t.repeat else t.status} {t.rule}"
            for t in report.transitions
            if t.rule in watched
        ]
        where = f"{path.name} step {number + 1}"
        assert got == step["expect"], where
        mine = [t for t in report.transitions if t.rule in watched]
        if "summary" in step:
            assert mine[0].notice.summary == step["summary"], where
        if "severity" in step:
            assert str(mine[0].notice.severity) == step["severity"], where
        if "muted" in step:
            assert mine[0].muted is step["muted"], where
    store.close()
