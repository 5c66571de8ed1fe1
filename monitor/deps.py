"""Dependency files: what a project requires, read from disk alone (SPEC §4, ``watch -r FILE``).

:func:`read_dependencies` reads one file and returns a :class:`DependencyFile`: the names to
watch (:class:`Wanted`, PEP 503-normalised, with the pinned version where there is one) and
what was left out and why (:class:`Skipped`). It never touches the network and never evaluates
anything: deciding what a name maps to on djangopackages or PyPI is the caller's business.

The kind of file comes from its name (:data:`KINDS`):

- ``requirements`` (any ``*.txt`` or ``*.in``), read as pip reads it: comments (a ``#`` at the
  start or after whitespace), line continuations, ``-r``/``--requirement`` includes (relative to
  the including file, each file read once, a cycle an error), ``-c``/``--constraint`` files
  (their ``==`` pins fill the pins of names required elsewhere; a name only constrained is not
  wanted), global options (``--index-url``, ``--find-links``, ``--pre``, …) and per-requirement
  options (``--hash=…``) ignored. ``-e`` lines, URL requirements (``name @ https://…``, bare
  ``https://…``/``git+https://…``) and local paths (``./pkg``, ``/abs``, ``file:``, a bare
  ``*.whl`` or sdist file) are skipped with the reason; so is a line ``packaging`` cannot parse
  (with its message), an unknown option and a remote ``-r https://…`` include. As in pip, a
  ``-r`` inside a constraints file reads requirements, and ``${VAR}`` is not expanded (this
  module reads no environment; such a line is usually a URL and skipped anyway).
- ``pyproject`` (``pyproject.toml``): ``[project] dependencies``, every extra of
  ``[project.optional-dependencies]``, every group of ``[dependency-groups]`` (PEP 735; an
  ``{include-group = …}`` must name a group of the table and must not loop, and since every
  group is read, what it includes is wanted under the group that lists it),
  ``[tool.poetry.dependencies]`` (without ``python``), ``[tool.poetry.group.NAME.dependencies]``
  and the legacy ``[tool.poetry.dev-dependencies]``. A Poetry value is a constraint string (a
  bare version such as ``"1.2.3"`` means exactly that version, so it is a pin, as is
  ``"==1.2.3"`` and ``"=1.2.3"``; ``"^1.2"`` is not), a table (``version``; ``git``, ``path``
  or ``url`` tables are skipped) or a list of such tables (each one read in turn). The
  project's own name (``[project] name``, ``[tool.poetry] name``) is never wanted: a
  self-reference such as ``acme[s3,sentry]`` is skipped as "the project itself".
- ``uv.lock`` and ``poetry.lock``: every locked ``[[package]]``, pinned at its locked version.
  Packages from a registry (uv) or from PyPI or a private index (Poetry ``legacy``) are wanted;
  the project itself (uv ``editable``/``virtual`` ``"."``), other editable, path and directory
  sources, git and URL sources are skipped with the reason.

Environment markers are kept in :attr:`Wanted.requirement` but not evaluated: a dependency
listed only for another platform or Python (``pywin32; sys_platform == "win32"``) is still a
dependency of the project, and its health matters to whoever deploys there.

A name is wanted once: the first occurrence keeps its place, text and ``where``, and a pin
found later (another line, another section, a constraints file) fills a missing pin but never
replaces one. A version is pinned when the requirement has exactly one ``==`` specifier and it
is not a wildcard (``==1.*`` is not a pin); other specifiers may stand beside it
(``>=4.2,==4.2.7`` pins ``4.2.7``).

``where`` names the file as it was given when that path is relative, else by its base name;
an included file is named by its path joined to the including file's (``requirements/base.txt:3``,
``../constraints.txt`` normalised), a TOML file by its table (lock files have no line numbers).

Requirement syntax is parsed by ``packaging`` alone; the only text handling here is the
requirements-file layer around it (comments, continuations, options), which is pip's, not
PEP 508's.

Bounds (STYLE 17): a file larger than :data:`MAX_BYTES`, more than :data:`MAX_FILES` files
reached through ``-r``/``-c``, TOML nested past Python's recursion limit and
``include-group`` chains deeper than :data:`MAX_GROUP_DEPTH` are a
:class:`DependencyFileError`, never a hang.
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from monitor.errors import MonitorError

__all__ = [
    "KINDS",
    "MAX_BYTES",
    "MAX_FILES",
    "MAX_GROUP_DEPTH",
    "DependencyFile",
    "DependencyFileError",
    "Skipped",
    "Wanted",
    "read_dependencies",
]

MAX_BYTES = 10_000_000  # one file; a large monorepo's uv.lock is a few MB
MAX_FILES = 100  # files reached through -r/-c from one requirements file
MAX_GROUP_DEPTH = 50  # nested include-group levels in [dependency-groups]

KINDS = ("requirements", "pyproject", "uv.lock", "poetry.lock")
_KIND_HELP = "requirements*.txt (or any *.txt / *.in), pyproject.toml, uv.lock, poetry.lock"

# Reasons a requirement is skipped (the output table's "skipped and why").
EDITABLE = "editable install (-e)"
URL = "URL requirement"
LOCAL_PATH = "local path"
GIT = "git source"
ITSELF = "the project itself"
REMOTE_INCLUDE = "remote include not read"


class DependencyFileError(MonitorError):
    """A dependency file that cannot be read as its kind; ``str()`` is ``file[:line]: what``."""

    exit_code = 2

    def __init__(self, message: str, *, path: str, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class Wanted:
    """One requirement that should be watched."""

    name: str  # PEP 503-normalised, e.g. "django-otp"
    pinned: str | None  # the one `==X` (no wildcard) or the locked version, else None
    requirement: str  # the text as written, markers included
    where: str  # "requirements.txt:12", "pyproject.toml [dependency-groups] dev", "uv.lock"


@dataclass(frozen=True, slots=True)
class Skipped:
    """A requirement that names no package to watch (editable, URL, path, invalid...)."""

    requirement: str
    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class DependencyFile:
    path: Path
    kind: str  # one of KINDS
    wanted: tuple[Wanted, ...]  # one per name, in order of first appearance
    skipped: tuple[Skipped, ...]


def read_dependencies(path: Path) -> DependencyFile:
    """What the dependency file at ``path`` requires; :class:`DependencyFileError` when it
    cannot be read (missing, too big, not UTF-8, not TOML, an include cycle, an unknown kind)."""
    path = Path(path)
    display = _display(path)
    kind = _kind(path, display)
    found = _Found()
    _READERS[kind](path, display, found)
    return DependencyFile(path, kind, found.result(), tuple(found.skipped))


def _kind(path: Path, display: str) -> str:
    name = path.name.lower()
    if name in ("uv.lock", "poetry.lock"):
        return name
    if name == "pyproject.toml":
        return "pyproject"
    if name.endswith((".txt", ".in")):
        return "requirements"
    raise DependencyFileError(
        f"not a dependency file I can read; expected {_KIND_HELP}", path=display
    )


def _display(path: Path) -> str:
    """The file as the user named it when relative, else its base name."""
    return path.name if path.is_absolute() else path.as_posix()


@dataclass
class _Found:
    """What a reader finds, in order; :meth:`result` applies the de-duplication rule."""

    own: set[str] = field(default_factory=set)  # the project's own names, never wanted
    wanted: dict[str, Wanted] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    constraint_pins: dict[str, str] = field(default_factory=dict)

    def want(self, name: str, pinned: str | None, requirement: str, where: str) -> None:
        if name in self.own:
            self.skip(requirement, where, ITSELF)
            return
        first = self.wanted.get(name)
        if first is None:
            self.wanted[name] = Wanted(name, pinned, requirement, where)
        elif first.pinned is None and pinned is not None:
            self.wanted[name] = replace(first, pinned=pinned)

    def skip(self, requirement: str, where: str, reason: str) -> None:
        self.skipped.append(Skipped(requirement, where, reason))

    def add_pep508(self, text: str, where: str) -> None:
        """One PEP 508 string (or a pip line's requirement part): wanted or skipped."""
        parsed = _parse(text)
        if isinstance(parsed, str):
            self.skip(text, where, parsed)
        else:
            self.want(canonicalize_name(parsed.name), _pin(parsed.specifier), text, where)

    def result(self) -> tuple[Wanted, ...]:
        pins = self.constraint_pins
        return tuple(
            replace(w, pinned=pins[w.name]) if w.pinned is None and w.name in pins else w
            for w in self.wanted.values()
        )


# --- requirements as packaging sees them -------------------------------------------------

# How a pip line that is not a PEP 508 requirement starts (pip's own tests, not PEP 508's).
_URL_START = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_PATH_STARTS = (".", "/", "~", "\\", "file:")
_ARCHIVES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".tar", ".zip")


