"""The outbox (SPEC §7): durable delivery groups, leased, sent, retried, recorded.

A group is one message to one channel. Queuing it (in the transaction that records its
transitions) stores only its input: the notices as JSON, the digest's content, or nothing for a
test message. Its body is rendered when the group is first leased and stored before it is sent,
so every retry sends the same bytes under the same id, and a notifier that cannot render (or a
channel whose ``${VAR}`` is unset) never stops a cycle from being recorded (STYLE 15). Sending
is a pipeline of small stages:

    lease (only one process sends a group)  ->  render once (stored)  ->  send (the notifier
    raises)  ->  decide (pure: delivered / retry at T / failed, clock injected)  ->  record, log

A render that raises fails that group for good ("<channel>: cannot render the message: ...");
a notifier that cannot be made from the config (an unset variable) leaves it pending.

Delivery is at-least-once: a process killed after sending but before recording sends again
when the lease expires; a delivered group is never sent again. The window is kept small: each
attempt is recorded "sending" before it is sent, and a group whose last attempt was cut short
asks its channel first (``Notifier.already_sent``: Slack with a bot token looks the message up
by the group id it carries as metadata) and is recorded delivered if the message is there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TextIO

from monitor.config import Config
from monitor.errors import ConfigError, PermanentError, RetryableError
from monitor.notify.base import excerpt
from monitor.store import Store, from_iso, iso

log = logging.getLogger("monitor.outbox")
# The daemon's handler (on "monitor") prints these; a CLI command prints its own summary, so
# nothing falls through to logging's last-resort stderr handler.
log.addHandler(logging.NullHandler())

BASE_DELAY = 2.0
MAX_DELAY = 3600.0
MAX_RETRY_AFTER = 300.0
GIVE_UP_AFTER = timedelta(hours=24)
LEASE_MARGIN = 60.0
# An attempt is recorded SENDING before it is sent and gets its outcome after; one left SENDING
# becomes INTERRUPTED when the group is next tried. A channel is searched for an interrupted
# attempt's message from this long before it started (clocks differ).
SENDING = "sending"
INTERRUPTED = "interrupted"
LOOKUP_MARGIN = timedelta(minutes=5)


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    next_attempt_at: datetime | None = None
    error: str | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def decide(
    error: Exception | None,
    *,
    attempts: int,
    first_attempt_at: datetime,
    now: datetime,
    rng: Callable[[], float] = random.random,
) -> Decision:
    """What to do after an attempt (pure). ``attempts`` counts this one."""
    if error is None:
        return Decision(Outcome.DELIVERED)
    message = str(error)
    if not isinstance(error, RetryableError):
        return Decision(Outcome.FAILED, error=message)
    if now - first_attempt_at >= GIVE_UP_AFTER:
        return Decision(Outcome.FAILED, error=f"{message} (gave up after 24h)")
    delay = min(MAX_DELAY, BASE_DELAY * 2 ** (attempts - 1)) * (0.5 + rng() / 2)
    if error.retry_after is not None:
        delay = min(MAX_RETRY_AFTER, error.retry_after)
    # Stored times have whole seconds: round up so a wait is never shorter than asked.
    at = now + timedelta(seconds=delay)
    if at.microsecond:
        at += timedelta(microseconds=1_000_000 - at.microsecond)
    return Decision(Outcome.RETRY, at, message)


def make_notifier(config: Config, channel: str, **kwargs: Any) -> Any:
    from monitor.notify import notifier_class

    settings = config.notifier(channel)
    settings.check_environment()  # ConfigError naming an unset ${VAR} and its key
    cls = notifier_class(settings.type)
    return cls(channel, settings.settings, timeout=settings.timeout, **kwargs)


def queue_group(
    store: Store,
    config: Config,
    channel: str,
    kind: str,
    notices: Sequence[Any],
    *,
    now: datetime,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    digest: dict[str, Any] | None = None,
) -> str:
    """Store a group's input pending; it is rendered when first sent. Call inside a
    transaction. Nothing here can fail on a notifier's account."""
    return _insert_group(
        store, channel, kind, group_input(kind, notices, digest), now=now, new_id=new_id
    )


def _insert_group(
    store: Store,
    channel: str,
    kind: str,
    data: dict[str, Any],
    *,
    now: datetime,
    new_id: Callable[[], str],
    status: str = "pending",
    held_until: datetime | None = None,
) -> str:
    group_id = new_id()
    store.insert(
        "outbox",
        {
            "id": group_id,
            "channel": channel,
            "kind": kind,
            "created_at": iso(now),
            "input": json.dumps(data),
            "status": status,
            "attempts": 0,
            "next_attempt_at": iso(now),
            "lease_until": iso(held_until) if held_until else None,
        },
    )
    return group_id


