"""Slack's side of the bot (SPEC §10): the ``/monitor`` slash command and the alert buttons.

Two ways in, one parser (:func:`parse_command`) and one dispatcher (:class:`SlackBot`):

- Socket Mode, when ``[slack_app] app_token`` is set: slack-sdk's aiohttp ``SocketModeClient``
  connects when the server starts (``apps.connections.open`` on ``api_url`` with the app
  token, then a WebSocket) and closes when it stops. No public URL is needed.
- HTTP mode, when ``signing_secret`` is set: ``POST /slack/commands`` and ``POST
  /slack/actions``, verified on the raw body by slack-sdk's ``SignatureVerifier``. A bad
  signature, or a timestamp more than 5 minutes away, is 401 and changes nothing.

Every command is acknowledged within 3 s: its work runs as a task (through the application
layer, off the event loop: :meth:`ServerContext.call`). When the answer is ready within
:data:`ACK_WAIT` it is the acknowledgement itself; otherwise the acknowledgement says it is
being worked on and the answer is posted to the command's ``response_url`` when done. ``watch``
always answers that way (it polls upstream). Answers are ephemeral Block Kit with a plain
``text`` too; every upstream text in them is escaped as in alerts, so a title such as
``<!channel>`` pings nobody. With ``allow_channels`` set, the commands that change something
(and the buttons) work only in those channels; elsewhere they answer "not allowed here".

A watch made from Slack alerts the channel it was made in (the channel ``slack:CHANNEL_ID``,
posted to with ``bot_token``: :meth:`monitor.config.Config.notifier`) unless the command names
channels (``--notify NAME``); its deliveries go through the daemon's outbox.

The alert buttons (``block_actions``, :data:`monitor.notify.slack.MUTE_ACTIONS`) mute the
alert's package and rule for 7 days or until unmuted, set by the user who clicked. The message
is then updated through the interaction's ``response_url`` (``replace_original``): the clicked
buttons give way to a line saying who muted it and until when. ``response_url`` rather than
``chat.update``: it needs no token or scope, whichever bot token sent the message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import web

from monitor.errors import MonitorError
from monitor.notify.slack import MUTE_ACTIONS, SECTION_LIMIT, escape, mrkdwn
from monitor.text import clip, one_line

if TYPE_CHECKING:
    import aiohttp

    from monitor.app import App, WatchOutcome
    from monitor.config import SlackAppConfig
    from monitor.server import ServerContext

log = logging.getLogger("monitor")

# Seconds a command's answer may take to be the acknowledgement itself; a slower one is
# acknowledged then and answered through response_url. Well under Slack's 3 s, so an
# acknowledgement takes under a second even while a cycle records (bench/serve.py).
ACK_WAIT = 0.5
ANSWER_TIMEOUT = 10.0  # seconds for a post to response_url
MAX_LINES = 40  # lines of an answer; the rest is "+N more"
CHANGING = frozenset({"watch", "unwatch", "mute", "unmute"})
NOT_ALLOWED = "not allowed here: this channel cannot change watches or mutes (allow_channels)"
_PIN = re.compile(r"v?\d+(?:\.\d+)+[0-9A-Za-z.+!-]*")

BOT: web.AppKey[SlackBot] = web.AppKey("slack_bot")


# -- parsing -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One ``/monitor`` command, parsed. ``problem``: why the text is no command (then the
    verb is ``help``, and the answer says the problem first)."""

    verb: str
    names: tuple[str, ...] = ()
    rule: str | None = None
    duration: str | None = None
    pin: str | None = None
    version: str | None = None
    notify: tuple[str, ...] = ()
    problem: str | None = None


USAGE = {
    "watch": "watch NAME… [VERSION] [--notify CHANNEL]",
    "unwatch": "unwatch NAME…",
    "list": "list",
    "status": "status NAME",
    "alerts": "alerts",
    "mute": "mute NAME [RULE] [DURATION]",
    "unmute": "unmute NAME [RULE]",
    "readiness": "readiness X.Y",
    "help": "help",
}
HELP = {
    "watch": "watch packages (NAME==VERSION or a trailing VERSION pins one); "
    "their alerts come to this channel",
    "unwatch": "stop watching packages",
    "list": "the watched packages",
    "status": "one package: version, last poll, alerts and mutes",
    "alerts": "what is firing now, and recent changes",
    "mute": "stop delivering a package's alerts (of RULE only; for DURATION such as 7d)",
    "unmute": "deliver them again",
    "readiness": "can we move to Django X.Y?",
    "help": "this list",
}