def _parse(text: str) -> Requirement | str:
    """The parsed requirement, or the reason it names no package to watch."""
    if text.startswith("file:"):
        return LOCAL_PATH
    if _URL_START.match(text):
        return URL
    if text.startswith(_PATH_STARTS) or _DRIVE.match(text):
        return LOCAL_PATH
    if text.lower().endswith(_ARCHIVES) and not any(c in text for c in " @;"):
        return f"{LOCAL_PATH} (archive file)"  # a bare `pkg-1.0.tar.gz` is pip's, not a name
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        return f"not a valid requirement: {str(exc).splitlines()[0]}"
    if req.url:
        return LOCAL_PATH if req.url.startswith("file:") else URL
    return req


def _pin(specifier: SpecifierSet) -> str | None:
    exact = [s for s in specifier if s.operator == "=="]
    if len(exact) == 1 and not exact[0].version.endswith(".*"):
        return exact[0].version
    return None


def _valid_name(name: str) -> bool:
    """A bare project name (a Poetry key, a lock file's ``name``), checked by packaging."""
    try:
        req = Requirement(name)
    except InvalidRequirement:
        return False
    return req.name == name and not (req.extras or req.specifier or req.url or req.marker)


# --- requirements files --------------------------------------------------------------------

# pip's comment rule: `#` at the start of a line or after whitespace (so `#egg=` in a URL stays).
_COMMENT = re.compile(r"(^|\s+)#.*$")

