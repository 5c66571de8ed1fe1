"""Issue 10, items 3-5: a hostile message template renders within bounded time and output,
falling back to the default message; a constant one over the bounds is refused at load,
without jinja folding it first (26 s and 3.9 GB); a summary is at most 2,000 characters."""

from __future__ import annotations

import itertools
import json
import logging
import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monitor import templates
from monitor.templates import Limits
from tests.conftest import Monitor

BIG = "would build a value over 1,000,000 characters or elements (1 MB)"


def _rule_file(path: Path, message: str, *, rule_id: str = "hostile") -> Path:
    path.write_text(
        textwrap.dedent(f"""\
        rules:
          - id: {rule_id}
            description: A new version
            when: changed("pypi_version")
            message: {json.dumps(message)}
        """)
    )
    return path


REFUSED = [
    # (id, template, problem)
    ("repeat-10e9", "{{ 'a' * 10**9 }}", f"`*` {BIG} (template line 1)"),
    ("repeat-10e8", "x\n{{ 'a' * 10**8 }}", f"`*` {BIG} (template line 2)"),
    ("power", "{{ 7 ** 100000000 }}", f"`**` {BIG} (template line 1)"),
    ("format", "{{ '%0999999999d' % 1 }}", f"`%` {BIG} (template line 1)"),
    ("concat", "{{ ('a' * 999000) ~ ('a' * 999000) }}", f"`~` {BIG} (template line 1)"),
]


@pytest.mark.parametrize(
    ("message", "problem"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED]
)
def test_rules_check_refuses_a_constant_template_over_the_bounds(
    monitor: Monitor, message: str, problem: str
) -> None:
    path = _rule_file(monitor.tmp_path / "hostile.yaml", message)
    result = monitor.run("rules", "check", str(path))
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"{path}:5: `message` is not a valid jinja2 template: {problem}\n")


def _limit_memory() -> None:
    """1 GB of address space: without the fix, folding `'a' * 10**9` fails fast (and is then
    not refused) instead of taking 26 s and 3.9 GB."""
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_loading_a_template_does_not_fold_a_huge_constant(monitor: Monitor) -> None:
    path = _rule_file(monitor.tmp_path / "hostile.yaml", "{{ 'a' * 10**9 }}")
    command = ["-m", "monitor", "--config", str(monitor.config_path), "rules", "check", str(path)]
    result = subprocess.run(
        [sys.executable, *command],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limit_memory,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == f"{path}:5: `message` is not a valid jinja2 template: `*` {BIG}" + (
        " (template line 1)\n"
    )


def _fire(monitor: Monitor, message: str) -> dict[str, str]:
    """Watch django-otp with a change rule using ``message``, publish a new version, check:
    the alert the rule raised, as `alerts --json` shows it."""
    _rule_file(monitor.tmp_path / "team.yaml", message)
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    assert monitor.run("watch", "django-otp").exit_code == 0
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    result = monitor.run("check")
    assert result.exit_code == 0, result.output
    (alert,) = [a for a in monitor.json("alerts") if a["rule"] == "hostile"]
    return alert


DEFAULT = "django-otp: A new version — pypi_version: 1.7.0 → 1.8.0"
FAILING = [
    # (id, template, why it fails): each renders the default message instead
    (
        "loops-without-output",
        "{% for i in range(100000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
        "ran over its 100 ms deadline",
    ),
    ("power-of-a-field", "{{ repo_watchers ** 1000000 }}", f"`**` {BIG}"),
    ("repeat-of-a-field", "{{ title * 10**8 }}", f"`*` {BIG}"),
    ("filter", "{{ title|center(10**9) }}", f"center() {BIG}"),
    ("method", "{{ title.ljust(10**9) }}", f"str.ljust() {BIG}"),
    ("replace", "{{ (title * 1000).replace('o', title * 1000) }}", f"str.replace() {BIG}"),
    ("join", "{{ (title * 1000)|join(title * 1000) }}", f"join() {BIG}"),
    ("concat", "{{ (title * 99999) ~ (title * 99999) }}", f"`~` {BIG}"),
]


@pytest.mark.parametrize(("message", "why"), [c[1:] for c in FAILING], ids=[c[0] for c in FAILING])
def test_a_template_over_its_bounds_gives_the_default_message(
    monitor: Monitor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    message: str,
    why: str,
) -> None:
    if "deadline" in why:
        ticks = itertools.count()  # a clock 10 ms later at each look: no real time
        monkeypatch.setattr(templates, "LIMITS", Limits(clock=lambda: next(ticks) / 100))
    with caplog.at_level(logging.WARNING, logger="monitor.rules"):
        alert = _fire(monitor, message)
    assert alert["summary"] == DEFAULT
    assert f"rule hostile: message template failed, default used: {why}" in caplog.text


def test_a_garbage_collection_during_a_render_is_not_the_templates_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A full collection of a big heap can outlast the deadline (a loaded test run once
    gave a shipped rule its default message so): its time is not counted."""
    import gc

    now = [0.0]
    monkeypatch.setattr(templates, "LIMITS", Limits(clock=lambda: now[0]))
    # the clock is read at every step, also in the collector's callbacks (a CI run once
    # read it in one and raised there, where nothing catches)
    monkeypatch.setattr(templates, "_CHECK_EVERY", 1)

    def slow_collection(phase: str, info: object) -> None:
        if phase == "stop":  # called before the render's own callback, added later
            now[0] += 1.0  # a second in the collector, ten deadlines

    class Collects:
        def __str__(self) -> str:
            gc.collect()
            return "x"

    template = templates.compile_template(
        templates.BoundedEnvironment(), "{{ value }}{% for i in range(2000) %}{% endfor %}"
    )
    gc.callbacks.append(slow_collection)
    try:
        rendered = templates.render(template, {"value": Collects()}, max_chars=100)
    finally:
        gc.callbacks.remove(slow_collection)
    assert rendered == "x"


def test_a_long_rendered_summary_is_cut_at_2000_characters(monitor: Monitor) -> None:
    loops = "{% for i in range(100000) %}{% for j in range(100) %}x{% endfor %}{% endfor %}"
    alert = _fire(monitor, loops)
    assert alert["summary"] == "x" * 1999 + "…"


def test_a_long_default_summary_is_cut_at_2000_characters(monitor: Monitor) -> None:
    monitor.upstream.records["django-otp"]["title"] = "T" * 100_000
    alert = _fire(monitor, "")
    assert alert["summary"] == "T" * 1999 + "…"


def test_templates_keep_their_features(monitor: Monitor) -> None:
    message = (
        "{{ title }} {{ old.pypi_version }} → {{ new.pypi_version }} ({{ rule }}, {{ severity }},"
        " {{ slug }}, {{ repo_watchers }} stars, major {{ version(pypi_version).major }},"
        " {{ changes|map(attribute='field')|join(', ') }}, {{ 'ab' * 2 }}, {{ 2 ** 10 }})"
    )
    alert = _fire(monitor, message)
    assert alert["summary"] == (
        "django-otp 1.7.0 → 1.8.0 (hostile, warning, django-otp, 621 stars, major 1,"
        " pypi_version, abab, 1024)"
    )
