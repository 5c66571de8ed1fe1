"""What every notifier is, and the one place that turns a transport outcome into retry or stop.

A notifier renders a group of notices for its channel ONCE into a JSON-able payload (stored in
the outbox, so every retry sends the same bytes) and later sends that payload. ``send`` raises
:class:`~monitor.errors.RetryableError` or :class:`~monitor.errors.PermanentError`; the outbox
decides what to do about it (STYLE 4). The mapping from HTTP statuses, SMTP reply codes, Slack
error codes and network failures to those two errors lives here and nowhere else.

Secrets (Slack tokens, webhook URLs, SMTP passwords, webhook secrets) never appear in an error
message, a ``repr`` or a log line: errors are built from the channel name and what happened,
then passed through :meth:`Notifier.redact` as a second line of defence.

This module imports no aiohttp, slack-sdk or jinja2 (``monitor --help`` must stay fast).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from monitor.alerts import Notice, Severity, Status
from monitor.diff import describe_change
from monitor.errors import DeliveryError, PermanentError, RetryableError
from monitor.retry import retry_after
from monitor.text import clip, one_line, printable

# Retry-After is honoured up to this many seconds (SPEC §7: "up to 5 min").
MAX_RETRY_AFTER = 300.0

# Slack `ok: false` error codes worth another try (SPEC §7); every other one is permanent.
RETRYABLE_SLACK_ERRORS = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable"}
)

# Keys every notifier table may carry; the pipeline (not the notifier) uses them.
COMMON_KEYS = frozenset({"type", "min_severity", "digest", "timeout"})

_EXCERPT = 200

# What a secret becomes in any text that came back from a receiver.
REDACTED = "[redacted]"
# Shorter strings are never taken as secrets (cutting "ab" out of every error says nothing).
MIN_SECRET = 4
# A URL path segment that reads as a route (``hooks``, ``services``, ``api-v``) is not secret.
_ROUTE_WORD = re.compile(r"[a-z]{1,16}(?:[-_.][a-z]{1,16})*")


class SettingError(ValueError):
    """A notifier setting is missing or wrong; ``key`` names it (config.py adds file:line)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(message)


