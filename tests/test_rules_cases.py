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
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import Config
from monitor.cycle import CycleRecorder
from monitor.durations import parse_duration
from monitor.rules import load_rules
from monitor.snapshot import parse_record
from monitor.sources import PollResult, PollStatus
from monitor.store import Store, iso
from tests.conftest import START
from tests.fakeupstream import load_fixtures

CASES = sorted((Path(__file__).parent / "rules_cases").glob("*.yaml"))


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
    config = Config(database=tmp_path / "monitor.db")
    record = copy.deepcopy(load_fixtures()[case["package"]])
    slug = record["slug"]
    now = START
    store.upsert_watch(
        slug, package_id=record["id"], title=record["title"], notify=[], interval=None, now=now
    )
    if case.get("mute"):
        store.insert("mutes", {"slug": slug, "rule": None, "created_at": iso(now)})

    for number, step in enumerate(case["steps"]):
        now += parse_duration(step.get("advance", "1h"))
        _apply(record, step.get("set", {}))
        if "fail" in step:
            outcome = PollResult(slug, PollStatus.FAILED, None, step["fail"], None, 0.0)
        elif step.get("not_found"):
            outcome = PollResult(slug, PollStatus.NOT_FOUND, None, None, None, 0.0)
        else:
            snapshot = parse_record(json.loads(json.dumps(record)))
            outcome = PollResult(slug, PollStatus.OK, snapshot, None, None, 0.0)
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
