"""A fake Slack for the bot side (SPEC §10), on 127.0.0.1 port 0, in a thread of its own::

    with FakeSlackApp() as slack:              # then point [slack_app] api_url at slack.api_url
        ...run monitor...
        slack.wait_connected()
        envelope = slack.send_command("watch django-otp")   # a slash_commands envelope
        ack = slack.wait_ack(envelope)                       # ack.seconds, ack.payload
        answer = slack.wait_response(envelope)               # what was posted to response_url

It serves the Web API (``apps.connections.open`` with the app token, answering the URL of its
own Socket Mode WebSocket; ``chat.postMessage`` and ``chat.update`` with the bot token), the
WebSocket at ``/link`` (``hello`` first, then envelopes on demand; each acknowledgement is
recorded with the time it took), and a ``response_url`` per envelope (``/respond/ID``), where
posts are recorded. Messages accepted by ``chat.postMessage`` get a ``ts`` and, as with Slack,
a ``block_id`` on every block that has none, so :meth:`click` can build the ``block_actions``
payload a user's click would send.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from tests.daemon import wait_for
from tests.fakes import FakeHTTPServer, RecordedRequest, Reply, _form

APP_TOKEN = "xapp-1-A111-222-fakeapptoken"
BOT_TOKEN = "xoxb-333-444-fakebottoken"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
CHANNEL_ID = "C0123456789"


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    seconds: float  # from sending the envelope to receiving its acknowledgement


class FakeSlackApp(FakeHTTPServer):
    def __init__(self, *, app_token: str = APP_TOKEN, bot_token: str = BOT_TOKEN, **kwargs: Any):
        super().__init__(**kwargs)
        self.app_token = app_token
        self.bot_token = bot_token
        self.sockets: list[web.WebSocketResponse] = []
        self.connections = 0
        self.acks: dict[str, Ack] = {}
        self.responses: dict[str, list[dict[str, Any]]] = {}
        self.posted: list[dict[str, Any]] = []  # chat.postMessage bodies, with ts and block_ids
        self._sent: dict[str, float] = {}  # envelope id -> when it was sent
        self._keys: dict[str, str] = {}  # envelope id -> its response_url's key

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def response_url(self, key: str) -> str:
        return f"{self.url}/respond/{key}"

    # -- routes -----------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/respond/{key}", self._respond)

    async def _api(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        method = request.match_info["method"]
        token = self.app_token if method == "apps.connections.open" else self.bot_token
        if recorded.headers.get("Authorization") != f"Bearer {token}":
            return await self.reply(recorded, Reply.slack_error("invalid_auth"))
        if method == "apps.connections.open":
            url = f"ws://{self.host}:{self.port}/link"
            return await self.reply(recorded, Reply(json={"ok": True, "url": url}))
        if method == "chat.postMessage":
            return await self.reply(recorded, Reply(json=self._post(_body(recorded))))
        if method == "chat.update":
            body = _body(recorded)
            return await self.reply(recorded, Reply(json={"ok": True, "ts": body.get("ts")}))
        return await self.reply(recorded, Reply.slack_error("unknown_method"))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        ts = f"{time.time():.6f}"
        blocks = body.get("blocks")
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        for block in blocks or []:
            block.setdefault("block_id", uuid.uuid4().hex[:8])
        self.posted.append({**body, "blocks": blocks or [], "ts": ts})
        return {"ok": True, "channel": body.get("channel"), "ts": ts}

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self.sockets.append(socket)
        self.connections += 1
        await socket.send_json({"type": "hello", "num_connections": 1})
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                self._acknowledged(json.loads(message.data))
        return socket

    def _acknowledged(self, ack: dict[str, Any]) -> None:
        envelope_id = str(ack.get("envelope_id"))
        sent = self._sent.get(envelope_id)
        if sent is not None:
            self.acks[envelope_id] = Ack(envelope_id, ack.get("payload"), time.monotonic() - sent)

    async def _respond(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        self.responses.setdefault(request.match_info["key"], []).append(recorded.json())
        return web.Response(text="ok")

    # -- driving it from the test's thread ------------------------------------------------------

    def wait_connected(self, timeout: float = 15.0) -> None:
        wait_for(lambda: self.sockets and not self.sockets[-1].closed, timeout)

    def send_envelope(self, kind: str, payload: dict[str, Any], *, accepts: bool) -> str:
        envelope_id = uuid.uuid4().hex
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts,
        }
        assert self._loop is not None, "run it in a thread (with FakeSlackApp() as slack)"

        async def send() -> None:
            self._sent[envelope_id] = time.monotonic()
            await self.sockets[-1].send_json(envelope)

        asyncio.run_coroutine_threadsafe(send(), self._loop).result(timeout=5)
        return envelope_id

    def send_command(
        self,
        text: str,
        *,
        channel: str = CHANNEL_ID,
        user: tuple[str, str] = ("U0AAAAAAA", "alice"),
        key: str | None = None,
    ) -> str:
        """A ``/monitor TEXT`` envelope; its response_url is ``/respond/<envelope id>``
        (or ``key``)."""
        key = key or uuid.uuid4().hex
        envelope_id = self.send_envelope(
            "slash_commands", command_form(text, self, channel, user, key), accepts=True
        )
        self._keys[envelope_id] = key
        return envelope_id

    def click(
        self,
        message: dict[str, Any],
        action_id: str,
        *,
        value: str | None = None,
        user: tuple[str, str] = ("U0BBBBBBB", "bob"),
        channel: str = CHANNEL_ID,
    ) -> str:
        """A ``block_actions`` envelope: ``user`` clicked the button ``action_id`` (the first
        one, or the one with ``value``) of a posted ``message``."""
        key = uuid.uuid4().hex
        envelope_id = self.send_envelope(
            "interactive",
            block_actions(message, action_id, self, key, value=value, user=user, channel=channel),
            accepts=False,
        )
        self._keys[envelope_id] = key
        return envelope_id

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        wait_for(lambda: envelope_id in self.acks, timeout)
        return self.acks[envelope_id]

    def wait_response(self, envelope_id: str, timeout: float = 20.0) -> dict[str, Any]:
        key = self._keys.get(envelope_id, envelope_id)
        wait_for(lambda: self.responses.get(key), timeout)
        return self.responses[key][0]

    def api_calls(self, method: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == f"/api/{method}"]


def command_form(
    text: str, slack: FakeSlackApp, channel: str, user: tuple[str, str], key: str
) -> dict[str, str]:
    """A slash command's fields, as Slack sends them (form fields; the same in Socket Mode)."""
    return {
        "token": "deprecated-verification-token",
        "team_id": "T0001",
        "team_domain": "example",
        "channel_id": channel,
        "channel_name": "deps",
        "user_id": user[0],
        "user_name": user[1],
        "command": "/monitor",
        "text": text,
        "api_app_id": "A0001",
        "is_enterprise_install": "false",
        "response_url": slack.response_url(key),
        "trigger_id": "1.2.3",
    }


