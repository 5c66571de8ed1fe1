"""Notifiers against real servers on 127.0.0.1 (tests/fakes.py): one shared contract test for
every transport, then what is particular to each."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
import re
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from monitor import USER_AGENT
from monitor.alerts import Notice, RuleKind, Severity, Status
from monitor.errors import PermanentError, RetryableError
from monitor.notify import NOTIFIERS, create_notifier, notifier_class
from monitor.notify.base import (
    MAX_RETRY_AFTER,
    Notifier,
    SettingError,
    http_error,
    parse_retry_after,
    slack_error,
    smtp_error,
)
from monitor.notify.console import ConsoleNotifier
from monitor.notify.email import EmailNotifier, alerts_subject
from monitor.notify.slack import MAX_BLOCKS, SlackNotifier
from monitor.notify.webhook import WebhookNotifier, sign
from tests.fakes import (
    FakeSlack,
    FakeSMTPServer,
    FakeWebhookReceiver,
    Reply,
    make_self_signed_cert,
    unused_port,
)

CREATED = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
GROUP = "grp-01JD6Q8Z2K"
TOKEN = "xoxb-1111-2222-SECRETTOKEN"
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SMTP_PASSWORD = "s3cr3t-Pa55word"
EVIL = "<!channel> & <b>x</b>"
MAIL = {"host": "h", "from": "a@b.c", "to": "d@e.f"}


def make_notice(**overrides: Any) -> Notice:
    values: dict[str, Any] = {
        "id": "alert-pypi-version-changed-django-otp-1",
        "status": Status.FIRING,
        "kind": RuleKind.CHANGE,
        "repeat": False,
        "rule": "pypi-version-changed",
        "description": "A new version was published on PyPI",
        "severity": Severity.INFO,
        "package": "django-otp",
        "title": "django-otp",
        "summary": "django-otp 1.7.0 → 1.8.0",
        "started_at": CREATED,
        "changes": ({"field": "pypi_version", "old": "1.7.0", "new": "1.8.0"},),
        "labels": {"team": "auth"},
        "links": {
            "djangopackages": "https://djangopackages.org/packages/p/django-otp/",
            "repo": "https://github.com/django-otp/django-otp",
            "pypi": "https://pypi.org/project/django-otp/",
        },
    }
    values.update(overrides)
    return Notice(**values)


def condition_notice(package: str = "django-mfa", **overrides: Any) -> Notice:
    return make_notice(
        **{
            "id": f"alert-no-commits-26-weeks-{package}-1",
            "kind": RuleKind.CONDITION,
            "rule": "no-commits-26-weeks",
            "description": "No commits in the last 26 weeks",
            "severity": Severity.WARNING,
            "package": package,
            "title": package,
            "summary": f"{package}: No commits in the last 26 weeks",
            "changes": (),
            "links": {"djangopackages": f"https://djangopackages.org/packages/p/{package}/"},
            **overrides,
        }
    )


async def no_sleep(seconds: float) -> None:
    return None


def strings(value: Any) -> list[str]:
    """Every string inside a JSON value (for searching Slack blocks)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in strings(item)]
    return []


# -- the harness: one transport, its fake server, and how to read what it received -------------