class Notifier:
    """Base class: one configured channel (``name``) of one notifier ``type``.

    ``settings`` is the channel's config table with ``${VAR}`` already expanded. Subclasses
    validate it in ``__init__`` (raising :class:`SettingError`, a ``ValueError`` naming the
    key) and list their own keys in ``KEYS``.
    """

    type: ClassVar[str]
    KEYS: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, name: str, settings: Mapping[str, Any], *, timeout: float = 30.0):
        self.name = name
        self.timeout = float(timeout)
        unknown = sorted(set(settings) - self.KEYS - COMMON_KEYS)
        if unknown:
            raise SettingError(
                unknown[0],
                f"{name}: unknown key {unknown[0]!r} for a {self.type} notifier "
                f"(expected: {', '.join(sorted(self.KEYS))})",
            )
        self._secret_values: list[str] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    # -- rendering: the fixed body of one group -------------------------------------------

    def render_alerts(
        self, notices: list[Notice], *, group_id: str, created_at: datetime
    ) -> dict[str, Any]:
        raise NotImplementedError

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
        raise NotImplementedError

    def render_test(self, *, group_id: str, created_at: datetime) -> dict[str, Any]:
        raise NotImplementedError

    # -- sending ------------------------------------------------------------------------

    async def send(self, payload: dict[str, Any], *, group_id: str) -> None:
        raise NotImplementedError

    async def already_sent(self, group_id: str, *, since: datetime) -> bool:
        """Whether the channel already holds this group's message, sent since ``since`` by an
        attempt whose outcome was never recorded; ``False`` when the channel cannot tell (the
        group is then sent again: at-least-once). May raise :class:`RetryableError`."""
        return False

    async def aclose(self) -> None:
        return None

    # -- secrets ------------------------------------------------------------------------

    def _add_secret(self, value: str | None) -> None:
        """Remember a secret so :meth:`redact` can cut it out of any text; a URL's secret
        parts (see :func:`url_secrets`) are remembered one by one too."""
        if not value:
            return
        candidates = [value]
        if "://" in value:
            candidates.extend(url_secrets(value))
        for candidate in candidates:
            for form in {candidate, unquote(candidate), quote(candidate, safe="")}:
                if len(form) >= MIN_SECRET and form not in self._secret_values:
                    self._secret_values.append(form)
        self._secret_values.sort(key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by ``[redacted]``."""
        for secret in self._secret_values:
            text = text.replace(secret, REDACTED)
        return text

    def receiver_text(self, raw: str | bytes | None, *, cut: bool = False) -> str:
        """What a receiver said (an error page, an SMTP reply, a Slack error code), fit to
        store and show: secrets redacted first, then cut to one short line (cutting first
        could split a secret where redaction no longer recognises it). ``cut``: ``raw`` is
        the start of a longer answer, so a secret's start at its end is redacted too."""
        if not raw:
            return ""
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        text = self.redact(raw)
        if cut:
            text = self._redact_cut_end(text)
        return excerpt(text)

    def _redact_cut_end(self, text: str) -> str:
        for secret in self._secret_values:
            for size in range(len(secret) - 1, MIN_SECRET - 2, -1):
                if text.endswith(secret[:size]):
                    return text[:-size] + REDACTED
        return text

    def _redacted(self, error: DeliveryError) -> DeliveryError:
        """The same error with every known secret cut out of its message."""
        message = self.redact(str(error))
        if isinstance(error, RetryableError):
            return RetryableError(message, retry_after=error.retry_after)
        return type(error)(message)


# -- the one mapping from transport outcomes to retry or stop ----------------------------


def http_error(
    status: int,
    headers: Mapping[str, str] | None = None,
    body_excerpt: str = "",
    *,
    channel: str,
    service: str,
    now: datetime | None = None,
) -> RetryableError | PermanentError | None:
    """Classify an HTTP answer: ``None`` for 2xx, else the error to raise.

    5xx, 429 and 408 are worth retrying (429/503 honour ``Retry-After``, capped at 5 min);
    any other status is permanent.
    """
    if 200 <= status < 300:
        return None
    message = f"{channel}: HTTP {status} from {service}"
    detail = excerpt(body_excerpt)
    if detail:
        message += f": {detail}"
    if status in (408, 429) or status >= 500:
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(header(headers, "Retry-After"), now=now)
        return RetryableError(message, retry_after=retry_after)
    return PermanentError(message)


def slack_error(
    code: str | None,
    *,
    status: int | None,
    headers: Mapping[str, str] | None = None,
    channel: str,
    now: datetime | None = None,
) -> RetryableError | PermanentError:
    """Classify a Slack Web API failure (``ok: false`` with ``error`` = ``code``)."""
    if code in RETRYABLE_SLACK_ERRORS:
        retry_after = parse_retry_after(header(headers, "Retry-After"), now=now)
        return RetryableError(f"{channel}: Slack answered {code}", retry_after=retry_after)
    if status is not None and (not code or status in (408, 429) or status >= 500):
        error = http_error(status, headers, code or "", channel=channel, service="Slack", now=now)
        if error is not None:
            return error
    if code:
        return PermanentError(f"{channel}: Slack answered {code}")
    return PermanentError(f"{channel}: unexpected answer from Slack (HTTP {status})")


def smtp_error(code: int | None, message: str, *, channel: str) -> RetryableError | PermanentError:
    """SMTP 4xx is worth retrying, 5xx is not; a reply without a code is a broken connection."""
    text = f"{channel}: SMTP {code} from the mail server" if code else f"{channel}: SMTP error"
    detail = excerpt(message)
    if detail:
        text += f": {detail}"
    if code is not None and 500 <= code < 600:
        return PermanentError(text)
    return RetryableError(text)


def connection_error(exc: BaseException, *, channel: str, service: str) -> RetryableError:
    """A timeout, refused or reset connection, DNS or TLS failure: always worth retrying.

    The message names only the kind of failure, never the exception text (which may hold the
    URL, and a webhook URL is a secret).
    """
    return RetryableError(f"{channel}: cannot reach {service}: {describe_network_error(exc)}")


def describe_network_error(exc: BaseException) -> str:
    """What went wrong on the wire, in a few words (never the exception's own text)."""
    import ssl

    if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
        return "timed out"
    os_error = getattr(exc, "os_error", None)  # aiohttp's ClientConnectorError wraps one
    error = os_error if isinstance(os_error, OSError) else exc
    if isinstance(error, ssl.SSLError) or "SSL" in type(exc).__name__:
        return "TLS handshake failed"
    if isinstance(error, socket.gaierror):
        return "cannot resolve the host name"
    if isinstance(error, OSError) and error.errno and error.errno > 0:
        return os.strerror(error.errno).lower()
    if isinstance(error, ConnectionError) or "Disconnect" in type(exc).__name__:
        return "connection lost"
    return type(exc).__name__


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP-date), between 0 and 5 min."""
    return retry_after(value, cap=MAX_RETRY_AFTER, now=now)


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """Case-insensitive header lookup on any mapping."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    for key, item in headers.items():
        if key.lower() == lowered:
            return item
    return None


