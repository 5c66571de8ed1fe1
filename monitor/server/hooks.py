"""(SPEC §10) — being built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from monitor.server import ServerContext


def add_routes(app: web.Application, ctx: ServerContext) -> None:
    """Nothing yet."""
