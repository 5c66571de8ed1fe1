"""The Slack bot (SPEC §10, issue 13): ``/monitor`` commands over Socket Mode and signed HTTP,
and the "Mute" buttons of alert messages, against a real ``monitor run`` and a fake Slack
(tests/fake_slack_app.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from monitor.server.slack import Command, parse_command
from tests.conftest import Monitor
from tests.daemon import ROOT, RunningMonitor
from tests.fake_slack_app import (
    APP_TOKEN,
    BOT_TOKEN,
    CHANNEL_ID,
    SIGNING_SECRET,
    FakeSlackApp,
    command_form,
)

ACK_LIMIT = 3.0  # seconds: Slack's limit for an acknowledgement


@pytest.fixture
def slack() -> Iterator[FakeSlackApp]:
    with FakeSlackApp() as server:
        yield server


def slack_app_toml(
    slack: FakeSlackApp,
    *,
    socket: bool = True,
    signing: bool = False,
    allow: tuple[str, ...] = (),
    team_slack: bool = False,
) -> str:
    """``[slack_app]`` for the fake (Socket Mode, HTTP mode or both); ``team_slack``: also a
    bot-token notifier to the fake's channel, the default for every watch."""
    lines = ["[slack_app]", f'bot_token = "{BOT_TOKEN}"', f'api_url = "{slack.api_url}"']
    if socket:
        lines.append(f'app_token = "{APP_TOKEN}"')
    if signing:
        lines.append(f'signing_secret = "{SIGNING_SECRET}"')
    lines.append(f"allow_channels = {json.dumps(list(allow))}")
    if team_slack:
        lines += [
            "[defaults]",
            'notify = ["team-slack"]',
            "[notifiers.team-slack]",
            'type = "slack"',
            f'token = "{BOT_TOKEN}"',
            f'channel = "{CHANNEL_ID}"',
            f'api_url = "{slack.api_url}"',
        ]
    return "\n".join(lines) + "\n"


def cli(monitor: Monitor, *args: str) -> subprocess.CompletedProcess[str]:
    """A monitor command in a process of its own, on the real clock (as the daemon's)."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(monitor.config_path), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def cli_json(monitor: Monitor, *args: str) -> Any:
    done = cli(monitor, *args, "--json")
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def watched(monitor: Monitor) -> list[str]:
    return [row["slug"] for row in monitor.json("list")]


def texts(answer: dict[str, Any]) -> str:
    """What an answer shows: its blocks' texts and its fallback."""
    shown = [b["text"]["text"] for b in answer.get("blocks", []) if b.get("type") == "section"]
    return "\n".join([*shown, answer.get("text", "")])


def signed(body: bytes, *, secret: str = SIGNING_SECRET, age: float = 0.0) -> dict[str, str]:
    timestamp = str(int(time.time() - age))
    base = f"v0:{timestamp}:".encode() + body
    signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


# -- the parser, as a table --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Command("help")),
        ("help", Command("help")),
        ("watch django-otp", Command("watch", names=("django-otp",))),
        ("WATCH a b", Command("watch", names=("a", "b"))),
        ("watch django-otp==1.2.0", Command("watch", names=("django-otp==1.2.0",))),
        ("watch django-otp 1.2.0", Command("watch", names=("django-otp",), pin="1.2.0")),
        ("watch django-otp v1.2", Command("watch", names=("django-otp",), pin="1.2")),
        ("watch x --notify team-email", Command("watch", names=("x",), notify=("team-email",))),
        ("watch x --notify=ci", Command("watch", names=("x",), notify=("ci",))),
        ("unwatch a b", Command("unwatch", names=("a", "b"))),
        ("list", Command("list")),
        ("alerts", Command("alerts")),
        ("status django-otp", Command("status", names=("django-otp",))),
        ("mute x", Command("mute", names=("x",))),
        ("mute x 7d", Command("mute", names=("x",), duration="7d")),
        ("mute x forever", Command("mute", names=("x",))),
        ("mute x repo-archived", Command("mute", names=("x",), rule="repo-archived")),
        ("mute x r 1h30m", Command("mute", names=("x",), rule="r", duration="1h30m")),
        ("unmute x", Command("unmute", names=("x",))),
        ("unmute x repo-archived", Command("unmute", names=("x",), rule="repo-archived")),
        ("readiness 5.2", Command("readiness", version="5.2")),
    ],
    ids=lambda v: repr(v) if isinstance(v, str) else "",
)  # fmt: skip
def test_commands_parse(text: str, expected: Command) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("frobnicate", "unknown command 'frobnicate'"),
        ("watch", "watch needs a package name"),
        ("watch a b 1.0", "a VERSION goes with exactly one NAME"),
        ("watch x --notify", "--notify needs a channel name"),
        ("list everything", "list takes nothing after it"),
        ("status", "status takes one package name"),
        ("status a b", "status takes one package name"),
        ("mute", "mute takes a package name"),
        ("mute x rule soon", "'soon' is not a duration"),
        ("mute x rule 7d more", "mute takes a package name"),
        ("mute x 7d 7d", "nothing goes after the duration '7d'"),
        ("unmute x a b", "unmute takes a package name"),
        ("readiness", "readiness takes one Django version"),
    ],
)
def test_bad_commands_answer_help_with_the_problem(text: str, problem: str) -> None:
    command = parse_command(text)
    assert command.verb == "help"
    assert command.problem is not None and command.problem.startswith(problem)


