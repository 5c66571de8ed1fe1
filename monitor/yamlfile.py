"""YAML files read with bounds (STYLE 17): a hostile file is a list of ``line: message``
problems, never a huge tree, a traceback or code run.

PyYAML's composer shares the node of an anchor among its aliases, so a 400-byte file of nested
aliases ("billion laughs") composes small but expands to billions of values as soon as anything
walks, constructs or prints it. This module composes the document itself, from the parser's
events, and checks while composing, before anything is constructed:

- the file: at most :data:`MAX_BYTES`, UTF-8 (the line of a bad byte);
- nesting: at most :data:`MAX_DEPTH` levels (no ``RecursionError`` from a wall of ``[``);
- aliases: each alias adds the number of values it stands for (itself expanded); more than
  :data:`MAX_ALIASED` in a file is refused at the alias that goes over, and an alias inside its
  own anchor (a loop) is refused. A shared ``labels`` map or ``<<: *defaults`` stays fine;
- tags: only the plain ones (``!!str``, ``!!int``, ``!!float``, ``!!bool``, ``!!null``,
  ``!!seq``, ``!!map``) may be written, so ``!!python/...``, ``!!binary``, ``!!set`` and local
  ``!tags`` are refused by name;
- keys: plain values only, each once per map (both lines named); anchors defined once.

A plain scalar that looks like a timestamp, int or float but is not a valid one (``2024-13-45``,
an int of 5,000 digits) stays a string, and a ``<<`` that is not a key is a string, so every
document without problems constructs without raising.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["MAX_ALIASED", "MAX_BYTES", "MAX_DEPTH", "YamlDocument", "YamlProblem", "read_yaml"]

MAX_BYTES = 1_000_000
MAX_DEPTH = 50
MAX_ALIASED = 10_000

# libyaml's parser where PyYAML was built with it (the wheels are): the same events and marks.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_CORE = "tag:yaml.org,2002:"
_STR = _CORE + "str"
_MERGE = _CORE + "merge"
_SCALAR_TAGS = frozenset(_CORE + name for name in ("null", "bool", "int", "float", "str"))
_ALLOWED = {
    yaml.ScalarEvent: _SCALAR_TAGS,
    yaml.SequenceStartEvent: frozenset({_CORE + "seq"}),
    yaml.MappingStartEvent: frozenset({_CORE + "map"}),
}
# What PyYAML's constructors raise on a scalar they cannot read (`!!int x`, `!!int ""`,
# `!!bool x`, `!!timestamp x`, a date of month 13, an int past Python's 4,300 digits).
_UNREADABLE = (ValueError, LookupError, AttributeError, yaml.YAMLError)


@dataclass(frozen=True)
class YamlProblem:
    line: int | None  # 1-based; None when the file could not be read at all
    message: str


@dataclass
class YamlDocument:
    """A composed document; ``root`` is None when there are problems (or the file is empty)."""

    root: yaml.Node | None
    problems: list[YamlProblem] = field(default_factory=list)
    loader: Any = None

    def construct(self, node: yaml.Node) -> Any:
        """The Python value of a node of :attr:`root` (safe: the checks above have passed)."""
        return self.loader.construct_object(node, deep=True)

    def pairs(self, node: yaml.MappingNode) -> list[tuple[yaml.Node, yaml.Node]]:
        """The (key, value) nodes of a map, ``<<`` merges done: merged pairs first, so a key
        written in the map comes later and wins, as in the map's value."""
        self.loader.flatten_mapping(node)
        return list(node.value)


class _Refused(Exception):
    """A problem after which the rest of the file is not read."""

    def __init__(self, line: int | None, message: str):
        super().__init__(message)
        self.problem = YamlProblem(line, message)


