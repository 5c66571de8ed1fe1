"""Read-side views of the store for the CLI: the alert listing (SPEC §4 ``alerts``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from monitor.store import Store, iso

RECENT_CHANGES = timedelta(days=7)


def list_alerts(store: Store, *, now: datetime, show_all: bool = False) -> list[dict[str, Any]]:
    """Alerts newest first. Without ``show_all``: condition alerts firing now, change alerts
    of the last 7 days, and anything whose deliveries are pending or failed."""
    rows = store.query(
        "SELECT a.*, w.slug FROM alerts a JOIN watches w ON w.id = a.watch_id"
        " ORDER BY a.started_at DESC, a.id DESC"
    )
    deliveries = _deliveries(store)
    mutes = store.active_mutes(now)
    recent = iso(now - RECENT_CHANGES)
    items = []
    for row in rows:
        sent = deliveries.get(row["id"], [])
        undelivered = any(d["status"] in ("pending", "failed") for d in sent)
        wanted = (
            show_all
            or (row["kind"] == "condition" and row["status"] == "firing")
            or (row["kind"] == "change" and row["started_at"] >= recent)
            or undelivered
        )
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


def _deliveries(store: Store) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for row in store.query(
        "SELECT t.alert_id, t.status AS transition, t.repeat, d.channel, o.status, o.attempts,"
        " o.last_error FROM deliveries d JOIN transitions t ON t.id = d.transition_id"
        " JOIN outbox o ON o.id = d.group_id ORDER BY d.id"
    ):
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
