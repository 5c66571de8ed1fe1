"""One cycle: poll results -> parts -> changes -> rules -> transitions -> outbox groups.

The packages polled by one ``check``, one ``watch`` or one ``run`` tick form a cycle, in
steps of :class:`CycleRecorder` (:func:`poll_and_record` runs them):

- ``prepare`` reads the watches, and hands djangopackages the fingerprints of the last
  stored records, so it can report unchanged ones unparsed; its results are taken
  :data:`BATCH` at a time as they come, while its later list pages are fetched;
- for each batch, its watches' stored parts are read and :func:`poll_parts` polls the other
  sources for them (``due`` gives each its keys and stored ETags), OSV after PyPI;
- ``record`` takes the results :data:`BATCH` packages at a time. For each batch it first
  works out, outside any transaction, what each result means (its :class:`_Plan`: each
  source's part diffed against its stored values, change rules fired, condition verdicts)
  and which alerts will change, and renders their messages (users' templates, which may be
  slow); then it writes everything the batch learned in ONE transaction: poll counts and
  failed checks, new history rows, parts, alert state, transitions and their deliveries; then
  it forgets the batch. Memory holds one batch's plans, not a cycle's.

Polling and rendering hold no database lock, so a slow template never makes another process
wait for the write lock. If another process commits meanwhile, the transaction reads again;
should that call for a message not rendered yet, it rolls back, renders it outside, and tries
again. A crash (or a cancelled cycle) stores whole batches only: the batch in hand is not
stored (the next poll sees the same changes). The cycle's delivery group of each channel is
held ``open`` until its last batch is written, so a cycle sends one message per channel; the
group of a cycle that died is released by the outbox when its hold expires, and sends what its
written batches decided (a cycle that stops on an error or a stop signal releases them at
once). Nothing is lost and no alert is decided twice.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import logging
import random
import sqlite3
import time
import uuid
from collections import deque
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

from monitor import fields
from monitor.alerts import (
    BUILTIN_RULES,
    BuiltinRule,
    Event,
    Notice,
    RuleKind,
    RuleState,
    Status,
    builtin_observations,
    severity_at_least,
    step,
)
from monitor.config import Config
from monitor.diff import Change, diff, diff_values
from monitor.durations import parse_duration
from monitor.expr import LimitExceeded, UnknownValue
from monitor.history import stored_change
from monitor.names import is_pypi_watch, package_links, project_of
from monitor.outbox import hold_group, open_group, release_groups
from monitor.snapshot import BOOKKEEPING, Snapshot, unix_seconds
from monitor.sources import Due, PartState, PartStatus, PollResult, PollStatus
from monitor.sources import title as source_title
from monitor.store import (
    Store,
    StoredPart,
    Watch,
    day_number,
    from_iso,
    history_fingerprint,
    iso,
    notice_column,
)


@dataclass(frozen=True)
class Transition:
    rule: str
    package: str
    kind: RuleKind
    status: Status
    repeat: bool
    notice: Notice
    muted: bool
    changes: tuple[Change, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "package": self.package,
            "status": str(self.status),
            "kind": str(self.kind),
            "repeat": self.repeat,
            "severity": str(self.notice.severity),
            "summary": self.notice.summary,
            "muted": self.muted,
        }


@dataclass
class CycleReport:
    checked: int = 0
    unchanged: int = 0
    changed: list[tuple[str, list[Change]]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # slug, error, source
    not_found: list[str] = field(default_factory=list)
    deferred: list[tuple[str, str, datetime]] = field(default_factory=list)  # slug, source, until
    transitions: list[Transition] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    rule_errors: list[tuple[str, str, str]] = field(default_factory=list)  # slug, rule, error

    def to_json_dict(self, *, changed: bool = True) -> dict[str, Any]:
        """The report as JSON; ``changed=False``: ``changed`` is an empty list (a caller
        writes :meth:`changed_json` a chunk at a time instead)."""
        return {
            "checked": self.checked,
            "unchanged": self.unchanged,
            "changed": [item for chunk in self.changed_json() for item in chunk] if changed else [],
            "failed": [
                {"slug": slug, "error": error, "source": source}
                for slug, error, source in self.failed
            ],
            "not_found": list(self.not_found),
            "deferred": [
                {"slug": slug, "source": source, "until": iso(until)}
                for slug, source, until in self.deferred
            ],
            "transitions": [t.to_json_dict() for t in self.transitions],
            "rule_errors": [
                {"slug": slug, "rule": rule, "error": error}
                for slug, rule, error in self.rule_errors
            ],
        }

    def changed_json(self, chunk: int = 500) -> Iterator[list[dict[str, Any]]]:
        """The ``changed`` entries as JSON, ``chunk`` at a time."""
        for start in range(0, len(self.changed), chunk):
            yield [
                {"slug": slug, "changes": [c.to_json_dict() for c in changes]}
                for slug, changes in self.changed[start : start + chunk]
            ]


log = logging.getLogger(__name__)

_Stored = tuple[RuleState, int | None]  # a rule's state and its firing alert's row id
_NO_STATE: _Stored = (RuleState(), None)


_ROWS_AT_ONCE = 500
# Packages recorded per write transaction: a changed cycle of 10,000 is 20 transactions,
# each all or nothing, and never holds more than a batch's plans (SPEC §1's guarantees hold
# per batch; the cycle's message per channel waits for the last one).
BATCH = 500
_RACED = "changed by another process while polled, and the record seen is not stored"
_PRIMARY = "djangopackages"
_Verdicts = tuple[tuple[Any, bool | None], ...]  # (condition rule, holds)


@dataclass(slots=True)
class _Plan:
    """What one poll result means for its watch, before anything is written: worked out
    from the result and the watch row alone, so it holds for as long as that row does, and
    outside the write transaction (comparing snapshots, evaluating change rules, rendering
    messages hold no lock)."""

    watch: Watch
    status: str  # as stored: an ok poll that changed nothing is "unchanged"
    error: str | None
    values: dict[str, Any]  # the new values: every field when something changed, else
    # those the condition rules read
    old: dict[str, Any] | None  # the values before, when something changed
    changes: list[Change]  # what changed (a source's baseline is not a change)
    verdicts: list[tuple[Any, bool | None]]  # (condition rule, holds) for those evaluated
    blocked: frozenset[str]  # sources that failed or were deferred this poll
    history: dict[str, Any] | None  # the history row's fields (JSON values), if one is stored
    baselines: list[str]  # the sources whose first values the row holds
    parts: list[tuple[Any, ...]]  # ``parts`` rows to write
    dp_fingerprint: bytes | None  # the djangopackages record's, to store with the row
    failures: list[tuple[str, str]]  # (source, error) of this poll's failed parts
    deferred: list[tuple[str, datetime]]  # (source, until)
    fired: list[Any]  # the change rules the changes fire, superseded ones dropped
    last_fetched: int | None  # djangopackages' bookkeeping, Unix seconds
    modified: int | None
    summaries: dict[str, str] = field(default_factory=dict)  # rule id -> rendered message
    shown: dict[str, Any] | None = None  # every latest value, for messages, once built
    quiet: bool = False  # the steady rules' verdicts are known (quiet_key): not evaluated


@dataclass(frozen=True, slots=True)
class _View:
    """The plans and stored rule states as of one ``PRAGMA data_version``."""

    version: int
    plans: dict[str, _Plan]  # slug -> plan, for the polled packages still watched
    states: dict[int, dict[str, _Stored]]  # watch id -> rule id -> stored state


class _Unrendered(Exception):
    """The write transaction needs a template message that was not rendered beforehand."""


# Record attempts before a message not rendered outside the lock falls back to the rule's
# default text: each retry follows a commit by another process between render and write.
_ATTEMPTS = 3
# How long record_async() computes before letting the event loop run (a stop signal).
_SLICE = 0.05
# How each poll status bears on the built-in alerts: (rule, holds) in BUILTIN_RULES order.
_BUILTIN_OBSERVED = {
    status: tuple((rule, builtin_observations(status)[rule.id]) for rule in BUILTIN_RULES)
    for status in ("ok", "unchanged", "failed", "not_found")
}

# The rows every polled package gets, written a few hundred at a time: its watch row (which
# counts its polls), its parts; a ``checks`` row and its day's count in ``failed_days`` when
# it failed or found no package. Every poll is counted in its day's ``poll_days`` row too,
# once per batch.
_COUNT_DAY = (
    "INSERT INTO poll_days (day, ok, unchanged, failed, not_found, ms)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (day) DO UPDATE"
    " SET ok = ok + excluded.ok, unchanged = unchanged + excluded.unchanged,"
    " failed = failed + excluded.failed, not_found = not_found + excluded.not_found,"
    " ms = ms + excluded.ms"
)
_COUNT_FAILED = (
    "INSERT INTO failed_days (day, watch_id, failed, not_found) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (day, watch_id) DO UPDATE"
    " SET failed = failed + excluded.failed, not_found = not_found + excluded.not_found"
)
_COUNTED = {  # status -> its place in a ``poll_days`` row's (ok, unchanged, failed, not_found)
    "ok": 0,
    "unchanged": 1,
    "failed": 2,
    "not_found": 3,
}
_INSERT_CHECK = (
    "INSERT INTO checks (watch_id, checked_at, duration_ms, status, error, snapshot_id)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_UPDATE_WATCH = (
    "UPDATE watches SET polls = polls + 1, last_checked_at = ?, last_status = ?,"
    " last_error = ?, failures = ?, snapshot_id = ?, title = ?, package_id = ?, next_due_at = ?,"
    " last_fetched = COALESCE(?, last_fetched), modified = COALESCE(?, modified), quiet = ?"
    " WHERE id = ?"
)
# _UPDATE_WATCH after an unchanged poll that leaves the history row and the quiet key as they
# are: five values fewer to bind, 30 % less time for 10,000 of them.
_UPDATE_UNCHANGED_WATCH = (
    "UPDATE watches SET polls = polls + 1, last_checked_at = ?, last_status = 'unchanged',"
    " last_error = NULL, failures = 0, title = ?, package_id = ?, next_due_at = ?,"
    " last_fetched = COALESCE(?, last_fetched), modified = COALESCE(?, modified) WHERE id = ?"
)
_UPSERT_PART = (
    "INSERT INTO parts (watch_id, source, key, etag, fingerprint, data, failures, deferred_until,"
    " last_error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (watch_id, source) DO UPDATE"
    " SET key = excluded.key, etag = excluded.etag, fingerprint = excluded.fingerprint,"
    " data = excluded.data, failures = excluded.failures,"
    " deferred_until = excluded.deferred_until, last_error = excluded.last_error"
)
# djangopackages fields other sources' keys are read from (and the title, for messages).
_KEY_FIELDS = ("pypi_url", "repo_url", "pypi_version", "title")
# The form of the quiet key (CycleRecorder.quiet_key): raise it when what a verdict depends on
# changes in the code, and every package is evaluated by every rule once more.
_QUIET_FORM = 1
_QUIET_HASH = 16  # bytes of the quiet key's hash; the ids of the rules that held follow
DP_FIELDS = frozenset(fields.DJANGOPACKAGES)


class CycleRecorder:
    """Writes one cycle's outcomes. Create one per cycle; call :meth:`record` once."""

    def __init__(
        self,
        store: Store,
        config: Config,
        rules: Sequence[Any],
        *,
        now: datetime,
        rng: Callable[[], float] = random.random,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ):
        self.store = store
        self.config = config
        enabled = [r for r in rules if getattr(r, "enabled", True)]
        self._condition_rules = [r for r in enabled if r.kind == RuleKind.CONDITION]
        self._change_rules = [r for r in enabled if r.kind == RuleKind.CHANGE]
        # The rules a stored state may belong to; any other state is a removed rule's.
        self._stateful = {r.id: r for r in (*BUILTIN_RULES, *self._condition_rules)}
        source_of = fields.source_of()
        # The sources each rule reads: a rule on a source that failed keeps its state.
        self._reads = {
            r.id: frozenset(source_of.get(f, "") for f in r.when.fields) for r in enabled
        }
        # Which sources are polled; the fields of the others are unknown (SPEC §2.1).
        self.sources = [name for name, s in config.sources.items() if s.enabled]
        # What an unchanged record carries, validated, unparsed otherwise: what other
        # sources' keys need (and the title). The other fields condition rules read of it
        # are the stored record's, which has the same content (_Planner.djangopackages).
        self.carried_fields = sorted(_KEY_FIELDS)
        self._dp_read = {f for r in self._condition_rules for f in r.when.fields if f in DP_FIELDS}
        self._condition_sources = {
            source for r in self._condition_rules for source in self._reads[r.id]
        }
        # A steady rule's verdict on a package follows from its values, its pin and the
        # project's settings alone; the others read the clock, or djangopackages'
        # bookkeeping (which a record's fingerprint leaves out). See quiet_key.
        self._volatile_rules = [r for r in self._condition_rules if _volatile(r)]
        self._volatile_sources = {s for r in self._volatile_rules for s in self._reads[r.id]}
        self._dp_volatile = {f for r in self._volatile_rules for f in r.when.fields} & DP_FIELDS
        steady = sorted(
            (r.id, r.when.source, r.packages) for r in self._condition_rules if not _volatile(r)
        )
        self._steady = {r.id: r for r in self._condition_rules if not _volatile(r)}
        rules_key = orjson.dumps([_QUIET_FORM, steady, config.project_django, sorted(self.sources)])
        self._quiet_base = hashlib.blake2b(rules_key, digest_size=_QUIET_HASH)
        self._erred: set[str] = set()  # packages a rule went over its bounds on
        self._helds: dict[int, tuple[Watch, _Verdicts | None]] = {}  # see _held
        self._held_verdicts: dict[bytes, _Verdicts] = {}  # a quiet column's rule ids -> ...
        self.now = now
        self.rng = rng
        self.new_id = new_id
        self._constant = self._constant_verdicts(enabled)
        self.report = CycleReport()
        self._now_iso = iso(now)
        self._day = day_number(now)
        # interval -> (now + interval, the most jitter added to it, in seconds)
        self._due_from: dict[str | None, tuple[datetime, float]] = {}
        self._due_texts: dict[tuple[str | None, int], str] = {}
        self._ahead: dict[tuple[str, str], str] = {}  # (slug, rule id) -> message, see below
        # The pins of watches being added (``watch``), before their rows exist: OSV asks
        # about the version in use, and pinned-* rules read it, from the baseline on.
        self.pins: dict[str, str | None] = {}
        self._watches: dict[str, Watch] | None = None
        self._parts: dict[int, dict[str, StoredPart]] = {}
        self._read_at = 0
        # Every stored rule state as of prepare(), read by the first batch of a cycle of more
        # than one: one read, not one per batch (a batch's are dropped once it is written).
        self._states: dict[int, dict[str, _Stored]] | None = None
        self._view: _View | None = None
        self._may_defer = True  # may a missing message roll the write back (see _summary)
        self._channel_notices: dict[str, list[tuple[int, Notice]]] = {}
        self._vulns: dict[str, dict[str, Any]] = {}  # OSV id -> details, for messages
        self._keys: dict[tuple[str, str], str] = {}  # (slug, source) -> the key polled
        self._groups: dict[str, str] = {}  # channel -> this cycle's delivery group

    # -- entry point --------------------------------------------------------------------

    def prepare(self, slugs: Sequence[str] | None) -> dict[str, bytes]:
        """Read the watches about to be polled (None: every watched package, then
        :meth:`watched` names them); return the fingerprints of their last stored
        djangopackages records, for that source to recognise unchanged ones. Their
        sources' stored parts (a whole record each) are read a batch at a time, when the
        batch's results are in (:meth:`_load_parts`).

        :meth:`record` reuses what this read unless another connection has committed since;
        this connection must not change these watches in between (one cycle at a time).
        """
        self._read_at = self.store.data_version()
        self._watches = self.store.watches(None if slugs is None else list(slugs))
        self._parts = {}
        self._states = None
        return {slug: w.fingerprint for slug, w in self._watches.items() if w.fingerprint}

    def watched(self) -> list[str]:
        """The names of the watches :meth:`prepare` read, sorted."""
        return sorted(self._watches or ())

    def _load_parts(self, slugs: Iterable[str]) -> None:
        """Read the stored parts of these watches, those not read yet."""
        watches = self._watches or {}
        ids = [w.id for w in map(watches.get, slugs) if w is not None and w.id not in self._parts]
        if ids:
            stored = self.store.parts(ids)
            self._parts.update((i, stored.get(i, {})) for i in ids)

    def known_values(self, results: Mapping[str, PollResult]) -> dict[str, dict[str, Any]]:
        """slug -> what the other sources' keys are read from (:meth:`_key_values`), for
        one stage of :func:`poll_parts`: worked out once, shared by that stage's sources."""
        self._load_parts(results)
        watches = self._watches or {}
        out = {}
        for slug, result in results.items():
            watch = watches.get(slug)  # None: being watched now (its baseline)
            stored = self._parts.get(watch.id, {}) if watch else {}
            out[slug] = self._key_values(watch, result, stored)
        return out

    def due(
        self,
        source: Any,
        known: Mapping[str, dict[str, Any]],
        polled: Container[tuple[str, str]] = (),
    ) -> list[Due]:
        """The watches ``source`` applies to, given what is known of each
        (:meth:`known_values`), with the source's stored state; none it ``polled``
        already this cycle ((source, watch) pairs)."""
        due = []
        watches = self._watches or {}
        for slug, values in known.items():
            if (source.name, slug) in polled:
                continue
            key = source.key(slug, values)
            if key is None:
                continue
            self._keys[slug, source.name] = key
            watch = watches.get(slug)
            part = self._parts.get(watch.id, {}).get(source.name) if watch else None
            state = PartState()
            if part is not None and part.key == key:
                data = _StoredValues(part.data) if part.data else None
                state = PartState(part.etag, part.fingerprint, data)
            due.append(Due(slug, key, values, state))
        return due

    def _key_values(
        self, watch: Watch | None, result: PollResult, stored: Mapping[str, StoredPart]
    ) -> dict[str, Any]:
        """What a source's key and version in use are read from: djangopackages' URLs and
        version (this poll's, else the stored ones), the other parts, the pin."""
        values: dict[str, Any] = {}
        fresh = result.snapshot is not None or result.values is not None
        for name, kept in stored.items():
            if not kept.data or (name == _PRIMARY and fresh):
                continue
            part = result.parts.get(name)
            if part is None or part.values is None:  # not polled yet this cycle, or a 304
                values.update(orjson.loads(kept.data))
        if result.snapshot is not None:
            values.update(result.snapshot.values(_KEY_FIELDS))
        elif result.values is not None:
            values.update({f: result.values.get(f) for f in _KEY_FIELDS if f in result.values})
        for part in result.parts.values():
            if part.values is not None:
                values.update(part.values)
        values["pinned"] = watch.pinned if watch else self.pins.get(result.slug)
        return values

    def render_baselines(self, outcomes: Sequence[PollResult]) -> None:
        """For ``watch``, which writes its new watch rows and their baselines in one
        transaction of its own (a failed watch changes nothing): render, before that
        transaction, the messages the baselines will need, as if each package were watched
        already. A new watch has no rule state, so which alerts fire is known now."""
        for outcome in outcomes:
            new_watch = Watch(
                0,
                outcome.slug,
                outcome.package_id,
                None,
                (),
                None,
                0,
                None,
                None,
                self.pins.get(outcome.slug),
            )
            plan = self._plan(new_watch, outcome, baseline=True)
            for rule in self._unrendered(plan, {}):
                message = rule.render_message(self._context(rule, plan))
                self._ahead[outcome.slug, rule.id] = message

    def record(self, outcomes: Sequence[PollResult], *, baseline: bool = False) -> CycleReport:
        """Store the outcomes, decide transitions and queue their deliveries (a transaction
        per batch; within the caller's transaction, ``watch``'s, they join it)."""
        for _ in self._recording(list(outcomes), baseline):
            pass
        return self.report

    async def record_async(
        self, outcomes: list[PollResult], *, baseline: bool = False, close: bool = True
    ) -> CycleReport:
        """:meth:`record` of a list it empties as it goes (each batch's results are freed
        once written), letting the event loop run every few hundredths of a second while it
        compares values and renders messages (never inside a transaction): a stop signal is
        heard, and cancelling the cycle there stores nothing of the batch in hand (the
        batches written before it stay, each whole). ``close=False``: more results of the
        cycle follow, so its delivery groups stay open (:meth:`close`)."""
        paused = time.monotonic()
        for _ in self._recording(outcomes, baseline, close=close):
            if time.monotonic() - paused > _SLICE:
                await asyncio.sleep(0)
                paused = time.monotonic()
        return self.report

    def close(self) -> None:
        """Release the cycle's delivery groups held open (a cycle whose results came in
        batches, the last of which was empty, or that stopped early): they are sent."""
        if self._groups:
            with self.store.transaction():
                release_groups(self.store, list(self._groups.values()), now=self.now)

    def _recording(
        self, outcomes: list[PollResult], baseline: bool, *, close: bool = True
    ) -> Iterator[None]:
        """Record the outcomes a batch at a time (:data:`BATCH`): plan and render a batch
        outside the transaction (yielding after each step), then write it in a transaction
        of its own. A write that needs a message rendered too late rolls back and goes round
        again. A batch written is forgotten: its plans, its stored parts and its poll
        results (``outcomes`` is emptied as it is recorded). The last batch releases the
        cycle's delivery groups unless ``close`` is false."""
        if not outcomes and close:
            self.close()
        pending = outcomes
        while pending:
            batch = pending[:BATCH]
            del pending[:BATCH]  # a caller's list is consumed: results recorded are freed
            last = close and not pending
            self._view = None
            for attempt in range(1, _ATTEMPTS + 1):
                yield from self._replan(batch, baseline)
                yield from self._render_messages()
                before = _copied(self.report)
                try:
                    self._write(batch, baseline, last=last, last_attempt=attempt == _ATTEMPTS)
                except _Unrendered:  # rolled back: nothing of this attempt is stored
                    self.report = replace(before, rule_errors=self.report.rule_errors)
                else:
                    break
            self._forget()

    def _forget(self) -> None:
        """Drop what a written batch needed: its plans and its packages' stored parts."""
        view = self._view
        self._view = None
        if view is not None:
            states = self._states or {}
            for plan in view.plans.values():
                self._parts.pop(plan.watch.id, None)
                self._helds.pop(plan.watch.id, None)
                states.pop(plan.watch.id, None)

    def _write(
        self, outcomes: Sequence[PollResult], baseline: bool, *, last: bool, last_attempt: bool
    ) -> None:
        with self.store.transaction():
            # What was read outside still holds unless another process wrote meanwhile (it
            # may have polled or unwatched these packages): then read it again, in the txn.
            for _ in self._replan(outcomes, baseline):
                pass
            view = self._view
            assert view is not None
            self._may_defer = not last_attempt
            self._mutes = self.store.active_mutes(self.now)
            self._checks: list[tuple[Any, ...]] = []
            self._failed: list[tuple[Any, ...]] = []
            self._day_counts = [0, 0, 0, 0, 0]  # ok, unchanged, failed, not_found, ms
            self._watch_updates: list[tuple[Any, ...]] = []
            self._unchanged_updates: list[tuple[Any, ...]] = []
            self._part_rows: list[tuple[Any, ...]] = []
            self._channel_notices = {}
            for outcome in outcomes:
                plan = view.plans.get(outcome.slug)
                if plan is None:  # unwatched while we polled
                    continue
                stored = view.states.get(plan.watch.id, {})
                if stored:
                    self._retire_removed_rules(plan.watch, stored)
                self._record_one(plan, outcome, stored)
                if len(self._part_rows) >= _ROWS_AT_ONCE:
                    self._flush_rows()
            self._flush_rows()
            if any(self._day_counts):
                self.store.conn.execute(_COUNT_DAY, (self._day, *self._day_counts))
            self._queue_groups(close=last)

    def _flush_rows(self) -> None:
        """Write the rows gathered so far (a few hundred at a time: a part row holds a
        whole record's JSON, and a changed cycle has one per package)."""
        conn = self.store.conn
        conn.executemany(_COUNT_FAILED, self._failed)
        conn.executemany(_INSERT_CHECK, self._checks)
        conn.executemany(_UPDATE_WATCH, self._watch_updates)
        conn.executemany(_UPDATE_UNCHANGED_WATCH, self._unchanged_updates)
        conn.executemany(_UPSERT_PART, self._part_rows)
        self._checks.clear()
        self._failed.clear()
        self._watch_updates.clear()
        self._unchanged_updates.clear()
        self._part_rows.clear()

    # -- planning, outside the transaction ---------------------------------------------

    def _replan(self, outcomes: Sequence[PollResult], baseline: bool) -> Iterator[None]:
        """Bring :attr:`_view` up to the database's current version: plan again the packages
        whose watch row changed, read the rule states again. Yields after each plan made (of a
        quiet package, after every 64th)."""
        version = self.store.data_version()  # first: a commit after it shows at the next look
        earlier = self._view
        if earlier is not None and earlier.version == version:
            return
        watches = self._watches
        prepared = watches is not None and version == self._read_at
        if watches is None or not prepared:
            # another process wrote since prepare(): read this batch's rows again, and make
            # every plan again (each later batch reads its own the same way)
            watches = self.store.watches([o.slug for o in outcomes])
            stored = self.store.parts(w.id for w in watches.values())
            self._parts.update((w.id, stored.get(w.id, {})) for w in watches.values())
            earlier = None
        else:
            self._load_parts(o.slug for o in outcomes if self._reads_parts(o, baseline))
        plans: dict[str, _Plan] = {}
        for outcome in outcomes:
            watch = watches.get(outcome.slug)
            if watch is None:
                continue
            plan = earlier.plans.get(outcome.slug) if earlier else None
            if plan is None or plan.watch != watch:
                plan = self._plan(watch, outcome, baseline)
                if not plan.quiet or len(plans) % 64 == 0:  # a quiet one takes microseconds
                    yield
            plans[outcome.slug] = plan
        ids = [plan.watch.id for plan in plans.values()]
        if prepared and len(watches) > BATCH:  # as of prepare(): read once for the batches
            if self._states is None:
                self._states = self._load_states(None)
            states = {i: self._states[i] for i in ids if i in self._states}
        else:
            states = self._load_states(ids)
        self._view = _View(version, plans, states)

    def _plan(self, watch: Watch, outcome: PollResult, baseline: bool) -> _Plan:
        """What one package's poll means: its djangopackages part, then each other source's
        (:class:`_Planner`), the change rules fired and the condition rules' verdicts. For a
        quiet package (nothing new, and its ``quiet`` key holds: :meth:`quiet_key`) the
        steady rules' verdicts are the ones the key holds; the volatile rules are evaluated."""
        held = None if baseline else self._held(watch)
        plan = self._quiet_plan(watch, outcome) if held is not None else None
        if plan is None:
            self._load_parts([watch.slug])
            planner = _Planner(self, watch, outcome, self._parts.get(watch.id, {}))
            planner.djangopackages()
            for source in self.sources:
                planner.part(source)
            plan = planner.plan()
            plan.quiet = held is not None and _nothing_new(plan)
        if not baseline and plan.changes and plan.old is not None:
            plan.fired = self._fired_change_rules(watch.slug, plan)
        rules = self._condition_rules
        if plan.quiet and held is not None:
            plan.verdicts += held
            rules = self._volatile_rules
        # A rule reading a source that failed or was deferred keeps its state; the others are
        # evaluated as usual (SPEC §3.1).
        for rule in rules:
            if rule.applies_to(watch.slug) and not (self._reads[rule.id] & plan.blocked):
                plan.verdicts.append((rule, self._holds(rule, plan.values, None, watch.slug)))
        return plan

    def _constant_verdicts(self, rules: Sequence[Any]) -> dict[str, bool | None]:
        """rule id -> its verdict on every package, for the rules that read only fields of
        sources not polled: none of those is ever known (SPEC §2.1), so such a rule comes
        out the same on any package (unknown, unless it falls back with default()), and is
        evaluated once, here, not once per package."""
        polled = {_PRIMARY, "watch", "project", *self.sources}
        out: dict[str, bool | None] = {}
        for rule in rules:
            reads = self._reads[rule.id]
            if not reads or reads & polled or "" in reads:
                continue
            try:
                out[rule.id] = bool(
                    rule.when.evaluate({}, {} if rule.when.is_change else None, self.now)
                )
            except LimitExceeded:
                continue  # evaluated on each package, and reported there
            except UnknownValue:
                out[rule.id] = None
        return out

    def quiet_key(self, pinned: str | None, title: str | None, fingerprint: bytes | None) -> bytes:
        """The hash a watch's ``quiet`` column starts with once every steady condition rule
        was evaluated on its values: of the steady rules, the project's settings and the
        sources polled, the pin, the title and the djangopackages record's fingerprint. The
        ids of the steady rules that held follow it (one per line). While a poll finds the
        same hash and nothing new in any source, the steady rules would come out the same:
        they are not evaluated again (those that held hold, the others do not)."""
        digest = self._quiet_base.copy()  # the rules hashed once, not for each package
        digest.update(f"{pinned}\0{title}\0".encode())
        digest.update(fingerprint or b"")
        return digest.digest()

    def _held(self, watch: Watch) -> _Verdicts | None:
        """The verdicts of the steady rules that hold on the watch's values, as its
        ``quiet`` column says if its hash is the one of now; else None (evaluate every
        rule). Worked out once per watch row read."""
        known = self._helds.get(watch.id)
        if known is not None and known[0] is watch:
            return known[1]
        quiet = watch.quiet
        held = None
        if quiet is not None and quiet[:_QUIET_HASH] == self.quiet_key(
            watch.pinned, watch.title, watch.fingerprint
        ):
            ids = quiet[_QUIET_HASH:]
            held = self._held_verdicts.get(ids)
            if held is None:  # most packages share a few sets of rules that hold
                text = ids.decode()
                held = tuple((self._steady[i], True) for i in text.split("\n")) if text else ()
                self._held_verdicts[ids] = held
        self._helds[watch.id] = (watch, held)
        return held

    def _reads_parts(self, outcome: PollResult, baseline: bool) -> bool:
        """Whether planning ``outcome`` reads its package's stored parts. Not when the
        package can only be quiet: its record is the stored one, no other source is polled
        and no volatile rule reads the record, so nothing stored is compared or read (a
        quiet key holds only after a poll that did not fail, so the record's part has no
        failures to clear). Parts not read are read when they are needed after all."""
        if baseline or self.sources or self._dp_volatile:
            return True
        watch = (self._watches or {}).get(outcome.slug)
        return watch is None or not _same_record(watch, outcome) or self._held(watch) is None

    def _quiet_plan(self, watch: Watch, outcome: PollResult) -> _Plan | None:
        """The plan of a package whose record is the stored one and whose every other
        source answered "not modified" with nothing to write, made without comparing
        anything; None when there is more to it (then :class:`_Planner` works it out). Its
        values are the record's as polled and what the volatile rules read of the rest."""
        if not _same_record(watch, outcome):
            return None
        stored = self._parts.get(watch.id)
        if stored is None and (self.sources or self._dp_volatile):
            self._load_parts([watch.slug])
            stored = self._parts.get(watch.id, {})
        values = dict(outcome.values or {})
        if stored is not None:  # else nothing of them is read (see _reads_parts)
            primary = stored.get(_PRIMARY)
            if primary is None or primary.failures:
                return None
            values = {**_stored_fields(primary, self._dp_volatile - values.keys()), **values}
            for source in self.sources:
                part, kept = outcome.parts.get(source), stored.get(source)
                if part is None:
                    if kept is not None and kept.data:
                        return None
                    continue
                if (
                    part.status is not PartStatus.UNCHANGED
                    or kept is None
                    or kept.failures
                    or kept.deferred_until
                    or (part.etag or kept.etag) != kept.etag
                ):
                    return None
                if source in self._volatile_sources:
                    values.update(_decoded(kept) or {})
        values["pinned"] = watch.pinned
        values["project.django"] = self.config.project_django
        last_fetched, modified = outcome.stamps or (
            unix_seconds(values.get("last_fetched")),
            unix_seconds(values.get("modified")),
        )
        return _Plan(
            watch,
            "unchanged",
            None,
            values,
            None,
            [],
            [],
            frozenset(),
            None,
            [],
            [],
            None,
            [],
            [],
            [],
            last_fetched,
            modified,
            quiet=True,
        )

    def _fired_change_rules(self, slug: str, plan: _Plan) -> list[Any]:
        """The change rules the plan's changes fire. A source that failed this poll shows
        its last values on both sides: no change of its own, but a rule reading it still
        sees the other sources' changes (a release djangopackages saw while PyPI was down)."""
        fired = [
            rule
            for rule in self._change_rules
            if rule.applies_to(slug) and self._holds(rule, plan.values, plan.old, slug) is True
        ]
        # One alert per change: a rule that fires drops the rules it supersedes.
        superseded = {target for rule in fired for target in getattr(rule, "supersedes", ())}
        return [rule for rule in fired if rule.id not in superseded]

    def _render_messages(self) -> Iterator[None]:
        """Render, outside the transaction, the template messages of the alerts that will
        change given the states read; yields after each one."""
        view = self._view
        assert view is not None
        templated_conditions = any(_templated(rule) for rule in self._condition_rules)
        for plan in view.plans.values():
            if not plan.fired and not templated_conditions:
                continue  # the common case: nothing of this package runs a user's template
            states = view.states.get(plan.watch.id, {})
            if not (plan.fired or states or any(holds for _, holds in plan.verdicts)):
                continue  # no rule holds nor held: no alert of it changes
            for rule in self._unrendered(plan, states):
                message = self._ahead.pop((plan.watch.slug, rule.id), None)
                if message is None:
                    message = rule.render_message(self._context(rule, plan))
                plan.summaries[rule.id] = message
                yield

    def _unrendered(self, plan: _Plan, states: dict[str, _Stored]) -> Iterator[Any]:
        """The rules with a template whose alert on this package changes in this cycle (as
        the write transaction will decide, given the same states), not rendered yet."""
        for rule, holds in plan.verdicts:
            if (holds or rule.id in states) and _templated(rule):
                state, alert_id = states.get(rule.id, _NO_STATE)
                _, event = self._step(rule, state, holds, lambda: "")
                if _transitions(event, alert_id) and rule.id not in plan.summaries:
                    yield rule
        for rule in plan.fired:
            if _templated(rule) and rule.id not in plan.summaries:
                yield rule

    # -- one package, in the transaction -----------------------------------------------

    def _record_one(self, plan: _Plan, outcome: PollResult, states: dict[str, _Stored]) -> None:
        watch, status = plan.watch, plan.status
        report = self.report
        report.checked += 1
        new_snapshot_id = self._store_history(plan)
        if status == "unchanged":
            report.unchanged += 1
        elif status == "not_found":
            report.not_found.append(watch.slug)
        for source, error in plan.failures:
            report.failed.append((watch.slug, error, source))
        for source, until in plan.deferred:
            report.deferred.append((watch.slug, source, until))
        ms = round(outcome.duration * 1000)
        self._day_counts[_COUNTED[status]] += 1
        self._day_counts[4] += ms
        if status in ("failed", "not_found"):
            self._checks.append((watch.id, self._now_iso, ms, status, plan.error, new_snapshot_id))
            self._failed.append(
                (self._day, watch.id, int(status == "failed"), int(status != "failed"))
            )
        title = plan.values.get("title") or watch.title
        package_id = outcome.package_id or watch.package_id
        next_due = self._next_due(watch.interval)
        quiet = self._quiet_after(plan, states)
        unchanged = status == "unchanged" and plan.error is None and not new_snapshot_id
        if unchanged and quiet is watch.quiet:
            # The common case: the same row but for the poll's own columns (the row is the
            # plan's, see _replan: the same history row and quiet key), in a shorter UPDATE.
            self._unchanged_updates.append(
                (
                    self._now_iso,
                    title,
                    package_id,
                    next_due,
                    plan.last_fetched,
                    plan.modified,
                    watch.id,
                )
            )
        else:
            self._watch_updates.append(
                (
                    self._now_iso,
                    status,
                    plan.error,
                    watch.failures + 1 if status == "failed" else 0,
                    new_snapshot_id or watch.snapshot_id,
                    title,
                    package_id,
                    next_due,
                    plan.last_fetched,
                    plan.modified,
                    quiet,
                    watch.id,
                )
            )
        # djangopackages' record is serialised only now (a plan keeps the parsed snapshot).
        if plan.parts:
            self._part_rows += [(watch.id, *map(_content, row)) for row in plan.parts]

        # A rule that never held and does not hold now has nothing to store or send: the
        # common case, so step() and its arguments are skipped for it.
        for rule, holds in _BUILTIN_OBSERVED[status]:
            if holds or rule.id in states:
                self._condition(plan, rule, holds, states, new_snapshot_id, outcome)
        for rule, holds in plan.verdicts:
            if holds or rule.id in states:
                self._condition(plan, rule, holds, states, new_snapshot_id, outcome)
        for rule in plan.fired:
            self._fire_change(plan, rule, new_snapshot_id)

    def _quiet_after(self, plan: _Plan, states: dict[str, _Stored]) -> bytes | None:
        """The watch's ``quiet`` column after this poll (:meth:`quiet_key`), when every
        steady rule that applies was evaluated (or known) and none went over its bounds; else
        None, and the next poll evaluates every rule. None too when a rule came out unknown
        with its alert in progress: unknown keeps a state, where false would end it."""
        if plan.status not in ("ok", "unchanged") or plan.blocked or plan.watch.slug in self._erred:
            return None
        if plan.quiet and not plan.parts:  # the same values, verdicts and record: the same key
            return plan.watch.quiet
        held = []
        for rule, holds in plan.verdicts:
            if rule.id not in self._steady:
                continue
            if holds:
                held.append(rule.id)
            elif holds is None and rule.id in states and _astir(states[rule.id]):
                return None
        watch = plan.watch
        fingerprint = watch.fingerprint
        for row in plan.parts:  # the row djangopackages' fingerprint is stored in, if written
            if row[0] == _PRIMARY:
                fingerprint = row[3]
        title = plan.values.get("title") or watch.title
        key = self.quiet_key(watch.pinned, title, fingerprint)
        return key + "\n".join(sorted(held)).encode()

    def _store_history(self, plan: _Plan) -> int | None:
        """Write the plan's history row (the fields that changed); its id, if one is."""
        if plan.history is None:
            return None
        if plan.changes:
            self.report.changed.append((plan.watch.slug, plan.changes))
        return self.store.insert(
            "snapshots",
            {
                "watch_id": plan.watch.id,
                "taken_at": self._now_iso,
                "data": _json(plan.history),
                "fingerprint": history_fingerprint(plan.dp_fingerprint),
                "baselines": _json(plan.baselines) if plan.baselines else None,
            },
        )

    def _retire_removed_rules(self, watch: Watch, states: dict[str, _Stored]) -> None:
        """Forget the states of rules that are gone (deleted, disabled, no longer a condition
        rule, or no longer applying to this package): their firing alerts resolve silently,
        with no transition and nothing sent, so no alert stays firing forever."""
        for rule_id in list(states):
            rule = self._stateful.get(rule_id)
            if rule is not None and (isinstance(rule, BuiltinRule) or rule.applies_to(watch.slug)):
                continue
            _, alert_id = states[rule_id]
            if alert_id is not None:
                self.store.conn.execute(
                    "UPDATE alerts SET status = ?, resolved_at = ? WHERE id = ? AND status = ?",
                    (str(Status.RESOLVED), self._now_iso, alert_id, str(Status.FIRING)),
                )
            self.store.conn.execute(
                "DELETE FROM rule_states WHERE rule = ? AND watch_id = ?", (rule_id, watch.id)
            )

    def _next_due(self, interval: str | None) -> str:
        """When the package is due again, as stored: its interval plus a random jitter, in
        whole seconds (so the few thousand distinct values are formatted once each). The
        jitter is at most a tenth of the interval, so it spreads polls without swamping it."""
        due = self._due_from.get(interval)
        if due is None:
            every = parse_duration(interval) if interval else self.config.schedule.interval
            spread = min(self.config.schedule.jitter, every / 10).total_seconds()
            due = self._due_from[interval] = (self.now + every, spread)
        due_from, spread = due
        jitter = int(spread * self.rng())
        text = self._due_texts.get((interval, jitter))
        if text is None:
            text = self._due_texts[interval, jitter] = iso(due_from + timedelta(seconds=jitter))
        return text

    def _holds(
        self, rule: Any, values: dict[str, Any], old: dict[str, Any] | None, slug: str
    ) -> bool | None:
        """Whether the rule holds; None when unknown, or over its bounds: then the rule's
        error on this package, reported, and its state is kept like unknown data's."""
        if rule.id in self._constant and (old is not None or not rule.when.is_change):
            return self._constant[rule.id]
        try:
            return bool(rule.when.evaluate(values, old, self.now))
        except LimitExceeded as exc:
            self._erred.add(slug)
            error = (slug, rule.id, str(exc))
            if error not in self.report.rule_errors:  # a replanned watch is evaluated again
                self.report.rule_errors.append(error)
                log.warning("rule %s on %s: %s (its state is kept)", rule.id, slug, exc)
            return None
        except UnknownValue:
            return None

    # -- transitions --------------------------------------------------------------------

    def _step(
        self, rule: Any, state: RuleState, holds: bool | None, new_episode: Callable[[], str]
    ) -> tuple[RuleState, Event | None]:
        return step(
            state,
            holds,
            for_polls=rule.for_polls,
            repeat=rule.repeat,
            now=self.now,
            new_episode=new_episode,
        )

    def _condition(
        self,
        plan: _Plan,
        rule: Any,
        holds: bool | None,
        states: dict[str, _Stored],
        snapshot_id: int | None,
        outcome: PollResult,
    ) -> None:
        watch = plan.watch
        state, alert_id = states.get(rule.id, _NO_STATE)
        new_state, event = self._step(rule, state, holds, self.new_id)
        snapshot = self._shown(plan) if _transitions(event, alert_id) else plan.values
        if event is Event.FIRING:
            summary = self._summary(rule, plan, outcome)
            alert_id = self._open_alert(watch, rule, new_state.episode, "firing", summary)
            self._transition(
                watch,
                rule,
                alert_id,
                Status.FIRING,
                False,
                new_state.episode,
                self.now,
                None,
                summary,
                snapshot,
                snapshot_id,
                (),
            )
        elif event is Event.REPEAT and alert_id is not None:
            summary = self._summary(rule, plan, outcome)
            self.store.update("alerts", alert_id, {"last_notified_at": iso(self.now)})
            self._transition(
                watch,
                rule,
                alert_id,
                Status.FIRING,
                True,
                state.episode,
                state.firing_since,
                None,
                summary,
                snapshot,
                snapshot_id,
                (),
            )
        elif event is Event.RESOLVED and alert_id is not None:
            summary = self._summary(rule, plan, outcome)
            self.store.update(
                "alerts",
                alert_id,
                {
                    "status": str(Status.RESOLVED),
                    "resolved_at": iso(self.now),
                },
            )
            self._transition(
                watch,
                rule,
                alert_id,
                Status.RESOLVED,
                False,
                state.episode,
                state.firing_since,
                self.now,
                summary,
                snapshot,
                snapshot_id,
                (),
            )
            alert_id = None
        if new_state != state:
            self.store.conn.execute(
                "INSERT INTO rule_states (rule, watch_id, holds, alert_id, firing_since,"
                " last_notified_at, episode) VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(rule, watch_id) DO UPDATE SET holds = excluded.holds,"
                " alert_id = excluded.alert_id, firing_since = excluded.firing_since,"
                " last_notified_at = excluded.last_notified_at, episode = excluded.episode",
                (
                    rule.id,
                    watch.id,
                    new_state.holds,
                    alert_id,
                    iso(new_state.firing_since) if new_state.firing_since else None,
                    iso(new_state.last_notified_at) if new_state.last_notified_at else None,
                    new_state.episode,
                ),
            )

    def _fire_change(self, plan: _Plan, rule: Any, snapshot_id: int | None) -> None:
        episode = self.new_id()
        summary = self._summary(rule, plan, None)
        alert_id = self._open_alert(plan.watch, rule, episode, "fired", summary)
        self._transition(
            plan.watch,
            rule,
            alert_id,
            Status.FIRING,
            False,
            episode,
            self.now,
            None,
            summary,
            plan.values,
            snapshot_id,
            tuple(plan.changes),
        )

    def _open_alert(
        self, watch: Watch, rule: Any, episode: str | None, status: str, summary: str
    ) -> int:
        """A new alert row: a condition alert's episode (``firing``) or a change (``fired``)."""
        return self.store.insert(
            "alerts",
            {
                "episode": episode,
                "rule": rule.id,
                "watch_id": watch.id,
                "kind": str(rule.kind),
                "severity": str(rule.severity),
                "status": status,
                "started_at": iso(self.now),
                "summary": summary,
                "description": rule.description,
                "labels": _json(rule.labels),
                "last_notified_at": iso(self.now),
            },
        )

    def _summary(self, rule: Any, plan: _Plan, outcome: PollResult | None) -> str:
        """The alert's message. A user's template was rendered before the transaction; one
        that was not (another process committed since, and the alert's fate changed) is not
        rendered under the write lock: the attempt rolls back, or on the last one the rule's
        default text is used."""
        slug = plan.watch.slug
        if isinstance(rule, BuiltinRule):
            if rule.id == "package-not-found":
                return f"{slug}: not found on djangopackages (404)"
            reason = plan.error or "polls failing"
            return f"{slug}: polling failed {rule.for_polls} times in a row ({reason})"
        summary = plan.summaries.get(rule.id)
        if summary is not None:
            return summary
        if not _templated(rule):  # the default text: plain Python, no user code
            return str(rule.render_message(self._context(rule, plan)))
        if self._may_defer:
            raise _Unrendered(rule.id)
        return str(rule.default_message(self._context(rule, plan)))

    def _context(self, rule: Any, plan: _Plan) -> dict[str, Any]:
        """What a message template sees (SPEC §6). It depends on the rule and the plan
        only, not on the alert's state: that is why it can be rendered before the state is
        final."""
        if rule.kind == RuleKind.CHANGE:
            values, old, changes = plan.values, plan.old or {}, plan.changes
        else:
            values, old, changes = self._shown(plan), {}, []
        watch = plan.watch
        shown = fields.for_templates(values)
        return {
            **shown,
            "old": fields.for_templates(old),
            "new": shown,
            "slug": watch.slug,
            "title": values.get("title") or watch.title or watch.slug,
            "changes": [c.to_json_dict() for c in changes],
            "rule": rule.id,
            "severity": str(rule.severity),
            "vulnerabilities": self._vulnerabilities(values),
        }

    def _shown(self, plan: _Plan) -> dict[str, Any]:
        """Every latest value of the package, for a message: what was polled, over what
        each source gave last (read once)."""
        if plan.shown is None:
            self._load_parts([plan.watch.slug])
            shown: dict[str, Any] = {}
            for source, stored in self._parts.get(plan.watch.id, {}).items():
                if source == _PRIMARY or source in self.sources:
                    shown.update(_decoded(stored) or {})
            shown.update(plan.values)
            plan.shown = shown
        return plan.shown

    def _vulnerabilities(self, values: Mapping[str, Any]) -> list[dict[str, Any]]:
        """OSV's details of the package's ``vulns`` (id, summary, aliases, first fixed
        versions for this project, link), as kept in the database."""
        ids = values.get("vulns") or []
        missing = [i for i in ids if i not in self._vulns]
        if missing:
            self._vulns.update(self.store.vulnerabilities(missing))
        name = self._keys.get((values.get("slug") or "", "osv"), "").partition("==")[0]
        out = []
        for ident in ids:
            detail = dict(self._vulns.get(ident) or {"id": ident})
            fixed_for = dict(detail.pop("affected", None) or {})
            if name and name in fixed_for:
                detail["fixed"] = fixed_for[name]
            detail.setdefault("summary", None)
            detail.setdefault("aliases", [])
            detail.setdefault("fixed", [])
            detail["link"] = f"https://osv.dev/vulnerability/{ident}"
            out.append(detail)
        return out

    def _transition(
        self,
        watch: Watch,
        rule: Any,
        alert_id: int,
        status: Status,
        repeat: bool,
        episode: str | None,
        started_at: datetime | None,
        resolved_at: datetime | None,
        summary: str,
        values: Mapping[str, Any],
        snapshot_id: int | None,
        changes: tuple[Change, ...],
    ) -> None:
        notice = Notice(
            id=episode or "",
            status=status,
            kind=rule.kind,
            repeat=repeat,
            rule=rule.id,
            description=rule.description,
            severity=rule.severity,
            package=watch.slug,
            title=values.get("title") or watch.title or watch.slug,
            summary=summary,
            started_at=started_at or self.now,
            resolved_at=resolved_at,
            changes=tuple(c.to_json_dict() for c in changes),
            labels=dict(rule.labels),
            links=package_links(self.config.djangopackages.url, watch.slug, values),
        )
        muted = self._is_muted(watch.slug, rule.id)
        transition_id = self.store.insert(
            "transitions",
            {
                "alert_id": alert_id,
                "status": str(status),
                "repeat": int(repeat),
                "at": iso(self.now),
                "snapshot_id": snapshot_id,
                # ``changes`` and ``summary`` (columns since schema 1) are left NULL: the
                # notice holds them, and nothing read the second copy (12 MB a year at
                # 10,000 packages); the notice is stored as :func:`notice_column` makes it
                "muted": int(muted),
                "notice": notice_column(notice.to_json_dict()),
            },
        )
        self.report.transitions.append(
            Transition(rule.id, watch.slug, rule.kind, status, repeat, notice, muted, changes)
        )
        if muted:
            return
        channels = list(watch.notify or self.config.default_notify)
        channels += [c for c in rule.notify if c not in channels]
        for channel in channels:
            try:
                notifier = self.config.notifier(channel)  # slack:CHANNEL_ID channels too
            except KeyError:
                continue
            if not severity_at_least(rule.severity, notifier.min_severity):
                continue
            self._channel_notices.setdefault(channel, []).append((transition_id, notice))

    def _is_muted(self, slug: str, rule_id: str) -> bool:
        return any(m["slug"] == slug and m["rule"] in (None, rule_id) for m in self._mutes)

    # -- outbox -------------------------------------------------------------------------

    def _queue_groups(self, *, close: bool) -> None:
        """Add this batch's notices to the cycle's delivery group of each channel: one group
        (one message) per channel for the whole cycle, held ``open`` (never sent) until the
        cycle's last batch is written, which makes them ``pending``. A group whose cycle died
        between two batches is released by the outbox once its hold expires
        (:data:`~monitor.outbox.OPEN_HOLD`), so its notices are sent, once."""
        for channel, items in self._channel_notices.items():
            group_id = self._groups.get(channel)
            if group_id is None or not hold_group(self.store, group_id, now=self.now):
                group_id = open_group(self.store, channel, now=self.now, new_id=self.new_id)
                self._groups[channel] = group_id
                self.report.groups.append(group_id)
            self.store.conn.executemany(
                "INSERT INTO deliveries (transition_id, group_id, channel) VALUES (?, ?, ?)",
                [(transition_id, group_id, channel) for transition_id, _ in items],
            )
        self._channel_notices = {}
        if close:
            release_groups(self.store, list(self._groups.values()), now=self.now)

    def _load_states(self, watch_ids: list[int] | None) -> dict[int, dict[str, _Stored]]:
        """watch id -> rule id -> its stored state, for these watches (None: every one)."""
        out: dict[int, dict[str, _Stored]] = {}
        for watch_id, rule, holds, since, notified, episode, alert_id in self.store.rule_states(
            watch_ids
        ):
            state = RuleState(holds, from_iso(since), from_iso(notified), episode)
            out.setdefault(watch_id, {})[rule] = (state, alert_id)
        return out


