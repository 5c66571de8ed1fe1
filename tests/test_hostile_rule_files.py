"""Issue 10, items 6, 7 and 8 (rule files): a hostile rule file is `path:line: message` and
exit 2 from `rules check` and `check`, never a huge tree, a traceback or code run (SPEC §9)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from monitor.rules import load_rules
from tests.conftest import Monitor


def _laughs(levels: int = 9) -> str:
    """A ~450-byte file whose aliases expand to 9**9 values (the "billion laughs")."""
    lines = ['    labels: &a {x: "lol"}', '    packages: &b ["x","x","x","x","x","x","x","x","x"]']
    previous = "b"
    for name in "cdefghijk"[: levels - 1]:
        lines.append(f"    p{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
        previous = name
    return "rules:\n  - id: lol\n" + "\n".join(lines) + f"\n    when: *{previous}\n"


def _check(monitor: Monitor, text: str | bytes, name: str = "team.yaml") -> tuple[str, str]:
    """`rules check` of one file: (its path, stderr); exit 2 and nothing on stdout."""
    path = monitor.tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    result = monitor.run("rules", "check", str(path))
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    return str(path), result.stderr


def test_billion_laughs_is_refused_at_the_alias_that_goes_over(monitor: Monitor) -> None:
    text = _laughs()
    assert len(text) < 600
    path, err = _check(monitor, text)
    assert err == (
        f"{path}:8: aliases expand to more than 10,000 values (at *e); "
        "refused so that a small file cannot expand to a huge one\n"
    )


def test_check_with_a_billion_laughs_rule_file_is_exit_2_and_changes_nothing(
    monitor: Monitor,
) -> None:
    (monitor.tmp_path / "team.yaml").write_text(_laughs())
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    result = monitor.run("check")
    assert result.exit_code == 2, result.output
    assert "team.yaml:8: aliases expand to more than 10,000 values" in result.stderr
    assert not (monitor.tmp_path / "monitor.db").exists() or monitor.polls() == 0


def test_an_alias_inside_its_own_anchor_is_refused(monitor: Monitor) -> None:
    path, err = _check(monitor, "rules:\n  - id: x\n    packages: &p [a,\n      *p]\n")
    assert err == f"{path}:4: alias *p is inside its own anchor\n"


def test_aliases_cannot_nest_past_the_depth_bound(monitor: Monitor) -> None:
    lines = ["rules:", "  - id: x", "    when: repo_forks < 5", "    labels: {}"]
    lines.append("    p0: &p0 " + "[" * 40 + "1" + "]" * 40)
    for i in range(1, 4):
        lines.append(f"    p{i}: &p{i} " + "[" * 40 + f"*p{i - 1}" + "]" * 40)
    path, err = _check(monitor, "\n".join(lines) + "\n")
    assert err == f"{path}:6: nested deeper than 50 levels (through aliases)\n"


def test_benign_anchors_aliases_and_merge_keys_load(tmp_path: Path) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(
        textwrap.dedent("""\
        rules:
          - &defaults
            id: a
            when: repo_forks < 5
            severity: critical
            labels: &team {team: core, pager: "yes"}
          - <<: *defaults
            id: b
            when: repo_forks < 6
          - id: c
            when: repo_forks < 7
            labels: *team
        """)
    )
    rules = {rule.id: rule for rule in load_rules([path])}
    team = {"team": "core", "pager": "yes"}
    assert (rules["b"].severity, rules["b"].labels, str(rules["b"].when.source)) == (
        "critical",
        team,
        "repo_forks < 6",
    )
    assert rules["c"].labels == team


DUPLICATES = [
    pytest.param(
        "rules:\n  - id: a\n    when: repo_forks < 5\nrules:\n  - id: b\n    when: a\n",
        4,
        "rules",
        1,
        id="top-level-rules",
    ),
    pytest.param(
        "rules:\n  - id: a\n    when: repo_forks < 5\n    severity: info\n    severity: critical\n",
        5,
        "severity",
        4,
        id="in-a-rule",
    ),
    pytest.param(
        "rules:\n  - id: a\n    when: repo_forks < 5\n    labels:\n      team: a\n      team: b\n",
        6,
        "team",
        5,
        id="in-labels",
    ),
    pytest.param(
        "rules:\n  - id: a\n    when: repo_forks < 5\n    labels: {team: a, team: b}\n",
        4,
        "team",
        4,
        id="in-a-flow-map",
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "first"), DUPLICATES)
def test_a_duplicate_key_anywhere_names_both_lines(
    monitor: Monitor, text: str, line: int, key: str, first: int
) -> None:
    path, err = _check(monitor, text)
    assert err == f'{path}:{line}: duplicate key "{key}" (first at line {first})\n'


REFUSED = [
    pytest.param(
        'rules:\n  - id: x\n    when: !!python/object/apply:os.system ["touch {marker}"]\n',
        3,
        "tag !!python/object/apply:os.system is not allowed "
        "(only plain YAML values are read; nothing was run)",
        id="python-object-apply",
    ),
    pytest.param(
        "rules:\n  - id: x\n    when: repo_forks < 5\n    description: !!python/name:os.system\n",
        4,
        "tag !!python/name:os.system is not allowed "
        "(only plain YAML values are read; nothing was run)",
        id="python-name",
    ),
    pytest.param(
        "rules:\n  - id: x\n    when: repo_forks < 5\n    message: !!binary aGk=\n",
        4,
        "tag !!binary is not allowed (only plain YAML values are read; nothing was run)",
        id="binary",
    ),
    pytest.param(
        "rules: !local\n  - id: x\n",
        1,
        "tag !local is not allowed (only plain YAML values are read; nothing was run)",
        id="local-tag",
    ),
    pytest.param(
        "rules:\n  - id: x\n    when: repo_forks < 5\n    for: !!int twice\n",
        4,
        "'twice' is not a valid !!int",
        id="bad-explicit-int",
    ),
    pytest.param(
        "rules:\n  - id: x\n    when: repo_forks < 5\n    repeat: 999999999999w\n",
        4,
        "bad `repeat`: '999999999999w' is longer than 100 years (36525d)",
        id="repeat-overflow",
    ),
    pytest.param(
        "rules:\n  - id: x\n    when: repo_forks < 5\n    for: 99999999999999999999\n",
        4,
        "`for` is at most 10,000 polls, got 99999999999999999999",
        id="for-overflow",
    ),
    pytest.param(
        "rules:\n  - id: x\n    when: repo_forks < 5\n    packages: [a, <<: 1]\n",
        4,
        "`<<` must merge a map or a list of maps",
        id="merge-of-a-number",
    ),
    pytest.param(
        "rules:\n  - ? [id]\n    : x\n",
        2,
        "a key must be a plain value",
        id="complex-key",
    ),
    pytest.param(
        "rules:\n  - id: x\n    when: 'repo_forks \x00< 5'\n",
        3,
        "not valid YAML: character #x0000: control characters are not allowed",
        id="nul-character",
    ),
    pytest.param(
        "rules: " + "[" * 10_000 + "\n",
        1,
        "not valid YAML: exceeded maximum nesting depth",
        id="10000-brackets",
    ),
    pytest.param(
        "rules:\n" + "".join("  " * i + "-\n" for i in range(1, 60)),
        51,
        "nested deeper than 50 levels",
        id="deep-block-nesting",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), REFUSED)
def test_hostile_yaml_is_one_clean_problem(
    monitor: Monitor, text: str, line: int, message: str
) -> None:
    marker = monitor.tmp_path / "ran"
    path, err = _check(monitor, text.replace("{marker}", str(marker)))
    assert err == f"{path}:{line}: {message}\n"
    assert not marker.exists()


def test_a_byte_that_is_not_utf8_is_named_with_its_line(monitor: Monitor) -> None:
    path, err = _check(monitor, b"rules:\n  - id: x\n    description: '\xff'\n    when: a\n")
    assert err == f"{path}:3: not UTF-8 (byte 0xff)\n"


def test_a_rule_file_over_1_mb_is_not_read(monitor: Monitor) -> None:
    path, err = _check(monitor, "rules: []\n#" + "x" * 1_000_000 + "\n")
    assert err == f"{path}: larger than 1,000,000 bytes; not read\n"


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc")
def test_an_unreadable_rule_file_is_a_clean_problem(monitor: Monitor) -> None:
    result = monitor.run("rules", "check", "/proc/self/mem")  # a file whose reads fail (EIO)
    assert result.exit_code == 2
    assert result.stderr == "/proc/self/mem: cannot read: Input/output error\n"


def test_a_folder_given_as_a_rule_file_loads_its_yaml_files(monitor: Monitor) -> None:
    folder = monitor.tmp_path / "rules.yaml"  # a folder, named like a file
    folder.mkdir()
    (folder / "a.yaml").write_text("rules:\n  - id: a\n    when: repo_forks < 5\n")
    result = monitor.run("rules", "check", str(folder))
    assert result.exit_code == 0, result.output


def test_the_python_loader_gives_the_same_problems(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without libyaml, PyYAML's own parser: the composer here is the same."""
    import yaml

    from monitor import yamlfile

    monkeypatch.setattr(yamlfile, "_Loader", yaml.SafeLoader)
    path, err = _check(monitor, _laughs())
    assert err.startswith(f"{path}:8: aliases expand to more than 10,000 values")
    path, err = _check(monitor, "rules:\n" + "".join("  " * i + "-\n" for i in range(1, 60)))
    assert err == f"{path}:51: nested deeper than 50 levels\n"
    path, err = _check(monitor, "rules: " + "[" * 10_000 + "\n")  # PyYAML's parser has no bound
    assert err == f"{path}:1: nested deeper than 50 levels\n"


