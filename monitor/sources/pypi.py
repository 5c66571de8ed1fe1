"""The PyPI source (SPEC §2.1): the ``pypi.*`` fields of a project (SPEC §3.1).

Each due watch costs two requests, sent concurrently:

- ``GET {url}/pypi/NAME/json``, the JSON API: every field but ``pypi.status``;
- ``GET {url}/simple/NAME/`` with ``Accept: application/vnd.pypi.simple.v1+json`` (PEP 691),
  only for ``project-status`` (PEP 792): ``pypi.status``, ``active`` when the answer has
  none, and when the Simple API answers 404.

Both are conditional: the ETag of each is kept, packed as a JSON pair in the one
``PartState.etag``, and sent back as ``If-None-Match``. Two 304s make an ``unchanged`` part,
with no body to parse. One 304 takes that half's values from the stored ones; so an ETag is
only sent for a half whose values are stored (else a 304 would leave its fields unknown).

A 404 of the JSON API is ``not_found`` (every field None); the cycle decides what it means
for the watch. Any other failure of either request (after the client's retries), and a body
that is malformed, over the size cap or of the wrong shape, fails the part with a message
naming the watch, PyPI and, for a bad value, the API's field (``info.version``).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import orjson
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from monitor.errors import InvalidRecord
from monitor.names import PROJECT_NAME, is_pypi_watch, project_of
from monitor.snapshot import check_datetime, check_text, check_texts
from monitor.snapshot import kind_of as _kind
from monitor.sources import Context, Due, FieldKind, Part, PartStatus
from monitor.sources.github import github_repo
from monitor.sources.http import (
    Fetched,
    FetchError,
    JsonSource,
    poll_each,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "https://pypi.org"
SIMPLE_ACCEPT = "application/vnd.pypi.simple.v1+json"
LICENSE_MAX = 100  # a longer ``info.license`` is the license's text, not its name

FIELDS: dict[str, FieldKind] = {
    "pypi.version": FieldKind.TEXT,
    "pypi.released_at": FieldKind.DATETIME,
    "pypi.requires_python": FieldKind.TEXT,
    "pypi.django": FieldKind.TEXTS,
    "pypi.python": FieldKind.TEXTS,
    "pypi.yanked": FieldKind.TEXTS,
    "pypi.license": FieldKind.TEXT,
    "pypi.repository": FieldKind.TEXT,
    "pypi.status": FieldKind.TEXT,
}
STATUS_FIELD = "pypi.status"  # from the Simple API; the others from the JSON API
JSON_FIELDS = tuple(name for name in FIELDS if name != STATUS_FIELD)
ACTIVE = "active"

_DJANGO = re.compile(r"Framework :: Django :: (\d{1,6})\.(\d{1,6})")
_PYTHON3 = re.compile(r"Programming Language :: Python :: 3\.(\d{1,6})")
_PROJECT_SEGMENTS = frozenset({"project", "pypi", "simple"})  # .../project/NAME/[VERSION/]
_SOURCE_LABELS = (
    "source",
    "source code",
    "repository",
    "code",
    "github",
    "homepage",
)  # .../project/NAME/[VERSION/]

__all__ = ["DEFAULT_URL", "FIELDS", "PyPISource", "pack_etags", "parse_project", "project_name"]


def project_name(url: Any) -> str | None:
    """The PEP 503-normalised project named by a PyPI URL, or None.

    The name is the segment after ``project``, ``pypi`` or ``simple`` in the path
    (``https://pypi.org/project/Django-OTP/1.2/`` names ``django-otp``), else the last
    non-empty segment. None for anything but an http(s) URL with a valid project name there
    (``https://pypi.org/project/`` names none).
    """
    if type(url) is not str or not url.strip():
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if not segments or (len(segments) == 1 and segments[0].lower() in _PROJECT_SEGMENTS):
        return None  # no path, or only ``/project/``
    name = segments[-1]
    for i, segment in enumerate(segments[:-1]):
        if segment.lower() in _PROJECT_SEGMENTS:
            name = segments[i + 1]
            break
    return _normalised(name)


def _normalised(name: str) -> str | None:
    return canonicalize_name(name) if PROJECT_NAME.fullmatch(name) else None


def pack_etags(json_etag: str | None, simple_etag: str | None) -> str | None:
    """The JSON API's and the Simple API's ETags as one string (None when neither)."""
    if json_etag is None and simple_etag is None:
        return None
    return orjson.dumps([json_etag, simple_etag]).decode()


def unpack_etags(packed: str | None) -> tuple[str | None, str | None]:
    """The pair :func:`pack_etags` made; ``(None, None)`` for anything else."""
    if not packed:
        return None, None
    try:
        pair = orjson.loads(packed)
    except orjson.JSONDecodeError:
        return None, None
    if type(pair) is not list or len(pair) != 2:
        return None, None
    return tuple(e if type(e) is str and e else None for e in pair)  # type: ignore[return-value]


class PyPISource(JsonSource):
    """PyPI's JSON and Simple APIs at ``base_url`` (:data:`DEFAULT_URL`) through
    ``session``; the other arguments are the :class:`JsonClient`'s."""

    name = "pypi"
    fields: Mapping[str, FieldKind] = FIELDS

    @classmethod
    def from_config(cls, settings: Any, context: Context) -> PyPISource:
        """Built from ``[sources.pypi]``."""
        return cls(settings.url, **context.client_options(settings))

    def __init__(self, base_url: str = DEFAULT_URL, **client: Any):
        super().__init__(base_url, **client)

    def key(self, watch: str, values: Mapping[str, Any]) -> str | None:
        """The project name: ``NAME`` of a ``pypi:NAME`` watch, else the project named by the
        record's ``pypi_url`` (normalised both ways); None when there is none."""
        if is_pypi_watch(watch):
            return _normalised(project_of(watch))
        return project_name(values.get("pypi_url"))

    def json_url(self, project: str) -> str:
        return f"{self.base_url}/pypi/{quote(project, safe='')}/json"

    def simple_url(self, project: str) -> str:
        return f"{self.base_url}/simple/{quote(project, safe='')}/"

    async def exists(self, project: str) -> bool:
        """Whether PyPI knows ``project`` (its JSON API answers; one request, no Simple API).
        False on a 404; any other failure raises :class:`~monitor.errors.SourceError`."""
        try:
            await self._http.get_json(self.json_url(project), subject=f"{project} (PyPI)")
        except FetchError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def poll(
        self, due: Sequence[Due], on_part: Callable[[Part], None] | None = None
    ) -> list[Part]:
        """A part per due watch, in order; ``on_part`` is called as each is known."""
        return await poll_each(due, self._poll_one, limit=self.concurrency, on_part=on_part)

    async def _poll_one(self, due: Due) -> Part:
        start = time.monotonic()
        try:
            return await self._answer(due)
        except Exception as exc:  # a bug must not fail the other watches of the poll
            log.exception("%s: unexpected error while polling PyPI", due.watch)
            error = f"{due.watch} (PyPI): unexpected error: {exc!r}"
            return self._part(
                due, PartStatus.FAILED, error=error, duration=time.monotonic() - start
            )

    async def _answer(self, due: Due) -> Part:
        stored = due.state.values or {}
        json_etag, simple_etag = unpack_etags(due.state.etag)
        # An ETag is sent only for a half whose values are stored: its 304 needs them.
        if not all(name in stored for name in JSON_FIELDS):
            json_etag = None
        if STATUS_FIELD not in stored:
            simple_etag = None
        subject = f"{due.watch} (PyPI)"
        project, simple = await asyncio.gather(
            self._get(self.json_url(due.key), subject=subject, etag=json_etag),
            self._get(
                self.simple_url(due.key),
                subject=f"{due.watch} (PyPI Simple API)",
                etag=simple_etag,
                headers={"Accept": SIMPLE_ACCEPT},
            ),
        )
        duration = max(project.duration, simple.duration)  # sent together
        if isinstance(project, FetchError):
            if project.status == 404:
                values = dict.fromkeys(FIELDS)
                return self._part(due, PartStatus.NOT_FOUND, values=values, duration=duration)
            return self._part(due, PartStatus.FAILED, error=str(project), duration=duration)
        if isinstance(simple, FetchError) and simple.status != 404:
            return self._part(due, PartStatus.FAILED, error=str(simple), duration=duration)
        etag = pack_etags(_etag(project, json_etag), _etag(simple, simple_etag))
        if project.status == 304 and isinstance(simple, Fetched) and simple.status == 304:
            return self._part(due, PartStatus.UNCHANGED, etag=etag, duration=duration)
        try:
            values = self._values(project, simple, stored, package=subject)
        except InvalidRecord as exc:
            return self._part(due, PartStatus.FAILED, error=str(exc), duration=duration)
        return self._part(due, PartStatus.OK, values=values, etag=etag, duration=duration)

    @staticmethod
    def _values(
        project: Fetched,
        simple: Fetched | FetchError,
        stored: Mapping[str, Any],
        *,
        package: str,
    ) -> dict[str, Any]:
        if project.status == 304:
            values = {name: stored[name] for name in JSON_FIELDS}
        else:
            values = parse_project(project.data, package=package)
        if isinstance(simple, FetchError):  # a 404: no project status
            values[STATUS_FIELD] = ACTIVE
        elif simple.status == 304:
            values[STATUS_FIELD] = stored[STATUS_FIELD]
        else:
            values[STATUS_FIELD] = parse_status(simple.data, package=package)
        return values

    async def _get(
        self,
        url: str,
        *,
        subject: str,
        etag: str | None,
        headers: Mapping[str, str] | None = None,
    ) -> Fetched | FetchError:
        try:
            return await self._http.get_json(url, subject=subject, etag=etag, headers=headers)
        except FetchError as exc:
            return exc

    def _part(self, due: Due, status: PartStatus, **kwargs: Any) -> Part:
        return Part(due.watch, self.name, status, **kwargs)


def _etag(answer: Fetched | FetchError, sent: str | None) -> str | None:
    """The ETag to keep after ``answer``: its own, else (a 304 without one) the one sent."""
    if isinstance(answer, FetchError):
        return None
    etag = next((v for k, v in answer.headers.items() if k.lower() == "etag"), None)
    if etag:
        return etag
    return sent if answer.status == 304 else None


# -- reading the answers: (data as decoded, package for messages) -> values, or InvalidRecord.
# Fields are named as the API names them (``info.version``), the field rules read in brackets
# where it differs from the API's by more than the prefix.


def parse_project(data: Any, *, package: str) -> dict[str, Any]:
    """The JSON API's fields (all but ``pypi.status``) from its decoded answer."""
    if type(data) is not dict:
        raise InvalidRecord(package, None, f"expected a JSON object, got {_kind(data)}")
    info = data.get("info")
    if type(info) is not dict:
        raise InvalidRecord(package, "info", f"expected an object, got {_kind(info)}")
    classifiers = check_texts(package, "info.classifiers", info.get("classifiers")) or []
    return {
        "pypi.version": check_text(package, "info.version", info.get("version")),
        "pypi.released_at": _released_at(package, data.get("urls")),
        "pypi.requires_python": (
            check_text(package, "info.requires_python", info.get("requires_python")) or None
        ),
        "pypi.django": _django(classifiers),
        "pypi.python": _python(classifiers),
        "pypi.yanked": _yanked(package, data.get("releases")),
        "pypi.license": _license(package, info),
        "pypi.repository": _repository(package, info),
    }


def parse_status(data: Any, *, package: str) -> str:
    """``project-status.status`` of a Simple API (PEP 691) answer; ``active`` when absent."""
    if type(data) is not dict:
        raise InvalidRecord(package, None, f"Simple API: expected a JSON object, got {_kind(data)}")
    status = data.get("project-status")
    if status is None:
        return ACTIVE
    if type(status) is not dict:
        raise InvalidRecord(package, "project-status", f"expected an object, got {_kind(status)}")
    return check_text(package, "project-status.status", status.get("status")) or ACTIVE


def _released_at(package: str, files: Any) -> datetime | None:
    """The earliest upload time among the files of ``info.version``."""
    if files is None:
        return None
    if type(files) is not list:
        raise InvalidRecord(package, "urls", f"expected a list, got {_kind(files)}")
    earliest: datetime | None = None
    for i, file in enumerate(files):
        key = f"urls[{i}].upload_time_iso_8601"
        if type(file) is not dict:
            raise InvalidRecord(package, f"urls[{i}]", f"expected an object, got {_kind(file)}")
        when = check_datetime(package, key, file.get("upload_time_iso_8601"))
        if when is not None and (earliest is None or when < earliest):
            earliest = when
    return earliest


def _repository(package: str, info: dict[str, Any]) -> str | None:
    """The project's GitHub repository, ``https://github.com/OWNER/REPO``, from its
    ``project_urls`` (a source-like label first: Source, Repository, Code, GitHub,
    Homepage; then any other) or ``home_page``; None when none is on GitHub. It is how a
    ``pypi:NAME`` watch finds its repository (SPEC §4)."""
    urls = info.get("project_urls")
    if urls is not None and type(urls) is not dict:
        raise InvalidRecord(package, "info.project_urls", f"expected an object, got {_kind(urls)}")
    labelled = [(str(label).strip().lower(), url) for label, url in (urls or {}).items()]
    preferred = [url for label, url in labelled if label in _SOURCE_LABELS]
    others = [url for label, url in labelled if label not in _SOURCE_LABELS]
    for url in (*preferred, *others, info.get("home_page")):
        repo = github_repo(url)
        if repo is not None:
            return f"https://github.com/{repo}"
    return None


def _django(classifiers: list[str]) -> list[str]:
    found = {(int(m[1]), int(m[2])) for c in classifiers if (m := _DJANGO.fullmatch(c))}
    return [f"{major}.{minor}" for major, minor in sorted(found)]


def _python(classifiers: list[str]) -> list[str]:
    found = {int(m[1]) for c in classifiers if (m := _PYTHON3.fullmatch(c))}
    return [f"3.{minor}" for minor in sorted(found)]


def _yanked(package: str, releases: Any) -> list[str]:
    """Versions with at least one file, all of them yanked, sorted by version (versions
    that are not PEP 440 come last, by text)."""
    if releases is None:
        return []
    if type(releases) is not dict:
        raise InvalidRecord(package, "releases", f"expected an object, got {_kind(releases)}")
    yanked = []
    for version, files in releases.items():
        if type(files) is not list:
            raise InvalidRecord(package, f'releases["{version[:40]}"]', "expected a list of files")
        if files and _all_yanked(package, version, files):
            yanked.append(version)
    return sorted(yanked, key=_version_order)


def _all_yanked(package: str, version: str, files: list[Any]) -> bool:
    for i, file in enumerate(files):
        flag = file.get("yanked") if type(file) is dict else None
        if flag is True:
            continue
        if flag is False:
            return False
        where = f'releases["{version[:40]}"][{i}]'
        if type(file) is not dict:
            raise InvalidRecord(package, where, f"expected an object, got {_kind(file)}")
        if flag is not None:
            raise InvalidRecord(
                package, f"{where}.yanked", f"expected true or false, got {_kind(flag)}"
            )
        return False  # no flag: not yanked
    return True


def _version_order(version: str) -> tuple[int, Version | str]:
    try:
        return 0, Version(version)
    except InvalidVersion:
        return 1, version


def _license(package: str, info: dict[str, Any]) -> str | None:
    expression = check_text(package, "info.license_expression", info.get("license_expression"))
    if expression and expression.strip():
        return expression
    text = check_text(package, "info.license", info.get("license"))
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > LICENSE_MAX or "\n" in text or "\r" in text:
        return None
    return text
