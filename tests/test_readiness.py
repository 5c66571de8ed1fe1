"""``monitor readiness DJANGO_VERSION`` (issue 12: can we move to Django X.Y?) through the real
CLI: the fake djangopackages and PyPI on loopback, the real cycle and store."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import pytest

from monitor.readiness import version_key
from tests.conftest import FIVE, Monitor

NO, UNKNOWN, YES = "django-otp", "django-organizations", "django-mfa"  # names: yes < unknown < no


def _declare(monitor: Monitor, slug: str, versions: Iterable[str]) -> None:
    """The package's PyPI release declares these Django versions (and nothing else Django)."""
    monitor.upstream.world.pypi.set_classifiers(  # type: ignore[attr-defined]
        slug,
        ["Framework :: Django", *(f"Framework :: Django :: {v}" for v in versions)],
    )


def _pin(monitor: Monitor, slug: str, version: str) -> None:
    store = monitor.store()
    try:
        store.conn.execute("UPDATE watches SET pinned = ? WHERE slug = ?", (version, slug))
    finally:
        store.close()


def _three(monitor: Monitor) -> None:
    """django-otp declares up to 5.2, django-organizations none, django-mfa 5.2 and 6.0."""
    monitor.configure(sources=("pypi",))
    _declare(monitor, NO, ["4.2", "5.2"])
    _declare(monitor, UNKNOWN, [])
    _declare(monitor, YES, ["5.2", "6.0"])
    assert monitor.run("watch", NO, UNKNOWN, YES).exit_code == 0
    _pin(monitor, NO, "1.6.0")


def test_text_says_no_unknown_yes_with_latest_and_pinned(monitor: Monitor) -> None:
    _three(monitor)
    result = monitor.run("readiness", "6.0")
    assert result.exit_code == 0, result.output  # a "no" is an answer, not a failure
    assert result.stdout.splitlines() == [
        "package               verdict  declared              latest  pinned",
        "django-otp            no       newest declared: 5.2  1.7.0   1.6.0",
        "django-organizations  unknown  -                     2.5.0   -",
        "django-mfa            yes      5.2–6.0               3.2     -",
        "Django 6.0: 1 yes, 1 no, 1 unknown of 3 watched",
    ]
    assert result.stderr == ""


def test_json_is_the_spec_shape_in_the_same_order(monitor: Monitor) -> None:
    _three(monitor)
    assert monitor.json("readiness", "6.0") == [
        {
            "name": NO,
            "verdict": "no",
            "declared": ["4.2", "5.2"],
            "latest": "1.7.0",
            "pinned": "1.6.0",
        },
        {
            "name": UNKNOWN,
            "verdict": "unknown",
            "declared": [],
            "latest": "2.5.0",
            "pinned": None,
        },
        {
            "name": YES,
            "verdict": "yes",
            "declared": ["5.2", "6.0"],
            "latest": "3.2",
            "pinned": None,
        },
    ]
    # Another version, another answer from the same data.
    assert [r["verdict"] for r in monitor.json("readiness", "5.2")] == ["unknown", "yes", "yes"]


def test_ordered_no_then_unknown_then_yes_then_by_name(monitor: Monitor) -> None:
    monitor.configure(sources=("pypi",))
    _declare(monitor, "django-two-factor-auth", ["5.1"])
    _declare(monitor, "django-otp", ["5.2"])
    _declare(monitor, "django-oauth-toolkit", [])
    _declare(monitor, "django-organizations", [])
    _declare(monitor, "django-mfa", ["6.0"])
    assert monitor.run("watch", *FIVE).exit_code == 0
    answers = monitor.json("readiness", "6.0")
    assert [(r["verdict"], r["name"]) for r in answers] == [
        ("no", "django-otp"),
        ("no", "django-two-factor-auth"),
        ("unknown", "django-oauth-toolkit"),
        ("unknown", "django-organizations"),
        ("yes", "django-mfa"),
    ]
    assert monitor.run("unwatch", "django-otp").exit_code == 0
    assert "django-otp" not in {r["name"] for r in monitor.json("readiness", "6.0")}