@dataclass
class Channel:
    kind: str
    notifier: Notifier
    server: Any
    secrets: list[str]
    make: Callable[..., Notifier]  # the same notifier kind pointed elsewhere (refused port)
    extra: dict[str, Any] = field(default_factory=dict)

    def received(self) -> list[str]:
        """What the far end got, one string per delivered message, in a searchable form."""
        if self.kind == "email":
            out = []
            for message in self.server.messages:
                text = message.get_body(("plain",)).get_content()
                html = message.get_body(("html",)).get_content()
                out.append("\n".join([str(message["Subject"]), text, html]))
            return out
        if self.kind == "webhook":
            return [json.dumps(event, ensure_ascii=False) for event in self.server.events]
        return ["\n".join(strings(message)) for message in self.server.messages]

    def fail_next(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.server.queue(Reply(status, headers=headers or {}))


CHANNEL_KINDS = ["slack-webhook", "slack-token", "webhook", "email"]
HTTP_KINDS = ["slack-webhook", "slack-token", "webhook"]


@pytest.fixture
async def channel(request: pytest.FixtureRequest) -> AsyncIterator[Channel]:
    kind = request.param
    settings: dict[str, Any]
    if kind.startswith("slack"):
        async with FakeSlack(token=TOKEN) as slack:
            if kind == "slack-webhook":
                settings = {"type": "slack", "webhook_url": slack.webhook_url}
                secrets = [slack.webhook_url, FakeSlack.WEBHOOK_PATH]
            else:
                settings = {
                    "type": "slack",
                    "token": TOKEN,
                    "channel": "#deps",
                    "api_url": slack.api_url,
                }
                secrets = [TOKEN]

            def make_slack(**changes: Any) -> Notifier:
                return SlackNotifier("team-slack", {**settings, **changes}, sleep=no_sleep)

            notifier = make_slack()
            yield Channel(kind, notifier, slack, secrets, make_slack)
            await notifier.aclose()
    elif kind == "webhook":
        async with FakeWebhookReceiver(secret=WEBHOOK_SECRET) as hook:
            settings = {"type": "webhook", "url": hook.hook_url, "secret": WEBHOOK_SECRET}

            def make_webhook(**changes: Any) -> Notifier:
                return WebhookNotifier("ci", {**settings, **changes})

            notifier = make_webhook()
            secrets = [hook.hook_url, WEBHOOK_SECRET, WEBHOOK_SECRET.removeprefix("whsec_")]
            yield Channel(kind, notifier, hook, secrets, make_webhook)
            await notifier.aclose()
    else:
        async with FakeSMTPServer(auth={"monitor": SMTP_PASSWORD}) as smtp:
            settings = {
                "type": "email",
                "host": "127.0.0.1",
                "port": smtp.port,
                "security": "none",
                "username": "monitor",
                "password": SMTP_PASSWORD,
                "from": "monitor@example.com",
                "to": ["deps@example.com", "ops@example.com"],
            }

            def make_email(**changes: Any) -> Notifier:
                return EmailNotifier(
                    "team-email", {**settings, **changes}, local_hostname="localhost", timeout=5
                )

            yield Channel(kind, make_email(), smtp, [SMTP_PASSWORD], make_email)


def refused(ch: Channel) -> Notifier:
    """The same kind of notifier, aimed at a port nothing listens on."""
    port = unused_port()
    if ch.kind == "slack-webhook":
        return ch.make(webhook_url=f"http://127.0.0.1:{port}{FakeSlack.WEBHOOK_PATH}")
    if ch.kind == "slack-token":
        return ch.make(api_url=f"http://127.0.0.1:{port}/api/")
    if ch.kind == "webhook":
        return ch.make(url=f"http://127.0.0.1:{port}/hooks/packages")
    return ch.make(port=port)


def render(notifier: Notifier, notices: list[Notice], group_id: str = GROUP) -> dict[str, Any]:
    payload = notifier.render_alerts(notices, group_id=group_id, created_at=CREATED)
    # The outbox stores the payload as JSON: it must survive that unchanged.
    assert json.loads(json.dumps(payload)) == payload
    return payload


def assert_no_secret(ch: Channel, *texts: str) -> None:
    for text in texts:
        for secret in ch.secrets:
            assert secret not in text, f"secret leaked into {text!r}"


# -- the contract every notifier keeps ---------------------------------------------------------


@pytest.mark.parametrize("channel", CHANNEL_KINDS, indirect=True)
async def test_delivers_the_fields_spec_7_lists(channel: Channel) -> None:
    notices = [make_notice(), condition_notice()]
    await channel.notifier.send(render(channel.notifier, notices), group_id=GROUP)

    [received] = channel.received()
    for expected in (
        "django-otp",  # package title …
        "https://djangopackages.org/packages/p/django-otp/",  # … linked to its page
        "A new version was published on PyPI",  # rule description
        "1.7.0 → 1.8.0",  # what changed
        "https://github.com/django-otp/django-otp",  # repo
        "https://pypi.org/project/django-otp/",  # PyPI
        "django-mfa",
        "No commits in the last 26 weeks",
    ):
        assert expected in received
    assert "info" in received.lower() and "warning" in received.lower()  # severities


@pytest.mark.parametrize("channel", CHANNEL_KINDS, indirect=True)
async def test_every_retry_sends_the_same_message(channel: Channel) -> None:
    payload = render(channel.notifier, [make_notice()])
    if channel.kind == "email":
        channel.server.queue(451)
    else:
        channel.fail_next(503)
    with pytest.raises(RetryableError):
        await channel.notifier.send(payload, group_id=GROUP)
    await channel.notifier.send(payload, group_id=GROUP)
    assert len(channel.received()) == 1
    if channel.kind != "email":
        first, second = channel.server.requests
        assert first.body == second.body
    # Rendering the same group again gives the same payload (nothing random in it).
    assert render(channel.notifier, [make_notice()]) == payload


@pytest.mark.parametrize("channel", HTTP_KINDS, indirect=True)
@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (500, None, RetryableError, None),
        (502, None, RetryableError, None),
        (503, {"Retry-After": "7"}, RetryableError, 7),
        (429, {"Retry-After": "2"}, RetryableError, 2),
        (429, {"Retry-After": "86400"}, RetryableError, MAX_RETRY_AFTER),
        (408, None, RetryableError, None),
        (404, None, PermanentError, None),
        (400, None, PermanentError, None),
        (403, None, PermanentError, None),
    ],
    ids=[
        "500",
        "502",
        "503-retry-after",
        "429-retry-after",
        "429-capped",
        "408",
        "404",
        "400",
        "403",
    ],
)
async def test_http_status_decides_retry_or_stop(
    channel: Channel,
    status: int,
    headers: dict[str, str] | None,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    channel.fail_next(status, headers)
    with pytest.raises(error) as caught:
        await channel.notifier.send(render(channel.notifier, [make_notice()]), group_id=GROUP)
    assert str(caught.value).startswith(f"{channel.notifier.name}: HTTP {status} from ")
    if error is RetryableError:
        assert caught.value.retry_after == retry_after  # type: ignore[attr-defined]
    assert_no_secret(channel, str(caught.value), repr(caught.value))


@pytest.mark.parametrize("channel", ["email"], indirect=True)
@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (421, RetryableError),
        (450, RetryableError),
        (451, RetryableError),
        (452, RetryableError),
        (550, PermanentError),
        (552, PermanentError),
        (554, PermanentError),
    ],
    ids=["421", "450", "451", "452", "550", "552", "554"],
)
async def test_smtp_code_decides_retry_or_stop(
    channel: Channel, reply: int, error: type[Exception]
) -> None:
    channel.server.queue(reply)
    with pytest.raises(error) as caught:
        await channel.notifier.send(render(channel.notifier, [make_notice()]), group_id=GROUP)
    assert str(caught.value).startswith(f"team-email: SMTP {reply} from the mail server")
    assert channel.server.messages == []
    assert_no_secret(channel, str(caught.value), repr(caught.value))


@pytest.mark.parametrize("channel", CHANNEL_KINDS, indirect=True)
async def test_connection_refused_is_retryable(channel: Channel) -> None:
    notifier = refused(channel)
    try:
        with pytest.raises(RetryableError) as caught:
            await notifier.send(render(notifier, [make_notice()]), group_id=GROUP)
    finally:
        await notifier.aclose()
    message = str(caught.value)
    assert message.startswith(f"{notifier.name}: cannot reach ")
    assert "refused" in message.lower()
    assert_no_secret(channel, message, repr(caught.value))


@pytest.mark.parametrize("channel", HTTP_KINDS, indirect=True)
async def test_timeout_is_retryable(channel: Channel) -> None:
    notifier = channel.make()
    notifier.timeout = 0.05
    if isinstance(notifier, SlackNotifier | WebhookNotifier):
        await notifier.aclose()  # the session is made with the timeout
    channel.server.queue(Reply(200, delay=0.3))
    try:
        with pytest.raises(RetryableError, match="timed out"):
            await notifier.send(render(notifier, [make_notice()]), group_id=GROUP)
    finally:
        await notifier.aclose()


