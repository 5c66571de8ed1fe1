"""Issue 9, item 11: `rules check` judges the user's files as `check` loads them (after the
shipped rules), and `rules list` shows the loaded rules, disabled ones included (SPEC §4, §6)."""

from __future__ import annotations

import json
import textwrap

from monitor.rules import shipped_rules_dir
from tests.conftest import Monitor

DISABLE = "rules:\n  - id: pypi-version-changed\n    enabled: false\n"
REPLACE = textwrap.dedent("""\
    rules:
      - id: watchers-dropped
        description: Lost many stars
        when: delta("repo_watchers") <= -50
        severity: critical
      - id: team-forks
        when: delta("repo_forks") <= -1
        supersedes: [forks-dropped]
    """)


def _team(monitor: Monitor, text: str, name: str = "team.yaml") -> str:
    path = monitor.tmp_path / name
    path.write_text(text)
    return str(path)


def test_rules_check_accepts_a_file_disabling_a_shipped_rule(monitor: Monitor) -> None:
    _team(monitor, DISABLE)
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    result = monitor.run("rules", "check")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"ok: {shipped_rules_dir()}, ")
    assert monitor.run("watch", "django-otp").exit_code == 0  # `check` agrees


def test_rules_check_of_named_files_loads_them_after_the_shipped_rules(
    monitor: Monitor,
) -> None:
    path = _team(monitor, REPLACE)
    result = monitor.run("rules", "check", path)
    assert result.exit_code == 0, result.output
    assert monitor.run("rules", "check", _team(monitor, DISABLE, "off.yaml")).exit_code == 0


def test_two_rules_with_one_id_among_the_users_files_stay_an_error(monitor: Monitor) -> None:
    first = _team(monitor, DISABLE, "a.yaml")
    second = _team(monitor, REPLACE.replace("watchers-dropped", "pypi-version-changed"), "b.yaml")
    monitor.configure('[rules]\npaths = ["a.yaml", "b.yaml"]\n')
    for args in ((), (first, second)):
        result = monitor.run("rules", "check", *args)
        assert result.exit_code == 2
        assert result.stderr == (
            f"{second}:2: duplicate rule id 'pypi-version-changed' (first defined at {first}:2)\n"
        )


def test_rules_check_reports_a_bad_supersedes(monitor: Monitor) -> None:
    path = _team(monitor, REPLACE.replace("[forks-dropped]", "[fork-dropped]"))
    result = monitor.run("rules", "check", path)
    assert result.exit_code == 2
    assert result.stderr == (
        f"{path}:8: `supersedes` names no known rule 'fork-dropped'"
        " (did you mean 'forks-dropped'?)\n"
    )


def test_rules_list_shows_every_loaded_rule_disabled_ones_included(monitor: Monitor) -> None:
    off = _team(monitor, DISABLE, "a.yaml")
    team = _team(monitor, REPLACE, "b.yaml")
    monitor.configure('[rules]\npaths = ["a.yaml", "b.yaml"]\n')
    listed = monitor.json("rules", "list")
    rows = {r["id"]: r for r in listed}
    assert [r["id"] for r in listed] == [
        "no-commits-26-weeks",
        "no-commits-13-weeks",
        "watchers-dropped",
        "stars-dropped-10-percent",
        "forks-dropped",
        "pypi-version-changed",
        "major-version-bump",
        "no-release-in-a-year",
        "vulnerable-version",
        "new-vulnerability",
        "repo-archived",
        "repo-gone",
        "pypi-project-inactive",
        "pinned-yanked",
        "pinned-behind-major",
        "django-unsupported",
        "team-forks",
    ]
    assert rows["pypi-version-changed"] == {
        "id": "pypi-version-changed",
        "kind": "change",  # what the shipped rule it turns off was
        "severity": "info",
        "enabled": False,
        "origin": f"{off}:2",
        "description": "The version on PyPI changed",
        "supersedes": [],
    }
    assert (rows["watchers-dropped"]["severity"], rows["watchers-dropped"]["origin"]) == (
        "critical",
        f"{team}:2",
    )
    assert rows["team-forks"]["supersedes"] == ["forks-dropped"]
    releases = shipped_rules_dir() / "releases.yaml"
    assert rows["major-version-bump"]["origin"].startswith(f"{releases}:")
    assert rows["major-version-bump"]["kind"] == "change"
    assert rows["no-commits-26-weeks"]["kind"] == "condition"
    assert all(r["enabled"] for r in listed if r["id"] != "pypi-version-changed")

    text = monitor.run("rules", "list")
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["rule", "kind", "severity", "enabled", "origin"]
    assert f"pypi-version-changed      change     info      no       {off}:2" in lines
    assert len(lines) == 1 + len(listed)


def test_rules_list_of_a_bad_rule_file_is_exit_2(monitor: Monitor) -> None:
    _team(monitor, "rules:\n  - id: x\n    when: nope > 1\n")
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    result = monitor.run("rules", "list", "--json")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert json.dumps("unknown field 'nope'")[1:-1] in result.stderr
