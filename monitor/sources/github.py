"""The GitHub source (SPEC §2.1): ``GET /repos/OWNER/REPO`` for each watch whose
djangopackages ``repo_url`` is a GitHub repository.

Each request sends the stored ``ETag`` as ``If-None-Match``: a 304 is ``unchanged`` and is not
parsed. Redirects (a renamed or transferred repository) are followed, so ``github.repo`` is
the answer's ``full_name``. A 404 with GitHub's own body (a JSON object with ``message``) is
data, ``github.found`` false; any other 404 (a wrong ``url``) fails, naming the key to check.

Rate limits are obeyed, never fought: when an answer says ``x-ratelimit-remaining: 0``, or a
403/429 carries ``retry-after`` or ``x-ratelimit-remaining: 0`` (any 429 counts), the source
is *limited* until the later of ``x-ratelimit-reset`` and now + ``retry-after`` (now +
:data:`DEFAULT_DEFER` when neither tells a time to come; at most :data:`MAX_DEFER` ahead).
While limited no request is sent: every watch not yet sent is ``deferred`` until then. The
answer that said so is still used when it was a 200 (or 304, or 404); a refused one (403/429)
defers its watch too. Requests already in flight finish. ``limited_until`` survives the poll:
the caller persists it and passes it back, so the next process does not ask either.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import orjson

from monitor.errors import InvalidRecord
from monitor.retry import retry_after
from monitor.snapshot import check_bool, check_count, check_datetime, check_text
from monitor.sources import Context, Due, FieldKind, Part, PartStatus, Source
from monitor.sources.djangopackages import _shown
from monitor.sources.http import FetchError, JsonSource, poll_each

log = logging.getLogger(__name__)

DEFAULT_URL = "https://api.github.com"
URL_KEY = "[sources.github] url"  # the config key a wrong URL is fixed in
API_VERSION = "2022-11-28"
DEFAULT_DEFER = timedelta(seconds=60)  # GitHub's advice when no header tells how long
MAX_DEFER = timedelta(hours=1)  # the primary window: no header may stop polling for longer

FIELDS: Mapping[str, FieldKind] = {
    "github.found": FieldKind.BOOL,
    "github.repo": FieldKind.TEXT,
    "github.archived": FieldKind.BOOL,
    "github.stars": FieldKind.INT,
    "github.forks": FieldKind.INT,
    "github.subscribers": FieldKind.INT,
    "github.open_issues": FieldKind.INT,
    "github.pushed_at": FieldKind.DATETIME,
    "github.license": FieldKind.TEXT,
}
NOT_FOUND_VALUES: Mapping[str, Any] = {**dict.fromkeys(FIELDS), "github.found": False}

# GitHub's own names for owners and repositories; the first path segments below are pages
# of github.com, not owners (no account may take these names).
_OWNER = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")
_REPO = re.compile(r"[A-Za-z0-9._-]{1,100}")
_NOT_OWNERS = frozenset(
    {"orgs", "users", "sponsors", "apps", "marketplace", "topics", "collections", "settings",
     "features", "explore", "notifications", "search", "login", "about", "pricing", "site"}
)  # fmt: skip
_HOSTS = frozenset({"github.com", "www.github.com"})

__all__ = ["DEFAULT_URL", "FIELDS", "GitHubSource", "github_repo"]


def github_repo(url: Any) -> str | None:
    """``OWNER/REPO`` of a ``http(s)://github.com/OWNER/REPO`` URL (also ``www.github.com``;
    a trailing ``.git`` or ``/`` dropped, further path segments such as ``/tree/main``
    ignored, case kept); None for anything else."""
    if not isinstance(url, str) or len(url) > 2000:
        return None
    try:
        parts = urlsplit(url.strip())
        host, _ = parts.hostname, parts.port
    except ValueError:  # an invalid port, an unclosed bracket
        return None
    if parts.scheme.lower() not in ("http", "https") or (host or "").lower() not in _HOSTS:
        return None
    segments = parts.path.split("/")[1:3]
    if len(segments) < 2:
        return None
    owner, repo = segments
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    if (
        not _OWNER.fullmatch(owner)
        or owner.lower() in _NOT_OWNERS
        or not _REPO.fullmatch(repo)
        or repo in (".", "..")
    ):
        return None
    return f"{owner}/{repo}"


class GitHubSource(JsonSource):
    """Repositories from the GitHub REST API at ``base_url`` (:data:`DEFAULT_URL`) through
    ``session``; ``token`` is sent as a bearer token (5,000 requests an hour instead of 60).

    ``clock`` gives the aware now, against which ``limited_until`` (from the last process,
    when given) is read; after a poll ``limited_until`` is when the rate limit ends if the
    source is (or was during the poll) limited, else None.
    """

    name = "github"
    fields: Mapping[str, FieldKind] = FIELDS

    @classmethod
    def from_config(cls, settings: Any, context: Context) -> GitHubSource:
        """Built from ``[sources.github]``; the token's variable is needed only now, and the
        rate-limit reset saved by the last run is honoured."""
        from monitor.sources import kept_limit

        settings.check_environment()
        return cls(
            settings.url,
            token=settings.token or None,
            clock=context.clock,
            limited_until=kept_limit(context.store, cls.name),
            **context.client_options(settings),
        )

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        token: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        limited_until: datetime | None = None,
        **client: Any,
    ):
        super().__init__(base_url, **client)
        self.limited_until: datetime | None = None
        self._clock = clock
        self._headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
        }
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        if limited_until is not None:
            self._limit(_aware(limited_until))

    def key(self, watch: str, values: Mapping[str, Any]) -> str | None:
        """``OWNER/REPO`` of the watch's djangopackages ``repo_url`` when it is GitHub's,
        else of the repository PyPI names (``pypi.repository``: a ``pypi:NAME`` watch)."""
        return github_repo(values.get("repo_url")) or github_repo(values.get("pypi.repository"))

    def repo_url(self, key: str) -> str:
        owner, _, repo = key.partition("/")
        return f"{self.base_url}/repos/{quote(owner, safe='')}/{quote(repo, safe='')}"

    def limited(self) -> bool:
        """Whether no request may be sent now."""
        return self.limited_until is not None and self._clock() < self.limited_until

    async def poll(
        self, due: Sequence[Due], on_part: Callable[[Part], None] | None = None
    ) -> list[Part]:
        """A :class:`Part` per due watch, in order; ``on_part`` is called as each is known.
        At most ``concurrency`` requests are in flight; each is sent only if the source is
        not limited by then."""
        if self.limited_until is not None and not self.limited():
            self.limited_until = None  # over: a new limit will say so
        return await poll_each(due, self._poll_one, limit=self.concurrency, on_part=on_part)

    async def _poll_one(self, due: Due) -> Part:
        if self.limited():
            return self._deferred(due)
        subject = f"{due.watch}: GitHub {due.key}"
        start = time.monotonic()
        try:
            if not _is_key(due.key):
                raise InvalidRecord(subject, None, "not an OWNER/REPO repository key")
            fetched = await self._http.get_json(
                self.repo_url(due.key),
                subject=subject,
                headers=self._headers,
                etag=due.state.etag,
                wait_on_429=False,
            )
            self._note(fetched.headers, fetched.status)
            if fetched.status == 304:
                etag = _header(fetched.headers, "etag") or due.state.etag
                return self._part(
                    due,
                    PartStatus.UNCHANGED,
                    etag=etag,
                    fingerprint=due.state.fingerprint,
                    duration=fetched.duration,
                )
            values = repo_values(fetched.data, subject)
            etag = _header(fetched.headers, "etag")
            return self._found(due, values, etag, fetched.duration)
        except FetchError as exc:
            return self._failed_fetch(due, exc, subject)
        except InvalidRecord as exc:
            return self._failed(due, str(exc), time.monotonic() - start)
        except Exception as exc:  # a bug must not fail the other watches of the poll
            log.exception("%s: unexpected error while polling", subject)
            error = f"{subject}: unexpected error: {exc!r}"
            return self._failed(due, error, time.monotonic() - start)

    def _failed_fetch(self, due: Due, exc: FetchError, subject: str) -> Part:
        if self._note(exc.headers, exc.status) and exc.status in (403, 429):
            return self._deferred(due)
        if exc.status == 404:
            if _is_github_404(exc.body):
                return self._found(due, dict(NOT_FOUND_VALUES), None, exc.duration)
            error = (
                f"{subject}: {_shown(self.base_url)} answers 404 without GitHub's"
                f' {{"message": ...}} body: check `{URL_KEY}`'
            )
            return self._failed(due, error, exc.duration)
        return self._failed(due, str(exc), exc.duration)

    # -- rate limits -----------------------------------------------------------------------

    def _note(self, headers: Mapping[str, str], status: int | None) -> bool:
        """Whether an answer with ``headers`` and ``status`` limits the source (then
        ``limited_until`` is set)."""
        until = self._limit_of(headers, status)
        if until is None:
            return False
        self._limit(until)
        log.info("GitHub: rate limited until %s", self.limited_until)
        return True

    def _limit_of(self, headers: Mapping[str, str], status: int | None) -> datetime | None:
        """When the limit an answer signals ends, or None when it signals none."""
        lowered = {name.lower(): value for name, value in headers.items()}
        exhausted = lowered.get("x-ratelimit-remaining", "").strip() == "0"
        wait = lowered.get("retry-after") if status in (403, 429) else None
        if not (exhausted or wait is not None or status == 429):
            return None
        now = self._clock()
        ends: list[datetime] = []
        seconds = retry_after(wait, cap=MAX_DEFER.total_seconds(), now=now)
        if seconds is not None:
            ends.append(now + timedelta(seconds=seconds))
        reset = _unix_time(lowered.get("x-ratelimit-reset"))
        if exhausted and reset is not None:
            ends.append(reset)
        until = max(ends, default=now)
        if until <= now:
            until = now + DEFAULT_DEFER
        return min(until, now + MAX_DEFER)

    def _limit(self, until: datetime) -> None:
        until = min(until, self._clock() + MAX_DEFER)
        if self.limited_until is None or until > self.limited_until:
            self.limited_until = until

    # -- parts -----------------------------------------------------------------------------

    def _part(self, due: Due, status: PartStatus, **kwargs: Any) -> Part:
        return Part(due.watch, self.name, status, **kwargs)

    def _deferred(self, due: Due) -> Part:
        return self._part(due, PartStatus.DEFERRED, until=self.limited_until)

    def _failed(self, due: Due, error: str, duration: float) -> Part:
        return self._part(due, PartStatus.FAILED, error=error, duration=duration)

    def _found(self, due: Due, values: dict[str, Any], etag: str | None, duration: float) -> Part:
        return self._part(
            due,
            PartStatus.OK,
            values=values,
            etag=etag,
            fingerprint=_fingerprint(values),
            duration=duration,
        )


def repo_values(data: Any, subject: str) -> dict[str, Any]:
    """The ``github.*`` fields of a ``GET /repos/OWNER/REPO`` body. Raises
    :class:`InvalidRecord` naming ``subject`` (the watch and the repository) and the field."""
    if type(data) is not dict:
        raise InvalidRecord(subject, None, f"expected a JSON object, got {type(data).__name__}")
    full_name = data.get("full_name")
    if type(full_name) is not str:
        raise InvalidRecord(subject, "full_name", "expected OWNER/REPO")
    return {
        "github.found": True,
        "github.repo": full_name,
        "github.archived": check_bool(subject, "archived", data.get("archived")),
        "github.stars": check_count(subject, "stargazers_count", data.get("stargazers_count")),
        "github.forks": check_count(subject, "forks_count", data.get("forks_count")),
        "github.subscribers": check_count(
            subject, "subscribers_count", data.get("subscribers_count")
        ),
        "github.open_issues": check_count(
            subject, "open_issues_count", data.get("open_issues_count")
        ),
        "github.pushed_at": check_datetime(subject, "pushed_at", data.get("pushed_at")),
        "github.license": _license(subject, data.get("license")),
    }


def _license(subject: str, value: Any) -> str | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise InvalidRecord(subject, "license", "expected an object or null")
    spdx = check_text(subject, "license.spdx_id", value.get("spdx_id"))
    return None if spdx == "NOASSERTION" else spdx


def _fingerprint(values: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(orjson.dumps(values, option=orjson.OPT_SORT_KEYS)).digest()[:16]


def _is_key(key: str) -> bool:
    owner, _, repo = key.partition("/")
    return bool(owner) and bool(repo) and "/" not in repo


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def _unix_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return None


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _is_github_404(body: bytes) -> bool:
    """Whether a 404's body is GitHub's own: a JSON object with ``message``."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(data, dict) and "message" in data


if TYPE_CHECKING:

    def _is_a_source(source: GitHubSource) -> Source:
        return source
