"""The JSON API (SPEC §10, issue 13): a real ``monitor run`` answers every documented route
as its OpenAPI document says — the main flows end to end, then generated cases from the
document itself (schemathesis) — and nothing without the token."""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from monitor import __version__
from monitor.server.openapi import document
from tests.conftest import FakeClock, Monitor, webhook_toml
from tests.daemon import RunningMonitor
from tests.fakes import SECRET, FakeWebhookReceiver
from tests.fakeupstream import FakeUpstream, load_fixtures

TOKEN = "api-test-token"
SERVED = f'[http]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n'


def _json(daemon: RunningMonitor, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, raw = daemon.request(method, path, token=TOKEN, json_body=body)
    return status, json.loads(raw)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMonitor]:
    """One ``monitor run`` for the error table and the generated cases: django-otp is
    watched, so the document's examples (django-otp; django-mfa, watched then unwatched)
    reach the answers of success too."""
    from tests.sourceworld import World

    tmp = Path(tmp_path_factory.mktemp("api"))
    with FakeUpstream.in_thread(apis=World(load_fixtures()).apis) as upstream:
        monitor = Monitor(tmp, upstream, FakeClock(), tmp / "monitor.toml")
        monitor.configure(SERVED)
        assert monitor.run("watch", "django-otp").exit_code == 0
        with RunningMonitor(monitor.config_path) as daemon:
            yield daemon


# -- every route needs the token ----------------------------------------------------------

ROUTES = [
    (method.upper(), path.replace("{name}", "django-otp"))
    for path, operations in document(__version__)["paths"].items()
    for method in operations
]


def test_every_route_without_the_token_is_401(monitor: Monitor) -> None:
    monitor.configure(SERVED)
    assert monitor.run("watch", "django-otp").exit_code == 0
    with RunningMonitor(monitor.config_path) as daemon:
        for method, path in ROUTES:
            for token in (None, "wrong"):
                status, headers, body = daemon.request(
                    method, path, token=token, json_body={"names": ["django-otp"]}
                )
                assert status == 401, (method, path, token)
                assert headers["Content-Type"].startswith("application/json")
                assert json.loads(body) == {"error": "missing or wrong token"}
    assert [w.slug for w in monitor.store().watches(["django-otp"]).values()] == ["django-otp"]
    assert monitor.count("mutes") == 0


# -- the main flows, end to end -----------------------------------------------------------


def test_watch_history_alerts_mute_check_and_unwatch_over_the_api(monitor: Monitor) -> None:
    monitor.configure(SERVED, interval="6h")
    with RunningMonitor(monitor.config_path) as daemon:
        status, answer = _json(daemon, "POST", "/api/watches", {"names": ["django-otp"]})
        assert status == 201, answer
        assert answer["added"] == ["django-otp"] and answer["transitions"] == 0
        assert answer["lines"][0].startswith("watching django-otp (")
        listed = monitor.json("list")
        assert [row["slug"] for row in listed] == ["django-otp"]
        assert _json(daemon, "GET", "/api/watches") == (200, listed)  # list --json's shape

        # again: nothing new, the options given change (200, as watch says)
        status, answer = _json(
            daemon, "POST", "/api/watches", {"names": ["django-otp"], "interval": "1h"}
        )
        assert (status, answer["added"]) == (200, [])
        assert answer["lines"] == ["updated django-otp: interval 1h (was the default)"], answer

        status, entries = _json(daemon, "GET", "/api/watches/django-otp/history")
        assert status == 200 and entries == monitor.json("history", "django-otp")
        assert "snapshot" in entries[0]

        status, muted = _json(
            daemon,
            "POST",
            "/api/mutes",
            {"name": "django-otp", "rule": "poll-failing", "duration": "7d", "comment": "x"},
        )
        assert status == 201, muted
        assert muted["set_by"] == "api" and muted["rule"] == "poll-failing" and muted["until"]
        assert _json(daemon, "GET", "/api/mutes") == (200, [muted]) == (200, monitor.json("mutes"))
        assert _json(daemon, "DELETE", "/api/mutes/django-otp?rule=poll-failing") == (
            200,
            {"removed": 1},
        )
        assert monitor.json("mutes") == []

        # check: polled in the background by the daemon's own cycle
        checks = monitor.polls()
        status, answer = _json(daemon, "POST", "/api/check", {"names": ["django-otp"]})
        assert (status, answer) == (202, {"polling": ["django-otp"]})
        daemon.wait_for(lambda: monitor.polls() > checks, timeout=10)

        assert _json(daemon, "DELETE", "/api/watches/django-otp") == (
            200,
            {"unwatched": ["django-otp"]},
        )
        assert monitor.json("list") == []
        assert _json(daemon, "GET", "/api/watches/django-otp/history")[0] == 404


