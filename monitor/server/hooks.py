"""GitHub's webhooks (SPEC §10 "GitHub events"): ``POST /hooks/github``.

Served only with ``[http] github_secret`` (else 404). A delivery is verified before anything
else: its ``X-Hub-Signature-256`` must be ``sha256=`` and the hex HMAC-SHA256 of the raw body
under the secret (compared in constant time), else 401 and nothing happens. Then, by
``X-GitHub-Event``:

- ``ping`` (GitHub sends it when the webhook is made): 200;
- ``release``, ``push``, and ``repository`` when archived, unarchived, renamed, transferred
  or deleted: the watched packages whose GitHub repository it is are polled now, in a cycle
  of their own (:meth:`monitor.scheduler.Daemon.poll_now`), and their alerts go out as any
  cycle's: 202 ``{"polling": [names]}``, the list empty for a repository nobody watches;
- any other event or action: 202, ignored.

A watch matches by the repository's full name (``OWNER/REPO``, case-insensitive) against the
key its GitHub part was last polled under, and after a rename or a transfer by the name
before it too (the watch still has that one until its next poll). GitHub's repository ``id``
is not stored, so nothing matches by id. The body is JSON, or a form whose ``payload`` field
is (GitHub's two content types); either way the signature covers the raw body. GitHub signs
no timestamp: a replayed delivery can only poll again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from aiohttp import web

from monitor.server import context

if TYPE_CHECKING:
    from monitor.server import ServerContext

log = logging.getLogger("monitor")

POLLING_EVENTS = frozenset({"release", "push", "repository"})
REPOSITORY_ACTIONS = frozenset({"archived", "unarchived", "renamed", "transferred", "deleted"})


class BadEvent(Exception):
    """A signed delivery whose body is not a GitHub event: 400."""


def add_routes(app: web.Application, ctx: ServerContext) -> None:
    if ctx.http is not None and ctx.http.github_secret:
        app.router.add_post("/hooks/github", github)


async def github(request: web.Request) -> web.Response:
    ctx = context(request)
    assert ctx.http is not None and ctx.http.github_secret
    body = await request.read()  # capped by the server (MAX_BODY: 413)
    delivery = request.headers.get("X-GitHub-Delivery", "")[:100]
    if not signed(body, request.headers.get("X-Hub-Signature-256", ""), ctx.http.github_secret):
        refused = {"delivery": delivery, "reason": "missing or wrong X-Hub-Signature-256"}
        log.warning("github event refused", extra={"fields": refused})
        return web.json_response({"error": "missing or wrong X-Hub-Signature-256"}, status=401)
    event = request.headers.get("X-GitHub-Event", "")[:100]
    try:
        payload = parse(body, request.content_type)
        names = repositories(event, payload)
    except BadEvent as exc:
        return web.json_response({"error": str(exc)}, status=400)
    if event == "ping":
        return web.json_response({"ok": True})
    if names is None:
        return web.json_response({"ignored": event}, status=202)
    slugs = await ctx.call(lambda app: app.watching_repositories(names))
    if slugs:
        ctx.control.poll_now(slugs)
    fields: dict[str, Any] = {
        "delivery": delivery,
        "github_event": event,
        "action": payload.get("action"),
        "repository": names[0],
        "polling": slugs,
    }
    log.info("github event", extra={"fields": fields})
    return web.json_response({"polling": slugs}, status=202)


def signed(body: bytes, signature: str, secret: str) -> bool:
    """Whether ``signature`` is GitHub's ``sha256=HEX`` of ``body`` under ``secret``."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().encode())


def parse(body: bytes, content_type: str) -> dict[str, Any]:
    """The event: the JSON body, or the ``payload`` field of a form."""
    try:
        text = body.decode("utf-8")
        if content_type == "application/x-www-form-urlencoded":
            text = parse_qs(text).get("payload", [""])[0]
        payload = json.loads(text)
    except ValueError:
        raise BadEvent("the body is not a JSON event") from None
    if not isinstance(payload, dict):
        raise BadEvent("the body is not a JSON event")
    return payload


def repositories(event: str, payload: dict[str, Any]) -> list[str] | None:
    """The full names (``OWNER/REPO``) a polling event is about, the current one first and,
    after a rename or a transfer, the one before; None for an event that polls nothing."""
    if event not in POLLING_EVENTS:
        return None
    action = payload.get("action")
    if event == "repository" and action not in REPOSITORY_ACTIONS:
        return None
    full_name = _text(payload, "repository", "full_name")
    if full_name is None or full_name.count("/") != 1:
        raise BadEvent(f"a {event} event names no repository")
    owner, name = full_name.split("/")
    names = [full_name]
    if action == "renamed":
        old = _text(payload, "changes", "repository", "name", "from")
        if old:
            names.append(f"{owner}/{old}")
    elif action == "transferred":
        old = _text(payload, "changes", "owner", "from", "user", "login") or _text(
            payload, "changes", "owner", "from", "organization", "login"
        )
        if old:
            names.append(f"{old}/{name}")
    return names


def _text(payload: Any, *path: str) -> str | None:
    for key in path:
        if not isinstance(payload, dict):
            return None
        payload = payload.get(key)
    return payload if isinstance(payload, str) and payload else None