class _Planner:
    """Works out one package's :class:`_Plan` from its poll result and its stored parts:
    djangopackages' part first, then each other source's, in the registry's order."""

    def __init__(
        self,
        recorder: CycleRecorder,
        watch: Watch,
        outcome: PollResult,
        stored: dict[str, StoredPart],
    ):
        self.recorder = recorder
        self.watch = watch
        self.outcome = outcome
        self.stored = stored
        self.status = str(outcome.status)  # djangopackages' part
        self.error = outcome.error
        self.new: dict[str, Any] = {}
        self.old: dict[str, Any] = {}
        self.changes: list[Change] = []
        self.history: dict[str, Any] = {}
        self.baselines: list[str] = []
        self.rows: list[tuple[Any, ...]] = []
        self.blocked: set[str] = set()
        self.failures: list[tuple[str, str]] = []
        self.deferred: list[tuple[str, datetime]] = []
        self.dp_fingerprint: bytes | None = None
        self.last_fetched: int | None = None
        self.modified: int | None = None
        self.unloaded: list[str] = []  # sources whose stored values are not in new/old yet

    # -- djangopackages -------------------------------------------------------------------

    def djangopackages(self) -> None:
        outcome, watch = self.outcome, self.watch
        if is_pypi_watch(watch.slug):  # no record: djangopackages' fields stay unknown
            named = {"slug": watch.slug, "title": watch.title or project_of(watch.slug)}
            self.new.update(named)
            self.old.update(named)
            return
        stored = self.stored.get(_PRIMARY)
        snapshot, fingerprint = outcome.snapshot, outcome.fingerprint
        if self.status == "unchanged" and fingerprint != watch.fingerprint:
            # Another process stored a newer record while we polled; what we saw is the
            # content of an earlier one, so compare that with the newest like any record.
            snapshot = self.recorder.store.snapshot_by_fingerprint(watch.id, fingerprint)
            if snapshot is None:
                self.status, self.error = "failed", _RACED
            else:
                self.status = "ok"
                seen = outcome.values or {}
                snapshot = replace(
                    snapshot, last_fetched=seen.get("last_fetched"), modified=seen.get("modified")
                )
        if self.status in ("failed", "not_found"):
            self.blocked.add(_PRIMARY)
            self.unloaded.append(_PRIMARY)
            if self.status == "failed":
                self.failures.append((_PRIMARY, self.error or "failed"))
                self._row(_PRIMARY, stored, failures=(stored.failures if stored else 0) + 1)
            return
        if self.status == "unchanged" or snapshot is None:
            seen = outcome.values or {}
            self.new.update(_stored_fields(stored, self.recorder._dp_read - seen.keys()))
            self.new.update(seen)
            self._bookkeeping(seen)
            self.unloaded.append(_PRIMARY)
            if stored is not None and stored.failures:
                self._row(_PRIMARY, stored, failures=0)
            return
        new_values = snapshot.values()
        self._bookkeeping(new_values)
        if stored is None or not stored.data:  # the watch's baseline
            content = snapshot.content_json()
            self.baselines.append(_PRIMARY)
            self.history.update(orjson.loads(content))
            self.new.update(new_values)
            self.old.update(new_values)
            self.dp_fingerprint = fingerprint
            self._row(_PRIMARY, stored, key=watch.slug, fingerprint=fingerprint, data=content)
            return
        old = Snapshot.from_json_dict(orjson.loads(stored.data))
        changes = diff(old, snapshot)
        self.new.update(new_values)
        # The old side is the new one with the changed fields' old values (and its own
        # bookkeeping): the old snapshot itself is not kept, so a cycle where every package
        # changed does not hold two whole records per package.
        self.old.update(new_values)
        self.old.update(old.values(BOOKKEEPING))
        for change in changes:
            self.old[change.field] = _as_rules_see(change.old)
        del old
        if changes:
            self.changes += changes
            self.history.update({c.field: stored_change(c) for c in changes})
            self.dp_fingerprint = fingerprint
            self._row(_PRIMARY, stored, fingerprint=fingerprint, data=snapshot, failures=0)
            # The stored record is superseded (messages read the new one): let it go.
            self.stored[_PRIMARY] = replace(stored, data=None)
        elif (fingerprint is not None and fingerprint != stored.fingerprint) or stored.failures:
            # The same content in another form: keep the record's fingerprint.
            self._row(_PRIMARY, stored, fingerprint=fingerprint or stored.fingerprint, failures=0)

    def _bookkeeping(self, values: Mapping[str, Any]) -> None:
        self.last_fetched = unix_seconds(values.get("last_fetched"))
        self.modified = unix_seconds(values.get("modified"))

    # -- another source -------------------------------------------------------------------

    def part(self, source: str) -> None:
        part = self.outcome.parts.get(source)
        stored = self.stored.get(source)
        names = fields.of_source(source)
        if part is None:  # the source does not apply (any more)
            prior = _decoded(stored)
            if prior is not None and any(v is not None for v in prior.values()):
                self._compare(source, prior, dict.fromkeys(names))
                self._row(source, stored, key=None, etag=None, fingerprint=None, data=None)
            return
        status = part.status
        if status is PartStatus.FAILED:
            self.blocked.add(source)
            self.unloaded.append(source)
            error = part.error or f"{source_title(source)} failed"
            self.failures.append((source, error))
            self._row(
                source, stored, failures=(stored.failures if stored else 0) + 1, last_error=error
            )
            return
        if status is PartStatus.DEFERRED:
            self.blocked.add(source)
            self.unloaded.append(source)
            until = part.until or self.recorder.now
            self.deferred.append((source, until))
            if stored is None or stored.deferred_until != iso(until):
                self._row(source, stored, deferred_until=iso(until))
            return
        if status is PartStatus.UNCHANGED:
            prior = _decoded(stored) if source in self.recorder._condition_sources else None
            if prior is None:
                self.unloaded.append(source)
            else:
                self.new.update(prior)
                self.old.update(prior)
            if (
                stored is None
                or (part.etag or stored.etag) != stored.etag
                or (stored.failures or stored.deferred_until)
            ):
                self._row(
                    source,
                    stored,
                    etag=part.etag or (stored.etag if stored else None),
                    failures=0,
                    deferred_until=None,
                    last_error=None,
                )
            return
        values = dict.fromkeys(names)
        if status is PartStatus.OK and part.values is not None:
            values.update({k: v for k, v in part.values.items() if k in values})
        prior = _decoded(stored)
        data = _json({k: fields.to_json(v) for k, v in values.items()})
        row = {
            "key": self._key(source),
            "etag": part.etag,
            "fingerprint": part.fingerprint,
            "data": data,
            "failures": 0,
            "deferred_until": None,
            "last_error": None,
        }
        if prior is None:  # the source's baseline: its values are not changes
            self.baselines.append(source)
            self.history.update({k: fields.to_json(v) for k, v in values.items()})
            self.new.update(values)
            self.old.update(values)
            self._row(source, stored, **row)
            return
        self._compare(source, prior, values)
        if (
            stored is None
            or data != stored.data
            or part.etag != stored.etag
            or (part.fingerprint != stored.fingerprint or stored.failures or stored.deferred_until)
        ):
            self._row(source, stored, **row)

    def _key(self, source: str) -> str | None:
        return self.recorder._keys.get((self.watch.slug, source))

    def _compare(self, source: str, prior: dict[str, Any], values: dict[str, Any]) -> None:
        changes = diff_values(prior, values, fields.of_source(source))
        self.new.update(values)
        self.old.update(prior)
        if changes:
            self.changes += changes
            self.history.update({c.field: stored_change(c) for c in changes})

    def _row(self, source: str, stored: StoredPart | None, **values: Any) -> None:
        """A ``parts`` row: the stored one with ``values`` changed."""
        row = {
            "key": stored.key if stored else self._key(source),
            "etag": stored.etag if stored else None,
            "fingerprint": stored.fingerprint if stored else None,
            "data": stored.data if stored else None,
            "failures": stored.failures if stored else 0,
            "deferred_until": stored.deferred_until if stored else None,
            "last_error": stored.last_error if stored else None,
        }
        row.update(values)
        self.rows = [r for r in self.rows if r[0] != source]
        self.rows.append((source, *row.values()))

    # -- the plan -------------------------------------------------------------------------

    def plan(self) -> _Plan:
        recorder, watch = self.recorder, self.watch
        if self.history:  # something is stored: rules and messages see every value
            for source in self.unloaded:
                prior = _decoded(self.stored.get(source))
                if prior is not None:
                    self.old = {**prior, **self.old}
                    self.new = {**prior, **self.new}
        for side in (self.new, self.old):
            side["pinned"] = watch.pinned
            side["project.django"] = recorder.config.project_django
        if self.status in ("failed", "not_found"):
            status = self.status
        elif self.failures:
            status = "failed"
        else:
            status = "ok" if self.history else "unchanged"
        error = self.error if self.status == "not_found" else None
        if self.failures:
            error = "; ".join(
                e if len(self.failures) == 1 else f"{source_title(s)}: {e}"
                for s, e in self.failures
            )
        return _Plan(
            watch,
            status,
            error,
            self.new,
            self.old if self.changes else None,
            self.changes,
            [],
            frozenset(self.blocked),
            self.history or None,
            self.baselines,
            self.rows,
            self.dp_fingerprint,
            self.failures,
            self.deferred,
            [],
            self.last_fetched,
            self.modified,
        )


