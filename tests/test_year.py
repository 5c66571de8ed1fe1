"""Issue 9's "done when": the shipped rules, run over the five fixture packages through a
year of simulated weekly changes, send no more than one alert per real event.

Each week (52 of them, the fake clock moved 7 days, then `monitor check`):
- every package's `commits_over_52` shifts by a week (the oldest dropped, this week's count
  appended); some packages go quiet for a stretch, so both commit rules fire and resolve;
- every 4 weeks each package releases (a minor bump; its sixth release is a major one);
- stars drift by ±0.5 % and forks by ±1: noise, never an event.

The real events are worked out from the data alone (a release; a package's quiet streak
crossing 13 or 26 weeks, or ending), and each week's alerts are compared with them: exactly
one alert for each release and each start of a quiet stretch, one resolved notice for each
end, and nothing else. The figures are printed (pytest -s) and asserted.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable

from packaging.version import Version

from tests.conftest import FIVE, Monitor

WEEKS = 52
MAJOR_RELEASE = 6  # each package's sixth release of the year is a new major version

# This week's commits for each package, by week 1..52 (0: a quiet week).
COMMITS: dict[str, Callable[[int], int]] = {
    # Dead for a year (its 26-week alert fires at watch time), back at week 30.
    "django-mfa": lambda w: 2 if w >= 30 else 0,
    # Busy all year.
    "django-oauth-toolkit": lambda w: 1 if w % 2 == 0 else 0,
    # Quiet since 10 weeks before the start until week 40: 13 weeks, then 26, then back.
    "django-organizations": lambda w: 1 if w >= 40 else 0,
    # A commit every third week, but none in weeks 10-29: 13 weeks quiet, then back.
    "django-otp": lambda w: 3 if w % 3 == 0 and not 10 <= w <= 29 else 0,
    # Busy, quiet in weeks 14-48: 13 weeks, 26 weeks, back at week 49.
    "django-two-factor-auth": lambda w: 3 if w % 2 == 1 and not 14 <= w <= 48 else 0,
}


def quiet_state(weeks: list[int]) -> str | None:
    """What the data says, independently of the rules: quiet for 26 weeks, for 13, or not."""
    quiet = len(weeks) - len(list(_trimmed(weeks)))
    return "26" if quiet >= 26 else "13" if quiet >= 13 else None


def _trimmed(weeks: list[int]) -> list[int]:
    end = len(weeks)
    while end and weeks[end - 1] == 0:
        end -= 1
    return weeks[:end]


def bump(version: str, *, major: bool) -> str:
    release = Version(version).release
    if major:
        return f"{release[0] + 1}.0.0"
    minor = release[1] if len(release) > 1 else 0
    return f"{release[0]}.{minor + 1}.0"


def test_a_year_of_weekly_changes_sends_one_alert_per_real_event(monitor: Monitor) -> None:
    records = monitor.upstream.records
    assert sorted(records) == sorted(FIVE)
    assert monitor.run("watch", *FIVE).exit_code == 0
    rng = random.Random(9)
    state = {slug: quiet_state(records[slug]["commits_over_52"]) for slug in FIVE}
    releases = Counter[str]()
    events = Counter[str]()
    alerts = Counter[str]()
    notices = Counter[str]()

    for week in range(1, WEEKS + 1):
        monitor.clock.advance(days=7)
        expected_firing: set[tuple[str, str]] = set()
        expected_resolved: set[tuple[str, str]] = set()
        for index, slug in enumerate(FIVE):
            record = records[slug]
            record["commits_over_52"] = [*record["commits_over_52"][1:], COMMITS[slug](week)]
            now = quiet_state(record["commits_over_52"])
            if now != state[slug]:
                events[f"commits {state[slug] or 'active'} → {now or 'active'}"] += 1
                if now is not None:
                    expected_firing.add((f"no-commits-{now}-weeks", slug))
                if state[slug] is not None:
                    expected_resolved.add((f"no-commits-{state[slug]}-weeks", slug))
                state[slug] = now
            if week % 4 == index % 4:
                releases[slug] += 1
                major = releases[slug] == MAJOR_RELEASE
                record["pypi_version"] = bump(record["pypi_version"], major=major)
                events["major release" if major else "release"] += 1
                rule = "major-version-bump" if major else "pypi-version-changed"
                expected_firing.add((rule, slug))
            step = rng.choice((-1, 1)) * record["repo_watchers"] * 0.005
            record["repo_watchers"] = round(record["repo_watchers"] + step)
            record["repo_forks"] += rng.choice((-1, 0, 1))

        report = monitor.json("check")
        assert not report["failed"], week
        transitions = report["transitions"]
        firing = [(t["rule"], t["package"]) for t in transitions if t["status"] == "firing"]
        resolved = [(t["rule"], t["package"]) for t in transitions if t["status"] == "resolved"]
        # No more than one alert per event, and none without one (a set would hide twins).
        assert sorted(firing) == sorted(expected_firing), f"week {week}"
        assert sorted(resolved) == sorted(expected_resolved), f"week {week}"
        alerts.update(rule for rule, _ in firing)
        notices.update(rule for rule, _ in resolved)

    total_events = sum(events.values())
    alert_events = total_events - sum(n for e, n in events.items() if e.endswith("→ active"))
    print(f"\nevents: {total_events} {dict(events)}")
    print(f"alerts: {sum(alerts.values())} {dict(alerts)}")
    print(f"resolved notices: {sum(notices.values())} {dict(notices)}")
    print(f"deliveries: {monitor.count('deliveries')} (including the watch's)")
    assert sum(alerts.values()) == alert_events
    assert events == {
        "release": 60,
        "major release": 5,
        "commits active → 13": 3,
        "commits 13 → 26": 2,
        "commits 13 → active": 1,
        "commits 26 → active": 3,
    }
    assert alerts == {
        "pypi-version-changed": 60,
        "major-version-bump": 5,
        "no-commits-13-weeks": 3,
        "no-commits-26-weeks": 2,
    }
    assert notices == {"no-commits-13-weeks": 3, "no-commits-26-weeks": 3}
