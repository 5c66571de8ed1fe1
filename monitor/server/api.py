"""The JSON API (SPEC §10): the commands of SPEC §4 over HTTP, in the shapes of ``--json``.

    GET    /api/watches                 list --json
    POST   /api/watches                 watch NAME... (201 when something new is watched)
    DELETE /api/watches/NAME            unwatch NAME
    GET    /api/watches/NAME/history    history NAME --json
    GET    /api/alerts[?all=true]       alerts [--all] --json, a page at a time: ?limit=N (200;
                                        at most 1000), ?before=ID; a Link header (rel="next")
                                        gives the next page, X-Alerts-More how many are left
    GET    /api/mutes                   mutes --json
    POST   /api/mutes                   mute NAME (set by "api"; 201)
    DELETE /api/mutes/NAME[?rule=RULE]  unmute NAME [--rule RULE]
    POST   /api/check                   check [NAME...], in the background (202)
    GET    /api/openapi.json            the contract (:mod:`monitor.server.openapi`)

The token is checked before any of this (:func:`monitor.server.auth_middleware`). Every
answer is JSON; an error is ``{"error": message}`` (an unknown package adds ``suggestions``
and ``hint``): 400 for a bad request (a body that is not a JSON object of the documented
keys and types, or what the command itself refuses: an unknown rule, channel or duration),
404 for a package not watched or found nowhere, 409 when the database stays locked by
another write beyond the busy timeout, 413 for a body over 1 MiB, 502 when an upstream
source fails while a new watch is fetched. A name in a path may be ``pypi:NAME`` (written
``pypi%3ANAME`` or as is).

Like the command line, this only parses and renders: the work is :class:`monitor.app.App`'s,
run on a worker thread (:meth:`ServerContext.call`); what ``watch`` raises is delivered by the
daemon's outbox (``send_soon``), and ``check`` is the daemon's own cycle (``poll_now``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from monitor.errors import (
    ConfigError,
    MonitorError,
    NotWatchedError,
    PackageNotFound,
    RulesError,
    SourceError,
    StoreError,
    UsageError,
)
from monitor.server import context
from monitor.server.openapi import (
    ALERTS_PAGE,
    MAX_ALERT_ID,
    MAX_ALERTS_PAGE,
    MAX_NAME,
    MAX_NAMES,
    MAX_TEXT,
)

if TYPE_CHECKING:
    from monitor.app import App, WatchOutcome
    from monitor.server import ServerContext

log = logging.getLogger("monitor")

# What a MonitorError means over HTTP, first match wins; any other is a 500 (a bug).
ERROR_STATUS: tuple[tuple[type[MonitorError], int], ...] = (
    (PackageNotFound, 404),
    (NotWatchedError, 404),
    (UsageError, 400),
    (ConfigError, 400),
    (RulesError, 400),
    (SourceError, 502),
    (StoreError, 503),
)
LOCKED = ("SQLITE_BUSY", "SQLITE_LOCKED")  # another write held the database too long: 409

Handler = Callable[[web.Request, "ServerContext"], Awaitable[web.Response]]


def add_routes(app: web.Application, ctx: ServerContext) -> None:
    router = app.router
    router.add_get("/api/watches", _api(list_watches))
    router.add_post("/api/watches", _api(watch))
    router.add_delete("/api/watches/{name}", _api(unwatch))
    router.add_get("/api/watches/{name}/history", _api(history))
    router.add_get("/api/alerts", _api(alerts))
    router.add_get("/api/mutes", _api(mutes))
    router.add_post("/api/mutes", _api(mute))
    router.add_delete("/api/mutes/{name}", _api(unmute))
    router.add_post("/api/check", _api(check))
    router.add_get("/api/openapi.json", _api(openapi))


class ApiError(Exception):
    """An answer other than success, decided by the API itself (a bad body, a bad query)."""

    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


# -- the routes ---------------------------------------------------------------------------


async def list_watches(request: web.Request, ctx: ServerContext) -> web.Response:
    return _json(await ctx.call(lambda app: [row.to_json_dict() for row in app.watches()]))


WATCH_KEYS = ("names", "pin", "notify", "interval")


async def watch(request: web.Request, ctx: ServerContext) -> web.Response:
    body = await _body(request, required=("names",), optional=WATCH_KEYS[1:])
    names = _names(body, "names")
    pin = _optional_text(body, "pin")
    notify = _names(body, "notify", empty=True) or None  # none given: each watch keeps its own
    interval = _optional_text(body, "interval")

    async def work(app: App) -> WatchOutcome:
        return await app.watch(names, pin=pin, notify=notify, interval=interval, deliver=False)

    outcome: WatchOutcome = await ctx.call(work)
    if outcome.transitions:
        ctx.control.send_soon()
    answer = {"lines": outcome.lines, "added": outcome.added, "transitions": outcome.transitions}
    return _json(answer, status=201 if outcome.added else 200)


async def unwatch(request: web.Request, ctx: ServerContext) -> web.Response:
    name = request.match_info["name"]
    return _json({"unwatched": await ctx.call(lambda app: app.unwatch([name]))})


async def history(request: web.Request, ctx: ServerContext) -> web.Response:
    name = request.match_info["name"]
    return _json(await ctx.call(lambda app: [e.to_json_dict() for e in app.history(name)]))


async def alerts(request: web.Request, ctx: ServerContext) -> web.Response:
    show_all = _flag(request, "all")
    limit = _number(request, "limit", MAX_ALERTS_PAGE) or ALERTS_PAGE
    before = _number(request, "before", MAX_ALERT_ID)
    page = await ctx.call(lambda app: app.alert_page(show_all=show_all, limit=limit, before=before))
    response = _json([a.to_json_dict() for a in page.alerts])
    if page.more:
        query = {**({"all": "true"} if show_all else {}), "limit": str(limit)}
        following = request.rel_url.with_query({**query, "before": str(page.next_before)})
        response.headers["Link"] = f'<{following}>; rel="next"'
        response.headers["X-Alerts-More"] = str(page.more)
    return response


async def mutes(request: web.Request, ctx: ServerContext) -> web.Response:
    return _json(await ctx.call(lambda app: [m.to_json_dict() for m in app.mutes()]))


MUTE_KEYS = ("name", "rule", "duration", "comment")


async def mute(request: web.Request, ctx: ServerContext) -> web.Response:
    body = await _body(request, required=("name",), optional=MUTE_KEYS[1:])
    name = _text(body, "name")
    rule, duration, comment = (_optional_text(body, key) for key in MUTE_KEYS[1:])
    muted = await ctx.call(
        lambda app: app.mute(name, rule=rule, duration=duration, comment=comment, set_by="api")
    )
    return _json(muted.to_json_dict(), status=201)


async def unmute(request: web.Request, ctx: ServerContext) -> web.Response:
    name = request.match_info["name"]
    rule = request.query.get("rule")
    if rule is not None and not rule:
        raise ApiError(400, "rule: give a rule id, or leave rule out to remove every mute")
    return _json({"removed": await ctx.call(lambda app: app.unmute(name, rule))})


async def check(request: web.Request, ctx: ServerContext) -> web.Response:
    body = await _body(request, required=(), optional=("names",), empty=True)
    names = _names(body, "names", empty=True)
    polling = await ctx.call(lambda app: app.to_check(names))
    ctx.control.poll_now(polling if names else None)
    return _json({"polling": polling}, status=202)


async def openapi(request: web.Request, ctx: ServerContext) -> web.Response:
    return _json(_document())


@functools.cache
def _document() -> dict[str, Any]:
    from monitor import __version__
    from monitor.server.openapi import document

    return document(__version__)


# -- answers and errors -------------------------------------------------------------------


def _api(handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The route: the handler's answer, or its error as ``{"error": message}`` with the
    status the error means (:data:`ERROR_STATUS`)."""

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.Response:
        ctx = context(request)
        try:
            response = await handler(request, ctx)
        except ApiError as exc:
            response = _error(exc.status, str(exc))
        except MonitorError as exc:
            response = _monitor_error(exc)
        except sqlite3.Error as exc:
            response = _database_error(exc, ctx)
        if request.method not in ("GET", "HEAD") or response.status >= 500:
            fields = {"method": request.method, "path": request.path, "status": response.status}
            level = logging.WARNING if response.status >= 500 else logging.INFO
            log.log(level, "api", extra={"fields": fields})
        return response

    return answer