class _StoredValues(Mapping[str, Any]):
    """A part's stored values, decoded only if a source reads them (PyPI does when one of
    its two answers is a 304 and the other is not): an unchanged cycle decodes none."""

    __slots__ = ("_data", "_values")

    def __init__(self, data: str):
        self._data = data
        self._values: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._values is None:
            self._values = fields.from_json(orjson.loads(self._data))
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())


def _stored_fields(stored: StoredPart | None, names: Iterable[str]) -> dict[str, Any]:
    """Some fields of a stored djangopackages record, as rules see them: of an unchanged
    record, those its poll result does not carry (none to read: no decoding)."""
    wanted = set(names)
    if not wanted:
        return {}
    return {k: v for k, v in (_decoded(stored) or {}).items() if k in wanted}


def _decoded(stored: StoredPart | None) -> dict[str, Any] | None:
    """A stored part's values, or None when it has none."""
    if stored is None or not stored.data:
        return None
    return fields.from_json(orjson.loads(stored.data))


def _as_rules_see(value: Any) -> Any:
    """A snapshot's value as :meth:`Snapshot.values` gives it (lists as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _content(value: Any) -> Any:
    """A ``parts`` row's column, with a planned snapshot as its canonical JSON."""
    return value.content_json() if isinstance(value, Snapshot) else value


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _volatile(rule: Any) -> bool:
    """Whether a condition rule's verdict can change while a package's values do not: it
    reads the clock, or djangopackages' bookkeeping."""
    return bool(rule.when.reads_clock or rule.when.fields.intersection(BOOKKEEPING))


