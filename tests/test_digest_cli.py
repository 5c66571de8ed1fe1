"""``monitor digest --html FILE``: a file that cannot be written is a one-line error, and ``-``
is standard output."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Monitor


def test_html_into_a_missing_directory_is_a_clean_error(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    target = monitor.tmp_path / "missing" / "digest.html"
    result = monitor.run("digest", "--send", "--html", str(target))
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot write {target}: No such file or directory\n"
    assert result.stdout == ""  # refused before anything is printed
    assert monitor.count("outbox") == 0  # or sent


def test_html_is_written_whole(monitor: Monitor) -> None:
    monitor.run("watch", "django-otp")
    target = monitor.tmp_path / "digest.html"
    target.write_text("an older digest")
    result = monitor.run("digest", "--html", str(target))
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8").rstrip().endswith("</html>")
    assert result.stderr == f"wrote {target}\n"
    assert result.stdout.startswith("monitor weekly digest: ")
    assert sorted(p.name for p in monitor.tmp_path.iterdir() if "digest" in p.name) == [
        "digest.html"  # no temporary file left behind
    ]


def test_html_dash_is_standard_output(
    monitor: Monitor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monitor.run("watch", "django-otp")
    result = monitor.run("digest", "--html", "-")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>")  # the HTML alone: it can be piped
    assert result.stdout.rstrip().endswith("</html>")
    assert "monitor weekly digest: " not in result.stdout  # the text heading
    assert result.stderr == ""
    assert not (tmp_path / "-").exists()
