"""The Slack notifier (slack-sdk, async): an incoming-webhook URL, or a bot token + channel.

A group becomes one message: Block Kit ``blocks`` plus a plain ``text`` fallback. Upstream text
is escaped for mrkdwn (``&``, ``<``, ``>``), so a package titled ``<!channel>`` can never ping
anyone; ``link_names`` is never set. At most 50 blocks; the rest is summarised as "+N more".
Messages to one Slack channel are paced to about one a second (Slack's posting limit).

Sent with a bot token, each firing condition alert carries two buttons, "Mute 7d" and "Mute
forever" (``action_id`` in :data:`MUTE_ACTIONS`, ``value`` the JSON ``{"package", "rule"}``),
which the bot answers (:mod:`monitor.server.slack`). A webhook's message has none: no bot
receives its clicks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from datetime import datetime
from typing import TYPE_CHECKING, Any

from monitor import USER_AGENT
from monitor.alerts import Notice, RuleKind, Severity, Status
from monitor.errors import DeliveryError, PermanentError, RetryableError
from monitor.notify.base import (
    Notifier,
    SettingError,
    changes_not_said,
    check_http_url,
    connection_error,
    format_change,
    http_error,
    one_line,
    ordered,
    safe_url,
    said_once,
    severity_counts,
    slack_error,
    status_word,
)
from monitor.text import clip

if TYPE_CHECKING:
    import aiohttp

DEFAULT_API_URL = "https://slack.com/api/"
# Slack's own limits (Block Kit reference): at most 50 blocks; a section's text at most 3,000
# characters, a header's 150; the `text` fallback is cut by Slack past 40,000.
MAX_BLOCKS = 50
MAX_CHANGES = 10
SECTION_LIMIT = 3000
HEADER_LIMIT = 150
TEXT_LIMIT = 40_000
# A link whose URL is longer than this is shown as its label alone.
URL_LIMIT = 1000
# Sent with a bot token, a message carries its group id as metadata, so that a group whose
# sending was cut short can be looked up before it is sent again (conversations.history, a
# few pages of the channel since that attempt).
METADATA_TYPE = "monitor_alert_group"
LOOKUP_PAGES = 3
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{6,}")
# The alert buttons: action_id -> how long the mute lasts (None: until unmuted). A button's
# value is at most 2,000 characters (Block Kit); a longer one is not offered.
MUTE_ACTIONS = {"monitor_mute_7d": "7d", "monitor_mute_forever": None}
BUTTON_VALUE_LIMIT = 2000

_EMOJI = {
    Severity.CRITICAL: ":red_circle:",
    Severity.WARNING: ":warning:",
    Severity.INFO: ":information_source:",
}
_RESOLVED_EMOJI = ":white_check_mark:"


def escape(text: Any) -> str:
    """Escape text for Slack mrkdwn: ``&`` ``<`` ``>`` (so ``<!channel>`` stays text)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn(text: str, limit: int) -> str:
    """``text`` escaped for mrkdwn in at most ``limit`` characters (an escape is never cut in
    half): escaping can make upstream text five times longer, so it is cut after escaping."""
    escaped = escape(text[: limit + 1])
    if len(escaped) <= limit:
        return escaped
    kept, size = [], 0
    for char in text:
        piece = escape(char)
        if size + len(piece) > limit - 1:
            break
        kept.append(piece)
        size += len(piece)
    return "".join(kept) + "…"


def link(url: Any, label: str, limit: int = HEADER_LIMIT) -> str:
    """``<url|label>`` for an http(s) URL, else just the escaped label (cut to ``limit``)."""
    target = safe_url(url)
    text = mrkdwn(label, limit)
    if target is None or len(target) > URL_LIMIT:
        return text
    return f"<{escape(target).replace('|', '%7C')}|{text}>"


def _quiet_logger() -> logging.Logger:
    # slack-sdk logs request URLs at debug level, and an incoming-webhook URL is a secret:
    # give it a logger of its own that is never enabled (and is not registered globally).
    return logging.Logger("monitor.notify.slack.sdk", level=logging.CRITICAL + 1)


