"""Docs as tests (STYLE 9): every command is in the README's command table and has --help."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from monitor.cli import cli

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        if isinstance(command, click.Group):
            found += _commands(command, path)
        else:
            found.append(path)
    return found


COMMANDS = _commands(cli)


def test_the_cli_has_the_commands_of_the_spec() -> None:
    names = {" ".join(path) for path in COMMANDS}
    assert {"watch", "list", "check", "run", "mutes", "status", "rules list"} <= names


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_every_command_is_in_the_readme_and_has_help(path: tuple[str, ...]) -> None:
    row = re.compile(rf"^\| `monitor {re.escape(' '.join(path))}[ `]", re.MULTILINE)
    assert row.search(README), f"README's command table lacks `monitor {' '.join(path)}`"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
