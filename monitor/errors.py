"""Every error monitor raises on purpose derives from :class:`MonitorError`.

Library code raises; ``cli.py`` turns an error into a message and an exit code
(``exit_code`` on the class). The tree::

    MonitorError                      exit 1
    ├── UsageError                    exit 2  bad arguments (e.g. a slug that is not watched)
    │   └── UnknownRule                       a rule id that names no rule (mute)
    ├── ConfigError                   exit 2  bad config file (key, line, suggestion)
    ├── RulesError                    exit 2  bad rule files (a list of path:line problems)
    ├── NotWatchedError               exit 1  history/unwatch of a slug that is not watched
    ├── PackageNotFound               exit 1  the package's own URL answered the API's 404
    ├── StoreError                    exit 1  the database could not be opened, read or
    │                                         written (disk full, locked, read-only)
    ├── SourceError                   exit 1  a poll failed (network, 5xx, timeout, too big,
    │                                         a URL answering 404 that is not the API's)
    │   └── InvalidRecord                     the body is not a valid package record
    └── DeliveryError                 exit 1  a notifier could not deliver
        ├── RetryableError                    try again later (5xx, 429, timeouts, SMTP 4xx)
        └── PermanentError                    do not retry (other 4xx, SMTP 5xx, bad channel)
"""

from __future__ import annotations

from collections.abc import Iterable


class MonitorError(Exception):
    exit_code = 1


class UsageError(MonitorError):
    exit_code = 2


class UnknownRule(UsageError):
    """A rule id that names no loaded rule (nor a built-in one)."""


class ConfigError(MonitorError):
    """A config problem; ``str()`` is ``path:line: message`` when the line is known."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        where = path or ""
        if path and line:
            where = f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class RulesError(MonitorError):
    """One or more problems in rule files, each already formatted as ``path:line: message``."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class NotWatchedError(MonitorError):
    pass


class PackageNotFound(MonitorError):
    """A name no source knows; ``hint`` says what to type instead (``pypi:NAME``)."""

    def __init__(
        self,
        slug: str,
        suggestions: list[str] | None = None,
        *,
        where: str = "djangopackages",
        hint: str | None = None,
    ):
        self.slug = slug
        self.suggestions = suggestions or []
        self.hint = hint
        super().__init__(f"package {slug!r} not found on {where}")


class StoreError(MonitorError):
    """SQLite failed for a reason outside the program (disk full, locked, read-only file);
    ``str()`` names the database file and what SQLite said."""


class SourceError(MonitorError):
    pass


class InvalidRecord(SourceError):
    def __init__(self, package: str, field: str | None, problem: str):
        self.package = package
        self.field = field
        where = f"field {field!r}" if field else "record"
        super().__init__(f"{package}: {where}: {problem}")


class DeliveryError(MonitorError):
    pass


class RetryableError(DeliveryError):
    def __init__(self, message: str, *, retry_after: float | None = None):
        self.retry_after = retry_after
        super().__init__(message)


class PermanentError(DeliveryError):
    pass


def did_you_mean(name: object, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the choice closest to a misspelt ``name``, else ``""``.

    Closeness is difflib's ratio against the whole choice, or against one of its ``-``/``_``
    parts (``slak`` → ``team-slack``), or ``name`` standing inside the choice (``email`` →
    ``team-email``): the best score of at least 0.6 wins.
    """
    if not isinstance(name, str) or not name:
        return ""
    import difflib  # only when there is an error to explain
    import re

    def score(choice: str) -> float:
        if len(name) >= 3 and name in choice:
            return 0.9
        whole = difflib.SequenceMatcher(None, name, choice).ratio()
        parts = [p for p in re.split(r"[-_.]", choice) if len(p) >= 3 and p != choice]
        best_part = max((difflib.SequenceMatcher(None, name, p).ratio() for p in parts), default=0)
        return max(whole, best_part if best_part >= 0.75 else 0.0)

    scored = sorted(((score(c), c) for c in dict.fromkeys(choices)), key=lambda sc: -sc[0])
    if not scored or scored[0][0] < 0.6:
        return ""
    return f" (did you mean '{scored[0][1]}'?)"