def read_yaml(path: Path) -> YamlDocument:
    """Read and compose one YAML file; every problem found is in ``problems``."""
    try:
        text = _read_text(path)
    except _Refused as exc:
        return YamlDocument(None, [exc.problem])
    loader = _Loader(text)
    composer = _Composer(loader)
    try:
        root = composer.document()
    except _Refused as exc:
        composer.problems.append(exc.problem)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        composer.problems.append(YamlProblem(line, f"not valid YAML: {exc.problem or exc.context}"))
    except yaml.reader.ReaderError as exc:  # an unprintable character (no mark, a position)
        composer.problems.append(
            YamlProblem(
                _reader_line(text, exc.position),
                f"not valid YAML: character #x{exc.character:04x}: {exc.reason}",
            )
        )
    finally:
        loader.dispose()
    if composer.problems:
        return YamlDocument(None, composer.problems)
    return YamlDocument(root, [], loader)


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _Refused(None, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise _Refused(None, f"larger than {MAX_BYTES:,} bytes; not read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _Refused(line, f"not UTF-8 (byte 0x{data[exc.start]:02x})") from None


def _reader_line(text: str, position: int) -> int:
    """The line of a reader error's position: libyaml counts bytes of UTF-8, PyYAML characters."""
    if _Loader is yaml.SafeLoader:
        return text.count("\n", 0, position) + 1
    return text.encode("utf-8").count(b"\n", 0, position) + 1


def _line(event: yaml.Event) -> int:
    return int(event.start_mark.line) + 1


def _short(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


class _Composer:
    """PyYAML's composer (events → nodes, anchors shared) with the checks of the docstring."""

    def __init__(self, loader: Any):
        self.loader = loader
        self.anchors: dict[str, tuple[yaml.Node, int]] = {}  # anchor → (node, line)
        # node → (values a walk through it visits, levels it nests), aliases expanded
        self.sizes: dict[yaml.Node, tuple[int, int]] = {}
        self.aliased = 0
        self.problems: list[YamlProblem] = []

    def document(self) -> yaml.Node | None:
        self.loader.get_event()  # stream start
        root = None
        if not self.loader.check_event(yaml.StreamEndEvent):
            self.loader.get_event()  # document start
            root = self.node(1, key=False)
            self.loader.get_event()  # document end
            if not self.loader.check_event(yaml.StreamEndEvent):
                raise _Refused(
                    _line(self.loader.get_event()),
                    "not valid YAML: a second document (one per file)",
                )
        return root

    def node(self, depth: int, *, key: bool) -> yaml.Node:
        """The next node, ``depth`` levels down (1: the document's root)."""
        event = self.loader.get_event()
        if isinstance(event, yaml.AliasEvent):
            return self.alias(event, depth)
        if depth > MAX_DEPTH:
            raise _Refused(_line(event), f"nested deeper than {MAX_DEPTH} levels")
        tag = self.tag(event)
        node: yaml.Node
        children: list[yaml.Node] = []
        if isinstance(event, yaml.ScalarEvent):
            node = self.scalar(event, tag, key=key)
        elif isinstance(event, yaml.SequenceStartEvent):
            node = yaml.SequenceNode(tag, [], event.start_mark, None, event.flow_style)
            self.anchor(event, node)
            while not self.loader.check_event(yaml.SequenceEndEvent):
                node.value.append(self.node(depth + 1, key=False))
            node.end_mark = self.loader.get_event().end_mark
            children = node.value
        else:
            node = yaml.MappingNode(tag, [], event.start_mark, None, event.flow_style)
            self.anchor(event, node)
            self.mapping(node, depth)
            node.end_mark = self.loader.get_event().end_mark
            children = [child for pair in node.value for child in pair]
        self.sizes[node] = (
            1 + sum(self.sizes[c][0] for c in children),
            1 + max((self.sizes[c][1] for c in children), default=0),
        )
        if isinstance(node, yaml.ScalarNode):
            self.anchor(event, node)
        return node

    def tag(self, event: Any) -> str:
        """The node's tag: resolved as PyYAML does when not written, else one of the plain ones."""
        kind = {
            yaml.ScalarEvent: yaml.ScalarNode,
            yaml.SequenceStartEvent: yaml.SequenceNode,
            yaml.MappingStartEvent: yaml.MappingNode,
        }[type(event)]
        if event.tag is None or event.tag == "!":
            value = event.value if kind is yaml.ScalarNode else None
            return str(self.loader.resolve(kind, value, event.implicit))
        if event.tag not in _ALLOWED[type(event)]:
            raise _Refused(
                _line(event),
                f"tag {_short(event.tag)} is not allowed (only plain YAML values are read; "
                "nothing was run)",
            )
        return str(event.tag)

    def scalar(self, event: Any, tag: str, *, key: bool) -> yaml.ScalarNode:
        """The scalar's node; one that only looks like a number or a date is a string, and so
        is a ``<<`` that is not a key."""

        def make(tag: str) -> yaml.ScalarNode:
            return yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)

        if tag == _MERGE:
            return make(tag if key else _STR)
        node = make(tag)
        if tag == _STR:
            return node
        try:
            self.loader.construct_object(node)
        except _UNREADABLE:
            if event.tag not in (None, "!"):  # written: `!!int x`
                self.problems.append(
                    YamlProblem(_line(event), f"{event.value!r} is not a valid {_short(tag)}")
                )
            return make(_STR)
        return node

    def mapping(self, node: yaml.MappingNode, depth: int) -> None:
        """The pairs of a map: plain keys, each once; a ``<<`` merges a map or a list of maps."""
        seen: dict[tuple[str, str], int] = {}
        while not self.loader.check_event(yaml.MappingEndEvent):
            key = self.node(depth + 1, key=True)
            value = self.node(depth + 1, key=False)
            node.value.append((key, value))
            line = key.start_mark.line + 1
            if not isinstance(key, yaml.ScalarNode):
                self.problems.append(YamlProblem(line, "a key must be a plain value"))
                continue
            if (key.tag, key.value) in seen:
                first = seen[key.tag, key.value]
                self.problems.append(
                    YamlProblem(line, f'duplicate key "{key.value}" (first at line {first})')
                )
            seen.setdefault((key.tag, key.value), line)
            if key.tag == _MERGE and not _mergeable(value):
                self.problems.append(YamlProblem(line, "`<<` must merge a map or a list of maps"))

    def anchor(self, event: Any, node: yaml.Node) -> None:
        if event.anchor is None:
            return
        if event.anchor in self.anchors:
            first = self.anchors[event.anchor][1]
            self.problems.append(
                YamlProblem(
                    _line(event), f"anchor &{event.anchor} defined again (first at line {first})"
                )
            )
        self.anchors[event.anchor] = (node, _line(event))

    def alias(self, event: Any, depth: int) -> yaml.Node:
        """The anchored node, shared; the values it stands for count towards
        :data:`MAX_ALIASED`, and its nesting continues from ``depth``."""
        if event.anchor not in self.anchors:
            raise _Refused(_line(event), f"alias *{event.anchor} has no anchor before it")
        node = self.anchors[event.anchor][0]
        if node not in self.sizes:
            raise _Refused(_line(event), f"alias *{event.anchor} is inside its own anchor")
        size, height = self.sizes[node]
        self.aliased += size
        if self.aliased > MAX_ALIASED:
            raise _Refused(
                _line(event),
                f"aliases expand to more than {MAX_ALIASED:,} values (at *{event.anchor}); "
                "refused so that a small file cannot expand to a huge one",
            )
        if depth + height - 1 > MAX_DEPTH:
            raise _Refused(_line(event), f"nested deeper than {MAX_DEPTH} levels (through aliases)")
        return node


def _mergeable(node: yaml.Node) -> bool:
    if isinstance(node, yaml.SequenceNode):
        return all(isinstance(item, yaml.MappingNode) for item in node.value)
    return isinstance(node, yaml.MappingNode)
