"""Rule files: load, validate and render rules (SPEC §6).

A rule file is YAML with a top-level ``rules:`` list. The shipped rules
(:func:`shipped_rules_dir`) load first, then the user's files; a user rule with a shipped id
replaces it (``enabled: false`` turns it off, and then needs no ``when``). Every problem in every
file is collected and reported at once as ``path:line: message``.

Message templates are jinja2 (sandboxed, not autoescaped; notifiers escape for their medium).
A template sees (:func:`message_context` builds it):

- every snapshot field as a bare name (the new snapshot): ``title``, ``pypi_version``,
  ``repo_watchers``...; ``title`` falls back to the slug when the package has none;
- ``new`` and ``old``: dicts of field values (``old`` is ``{}`` when there is no history);
- ``slug``, ``title``, ``rule`` (the rule id), ``severity`` (``info|warning|critical``);
- ``changes``: a list of ``{"field", "old", "new"}`` dicts (plus ``added``/``removed`` for
  lists such as ``participants``), empty for a condition rule on an unchanged poll.

Templates also have ``version(text)``: the PEP 440 version (comparable, with ``.major``...), or
``None`` when the text is not one, so a message can tell a release from a step back.

A rule without a message, or whose template fails to render or goes over its bounds (time,
size: :mod:`monitor.templates`), gets the default text: ``title: description``, then `` — ``
and the changes to the fields the rule reads as ``field: old → new`` joined with ``; ``
(``field: +added, −removed`` for lists). Either is cut to :data:`SUMMARY_CHARS` characters,
ending with "…". A template whose constant parts are over the bounds is refused at load.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from fnmatch import fnmatchcase
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from monitor import fields
from monitor.alerts import RuleKind, Severity
from monitor.diff import describe_change
from monitor.durations import parse_duration
from monitor.errors import RulesError, did_you_mean
from monitor.expr import Expression, ExpressionError, compile_expression
from monitor.text import clip
from monitor.yamlfile import YamlDocument, read_yaml

__all__ = [
    "Rule",
    "RuleInfo",
    "check_rule_files",
    "list_rules",
    "load_rules",
    "message_context",
    "shipped_rules_dir",
]

KEYS = (
    "id",
    "when",
    "description",
    "severity",
    "message",
    "repeat",
    "for",
    "labels",
    "packages",
    "notify",
    "enabled",
    "supersedes",
)
_ID = re.compile(r"[a-z0-9-]+")
_SEVERITIES = tuple(s.value for s in Severity)
_RULE_SUFFIXES = (".yaml", ".yml")
_TEXT_KEYS = frozenset({"id", "when", "description", "severity", "message", "repeat"})
_NULL_TAG = "tag:yaml.org,2002:null"
# More polls in a row than anyone means (10,000 six-hourly polls are seven years): a typo.
MAX_FOR_POLLS = 10_000


@dataclass(frozen=True)
class Rule:
    id: str
    when: Expression
    kind: RuleKind
    description: str = ""
    severity: Severity = Severity.WARNING
    message: str | None = None  # jinja2 template source
    repeat: timedelta | None = None
    for_polls: int = 1
    labels: dict[str, str] = field(default_factory=dict)
    packages: tuple[str, ...] = ()  # slugs or fnmatch globs; () = all
    notify: tuple[str, ...] = ()
    enabled: bool = True
    origin: str = ""  # "path:line"
    supersedes: tuple[str, ...] = ()  # change rules that do not fire when this one does

    def applies_to(self, slug: str) -> bool:
        return not self.packages or any(fnmatchcase(slug, p) for p in self.packages)

    def render_message(self, context: dict[str, Any]) -> str:
        """The rule's message for one alert, at most :data:`SUMMARY_CHARS` long; never
        raises. A template that fails or goes over its bounds (:mod:`monitor.templates`) gives
        the default text, and a warning on the ``monitor.rules`` logger says why."""
        if self.message is not None:
            from monitor.templates import render

            try:
                text = render(_template(self.message), context, max_chars=SUMMARY_CHARS).strip()
            except Exception as exc:  # a user template: any failure means "use the default"
                log.warning("rule %s: message template failed, default used: %s", self.id, exc)
                text = ""
            if text:
                return _capped(text)
        return self.default_message(context)

    def default_message(self, context: dict[str, Any]) -> str:
        """``title: description — changes``, at most :data:`SUMMARY_CHARS` long."""
        return _capped(self._default_text(context))

    def _default_text(self, context: dict[str, Any]) -> str:
        title = context.get("title") or context.get("slug") or "?"
        text = f"{title}: {self.description or self.id}"
        changes = [
            describe_change(change)
            for change in context.get("changes") or ()
            if isinstance(change, dict) and change.get("field") in self.when.fields
        ]
        if changes:
            text += " — " + "; ".join(changes)
        return text


def message_context(
    rule: Rule,
    *,
    slug: str,
    new: dict[str, Any],
    old: dict[str, Any] | None = None,
    changes: Iterable[Any] = (),
) -> dict[str, Any]:
    """The template context described in the module docstring.

    ``new``/``old`` are ``Snapshot.values()``; ``changes`` are :class:`monitor.diff.Change`
    objects or ``{"field", "old", "new"}`` dicts.
    """
    change_dicts = []
    for change in changes:
        if isinstance(change, dict):
            change_dicts.append(dict(change))
            continue
        item = {"field": change.field, "old": change.old, "new": change.new}
        if change.added or change.removed:
            item["added"] = list(change.added)
            item["removed"] = list(change.removed)
        change_dicts.append(item)
    shown = fields.for_templates(new)
    context: dict[str, Any] = dict(shown)
    context.update(
        old=fields.for_templates(old or {}),
        new=shown,
        slug=slug,
        title=new.get("title") or slug,
        changes=change_dicts,
        rule=rule.id,
        severity=str(rule.severity),
    )
    return context


SUMMARY_CHARS = 2_000  # a rendered or default summary longer than this is cut, with "…"
log = logging.getLogger(__name__)


def _capped(text: str) -> str:
    """``text`` cut to :data:`SUMMARY_CHARS`, ending with "…" when cut."""
    return clip(text, SUMMARY_CHARS)


@lru_cache(maxsize=1)
def _environment() -> Any:
    from monitor.templates import BoundedEnvironment

    environment = BoundedEnvironment(autoescape=False, keep_trailing_newline=False)
    environment.globals["version"] = _template_version
    return environment


def _template_version(text: object) -> Any:
    """``version(text)`` in templates: the PEP 440 version, or None when ``text`` is not one."""
    from packaging.version import InvalidVersion, Version

    if not isinstance(text, str) or len(text) > 200:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


@lru_cache(maxsize=1024)
def _template(source: str) -> Any:
    """The compiled template; raises on a syntax error or a constant over the bounds."""
    from monitor.templates import compile_template

    return compile_template(_environment(), source)


# -- loading ---------------------------------------------------------------------------------


def shipped_rules_dir() -> Path:
    """Where the shipped rules live: inside the installed package, else the repo's ``rules/``."""
    import monitor

    installed = Path(monitor.__file__).parent / "shipped_rules"
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "rules"


