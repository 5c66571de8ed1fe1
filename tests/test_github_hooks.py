"""``POST /hooks/github`` (SPEC §10 "GitHub events", issue 13): signed GitHub webhook
deliveries to a real ``monitor run``, whose interval (6 h) is too long for anything but the
hook to poll. Each test counts the package's checks, so a delivery that must poll nothing is
seen to poll nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import Monitor, webhook_toml
from tests.daemon import RunningMonitor
from tests.fakes import FakeWebhookReceiver
from tests.sourceworld import World

SECRET = "gh-webhook-secret"
SLUG = "django-two-factor-auth"
REPO = "Bouke/django-two-factor-auth"


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def release(full_name: str = REPO) -> dict[str, Any]:
    return {
        "action": "published",
        "release": {"tag_name": "1.18.2", "name": "1.18.2"},
        "repository": {"id": 1, "full_name": full_name, "name": full_name.split("/")[1]},
    }


def repository(action: str, full_name: str = REPO, **changes: Any) -> dict[str, Any]:
    payload = release(full_name)
    del payload["release"]
    return {**payload, "action": action, "changes": changes}


@dataclass
class Hooked:
    monitor: Monitor
    daemon: RunningMonitor
    alerts: FakeWebhookReceiver

    def deliver(
        self,
        event: str,
        payload: Any,
        *,
        sign: str | None = SECRET,
        form: bool = False,
        body: bytes | None = None,
        signed: bytes | None = None,
    ) -> tuple[int, Any]:
        """One delivery as GitHub makes it (``signed``: the body the signature is of, when not
        the one sent); (status, the JSON answer)."""
        if body is None:
            text = json.dumps(payload)
            body = urlencode({"payload": text}).encode() if form else text.encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
        }
        if sign is not None:
            headers["X-Hub-Signature-256"] = signature(body if signed is None else signed, sign)
        status, _, answer = self.daemon.request("POST", "/hooks/github", body=body, headers=headers)
        return status, json.loads(answer) if answer.startswith(b"{") else answer

    def checks(self) -> int:
        store = self.monitor.store()
        try:
            return int(
                store.conn.execute(
                    "SELECT polls FROM watches WHERE slug = ?",
                    (SLUG,),
                ).fetchone()[0]
            )
        finally:
            store.close()

    def fired(self, rule: str) -> bool:
        return any(a["rule"] == rule for e in self.alerts.events for a in e["data"]["alerts"])


@pytest.fixture
def hooked(monitor: Monitor) -> Iterator[Hooked]:
    with FakeWebhookReceiver() as alerts:
        monitor.configure(
            webhook_toml(alerts.hook_url) + f'\n[http]\ngithub_secret = "{SECRET}"\n',
            interval="6h",
            sources=("pypi", "github"),
        )
        assert World.repo(monitor.upstream.records[SLUG]) == REPO
        monitor.clock.now = datetime.now(UTC)  # due in 6 h of the daemon's time
        assert monitor.run("watch", SLUG).exit_code == 0
        with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
            daemon.wait_for(lambda: daemon.events("started"))
            yield Hooked(monitor, daemon, alerts)


def test_a_signed_release_polls_the_package_and_its_alert_goes_out_within_2s(
    hooked: Hooked,
) -> None:
    before = hooked.checks()
    sent = json.dumps(release()).encode()
    refused = [
        hooked.deliver("release", release(), sign=None),
        hooked.deliver("release", release(), sign="not-the-secret"),
        hooked.deliver("release", None, body=sent.replace(b"1.18.2", b"1.18.3"), signed=sent),
    ]
    assert [status for status, _ in refused] == [401, 401, 401]
    assert hooked.deliver("ping", {"zen": "Keep it logically awesome."})[0] == 200
    assert hooked.deliver("release", release("someone/else")) == (202, {"polling": []})
    assert hooked.deliver("release", None, body=b"{not json")[0] == 400

    world = hooked.monitor.upstream.world  # type: ignore[attr-defined]
    world.pypi.release(SLUG, "1.18.2", datetime.now(UTC))  # after 1.18.1
    started = time.monotonic()
    answer = hooked.deliver("release", release(REPO.lower()))  # names match in any case
    assert answer == (202, {"polling": [SLUG]})
    hooked.daemon.wait_for(lambda: hooked.fired("pypi-version-changed"), timeout=10)
    took = time.monotonic() - started
    print(f"\nrelease event -> alert delivered: {took:.3f} s")
    assert took < 2.0
    # exactly one poll: the refused, unknown, ping and bad deliveries polled nothing
    assert hooked.checks() == before + 1
    logged = [(e["repository"], e["polling"]) for e in hooked.daemon.events("github event")]
    assert logged == [("someone/else", []), (REPO.lower(), [SLUG])]


def test_repository_events_poll_by_the_name_now_and_before(hooked: Hooked) -> None:
    world = hooked.monitor.upstream.world  # type: ignore[attr-defined]
    world.github.archive(REPO)
    owner, name = REPO.split("/")
    renamed = repository("renamed", f"{owner}/new-name", repository={"name": {"from": name}})
    transferred = repository(
        "transferred", f"someone/{name}", owner={"from": {"user": {"login": owner}}}
    )
    push = {"ref": "refs/heads/main", "repository": {"full_name": REPO}}
    cases = [  # event, payload, how it is sent, whether it polls
        ("repository", repository("archived"), {}, True),
        ("repository", renamed, {}, True),  # by the name before
        ("repository", transferred, {}, True),  # by the owner before
        ("repository", repository("edited"), {}, False),  # not an action that polls
        ("issues", release(), {}, False),
        ("push", push, {}, True),
        ("push", push, {"form": True}, True),  # GitHub's other content type
        ("repository", repository("deleted"), {}, True),
    ]
    start = hooked.checks()
    for event, payload, options, polls in cases:
        before = hooked.checks()
        status, answer = hooked.deliver(event, payload, **options)
        assert status == 202, (event, payload)
        if polls:
            assert answer == {"polling": [SLUG]}, (event, payload)
            hooked.daemon.wait_for(lambda: hooked.checks() > before, timeout=5)  # noqa: B023
        else:
            assert "polling" not in answer
        if event == "repository" and payload["action"] == "archived":
            hooked.daemon.wait_for(lambda: hooked.fired("repo-archived"), timeout=5)
    # the ignored ones polled nothing: one check per polling delivery
    assert hooked.checks() == start + sum(polls for *_, polls in cases)


def test_a_release_burst_of_events_alerts_once(hooked: Hooked) -> None:
    """A release comes as several events at once (the release, the tag's push): their cycles
    take turns, so the new version is alerted once."""
    world = hooked.monitor.upstream.world  # type: ignore[attr-defined]
    world.pypi.release(SLUG, "1.18.2", datetime.now(UTC))
    push = {"ref": "refs/tags/1.18.2", "repository": {"full_name": REPO}}
    events = [("release", release()), ("push", push)] * 2
    before = hooked.checks()
    with ThreadPoolExecutor(len(events)) as pool:
        answers = list(pool.map(lambda event: hooked.deliver(*event), events))
    assert answers == [(202, {"polling": [SLUG]})] * len(events)
    hooked.daemon.wait_for(lambda: hooked.checks() == before + len(events), timeout=10)
    hooked.daemon.wait_for(lambda: hooked.daemon.events("outbox"))
    assert [a["rule"] for e in hooked.alerts.events for a in e["data"]["alerts"]] == [
        "pypi-version-changed"
    ]


def test_without_a_github_secret_there_is_no_hook(monitor: Monitor) -> None:
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
        body = json.dumps(release()).encode()
        headers = {"X-GitHub-Event": "release", "X-Hub-Signature-256": signature(body)}
        status, _, _ = daemon.request("POST", "/hooks/github", body=body, headers=headers)
        assert status == 404
