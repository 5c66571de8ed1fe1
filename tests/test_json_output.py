"""Issue 14: ``--json`` through orjson, compact unless ``--pretty``; still one document and a
newline, UTF-8 as is, terminal controls escaped (SPEC §9), values as before; and a command's
async result handed back without Python 3.11 taking its repr."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from monitor.cli import _json_document, _run
from tests.conftest import FIVE, Monitor
from tests.test_alerts_cli import add_alerts

TITLE = "Zwei-Faktor ✓ 日本語 é"
EVIL = "\x1b]0;PWNED\x07\u202eevil\x9b\u2066x\u2069\x7f\u061c\u200e"
# What no output may hold raw: C0 controls but tab and newline, DEL, C1, bidi controls.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _one_document(stdout: str) -> Any:
    """The JSON document ``stdout`` holds, checking it holds exactly one and a newline."""
    assert stdout.endswith("\n") and not stdout.endswith("\n\n")
    return json.loads(stdout)  # raises on anything after the document


COMMANDS = [
    ["list"],
    ["check"],
    ["history", "django-otp"],
    ["alerts", "--all"],
    ["mutes"],
    ["status"],
    ["readiness", "5.2"],
    ["rules", "list"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda args: "-".join(args))
def test_compact_and_pretty_are_the_same_document(monitor: Monitor, args: list[str]) -> None:
    monitor.run("watch", *FIVE)
    monitor.run("mute", "django-otp", "--comment", "known")
    monitor.upstream.records["django-otp"]["pypi_version"] = "1.8.0"
    if args == ["check"]:  # each check sees what changed since the last: run it once a way
        compact = monitor.run(*args, "--json")
        monitor.upstream.records["django-otp"]["pypi_version"] = "1.7.0"
        pretty = monitor.run(*args, "--pretty")
        for result in (compact, pretty):
            assert json.loads(result.stdout)["changed"][0]["slug"] == "django-otp"
        return
    compact, pretty, both = (
        monitor.run(*args, *flags) for flags in (["--json"], ["--pretty"], ["--json", "--pretty"])
    )
    assert compact.exit_code == pretty.exit_code == both.exit_code == 0, compact.output
    assert _one_document(compact.stdout) == _one_document(pretty.stdout)
    assert pretty.stdout == both.stdout  # --pretty implies --json
    assert compact.stdout.count("\n") == 1  # compact: one line
    if len(pretty.stdout) > 3:
        assert pretty.stdout.count("\n") > 1 and "\n  " in pretty.stdout  # indented by two


def test_utf_8_is_kept_and_controls_are_escaped(monitor: Monitor) -> None:
    record = monitor.upstream.records["django-otp"]
    record["title"] = TITLE
    record["repo_description"] = EVIL
    assert monitor.run("watch", "django-otp").exit_code == 0
    for flag in ("--json", "--pretty"):
        assert TITLE.encode() in monitor.run("list", flag).stdout_bytes  # UTF-8, no \u escapes
        history = monitor.run("history", "django-otp", flag)
        assert not UNSAFE.findall(history.stdout), flag  # every one escaped
        assert "\\u001b]0;PWNED\\u0007\\u202eevil\\u009b" in history.stdout
        assert "\\u007f\\u061c\\u200e" in history.stdout
        assert json.loads(history.stdout)[0]["snapshot"]["repo_description"] == EVIL


def test_an_ascii_document_with_del_is_escaped_too() -> None:
    """orjson escapes C0 controls but leaves DEL raw: an all-ASCII document is only passed
    through as is when it holds no DEL."""
    assert _json_document({"a": "x\x7fy"}, pretty=False) == b'{"a":"x\\u007fy"}'
    assert _json_document({"a": "x\x1by"}, pretty=False) == b'{"a":"x\\u001by"}'
    assert _json_document({"a": "xy"}, pretty=True) == b'{\n  "a": "xy"\n}'


@dataclass
class Point:
    x: int


VALUES = {
    "datetime": datetime(2026, 11, 22, 10, 0, tzinfo=UTC),
    "naive": datetime(2026, 11, 22, 10, 0, 5, 123),
    "date": date(2026, 11, 22),
    "decimal": Decimal("1.50"),
    "uuid": uuid.UUID(int=7),
    "dataclass": Point(3),
    "set": {"only"},
    "tuple": (1, "two"),
    "non-str keys": {1: "a", None: "b", False: "c", 2.5: "d"},
    "big int": 2**70,
    "nested": [{"when": datetime(2026, 1, 1, tzinfo=UTC)}],
    "float": 0.1,
    "unicode": TITLE,
}


@pytest.mark.parametrize("value", VALUES.values(), ids=VALUES.keys())
def test_values_are_written_as_the_standard_encoder_wrote_them(value: Any) -> None:
    """What ``json.dumps(default=str)`` gave: datetimes and the like as ``str()`` (not
    orjson's own RFC 3339), non-string keys as JSON's strings; a lone surrogate and an
    integer beyond 64 bits through the standard encoder."""
    before = json.loads(json.dumps({"v": value}, indent=2, ensure_ascii=False, default=str))
    for pretty in (False, True):
        assert json.loads(_json_document({"v": value}, pretty=pretty)) == before


def test_a_lone_surrogate_is_written_as_its_escape() -> None:
    document = _json_document(["\ud800x"], pretty=False)
    assert document == b'["\\ud800x"]'


def test_every_alert_streamed_is_the_same_document_as_one_page(monitor: Monitor) -> None:
    """``--limit 0`` writes the alerts 1,000 at a time: byte for byte what one page of all of
    them would print, compact and pretty."""
    empty = monitor.run("alerts", "--all", "--limit", "0", "--pretty")
    assert empty.stdout == monitor.run("alerts", "--all", "--pretty").stdout == "[]\n"
    store = monitor.store()
    add_alerts(store, 2345)
    store.close()
    for flag in ("--json", "--pretty"):
        streamed = monitor.run("alerts", "--all", "--limit", "0", flag)
        whole = monitor.run("alerts", "--all", "--limit", "100000", flag)
        assert streamed.stdout == whole.stdout and streamed.stderr == whole.stderr == ""
        assert len(_one_document(streamed.stdout)) == 2345


class Huge:
    """A result whose repr counts its calls (the repr of 10,000 changes took seconds)."""

    reprs = 0

    def __repr__(self) -> str:
        Huge.reprs += 1
        return "Huge()"


def test_a_commands_async_result_is_never_repred() -> None:
    """Python 3.11's ``asyncio.run`` takes the repr of its main task, result included, on its
    way out: ``_run`` hands the result back another way."""

    async def work() -> Huge:
        return Huge()

    result = _run(work())
    assert isinstance(result, Huge) and Huge.reprs == 0


def test_a_checks_changes_written_a_chunk_at_a_time_are_the_one_document(
    capsysbinary: pytest.CaptureFixture[bytes],
) -> None:
    """``check --json`` writes its changes 500 at a time: byte for byte the document it
    wrote whole, escapes included (three chunks and a bit here)."""
    from monitor.cli import _stream_json_object
    from monitor.cycle import CycleReport
    from monitor.diff import Change

    report = CycleReport(checked=1501, unchanged=0)
    for i in range(1501):
        changes = [Change("title", f"{TITLE} {i}", EVIL), Change("commits_over_52", (1, 2), (2, 3))]
        report.changed.append((f"package-{i}", changes))
    report.not_found.append("gone")
    whole = report.to_json_dict()
    whole["undelivered"] = ["hook"]
    data = report.to_json_dict(changed=False)
    data["undelivered"] = ["hook"]

    _stream_json_object(data, {"changed": report.changed_json()})

    written = capsysbinary.readouterr().out
    assert written == _json_document(whole, pretty=False) + b"\n"
    assert len(json.loads(written)["changed"]) == 1501
