"""The digest reads only what its period needs (issue 14), and says what it said before.

History is written as the app stores it: a watch's first ``snapshots`` row holds its whole
content (its baseline), each later row only the fields that changed at that poll, and
``parts`` keeps the latest content. The digest is compared with an oracle that replays each
package's whole history (how the digest worked out its figures before), and the SQLite VM
steps a digest takes are counted with ten times more history before its period.
"""

from __future__ import annotations

import copy
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.digest import build_digest, digest_data
from monitor.history import replay
from monitor.snapshot import parse_record
from monitor.store import Store, iso
from monitor.text import one_line
from tests.conftest import FIVE, Monitor, vm_steps

FIXTURES = Path(__file__).parent / "fixtures" / "djangopackages"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def content(fixture: str, **fields: Any) -> dict[str, Any]:
    """A djangopackages record's content as the app stores it (JSON values)."""
    record = copy.deepcopy(json.loads((FIXTURES / f"{fixture}.json").read_text()))
    record.update(fields)
    return dict(json.loads(parse_record(record).content_json()))


class Writer:
    """Writes history into a store in the app's format (baseline, then changed fields)."""

    def __init__(self, store: Store):
        self.store = store
        self.latest: dict[int, dict[str, Any]] = {}

    def watch(self, slug: str, at: datetime, values: dict[str, Any]) -> int:
        watch_id = self.store.insert(
            "watches",
            {"slug": slug, "title": slug, "notify": "[]", "active": 1, "added_at": iso(at)},
        )
        self.latest[watch_id] = {}
        self._row(watch_id, at, values, baselines='["djangopackages"]')
        return watch_id

    def poll(self, watch_id: int, at: datetime, **changes: Any) -> None:
        """A poll that stored the fields that changed (``changes``)."""
        self._row(watch_id, at, changes)

    def check(self, watch_id: int, at: datetime, status: str, error: str | None = None) -> None:
        self.store.insert(
            "checks",
            {"watch_id": watch_id, "checked_at": iso(at), "status": status, "error": error},
        )

    def alert(
        self,
        watch_id: int,
        rule: str,
        started: datetime,
        *,
        kind: str = "change",
        status: str = "fired",
        resolved: datetime | None = None,
    ) -> None:
        self.store.insert(
            "alerts",
            {
                "episode": f"{rule}-{watch_id}-{iso(started)}",
                "rule": rule,
                "watch_id": watch_id,
                "kind": kind,
                "severity": "info" if kind == "change" else "warning",
                "status": status,
                "started_at": iso(started),
                "resolved_at": iso(resolved) if resolved else None,
                "summary": f"{rule} at {iso(started)}",
            },
        )

    def _row(
        self, watch_id: int, at: datetime, delta: dict[str, Any], baselines: str | None = None
    ) -> None:
        snapshot_id = self.store.insert(
            "snapshots",
            {
                "watch_id": watch_id,
                "taken_at": iso(at),
                "data": json.dumps(delta),
                "baselines": baselines,
            },
        )
        self.latest[watch_id].update(delta)
        self.store.conn.execute(
            "INSERT INTO parts (watch_id, source, key, data) VALUES (?, 'djangopackages', ?, ?)"
            " ON CONFLICT (watch_id, source) DO UPDATE SET data = excluded.data",
            (watch_id, str(watch_id), json.dumps(self.latest[watch_id])),
        )
        self.store.update("watches", watch_id, {"snapshot_id": snapshot_id})
        self.check(watch_id, at, "ok")


