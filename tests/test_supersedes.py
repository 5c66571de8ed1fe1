"""`supersedes: [RULE…]` (SPEC §6): when a rule fires for a change, the change rules it
supersedes do not fire for the same change. Loading checks the ids after every file is read.
How it plays out on real polls: tests/rules_cases/supersedes-*.yaml and the shipped cases."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import RulesError
from monitor.rules import check_rule_files, load_rules, shipped_rules_dir

PROBLEMS = [
    # (id, rules file, line, message)
    (
        "unknown-id",
        "rules:\n  - id: x\n    when: changed('repo_forks')\n    supersedes:\n"
        "      - pypi-version-change\n",
        5,
        "`supersedes` names no known rule 'pypi-version-change'"
        " (did you mean 'pypi-version-changed'?)",
    ),
    (
        "a-condition-rule-named",
        "rules:\n  - id: x\n    when: changed('repo_forks')\n"
        "    supersedes: [no-commits-26-weeks]\n",
        4,
        "`supersedes` names 'no-commits-26-weeks', a condition rule (defined at {shipped}/",
    ),
    (
        "on-a-condition-rule",
        "rules:\n  - id: x\n    when: repo_forks < 10\n    supersedes: [forks-dropped]\n",
        4,
        "`supersedes` is only for change rules",
    ),
    (
        "itself",
        "rules:\n  - id: x\n    when: changed('repo_forks')\n    supersedes: [x]\n",
        4,
        "rule 'x' cannot supersede itself",
    ),
    (
        "not-a-list",
        "rules:\n  - id: x\n    when: changed('repo_forks')\n    supersedes: forks-dropped\n",
        4,
        "`supersedes` must be a list of rule ids",
    ),
    (
        "not-ids",
        "rules:\n  - id: x\n    when: changed('repo_forks')\n    supersedes: [{a: 1}]\n",
        4,
        "`supersedes` must be a list of rule ids",
    ),
    (
        "a-circle",
        "rules:\n  - id: a\n    when: changed('repo_forks')\n    supersedes: [b]\n"
        "  - id: b\n    when: changed('repo_forks')\n    supersedes: [a]\n",
        4,
        "`supersedes` goes round in a circle: a → b → a",
    ),
    (
        "a-circle-through-a-shipped-rule",
        "rules:\n  - id: pypi-version-changed\n    when: changed('pypi_version')\n"
        "    supersedes: [major-version-bump]\n",
        4,
        "`supersedes` goes round in a circle: pypi-version-changed → major-version-bump"
        " → pypi-version-changed",
    ),
    (
        "a-superseded-rule-turned-into-a-condition-rule",
        "rules:\n  - id: pypi-version-changed\n    when: pypi_version == '1.0'\n",
        None,  # reported at the shipped major-version-bump's `supersedes`
        "`supersedes` names 'pypi-version-changed', a condition rule",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "message"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS]
)
def test_bad_supersedes_is_a_load_error_with_file_and_line(
    tmp_path: Path, text: str, line: int | None, message: str
) -> None:
    path = tmp_path / "team.yaml"
    path.write_text(text, encoding="utf-8")
    problems = check_rule_files([path])
    assert len(problems) == 1, problems
    (problem,) = problems
    where = f"{path}:{line}: " if line else f"{shipped_rules_dir() / 'releases.yaml'}:"
    assert problem.startswith(where), problem
    assert message.format(shipped=shipped_rules_dir()) in problem
    with pytest.raises(RulesError):
        load_rules([path])


GOOD = [
    # (id, rules file): each loads
    (
        "a-disabled-rule-named",
        "rules:\n  - id: forks-dropped\n    enabled: false\n"
        "  - id: x\n    when: changed('repo_forks')\n    supersedes: [forks-dropped]\n",
    ),
    (
        "a-user-rule-named",
        "rules:\n  - id: y\n    when: changed('repo_forks')\n"
        "  - id: x\n    when: changed('repo_forks')\n    supersedes: [y, forks-dropped]\n",
    ),
    (
        "a-rule-defined-in-a-later-file-of-the-folder",
        "rules:\n  - id: x\n    when: changed('repo_forks')\n    supersedes: [z]\n",
    ),
    (
        "a-chain",
        "rules:\n  - id: x\n    when: changed('pypi_version')\n"
        "    supersedes: [major-version-bump]\n",
    ),
]


@pytest.mark.parametrize("text", [g[1] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_supersedes_loads(tmp_path: Path, text: str) -> None:
    (tmp_path / "a.yaml").write_text(text, encoding="utf-8")
    (tmp_path / "b.yaml").write_text("rules:\n  - {id: z, when: changed('repo_forks')}\n")
    assert check_rule_files([tmp_path]) == []
    rules = {rule.id: rule for rule in load_rules([tmp_path])}
    assert rules["x"].supersedes


def test_a_disabled_rule_may_keep_its_supersedes(tmp_path: Path) -> None:
    path = tmp_path / "off.yaml"
    path.write_text("rules:\n  - id: major-version-bump\n    enabled: false\n")
    assert check_rule_files([path]) == []
    assert "major-version-bump" not in {rule.id for rule in load_rules([path])}
