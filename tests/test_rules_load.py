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
    # (id, when, severity, kind, message)
    (
        "no-commits-26-weeks",
        "sum(commits_over_52[-26:]) == 0",
        Severity.WARNING,
        RuleKind.CONDITION,
        None,
    ),
    (
        "pypi-version-changed",
        'changed("pypi_version")',
        Severity.INFO,
        RuleKind.CHANGE,
        "{{ title }} {{ old.pypi_version }} → {{ new.pypi_version }}",
    ),
    (
        "watchers-dropped",
        "repo_watchers < old.repo_watchers",
        Severity.WARNING,
        RuleKind.CHANGE,
        None,
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "when", "severity", "kind", "message"), SPEC_RULES, ids=[r[0] for r in SPEC_RULES]
)
def test_spec_rules_are_shipped_exactly(
    rule_id: str, when: str, severity: Severity, kind: RuleKind, message: str | None
) -> None:
    rule = by_id(load_rules())[rule_id]
    assert rule.when.source == when
    assert rule.severity is severity
    assert rule.kind is kind
    assert rule.message == message
    assert rule.repeat is None
    assert rule.for_polls == 1
    assert rule.packages == ()
    assert rule.enabled


SHIPPED = [
    # (id, kind, severity)
    ("no-commits-26-weeks", RuleKind.CONDITION, Severity.WARNING),
    ("no-commits-13-weeks", RuleKind.CONDITION, Severity.INFO),
    ("watchers-dropped", RuleKind.CHANGE, Severity.WARNING),
    ("stars-dropped-10-percent", RuleKind.CHANGE, Severity.CRITICAL),
    ("forks-dropped", RuleKind.CHANGE, Severity.INFO),
    ("pypi-version-changed", RuleKind.CHANGE, Severity.INFO),
    ("major-version-bump", RuleKind.CHANGE, Severity.WARNING),
]


def test_shipped_rules_are_the_documented_set() -> None:
    rules = load_rules()
    assert sorted((r.id, r.kind, r.severity) for r in rules) == sorted(SHIPPED)
    for rule in rules:
        assert rule.description, rule.id
        assert rule.origin.startswith(str(shipped_rules_dir()))


def fixture_snapshot(name: str) -> Snapshot:
    return parse_record(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


FIXTURE_NAMES = sorted(p.stem for p in FIXTURES.glob("*.json"))


@pytest.mark.parametrize("rule_id", ["no-commits-26-weeks", "no-commits-13-weeks"])
def test_condition_rules_on_the_fixtures_fire_only_for_django_mfa(rule_id: str) -> None:
    rule = by_id(load_rules())[rule_id]
    fired = [
        name
        for name in FIXTURE_NAMES
        if rule.when.evaluate(fixture_snapshot(name).values(), None, NOW)
    ]
    assert fired == ["django-mfa"]


CHANGE_CASES = [
    # (id, old overrides, new overrides, rules that fire)
    ("nothing", {}, {}, set()),
    ("one-star-lost", {"repo_watchers": 100}, {"repo_watchers": 99}, {"watchers-dropped"}),
    (
        "ten-percent-lost",
        {"repo_watchers": 100},
        {"repo_watchers": 90},
        {"watchers-dropped", "stars-dropped-10-percent"},
    ),
    ("fork-lost", {"repo_forks": 10}, {"repo_forks": 9}, {"forks-dropped"}),
    (
        "minor-release",
        {"pypi_version": "1.7.0"},
        {"pypi_version": "1.8.0"},
        {"pypi-version-changed"},
    ),
    (
        "major-release",
        {"pypi_version": "1.7.0"},
        {"pypi_version": "2.0.0"},
        {"pypi-version-changed", "major-version-bump"},
    ),
    ("first-release", {"pypi_version": None}, {"pypi_version": "0.1"}, {"pypi-version-changed"}),
]


@pytest.mark.parametrize(
    ("old", "new", "fired"), [c[1:] for c in CHANGE_CASES], ids=[c[0] for c in CHANGE_CASES]
)
def test_shipped_change_rules(old: dict, new: dict, fired: set[str]) -> None:
    base = fixture_snapshot("django-otp").values()
    before, after = {**base, **old}, {**base, **new}
    result = set()
    for rule in load_rules():
        if rule.kind is not RuleKind.CHANGE:
            continue
        try:
            if rule.when.evaluate(after, before, NOW):
                result.add(rule.id)
        except UnknownValue:
            pass
    assert result == fired


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
    assert render("watchers-dropped") == (
        "django-otp: The repository lost stars — repo_watchers: 621 → 500"
    )
    assert render("major-version-bump").startswith("django-otp 1.7.0 → 2.0.0: a new major")


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
        "duplicate key 'when'",
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
    assert context["old"] == {}
    assert context["changes"] == []
    assert rule.render_message(context) == "django-otp: Lost stars"