def _same_record(watch: Watch, outcome: PollResult) -> bool:
    """Whether the poll found the djangopackages record the watch has stored (a ``pypi:``
    watch has none: its result has no fingerprint, see without_record)."""
    fingerprint = outcome.fingerprint
    return (
        outcome.status is PollStatus.UNCHANGED
        and fingerprint is not None
        and fingerprint == watch.fingerprint
    )


def _astir(stored: _Stored) -> bool:
    """Whether a rule's stored state is more than at rest: holding, firing, or with an
    alert open."""
    state, alert_id = stored
    return bool(state.holds or state.firing_since is not None or alert_id is not None)


def _nothing_new(plan: _Plan) -> bool:
    """Whether a plan stores no history and every source answered: its values are the
    ones stored."""
    return (
        plan.status == "unchanged"
        and plan.history is None
        and not plan.blocked
        and not plan.failures
        and not plan.deferred
    )


def _transitions(event: Event | None, alert_id: int | None) -> bool:
    """Whether a condition rule's step makes a transition: it fires, or re-notifies or
    resolves an alert that is open."""
    return event is Event.FIRING or (event is not None and alert_id is not None)


def _templated(rule: Any) -> bool:
    """A rule with a user's message template (slow, possibly: rendered outside the lock)."""
    return getattr(rule, "message", None) is not None


