"""A fake djangopackages API v4 on 127.0.0.1, port 0, for tests and benchmarks.

It serves package records (the real fixtures by default) the way the real API does::

    GET /api/v4/packages/<slug or id>/       one record; 404 {"detail": "Not found."}
    GET /api/v4/packages/?limit=N&offset=M   {count, next, previous, results}, newest id first
    GET /api/v4/grids/<slug or id>/          a grid; "packages" lists absolute member URLs
    GET /api/v4/search/?q=TEXT               up to 20 {item_type, slug, title}

Faults are queued per slug or per path and served before normal behaviour::

    async with FakeUpstream() as up:                 # from async tests
        up.fail("django-otp", [500, 500])            # two 500s, then the record
        up.fail("/api/v4/packages/?offset=200", [Fault.disconnect()])
        up.records["django-otp"]["repo_watchers"] = "many"
        ...
        assert up.requests["/api/v4/packages/django-otp/"] == 3

    with FakeUpstream.in_thread() as up:             # from sync tests that call asyncio.run
        ...

Records, grids, faults and ``down`` may be changed from any thread while it runs. For
"connection refused", stop it (``await up.stop()``, or ``up.stop_serving()`` when it runs in
a thread) and start it again on the same port; or use :func:`unused_url`.
"""

from __future__ import annotations

import asyncio
import copy
import difflib
import json
import re
import socket
import threading
from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from yarl import URL

FIXTURES = Path(__file__).parent / "fixtures" / "djangopackages"
NOT_FOUND = {"detail": "Not found."}
DEFAULT_LIMIT = 20
SEARCH_LIMIT = 20


