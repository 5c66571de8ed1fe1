"""The webhook notifier: ``POST`` JSON (SPEC §7), signed per Standard Webhooks when a secret is set.

The body is fixed when the group is rendered (``payload["body"]``, a JSON string), so every
retry sends the same bytes with the same ``webhook-id`` (the group id); only
``webhook-timestamp`` and so ``webhook-signature`` belong to the attempt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor import USER_AGENT
from monitor.alerts import Notice
from monitor.errors import DeliveryError, PermanentError
from monitor.notify.base import (
    Notifier,
    SettingError,
    check_http_url,
    connection_error,
    http_error,
    ordered,
    utc_z,
)
from monitor.text import clip

if TYPE_CHECKING:
    import aiohttp

SECRET_PREFIX = "whsec_"
RECEIVER_TEXT_BYTES = 1024  # what is read of an error answer

# A body is at most this many bytes: the alerts that do not fit are left out, counted in
# ``data["truncated"]``. Within an alert a text is cut to MAX_TEXT characters with "…", a
# string in a change value to MAX_VALUE_TEXT, and a list value to its first MAX_ITEMS items
# (strings in it to MAX_ITEM_TEXT), the change's ``counts`` then giving the full length of each
# list that was cut. Together these keep one alert far below MAX_BODY.
MAX_BODY = 256 * 1024
MAX_TEXT = 2000
MAX_VALUE_TEXT = 500
MAX_ITEMS = 20
MAX_ITEM_TEXT = 100
_ENVELOPE_ROOM = 512  # type, timestamp, "truncated": N


def envelope(event_type: str, created_at: datetime, data: dict[str, Any]) -> str:
    """The JSON body: ``{"type", "timestamp", "data"}``."""
    return json.dumps(
        {"type": event_type, "timestamp": utc_z(created_at), "data": data},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def bounded_value(value: Any, text: int = MAX_VALUE_TEXT) -> Any:
    """A change value fit for the body: strings cut, lists cut to their first items (and
    what they hold cut shorter)."""
    if isinstance(value, str):
        return clip(value, text)
    if isinstance(value, list):
        return [bounded_value(item, MAX_ITEM_TEXT) for item in value[:MAX_ITEMS]]
    if isinstance(value, dict):
        return {clip(str(k), text): bounded_value(v, text) for k, v in value.items()}
    return value


def bounded_change(change: dict[str, Any]) -> dict[str, Any]:
    """``{"field", "old", "new", ("added", "removed")}`` with its values bounded, and
    ``"counts": {"old": 100000, ...}`` naming the full length of every list that was cut."""
    out = {key: bounded_value(value) for key, value in change.items()}
    counts = {
        key: len(value)
        for key, value in change.items()
        if isinstance(value, list) and len(value) > MAX_ITEMS
    }
    if counts:
        out["counts"] = counts
    return out


def bounded_alert(notice: Notice) -> dict[str, Any]:
    """One ``alerts[]`` item of SPEC §7 with every text cut to MAX_TEXT characters; a link too
    long to be one becomes null."""
    alert = notice.to_json_dict()
    for key in ("rule", "description", "package", "title", "summary"):
        alert[key] = clip(alert[key], MAX_TEXT)
    alert["changes"] = [bounded_change(change) for change in alert["changes"]]
    alert["labels"] = {clip(k, MAX_TEXT): clip(v, MAX_TEXT) for k, v in alert["labels"].items()}
    alert["links"] = {
        key: url if url is None or len(url) <= MAX_TEXT else None
        for key, url in alert["links"].items()
    }
    return alert


def fit_alerts(notices: list[Notice]) -> dict[str, Any]:
    """``{"alerts": [...]}`` with as many alerts (most severe first) as fit in MAX_BODY, and
    ``"truncated": N`` when N were left out."""
    alerts: list[dict[str, Any]] = []
    size = _ENVELOPE_ROOM
    for notice in notices:
        alert = bounded_alert(notice)
        size += len(json.dumps(alert, ensure_ascii=False).encode()) + 1
        if size > MAX_BODY:
            break
        alerts.append(alert)
    data: dict[str, Any] = {"alerts": alerts}
    if len(alerts) < len(notices):
        data["truncated"] = len(notices) - len(alerts)
    return data


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (the prefix is optional)."""
    raw = secret.strip()
    if raw.startswith(SECRET_PREFIX):
        raw = raw[len(SECRET_PREFIX) :]
    key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    if not key:
        raise ValueError("empty secret")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: str) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class WebhookNotifier(Notifier):
    """Settings: ``url`` (required), ``secret`` (optional, ``whsec_<base64>``).

    Payload: ``{"body": "<the JSON document as a string>"}``.
    Extra constructor options: ``session`` (an ``aiohttp.ClientSession`` to use and not
    close) and ``wall_clock`` (Unix seconds for ``webhook-timestamp``; default ``time.time``).
    """

    type = "webhook"
    KEYS = frozenset({"url", "secret"})

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        *,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        wall_clock: Callable[[], float] = time.time,
    ):
        super().__init__(name, settings, timeout=timeout)
        if "url" not in settings:
            raise SettingError("url", f"{name}: missing required key 'url'")
        self._url = check_http_url(name, "url", settings["url"])
        self._add_secret(self._url)
        self._key: bytes | None = None
        secret = settings.get("secret")
        if secret is not None and secret != "":
            if not isinstance(secret, str):
                raise SettingError("secret", f"{name}: 'secret' must be a string")
            self._add_secret(secret)
            self._add_secret(secret.strip().removeprefix(SECRET_PREFIX))
            try:
                self._key = decode_secret(secret)
            except (binascii.Error, ValueError):
                raise SettingError(
                    "secret", f"{name}: 'secret' must be 'whsec_' followed by base64"
                ) from None
        self._session = session
        self._own_session: aiohttp.ClientSession | None = None
        self._wall_clock = wall_clock

    # -- rendering ----------------------------------------------------------------------

    def render_alerts(
        self, notices: list[Notice], *, group_id: str, created_at: datetime
    ) -> dict[str, Any]:
        return {"body": envelope("package.alerts", created_at, fit_alerts(ordered(notices)))}

    def render_digest(
        self,
        *,
        subject: str,
        text: str,
        html: str,
        data: dict[str, Any],
        group_id: str,
        created_at: datetime,
    ) -> dict[str, Any]:
        return {"body": envelope("package.digest", created_at, data)}

    def render_test(self, *, group_id: str, created_at: datetime) -> dict[str, Any]:
        data = {"channel": self.name, "message": "monitor can reach this channel"}
        return {"body": envelope("package.test", created_at, data)}

    # -- sending ------------------------------------------------------------------------

    def headers(self, body: str, *, group_id: str) -> dict[str, str]:
        """The request headers of one attempt (signed when a secret is set)."""
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT}
        if self._key is not None:
            timestamp = int(self._wall_clock())
            headers["webhook-id"] = group_id
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = sign(self._key, group_id, timestamp, body)
        return headers

    async def send(self, payload: dict[str, Any], *, group_id: str) -> None:
        try:
            await self._post(payload["body"], group_id=group_id)
        except DeliveryError as error:
            raise self._redacted(error) from None

    async def _post(self, body: str, *, group_id: str) -> None:
        import aiohttp

        session = self._get_session()
        try:
            async with session.post(
                self._url,
                data=body.encode("utf-8"),
                headers=self.headers(body, group_id=group_id),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                text = ""
                if not 200 <= response.status < 300:
                    raw = await response.content.read(RECEIVER_TEXT_BYTES)
                    text = self.receiver_text(raw, cut=len(raw) == RECEIVER_TEXT_BYTES)
                error = http_error(
                    response.status, response.headers, text, channel=self.name, service="webhook"
                )
        except aiohttp.InvalidURL:
            raise PermanentError(f"{self.name}: the webhook URL is not valid") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise connection_error(exc, channel=self.name, service="webhook") from None
        if error is not None:
            raise error

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is not None:
            return self._session
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": USER_AGENT},
            )
        return self._own_session

    async def aclose(self) -> None:
        if self._own_session is not None and not self._own_session.closed:
            await self._own_session.close()
        self._own_session = None