def test_an_alert_a_new_watch_raises_is_sent_at_once(
    monitor: Monitor, hook: FakeWebhookReceiver
) -> None:
    """The watch answers before delivering; the daemon's outbox sends it now (send_soon),
    not at its first tick 5 s after the start."""
    monitor.env["WEBHOOK_SECRET"] = SECRET
    monitor.configure(
        SERVED + webhook_toml(hook.hook_url, signed=True),
        sources=("pypi", "github", "osv"),
    )
    monitor.upstream.world.osv.add_vuln("PYSEC-2026-2", "django-otp", ["1.5.0"], "1.6.0", "Bad")
    with RunningMonitor(monitor.config_path, env=monitor.env) as daemon:
        status, answer = _json(daemon, "POST", "/api/watches", {"names": ["django-otp==1.5.0"]})
        answered = time.monotonic()
        assert status == 201 and answer["transitions"] == 1, answer
        (event,) = daemon.wait_for(lambda: hook.events, timeout=10)
        assert time.monotonic() - answered < 3
    (alert,) = event["data"]["alerts"]
    assert alert["rule"] == "vulnerable-version"


def test_a_change_raises_an_alert_that_the_api_lists(monitor: Monitor) -> None:
    monitor.configure(SERVED, interval="1s")
    assert monitor.run("watch", "django-otp").exit_code == 0
    monitor.upstream.records["django-otp"]["pypi_version"] = "99.0.0"
    with RunningMonitor(monitor.config_path) as daemon:

        def listed() -> list[Any]:
            """The alerts once the daemon's outbox has delivered them (until then the CLI's
            read, a moment later, may see them delivered and differ)."""
            alerts = _json(daemon, "GET", "/api/alerts?all=true")[1]
            sent = [d["status"] for alert in alerts for d in alert["deliveries"]]
            return alerts if sent and set(sent) == {"delivered"} else []

        alerts = daemon.wait_for(listed, timeout=15)
        assert alerts == monitor.json("alerts", "--all")
        assert alerts[0]["package"] == "django-otp"
        assert _json(daemon, "GET", "/api/alerts?all=maybe")[0] == 400


def test_alerts_come_a_page_at_a_time_with_a_link_to_the_next(monitor: Monitor) -> None:
    """Issue 14: ?limit= and ?before= page through a year of alerts as ``alerts --limit
    --before`` do; the Link header's URL gives the next page, X-Alerts-More how many follow."""
    from tests.test_alerts_cli import add_alerts

    monitor.configure(SERVED)
    store = monitor.store()
    add_alerts(store, 450)
    store.close()
    with RunningMonitor(monitor.config_path) as daemon:
        status, headers, body = daemon.request("GET", "/api/alerts?all=true", token=TOKEN)
        assert status == 200 and len(json.loads(body)) == 200  # 200 by default
        assert headers["X-Alerts-More"] == "250"
        pages, path = [], "/api/alerts?all=true&limit=100"
        while path:
            status, headers, body = daemon.request("GET", path, token=TOKEN)
            assert status == 200, body
            pages.append(json.loads(body))
            link = headers.get("Link")
            more = headers.get("X-Alerts-More")
            assert (link is None) == (more is None) == (len(pages) == 5), headers
            if link:
                assert int(more) == 450 - 100 * len(pages)
                match = re.fullmatch(
                    r'<(/api/alerts\?all=true&limit=100&before=\d+)>; rel="next"', link
                )
                assert match, link
            path = match.group(1) if link else ""
        assert [len(page) for page in pages] == [100] * 4 + [50]
        assert [a for page in pages for a in page] == monitor.json(
            "alerts", "--all", "--limit", "0"
        )
        for query, says in [
            ("limit=0", "limit: a whole number from 1 to 1000, not '0'"),
            ("limit=1001", "limit: a whole number from 1 to 1000"),
            ("limit=1.5", "limit: a whole number"),
            ("before=-3", "before: a whole number"),
            ("before=99999", "no alert has the id 99999"),
        ]:
            status, answer = _json(daemon, "GET", f"/api/alerts?{query}")
            assert status == 400 and answer["error"].startswith(says), (query, answer)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "says"),
    [
        ("POST", "/api/watches", {"names": ["no-such-package"]}, 404, "not found"),
        ("POST", "/api/watches", {"names": ["pypi:requests"]}, 400, "turned off"),
        ("POST", "/api/watches", {"names": ["django-otp"], "notify": ["nope"]}, 400, "notifier"),
        ("POST", "/api/watches", {"names": ["a", "b"], "pin": "1.0"}, 400, "exactly one"),
        ("POST", "/api/watches", {"names": ["django-otp"], "interval": "soon"}, 400, "interval"),
        ("POST", "/api/watches", {"names": "django-otp"}, 400, "list of strings"),
        ("POST", "/api/watches", {"names": [1]}, 400, "names[0]: must be a string"),
        ("POST", "/api/watches", {"names": []}, 400, "at least one"),
        ("POST", "/api/watches", {"names": ["x"], "grid": "g"}, 400, "unknown key 'grid'"),
        ("POST", "/api/watches", {}, 400, "'names' is required"),
        ("POST", "/api/watches", ["django-otp"], 400, "JSON object"),
        ("POST", "/api/watches", b"{names:", 400, "not JSON"),
        ("POST", "/api/watches", b"", 400, "not JSON"),
        ("POST", "/api/watches", b"\xff\xfe{", 400, "not JSON"),
        ("POST", "/api/watches", b"[" * 100_000, 400, "not JSON"),
        ("POST", "/api/watches", b'{"names": ["\\ud800"]}', 400, "not valid Unicode"),
        ("POST", "/api/mutes", {"name": "django-otp", "rule": "nope"}, 400, "no rule named"),
        ("POST", "/api/mutes", {"name": "django-otp", "duration": "ages"}, 400, "duration"),
        ("POST", "/api/mutes", {"name": "other"}, 404, "not watched"),
        ("POST", "/api/mutes", {"name": None}, 400, "must be a string"),
        ("DELETE", "/api/mutes/django-otp", None, 404, "has no mute"),
        ("DELETE", "/api/mutes/django-otp?rule=", None, 400, "rule"),
        ("DELETE", "/api/watches/other", None, 404, "not watched"),
        ("GET", "/api/watches/pypi%3Aother/history", None, 404, "'pypi:other' is not watched"),
        ("POST", "/api/check", {"names": ["other"]}, 400, "not watched: other"),
        ("POST", "/api/check", {"names": "other"}, 400, "list of strings"),
    ],
    ids=lambda value: value if isinstance(value, str) and value.startswith("/") else None,
)
def test_wrong_requests_get_an_error_naming_the_problem(
    served: RunningMonitor, method: str, path: str, body: Any, status: int, says: str
) -> None:
    raw = body if isinstance(body, bytes) else None
    given = body if not isinstance(body, bytes) else None
    got, headers, answer = served.request(method, path, token=TOKEN, json_body=given, body=raw)
    assert got == status, answer
    assert headers["Content-Type"].startswith("application/json")
    assert says in json.loads(answer)["error"]


