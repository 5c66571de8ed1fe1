"""Real servers on 127.0.0.1, port 0, for tests: a fake Slack, a webhook receiver, an SMTP server.

Every fake records what it received and answers from a programmable queue of replies; when the
queue is empty it answers like the real service on a good day. Each starts either on the test's
own event loop or on a background thread (for sync tests that run the CLI)::

    async with FakeSlack() as slack:             # on the running loop
        slack.queue(500, 500, Reply(429, headers={"Retry-After": "2"}), 200)
        ...
    with FakeWebhookReceiver(secret=SECRET) as hook:   # on a thread of its own
        subprocess/CliRunner(...)                      # posts to hook.url
        assert hook.requests[0].verified

    with FakeSMTPServer() as smtp:               # aiosmtpd runs on its own thread either way
        smtp.queue("451 4.3.0 Try again later")
        ...
        smtp.messages[0]["Subject"]

Queued replies: an ``int`` is that status with a short body (for SMTP, a canned reply with
that code); a :class:`Reply` sets status, body, JSON, headers and a delay
(``Reply.rate_limited(2)``, ``Reply.slack_error("channel_not_found")``); for SMTP a ``str`` is
the whole reply line. ``requests`` (HTTP) and ``mails``/``replies`` (SMTP) record everything.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http import HTTPStatus
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from multidict import CIMultiDict

_NO_JSON = object()
# Secrets the delivery tests configure (and look for in what must not show them).
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "xoxb-1234-very-secret-token"


@dataclass
class Reply:
    """One programmed answer of a fake HTTP server."""

    status: int = 200
    body: str | bytes | None = None
    json: Any = _NO_JSON
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to provoke client timeouts)
    echo: bool = False  # put the request line (``POST /path?query HTTP/1.1``) in the body

    @classmethod
    def echoing(cls, status: int = 400, *, prefix: str = "") -> Reply:
        """An answer that echoes the request line, as many servers' error pages do."""
        return cls(status=status, body=prefix, echo=True)

    @classmethod
    def rate_limited(cls, retry_after: float | str = 2, *, status: int = 429) -> Reply:
        """``429 Too Many Requests`` with ``Retry-After`` (seconds or an HTTP-date)."""
        return cls(status=status, headers={"Retry-After": str(retry_after)})

    @classmethod
    def slack_error(
        cls, error: str, *, status: int = 200, retry_after: float | None = None
    ) -> Reply:
        """A Slack Web API ``{"ok": false, "error": ...}`` answer."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return cls(status=status, json={"ok": False, "error": error}, headers=headers)

    def response(self, request: RecordedRequest | None = None) -> web.Response:
        if self.echo and request is not None:
            line = f"{request.method} {request.raw_path} HTTP/1.1"
            return web.Response(status=self.status, text=f"{self.body or ''}{line}")
        if self.json is not _NO_JSON:
            return web.json_response(self.json, status=self.status, headers=self.headers)
        body = self.body
        if body is None:
            known = self.status in HTTPStatus._value2member_map_
            body = HTTPStatus(self.status).phrase if known else ""
        if isinstance(body, str):
            return web.Response(status=self.status, text=body, headers=self.headers)
        return web.Response(status=self.status, body=body, headers=self.headers)


@dataclass
class RecordedRequest:
    """What a fake HTTP server received, and how it answered."""

    method: str
    path: str
    query: dict[str, str]
    headers: CIMultiDict[str]
    body: bytes
    raw_path: str = ""  # the path and query as sent
    status: int = 0  # the status it was answered with
    verified: bool | None = None  # webhook receiver: did the signature verify?
    error: str | None = None  # why it was refused (bad signature, Slack ``error``)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


class FakeHTTPServer:
    """An aiohttp app on 127.0.0.1 (port 0 by default) that records and answers from a queue."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0):
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._replies: deque[Reply | int] = deque()
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- programming ----------------------------------------------------------------------

    def queue(self, *replies: Reply | int) -> None:
        """Answer the next requests with these, in order; then with the default answer."""
        self._replies.extend(replies)

    def clear(self) -> None:
        self._replies.clear()
        self.requests.clear()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- subclasses ---------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def default_reply(self, request: RecordedRequest) -> Reply:
        return Reply(200, body="ok")

    def status_reply(self, status: int, request: RecordedRequest) -> Reply:
        """What a bare ``int`` in the queue means."""
        if 200 <= status < 300:
            return self.default_reply(request)
        return Reply(status)

    async def answer(self, request: web.Request) -> web.Response:
        """Record ``request`` and answer it from the queue (a route handler's usual job)."""
        return await self.reply(await self.record(request))

    async def record(self, request: web.Request) -> RecordedRequest:
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=CIMultiDict(request.headers),
            body=await request.read(),
            raw_path=request.raw_path,
        )
        self.requests.append(recorded)
        return recorded

    async def reply(self, recorded: RecordedRequest, forced: Reply | None = None) -> web.Response:
        reply: Reply | int
        if forced is not None:
            reply = forced
        else:
            try:
                reply = self._replies.popleft()
            except IndexError:
                reply = self.default_reply(recorded)
        if isinstance(reply, int):
            reply = self.status_reply(reply, recorded)
        recorded.status = reply.status
        if isinstance(reply.json, dict) and reply.json.get("ok") is False:
            recorded.error = str(reply.json.get("error"))  # a Slack-style refusal
        if reply.delay:
            await asyncio.sleep(reply.delay)
        return reply.response(recorded)

    # -- running on the current loop -------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application()
        self.add_routes(app)
        # A reply held back by ``delay`` must not hold up shutdown: cancel it.
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- running on a background thread ----------------------------------------------------

    def start_in_thread(self) -> Self:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=loop.run_forever, name=f"{type(self).__name__}", daemon=True
        )
        thread.start()
        self._loop, self._thread = loop, thread
        asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
        return self

    def stop_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    def __enter__(self) -> Self:
        return self.start_in_thread()

    def __exit__(self, *exc_info: object) -> None:
        self.stop_thread()


