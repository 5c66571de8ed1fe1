"""The safe expression language of a rule's ``when`` (SPEC §6).

No Python ``eval``: the source is parsed with :func:`ast.parse`, every node is checked against
a whitelist, and the tree is compiled once into nested closures, so evaluating a rule is a few
plain function calls. Allowed:

- literals: numbers, strings, ``True``/``False``/``None``, lists and tuples;
- arithmetic ``+ - * / // %`` and unary ``-``/``+``; comparisons (chained too), ``in``,
  ``not in``; ``and``/``or``/``not``; indexing and slices;
- the fields of :func:`monitor.fields.known` as names (the new values): bare
  (``repo_watchers``) or dotted (``pypi.version``, ``project.django``), and ``old.FIELD`` /
  ``new.FIELD`` (``old.github.stars``);
- the functions ``changed("f")``, ``delta("f")`` (new − old), ``pct_change("f")``
  ((new − old) / old × 100), ``added("f")`` / ``removed("f")`` (the elements a list field
  gained / lost, sorted), ``default(x, fallback)`` (``fallback`` where ``x`` is unknown),
  ``len``, ``sum``, ``min``, ``max``, ``abs``, ``any``, ``all``,
  ``days_since(datetime)`` (days, as a float, before the injected ``now``) and
  ``version(text)`` (a :class:`packaging.version.Version`); a call's result may be followed by
  ``.major``, ``.minor``, ``.micro``, ``.release`` or ``.is_prerelease``.

Anything else is an :class:`ExpressionError` at compile time. An expression that uses ``old``,
``new`` or a change function is a *change* expression (:attr:`Expression.is_change`).

Unknown data: reading a field whose value is ``None``, or an expression that raises on its
inputs (a type mismatch, a division by zero, an index out of range, an invalid version...),
makes :meth:`Expression.evaluate` raise :class:`UnknownValue`; the caller keeps the alert's
previous state. ``changed("f")`` never raises: a value appearing from (or vanishing into)
``None`` is a change.

Bounds (:class:`Limits`): an evaluation that would build a value over a million cells (a
character of text, an element of a list; about 1 MB) or that runs past its deadline (100 ms)
raises :class:`LimitExceeded`, an :class:`UnknownValue` (the rule keeps its state) that the
cycle reports as the rule's error on that package. Sizes are logical: ``[x] * n`` weighs ``n``
times ``x`` even though its elements share one object, since anything that walks it (``max``,
``==``) pays for every one. Only the operations whose cost grows with their operands check
the bounds (``*``, ``+`` and ``%`` on sequences, list literals, and the functions and ``in``
over more than :data:`_SMALL` elements), so the arithmetic and comparisons of an everyday rule
stay a few closure calls; the deadline starts at the first such check, what runs before it
being cheap steps. Comparisons walk values that came from the record (bounded by its size) or
that checked operations built. The
parts of an expression that read no data are evaluated once, at compile time, under the same
bounds: a constant over them is an :class:`ExpressionError` of the rule file, not a hang.
"""

from __future__ import annotations

import ast
import operator
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from packaging.version import Version

from monitor import fields
from monitor.errors import did_you_mean

__all__ = [
    "LIMITS",
    "Expression",
    "ExpressionError",
    "LimitExceeded",
    "Limits",
    "UnknownValue",
    "compile_expression",
    "weight",
]

_CHANGE_FUNCTIONS = ("changed", "delta", "pct_change", "added", "removed")
_RESULT_ATTRIBUTES = ("major", "minor", "micro", "release", "is_prerelease")
_SEQUENCES = (str, list, tuple)
_MAX_SOURCE = 10_000
# A function or `in` over at most this many elements or characters skips the deadline check:
# there are at most as many such operations as the expression has nodes, each a few µs.
_SMALL = 1_000
_MAX_VERSION = 256  # characters: no PEP 440 version is longer; parsing more is just work

# Errors an expression may raise on its inputs; they mean "unknown", never a crash.
_DATA_ERRORS = (TypeError, ValueError, ArithmeticError, LookupError, AttributeError)


