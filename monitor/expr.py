"""The safe expression language of a rule's ``when`` (SPEC §6).

No Python ``eval``: the source is parsed with :func:`ast.parse`, every node is checked against
a whitelist, and the tree is compiled once into nested closures, so evaluating a rule is a few
plain function calls. Allowed:

- literals: numbers, strings, ``True``/``False``/``None``, lists and tuples;
- arithmetic ``+ - * / // %`` and unary ``-``/``+``; comparisons (chained too), ``in``,
  ``not in``; ``and``/``or``/``not``; indexing and slices;
- the snapshot fields (:data:`monitor.snapshot.FIELDS`) as bare names (the new snapshot), and
  ``old.FIELD`` / ``new.FIELD``;
- the functions ``changed("f")``, ``delta("f")`` (new − old), ``pct_change("f")``
  ((new − old) / old × 100), ``len``, ``sum``, ``min``, ``max``, ``abs``, ``any``, ``all``,
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
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from packaging.version import Version

from monitor.errors import did_you_mean
from monitor.snapshot import FIELDS

__all__ = ["Expression", "ExpressionError", "UnknownValue", "compile_expression"]

# A compiled node: (new values, old values or None, now) -> value.
_Fn = Callable[[dict[str, Any], dict[str, Any] | None, datetime], Any]

_FIELD_SET = frozenset(FIELDS)
_CHANGE_FUNCTIONS = ("changed", "delta", "pct_change")
# name -> (callable, least args, most args)
_PLAIN_FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int | None]] = {
    "len": (len, 1, 1),
    "sum": (sum, 1, 2),
    "min": (min, 1, None),
    "max": (max, 1, None),
    "abs": (abs, 1, 1),
    "any": (any, 1, 1),
    "all": (all, 1, 1),
}
_FUNCTIONS = (*_CHANGE_FUNCTIONS, *_PLAIN_FUNCTIONS, "days_since", "version")
_RESULT_ATTRIBUTES = ("major", "minor", "micro", "release", "is_prerelease")
_MAX_SEQUENCE = 1_000_000  # `"x" * n` / `[0] * n` larger than this is refused
_MAX_SOURCE = 10_000

# Errors an expression may raise on its inputs; they mean "unknown", never a crash.
_DATA_ERRORS = (TypeError, ValueError, ArithmeticError, LookupError, AttributeError)


class ExpressionError(ValueError):
    """A ``when`` that is not a valid expression; ``col`` is 1-based (``None`` if unknown)."""

    def __init__(self, message: str, col: int | None = None):
        self.message = message
        self.col = col
        super().__init__(message)


class UnknownValue(Exception):
    """The expression cannot be decided on this data (a null field, or it raised)."""


@dataclass(frozen=True)
class Expression:
    source: str
    is_change: bool  # uses old/new or changed/delta/pct_change -> a change rule
    fields: frozenset[str]  # the fields it reads
    _fn: _Fn = field(repr=False, compare=False)

    def evaluate(self, new: dict[str, Any], old: dict[str, Any] | None, now: datetime) -> Any:
        """Evaluate on field values (``Snapshot.values()``); raise :class:`UnknownValue`.

        ``old`` is the previous snapshot's values; a change expression without one is unknown.
        """
        if old is None and self.is_change:
            raise UnknownValue("no previous snapshot to compare with")
        try:
            return self._fn(new, old, now)
        except UnknownValue:
            raise
        except _DATA_ERRORS as exc:
            raise UnknownValue(f"{type(exc).__name__}: {exc}") from exc


def compile_expression(source: str) -> Expression:
    """Check ``source`` against the whitelist and compile it; raise :class:`ExpressionError`."""
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
    compiler = _Compiler(text)
    try:
        fn = compiler.compile(tree.body)
    except RecursionError:
        raise ExpressionError("expression too deeply nested") from None
    return Expression(text, compiler.is_change, frozenset(compiler.fields), fn)


# -- runtime helpers ---------------------------------------------------------------------------


def _unknown_field(name: str, where: str = "") -> UnknownValue:
    return UnknownValue(f"{where}{name} is unknown (null)")


def _mul(a: Any, b: Any) -> Any:
    if isinstance(a, int) and isinstance(b, str | list | tuple):
        a, b = b, a
    if isinstance(a, str | list | tuple) and isinstance(b, int) and len(a) * b > _MAX_SEQUENCE:
        raise UnknownValue("sequence repetition too large")
    return a * b


@lru_cache(maxsize=4096)
def _version(text: str) -> Version:
    return Version(text)


def _version_of(value: Any) -> Version:
    if isinstance(value, Version):
        return value
    if not isinstance(value, str):
        raise TypeError(f"version() takes a string, got {type(value).__name__}")
    return _version(value)


def _contains(a: Any, b: Any) -> bool:
    return a in b


def _not_contains(a: Any, b: Any) -> bool:
    return a not in b


_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: _mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: _contains,
    ast.NotIn: _not_contains,
}
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
    def __init__(self, source: str):
        self.lines = source.splitlines() or [""]
        self.is_change = False
        self.fields: set[str] = set()

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
        fn: _Fn = method(node)
        return fn

    def field_name(self, node: ast.AST, name: str) -> str:
        if name not in _FIELD_SET:
            raise self.error(node, f"unknown field '{name}'{did_you_mean(name, FIELDS)}")
        self.fields.add(name)
        return name

    # literals

    def _Constant(self, node: ast.Constant) -> _Fn:
        value = node.value
        if value is not None and not isinstance(value, bool | int | float | str):
            raise self.error(node, f"{type(value).__name__} literals are not allowed")
        return lambda n, o, now: value

    def _sequence(self, node: ast.List | ast.Tuple, build: Callable[[Iterable[Any]], Any]) -> _Fn:
        items = [self.compile(item) for item in node.elts]
        constants = [item for item in node.elts if isinstance(item, ast.Constant)]
        if len(constants) == len(node.elts):
            # Folded once; nothing in the language can mutate a value.
            folded = build(item.value for item in constants)
            return lambda n, o, now: folded
        return lambda n, o, now: build(item(n, o, now) for item in items)

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
        if name not in _FIELD_SET:
            raise self.error(node, f"unknown field '{name}'{did_you_mean(name, FIELDS)}")
        self.fields.add(name)

        def read(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> Any:
            value = n.get(name)
            if value is None:
                raise _unknown_field(name)
            return value

        return read

    def _Attribute(self, node: ast.Attribute) -> _Fn:
        target, attr = node.value, node.attr
        if isinstance(target, ast.Name) and target.id in ("old", "new"):
            name = self.field_name(node, attr)
            self.is_change = True
            if target.id == "new":

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
        if op is None:
            symbol = _OPERATOR_NAMES.get(type(node.op), type(node.op).__name__)
            raise self.error(node, f"operator `{symbol}` is not allowed")
        left, right = self.compile(node.left), self.compile(node.right)
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
        ops = []
        for op_node in node.ops:
            op = _COMPARE.get(type(op_node))
            if op is None:
                symbol = _OPERATOR_NAMES.get(type(op_node), type(op_node).__name__)
                hint = " (a null field is already unknown)" if symbol in ("is", "is not") else ""
                raise self.error(node, f"operator `{symbol}` is not allowed{hint}")
            ops.append(op)
        left = self.compile(node.left)
        rights = [self.compile(c) for c in node.comparators]
        if len(ops) == 1:
            op, right = ops[0], rights[0]
            return lambda n, o, now: op(left(n, o, now), right(n, o, now))
        pairs = list(zip(ops, rights, strict=True))

        def chain(n: dict[str, Any], o: dict[str, Any] | None, now: datetime) -> bool:
            a = left(n, o, now)
            for op, right in pairs:
                b = right(n, o, now)
                if not op(a, b):
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
            if name in _FIELD_SET:
                raise self.error(node, f"'{name}' is a field, not a function")
            raise self.error(node, f"unknown function '{name}'{did_you_mean(name, _FUNCTIONS)}")
        if node.keywords:
            raise self.error(node, f"{name}() takes no keyword arguments")
        args = node.args
        if name in _CHANGE_FUNCTIONS:
            return self.change_function(node, name, args)
        if name in ("days_since", "version"):
            self.arity(node, name, args, 1, 1)
            arg = self.compile(args[0])
            if name == "version":
                return lambda n, o, now: _version_of(arg(n, o, now))
            day = timedelta(days=1)
            return lambda n, o, now: (now - arg(n, o, now)) / day
        fn, least, most = _PLAIN_FUNCTIONS[name]
        self.arity(node, name, args, least, most)
        compiled = [self.compile(a) for a in args]
        if len(compiled) == 1:
            (only,) = compiled
            return lambda n, o, now: fn(only(n, o, now))
        return lambda n, o, now: fn(*[a(n, o, now) for a in compiled])

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
