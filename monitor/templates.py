"""Bounded jinja2 rendering of rule messages (SPEC §6: templates are bounded).

Templates render in jinja2's immutable sandbox, within three bounds; crossing one raises
:class:`TemplateLimit` (the caller falls back to its default text):

- **size**: the operators that build values (``*``, ``**``, ``+``, ``%``, ``~``) are checked and
  refuse a result over a million cells, counted as :func:`monitor.expr.weight` counts them
  (about 1 MB; a number weighs a cell per bit, as multiplying big ones is what costs); so do
  the string methods and filters that multiply their input (``center``,
  ``replace``, ``indent``, ``join``...), checked before they run; every other call's result is
  checked after it.
- **time**: a deadline (100 ms) checked as the render's code runs, by a trace function
  (:func:`sys.settrace`, on this thread and only while rendering; a tracer already installed,
  such as a debugger's, is put back after). So a loop without output stops too, and so does a
  filter walking a long list (``map``...): tracing every frame of a render costs about as much
  as tracing only the template's, a render of a usual message taking some 0.15 ms instead of
  0.04 ms. One C call (``sort``, ``join``) is not interrupted: the size bounds bound it.
- **output**: :func:`render` stops pulling output once it has more than ``max_chars``.

Intercepted operators are also what keeps jinja's optimizer from folding ``'a' * 10**9`` into a
constant when the template is compiled (26 s and 3.9 GB for every command that loaded it):
:func:`compile_template` instead evaluates the constant parts under the same bounds and
refuses one over them, with its line.
"""

from __future__ import annotations

import gc
import operator
import re
import sys
from collections.abc import Callable, Iterator, Sized
from contextlib import contextmanager
from dataclasses import replace
from functools import wraps
from types import FrameType
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

from monitor.expr import Limits, weight

__all__ = ["LIMITS", "BoundedEnvironment", "Limits", "TemplateLimit", "compile_template", "render"]


# The bounds of one render, the same as an expression's; read when a render starts (tests
# replace it).
LIMITS = Limits()
_CHECK_EVERY = 256  # lines and calls run between two looks at the clock


class TemplateLimit(Exception):
    """A template over its bounds; ``lineno`` is the template line, when known."""

    def __init__(self, message: str, lineno: int | None = None):
        self.message = message
        self.lineno = lineno
        super().__init__(message)


def _over(cells: int, what: str) -> None:
    if cells > LIMITS.cells:
        raise TemplateLimit(
            f"{what} would build a value over {LIMITS.cells:,} characters or elements (1 MB)"
        )


def _size(value: Any) -> int:
    return weight(value, LIMITS.cells)


# -- operators -----------------------------------------------------------------------------