def oracle(store: Store, *, now: datetime, since: timedelta) -> dict[str, dict[str, Any]]:
    """The figures of each package as the digest worked them out before issue 14: by
    replaying its whole history, and reading all its failed checks."""
    until, start = now, now - since
    out: dict[str, dict[str, Any]] = {}
    for watch in store.query("SELECT id, slug FROM watches WHERE active = 1"):
        entries = [
            (datetime.fromisoformat(e.time), e.values) for e in replay(store.history(watch["id"]))
        ]
        entries = [(at, values) for at, values in entries if at <= until]
        before = [values for at, values in entries if at < start]
        inside = [(i, values) for i, (at, values) in enumerate(entries) if at >= start]
        current = entries[-1][1] if entries else {}
        reference = before[-1] if before else (inside[0][1] if inside else {})
        seen = {v["pypi_version"] for v in before if v.get("pypi_version")}
        new_versions = []
        for index, values in inside:
            version = values.get("pypi_version")
            if version and version not in seen:
                seen.add(version)
                if index > 0:
                    new_versions.append(version)
        failed = [
            c
            for c in store.failed_checks(watch["id"])
            if start <= datetime.fromisoformat(c["checked_at"]) <= until
        ]

        def change(name: str) -> int | None:
            now_, then = current.get(name), reference.get(name)  # noqa: B023
            return None if now_ is None or then is None else now_ - then

        out[watch["slug"]] = {
            "version": current.get("pypi_version"),
            "new_versions": new_versions,
            "stars": current.get("repo_watchers"),
            "stars_change": change("repo_watchers"),
            "forks": current.get("repo_forks"),
            "forks_change": change("repo_forks"),
            "commits": list(current["commits_over_52"]) if current.get("commits_over_52") else None,
            "changed": any(index > 0 for index, _ in inside),
            "failures": len(failed),
            "last_error": (one_line(failed[-1]["error"]) or None) if failed else None,
        }
    return out


FIGURES = (
    "version",
    "new_versions",
    "stars",
    "stars_change",
    "forks",
    "forks_change",
    "commits",
    "changed",
    "failures",
    "last_error",
)


def figures(store: Store, *, now: datetime, since: timedelta) -> dict[str, dict[str, Any]]:
    """The digest's figures of each package (those :func:`oracle` works out)."""
    data = digest_data(build_digest(store, now=now, since=since))
    return {p["slug"]: {k: p[k] for k in FIGURES} for p in data["packages"]}


WINDOWS: list[tuple[float, float]] = [  # (days before NOW, period in days)
    (0, 7),
    (0, 1),
    (0, 30),
    (2.5, 7),  # a digest of the past: rows after its end
    (4.5, 1),
    (12, 3),
    (25, 14),
    (400, 7),  # before anything was stored
]


def assert_as_replayed(store: Store, windows: list[tuple[float, float]] = WINDOWS) -> None:
    for days, period in windows:
        now, since = ago(days), timedelta(days=period)
        assert figures(store, now=now, since=since) == oracle(store, now=now, since=since), (
            days,
            period,
        )


# -- (c) what a period holds ----------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Store:
    db = Store(tmp_path / "monitor.db")
    w = Writer(db)
    commits = [1] * 52
    with db.transaction():
        # Back to an old version in the period (not new), then a new one.
        back = w.watch("back", ago(30), content("django-otp", pypi_version="1.0"))
        w.poll(back, ago(20), pypi_version="2.0")
        w.poll(back, ago(3), pypi_version="1.0")
        w.poll(back, ago(2), pypi_version="3.0")
        # Watched in the middle of the period, then a release and more stars.
        mid = w.watch("midway", ago(3), content("django-mfa", pypi_version="5.0", repo_watchers=10))
        w.poll(mid, ago(1), pypi_version="5.1", repo_watchers=15)
        # Failed polls before, in and after the period (a digest of the past sees that).
        fail = w.watch("failing", ago(30), content("django-organizations"))
        w.check(fail, ago(10), "failed", "old error")
        w.check(fail, ago(5), "failed", "HTTP 500 from djangopackages")
        w.check(fail, ago(2), "failed", "timed out")
        w.check(fail, ago(0.5), "failed", "HTTP 503 from djangopackages")
        # Stars changed long before the period, then commits every day, then stars again:
        # their value at the period's start is in none of the rows read back.
        stars = w.watch(
            "stars", ago(30), content("django-oauth-toolkit", repo_watchers=100, repo_forks=7)
        )
        w.poll(stars, ago(20), repo_watchers=120)
        for day in range(19, 7, -1):
            commits = [*commits[1:], day % 3]
            w.poll(stars, ago(day), commits_over_52=commits)
        w.poll(stars, ago(2), repo_watchers=130)
        w.poll(stars, ago(1.5), commits_over_52=[*commits[1:], 5])
        # Only a baseline, long ago.
        w.watch("still", ago(40), content("django-two-factor-auth"))
    return db