def load_rules(extra_paths: Iterable[Path] = ()) -> list[Rule]:
    """The shipped rules, then the user's (files, or folders of ``*.yaml``/``*.yml``).

    A user rule with a shipped id replaces it in place; disabled rules are left out. Raises
    :class:`RulesError` listing every problem found.
    """
    return [entry.rule for entry in _load_merged(extra_paths) if entry.rule is not None]


def list_rules(extra_paths: Iterable[Path] = ()) -> list[RuleInfo]:
    """Every rule :func:`load_rules` merges, disabled ones included, in the same order."""
    return [entry.info for entry in _load_merged(extra_paths)]


def check_rule_files(paths: Sequence[Path] = ()) -> list[str]:
    """Every problem in ``paths`` as ``path:line: message``, judged as ``check`` loads them:
    after the shipped rules (so replacing or disabling a shipped rule is fine). Empty
    ``paths``: the shipped rules alone."""
    problems: list[str] = []
    _merge(paths, problems)
    return problems


@dataclass(frozen=True)
class RuleInfo:
    """What ``rules list`` shows of a rule, enabled or not."""

    id: str
    kind: RuleKind | None  # None: a disabled rule with no `when` that replaces nothing
    severity: Severity
    enabled: bool
    origin: str  # "path:line"
    description: str = ""
    supersedes: tuple[str, ...] = ()

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": str(self.kind) if self.kind else None,
            "severity": str(self.severity),
            "enabled": self.enabled,
            "origin": self.origin,
            "description": self.description,
            "supersedes": list(self.supersedes),
        }


