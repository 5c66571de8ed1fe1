"""Watch names (SPEC §4 "Names"): a djangopackages slug, or ``pypi:NAME`` for a project
watched through PyPI alone, and what ``watch`` accepts besides (``NAME==VERSION``).

Imports no source (``monitor --help`` must stay light): the cycle, the CLI and the PyPI
source share these rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from packaging.utils import canonicalize_name

from monitor.errors import UsageError

PYPI_PREFIX = "pypi:"
_PLAIN_SLUG = re.compile(r"[A-Za-z0-9_-]{1,200}")
# PEP 508 project names; a URL segment that is not one names no project.
PROJECT_NAME = re.compile(r"[A-Z0-9](?:[A-Z0-9._-]{0,198}[A-Z0-9])?", re.IGNORECASE)


def is_pypi_watch(name: str) -> bool:
    """Whether the watch is ``pypi:NAME`` (no djangopackages record)."""
    return name.startswith(PYPI_PREFIX)


def pypi_watch(project: str) -> str:
    """``pypi:NAME`` for a PyPI project name, NAME PEP 503-normalised."""
    return f"{PYPI_PREFIX}{canonicalize_name(project)}"


def project_of(name: str) -> str:
    """The PyPI project of a ``pypi:NAME`` watch."""
    return name[len(PYPI_PREFIX) :]


def slug_fallback(slug: str) -> str | None:
    """The slug tried when ``slug`` is not found as typed: lower case, ``_`` as ``-``
    (``Django_OTP`` -> ``django-otp``); None when that is the same."""
    other = slug.lower().replace("_", "-")
    return other if other != slug else None


@dataclass(frozen=True)
class Asked:
    """One name as ``watch`` was given it: the watch name (``pypi:`` names normalised),
    the version pinned with ``==`` if any, and the text typed."""

    name: str
    pinned: str | None
    typed: str


def parse_asked(text: str) -> Asked:
    """``django-otp``, ``django-otp==1.7.0``, ``pypi:Requests==2.32.3`` -> :class:`Asked`.
    Raises :class:`UsageError` for anything else (a range is not a pin)."""
    typed = text.strip()
    prefix = PYPI_PREFIX if typed.lower().startswith(PYPI_PREFIX) else ""
    rest = typed[len(prefix) :]
    if prefix and not PROJECT_NAME.fullmatch(rest.split("==")[0].strip()):
        raise UsageError(f"{typed!r}: not a PyPI project name")
    name, pinned = rest, None
    if any(c in rest for c in "=<>!~;[@ "):
        from packaging.requirements import InvalidRequirement, Requirement

        try:
            requirement = Requirement(rest)
        except InvalidRequirement as exc:
            raise UsageError(f"{typed!r}: not a name or NAME==VERSION ({exc})") from None
        specs = list(requirement.specifier)
        if len(specs) != 1 or specs[0].operator != "==" or "*" in specs[0].version:
            raise UsageError(
                f"{typed!r}: only an exact pin NAME==VERSION can be watched"
                " (a range says nothing about the version you run)"
            )
        if requirement.extras or requirement.marker or requirement.url:
            raise UsageError(f"{typed!r}: give NAME or NAME==VERSION only")
        name, pinned = requirement.name, specs[0].version
    if prefix:
        if not PROJECT_NAME.fullmatch(name):
            raise UsageError(f"{typed!r}: not a PyPI project name")
        return Asked(pypi_watch(name), pinned, typed)
    if not _PLAIN_SLUG.fullmatch(name):
        raise UsageError(
            f"{typed!r}: not a djangopackages slug (letters, digits, '-' and '_');"
            " a project on PyPI alone is watched as pypi:NAME"
        )
    return Asked(name, pinned, typed)


def package_links(base_url: str, slug: str, values: Mapping[str, Any]) -> dict[str, str | None]:
    """Where a person reads more about the package: its djangopackages page, its repository
    (GitHub's current name when known) and its PyPI page."""
    repo = values.get("github.repo")
    if is_pypi_watch(slug):  # on PyPI alone: no djangopackages page
        return {
            "djangopackages": None,
            "repo": f"https://github.com/{repo}" if repo else values.get("pypi.repository"),
            "pypi": f"https://pypi.org/project/{project_of(slug)}/",
        }
    return {
        "djangopackages": f"{base_url}/packages/p/{slug}/",
        "repo": f"https://github.com/{repo}" if repo else values.get("repo_url"),
        "pypi": values.get("pypi_url"),
    }
