"""Issue 10, hostile input met through the CLI: a bad config or option is exit 2 naming the
file and line (or the option), never a traceback (SPEC §9 "bad config")."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path

import pytest

from tests.conftest import Monitor

HUGE = ["999999999999w", "9999999d"]


def _no_traceback(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output


def test_a_config_that_is_not_utf8_names_its_line(monitor: Monitor) -> None:
    monitor.config_path.write_bytes(b'database = "monitor.db"\n\n# caf\xff\n')
    result = monitor.run("list")
    _no_traceback(result)
    assert result.exit_code == 2
    assert result.stderr == f"error: {monitor.config_path}:3: not UTF-8 (byte 0xff at column 6)\n"


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("[schedule]", "interval"),
        ("[schedule]", "jitter"),
        ("[sources.djangopackages]", "timeout"),
        ('[notifiers.hook]\ntype = "webhook"\nurl = "http://127.0.0.1:9/"', "timeout"),
    ],
    ids=["interval", "jitter", "source-timeout", "notifier-timeout"],
)
def test_a_duration_over_100_years_in_the_config_names_its_line(
    monitor: Monitor, table: str, key: str, value: str
) -> None:
    monitor.config_path.write_text(f'database = "monitor.db"\n{table}\n{key} = "{value}"\n')
    line = 3 + table.count("\n")
    result = monitor.run("check")
    _no_traceback(result)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {monitor.config_path}:{line}: ")
    assert f"'{value}' is longer than 100 years" in result.stderr
    assert not (monitor.tmp_path / "monitor.db").exists()


@pytest.mark.parametrize("value", HUGE)
@pytest.mark.parametrize(
    "args",
    [
        ["watch", "django-otp", "--interval"],
        ["mute", "django-otp", "--for"],
        ["digest", "--since"],
    ],
    ids=["watch", "mute", "digest"],
)
def test_a_duration_over_100_years_in_an_option_is_a_usage_error(
    monitor: Monitor, args: list[str], value: str
) -> None:
    result = monitor.run(*args, value)
    _no_traceback(result)
    assert result.exit_code == 2
    assert f"Invalid value for '{args[-1]}': '{value}' is longer than 100 years" in result.stderr
    assert not (monitor.tmp_path / "monitor.db").exists()


def _database_cases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """id -> (the `database` value, what the error says of it)."""
    (tmp_path / "folder.db").mkdir()
    (tmp_path / "a-file").write_text("")
    return {
        "folder": ("folder.db", f"'{tmp_path / 'folder.db'}' is a folder, not a database file"),
        "proc": ("/proc/monitor.db", "'/proc/monitor.db' is under /proc"),
        "proc-self": ("/proc/self/environ", "'/proc/self/environ' is under /proc"),
        "no-folder": (
            "nope/monitor.db",
            f"cannot be created: the folder '{tmp_path / 'nope'}' does not exist",
        ),
        "file-as-folder": ("a-file/monitor.db", f"'{tmp_path / 'a-file'}' is not a folder"),
        "empty": ("", f"'{tmp_path}' is a folder"),
        "nul": ("a\\u0000b", "contains a NUL character"),
    }


@pytest.mark.parametrize(
    "case", ["folder", "proc", "proc-self", "no-folder", "file-as-folder", "empty", "nul"]
)
@pytest.mark.parametrize("command", ["check", "list"])
def test_a_database_path_sqlite_cannot_use_is_the_configs_error(
    monitor: Monitor, case: str, command: str
) -> None:
    value, message = _database_cases(monitor.tmp_path)[case]
    monitor.config_path.write_text(f'database = "{value}"\n')
    before = sorted(monitor.tmp_path.rglob("*"))
    result = monitor.run(command)
    _no_traceback(result)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {monitor.config_path}:1: database: ")
    assert message in result.stderr
    assert sorted(monitor.tmp_path.rglob("*")) == before  # nothing created


def test_a_database_in_a_folder_it_cannot_write_is_the_configs_error(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # chmod binds no root user
    result = monitor.run("check")
    _no_traceback(result)
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {monitor.config_path}:1: database: '{monitor.tmp_path / 'monitor.db'}'"
        f" cannot be written: the folder '{monitor.tmp_path}' is not writable\n"
    )
    assert not (monitor.tmp_path / "monitor.db").exists()


# -- control and bidi characters from upstream (SPEC §9) -------------------------------------

EVIL = "\x1b]0;PWNED\x07\x1b[2J\x1b[31mRED\x00\u202eevil\x9b\u2066x\u2069\r\n"
# What no human output may hold: C0 controls but tab and newline, DEL, C1, bidi controls.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _hostile(monitor: Monitor) -> dict[str, str]:
    """Watch django-otp with the hostile title, then a check that changes its version and
    description (so changes, an alert summary and a console delivery carry it); returns each
    command's whole output (stdout and stderr)."""
    record = monitor.upstream.records["django-otp"]
    record["title"] = EVIL
    outputs = {"watch": monitor.run("watch", "django-otp").output}
    record["pypi_version"] = "1.8.0"
    record["repo_description"] = EVIL
    record["participants"] = [*record["participants"], EVIL]
    monitor.run("mute", "django-otp", "--rule", "watchers-dropped", "--comment", EVIL)
    commands = {
        "check": ["check"],
        "list": ["list"],
        "alerts": ["alerts"],
        "alerts-all": ["alerts", "--all"],
        "history": ["history", "django-otp"],
        "digest": ["digest"],
        "status": ["status"],
        "mutes": ["mutes"],
        "notify-test": ["notify-test", "console"],
    }
    for name, args in commands.items():
        result = monitor.run(*args)
        _no_traceback(result)
        outputs[name] = result.output
    return outputs


def test_no_control_or_bidi_character_reaches_any_human_output(monitor: Monitor) -> None:
    outputs = _hostile(monitor)
    for name, output in outputs.items():
        assert not UNSAFE.findall(output), (name, output)
    for name in ("check", "alerts", "history", "digest"):  # the text itself is still shown
        assert "PWNED" in outputs[name] and "evil" in outputs[name]
    assert "evil" in outputs["mutes"]


def test_json_keeps_the_hostile_text_exactly_and_escaped(monitor: Monitor) -> None:
    _hostile(monitor)
    documents = {
        "list": monitor.run("list", "--json").stdout,
        "alerts": monitor.run("alerts", "--json").stdout,
        "history": monitor.run("history", "django-otp", "--json").stdout,
        "mutes": monitor.run("mutes", "--json").stdout,
    }
    for name, document in documents.items():
        assert not UNSAFE.findall(document), name  # escaped as \\uXXXX, not raw
    assert json.loads(documents["list"])[0]["title"] == EVIL
    assert json.loads(documents["history"])[0]["snapshot"]["title"] == EVIL
    assert json.loads(documents["mutes"])[0]["comment"] == EVIL
    [alert] = [a for a in json.loads(documents["alerts"]) if a["rule"] == "pypi-version-changed"]
    assert EVIL.strip() in alert["summary"]


def test_tables_stay_aligned_with_hostile_and_wide_text() -> None:
    from monitor.report import table_lines

    lines = table_lines(
        [("package", "comment", "until"), (EVIL, "日本語のコメント", "forever"), ("x", "é", "-")]
    )
    assert not any(UNSAFE.findall(line) for line in lines)
    # The last column starts at the same terminal column on every line (wide: 2 columns).
    starts = [_columns(line[: line.rindex("  ") + 2]) for line in lines]
    assert len(set(starts)) == 1, lines


def _columns(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