def test_a_period_with_a_new_watch_a_version_back_and_failed_polls(store: Store) -> None:
    digest = build_digest(store, now=NOW)
    cards = {p.slug: p for p in digest.packages}
    assert (cards["back"].version, cards["back"].new_versions) == ("3.0", ["3.0"])
    midway = cards["midway"]
    assert (midway.version, midway.new_versions) == ("5.1", ["5.1"])
    assert (midway.stars, midway.stars_change, midway.changed) == (15, 5, True)
    assert (cards["failing"].failures, cards["failing"].last_error) == (
        3,
        "HTTP 503 from djangopackages",
    )
    assert not cards["failing"].changed
    stars = cards["stars"]
    assert (stars.stars, stars.stars_change, stars.forks, stars.forks_change) == (130, 10, 7, 0)
    assert stars.commits is not None and stars.commits[-1] == 5
    assert cards["still"].quiet and cards["still"].stars_change == 0
    assert digest.totals["releases"] == 2

    # Ending 2.5 days ago: "back" was at 1.0 again (seen before: no release), "stars" at
    # 120 (changed 20 days ago: ±0 over the week), one failure in the period so far.
    past = {p.slug: p for p in build_digest(store, now=ago(2.5)).packages}
    assert (past["back"].version, past["back"].new_versions) == ("1.0", [])
    assert (past["stars"].stars, past["stars"].stars_change) == (120, 0)
    assert past["stars"].commits is not None and past["stars"].commits[-1] == 8 % 3
    assert (past["failing"].failures, past["failing"].last_error) == (
        1,
        "HTTP 500 from djangopackages",
    )
    assert "midway" in past and past["midway"].version == "5.0"
    assert past["midway"].new_versions == [] and not past["midway"].changed
    assert_as_replayed(store)


# -- (a) the app's own history ------------------------------------------------------------


def test_a_digest_over_the_apps_history_is_the_replayed_one(monitor: Monitor) -> None:
    """Weeks of polls through the CLI (releases, a version back, stars, a failed poll, a
    package watched half-way): the digest at several moments matches the replay."""
    records = monitor.upstream.records
    newcomer = copy.deepcopy(records["django-otp"])
    newcomer.update(slug="django-newcomer", id=990_001, title="Newcomer")
    records["django-newcomer"] = newcomer
    start = monitor.clock.now
    assert monitor.run("watch", *FIVE).exit_code == 0
    otp = records["django-otp"]
    first_version = otp["pypi_version"]
    for week in range(1, 7):
        monitor.clock.advance(days=6 if week == 5 else 7)
        for slug in FIVE:
            record = records[slug]
            record["commits_over_52"] = [*record["commits_over_52"][1:], week % 3]
        if week in (2, 5):
            otp["pypi_version"] = f"9.{week}"
        if week == 4:
            otp["pypi_version"] = first_version  # back to the first one
        if week in (3, 4):
            records["django-mfa"]["repo_watchers"] += 7
        if week == 5:
            newcomer["repo_watchers"] += 3
        if week == 3:
            monitor.upstream.fail("django-organizations", [500, 500, 500])
        monitor.run("check")
        if week == 4:  # watched a day after the check
            monitor.clock.advance(days=1)
            assert monitor.run("watch", "django-newcomer").exit_code == 0
    store = monitor.store()
    try:
        end = monitor.clock.now
        moments = [start + timedelta(days=d, hours=1) for d in range(0, 43, 3)]
        for now in [*moments, end, end + timedelta(days=2)]:
            for since in (timedelta(days=7), timedelta(days=1), timedelta(days=20)):
                assert figures(store, now=now, since=since) == oracle(
                    store, now=now, since=since
                ), (now, since)
        weekly = {p.slug: p for p in build_digest(store, now=start + timedelta(days=29)).packages}
        assert weekly["django-otp"].version == first_version
        assert weekly["django-otp"].new_versions == []  # back to a version seen before
        assert weekly["django-newcomer"].new_versions == []  # its baseline only
    finally:
        store.close()


