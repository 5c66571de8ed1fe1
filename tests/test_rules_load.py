"""Rule files: the shipped ones load (docs as tests), user files override, problems have lines."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.alerts import RuleKind, Severity
from monitor.diff import diff
from monitor.errors import RulesError
from monitor.expr import UnknownValue
from monitor.rules import (
    Rule,
    check_rule_files,
    load_rules,
    message_context,
    shipped_rules_dir,
)
from monitor.snapshot import Snapshot, parse_record

FIXTURES = Path(__file__).parent / "fixtures" / "djangopackages"
NOW = datetime(2026, 2, 1, tzinfo=UTC)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def by_id(rules: list[Rule]) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}


# -- the shipped rules -------------------------------------------------------------------------

SHIPPED_FILES = sorted(shipped_rules_dir().glob("*.yaml"))


def test_shipped_rules_dir_holds_the_repo_rule_files() -> None:
    repo_rules = Path(__file__).parent.parent / "rules"
    assert SHIPPED_FILES
    assert [p.name for p in SHIPPED_FILES] == sorted(p.name for p in repo_rules.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED_FILES, ids=[p.name for p in SHIPPED_FILES])
def test_every_shipped_rule_file_loads(path: Path) -> None:
    assert check_rule_files([path]) == []


def test_checking_without_paths_checks_the_shipped_rules() -> None:
    assert check_rule_files([]) == []


SPEC_RULES = [
    # (id, when, severity, kind): SPEC §6's table (its thresholds; messages are tested below)
    (
        "no-commits-26-weeks",
        "sum(commits_over_52[-26:]) == 0",
        Severity.WARNING,
        RuleKind.CONDITION,
    ),
    (
        "no-commits-13-weeks",
        "sum(commits_over_52[-13:]) == 0 and sum(commits_over_52[-26:-13]) > 0",
        Severity.INFO,
        RuleKind.CONDITION,
    ),
    # None: a version seen by either source, once (both fields read; tested in
    # test_shipped_rules.py and the rule cases)
    ("pypi-version-changed", None, Severity.INFO, RuleKind.CHANGE),
    ("major-version-bump", None, Severity.WARNING, RuleKind.CHANGE),
    ("repo-archived", "github.archived", Severity.CRITICAL, RuleKind.CONDITION),
    ("repo-gone", "not github.found", Severity.CRITICAL, RuleKind.CONDITION),
    ("pypi-project-inactive", 'pypi.status != "active"', Severity.CRITICAL, RuleKind.CONDITION),
    ("vulnerable-version", "len(vulns) > 0", Severity.CRITICAL, RuleKind.CONDITION),
    (
        "new-vulnerability",
        'len(added("vulns")) > 0 and len(old.vulns) > 0',
        Severity.CRITICAL,
        RuleKind.CHANGE,
    ),
    ("pinned-yanked", "pinned in pypi.yanked", Severity.CRITICAL, RuleKind.CONDITION),
    (
        "pinned-behind-major",
        "version(pypi.version).major > version(pinned).major",
        Severity.INFO,
        RuleKind.CONDITION,
    ),
    (
        "no-release-in-a-year",
        "days_since(pypi.released_at) > 365",
        Severity.INFO,
        RuleKind.CONDITION,
    ),
    (
        "django-unsupported",
        "pypi.django[-1] and project.django not in pypi.django",
        Severity.WARNING,
        RuleKind.CONDITION,
    ),
    (
        "watchers-dropped",
        'delta("repo_watchers") <= -10 and pct_change("repo_watchers") <= -1',
        Severity.INFO,
        RuleKind.CHANGE,
    ),
    (
        "stars-dropped-10-percent",
        'old.repo_watchers >= 100 and pct_change("repo_watchers") <= -10',
        Severity.WARNING,
        RuleKind.CHANGE,
    ),
    (
        "forks-dropped",
        'delta("repo_forks") <= -5 and pct_change("repo_forks") <= -5',
        Severity.INFO,
        RuleKind.CHANGE,
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "when", "severity", "kind"), SPEC_RULES, ids=[r[0] for r in SPEC_RULES]
)
def test_spec_rules_are_shipped_exactly(
    rule_id: str, when: str | None, severity: Severity, kind: RuleKind
) -> None:
    rule = by_id(load_rules())[rule_id]
    if when is None:
        assert {"pypi_version", "pypi.version"} <= rule.when.fields
    else:
        assert rule.when.source == when
    assert rule.severity is severity
    assert rule.kind is kind
    assert rule.repeat is None
    assert rule.for_polls == 1
    assert rule.packages == ()
    assert rule.enabled


def test_shipped_rules_are_the_documented_set() -> None:
    rules = load_rules()
    assert sorted((r.id, r.kind, r.severity) for r in rules) == sorted(
        (rule_id, kind, severity) for rule_id, _, severity, kind in SPEC_RULES
    )
    assert {r.id: r.supersedes for r in rules if r.supersedes} == {
        "major-version-bump": ("pypi-version-changed",),
        "stars-dropped-10-percent": ("watchers-dropped",),
    }
    for rule in rules:
        assert rule.description, rule.id
        assert rule.origin.startswith(str(shipped_rules_dir()))


def fixture_snapshot(name: str) -> Snapshot:
    return parse_record(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize(
    ("rule_id", "expected"),
    [("no-commits-26-weeks", ["django-mfa"]), ("no-commits-13-weeks", [])],
)
def test_condition_rules_on_the_fixtures(rule_id: str, expected: list[str]) -> None:
    # django-mfa has had no commit in a year: the 26-week rule, never the 13-week one too.
    rule = by_id(load_rules())[rule_id]
    fired = [
        name
        for name in FIXTURE_NAMES
        if rule.when.evaluate(fixture_snapshot(name).values(), None, NOW)
    ]
    assert fired == expected


def test_the_13_week_rule_never_fires_with_the_26_week_one() -> None:
    rules = by_id(load_rules())
    base = fixture_snapshot("django-otp").values()
    for quiet in range(53):
        weeks = [1] * (52 - quiet) + [0] * quiet
        values = {**base, "commits_over_52": weeks}
        fired = {
            rule_id
            for rule_id in ("no-commits-13-weeks", "no-commits-26-weeks")
            if rules[rule_id].when.evaluate(values, None, NOW)
        }
        expected = set() if quiet < 13 else {"no-commits-13-weeks"} if quiet < 26 else None
        assert fired == (expected if expected is not None else {"no-commits-26-weeks"}), quiet


def _stars(old: int, new: int) -> tuple[dict, dict]:
    return {"repo_watchers": old}, {"repo_watchers": new}


def _forks(old: int, new: int) -> tuple[dict, dict]:
    return {"repo_forks": old}, {"repo_forks": new}


def _versions(old: str | None, new: str | None) -> tuple[dict, dict]:
    return {"pypi_version": old}, {"pypi_version": new}


CHANGE_CASES = [
    # (id, (old overrides, new overrides), the rules that fire once `supersedes` is applied)
    ("nothing", ({}, {}), set()),
    ("one-star-lost", _stars(100, 99), set()),
    ("nine-stars-lost", _stars(3305, 3296), set()),
    ("ten-stars-under-one-percent", _stars(3305, 3295), set()),
    ("ten-stars-and-one-percent", _stars(1000, 990), {"watchers-dropped"}),
    ("half-a-percent", _stars(3305, 3288), set()),
    ("ten-percent-of-100", _stars(100, 90), {"stars-dropped-10-percent"}),
    ("nineteen-percent", _stars(621, 500), {"stars-dropped-10-percent"}),
    ("ten-percent-of-99", _stars(99, 89), {"watchers-dropped"}),
    ("stars-gained", _stars(621, 700), set()),
    ("one-fork-lost", _forks(10, 9), set()),
    ("four-forks-lost", _forks(117, 113), set()),
    ("five-forks-and-five-percent", _forks(100, 95), {"forks-dropped"}),
    ("five-forks-under-five-percent", _forks(101, 96), set()),
    ("minor-release", _versions("1.7.0", "1.8.0"), {"pypi-version-changed"}),
    ("major-release", _versions("1.7.0", "2.0.0"), {"major-version-bump"}),
    ("major-pre-release", _versions("1.7.0", "2.0.0a1"), {"major-version-bump"}),
    ("downgrade", _versions("1.8.0", "1.7.0"), {"pypi-version-changed"}),
    ("major-downgrade", _versions("2.0.0", "1.9.0"), {"pypi-version-changed"}),
    ("first-release", _versions(None, "0.1"), {"pypi-version-changed"}),
    ("first-release-major", _versions(None, "3.0"), {"pypi-version-changed"}),
    ("version-gone", _versions("2.4.9", None), {"pypi-version-changed"}),
    ("not-pep-440", _versions("1.7.0", "banana"), {"pypi-version-changed"}),
]


def fired_change_rules(rules: list[Rule], before: dict, after: dict) -> set[str]:
    """The change rules that fire for one change, superseded ones dropped (as cycle.py does)."""
    fired = set()
    for rule in rules:
        if rule.kind is not RuleKind.CHANGE:
            continue
        try:
            if rule.when.evaluate(after, before, NOW):
                fired.add(rule.id)
        except UnknownValue:
            pass
    superseded = {target for rule in rules if rule.id in fired for target in rule.supersedes}
    return fired - superseded


@pytest.mark.parametrize(
    ("change", "fired"), [c[1:] for c in CHANGE_CASES], ids=[c[0] for c in CHANGE_CASES]
)
def test_shipped_change_rules(change: tuple[dict, dict], fired: set[str]) -> None:
    base = fixture_snapshot("django-otp").values()
    old, new = change
    assert fired_change_rules(load_rules(), {**base, **old}, {**base, **new}) == fired


def test_shipped_messages_render() -> None:
    rules = by_id(load_rules())
    before = fixture_snapshot("django-otp")
    after = Snapshot(**{**before.values(), "repo_watchers": 500, "pypi_version": "2.0.0"})
    changes = diff(before, after)

    def render(rule_id: str) -> str:
        rule = rules[rule_id]
        context = message_context(
            rule, slug="django-otp", new=after.values(), old=before.values(), changes=changes
        )
        return rule.render_message(context)

    assert render("pypi-version-changed") == "django-otp 1.7.0 → 2.0.0"
    assert render("stars-dropped-10-percent") == "django-otp lost 121 stars (621 → 500, -19.5%)"
    assert render("watchers-dropped") == "django-otp lost 121 stars (621 → 500)"
    assert render("major-version-bump").startswith("django-otp 1.7.0 → 2.0.0: a new major")


VERSION_MESSAGES = [
    # (id, old, new, the pypi-version-changed message)
    ("release", "1.7.0", "1.8.0", "django-otp 1.7.0 → 1.8.0"),
    ("downgrade", "1.8.0", "1.7.0", "django-otp went back from 1.8.0 to 1.7.0"),
    ("pre-release-to-final", "2.0.0rc1", "2.0.0", "django-otp 2.0.0rc1 → 2.0.0"),
    (
        "final-to-its-pre-release",
        "2.0.0",
        "2.0.0rc1",
        "django-otp went back from 2.0.0 to 2.0.0rc1",
    ),
    ("first", None, "0.1", "django-otp 0.1 is now on PyPI (no version before)"),
    ("gone", "2.4.9", None, "django-otp no longer shows a version on PyPI (it was 2.4.9)"),
    ("not-pep-440", "1.7.0", "banana", "django-otp 1.7.0 → banana"),
    ("from-not-pep-440", "banana", "1.0", "django-otp banana → 1.0"),
    ("same-version-other-spelling", "1.0", "1.0.0", "django-otp 1.0 → 1.0.0"),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [m[1:] for m in VERSION_MESSAGES],
    ids=[m[0] for m in VERSION_MESSAGES],
)
def test_version_messages_say_what_happened(
    old: str | None, new: str | None, expected: str
) -> None:
    rule = by_id(load_rules())["pypi-version-changed"]
    before = fixture_snapshot("django-otp")
    after = Snapshot(**{**before.values(), "pypi_version": new})
    before = Snapshot(**{**before.values(), "pypi_version": old})
    context = message_context(
        rule,
        slug="django-otp",
        new=after.values(),
        old=before.values(),
        changes=diff(before, after),
    )
    message = rule.render_message(context)
    assert message == expected
    assert "None" not in message and "published" not in message
    # The description is shown next to the message: it must hold for every case too.
    assert "published" not in rule.description


def test_templates_get_a_safe_version_helper(tmp_path: Path) -> None:
    rule = make_rule(
        "{{ version('2.0.1').major }} {{ version('nope') }} {{ version(none) }}"
        " {{ version('1.0') < version('1.0.post1') }}",
        tmp_path,
    )
    context = message_context(rule, slug="django-otp", new=Snapshot(slug="django-otp").values())
    assert rule.render_message(context) == "2 None None True"


# -- user files --------------------------------------------------------------------------------


def test_user_rule_replaces_a_shipped_rule_in_place(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mine.yaml",
        """
        rules:
          - id: watchers-dropped
            description: Lost many stars
            when: repo_watchers < old.repo_watchers - 50
            severity: critical
        """,
    )
    shipped = [rule.id for rule in load_rules()]
    rules = load_rules([path])
    assert [rule.id for rule in rules] == shipped
    rule = by_id(rules)["watchers-dropped"]
    assert rule.severity is Severity.CRITICAL
    assert rule.when.source == "repo_watchers < old.repo_watchers - 50"
    assert rule.origin == f"{path}:2"


def test_enabled_false_turns_a_shipped_rule_off_without_a_when(tmp_path: Path) -> None:
    path = write(
        tmp_path / "off.yaml",
        """
        rules:
          - id: no-commits-13-weeks
            enabled: false
        """,
    )
    ids = [rule.id for rule in load_rules([path])]
    assert "no-commits-13-weeks" not in ids
    assert "no-commits-26-weeks" in ids


def test_user_rules_with_every_option(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mine.yaml",
        """
        rules:
          - id: popular-and-stale
            description: Popular but stale
            when: repo_watchers > 1000 and days_since(last_updated) > 180
            severity: critical
            message: "{{ title }} has {{ repo_watchers }} stars and no commit since {{ last_updated.date() }}"
            repeat: 1w
            for: 3
            labels: {team: platform}
            packages: [django-otp, "django-two-*"]
            notify: [team-email]
          - id: off
            when: True
            enabled: false
        """,  # noqa: E501
    )
    rules = by_id(load_rules([path]))
    rule = rules["popular-and-stale"]
    assert "off" not in rules
    assert rule.kind is RuleKind.CONDITION
    assert rule.repeat == timedelta(weeks=1)
    assert rule.for_polls == 3
    assert rule.labels == {"team": "platform"}
    assert rule.packages == ("django-otp", "django-two-*")
    assert rule.notify == ("team-email",)
    assert rule.origin == f"{path}:2"
    assert rule.applies_to("django-otp")
    assert rule.applies_to("django-two-factor-auth")
    assert not rule.applies_to("django-mfa")
    snapshot = fixture_snapshot("django-two-factor-auth")
    context = message_context(rule, slug=snapshot.slug, new=snapshot.values())
    assert rule.render_message(context) == (
        "django-two-factor-auth has 1853 stars and no commit since 2026-01-07"
    )


def test_folders_load_yaml_and_yml_sorted(tmp_path: Path) -> None:
    write(tmp_path / "rules" / "b.yml", "rules:\n  - {id: second, when: repo_forks > 1}\n")
    write(tmp_path / "rules" / "a.yaml", "rules:\n  - {id: first, when: repo_forks > 2}\n")
    write(tmp_path / "rules" / "notes.txt", "not a rule file")
    ids = [rule.id for rule in load_rules([tmp_path / "rules"])]
    assert ids[-2:] == ["first", "second"]


def test_a_typo_a_bad_expression_and_an_unknown_field_give_three_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.yaml",
        """
        rules:
          - id: typo
            when: repo_forks > 1
            sevrity: warning
          - id: bad-expression
            description: Broken
            when: repo_forks >
          - id: unknown-field
            when: repo_watcher > 10
        """,
    )
    expected = [
        f"{path}:4: unknown key 'sevrity' (did you mean 'severity'?)",
        f"{path}:7: bad expression in `when`: invalid syntax (the expression ends too soon?)",
        f"{path}:9: bad expression in `when`: unknown field 'repo_watcher'"
        " (did you mean 'repo_watchers'?)",
    ]
    assert check_rule_files([path]) == expected
    with pytest.raises(RulesError) as info:
        load_rules([path])
    assert info.value.problems == expected
    assert info.value.exit_code == 2


def test_duplicate_ids_across_user_files(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", "rules:\n  - id: mine\n    when: repo_forks > 1\n")
    second = write(
        tmp_path / "b.yaml",
        "rules:\n  - id: other\n    when: repo_forks > 2\n  - id: mine\n    when: repo_forks > 3\n",
    )
    expected = [f"{second}:4: duplicate rule id 'mine' (first defined at {first}:2)"]
    assert check_rule_files([tmp_path]) == expected
    with pytest.raises(RulesError) as info:
        load_rules([first, second])
    assert info.value.problems == expected


def test_every_problem_in_every_file_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "rules:\n  - id: a\n    when: nope > 1\n")
    write(tmp_path / "b.yaml", "rules:\n  - id: b\n    when: True\n    severity: high\n")
    problems = check_rule_files([tmp_path, tmp_path / "missing.yaml"])
    assert [p.split(": ")[0] for p in problems] == [
        f"{tmp_path / 'a.yaml'}:3",
        f"{tmp_path / 'b.yaml'}:4",
        f"{tmp_path / 'missing.yaml'}",
    ]


PROBLEMS = [
    # (id, file text, line, message)
    (
        "repeat-on-change-rule",
        "rules:\n  - id: x\n    when: changed('pypi_version')\n    repeat: 1d\n",
        4,
        "`repeat` is not allowed on a change rule (it uses old/new or changed())",
    ),
    (
        "for-on-change-rule",
        "rules:\n  - id: x\n    for: 2\n    when: repo_forks < old.repo_forks\n",
        3,
        "`for` is not allowed on a change rule (it uses old/new or changed())",
    ),
    (
        "bad-duration",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    repeat: 3 days\n",
        4,
        "bad `repeat`: '3 days' is not a duration (use e.g. 30s, 15m, 6h, 7d, 2w or 1h30m)",
    ),
    (
        "zero-duration",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    repeat: 0s\n",
        4,
        "`repeat` must be a positive duration",
    ),
    (
        "for-zero",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    for: 0\n",
        4,
        "`for` must be a positive whole number of polls, got 0",
    ),
    (
        "for-text",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    for: twice\n",
        4,
        "`for` must be a positive whole number of polls, got 'twice'",
    ),
    ("missing-id", "rules:\n  - when: repo_forks < 5\n", 2, "rule has no `id`"),
    ("missing-when", "rules:\n  - id: x\n    severity: info\n", 2, "rule 'x' has no `when`"),
    (
        "bad-id",
        "rules:\n  - id: No_Commits\n    when: repo_forks < 5\n",
        2,
        "bad id 'No_Commits': use lowercase letters, digits and '-'",
    ),
    (
        "bad-severity",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    severity: warn\n",
        4,
        "bad severity 'warn' (did you mean 'warning'?) (use info, warning, critical)",
    ),
    (
        "when-not-text",
        "rules:\n  - id: x\n    when: [1]\n",
        3,
        "`when` must be an expression string, got [1]",
    ),
    (
        "packages-not-list",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    packages: django-otp\n",
        4,
        "`packages` must be a list of strings",
    ),
    (
        "notify-not-strings",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    notify: [1, 2]\n",
        4,
        "`notify` must be a list of strings",
    ),
    (
        "labels-not-map",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    labels: [a]\n",
        4,
        "`labels` must be a map of strings to strings",
    ),
    (
        "labels-not-strings",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    labels: {tier: 1}\n",
        4,
        "`labels` must be a map of strings to strings",
    ),
    (
        "enabled-not-bool",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    enabled: maybe\n",
        4,
        "`enabled` must be true or false, got 'maybe'",
    ),
    (
        "bad-template",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    message: '{{ title '\n",
        4,
        "`message` is not a valid jinja2 template: unexpected end of template, expected 'end of"
        " print statement'. (template line 1)",
    ),
    (
        "duplicate-key",
        "rules:\n  - id: x\n    when: repo_forks < 5\n    when: repo_forks < 6\n",
        4,
        'duplicate key "when" (first at line 3)',
    ),
    (
        "duplicate-id-in-one-file",
        "rules:\n  - id: x\n    when: repo_forks < 5\n  - id: x\n    when: repo_forks < 6\n",
        4,
        "duplicate rule id 'x' (first defined at {path}:2)",
    ),
    ("rule-not-a-map", "rules:\n  - just text\n", 2, "each rule must be a map"),
    ("no-rules-list", "rule:\n  - id: x\n", 1, "unknown top-level key 'rule' (did you mean"),
    ("rules-not-a-list", "rules: {id: x}\n", 1, "expected a top-level `rules:` list"),
    ("empty-file", "", 1, "expected a top-level `rules:` list"),
    ("not-yaml", "rules:\n  - id: x\n   when: [\n", 3, "not valid YAML:"),
    ("two-documents", "rules: []\n---\nrules: []\n", 2, "not valid YAML: "),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [c[1:] for c in PROBLEMS], ids=[c[0] for c in PROBLEMS]
)
def test_problems_name_path_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    problems = check_rule_files([path])
    assert problems, "expected a problem"
    assert problems[0].startswith(f"{path}:{line}: {message.format(path=path)}")
    with pytest.raises(RulesError):
        load_rules([path])


# -- messages ----------------------------------------------------------------------------------


def make_rule(message: str | None, tmp_path: Path) -> Rule:
    lines = [
        "rules:",
        "  - id: x",
        "    description: Lost stars",
        "    when: delta('repo_watchers') < 0",
    ]
    if message is not None:
        lines.append(f"    message: {json.dumps(message)}")
    path = write(tmp_path / "x.yaml", "\n".join(lines) + "\n")
    return by_id(load_rules([path]))["x"]


MESSAGES = [
    # (id, template, expected)
    ("default", None, "Otp: Lost stars — repo_watchers: 10 → 8"),
    ("template", "{{ title }} ({{ slug }})", "Otp (django-otp)"),
    (
        "fields-old-new",
        "{{ repo_watchers }}/{{ new.repo_watchers }}/{{ old.repo_watchers }}",
        "8/8/10",
    ),
    ("rule-and-severity", "{{ rule }} {{ severity }}", "x warning"),
    ("changes", "{% for c in changes %}{{ c.field }}={{ c.new }}{% endfor %}", "repo_watchers=8"),
    (
        "render-error-falls-back",
        "{{ old.repo_watchers.nope.deeper }}",
        "Otp: Lost stars — repo_watchers: 10 → 8",
    ),
    ("raising-falls-back", "{{ 1 / 0 }}", "Otp: Lost stars — repo_watchers: 10 → 8"),
    ("sandboxed", "{{ ''.__class__.__mro__ }}", "Otp: Lost stars — repo_watchers: 10 → 8"),
]


@pytest.mark.parametrize(
    ("template", "expected"), [c[1:] for c in MESSAGES], ids=[c[0] for c in MESSAGES]
)
def test_render_message(tmp_path: Path, template: str | None, expected: str) -> None:
    rule = make_rule(template, tmp_path)
    before = Snapshot(slug="django-otp", title="Otp", repo_watchers=10)
    after = Snapshot(slug="django-otp", title="Otp", repo_watchers=8)
    context = message_context(
        rule,
        slug="django-otp",
        new=after.values(),
        old=before.values(),
        changes=diff(before, after),
    )
    assert rule.render_message(context) == expected


def test_title_falls_back_to_slug_and_old_is_empty_without_history(tmp_path: Path) -> None:
    rule = make_rule(None, tmp_path)
    context = message_context(rule, slug="django-otp", new=Snapshot(slug="django-otp").values())
    assert context["title"] == "django-otp"
    assert context["old"]["repo_watchers"] is None  # every field is there, unknown
    assert context["changes"] == []
    assert rule.render_message(context) == "django-otp: Lost stars"
