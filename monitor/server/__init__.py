"""What ``monitor run`` serves beside the scheduler (SPEC §10): Slack, pages, the JSON API,
``/metrics``, ``/healthz`` and GitHub's webhooks.

The server runs on its own thread with its own event loop, so the scheduler's work (a cycle
recording 10,000 changes in one transaction) never holds up an answer: Slack's 3-second
acknowledgement and ``/healthz`` hold whatever the daemon is doing. Every request's database
work runs on a worker thread with its own connection (:meth:`ServerContext.call`), through the
application layer (:mod:`monitor.app`); a wait for SQLite's write lock never blocks the loop.

The parts:

- :mod:`monitor.server.ops`: ``/healthz`` and ``/metrics``;
- :mod:`monitor.server.pages`: ``/`` and ``/packages/NAME``;
- :mod:`monitor.server.api`: ``/api/...`` and its OpenAPI document;
- :mod:`monitor.server.slack`: ``/slack/commands``, ``/slack/actions`` and Socket Mode;
- :mod:`monitor.server.hooks`: ``/hooks/github``.

Security (SPEC §10): with ``[http] token``, pages and API need it (``Authorization: Bearer``,
or as the password of HTTP Basic auth); without one the server listens on loopback only
(:meth:`monitor.config.Config.serving`), and requests that change something still need a
token, so a web page in a local browser cannot change watches. Slack's and GitHub's
endpoints check their own signatures; ``/healthz`` is open and says nothing but the status.
Request bodies are capped at :data:`MAX_BODY`.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import logging
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web

from monitor.config import Config, HttpConfig, is_loopback, listen_address
from monitor.errors import MonitorError

if TYPE_CHECKING:
    from monitor.app import App
    from monitor.metrics import Metrics

log = logging.getLogger("monitor")

MAX_BODY = 1024 * 1024  # bytes of a request body; more is 413
WORKERS = 4  # threads for requests' database work
T = TypeVar("T")

# Paths that check their own credentials (signatures), or need none.
OPEN_PATHS = ("/healthz", "/slack/", "/hooks/")


class Control(Protocol):
    metrics: Metrics  # the daemon's counters, rendered by /metrics

    """What the server asks of the daemon beside it (thread-safe: called from the server's
    thread). :class:`monitor.scheduler.Daemon` is one."""

    def poll_now(self, slugs: list[str] | None) -> None:
        """Poll these watched packages (None: all) in a cycle of their own, soon."""

    def send_soon(self) -> None:
        """Send pending deliveries now rather than at the next outbox tick."""

    def health(self) -> tuple[bool, str]:
        """(healthy, why not): the scheduler runs and ticked within two tick lengths."""


@dataclass
class ServerContext:
    """What every route needs: the config, the rules, the daemon, and a way to run the
    application layer off the event loop."""

    config: Config
    rules: list[Any]
    control: Control
    clock: Callable[[], datetime]
    http: HttpConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # each part's own state

    async def call(self, work: Callable[[App], T | Awaitable[T]]) -> T:
        """Run ``work(app)`` on a worker thread over a connection of its own; an awaitable
        result is run to completion there, on that thread's own event loop."""
        return await asyncio.get_running_loop().run_in_executor(
            self.extra["executor"], self._call, work
        )

    def _call(self, work: Callable[[App], Any]) -> Any:
        from monitor.app import App
        from monitor.store import Store

        store = Store(self.config.database)
        try:
            app = App(self.config, store, rules=lambda: self.rules, clock=self.clock)
            result = work(app)
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
            return result
        finally:
            store.close()

    @property
    def token(self) -> str | None:
        return self.http.token if self.http else None


def authorized(request: web.Request, token: str | None) -> bool:
    """Whether the request carries the token: ``Bearer TOKEN``, or Basic auth with TOKEN as
    the password (any user name), compared in constant time."""
    if token is None:
        return False
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    given = ""
    if scheme.lower() == "bearer":
        given = value.strip()
    elif scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        given = decoded.partition(":")[2]
    return hmac.compare_digest(given.encode(), token.encode())


def _unauthorized(request: web.Request, message: str) -> web.Response:
    headers = {}
    if not request.path.startswith("/api/"):
        headers["WWW-Authenticate"] = 'Basic realm="monitor"'
    return web.json_response({"error": message}, status=401, headers=headers)


def auth_middleware(ctx: ServerContext) -> Any:
    @web.middleware
    async def check(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith(OPEN_PATHS):
            return await handler(request)
        token = ctx.token
        if token is not None:
            if not authorized(request, token):
                return _unauthorized(request, "missing or wrong token")
        elif request.method not in ("GET", "HEAD", "OPTIONS"):
            return _unauthorized(
                request, "changing anything over HTTP needs a token: set [http] token"
            )
        elif not _loopback_host(request):
            # no token: a page on another site must not reach us through DNS rebinding
            return web.json_response({"error": "unknown host"}, status=421)
        return await handler(request)

    return check


def _loopback_host(request: web.Request) -> bool:
    """Whether the ``Host`` header names a loopback host (``[::1]:8080`` for IPv6)."""
    given = request.host
    host = given[1:].partition("]")[0] if given.startswith("[") else given.rsplit(":", 1)[0]
    return is_loopback(host)


CONTEXT: web.AppKey[ServerContext] = web.AppKey("ctx", ServerContext)


def context(request: web.Request) -> ServerContext:
    """The request's :class:`ServerContext`."""
    return request.app[CONTEXT]


def make_app(ctx: ServerContext) -> web.Application:
    """The aiohttp application: every part's routes behind the auth middleware."""
    from monitor.server import api, hooks, ops, pages, slack

    app = web.Application(client_max_size=MAX_BODY, middlewares=[auth_middleware(ctx)])
    app[CONTEXT] = ctx
    for part in (ops, pages, api, slack, hooks):
        part.add_routes(app, ctx)
    return app


class Server:
    """The server's thread and event loop. :meth:`start` returns once it listens (or
    raises :class:`MonitorError` when it cannot); :meth:`stop` ends it within a second or
    two."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> None:
        self._thread = threading.Thread(target=self._main, name="monitor-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise MonitorError("the HTTP server did not start in time")
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float = 3.0) -> None:
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by start(), or logged once running
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.error("server failed", exc_info=exc)

    async def _serve(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="monitor-request")
        self.ctx.extra["executor"] = executor
        runner = web.AppRunner(make_app(self.ctx), access_log=None, shutdown_timeout=1.0)
        try:
            await runner.setup()  # starts the parts' background work (Socket Mode)
            http = self.ctx.http
            if http is not None and http.listen is not None:
                host, port = listen_address(http.listen)
                site = web.TCPSite(runner, host, port)
                try:
                    await site.start()
                except OSError as exc:
                    raise MonitorError(
                        f"cannot listen on {http.listen}: {exc.strerror or exc}"
                    ) from None
                bound = runner.addresses[0]
                shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
                self.url = f"http://{shown}:{bound[1]}"
                log.info("listening", extra={"fields": {"url": self.url}})
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()
            executor.shutdown(wait=False, cancel_futures=True)
