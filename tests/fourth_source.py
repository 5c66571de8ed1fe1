"""A fourth source, written the way a contributor adds one (issue 11): this module plus a
registry line (``SOURCES["downloads"] = Registered(...)``), nothing else in ``monitor/``.

``DownloadsSource`` reads a pypistats.org-style API (``GET /api/packages/NAME/recent`` ->
``{"data": {"last_month": N, ...}}``) with an API key from its own ``[sources.downloads]``
table; it gives ``downloads.last_month``. ``FakeDownloads`` serves that API beside the fake
djangopackages.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiohttp import web

from monitor.sources import Context, Due, FieldKind, Part, PartStatus, Registered
from monitor.sources.http import FetchError, JsonClient
from monitor.sources.pypi import project_name

REGISTERED = Registered(
    "tests.fourth_source:DownloadsSource",
    "pypistats",
    "https://pypistats.org",
    options={"api_key": str},
    secrets=frozenset({"api_key"}),
)


class DownloadsSource:
    name = "downloads"
    fields: Mapping[str, FieldKind] = {"downloads.last_month": FieldKind.INT}

    @classmethod
    def from_config(cls, settings: Any, context: Context) -> DownloadsSource:
        settings.check_environment()
        return cls(
            settings.url, settings.options.get("api_key"), **context.client_options(settings)
        )

    def __init__(self, base_url: str, api_key: str | None, **client: Any):
        self.base_url = base_url
        self.api_key = api_key
        self._http = JsonClient(**client)

    @property
    def requests_sent(self) -> int:
        return self._http.requests_sent

    def key(self, watch: str, values: Mapping[str, Any]) -> str | None:
        return project_name(values.get("pypi_url"))

    async def poll(
        self, due: Sequence[Due], on_part: Callable[[Part], None] | None = None
    ) -> list[Part]:
        async def one(item: Due) -> Part:
            part = await self._poll_one(item)
            if on_part is not None:
                on_part(part)
            return part

        return list(await asyncio.gather(*(one(item) for item in due)))

    async def _poll_one(self, due: Due) -> Part:
        headers = {"X-Api-Key": self.api_key} if self.api_key else {}
        url = f"{self.base_url}/api/packages/{due.key}/recent"
        try:
            fetched = await self._http.get_json(
                url, subject=f"{due.watch} (pypistats)", headers=headers
            )
        except FetchError as exc:
            return Part(due.watch, self.name, PartStatus.FAILED, error=str(exc))
        count = (fetched.data or {}).get("data", {}).get("last_month")
        if type(count) is not int or count < 0:
            error = f"{due.watch} (pypistats): last_month is not a count"
            return Part(due.watch, self.name, PartStatus.FAILED, error=error)
        return Part(due.watch, self.name, PartStatus.OK, values={"downloads.last_month": count})


class FakeDownloads:
    """``downloads``: project name -> last month's downloads (absent: 404). Every request
    must carry ``X-Api-Key: key``, else 403."""

    def __init__(self, key: str):
        self.key = key
        self.downloads: dict[str, int] = {}
        self.requests = 0

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/packages/{name}/recent", self._recent)

    async def _recent(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("X-Api-Key") != self.key:
            return web.json_response({"message": "Forbidden"}, status=403)
        name = request.match_info["name"]
        if name not in self.downloads:
            return web.json_response({"message": "Not Found"}, status=404)
        data = {"last_day": 10, "last_month": self.downloads[name], "last_week": 70}
        return web.json_response({"data": data, "package": name, "type": "recent_downloads"})
