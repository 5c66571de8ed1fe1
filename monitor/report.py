"""Read-side views of the store for the CLI (SPEC §4): ``alerts``, ``mutes``, ``status``."""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

from monitor.alerts import BUILTIN_RULES
from monitor.store import Store, iso
from monitor.text import one_line, width

RECENT_CHANGES = timedelta(days=7)


def list_alerts(
    store: Store, *, now: datetime, show_all: bool = False, rules: Collection[str] | None = None
) -> list[dict[str, Any]]:
    """Alerts newest first. Without ``show_all``: condition alerts firing now, change alerts
    of the last 7 days, and anything whose deliveries are pending or failed, of the rules in
    force (``rules``: their ids; the built-in alerts always count), so a deleted or disabled
    rule's alerts are only history."""
    known = None if rules is None else {*rules, *(rule.id for rule in BUILTIN_RULES)}
    rows = store.alert_rows()
    deliveries = _deliveries(store)
    mutes = store.active_mutes(now)
    recent = iso(now - RECENT_CHANGES)
    items = []
    for row in rows:
        sent = deliveries.get(row["id"], [])
        undelivered = any(d["status"] in ("pending", "failed") for d in sent)
        current = is_current(row["kind"], row["status"], row["started_at"], recent)
        in_force = known is None or row["rule"] in known
        wanted = show_all or (current and in_force) or undelivered
        if not wanted:
            continue
        items.append(
            {
                "rule": row["rule"],
                "package": row["slug"],
                "kind": row["kind"],
                "status": row["status"],
                "severity": row["severity"],
                "started_at": row["started_at"],
                "resolved_at": row["resolved_at"],
                "summary": row["summary"],
                "muted": any(
                    m["slug"] == row["slug"] and m["rule"] in (None, row["rule"]) for m in mutes
                ),
                "deliveries": sent,
            }
        )
    return items


def is_current(kind: str, status: str, started_at: str, recent: str) -> bool:
    """Whether plain ``alerts`` shows an alert: a condition alert firing now, or a change
    alert started since ``recent`` (ISO time, :data:`RECENT_CHANGES` ago)."""
    return (kind == "condition" and status == "firing") or (
        kind == "change" and started_at >= recent
    )


def _deliveries(store: Store) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for row in store.alert_deliveries():
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
