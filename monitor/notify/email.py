"""The email notifier (aiosmtplib): multipart/alternative text + HTML rendered with jinja2.

The rendered payload holds the whole message (subject, text, HTML, from, to, Message-ID, Date),
so every retry sends the same message; the Message-ID is derived from the group id, which lets
mail clients fold an at-least-once duplicate into one.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.alerts import Notice, Status
from monitor.errors import DeliveryError, PermanentError, RetryableError
from monitor.notify.base import (
    Notifier,
    SettingError,
    changes_not_said,
    connection_error,
    count_alerts,
    describe_network_error,
    format_change,
    one_line,
    ordered,
    package_names,
    safe_url,
    said_once,
    severity_counts,
    smtp_error,
    status_word,
    utc_z,
)
from monitor.text import clip

if TYPE_CHECKING:
    import jinja2

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}
SUBJECT_PACKAGES = 2
# A message's text and HTML parts are each at most this many bytes (UTF-8): the alerts that do
# not fit are left out and counted ("+N more alerts"); within an alert each text is cut.
MAX_PART = 256 * 1024
MAX_CHANGES = 20
SUBJECT_LIMIT = 250
_MSGID_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@cache
def environment() -> jinja2.Environment:
    """jinja2 over ``monitor/templates``; ``*.html.j2`` (and ``*.html``) are autoescaped."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(
            enabled_extensions=("html", "html.j2", "htm"),
            default_for_string=True,
            default=False,
        ),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )


def alerts_subject(notices: list[Notice]) -> str:
    """``[monitor] 3 alerts (1 critical, 2 warning): django-otp, django-mfa +1 more``: the
    count and the counts by severity, then the first packages, most severe first."""
    packages = package_names(ordered(notices))
    shown = ", ".join(packages[:SUBJECT_PACKAGES])
    more = len(packages) - SUBJECT_PACKAGES
    subject = f"[monitor] {count_alerts(len(notices))} ({severity_counts(notices)}): {shown}"
    if more > 0:
        subject += f" +{more} more"
    return subject


def notice_context(notice: Notice) -> dict[str, Any]:
    """What the templates see of one notice (already one-line and cut; links only if
    http(s) and short enough to be one)."""
    description, summary = said_once(notice)
    changes = changes_not_said(notice)
    lines = [format_change(change, limit=200) for change in changes[:MAX_CHANGES]]
    if len(changes) > MAX_CHANGES:
        lines.append(f"+{len(changes) - MAX_CHANGES} more changes")
    return {
        "severity": str(notice.severity),
        "status": str(notice.status),
        "status_word": status_word(notice),
        "resolved": notice.status == Status.RESOLVED,
        "repeat": notice.repeat,
        "rule": clip(one_line(notice.rule), 200),
        "description": clip(description, 1000),
        "package": clip(one_line(notice.package), 200),
        "title": clip(one_line(notice.title[:1000]) or one_line(notice.package), 300),
        "summary": clip(summary, 2000),
        "started_at": utc_z(notice.started_at),
        "resolved_at": utc_z(notice.resolved_at) if notice.resolved_at else None,
        "changes": lines,
        "labels": {
            clip(one_line(k), 200): clip(one_line(v), 200) for k, v in notice.labels.items()
        },
        "djangopackages_url": short_url(notice.links.get("djangopackages")),
        "repo_url": short_url(notice.links.get("repo")),
        "pypi_url": short_url(notice.links.get("pypi")),
    }


def short_url(url: Any) -> str | None:
    target = safe_url(url)
    return target if target is not None and len(target) <= 2000 else None


def cut_part(text: str, marker: str) -> str:
    """A part over MAX_PART bytes cut at its last line that fits, and ``marker`` after it: the
    last guard (a digest's parts are made elsewhere; alerts already fit)."""
    if _size(text) <= MAX_PART:
        return text
    head = text.encode()[: MAX_PART - _size(marker) - 1].decode(errors="ignore")
    return head[: head.rfind("\n") + 1 or len(head)] + marker


def _size(text: str) -> int:
    """Bytes on the wire before transfer encoding: what mail clients' clipping counts."""
    return len(text.encode())