@dataclass(frozen=True)
class Limits:
    """The bounds of one evaluation (SPEC §6); ``clock`` is injectable for tests."""

    cells: int = 1_000_000  # characters of text plus elements of lists: about 1 MB
    seconds: float = 0.1
    clock: Callable[[], float] = time.monotonic


# Read when an expression is compiled (tests replace it to inject a clock).
LIMITS = Limits()


class ExpressionError(ValueError):
    """A ``when`` that is not a valid expression; ``col`` is 1-based (``None`` if unknown)."""

    def __init__(self, message: str, col: int | None = None):
        self.message = message
        self.col = col
        super().__init__(message)


class UnknownValue(Exception):
    """The expression cannot be decided on this data (a null field, or it raised)."""


class LimitExceeded(UnknownValue):
    """The expression would build a value over its size bound or ran past its deadline: the
    rule's error on this package, which keeps its state like unknown data but is reported."""


class _Deadline(threading.local):
    """When the evaluation running on this thread must end; evaluations do not nest. Thread
    state rather than an argument so that an everyday evaluation allocates nothing for it."""

    at: float | None = None


_deadline = _Deadline()


def _tick(limits: Limits) -> None:
    """Called before an operation whose cost grows with its operands. The deadline starts at
    the first call of an evaluation (what runs before it is a few cheap steps)."""
    at = _deadline.at
    if at is None:
        _deadline.at = limits.clock() + limits.seconds
    elif limits.clock() > at:
        raise LimitExceeded(f"ran over its {limits.seconds * 1000:g} ms deadline")


def _bound(cells: int, limits: Limits, what: str) -> None:
    """Refuse to build a value of ``cells`` (see :func:`weight`) over the size bound."""
    if cells > limits.cells:
        raise LimitExceeded(
            f"{what} would build a value over {limits.cells:,} characters or elements (1 MB)"
        )


# A compiled node: (new values, old values or None, now) -> value.
_Fn = Callable[[dict[str, Any], dict[str, Any] | None, datetime], Any]


@dataclass(frozen=True)
class Expression:
    source: str
    is_change: bool  # uses old/new or changed/delta/pct_change -> a change rule
    fields: frozenset[str]  # the fields it reads
    _fn: _Fn = field(repr=False, compare=False)
    limits: Limits = field(default=LIMITS, repr=False, compare=False)
    reads_clock: bool = False  # calls days_since(): its value can change with time alone

    def evaluate(self, new: dict[str, Any], old: dict[str, Any] | None, now: datetime) -> Any:
        """Evaluate on field values (``Snapshot.values()``); raise :class:`UnknownValue`
        (:class:`LimitExceeded` over the bounds).

        ``old`` is the previous snapshot's values; a change expression without one is unknown.
        """
        if old is None and self.is_change:
            raise UnknownValue("no previous snapshot to compare with")
        return _run(self._fn, new, old, now)


def _run(fn: _Fn, new: dict[str, Any], old: dict[str, Any] | None, now: datetime) -> Any:
    _deadline.at = None
    try:
        return fn(new, old, now)
    except UnknownValue:
        raise
    except _DATA_ERRORS as exc:
        raise UnknownValue(f"{type(exc).__name__}: {exc}") from exc
    except (MemoryError, RecursionError) as exc:  # what the bounds did not foresee
        what = "memory" if isinstance(exc, MemoryError) else "stack"
        raise LimitExceeded(f"ran out of {what}") from None


