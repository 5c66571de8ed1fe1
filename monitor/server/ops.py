"""Operators' routes (SPEC §10): ``GET /healthz`` and ``GET /metrics``.

``/healthz`` needs no token (load balancers and container health checks call it) and says
nothing but the status: 200 when the scheduler ticked within two tick lengths and the
database answers, else 503.

``/metrics`` is Prometheus' text format (:mod:`monitor.metrics`), behind the token like the
pages. Its text is made on a worker thread: the gauges read the database when scraped.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web

from monitor.server import context

if TYPE_CHECKING:
    from monitor.app import App
    from monitor.server import ServerContext

log = logging.getLogger("monitor")


def add_routes(app: web.Application, ctx: ServerContext) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)


async def healthz(request: web.Request) -> web.Response:
    ctx = context(request)
    healthy, why = ctx.control.health()
    if healthy:
        try:
            await ctx.call(_database_answers)
        except Exception as exc:
            healthy, why = False, f"database: {type(exc).__name__}"
    if not healthy:
        log.warning("unhealthy", extra={"fields": {"reason": why}})
        return web.Response(status=503, text="unavailable\n")
    return web.Response(text="ok\n")


def _database_answers(app: App) -> None:
    app.store.watch_count()


async def metrics(request: web.Request) -> web.Response:
    from monitor.metrics import CONTENT_TYPE

    ctx = context(request)
    body = await ctx.call(ctx.control.metrics.render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