def test_the_verdict_follows_the_latest_release(monitor: Monitor) -> None:
    _three(monitor)
    pypi = monitor.upstream.world.pypi  # type: ignore[attr-defined]
    pypi.release(NO, "2.0.0", monitor.clock.now - timedelta(hours=1))
    _declare(monitor, NO, ["5.2", "6.0"])
    monitor.clock.advance(hours=7)
    assert monitor.run("check").exit_code == 0
    (answer,) = [r for r in monitor.json("readiness", "6.0") if r["name"] == NO]
    assert answer == {
        "name": NO,
        "verdict": "yes",
        "declared": ["5.2", "6.0"],
        "latest": "2.0.0",
        "pinned": "1.6.0",
    }


def test_versions_compare_as_versions_not_text(monitor: Monitor) -> None:
    monitor.configure(sources=("pypi",))
    _declare(monitor, NO, ["5.2", "5.10"])
    assert monitor.run("watch", NO).exit_code == 0
    (answer,) = monitor.json("readiness", "6.0")
    assert answer["declared"] == ["5.2", "5.10"]
    assert "newest declared: 5.10" in monitor.run("readiness", "6.0").stdout
    assert monitor.json("readiness", "5.10")[0]["verdict"] == "yes"
    assert monitor.json("readiness", "5.1")[0]["verdict"] == "no"  # not a prefix of 5.10


@pytest.mark.parametrize(
    ("texts", "ordered"),
    [
        (["5.10", "5.2", "4.2"], ["4.2", "5.2", "5.10"]),
        (["10.0", "9.1"], ["9.1", "10.0"]),
        (["5.2", "bogus", "3.2"], ["bogus", "3.2", "5.2"]),  # not a version: first
    ],
    ids=["minor-10-after-2", "major-10-after-9", "text-first"],
)
def test_version_order(texts: list[str], ordered: list[str]) -> None:
    assert sorted(texts, key=version_key) == ordered


@pytest.mark.parametrize(
    ("version", "hint"),
    [
        ("6", 'not a Django version such as "6.0" (X.Y)'),
        ("six", 'not a Django version such as "6.0" (X.Y)'),
        ("6.x", 'not a Django version such as "6.0" (X.Y)'),
        ("", 'not a Django version such as "6.0" (X.Y)'),
        ("6.0.1", "packages declare feature releases only: try 6.0"),
    ],
    ids=["major-only", "word", "wildcard", "empty", "patch-release"],
)
def test_a_bad_version_is_bad_usage(monitor: Monitor, version: str, hint: str) -> None:
    _three(monitor)
    for args in (("readiness", version), ("readiness", version, "--json")):
        result = monitor.run(*args)
        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.startswith(f"error: {version!r} is not")
        assert hint in result.stderr


def test_pypi_off_makes_every_verdict_unknown(monitor: Monitor) -> None:
    _three(monitor)  # PyPI values stored while it was on
    monitor.configure()  # now off: those values are stale, as rules see them
    result = monitor.run("readiness", "6.0")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines[1:4]] == [  # all unknown: by name
        [YES, "unknown"],
        [UNKNOWN, "unknown"],
        [NO, "unknown"],
    ]
    assert lines[3].split()[-2:] == ["1.7.0", "1.6.0"]  # djangopackages' version, the pin
    assert lines[-1] == "Django 6.0: 0 yes, 0 no, 3 unknown of 3 watched"
    assert "pypi source is off" in result.stderr
    answers = monitor.json("readiness", "6.0")
    assert {r["verdict"] for r in answers} == {"unknown"}
    assert all(r["declared"] == [] for r in answers)


def test_nothing_watched_is_a_friendly_line_and_creates_no_database(monitor: Monitor) -> None:
    result = monitor.run("readiness", "6.0")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("no packages watched in ")
    assert "monitor watch SLUG" in result.stdout
    assert monitor.json("readiness", "6.0") == []
    assert not (monitor.tmp_path / "monitor.db").exists()


def test_help_has_an_example(monitor: Monitor) -> None:
    result = monitor.run("readiness", "--help")
    assert result.exit_code == 0
    assert "monitor readiness 6.0" in result.stdout
    assert "DJANGO_VERSION" in result.stdout