def block_actions(
    message: dict[str, Any],
    action_id: str,
    slack: FakeSlackApp,
    key: str,
    *,
    value: str | None,
    user: tuple[str, str],
    channel: str,
) -> dict[str, Any]:
    button, block_id = next(
        (element, block.get("block_id"))
        for block in message["blocks"]
        if block.get("type") == "actions"
        for element in block["elements"]
        if element.get("action_id") == action_id and value in (None, element.get("value"))
    )
    return {
        "type": "block_actions",
        "user": {"id": user[0], "username": user[1], "name": user[1], "team_id": "T0001"},
        "api_app_id": "A0001",
        "team": {"id": "T0001", "domain": "example"},
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "channel": {"id": channel, "name": "deps"},
        "message": {
            "type": "message",
            "ts": message["ts"],
            "text": message.get("text", ""),
            "blocks": message["blocks"],
        },
        "response_url": slack.response_url(key),
        "trigger_id": "4.5.6",
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": block_id,
                "text": button["text"],
                "value": button["value"],
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def _body(request: RecordedRequest) -> dict[str, Any]:
    """A Web API call's arguments: JSON, or form fields (how slack-sdk sends some calls)."""
    if "application/json" in request.headers.get("Content-Type", ""):
        body = request.json()
        return body if isinstance(body, dict) else {}
    return dict(_form(request))