def _mul(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, str | list | tuple):
        left, right = right, left
    if isinstance(left, str | list | tuple) and isinstance(right, int) and left and right > 0:
        _over(right * weight(left, LIMITS.cells // right), "`*`")
    elif isinstance(left, int) and isinstance(right, int):
        _over(left.bit_length() + right.bit_length(), "`*`")
    return left * right


def _pow(left: Any, right: Any) -> Any:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        _over(left.bit_length() * right, "`**`")
    return left**right


def _add(left: Any, right: Any) -> Any:
    if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
        _over(_size(left) + _size(right), "`+`")
    return left + right


# A width or precision in a %-format or a {}-format field, or `*` (taken from the arguments).
_PERCENT_WIDTHS = re.compile(r"%[-#0 +]*(\*|\d*)(?:\.(\*|\d*))?")
_BRACE_WIDTHS = re.compile(r"\{[^{}]*?:[^{}\d]*(\d*)(?:\.(\d+))?[^{}]*\}")


def _formatted_size(template: str, args: Any, pattern: re.Pattern[str]) -> int:
    """At most how long formatting ``template`` with ``args`` makes the text."""
    widths = 0
    for match in pattern.finditer(template):
        for width in match.groups():
            if width == "*":
                raise TemplateLimit("a width taken from the arguments (`*`) is not allowed")
            widths += int(width) if width else 0
    return len(template) + widths + _size(args)


def _mod(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _over(_formatted_size(left, right, _PERCENT_WIDTHS), "`%`")
    return left % right


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "*": _mul,
    "**": _pow,
    "+": _add,
    "%": _mod,
}


# -- calls ---------------------------------------------------------------------------------


def _lines(text: Any) -> int:
    return str(text).count("\n") + 1


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: Any) -> Any:
    return args[index] if len(args) > index else kwargs.get(name, default)


def _width(value: Any) -> int:
    return value if isinstance(value, int) else len(str(value))


def _joined(separator: Any, items: Any) -> int:
    return _size(items) + len(str(separator)) * len(items)


# What a call would make, estimated before it runs: name -> (value, args, kwargs) -> cells,
# for the string methods (``str.NAME``, the value being the string) and the filters (the
# value being what is filtered) that can multiply their input. Any other call is checked after.
_ESTIMATES: dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], int]] = {
    "str.center": lambda s, a, k: max(len(s), _width(_arg(a, k, 0, "width", 0))),
    "str.ljust": lambda s, a, k: max(len(s), _width(_arg(a, k, 0, "width", 0))),
    "str.rjust": lambda s, a, k: max(len(s), _width(_arg(a, k, 0, "width", 0))),
    "str.zfill": lambda s, a, k: max(len(s), _width(_arg(a, k, 0, "width", 0))),
    "str.expandtabs": lambda s, a, k: len(s) + s.count("\t") * _width(_arg(a, k, 0, "tabsize", 8)),
    "str.replace": lambda s, a, k: len(s) + (len(s) + 1) * len(str(_arg(a, k, 1, "new", ""))),
    "str.join": lambda s, a, k: _joined(s, a[0]),
    "str.translate": lambda s, a, k: len(s) * max([_size(v) for v in dict(a[0]).values()] or [1]),
    "str.format": lambda s, a, k: _formatted_size(s, (a, k), _BRACE_WIDTHS),
    "str.format_map": lambda s, a, k: _formatted_size(s, a, _BRACE_WIDTHS),
    "center": lambda s, a, k: max(len(str(s)), _width(_arg(a, k, 0, "width", 80))),
    "replace": lambda s, a, k: len(str(s)) * (1 + len(str(_arg(a, k, 1, "new", "")))) + 1,
    "join": lambda s, a, k: _joined(_arg(a, k, 0, "d", ""), s),
    "indent": lambda s, a, k: len(str(s)) + _lines(s) * _width(_arg(a, k, 0, "width", 4)),
    "wordwrap": lambda s, a, k: len(str(s)) * (1 + len(str(_arg(a, k, 3, "wrapstring", "")))),
    "format": lambda s, a, k: _formatted_size(str(s), (a, k), _PERCENT_WIDTHS),
    "batch": lambda s, a, k: _size(s) + _width(_arg(a, k, 0, "linecount", 1)),
    "slice": lambda s, a, k: _size(s) + _width(_arg(a, k, 0, "slices", 1)),
    "tojson": lambda s, a, k: _size(s) * (1 + _width(_arg(a, k, 0, "indent", 0) or 0)),
    "lipsum": lambda n, a, k: _width(n) * _width(_arg(a, k, 2, "max", 100)) * 12,
}
_MATERIALIZED = frozenset({"join", "str.join"})  # an iterator joined is listed first, to count it