# A cycle's group of a channel is ``open`` while the cycle writes its batches (one message per
# channel per cycle); each batch holds it this long again. A group still open after that
# belongs to a cycle that died between batches: the outbox releases it, and sends what it has.
OPEN = "open"
OPEN_HOLD = timedelta(minutes=15)
# The input of a cycle's group: its notices are those of the transitions delivered through it
# (``deliveries``), read when it is rendered, not a second copy of each notice.
FROM_DELIVERIES = {"notices_from": "deliveries"}


def open_group(
    store: Store,
    channel: str,
    *,
    now: datetime,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> str:
    """Start a cycle's alerts group for ``channel``, held open (not sent) until
    :func:`release_groups`; its notices are the transitions linked to it in ``deliveries``.
    Call inside a transaction."""
    return _insert_group(
        store,
        channel,
        "alerts",
        FROM_DELIVERIES,
        now=now,
        new_id=new_id,
        status=OPEN,
        held_until=now + OPEN_HOLD,
    )


def hold_group(store: Store, group_id: str, *, now: datetime) -> bool:
    """Hold a cycle's open group for another batch; False if it was released meanwhile (its
    cycle was taken for dead), and the batch must open a group of its own."""
    cursor = store.conn.execute(
        "UPDATE outbox SET lease_until = ? WHERE id = ? AND status = ?",
        (iso(now + OPEN_HOLD), group_id, OPEN),
    )
    return cursor.rowcount > 0


def release_groups(store: Store, group_ids: Sequence[str], *, now: datetime) -> None:
    """Make a finished cycle's open groups pending: the outbox sends them now."""
    store.conn.executemany(
        "UPDATE outbox SET status = 'pending', lease_until = NULL, next_attempt_at = ?"
        " WHERE id = ? AND status = ?",
        [(iso(now), group_id, OPEN) for group_id in group_ids],
    )


def release_abandoned(store: Store, *, now: datetime) -> int:
    """Release the open groups of cycles that died between batches (their hold expired):
    what they hold was recorded, and is sent like any pending group. How many."""
    abandoned = "WHERE status = ? AND lease_until <= ?"
    params = (OPEN, iso(now))
    # read first: nearly always there is none, and a drain should not take the write lock
    if store.conn.execute(f"SELECT 1 FROM outbox {abandoned} LIMIT 1", params).fetchone() is None:
        return 0
    with store.transaction() as conn:
        cursor = conn.execute(
            f"UPDATE outbox SET status = 'pending', lease_until = NULL {abandoned}", params
        )
    return cursor.rowcount


def group_input(kind: str, notices: Sequence[Any], digest: dict[str, Any] | None) -> dict[str, Any]:
    """What a group is made of, as JSON: its notices, the digest's content, or nothing."""
    if kind == "alerts":
        return {"notices": [notice.to_json_dict() for notice in notices]}
    if kind == "digest":
        return {"digest": digest or {}}
    return {}


def render_group(notifier: Any, row: dict[str, Any], store: Store) -> dict[str, Any]:
    """The payload of a stored group, rendered by its channel's notifier."""
    from monitor.alerts import Notice

    data = json.loads(row["input"])
    created_at = from_iso(row["created_at"])
    if row["kind"] == "alerts":
        items = data["notices"] if "notices" in data else store.group_notices(row["id"])
        notices = [Notice.from_json_dict(item) for item in items]
        payload: dict[str, Any] = notifier.render_alerts(
            notices, group_id=row["id"], created_at=created_at
        )
    elif row["kind"] == "digest":
        payload = notifier.render_digest(
            **data["digest"], group_id=row["id"], created_at=created_at
        )
    else:
        payload = notifier.render_test(group_id=row["id"], created_at=created_at)
    return payload


def cannot_render(channel: str, notifier: Any, exc: Exception) -> PermanentError:
    """A render that raised: that message will never be sent (``KeyError: 'x'`` says why)."""
    reason = notifier.redact(excerpt(f"{type(exc).__name__}: {exc}"))
    return PermanentError(f"{channel}: cannot render the message: {reason}")


@dataclass
class DrainReport:
    delivered: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (group id, error)
    pending: list[str] = field(default_factory=list)


class Outbox:
    """Sends what is due. ``clock`` and ``sleep`` are injected so tests never wait."""

    def __init__(
        self,
        store: Store,
        config: Config,
        *,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        console: TextIO | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
    ):
        self.store = store
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.rng = rng
        self.console = console
        self.owner = uuid.uuid4().hex
        self.on_outcome = on_outcome  # (channel, outcome) of each attempt: the daemon's metrics
        self._notifiers: dict[str, Any] = {}

    def notifier(self, channel: str) -> Any:
        if channel not in self._notifiers:
            extra: dict[str, Any] = {}
            if self.config.notifier(channel).type == "console" and self.console is not None:
                extra["stream"] = self.console
            self._notifiers[channel] = make_notifier(self.config, channel, **extra)
        return self._notifiers[channel]

    async def aclose(self) -> None:
        for notifier in self._notifiers.values():
            await notifier.aclose()
        self._notifiers.clear()

    async def drain(self, *, budget: float = 0.0, only: Sequence[str] | None = None) -> DrainReport:
        """Send every group that is due; keep retrying for up to ``budget`` seconds.

        ``only`` limits the report (not the sending) to these group ids.
        """
        report = DrainReport()
        deadline = self.clock() + timedelta(seconds=budget)
        release_abandoned(self.store, now=self.clock())
        while True:
            due = self._due(self.clock())
            if due:
                by_channel: dict[str, list[dict[str, Any]]] = {}
                for row in due:
                    by_channel.setdefault(row["channel"], []).append(row)
                await asyncio.gather(
                    *(self._send_all(rows, report) for rows in by_channel.values())
                )
                continue
            wake = self._next_wake()
            if wake is None or wake > deadline:
                break
            await self.sleep(max(0.0, (wake - self.clock()).total_seconds()))
        pending = {
            row["id"] for row in self.store.query("SELECT id FROM outbox WHERE status = 'pending'")
        }
        report.pending = sorted(pending)
        if only is not None:
            wanted = set(only)
            report.delivered = [g for g in report.delivered if g in wanted]
            report.failed = [(g, e) for g, e in report.failed if g in wanted]
            report.pending = [g for g in report.pending if g in wanted]
        return report

    def _due(self, now: datetime) -> list[dict[str, Any]]:
        return self.store.query(
            "SELECT * FROM outbox WHERE status = 'pending' AND next_attempt_at <= ?"
            " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY created_at, id",
            (iso(now), iso(now)),
        )

    def _next_wake(self) -> datetime | None:
        row = self.store.conn.execute(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_until, ''))) FROM outbox"
            " WHERE status = 'pending'"
        ).fetchone()
        return from_iso(row[0]) if row and row[0] else None

    async def _send_all(self, rows: list[dict[str, Any]], report: DrainReport) -> None:
        for row in rows:
            await self._send_one(row, report)

    def _lease(self, row: dict[str, Any], now: datetime, report: DrainReport) -> bool:
        try:
            timeout = self.config.notifier(row["channel"]).timeout
        except KeyError:
            error = f"{row['channel']}: no such notifier in the config"
            self._finish(row, Decision(Outcome.FAILED, error=error), now, report)
            return False
        until = now + timedelta(seconds=timeout + LEASE_MARGIN)
        with self.store.transaction() as conn:
            cursor = conn.execute(
                "UPDATE outbox SET lease_owner = ?, lease_until = ? WHERE id = ?"
                " AND status = 'pending' AND (lease_until IS NULL OR lease_until <= ?)",
                (self.owner, iso(until), row["id"], iso(now)),
            )
            return cursor.rowcount == 1

    async def _send_one(self, row: dict[str, Any], report: DrainReport) -> None:
        if not self._lease(row, self.clock(), report):
            return
        error: Exception | None = None
        attempt: int | None = None
        try:
            notifier = self._notifier_for(row["channel"])
            payload = self._payload(row, notifier)
            if not await self._sent_before(row, notifier):
                attempt = self._begin_attempt(row)
                await notifier.send(payload, group_id=row["id"])
        except (RetryableError, PermanentError) as exc:
            error = exc
        except Exception as exc:  # a notifier bug must not lose the delivery
            error = RetryableError(f"{row['channel']}: {type(exc).__name__}")
        now = self.clock()
        first = from_iso(row["first_attempt_at"]) or now
        decision = decide(
            error, attempts=row["attempts"] + 1, first_attempt_at=first, now=now, rng=self.rng
        )
        self._finish(row, decision, now, report, attempt=attempt)

    async def _sent_before(self, row: dict[str, Any], notifier: Any) -> bool:
        """Whether an attempt that was interrupted (a "sending" attempt with no outcome: its
        process died mid-send) reached the channel after all, as far as the channel can tell:
        then the group is delivered without sending it again."""
        found = self.store.conn.execute(
            "SELECT MIN(at) FROM attempts WHERE group_id = ? AND outcome = ?",
            (row["id"], SENDING),
        ).fetchone()
        if not found or found[0] is None:
            return False
        since = from_iso(found[0]) - LOOKUP_MARGIN  # type: ignore[operator]
        return bool(await notifier.already_sent(row["id"], since=since))

    def _begin_attempt(self, row: dict[str, Any]) -> int:
        """Record the attempt as "sending" before it is sent, so a process killed mid-send
        leaves a trace the next sender can look up before sending again."""
        with self.store.transaction():
            return self.store.insert(
                "attempts", {"group_id": row["id"], "at": iso(self.clock()), "outcome": SENDING}
            )

    def _notifier_for(self, channel: str) -> Any:
        """The channel's notifier; one the config cannot make yet (an unset ``${VAR}``) is
        worth another try: the group waits until the environment has it."""
        try:
            return self.notifier(channel)
        except ConfigError as exc:
            raise RetryableError(f"{channel}: {exc.message}") from None

    def _payload(self, row: dict[str, Any], notifier: Any) -> dict[str, Any]:
        """The group's stored payload; rendered and stored first if this is its first send."""
        if row["payload"] is not None:
            return dict(json.loads(row["payload"]))
        try:
            text = json.dumps(render_group(notifier, row, self.store))
        except Exception as exc:
            raise cannot_render(row["channel"], notifier, exc) from None
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE outbox SET payload = ? WHERE id = ? AND payload IS NULL",
                (text, row["id"]),
            )
            stored = conn.execute("SELECT payload FROM outbox WHERE id = ?", (row["id"],))
            text = stored.fetchone()[0]
        return dict(json.loads(text))

    def _finish(
        self,
        row: dict[str, Any],
        decision: Decision,
        now: datetime,
        report: DrainReport,
        *,
        attempt: int | None = None,
    ) -> None:
        """Record an attempt's outcome, report it and log it (never a secret: errors are
        built from the channel name and what happened, and redacted by the notifier)."""
        with self.store.transaction():
            self._record(row, decision, now, attempt)
        if self.on_outcome is not None:
            self.on_outcome(row["channel"], str(decision.outcome))
        if decision.outcome is Outcome.DELIVERED:
            report.delivered.append(row["id"])
        elif decision.outcome is Outcome.FAILED:
            report.failed.append((row["id"], decision.error or "failed"))
        fields: dict[str, Any] = {
            "channel": row["channel"],
            "group": row["id"],
            "outcome": str(decision.outcome),
            "attempts": row["attempts"] + 1,
        }
        if decision.error:
            fields["error"] = decision.error
        if decision.next_attempt_at is not None:
            fields["next_attempt_at"] = iso(decision.next_attempt_at)
        level = logging.INFO if decision.outcome is Outcome.DELIVERED else logging.WARNING
        log.log(level, "delivery", extra={"fields": fields})

    def _record(
        self, row: dict[str, Any], decision: Decision, now: datetime, attempt: int | None
    ) -> None:
        """The attempt's outcome (on its "sending" row when it got that far). An earlier
        attempt of the group still "sending" was cut short by its process's end: it is marked
        so once this one has sent or found the message (until then it is still to look up)."""
        if attempt is not None or decision.outcome is Outcome.DELIVERED:
            self.store.conn.execute(
                "UPDATE attempts SET outcome = ? WHERE group_id = ? AND outcome = ?"
                " AND id IS NOT ?",
                (INTERRUPTED, row["id"], SENDING, attempt),
            )
        outcome = {"outcome": str(decision.outcome), "error": decision.error}
        if attempt is None:
            self.store.insert("attempts", {"group_id": row["id"], "at": iso(now), **outcome})
        else:
            self.store.update("attempts", attempt, outcome)
        status = {Outcome.DELIVERED: "delivered", Outcome.FAILED: "failed"}.get(
            decision.outcome, "pending"
        )
        self.store.update(
            "outbox",
            row["id"],
            {
                "status": status,
                "attempts": row["attempts"] + 1,
                "first_attempt_at": row["first_attempt_at"] or iso(now),
                "next_attempt_at": iso(decision.next_attempt_at)
                if decision.next_attempt_at
                else row["next_attempt_at"],
                "last_error": decision.error,
                "lease_owner": None,
                "lease_until": None,
                "delivered_at": iso(now) if status == "delivered" else None,
            },
        )