def compile_expression(source: str, limits: Limits | None = None) -> Expression:
    """Check ``source`` against the whitelist and compile it; raise :class:`ExpressionError`.

    ``limits`` default to :data:`LIMITS`; constant parts are evaluated now, under them."""
    if not isinstance(source, str):
        raise ExpressionError(f"expected an expression string, got {type(source).__name__}")
    text = source.strip()
    if not text:
        raise ExpressionError("empty expression")
    if len(text) > _MAX_SOURCE:
        raise ExpressionError(f"expression longer than {_MAX_SOURCE} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        lines = text.splitlines()
        lineno, offset = exc.lineno or 1, exc.offset or 0
        if not 0 < offset <= len(lines[min(lineno, len(lines)) - 1]):
            raise ExpressionError(f"{exc.msg} (the expression ends too soon?)") from None
        where = f"line {lineno}, column {offset}" if lineno > 1 else f"column {offset}"
        raise ExpressionError(f"{exc.msg} at {where}", offset) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("expression too deeply nested or not parsable") from None
    limits = limits or LIMITS
    compiler = _Compiler(text, limits)
    try:
        fn = compiler.compile(tree.body)
    except RecursionError:
        raise ExpressionError("expression too deeply nested") from None
    fields_read = frozenset(compiler.fields)
    return Expression(text, compiler.is_change, fields_read, fn, limits, compiler.reads_clock)


# -- runtime helpers ---------------------------------------------------------------------------


def weight(value: Any, limit: int) -> int:
    """The cells of ``value``: one per character of text or element of a list or tuple
    (at least one per element: an empty string still takes a slot), counted through shared
    references, for the size bound (templates use it too). Stops counting soon after
    ``limit``."""
    return _weigh(value, limit, {})


def _weigh(value: Any, limit: int, known: dict[int, int]) -> int:
    if isinstance(value, str):
        return len(value) or 1
    if not isinstance(value, list | tuple):
        return 1
    cells = known.get(id(value))
    if cells is not None:  # a shared element, e.g. each of `[x] * n`: counted once, used n times
        return cells
    if len(value) > limit:  # over already, each element weighing at least one
        return len(value)
    kinds = set(map(type, value))
    if not kinds & {str, list, tuple}:
        cells = len(value)
    elif kinds == {str}:
        cells = sum(map(len, value)) + value.count("")
    else:
        cells = 0
        for item in value:
            cells += _weigh(item, limit, known)
            if cells > limit:
                break
    known[id(value)] = cells = max(cells, 1)
    return cells


def _unknown_field(name: str, where: str = "") -> UnknownValue:
    return UnknownValue(f"{where}{name} is unknown (null)")


def _mul(a: Any, b: Any, limits: Limits) -> Any:
    if isinstance(a, int) and isinstance(b, _SEQUENCES):
        a, b = b, a
    if isinstance(a, _SEQUENCES) and isinstance(b, int) and a and b > 0:
        _tick(limits)
        _bound(b * weight(a, limits.cells // b), limits, "`*`")
    return a * b


def _add(a: Any, b: Any, limits: Limits) -> Any:
    if isinstance(a, _SEQUENCES) and isinstance(b, _SEQUENCES):
        _tick(limits)
        _bound(weight(a, limits.cells) + weight(b, limits.cells), limits, "`+`")
    return a + b


def _mod(a: Any, b: Any, limits: Limits) -> Any:
    if isinstance(a, str):  # `'%0999999999d' % 0`: no way to know the size before building it
        raise LimitExceeded("`%` formatting of text is not allowed: it can build text of any size")
    return a % b


def _sum(items: Iterable[Any], start: Any = 0) -> Any:
    if start.__class__ not in (int, float, bool):  # `sum(lists, [])` concatenates in quadratic time
        raise TypeError(f"sum()'s start must be a number, got {type(start).__name__}")
    return sum(items, start)


@lru_cache(maxsize=4096)
def _version(text: str) -> Version:
    return Version(text)


def _version_of(value: Any) -> Version:
    if isinstance(value, Version):
        return value
    if not isinstance(value, str):
        raise TypeError(f"version() takes a string, got {type(value).__name__}")
    if len(value) > _MAX_VERSION:
        raise LimitExceeded(f"version() of a text over {_MAX_VERSION} characters")
    return _version(value)


def _contains(a: Any, b: Any, limits: Limits) -> bool:
    if isinstance(b, _SEQUENCES) and len(b) > _SMALL:
        _tick(limits)
    return a in b


def _not_contains(a: Any, b: Any, limits: Limits) -> bool:
    return not _contains(a, b, limits)


# name -> (callable, least args, most args, walks its arguments: checks the deadline)
_PLAIN_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None, bool]] = {
    "len": (len, 1, 1, False),
    "sum": (_sum, 1, 2, True),
    "min": (min, 1, None, True),
    "max": (max, 1, None, True),
    "abs": (abs, 1, 1, False),
    "any": (any, 1, 1, True),
    "all": (all, 1, 1, True),
}
_FUNCTIONS = (*_CHANGE_FUNCTIONS, *_PLAIN_FUNCTIONS, "days_since", "version", "default")
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Sub: operator.sub,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
}
# The operators that can build big values: they take the run, to check its bounds.
_BOUNDED_BINARY: dict[type[ast.operator], Callable[[Any, Any, Limits], Any]] = {
    ast.Add: _add,
    ast.Mult: _mul,
    ast.Mod: _mod,
}
# Comparisons walk values that came from the record (bounded by its size) or that checked
# operations built; only `in`, which a rule may repeat over a long list, checks the deadline.
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_MEMBERSHIP: dict[type[ast.cmpop], Callable[[Any, Any, Limits], bool]] = {
    ast.In: _contains,
    ast.NotIn: _not_contains,
}