@dataclass(frozen=True)
class _Entry:
    id: str
    origin: str
    rule: Rule | None  # None: disabled (or broken)
    info: RuleInfo
    supersedes_at: tuple[tuple[str, str], ...] = ()  # (rule id, "path:line" naming it)


def _load_merged(extra_paths: Iterable[Path]) -> list[_Entry]:
    problems: list[str] = []
    merged = _merge(extra_paths, problems)
    if problems:
        raise RulesError(problems)
    return merged


def _merge(extra_paths: Iterable[Path], problems: list[str]) -> list[_Entry]:
    """The shipped rules, each user rule replacing the shipped one of its id in place (one
    that only says `enabled: false` shows the replaced rule, disabled); ``supersedes``
    checked."""
    shipped = _load_group([shipped_rules_dir()], problems)
    user = _load_group(extra_paths, problems)
    merged: dict[str, _Entry] = {entry.id: entry for entry in shipped}
    for entry in user:
        replaced = merged.get(entry.id)
        if replaced is not None and entry.info.kind is None:  # `enabled: false` alone
            entry = replace(entry, info=replace(replaced.info, enabled=False, origin=entry.origin))
        merged[entry.id] = entry
    _check_supersedes(merged, problems)
    return list(merged.values())


def _check_supersedes(merged: dict[str, _Entry], problems: list[str]) -> None:
    """Each id in ``supersedes`` names a change rule (a disabled one will do); no circles."""
    change_ids = [i for i, e in merged.items() if e.info.kind is not RuleKind.CONDITION]
    for entry in merged.values():
        for target, where in entry.supersedes_at:
            other = merged.get(target)
            if target == entry.id:
                problems.append(f"{where}: rule '{target}' cannot supersede itself")
            elif other is None:
                problems.append(
                    f"{where}: `supersedes` names no known rule '{target}'"
                    f"{did_you_mean(target, change_ids)}"
                )
            elif other.info.kind is RuleKind.CONDITION:
                problems.append(
                    f"{where}: `supersedes` names '{target}', a condition rule (defined at "
                    f"{other.origin}); only change rules can be superseded"
                )
    for circle in _supersedes_circles(merged):
        first = merged[circle[0]]
        where = next(w for t, w in first.supersedes_at if t == circle[1])
        problems.append(f"{where}: `supersedes` goes round in a circle: {' → '.join(circle)}")


def _supersedes_circles(merged: dict[str, _Entry]) -> list[list[str]]:
    """Each circle of ``supersedes`` among the enabled rules, as ids ending where they began
    (rules that supersede each other would all be dropped when they fire together)."""
    edges = {
        entry.id: [t for t in entry.rule.supersedes if t != entry.id and t in merged]
        for entry in merged.values()
        if entry.rule is not None
    }
    circles: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            circles.append([*path[path.index(node) :], node])
            return
        if node in done or node not in edges:
            return
        path.append(node)
        for target in edges[node]:
            visit(target, path)
        path.pop()
        done.add(node)

    for start in edges:
        visit(start, [])
    return circles


def _rule_files(paths: Iterable[Path], problems: list[str]) -> Iterator[Path]:
    """Each file, each folder's ``*.yaml``/``*.yml`` (sorted); a missing path is a problem."""
    for path in map(Path, paths):
        if path.is_dir():
            try:
                found = sorted(
                    p for p in path.iterdir() if p.suffix in _RULE_SUFFIXES and p.is_file()
                )
            except OSError as exc:
                problems.append(f"{path}: cannot read the folder: {exc.strerror or exc}")
                found = []
            yield from found
        elif path.is_file():
            yield path
        else:
            problems.append(f"{path}: no such rule file or folder")


def _load_group(paths: Iterable[Path], problems: list[str]) -> list[_Entry]:
    """Load files that share one id space; duplicate ids among them are problems."""
    entries: list[_Entry] = []
    seen: dict[str, str] = {}
    for path in _rule_files(paths, problems):
        for entry, line in _load_file(path, problems):
            if entry.id in seen:
                problems.append(
                    f"{path}:{line}: duplicate rule id '{entry.id}' (first defined at "
                    f"{seen[entry.id]})"
                )
                continue
            seen[entry.id] = entry.origin
            entries.append(entry)
    return entries


