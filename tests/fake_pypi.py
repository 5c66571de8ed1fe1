"""A fake PyPI (JSON API and PEP 691 Simple API), served beside the fake djangopackages::

    pypi = FakePyPI()                       # the real responses in tests/fixtures/pypi
    async with FakeUpstream(apis=[pypi]) as up:
        pypi.yank("django", "4.0.2")
        pypi.status["wagtail"] = "quarantined"
        ...
        assert pypi.not_modified == 2

    GET /pypi/<name>/json     the project's JSON API body; 404 {"message": "Not Found"}
    GET /simple/<name>/       {"meta": {"api-version": "1.4"}, "name", "files": [],
                               "project-status": {"status"}} (that key only when a status is set)

Names are looked up PEP 503-normalised. Both answers carry an ``ETag`` (a hash of the body)
and answer 304 to a matching ``If-None-Match``; ``not_modified`` counts the 304s. The helpers
change a project in place (its body is a copy, never the fixture).
"""

from __future__ import annotations

import copy
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web
from packaging.utils import canonicalize_name

FIXTURES = Path(__file__).parent / "fixtures" / "pypi"
NOT_FOUND = {"message": "Not Found"}
SIMPLE_TYPE = "application/vnd.pypi.simple.v1+json"

_LOADED: dict[str, bytes] = {}


def load_pypi_fixtures() -> dict[str, dict[str, Any]]:
    """The real JSON API bodies: normalised name -> body (fresh copies)."""
    if not _LOADED:
        for path in sorted(FIXTURES.glob("*.json")):
            raw = path.read_bytes()
            _LOADED[canonicalize_name(orjson.loads(raw)["info"]["name"])] = raw
    return {name: orjson.loads(raw) for name, raw in _LOADED.items()}


class FakePyPI:
    """``projects``: normalised name -> JSON API body; ``status``: normalised name ->
    PEP 792 project status (absent: the Simple answer has no ``project-status``)."""

    def __init__(self, projects: dict[str, dict[str, Any]] | None = None):
        self.projects: dict[str, dict[str, Any]] = (
            load_pypi_fixtures() if projects is None else projects
        )
        self.status: dict[str, str] = {}
        self.not_modified = 0

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/pypi/{name}/json", self._json_api)
        router.add_get("/simple/{name}/", self._simple_api)

    # -- building variations -------------------------------------------------------------

    def project(self, name: str) -> dict[str, Any]:
        return self.projects[canonicalize_name(name)]

    def yank(self, name: str, version: str, reason: str = "broken") -> None:
        """Yank every file of ``version`` (and of ``urls`` when it is ``info.version``)."""
        body = self.project(name)
        files = body["releases"][version]
        if body["info"]["version"] == version:
            files = [*files, *body["urls"]]
            body["info"]["yanked"], body["info"]["yanked_reason"] = True, reason
        for file in files:
            file["yanked"], file["yanked_reason"] = True, reason

    def release(self, name: str, version: str, when: datetime) -> None:
        """Add ``version`` with one sdist uploaded ``when``, and make it ``info.version``."""
        body = self.project(name)
        stamp = when.astimezone(UTC)
        filename = f"{canonicalize_name(name)}-{version}.tar.gz"
        file = {
            "filename": filename,
            "packagetype": "sdist",
            "python_version": "source",
            "requires_python": body["info"].get("requires_python"),
            "size": 12345,
            "upload_time": stamp.strftime("%Y-%m-%dT%H:%M:%S"),
            "upload_time_iso_8601": stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "url": f"https://files.pythonhosted.org/packages/{filename}",
            "yanked": False,
            "yanked_reason": None,
            "digests": {"sha256": hashlib.sha256(filename.encode()).hexdigest()},
        }
        body["releases"][version] = [file]
        body["urls"] = [copy.deepcopy(file)]
        body["info"]["version"] = version

    def set_classifiers(self, name: str, classifiers: list[str]) -> None:
        self.project(name)["info"]["classifiers"] = list(classifiers)

    def clone(self, source_name: str, new_name: str) -> dict[str, Any]:
        """A copy of ``source_name``'s body served as ``new_name`` (``info.name`` too)."""
        body = copy.deepcopy(self.project(source_name))
        body["info"]["name"] = new_name
        self.projects[canonicalize_name(new_name)] = body
        return body

    # -- serving -------------------------------------------------------------------------

    async def _json_api(self, request: web.Request) -> web.Response:
        body = self.projects.get(canonicalize_name(request.match_info["name"]))
        if body is None:
            return web.json_response(NOT_FOUND, status=404)
        return self._answer(request, orjson.dumps(body), "application/json")

    async def _simple_api(self, request: web.Request) -> web.Response:
        name = canonicalize_name(request.match_info["name"])
        if name not in self.projects:
            return web.json_response(NOT_FOUND, status=404)
        page: dict[str, Any] = {"meta": {"api-version": "1.4"}, "name": name, "files": []}
        if name in self.status:
            page["project-status"] = {"status": self.status[name]}
        return self._answer(request, orjson.dumps(page), SIMPLE_TYPE)

    def _answer(self, request: web.Request, body: bytes, content_type: str) -> web.Response:
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        sent = request.headers.get("If-None-Match", "")
        if etag in (tag.strip().removeprefix("W/") for tag in sent.split(",")):
            self.not_modified += 1
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(body=body, headers={"ETag": etag, "Content-Type": content_type})