@pytest.mark.parametrize("channel", CHANNEL_KINDS, indirect=True)
async def test_no_secret_in_errors_reprs_or_logs(
    channel: Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    payload = render(channel.notifier, [make_notice()])
    failures = [500, 404] if channel.kind != "email" else [451, 550]
    messages = []
    for failure in failures:
        if channel.kind == "email":
            channel.server.queue(failure)
        else:
            channel.fail_next(failure)
        with pytest.raises((RetryableError, PermanentError)) as caught:
            await channel.notifier.send(payload, group_id=GROUP)
        messages += [str(caught.value), repr(caught.value)]
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
    await channel.notifier.send(payload, group_id=GROUP)  # and a success, with debug logs on
    assert_no_secret(channel, *messages, repr(channel.notifier), json.dumps(payload), caplog.text)


@pytest.mark.parametrize("channel", CHANNEL_KINDS, indirect=True)
async def test_upstream_text_is_escaped(channel: Channel) -> None:
    notice = make_notice(title=EVIL, description=EVIL, summary=EVIL, package="evil-pkg")
    await channel.notifier.send(render(channel.notifier, [notice]), group_id=GROUP)
    if channel.kind.startswith("slack"):
        [message] = channel.server.messages
        for text in strings(message):
            assert "<!channel>" not in text
            assert "<b>" not in text
        assert any("&lt;!channel&gt; &amp; &lt;b&gt;x&lt;/b&gt;" in t for t in strings(message))
        assert "link_names" not in message
    elif channel.kind == "email":
        [email_message] = channel.server.messages
        html = email_message.get_body(("html",)).get_content()
        assert "<b>x</b>" not in html and "<!channel>" not in html
        assert "&lt;b&gt;x&lt;/b&gt;" in html
        assert EVIL in email_message.get_body(("plain",)).get_content()  # text is not HTML
    else:
        [event] = channel.server.events
        assert event["data"]["alerts"][0]["title"] == EVIL  # JSON carries data as it is


# -- what every message says, and in which order (SPEC §7) --------------------------------------


def eighty_notices() -> list[Notice]:
    """80 notices in scrambled order: 14 critical, 30 warning, 36 info; every 5th resolved.
    Even ones have a summary that already says the description, odd ones do not."""
    notices = []
    for i in range(80):
        severity = Severity.CRITICAL if i < 14 else Severity.WARNING if i < 44 else Severity.INFO
        package = f"pkg-{(i * 37) % 80:02}"  # packages do not follow severity
        description = f"Condition {i:02} holds" if i % 2 == 0 else f"Rule {i:02} matched"
        summary = f"{package}: {description}" if i % 2 == 0 else f"{package} changed in {i:02}"
        resolved = i % 5 == 0
        notices.append(
            make_notice(
                id=f"alert-{i}",
                rule=f"rule-{i:02}",
                severity=severity,
                status=Status.RESOLVED if resolved else Status.FIRING,
                resolved_at=CREATED if resolved else None,
                package=package,
                title=package,
                description=description,
                summary=summary,
                links={"djangopackages": f"https://djangopackages.org/packages/p/{package}/"},
            )
        )
    random.Random(9).shuffle(notices)
    return notices


EIGHTY_COUNTS = "11 critical, 24 warning, 29 info, 16 resolved"
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass
class Shown:
    """What one rendered message shows: its counts line, the packages of the alerts it lists
    (in order), the text each is described with, and how many it leaves out."""

    headline: str | None
    packages: list[str]
    texts: list[str]
    left_out: int = 0


def _split_by_package(text: str, pattern: str) -> tuple[list[str], list[str]]:
    matches = list(re.finditer(pattern, text, re.M))
    packages = [m.group("package") for m in matches]
    ends = [m.start() for m in matches[1:]] + [len(text)]
    return packages, [text[m.start() : end] for m, end in zip(matches, ends, strict=True)]


def shown_by(kind: str, payload: dict[str, Any]) -> list[Shown]:
    if kind == "console":
        lines = payload["lines"]
        packages = [re.search(r" (pkg-\d\d): ", line).group(1) for line in lines[1:]]  # type: ignore[union-attr]
        return [Shown(lines[0], packages, lines[1:])]
    if kind == "webhook":
        alerts = json.loads(payload["body"])["data"]["alerts"]
        return [Shown(None, [a["package"] for a in alerts], [])]
    if kind == "email":
        text, html = payload["text"], payload["html"]
        body = text.split("\n--\n")[0]
        packages, texts = _split_by_package(body, r"^\[\w+\] [^\n]*?(?P<package>pkg-\d\d)$")
        plain = Shown(text.splitlines()[0], packages, texts)
        h1 = re.search(r"<h1[^>]*>(.*?)</h1>", html).group(1)  # type: ignore[union-attr]
        packages, texts = _split_by_package(html, r'<a href="[^"]+">(?P<package>pkg-\d\d)</a>')
        return [plain, Shown(h1, packages, texts)]
    # slack: the blocks and the fallback text, each on its own
    blocks = payload["blocks"]
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    packages = [re.search(r"\|(pkg-\d\d)>", s).group(1) for s in sections]  # type: ignore[union-attr]
    more = re.match(r"\*\+(\d+) more\*", blocks[-1]["elements"][0]["text"])
    in_blocks = Shown(blocks[0]["text"]["text"], packages, sections, int(more.group(1)))  # type: ignore[union-attr]
    lines = payload["text"].splitlines()
    more = re.match(r"\+(\d+) more \(", lines[-1])
    packages = [re.search(r" (pkg-\d\d): ", line).group(1) for line in lines[1:-1]]  # type: ignore[union-attr]
    in_text = Shown(lines[0], packages, lines[1:-1], int(more.group(1)))  # type: ignore[union-attr]
    return [in_blocks, in_text]


@pytest.mark.parametrize("kind", ["console", "slack", "email", "webhook"])
def test_a_message_lists_the_most_severe_first_and_says_each_thing_once(kind: str) -> None:
    notifier = {
        "console": lambda: ConsoleNotifier("console", {}),
        "slack": lambda: SlackNotifier("team-slack", {"webhook_url": "https://h.example/x"}),
        "email": lambda: EmailNotifier("team-email", MAIL),
        "webhook": lambda: WebhookNotifier("ci", {"url": "https://e.example/h"}),
    }[kind]()
    notices = eighty_notices()
    by_package = {n.package: n for n in notices}
    expected = [
        n.package
        for n in sorted(
            notices,
            key=lambda n: (SEVERITY_ORDER[n.severity], n.status == Status.RESOLVED, n.package),
        )
    ]
    critical = {n.package for n in notices if n.severity == Severity.CRITICAL}
    payload = render(notifier, notices)
    if kind == "email":
        assert payload["subject"].startswith(f"[monitor] 80 alerts ({EIGHTY_COUNTS}): ")
        assert payload["subject"].endswith(f": {expected[0]}, {expected[1]} +78 more")
    for shown in shown_by(kind, payload):
        assert shown.packages == expected[: len(shown.packages)]  # most severe first
        assert critical <= set(shown.packages)  # no critical one is left out
        assert shown.left_out == len(expected) - len(shown.packages)
        if shown.headline is not None:  # starts with the counts by severity
            assert shown.headline.removeprefix("monitor: ") == EIGHTY_COUNTS
        for package, text in zip(shown.packages, shown.texts, strict=False):
            description = by_package[package].description
            if description.startswith("Condition"):  # the summary says it: said once
                assert text.count(description) == 1, text
    if kind == "slack":
        in_blocks, in_text = shown_by(kind, payload)
        assert 14 <= len(in_blocks.packages) < 80
        assert in_text.packages == in_blocks.packages and in_text.left_out == in_blocks.left_out
        # the fallback's "+N more" names the same packages as the blocks'
        assert (
            payload["text"].splitlines()[-1].replace("+", "*+", 1).replace(" more", " more*", 1)
            == (payload["blocks"][-1]["elements"][0]["text"])
        )


# -- the one mapping, as tables -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, None),
        (201, None),
        (204, None),
        (301, PermanentError),
        (400, PermanentError),
        (401, PermanentError),
        (403, PermanentError),
        (404, PermanentError),
        (408, RetryableError),
        (410, PermanentError),
        (422, PermanentError),
        (429, RetryableError),
        (500, RetryableError),
        (502, RetryableError),
        (503, RetryableError),
        (504, RetryableError),
    ],
    ids=str,
)
def test_http_error_table(status: int, expected: type[Exception] | None) -> None:
    error = http_error(status, {}, "", channel="ci", service="webhook")
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected
        assert str(error) == f"ci: HTTP {status} from webhook"