# -- (b) reads that do not grow with the history before the period --------------------------


def write_history(store: Store, weeks_before: int) -> None:
    """Five packages polled weekly for ``weeks_before`` weeks before the period and once in
    it: commits shift every week, a release every 4th week (versions come back), stars
    every 3rd, a failed poll every 10th, fired alerts with the releases and a condition
    alert that fires and resolves every 20 weeks; one still firing. What happens in a week
    depends on how long before the period it is: the weeks near it are alike in any store."""
    w = Writer(store)
    first = NOW - timedelta(weeks=weeks_before + 1, days=-1)
    with store.transaction():
        ids = [
            w.watch(
                f"pkg-{n}",
                first,
                content(FIVE[n], pypi_version="1.0", repo_watchers=100, repo_forks=10),
            )
            for n in range(5)
        ]
        commits = {i: [1] * 52 for i in ids}
        for week in range(1, weeks_before + 2):
            at = first + timedelta(weeks=week)
            k = weeks_before + 1 - week  # weeks before the last poll
            for n, watch_id in enumerate(ids):
                rng = random.Random(f"{n} {k}")
                changes: dict[str, Any] = {}
                commits[watch_id] = [*commits[watch_id][1:], rng.randrange(3)]
                changes["commits_over_52"] = commits[watch_id]
                if (k + n) % 4 == 0:
                    changes["pypi_version"] = f"1.{(k // 4) % 5}"
                    w.alert(watch_id, "pypi-version-changed", at)
                if (k + n) % 3 == 0:
                    changes["repo_watchers"] = 100 + rng.randrange(50)
                if (k + n) % 10 == 0:
                    w.check(watch_id, at - timedelta(hours=1), "failed", f"failed {k} weeks ago")
                if (k + n) % 20 == 0:
                    w.alert(
                        watch_id,
                        "no-commits-13-weeks",
                        at - timedelta(weeks=5),
                        kind="condition",
                        status="resolved",
                        resolved=at,
                    )
                w.poll(watch_id, at, **changes)
        w.alert(ids[0], "few-participants", first, kind="condition", status="firing")


def test_reads_do_not_grow_with_the_history_before_the_period(tmp_path: Path) -> None:
    counts = {}
    for weeks in (10, 100):
        store = Store(tmp_path / f"{weeks}.db")
        try:
            write_history(store, weeks)
            counts[weeks] = vm_steps(store, lambda: build_digest(store, now=NOW))  # noqa: B023
            assert_as_replayed(store, [(0, 7), (0, 1), (3, 7)])
        finally:
            store.close()
    # Ten times the history before the period, the same reads: an index seek is one VM step
    # however deep (the digest before issue 14 took 7-8 times the steps).
    assert counts[100] <= counts[10] * 1.2, counts


def test_the_digests_lookups_use_their_indexes(store: Store) -> None:
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        store.digest_value_before(1, "repo_watchers", 10**9)
        store.digest_value_before(1, "repo_forks", 10**9)
        store.digest_version_seen(1, "1.0", 10**9)
        store.digest_alerts(NOW)
        store.digest_failed_checks(1).close()
    finally:
        store.conn.set_trace_callback(None)
    plans = [
        " | ".join(row[3] for row in store.conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
        for sql in statements
    ]
    assert len(plans) == 5, statements
    assert "INDEX idx_snapshots_repo_watchers" in plans[0], plans[0]
    assert "INDEX idx_snapshots_repo_forks" in plans[1], plans[1]
    assert "INDEX idx_snapshots_pypi_version" in plans[2], plans[2]
    for index in ("idx_alerts_status", "idx_alerts_started_at", "idx_alerts_resolved_at"):
        assert f"INDEX {index}" in plans[3], plans[3]
    assert "INDEX idx_checks_failed" in plans[4], plans[4]