_INCLUDE = {"-r": False, "--requirement": False, "-c": True, "--constraint": True}
_EDITABLE = ("-e", "--editable")
_IGNORED_OPTIONS = frozenset(
    {
        "-i",
        "--index-url",
        "--extra-index-url",
        "--no-index",
        "-f",
        "--find-links",
        "--pre",
        "--no-binary",
        "--only-binary",
        "--prefer-binary",
        "--require-hashes",
        "--trusted-host",
        "--use-feature",
        "-Z",
        "--always-unzip",
        # per-requirement options, should one stand alone on a line
        "--hash",
        "--config-settings",
        "--global-option",
        "--install-option",
    }
)


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """(first physical line number, line) with continuations joined and comments removed."""
    joined: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not joined:
            start = number
        if line.endswith("\\") and not _COMMENT.match(line):
            joined.append(line[:-1])
            continue
        # a comment ending a continuation stays a comment once joined (as in pip)
        joined.append(" " + line if joined and _COMMENT.match(line) else line)
        logical = _COMMENT.sub("", "".join(joined)).strip()
        joined = []
        if logical:
            yield start, logical
    if joined:  # a continuation on the last line
        logical = _COMMENT.sub("", "".join(joined)).strip()
        if logical:
            yield start, logical


def _split_options(line: str) -> str:
    """The requirement part of a requirement line: the words before the first option (pip's
    ``break_args_options``), so ``--hash=…`` and the like fall away."""
    words: list[str] = []
    for word in line.split(" "):
        if word.startswith("-"):
            break
        words.append(word)
    return " ".join(words).strip()


