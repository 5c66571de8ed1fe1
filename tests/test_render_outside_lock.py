"""Issue 10, item 3: a rule's message template is never rendered while the cycle holds the
write lock, so a slow template cannot make a concurrent `monitor mute` fail with "database is
locked" — not even when another process commits between the poll and the recording."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import pytest

from monitor.rules import Rule
from monitor.store import Store
from tests.conftest import Monitor

RULES = """\
rules:
  - id: version-note
    description: A new version
    when: changed("pypi_version")
    message: "{{ slug }} is now {{ new.pypi_version }}"
  - id: many-forks
    description: Many forks
    when: repo_forks > 1000
    for: 2
    message: "{{ slug }} has {{ repo_forks }} forks"
"""


def _write_lock_is_free(monitor: Monitor) -> str:
    """What `monitor mute` would meet: BEGIN IMMEDIATE from another connection, no waiting."""
    conn = sqlite3.connect(monitor.tmp_path / "monitor.db", timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return "free"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        conn.close()


@pytest.fixture
def renders(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Watches django-otp with RULES in force, then probes the write lock during every
    rule message render of what follows; the list holds one outcome per render."""
    (monitor.tmp_path / "team.yaml").write_text(RULES)
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    assert monitor.run("watch", "django-otp").exit_code == 0
    return _probe_renders(monitor, monkeypatch)