def _copied(report: CycleReport) -> CycleReport:
    """``report`` as it is now: a write that rolls back restores it."""
    return replace(
        report,
        changed=list(report.changed),
        failed=list(report.failed),
        not_found=list(report.not_found),
        deferred=list(report.deferred),
        transitions=list(report.transitions),
        groups=list(report.groups),
    )


async def poll_and_record(
    store: Store,
    config: Config,
    rules: Sequence[Any],
    sources: Any,
    slugs: Sequence[str] | None,
    *,
    now: datetime,
    rng: Callable[[], float] = random.random,
    on_result: Callable[[Any], None] | None = None,
) -> CycleReport:
    """Poll the watched packages ``slugs`` (None: every watched package, by name) through
    ``sources`` (:class:`Sources`) and record the cycle (see the module docstring).

    djangopackages' results are recorded as they come, :data:`BATCH` at a time (each batch
    polled from the other sources first), while its other list pages are still being
    fetched: a cycle holds a batch of records, not all of them. A batch is recorded in the
    order of ``slugs``; a cycle of at most one batch is recorded just as it was asked."""
    known = store.get_meta("djangopackages.count")
    recorder = CycleRecorder(store, config, rules, now=now, rng=rng)
    primary = sources.djangopackages
    # The results polled, not taken yet (a deque and two events, not an asyncio.Queue: a
    # cycle passes 10,000 results through, and a queue's put and get cost 2 µs each).
    arrived: deque[PollResult] = deque()
    came = asyncio.Event()  # a result (or the end of the poll) was added to ``arrived``
    taken = asyncio.Event()  # a result was taken from ``arrived``
    ended = False  # the poll is over: ``arrived`` gets nothing more
    day = day_number(now)
    read_today: set[bytes] = set()  # list pages whose recall was used today already

    def page_recall(digest: bytes) -> bytes | None:
        found = store.page_recall(digest)
        if found is None:
            return None
        recall, read_on = found
        if read_on == day:
            read_today.add(digest)
        return recall

    def read_page(digest: bytes, recall: bytes | None) -> None:
        """Keep what reading a list page gave, for the next cycle: a new recall, or the day
        an old one was used (not again on the same day: a transaction a page saved). A
        recall not kept (the database busy or full) only means that the page is decoded
        next time."""
        if recall is None and digest in read_today:
            return
        try:
            store.keep_page(digest, recall, day=day)
        except sqlite3.Error as exc:
            log.info("a list page's recall is not kept: %s", exc)

    async def pace() -> None:
        """Ask for another list page only once fewer than a batch of results wait."""
        while len(arrived) >= BATCH:
            taken.clear()
            await taken.wait()

    def told(result: PollResult) -> None:
        arrived.append(result)
        came.set()
        if on_result is not None:
            on_result(result)

    async def poll(fingerprints: dict[str, bytes]) -> None:
        nonlocal ended
        try:
            listed = [slug for slug in wanted if slug not in pypi]
            if listed:
                await primary.poll(
                    listed,
                    known_count=int(known) if known else None,
                    fingerprints=fingerprints,
                    fields=recorder.carried_fields,
                    on_result=told,
                    keep=False,
                    pace=pace,
                    recall=page_recall,
                    on_page=read_page,
                )
            for slug in pypi:
                told(without_record(slug))
        finally:
            ended = True
            came.set()

    async def record(batch: list[PollResult], *, close: bool) -> None:
        batch.sort(key=lambda result: order[result.slug])
        batch[:] = await poll_parts(recorder, batch, sources.others)
        await recorder.record_async(batch, close=close)

    with _collector_paused():
        if slugs is None:  # the watch rows name them: read once, not twice
            fingerprints = recorder.prepare(None)
            wanted = recorder.watched()
        else:
            wanted = list(dict.fromkeys(slugs))
            fingerprints = recorder.prepare(wanted)
        order = {slug: i for i, slug in enumerate(wanted)}
        pypi = {slug: None for slug in wanted if is_pypi_watch(slug)}  # in order, no record
        polling = asyncio.create_task(poll(fingerprints))
        try:
            batch: list[PollResult] = []
            while arrived or not ended:
                if not arrived:
                    came.clear()
                    await came.wait()
                    continue
                batch.append(arrived.popleft())
                taken.set()
                if len(batch) >= BATCH:
                    await record(batch, close=False)
            await polling  # its error, if it failed
            await record(batch, close=True)
        except BaseException:
            polling.cancel()
            # what the written batches decided is sent now, not once their hold expires
            with suppress(Exception):
                recorder.close()
            raise
    report = recorder.report
    for items in (report.changed, report.failed, report.deferred, report.transitions):
        items.sort(key=lambda item: order.get(_slug_of(item), len(order)))
    report.not_found.sort(key=lambda slug: order.get(slug, len(order)))
    if primary.last_count is not None and str(primary.last_count) != known:
        with store.transaction():
            store.set_meta("djangopackages.count", str(primary.last_count))
    try:
        store.forget_pages(before=day - 1)
    except sqlite3.Error as exc:  # the cycle is recorded: old recalls go next time
        log.info("list pages' old recalls are not forgotten: %s", exc)
    return report


