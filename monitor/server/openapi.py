"""The JSON API's OpenAPI 3.1 document (SPEC §10), served at ``GET /api/openapi.json``.

It is the API's contract: :mod:`monitor.server.api` validates request bodies by the same
limits, and ``tests/test_api.py`` runs generated cases from it against a real ``monitor run``
(schemathesis), so a route or a shape that drifts from it fails there. Response shapes are
those of ``--json`` (SPEC §4); their objects allow no other keys, so a field added to a
``--json`` shape must be added here too.
"""

from __future__ import annotations

from typing import Any

MAX_NAMES = 100  # names in one request body
MAX_NAME = 300  # characters of one of them
MAX_TEXT = 1000  # characters of one string in a request body
ALERTS_PAGE = 200  # alerts in one answer of GET /api/alerts, unless ?limit= says
MAX_ALERTS_PAGE = 1000  # the most ?limit= may ask for
MAX_ALERT_ID = 2**63 - 1  # SQLite's largest integer

NAME_PATTERN = r"^\S+$"  # a watch name: a slug or pypi:NAME (what else is checked: 400)


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "type": [schema["type"], "null"]}


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    """An object of exactly these properties (all required unless ``required`` says)."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


TEXT = {"type": "string"}
OPTIONAL_TEXT = _nullable(TEXT)
COUNT = {"type": "integer", "minimum": 0}
OPTIONAL_COUNT = _nullable(COUNT)
GIVEN_TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
GIVEN_NAMES = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": MAX_NAME},
    "minItems": 1,
    "maxItems": MAX_NAMES,
}

SCHEMAS: dict[str, Any] = {
    "WatchRow": _object(
        {
            "slug": TEXT,
            "title": OPTIONAL_TEXT,
            "pypi_version": OPTIONAL_TEXT,
            "repo_watchers": OPTIONAL_COUNT,
            "repo_forks": OPTIONAL_COUNT,
            "last_checked": OPTIONAL_TEXT,
            "last_status": OPTIONAL_TEXT,
            "notify": _array(TEXT),
            "interval": OPTIONAL_TEXT,
            "pinned": OPTIONAL_TEXT,
            "sources": {"type": "object", "additionalProperties": OPTIONAL_TEXT},
            "origin": OPTIONAL_TEXT,
            "firing": _object({"critical": COUNT, "warning": COUNT, "info": COUNT}),
            "muted": {"type": "boolean", "description": "every rule of the package is muted"},
            "muted_rules": _array(TEXT),
        }
    ),
    "Change": _object(
        {
            "field": TEXT,
            "old": {"description": "the field's JSON value before (any type)"},
            "new": {"description": "the field's JSON value after (any type)"},
            "added": _array({}),
            "removed": _array({}),
        },
        required=["field", "old", "new"],
    ),
    "HistoryEntry": _object(
        {
            "time": TEXT,
            "changes": _array(_ref("Change")),
            "snapshot": {
                "type": "object",
                "description": "the package's values at the watch's first entry (its baseline)",
            },
        },
        required=["time", "changes"],
    ),
    "Delivery": _object(
        {
            "channel": TEXT,
            "transition": TEXT,
            "status": TEXT,
            "attempts": COUNT,
            "last_error": OPTIONAL_TEXT,
        }
    ),
    "Alert": _object(
        {
            "rule": TEXT,
            "package": TEXT,
            "kind": {"type": "string", "enum": ["change", "condition"]},
            "status": TEXT,
            "severity": {"type": "string", "enum": ["critical", "warning", "info"]},
            "started_at": TEXT,
            "resolved_at": OPTIONAL_TEXT,
            "summary": TEXT,
            "muted": {"type": "boolean"},
            "deliveries": _array(_ref("Delivery")),
        }
    ),
    "Mute": _object(
        {
            "package": TEXT,
            "rule": {**OPTIONAL_TEXT, "description": "null: every rule"},
            "until": {**OPTIONAL_TEXT, "description": "null: until unmuted"},
            "comment": OPTIONAL_TEXT,
            "created_at": TEXT,
            "set_by": OPTIONAL_TEXT,
        }
    ),
    "Error": {
        "type": "object",
        "properties": {
            "error": TEXT,
            "suggestions": _array(TEXT),
            "hint": OPTIONAL_TEXT,
        },
        "required": ["error"],
    },
    "WatchRequest": _object(
        {
            "names": {
                **GIVEN_NAMES,
                "description": "slugs or pypi:NAME, each may be NAME==VERSION",
            },
            "pin": {**_nullable(GIVEN_TEXT), "description": "the version you run (one name)"},
            "notify": {
                **_nullable({**GIVEN_NAMES, "minItems": 0}),
                "description": "channels to alert; null or []: each watch keeps its own",
            },
            "interval": {**_nullable(GIVEN_TEXT), "description": "e.g. 1h or 1d"},
        },
        required=["names"],
    ),
    "WatchOutcome": _object(
        {
            "lines": {**_array(TEXT), "description": "what watch prints, a line per package"},
            "added": {**_array(TEXT), "description": "the names newly watched"},
            "transitions": {**COUNT, "description": "alerts raised (sent in the background)"},
        }
    ),
    "Unwatched": _object({"unwatched": _array(TEXT)}),
    "MuteRequest": _object(
        {
            "name": GIVEN_TEXT,
            "rule": {**_nullable(GIVEN_TEXT), "description": "default: every rule"},
            "duration": {**_nullable(GIVEN_TEXT), "description": "e.g. 2w; default: forever"},
            "comment": _nullable(GIVEN_TEXT),
        },
        required=["name"],
    ),
    "Unmuted": _object({"removed": {**COUNT, "description": "how many mutes were removed"}}),
    "CheckRequest": _object(
        {
            "names": {
                **_nullable({**GIVEN_NAMES, "minItems": 0}),
                "description": "null, [] or left out: every package",
            }
        },
        required=[],
    ),
    "CheckAccepted": _object({"polling": {**_array(TEXT), "description": "polled soon"}}),
}

_ERRORS = {
    400: "The request is wrong (a bad body, an unknown rule or channel, a bad duration).",
    401: "The token is missing or wrong.",
    404: "The package is not watched (or, for a new watch, found nowhere).",
    409: "The database is busy with another write; try again.",
    413: "The body is over 1 MiB.",
    502: "An upstream source failed while fetching the new packages.",
}


def _ok(status: int, what: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {str(status): {"description": what, "content": {"application/json": {"schema": schema}}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """The error answers (401 always): ``{"error": message}``."""
    return {
        str(status): {
            "description": _ERRORS[status],
            "content": {"application/json": {"schema": _ref("Error")}},
        }
        for status in sorted({401, *statuses})
    }


def _body(name: str, example: dict[str, Any], *, required: bool = True) -> dict[str, Any]:
    return {
        "required": required,
        "content": {"application/json": {"schema": _ref(name), "example": example}},
    }


def _name(example: str) -> dict[str, Any]:
    """The ``{name}`` in a path."""
    return {
        "name": "name",
        "in": "path",
        "required": True,
        "description": "a slug, or pypi:NAME (pypi%3ANAME)",
        "schema": {"type": "string", "minLength": 1, "pattern": NAME_PATTERN},
        "example": example,
    }


PATHS: dict[str, Any] = {
    "/api/watches": {
        "get": {
            "operationId": "listWatches",
            "summary": "The watched packages (monitor list --json).",
            "responses": {
                **_ok(200, "The watches by name.", _array(_ref("WatchRow"))),
                **_errors(),
            },
        },
        "post": {
            "operationId": "watch",
            "summary": "Watch packages, or change the options of watched ones (monitor watch).",
            "description": "New packages are fetched and baselined before the answer (201);"
            " already watched ones only get the options given (200). Alerts raised are"
            " delivered in the background. Nothing is stored when a name is unknown (404,"
            " with suggestions).",
            "requestBody": _body("WatchRequest", {"names": ["django-mfa"], "interval": "1d"}),
            "responses": {
                **_ok(201, "Something was newly watched.", _ref("WatchOutcome")),
                **_ok(200, "Nothing new: only options changed.", _ref("WatchOutcome")),
                **_errors(400, 404, 409, 413, 502),
            },
        },
    },
    "/api/watches/{name}": {
        "delete": {
            "operationId": "unwatch",
            "summary": "Stop watching a package; its history is kept (monitor unwatch).",
            "parameters": [_name("django-mfa")],
            "responses": {**_ok(200, "Unwatched.", _ref("Unwatched")), **_errors(404, 409)},
        },
    },
    "/api/watches/{name}/history": {
        "get": {
            "operationId": "history",
            "summary": "How a package changed, oldest first (monitor history --json).",
            "parameters": [_name("django-otp")],
            "responses": {
                **_ok(200, "Its history.", _array(_ref("HistoryEntry"))),
                **_errors(404),
            },
        },
    },
    "/api/alerts": {
        "get": {
            "operationId": "alerts",
            "summary": "Alerts, newest first, a page at a time (monitor alerts --json).",
            "description": 'When more alerts follow the page, the Link header (rel="next")'
            " gives the URL of the next page and X-Alerts-More how many follow.",
            "parameters": [
                {
                    "name": "all",
                    "in": "query",
                    "required": False,
                    "description": "every alert ever raised (--all)",
                    "schema": {"type": "boolean", "default": False},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "at most this many alerts (--limit)",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_ALERTS_PAGE,
                        "default": ALERTS_PAGE,
                    },
                },
                {
                    "name": "before",
                    "in": "query",
                    "required": False,
                    "description": "those after the alert with this id, from the Link header"
                    " (--before)",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ALERT_ID},
                },
            ],
            "responses": {
                "200": {
                    "description": "The alerts.",
                    "headers": {
                        "Link": {
                            "description": 'the next page: <URL>; rel="next"',
                            "schema": {"type": "string"},
                        },
                        "X-Alerts-More": {
                            "description": "how many alerts follow this page",
                            "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                        },
                    },
                    "content": {"application/json": {"schema": _array(_ref("Alert"))}},
                },
                **_errors(400),
            },
        },
    },
    "/api/mutes": {
        "get": {
            "operationId": "mutes",
            "summary": "Active mutes (monitor mutes --json).",
            "responses": {**_ok(200, "The mutes.", _array(_ref("Mute"))), **_errors()},
        },
        "post": {
            "operationId": "mute",
            "summary": "Stop delivering a package's alerts, of one rule or all (monitor mute).",
            "requestBody": _body(
                "MuteRequest",
                {
                    "name": "django-otp",
                    "rule": "poll-failing",
                    "duration": "7d",
                    "comment": "moved",
                },
            ),
            "responses": {**_ok(201, "Muted.", _ref("Mute")), **_errors(400, 404, 409, 413)},
        },
    },
    "/api/mutes/{name}": {
        "delete": {
            "operationId": "unmute",
            "summary": "Deliver a package's alerts again (monitor unmute).",
            "parameters": [
                _name("django-otp"),
                {
                    "name": "rule",
                    "in": "query",
                    "required": False,
                    "description": "remove only this rule's mute",
                    "schema": {"type": "string", "minLength": 1},
                    "example": "poll-failing",
                },
            ],
            "responses": {**_ok(200, "Unmuted.", _ref("Unmuted")), **_errors(400, 404, 409)},
        },
    },
    "/api/check": {
        "post": {
            "operationId": "check",
            "summary": "Poll watched packages now, in the background (monitor check).",
            "requestBody": _body("CheckRequest", {"names": ["django-otp"]}, required=False),
            "responses": {
                **_ok(202, "Polling soon.", _ref("CheckAccepted")),
                **_errors(400, 413),
            },
        },
    },
    "/api/openapi.json": {
        "get": {
            "operationId": "openapi",
            "summary": "This document.",
            "responses": {**_ok(200, "The OpenAPI document.", {"type": "object"}), **_errors()},
        },
    },
}


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document of the API of monitor ``version``."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "monitor",
            "version": version,
            "description": "The JSON API of monitor run (SPEC §10): the shapes of --json;"
            ' errors are {"error": message}.',
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "[http] token"},
                "basic": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "any user name, [http] token as the password",
                },
            },
        },
    }