def _check_call(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    estimate = _ESTIMATES.get(name)
    if estimate is not None:
        _over(estimate(value, args, kwargs), f"{name}()")


def _checked_result(name: str, result: Any) -> Any:
    if isinstance(result, str | list | tuple):
        _over(_size(result), f"{name}()")
    return result


def _bounded_filter(name: str, filter_: Callable[..., Any]) -> Callable[..., Any]:
    """``filter_`` with its call estimated before and its result checked after."""
    passes = getattr(filter_, "jinja_pass_arg", None) is not None  # a context comes first

    @wraps(filter_)  # keeps jinja_pass_arg, so jinja still passes the context
    def bounded(*args: Any, **kwargs: Any) -> Any:
        first = 1 if passes else 0
        if name in _MATERIALIZED and not isinstance(args[first], Sized):
            args = (*args[:first], list(args[first]), *args[first + 1 :])
        _check_call(name, args[first], args[first + 1 :], kwargs)
        return _checked_result(name, filter_(*args, **kwargs))

    return bounded


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator with ``a ~ b`` joined by :meth:`BoundedEnvironment.concat_parts`
    (jinja joins them itself, the one operator it does not let a sandbox intercept)."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_parts((")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write("), context.eval_ctx)")


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox with size bounds on operators, filters and calls."""

    intercepted_binops = frozenset(_BINOPS)
    code_generator_class = _CodeGenerator

    def concat_parts(self, parts: tuple[Any, ...], eval_ctx: Any) -> str:
        """``a ~ b ~ c``, refused over the size bound before it is joined."""
        if eval_ctx.autoescape:
            return markup_join(parts)
        texts = [str(part) for part in parts]
        _over(sum(map(len, texts)), "`~`")
        return "".join(texts)

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.filters = {name: _bounded_filter(name, f) for name, f in self.filters.items()}

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return _BINOPS[operator](left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "")
        # The sandbox wraps str.format; the bound method is then __wrapped__.
        target = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        if isinstance(target, str):  # a string method: its string is the value
            name = f"str.{name}"
            if name in _MATERIALIZED and args and not isinstance(args[0], Sized):
                args = (list(args[0]), *args[1:])
            _check_call(name, target, args, kwargs)
        elif name == "generate_lorem_ipsum":
            _check_call("lipsum", _arg(args, kwargs, 0, "n", 5), args, kwargs)
        return _checked_result(name, super().call(__context, __obj, *args, **kwargs))


# -- compiling -----------------------------------------------------------------------------

_CONSTANT_BINOPS: dict[type[nodes.BinExpr], Callable[[Any, Any], Any]] = {
    nodes.Mul: _mul,
    nodes.Pow: _pow,
    nodes.Add: _add,
    nodes.Mod: _mod,
    nodes.Sub: operator.sub,
    nodes.Div: operator.truediv,
    nodes.FloorDiv: operator.floordiv,
}


class _NotConstant(Exception):
    pass


def _constant(node: nodes.Node, known: dict[int, Any]) -> Any:
    """The value of an expression made of literals and operators, under the bounds; raises
    :class:`_NotConstant` for anything else (names, calls...). ``known``: the values of the
    nodes already evaluated, so that a chain of operators is evaluated once, not once per
    link."""
    if id(node) not in known:
        try:
            known[id(node)] = _evaluate(node, known)
        except _NotConstant:
            known[id(node)] = _NotConstant
    value = known[id(node)]
    if value is _NotConstant:
        raise _NotConstant
    return value


def _evaluate(node: nodes.Node, known: dict[int, Any]) -> Any:
    if isinstance(node, nodes.Const):
        return node.value
    if isinstance(node, nodes.List | nodes.Tuple):
        items = [_constant(item, known) for item in node.items]
        _over(_size(items), "a list")
        return items
    if isinstance(node, nodes.Concat):
        texts = [str(_constant(part, known)) for part in node.nodes]
        _over(sum(map(len, texts)), "`~`")
        return "".join(texts)
    if isinstance(node, nodes.Neg | nodes.Pos):
        value = _constant(node.node, known)
        return -value if isinstance(node, nodes.Neg) else +value
    op = _CONSTANT_BINOPS.get(type(node)) if isinstance(node, nodes.BinExpr) else None
    if op is None:
        raise _NotConstant
    assert isinstance(node, nodes.BinExpr)
    left, right = _constant(node.left, known), _constant(node.right, known)
    try:
        return op(left, right)
    except TemplateLimit:
        raise
    except Exception:  # `1 / 0`: the render fails, as it would have
        raise _NotConstant from None


def _check_constants(tree: nodes.Template) -> None:
    """Refuse a constant part over the bounds (``{{ 'a' * 10**9 }}``), naming its line."""
    known: dict[int, Any] = {}
    for node in tree.find_all((nodes.BinExpr, nodes.Concat)):
        try:
            _constant(node, known)
        except _NotConstant:
            continue
        except TemplateLimit as exc:
            raise TemplateLimit(exc.message, node.lineno) from None


def compile_template(environment: BoundedEnvironment, source: str) -> Any:
    """The compiled template; raises jinja's ``TemplateSyntaxError``, or
    :class:`TemplateLimit` for a constant part over the bounds."""
    try:
        tree = environment.parse(source)
        # A thousand constant parts near the bounds take their time too; a busy machine must
        # not refuse a sound template, so loading gets ten times a render's time.
        with _deadline(replace(LIMITS, seconds=LIMITS.seconds * 10)):
            _check_constants(tree)
        return environment.from_string(tree)
    except (RecursionError, SyntaxError):  # jinja recursing, or Python refusing its code
        raise TemplateLimit("nested too deeply (a chain of many operators?)") from None


# -- rendering -----------------------------------------------------------------------------


def render(template: Any, context: dict[str, Any], *, max_chars: int) -> str:
    """Render ``template`` within the bounds; the text stops soon after ``max_chars``
    characters (the caller cuts it). Raises :class:`TemplateLimit` over the bounds, and
    whatever the template raises."""
    pieces: list[str] = []
    length = 0
    with _deadline(LIMITS):
        output = template.generate(context)
        try:
            for piece in output:
                pieces.append(piece)
                length += len(piece)
                if length > max_chars:
                    break
        finally:
            output.close()
    return "".join(pieces)


# Where the deadline is raised: in a template's own code or in this module's, never in
# whatever else runs meanwhile (a filter, or a weakref callback during garbage collection,
# where an exception would be swallowed as "unraisable"). A filter's work is bounded by the
# size limits, and control returns to the template right after it.
_RAISE_IN = frozenset({"<template>", __file__})


@contextmanager
def _deadline(limits: Limits) -> Iterator[None]:
    """Raise :class:`TemplateLimit` in the render's code (or the load-time checks') once
    it has run past the limits' seconds, not counting garbage collections meanwhile."""
    deadline = limits.clock() + limits.seconds
    steps = 0
    expired = False
    collecting: float | None = None

    def collected(phase: str, info: Any) -> None:
        # Time the cyclic garbage collector takes meanwhile (a big heap's full pass can
        # take longer than the whole deadline) is not the template's: it moves the deadline.
        nonlocal deadline, collecting
        if phase == "start":
            collecting = limits.clock()
        elif collecting is not None:
            deadline += limits.clock() - collecting
            collecting = None

    def check(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal steps, expired
        if frame.f_code is collected.__code__:
            return None  # the collector's callback: never raised in (nothing would catch it)
        steps += 1
        # (not while a collection runs: other callbacks of its end run before ours)
        if steps % _CHECK_EVERY == 0 and collecting is None and limits.clock() > deadline:
            expired = True
        if expired and frame.f_code.co_filename in _RAISE_IN:
            raise TemplateLimit(f"ran over its {limits.seconds * 1000:g} ms deadline")
        return check

    previous = sys.gettrace()
    gc.callbacks.append(collected)
    sys.settrace(check)
    try:
        yield
    finally:
        sys.settrace(previous)
        gc.callbacks.remove(collected)
