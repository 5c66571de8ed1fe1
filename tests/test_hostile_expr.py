"""Issue 10, item 2: a hostile `when` cannot hang or crash monitoring (SPEC §6: an expression
that would build a value over 1 MB, or run over 100 ms, is an error of that rule on that
package, which keeps its state). A constant one is refused by `rules check`."""

from __future__ import annotations

import itertools
import json
import logging
import textwrap
from datetime import UTC, datetime

import pytest

from monitor import expr
from monitor.expr import LimitExceeded, Limits, compile_expression
from tests.conftest import Monitor

NOW = datetime(2026, 1, 31, tzinfo=UTC)
BIG = "`*` would build a value over 1,000,000 characters or elements (1 MB)"

REFUSED_AT_LOAD = [
    # (id, when, message): constants, evaluated once at load under the bounds
    ("cpu-bomb", "max([[0]*1000000]*1000000) == 0", BIG),
    ("memory-bomb", "len('x' * 999999999) > 0", BIG),
    ("nested-shared", "[[[0] * 1000] * 1000] * 2 == []", BIG),
    ("concatenation", "len([0] * 600000 + [0] * 600000) > 0", "`+` would build a value over"),
    ("literal-of-big-parts", "max([[0] * 600000, [0] * 600000]) == 0", "a list would build"),
    ("format", "'%0999999999d' % 0 == ''", "`%` formatting of text is not allowed"),
    ("version-of-huge-text", "version('1' * 100000).major > 0", "version() of a text over 256"),
    ("constant-part", "repo_watchers > len('ab' * 600000)", BIG),
]


@pytest.mark.parametrize(
    ("when", "message"),
    [case[1:] for case in REFUSED_AT_LOAD],
    ids=[case[0] for case in REFUSED_AT_LOAD],
)
def test_rules_check_refuses_a_constant_over_the_bounds(
    monitor: Monitor, when: str, message: str
) -> None:
    path = monitor.tmp_path / "hostile.yaml"
    path.write_text(f'rules:\n  - id: hostile\n    when: "{when}"\n')
    result = monitor.run("rules", "check", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"{path}:3: bad expression in `when`: {message}")


RULE = textwrap.dedent("""\
    rules:
      - id: many-hands
        description: Many hands
        when: len(participants * repo_watchers) > 0
        packages: [django-otp]
    """)


def _watch_with(monitor: Monitor, rules: str) -> None:
    (monitor.tmp_path / "team.yaml").write_text(rules)
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    assert monitor.run("watch", "django-otp", "django-mfa").exit_code == 0


def _firing(monitor: Monitor) -> set[tuple[str, str]]:
    return {(a["rule"], a["package"]) for a in monitor.json("alerts") if a["status"] == "firing"}


def test_a_rule_over_its_bounds_is_its_error_on_that_package_and_keeps_its_state(
    monitor: Monitor, caplog: pytest.LogCaptureFixture
) -> None:
    _watch_with(monitor, RULE)
    assert ("many-hands", "django-otp") in _firing(monitor)
    monitor.upstream.records["django-otp"]["repo_watchers"] = 1_000_000  # participants × 10⁶
    monitor.upstream.records["django-mfa"]["pypi_version"] = "3.3"

    with caplog.at_level(logging.WARNING, logger="monitor.cycle"):
        result = monitor.run("check", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rule_errors"] == [{"slug": "django-otp", "rule": "many-hands", "error": BIG}]
    assert {c["slug"] for c in report["changed"]} == {"django-otp", "django-mfa"}
    assert [(t["rule"], t["package"]) for t in report["transitions"]] == [
        ("pypi-version-changed", "django-mfa")
    ]
    assert f"rule many-hands on django-otp: {BIG}" in caplog.text
    assert ("many-hands", "django-otp") in _firing(monitor)  # kept, not resolved

    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    assert f"  RULE ERROR many-hands on django-otp: {BIG} (its state is kept)\n" in result.stdout


def test_a_rule_past_its_deadline_is_its_error(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = itertools.count()  # a clock one second later at each look
    monkeypatch.setattr(expr, "LIMITS", Limits(clock=lambda: float(next(ticks))))
    _watch_with(monitor, RULE.replace("participants * repo_watchers", "participants * 2"))
    slow = RULE.replace("len(participants * repo_watchers)", "len((participants * 2) * 2)")
    (monitor.tmp_path / "team.yaml").write_text(slow)
    monitor.upstream.records["django-mfa"]["pypi_version"] = "3.3"

    report = monitor.json("check")
    assert report["rule_errors"] == [
        {"slug": "django-otp", "rule": "many-hands", "error": "ran over its 100 ms deadline"}
    ]
    assert [t["package"] for t in report["transitions"]] == ["django-mfa"]
    assert ("many-hands", "django-otp") in _firing(monitor)


RUNTIME = [
    # (id, when): over the bounds on the data, not before
    ("cpu-bomb", "max([[repo_watchers] * 1000000] * 1000000) == 0"),
    ("memory-bomb", " + ".join(["[repo_watchers] * 999999"] * 100) + " == []"),
    ("shared-literal", "max([[[repo_watchers] * 1000] * 1000] * 2) == 0"),
    ("text", "len(slug * 1000000) > 0"),
    ("version-of-long-text", "version(slug * 300).major > 0"),
    ("format", "slug % 1 == ''"),
]


@pytest.mark.parametrize("when", [case[1] for case in RUNTIME], ids=[case[0] for case in RUNTIME])
def test_evaluation_over_the_bounds_raises_limit_exceeded(when: str) -> None:
    expression = compile_expression(when)
    with pytest.raises(LimitExceeded):
        expression.evaluate({"repo_watchers": 3, "slug": "django-otp"}, None, NOW)


def test_values_within_the_bounds_still_evaluate() -> None:
    values = {"repo_watchers": 3, "participants": ["a", ""]}
    assert compile_expression("len(participants * 500000)").evaluate(values, None, NOW) == 10**6
    assert compile_expression("len([[0] * 1000] * 1000)").evaluate(values, None, NOW) == 1000
    assert compile_expression("len([] * 10000000000000)").evaluate(values, None, NOW) == 0
    assert compile_expression("sum([1, 2], 10)").evaluate(values, None, NOW) == 13
