"""The status pages (SPEC §10): ``GET /`` lists the watched packages most troubled first,
``GET /packages/NAME`` shows one.

Server-rendered with jinja2 (autoescaped), no JavaScript, inline CSS only, readable on a
390 px phone: the list is a table that becomes one card per package on narrow screens. A page
is built and rendered on a request worker thread (:meth:`ServerContext.call`), so 1,000
packages never hold up the event loop.

Everything from upstream (titles, summaries, versions, errors) is hostile: it is put on one
line without control or bidi characters (:func:`monitor.text.one_line`), clipped, and escaped
by the template; only ``http(s)`` URLs become links (:func:`monitor.notify.base.safe_url`).
The responses forbid scripts, frames, forms and any fetch (``Content-Security-Policy``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from aiohttp import web

from monitor.digest import sparkline, template_environment
from monitor.errors import NotWatchedError
from monitor.names import package_links
from monitor.notify.base import safe_url
from monitor.text import clip, one_line

if TYPE_CHECKING:
    from monitor.app import Alert, App, Mute, WatchRow
    from monitor.history import Entry
    from monitor.server import ServerContext

HISTORY_SHOWN = 50  # newest history entries on a package's page
ALERTS_SHOWN = 30  # newest alerts not firing on a package's page
TITLE_CHARS = 120  # of an upstream title on the list
VALUE_CHARS = 400  # of a field's value on a package's page
SEVERITIES = ("critical", "warning", "info")

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none';"
        " form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def add_routes(app: web.Application, ctx: ServerContext) -> None:
    async def index(request: web.Request) -> web.StreamResponse:
        html = await ctx.call(lambda a: render_index(a, _zone(ctx)))
        return _page(request, html)

    async def package(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        try:
            html = await ctx.call(lambda a: render_package(a, name, _zone(ctx)))
        except NotWatchedError:
            return _page(request, render_missing(name), status=404)
        return _page(request, html)

    app.router.add_get("/", index)
    app.router.add_get("/packages/{name}", package)


def _page(request: web.Request, html: str, *, status: int = 200) -> web.StreamResponse:
    response = web.Response(
        text=html, status=status, content_type="text/html", charset="utf-8", headers=HEADERS
    )
    response.enable_compression()  # when the browser accepts it: the list is repetitive
    return response


def _zone(ctx: ServerContext) -> ZoneInfo:
    return ZoneInfo(ctx.config.schedule.timezone)


def package_href(slug: str) -> str:
    """The package page's path; ``pypi:NAME`` and any other character quoted."""
    return "/packages/" + quote(slug, safe="")


# -- the list ------------------------------------------------------------------------------


def render_index(app: App, zone: ZoneInfo) -> str:
    """``/``: the watched packages most troubled first (firing by severity, then a failed
    last poll), by name within each."""
    now = app.clock()
    rows = sorted(app.watches(), key=lambda row: row.trouble)
    commits = app.commit_series()
    firing = {s: sum(row.firing.get(s, 0) for row in rows) for s in SEVERITIES}
    context = {
        "title": "monitor",
        "watched": len(rows),
        "firing": firing,
        "failing": sum(1 for row in rows if _failed(row)),
        "cycle": _cycle(app.last_cycle(), now, zone),
        "packages": [_row(row, commits.get(row.slug), now, zone) for row in rows],
    }
    return template_environment(html=True).get_template("page_index.html.j2").render(context)


