"""Issue 9, item 5: a rule that is disabled or deleted resolves its firing alerts silently on
the next poll (SPEC §6), so `alerts` and the digest never show alerts of rules that are gone."""

from __future__ import annotations

import json
import textwrap

from tests.conftest import Monitor


def _use_rules(monitor: Monitor, text: str) -> None:
    (monitor.tmp_path / "team.yaml").write_text(textwrap.dedent(text))
    monitor.configure('[rules]\npaths = ["team.yaml"]\n')


def _alerts(monitor: Monitor, *args: str) -> dict[str, dict]:
    return {a["rule"]: a for a in monitor.json("alerts", *args) if a["package"] == "django-mfa"}


def _rule_states(monitor: Monitor) -> list[str]:
    store = monitor.store()
    try:
        return [row["rule"] for row in store.query("SELECT rule FROM rule_states")]
    finally:
        store.close()


def test_disabling_a_shipped_rule_resolves_its_alert_silently(monitor: Monitor) -> None:
    assert monitor.run("watch", "django-mfa").exit_code == 0
    assert _alerts(monitor)["no-commits-26-weeks"]["status"] == "firing"
    deliveries = monitor.count("deliveries")
    transitions = monitor.count("transitions")

    _use_rules(monitor, "rules:\n  - id: no-commits-26-weeks\n    enabled: false\n")
    monitor.clock.advance(days=1)
    result = monitor.run("check", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["transitions"] == []
    assert "no-commits-26-weeks" not in result.stderr  # nothing printed to the console channel
    assert monitor.count("deliveries") == deliveries
    assert monitor.count("transitions") == transitions

    assert "no-commits-26-weeks" not in _alerts(monitor)
    gone = _alerts(monitor, "--all")["no-commits-26-weeks"]
    assert gone["status"] == "resolved"
    assert gone["resolved_at"] is not None
    assert _rule_states(monitor) == []
    digest = monitor.run("digest")
    assert digest.exit_code == 0, digest.output
    assert "still firing" not in digest.stdout
    assert "0 alerts firing" in digest.stdout
    assert "no-commits-26-weeks" not in digest.stdout  # not "resolved in the period" either

    # Turned on again, the rule starts afresh: a new alert, notified once.
    _use_rules(monitor, "rules: []\n")
    transitions = monitor.json("check")["transitions"]
    assert [(t["rule"], t["status"]) for t in transitions] == [("no-commits-26-weeks", "firing")]


def test_deleting_a_user_rule_resolves_its_alert_silently(monitor: Monitor) -> None:
    _use_rules(
        monitor,
        """\
        rules:
          - id: dead-and-popular
            when: sum(commits_over_52) == 0 and repo_watchers > 100
            severity: critical
        """,
    )
    monitor.run("watch", "django-mfa")
    assert _alerts(monitor)["dead-and-popular"]["status"] == "firing"
    _use_rules(monitor, "rules: []\n")
    assert monitor.json("check")["transitions"] == []
    assert "dead-and-popular" not in _alerts(monitor)
    assert _alerts(monitor, "--all")["dead-and-popular"]["status"] == "resolved"
    # The rules still loaded keep their alerts.
    assert _alerts(monitor)["no-commits-26-weeks"]["status"] == "firing"
    assert _rule_states(monitor) == ["no-commits-26-weeks"]


def test_a_rule_no_longer_applying_to_a_package_resolves_its_alert_silently(
    monitor: Monitor,
) -> None:
    _use_rules(monitor, "rules:\n  - {id: dead, when: sum(commits_over_52) == 0}\n")
    monitor.run("watch", "django-mfa")
    assert _alerts(monitor)["dead"]["status"] == "firing"
    _use_rules(
        monitor, "rules:\n  - {id: dead, when: sum(commits_over_52) == 0, packages: [other]}\n"
    )
    assert monitor.json("check")["transitions"] == []
    assert "dead" not in _alerts(monitor)


def test_a_failed_poll_also_retires_a_removed_rule(monitor: Monitor) -> None:
    monitor.run("watch", "django-mfa")
    _use_rules(monitor, "rules:\n  - id: no-commits-26-weeks\n    enabled: false\n")
    monitor.upstream.fail("django-mfa", [500, 500, 500])
    assert monitor.run("check").exit_code == 1
    assert "no-commits-26-weeks" not in _alerts(monitor)


def test_a_deleted_change_rules_recent_alerts_are_only_history(monitor: Monitor) -> None:
    _use_rules(
        monitor,
        """\
        rules:
          - id: team-release
            description: Our release rule
            when: changed("pypi_version")
            severity: info
        """,
    )
    assert monitor.run("watch", "django-otp").exit_code == 0
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    assert monitor.run("check").exit_code == 0
    assert "team-release" in {a["rule"] for a in monitor.json("alerts")}
    assert "team-release" in monitor.run("digest").stdout

    _use_rules(monitor, "rules: []\n")  # the team deletes its rule
    assert "team-release" not in {a["rule"] for a in monitor.json("alerts")}
    assert "team-release" in {a["rule"] for a in monitor.json("alerts", "--all")}
    assert "team-release" not in monitor.run("digest").stdout
