"""The config file (SPEC §5): discovery, ``${VAR}`` expansion, validation with line numbers.

Discovery: ``--config PATH``, else ``$MONITOR_CONFIG``, else ``./monitor.toml`` if it exists,
else built-in defaults. Every problem raises :class:`~monitor.errors.ConfigError` naming the
key, with a suggestion for a near miss and ``path:line`` where the key stands. Secret values are
never echoed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from monitor.alerts import Severity
from monitor.durations import parse_duration
from monitor.errors import ConfigError, did_you_mean
from monitor.sources import SOURCES

DEFAULT_URL = "https://djangopackages.org"
CONSOLE = "console"
NOTIFIER_TYPES = ("slack", "email", "webhook", "console")

_COMMON_NOTIFIER_KEYS = {"type": str, "min_severity": str, "digest": bool, "timeout": str}
_NOTIFIER_KEYS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "slack": {"webhook_url": str, "token": str, "channel": str, "api_url": str},
    "email": {
        "host": str,
        "port": int,
        "security": str,
        "username": str,
        "password": str,
        "from": str,
        "to": (list, str),
    },
    "webhook": {"url": str, "secret": str},
    "console": {},
}
_SOURCE_KEYS: dict[str, type] = {"url": str, "timeout": str, "concurrency": int}


def source_tables() -> dict[str, dict[str, type]]:
    """Each ``[sources.NAME]`` table's keys: djangopackages' (the primary source, which cannot
    be turned off) and each registered source's, read from the registry (which imports no
    source module)."""
    tables = {"djangopackages": _SOURCE_KEYS}
    for name, registered in SOURCES.items():
        tables[name] = {**_SOURCE_KEYS, "enabled": bool, **registered.options}
    return tables


_SCHEMA: dict[str, Any] = {
    "database": str,
    "sources": dict,  # checked by source_tables()
    "project": {"django": str},
    "schedule": {"interval": str, "jitter": str, "digest": str, "timezone": str},
    "history": {"keep": str},
    "rules": {"paths": list},
    "defaults": {"notify": list},
    "notifiers": None,  # validated per notifier
    "http": {"listen": str, "token": str, "github_secret": str},
    "slack_app": {
        "app_token": str,
        "bot_token": str,
        "signing_secret": str,
        "api_url": str,
        "allow_channels": list,
    },
}
_SECRETS = {"token", "github_secret", "app_token", "bot_token", "signing_secret"}
DEFAULT_SLACK_API = "https://slack.com/api/"
# ``slack:C0123456789``: a Slack channel by id, reached with ``[slack_app] bot_token``.
SLACK_CHANNEL = "slack"
_SLACK_CHANNEL_ID = re.compile(r"[A-Z][A-Z0-9]{5,30}")


@dataclass(frozen=True)
class SourceConfig:
    """One ``[sources.NAME]`` table; ``options`` holds the source's own keys (GitHub's
    ``token``), kept out of ``repr``. When a secret uses an unset ``${VAR}`` (``unset``), the
    config loads anyway: only making that source is the error (SPEC §5), so a disabled source
    or a command that polls nothing never needs it."""

    url: str = DEFAULT_URL
    timeout: float = 30.0
    concurrency: int = 8
    enabled: bool = True
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    unset: UnsetVariable | None = None

    @property
    def token(self) -> str | None:
        return self.options.get("token") or None

    def check_environment(self) -> None:
        """Raise :class:`ConfigError` naming the variable and the key if one is unset."""
        if self.unset is not None:
            raise self.unset.error()


@dataclass(frozen=True)
class ScheduleConfig:
    interval: timedelta = timedelta(hours=6)
    jitter: timedelta = timedelta(minutes=5)
    digest: str = "0 8 * * mon"
    timezone: str = "UTC"


# ``[history] keep``: how long failed polls are kept one by one (then counted per package and day)
# and delivered messages whole. Digests and ``--since`` read a week and more of them.
DEFAULT_KEEP = timedelta(days=400)
SHORTEST_KEEP = timedelta(days=8)
FOREVER = "forever"


@dataclass(frozen=True)
class HistoryConfig:
    """``[history]``: ``keep`` None keeps everything ("forever")."""

    keep: timedelta | None = DEFAULT_KEEP


@dataclass(frozen=True)
class UnsetVariable:
    """A ``${VAR}`` a notifier's settings or a source's token use that the environment does not
    have."""

    variable: str
    key: str  # notifiers.team-slack.token, sources.github.token
    path: str | None = None
    line: int | None = None

    def error(self) -> ConfigError:
        return ConfigError(
            f"{self.key}: environment variable {self.variable} is not set",
            path=self.path,
            line=self.line,
        )


@dataclass(frozen=True)
class NotifierConfig:
    """One ``[notifiers.NAME]`` table. When its settings use an unset ``${VAR}`` (``unset``),
    it loads anyway, unchecked: only making that notifier is the error (SPEC §5)."""

    name: str
    type: str
    min_severity: Severity = Severity.INFO
    digest: bool = False
    timeout: float = 30.0
    settings: dict[str, Any] = field(default_factory=dict)
    unset: UnsetVariable | None = None

    def check_environment(self) -> None:
        """Raise :class:`ConfigError` naming the variable and the key if one is unset."""
        if self.unset is not None:
            raise self.unset.error()


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: what ``monitor run`` serves (SPEC §10). ``listen`` None: nothing. A secret
    whose ``${VAR}`` is unset (``unset``) is the error only when the server starts."""

    listen: str | None = None
    token: str | None = field(default=None, repr=False)
    github_secret: str | None = field(default=None, repr=False)
    unset: UnsetVariable | None = None

    def check_environment(self) -> None:
        if self.unset is not None:
            raise self.unset.error()


