"""A fake GitHub REST API (``GET /repos/{owner}/{repo}``), served by :class:`FakeUpstream`
beside the fake djangopackages::

    github = FakeGitHub()                          # the two real bodies of tests/fixtures/github
    async with FakeUpstream(apis=[github]) as up:  # GitHub's base URL is up.url
        github.archive("django/deps")
        github.renamed["pydanny/dj-paginator"] = "pydanny/paginator"   # after clone(...)
        github.remaining = 0                       # the next answer is a 403, rate limited
        up.fail("/repos/django/deps", [500])       # faults queued by path, as for the others

It answers as GitHub does: an ``ETag`` (weak, a hash of the body) and a 304 to a matching
``If-None-Match``; a 301 with ``Location`` for a renamed repository; GitHub's own 404 body
for an unknown one; rate-limit headers on every answer, from a budget (``remaining``,
``limit``, ``reset_at`` in Unix seconds) that each answer spends, except a 304 to a request
with a token; with the budget spent, a 403 with ``x-ratelimit-remaining: 0`` and GitHub's
message. ``authorization`` records each request's ``Authorization`` header (or None).
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

FIXTURES = Path(__file__).parent / "fixtures" / "github"
NOT_FOUND = json.loads(
    (FIXTURES / "djangopackages__does-not-exist.404.json").read_text(encoding="utf-8")
)
RATE_LIMITED = {
    "message": (
        "API rate limit exceeded for 127.0.0.1. (But here's the good news: Authenticated"
        " requests get a higher rate limit. Check out the documentation for more details.)"
    ),
    "documentation_url": (
        "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"
    ),
}


def load_repos() -> dict[str, dict[str, Any]]:
    """The real 200 bodies in ``tests/fixtures/github``: full name -> body (fresh copies)."""
    repos = {}
    for path in sorted(FIXTURES.glob("*.json")):
        if path.name.endswith(".404.json"):
            continue
        body = json.loads(path.read_text(encoding="utf-8"))
        repos[body["full_name"]] = body
    return repos


def etag_of(body: Any) -> str:
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return f'W/"{digest[:40]}"'


class FakeGitHub:
    """``repos``: ``"owner/repo"`` (looked up case-insensitively) -> body; ``renamed``: old
    full name -> new full name."""

    def __init__(
        self,
        repos: dict[str, dict[str, Any]] | None = None,
        *,
        limit: int = 5000,
        remaining: int | None = None,
        reset_at: int | None = None,
    ):
        self.repos: dict[str, dict[str, Any]] = load_repos() if repos is None else repos
        self.renamed: dict[str, str] = {}
        self.limit = limit
        self.remaining = limit if remaining is None else remaining
        self.reset_at = int(time.time()) + 3600 if reset_at is None else reset_at
        self.authorization: list[str | None] = []
        self.served: list[int] = []  # the status of each answer

    # -- test controls -----------------------------------------------------------------------

    def archive(self, full_name: str, archived: bool = True) -> None:
        self._find(full_name)["archived"] = archived

    def clone(self, src: str, new_full_name: str) -> dict[str, Any]:
        """A copy of ``src``'s body as the repository ``new_full_name`` (added, returned)."""
        body = copy.deepcopy(self._find(src))
        owner, name = new_full_name.split("/")
        body.update(
            full_name=new_full_name,
            name=name,
            html_url=f"https://github.com/{new_full_name}",
            url=f"https://api.github.com/repos/{new_full_name}",
        )
        body["owner"] = {**body["owner"], "login": owner}
        self.repos[new_full_name] = body
        return body

    def _find(self, full_name: str) -> dict[str, Any]:
        body = self._lookup(self.repos, full_name)
        if body is None:
            raise KeyError(full_name)
        return body

    @staticmethod
    def _lookup(table: dict[str, Any], full_name: str) -> Any:
        wanted = full_name.lower()
        for name, value in list(table.items()):
            if name.lower() == wanted:
                return value
        return None

    # -- serving -------------------------------------------------------------------------------

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/repos/{owner}/{repo}", self._repo)

    def _rate_headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-reset": str(self.reset_at),
            "x-ratelimit-used": str(self.limit - self.remaining),
            "x-ratelimit-resource": "core",
        }

    def _answer(
        self, status: int, body: Any = None, *, free: bool = False, **headers: str
    ) -> web.Response:
        if not free:
            self.remaining = max(self.remaining - 1, 0)
        self.served.append(status)
        all_headers = {**self._rate_headers(), **headers}
        if body is None:
            return web.Response(status=status, headers=all_headers)
        return web.json_response(body, status=status, headers=all_headers)

    async def _repo(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization")
        self.authorization.append(token)
        if self.remaining <= 0:
            return self._answer(403, RATE_LIMITED)
        full_name = f"{request.match_info['owner']}/{request.match_info['repo']}"
        new_name = self._lookup(self.renamed, full_name)
        if new_name is not None:
            location = str(request.url.with_path(f"/repos/{new_name}").with_query(None))
            return self._answer(301, {"message": "Moved Permanently"}, Location=location)
        body = self._lookup(self.repos, full_name)
        if body is None:
            return self._answer(404, NOT_FOUND)
        etag = etag_of(body)
        if etag in _etags(request.headers.get("If-None-Match")):
            return self._answer(304, free=token is not None, ETag=etag)
        return self._answer(200, body, ETag=etag)


def _etags(value: str | None) -> set[str]:
    return {tag.strip() for tag in (value or "").split(",") if tag.strip()}
