"""Issue 14: a package whose values did not change is not evaluated again by the rules whose
verdict those values decide alone (``watches.quiet``, CycleRecorder.quiet_key). What could
change such a verdict without a change of values must still reach it: an edited rule, the
project's Django version, the pin; and the rules that read the clock or djangopackages'
bookkeeping are evaluated on every poll."""

from __future__ import annotations

import sqlite3
import textwrap
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from monitor import cycle
from monitor.expr import Expression
from monitor.store import Store
from tests.conftest import FIVE, Monitor

MFA = "django-mfa"
OTP = "django-otp"


@pytest.fixture
def evaluations(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    """How often each expression is evaluated, by its source text."""
    counted: Counter[str] = Counter()
    evaluate = Expression.evaluate

    def counting(self: Expression, *args: Any) -> Any:
        counted[self.source] += 1
        return evaluate(self, *args)

    monkeypatch.setattr(Expression, "evaluate", counting)
    yield counted


def _use_rules(monitor: Monitor, text: str, extra: str = "") -> None:
    (monitor.tmp_path / "team.yaml").write_text(textwrap.dedent(text))
    monitor.configure('[rules]\npaths = ["team.yaml"]\n' + extra)


def _firing(monitor: Monitor) -> set[tuple[str, str]]:
    return {(a["package"], a["rule"]) for a in monitor.json("alerts") if a["status"] == "firing"}


def _quiet(monitor: Monitor, slug: str) -> bytes | None:
    store = monitor.store()
    try:
        return store.conn.execute("SELECT quiet FROM watches WHERE slug = ?", (slug,)).fetchone()[0]
    finally:
        store.close()


def _check(monitor: Monitor, **advance: int) -> None:
    monitor.clock.advance(**advance or {"hours": 6})
    result = monitor.run("check")
    assert result.exit_code == 0, result.output


def test_an_unchanged_package_is_not_evaluated_again_by_its_steady_rules(
    monitor: Monitor, evaluations: Counter[str]
) -> None:
    _use_rules(
        monitor,
        """\
        rules:
          - {id: popular, when: repo_watchers > 100000}
          - {id: fresh, when: days_since(last_updated) < 1}
        """,
    )
    assert monitor.run("watch", OTP).exit_code == 0
    assert _quiet(monitor, OTP) is not None  # the baseline evaluated every rule: all false
    evaluations.clear()
    _check(monitor)
    _check(monitor)
    # the steady rule is known false; the one reading the clock is evaluated each poll
    assert evaluations["repo_watchers > 100000"] == 0
    assert evaluations["days_since(last_updated) < 1"] == 2

    monitor.upstream.records[OTP]["repo_watchers"] += 1  # a change: every rule, once
    _check(monitor)
    assert evaluations["repo_watchers > 100000"] == 1
    _check(monitor)
    assert evaluations["repo_watchers > 100000"] == 1


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(
            ("rules:\n  - {id: it, when: repo_watchers > 100000}\n", ""),
            ("rules:\n  - {id: it, when: repo_watchers > 10}\n", ""),
            id="an edited rule",
        ),
        pytest.param(
            ("rules:\n  - {id: it, when: repo_watchers > 10, packages: [other]}\n", ""),
            ("rules:\n  - {id: it, when: repo_watchers > 10, packages: [django-*]}\n", ""),
            id="a rule scoped to more packages",
        ),
        pytest.param(
            (
                'rules:\n  - {id: it, when: project.django == "4.2"}\n',
                '[project]\ndjango = "5.2"\n',
            ),
            (
                'rules:\n  - {id: it, when: project.django == "4.2"}\n',
                '[project]\ndjango = "4.2"\n',
            ),
            id="another Django version in the project",
        ),
    ],
)
def test_a_new_setting_is_evaluated_on_unchanged_packages(
    monitor: Monitor, before: tuple[str, str], after: tuple[str, str]
) -> None:
    _use_rules(monitor, before[0], "\n" + before[1])
    monitor.run("watch", OTP)
    _check(monitor)
    assert (OTP, "it") not in _firing(monitor)
    _use_rules(monitor, after[0], "\n" + after[1])
    _check(monitor)
    assert (OTP, "it") in _firing(monitor)