@dataclass(frozen=True)
class SlackAppConfig:
    """``[slack_app]``: the bot side of Slack (SPEC §10). Socket Mode when ``app_token`` is
    set; the HTTP endpoints when ``signing_secret`` is; buttons and answers use ``bot_token``."""

    app_token: str | None = field(default=None, repr=False)
    bot_token: str | None = field(default=None, repr=False)
    signing_secret: str | None = field(default=None, repr=False)
    api_url: str = DEFAULT_SLACK_API
    allow_channels: tuple[str, ...] = ()
    unset: UnsetVariable | None = None

    def check_environment(self) -> None:
        if self.unset is not None:
            raise self.unset.error()


def listen_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:8080`` for IPv6; port 0: any free port) as (host, port);
    ValueError says what is wrong."""
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d+)|([^\s:\[\]]+):(\d+)", text.strip())
    if not match:
        raise ValueError(f"{text!r} is not an address such as 127.0.0.1:8080")
    host = match.group(1) or match.group(3)
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ValueError(f"{text!r}: port {port} is over 65535")
    return host, port


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _default_sources() -> dict[str, SourceConfig]:
    return {name: SourceConfig(registered.url) for name, registered in SOURCES.items()}


@dataclass(frozen=True)
class Config:
    path: Path | None = None
    database: Path = Path("monitor.db")
    djangopackages: SourceConfig = SourceConfig()
    # pypi, github and osv, always all three, in that order (djangopackages is above)
    sources: dict[str, SourceConfig] = field(default_factory=_default_sources)
    project_django: str | None = None  # [project] django: "5.2"
    schedule: ScheduleConfig = ScheduleConfig()
    history: HistoryConfig = HistoryConfig()
    rule_paths: tuple[Path, ...] = ()
    default_notify: tuple[str, ...] = (CONSOLE,)
    notifiers: dict[str, NotifierConfig] = field(
        default_factory=lambda: {CONSOLE: NotifierConfig(CONSOLE, "console")}
    )
    http: HttpConfig = HttpConfig()
    slack_app: SlackAppConfig | None = None

    def serving(self, listen: str | None = None) -> HttpConfig | None:
        """What ``monitor run`` serves: ``[http]``, its ``listen`` replaced by ``--http``
        when given; None when nothing. A non-loopback address without a token is a
        ConfigError (anyone who reaches it could change watches)."""
        http = self.http if listen is None else replace(self.http, listen=listen)
        if http.listen is None:
            return None
        try:
            host, _ = listen_address(http.listen)
        except ValueError as exc:
            where = "--http" if listen is not None else "http.listen"
            raise ConfigError(f"{where}: {exc}", path=_text(self.path)) from None
        http.check_environment()
        if http.token is None and not is_loopback(host):
            raise ConfigError(
                f"http.token: required to listen on {http.listen}, which is not a loopback"
                " address (set [http] token, or listen on 127.0.0.1)",
                path=_text(self.path),
            )
        return http

    def notifier(self, name: str) -> NotifierConfig:
        """The channel called ``name``: a ``[notifiers.NAME]`` table, or ``slack:CHANNEL_ID``
        (a Slack channel the bot posts to with ``[slack_app] bot_token``: where a watch made
        from Slack alerts, SPEC §10). KeyError when there is none."""
        if name in self.notifiers:
            return self.notifiers[name]
        kind, _, channel = name.partition(":")
        app = self.slack_app
        if (
            kind == SLACK_CHANNEL
            and _SLACK_CHANNEL_ID.fullmatch(channel)
            and app is not None
            and (app.bot_token or app.unset)
        ):
            settings = {"token": app.bot_token, "channel": channel, "api_url": app.api_url}
            unset = None if app.bot_token else app.unset  # the bot token's own ${VAR}
            return NotifierConfig(name, "slack", settings=settings, unset=unset)
        raise KeyError(name)

    def check_channels(self, names: list[str] | tuple[str, ...], where: str) -> None:
        """Raise UsageError (exit 2) when a channel given on the command line (``where``:
        the option or command) names no notifier: the config is fine, the argument is not."""
        for name in names:
            try:
                self.notifier(name)
            except KeyError:
                from monitor.errors import UsageError

                hint = did_you_mean(name, self.notifiers)
                raise UsageError(
                    f"{where}: no notifier named {name!r}{hint};"
                    f" channels: {', '.join(sorted(self.notifiers))}"
                ) from None


def find_config_path(explicit: str | None, env: Mapping[str, str] | None = None) -> Path | None:
    variables = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if variables.get("MONITOR_CONFIG"):
        return Path(variables["MONITOR_CONFIG"])
    local = Path("monitor.toml")
    return local if local.exists() else None


def load_config(path: Path | None, env: dict[str, str] | None = None) -> Config:
    """Load and validate the config at ``path``; ``None`` gives the built-in defaults."""
    if path is None:
        return Config(database=Path("monitor.db").resolve())
    env = dict(os.environ) if env is None else env
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", path=str(path)) from None
    text = _decode(data, path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", None) or _line_from_message(str(exc))
        raise ConfigError(f"not valid TOML: {exc}", path=str(path), line=line) from None
    return _Validator(path, text, env).build(raw)


class _Unset(ConfigError):
    """An unset ``${VAR}``: a load error, except in a notifier's own settings."""

    def __init__(self, unset: UnsetVariable):
        self.unset = unset
        error = unset.error()
        super().__init__(error.message, path=error.path, line=error.line)