def parse_command(text: str) -> Command:
    """The command in a ``/monitor`` text; an unknown or malformed one is ``help`` with a
    problem."""
    words = text.split()
    if not words:
        return Command("help")
    verb, args = words[0].lower(), words[1:]
    parser = _PARSERS.get(verb)
    if parser is None:
        return Command("help", problem=f"unknown command {clip(one_line(words[0]), 40)!r}")
    try:
        return parser(verb, args)
    except ValueError as exc:
        return Command("help", problem=f"{exc}; usage: {USAGE[verb]}")


def _no_args(verb: str, args: list[str]) -> Command:
    if args:
        raise ValueError(f"{verb} takes nothing after it")
    return Command(verb)


def _names(verb: str, args: list[str]) -> Command:
    if not args:
        raise ValueError(f"{verb} needs a package name")
    return Command(verb, names=tuple(args))


def _one_name(verb: str, args: list[str]) -> Command:
    if len(args) != 1:
        raise ValueError(f"{verb} takes one package name")
    return Command(verb, names=(args[0],))


def _watch(verb: str, args: list[str]) -> Command:
    names: list[str] = []
    notify: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--notify" or word.startswith("--notify="):
            channel = word.partition("=")[2] or next(words, "")
            if not channel:
                raise ValueError("--notify needs a channel name")
            notify.append(channel)
        else:
            names.append(word)
    pin = None
    if len(names) > 1 and _PIN.fullmatch(names[-1]):
        pin = names.pop().removeprefix("v")
    if not names:
        raise ValueError("watch needs a package name")
    if pin is not None and len(names) != 1:
        raise ValueError("a VERSION goes with exactly one NAME")
    return Command(verb, names=tuple(names), pin=pin, notify=tuple(notify))


def _mute(verb: str, args: list[str]) -> Command:
    if not 1 <= len(args) <= 3:
        raise ValueError("mute takes a package name, then a rule and a duration if you like")
    name, rest = args[0], args[1:]
    rule = duration = None
    if rest and not _is_duration(rest[0]):
        rule = rest.pop(0)
    if len(rest) > 1:
        raise ValueError(f"nothing goes after the duration {clip(one_line(rest[0]), 40)!r}")
    if rest:
        if not _is_duration(rest[0]):
            raise ValueError(f"{clip(one_line(rest[0]), 40)!r} is not a duration such as 7d")
        duration = rest[0]
    return Command(verb, names=(name,), rule=rule, duration=_forever(duration))


def _unmute(verb: str, args: list[str]) -> Command:
    if not 1 <= len(args) <= 2:
        raise ValueError("unmute takes a package name and a rule if you like")
    return Command(verb, names=(args[0],), rule=args[1] if len(args) == 2 else None)


def _readiness(verb: str, args: list[str]) -> Command:
    if len(args) != 1:
        raise ValueError("readiness takes one Django version")
    return Command(verb, version=args[0])


def _is_duration(word: str) -> bool:
    from monitor.durations import parse_duration

    if word.lower() == "forever":
        return True
    try:
        parse_duration(word)
    except ValueError:
        return False
    return True


def _forever(duration: str | None) -> str | None:
    return None if duration is None or duration.lower() == "forever" else duration


_PARSERS: dict[str, Callable[[str, list[str]], Command]] = {
    "watch": _watch,
    "unwatch": _names,
    "list": _no_args,
    "status": _one_name,
    "alerts": _no_args,
    "mute": _mute,
    "unmute": _unmute,
    "readiness": _readiness,
    "help": _no_args,
}


# -- answers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """An ephemeral answer: a bold heading and lines, both already mrkdwn (escaped)."""

    heading: str
    lines: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        lines = list(self.lines[:MAX_LINES])
        if len(self.lines) > MAX_LINES:
            lines.append(f"+{len(self.lines) - MAX_LINES} more")
        sections = _sections([f"*{self.heading}*", *lines])
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections]
        text = "\n".join([self.heading, *lines])
        return {"response_type": "ephemeral", "text": clip(text, SECTION_LIMIT), "blocks": blocks}