def _load_file(path: Path, problems: list[str]) -> list[tuple[_Entry, int]]:
    """The rules of one file; its YAML is read with bounds (:mod:`monitor.yamlfile`), and a
    file with YAML problems is not looked at further."""
    document = read_yaml(path)
    for problem in document.problems:
        where = f"{path}:{problem.line}" if problem.line else str(path)
        problems.append(f"{where}: {problem.message}")
    if document.problems:
        return []
    return _RuleFile(path, document, problems).rules(document.root)


class _RuleFile:
    """Validates the composed YAML of one file, keeping the line of every key."""

    def __init__(self, path: Path, document: YamlDocument, problems: list[str]):
        self.path = path
        self.document = document
        self.problems = problems

    def problem(self, node: yaml.Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.problems.append(f"{self.path}:{line}: {message}")

    def value(self, node: yaml.Node) -> Any:
        return self.document.construct(node)

    def rules(self, root: yaml.Node | None) -> list[tuple[_Entry, int]]:
        if not isinstance(root, yaml.MappingNode):
            self.problem(root, "expected a top-level `rules:` list")
            return []
        rules_node = None
        for key, value in self.document.pairs(root):
            name = self.value(key)
            if name == "rules":
                rules_node = value
            else:
                self.problem(key, f"unknown top-level key {name!r}{did_you_mean(name, ('rules',))}")
        if not isinstance(rules_node, yaml.SequenceNode):
            self.problem(rules_node or root, "expected a top-level `rules:` list")
            return []
        out = []
        for item in rules_node.value:
            entry = self.rule(item)
            if entry is not None:
                out.append((entry, item.start_mark.line + 1))
        return out

    def rule(self, node: yaml.Node) -> _Entry | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, "each rule must be a map with at least `id` and `when`")
            return None
        keys: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        ok = True
        for key, value in self.document.pairs(node):
            name = self.value(key)
            if not isinstance(name, str) or name not in KEYS:
                self.problem(key, f"unknown key {name!r}{did_you_mean(name, KEYS)}")
                ok = False
            else:  # each key is there once (the YAML reader refuses duplicates)
                keys[name] = (key, value)

        def get(name: str) -> tuple[yaml.Node | None, Any]:
            if name not in keys:
                return None, None
            key_node, value_node = keys[name]
            if name in _TEXT_KEYS and isinstance(value_node, yaml.ScalarNode):
                # The text as written: `id: off` or `when: True` stay strings, not booleans.
                return key_node, None if value_node.tag == _NULL_TAG else value_node.value
            return key_node, self.value(value_node)

        def fail(key_node: yaml.Node | None, message: str) -> None:
            nonlocal ok
            ok = False
            self.problem(key_node or node, message)

        key, rule_id = get("id")
        if rule_id is None:
            fail(node, "rule has no `id`")
        elif not isinstance(rule_id, str) or not _ID.fullmatch(rule_id):
            fail(key, f"bad id {rule_id!r}: use lowercase letters, digits and '-'")
            rule_id = None
        name = f"rule '{rule_id}'" if rule_id else "rule"

        key, enabled = get("enabled")
        if enabled is None:
            enabled = True
        elif not isinstance(enabled, bool):
            fail(key, f"`enabled` must be true or false, got {enabled!r}")

        key, source = get("when")
        when: Expression | None = None
        if source is None:
            if enabled is not False:  # a rule switched off needs no condition
                fail(node, f"{name} has no `when`")
        elif not isinstance(source, str):
            fail(key, f"`when` must be an expression string, got {source!r}")
        else:
            try:
                when = compile_expression(source)
            except ExpressionError as exc:
                fail(key, f"bad expression in `when`: {exc.message}")

        key, description = get("description")
        if description is None:
            description = ""
        elif not isinstance(description, str):
            fail(key, "`description` must be a string")

        key, severity = get("severity")
        if severity is None:
            severity = Severity.WARNING
        elif severity in _SEVERITIES:
            severity = Severity(severity)
        else:
            fail(
                key,
                f"bad severity {severity!r}{did_you_mean(str(severity), _SEVERITIES)}"
                f" (use {', '.join(_SEVERITIES)})",
            )

        key, message = get("message")
        if message is not None:
            if not isinstance(message, str):
                fail(key, "`message` must be a string (a jinja2 template)")
            else:
                error = _template_error(message)
                if error:
                    fail(key, f"`message` is not a valid jinja2 template: {error}")

        key, repeat_text = get("repeat")
        repeat: timedelta | None = None
        if repeat_text is not None:
            try:
                repeat = parse_duration(str(repeat_text))
            except ValueError as exc:
                fail(key, f"bad `repeat`: {exc}")
            else:
                if repeat <= timedelta(0):
                    fail(key, "`repeat` must be a positive duration")
        repeat_key = key

        key, for_polls = get("for")
        for_key = key
        if for_polls is None:
            for_polls = 1
        elif isinstance(for_polls, bool) or not isinstance(for_polls, int) or for_polls < 1:
            fail(key, f"`for` must be a positive whole number of polls, got {for_polls!r}")
        elif for_polls > MAX_FOR_POLLS:
            fail(key, f"`for` is at most {MAX_FOR_POLLS:,} polls, got {for_polls}")

        if when is not None and when.is_change:
            for option, option_key in (("repeat", repeat_key), ("for", for_key)):
                if option_key is not None:
                    fail(
                        option_key,
                        f"`{option}` is not allowed on a change rule "
                        "(it uses old/new or changed())",
                    )

        key, labels = get("labels")
        if labels is None:
            labels = {}
        elif not isinstance(labels, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
        ):
            fail(key, "`labels` must be a map of strings to strings")

        lists: dict[str, tuple[str, ...]] = {}
        for list_name in ("packages", "notify"):
            key, items = get(list_name)
            if items is None:
                lists[list_name] = ()
            elif isinstance(items, list) and all(isinstance(i, str) and i for i in items):
                lists[list_name] = tuple(items)
            else:
                fail(key, f"`{list_name}` must be a list of strings")

        supersedes = self.supersedes(keys.get("supersedes"), when)
        if supersedes is None:
            ok = False
            supersedes = ()

        if not ok or rule_id is None:
            # Still claim the id so duplicates are reported even for broken rules.
            if not rule_id:
                return None
            broken = RuleInfo(rule_id, None, Severity.WARNING, False, self.origin(node))
            return _Entry(rule_id, broken.origin, None, broken)
        origin = self.origin(node)
        kind = None if when is None else RuleKind.CHANGE if when.is_change else RuleKind.CONDITION
        info = RuleInfo(
            id=rule_id,
            kind=kind,
            severity=severity,
            enabled=bool(enabled and when is not None),
            origin=origin,
            description=description,
            supersedes=tuple(target for target, _ in supersedes),
        )
        if not info.enabled or when is None:
            return _Entry(rule_id, origin, None, info, supersedes)
        rule = Rule(
            id=rule_id,
            when=when,
            kind=RuleKind.CHANGE if when.is_change else RuleKind.CONDITION,
            description=description,
            severity=severity,
            message=message,
            repeat=repeat,
            for_polls=for_polls,
            labels=labels,
            packages=lists["packages"],
            notify=lists["notify"],
            enabled=True,
            origin=origin,
            supersedes=info.supersedes,
        )
        return _Entry(rule_id, origin, rule, info, supersedes)

    def supersedes(
        self, keys: tuple[yaml.Node, yaml.Node] | None, when: Expression | None
    ) -> tuple[tuple[str, str], ...] | None:
        """``supersedes``: rule ids, each with the ``path:line`` naming it; None if invalid.
        Whether each names a change rule is known only once every file is read."""
        if keys is None:
            return ()
        key, value = keys
        if when is not None and not when.is_change:
            self.problem(
                key, "`supersedes` is only for change rules (it uses old/new or changed())"
            )
            return None
        items = value.value if isinstance(value, yaml.SequenceNode) else None
        if items is None or not all(
            isinstance(item, yaml.ScalarNode) and _ID.fullmatch(item.value) for item in items
        ):
            self.problem(
                key, "`supersedes` must be a list of rule ids, e.g. [pypi-version-changed]"
            )
            return None
        return tuple((item.value, self.origin(item)) for item in items)

    def origin(self, node: yaml.Node) -> str:
        return f"{self.path}:{node.start_mark.line + 1}"


def _template_error(source: str) -> str | None:
    from jinja2 import TemplateSyntaxError

    from monitor.templates import TemplateLimit

    try:
        _template(source)
    except (TemplateSyntaxError, TemplateLimit) as exc:
        return f"{exc.message} (template line {exc.lineno})" if exc.lineno else str(exc.message)
    return None