def _decode(data: bytes, path: Path) -> str:
    """The file's text; a byte that is not UTF-8 is an error at its line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        byte = data[exc.start : exc.start + 1].hex()
        raise ConfigError(
            f"not UTF-8 (byte 0x{byte} at column {column})", path=str(path), line=line
        ) from None


# SQLite cannot keep a database in these virtual file systems; a path there is a mistake.
_VIRTUAL = (Path("/proc"), Path("/sys"))


def _line_from_message(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


class _Validator:
    def __init__(self, path: Path, text: str, env: dict[str, str]):
        self.path = path
        self.lines = _key_lines(text)
        self.env = env

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{key}: {message}", path=str(self.path), line=self.line_of(key))

    def line_of(self, key: str) -> int | None:
        parts = key.split(".")
        while parts:
            line = self.lines.get(".".join(parts))
            if line:
                return line
            parts.pop()
        return None

    def check_keys(self, table: dict[str, Any], allowed: Any, prefix: str) -> None:
        for key in table:
            if key not in allowed:
                name = f"{prefix}{key}"
                raise self.error(name, f"unknown key{did_you_mean(key, allowed)}")

    def typed(self, value: Any, expected: Any, key: str) -> Any:
        if isinstance(expected, tuple):
            ok = isinstance(value, expected)
        else:
            ok = isinstance(value, expected) and not (expected is int and isinstance(value, bool))
        if not ok:
            names = expected if isinstance(expected, tuple) else (expected,)
            wanted = " or ".join(_TYPE_NAMES[t] for t in names)
            got = _TYPE_NAMES.get(type(value), type(value).__name__)
            raise self.error(key, f"expected {wanted}, got {got}")
        return self.expand(value, key)

    def expand(self, value: Any, key: str) -> Any:
        if isinstance(value, list):
            return [self.expand(item, key) for item in value]
        if not isinstance(value, str):
            return value

        def substitute(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name = match.group(1)
            if name not in self.env:
                raise _Unset(UnsetVariable(name, key, str(self.path), self.line_of(key)))
            return self.env[name]

        return re.sub(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}", substitute, value)

    def duration(self, value: str, key: str) -> timedelta:
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def database(self, base: Path, value: str) -> Path:
        """The database file, refused here when SQLite could not open or create it there, so
        a bad path is the config's error (exit 2, ``path:line``) and nothing is created."""
        if "\0" in value:
            raise self.error("database", f"{value!r} contains a NUL character")
        path = base / value
        problem = _database_problem(path)
        if problem:
            raise self.error("database", f"{str(path)!r} {problem}")
        return path

    def build(self, raw: dict[str, Any]) -> Config:
        self.check_keys(raw, _SCHEMA, "")
        base = self.path.resolve().parent
        database = self.database(
            base, self.typed(raw.get("database", "monitor.db"), str, "database")
        )

        sources = self.sources(raw)
        project_django = self.project(raw)

        sched = self.typed(raw.get("schedule", {}), dict, "schedule")
        self.check_keys(sched, _SCHEMA["schedule"], "schedule.")
        interval = self.duration(
            self.typed(sched.get("interval", "6h"), str, "schedule.interval"), "schedule.interval"
        )
        if interval <= timedelta(0):
            raise self.error("schedule.interval", "must be longer than 0s")
        jitter = self.duration(
            self.typed(sched.get("jitter", "5m"), str, "schedule.jitter"), "schedule.jitter"
        )
        digest = self.typed(sched.get("digest", "0 8 * * mon"), str, "schedule.digest")
        timezone = self.typed(sched.get("timezone", "UTC"), str, "schedule.timezone")
        try:
            from zoneinfo import ZoneInfo

            ZoneInfo(timezone)
        except Exception:
            raise self.error("schedule.timezone", f"unknown time zone {timezone!r}") from None
        try:
            from monitor.cron import parse_cron

            parse_cron(digest)
        except ValueError as exc:
            raise self.error("schedule.digest", str(exc)) from None
        schedule = ScheduleConfig(interval, jitter, digest, timezone)
        history = self.history(raw)

        rules = self.typed(raw.get("rules", {}), dict, "rules")
        self.check_keys(rules, _SCHEMA["rules"], "rules.")
        rule_paths = []
        for item in self.typed(rules.get("paths", []), list, "rules.paths"):
            if not isinstance(item, str):
                raise self.error("rules.paths", "expected a list of paths")
            rule_path = base / item
            if not rule_path.exists():
                raise self.error("rules.paths", f"{item!r} does not exist")
            rule_paths.append(rule_path)

        notifiers = {CONSOLE: NotifierConfig(CONSOLE, "console")}
        tables = self.typed(raw.get("notifiers", {}), dict, "notifiers")
        for name, table in tables.items():
            notifiers[name] = self.notifier(name, table)

        defaults = self.typed(raw.get("defaults", {}), dict, "defaults")
        self.check_keys(defaults, _SCHEMA["defaults"], "defaults.")
        notify = self.typed(defaults.get("notify", []), list, "defaults.notify")
        for channel in notify:
            if not isinstance(channel, str) or channel not in notifiers:
                hint = did_you_mean(str(channel), notifiers)
                raise self.error("defaults.notify", f"no notifier named {channel!r}{hint}")

        http, slack_app = self.http(raw), self.slack_app(raw)
        return Config(
            path=self.path,
            database=database,
            djangopackages=sources.pop("djangopackages"),
            sources=sources,
            project_django=project_django,
            schedule=schedule,
            history=history,
            rule_paths=tuple(rule_paths),
            default_notify=tuple(notify) or (CONSOLE,),
            notifiers=notifiers,
            http=http,
            slack_app=slack_app,
        )

    def history(self, raw: dict[str, Any]) -> HistoryConfig:
        """``[history] keep``: a duration of 8 days or more, or "forever"."""
        table = self.typed(raw.get("history", {}), dict, "history")
        self.check_keys(table, _SCHEMA["history"], "history.")
        text = self.typed(table.get("keep", "400d"), str, "history.keep")
        if text.strip().lower() == FOREVER:
            return HistoryConfig(None)
        try:
            keep = parse_duration(text)
        except ValueError as exc:
            raise self.error("history.keep", f'{exc}, or "{FOREVER}"') from None
        if keep < SHORTEST_KEEP:
            raise self.error(
                "history.keep",
                f"{text!r} is shorter than {SHORTEST_KEEP.days}d: digests and --since read a"
                f' week and more of history (or "{FOREVER}")',
            )
        return HistoryConfig(keep)

    def secrets(self, name: str, table: dict[str, Any]) -> tuple[dict[str, Any], Any]:
        """A table's values expanded; an unset ``${VAR}`` in a secret is kept aside (the
        error only when that part is used, SPEC §5), elsewhere it is the load error."""
        values: dict[str, Any] = {}
        unset: UnsetVariable | None = None
        for key, expected in _SCHEMA[name].items():
            if key not in table:
                continue
            try:
                values[key] = self.typed(table[key], expected, f"{name}.{key}")
            except _Unset as exc:
                if key not in _SECRETS:
                    raise
                unset = unset or exc.unset
        return values, unset

    def http(self, raw: dict[str, Any]) -> HttpConfig:
        table = self.typed(raw.get("http", {}), dict, "http")
        self.check_keys(table, _SCHEMA["http"], "http.")
        values, unset = self.secrets("http", table)
        listen = values.get("listen")
        if listen is not None:
            try:
                host, _ = listen_address(listen)
            except ValueError as exc:
                raise self.error("http.listen", str(exc)) from None
            if "token" not in table and not is_loopback(host):
                raise self.error(
                    "http.token",
                    f"required to listen on {listen}, which is not a loopback address"
                    " (set [http] token, or listen on 127.0.0.1)",
                )
        for key in ("token", "github_secret"):
            if key in values and not values[key]:
                raise self.error(f"http.{key}", "is empty")
        return HttpConfig(listen, values.get("token"), values.get("github_secret"), unset)

    def slack_app(self, raw: dict[str, Any]) -> SlackAppConfig | None:
        if "slack_app" not in raw:
            return None
        table = self.typed(raw["slack_app"], dict, "slack_app")
        self.check_keys(table, _SCHEMA["slack_app"], "slack_app.")
        values, unset = self.secrets("slack_app", table)
        if not {"app_token", "signing_secret"} & table.keys():
            raise self.error(
                "slack_app",
                "needs app_token (Socket Mode) or signing_secret (HTTP mode) to receive commands",
            )
        api_url = values.get("api_url", DEFAULT_SLACK_API)
        if not re.match(r"https?://[^/\s]", api_url):
            raise self.error("slack_app.api_url", "expected an http(s) URL")
        channels = values.get("allow_channels", [])
        if not all(isinstance(c, str) and c for c in channels):
            raise self.error("slack_app.allow_channels", "expected a list of channel ids")
        return SlackAppConfig(
            values.get("app_token"),
            values.get("bot_token"),
            values.get("signing_secret"),
            api_url if api_url.endswith("/") else api_url + "/",
            tuple(channels),
            unset,
        )

    def sources(self, raw: dict[str, Any]) -> dict[str, SourceConfig]:
        """Every ``[sources.NAME]`` table, djangopackages first, defaults for those absent."""
        tables = self.typed(raw.get("sources", {}), dict, "sources")
        known = source_tables()
        self.check_keys(tables, known, "sources.")
        return {name: self.source(name, tables.get(name, {}), known[name]) for name in known}

    def source(self, name: str, table: Any, keys: dict[str, type]) -> SourceConfig:
        prefix = f"sources.{name}"
        self.typed(table, dict, prefix)
        self.check_keys(table, keys, f"{prefix}.")
        default_url = SOURCES[name].url if name in SOURCES else DEFAULT_URL
        url = self.typed(table.get("url", default_url), str, f"{prefix}.url")
        if not re.match(r"https?://[^/\s]", url):
            raise self.error(f"{prefix}.url", "expected an http(s) URL")
        timeout = self.duration(
            self.typed(table.get("timeout", "30s"), str, f"{prefix}.timeout"), f"{prefix}.timeout"
        )
        if timeout <= timedelta(0):
            raise self.error(f"{prefix}.timeout", "must be longer than 0s")
        concurrency = self.typed(table.get("concurrency", 8), int, f"{prefix}.concurrency")
        if concurrency < 1:
            raise self.error(f"{prefix}.concurrency", "must be at least 1")
        enabled = self.typed(table.get("enabled", True), bool, f"{prefix}.enabled")
        own = keys.keys() - _SOURCE_KEYS.keys() - {"enabled"}
        secrets = SOURCES[name].secrets if name in SOURCES else frozenset()
        options: dict[str, Any] = {}
        unset: UnsetVariable | None = None
        for key in own & table.keys():
            try:
                options[key] = self.typed(table[key], keys[key], f"{prefix}.{key}")
            except _Unset as exc:  # a secret is needed only when this source is made (SPEC §5)
                if key not in secrets:
                    raise
                unset = unset or exc.unset
        return SourceConfig(
            url.rstrip("/"), timeout.total_seconds(), concurrency, enabled, options, unset
        )

    def project(self, raw: dict[str, Any]) -> str | None:
        """``[project] django``: the Django version the team runs, ``"X.Y"``, or None."""
        table = self.typed(raw.get("project", {}), dict, "project")
        self.check_keys(table, _SCHEMA["project"], "project.")
        if "django" not in table:
            return None
        value = table["django"]
        if isinstance(value, float | int) and not isinstance(value, bool):
            raise self.error("project.django", 'expected a string such as "5.2" (in quotes)')
        django: str = self.typed(value, str, "project.django")
        if not re.fullmatch(r"[0-9]+\.[0-9]+", django):
            raise self.error(
                "project.django", f'{django!r} is not a Django version such as "5.2" (X.Y)'
            )
        return django

    def notifier(self, name: str, table: Any) -> NotifierConfig:
        prefix = f"notifiers.{name}"
        self.typed(table, dict, prefix)
        kind = self.typed(table.get("type"), str, f"{prefix}.type") if "type" in table else None
        if kind not in NOTIFIER_TYPES:
            got = "missing" if kind is None else repr(kind)
            raise self.error(
                f"{prefix}.type",
                f"{got}; expected one of {', '.join(NOTIFIER_TYPES)}"
                f"{did_you_mean(kind or '', NOTIFIER_TYPES)}",
            )
        allowed = {**_COMMON_NOTIFIER_KEYS, **_NOTIFIER_KEYS[kind]}
        self.check_keys(table, allowed, f"{prefix}.")
        settings = {}
        unset: UnsetVariable | None = None
        for key, value in table.items():
            if key in _COMMON_NOTIFIER_KEYS:
                continue
            try:
                settings[key] = self.typed(value, allowed[key], f"{prefix}.{key}")
            except _Unset as exc:  # needed only when this notifier is made (SPEC §5)
                unset = unset or exc.unset
        severity = self.typed(table.get("min_severity", "info"), str, f"{prefix}.min_severity")
        if severity not in Severity.__members__.values():
            raise self.error(
                f"{prefix}.min_severity",
                f"{severity!r}; expected info, warning or critical"
                f"{did_you_mean(severity, [s.value for s in Severity])}",
            )
        timeout = self.duration(
            self.typed(table.get("timeout", "30s"), str, f"{prefix}.timeout"), f"{prefix}.timeout"
        )
        digest = self.typed(table.get("digest", kind == "email"), bool, f"{prefix}.digest")
        if isinstance(settings.get("to"), str):
            settings["to"] = [settings["to"]]
        if unset is None:
            try:
                from monitor.notify import notifier_class

                notifier_class(kind)(name, settings, timeout=timeout.total_seconds())
            except ValueError as exc:
                key = getattr(exc, "key", None)
                raise self.error(f"{prefix}.{key}" if key else prefix, str(exc)) from None
        return NotifierConfig(
            name, kind, Severity(severity), digest, timeout.total_seconds(), settings, unset
        )


