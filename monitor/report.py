"""Read-side views of the store for the CLI (SPEC §4): ``alerts``, ``mutes``, ``status``."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.alerts import BUILTIN_RULES
from monitor.errors import UsageError
from monitor.store import Store, iso
from monitor.text import one_line, width

RECENT_CHANGES = timedelta(days=7)


@dataclass(frozen=True)
class AlertRows:
    """A page of :func:`list_alerts`: the alerts in the shape of ``alerts --json`` (SPEC §4),
    the id of the last one (the cursor of the next page), and how many come after it (0
    when none; None when not counted)."""

    items: list[dict[str, Any]]
    last: int | None
    more: int | None


def list_alerts(
    store: Store,
    *,
    now: datetime,
    show_all: bool = False,
    rules: Collection[str] | None = None,
    limit: int | None = None,
    before: int | None = None,
    count: bool = True,
) -> AlertRows:
    """Alerts newest first, the ``limit`` after the alert with id ``before`` (the first
    ``limit`` without it; every one with ``limit`` None). Without ``show_all``: condition
    alerts firing now, change alerts of the last 7 days, and anything whose deliveries are
    pending or failed, of the rules in force (``rules``: their ids; the built-in alerts
    always count), so a deleted or disabled rule's alerts are only history. ``count``: count
    those after the page (else ``more`` is None when the page is full). Reads the page's
    alerts and their deliveries alone."""
    known = None if rules is None else {*rules, *(rule.id for rule in BUILTIN_RULES)}
    recent = None if show_all else iso(now - RECENT_CHANGES)
    after = None
    if before is not None:
        after = store.alert_position(before)
        if after is None:
            raise UsageError(f"no alert has the id {before}")
    rows = store.alert_rows(after=after, limit=limit, recent=recent, rules=known)
    deliveries = _deliveries(store, [row["id"] for row in rows])
    muted = _muted(store.active_mutes(now))
    items = [
        {
            "rule": row["rule"],
            "package": row["slug"],
            "kind": row["kind"],
            "status": row["status"],
            "severity": row["severity"],
            "started_at": row["started_at"],
            "resolved_at": row["resolved_at"],
            "summary": row["summary"],
            "muted": _is_muted(muted, row["slug"], row["rule"]),
            "deliveries": deliveries.get(row["id"], []),
        }
        for row in rows
    ]
    last = rows[-1] if rows else None
    more: int | None = 0
    if limit is not None and last is not None and len(rows) == limit:
        position = (last["started_at"], last["id"])
        more = store.alert_count(after=position, recent=recent, rules=known) if count else None
    return AlertRows(items, last["id"] if last else None, more)


def alert_chunks(
    store: Store,
    *,
    now: datetime,
    show_all: bool = False,
    rules: Collection[str] | None = None,
    before: int | None = None,
    size: int = 1000,
) -> Iterator[list[dict[str, Any]]]:
    """Every alert :func:`list_alerts` gives without a limit, ``size`` at a time: what is in
    memory stays one chunk, however many there are."""
    while True:
        page = list_alerts(
            store, now=now, show_all=show_all, rules=rules, limit=size, before=before, count=False
        )
        if page.items:
            yield page.items
        if len(page.items) < size:
            return
        before = page.last


def _is_muted(muted: dict[str, set[str | None]], package: str, rule: str) -> bool:
    rules = muted.get(package, set())
    return None in rules or rule in rules


def _muted(mutes: list[dict[str, Any]]) -> dict[str, set[str | None]]:
    """package -> the rules muted for it (None: every rule)."""
    out: dict[str, set[str | None]] = {}
    for mute in mutes:
        out.setdefault(mute["slug"], set()).add(mute["rule"])
    return out


def is_current(kind: str, status: str, started_at: str, recent: str) -> bool:
    """Whether plain ``alerts`` shows an alert: a condition alert firing now, or a change
    alert started since ``recent`` (ISO time, :data:`RECENT_CHANGES` ago)."""
    return (kind == "condition" and status == "firing") or (
        kind == "change" and started_at >= recent
    )


def _deliveries(store: Store, alert_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for row in store.alert_deliveries(alert_ids) if alert_ids else []:
        out.setdefault(row["alert_id"], []).append(
            {
                "channel": row["channel"],
                "transition": "repeat" if row["repeat"] else row["transition"],
                "status": row["status"],
                "attempts": row["attempts"],
                "last_error": row["last_error"],
            }
        )
    return out


def table_lines(rows: Sequence[Sequence[str]], *, right: Collection[int] = ()) -> list[str]:
    """Rows as aligned text lines, columns two spaces apart; the ``right`` columns (numbers)
    aligned right, the others left. Each cell is shown on one line without control or bidi
    characters, and measured in terminal columns, so upstream text cannot break the columns."""
    cells = [[one_line(cell) for cell in row] for row in rows]
    widths = [max(width(row[column]) for row in cells) for column in range(len(cells[0]))]
    return [
        "  ".join(
            _pad(cell, size, right=column in right)
            for column, (cell, size) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]


def _pad(cell: str, size: int, *, right: bool) -> str:
    fill = " " * (size - width(cell))
    return fill + cell if right else cell + fill


def list_mutes(store: Store, *, now: datetime) -> list[dict[str, Any]]:
    """Active mutes by package: ``rule`` None mutes every rule, ``until`` None is forever."""
    rows = sorted(store.active_mutes(now), key=lambda m: (m["slug"], m["created_at"]))
    return [
        {
            "package": m["slug"],
            "rule": m["rule"],
            "until": m["until"],
            "comment": m["comment"],
            "created_at": m["created_at"],
            "set_by": m.get("set_by"),
        }
        for m in rows
    ]


def muted_rules(mutes: list[dict[str, Any]]) -> dict[str, list[str] | None]:
    """package -> the rules muted for it, or None when every rule is (from :func:`list_mutes`)."""
    out: dict[str, list[str] | None] = {}
    for mute in mutes:
        rules = out.setdefault(mute["package"], [])
        if rules is None:
            continue
        if mute["rule"] is None:
            out[mute["package"]] = None
        elif mute["rule"] not in rules:
            rules.append(mute["rule"])
    return out


DAEMON_TICK = "run.last_tick"  # meta key: JSON {"at", "pid"} written by each `run` tick
NEXT_DUE_SHOWN = 5


def status_report(
    store: Store,
    *,
    now: datetime,
    database: str,
    exists: bool,
    config: str | None,
    url: str,
    others: dict[str, str] | None = None,
) -> dict[str, Any]:
    """What ``monitor status`` shows: paths in use, the daemon's last tick, the last cycle,
    what is due next, source health, deliveries and mutes."""
    tick = store.get_meta(DAEMON_TICK)
    cycle = store.last_poll()
    due_now, next_due = store.next_due(now, NEXT_DUE_SHOWN)
    outbox = store.outbox_counts()
    health = store.poll_health()
    return {
        "database": database,
        "database_exists": exists,
        "config": config,
        "watches": store.watch_count(),
        "daemon": json.loads(tick) if tick else None,
        "last_cycle": (
            {"at": cycle[0]["at"], **{row["status"]: row["n"] for row in cycle}} if cycle else None
        ),
        "due_now": due_now,
        "next_due": next_due,
        "sources": {
            "djangopackages": {"url": url, **health},
            **{
                name: {"url": other, **store.part_health(name)}
                for name, other in (others or {}).items()
            },
        },
        "deliveries": {"pending": outbox.get("pending", 0), "failed": outbox.get("failed", 0)},
        "mutes": list_mutes(store, now=now),
    }


def option_change(name: str, old: Any, new: Any) -> str:
    """A watch option's change for people: ``interval 1h (was the default)``."""

    def shown(value: Any) -> str:
        if isinstance(value, list):
            value = ",".join(value)
        return value or ("none" if name == "pinned" else "the default")

    return f"{name} {shown(new)} (was {shown(old)})"