def test_a_new_pin_is_evaluated_on_an_unchanged_package(monitor: Monitor) -> None:
    _use_rules(monitor, 'rules:\n  - {id: on-old, when: pinned == "1.0.0"}\n')
    monitor.run("watch", f"{OTP}==2.0.0")
    _check(monitor)
    assert (OTP, "on-old") not in _firing(monitor)
    assert monitor.run("watch", OTP, "--pin", "1.0.0").exit_code == 0
    _check(monitor)
    assert (OTP, "on-old") in _firing(monitor)


def test_a_rule_reading_the_clock_fires_on_an_unchanged_package(monitor: Monitor) -> None:
    _use_rules(monitor, "rules:\n  - {id: stale, when: days_since(last_updated) > 20000}\n")
    monitor.run("watch", OTP)
    _check(monitor)
    assert (OTP, "stale") not in _firing(monitor)
    _check(monitor, days=20000)
    assert (OTP, "stale") in _firing(monitor)


def test_a_rule_reading_bookkeeping_fires_when_only_bookkeeping_moved(monitor: Monitor) -> None:
    # djangopackages' last_fetched is left out of a record's fingerprint: the record is
    # "unchanged", yet a rule reading it sees a new value.
    _use_rules(monitor, "rules:\n  - {id: refetched, when: last_fetched < created}\n")
    monitor.run("watch", OTP)
    _check(monitor)
    assert (OTP, "refetched") not in _firing(monitor)
    monitor.upstream.records[OTP]["last_fetched"] = "2001-01-01T00:00:00Z"
    _check(monitor)
    assert (OTP, "refetched") in _firing(monitor)


def test_a_rule_that_holds_keeps_holding_on_an_unchanged_package_and_resolves(
    monitor: Monitor, evaluations: Counter[str]
) -> None:
    _use_rules(
        monitor,
        """\
        rules:
          - id: popular
            when: repo_watchers > 10
            repeat: 1d
            message: "{{ title }}: {{ repo_watchers }} stars, {{ repo_forks }} forks"
        """,
    )
    record = monitor.upstream.records[OTP]
    monitor.run("watch", OTP)
    assert (OTP, "popular") in _firing(monitor)
    key = _quiet(monitor, OTP)
    assert key is not None and key.endswith(b"popular")  # the steady rules that held
    evaluations.clear()
    _check(monitor)
    assert (OTP, "popular") in _firing(monitor)
    # known to hold, not evaluated, and its reminder still goes out a day on
    transitions = monitor.count("transitions")
    monitor.clock.advance(days=1)
    reminded = monitor.run("check")
    assert monitor.count("transitions") == transitions + 1
    # its message reads every value stored, though none was compared
    expected = f"{record['title']}: {record['repo_watchers']} stars, {record['repo_forks']} forks"
    assert expected in reminded.stdout + reminded.stderr, reminded.output
    assert evaluations["repo_watchers > 10"] == 0
    monitor.upstream.records[OTP]["repo_watchers"] = 3
    _check(monitor)
    assert (OTP, "popular") not in _firing(monitor)
    assert _quiet(monitor, OTP) is not None
    _check(monitor)
    monitor.upstream.records[OTP]["repo_watchers"] = 30
    _check(monitor)
    assert (OTP, "popular") in _firing(monitor)


def test_a_rule_held_for_some_polls_fires_on_an_unchanged_package(monitor: Monitor) -> None:
    _use_rules(monitor, "rules:\n  - {id: popular, when: repo_watchers > 10, for: 3}\n")
    monitor.run("watch", OTP)
    assert (OTP, "popular") not in _firing(monitor)  # 1 poll of 3
    _check(monitor)
    assert (OTP, "popular") not in _firing(monitor)
    _check(monitor)
    assert (OTP, "popular") in _firing(monitor)


def test_an_unknown_verdict_on_an_alert_in_progress_is_evaluated_again(
    monitor: Monitor, evaluations: Counter[str]
) -> None:
    # unknown keeps a state where false would end it: no key while one is in progress
    _use_rules(monitor, "rules:\n  - {id: forked, when: repo_forks > 1, for: 3}\n")
    monitor.run("watch", OTP)
    monitor.upstream.records[OTP]["repo_forks"] = None
    _check(monitor)
    assert _quiet(monitor, OTP) is None
    evaluations.clear()
    _check(monitor)
    assert evaluations["repo_forks > 1"] == 1