def excerpt(text: str | bytes | None, limit: int = _EXCERPT) -> str:
    """One clean line of at most ``limit`` characters."""
    if not text:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return clip(one_line(text), limit)


# -- small helpers the notifiers share -----------------------------------------------------


def safe_url(url: Any) -> str | None:
    """An ``http(s)`` URL to link to, or ``None`` (no ``javascript:`` from upstream data)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    if printable(url) != url or " " in url:
        return None
    return url


def url_secrets(url: str) -> list[str]:
    """The parts of a configured URL that may be secret, each on its own, since a receiver
    may echo any one of them: the path with its query, the user and password, every query
    value, and every path segment that is not a plain route word (``/hooks/T0K3N``: the
    token, not ``hooks``)."""
    parts = urlsplit(url)
    found = [parts.path + (f"?{parts.query}" if parts.query else ""), parts.query]
    found += [parts.username or "", parts.password or ""]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    found += [segment for segment in parts.path.split("/") if not _ROUTE_WORD.fullmatch(segment)]
    return [part for part in found if len(part) >= MIN_SECRET and part != "/"]


def check_http_url(name: str, key: str, value: Any) -> str:
    """Validate a URL setting without ever echoing it (it may carry a secret)."""
    if not isinstance(value, str) or not value.strip():
        raise SettingError(key, f"{name}: {key!r} must be a non-empty string")
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingError(key, f"{name}: {key!r} must be an http:// or https:// URL")
    return value.strip()


def status_word(notice: Notice) -> str:
    """``FIRING``, ``FIRING (repeat)`` or ``RESOLVED``."""
    if notice.status == Status.RESOLVED:
        return "RESOLVED"
    return "FIRING (repeat)" if notice.repeat else "FIRING"


def format_change(change: Mapping[str, Any], limit: int = 80) -> str:
    """:func:`monitor.diff.describe_change` on one line (upstream text may hold anything)."""
    return one_line(describe_change(change, limit))


def utc_z(value: datetime) -> str:
    """An aware datetime as ``2026-11-22T10:00:00Z`` (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# -- what every message says, and in which order (SPEC §7) ----------------------------------

_SEVERITIES = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)


def ordered(notices: Iterable[Notice]) -> list[Notice]:
    """A message's alerts most severe first (critical, warning, info), then firing before
    resolved, then by package (and rule). Every channel lists its alerts in this order."""
    return sorted(
        notices,
        key=lambda n: (-n.severity.rank, n.status == Status.RESOLVED, n.package, n.rule),
    )


def severity_counts(notices: list[Notice]) -> str:
    """``2 critical, 3 warning, 1 resolved``: what every message starts with.

    Firing alerts (repeats included) are counted by severity; resolved ones, good news
    whatever their severity, are counted on their own.
    """
    firing = [n for n in notices if n.status != Status.RESOLVED]
    parts = []
    for severity in _SEVERITIES:
        count = sum(1 for n in firing if n.severity == severity)
        if count:
            parts.append(f"{count} {severity}")
    if len(notices) > len(firing):
        parts.append(f"{len(notices) - len(firing)} resolved")
    return ", ".join(parts) or "no alerts"


def said_once(notice: Notice) -> tuple[str, str]:
    """``(description, summary)`` on one line each, each thing said once: the description is
    left out when the summary already contains it, the summary when it only repeats the
    title or the description."""
    description, summary = one_line(notice.description), one_line(notice.summary)
    title = one_line(notice.title) or one_line(notice.package)
    if summary in (title, description):
        summary = ""
    if description and description.casefold() in summary.casefold():
        description = ""
    return description, summary


def changes_not_said(notice: Notice) -> list[Mapping[str, Any]]:
    """The notice's changes, less those its summary already tells: a change whose old and new
    values (as a change line shows them) both stand in the summary is not listed again."""
    summary = one_line(notice.summary)
    return [
        change
        for change in notice.changes
        if not all(_shown(change.get(side)) in summary for side in ("old", "new"))
    ]


def _shown(value: Any) -> str:
    """A change value as it would read in a summary; a value that would not (null, a list, a
    long text) never counts as said."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return "\0"
    text = one_line(str(value))
    return text if text and len(text) <= 80 else "\0"


def package_names(notices: list[Notice]) -> list[str]:
    """The distinct packages of a group, in order."""
    return list(dict.fromkeys(one_line(n.package) for n in notices))


def count_alerts(count: int) -> str:
    return f"{count} alert" if count == 1 else f"{count} alerts"
