"""A weekly ``commits_over_52`` slides a week: its history row holds the shift
(``{"drop": [...], "add": [...]}``), not the 52 counts again, and every reader of the
history reads what it read when rows held the whole list: ``history`` (text and --json), the
digest (text and JSON, of the latest period and of past ones) and the records replayed by
fingerprint. The whole-list store to compare with is the same database with each row's
shift replaced by the list the fake upstream served that week."""

from __future__ import annotations

import json
import zlib
from datetime import timedelta
from typing import Any

import pytest

from monitor.diff import Change
from monitor.digest import build_digest, digest_data
from monitor.history import backward, forward, is_shift, stored_change
from tests.conftest import START, Monitor

SLUG = "django-otp"
FIRST = list(range(100, 152))  # 52 weeks of distinct counts: a wrong slide shows
# week -> the commit counts served that week: slid by one week (1-3, 5-6), by two (2), and
# replaced by counts that did not slide (4: stored whole).
WEEKS = {
    1: [*FIRST[1:], 1],
    2: [*FIRST[3:], 1, 2, 3],
    3: [*FIRST[4:], 1, 2, 3, 4],
    4: list(range(200, 252)),
    5: [*range(201, 252), 5],
    6: [*range(202, 252), 5, 6],
}
SHIFTED = {1: (1, [1]), 2: (2, [2, 3]), 3: (1, [4]), 5: (1, [5]), 6: (1, [6])}  # week: k, add


def shifting(monitor: Monitor) -> list[list[int]]:
    """Watch SLUG, then a check a week for WEEKS; the served counts of each history row."""
    record = monitor.upstream.records[SLUG]
    record["commits_over_52"] = list(FIRST)
    assert monitor.run("watch", SLUG).exit_code == 0
    for week, counts in WEEKS.items():
        record["commits_over_52"] = list(counts)
        record["repo_watchers"] = 600 + week  # another field in the same row
        monitor.clock.now = START + timedelta(weeks=week)
        result = monitor.run("check")
        assert result.exit_code == 0, result.output
    return [FIRST, *WEEKS.values()]


def raw_rows(monitor: Monitor) -> list[tuple[int, dict[str, Any], bytes]]:
    store = monitor.store()
    try:
        rows = store.conn.execute("SELECT id, data, fingerprint FROM snapshots ORDER BY id")
        return [(ident, json.loads(data), fingerprint) for ident, data, fingerprint in rows]
    finally:
        store.close()


def whole_rows(monitor: Monitor, served: list[list[int]]) -> None:
    """Store the served lists whole in place of the shifts (rows as before the shifts)."""
    store = monitor.store()
    try:
        with store.conn:
            for (ident, data, _), counts in zip(raw_rows(monitor), served, strict=True):
                data["commits_over_52"] = counts
                store.conn.execute(
                    "UPDATE snapshots SET data = ? WHERE id = ?", (json.dumps(data), ident)
                )
    finally:
        store.close()


# Digests read back in time: (clock, period). A past period's end value comes from the latest
# backward through the shifts after it (weeks 5-6), or, with whole counts stored after it
# (week 4), forward from the row before it (weeks 1-3, the watch's baseline before them).
MOMENTS = {
    "now": (timedelta(weeks=6, hours=1), timedelta(days=7)),
    "week 5": (timedelta(weeks=5, hours=1), timedelta(days=2)),
    "between weeks 5 and 6": (timedelta(weeks=5, days=3), timedelta(days=1)),
    "week 4": (timedelta(weeks=4, hours=1), timedelta(days=2)),
    "week 3": (timedelta(weeks=3, hours=1), timedelta(days=2)),
    "week 2": (timedelta(weeks=2, hours=1), timedelta(days=2)),
    "weeks 1-2": (timedelta(weeks=2, hours=1), timedelta(days=10)),
    "baseline": (timedelta(hours=1), timedelta(days=2)),
}
# the counts at each moment's period end: the week's
AT_END = {
    "now": 6,
    "week 5": 5,
    "between weeks 5 and 6": 5,
    "week 4": 4,
    "week 3": 3,
    "week 2": 2,
    "weeks 1-2": 2,
    "baseline": 0,
}


def reads(monitor: Monitor) -> dict[str, Any]:
    """Everything that reads the history, as the user and the cycle see it."""
    out: dict[str, Any] = {
        "history": monitor.run("history", SLUG).stdout,
        "history --json": monitor.json("history", SLUG),
    }
    for name, (at, since) in MOMENTS.items():
        monitor.clock.now = START + at
        out[f"digest {name}"] = monitor.run("digest", "--since", f"{since.days}d").stdout
        store = monitor.store()
        try:
            out[f"digest {name} json"] = digest_data(
                build_digest(store, now=START + at, since=since)
            )
        finally:
            store.close()
    store = monitor.store()
    try:
        for ident, _, fingerprint in raw_rows(monitor):
            out[f"record {ident}"] = store.snapshot_by_fingerprint(1, fingerprint)
    finally:
        store.close()
    return out