def _sections(lines: list[str]) -> list[str]:
    """Lines joined into section texts of at most SECTION_LIMIT characters each."""
    sections: list[str] = []
    current = ""
    for line in lines:
        line = clip(line, SECTION_LIMIT)
        if current and len(current) + 1 + len(line) > SECTION_LIMIT:
            sections.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    return [*sections, current] if current else sections


def _text(value: Any, limit: int = 300) -> str:
    """Upstream (or user) text on one line, escaped for mrkdwn, cut to ``limit``."""
    return mrkdwn(one_line(str(value)), limit)


def help_answer(command_name: str = "/monitor", problem: str | None = None) -> Answer:
    name = _text(command_name or "/monitor", 40)
    lines = [f"`{name} {escape(USAGE[verb])}`: {escape(HELP[verb])}" for verb in USAGE]
    if problem:
        return Answer(_text(problem, 400), ("Commands:", *lines))
    return Answer("Commands", tuple(lines))


def error_answer(exc: BaseException) -> Answer:
    return Answer(f":x: {_text(exc, 1000)}")


def _when(text: str | None) -> str:
    """An ISO time as ``2026-12-05 12:00 UTC`` (``until unmuted`` for None)."""
    if text is None:
        return "until unmuted"
    from monitor.store import from_iso

    moment = from_iso(text)
    return f"until {moment:%Y-%m-%d %H:%M} UTC" if moment else "until unmuted"


# -- who asked, and from where -------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """Who sent a command or clicked a button, where, and where to answer later."""

    user_id: str
    user_name: str
    channel_id: str
    response_url: str | None = None
    command: str = "/monitor"

    @property
    def who(self) -> str:
        """How a mute records who set it: ``slack:@name (U123)``."""
        return f"slack:@{clip(one_line(self.user_name), 80)} ({clip(one_line(self.user_id), 40)})"

    @classmethod
    def from_command(cls, form: Mapping[str, Any]) -> Caller:
        return cls(
            str(form.get("user_id") or ""),
            str(form.get("user_name") or ""),
            str(form.get("channel_id") or ""),
            _url(form.get("response_url")),
            str(form.get("command") or "/monitor"),
        )

    @classmethod
    def from_action(cls, payload: Mapping[str, Any]) -> Caller:
        user = _mapping(payload.get("user"))
        channel = _mapping(payload.get("channel")).get("id") or _mapping(
            payload.get("container")
        ).get("channel_id")
        return cls(
            str(user.get("id") or ""),
            str(user.get("username") or user.get("name") or ""),
            str(channel or ""),
            _url(payload.get("response_url")),
        )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _url(value: Any) -> str | None:
    from monitor.notify.base import safe_url

    return safe_url(value)


# -- the dispatcher ----------------------------------------------------------------------