def test_a_failed_poll_clears_the_key(monitor: Monitor) -> None:
    monitor.run("watch", OTP)
    assert _quiet(monitor, OTP) is not None
    monitor.upstream.fail(OTP, [500, 500, 500])
    monitor.clock.advance(hours=6)
    assert monitor.run("check").exit_code == 1
    assert _quiet(monitor, OTP) is None


def test_with_every_source_polled_an_unchanged_package_is_quiet_and_volatile_rules_still_fire(
    monitor: Monitor, evaluations: Counter[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_rules(
        monitor,
        """\
        rules:
          - {id: inactive, when: pypi.status != "active"}
          - {id: old-release, when: days_since(pypi.released_at) > 365}
        """,
    )
    monitor.configure('[rules]\npaths = ["team.yaml"]\n', sources=("pypi", "github", "osv"))
    assert monitor.run("watch", OTP).exit_code == 0
    _check(monitor)  # the first poll with the sources' validators
    planned = Counter[str]()
    plan = cycle._Planner.plan
    monkeypatch.setattr(
        cycle._Planner, "plan", lambda self: planned.update([self.watch.slug]) or plan(self)
    )
    evaluations.clear()
    _check(monitor)
    assert planned[OTP] == 0  # every source said "not modified": nothing to compare
    assert evaluations['pypi.status != "active"'] == 0
    assert evaluations["days_since(pypi.released_at) > 365"] > 0  # evaluated each poll
    assert (OTP, "old-release") not in _firing(monitor)
    _check(monitor, days=400)
    assert (OTP, "old-release") in _firing(monitor)

    _declare_django(monitor, "6.0")  # PyPI's answer changes: compared, every rule evaluated
    _check(monitor)
    assert planned[OTP] == 1
    assert evaluations['pypi.status != "active"'] > 0


def _declare_django(monitor: Monitor, version: str) -> None:
    monitor.upstream.world.pypi.set_classifiers(  # type: ignore[attr-defined]
        OTP, ["Framework :: Django", f"Framework :: Django :: {version}"]
    )


def _pages(monitor: Monitor) -> dict[bytes, int]:
    store = monitor.store()
    try:
        return dict(store.conn.execute("SELECT digest, day FROM list_pages"))
    finally:
        store.close()


def test_a_list_page_read_again_is_recalled_and_forgotten_two_days_after(
    monitor: Monitor,
) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0
    fetched = monitor.upstream.package_requests  # the watch fetched each
    _check(monitor)
    (first,) = _pages(monitor)  # the one list page, as read
    report = monitor.json("check")
    assert (report["checked"], report["unchanged"]) == (5, 5)
    assert list(_pages(monitor)) == [first]  # recalled, and kept
    assert monitor.upstream.package_requests == fetched  # each recalled from its page

    monitor.upstream.records[OTP]["repo_watchers"] += 1  # the page's body changes
    _check(monitor, days=1)
    assert len(_pages(monitor)) == 2  # yesterday's is kept a day more
    _check(monitor, days=1)
    assert first not in _pages(monitor)


def test_a_recall_used_again_the_same_day_writes_nothing(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0
    _check(monitor)
    (first, read_on) = next(iter(_pages(monitor).items()))
    kept: list[bytes | None] = []
    keep_page = Store.keep_page

    def counted(store: Store, digest: bytes, recall: bytes | None, *, day: int) -> None:
        kept.append(recall)
        keep_page(store, digest, recall, day=day)

    monkeypatch.setattr(Store, "keep_page", counted)
    monitor.clock.advance(hours=1)
    assert monitor.json("check")["unchanged"] == 5
    assert kept == []  # recalled, and already marked as read today
    _check(monitor, days=1)
    assert kept == [None]  # recalled on a new day: its day moves on, nothing else
    assert _pages(monitor) == {first: read_on + 1}


def test_recalls_that_cannot_be_kept_or_forgotten_cost_the_cycle_nothing(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0

    def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "keep_page", full)
    monkeypatch.setattr(Store, "forget_pages", full)
    monitor.clock.advance(hours=6)
    report = monitor.json("check")
    assert (report["checked"], report["unchanged"]) == (5, 5)
    assert _pages(monitor) == {}


def test_a_rule_reading_only_sources_not_polled_is_evaluated_once_a_cycle(
    monitor: Monitor, evaluations: Counter[str]
) -> None:
    # GitHub is off: its fields are never known, so the rule comes out the same on every
    # package (here true, through default()), worked out once per cycle
    _use_rules(monitor, "rules:\n  - id: unstarred\n    when: default(github.stars, 0) == 0\n")
    assert monitor.run("watch", *FIVE).exit_code == 0
    assert {slug for slug, rule in _firing(monitor) if rule == "unstarred"} == set(FIVE)
    evaluations.clear()
    for slug in FIVE:  # every package changed: each planned in full
        monitor.upstream.records[slug]["repo_watchers"] += 1
    _check(monitor)
    assert evaluations["default(github.stars, 0) == 0"] == 1

    # turned on, GitHub's answer decides, package by package
    monitor.configure('[rules]\npaths = ["team.yaml"]\n', sources=("github",))
    evaluations.clear()
    _check(monitor)
    assert evaluations["default(github.stars, 0) == 0"] >= len(FIVE)


def test_a_cycle_of_batches_reads_rule_states_once_and_again_after_another_commit(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_rules(monitor, "rules:\n  - {id: many-forks, when: repo_forks > 1000, for: 2}\n")
    assert monitor.run("watch", *FIVE).exit_code == 0
    last = sorted(FIVE)[-1]  # in the third batch of two
    monkeypatch.setattr(cycle, "BATCH", 2)
    reads: list[list[int] | None] = []
    rule_states = Store.rule_states

    def counted(store: Store, watch_ids: list[int] | None) -> list[tuple[Any, ...]]:
        reads.append(watch_ids)
        return rule_states(store, watch_ids)

    monkeypatch.setattr(Store, "rule_states", counted)
    monitor.clock.advance(hours=6)
    assert monitor.json("check")["checked"] == 5
    assert reads == [None]  # every state at once, for the three batches

    # Once the first batch is written, another process's check sees many-forks hold on
    # the last package once: this cycle reads that batch's states again, and it fires.
    forget = cycle.CycleRecorder._forget
    held_once = (
        "INSERT INTO rule_states (rule, watch_id, holds) SELECT 'many-forks', id, 1"
        " FROM watches WHERE slug = ?"
    )

    def commit_once(recorder: cycle.CycleRecorder) -> None:
        forget(recorder)
        if len(reads) == 2:
            conn = sqlite3.connect(monitor.tmp_path / "monitor.db", isolation_level=None)
            try:
                conn.execute(held_once, (last,))
            finally:
                conn.close()

    monkeypatch.setattr(cycle.CycleRecorder, "_forget", commit_once)
    monitor.upstream.records[last]["repo_forks"] = 5000
    monitor.clock.advance(hours=6)
    report = monitor.json("check")
    assert [(t["package"], t["rule"]) for t in report["transitions"]] == [(last, "many-forks")]
    assert reads[1] is None and reads[2:] and all(ids for ids in reads[2:])
    assert {alert for alert in _firing(monitor) if alert[1] == "many-forks"} == {
        (last, "many-forks")
    }


def test_a_check_of_every_package_reads_the_watch_rows_once(
    monitor: Monitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert monitor.run("watch", *FIVE).exit_code == 0
    reads: list[str] = []
    watches, watched_slugs = Store.watches, Store.watched_slugs

    def read_watches(store: Store, slugs: list[str] | None) -> Any:
        reads.append("every watch" if slugs is None else f"{len(slugs)} watches")
        return watches(store, slugs)

    def read_slugs(store: Store) -> list[str]:
        reads.append("names")
        return watched_slugs(store)

    monkeypatch.setattr(Store, "watches", read_watches)
    monkeypatch.setattr(Store, "watched_slugs", read_slugs)
    monitor.clock.advance(hours=6)
    report = monitor.json("check")
    assert (report["checked"], reads) == (5, ["every watch"])  # the rows name them

    reads.clear()
    report = monitor.json("check", *sorted(FIVE)[:2])  # named: checked against the names
    assert (report["checked"], reads) == (2, ["names", "2 watches"])