def message_id(group_id: str, sender: str) -> str:
    domain = sender.rpartition("@")[2].strip(" >") or "monitor.invalid"
    domain = _MSGID_UNSAFE.sub("-", domain) or "monitor.invalid"
    return f"<monitor.{_MSGID_UNSAFE.sub('-', group_id)}@{domain}>"


def build_message(payload: Mapping[str, Any], *, group_id: str) -> EmailMessage:
    """The ``EmailMessage`` of a rendered payload: multipart/alternative text + HTML."""
    message = EmailMessage()
    message["Subject"] = one_line(payload["subject"])
    message["From"] = payload["from"]
    message["To"] = ", ".join(payload["to"])
    message["Message-ID"] = payload.get("message_id") or message_id(group_id, payload["from"])
    if payload.get("date"):
        message["Date"] = format_datetime(datetime.fromisoformat(payload["date"]))
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(payload["text"])
    if payload.get("html"):
        message.add_alternative(payload["html"], subtype="html")
    return message


class EmailNotifier(Notifier):
    """Settings: ``host``, ``port`` (default by ``security``: 587 starttls, 465 tls, 25 none),
    ``security`` (``starttls`` | ``tls`` | ``none``; default ``starttls``), ``username``,
    ``password``, ``from``, ``to`` (a list, or one address).

    Payload: ``{"subject", "text", "html", "from", "to": [...], "message_id", "date"}``.
    Extra constructor options: ``tls_context`` (an ``ssl.SSLContext``, e.g. to trust a private
    CA) and ``local_hostname`` (the EHLO name; default the machine's FQDN).
    """

    type = "email"
    KEYS = frozenset({"host", "port", "security", "username", "password", "from", "to"})

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        *,
        timeout: float = 30.0,
        tls_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ):
        super().__init__(name, settings, timeout=timeout)
        for key in ("host", "from", "to"):
            if not settings.get(key):
                raise SettingError(key, f"{name}: missing required key {key!r}")
        self.host = _string(name, settings, "host")
        self.security = settings.get("security", "starttls")
        if self.security not in SECURITY_PORTS:
            raise SettingError("security", f"{name}: 'security' must be one of starttls, tls, none")
        port = settings.get("port", SECURITY_PORTS[self.security])
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise SettingError("port", f"{name}: 'port' must be a port number")
        self.port = port
        self.username = _string(name, settings, "username") if settings.get("username") else None
        password = settings.get("password") or None
        if password is not None and not isinstance(password, str):
            raise SettingError("password", f"{name}: 'password' must be a string")
        if password and not self.username:
            raise SettingError("username", f"{name}: 'password' needs 'username'")
        if self.username and not password:
            raise SettingError("password", f"{name}: 'username' needs 'password'")
        self._password = password
        self._add_secret(password)
        self.sender = _string(name, settings, "from")
        to = settings["to"]
        recipients = [to] if isinstance(to, str) else to
        if not isinstance(recipients, list) or not all(
            isinstance(r, str) and r.strip() and r.strip() == one_line(r) for r in recipients
        ):
            raise SettingError("to", f"{name}: 'to' must be an address or a list of addresses")
        self.recipients = [r.strip() for r in recipients]
        self._tls_context = tls_context
        self._local_hostname = local_hostname

    # -- rendering ----------------------------------------------------------------------

    def _payload(
        self, *, subject: str, text: str, html: str, group_id: str, created_at: datetime
    ) -> dict[str, Any]:
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
        return {
            "subject": clip(one_line(subject), SUBJECT_LIMIT),
            "text": cut_part(text, "… (cut: the message was too long)\n"),
            "html": cut_part(html, "<p>… (cut: the message was too long)</p>\n"),
            "from": self.sender,
            "to": list(self.recipients),
            "message_id": message_id(group_id, self.sender),
            "date": created_at.isoformat(),
        }

    def render_alerts(
        self, notices: list[Notice], *, group_id: str, created_at: datetime
    ) -> dict[str, Any]:
        subject = alerts_subject(notices)
        contexts = [notice_context(notice) for notice in ordered(notices)]
        text, html = self._fit_alerts(subject, notices, contexts, created_at)
        return self._payload(
            subject=subject, text=text, html=html, group_id=group_id, created_at=created_at
        )

    def _fit_alerts(
        self,
        subject: str,
        notices: list[Notice],
        contexts: list[dict[str, Any]],
        created_at: datetime,
    ) -> tuple[str, str]:
        """The text and HTML of as many alerts as fit in MAX_PART each, most severe first,
        and "+N more alerts" for the rest: each alert is cut, so fewer of them always fit."""
        env = environment()
        shown = len(contexts)
        while True:
            context: dict[str, Any] = {
                "subject": subject,
                "count": count_alerts(len(notices)),
                "headline": severity_counts(notices),
                "notices": contexts[:shown],
                "more": len(contexts) - shown,
                "created_at": utc_z(created_at),
                "channel": self.name,
            }
            text = env.get_template("email_alerts.txt.j2").render(context)
            html = env.get_template("email_alerts.html.j2").render(context)
            size = max(_size(text), _size(html))
            if size <= MAX_PART or shown == 0:
                return text, html
            shown = min(shown - 1, int(shown * MAX_PART * 0.9 / size))

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
        return self._payload(
            subject=subject, text=text, html=html, group_id=group_id, created_at=created_at
        )

    def render_test(self, *, group_id: str, created_at: datetime) -> dict[str, Any]:
        env = environment()
        context = {"channel": self.name, "created_at": utc_z(created_at)}
        return self._payload(
            subject="[monitor] test notification",
            text=env.get_template("email_test.txt.j2").render(context),
            html=env.get_template("email_test.html.j2").render(context),
            group_id=group_id,
            created_at=created_at,
        )

    # -- sending ------------------------------------------------------------------------

    async def send(self, payload: dict[str, Any], *, group_id: str) -> None:
        try:
            await self._send(build_message(payload, group_id=group_id), payload)
        except DeliveryError as error:
            raise self._redacted(error) from None

    async def _send(self, message: EmailMessage, payload: Mapping[str, Any]) -> None:
        import aiosmtplib

        try:
            errors, _ = await aiosmtplib.send(
                message,
                sender=payload["from"],
                recipients=list(payload["to"]),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self._password,
                use_tls=self.security == "tls",
                start_tls=self.security == "starttls",
                tls_context=self._tls_context,
                local_hostname=self._local_hostname,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # Every recipient refused: retry only if each refusal was temporary.
            codes = [r.code for r in exc.recipients]
            worst = max(codes) if codes else None
            refused = exc.recipients[0] if exc.recipients else None
            said = self.receiver_text(refused.message if refused else "")
            raise smtp_error(worst, said, channel=self.name) from None
        except aiosmtplib.SMTPResponseException as exc:
            raise smtp_error(exc.code, self.receiver_text(exc.message), channel=self.name) from None
        except (
            aiosmtplib.SMTPConnectError,
            aiosmtplib.SMTPTimeoutError,
            aiosmtplib.SMTPServerDisconnected,
        ) as exc:
            cause = exc.__cause__
            what = (
                describe_network_error(cause)
                if cause is not None
                else self.receiver_text(exc.message)
            )
            raise RetryableError(
                f"{self.name}: cannot reach the mail server {self.host}:{self.port}: {what}"
            ) from None
        except aiosmtplib.SMTPException as exc:
            # The session cannot work as configured (no STARTTLS, no AUTH, no SMTPUTF8).
            raise PermanentError(f"{self.name}: {self.receiver_text(exc.message)}") from None
        except (TimeoutError, OSError) as exc:
            raise connection_error(exc, channel=self.name, service="the mail server") from None
        if errors:
            # Some recipients took it and some did not: it was delivered, and a retry would
            # send a duplicate to the others, so it is not retried.
            log.warning("%s: the mail server refused %s", self.name, ", ".join(sorted(errors)))


def _string(name: str, settings: Mapping[str, Any], key: str) -> str:
    value = settings.get(key)
    if not isinstance(value, str) or not value.strip() or value.strip() != one_line(value):
        raise SettingError(key, f"{name}: {key!r} must be a non-empty string on one line")
    return value.strip()