def load_fixtures() -> dict[str, dict[str, Any]]:
    """The real records in ``tests/fixtures/djangopackages``: slug -> record (fresh copies)."""
    records = {}
    for path in sorted(FIXTURES.glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        records[record["slug"]] = record
    return records


def clone_records(n: int, *, first_id: int = 1) -> dict[str, dict[str, Any]]:
    """``n`` records cloned from the fixtures in turn, slugs ``<fixture slug>-<i>``, ids from
    ``first_id`` up (so the highest index is the newest and comes first on the list endpoint)."""
    templates = list(load_fixtures().values())
    records = {}
    for i in range(n):
        record = copy.deepcopy(templates[i % len(templates)])
        record["slug"] = f"{record['slug']}-{i}"
        record["title"] = f"{record['title']} {i}"
        record["id"] = first_id + i
        records[record["slug"]] = record
    return records


def unused_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@dataclass(frozen=True)
class Fault:
    """One response served instead of normal behaviour.

    ``status`` with ``body`` (default: a JSON error for status >= 400); ``delay`` seconds first;
    ``passthrough`` serves the normal response after the delay; ``disconnect`` drops the
    connection without answering; ``size`` sends a JSON body of that many bytes (``chunked``:
    without a Content-Length, so only reading the stream shows the size).
    """

    status: int = 500
    body: bytes | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0
    passthrough: bool = False
    disconnect: bool = False
    size: int | None = None
    chunked: bool = False

    @classmethod
    def error(cls, status: int) -> Fault:
        return cls(status=status)

    @classmethod
    def rate_limited(cls, retry_after: str | float | None = None) -> Fault:
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after}"}
        return cls(status=429, headers=headers)

    @classmethod
    def slow(cls, delay: float) -> Fault:
        """Wait ``delay`` seconds, then answer normally."""
        return cls(delay=delay, passthrough=True)

    @classmethod
    def malformed(cls) -> Fault:
        return cls(status=200, body='{"slug": "broken", "title": ')

    @classmethod
    def json(cls, data: Any, status: int = 200) -> Fault:
        return cls(status=status, body=json.dumps(data))

    @classmethod
    def oversized(cls, size: int = 6 * 1024 * 1024, *, chunked: bool = False) -> Fault:
        return cls(status=200, size=size, chunked=chunked)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering (the client sees a disconnect)."""
        return cls(disconnect=True)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class FakeUpstream:
    """The fake server. ``records``: slug -> record; ``grids``: slug -> ``{"id", "title",
    "members"}`` with members as slugs (or ints: ids, which need not exist)."""

    def __init__(
        self,
        records: Mapping[str, dict[str, Any]] | Iterable[dict[str, Any]] | None = None,
        *,
        grids: Mapping[str, dict[str, Any]] | None = None,
        port: int = 0,
        apis: Iterable[Any] = (),
    ):
        if records is None:
            records = load_fixtures()
        if isinstance(records, Mapping):
            self.records: dict[str, dict[str, Any]] = dict(records)
        else:
            self.records = {r["slug"]: r for r in records}
        self.grids: dict[str, dict[str, Any]] = dict(grids or {})
        # More fake APIs served beside djangopackages' (PyPI, GitHub, OSV): each has
        # add_routes(router); faults queued by path apply to them too.
        self.apis = list(apis)
        self.port = port
        self.url = ""
        # Base of the absolute URLs the server writes (grid members, next/previous); the
        # server's own URL unless a test points it elsewhere (e.g. https://djangopackages.org).
        self.public_url: str | None = None
        # When true, every request is dropped without an answer (aiohttp resends an idempotent
        # request once after a dropped connection, so each client attempt counts twice).
        self.down = False
        self.requests: Counter[str] = Counter()
        self.log: list[LoggedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._faults: dict[str, deque[Fault]] = {}
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set when serving from a thread

    @classmethod
    def with_clones(cls, n: int, **kwargs: Any) -> FakeUpstream:
        return cls(clone_records(n), **kwargs)

    # -- test controls -------------------------------------------------------------------

    def fail(self, key: str, faults: Iterable[Fault | int]) -> None:
        """Queue ``faults`` (a Fault, or an int status) for requests matching ``key``: a slug
        or id (that package's own URL), or a path starting with ``/`` (optionally with query
        parameters that must match, e.g. ``/api/v4/packages/?offset=200``)."""
        queue = self._faults.setdefault(key, deque())
        queue.extend(f if isinstance(f, Fault) else Fault(status=f) for f in faults)

    def add_grid(
        self, slug: str, members: Iterable[str | int], *, id: int, title: str | None = None
    ) -> None:
        self.grids[slug] = {"id": id, "title": title or slug, "members": list(members)}

    def reset(self) -> None:
        """Forget request counts, the log and queued faults."""
        self.requests.clear()
        self.log.clear()
        self._faults.clear()
        self.max_in_flight = self.in_flight

    @property
    def page_requests(self) -> int:
        return self.requests["/api/v4/packages/"]

    @property
    def package_requests(self) -> int:
        """Requests for single packages (by slug or id)."""
        return sum(
            n
            for path, n in self.requests.items()
            if path.startswith("/api/v4/packages/") and path != "/api/v4/packages/"
        )

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Serve on ``self.port`` (0: any free port, remembered, so a restart reuses it)."""
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/api/v4/packages/", self._packages)
        app.router.add_get("/api/v4/packages/{key}/", self._package)
        app.router.add_get("/api/v4/grids/{key}/", self._grid)
        app.router.add_get("/api/v4/search/", self._search)
        for api in self.apis:
            api.add_routes(app.router)
        self._runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        server = site._server
        assert isinstance(server, asyncio.Server)
        self.port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @contextmanager
    def run_in_thread(self) -> Iterator[Self]:
        """Serve from a background thread with its own event loop."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fakeupstream", daemon=True)
        thread.start()
        self._loop = loop
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout=10)
            yield self
        finally:
            with suppress(Exception):
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = None

    def stop_serving(self) -> None:
        """From a sync test while serving from a thread: stop (connection refused)."""
        assert self._loop is not None, "use `await up.stop()` on the test's own loop"
        asyncio.run_coroutine_threadsafe(self.stop(), self._loop).result(timeout=10)

    def start_serving(self) -> None:
        """From a sync test while serving from a thread: serve again on the same port."""
        assert self._loop is not None, "use `await up.start()` on the test's own loop"
        asyncio.run_coroutine_threadsafe(self.start(), self._loop).result(timeout=10)

    @classmethod
    @contextmanager
    def in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[FakeUpstream]:
        """``with FakeUpstream.in_thread(records=...) as up:`` — construct and serve."""
        with cls(*args, **kwargs).run_in_thread() as up:
            yield up

    # -- serving -------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests[request.path] += 1
        self.log.append(
            LoggedRequest(request.method, request.path, dict(request.query), dict(request.headers))
        )
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.down:
                return self._drop(request)
            fault = self._next_fault(request)
            if fault is None:
                return await handler(request)
            return await self._serve_fault(request, fault, handler)
        finally:
            self.in_flight -= 1

    def _next_fault(self, request: web.Request) -> Fault | None:
        for key, queue in list(self._faults.items()):
            if queue and self._matches(key, request):
                with suppress(IndexError):
                    return queue.popleft()
        return None

    def _matches(self, key: str, request: web.Request) -> bool:
        if key.startswith("/"):
            wanted = URL(key)
            return wanted.path == request.path and all(
                request.query.get(name) == value for name, value in wanted.query.items()
            )
        match = re.fullmatch(r"/api/v4/packages/([^/]+)/", request.path)
        if not match:
            return False
        record = self._find(match.group(1))
        names = {match.group(1)}
        if record is not None:
            names |= {str(record.get("slug")), str(record.get("id"))}
        return key in names

    async def _serve_fault(
        self, request: web.Request, fault: Fault, handler: Any
    ) -> web.StreamResponse:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.disconnect:
            return self._drop(request)
        if fault.passthrough:
            return await handler(request)
        if fault.size is not None:
            return await self._oversized(request, fault)
        body = fault.body
        if body is None:
            detail = "Not found." if fault.status == 404 else f"fault {fault.status}"
            body = json.dumps({"detail": detail}) if fault.status >= 400 else ""
        return web.Response(
            status=fault.status,
            body=body.encode() if isinstance(body, str) else body,
            headers={"Content-Type": "application/json", **fault.headers},
        )

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        raise asyncio.CancelledError

    @staticmethod
    async def _oversized(request: web.Request, fault: Fault) -> web.StreamResponse:
        assert fault.size is not None
        response = web.StreamResponse(status=fault.status)
        response.content_type = "application/json"
        if fault.chunked:
            response.enable_chunked_encoding()
        else:
            response.content_length = fault.size
        await response.prepare(request)
        chunk = b" " * 65536
        sent = 0
        try:
            while sent < fault.size:
                piece = chunk[: fault.size - sent]
                await response.write(piece)
                sent += len(piece)
            await response.write_eof()
        except ConnectionError:
            pass  # the client gave up, as it should
        return response

    def _base(self) -> str:
        return self.public_url or self.url

    def _find(self, key: str) -> dict[str, Any] | None:
        if key.isdigit():
            wanted = int(key)
            for record in list(self.records.values()):
                if record.get("id") == wanted:
                    return record
            return None
        return self.records.get(key)

    async def _package(self, request: web.Request) -> web.Response:
        record = self._find(request.match_info["key"])
        if record is None:
            return web.json_response(NOT_FOUND, status=404)
        return web.json_response(record)

    async def _packages(self, request: web.Request) -> web.Response:
        limit = _int(request.query.get("limit"), DEFAULT_LIMIT)
        offset = _int(request.query.get("offset"), 0)
        records = sorted(self.records.values(), key=lambda r: r.get("id") or 0, reverse=True)
        count = len(records)
        page = f"{self._base()}/api/v4/packages/?limit={limit}&offset="
        return web.json_response(
            {
                "count": count,
                "next": f"{page}{offset + limit}" if offset + limit < count else None,
                "previous": f"{page}{max(offset - limit, 0)}" if offset > 0 else None,
                "results": records[offset : offset + limit],
            }
        )

    async def _grid(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        found = None
        for slug, grid in list(self.grids.items()):
            if slug == key or (key.isdigit() and grid.get("id") == int(key)):
                found = slug, grid
                break
        if found is None:
            return web.json_response(NOT_FOUND, status=404)
        slug, grid = found
        urls = []
        for member in grid["members"]:
            ident = member if isinstance(member, int) else (self._find(member) or {}).get("id")
            if ident is not None:
                urls.append(f"{self._base()}/api/v4/packages/{ident}/")
        return web.json_response(
            {
                "id": grid["id"],
                "title": grid.get("title", slug),
                "slug": slug,
                "description": grid.get("description", ""),
                "is_locked": False,
                "header": False,
                "packages": urls,
            }
        )

    async def _search(self, request: web.Request) -> web.Response:
        q = request.query.get("q", "").strip().lower()
        parts = [p for p in re.split(r"[^a-z0-9]+", q) if len(p) >= 4]
        records = list(self.records.values())
        slugs = [r["slug"] for r in records]
        ranked = difflib.get_close_matches(q, slugs, n=SEARCH_LIMIT, cutoff=0.6) if q else []
        for record in records:
            text = f"{record['slug']} {record.get('title') or ''}".lower()
            if any(p in text for p in parts) and record["slug"] not in ranked:
                ranked.append(record["slug"])
        items = [
            {"item_type": "package", "slug": s, "title": self.records[s].get("title") or s}
            for s in ranked
            if s in self.records
        ]
        for slug, grid in list(self.grids.items()):
            text = f"{slug} {grid.get('title') or ''}".lower()
            if any(p in text for p in parts):
                items.append({"item_type": "grid", "slug": slug, "title": grid.get("title")})
        return web.json_response(items[:SEARCH_LIMIT])


def _int(value: str | None, default: int) -> int:
    try:
        return max(int(value), 0) if value is not None else default
    except ValueError:
        return default