def test_a_slid_list_is_stored_as_its_shift(monitor: Monitor) -> None:
    served = shifting(monitor)
    rows = raw_rows(monitor)
    assert len(rows) == len(served)
    assert rows[0][1]["commits_over_52"] == FIRST  # the baseline holds the whole record
    for week, (_, data, _) in enumerate(rows[1:], start=1):
        assert data["repo_watchers"] == 600 + week
        if week in SHIFTED:
            k, add = SHIFTED[week]
            assert data["commits_over_52"] == {"drop": served[week - 1][:k], "add": add}
        else:  # did not slide: whole
            assert data["commits_over_52"] == served[week]


def test_readers_read_what_whole_rows_read(monitor: Monitor) -> None:
    served = shifting(monitor)
    shifted = reads(monitor)
    whole_rows(monitor, served)
    assert not any(is_shift(data["commits_over_52"]) for _, data, _ in raw_rows(monitor))
    assert reads(monitor) == shifted


def test_history_json_tells_each_weeks_counts(monitor: Monitor) -> None:
    served = shifting(monitor)
    history = monitor.json("history", SLUG)
    assert history[0]["snapshot"]["commits_over_52"] == FIRST
    for week, entry in enumerate(history[1:], start=1):
        (change,) = [c for c in entry["changes"] if c["field"] == "commits_over_52"]
        assert (change["old"], change["new"]) == (served[week - 1], served[week])
    text = monitor.run("history", SLUG).stdout
    assert f"commits_over_52: {sum(served[5])} → {sum(served[6])} commits in 52 weeks" in text


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_the_digest_reads_the_counts_at_its_periods_end(monitor: Monitor, moment: str) -> None:
    served = shifting(monitor)
    at, since = MOMENTS[moment]
    store = monitor.store()
    try:
        (card,) = build_digest(store, now=START + at, since=since).packages
    finally:
        store.close()
    assert card.commits == served[AT_END[moment]]


@pytest.mark.parametrize("moment", ["now", "week 5", "between weeks 5 and 6"])
def test_counts_after_shifts_only_are_not_looked_up_before_the_period(
    monitor: Monitor, moment: str
) -> None:
    """Only shifts stored since the period's end: the latest counts moved backward, so the
    digest reads no row before the period for them (the whole counts are weeks back)."""
    shifting(monitor)
    at, since = MOMENTS[moment]
    store = monitor.store()
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    try:
        build_digest(store, now=START + at, since=since)
    finally:
        store.conn.set_trace_callback(None)
        store.close()
    assert statements
    assert not [sql for sql in statements if "commits_over_52" in sql]


def test_records_replayed_by_fingerprint(monitor: Monitor) -> None:
    served = shifting(monitor)
    store = monitor.store()
    try:
        for (_, _, fingerprint), counts in zip(raw_rows(monitor), served, strict=True):
            assert len(fingerprint) == 8  # a history row keeps a record's first 8 bytes
            record = store.snapshot_by_fingerprint(1, fingerprint)
            assert record is not None
            assert list(record.commits_over_52 or ()) == counts
        # the cycle looks up a record's whole fingerprint (the newest is the stored part's)
        [(whole,)] = store.conn.execute(
            "SELECT fingerprint FROM parts WHERE source = 'djangopackages'"
        ).fetchall()
        assert len(whole) == 16
        record = store.snapshot_by_fingerprint(1, whole)
        assert record is not None and list(record.commits_over_52 or ()) == served[-1]
    finally:
        store.close()


L = list(range(10, 40))  # 30 weeks


@pytest.mark.parametrize(
    ("old", "new", "stored"),
    [
        (L, [*L[1:], 7], {"drop": [10], "add": [7]}),
        (L, [*L[2:], 7, 8], {"drop": [10, 11], "add": [7, 8]}),
        (L, L[2:], {"drop": [10, 11], "add": []}),
        (L, [*L[1:], 7, 8], {"drop": [10], "add": [7, 8]}),
        ([1, 2, 3], [2, 3, 4], [2, 3, 4]),  # the shift is no shorter
        (L, [*L[:-1], 7], {"drop": [], "cut": [39], "add": [7]}),  # the newest week again
        (L, [*L[1:-1], 7, 8], {"drop": [10], "cut": [39], "add": [7, 8]}),  # and a new week
        (L, [*L[:-2], 7, 8], [*L[:-2], 7, 8]),  # two weeks again: stored whole
        (L, [*L[:5], 7, *L[6:]], [*L[:5], 7, *L[6:]]),  # an old week edited
        (L, [7, *L], [7, *L]),  # grew in front
        (L, [*L, 7], {"drop": [], "add": [7]}),  # grew behind
        (None, L, L),
        (L, None, None),
    ],
    ids=[
        "one",
        "two",
        "shrank",
        "grew",
        "short",
        "recounted",
        "slid-and-recounted",
        "two-recounted",
        "edited",
        "front",
        "behind",
        "from-null",
        "to-null",
    ],
)
def test_the_shift_goes_both_ways(old: Any, new: Any, stored: Any) -> None:
    change = Change("commits_over_52", None if old is None else tuple(old), new)
    assert stored_change(change) == stored
    if is_shift(stored):
        assert forward(old, stored) == new
        assert backward(new, stored) == old