class SlackBot:
    """Runs commands and clicks for both ways in; keeps its background tasks and the
    session it answers ``response_url`` with."""

    def __init__(self, ctx: ServerContext):
        self.ctx = ctx
        self.tasks: set[asyncio.Task[Any]] = set()
        self.session: aiohttp.ClientSession | None = None

    @property
    def slack(self) -> SlackAppConfig:
        assert self.ctx.config.slack_app is not None
        return self.ctx.config.slack_app

    def allowed(self, channel_id: str) -> bool:
        allow = self.slack.allow_channels
        return not allow or channel_id in allow

    def spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # -- commands ---------------------------------------------------------------------------

    async def acknowledge(self, text: str, caller: Caller) -> Answer:
        """What to acknowledge a command with, within ACK_WAIT: its answer, or (when the work
        takes longer, and always for ``watch``) a note that the answer follows through
        ``response_url``."""
        started = time.monotonic()
        command = parse_command(text)
        fields = {"command": command.verb, "user": caller.user_id, "channel": caller.channel_id}
        log.info("slack command", extra={"fields": fields})
        if command.verb in CHANGING and not self.allowed(caller.channel_id):
            return Answer(f":no_entry: {escape(NOT_ALLOWED)}")
        task = self.spawn(self.run(command, caller))
        if command.verb != "watch":
            done, _ = await asyncio.wait({task}, timeout=ACK_WAIT - (time.monotonic() - started))
            if done:
                answer: Answer = task.result()
                return answer
        self.spawn(self._answer_later(task, caller))
        names = ", ".join(_text(n, 100) for n in command.names[:5])
        what = f"watching {names}" if command.verb == "watch" else f"`{command.verb}`"
        return Answer(f":hourglass_flowing_sand: Working on {what}; the answer follows here.")

    async def _answer_later(self, task: asyncio.Task[Answer], caller: Caller) -> None:
        answer = await task
        await self.respond(caller.response_url, answer.payload())

    async def run(self, command: Command, caller: Caller) -> Answer:
        """The command's answer; a user's mistake (MonitorError) is the answer too."""
        handler = _HANDLERS[command.verb]
        started = time.monotonic()
        try:
            answer = await handler(self, command, caller)
        except MonitorError as exc:
            answer = error_answer(exc)
        except Exception as exc:
            log.error(
                "slack command failed", exc_info=exc, extra={"fields": {"command": command.verb}}
            )
            return Answer(":x: something went wrong; the daemon's log says what")
        seconds = round(time.monotonic() - started, 3)
        fields = {"command": command.verb, "user": caller.user_id, "seconds": seconds}
        log.info("slack answered", extra={"fields": fields})
        return answer

    async def _watch(self, command: Command, caller: Caller) -> Answer:
        notify = list(command.notify) or self._here(caller)

        async def watch(app: App) -> WatchOutcome:
            names = list(command.names)
            return await app.watch(names, pin=command.pin, notify=notify or None, deliver=False)

        outcome: WatchOutcome = await self.ctx.call(watch)
        if outcome.report is not None and outcome.report.groups:
            self.ctx.control.send_soon()
        lines = [f"• {_text(line, 500)}" for line in outcome.lines]
        if outcome.transitions:
            lines.append(f"{outcome.transitions} alert(s) on the way")
        where = ", ".join(_text(channel, 100) for channel in notify) if notify else "as configured"
        lines.append(f"Alerts go to: {where}")
        return Answer(":eyes: Watch", tuple(lines))

    def _here(self, caller: Caller) -> list[str]:
        """The channel the command was sent from, when the bot can post there."""
        from monitor.config import SLACK_CHANNEL

        name = f"{SLACK_CHANNEL}:{caller.channel_id}"
        try:
            self.ctx.config.notifier(name)
        except KeyError:
            return []
        return [name]

    async def _unwatch(self, command: Command, caller: Caller) -> Answer:
        names = await self.ctx.call(lambda app: app.unwatch(list(command.names)))
        return Answer("Stopped watching", tuple(f"• {_text(n, 100)}" for n in names))

    async def _list(self, command: Command, caller: Caller) -> Answer:
        rows = await self.ctx.call(lambda app: app.watches())
        if not rows:
            return Answer(
                "Nothing is watched yet", (f"Try `{_text(caller.command, 40)} watch NAME`",)
            )
        return Answer(f"{len(rows)} watched", tuple(_watch_line(row) for row in rows))

    async def _status(self, command: Command, caller: Caller) -> Answer:
        name = command.names[0]
        row, alerts, mutes = await self.ctx.call(lambda app: _package_status(app, name))
        lines = [_watch_line(row)]
        lines += [_alert_line(alert) for alert in alerts] or ["No alerts firing"]
        lines += [_mute_line(mute) for mute in mutes]
        return Answer(_text(row.title or row.slug, 150), tuple(lines))

    async def _alerts(self, command: Command, caller: Caller) -> Answer:
        alerts = await self.ctx.call(lambda app: app.alerts())
        if not alerts:
            return Answer(":white_check_mark: No alerts firing")
        return Answer(f"{len(alerts)} alert(s)", tuple(_alert_line(a) for a in alerts))

    async def _mute(self, command: Command, caller: Caller) -> Answer:
        name = command.names[0]
        mute = await self.ctx.call(
            lambda app: app.mute(
                name,
                rule=command.rule,
                duration=command.duration,
                comment="muted from Slack",
                set_by=caller.who,
            )
        )
        return Answer(":no_bell: Muted", (_mute_line(mute),))

    async def _unmute(self, command: Command, caller: Caller) -> Answer:
        name = command.names[0]
        await self.ctx.call(lambda app: app.unmute(name, command.rule))
        what = f"{_text(name, 100)}" + (f" ({_text(command.rule, 100)})" if command.rule else "")
        return Answer(f":bell: Unmuted {what}")

    async def _readiness(self, command: Command, caller: Caller) -> Answer:
        version = command.version or ""
        items = await self.ctx.call(lambda app: app.readiness(version))
        if not items:
            return Answer("Nothing is watched yet")
        return Answer(
            f"Ready for Django {_text(version, 20)}?", tuple(_readiness_line(r) for r in items)
        )

    async def _help(self, command: Command, caller: Caller) -> Answer:
        return help_answer(caller.command, command.problem)

    # -- buttons ---------------------------------------------------------------------------

    async def click(self, payload: Mapping[str, Any]) -> None:
        """A ``block_actions`` payload: each mute button clicked mutes its alert, then the
        message says who muted it and until when."""
        caller = Caller.from_action(payload)
        for action in payload.get("actions") or []:
            if isinstance(action, Mapping) and action.get("action_id") in MUTE_ACTIONS:
                await self._mute_clicked(action, caller, _mapping(payload.get("message")))

    async def _mute_clicked(
        self, action: Mapping[str, Any], caller: Caller, message: Mapping[str, Any]
    ) -> None:
        value = action.get("value")
        try:
            target = json.loads(value) if isinstance(value, str) else None
            package, rule = str(target["package"]), str(target["rule"])  # type: ignore[index]
        except (ValueError, TypeError, KeyError):
            log.warning("slack button with a bad value", extra={"fields": {"user": caller.user_id}})
            return
        if not self.allowed(caller.channel_id):
            await self.respond(caller.response_url, _ephemeral(NOT_ALLOWED))
            return
        duration = MUTE_ACTIONS[str(action["action_id"])]
        try:
            mute = await self.ctx.call(
                lambda app: app.mute(
                    package,
                    rule=rule,
                    duration=duration,
                    comment="muted from Slack",
                    set_by=caller.who,
                )
            )
        except MonitorError as exc:
            await self.respond(caller.response_url, _ephemeral(str(exc)))
            return
        fields = {"package": package, "rule": rule, "until": mute.until, "by": caller.who}
        log.info("muted from slack", extra={"fields": fields})
        line = f":no_bell: Muted by @{_text(caller.user_name, 80)} {_when(mute.until)}"
        await self.respond(caller.response_url, updated_message(message, value, line))

    # -- answering later -------------------------------------------------------------------

    async def respond(self, url: str | None, payload: dict[str, Any]) -> None:
        """POST an answer to a ``response_url``; a failure is logged (the user sees none)."""
        import aiohttp

        if url is None or self.session is None:
            log.warning("slack answer dropped: no response_url")
            return
        try:
            async with self.session.post(url, json=payload) as response:
                if response.status >= 300:
                    log.warning(
                        "slack answer refused", extra={"fields": {"status": response.status}}
                    )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            from monitor.notify.base import describe_network_error

            log.warning(
                "slack answer failed", extra={"fields": {"error": describe_network_error(exc)}}
            )

    async def start(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=ANSWER_TIMEOUT))

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=1.0)
        if self.session is not None:
            await self.session.close()