DEEP = "`message` is not a valid jinja2 template: nested too deeply (a chain of many operators?)"
NESTED = [
    *(
        pytest.param("message", "{{ " + opener * 1000 + "1 }}", DEEP, id=f"message-{opener}")
        for opener in ("(", "[", "-", "not ", "x|e", "x.a")
    ),
    pytest.param("message", "{% if 1 %}" * 1000 + "{% endif %}" * 1000, DEEP, id="message-if"),
    pytest.param(
        "when",
        "(" * 1000 + "1" + ")" * 1000,
        "bad expression in `when`: too many nested parentheses at column 201",
        id="when-(",
    ),
    *(
        pytest.param(
            "when", opener * 1000 + "1", "bad expression in `when`: expression too deeply nested"
        )
        for opener in ("-", "not ", "1 + ")
    ),
]


@pytest.mark.parametrize(("key", "text", "message"), NESTED)
def test_deeply_nested_expressions_and_templates_are_a_problem_of_the_rule(
    monitor: Monitor, key: str, text: str, message: str
) -> None:
    """jinja2's parser recurses once per level (RecursionError) and Python's compiler refuses
    the code it makes of 200 nested attributes (SyntaxError): each is that rule's problem."""
    rule = {"id": "x", "when": "repo_forks < 5", key: text}
    path, err = _check(monitor, yaml.safe_dump({"rules": [rule]}, width=100_000))
    assert err == f"{path}:3: {message}\n"
