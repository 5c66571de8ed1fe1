"""``bench/year.py`` in small (200 packages x 8 weeks, a day of unchanged checks a week), so
the instrument never rots: the structure and sanity of its figures, no timing thresholds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES, WEEKS, DAYS = 200, 8, 1


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    argv = [sys.executable, str(ROOT / "bench" / "year.py"), "--packages", str(PACKAGES)]
    argv += ["--weeks", str(WEEKS), "--days", str(DAYS), "--json"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def checks_of(week: dict[str, Any]) -> list[dict[str, Any]]:
    return [week["changed_check"], *week["unchanged_checks"]]


def test_every_week_is_there_with_its_checks(result: dict[str, Any]) -> None:
    assert result["packages"] == PACKAGES
    assert [w["week"] for w in result["weeks_data"]] == list(range(1, WEEKS + 1))
    for week in result["weeks_data"]:
        assert len(week["unchanged_checks"]) == DAYS
        for check in checks_of(week):
            assert check["exit_code"] == 0
            assert check["checked"] == PACKAGES
            assert check["failed"] == 0
            assert check["seconds"] > 0
            assert check["peak_rss_mib"] > 0
            assert check["requests"]["total"] > 0


def test_changed_weeks_changed_almost_every_package_and_the_rest_nothing(
    result: dict[str, Any],
) -> None:
    for week in result["weeks_data"]:
        assert week["shifted"] == PACKAGES
        assert 0 < week["released"] < PACKAGES // 4
        assert 0 < week["stars_moved"] < PACKAGES // 4
        changed = week["changed_check"]
        assert changed["changed"] >= 0.95 * PACKAGES
        assert changed["unchanged"] + changed["changed"] == PACKAGES
        for check in week["unchanged_checks"]:
            assert check["changed"] == 0
            assert check["unchanged"] == PACKAGES
    released = sum(w["released"] for w in result["weeks_data"])
    assert result["counts"]["transitions"] >= released  # a release is an alert transition


def test_baselines_replay_the_checks_requests(result: dict[str, Any]) -> None:
    for week in result["weeks_data"]:
        pairs = [(week["changed_check"], week["changed_baseline"])]
        pairs.append((week["unchanged_checks"][0], week["unchanged_baseline"]))
        for check, baseline in pairs:
            assert baseline["requests"] == check["requests"]["total"]
            assert baseline["records"] == PACKAGES
            assert baseline["ratio"] == pytest.approx(baseline["seconds"] / check["seconds"])


def test_the_database_grows_and_is_measured(result: dict[str, Any]) -> None:
    sizes = [result["watch"]["db_bytes"]] + [w["db_bytes"] for w in result["weeks_data"]]
    assert sizes[0] > 0
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]  # a changed week stores snapshots
    assert result["db_projection"]["bytes"] >= result["db_projection"]["measured_bytes"]
    assert result["tables"]["snapshots"] > 0


def test_the_end_of_year_commands_ran(result: dict[str, Any]) -> None:
    end = result["end"]
    assert set(end) == {"digest", "history", "history_json", "alerts_all_json", "list_json"}
    for sample in end.values():
        assert sample["exit_code"] == 0
        assert sample["output_bytes"] > 0
    assert len(result["help"]["samples"]) == 15
    assert set(result["goals"]) >= {"ratio_changed", "db_year_mb", "digest_seconds"}
    assert all(goal["pass"] in (True, False) for goal in result["goals"].values())