# -- Done-when 1: a watch over Socket Mode, and over signed HTTP ----------------------------------


def test_socket_mode_watch_is_acknowledged_in_time_and_answered(
    monitor: Monitor, slack: FakeSlackApp
) -> None:
    monitor.configure(slack_app_toml(slack))
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
        slack.wait_connected()
        assert slack.api_calls("apps.connections.open")[0].headers["Authorization"] == (
            f"Bearer {APP_TOKEN}"
        )
        envelope = slack.send_command("watch django-otp")
        ack = slack.wait_ack(envelope)
        assert ack.seconds < ACK_LIMIT
        assert ack.payload is not None and ack.payload["response_type"] == "ephemeral"
        assert "Working on watching django-otp" in texts(ack.payload)
        answer = slack.wait_response(envelope)
        assert answer["response_type"] == "ephemeral"
        assert "django-otp" in texts(answer) and "1.7.0" in texts(answer)
        assert f"slack:{CHANNEL_ID}" in texts(answer)  # alerts come to this channel
        # a quick command's answer is the acknowledgement itself
        listing = slack.wait_ack(slack.send_command("list"))
        assert listing.seconds < ACK_LIMIT
        assert listing.payload is not None and "*django-otp* 1.7.0" in texts(listing.payload)
        assert daemon.events("slack connected")
    assert daemon.returncode == 0 and daemon.stop_seconds is not None
    assert daemon.stop_seconds < 5  # Socket Mode closes with the server
    assert not [line for line in daemon.raw if not line.startswith("{")]  # JSON lines only
    assert watched(monitor) == ["django-otp"]
    [row] = monitor.json("list")
    assert row["notify"] == [f"slack:{CHANNEL_ID}"]


def test_http_mode_needs_a_fresh_valid_signature(monitor: Monitor, slack: FakeSlackApp) -> None:
    monitor.configure(slack_app_toml(slack, socket=False, signing=True))

    def form(text: str, key: str) -> bytes:
        fields = command_form(text, slack, CHANNEL_ID, ("U0AAAAAAA", "alice"), key)
        return urlencode(fields).encode()

    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
        refused = {
            "bad-signature": signed(form("watch django-otp", "a"), secret="not-the-secret"),
            "six-minutes-old": signed(form("watch django-otp", "b"), age=360),
            "unsigned": {"Content-Type": "application/x-www-form-urlencoded"},
            "garbage-timestamp": {**signed(b""), "X-Slack-Request-Timestamp": "soon"},
        }
        for key, headers in refused.items():
            body = form("watch django-otp", key[0])
            status, _, _ = daemon.request("POST", "/slack/commands", body=body, headers=headers)
            assert status == 401, key
        status, _, _ = daemon.request(
            "POST", "/slack/actions", body=b"payload=%7B%7D", headers=signed(b"x")
        )
        assert status == 401
        assert watched(monitor) == []

        body = form("watch django-otp", "good")
        started = time.monotonic()
        status, _, raw = daemon.request("POST", "/slack/commands", body=body, headers=signed(body))
        assert status == 200 and time.monotonic() - started < ACK_LIMIT
        assert "Working on watching django-otp" in texts(json.loads(raw))
        answer = slack.wait_response("good")
        assert "django-otp" in texts(answer)
        assert set(slack.responses) == {"good"}  # the refused ones got no answer either
    assert watched(monitor) == ["django-otp"]