def test_http_error_names_a_clean_excerpt_of_the_body() -> None:
    error = http_error(404, {}, "no_service\n\x1b[31mred" + "x" * 500, channel="c", service="Slack")
    message = str(error)
    assert message.startswith("c: HTTP 404 from Slack: no_service")
    assert "\n" not in message and "\x1b" not in message and len(message) < 260


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("999999", MAX_RETRY_AFTER),
        (format_datetime(CREATED + timedelta(seconds=42), usegmt=True), 42.0),
        (format_datetime(CREATED - timedelta(seconds=42), usegmt=True), 0.0),
        (format_datetime(CREATED + timedelta(hours=2), usegmt=True), MAX_RETRY_AFTER),
        ("soon", None),
        (None, None),
    ],
    ids=["2", "0", "1.5", "negative", "capped", "date", "past-date", "far-date", "junk", "absent"],
)
def test_retry_after_parsing(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=CREATED) == expected


def test_retry_after_header_is_case_insensitive() -> None:
    error = http_error(429, {"retry-after": "3"}, "", channel="c", service="s")
    assert isinstance(error, RetryableError) and error.retry_after == 3


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ratelimited", 429, RetryableError),
        ("internal_error", 200, RetryableError),
        ("fatal_error", 200, RetryableError),
        ("service_unavailable", 200, RetryableError),
        ("channel_not_found", 200, PermanentError),
        ("invalid_auth", 200, PermanentError),
        ("not_in_channel", 200, PermanentError),
        ("is_archived", 200, PermanentError),
        (None, 500, RetryableError),
        (None, 404, PermanentError),
    ],
    ids=str,
)
def test_slack_error_table(code: str | None, status: int, expected: type[Exception]) -> None:
    assert type(slack_error(code, status=status, channel="s")) is expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (421, RetryableError),
        (450, RetryableError),
        (451, RetryableError),
        (454, RetryableError),
        (535, PermanentError),
        (550, PermanentError),
        (554, PermanentError),
        (None, RetryableError),
    ],
    ids=str,
)
def test_smtp_error_table(code: int | None, expected: type[Exception]) -> None:
    assert type(smtp_error(code, "whatever", channel="m")) is expected


# -- registry and settings ---------------------------------------------------------------------


def test_registry_is_explicit_and_resolves_lazily() -> None:
    assert set(NOTIFIERS) == {"console", "slack", "email", "webhook"}
    for type_, cls in [
        ("console", ConsoleNotifier),
        ("slack", SlackNotifier),
        ("email", EmailNotifier),
        ("webhook", WebhookNotifier),
    ]:
        assert notifier_class(type_) is cls
        assert cls.type == type_
    with pytest.raises(ValueError, match="unknown notifier type 'pager'"):
        notifier_class("pager")


