"""Fuzz of record parsing (issue 10): hostile JSON values in any field.

``parse_record`` and ``record_values`` (the unchanged fast path) raise nothing but
:class:`InvalidRecord`, which the source turns into that package's failed poll; and a record
they accept gives a snapshot every later step can use: it serialises (the stored form, every
datetime in UTC), rebuilds from that form, and its fields read the same both ways.
"""

from __future__ import annotations

import reprlib
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from monitor.errors import InvalidRecord
from monitor.snapshot import FIELDS, Snapshot, parse_record, record_values
from tests.fakeupstream import load_fixtures

RECORD = load_fixtures()["django-otp"]
KEYS = [*RECORD, "extra", "__proto__", ""]

# Large values are built once and drawn as they are: generating them each time is slow.
BIG = st.sampled_from(
    [
        [0] * 100_000,
        ["login"] * 100_000,
        "x" * 1_000_000,
        "9" * 5_000,
        "https://djangopackages.org/api/v4/grids/" + "9" * 5_000 + "/",
        2**64 - 1,
        10**5000,
        -(10**5000),
    ]
)
HOSTILE_TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),  # what orjson can deliver: no lone surrogates
        st.sampled_from("\x00\x07\x1b\r\n\u202e\u2066\ufeff<>&"),
    ),
    max_size=60,
)
EDGE_DATES = st.sampled_from(
    [
        "9999-12-31T23:59:59-14:00",  # overflows when converted to UTC
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59.999999",
        "0001-01-01",
        "1969-12-31T23:59:59Z",
        "2999-12-31T23:59:59-14:00",
    ]
)
DATES = EDGE_DATES | st.builds(
    "{}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}{}".format,
    st.sampled_from(["0001", "1969", "1970", "2026", "2999", "3000", "9999"]),
    st.sampled_from([1, 2, 12]),
    st.sampled_from([1, 28, 31]),
    st.sampled_from([0, 9, 23]),
    st.integers(0, 59),
    st.sampled_from([0, 59]),
    st.sampled_from(["", ".5", ".999999"]),
    st.sampled_from(["", "Z", "+00:00", "-05:00", "+14:00", "-14:00", "+23:59", "-23:59"]),
)
ID_URLS = st.builds(
    "https://djangopackages.org/api/v4/{}/{}/{}".format,
    st.sampled_from(["grids", "categories"]),
    st.integers(-5, 10**20),
    st.sampled_from(["", "?format=api"]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**64), 2**64),
    st.floats(allow_nan=True, allow_infinity=True),
    HOSTILE_TEXT,
    DATES,
    ID_URLS,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(HOSTILE_TEXT, inner, max_size=4),
    max_leaves=30,
)
EDGE_INTS = st.sampled_from([-1, 0, 10**15, 10**15 + 1, 2**63, 2**64 - 1]) | st.integers()
# Values of each field's own type, near its bounds: they get past the type checks.
NEAR_MISSES = {
    **dict.fromkeys(["last_updated", "last_fetched", "created", "modified"], DATES),
    **dict.fromkeys(["repo_watchers", "repo_forks", "id"], EDGE_INTS),
    "commits_over_52": st.lists(EDGE_INTS, min_size=52, max_size=52),
    "participants": st.lists(HOSTILE_TEXT, max_size=5),
    "grids": st.lists(ID_URLS | EDGE_INTS, max_size=5),
    "category": ID_URLS | EDGE_INTS,
    "slug": HOSTILE_TEXT | st.from_regex(r"[A-Za-z0-9_-]{1,250}", fullmatch=True),
}
VALUES = st.one_of(JSON, BIG)
MISSING = object()
SHORT = reprlib.Repr()
SHORT.maxstring, SHORT.maxlist, SHORT.maxdict, SHORT.maxlong = 80, 8, 20, 40


@dataclass(frozen=True)
class Drawn:
    """A drawn record, shown shortened when hypothesis reports it (1 MB is unreadable)."""

    record: Any

    def __repr__(self) -> str:
        try:
            return SHORT.repr(self.record)
        except ValueError:  # an int too long to print
            return "<a record holding an int of over 4300 digits>"


@st.composite
def records(draw: st.DrawFn) -> Drawn:
    """The real record with some keys replaced by hostile values, some deleted, some
    added; now and then not an object at all."""
    if draw(st.integers(0, 19)) == 0:
        return Drawn(draw(VALUES))
    record = dict(RECORD)
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6, unique=True)):
        near_miss = NEAR_MISSES.get(key, HOSTILE_TEXT | BIG)
        value = draw(st.one_of(near_miss, near_miss, VALUES, st.just(MISSING)))
        if value is MISSING:
            record.pop(key, None)
        else:
            record[key] = value
    return Drawn(record)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records())
def test_parsing_raises_nothing_but_invalid_record(drawn: Drawn) -> None:
    record = drawn.record
    try:
        snapshot = parse_record(record, package="django-otp")
    except InvalidRecord as exc:
        event(f"refused: {exc.field}")
        assert exc.package == "django-otp"
        assert exc.field is None or exc.field in FIELDS
    else:
        event("accepted")
        _assert_usable(snapshot)
        assert record_values(record, FIELDS, package="django-otp") == snapshot.values()
        return
    with suppress(InvalidRecord):  # the fast path reads fewer fields: it may accept
        record_values(record, FIELDS[:3], package="django-otp")


def _assert_usable(snapshot: Snapshot) -> None:
    stored = snapshot.to_json_dict()
    snapshot.content_json()
    assert Snapshot.from_json_dict(stored) == snapshot
    counts = [snapshot.repo_watchers, snapshot.repo_forks, snapshot.category]
    counts += [*(snapshot.commits_over_52 or ()), *(snapshot.grids or ())]
    assert all(n is None or 0 <= n <= 10**15 for n in counts)  # no "-100.8 %" drops