def _row(row: WatchRow, commits: list[int] | None, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    title = clip(one_line(row.title), TITLE_CHARS) or row.slug
    return {
        "slug": one_line(row.slug),
        "href": package_href(row.slug),
        "title": title,
        "show_slug": title != row.slug,
        **_health(row),
        "version": clip(one_line(row.latest), 60) or None,
        "pinned": clip(one_line(row.pinned), 60) or None,
        "stars": _count(row.repo_watchers),
        **_spark(commits),
        "polled": _moment(row.last_checked, now, zone),
        "status": one_line(row.last_status) or None,
    }


def _health(row: WatchRow) -> dict[str, Any]:
    firing = {s: row.firing.get(s, 0) for s in SEVERITIES if row.firing.get(s, 0)}
    return {
        "firing": firing,
        "severity": next(iter(firing), None),
        "failed": _failed(row),
        "muted": "all" if row.muted else ", ".join(one_line(r) for r in row.muted_rules),
    }


def _failed(row: WatchRow) -> bool:
    return row.last_status in ("failed", "not_found")


def _spark(commits: list[int] | None) -> dict[str, Any]:
    return {
        "spark": sparkline(commits),  # the digest's: one block character a week
        "commits": sum(commits) if commits else 0,
    }


def _cycle(cycle: dict[str, Any] | None, now: datetime, zone: ZoneInfo) -> dict[str, Any] | None:
    if cycle is None:
        return None
    counts = {one_line(str(k)): v for k, v in cycle.items() if k != "at"}
    return {"when": _moment(cycle["at"], now, zone), "counts": counts}


# -- one package ---------------------------------------------------------------------------


def render_package(app: App, name: str, zone: ZoneInfo) -> str:
    """``/packages/NAME``; NotWatchedError when NAME is not watched."""
    now = app.clock()
    row = app.watch_row(name)
    sources = app.package_sources(name)
    alerts = app.package_alerts(name, limit=ALERTS_SHOWN)
    mutes = [m for m in app.mutes() if m.package == name]
    entries = app.history(name)
    values: dict[str, Any] = {}
    for part in sources:
        values.update(part["values"])
    firing = [a for a in alerts if a.status == "firing"]
    context = {
        "title": f"{clip(one_line(row.title), TITLE_CHARS) or row.slug} · monitor",
        "package": {
            **_row(row, _ints(values.get("commits_over_52")), now, zone),
            "forks": _count(row.repo_forks),
            "error": clip(one_line(app.last_error(name)), VALUE_CHARS) or None,
            "interval": one_line(row.interval) or None,
            "notify": [one_line(n) for n in row.notify],
            "links": _links(app.config.djangopackages.url, row.slug, values),
        },
        "firing": [_alert(a, now, zone) for a in firing],
        "recent": [_alert(a, now, zone) for a in alerts if a.status != "firing"],
        "alerts_shown": ALERTS_SHOWN,
        "mutes": [_mute(m, now, zone) for m in mutes],
        "sources": [_source(part, now, zone) for part in sources],
        "history": [_entry(e, now, zone) for e in reversed(entries[-HISTORY_SHOWN:])],
        "history_total": len(entries),
        "history_shown": HISTORY_SHOWN,
    }
    return template_environment(html=True).get_template("page_package.html.j2").render(context)


def _links(base_url: str, slug: str, values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, URL) of the package's pages elsewhere, http(s) only."""
    found = package_links(base_url.rstrip("/"), slug, values)
    candidates = [
        ("djangopackages", found["djangopackages"]),
        ("repository", found["repo"]),
        ("PyPI", found["pypi"]),
        ("documentation", values.get("documentation_url")),
    ]
    return [(label, url) for label, raw in candidates if (url := safe_url(raw))]


def render_missing(name: str) -> str:
    context = {"title": "not watched · monitor", "name": clip(one_line(name), TITLE_CHARS)}
    return template_environment(html=True).get_template("page_missing.html.j2").render(context)


def _alert(alert: Alert, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "rule": one_line(alert.rule),
        "kind": alert.kind,
        "status": one_line(alert.status),
        "severity": alert.severity if alert.severity in SEVERITIES else "info",
        "summary": clip(one_line(alert.summary), VALUE_CHARS),
        "started": _moment(alert.started_at, now, zone),
        "resolved": _moment(alert.resolved_at, now, zone),
        "muted": alert.muted,
    }


def _mute(mute: Mute, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    return {
        "rule": one_line(mute.rule) or None,
        "until": _moment(mute.until, now, zone),
        "set_by": one_line(mute.set_by) or None,
        "comment": clip(one_line(mute.comment), VALUE_CHARS) or None,
        "created": _moment(mute.created_at, now, zone),
    }


def _source(part: Mapping[str, Any], now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    from monitor.fields import known as known_fields
    from monitor.sources import title

    order = {name: index for index, name in enumerate(known_fields())}
    fields = []
    for name, value in sorted(part["values"].items(), key=lambda kv: order.get(kv[0], 1 << 30)):
        commits = _ints(value) if name == "commits_over_52" else None
        fields.append({"name": one_line(name), "value": _value(value), **_spark(commits)})
    return {
        "name": part["source"],
        "title": title(part["source"]),
        "key": one_line(part["key"]) or None,
        "failures": part["failures"],
        "last_error": clip(one_line(part["last_error"]), VALUE_CHARS) or None,
        "deferred": _moment(part["deferred_until"], now, zone),
        "fields": fields,
    }


def _entry(entry: Entry, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    from monitor.diff import describe_change

    return {
        "when": _moment(entry.time, now, zone),
        "baseline": entry.baseline,
        "sources": [one_line(s) for s in entry.sources],
        "changes": [one_line(describe_change(c.to_json_dict())) for c in entry.changes],
    }


def _value(value: Any) -> str:
    """A field's JSON value for people, on one line."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        text = ", ".join(map(str, value)) if value else "(none)"
    elif isinstance(value, dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    return clip(one_line(text), VALUE_CHARS)


def _ints(value: Any) -> list[int] | None:
    if not isinstance(value, list):
        return None
    return [n for n in value if isinstance(n, int) and not isinstance(n, bool)] or None


# -- shared --------------------------------------------------------------------------------


def _moment(text: str | None, now: datetime, zone: ZoneInfo) -> dict[str, str] | None:
    """A stored time for people: ``{"at": "2026-11-22 10:00 UTC", "ago": "3 h ago",
    "iso": ...}``; None when there is none (or it is not a time)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    local = moment.astimezone(zone)
    name = local.tzname() or ""
    if not name or name[0] in "+-":
        name = "UTC" + local.strftime("%z").removesuffix("00")
    return {
        "at": f"{local:%Y-%m-%d %H:%M} {name}",
        "ago": _ago(now - moment),
        "iso": moment.astimezone(UTC).isoformat(timespec="seconds"),
    }


def _ago(delta: Any) -> str:
    seconds = delta.total_seconds()
    if seconds <= -60:  # a time to come (a mute's end)
        return "in " + _ago(-delta).removesuffix(" ago")
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return "just now"


def _count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"