def test_importing_notifiers_imports_no_heavy_library() -> None:
    code = (
        "import sys, monitor.notify as n\n"
        "for t in n.NOTIFIERS: n.notifier_class(t)\n"
        "n.create_notifier('x', {'type': 'webhook', 'url': 'https://example.com/h'})\n"
        "print(sorted(m for m in ('aiohttp', 'slack_sdk', 'jinja2', 'aiosmtplib')"
        " if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_create_notifier_passes_timeout_and_options() -> None:
    stream = io.StringIO()
    notifier = create_notifier("console", {"type": "console"}, timeout=5, stream=stream)
    assert isinstance(notifier, ConsoleNotifier) and notifier.timeout == 5
    assert notifier.stream is stream


@pytest.mark.parametrize(
    ("cls", "settings", "key"),
    [
        (SlackNotifier, {}, "webhook_url"),
        (SlackNotifier, {"token": TOKEN}, "channel"),
        (SlackNotifier, {"token": TOKEN, "webhook_url": "https://h.example/x"}, "token"),
        (SlackNotifier, {"webhook_url": "https://h.example/x", "channel": "#x"}, "channel"),
        (SlackNotifier, {"webhook_url": "ftp://hooks.example/SECRET-PATH"}, "webhook_url"),
        (SlackNotifier, {"token": TOKEN, "channel": "#d", "api_url": "nope"}, "api_url"),
        (SlackNotifier, {"webhook_url": "https://h.example/x", "tokne": "x"}, "tokne"),
        (EmailNotifier, {"from": "a@b.c", "to": ["d@e.f"]}, "host"),
        (EmailNotifier, {"host": "h", "to": ["d@e.f"]}, "from"),
        (EmailNotifier, {"host": "h", "from": "a@b.c"}, "to"),
        (EmailNotifier, {"host": "h", "from": "a@b.c", "to": [1]}, "to"),
        (EmailNotifier, {**MAIL, "to": ["d@e.f\nBcc: x@y.z"]}, "to"),
        (EmailNotifier, {**MAIL, "from": "a@b.c\r\nBcc: x@y.z"}, "from"),
        (EmailNotifier, {**MAIL, "security": "ssl"}, "security"),
        (EmailNotifier, {**MAIL, "port": "587"}, "port"),
        (EmailNotifier, {**MAIL, "password": SMTP_PASSWORD}, "username"),
        (EmailNotifier, {**MAIL, "username": "u"}, "password"),
        (WebhookNotifier, {}, "url"),
        (WebhookNotifier, {"url": "example.com/SECRET-PATH"}, "url"),
        (WebhookNotifier, {"url": "https://e.example/h", "secret": "whsec_!!SECRET!!"}, "secret"),
        (WebhookNotifier, {"url": "https://example.com/h", "sercet": "x"}, "sercet"),
    ],
    ids=[
        "slack-nothing", "slack-token-no-channel", "slack-both", "slack-webhook-channel",
        "slack-bad-url", "slack-bad-api-url", "slack-typo", "email-no-host", "email-no-from",
        "email-no-to", "email-bad-to", "email-to-injection", "email-from-injection",
        "email-bad-security", "email-port-str",
        "email-password-no-user", "email-user-no-password", "webhook-no-url", "webhook-bad-url",
        "webhook-bad-secret", "webhook-typo",
    ],
)  # fmt: skip
def test_settings_errors_name_the_key_and_no_secret(
    cls: type[Notifier], settings: dict[str, Any], key: str
) -> None:
    with pytest.raises(SettingError) as caught:
        cls("chan", {"type": cls.type, **settings})
    assert isinstance(caught.value, ValueError)
    assert caught.value.key == key
    message = str(caught.value)
    assert repr(key) in message and message.startswith("chan: ")
    for secret in (TOKEN, SMTP_PASSWORD, "SECRET"):
        assert secret not in message


def test_email_accepts_display_names_and_a_single_address() -> None:
    notifier = EmailNotifier(
        "m", {**MAIL, "from": "monitor <m@example.com>", "to": " Deps Team <deps@example.com> "}
    )
    assert notifier.recipients == ["Deps Team <deps@example.com>"]
    assert notifier.sender == "monitor <m@example.com>"


@pytest.mark.parametrize(
    ("security", "port"), [("starttls", 587), ("tls", 465), ("none", 25)], ids=str
)
def test_email_port_defaults_by_security(security: str, port: int) -> None:
    assert EmailNotifier("m", {**MAIL, "security": security}).port == port


def test_reprs_name_the_channel_only() -> None:
    notifiers = [
        SlackNotifier("team-slack", {"webhook_url": "https://hooks.example/SECRET-PATH"}),
        SlackNotifier("team-slack", {"token": TOKEN, "channel": "#deps"}),
        WebhookNotifier("ci", {"url": "https://example.com/SECRET-PATH", "secret": WEBHOOK_SECRET}),
        EmailNotifier("m", {**MAIL, "username": "u", "password": SMTP_PASSWORD}),
    ]
    for notifier in notifiers:
        text = repr(notifier) + repr(vars(notifier).get("settings"))
        assert notifier.name in text
        for secret in ("SECRET-PATH", TOKEN, WEBHOOK_SECRET, SMTP_PASSWORD):
            assert secret not in text


# -- console ------------------------------------------------------------------------------------


async def test_console_writes_one_human_line_per_notice() -> None:
    stream = io.StringIO()
    console = ConsoleNotifier("console", {}, stream=stream)
    notices = [
        condition_notice(),
        condition_notice(status=Status.RESOLVED, resolved_at=CREATED + timedelta(days=2)),
        condition_notice(repeat=True),
        make_notice(title="evil", summary="line one\nline two \x1b[2J"),
    ]
    await console.send(render(console, notices), group_id=GROUP)
    assert stream.getvalue().splitlines() == [
        "monitor: 2 warning, 1 info, 1 resolved",
        "[warning] FIRING no-commits-26-weeks django-mfa: "
        "django-mfa: No commits in the last 26 weeks",
        "[warning] FIRING (repeat) no-commits-26-weeks django-mfa: "
        "django-mfa: No commits in the last 26 weeks",
        "[warning] RESOLVED no-commits-26-weeks django-mfa: "
        "django-mfa: No commits in the last 26 weeks",
        "[info] FIRING pypi-version-changed django-otp: line one line two [2J",
    ]


async def test_console_defaults_to_stderr_and_never_fails(
    capsys: pytest.CaptureFixture[str],
) -> None:
    console = ConsoleNotifier()
    await console.send(render(console, [condition_notice()]), group_id=GROUP)
    assert "FIRING no-commits-26-weeks" in capsys.readouterr().err
    closed = io.StringIO()
    closed.close()
    broken = ConsoleNotifier("console", {}, stream=closed)
    await broken.send(render(broken, [condition_notice()]), group_id=GROUP)


async def test_console_digest_and_test_message() -> None:
    stream = io.StringIO()
    console = ConsoleNotifier("console", {}, stream=stream)
    digest = console.render_digest(
        subject="[monitor] weekly digest",
        text="django-otp 1.8.0\n",
        html="<p>x</p>",
        data={},
        group_id=GROUP,
        created_at=CREATED,
    )
    await console.send(digest, group_id=GROUP)
    await console.send(console.render_test(group_id=GROUP, created_at=CREATED), group_id=GROUP)
    assert stream.getvalue().splitlines() == [
        "[monitor] weekly digest",
        "django-otp 1.8.0",
        "[info] TEST console: monitor can reach this channel",
    ]


# -- slack ------------------------------------------------------------------------------------


def test_slack_blocks_per_notice() -> None:
    slack = SlackNotifier("s", {"webhook_url": "https://hooks.example/x"})
    payload = slack.render_alerts([make_notice()], group_id=GROUP, created_at=CREATED)
    header, section, context = payload["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    text = section["text"]["text"]
    assert ":information_source: *INFO* · FIRING" in text
    assert "*<https://djangopackages.org/packages/p/django-otp/|django-otp>*" in text
    assert "A new version was published on PyPI" in text
    # The summary already says 1.7.0 → 1.8.0: the change is not listed again.
    assert "1.7.0 → 1.8.0" in text and "• pypi_version" not in text
    links = context["elements"][0]["text"]
    assert "<https://github.com/django-otp/django-otp|Repository>" in links
    assert "<https://pypi.org/project/django-otp/|PyPI>" in links
    assert payload["text"].startswith("1 info\n")
    assert header["text"]["text"] == "1 info"
    assert payload["unfurl_links"] is False and "link_names" not in payload


def test_slack_links_only_to_http_urls_and_escapes_them() -> None:
    slack = SlackNotifier("s", {"webhook_url": "https://hooks.example/x"})
    notice = make_notice(
        links={
            "djangopackages": "javascript:alert(1)",
            "repo": "https://example.com/a|<!channel>",
            "pypi": None,
        }
    )
    payload = slack.render_alerts([notice], group_id=GROUP, created_at=CREATED)
    joined = "\n".join(strings(payload))
    assert "javascript:" not in joined
    assert "<!channel>" not in joined
    assert "<https://example.com/a%7C&lt;!channel&gt;|Repository>" in joined
    assert "PyPI" not in payload["blocks"][2]["elements"][0]["text"]


def test_slack_mute_buttons_only_on_firing_condition_alerts_sent_with_a_bot_token() -> None:
    bot = SlackNotifier("s", {"token": TOKEN, "channel": "#deps"})
    hook = SlackNotifier("s", {"webhook_url": "https://hooks.example/x"})
    resolved = condition_notice("django-otp", status=Status.RESOLVED, resolved_at=CREATED)
    notices = [condition_notice(), make_notice(), resolved]
    blocks = bot.render_alerts(notices, group_id=GROUP, created_at=CREATED)["blocks"]
    kinds = [b["type"] for b in blocks]
    assert kinds == ["header", "section", "context", "actions", *["section", "context"] * 2]
    mute_7d, forever = blocks[3]["elements"]
    assert (mute_7d["type"], mute_7d["text"]["text"], mute_7d["action_id"]) == (
        "button",
        "Mute 7d",
        "monitor_mute_7d",
    )
    assert (forever["text"]["text"], forever["action_id"]) == (
        "Mute forever",
        "monitor_mute_forever",
    )
    value = {"package": "django-mfa", "rule": "no-commits-26-weeks"}
    assert json.loads(mute_7d["value"]) == json.loads(forever["value"]) == value
    sent_by_webhook = hook.render_alerts(notices, group_id=GROUP, created_at=CREATED)["blocks"]
    assert "actions" not in [b["type"] for b in sent_by_webhook]  # no bot hears its clicks


@pytest.mark.parametrize("channel", ["slack-token"], indirect=True)
async def test_slack_caps_blocks_at_50_with_a_more_summary(channel: Channel) -> None:
    notices = [condition_notice(f"pkg-{i:02}") for i in range(30)]  # 61 blocks' worth
    payload = render(channel.notifier, notices)
    blocks = payload["blocks"]
    assert len(blocks) <= MAX_BLOCKS
    shown = sum(1 for b in blocks if b["type"] == "section")
    more = blocks[-1]["elements"][0]["text"]
    assert more.startswith(f"*+{30 - shown} more*")
    assert f"pkg-{shown:02}" in more
    await channel.notifier.send(payload, group_id=GROUP)
    [message] = channel.server.messages
    assert message["channel"] == "#deps" and len(message["blocks"]) == len(blocks)
    # The fallback lists the same alerts and leaves out the same ones.
    assert message["text"].splitlines()[-1] == more.replace("*", "")
    assert len(message["text"].splitlines()) == 1 + shown + 1


@pytest.mark.parametrize("channel", ["slack-token"], indirect=True)
@pytest.mark.parametrize(
    ("reply", "expected", "retry_after"),
    [
        (Reply.slack_error("ratelimited", status=429, retry_after=2), RetryableError, 2),
        (Reply.slack_error("ratelimited", status=200), RetryableError, None),
        (Reply.slack_error("internal_error"), RetryableError, None),
        (Reply.slack_error("fatal_error"), RetryableError, None),
        (Reply.slack_error("service_unavailable", status=503), RetryableError, None),
        (Reply.slack_error("channel_not_found"), PermanentError, None),
        (Reply.slack_error("not_in_channel"), PermanentError, None),
        (Reply.slack_error("invalid_blocks"), PermanentError, None),
        (Reply(200, body="<html>captive portal</html>"), RetryableError, None),
    ],
    ids=[
        "ratelimited-429", "ratelimited-200", "internal_error", "fatal_error",
        "service_unavailable", "channel_not_found", "not_in_channel", "invalid_blocks",
        "not-json",
    ],
)  # fmt: skip
async def test_slack_ok_false_decides_retry_or_stop(
    channel: Channel, reply: Reply, expected: type[Exception], retry_after: float | None
) -> None:
    channel.server.queue(reply)
    with pytest.raises(expected) as caught:
        await channel.notifier.send(render(channel.notifier, [make_notice()]), group_id=GROUP)
    if isinstance(caught.value, RetryableError):
        assert caught.value.retry_after == retry_after
    code = reply.json["error"] if isinstance(reply.json, dict) else None
    if code:
        assert str(caught.value) == f"team-slack: Slack answered {code}"
    assert_no_secret(channel, str(caught.value))


@pytest.mark.parametrize("channel", ["slack-token"], indirect=True)
async def test_slack_sends_the_bot_token_and_channel(channel: Channel) -> None:
    await channel.notifier.send(render(channel.notifier, [make_notice()]), group_id=GROUP)
    [request] = channel.server.requests
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["User-Agent"].startswith(USER_AGENT)
    bad = channel.make(token="xoxb-wrong")
    with pytest.raises(PermanentError, match="invalid_auth"):
        await bad.send(render(bad, [make_notice()]), group_id=GROUP)
    await bad.aclose()


@pytest.mark.parametrize("channel", ["slack-webhook"], indirect=True)
async def test_slack_webhook_errors_name_slacks_reason(channel: Channel) -> None:
    channel.server.queue(Reply(404, body="no_service"))
    with pytest.raises(PermanentError) as caught:
        await channel.notifier.send(render(channel.notifier, [make_notice()]), group_id=GROUP)
    assert str(caught.value) == "team-slack: HTTP 404 from Slack: no_service"


async def test_slack_paces_about_one_message_a_second() -> None:
    now = [100.0]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async with FakeSlack() as slack:
        notifier = SlackNotifier(
            "s", {"webhook_url": slack.webhook_url}, sleep=fake_sleep, clock=lambda: now[0]
        )
        payload = render(notifier, [make_notice()])
        for _ in range(3):
            await notifier.send(payload, group_id=GROUP)
        assert sleeps == [1.0, 2.0]  # slots at 100, 101, 102 taken at 100
        now[0] = 110.0
        await notifier.send(payload, group_id=GROUP)
        assert sleeps == [1.0, 2.0]
        now[0] = 110.25
        await notifier.send(payload, group_id=GROUP)
        assert sleeps == [1.0, 2.0, 0.75]
        assert len(slack.messages) == 5
        await notifier.aclose()


async def test_slack_digest_and_test_message() -> None:
    async with FakeSlack() as slack:
        notifier = SlackNotifier("team-slack", {"webhook_url": slack.webhook_url}, sleep=no_sleep)
        text = "\n".join(f"django-{i:03} <!here> 1.0 → 1.1" for i in range(400))
        digest = notifier.render_digest(
            subject="Weekly digest", text=text, html="", data={}, group_id=GROUP, created_at=CREATED
        )
        assert len(digest["blocks"]) <= MAX_BLOCKS
        assert all("<!here>" not in s for s in strings(digest))
        await notifier.send(digest, group_id=GROUP)
        test = notifier.render_test(group_id=GROUP, created_at=CREATED)
        await notifier.send(test, group_id=GROUP)
        assert [m["text"] for m in slack.messages] == [
            "Weekly digest",
            "monitor: test notification for team-slack",
        ]
        await notifier.aclose()


# -- webhook ------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["webhook"], indirect=True)
async def test_webhook_posts_the_spec_7_document(channel: Channel) -> None:
    notices = [make_notice(), condition_notice(status=Status.RESOLVED, resolved_at=CREATED)]
    await channel.notifier.send(render(channel.notifier, notices), group_id=GROUP)
    [request] = channel.server.requests
    assert request.verified is True
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == USER_AGENT
    assert request.headers["webhook-id"] == GROUP
    document = request.json()
    assert document == {
        "type": "package.alerts",
        "timestamp": "2026-11-22T10:00:00Z",
        "data": {"alerts": [n.to_json_dict() for n in reversed(notices)]},  # warning first
    }
    alert = document["data"]["alerts"][1]
    assert set(alert) == {
        "id", "status", "kind", "repeat", "rule", "description", "severity", "package",
        "title", "summary", "started_at", "resolved_at", "changes", "labels", "links",
    }  # fmt: skip
    assert alert["changes"] == [{"field": "pypi_version", "old": "1.7.0", "new": "1.8.0"}]
    assert document["data"]["alerts"][0]["resolved_at"] == "2026-11-22T10:00:00Z"


async def test_webhook_signature_per_attempt_same_id_same_body() -> None:
    clock = iter([time.time(), time.time() + 60])
    async with FakeWebhookReceiver(secret=WEBHOOK_SECRET) as hook:
        notifier = WebhookNotifier(
            "ci", {"url": hook.hook_url, "secret": WEBHOOK_SECRET}, wall_clock=lambda: next(clock)
        )
        payload = render(notifier, [make_notice()])
        hook.queue(500)
        with pytest.raises(RetryableError):
            await notifier.send(payload, group_id=GROUP)
        await notifier.send(payload, group_id=GROUP)
        await notifier.aclose()
    first, second = hook.requests
    assert first.verified and second.verified
    assert first.body == second.body == payload["body"].encode()
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == GROUP
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 60
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    # The same signature the reference implementation computes.
    stamp = datetime.fromtimestamp(int(first.headers["webhook-timestamp"]), tz=UTC)
    expected = Webhook(WEBHOOK_SECRET).sign(GROUP, stamp, payload["body"])
    assert first.headers["webhook-signature"] == expected


async def test_webhook_429_with_an_http_date_retry_after() -> None:
    async with FakeWebhookReceiver() as hook:
        notifier = WebhookNotifier("ci", {"url": hook.hook_url})
        later = datetime.now(UTC) + timedelta(seconds=90)
        hook.queue(Reply.rate_limited(format_datetime(later, usegmt=True)))
        with pytest.raises(RetryableError) as caught:
            await notifier.send(render(notifier, [make_notice()]), group_id=GROUP)
        await notifier.aclose()
    assert caught.value.retry_after is not None and 85 <= caught.value.retry_after <= 90


def test_webhook_secret_prefix_is_optional() -> None:
    body = '{"a":1}'
    key_from = {
        prefix: WebhookNotifier("ci", {"url": "https://e.example/h", "secret": prefix + raw})
        for prefix, raw in [("whsec_", WEBHOOK_SECRET[6:]), ("", WEBHOOK_SECRET[6:])]
    }
    signatures = {
        prefix: n.headers(body, group_id="g")["webhook-signature"] for prefix, n in key_from.items()
    }
    assert len(set(signatures.values())) == 1
    assert sign(b"k", "g", 1, body) != sign(b"k", "g", 2, body)


async def test_webhook_without_secret_is_unsigned() -> None:
    async with FakeWebhookReceiver() as hook:
        notifier = WebhookNotifier("ci", {"url": hook.hook_url})
        await notifier.send(render(notifier, [make_notice()]), group_id=GROUP)
        await notifier.aclose()
    [request] = hook.requests
    assert not any(h.lower().startswith("webhook-") for h in request.headers)
    assert request.json()["type"] == "package.alerts"


async def test_webhook_receiver_rejects_a_wrong_secret() -> None:
    async with FakeWebhookReceiver(secret=WEBHOOK_SECRET) as hook:
        notifier = WebhookNotifier("ci", {"url": hook.hook_url, "secret": "whsec_d3Jvbmc="})
        with pytest.raises(PermanentError, match="HTTP 401"):
            await notifier.send(render(notifier, [make_notice()]), group_id=GROUP)
        await notifier.aclose()
    assert hook.requests[0].verified is False


def test_webhook_digest_and_test_documents() -> None:
    notifier = WebhookNotifier("ci", {"url": "https://e.example/h"})
    data = {"since": "2026-11-15T10:00:00Z", "packages": [{"slug": "django-otp"}]}
    digest = notifier.render_digest(
        subject="s", text="t", html="h", data=data, group_id=GROUP, created_at=CREATED
    )
    assert json.loads(digest["body"]) == {
        "type": "package.digest",
        "timestamp": "2026-11-22T10:00:00Z",
        "data": data,
    }
    test = json.loads(notifier.render_test(group_id=GROUP, created_at=CREATED)["body"])
    assert test["type"] == "package.test" and test["data"]["channel"] == "ci"


# -- email ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notices", "subject"),
    [
        ([make_notice()], "[monitor] 1 alert (1 info): django-otp"),
        ([make_notice(), make_notice(id="2")], "[monitor] 2 alerts (2 info): django-otp"),
        (
            [make_notice(), condition_notice(), condition_notice("django-organizations")],
            "[monitor] 3 alerts (2 warning, 1 info): django-mfa, django-organizations +1 more",
        ),
    ],
    ids=["one", "one-package", "three"],
)
def test_email_subject_names_count_and_first_packages(notices: list[Notice], subject: str) -> None:
    assert alerts_subject(notices) == subject


@pytest.mark.parametrize("channel", ["email"], indirect=True)
async def test_email_is_multipart_text_and_html(channel: Channel) -> None:
    release = make_notice(summary="django-otp has a new release")  # the values: said below
    notices = [release, condition_notice(), condition_notice("django-organizations")]
    payload = render(channel.notifier, notices)
    assert set(payload) == {"subject", "text", "html", "from", "to", "message_id", "date"}
    await channel.notifier.send(payload, group_id=GROUP)
    [mail] = channel.server.mails
    assert mail.mail_from == "monitor@example.com"
    assert mail.rcpt_tos == ["deps@example.com", "ops@example.com"]
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["Subject"] == (
        "[monitor] 3 alerts (2 warning, 1 info): django-mfa, django-organizations +1 more"
    )
    assert message["To"] == "deps@example.com, ops@example.com"
    assert message["Message-ID"] == f"<monitor.{GROUP}@example.com>" == payload["message_id"]
    assert message["Date"] == "Sun, 22 Nov 2026 10:00:00 +0000"
    html = message.get_body(("html",)).get_content()
    assert '<a href="https://djangopackages.org/packages/p/django-otp/">django-otp</a>' in html
    # Laid out for phones: no page wider than the screen, long upstream words broken.
    assert '<meta name="viewport" content="width=device-width' in html
    assert "max-width: 640px; overflow-wrap: anywhere" in html
    text = message.get_body(("plain",)).get_content()
    assert "[info] FIRING django-otp" in text and "- pypi_version: 1.7.0 → 1.8.0" in text
    assert channel.server.logins == ["monitor"]


@pytest.mark.parametrize("channel", ["email"], indirect=True)
async def test_email_wrong_password_is_permanent_and_not_echoed(channel: Channel) -> None:
    notifier = channel.make(password="wrong-" + SMTP_PASSWORD)
    with pytest.raises(PermanentError) as caught:
        await notifier.send(render(notifier, [make_notice()]), group_id=GROUP)
    assert str(caught.value).startswith("team-email: SMTP 535")
    assert SMTP_PASSWORD not in str(caught.value)


@pytest.mark.parametrize("channel", ["email"], indirect=True)
async def test_email_starttls_against_a_plain_server_is_permanent(channel: Channel) -> None:
    notifier = channel.make(security="starttls")
    with pytest.raises(PermanentError, match="STARTTLS"):
        await notifier.send(render(notifier, [make_notice()]), group_id=GROUP)


@pytest.mark.parametrize("channel", ["email"], indirect=True)
async def test_email_digest_and_test_message(channel: Channel) -> None:
    digest = channel.notifier.render_digest(
        subject="[monitor] weekly digest",
        text="plain digest\n",
        html="<p>html digest</p>",
        data={},
        group_id="digest-1",
        created_at=CREATED,
    )
    await channel.notifier.send(digest, group_id="digest-1")
    test = channel.notifier.render_test(group_id="test-1", created_at=CREATED)
    await channel.notifier.send(test, group_id="test-1")
    first, second = channel.server.messages
    assert first["Subject"] == "[monitor] weekly digest"
    assert first.get_body(("html",)).get_content().strip() == "<p>html digest</p>"
    assert second["Subject"] == "[monitor] test notification"
    assert "team-email" in second.get_body(("plain",)).get_content()


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    made = make_self_signed_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("no openssl command to make a self-signed certificate")
    return made


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_email_over_tls(security: str, certificate: tuple[Any, Any]) -> None:
    cert, key = certificate
    async with FakeSMTPServer(mode=security, cert=(cert, key), auth={"u": SMTP_PASSWORD}) as smtp:
        notifier = EmailNotifier(
            "team-email",
            {
                "host": "localhost",
                "port": smtp.port,
                "security": security,
                "username": "u",
                "password": SMTP_PASSWORD,
                "from": "monitor@example.com",
                "to": ["deps@example.com"],
            },
            tls_context=ssl.create_default_context(cafile=str(cert)),
            local_hostname="localhost",
            timeout=5,
        )
        await notifier.send(render(notifier, [make_notice()]), group_id=GROUP)
        assert smtp.logins == ["u"]
        assert smtp.messages[0]["Subject"] == "[monitor] 1 alert (1 info): django-otp"
        # A certificate we do not trust: a connection failure, worth retrying.
        untrusting = EmailNotifier(
            "team-email",
            {"host": "localhost", "port": smtp.port, "security": security,
             "from": "monitor@example.com", "to": ["deps@example.com"]},
            local_hostname="localhost",
            timeout=5,
        )  # fmt: skip
        with pytest.raises(RetryableError):
            await untrusting.send(render(untrusting, [make_notice()]), group_id=GROUP)


# -- the fakes from a background thread (as the CLI tests use them) ------------------------------


def test_fakes_run_on_background_threads_for_sync_tests() -> None:
    with FakeWebhookReceiver(secret=WEBHOOK_SECRET) as hook, FakeSlack() as slack:
        webhook = WebhookNotifier("ci", {"url": hook.hook_url, "secret": WEBHOOK_SECRET})
        slack_notifier = SlackNotifier("s", {"webhook_url": slack.webhook_url}, sleep=no_sleep)
        hook.queue(Reply(429, headers={"Retry-After": "2"}), 200)

        async def deliver() -> None:
            with pytest.raises(RetryableError) as caught:
                await webhook.send(render(webhook, [make_notice()]), group_id=GROUP)
            assert caught.value.retry_after == 2
            await webhook.send(render(webhook, [make_notice()]), group_id=GROUP)
            await slack_notifier.send(render(slack_notifier, [make_notice()]), group_id=GROUP)
            await webhook.aclose()
            await slack_notifier.aclose()

        asyncio.run(deliver())
        assert [r.status for r in hook.requests] == [429, 200]
        assert all(r.verified for r in hook.requests)
        assert len(slack.messages) == 1


def test_smtp_fake_runs_in_sync_code() -> None:
    with FakeSMTPServer() as smtp:
        notifier = EmailNotifier(
            "m",
            {"host": "127.0.0.1", "port": smtp.port, "security": "none",
             "from": "a@example.com", "to": "b@example.com"},
            local_hostname="localhost",
        )  # fmt: skip
        smtp.queue(451, 250)
        with pytest.raises(RetryableError):
            asyncio.run(notifier.send(render(notifier, [make_notice()]), group_id=GROUP))
        asyncio.run(notifier.send(render(notifier, [make_notice()]), group_id=GROUP))
        assert len(smtp.messages) == 1
        assert [reply[:3] for reply in smtp.replies] == ["451", "250"]


def test_notice_factory_is_consistent() -> None:
    # The notices these tests use round-trip through the JSON the outbox stores.
    for notice in (make_notice(), condition_notice(), replace(make_notice(), repeat=True)):
        assert Notice.from_json_dict(notice.to_json_dict()) == notice


@pytest.mark.parametrize(
    ("summary", "listed"),
    [
        pytest.param("django-otp 1.7.0 → 1.8.0", False, id="summary-says-both-values"),
        pytest.param("django-otp has a new release", True, id="summary-says-neither"),
        pytest.param("django-otp is now 1.8.0", True, id="summary-says-one"),
    ],
)
def test_a_change_the_summary_already_tells_is_not_listed_again(summary: str, listed: bool) -> None:
    notice = make_notice(summary=summary)
    slack = SlackNotifier("s", {"webhook_url": "https://hooks.example/x"})
    section = slack.render_alerts([notice], group_id=GROUP, created_at=CREATED)["blocks"][1]
    assert ("• pypi_version: 1.7.0 → 1.8.0" in section["text"]["text"]) is listed
    email = EmailNotifier("e", MAIL)
    text = email.render_alerts([notice], group_id=GROUP, created_at=CREATED)["text"]
    assert ("- pypi_version: 1.7.0 → 1.8.0" in text) is listed