@dataclass
class _RequirementsReader:
    found: _Found
    stack: list[tuple[Path, str]] = field(default_factory=list)  # files being read: (key, shown)
    done: set[tuple[Path, bool]] = field(default_factory=set)  # (file, as constraints)

    def read(self, path: Path, display: str, constraint: bool, at: _At | None = None) -> None:
        key = path.resolve()
        keys = [k for k, _ in self.stack]
        if key in keys and at is not None:
            loop = [shown for _, shown in self.stack[keys.index(key) :]]
            raise DependencyFileError(
                f"include cycle: {' -> '.join([*loop, display])}", path=at.path, line=at.line
            )
        if (key, constraint) in self.done:
            return  # read already (a diamond of includes): nothing new in it
        if len(self.done) >= MAX_FILES:
            where = at or _At(display, None)
            raise DependencyFileError(
                f"more than {MAX_FILES} files included", path=where.path, line=where.line
            )
        self.done.add((key, constraint))
        text = _read_text(path, display, at)
        self.stack.append((key, display))
        for number, line in _logical_lines(text):
            here = _At(display, number)
            if line.startswith("-"):
                self._option(path, line, here, constraint)
            else:
                self._requirement(_split_options(line), here, constraint)
        self.stack.pop()

    def _requirement(self, text: str, here: _At, constraint: bool) -> None:
        if not constraint:
            self.found.add_pep508(text, str(here))
            return
        parsed = _parse(text)
        if isinstance(parsed, Requirement):
            pin = _pin(parsed.specifier)
            if pin is not None:
                self.found.constraint_pins.setdefault(canonicalize_name(parsed.name), pin)
        elif parsed.startswith("not a valid"):
            self.found.skip(text, str(here), parsed)
        # a URL or path constraint names no version: nothing to pin

    def _option(self, path: Path, line: str, here: _At, constraint: bool) -> None:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.found.skip(line, str(here), f"not a valid option line: {exc}")
            return
        name, value = _option_value(words)
        if name in _INCLUDE:
            self._include(path, line, name, value, here)
        elif name in _EDITABLE:
            if not constraint:
                self.found.skip(line, str(here), EDITABLE)
        elif name not in _IGNORED_OPTIONS:
            self.found.skip(line, str(here), f"unknown option {name}")

    def _include(self, path: Path, line: str, name: str, value: str | None, here: _At) -> None:
        if not value:
            self.found.skip(line, str(here), f"{name} needs a file name")
            return
        if _URL_START.match(value):
            self.found.skip(line, str(here), REMOTE_INCLUDE)
            return
        target = Path(value)
        if target.is_absolute():
            shown = target.as_posix()
        else:
            shown = os.path.normpath(os.path.join(os.path.dirname(here.path), value))
            shown = Path(shown).as_posix()
            target = path.parent / target
        self.read(target, shown, _INCLUDE[name], at=here)


def _option_value(words: list[str]) -> tuple[str, str | None]:
    """(option, its value) of an option line: ``-r x``, ``-rx``, ``--requirement=x``."""
    first = words[0]
    rest = words[1] if len(words) > 1 else None
    if first.startswith("--"):
        name, eq, value = first.partition("=")
        return name, value if eq else rest
    if len(first) > 2:  # -rfile, -ihttps://…
        return first[:2], first[2:]
    return first, rest


@dataclass(frozen=True)
class _At:
    path: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


def _read_requirements(path: Path, display: str, found: _Found) -> None:
    _RequirementsReader(found).read(path, display, constraint=False)


# --- reading files -------------------------------------------------------------------------