def _with_limits(op: Callable[[Any, Any], Any] | None) -> Callable[[Any, Any, Limits], Any]:
    """A plain comparison in a chain, where every step takes the limits."""
    assert op is not None
    return lambda a, b, limits: op(a, b)


_FORBIDDEN: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.IfExp: "`x if c else y` is not allowed (use `and`/`or`)",
    ast.NamedExpr: "`:=` is not allowed",
    ast.Dict: "dict literals are not allowed",
    ast.Set: "set literals are not allowed (use a list)",
    ast.JoinedStr: "f-strings are not allowed",
    ast.Await: "`await` is not allowed",
    ast.Yield: "`yield` is not allowed",
    ast.YieldFrom: "`yield` is not allowed",
    ast.Starred: "`*` unpacking is not allowed",
}
_OPERATOR_NAMES: dict[type[ast.AST], str] = {
    ast.Pow: "**",
    ast.MatMult: "@",
    ast.LShift: "<<",
    ast.RShift: ">>",
    ast.BitOr: "|",
    ast.BitAnd: "&",
    ast.BitXor: "^",
    ast.Invert: "~",
    ast.Is: "is",
    ast.IsNot: "is not",
}


# -- compiler ----------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, source: str, limits: Limits):
        self.lines = source.splitlines() or [""]
        self.is_change = False
        self.fields: set[str] = set()
        self.reads = 0  # data reads compiled so far: a part that adds none is a constant
        self.reads_clock = False
        self.limits = limits

    def error(self, node: ast.AST, message: str) -> ExpressionError:
        lineno = getattr(node, "lineno", None)
        offset = getattr(node, "col_offset", None)
        col = None
        if lineno is not None and offset is not None and lineno <= len(self.lines):
            # col_offset counts UTF-8 bytes; report characters, 1-based.
            line = self.lines[lineno - 1].encode()
            col = len(line[:offset].decode("utf-8", "replace")) + 1
        return ExpressionError(message, col)

    def compile(self, node: ast.AST) -> _Fn:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            message = _FORBIDDEN.get(type(node))
            if message is None:
                message = f"{type(node).__name__} expressions are not allowed"
            raise self.error(node, message)
        reads = self.reads
        fn: _Fn = method(node)
        if self.reads == reads and not isinstance(node, ast.Constant):
            fn = self.fold(node, fn)
        return fn

    def fold(self, node: ast.AST, fn: _Fn) -> _Fn:
        """Evaluate a part that reads no data once, now, under the bounds: one over them is
        an error of the rule file (``max([[0] * 1000000] * 1000000)`` is refused here rather
        than hanging every check). Nothing in the language mutates a value, so the result
        can stand for the part; one that raises on no data (``1 / 0``) stays unknown."""
        try:
            value = _run(fn, {}, None, datetime.min)  # a constant never reads the clock
        except LimitExceeded as exc:
            raise self.error(node, str(exc)) from None
        except UnknownValue:
            return fn
        return lambda n, o, now: value

    def field_name(self, node: ast.AST, name: str) -> str:
        known = fields.known()
        if name not in known:
            raise self.error(node, f"unknown field '{name}'{did_you_mean(name, list(known))}")
        self.fields.add(name)
        self.reads += 1
        return name

    def dotted(self, node: ast.expr) -> list[str] | None:
        """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        return [node.id, *reversed(parts)]

    # literals

    def _Constant(self, node: ast.Constant) -> _Fn:
        value = node.value
        if value is not None and not isinstance(value, bool | int | float | str):
            raise self.error(node, f"{type(value).__name__} literals are not allowed")
        return lambda n, o, now: value

    def _sequence(self, node: ast.List | ast.Tuple, build: Callable[[Iterable[Any]], Any]) -> _Fn:
        items = [self.compile(item) for item in node.elts]
        limits = self.limits

        def make(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
            value = build(item(n, o, now) for item in items)
            _tick(limits)  # `[x, x, x]` weighs three x's
            _bound(weight(value, limits.cells), limits, "a list")
            return value

        return make

    def _List(self, node: ast.List) -> _Fn:
        return self._sequence(node, list)

    def _Tuple(self, node: ast.Tuple) -> _Fn:
        return self._sequence(node, tuple)

    # names and attributes

    def _Name(self, node: ast.Name) -> _Fn:
        name = node.id
        if name in ("old", "new"):
            raise self.error(node, f"'{name}' needs a field, e.g. {name}.repo_watchers")
        if name in _FUNCTIONS:
            raise self.error(node, f"'{name}' is a function; call it as {name}(...)")
        namespaced = [f for f in fields.known() if f.startswith(f"{name}.")]
        if namespaced and name not in fields.known():
            raise self.error(node, f"'{name}' needs a field, e.g. {namespaced[0]}")
        return self.read_field(node, name)

    def read_field(self, node: ast.AST, name: str) -> _Fn:
        self.field_name(node, name)

        def read(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
            value = n.get(name)
            if value is None:
                raise _unknown_field(name)
            return value

        return read

    def _Attribute(self, node: ast.Attribute) -> _Fn:
        target, attr = node.value, node.attr
        path = self.dotted(node)
        if path is not None and path[0] in ("old", "new") and len(path) == 1:
            path = None
        rest = path and (path[1:] if path[0] in ("old", "new") else path)
        if rest and ".".join(rest[:-1]) in fields.known():
            path = None  # an attribute of a field (`pypi_version.major`): not allowed
        if path is not None and path[0] not in ("old", "new"):
            return self.read_field(node, ".".join(path))
        if path is not None:
            name = self.field_name(node, ".".join(path[1:]))
            self.is_change = True
            if path[0] == "new":

                def read_new(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
                    value = n.get(name)
                    if value is None:
                        raise _unknown_field(name, "new.")
                    return value

                return read_new

            def read_old(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
                value = None if o is None else o.get(name)
                if value is None:
                    raise _unknown_field(name, "old.")
                return value

            return read_old
        if isinstance(target, ast.Call) and attr in _RESULT_ATTRIBUTES:
            inner = self.compile(target)
            get = operator.attrgetter(attr)
            return lambda n, o, now: get(inner(n, o, now))
        if isinstance(target, ast.Call):
            allowed = ", ".join(f".{a}" for a in _RESULT_ATTRIBUTES)
            raise self.error(
                node,
                f"unknown attribute '.{attr}'{did_you_mean(attr, _RESULT_ATTRIBUTES)}"
                f" (a call's result allows {allowed})",
            )
        raise self.error(
            node,
            f"attribute '.{attr}' is not allowed here: use old.FIELD, new.FIELD or "
            "version(...).major/.minor/.micro",
        )

    # operators

    def _BinOp(self, node: ast.BinOp) -> _Fn:
        op = _BINARY.get(type(node.op))
        bounded = _BOUNDED_BINARY.get(type(node.op))
        if op is None and bounded is None:
            symbol = _OPERATOR_NAMES.get(type(node.op), type(node.op).__name__)
            raise self.error(node, f"operator `{symbol}` is not allowed")
        left, right = self.compile(node.left), self.compile(node.right)
        if bounded is not None:
            limits = self.limits
            return lambda n, o, now: bounded(left(n, o, now), right(n, o, now), limits)
        assert op is not None
        return lambda n, o, now: op(left(n, o, now), right(n, o, now))

    def _UnaryOp(self, node: ast.UnaryOp) -> _Fn:
        operand = self.compile(node.operand)
        if isinstance(node.op, ast.USub):
            return lambda n, o, now: -operand(n, o, now)
        if isinstance(node.op, ast.UAdd):
            return lambda n, o, now: +operand(n, o, now)
        if isinstance(node.op, ast.Not):
            return lambda n, o, now: not operand(n, o, now)
        symbol = _OPERATOR_NAMES.get(type(node.op), type(node.op).__name__)
        raise self.error(node, f"operator `{symbol}` is not allowed")

    def _BoolOp(self, node: ast.BoolOp) -> _Fn:
        parts = [self.compile(value) for value in node.values]
        if isinstance(node.op, ast.And):

            def all_of(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
                value: Any = True
                for part in parts:
                    value = part(n, o, now)
                    if not value:
                        return value
                return value

            return all_of

        def any_of(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
            value: Any = False
            for part in parts:
                value = part(n, o, now)
                if value:
                    return value
            return value

        return any_of

    def _Compare(self, node: ast.Compare) -> _Fn:
        ops: list[Callable[[Any, Any, Limits], Any]] = []
        for op_node in node.ops:
            plain, member = _COMPARE.get(type(op_node)), _MEMBERSHIP.get(type(op_node))
            if plain is None and member is None:
                symbol = _OPERATOR_NAMES.get(type(op_node), type(op_node).__name__)
                hint = " (a null field is already unknown)" if symbol in ("is", "is not") else ""
                raise self.error(node, f"operator `{symbol}` is not allowed{hint}")
            ops.append(member or _with_limits(plain))
        left = self.compile(node.left)
        rights = [self.compile(c) for c in node.comparators]
        limits = self.limits
        if len(ops) == 1:
            right = rights[0]
            plain = _COMPARE.get(type(node.ops[0]))
            if plain is not None:  # the everyday case, without the run
                return lambda n, o, now: plain(left(n, o, now), right(n, o, now))
            member = ops[0]
            return lambda n, o, now: member(left(n, o, now), right(n, o, now), limits)
        pairs = list(zip(ops, rights, strict=True))

        def chain(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> bool:
            a = left(n, o, now)
            for op, right in pairs:
                b = right(n, o, now)
                if not op(a, b, limits):
                    return False
                a = b
            return True

        return chain

    def _Subscript(self, node: ast.Subscript) -> _Fn:
        target = self.compile(node.value)
        index = node.slice
        if isinstance(index, ast.Slice):
            none: _Fn = lambda n, o, now: None  # noqa: E731
            lower = self.compile(index.lower) if index.lower else none
            upper = self.compile(index.upper) if index.upper else none
            step = self.compile(index.step) if index.step else none
            return lambda n, o, now: target(n, o, now)[
                lower(n, o, now) : upper(n, o, now) : step(n, o, now)
            ]
        key = self.compile(index)
        return lambda n, o, now: target(n, o, now)[key(n, o, now)]

    # calls

    def _Call(self, node: ast.Call) -> _Fn:
        if not isinstance(node.func, ast.Name):
            raise self.error(node, f"only the functions {', '.join(_FUNCTIONS)} can be called")
        name = node.func.id
        if name not in _FUNCTIONS:
            if name in fields.known():
                raise self.error(node, f"'{name}' is a field, not a function")
            raise self.error(node, f"unknown function '{name}'{did_you_mean(name, _FUNCTIONS)}")
        if node.keywords:
            raise self.error(node, f"{name}() takes no keyword arguments")
        args = node.args
        if name in _CHANGE_FUNCTIONS:
            return self.change_function(node, name, args)
        if name == "default":
            self.arity(node, name, args, 2, 2)
            value, fallback = self.compile(args[0]), self.compile(args[1])

            def default(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
                try:
                    return value(n, o, now)
                except LimitExceeded:
                    raise
                except (UnknownValue, *_DATA_ERRORS):  # a null field, or it raised on its data
                    return fallback(n, o, now)

            return default
        if name in ("days_since", "version"):
            self.arity(node, name, args, 1, 1)
            arg = self.compile(args[0])
            if name == "version":
                return lambda n, o, now: _version_of(arg(n, o, now))
            self.reads += 1  # it reads the clock: never a constant
            self.reads_clock = True
            day = timedelta(days=1)
            return lambda n, o, now: (now - arg(n, o, now)) / day
        return self.plain_function(node, name, args)

    def plain_function(self, node: ast.Call, name: str, args: list[ast.expr]) -> _Fn:
        fn, least, most, walks = _PLAIN_FUNCTIONS[name]
        self.arity(node, name, args, least, most)
        compiled = [self.compile(a) for a in args]
        limits = self.limits
        if len(compiled) == 1:
            (only,) = compiled
            if not walks:
                return lambda n, o, now: fn(only(n, o, now))

            def call_one(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
                value = only(n, o, now)
                if isinstance(value, _SEQUENCES) and len(value) > _SMALL:
                    _tick(limits)
                return fn(value)

            return call_one

        def call(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
            values = [a(n, o, now) for a in compiled]
            _tick(limits)
            return fn(*values)

        return call

    def arity(self, node: ast.Call, name: str, args: list[ast.expr], least: int, most: int | None):
        count = len(args)
        if count < least or (most is not None and count > most):
            if least == most:
                wanted = f"{least} argument" + ("s" if least != 1 else "")
            elif most is None:
                wanted = f"at least {least} argument" + ("s" if least != 1 else "")
            else:
                wanted = f"{least} to {most} arguments"
            raise self.error(node, f"{name}() takes {wanted}, got {count}")

    def change_function(self, node: ast.Call, name: str, args: list[ast.expr]) -> _Fn:
        if len(args) != 1 or not (
            isinstance(args[0], ast.Constant) and isinstance(args[0].value, str)
        ):
            raise self.error(
                node, f'{name}() takes one field name in quotes, e.g. {name}("repo_watchers")'
            )
        field_name = self.field_name(args[0], args[0].value)
        self.is_change = True
        if name == "changed":

            def changed(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> bool:
                before = None if o is None else o.get(field_name)
                return bool(before != n.get(field_name))

            return changed

        if name in ("added", "removed"):
            if not fields.is_list(field_name):
                raise self.error(node, f"{name}() takes a list field; '{field_name}' is not one")
            gained = name == "added"

            def added(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> list[Any]:
                before, after = (None if o is None else o.get(field_name)), n.get(field_name)
                if before is None or after is None:
                    raise _unknown_field(field_name, "old." if before is None else "new.")
                was, now_ = set(before), set(after)
                return sorted(now_ - was if gained else was - now_)

            return added

        def values(n: dict[str, Any], o: dict[str, Any] | None) -> tuple[Any, Any]:
            before = None if o is None else o.get(field_name)
            if before is None:
                raise _unknown_field(field_name, "old.")
            after = n.get(field_name)
            if after is None:
                raise _unknown_field(field_name, "new.")
            return before, after

        if name == "delta":

            def delta(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
                before, after = values(n, o)
                return after - before

            return delta

        def pct_change(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
            before, after = values(n, o)
            return (after - before) / before * 100

        return pct_change