_HANDLERS: dict[str, Callable[[SlackBot, Command, Caller], Awaitable[Answer]]] = {
    "watch": SlackBot._watch,
    "unwatch": SlackBot._unwatch,
    "list": SlackBot._list,
    "status": SlackBot._status,
    "alerts": SlackBot._alerts,
    "mute": SlackBot._mute,
    "unmute": SlackBot._unmute,
    "readiness": SlackBot._readiness,
    "help": SlackBot._help,
}


def _package_status(app: App, name: str) -> tuple[Any, list[Any], list[Any]]:
    from monitor.report import RECENT_CHANGES, is_current
    from monitor.store import iso

    row = app.watch_row(name)  # NotWatchedError: the answer
    recent = iso(app.clock() - RECENT_CHANGES)
    alerts = [  # as `alerts` shows them
        alert
        for alert in app.package_alerts(name, limit=10)
        if is_current(alert.kind, alert.status, alert.started_at, recent)
    ]
    mutes = [mute for mute in app.mutes() if mute.package == name]
    return row, alerts, mutes


def _watch_line(row: Any) -> str:
    version = row.latest or "no release"
    if row.pinned:
        version += f", pinned {row.pinned}"
    firing = ", ".join(f"{count} {severity}" for severity, count in row.firing.items() if count)
    parts = [f"*{_text(row.slug, 100)}* {_text(version, 100)}"]
    parts.append(f"firing: {firing}" if firing else "nothing firing")
    parts.append(f"last poll: {_text(row.last_status or 'not yet', 20)}")
    if row.muted or row.muted_rules:
        parts.append("muted" if row.muted else f"muted: {_text(', '.join(row.muted_rules), 200)}")
    return "• " + " · ".join(parts)