def _read_text(path: Path, display: str, at: _At | None = None) -> str:
    """The file's text, bounded; errors name the including line when there is one."""
    place = at or _At(display, None)
    what = f"included file {display!r}" if at else "file"

    def fail(message: str) -> DependencyFileError:
        return DependencyFileError(message, path=place.path, line=place.line)

    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise fail(f"cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise fail(f"{what} is larger than {MAX_BYTES:,} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DependencyFileError(
            f"not UTF-8 (byte 0x{data[exc.start]:02x})", path=display, line=line
        ) from None


def _read_toml(path: Path, display: str) -> dict[str, Any]:
    text = _read_text(path, display)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DependencyFileError(f"not valid TOML: {exc}", path=display) from None
    except RecursionError:
        raise DependencyFileError("not valid TOML: nested too deeply", path=display) from None


def _table(parent: dict[str, Any], key: str, display: str, where: str) -> dict[str, Any]:
    value = parent.get(key, {})
    if not isinstance(value, dict):
        raise DependencyFileError(f"{where} must be a table", path=display)
    return value


def _strings(value: Any, display: str, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DependencyFileError(f"{where} must be a list of strings", path=display)
    return value


# --- pyproject.toml ------------------------------------------------------------------------


def _read_pyproject(path: Path, display: str, found: _Found) -> None:
    data = _read_toml(path, display)
    project = _table(data, "project", display, "[project]")
    poetry = _table(_table(data, "tool", display, "[tool]"), "poetry", display, "[tool.poetry]")
    for own in (project.get("name"), poetry.get("name")):
        if isinstance(own, str):
            found.own.add(canonicalize_name(own))

    where = f"{display} [project] dependencies"
    for text in _strings(project.get("dependencies", []), display, "[project] dependencies"):
        found.add_pep508(text, where)
    extras = _table(project, "optional-dependencies", display, "[project.optional-dependencies]")
    for extra, texts in extras.items():
        where = f"{display} [project.optional-dependencies] {extra}"
        for text in _strings(texts, display, f"[project.optional-dependencies] {extra}"):
            found.add_pep508(text, where)
    _read_groups(_table(data, "dependency-groups", display, "[dependency-groups]"), display, found)
    _read_poetry(poetry, display, found)


def _read_groups(groups: dict[str, Any], display: str, found: _Found) -> None:
    """PEP 735 groups, each in file order. Every group is read, so an ``include-group`` adds
    nothing new; it is checked (names a group, no loop) as an installer would."""
    names: dict[str, str] = {}
    for key in groups:
        canon = canonicalize_name(key)
        if canon in names:
            raise DependencyFileError(
                f"[dependency-groups] {names[canon]!r} and {key!r} are the same group",
                path=display,
            )
        names[canon] = key

    checked: set[str] = set()

    def check(key: str, chain: list[str]) -> None:
        if len(chain) > MAX_GROUP_DEPTH:
            raise DependencyFileError(
                f"[dependency-groups] include-group nested deeper than {MAX_GROUP_DEPTH}",
                path=display,
            )
        for item in _group_items(groups[key], display, key):
            if not isinstance(item, _Include):
                continue
            target = names.get(canonicalize_name(item.group))
            if target is None:
                raise DependencyFileError(
                    f"[dependency-groups] {key}: include-group {item.group!r} is not a group",
                    path=display,
                )
            if target in chain:
                loop = " -> ".join([*chain[chain.index(target) :], target])
                raise DependencyFileError(
                    f"[dependency-groups] include-group cycle: {loop}", path=display
                )
            if target not in checked:
                check(target, [*chain, target])
        checked.add(key)

    for key in groups:
        check(key, [key])
        for item in _group_items(groups[key], display, key):
            if not isinstance(item, _Include):
                found.add_pep508(item, f"{display} [dependency-groups] {key}")


def _group_items(value: Any, display: str, key: str) -> Iterator[str | _Include]:
    """A group's entries: requirement strings and ``_Include(group name)``."""
    if not isinstance(value, list):
        raise DependencyFileError(f"[dependency-groups] {key} must be a list", path=display)
    for item in value:
        if isinstance(item, str):
            yield item
        elif (
            isinstance(item, dict)
            and list(item) == ["include-group"]
            and isinstance(item["include-group"], str)
        ):
            yield _Include(item["include-group"])
        else:
            raise DependencyFileError(
                f"[dependency-groups] {key}: {item!r} is neither a requirement string"
                ' nor {include-group = "NAME"}',
                path=display,
            )


@dataclass(frozen=True)
class _Include:
    """An ``{include-group = NAME}`` entry."""

    group: str


def _read_poetry(poetry: dict[str, Any], display: str, found: _Found) -> None:
    tables = [("[tool.poetry.dependencies]", poetry.get("dependencies", {}))]
    groups = _table(poetry, "group", display, "[tool.poetry.group]")
    for group, body in groups.items():
        if not isinstance(body, dict):
            raise DependencyFileError(f"[tool.poetry.group.{group}] must be a table", path=display)
        tables.append((f"[tool.poetry.group.{group}.dependencies]", body.get("dependencies", {})))
    tables.append(("[tool.poetry.dev-dependencies]", poetry.get("dev-dependencies", {})))
    for section, table in tables:
        if not isinstance(table, dict):
            raise DependencyFileError(f"{section} must be a table", path=display)
        for key, value in table.items():
            if canonicalize_name(key) == "python":
                continue
            for entry in value if isinstance(value, list) else [value]:
                _poetry_entry(key, entry, f"{display} {section}", found)


def _poetry_entry(key: str, entry: Any, where: str, found: _Found) -> None:
    text = f"{key} = {_toml_value(entry)}"
    if not _valid_name(key):
        found.skip(text, where, "not a valid package name")
        return
    if isinstance(entry, dict):
        for source, reason in (("git", GIT), ("path", LOCAL_PATH), ("url", URL)):
            if source in entry:
                found.skip(text, where, reason)
                return
        version = entry.get("version")
    else:
        version = entry
    if version is not None and not isinstance(version, str):
        found.skip(text, where, "not a Poetry version constraint")
        return
    found.want(canonicalize_name(key), _poetry_pin(version), text, where)


def _poetry_pin(constraint: str | None) -> str | None:
    """Poetry's exact versions: ``1.2.3``, ``==1.2.3``, ``=1.2.3`` (not ``^``, ``~``, ``*``)."""
    if constraint is None:
        return None
    text = constraint.strip()
    if text.startswith("=="):
        try:
            return _pin(SpecifierSet(text))
        except InvalidSpecifier:
            return None
    text = text.removeprefix("=").strip()
    try:
        Version(text)
    except InvalidVersion:
        return None
    return text


def _toml_value(value: Any) -> str:
    """A Poetry value written back the way it reads in pyproject.toml (for the table)."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


# --- lock files ----------------------------------------------------------------------------


def _locked_packages(data: dict[str, Any], display: str) -> Iterator[tuple[str, str | None, Any]]:
    """(name, version, source) of each ``[[package]]``."""
    packages = data.get("package", [])
    if not isinstance(packages, list):
        raise DependencyFileError("[[package]] must be an array of tables", path=display)
    for number, package in enumerate(packages, start=1):
        name = package.get("name") if isinstance(package, dict) else None
        if not isinstance(name, str):
            raise DependencyFileError(f"[[package]] number {number} has no name", path=display)
        version = package.get("version")
        yield name, version if isinstance(version, str) else None, package.get("source")


def _read_lock(source_reason: Callable[[Any], str | None]) -> _Reader:
    def read(path: Path, display: str, found: _Found) -> None:
        data = _read_toml(path, display)
        for name, version, source in _locked_packages(data, display):
            text = f"{name}=={version}" if version else name
            reason = source_reason(source)
            if reason is None and not _valid_name(name):
                reason = "not a valid package name"
            if reason is not None:
                found.skip(text, display, reason)
            else:
                found.want(canonicalize_name(name), version, text, display)

    return read


def _uv_source(source: Any) -> str | None:
    """Why a uv.lock ``source`` names no package to watch; None for a registry."""
    if not isinstance(source, dict) or "registry" in source:
        return None
    for key, reason in (("editable", "editable install"), ("virtual", "virtual project")):
        if key in source:
            return ITSELF if source[key] == "." else f"{reason} ({source[key]})"
    if "directory" in source or "path" in source:
        return f"{LOCAL_PATH} ({source.get('directory') or source.get('path')})"
    if "git" in source:
        return GIT
    if "url" in source:
        return URL
    return f"unknown source {_toml_value(source)}"


def _poetry_source(source: Any) -> str | None:
    """Why a poetry.lock ``[package.source]`` names no package to watch; None for an index."""
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "git":
        return GIT
    if kind in ("directory", "file"):
        return f"{LOCAL_PATH} ({source.get('url')})"
    if kind == "url":
        return URL
    return None  # PyPI (no source) or a private index ("legacy")


_Reader = Callable[[Path, str, _Found], None]

_READERS: dict[str, _Reader] = {
    "requirements": _read_requirements,
    "pyproject": _read_pyproject,
    "uv.lock": _read_lock(_uv_source),
    "poetry.lock": _read_lock(_poetry_source),
}