def _text(path: Path | None) -> str | None:
    return str(path) if path else None


def _database_problem(path: Path) -> str | None:
    """Why SQLite could not keep its database (and the ``-wal``, ``-shm`` files beside it) at
    ``path``, or None."""
    real = path.resolve()
    for root in _VIRTUAL:
        if real.is_relative_to(root):
            return f"is under {root}, where no database can be kept"
    if path.is_dir():
        return "is a folder, not a database file"
    if path.exists() and not path.is_file():
        return "is not a regular file"
    folder = path.parent
    if not folder.exists():
        return f"cannot be created: the folder {str(folder)!r} does not exist"
    if not folder.is_dir():
        return f"cannot be created: {str(folder)!r} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot be written: the folder {str(folder)!r} is not writable"
    return None


_TYPE_NAMES: dict[Any, str] = {
    str: "a string",
    int: "an integer",
    bool: "true or false",
    list: "a list",
    dict: "a table",
    float: "a number",
}


def _key_lines(text: str) -> dict[str, int]:
    """Map each dotted key (``notifiers.team-slack.type``) and table to its line number."""
    lines: dict[str, int] = {}
    table: list[str] = []
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    assignment = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        match = header.match(line)
        if match:
            table = _split_key(match.group(1))
            lines.setdefault(".".join(table), number)
            continue
        match = assignment.match(line)
        if match:
            key = ".".join([*table, *_split_key(match.group(1))])
            lines.setdefault(key, number)
    return lines


def _split_key(key: str) -> list[str]:
    parts = re.findall(r'"([^"]*)"|\'([^\']*)\'|([^.\s]+)', key)
    return [next(p for p in group if p) for group in parts if any(group)]