def _alert_line(alert: Any) -> str:
    muted = " (muted)" if alert.muted else ""
    return (
        f"• *{_text(alert.severity, 20)}* {_text(alert.status, 20)} · *{_text(alert.package, 100)}*"
        f" · `{_text(alert.rule, 100)}`: {_text(alert.summary, 300)}{muted}"
    )


def _mute_line(mute: Any) -> str:
    what = f"`{_text(mute.rule, 100)}`" if mute.rule else "every rule"
    by = f" (by {_text(mute.set_by, 120)})" if mute.set_by else ""
    return f"• {_text(mute.package, 100)}: {what} muted {_when(mute.until)}{by}"


def _readiness_line(item: Any) -> str:
    declared = f"declares up to {item.newest_declared}" if item.declared else "declares no version"
    latest = f"latest {item.latest}" if item.latest else "no release"
    pinned = f", pinned {item.pinned}" if item.pinned else ""
    return (
        f"• *{_text(item.name, 100)}*: {_text(item.verdict, 20)}"
        f" ({_text(declared, 100)}; {_text(latest, 100)}{_text(pinned, 100)})"
    )


def _ephemeral(text: str) -> dict[str, Any]:
    return {**Answer(f":x: {_text(text, 1000)}").payload(), "replace_original": False}


def updated_message(message: Mapping[str, Any], value: Any, line: str) -> dict[str, Any]:
    """The alert message again (``replace_original``), the actions block whose buttons carry
    ``value`` replaced by a context block saying ``line``."""
    note = {"type": "context", "elements": [{"type": "mrkdwn", "text": line}]}
    blocks: list[Any] = []
    replaced = False
    for block in message.get("blocks") or []:
        if not replaced and _is_buttons_of(block, value):
            blocks.append(note)
            replaced = True
        else:
            blocks.append(block)
    if not replaced:
        blocks.append(note)
    return {"replace_original": True, "text": str(message.get("text") or ""), "blocks": blocks}


def _is_buttons_of(block: Any, value: Any) -> bool:
    if not isinstance(block, Mapping) or block.get("type") != "actions":
        return False
    elements = block.get("elements") or []
    return any(isinstance(e, Mapping) and e.get("value") == value for e in elements)


# -- Socket Mode ---------------------------------------------------------------------------


def _quiet_logger() -> logging.Logger:
    # slack-sdk logs its WebSocket URL (a one-use secret) and payloads: a logger of its own,
    # never enabled and not registered; the bot logs what it does itself.
    return logging.Logger("monitor.server.slack.sdk", level=logging.CRITICAL + 1)


async def on_envelope(bot: SlackBot, client: Any, request: Any) -> None:
    """A Socket Mode envelope: acknowledged at once (a command's with its answer, or with a
    note that the answer follows), then worked on."""
    from slack_sdk.socket_mode.response import SocketModeResponse

    payload = request.payload if isinstance(request.payload, dict) else {}
    answer: dict[str, Any] | None = None
    if request.type == "slash_commands":
        try:
            answer = (
                await bot.acknowledge(str(payload.get("text") or ""), Caller.from_command(payload))
            ).payload()
        except Exception as exc:  # still acknowledged: Slack shows an error otherwise
            log.error("slack command failed", exc_info=exc)
            answer = Answer(":x: something went wrong; the daemon's log says what").payload()
    await client.send_socket_mode_response(SocketModeResponse(request.envelope_id, answer))
    if request.type == "interactive" and payload.get("type") == "block_actions":
        bot.spawn(bot.click(payload))


