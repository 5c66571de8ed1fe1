"""Disk full (SPEC §9): every command fails with a clear error naming the database, exit 1,
no traceback; the database stays consistent and the next command on a disk with space works.

The disk fills up in a child process: RLIMIT_FSIZE caps the size of any file it writes, and
with SIGXFSZ ignored a write past the cap fails with EFBIG, which SQLite reports as a disk
I/O error, as it does ENOSPC. (A small tmpfs would need root.)
"""

from __future__ import annotations

import gc
import json
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Monitor

ROOT = Path(__file__).parent.parent

# Runs each command (argv[3:] is a JSON list of argument lists) through the real CLI in one
# child process whose files cannot grow past argv[1] bytes; prints one result per command.
CHILD = textwrap.dedent("""\
    import json, resource, signal, sys
    from click.testing import CliRunner
    from monitor.cli import Runtime, cli

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    results = []
    for args in json.loads(sys.argv[3]):
        result = CliRunner().invoke(cli, args, obj=Runtime(config_path=sys.argv[2]))
        crash = result.exception
        if isinstance(crash, SystemExit):
            crash = None
        results.append(
            {"args": args, "exit_code": result.exit_code, "stderr": result.stderr,
             "crash": repr(crash) if crash else None}
        )
    print(json.dumps(results))
""")

COMMANDS = [
    ["list"],
    ["status"],
    ["alerts"],
    ["mutes"],
    ["history", "django-otp"],
    ["digest"],
    ["check"],
    ["watch", "django-mfa"],
    ["mute", "django-otp"],
    ["unmute", "django-otp"],
    ["unwatch", "django-otp"],
]


def _with_full_disk(monitor: Monitor, limit: int, commands: list[list[str]]) -> list[dict]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(limit), str(monitor.config_path), json.dumps(commands)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _assert_consistent(monitor: Monitor) -> None:
    with sqlite3.connect(monitor.tmp_path / "monitor.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.fixture
def watching(monitor: Monitor) -> Monitor:
    assert monitor.run("watch", "django-otp").exit_code == 0
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    gc.collect()  # close this process's connections: the child must create the -shm file
    assert sorted(p.name for p in monitor.tmp_path.iterdir()) == ["monitor.db", "monitor.toml"]
    return monitor


def test_every_command_says_the_disk_is_full(watching: Monitor) -> None:
    database = watching.tmp_path / "monitor.db"
    for result in _with_full_disk(watching, 0, COMMANDS):  # not even the -shm file fits
        assert result["crash"] is None, result
        assert result["exit_code"] == 1, result
        assert result["stderr"].startswith(
            f"error: the database at {database} could not be written: disk full"
        ), result
        assert "Traceback" not in result["stderr"]
    _assert_consistent(watching)
    report = watching.json("check")  # space again: the change is seen, once
    assert [c["slug"] for c in report["changed"]] == ["django-otp"]


def test_a_check_that_fills_the_disk_mid_write_changes_nothing(watching: Monitor) -> None:
    checks = watching.polls()
    # The database opens (its -shm file is 32 KiB) but the check's write does not fit.
    [result] = _with_full_disk(watching, 32 * 1024, [["check"]])
    assert (result["crash"], result["exit_code"]) == (None, 1), result
    assert "could not be written: disk full" in result["stderr"]
    _assert_consistent(watching)
    assert watching.polls() == checks  # nothing half-recorded
    report = watching.json("check")
    assert [t["rule"] for t in report["transitions"]] == ["pypi-version-changed"]


def test_run_on_a_full_disk_logs_the_error_and_exits_1(watching: Monitor) -> None:
    [result] = _with_full_disk(watching, 0, [["run"]])
    assert (result["crash"], result["exit_code"]) == (None, 1), result
    assert "could not be written: disk full" in result["stderr"]
    assert "crashed" not in result["stderr"] and "Traceback" not in result["stderr"]


def test_a_transaction_sqlite_rolled_back_itself_keeps_the_disk_full_error(tmp_path: Path) -> None:
    """On SQLITE_FULL SQLite may roll the transaction back itself: the error reported is
    still "disk full", not a failed ROLLBACK's "no transaction is active"."""
    from monitor.store import Store, store_error

    store = Store(tmp_path / "monitor.db")
    pages = store.conn.execute("PRAGMA page_count").fetchone()[0]
    store.conn.execute(f"PRAGMA max_page_count = {pages}")  # this connection's disk is full
    with pytest.raises(sqlite3.OperationalError) as caught, store.transaction():
        store.set_meta("big", "x" * 100_000)
    error = store_error(caught.value, store.path)
    assert str(error) == (
        f"the database at {store.path} could not be written: disk full"
        " (SQLite: database or disk is full)"
    )
    store.close()