class FakeSlack(FakeHTTPServer):
    """The Slack Web API and incoming webhooks (``/hooks/...``).

    Web API methods: ``chat.postMessage`` (each accepted message gets a ``ts`` from the time it
    arrived, and keeps its ``metadata``), ``conversations.list`` (``channels``: id -> name) and
    ``conversations.history`` (the messages accepted since ``oldest``, newest first, with their
    metadata only when ``include_all_metadata`` is set; ``page_size`` per page, then a cursor).
    A message counts as accepted as soon as a 2xx answer is chosen for it, even one held back
    by ``delay``: as with Slack, a client that dies waiting does not unpost it.
    ``api_url`` is the notifier's ``api_url``; ``webhook_url`` an incoming-webhook URL on it.
    With ``token`` set, a Web API call with another bearer token answers ``invalid_auth``.
    ``messages`` are the JSON bodies Slack accepted (both routes).
    """

    WEBHOOK_PATH = "/hooks/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
    CHANNEL_ID = "C0123456789"

    def __init__(self, *, token: str | None = None, page_size: int = 100, **kwargs: Any):
        super().__init__(**kwargs)
        self.token = token
        self.channels = {self.CHANNEL_ID: "deps"}
        self.page_size = page_size
        self._ts: dict[int, float] = {}  # id(request) -> when it arrived

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}{self.WEBHOOK_PATH}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [r.json() for r in self._accepted()]

    def calls(self, method: str) -> list[RecordedRequest]:
        """The Web API requests of ``method`` (``"conversations.history"``)."""
        return [r for r in self.requests if r.path == f"/api/{method}"]

    def _accepted(self) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if 200 <= r.status < 300
            and r.error is None
            and r.method == "POST"
            and r.path in ("/api/chat.postMessage", self.WEBHOOK_PATH)
        ]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/hooks/{path:.*}", self._webhook)

    async def _api(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        method = request.match_info["method"]
        if method not in ("chat.postMessage", "conversations.history", "conversations.list"):
            return await self.reply(recorded, Reply.slack_error("unknown_method"))
        if (
            self.token is not None
            and recorded.headers.get("Authorization") != f"Bearer {self.token}"
        ):
            return await self.reply(recorded, Reply.slack_error("invalid_auth"))
        if method == "chat.postMessage":
            self._ts[id(recorded)] = time.time()
            return await self.reply(recorded)
        params = {**recorded.query, **_form(recorded)}
        if method == "conversations.list":
            channels = [{"id": k, "name": v} for k, v in self.channels.items()]
            return await self.reply(recorded, Reply(json={"ok": True, "channels": channels}))
        return await self.reply(recorded, Reply(json=self._history(params)))

    def _history(self, params: dict[str, str]) -> dict[str, Any]:
        if params.get("channel") not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(params.get("oldest") or 0)
        with_metadata = params.get("include_all_metadata") in ("1", "true", "True")
        found = []
        for request in reversed(self._accepted()):
            ts = self._ts.get(id(request))
            if ts is None or ts < oldest:
                continue
            body = request.json()
            message = {"type": "message", "text": body.get("text", ""), "ts": f"{ts:.6f}"}
            if with_metadata and "metadata" in body:
                message["metadata"] = body["metadata"]
            found.append(message)
        start = int(params.get("cursor") or 0)
        page = found[start : start + self.page_size]
        more = start + self.page_size < len(found)
        cursor = str(start + self.page_size) if more else ""
        return {
            "ok": True,
            "messages": page,
            "has_more": more,
            "response_metadata": {"next_cursor": cursor},
        }

    async def _webhook(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        if request.path != self.WEBHOOK_PATH:
            return await self.reply(recorded, Reply(404, body="no_service"))
        return await self.reply(recorded)

    def default_reply(self, request: RecordedRequest) -> Reply:
        if request.path.startswith("/api/"):
            return Reply(
                200, json={"ok": True, "channel": self.CHANNEL_ID, "ts": "1700000000.000100"}
            )
        return Reply(200, body="ok")


def _form(request: RecordedRequest) -> dict[str, str]:
    """The form fields of a urlencoded body (how slack-sdk sends some calls)."""
    if "application/x-www-form-urlencoded" not in request.headers.get("Content-Type", ""):
        return {}
    from urllib.parse import parse_qsl

    return dict(parse_qsl(request.text))


class FakeWebhookReceiver(FakeHTTPServer):
    """Accepts ``POST`` on any path (``url`` is ``/hooks/packages``).

    With ``secret`` set it verifies each request with the ``standardwebhooks`` package, records
    ``verified``/``error`` on it, and answers 401 when verification fails.
    """

    def __init__(self, *, secret: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.secret = secret

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hooks/packages"

    @property
    def events(self) -> list[Any]:
        """The JSON documents of the requests answered 2xx."""
        return [r.json() for r in self.requests if 200 <= r.status < 300]

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{path:.*}", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        recorded = await self.record(request)
        if self.secret is not None:
            from standardwebhooks.webhooks import Webhook, WebhookVerificationError

            try:
                Webhook(self.secret).verify(recorded.body, dict(recorded.headers))
            except WebhookVerificationError as exc:
                recorded.verified, recorded.error = False, str(exc)
                return await self.reply(recorded, Reply(401, body="bad signature"))
            recorded.verified = True
        return await self.reply(recorded)


# -- SMTP ------------------------------------------------------------------------------------


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: EmailMessage


_SMTP_REPLIES = {
    250: "250 OK",
    421: "421 4.3.2 Service shutting down",
    450: "450 4.2.1 Mailbox busy",
    451: "451 4.3.0 Try again later",
    452: "452 4.3.1 Insufficient storage",
    550: "550 5.7.1 Message rejected",
    552: "552 5.3.4 Message too big",
    554: "554 5.7.0 Transaction failed",
}


class FakeSMTPServer:
    """An aiosmtpd server on 127.0.0.1, port 0, on its own thread.

    ``mode``: ``"none"`` (plain), ``"starttls"`` (requires STARTTLS) or ``"tls"`` (implicit TLS);
    the TLS modes need ``cert=(certfile, keyfile)`` (see :func:`make_self_signed_cert`).
    ``auth={"user": "password"}`` accepts those logins (over plain text too in mode none).
    ``queue()`` programs the answers to DATA: ``451``, ``"550 5.7.1 No thanks"``, ``250``.
    """

    def __init__(
        self,
        *,
        mode: str = "none",
        cert: tuple[str | Path, str | Path] | None = None,
        auth: Mapping[str, str] | None = None,
        host: str = "127.0.0.1",
    ):
        if mode not in ("none", "starttls", "tls"):
            raise ValueError(f"unknown mode {mode!r}")
        if mode != "none" and cert is None:
            raise ValueError(f"mode {mode!r} needs cert=(certfile, keyfile)")
        self.mode = mode
        self.cert = cert
        self.auth = dict(auth) if auth else None
        self.host = host
        self.port = 0
        self.mails: list[ReceivedMail] = []  # the messages accepted (DATA answered 2xx)
        self.replies: list[str] = []  # the answer to every DATA, accepted or not
        self.logins: list[str] = []
        self._replies: deque[str | int] = deque()
        self._controller: Any = None

    @property
    def messages(self) -> list[EmailMessage]:
        return [mail.message for mail in self.mails]

    def queue(self, *replies: str | int) -> None:
        self._replies.extend(replies)

    def _next_reply(self) -> str:
        try:
            reply = self._replies.popleft()
        except IndexError:
            return _SMTP_REPLIES[250]
        if isinstance(reply, int):
            return _SMTP_REPLIES.get(reply, f"{reply} Fake reply")
        return reply

    def start(self) -> Self:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        owner = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                reply = owner._next_reply()
                owner.replies.append(reply)
                if reply.startswith("2"):
                    data = envelope.original_content or envelope.content
                    message = email.message_from_bytes(data, policy=email.policy.default)
                    owner.mails.append(
                        ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), data, message)  # type: ignore[arg-type]
                    )
                return reply

        def authenticator(
            server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> Any:
            login, password = (
                value.decode() if isinstance(value, bytes) else value
                for value in (auth_data.login, auth_data.password)
            )
            ok = owner.auth is not None and owner.auth.get(login) == password
            if ok:
                owner.logins.append(login)
            return AuthResult(success=ok, handled=False)

        class PortZeroController(Controller):
            def _trigger_server(self) -> None:
                # Learn the port the OS picked before aiosmtpd connects to itself.
                assert isinstance(self.server, asyncio.Server)
                self.port = self.server.sockets[0].getsockname()[1]
                super()._trigger_server()

        kwargs: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 10}
        if self.auth is not None:
            kwargs["authenticator"] = authenticator
        if self.mode == "none":
            kwargs["auth_require_tls"] = False
        else:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(self.cert[0]), str(self.cert[1]))  # type: ignore[index]
            if self.mode == "starttls":
                kwargs.update(tls_context=context, require_starttls=True)
            else:
                # aiosmtpd only knows about STARTTLS: tell it AUTH is fine on this socket.
                kwargs.update(ssl_context=context, auth_require_tls=False)
        self._controller = PortZeroController(Handler(), hostname=self.host, port=0, **kwargs)
        self._controller.start()
        self.port = self._controller.port
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)


# -- helpers -----------------------------------------------------------------------------------


def unused_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (connection refused), as far as one can tell."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def make_self_signed_cert(directory: str | Path) -> tuple[Path, Path] | None:
    """A certificate for ``localhost``/``127.0.0.1`` and its key, made with the ``openssl``
    command; ``None`` when there is no ``openssl``. Trust it with
    ``ssl.create_default_context(cafile=cert)``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    directory = Path(directory)
    cert, key = directory / "cert.pem", directory / "key.pem"
    command = [
        openssl, "req", "-x509", "-nodes", "-days", "2",
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
        "-addext", "extendedKeyUsage=serverAuth",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        return None
    return cert, key