async def _connect(client: Any) -> None:
    """Connect, retrying (1 s, doubling to 1 min) while Slack refuses or cannot be reached."""
    from slack_sdk.errors import SlackApiError

    from monitor.notify.base import describe_network_error

    delay = 1.0
    while client.wss_uri is None:
        try:
            client.wss_uri = await client.issue_new_wss_url()
        except SlackApiError as exc:
            error = exc.response.get("error") if exc.response is not None else None
            log.warning(
                "slack connect failed", extra={"fields": {"error": str(error), "retry_in": delay}}
            )
        except Exception as exc:
            log.warning(
                "slack connect failed",
                extra={"fields": {"error": describe_network_error(exc), "retry_in": delay}},
            )
        else:
            break
        await asyncio.sleep(delay)
        delay = min(delay * 2, 60.0)
    await client.connect()
    log.info("slack connected", extra={"fields": {"mode": "socket"}})


def socket_mode(
    bot: SlackBot, slack: SlackAppConfig
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application) -> AsyncIterator[None]:
        from slack_sdk.socket_mode.aiohttp import SocketModeClient
        from slack_sdk.web.async_client import AsyncWebClient

        assert slack.app_token is not None
        quiet = _quiet_logger()
        client = SocketModeClient(
            app_token=slack.app_token,
            web_client=AsyncWebClient(base_url=slack.api_url, logger=quiet),
            logger=quiet,
        )

        async def listener(client: Any, request: Any) -> None:
            await on_envelope(bot, client, request)

        client.socket_mode_request_listeners.append(listener)
        connecting = asyncio.ensure_future(_connect(client))
        try:
            yield
        finally:
            connecting.cancel()
            await client.close()

    return run


# -- HTTP mode ----------------------------------------------------------------------------


def verified(signing_secret: str, body: bytes, headers: Mapping[str, str]) -> bool:
    """Whether Slack signed this raw body, less than 5 minutes ago."""
    from slack_sdk.signature import SignatureVerifier

    try:
        return SignatureVerifier(signing_secret).is_valid_request(body, dict(headers))
    except (ValueError, TypeError):  # a timestamp that is no number
        return False


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def http_routes(bot: SlackBot, secret: str) -> list[web.RouteDef]:
    async def read_signed(request: web.Request) -> dict[str, str] | None:
        body = await request.read()
        if not verified(secret, body, request.headers):
            log.warning("slack request refused", extra={"fields": {"path": request.path}})
            return None
        return _form(body)

    async def commands(request: web.Request) -> web.Response:
        form = await read_signed(request)
        if form is None:
            return web.json_response({"error": "bad or stale Slack signature"}, status=401)
        answer = await bot.acknowledge(form.get("text", ""), Caller.from_command(form))
        return web.json_response(answer.payload())

    async def actions(request: web.Request) -> web.Response:
        form = await read_signed(request)
        if form is None:
            return web.json_response({"error": "bad or stale Slack signature"}, status=401)
        try:
            payload = json.loads(form.get("payload", ""))
        except ValueError:
            return web.json_response({"error": "no payload"}, status=400)
        if isinstance(payload, dict) and payload.get("type") == "block_actions":
            bot.spawn(bot.click(payload))
        return web.Response(status=200)

    return [web.post("/slack/commands", commands), web.post("/slack/actions", actions)]


def add_routes(app: web.Application, ctx: ServerContext) -> None:
    """The HTTP endpoints when ``signing_secret`` is set, Socket Mode when ``app_token`` is."""
    slack = ctx.config.slack_app
    if slack is None:
        return
    bot = SlackBot(ctx)
    app[BOT] = bot

    async def lifetime(app: web.Application) -> AsyncIterator[None]:
        await bot.start()
        try:
            yield
        finally:
            await bot.stop()

    app.cleanup_ctx.append(lifetime)
    if slack.signing_secret:
        app.add_routes(http_routes(bot, slack.signing_secret))
    if slack.app_token:
        app.cleanup_ctx.append(socket_mode(bot, slack))