# -- rendering ---------------------------------------------------------------------------


def notice_blocks(notice: Notice, *, buttons: bool = False) -> list[dict[str, Any]]:
    """Two blocks per notice: what happened (section) and where to look (context); with
    ``buttons``, a firing condition alert gets a third: its mute buttons."""
    lines = notice_lines(notice)
    lines += fit_changes(notice, room=SECTION_LIMIT - len("\n".join(lines)))
    context = [f"rule `{mrkdwn(one_line(notice.rule), 100)}`"]
    if safe_url(notice.links.get("repo")):
        context.append(link(notice.links["repo"], "Repository"))
    if safe_url(notice.links.get("pypi")):
        context.append(link(notice.links["pypi"], "PyPI"))
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]},
    ]
    actions = mute_buttons(notice) if buttons else None
    if actions is not None:
        blocks.append(actions)
    return blocks


def mute_buttons(notice: Notice) -> dict[str, Any] | None:
    """The "Mute 7d" and "Mute forever" buttons of a firing condition alert (None for any
    other notice): each carries the alert's package and rule as its value."""
    if notice.kind != RuleKind.CONDITION or notice.status != Status.FIRING:
        return None
    value = json.dumps({"package": notice.package, "rule": notice.rule}, separators=(",", ":"))
    if len(value) > BUTTON_VALUE_LIMIT:
        return None
    labels = {"monitor_mute_7d": "Mute 7d", "monitor_mute_forever": "Mute forever"}
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "action_id": action,
                "text": {"type": "plain_text", "text": labels[action]},
                "value": value,
            }
            for action in MUTE_ACTIONS
        ],
    }


def notice_lines(notice: Notice) -> list[str]:
    """A section's first lines: severity, status and title; what it means; the summary.
    Each is cut after escaping, so together they stay well under a section's limit."""
    resolved = notice.status == Status.RESOLVED
    emoji = _RESOLVED_EMOJI if resolved else _EMOJI.get(notice.severity, ":bell:")
    title = one_line(notice.title[: HEADER_LIMIT * 4]) or one_line(notice.package)
    lines = [
        f"{emoji} *{escape(str(notice.severity).upper())}* · {status_word(notice)} · "
        f"*{link(notice.links.get('djangopackages'), title)}*"
    ]
    description, summary = said_once(notice)
    if description:
        lines.append(mrkdwn(description, 300))
    if summary:
        lines.append(f">{mrkdwn(summary, 500)}")
    return lines


def fit_changes(notice: Notice, *, room: int) -> list[str]:
    """The change lines that fit in ``room`` characters (at most ``MAX_CHANGES``), and
    "+N more changes" for the rest."""
    changes = changes_not_said(notice)
    lines: list[str] = []
    room -= len("\n• +99 more changes") + 1
    for change in changes[:MAX_CHANGES]:
        line = f"• {mrkdwn(format_change(change), 200)}"
        if len(line) + 1 > room:
            break
        lines.append(line)
        room -= len(line) + 1
    if len(changes) > len(lines):
        lines.append(f"• +{len(changes) - len(lines)} more changes")
    return lines


def header_block(text: str) -> dict[str, Any]:
    # plain_text is never parsed for mentions or links.
    return {
        "type": "header",
        "text": {"type": "plain_text", "text": clip(one_line(text), HEADER_LIMIT), "emoji": True},
    }