def _json(data: Any, *, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=functools.partial(json.dumps, default=str))


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status=status)


def _monitor_error(exc: MonitorError) -> web.Response:
    status = next((code for kind, code in ERROR_STATUS if isinstance(exc, kind)), 500)
    if status == 500:
        log.error("api: unexpected error", exc_info=exc)
    if isinstance(exc, PackageNotFound):
        return _error(status, str(exc), suggestions=exc.suggestions, hint=exc.hint)
    return _error(status, str(exc))


def _database_error(exc: sqlite3.Error, ctx: ServerContext) -> web.Response:
    from monitor.store import store_error

    error = store_error(exc, ctx.config.database)
    if error is None:
        raise exc  # not from outside the program: a bug, aiohttp's 500 and its traceback
    locked = str(getattr(exc, "sqlite_errorname", "")).startswith(LOCKED)
    return _error(409 if locked else 503, str(error))


# -- reading requests ---------------------------------------------------------------------


async def _body(
    request: web.Request,
    *,
    required: tuple[str, ...],
    optional: tuple[str, ...],
    empty: bool = False,
) -> dict[str, Any]:
    """The body, a JSON object of the ``required`` keys and any of the ``optional`` ones
    (no body at all is ``{}`` when ``empty`` allows it); anything else is a 400."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        from monitor.server import MAX_BODY

        raise ApiError(413, f"the body is over {MAX_BODY} bytes") from None
    if not raw.strip() and empty:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested beyond the stack
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object (keys: {_keys(required, optional)})")
    unknown = [key for key in body if key not in (*required, *optional)]
    if unknown:
        raise ApiError(400, f"unknown key {unknown[0]!r} (keys: {_keys(required, optional)})")
    missing = [key for key in required if key not in body]
    if missing:
        raise ApiError(400, f"{missing[0]!r} is required (keys: {_keys(required, optional)})")
    return body


def _keys(required: tuple[str, ...], optional: tuple[str, ...]) -> str:
    return ", ".join([*required, *(f"{key} (optional)" for key in optional)])


def _text(body: dict[str, Any], key: str) -> str:
    return _string(key, body[key], MAX_TEXT)


def _optional_text(body: dict[str, Any], key: str) -> str | None:
    return None if body.get(key) is None else _text(body, key)


def _names(body: dict[str, Any], key: str, *, empty: bool = False) -> list[str]:
    """A list of names (``[]`` when absent or null, if ``empty`` allows it)."""
    value = body.get(key)
    if value is None and empty:
        return []
    if not isinstance(value, list):
        raise ApiError(400, f"{key}: must be a list of strings, not {_type(value)}")
    if not value and not empty:
        raise ApiError(400, f"{key}: give at least one")
    if len(value) > MAX_NAMES:
        raise ApiError(400, f"{key}: at most {MAX_NAMES} in one request")
    return [_string(f"{key}[{i}]", item, MAX_NAME) for i, item in enumerate(value)]


def _string(key: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise ApiError(400, f"{key}: must be a string, not {_type(value)}")
    if not value:
        raise ApiError(400, f"{key}: must not be empty")
    if len(value) > limit:
        raise ApiError(400, f"{key}: longer than {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape ("\ud800"): no text to store
        raise ApiError(400, f"{key}: not valid Unicode text") from None
    return value


def _flag(request: web.Request, key: str) -> bool:
    value = request.query.get(key, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise ApiError(400, f"{key}: true or false, not {value!r}")
    return value in ("true", "1")


def _number(request: web.Request, key: str, high: int) -> int | None:
    """The query's ``key``, a whole number from 1 to ``high``; None when not given."""
    value = request.query.get(key)
    if value is None:
        return None
    if not re.fullmatch("[0-9]{1,19}", value) or not 1 <= int(value) <= high:
        raise ApiError(400, f"{key}: a whole number from 1 to {high}, not {value[:40]!r}")
    return int(value)


def _type(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
