"""A fake OSV API (api.osv.dev), served beside the fake djangopackages one:
``FakeUpstream(records, apis=[FakeOSV()])``.

What it serves, as the real one does (https://google.github.io/osv.dev/api/):

- ``POST /v1/querybatch``: ``{"queries": [{"package": {"name", "ecosystem"}, "version",
  "page_token"?}]}`` -> ``{"results": [...]}``, one result per query in order, each
  ``{"vulns": [{"id", "modified"}]}`` (``{}`` when none; a PyPI name matches in any PEP 503
  spelling, a version when ``affected[].versions`` lists it), with ``next_page_token`` when
  more than ``page_size`` remain. Over 1,000 queries: 400, as the real API answers.
- ``GET /v1/vulns/{id}``: the full record, or 404 ``{"code": 5, "message": "Bug not found."}``.

Withdrawn records are still listed by querybatch (``list_withdrawn``), so the source's own
filtering is what tests see. ``batch_requests``/``detail_requests`` count the requests,
``queries`` every query received, ``fail_batch(name, statuses)`` answers the next batch
requests holding that package with those statuses.
"""

from __future__ import annotations

import base64
import json
import re
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from aiohttp import web

MAX_QUERIES = 1000
MODIFIED = "2024-05-06T21:53:43.471919Z"
NOT_FOUND = {"code": 5, "message": "Bug not found."}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _later(modified: str, seconds: float = 1) -> str:
    when = datetime.fromisoformat(modified) + timedelta(seconds=seconds)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeOSV:
    def __init__(self, *, page_size: int | None = None, list_withdrawn: bool = True):
        self.vulns: dict[str, dict[str, Any]] = {}
        self.page_size = page_size  # vulns per query per page; None: one page
        self.list_withdrawn = list_withdrawn
        self.batch_requests = 0
        self.detail_requests = 0
        self.detail_ids: list[str] = []
        self.queries: list[dict[str, Any]] = []
        self._failing: dict[str, deque[int]] = {}

    # -- test controls -------------------------------------------------------------------

    def add_vuln(
        self,
        id: str,
        package: str,
        versions: Iterable[str],
        fixed: str | Iterable[str] | None,
        summary: str,
        aliases: Iterable[str] = (),
        modified: str = MODIFIED,
    ) -> dict[str, Any]:
        """A PyPI record like OSV's: ``versions`` affected, fixed in ``fixed`` (a version,
        several ranges' versions, or None: no fix yet)."""
        fixes = [fixed] if isinstance(fixed, str) else list(fixed or [None])
        ranges = []
        for fix in fixes:
            events: list[dict[str, str]] = [{"introduced": "0"}]
            if fix is not None:
                events.append({"fixed": fix})
            ranges.append({"type": "ECOSYSTEM", "events": events})
        aliases = list(aliases)
        record = {
            "schema_version": "1.6.0",
            "id": id,
            "modified": modified,
            "published": "2023-02-01T01:15:00Z",
            "aliases": aliases,
            "summary": summary,
            "details": f"{summary}\n\nUpgrade to a fixed version.",
            "severity": [
                {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}
            ],
            "affected": [
                {
                    "package": {
                        "ecosystem": "PyPI",
                        "name": package,
                        "purl": f"pkg:pypi/{_canonical(package)}",
                    },
                    "ranges": ranges,
                    "versions": list(versions),
                    "database_specific": {
                        "source": f"https://github.com/pypa/advisory-database/blob/main/vulns/{package}/{id}.yaml"
                    },
                }
            ],
            "references": [
                {"type": "ADVISORY", "url": f"https://nvd.nist.gov/vuln/detail/{alias}"}
                for alias in aliases
                if alias.startswith("CVE-")
            ],
        }
        self.vulns[id] = record
        return record

    def withdraw(self, id: str) -> None:
        record = self.vulns[id]
        record["modified"] = _later(record["modified"])
        record["withdrawn"] = record["modified"]

    def touch(self, id: str) -> None:
        """The record changed upstream: a later ``modified``."""
        record = self.vulns[id]
        record["modified"] = _later(record["modified"])

    def fail_batch(self, package: str, statuses: Iterable[int]) -> None:
        """The next batch requests that ask about ``package`` answer ``statuses``."""
        self._failing.setdefault(_canonical(package), deque()).extend(statuses)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/querybatch", self._querybatch)
        router.add_get("/v1/vulns/{id}", self._vuln)

    # -- serving -------------------------------------------------------------------------

    async def _querybatch(self, request: web.Request) -> web.Response:
        self.batch_requests += 1
        try:
            queries = (await request.json())["queries"]
        except (ValueError, KeyError, TypeError):
            return _error(400, 3, "Invalid query.")
        if len(queries) > MAX_QUERIES:
            return _error(400, 3, "Too many queries.")
        self.queries.extend(queries)
        for query in queries:
            name = _canonical(str(query.get("package", {}).get("name", "")))
            failing = self._failing.get(name)
            if failing:
                status = failing.popleft()
                return _error(status, 13, f"fault {status}")
        results = []
        for query in queries:
            result = self._result(query)
            if result is None:
                return _error(400, 3, "Invalid page token.")
            results.append(result)
        return web.json_response({"results": results})

    def _result(self, query: dict[str, Any]) -> dict[str, Any] | None:
        package = query.get("package") or {}
        name = _canonical(str(package.get("name", "")))
        version = query.get("version")
        matches = sorted(
            (vuln_id, record["modified"])
            for vuln_id, record in self.vulns.items()
            if (self.list_withdrawn or "withdrawn" not in record)
            and (name, version) in _affects(record, package.get("ecosystem"))
        )
        offset = 0
        if "page_token" in query:
            offset = _offset(query["page_token"], name, version)
            if offset is None:
                return None
        size = self.page_size or len(matches) or 1
        page = matches[offset : offset + size]
        result: dict[str, Any] = {}
        if page:
            result["vulns"] = [{"id": i, "modified": m} for i, m in page]
        if offset + size < len(matches):
            result["next_page_token"] = _token(name, version, offset + size)
        return result

    async def _vuln(self, request: web.Request) -> web.Response:
        self.detail_requests += 1
        vuln_id = request.match_info["id"]
        self.detail_ids.append(vuln_id)
        record = self.vulns.get(vuln_id)
        if record is None:
            return web.json_response(NOT_FOUND, status=404)
        return web.json_response(record)


def _affects(record: dict[str, Any], ecosystem: Any) -> set[tuple[str, Any]]:
    """The (name, version) pairs a record lists as affected in ``ecosystem`` (entries a test
    has broken on purpose are skipped: the record is still listed, its details served)."""
    pairs = set()
    for affected in record.get("affected") or []:
        package = affected.get("package") if isinstance(affected, dict) else None
        if isinstance(package, dict) and package.get("ecosystem") == ecosystem:
            name = _canonical(str(package.get("name")))
            pairs.update((name, version) for version in affected.get("versions") or [])
    return pairs


def _error(status: int, code: int, message: str) -> web.Response:
    return web.json_response({"code": code, "message": message}, status=status)


def _token(name: str, version: Any, offset: int) -> str:
    raw = json.dumps([name, version, offset]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _offset(token: Any, name: str, version: Any) -> int | None:
    try:
        token_name, token_version, offset = json.loads(base64.urlsafe_b64decode(token))
    except (ValueError, TypeError):
        return None
    if token_name != name or token_version != version or type(offset) is not int:
        return None
    return offset