def test_a_command_held_up_by_a_long_write_is_acknowledged_and_answered_later(
    monitor: Monitor, slack: FakeSlackApp
) -> None:
    monitor.configure(slack_app_toml(slack))
    assert monitor.run("watch", "django-otp").exit_code == 0
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0"):
        slack.wait_connected()
        writer = sqlite3.connect(monitor.tmp_path / "monitor.db", isolation_level=None)
        try:
            writer.execute("BEGIN IMMEDIATE")  # a cycle's long write holds the lock
            envelope = slack.send_command("mute django-otp 7d")
            ack = slack.wait_ack(envelope)
            assert ack.payload is not None and "Working on `mute`" in texts(ack.payload)
            assert slack.responses == {}
        finally:
            writer.execute("COMMIT")
            writer.close()
        answer = slack.wait_response(envelope)
    assert ack.seconds < ACK_LIMIT
    assert "every rule muted until" in texts(answer)
    assert [m["package"] for m in monitor.json("mutes")] == ["django-otp"]


# -- Done-when 2: "Mute 7d" mutes the alert, says so, and the next change is not delivered -------


def test_mute_7d_button_mutes_updates_the_message_and_silences_the_next_change(
    monitor: Monitor, slack: FakeSlackApp
) -> None:
    monitor.configure(slack_app_toml(slack, team_slack=True))
    assert cli(monitor, "watch", "django-mfa").returncode == 0
    [message] = slack.posted  # no-commits-26-weeks fired, sent with the bot token
    buttons = [
        element
        for block in message["blocks"]
        if block["type"] == "actions"
        for element in block["elements"]
    ]
    assert [b["text"]["text"] for b in buttons] == ["Mute 7d", "Mute forever"]
    assert json.loads(buttons[0]["value"]) == {
        "package": "django-mfa",
        "rule": "no-commits-26-weeks",
    }

    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0"):
        slack.wait_connected()
        clicked = datetime.now(UTC)
        envelope = slack.click(message, "monitor_mute_7d", user=("U0BBBBBBB", "bob"))
        ack = slack.wait_ack(envelope)
        assert ack.seconds < ACK_LIMIT and ack.payload is None
        update = slack.wait_response(envelope)

    assert update["replace_original"] is True and update["text"] == message["text"]
    assert [b["type"] for b in update["blocks"]] == [
        "context" if b["type"] == "actions" else b["type"] for b in message["blocks"]
    ]
    note = update["blocks"][-1]["elements"][0]["text"]
    until = clicked + timedelta(days=7)
    assert note.startswith(":no_bell: Muted by @bob until ")
    assert f"{until:%Y-%m-%d}" in note
    [mute] = cli_json(monitor, "mutes")
    assert mute["package"] == "django-mfa" and mute["rule"] == "no-commits-26-weeks"
    assert mute["set_by"] == "slack:@bob (U0BBBBBBB)"
    assert abs(datetime.fromisoformat(mute["until"]) - until) < timedelta(minutes=1)

    # the rule changes again (commits come back): recorded, muted, not delivered
    monitor.upstream.records["django-mfa"]["commits_over_52"] = [0] * 51 + [4]
    check = cli_json(monitor, "check")
    assert ("no-commits-26-weeks", "resolved") in [
        (t["rule"], t["status"]) for t in check["transitions"]
    ]
    [alert] = [
        a for a in cli_json(monitor, "alerts", "--all") if a["rule"] == "no-commits-26-weeks"
    ]
    assert alert["status"] == "resolved" and alert["muted"] is True
    assert len(slack.posted) == 1


def test_mute_forever_and_buttons_in_a_refused_channel(
    monitor: Monitor, slack: FakeSlackApp
) -> None:
    monitor.configure(slack_app_toml(slack, team_slack=True, allow=("C0ALLOWED1",)))
    assert monitor.run("watch", "django-mfa").exit_code == 0
    [message] = slack.posted
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0"):
        slack.wait_connected()
        refused = slack.click(message, "monitor_mute_forever", channel=CHANNEL_ID)
        assert "not allowed here" in texts(slack.wait_response(refused))
        assert monitor.json("mutes") == []
        envelope = slack.click(message, "monitor_mute_forever", channel="C0ALLOWED1")
        note = slack.wait_response(envelope)["blocks"][-1]["elements"][0]["text"]
    assert note == ":no_bell: Muted by @bob until unmuted"
    [mute] = monitor.json("mutes")
    assert mute["until"] is None and mute["set_by"] == "slack:@bob (U0BBBBBBB)"


