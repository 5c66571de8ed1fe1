"""Retention (issue 14, ``[history] keep``): what grows with every poll and delivery is
compacted once it is older than ``keep``, and the space goes back to the file system.

- ``checks`` rows (a failed or not-found poll and its error) made before the cut are deleted:
  such a poll is counted per package and day in ``failed_days`` too (and every poll per day
  in ``poll_days`` and per package on its watch row), which stay, so the digest's failure
  counts (:meth:`Store.failure_counts`) and ``status`` still work;
- delivery groups finished (delivered or failed) before the cut lose their ``input`` and
  rendered ``payload``, and their ``attempts`` rows go; the group row stays (its status, its
  count of attempts, its last error), since ``deliveries`` and ``alerts`` refer to it;
- OSV details that a newer version of the same vulnerability replaced before the cut go.

Field history (``snapshots``), alerts, rule states, transitions, mutes, parts, watches and
the day counts are kept whole, and nothing an alert firing now refers to is touched: the
failed polls of its package, the groups that delivered its transitions.

The cut is the UTC midnight before ``now - keep``, so ``checks`` holds whole days from it on
and ``failed_days`` the days before (:meth:`Store.checks_kept_from`). Work is done in batches
of :data:`BATCH` rows, each its own short transaction: the daemon's cycle and the HTTP server
write to the same database meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from monitor.history import repacked
from monitor.store import Store, day_number

BATCH = 5_000  # rows per transaction
VACUUM_STEP = 1_000  # pages (4 MB) given back per incremental-vacuum step


@dataclass(frozen=True, slots=True)
class Compacted:
    """What one compaction removed."""

    cut: datetime | None  # None: ``keep = "forever"``, nothing was looked at
    checks: int = 0  # failed / not-found poll rows (still counted per day)
    groups: int = 0  # delivery groups whose input and payload were dropped
    attempts: int = 0  # their attempt rows
    vulns: int = 0  # replaced OSV details

    def describe(self) -> str:
        if self.cut is None:
            return 'nothing compacted ([history] keep = "forever")'
        return (
            f"compacted before {self.cut:%Y-%m-%d}: {self.checks} failed-poll rows (still"
            f" counted per day), {self.groups} delivered messages' bodies, {self.attempts}"
            f" delivery attempts, {self.vulns} replaced vulnerability details"
        )

    def fields(self) -> dict[str, int | str | None]:
        """For the daemon's log line."""
        return {
            "before": self.cut.isoformat() if self.cut else None,
            "checks": self.checks,
            "groups": self.groups,
            "attempts": self.attempts,
            "vulns": self.vulns,
        }


def cut_for(keep: timedelta, now: datetime) -> datetime:
    """The UTC midnight that starts the day of ``now - keep``."""
    return datetime.fromtimestamp(day_number(now - keep) * 86400, UTC)


def compact(
    store: Store,
    keep: timedelta | None,
    now: datetime,
    *,
    batch: int = BATCH,
    stopping: Callable[[], bool] = lambda: False,
) -> Compacted:
    """Compact what is older than ``keep`` (None: keep everything) as of ``now``, in
    batches; ``stopping`` is asked between batches (the daemon's SIGTERM)."""
    if keep is None:
        return Compacted(None)
    cut = cut_for(keep, now)
    checks = _checks(store, cut, batch, stopping)
    groups, attempts = _groups(store, cut, batch, stopping)
    old = [] if stopping() else store.superseded_vulns(cut)
    vulns = sum(store.delete_vulns(old[i : i + batch]) for i in range(0, len(old), batch))
    kept_from = store.checks_kept_from()
    if not stopping() and (kept_from is None or kept_from < cut):  # never back: rows are gone
        store.set_checks_kept_from(cut)
    return Compacted(cut, checks, groups, attempts, vulns)


def _checks(store: Store, cut: datetime, batch: int, stopping: Callable[[], bool]) -> int:
    removed, after = 0, 0
    while not stopping() and (ids := store.old_checks(cut, after, batch)):
        removed += store.delete_checks(ids, cut)
        after = ids[-1]
    return removed


def _groups(
    store: Store, cut: datetime, batch: int, stopping: Callable[[], bool]
) -> tuple[int, int]:
    groups = attempts = after = 0
    while not stopping() and (rows := store.finished_groups(cut, after, batch)):
        dropped, gone = store.drop_group_bodies([ident for _, ident in rows], cut)
        groups, attempts, after = groups + dropped, attempts + gone, rows[-1][0]
    return groups, attempts


@dataclass(frozen=True, slots=True)
class Repacked:
    """What :func:`repack` rewrote."""

    history: int = 0  # history rows whose whole list is now a shift
    notices: int = 0  # transitions' notices now deflated

    def describe(self) -> str:
        return (
            f"stored as now: {self.history} history rows (slid lists as shifts),"
            f" {self.notices} alert notices (deflated)"
        )


def repack(
    store: Store, *, batch: int = BATCH, stopping: Callable[[], bool] = lambda: False
) -> Repacked:
    """Rewrite what an older monitor stored in the forms it takes now: history rows holding
    a whole list that slid, as its shift; notices held as JSON text, deflated. Everything
    reads back the same; each batch is its own short transaction (another process may write
    meanwhile: a row it changed since it was read is left as it is)."""
    history = notices = 0
    after = 0
    while not stopping() and (watch_ids := store.history_watches(after, max(batch // 50, 1))):
        rows: list[tuple[int, str, str]] = []
        for watch_id in watch_ids:
            stored = store.history(watch_id)
            for index, data in repacked(orjson.loads(row["data"]) for row in stored):
                row = stored[index]
                rows.append((row["id"], row["data"], orjson.dumps(data).decode()))
        if rows:
            history += store.rewrite_history(rows)
        after = watch_ids[-1]
    after = 0
    while not stopping() and (texts := store.text_notices(after, batch)):
        notices += store.rewrite_notices(texts)
        after = texts[-1][0]
    return Repacked(history, notices)


def give_back(
    store: Store, *, step: int = VACUUM_STEP, stopping: Callable[[], bool] = lambda: False
) -> int:
    """Return the free pages to the file system a step at a time, when the database is in
    incremental auto-vacuum; how many pages were free before."""
    if store.auto_vacuum() != 2:
        return 0
    free = store.free_pages()
    for _ in range(-(-free // step)):  # bounded: pages freed meanwhile wait for next time
        if stopping():
            break
        store.incremental_vacuum(step)
    return free
