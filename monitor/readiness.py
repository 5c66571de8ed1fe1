"""Can we move to Django X.Y? (SPEC §4 ``readiness``): for each watched package, whether its
latest release declares support for that version.

A release declares the Django versions it supports as Trove classifiers
(``Framework :: Django :: 5.2``), which the PyPI source keeps as ``pypi.django``. The verdict
is the one rule ``django-unsupported`` reaches for ``[project] django``: the version among
them, **yes**; others only, **no** (with the newest it declares); none, or no PyPI values,
**unknown** — many packages declare none, and that says nothing either way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from packaging.version import InvalidVersion, Version

from monitor.errors import UsageError

if TYPE_CHECKING:
    from monitor.store import Store

_DJANGO_VERSION = re.compile(r"[0-9]+\.[0-9]+")  # as ``[project] django`` (config.py)


class Verdict(StrEnum):
    """Listed in this order: what blocks the move first, then what nobody can tell."""

    NO = "no"
    UNKNOWN = "unknown"
    YES = "yes"


_ORDER = {verdict: rank for rank, verdict in enumerate(Verdict)}


@dataclass(frozen=True, slots=True)
class Readiness:
    """One watched package's answer. ``declared``: the Django versions its latest release
    declares, oldest first; ``latest``: its latest version; ``pinned``: the watch's pin."""

    name: str
    verdict: Verdict
    declared: list[str]
    latest: str | None
    pinned: str | None

    @property
    def newest_declared(self) -> str | None:
        return self.declared[-1] if self.declared else None

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": str(self.verdict),
            "declared": list(self.declared),
            "latest": self.latest,
            "pinned": self.pinned,
        }


def django_version(text: str) -> str:
    """``text`` as a Django version ``X.Y``; :class:`UsageError` (exit 2) if it is not one.
    The same rule as ``[project] django``: classifiers name a major and a minor only."""
    text = text.strip()
    if _DJANGO_VERSION.fullmatch(text):
        return text
    problem = f'{text!r} is not a Django version such as "6.0" (X.Y)'
    if re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9A-Za-z.]+", text):
        major, minor, _ = text.split(".", 2)
        problem += f"; packages declare feature releases only: try {major}.{minor}"
    raise UsageError(problem)


def readiness(store: Store, version: str, *, pypi: bool = True) -> list[Readiness]:
    """Every watched package's readiness for Django ``version`` (``X.Y``, checked), ordered
    no → unknown → yes, then by name. With ``pypi`` False (the source is off) its stored
    values are stale and not read, as rules do not read them: every verdict is unknown."""
    wanted = Version(django_version(version))
    latest = store.latest_parts(["djangopackages", "pypi"] if pypi else ["djangopackages"])
    pins = {slug: watch.pinned for slug, watch in store.watches(list(latest)).items()}
    answers = [_answer(slug, parts, pins.get(slug), wanted) for slug, parts in latest.items()]
    return sorted(answers, key=lambda answer: (_ORDER[answer.verdict], answer.name))


def _answer(
    slug: str, parts: dict[str, dict[str, Any]], pinned: str | None, wanted: Version
) -> Readiness:
    values = parts.get("pypi", {})
    declared = sorted(_texts(values.get("pypi.django")), key=version_key)
    if not declared:
        verdict = Verdict.UNKNOWN
    elif any(_same(found, wanted) for found in declared):
        verdict = Verdict.YES
    else:
        verdict = Verdict.NO
    latest = values.get("pypi.version") or parts.get("djangopackages", {}).get("pypi_version")
    return Readiness(slug, verdict, declared, latest, pinned)


def version_key(text: str) -> tuple[int, Version | str]:
    """Sorts versions as versions (``5.10`` after ``5.2``); text that is not one first."""
    try:
        return 1, Version(text)
    except InvalidVersion:
        return 0, text


def _same(text: str, wanted: Version) -> bool:
    try:
        return Version(text) == wanted
    except InvalidVersion:
        return False


def _texts(value: Any) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
