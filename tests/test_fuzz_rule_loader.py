"""Issue 10: the rule loader over hostile input — random bytes, random YAML from a grammar of
keys, anchors, aliases, tags and odd scalars, and well-formed rules whose `when` and `message`
are random — gives `path:line: message` problems or rules, never another exception.

Bounded: a few hundred examples per test, no deadline (the whole file takes a few seconds)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.rules import KEYS, check_rule_files, load_rules

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _load(path: Path, data: bytes) -> list[str]:
    """Check ``data`` as a user rule file (what `rules check`, `check` and `load_rules` run);
    every problem names the file."""
    path.write_bytes(data)
    problems = check_rule_files([path])
    where = re.compile(re.escape(str(path)) + r"(:\d+)?: \S")
    assert all(where.match(problem) for problem in problems), problems
    return problems


# -- random bytes ------------------------------------------------------------------------------

PREFIXES = [b"", b"rules:\n", b"rules:\n  - id: x\n    when: ", b"rules:\n  - id: x\n    "]


@FUZZ
@given(prefix=st.sampled_from(PREFIXES), data=st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, prefix: bytes, data: bytes) -> None:
    _load(tmp_path / "fuzz.yaml", prefix + data)


# -- random YAML from a grammar ----------------------------------------------------------------

SCALARS = [
    "x", "repo_forks < 5", "'q'", '"dq"', "<<", "~", "null", "yes", "off", "True", "1", "-0",
    "0x1F", "0o17", "1_000", "190:20:30", "1e999", ".inf", ".nan", "2024-01-01",
    "2024-13-45", "2001-12-14t21:59:43.10-99:00", "9" * 5000, "'" + "a" * 300 + "'",
    '"\\x00\\u202e"', "|\n  block\n", ">-\n  folded\n", "{{ title }}", "1h", "999999999999w",
]  # fmt: skip
TAGS = [
    "!!str ", "!!int ", "!!float ", "!!bool ", "!!null ", "!!map ", "!!seq ", "!!binary ",
    "!!set ", "!!omap ", "!!timestamp ", "!!merge ", "!!python/name:os.system ",
    "!!python/object/apply:os.system ", "!local ", "! ", "!<tag:x> ",
]  # fmt: skip
STRUCTURE = [
    "\n", "\n  ", "\n    ", "\n      ", "- ", ": ", ", ", "[", "]", "{", "}", "? ", "---\n",
    "...\n", "# c\n", "\t",
]  # fmt: skip
KEYWORDS = [f"{key}: " for key in (*KEYS, "rules", "rule", "<<", "x")]

TOKEN = st.one_of(
    st.sampled_from(SCALARS),
    st.sampled_from(TAGS),
    st.sampled_from(STRUCTURE),
    st.sampled_from(KEYWORDS),
    st.sampled_from(["a", "b", "c"]).map(lambda name: f"&{name} "),
    st.sampled_from(["a", "b", "c", "z"]).map(lambda name: f"*{name}"),
)


@FUZZ
@given(tokens=st.lists(TOKEN, max_size=40))
def test_random_yaml(tmp_path: Path, tokens: list[str]) -> None:
    _load(tmp_path / "fuzz.yaml", ("rules:\n  - " + "".join(tokens)).encode("utf-8"))


def _rule_file(head: str, body: list[str]) -> str:
    """A rule whose keys are right and whose values are random tokens."""
    return f"rules:\n  - id: x\n    {head}" + "".join(body)


@FUZZ
@given(
    head=st.sampled_from(KEYWORDS),
    body=st.lists(st.one_of(st.sampled_from(SCALARS), st.sampled_from(TAGS), TOKEN), max_size=12),
)
def test_random_values_under_rule_keys(tmp_path: Path, head: str, body: list[str]) -> None:
    _load(tmp_path / "fuzz.yaml", _rule_file(head, body).encode("utf-8"))


# -- well-formed rules: random `when` and `message` --------------------------------------------

NAMES = [
    "repo_watchers", "repo_forks", "pypi_version", "commits_over_52", "participants", "title",
    "slug", "pypi", "github", "project", "nope", "__import__", "__class__",
]  # fmt: skip
FUNCTIONS = ["changed", "delta", "pct_change", "added", "removed", "len", "sum", "min", "max",
             "abs", "any", "all", "days_since", "version", "eval", "getattr", "open"]  # fmt: skip
LITERALS = ["0", "1", "-1", "10", "1.5", "1e308", "True", "None", "'x'", '"pypi_version"',
            "[]", "[0]", "()", "{}", "b'x'", "...", "0j"]  # fmt: skip
OPERATORS = [
    "+", "-", "*", "/", "//", "%", "**", "<", "<=", "==", "!=", ">", ">=", "and", "or", "not",
    "in", "not in", "is", "|", "&", "^", "~", "<<", ">>", "@", ":=",
]  # fmt: skip
PUNCTUATION = ["(", ")", "[", "]", ",", ":", ".", "{", "}", "lambda", "if", "else", "for",
               "old.", "new.", ".major", ".__class__", "\\", "'", "#", "\n"]  # fmt: skip


def _expressions() -> st.SearchStrategy[str]:
    """Python-ish expressions built as trees (mostly parsable)."""
    leaf = st.one_of(
        st.sampled_from(NAMES),
        st.sampled_from(LITERALS),
        st.sampled_from(["old", "new"]).flatmap(
            lambda who: st.sampled_from(NAMES).map(lambda name: f"{who}.{name}")
        ),
    )

    def grow(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(children, st.sampled_from(OPERATORS), children).map(" ".join),
            st.tuples(st.sampled_from(["not ", "-", "+", "~"]), children).map("".join),
            st.tuples(st.sampled_from(FUNCTIONS), st.lists(children, max_size=3)).map(
                lambda call: f"{call[0]}({', '.join(call[1])})"
            ),
            st.tuples(children, children).map(lambda pair: f"{pair[0]}[{pair[1]}]"),
            st.tuples(children, children).map(lambda pair: f"{pair[0]}[{pair[1]}:]"),
            st.lists(children, max_size=3).map(lambda items: f"[{', '.join(items)}]"),
            children.map(lambda inner: f"({inner})"),
            children.map(lambda inner: f"{inner}.major"),
        )

    return st.recursive(leaf, grow, max_leaves=12)


WHEN_SOUP = st.lists(
    st.one_of(
        st.sampled_from(NAMES),
        st.sampled_from(FUNCTIONS),
        st.sampled_from(LITERALS),
        st.sampled_from(OPERATORS),
        st.sampled_from(PUNCTUATION),
    ),
    max_size=20,
).map(" ".join)
WHEN = st.one_of(
    _expressions(),
    WHEN_SOUP,
    st.text(max_size=40),
)

# Template tokens. No `**` and only small numbers: jinja2 folds constants when it compiles,
# and refusing `{{ 'a' * 10**9 }}` at load is item 4 (the template side, fixed elsewhere).
TEMPLATE_TOKENS = [
    "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "for", "in", "endfor", "if", "else",
    "endif", "set", "macro", "endmacro", "call", "endcall", "raw", "endraw", "filter",
    "endfilter", "include", "import", "extends", "block", "endblock", "with", "endwith",
    "range(", ")", "(", "[", "]", ",", "|", "upper", "join", "default", "length", "e", "safe",
    "format", "attr", ".", "__class__", "__globals__", "mro", "title", "old", "new", "changes",
    "version(", "'x'", '"y"', "0", "1", "9", "*", "+", "~", "-", "/", "%", "==", "and", "not",
    "is", "defined", "loop", "self", "caller", "\n", " ",
]  # fmt: skip
MESSAGE = st.one_of(
    st.lists(st.sampled_from(TEMPLATE_TOKENS), max_size=14).map(" ".join),
    st.text(max_size=40),
)
VALUE: st.SearchStrategy[Any] = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
OPTIONS = st.fixed_dictionaries(
    {},
    optional={
        "description": VALUE,
        "severity": st.one_of(st.sampled_from(["info", "warning", "critical"]), VALUE),
        "repeat": st.one_of(st.sampled_from(["1h", "0s", "999999999999w", "1.5d"]), VALUE),
        "for": st.one_of(st.integers(), VALUE),
        "labels": VALUE,
        "packages": VALUE,
        "notify": VALUE,
        "enabled": VALUE,
        "supersedes": st.one_of(
            st.lists(st.sampled_from(["x", "forks-dropped", "watchers-dropped", "nope"])), VALUE
        ),
    },
)


@FUZZ
@given(when=WHEN, message=MESSAGE, options=OPTIONS)
def test_rules_with_random_when_and_message(
    tmp_path: Path, when: str, message: str, options: dict[str, Any]
) -> None:
    rule = {"id": "x", "when": when, "message": message, **options}
    _load(tmp_path / "fuzz.yaml", yaml.safe_dump({"rules": [rule]}).encode("utf-8"))


@pytest.mark.parametrize(
    "when",
    ["repo_forks < 5", 'changed("pypi_version")', "sum(commits_over_52[-26:]) == 0"],
)
def test_the_fuzz_reaches_rules_that_load(tmp_path: Path, when: str) -> None:
    """The harness itself: a good rule loads without problems."""
    text = yaml.safe_dump({"rules": [{"id": "x", "when": when, "message": "{{ title }}"}]})
    assert _load(tmp_path / "fuzz.yaml", text.encode("utf-8")) == []
    assert load_rules([tmp_path / "fuzz.yaml"])[-1].id == "x"