# -- the other commands --------------------------------------------------------------------------


def test_allow_channels_refuses_changes_elsewhere_but_answers_questions(
    monitor: Monitor, slack: FakeSlackApp
) -> None:
    monitor.configure(slack_app_toml(slack, allow=("C0ALLOWED1",)))
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0"):
        slack.wait_connected()
        for text in ("watch django-otp", "unwatch django-otp", "mute x", "unmute x"):
            ack = slack.wait_ack(slack.send_command(text, channel="C0OTHER01"))
            assert ack.payload is not None and "not allowed here" in texts(ack.payload), text
        ack = slack.wait_ack(slack.send_command("list", channel="C0OTHER01"))
        assert ack.payload is not None and "Nothing is watched yet" in texts(ack.payload)
        allowed = slack.send_command("watch django-otp", channel="C0ALLOWED1")
        assert "django-otp" in texts(slack.wait_response(allowed))
    assert watched(monitor) == ["django-otp"]
    assert not [r for r in slack.responses if r != slack._keys[allowed]]


def test_answers_escape_upstream_text_and_help_lists_the_commands(
    monitor: Monitor, slack: FakeSlackApp
) -> None:
    monitor.configure(slack_app_toml(slack))
    monitor.upstream.records["django-otp"]["title"] = "<!channel> & <@U0BOSS>"
    assert monitor.run("watch", "django-otp").exit_code == 0
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0"):
        slack.wait_connected()
        status = slack.wait_ack(slack.send_command("status django-otp")).payload
        helped = slack.wait_ack(slack.send_command("help")).payload
        unknown = slack.wait_ack(slack.send_command("frobnicate <!here>")).payload
        missing = slack.wait_ack(slack.send_command("status <!everyone>")).payload
        muted = slack.wait_ack(slack.send_command("mute django-otp 7d")).payload
        alerts = slack.wait_ack(slack.send_command("alerts")).payload
        ready = slack.wait_ack(slack.send_command("readiness 5.2")).payload
    assert status is not None and helped is not None and unknown is not None
    assert missing is not None and muted is not None and alerts is not None and ready is not None
    for answer in (status, unknown, missing):
        assert answer["response_type"] == "ephemeral"
        shown = json.dumps(answer)
        assert "<!" not in shown and "<@" not in shown, shown
    assert "&lt;!channel&gt; &amp; &lt;@U0BOSS&gt;" in texts(status)
    assert "*django-otp* 1.7.0" in texts(status)
    for verb in ("watch", "unwatch", "list", "status", "alerts", "mute", "unmute", "readiness"):
        assert f"`/monitor {verb}" in texts(helped)
    assert texts(unknown).startswith("*unknown command 'frobnicate'*")
    assert "not watched" in texts(missing) and "&lt;!everyone&gt;" in texts(missing)
    assert "every rule muted until" in texts(muted) and "slack:@alice (U0AAAAAAA)" in texts(muted)
    assert "No alerts firing" in texts(alerts)
    assert "django-otp" in texts(ready)


# -- slack:CHANNEL_ID: a channel the bot posts to --------------------------------------------------


def test_a_slack_channel_id_is_a_channel_with_the_bot_token(
    monitor: Monitor, slack: FakeSlackApp
) -> None:
    monitor.configure(slack_app_toml(slack))
    result = monitor.run("notify-test", "slack:C0SOMEWHERE")
    assert result.exit_code == 0, result.output
    [request] = slack.api_calls("chat.postMessage")
    assert request.headers["Authorization"] == f"Bearer {BOT_TOKEN}"
    assert request.json()["channel"] == "C0SOMEWHERE"
    assert monitor.run("notify-test", "slack:#deps").exit_code == 2  # ids only
    monitor.configure("")  # no [slack_app]: no such channels
    assert monitor.run("notify-test", "slack:C0SOMEWHERE").exit_code == 2


def test_a_watch_made_from_slack_alerts_its_channel(monitor: Monitor, slack: FakeSlackApp) -> None:
    monitor.configure(slack_app_toml(slack))
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
        slack.wait_connected()
        slack.wait_response(slack.send_command("watch django-mfa", channel="C0TEAM0001"))
        daemon.wait_for(lambda: slack.posted, timeout=3)
    [message] = slack.posted
    assert message["channel"] == "C0TEAM0001" and "no-commits-26-weeks" in json.dumps(message)