def _probe_renders(monitor: Monitor, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, probe the write lock during every rule message render; the list holds
    one outcome per render."""
    probes: list[str] = []
    render = Rule.render_message

    def probing(rule: Rule, context: dict[str, Any]) -> str:
        probes.append(_write_lock_is_free(monitor))
        return render(rule, context)

    monkeypatch.setattr(Rule, "render_message", probing)
    return probes


def _summaries(report: dict[str, Any]) -> dict[str, str]:
    return {t["rule"]: t["summary"] for t in report["transitions"]}


def _commit_from_another_process(monitor: Monitor, sql: str, *params: Any) -> None:
    conn = sqlite3.connect(monitor.tmp_path / "monitor.db", isolation_level=None)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


def _after_first_call(
    monitor: Monitor,
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    action: Callable[[], None],
) -> None:
    """Run ``action`` (a commit by another connection) right after the first call of
    ``owner.name``, as if another process had written at that moment."""
    original = getattr(owner, name)
    done: list[bool] = []

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        if not done:
            done.append(True)
            action()
        return result

    monkeypatch.setattr(owner, name, wrapped)


def test_templates_render_while_another_process_can_write(
    monitor: Monitor, renders: list[str]
) -> None:
    monitor.upstream.records["django-otp"]["pypi_version"] = "9.0.0"
    monitor.upstream.records["django-otp"]["repo_forks"] = 5000
    monitor.clock.advance(hours=7)
    assert monitor.json("check")["transitions"]  # many-forks holds once: `for: 2`
    monitor.clock.advance(hours=7)
    summaries = _summaries(monitor.json("check"))

    assert summaries["many-forks"] == "django-otp has 5000 forks"
    assert renders and set(renders) == {"free"}
    assert monitor.count("alerts") >= 2


def test_a_commit_between_poll_and_record_still_renders_outside_the_lock(
    monitor: Monitor, renders: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process mutes the package while it is polled: the transition is recorded
    muted, its template rendered with the lock free."""
    from monitor.cycle import CycleRecorder

    mute = (
        "INSERT INTO mutes (slug, rule, created_at, until)"
        " VALUES ('django-otp', 'version-note', '2026-01-01T00:00:00Z', NULL)"
    )
    _after_first_call(
        monitor,
        monkeypatch,
        CycleRecorder,
        "prepare",
        lambda: _commit_from_another_process(monitor, mute),
    )
    monitor.upstream.records["django-otp"]["pypi_version"] = "9.0.0"
    monitor.clock.advance(hours=7)
    report = monitor.json("check")

    [note] = [t for t in report["transitions"] if t["rule"] == "version-note"]
    assert note["summary"] == "django-otp is now 9.0.0"
    assert note["muted"] is True
    assert renders and set(renders) == {"free"}


def test_a_transition_decided_by_a_concurrent_commit_is_rendered_after_a_rollback(
    monitor: Monitor, renders: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concurrent check saw many-forks hold once, and committed that just after this
    check read the rule states: this check's poll makes it fire, a transition the read did
    not foresee. The write transaction rolls back, the message is rendered outside, and the
    retry records the alert with it."""
    held_once = (
        "INSERT INTO rule_states (rule, watch_id, holds, alert_id, firing_since,"
        " last_notified_at, episode) SELECT 'many-forks', id, 1, NULL, NULL, NULL, NULL"
        " FROM watches WHERE slug = 'django-otp'"
    )
    _after_first_call(
        monitor,
        monkeypatch,
        Store,
        "rule_states",
        lambda: _commit_from_another_process(monitor, held_once),
    )
    monitor.upstream.records["django-otp"]["repo_forks"] = 5000
    monitor.clock.advance(hours=7)
    report = monitor.json("check")

    assert _summaries(report) == {"many-forks": "django-otp has 5000 forks"}
    assert renders == ["free"]
    assert monitor.count("alerts") == 1
    assert monitor.count("transitions") == 1


def test_messages_outdated_at_every_attempt_fall_back_to_the_default_text(
    monitor: Monitor, renders: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process renames the package after every render: each write transaction finds
    the watch changed, and the message it needs not rendered for it. After three attempts the
    rule's default text is used rather than rendering under the lock."""
    render = Rule.render_message
    rename = "UPDATE watches SET title = title || '!' WHERE slug = 'django-otp'"
    rendered: list[str] = []

    def renaming(rule: Rule, context: dict[str, Any]) -> str:
        rendered.append(rule.id)
        text = render(rule, context)
        _commit_from_another_process(monitor, rename)
        return text

    monkeypatch.setattr(Rule, "render_message", renaming)
    monitor.upstream.records["django-otp"]["pypi_version"] = "9.0.0"
    monitor.clock.advance(hours=7)
    transitions = monitor.count("transitions")
    report = monitor.json("check")
    summary = _summaries(report)["version-note"]

    assert summary.startswith(monitor.upstream.records["django-otp"]["title"])
    assert "A new version" in summary
    assert rendered.count("version-note") == 3
    assert renders and set(renders) == {"free"}
    assert monitor.count("transitions") == transitions + len(report["transitions"])


def test_watch_renders_its_baseline_alerts_before_taking_the_write_lock(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`watch` writes the new watch and its baseline in one transaction of its own; a
    condition rule with a template that holds at once is rendered before it."""
    (monitor.tmp_path / "team.yaml").write_text(
        "rules:\n  - id: popular\n    when: repo_watchers > 10\n"
        '    message: "{{ slug }} has {{ repo_watchers }} stars"\n'
    )
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')
    monitor.run("list")  # the database exists before the probe opens it
    probes = _probe_renders(monitor, monkeypatch)
    assert monitor.run("watch", "django-otp").exit_code == 0

    assert probes == ["free"]
    [alert] = monitor.json("alerts")
    assert alert["rule"] == "popular"
    assert alert["summary"].startswith("django-otp has ") and alert["summary"].endswith(" stars")


def test_an_alert_that_resolves_renders_its_message_outside_the_lock(
    monitor: Monitor, renders: list[str]
) -> None:
    """The rule no longer holds, its alert resolves: the message of that transition is
    rendered before the write, from the state the package had (it holds nothing now)."""
    monitor.upstream.records["django-otp"]["repo_forks"] = 1001
    for _ in range(2):  # `for: 2`
        monitor.clock.advance(hours=7)
        monitor.json("check")
    monitor.upstream.records["django-otp"]["repo_forks"] = 1000  # no change rule fires
    renders.clear()
    monitor.clock.advance(hours=7)
    report = monitor.json("check")

    [resolved] = report["transitions"]
    assert (resolved["rule"], resolved["status"]) == ("many-forks", "resolved")
    assert resolved["summary"] == "django-otp has 1000 forks"
    assert renders == ["free"]  # once, before the write: no rollback
