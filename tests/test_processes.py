"""Faults that need real processes (SPEC §9): SIGKILL mid-poll, two processes on one
database; and start-up cost: `monitor --help` imports no heavy library."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIVE, Monitor
from tests.daemon import wait_for
from tests.fakeupstream import Fault

ROOT = Path(__file__).parent.parent


def _monitor(monitor: Monitor, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(monitor.config_path), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


@pytest.mark.parametrize("command", [["--help"], ["list", "--help"], ["run", "--help"]])
def test_help_imports_no_heavy_library(command: list[str]) -> None:
    """Nor asyncio (two thirds of the start-up time it took), prometheus-client or orjson;
    nor pathlib and random, a seventh of what is left."""
    code = (
        "import sys\n"
        "from monitor.cli import main\n"
        f"sys.argv = ['monitor', *{command!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('aiohttp', 'slack_sdk', 'jinja2', 'sqlite_utils', 'asyncio',"
        " 'prometheus_client', 'orjson', 'pathlib', 'random')\n"
        "heavy = [m for m in heavy if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "Usage: monitor" in done.stdout
    assert "HEAVY []" in done.stderr


def test_python_dash_m_and_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0 and done.stdout.startswith("monitor, version ")


def test_sigkill_mid_poll_leaves_a_consistent_database(monitor: Monitor) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    monitor.upstream.fail("/api/v4/packages/", [Fault.slow(30)])  # the page request hangs
    child = _monitor(monitor, "check")
    wait_for(lambda: monitor.upstream.in_flight > 0)
    os.kill(child.pid, signal.SIGKILL)
    child.communicate(timeout=10)
    assert child.returncode == -signal.SIGKILL

    with sqlite3.connect(monitor.tmp_path / "monitor.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert monitor.count("snapshots") == 5  # nothing half-recorded
    assert monitor.polls() == 5

    report = monitor.json("check")  # the next run continues, and sees the change once
    assert [c["slug"] for c in report["changed"]] == ["django-otp"]
    assert [t["rule"] for t in report["transitions"]] == ["pypi-version-changed"]


def test_check_while_another_process_holds_the_database(monitor: Monitor) -> None:
    assert monitor.run("watch", "django-otp").exit_code == 0
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "conn.execute('BEGIN IMMEDIATE')\n"
            "conn.execute(\"INSERT INTO meta (key, value) VALUES ('held', '1')\")\n"
            "print('locked', flush=True)\n"
            "time.sleep(1.5)\n"
            "conn.execute('COMMIT')\n",
            str(monitor.tmp_path / "monitor.db"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    monitor.upstream.records["django-otp"]["repo_forks"] = 200
    result = monitor.run("check", "--json")
    holder.communicate(timeout=10)
    assert result.exit_code == 0, result.output
    assert "locked" not in result.stderr
    assert monitor.count("snapshots") == 2