def test_only_lists_of_ints_are_shifted() -> None:
    change = Change("participants", ("a", "b", "c", "d", "e"), ("b", "c", "d", "e", "f"))
    assert stored_change(change) == ["b", "c", "d", "e", "f"]


def test_a_notice_stores_a_slid_list_as_its_shift_and_sends_it_whole(monitor: Monitor) -> None:
    """A release in the week the counts slid: the transition row's notice holds the slide as
    its shift, and the message built from it (a webhook here) lists both whole lists."""
    from monitor.notify.webhook import bounded_change
    from tests.conftest import webhook_toml
    from tests.fakes import FakeWebhookReceiver

    record = monitor.upstream.records[SLUG]
    record["commits_over_52"] = list(FIRST)
    with FakeWebhookReceiver() as hook:
        monitor.configure(webhook_toml(hook.hook_url))
        assert monitor.run("watch", SLUG).exit_code == 0
        hook.clear()
        record["commits_over_52"] = WEEKS[1]
        record["pypi_version"] = "99.0.0"
        monitor.clock.now = START + timedelta(weeks=1)
        result = monitor.run("check")
        assert result.exit_code == 0, result.output
        [alert] = [a for event in hook.events for a in event["data"]["alerts"]]
    sent = {c["field"]: c for c in alert["changes"]}
    whole = {"field": "commits_over_52", "old": FIRST, "new": WEEKS[1]}
    assert sent["commits_over_52"] == bounded_change(whole)  # the webhook cuts long lists
    store = monitor.store()
    try:
        [(notice,)] = store.conn.execute("SELECT notice FROM transitions").fetchall()
    finally:
        store.close()
    stored = {c["field"]: c for c in json.loads(zlib.decompress(notice))["changes"]}
    assert stored["commits_over_52"]["new"] == {"drop": [100], "add": [1]}
    assert stored["pypi_version"]["new"] == "99.0.0"


def test_a_notice_column_reads_back_whole_and_one_from_before_as_it_was() -> None:
    from monitor.store import notice_column, notice_of

    notice = {
        "rule": "pypi-version-changed",
        "changes": [
            {"field": "commits_over_52", "old": FIRST, "new": WEEKS[1]},
            {"field": "pypi_version", "old": "1.0", "new": "2.0"},
        ],
    }
    column = notice_column(notice)
    assert isinstance(column, bytes) and len(column) < len(json.dumps(notice)) / 2
    assert notice_of(column) == notice
    assert notice_of(json.dumps(notice)) == notice  # a row stored as JSON text before


def test_db_vacuum_stores_history_rows_from_before_shifts_as_now(monitor: Monitor) -> None:
    """A database written before shifts holds every week's whole list: `monitor db vacuum`
    rewrites each slid one as its shift, and every reader reads the same as before."""
    served = shifting(monitor)
    as_now = [data for _, data, _ in raw_rows(monitor)]
    before = reads(monitor)
    whole_rows(monitor, served)

    result = monitor.run("db", "vacuum")

    assert result.exit_code == 0, result.output
    assert f"{len(SHIFTED)} history rows (slid lists as shifts)" in result.stdout
    assert [data for _, data, _ in raw_rows(monitor)] == as_now
    assert reads(monitor) == before
    assert "0 history rows" in monitor.run("db", "vacuum").stdout  # nothing left to do


def test_db_vacuum_deflates_notices_stored_as_text(monitor: Monitor) -> None:
    from monitor.store import notice_of
    from tests.conftest import webhook_toml
    from tests.fakes import FakeWebhookReceiver

    record = monitor.upstream.records[SLUG]
    record["commits_over_52"] = list(FIRST)
    with FakeWebhookReceiver() as hook:
        monitor.configure(webhook_toml(hook.hook_url))
        assert monitor.run("watch", SLUG).exit_code == 0
        record["commits_over_52"] = WEEKS[1]
        record["pypi_version"] = "99.0.0"
        monitor.clock.now = START + timedelta(weeks=1)
        assert monitor.run("check").exit_code == 0
    store = monitor.store()
    try:
        [(ident, column)] = store.conn.execute("SELECT id, notice FROM transitions").fetchall()
        notice = notice_of(column)
        with store.conn:  # as an older monitor stored it
            store.conn.execute(
                "UPDATE transitions SET notice = ? WHERE id = ?", (json.dumps(notice), ident)
            )
    finally:
        store.close()

    result = monitor.run("db", "vacuum")

    assert "1 alert notices (deflated)" in result.stdout, result.output
    store = monitor.store()
    try:
        [(column,)] = store.conn.execute("SELECT notice FROM transitions").fetchall()
    finally:
        store.close()
    assert isinstance(column, bytes) and notice_of(column) == notice
