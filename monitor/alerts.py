"""Alert words (SPEC §4, §6): rule kinds, transition statuses, severities, and the notice a
notifier renders for one transition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class RuleKind(StrEnum):
    CHANGE = "change"
    CONDITION = "condition"


class Status(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class Notice:
    """One alert transition as every notifier sees it (SPEC §7 webhook ``alerts[]`` item)."""

    id: str  # the alert episode: a condition alert's firing and resolved share it
    status: Status
    kind: RuleKind
    repeat: bool
    rule: str
    description: str
    severity: Severity
    package: str
    title: str
    summary: str
    started_at: datetime
    resolved_at: datetime | None = None
    changes: tuple[dict[str, Any], ...] = ()  # {"field", "old", "new"} with JSON values
    labels: dict[str, str] = field(default_factory=dict)
    links: dict[str, str | None] = field(default_factory=dict)  # djangopackages, repo, pypi

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": str(self.status),
            "kind": str(self.kind),
            "repeat": self.repeat,
            "rule": self.rule,
            "description": self.description,
            "severity": str(self.severity),
            "package": self.package,
            "title": self.title,
            "summary": self.summary,
            "started_at": _iso(self.started_at),
            "resolved_at": _iso(self.resolved_at),
            "changes": [dict(c) for c in self.changes],
            "labels": dict(self.labels),
            "links": dict(self.links),
        }

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> Notice:
        return cls(
            id=data["id"],
            status=Status(data["status"]),
            kind=RuleKind(data["kind"]),
            repeat=bool(data["repeat"]),
            rule=data["rule"],
            description=data["description"],
            severity=Severity(data["severity"]),
            package=data["package"],
            title=data["title"],
            summary=data["summary"],
            started_at=datetime.fromisoformat(data["started_at"]),
            resolved_at=(
                datetime.fromisoformat(data["resolved_at"]) if data.get("resolved_at") else None
            ),
            changes=tuple(data.get("changes") or ()),
            labels=dict(data.get("labels") or {}),
            links=dict(data.get("links") or {}),
        )


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")


# -- the lifecycle ---------------------------------------------------------------------------
#
# A condition (a rule's `when`, or a built-in's poll outcome) is observed once per poll as
# True, False or None (unknown). `step` turns that observation and the stored state into the
# next state and at most one event. Change rules skip `step`: each change that matches fires.


class Event(StrEnum):
    FIRING = "firing"
    REPEAT = "repeat"
    RESOLVED = "resolved"


@dataclass(frozen=True)
class RuleState:
    """What is stored per (rule, package) between polls."""

    holds: int = 0  # consecutive polls the condition held
    firing_since: datetime | None = None  # set while the alert fires
    last_notified_at: datetime | None = None
    episode: str | None = None


def step(
    state: RuleState,
    holds: bool | None,
    *,
    for_polls: int,
    repeat: timedelta | None,
    now: datetime,
    new_episode: Callable[[], str],
) -> tuple[RuleState, Event | None]:
    """The next state of a condition alert after one observation (pure; clock injected)."""
    if holds is None:  # unknown data never fires and never resolves
        return state, None
    if not holds:
        if state.firing_since is not None:
            return RuleState(episode=state.episode), Event.RESOLVED
        return (state if state.holds == 0 else RuleState()), None
    count = state.holds + 1
    if state.firing_since is None:
        if count >= for_polls:
            fired = RuleState(count, now, now, new_episode())
            return fired, Event.FIRING
        return RuleState(holds=count), None
    if repeat is not None and state.last_notified_at and now - state.last_notified_at >= repeat:
        return RuleState(count, state.firing_since, now, state.episode), Event.REPEAT
    # Counting past `for_polls` changes nothing a user sees; keep the state (no write).
    return state, None


@dataclass(frozen=True)
class BuiltinRule:
    """The alerts monitor raises itself from poll outcomes (SPEC §6)."""

    id: str
    description: str
    severity: Severity
    for_polls: int
    kind: RuleKind = RuleKind.CONDITION
    repeat: timedelta | None = None
    labels: dict[str, str] = field(default_factory=dict)
    notify: tuple[str, ...] = ()

    def applies_to(self, slug: str) -> bool:
        return True


PACKAGE_NOT_FOUND = BuiltinRule(
    "package-not-found", "Not found on djangopackages (404)", Severity.CRITICAL, 1
)
POLL_FAILING = BuiltinRule("poll-failing", "Polling failed 3 times in a row", Severity.WARNING, 3)
BUILTIN_RULES = (PACKAGE_NOT_FOUND, POLL_FAILING)


def builtin_observations(status: str) -> dict[str, bool | None]:
    """How a poll outcome (ok/unchanged/failed/not_found) bears on each built-in alert."""
    return {
        PACKAGE_NOT_FOUND.id: {"not_found": True, "failed": None}.get(status, False),
        POLL_FAILING.id: {"failed": True, "not_found": None}.get(status, False),
    }


def severity_at_least(severity: Severity, minimum: Severity) -> bool:
    return severity.rank >= minimum.rank
