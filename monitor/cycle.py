"""One cycle: poll results -> snapshots -> changes -> rules -> transitions -> outbox groups.

The packages polled by one ``check``, one ``watch`` or one ``run`` tick form a cycle, in
three steps of :class:`CycleRecorder` (:func:`poll_and_record` runs them):

- ``prepare`` reads the watches and hands the source the fingerprints of their last stored
  records, so it can report unchanged ones without parsing them;
- ``observe`` takes each result as it arrives and works out what needs no database (the
  condition rules' verdicts) while the rest of the poll is on the network;
- ``record`` first works out, outside any transaction, what each result means (its
  :class:`_Plan`: diff, change rules fired) and which alerts will change, and renders their
  messages (users' templates, which may be slow); then it writes everything the cycle learned
  in ONE transaction: check rows, new snapshots, alert state, transitions and their delivery
  groups.

Polling and rendering hold no database lock, so a slow template never makes another process
wait for the write lock. If another process commits meanwhile, the transaction reads again;
should that call for a message not rendered yet, it rolls back, renders it outside, and tries
again. A crash (or a cancelled cycle) before the commit stores nothing (the next poll sees the
same changes); a crash after it leaves pending deliveries for the outbox. Nothing is lost and
no alert is decided twice.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import orjson

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
from monitor.diff import Change, diff
from monitor.durations import parse_duration
from monitor.expr import LimitExceeded, UnknownValue
from monitor.outbox import queue_group
from monitor.snapshot import BOOKKEEPING, Snapshot
from monitor.sources import PollResult
from monitor.store import Store, Watch, from_iso, iso


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
    failed: list[tuple[str, str]] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    rule_errors: list[tuple[str, str, str]] = field(default_factory=list)  # slug, rule, error

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "unchanged": self.unchanged,
            "changed": [
                {"slug": slug, "changes": [c.to_json_dict() for c in changes]}
                for slug, changes in self.changed
            ],
            "failed": [{"slug": slug, "error": error} for slug, error in self.failed],
            "not_found": list(self.not_found),
            "transitions": [t.to_json_dict() for t in self.transitions],
            "rule_errors": [
                {"slug": slug, "rule": rule, "error": error}
                for slug, rule, error in self.rule_errors
            ],
        }


def package_links(base_url: str, slug: str, snapshot: Snapshot | None) -> dict[str, str | None]:
    return {
        "djangopackages": f"{base_url}/packages/p/{slug}/",
        "repo": snapshot.repo_url if snapshot else None,
        "pypi": snapshot.pypi_url if snapshot else None,
    }


log = logging.getLogger(__name__)

_Stored = tuple[RuleState, int | None]  # a rule's state and its firing alert's row id
_NO_STATE: _Stored = (RuleState(), None)


@dataclass(frozen=True, slots=True)
class _Observation:
    """What one poll result tells before it meets the stored state."""

    verdicts: tuple[tuple[Any, bool | None], ...]  # (condition rule, holds) where it applies
    last_fetched: int | None  # the record's bookkeeping, Unix seconds
    modified: int | None


_NOTHING_SEEN = _Observation((), None, None)  # a failed or not-found poll
_RACED = "changed by another process while polled, and the record seen is not stored"


@dataclass(slots=True)
class _Plan:
    """What one poll result means for its watch, before anything is written: worked out
    from the result and the watch row alone, so it holds for as long as that row does, and
    outside the write transaction (comparing snapshots, evaluating change rules, rendering
    messages hold no lock)."""

    watch: Watch
    status: str  # as stored: an ok poll that changed nothing is "unchanged"
    error: str | None
    snapshot: Snapshot | None  # the content polled, if any
    old: Snapshot | None  # the stored snapshot it differs from
    changes: list[Change]
    observed: _Observation
    store_snapshot: bool  # ``snapshot`` becomes the watch's newest
    refingerprint: bool  # the same content in another form: store the record's fingerprint
    fired: list[Any]  # the change rules the changes fire, superseded ones dropped
    summaries: dict[str, str] = field(default_factory=dict)  # rule id -> rendered message
    last_seen: Snapshot | None = None  # the watch's newest stored snapshot, once read


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
# How each poll status bears on the built-in alerts, in BUILTIN_RULES order.
_BUILTIN_OBSERVED = {
    status: tuple(builtin_observations(status)[rule.id] for rule in BUILTIN_RULES)
    for status in ("ok", "unchanged", "failed", "not_found")
}

# The rows every polled package gets, written in two executemany calls per cycle.
_INSERT_CHECK = (
    "INSERT INTO checks (watch_id, checked_at, duration_ms, status, error, snapshot_id,"
    " last_fetched, modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_WATCH = (
    "UPDATE watches SET last_checked_at = ?, last_status = ?, last_error = ?, failures = ?,"
    " snapshot_id = ?, title = ?, package_id = ?, next_due_at = ?, fingerprint = ? WHERE id = ?"
)


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
        # What condition rules read; a change rule or a message template sees every field.
        self.condition_fields = sorted({f for r in self._condition_rules for f in r.when.fields})
        self.now = now
        self.rng = rng
        self.new_id = new_id
        self.report = CycleReport()
        self._now_iso = iso(now)
        self._due_from: dict[str | None, datetime] = {}  # interval -> now + interval
        self._due_texts: dict[tuple[str | None, int], str] = {}
        self._observations: dict[str, _Observation] = {}
        self._ahead: dict[tuple[str, str], str] = {}  # (slug, rule id) -> message, see below
        self._watches: dict[str, Watch] | None = None
        self._read_at = 0
        self._view: _View | None = None
        self._may_defer = True  # may a missing message roll the write back (see _summary)
        self._channel_notices: dict[str, list[tuple[int, Notice]]] = {}

    # -- entry point --------------------------------------------------------------------

    def prepare(self, slugs: Sequence[str]) -> dict[str, bytes]:
        """Read the watches about to be polled; return the fingerprints of their last stored
        records, for the source to recognise unchanged ones.

        :meth:`record` reuses what this read unless another connection has committed since;
        this connection must not change these watches in between (one cycle at a time).
        """
        self._read_at = self.store.data_version()
        self._watches = self.store.watches(list(slugs))
        return {slug: w.fingerprint for slug, w in self._watches.items() if w.fingerprint}

    def render_baselines(self, outcomes: Sequence[PollResult]) -> None:
        """For ``watch``, which writes its new watch rows and their baselines in one
        transaction of its own (a failed watch changes nothing): render, before that
        transaction, the messages the baselines will need, as if each package were watched
        already. A new watch has no rule state, so which alerts fire is known now."""
        for outcome in outcomes:
            new_watch = Watch(0, outcome.slug, outcome.package_id, None, (), None, 0, None, None)
            observed = self._observations[outcome.slug] = self._observed(outcome)
            plan = self._plan(new_watch, outcome, observed, baseline=True)
            for rule in self._unrendered(plan, {}):
                message = rule.render_message(self._context(rule, plan))
                self._ahead[outcome.slug, rule.id] = message

    def record(self, outcomes: Sequence[PollResult], *, baseline: bool = False) -> CycleReport:
        """Store the outcomes, decide transitions and queue their deliveries (one txn)."""
        for _ in self._recording(outcomes, baseline):
            pass
        return self.report

    async def record_async(
        self, outcomes: Sequence[PollResult], *, baseline: bool = False
    ) -> CycleReport:
        """:meth:`record`, letting the event loop run every few hundredths of a second while
        it compares snapshots and renders messages (never inside the transaction): a stop
        signal is heard, and cancelling the cycle there stores nothing."""
        paused = time.monotonic()
        for _ in self._recording(outcomes, baseline):
            if time.monotonic() - paused > _SLICE:
                await asyncio.sleep(0)
                paused = time.monotonic()
        return self.report

    def _recording(self, outcomes: Sequence[PollResult], baseline: bool) -> Iterator[None]:
        """Plan and render outside the transaction (yielding after each step), then write.
        A write that needs a message rendered too late rolls back and goes round again."""
        for attempt in range(1, _ATTEMPTS + 1):
            yield from self._replan(outcomes, baseline)
            yield from self._render_messages()
            try:
                self._write(outcomes, baseline, last_attempt=attempt == _ATTEMPTS)
            except _Unrendered:  # rolled back: nothing of this attempt is stored
                self.report = _unwritten(self.report)
            else:
                return

    def _write(self, outcomes: Sequence[PollResult], baseline: bool, *, last_attempt: bool) -> None:
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
            self._watch_updates: list[tuple[Any, ...]] = []
            self._channel_notices = {}
            for outcome in outcomes:
                plan = view.plans.get(outcome.slug)
                if plan is None:  # unwatched while we polled
                    continue
                stored = view.states.get(plan.watch.id, {})
                if stored:
                    self._retire_removed_rules(plan.watch, stored)
                self._record_one(plan, outcome, stored)
            self.store.conn.executemany(_INSERT_CHECK, self._checks)
            self.store.conn.executemany(_UPDATE_WATCH, self._watch_updates)
            self._queue_groups()

    # -- planning, outside the transaction ---------------------------------------------

    def _replan(self, outcomes: Sequence[PollResult], baseline: bool) -> Iterator[None]:
        """Bring :attr:`_view` up to the database's current version: plan again the packages
        whose watch row changed, read the rule states again. Yields after each plan made."""
        version = self.store.data_version()  # first: a commit after it shows at the next look
        earlier = self._view
        if earlier is not None and earlier.version == version:
            return
        watches = self._watches
        if watches is None or version != self._read_at:
            watches = self.store.watches([o.slug for o in outcomes])
        self._watches = None  # prepare()'s read serves once
        plans: dict[str, _Plan] = {}
        for outcome in outcomes:
            watch = watches.get(outcome.slug)
            if watch is None:
                continue
            plan = earlier.plans.get(outcome.slug) if earlier else None
            if plan is None or plan.watch != watch:
                observed = plan.observed if plan else self._observed(outcome)
                plan = self._plan(watch, outcome, observed, baseline)
                yield
            plans[outcome.slug] = plan
        states = self._load_states([plan.watch.id for plan in plans.values()])
        self._view = _View(version, plans, states)

    def _observed(self, outcome: PollResult) -> _Observation:
        return self._observations.pop(outcome.slug, None) or self._observe(outcome)

    def _plan(
        self, watch: Watch, outcome: PollResult, observed: _Observation, baseline: bool
    ) -> _Plan:
        status, error = str(outcome.status), outcome.error
        snapshot, fingerprint = outcome.snapshot, outcome.fingerprint
        old: Snapshot | None = None
        changes: list[Change] = []
        refingerprint = store_snapshot = False
        if status == "unchanged" and fingerprint != watch.fingerprint:
            # Another process stored a newer snapshot while we polled; what we saw is the
            # content of an earlier one, so compare that with the newest like any record.
            snapshot = self._earlier_snapshot(watch, outcome)
            status, error = ("ok", None) if snapshot is not None else ("failed", _RACED)
        if status == "ok" and snapshot is not None:
            if watch.snapshot_id is not None and (
                fingerprint is None or fingerprint != watch.fingerprint
            ):
                old = self.store.snapshot(watch.snapshot_id)
                changes = diff(old, snapshot)
                # No change: the same content in another form.
                refingerprint = not changes and fingerprint is not None
            if watch.snapshot_id is not None and not changes:
                status, old = "unchanged", None
            else:
                store_snapshot = True
        fired: list[Any] = []
        if not baseline and old is not None and snapshot is not None and changes:
            fired = self._fired_change_rules(watch.slug, snapshot, old)
        return _Plan(
            watch,
            status,
            error,
            snapshot,
            old,
            changes,
            observed,
            store_snapshot,
            refingerprint,
            fired,
        )

    def _fired_change_rules(self, slug: str, snapshot: Snapshot, old: Snapshot) -> list[Any]:
        new_values, old_values = snapshot.values(), old.values()
        fired = [
            rule
            for rule in self._change_rules
            if rule.applies_to(slug) and self._holds(rule, new_values, old_values, slug) is True
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
            for rule in self._unrendered(plan, view.states.get(plan.watch.id, {})):
                message = self._ahead.pop((plan.watch.slug, rule.id), None)
                if message is None:
                    message = rule.render_message(self._context(rule, plan))
                plan.summaries[rule.id] = message
                yield

    def _unrendered(self, plan: _Plan, states: dict[str, _Stored]) -> Iterator[Any]:
        """The rules with a template whose alert on this package changes in this cycle (as
        the write transaction will decide, given the same states), not rendered yet."""
        if plan.status in ("ok", "unchanged"):
            for rule, holds in plan.observed.verdicts:
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
        watch, status, snapshot = plan.watch, plan.status, plan.snapshot
        report = self.report
        report.checked += 1
        new_snapshot_id = self._store_snapshot(plan, outcome)
        if status == "unchanged":
            report.unchanged += 1
        elif status == "failed":
            report.failed.append((watch.slug, plan.error or "failed"))
        elif status == "not_found":
            report.not_found.append(watch.slug)
        stored_fingerprint = plan.store_snapshot or plan.refingerprint
        observed = plan.observed
        self._checks.append(
            (
                watch.id,
                self._now_iso,
                round(outcome.duration * 1000),
                status,
                plan.error,
                new_snapshot_id,
                observed.last_fetched,
                observed.modified,
            )
        )
        self._watch_updates.append(
            (
                self._now_iso,
                status,
                plan.error,
                watch.failures + 1 if status == "failed" else 0,
                new_snapshot_id or watch.snapshot_id,
                snapshot.title if snapshot else watch.title,
                outcome.package_id or watch.package_id,
                self._next_due(watch.interval),
                outcome.fingerprint if stored_fingerprint else watch.fingerprint,
                watch.id,
            )
        )

        # A rule that never held and does not hold now has nothing to store or send: the
        # common case, so step() and its arguments are skipped for it.
        for rule, holds in zip(BUILTIN_RULES, _BUILTIN_OBSERVED[status], strict=True):
            if holds or rule.id in states:
                self._condition(plan, rule, holds, states, new_snapshot_id, outcome)
        if status not in ("ok", "unchanged"):
            return
        for rule, holds in observed.verdicts:
            if holds or rule.id in states:
                self._condition(plan, rule, holds, states, new_snapshot_id, outcome)
        for rule in plan.fired:
            self._fire_change(plan, rule, new_snapshot_id)

    def _store_snapshot(self, plan: _Plan, outcome: PollResult) -> int | None:
        """Write what the plan says of the snapshots; the new snapshot's id, if one is."""
        watch = plan.watch
        if plan.refingerprint:
            self.store.update("snapshots", watch.snapshot_id, {"fingerprint": outcome.fingerprint})
        if not plan.store_snapshot:
            return None
        assert plan.snapshot is not None
        if plan.changes:
            self.report.changed.append((watch.slug, plan.changes))
        return self.store.insert(
            "snapshots",
            {
                "watch_id": watch.id,
                "taken_at": self._now_iso,
                "data": plan.snapshot.content_json(),
                "fingerprint": outcome.fingerprint,
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

    def observe(self, result: PollResult) -> None:
        """Take in one poll result as it arrives, before :meth:`record`: what can be told
        without the database (the condition rules' verdicts) is worked out now, while the
        rest of the poll is still on the network."""
        self._observations[result.slug] = self._observe(result)

    def _observe(self, result: PollResult) -> _Observation:
        snapshot = result.snapshot
        if snapshot is not None:
            values = snapshot.values((*self.condition_fields, *BOOKKEEPING))
        elif result.values is not None:
            values = result.values
        else:
            return _NOTHING_SEEN
        verdicts = tuple(
            (rule, self._holds(rule, values, None, result.slug))
            for rule in self._condition_rules
            if rule.applies_to(result.slug)
        )
        return _Observation(
            verdicts, _unix(values.get("last_fetched")), _unix(values.get("modified"))
        )

    def _earlier_snapshot(self, watch: Watch, outcome: PollResult) -> Snapshot | None:
        """The stored snapshot an ``unchanged`` poll matched, with the poll's bookkeeping."""
        earlier = self.store.snapshot_by_fingerprint(watch.id, outcome.fingerprint)
        if earlier is None or outcome.values is None:
            return None
        seen = outcome.values
        return replace(
            earlier, last_fetched=seen.get("last_fetched"), modified=seen.get("modified")
        )

    def _next_due(self, interval: str | None) -> str:
        """When the package is due again, as stored: its interval plus a random jitter, in
        whole seconds (so the few thousand distinct values are formatted once each). The
        jitter is at most a tenth of the interval, so it spreads polls without swamping it."""
        due_from = self._due_from.get(interval)
        if due_from is None:
            every = parse_duration(interval) if interval else self.config.schedule.interval
            due_from = self._due_from[interval] = self.now + every
        spread = min(self.config.schedule.jitter, (due_from - self.now) / 10).total_seconds()
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
        try:
            return bool(rule.when.evaluate(values, old, self.now))
        except LimitExceeded as exc:
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
        snapshot = self._shown(plan) if _transitions(event, alert_id) else plan.snapshot
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
            plan.snapshot,
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
            reason = outcome.error if outcome and outcome.error else "polls failing"
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
            snapshot, old, changes = plan.snapshot, plan.old, plan.changes
        else:
            snapshot, old, changes = self._shown(plan), None, []
        watch = plan.watch
        title = (snapshot.title if snapshot else None) or watch.title or watch.slug
        new_values = snapshot.values() if snapshot else {}
        return {
            **new_values,
            "old": old.values() if old else {},
            "new": new_values,
            "slug": watch.slug,
            "title": title,
            "changes": [c.to_json_dict() for c in changes],
            "rule": rule.id,
            "severity": str(rule.severity),
        }

    def _shown(self, plan: _Plan) -> Snapshot | None:
        """The content a condition alert shows: what was polled or, for an unchanged, failed
        or not-found poll, the newest stored snapshot (read once)."""
        if plan.snapshot is not None:
            return plan.snapshot
        if plan.last_seen is None and plan.watch.snapshot_id is not None:
            plan.last_seen = self.store.snapshot(plan.watch.snapshot_id)
        return plan.last_seen

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
        snapshot: Snapshot | None,
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
            title=(snapshot.title if snapshot else None) or watch.title or watch.slug,
            summary=summary,
            started_at=started_at or self.now,
            resolved_at=resolved_at,
            changes=tuple(c.to_json_dict() for c in changes),
            labels=dict(rule.labels),
            links=package_links(self.config.djangopackages.url, watch.slug, snapshot),
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
                "changes": _json(notice.changes),
                "summary": summary,
                "muted": int(muted),
                "notice": _json(notice.to_json_dict()),
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
            notifier = self.config.notifiers.get(channel)
            if notifier is None or not severity_at_least(rule.severity, notifier.min_severity):
                continue
            self._channel_notices.setdefault(channel, []).append((transition_id, notice))

    def _is_muted(self, slug: str, rule_id: str) -> bool:
        return any(m["slug"] == slug and m["rule"] in (None, rule_id) for m in self._mutes)

    # -- outbox -------------------------------------------------------------------------

    def _queue_groups(self) -> None:
        for channel, items in self._channel_notices.items():
            group_id = queue_group(
                self.store,
                self.config,
                channel,
                "alerts",
                [n for _, n in items],
                now=self.now,
                new_id=self.new_id,
            )
            for transition_id, _ in items:
                self.store.insert(
                    "deliveries",
                    {
                        "transition_id": transition_id,
                        "group_id": group_id,
                        "channel": channel,
                    },
                )
            self.report.groups.append(group_id)

    def _load_states(self, watch_ids: list[int]) -> dict[int, dict[str, _Stored]]:
        out: dict[int, dict[str, _Stored]] = {}
        for row in self.store.rule_states(watch_ids):
            state = RuleState(
                holds=row["holds"],
                firing_since=from_iso(row["firing_since"]),
                last_notified_at=from_iso(row["last_notified_at"]),
                episode=row["episode"],
            )
            out.setdefault(row["watch_id"], {})[row["rule"]] = (state, row["alert_id"])
        return out


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _transitions(event: Event | None, alert_id: int | None) -> bool:
    """Whether a condition rule's step makes a transition: it fires, or re-notifies or
    resolves an alert that is open."""
    return event is Event.FIRING or (event is not None and alert_id is not None)


def _templated(rule: Any) -> bool:
    """A rule with a user's message template (slow, possibly: rendered outside the lock)."""
    return getattr(rule, "message", None) is not None


def _unwritten(report: CycleReport) -> CycleReport:
    """``report`` without what a rolled-back write transaction added to it."""
    return replace(
        report,
        checked=0,
        unchanged=0,
        changed=[],
        failed=[],
        not_found=[],
        transitions=[],
        groups=[],
    )


def _unix(value: datetime | None) -> int | None:
    return int(value.timestamp()) if value else None


async def poll_and_record(
    store: Store,
    config: Config,
    rules: Sequence[Any],
    source: Any,
    slugs: Sequence[str],
    *,
    now: datetime,
    rng: Callable[[], float] = random.random,
    on_result: Callable[[Any], None] | None = None,
) -> CycleReport:
    """Poll the watched packages ``slugs`` through ``source`` and record the cycle (see the
    module docstring)."""
    known = store.get_meta("djangopackages.count")
    recorder = CycleRecorder(store, config, rules, now=now, rng=rng)
    with _collector_paused():
        results = await source.poll(
            list(slugs),
            known_count=int(known) if known else None,
            fingerprints=recorder.prepare(slugs),
            fields=recorder.condition_fields,
            on_result=lambda result: _both(recorder.observe, on_result, result),
        )
        report = await recorder.record_async(results)
    if source.last_count is not None and str(source.last_count) != known:
        with store.transaction():
            store.set_meta("djangopackages.count", str(source.last_count))
    return report


def _both(first: Callable[[Any], None], then: Callable[[Any], None] | None, arg: Any) -> None:
    first(arg)
    if then is not None:
        then(arg)


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
