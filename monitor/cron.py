"""Standard five-field cron, as users write it, for APScheduler.

APScheduler 3 numbers weekdays from Monday = 0, standard cron from Sunday = 0 (7 is Sunday
too). ``parse_cron`` rewrites the day-of-week field into day names so ``0 8 * * 1`` means
Monday, as it does in crontab(5).

APScheduler only looks forward; ``last_fire_time`` finds the latest fire time at or before a
moment (the scheduled digest covers the time since the cron's previous fire time, SPEC §8).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = ("minute", "hour", "day", "month", "day_of_week")
# How far back last_fire_time looks, widening only when a window holds no fire time: an
# every-minute cron is found within the hour, a yearly one within the year; 29 February can be
# 8 years away.
_LOOKBACK = tuple(timedelta(days=days) for days in (1 / 24, 1, 8, 32, 367, 366 * 8 + 2))


def parse_cron(expression: str) -> dict[str, str]:
    """Split and check a cron expression; return APScheduler CronTrigger keyword arguments."""
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            f"{expression!r} is not a 5-field cron expression (minute hour day month weekday)"
        )
    fields = dict(zip(_FIELDS, parts, strict=True))
    fields["day_of_week"] = _weekdays(fields["day_of_week"])
    from apscheduler.triggers.cron import CronTrigger

    try:
        CronTrigger(**fields, timezone="UTC")
    except ValueError as exc:
        raise ValueError(f"{expression!r}: {exc}") from None
    return fields


def cron_trigger(expression: str, timezone: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger

    return CronTrigger(**parse_cron(expression), timezone=timezone)


def last_fire_time(expression: str, timezone: str, at: datetime) -> datetime | None:
    """The latest time the cron fires at or before ``at`` (aware, in ``timezone``), or
    ``None`` when it has not fired in the last 8 years."""
    trigger = cron_trigger(expression, timezone)
    for window in _LOOKBACK:
        found = None
        fire = trigger.get_next_fire_time(None, at - window)
        while fire is not None and fire <= at:
            found = fire
            fire = trigger.get_next_fire_time(None, fire + timedelta(seconds=1))
        if found is not None:
            return found
    return None


def _weekdays(field: str) -> str:
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text.isdigit() else 1
        if step_text and not step_text.isdigit():
            raise ValueError(f"bad step in weekday field {field!r}")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = _day(start, field), _day(end, field)
            if last < first and last == 0:  # ...-7 or ...-sun: Sunday ends the week
                last = 7
        else:
            first = last = _day(span, field)
            if step_text:
                last = 6
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAYS[day] for day in sorted(days))


def _day(text: str, field: str) -> int:
    text = text.strip()
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text) % 7
    if text[:3] in _DAYS:
        return _DAYS.index(text[:3])
    raise ValueError(f"bad weekday {text!r} in {field!r} (use 0-7 or sun-sat)")