def more_block(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def alerts_headline(notices: list[Notice]) -> str:
    """``2 critical, 3 warning``: the header, and the fallback's first line."""
    return severity_counts(notices)


def fit_blocks(notices: list[Notice], *, buttons: bool = False) -> tuple[list[dict[str, Any]], int]:
    """The blocks of the notices (already ordered) that fit in one message, and how many
    notices that is: two or three blocks each, after the header, keeping room for "+N more"."""
    per_notice = [notice_blocks(notice, buttons=buttons) for notice in notices]
    if 1 + sum(len(b) for b in per_notice) <= MAX_BLOCKS:
        return [block for group in per_notice for block in group], len(notices)
    blocks: list[dict[str, Any]] = []
    count = 0
    for group in per_notice:
        if 1 + len(blocks) + len(group) > MAX_BLOCKS - 1:
            break
        blocks.extend(group)
        count += 1
    return blocks, count


def left_out(rest: list[Notice]) -> tuple[str, str]:
    """``("+N more", "(pkg-a, pkg-b …)")``: what the blocks and the fallback both leave out."""
    packages = list(dict.fromkeys(one_line(n.package) for n in rest))
    names = ", ".join(mrkdwn(p, 100) for p in packages[:10]) + (" …" if len(packages) > 10 else "")
    return f"+{len(rest)} more", f"({names})"


def notice_text(notice: Notice) -> str:
    """One escaped fallback line: ``[critical] FIRING django-x: what happened``."""
    description, summary = said_once(notice)
    return mrkdwn(
        f"[{notice.severity}] {status_word(notice)} {one_line(notice.package)}: "
        f"{clip(summary or description, 300)}",
        600,
    )


def render_alerts_message(
    notices: list[Notice], *, buttons: bool = False
) -> tuple[str, list[dict[str, Any]]]:
    """The fallback ``text`` and the ``blocks`` of a group, most severe first; both show the
    same alerts and leave out the same "+N more" (SPEC §7). ``buttons``: mute buttons on
    firing condition alerts (a bot token's message)."""
    notices = ordered(notices)
    headline = alerts_headline(notices)
    shown, count = fit_blocks(notices, buttons=buttons)
    blocks = [header_block(headline), *shown]
    lines = [escape(headline), *(notice_text(n) for n in notices[:count])]
    rest = notices[count:]
    if rest:
        more, names = left_out(rest)
        blocks.append(more_block(f"*{more}* {names}"))
        lines.append(f"{more} {names}")
    return "\n".join(lines), blocks


def text_blocks(text: str, *, room: int) -> list[dict[str, Any]]:
    """Preformatted sections of at most ~3000 characters each, at most ``room`` blocks."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    limit = SECTION_LIMIT - 100
    for raw in text.rstrip("\n").splitlines() or [""]:
        line = escape(clip(raw.replace("```", "'''"), 500))
        if current and size + len(line) + 1 > limit:
            chunks.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        chunks.append("\n".join(current))
    blocks = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"```{chunk}```"}}
        for chunk in chunks
    ]
    if len(blocks) > room:
        hidden = len(blocks) - (room - 1)
        blocks = [*blocks[: room - 1], more_block(f"*+{hidden} more sections*")]
    return blocks


class SlackNotifier(Notifier):
    """Settings: ``webhook_url``, or ``token`` + ``channel``; ``api_url`` for the Web API.

    Payload: ``{"text": str, "blocks": [...], "unfurl_links": false, "unfurl_media": false}``
    (the channel of token mode comes from the settings at send time).
    Extra constructor options: ``session`` (an ``aiohttp.ClientSession`` to use and not close;
    its own timeout then applies), ``sleep`` and ``clock`` (pacing; default ``asyncio.sleep``
    and ``time.monotonic``), ``min_interval`` (seconds between messages to one Slack channel,
    default 1.0).
    """

    type = "slack"
    KEYS = frozenset({"webhook_url", "token", "channel", "api_url"})

    def __init__(
        self,
        name: str,
        settings: Mapping[str, Any],
        *,
        timeout: float = 30.0,
        session: aiohttp.ClientSession | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = 1.0,
    ):
        super().__init__(name, settings, timeout=timeout)
        webhook_url, token = settings.get("webhook_url"), settings.get("token")
        channel = settings.get("channel")
        if webhook_url and token:
            raise SettingError("token", f"{name}: set either 'webhook_url' or 'token', not both")
        self._webhook_url: str | None = None
        self._token: str | None = None
        self._channel: str | None = None
        if webhook_url:
            self._webhook_url = check_http_url(name, "webhook_url", webhook_url)
            self._add_secret(self._webhook_url)
            if channel:
                raise SettingError(
                    "channel", f"{name}: 'channel' needs 'token' (a webhook posts to its own)"
                )
        elif token:
            if not isinstance(token, str):
                raise SettingError("token", f"{name}: 'token' must be a string")
            self._token = token.strip()
            self._add_secret(self._token)
            if not channel or not isinstance(channel, str):
                raise SettingError("channel", f"{name}: 'token' needs 'channel' (e.g. \"#deps\")")
            self._channel = channel
        else:
            raise SettingError(
                "webhook_url", f"{name}: set 'webhook_url', or 'token' and 'channel'"
            )
        api_url = settings.get("api_url") or DEFAULT_API_URL
        self._api_url = check_http_url(name, "api_url", api_url)
        if not self._api_url.endswith("/"):
            self._api_url += "/"
        self._session = session
        self._own_session: aiohttp.ClientSession | None = None
        self._sleep = sleep
        self._clock = clock
        self._min_interval = min_interval
        self._last_send: dict[str, float] = {}
        self._channel_id: str | None = None

    # -- rendering ----------------------------------------------------------------------

    @staticmethod
    def _message(text: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
        return {"text": text, "blocks": blocks, "unfurl_links": False, "unfurl_media": False}

    def render_alerts(
        self, notices: list[Notice], *, group_id: str, created_at: datetime
    ) -> dict[str, Any]:
        return self._message(*render_alerts_message(notices, buttons=self._token is not None))

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
        blocks = [header_block(subject), *text_blocks(text, room=MAX_BLOCKS - 1)]
        return self._message(mrkdwn(one_line(subject), SECTION_LIMIT), blocks)

    def render_test(self, *, group_id: str, created_at: datetime) -> dict[str, Any]:
        line = f"This is a test from monitor: channel `{escape(self.name)}` can receive alerts."
        blocks = [
            header_block("monitor: test notification"),
            {"type": "section", "text": {"type": "mrkdwn", "text": line}},
        ]
        return self._message(f"monitor: test notification for {escape(self.name)}", blocks)

    # -- sending ------------------------------------------------------------------------

    async def send(self, payload: dict[str, Any], *, group_id: str) -> None:
        await self._pace(self._channel or "webhook")
        try:
            if self._webhook_url is not None:
                await self._send_webhook(payload)
            else:
                await self._send_api(payload, group_id)
        except DeliveryError as error:
            raise self._redacted(error) from None

    async def _pace(self, key: str) -> None:
        """About one message a second per Slack channel; the slot is taken before waiting."""
        now = self._clock()
        slot = max(now, self._last_send.get(key, -math.inf) + self._min_interval)
        self._last_send[key] = slot
        if slot > now:
            await self._sleep(slot - now)

    async def _send_webhook(self, payload: dict[str, Any]) -> None:
        import aiohttp
        from slack_sdk.webhook.async_client import AsyncWebhookClient

        assert self._webhook_url is not None
        client = AsyncWebhookClient(
            self._webhook_url,
            timeout=self.timeout,  # type: ignore[arg-type]
            session=self._get_session(),
            user_agent_prefix=USER_AGENT,
            logger=_quiet_logger(),
            retry_handlers=[],
        )
        try:
            response = await client.send_dict(dict(payload))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise connection_error(exc, channel=self.name, service="Slack") from None
        error = http_error(
            response.status_code,
            response.headers,
            self.receiver_text(response.body),
            channel=self.name,
            service="Slack",
        )
        if error is not None:
            raise error

    def _client(self) -> Any:
        from slack_sdk.web.async_client import AsyncWebClient

        return AsyncWebClient(
            token=self._token,
            base_url=self._api_url,
            timeout=self.timeout,  # type: ignore[arg-type]
            session=self._get_session(),
            user_agent_prefix=USER_AGENT,
            logger=_quiet_logger(),
            retry_handlers=[],
        )

    async def _send_api(self, payload: dict[str, Any], group_id: str) -> None:
        metadata = {"event_type": METADATA_TYPE, "event_payload": {"group_id": group_id}}
        response = await self._call(
            "chat_postMessage", channel=self._channel or "", metadata=metadata, **payload
        )
        if isinstance(response.get("channel"), str):
            self._channel_id = response["channel"]

    async def _call(self, method: str, **arguments: Any) -> Any:
        """One Web API call; its failures as :class:`RetryableError` / :class:`PermanentError`."""
        import aiohttp
        from slack_sdk.errors import SlackApiError, SlackClientError

        try:
            return await getattr(self._client(), method)(**arguments)
        except SlackApiError as exc:
            response = exc.response
            status = getattr(response, "status_code", None) or getattr(response, "status", None)
            data = getattr(response, "data", None)
            code = data.get("error") if isinstance(data, dict) else None
            code = self.receiver_text(code) if isinstance(code, str) else None
            headers = getattr(response, "headers", None)
            raise slack_error(code, status=status, headers=headers, channel=self.name) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise connection_error(exc, channel=self.name, service="Slack") from None
        except SlackClientError as exc:
            raise PermanentError(
                f"{self.name}: Slack client error ({type(exc).__name__})"
            ) from None
        except (AttributeError, TypeError, ValueError):
            # slack-sdk trips over a 200 whose body is not a JSON object (a proxy's page, a
            # wrong api_url): not Slack's answer, so worth another try later.
            raise RetryableError(f"{self.name}: unexpected answer from Slack (not JSON)") from None

    async def already_sent(self, group_id: str, *, since: datetime) -> bool:
        """Look for the group's message (by its metadata) in the channel's history since
        ``since``. Only with a bot token (a webhook cannot read); a lookup Slack refuses for
        good (a missing ``channels:history`` scope) cannot tell, one worth retrying is raised
        so the group waits rather than risk a duplicate."""
        if self._token is None:
            return False
        try:
            channel = await self._channel_id_for_lookup()
            if channel is None:
                return False
            return await self._history_has(channel, group_id, since)
        except PermanentError:
            return False
        except DeliveryError as error:
            raise self._redacted(error) from None

    async def _channel_id_for_lookup(self) -> str | None:
        """The configured channel's id (history is read by id; ``#deps`` is a name): the
        setting itself, the id a post answered with, or found with conversations.list."""
        if self._channel_id is None and _CHANNEL_ID.fullmatch(self._channel or ""):
            self._channel_id = self._channel
        if self._channel_id is None:
            name = (self._channel or "").lstrip("#")
            pages = self._pages(
                "conversations_list",
                "channels",
                types="public_channel,private_channel",
                exclude_archived=True,
                limit=1000,
            )
            async with aclosing(pages):
                async for item in pages:
                    if item.get("name") == name:
                        self._channel_id = str(item.get("id"))
                        break
        return self._channel_id

    async def _history_has(self, channel: str, group_id: str, since: datetime) -> bool:
        pages = self._pages(
            "conversations_history",
            "messages",
            channel=channel,
            oldest=f"{since.timestamp():.6f}",
            include_all_metadata=True,
            limit=200,
        )
        async with aclosing(pages):
            async for message in pages:
                metadata = message.get("metadata")
                if (
                    isinstance(metadata, dict)
                    and metadata.get("event_type") == METADATA_TYPE
                    and (metadata.get("event_payload") or {}).get("group_id") == group_id
                ):
                    return True
        return False

    async def _pages(self, method: str, key: str, **arguments: Any) -> AsyncGenerator[Any, None]:
        """The items (dicts) under ``key`` of up to LOOKUP_PAGES pages of a paged Web API
        method, following ``response_metadata.next_cursor``."""
        cursor = None
        for _ in range(LOOKUP_PAGES):
            page = await self._call(method, cursor=cursor, **arguments)
            for item in page.get(key) or []:
                if isinstance(item, dict):
                    yield item
            cursor = (page.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return

    def _get_session(self) -> aiohttp.ClientSession:
        import aiohttp

        if self._session is not None:
            return self._session
        if self._own_session is None or self._own_session.closed:
            self._own_session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._own_session

    async def aclose(self) -> None:
        if self._own_session is not None and not self._own_session.closed:
            await self._own_session.close()
        self._own_session = None