def test_an_unknown_package_is_404_with_suggestions(served: RunningMonitor) -> None:
    status, answer = _json(served, "POST", "/api/watches", {"names": ["django-ot"]})
    assert status == 404
    assert "django-otp" in answer["suggestions"]


def test_a_body_over_the_cap_is_refused(served: RunningMonitor) -> None:
    body = json.dumps({"names": ["x" * (2 * 1024 * 1024)]}).encode()
    status, _, answer = served.request(
        "POST", "/api/watches", token=TOKEN, body=body, headers={"Content-Type": "application/json"}
    )
    assert status == 413, answer
    assert json.loads(answer) == {"error": "the body is over 1048576 bytes"}


def test_the_document_served_is_the_one_tested(served: RunningMonitor) -> None:
    status, served_document = _json(served, "GET", "/api/openapi.json")
    assert status == 200
    assert served_document == json.loads(json.dumps(document(__version__)))
    schema.validate()  # against the OpenAPI 3.1 meta-schema


def test_a_database_locked_beyond_the_busy_timeout_is_409(tmp_path: Path) -> None:
    """SQLite's own "database is locked" (the busy timeout is 30 s; here 0) answers 409, and
    other failures from outside the program 503: try again, not a bug."""
    from monitor.server.api import _database_error

    path = tmp_path / "locked.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0)
    with pytest.raises(sqlite3.OperationalError) as locked:
        other.execute("INSERT INTO t VALUES (1)")
    holder.close()
    other.close()
    ctx: Any = SimpleNamespace(config=SimpleNamespace(database=path))
    answer = _database_error(locked.value, ctx)
    assert answer.status == 409
    assert answer.text is not None and "is locked" in json.loads(answer.text)["error"]
    (tmp_path / "not.db").write_bytes(b"not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError) as broken:
        sqlite3.connect(tmp_path / "not.db").execute("SELECT * FROM t")
    assert _database_error(broken.value, ctx).status == 503


# -- generated cases ----------------------------------------------------------------------


schema = schemathesis.openapi.from_dict(json.loads(json.dumps(document(__version__))))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
)
def test_generated_cases_get_documented_answers(case: Any, served: RunningMonitor) -> None:
    """Cases from the document (its examples, boundary and invalid values, other methods,
    then up to 25 random ones an operation, about 500 in all): no 5xx; status, content type,
    headers and body as documented; an invalid request refused (4xx)."""
    case.call_and_validate(
        base_url=served.url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=CHECKS,
        timeout=20,
    )
