"""The field registry (SPEC §3, §3.1): every field a rule, template or ``history`` can name,
with its kind, and how values go to and from JSON.

djangopackages' fields keep their bare names; each other source's are namespaced
(``pypi.version``, ``github.archived``) and declared by the source's own module (its
``fields``), so a new source adds its fields by being registered in
:data:`monitor.sources.SOURCES`. Besides the sources: ``pinned`` (the watch's pinned version)
and ``project.django`` (``[project] django`` in the config).

Values are kept as rules see them: datetimes aware, lists as lists. In JSON (the database,
``--json``) datetimes are UTC ISO strings; :func:`from_json` turns them back.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

from monitor.sources import FieldKind

# djangopackages' fields (snapshot.FIELDS), by kind.
DJANGOPACKAGES: dict[str, FieldKind] = {
    "slug": FieldKind.TEXT,
    "title": FieldKind.TEXT,
    "pypi_version": FieldKind.TEXT,
    "repo_url": FieldKind.TEXT,
    "repo_description": FieldKind.TEXT,
    "repo_watchers": FieldKind.INT,
    "repo_forks": FieldKind.INT,
    "commits_over_52": FieldKind.INTS,
    "participants": FieldKind.TEXTS,
    "last_updated": FieldKind.DATETIME,
    "last_fetched": FieldKind.DATETIME,
    "created": FieldKind.DATETIME,
    "modified": FieldKind.DATETIME,
    "pypi_url": FieldKind.TEXT,
    "documentation_url": FieldKind.TEXT,
    "grids": FieldKind.INTS,
    "category": FieldKind.INT,
}
WATCH: dict[str, FieldKind] = {"pinned": FieldKind.TEXT}
PROJECT: dict[str, FieldKind] = {"project.django": FieldKind.TEXT}
# Lists whose changes say what joined and what left (commit counts are a series, not a set).
SET_LIKE = frozenset({"participants", "grids"})


@cache
def known() -> dict[str, FieldKind]:
    """Every field, in display order: djangopackages', each source's, the watch's, the
    project's. Imports the source modules (not at ``monitor --help``)."""
    from monitor.sources import source_classes

    fields = dict(DJANGOPACKAGES)
    for source in source_classes().values():
        fields.update(source.fields)
    return {**fields, **WATCH, **PROJECT}


@cache
def source_of() -> dict[str, str]:
    """Field -> the source that gives it (``watch`` and ``project`` for those two)."""
    from monitor.sources import source_classes

    out = dict.fromkeys(DJANGOPACKAGES, "djangopackages")
    for name, source in source_classes().items():
        out.update(dict.fromkeys(source.fields, name))
    return {**out, **dict.fromkeys(WATCH, "watch"), **dict.fromkeys(PROJECT, "project")}


@cache
def of_source(source: str) -> tuple[str, ...]:
    """The fields ``source`` gives, in registry order."""
    return tuple(name for name, origin in source_of().items() if origin == source)


def is_list(name: str) -> bool:
    return known().get(name) in (FieldKind.TEXTS, FieldKind.INTS)


def is_set_like(name: str) -> bool:
    """A list whose change is told as who joined and who left."""
    return name in SET_LIKE or (known().get(name) is FieldKind.TEXTS and name not in DJANGOPACKAGES)


def to_json(value: Any) -> Any:
    """A value as JSON: datetimes as UTC ISO strings, tuples as lists."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, tuple):
        return list(value)
    return value


def from_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """Values read back from JSON (trusted: written by :func:`to_json`)."""
    kinds = known()
    out = dict(values)
    for name, value in values.items():
        if value is not None and kinds.get(name) is FieldKind.DATETIME:
            out[name] = datetime.fromisoformat(value)
    return out


def nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"pypi.version": v}`` as ``{"pypi": {"version": v}}`` (bare names kept): what
    templates see, so ``{{ pypi.version }}`` and ``{{ old.github.stars }}`` read fields."""
    out: dict[str, Any] = {}
    for name, value in values.items():
        prefix, dot, rest = name.partition(".")
        if dot:
            out.setdefault(prefix, {})[rest] = value
        else:
            out[name] = value
    return out


def for_templates(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every known field (None where ``values`` lacks it), :func:`nested`: a template reading
    ``old.pypi.version`` of a package without PyPI data gets None, not an error."""
    return nested({name: values.get(name) for name in known()})
