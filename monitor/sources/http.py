"""One polite GET of a JSON document, shared by the sources.

:class:`JsonClient` sends ``User-Agent: monitor/<version>`` and ``Accept: application/json``,
bounds concurrency with a semaphore, times out each request, caps the body size while reading
the stream, and retries what is worth retrying:

- 5xx, timeouts and connection errors: up to ``retries`` attempts in all, sleeping between
  them with exponential backoff and full jitter (base 1 s, factor 2, cap 30 s);
- 429: sleeps for ``Retry-After`` (seconds or an HTTP date, at most 60 s; backoff when it is
  missing) and gets :data:`RATE_LIMIT_EXTRA` attempts more than the others;
- anything else (other 4xx, malformed JSON, a body over the cap) fails at once.

A request keeps its concurrency slot through its retries. Once :data:`UNANSWERED_LIMIT`
requests in a row have spent their retries without any answer (refused, unreachable, timed
out), the upstream is taken to be down: the requests still waiting fail at once ("not
tried") instead of each spending its own retries and timeouts on it, so a poll of 10,000
packages against a hung upstream ends in minutes, not hours, and records its failures. Any
answer, even an error status, resets the count. Each command, and each cycle of
``monitor run``, has its own client, so the next one tries again.

A request that fails for good raises :class:`FetchError`, whose message names the subject (the
package) and the reason, e.g. ``django-otp: HTTP 503 after 3 attempts``. A 404 keeps the first
:data:`NOT_FOUND_EXCERPT` bytes of its body, so a source can tell its API's own "not found"
from a wrong URL's or a proxy's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import aiohttp
import orjson

from monitor import USER_AGENT
from monitor.errors import SourceError
from monitor.retry import retry_after

log = logging.getLogger(__name__)

HEADERS = {"User-Agent": USER_AGENT, "Accept": "application/json"}
MAX_BODY = 5 * 1024 * 1024
BACKOFF_BASE = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 30.0
RETRY_AFTER_CAP = 60.0
RATE_LIMIT_EXTRA = 2
UNANSWERED_LIMIT = 8  # requests in a row that got no answer, before the rest are not tried
NOT_FOUND_EXCERPT = 4096  # bytes of a 404's body kept (an API's own is a few dozen)
_CHUNK = 64 * 1024

Sleep = Callable[[float], Awaitable[Any]]


class FetchError(SourceError):
    """A request failed for good. ``status`` is the last HTTP status, if any answer came;
    ``duration`` the seconds spent on the request, retries included; ``body`` the start of
    a 404's body (at most :data:`NOT_FOUND_EXCERPT` bytes), else ``b""``. ``reason`` is set
    when the request failed in a way worth retrying (5xx, 429, timeout, no answer) and its
    attempts are spent: why, without the subject or the count of attempts."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 1,
        duration: float = 0.0,
        body: bytes = b"",
        reason: str | None = None,
        headers: Mapping[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.attempts = attempts
        self.duration = duration
        self.body = body
        self.reason = reason
        self.headers: Mapping[str, str] = headers or {}


@dataclass(frozen=True, slots=True)
class Fetched:
    """A decoded answer. ``status`` 304 (asked for with ``etag``) has ``data`` None: the
    document is unchanged. ``headers`` are the answer's (ETag, rate limits); ``url`` the
    final URL, after redirects."""

    data: Any
    duration: float
    attempts: int
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    url: str = ""


def decoded(fetched: Fetched, subject: str) -> Fetched:
    """``fetched`` with its body decoded; :class:`FetchError` when it is no JSON."""
    try:
        data = orjson.loads(fetched.data)  # strict JSON: NaN, Infinity, huge ints are malformed
    except orjson.JSONDecodeError as exc:
        raise FetchError(
            f"{subject}: malformed JSON: {str(exc)[:200]}",
            status=200,
            attempts=fetched.attempts,
            duration=fetched.duration,
        ) from None
    return replace(fetched, data=data)


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Full-jitter backoff before retry number ``attempt`` (1 for the first retry)."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * BACKOFF_FACTOR ** (attempt - 1))
    return rng() * ceiling


def retry_after_seconds(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, bounded to :data:`RETRY_AFTER_CAP`."""
    return retry_after(value, cap=RETRY_AFTER_CAP, now=now)


def format_size(size: int) -> str:
    mb = 1024 * 1024
    return f"{size // mb} MB" if size % mb == 0 else f"{size} bytes"


def _plural(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"


_Answer = tuple[bytes, int, Mapping[str, str], str]  # body, status, headers, final URL


@dataclass(frozen=True, slots=True)
class _Request:
    url: str
    params: Mapping[str, str | int] | None
    headers: Mapping[str, str]
    json_body: Any
    wait_on_429: bool


def _headers(
    extra: Mapping[str, str] | None, etag: str | None, *, posting: bool
) -> Mapping[str, str]:
    if not extra and etag is None and not posting:
        return HEADERS
    headers = {**HEADERS, **(extra or {})}
    if etag is not None:
        headers["If-None-Match"] = etag
    if posting:
        headers["Content-Type"] = "application/json"
    return headers


class _Retry(Exception):
    """An attempt failed in a way worth retrying."""

    def __init__(self, reason: str, *, status: int | None = None, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.wait = wait


class JsonClient:
    """GETs JSON documents for a source. ``requests_sent`` counts every attempt."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        timeout: float = 30,
        concurrency: int = 8,
        retries: int = 3,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        max_body: int = MAX_BODY,
        clock: Callable[[], float] = time.monotonic,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.session = session
        self.timeout = timeout
        self.retries = max(retries, 1)
        self.max_body = max_body
        self.requests_sent = 0
        self._unanswered = 0  # requests in a row that gave up without any answer
        self._last_unanswered = ""  # why the last of them did
        self._sleep = sleep
        self._rng = rng
        self._clock = clock
        self._semaphore = asyncio.Semaphore(concurrency)

    async def get_json(
        self,
        url: str,
        *,
        subject: str,
        params: Mapping[str, str | int] | None = None,
        attempts: int | None = None,
        headers: Mapping[str, str] | None = None,
        etag: str | None = None,
        json_body: Any = None,
        wait_on_429: bool = True,
        decode: bool = True,
    ) -> Fetched:
        """GET ``url`` (POST ``json_body`` when given) and decode its JSON body
        (``decode=False``: ``data`` is the body as received, for :func:`decoded`).

        ``subject`` starts every error message; ``attempts`` overrides ``retries`` (1: never
        retried, not even on 429). ``headers`` are sent besides the defaults; ``etag`` is
        sent as ``If-None-Match``, and a 304 answer is a :class:`Fetched` with status 304 and
        no data. ``wait_on_429=False`` fails a 429 at once (a :class:`FetchError` carrying
        the answer's headers, as every error status does) for a source that defers instead.
        """
        limit = max(attempts or self.retries, 1)
        request = _Request(
            url,
            params,
            _headers(headers, etag, posting=json_body is not None),
            json_body,
            wait_on_429,
        )
        # The slot is held across retries and their waits: an upstream in trouble gets fewer
        # requests, and a request's retries are not queued behind every request not yet sent.
        async with self._semaphore:
            start = self._clock()
            if self._unanswered >= UNANSWERED_LIMIT:
                raise FetchError(
                    f"{subject}: not tried: the last {self._unanswered} requests got no answer"
                    f" ({self._last_unanswered})",
                    attempts=0,
                )
            answer, attempt = await self._attempts(request, subject, limit, start)
        duration = self._clock() - start
        body, status, answer_headers, final_url = answer
        if status == 304:
            return Fetched(None, duration, attempt, 304, answer_headers, final_url)
        fetched = Fetched(body, duration, attempt, status, answer_headers, final_url)
        return decoded(fetched, subject) if decode else fetched

    async def _attempts(
        self, request: _Request, subject: str, limit: int, start: float
    ) -> tuple[_Answer, int]:
        """Attempts until one succeeds (its body, and how many it took) or the retries are
        spent; keeps count of requests that got no answer at all."""
        rate_limit = limit + RATE_LIMIT_EXTRA if limit > 1 else limit
        attempt = 0
        while True:
            attempt += 1
            try:
                answer = await self._attempt(request, subject, attempt, start)
            except FetchError as exc:
                if exc.status is not None:
                    self._unanswered = 0  # an answer, if an unwelcome one
                raise
            except _Retry as retry:
                if retry.status is not None:
                    self._unanswered = 0
                budget = rate_limit if retry.status == 429 else limit
                if attempt >= budget:
                    if retry.status is None:
                        self._unanswered += 1
                        self._last_unanswered = retry.reason
                    raise self._gave_up(subject, retry, attempt, start) from None
                delay = retry.wait if retry.wait is not None else backoff_delay(attempt, self._rng)
                log.debug("%s: %s; retrying in %.1fs", subject, retry.reason, delay)
                await self._sleep(delay)
            else:
                self._unanswered = 0
                return answer, attempt

    async def _attempt(
        self, request: _Request, subject: str, attempt: int, start: float
    ) -> _Answer:
        """One request: a 2xx or 304 answer, :class:`_Retry`, or :class:`FetchError`."""
        self.requests_sent += 1
        url = request.url
        answer_headers: Mapping[str, str] = {}

        def fail(message: str, status: int | None = None, body: bytes = b"") -> FetchError:
            return FetchError(
                f"{subject}: {message}",
                status=status,
                attempts=attempt,
                duration=self._clock() - start,
                body=body,
                headers=answer_headers,
            )

        try:
            async with self.session.request(
                "GET" if request.json_body is None else "POST",
                url,
                params=request.params,
                headers=request.headers,
                data=None if request.json_body is None else orjson.dumps(request.json_body),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                status = response.status
                answer_headers = dict(response.headers)
                final_url = str(response.url)
                if status == 304:
                    return b"", 304, answer_headers, final_url
                if status == 429 and not request.wait_on_429:
                    raise fail("HTTP 429 (rate limited)", status)
                if status == 429:
                    wait = retry_after_seconds(response.headers.get("Retry-After"))
                    raise _Retry("HTTP 429 (rate limited)", status=429, wait=wait)
                if status >= 500:
                    raise _Retry(f"HTTP {status}", status=status)
                if status == 404:
                    raise fail("HTTP 404 (not found)", status, await _excerpt(response))
                if not 200 <= status < 300:
                    raise fail(f"HTTP {status}", status)
                return await self._read(response, fail), status, answer_headers, final_url
        except TimeoutError:
            raise _Retry(f"timed out after {self.timeout:g}s") from None
        except aiohttp.ClientConnectorError as exc:
            raise _Retry(_connect_reason(exc)) from None
        except aiohttp.ServerDisconnectedError:
            raise _Retry("server disconnected") from None
        except aiohttp.ClientPayloadError:
            raise _Retry("incomplete response body") from None
        except (aiohttp.InvalidURL, aiohttp.TooManyRedirects) as exc:
            raise fail(f"cannot fetch {url}: {type(exc).__name__}") from None
        except aiohttp.ClientOSError as exc:
            raise _Retry(f"connection error: {exc.strerror or exc}") from None
        except aiohttp.ClientError as exc:
            raise _Retry(f"connection error: {exc or type(exc).__name__}") from None

    async def _read(
        self, response: aiohttp.ClientResponse, fail: Callable[[str, int | None], FetchError]
    ) -> bytes:
        """The body, read in chunks and abandoned as soon as it passes ``max_body``."""
        too_big = f"response body over {format_size(self.max_body)}"
        length = response.content_length
        if length is not None and length > self.max_body:
            response.close()
            raise fail(too_big, response.status)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > self.max_body:
                response.close()
                raise fail(too_big, response.status)
            chunks.append(chunk)
        return b"".join(chunks)

    def _gave_up(self, subject: str, retry: _Retry, attempts: int, start: float) -> FetchError:
        if retry.status is not None:
            message = f"{subject}: {retry.reason} after {_plural(attempts)}"
        else:
            message = f"{subject}: {retry.reason} ({_plural(attempts)})"
        return FetchError(
            message,
            status=retry.status,
            attempts=attempts,
            duration=self._clock() - start,
            reason=retry.reason,
        )


async def _excerpt(response: aiohttp.ClientResponse) -> bytes:
    """The first :data:`NOT_FOUND_EXCERPT` bytes of the body; the rest is not read."""
    chunks: list[bytes] = []
    size = 0
    while size < NOT_FOUND_EXCERPT:
        chunk = await response.content.read(NOT_FOUND_EXCERPT - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    error = exc.os_error
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {exc.host}"
    return f"cannot connect to {exc.host}: {error.strerror or error}"


class JsonSource:
    """What every built-in source holds: the API's ``base_url`` and one polite
    :class:`JsonClient` on ``session`` (the other arguments are the client's). A source
    adds its own arguments and passes the rest on."""

    def __init__(
        self,
        base_url: str,
        *,
        session: aiohttp.ClientSession,
        timeout: float = 30,
        concurrency: int = 8,
        retries: int = 3,
        sleep: Sleep = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        max_body: int = MAX_BODY,
    ):
        self.base_url = base_url.rstrip("/")
        self.concurrency = concurrency
        self._http = JsonClient(
            session,
            timeout=timeout,
            concurrency=concurrency,
            retries=retries,
            sleep=sleep,
            rng=rng,
            max_body=max_body,
        )

    @property
    def requests_sent(self) -> int:
        """Every HTTP request sent so far, retries included (for benchmarks)."""
        return self._http.requests_sent

    @requests_sent.setter
    def requests_sent(self, value: int) -> None:  # the Source protocol's is settable
        self._http.requests_sent = value


async def poll_each(
    due: Sequence[Any],
    poll_one: Callable[[Any], Awaitable[Any]],
    *,
    limit: int,
    on_part: Callable[[Any], None] | None = None,
) -> list[Any]:
    """``poll_one`` for each due watch, in order, at most ``limit`` at once; ``on_part`` is
    called as each part is known. A few workers take the watches in turn, rather than a task
    per watch waiting on the client's semaphore: a 10,000-watch poll holds ``limit``
    coroutines, not 10,000 (STYLE: memory is measured). ``poll_one`` must not raise for one
    watch's failure; an ``on_part`` that raises is the caller's error and stops the poll."""
    parts: list[Any] = [None] * len(due)
    queue = iter(enumerate(due))

    async def worker() -> None:
        for i, item in queue:  # shared: each due watch is taken by one worker
            part = await poll_one(item)
            parts[i] = part
            if on_part is not None:
                on_part(part)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(limit, len(due))):
                group.create_task(worker())
    except BaseExceptionGroup as errors:
        raise errors.exceptions[0] from None
    return parts