def _slug_of(item: Any) -> str:
    """The package a report entry is about: a tuple's first item, a transition's package."""
    return str(item[0] if isinstance(item, tuple) else item.package)


async def poll_parts(
    recorder: CycleRecorder, results: Sequence[PollResult], sources: Sequence[Any]
) -> list[PollResult]:
    """Poll the other sources for the watches polled from djangopackages: those that read
    no other source's answers together, then those that do (OSV reads PyPI's version)."""
    by_slug = {result.slug: result for result in results}
    first = [s for s in sources if not getattr(s, "after", ())]
    polled: set[tuple[str, str]] = set()  # (source, watch)
    for stage in (first, sources):
        if not stage or not by_slug:
            continue
        known = recorder.known_values(by_slug)
        # The second stage: the sources that read others' answers, and a first-stage one
        # for the watches whose key only those answers gave (a pypi:NAME watch's GitHub
        # repository is the one PyPI names).
        work = []
        for source in stage:
            due = recorder.due(source, known, polled)
            if due:
                work.append((source, due))
        answers = await asyncio.gather(*(source.poll(due) for source, due in work))
        for (source, _), parts in zip(work, answers, strict=True):
            for part in parts:
                polled.add((source.name, part.watch))
                result = by_slug[part.watch]
                by_slug[part.watch] = replace(result, parts={**result.parts, source.name: part})
    return [by_slug[result.slug] for result in results]


def without_record(slug: str) -> PollResult:
    """The djangopackages side of a ``pypi:NAME`` watch's poll: nothing asked, nothing
    known (its fields stay unknown, its rules do not fire), nothing failed."""
    return PollResult(slug, PollStatus.UNCHANGED, None, None, None, 0.0, None, {})


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one cycle.

    A cycle builds a snapshot per package, all alive until they are recorded, and creates
    no reference cycles worth collecting early; with the collector on, each of its passes
    re-scans that growing heap (about a sixth of a 10,000-package check). Reference
    counting still frees everything as usual; collection resumes when the cycle ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
