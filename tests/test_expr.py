"""The `when` expression language: what it evaluates, what it refuses, what is unknown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from packaging.version import Version

from monitor.expr import Expression, ExpressionError, UnknownValue, compile_expression
from monitor.snapshot import FIELDS

NOW = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
COMMITS = [0] * 40 + [1, 2, 0, 0, 3, 0, 0, 0, 0, 0, 0, 4]


def values(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict.fromkeys(FIELDS)
    base.update(
        slug="django-otp",
        title="django-otp",
        pypi_version="1.7.0",
        repo_watchers=621,
        repo_forks=117,
        commits_over_52=list(COMMITS),
        participants=["alice", "bob"],
        last_updated=NOW - timedelta(days=10, hours=12),
        grids=[3, 11],
        category=1,
    )
    base.update(overrides)
    return base


NEW = values()
OLD = values(pypi_version="1.6.2", repo_watchers=650, repo_forks=117, participants=["alice"])


def evaluate(source: str, new: dict[str, Any] = NEW, old: dict[str, Any] | None = OLD) -> Any:
    return compile_expression(source).evaluate(new, old, NOW)


ALLOWED = [
    # literals
    ("int", "42", 42),
    ("float", "2.5", 2.5),
    ("string", "'abc'", "abc"),
    ("true", "True", True),
    ("false", "False", False),
    ("none", "None", None),
    ("list", "[1, 2, 3]", [1, 2, 3]),
    ("list-of-fields", "[repo_forks, repo_watchers]", [117, 621]),
    ("tuple", "(1, 'a')", (1, "a")),
    # arithmetic
    ("add", "repo_watchers + 1", 622),
    ("sub", "repo_watchers - repo_forks", 504),
    ("mul", "repo_forks * 2", 234),
    ("div", "repo_forks / 2", 58.5),
    ("floordiv", "repo_forks // 2", 58),
    ("mod", "repo_forks % 10", 7),
    ("neg", "-repo_forks", -117),
    ("pos", "+repo_forks", 117),
    ("precedence", "1 + 2 * 3 - (4 - 1)", 4),
    ("string-concat", "slug + '!'", "django-otp!"),
    ("small-repeat", "'ab' * 3", "ababab"),
    # comparisons
    ("lt", "repo_forks < 200", True),
    ("ge", "repo_watchers >= 621", True),
    ("eq", "slug == 'django-otp'", True),
    ("ne", "slug != 'django-otp'", False),
    ("chained-true", "100 < repo_forks < repo_watchers < 1000", True),
    ("chained-false", "100 < repo_watchers < 500", False),
    ("in-list", "'bob' in participants", True),
    ("not-in-list", "'carol' not in participants", True),
    ("in-string", "'otp' in slug", True),
    ("in-literal", "category in [1, 2]", True),
    # boolean logic
    ("and", "repo_forks > 100 and repo_watchers > 600", True),
    ("or", "repo_forks > 1000 or repo_watchers > 600", True),
    ("not", "not repo_forks > 1000", True),
    ("and-short-circuit", "False and title", False),
    ("or-short-circuit", "True or title", True),
    # indexing and slices
    ("index", "commits_over_52[-1]", 4),
    ("index-first", "participants[0]", "alice"),
    ("slice", "commits_over_52[-12:-8]", [1, 2, 0, 0]),
    ("slice-step", "commits_over_52[::26]", [0, 0]),
    ("slice-open", "len(commits_over_52[40:])", 12),
    ("sum-slice", "sum(commits_over_52[-26:])", 10),
    ("string-slice", "pypi_version[:3]", "1.7"),
    # plain functions
    ("len", "len(participants)", 2),
    ("sum", "sum(commits_over_52)", 10),
    ("sum-start", "sum([1, 2], 10)", 13),
    ("min", "min(commits_over_52[-12:])", 0),
    ("max-args", "max(repo_forks, repo_watchers)", 621),
    ("abs", "abs(-3)", 3),
    ("any", "any(commits_over_52[-4:])", True),
    ("all", "all(commits_over_52[-4:])", False),
    ("days-since", "days_since(last_updated)", 10.5),
    ("days-since-compare", "days_since(last_updated) > 10", True),
    ("version", "version(pypi_version)", Version("1.7.0")),
    ("version-compare", "version(pypi_version) >= version('1.7')", True),
    ("version-prerelease-order", "version('2.0rc1') < version('2.0')", True),
    ("version-major", "version(pypi_version).major", 1),
    ("version-minor", "version(pypi_version).minor", 7),
    ("version-micro", "version(pypi_version).micro", 0),
    ("version-release", "version(pypi_version).release", (1, 7, 0)),
    ("version-release-index", "version(pypi_version).release[0]", 1),
    ("version-is-prerelease", "version('2.0b1').is_prerelease", True),
    # old / new and change functions
    ("old-field", "old.repo_watchers", 650),
    ("new-field", "new.repo_watchers", 621),
    ("bare-is-new", "repo_watchers == new.repo_watchers", True),
    ("dropped", "repo_watchers < old.repo_watchers", True),
    ("changed", "changed('pypi_version')", True),
    ("changed-double-quotes", 'changed("pypi_version")', True),
    ("unchanged", "changed('repo_forks')", False),
    ("changed-list", "changed('participants')", True),
    ("delta", "delta('repo_watchers')", -29),
    ("pct-change", "pct_change('repo_watchers')", (621 - 650) / 650 * 100),
    ("pct-change-threshold", "pct_change('repo_watchers') <= -4", True),
    ("major-bump", "version(pypi_version).major > version(old.pypi_version).major", False),
    ("minor-bump", "version(pypi_version).minor > version(old.pypi_version).minor", True),
    # the SPEC's rules
    ("spec-no-commits", "sum(commits_over_52[-26:]) == 0", False),
    ("spec-version-changed", 'changed("pypi_version")', True),
    ("spec-watchers-dropped", "repo_watchers < old.repo_watchers", True),
]


@pytest.mark.parametrize(
    ("source", "expected"), [case[1:] for case in ALLOWED], ids=[case[0] for case in ALLOWED]
)
def test_allowed_constructs_evaluate(source: str, expected: Any) -> None:
    assert evaluate(source) == expected


FORBIDDEN = [
    ("import", '__import__("os")', "unknown function '__import__'"),
    ("dunder-class", "().__class__", "attribute '.__class__' is not allowed"),
    ("dunder-on-string", "''.__class__.__mro__", "is not allowed"),
    ("dunder-on-version", "version('1').__class__", "unknown attribute '.__class__'"),
    ("old-dunder", "old.__dict__", "unknown field '__dict__'"),
    ("new-dunder", "new.__class__", "unknown field '__class__'"),
    ("listcomp", "[x for x in y]", "comprehensions are not allowed"),
    ("genexp", "sum(x for x in commits_over_52)", "generator expressions are not allowed"),
    ("dictcomp", "{k: 1 for k in participants}", "comprehensions are not allowed"),
    ("lambda", "lambda: 1", "lambda is not allowed"),
    ("called-lambda", "(lambda: 1)()", "only the functions"),
    ("open", 'open("f")', "unknown function 'open'"),
    ("eval", "eval('1')", "unknown function 'eval'"),
    ("getattr", "getattr(old, 'x')", "unknown function 'getattr'"),
    ("method-call", "slug.upper()", "only the functions"),
    ("unknown-field", "repo_watcher > 1", "unknown field 'repo_watcher' (did you mean"),
    ("unknown-old-field", "old.repo_watcher", "unknown field 'repo_watcher' (did you mean"),
    ("unknown-function", "lenn(participants)", "unknown function 'lenn' (did you mean 'len'?)"),
    ("field-called", "slug()", "'slug' is a field, not a function"),
    ("function-bare", "len", "'len' is a function"),
    ("bare-old", "old", "'old' needs a field"),
    ("old-subscript", "old['repo_watchers']", "'old' needs a field"),
    ("attribute-on-field", "pypi_version.major", "is not allowed here"),
    ("attribute-on-old-field", "old.pypi_version.major", "is not allowed here"),
    ("changed-unknown-field", "changed('repo_watcher')", "unknown field 'repo_watcher'"),
    ("changed-not-literal", "changed(slug)", "one field name in quotes"),
    ("changed-no-args", "changed()", "one field name in quotes"),
    ("delta-two-args", "delta('repo_forks', 'repo_watchers')", "one field name in quotes"),
    ("keyword-args", "max(participants, key=len)", "no keyword arguments"),
    ("starred", "max(*participants)", "`*` unpacking is not allowed"),
    ("arity", "len(participants, slug)", "len() takes 1 argument, got 2"),
    ("arity-days-since", "days_since()", "days_since() takes 1 argument, got 0"),
    ("pow", "2 ** 1000000", "operator `**` is not allowed"),
    ("shift", "1 << 100", "operator `<<` is not allowed"),
    ("bitand", "repo_forks & 1", "operator `&` is not allowed"),
    ("invert", "~repo_forks", "operator `~` is not allowed"),
    ("is-none", "pypi_version is None", "operator `is` is not allowed"),
    ("ifexp", "1 if repo_forks else 2", "is not allowed"),
    ("walrus", "(x := 1)", "`:=` is not allowed"),
    ("dict", "{'a': 1}", "dict literals are not allowed"),
    ("set", "{1, 2}", "set literals are not allowed"),
    ("fstring", "f'{slug}'", "f-strings are not allowed"),
    ("bytes", "b'x'", "bytes literals are not allowed"),
    ("ellipsis", "...", "ellipsis literals are not allowed"),
    ("syntax", "repo_forks >", "invalid syntax"),
    ("statement", "import os", "invalid syntax"),
    ("empty", "   ", "empty expression"),
]


@pytest.mark.parametrize(
    ("source", "message"), [case[1:] for case in FORBIDDEN], ids=[case[0] for case in FORBIDDEN]
)
def test_forbidden_constructs_are_rejected_at_compile_time(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    assert message in info.value.message
    assert str(info.value) == info.value.message


def test_unknown_field_suggests_the_near_miss() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("sum(commits_over_52[-4:]) > 0 and repo_watcher > 10")
    assert info.value.message == "unknown field 'repo_watcher' (did you mean 'repo_watchers'?)"
    assert info.value.col == 35  # 1-based, pointing at the name


def test_syntax_error_has_a_column() -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression("repo_forks repo_watchers")
    assert info.value.col == 12
    assert "column 12" in info.value.message


NULL = values(
    pypi_version=None, repo_watchers=None, commits_over_52=None, last_updated=None, title=None
)
UNKNOWN = [
    # (id, source, new, old)
    ("null-field", "repo_watchers > 10", NULL, None),
    ("null-in-sum", "sum(commits_over_52[-26:]) == 0", NULL, None),
    ("null-compared-to-none", "pypi_version == None", NULL, None),
    ("null-deep-in-and", "repo_forks > 0 and title == 'x'", NULL, None),
    ("null-old", "repo_watchers < old.repo_watchers", NEW, values(repo_watchers=None)),
    ("null-new", "new.repo_watchers < old.repo_watchers", NULL, OLD),
    ("missing-key", "repo_watchers > 1", {"slug": "x"}, None),
    ("delta-from-null", "delta('repo_watchers')", NEW, values(repo_watchers=None)),
    ("pct-change-to-null", "pct_change('repo_watchers')", NULL, OLD),
    (
        "first-release-major",
        "version(pypi_version).major > version(old.pypi_version).major",
        NEW,
        values(pypi_version=None),
    ),
    ("change-rule-without-history", "changed('pypi_version')", NEW, None),
    ("zero-division", "repo_watchers / (repo_forks - 117)", NEW, None),
    ("pct-change-from-zero", "pct_change('repo_watchers')", NEW, values(repo_watchers=0)),
    ("index-error", "participants[5]", NEW, None),
    ("type-error", "slug + 1", NEW, None),
    ("type-error-compare", "slug < 3", NEW, None),
    ("invalid-version", "version(slug).major > 1", NEW, None),
    ("version-of-number", "version(repo_forks)", NEW, None),
    ("min-of-empty", "min([])", NEW, None),
    ("days-since-not-a-date", "days_since(slug) > 1", NEW, None),
    ("huge-repeat", "slug * 100000000", NEW, None),
]


@pytest.mark.parametrize(
    ("source", "new", "old"), [case[1:] for case in UNKNOWN], ids=[case[0] for case in UNKNOWN]
)
def test_unknown_data_raises_unknown_value(
    source: str, new: dict[str, Any], old: dict[str, Any] | None
) -> None:
    with pytest.raises(UnknownValue):
        compile_expression(source).evaluate(new, old, NOW)


CHANGED = [
    # (id, old value, new value, changed?)
    ("first-release", None, "1.0", True),
    ("release-withdrawn", "1.0", None, True),
    ("both-null", None, None, False),
    ("same", "1.0", "1.0", False),
    ("new-version", "1.0", "1.1", True),
]


@pytest.mark.parametrize(
    ("before", "after", "expected"), [case[1:] for case in CHANGED], ids=[c[0] for c in CHANGED]
)
def test_changed_counts_values_appearing_from_null(
    before: str | None, after: str | None, expected: bool
) -> None:
    expression = compile_expression('changed("pypi_version")')
    result = expression.evaluate(values(pypi_version=after), values(pypi_version=before), NOW)
    assert result is expected


CLASSIFY = [
    # (id, source, is_change, fields)
    ("condition", "sum(commits_over_52[-26:]) == 0", False, {"commits_over_52"}),
    (
        "condition-two-fields",
        "repo_forks * 10 > repo_watchers",
        False,
        {"repo_forks", "repo_watchers"},
    ),
    ("condition-days-since", "days_since(last_updated) > 365", False, {"last_updated"}),
    ("condition-version", "version(pypi_version).major == 0", False, {"pypi_version"}),
    ("literal-only", "1 + 1 == 2", False, set()),
    ("old", "repo_watchers < old.repo_watchers", True, {"repo_watchers"}),
    ("new-only", "new.repo_forks > 100", True, {"repo_forks"}),
    ("changed", "changed('pypi_version')", True, {"pypi_version"}),
    ("delta", "delta('repo_forks') < 0", True, {"repo_forks"}),
    ("pct-change", "pct_change('repo_watchers') <= -10", True, {"repo_watchers"}),
    (
        "mixed",
        "changed('pypi_version') and repo_watchers > 10",
        True,
        {"pypi_version", "repo_watchers"},
    ),
]


@pytest.mark.parametrize(
    ("source", "is_change", "fields"), [c[1:] for c in CLASSIFY], ids=[c[0] for c in CLASSIFY]
)
def test_classification_change_or_condition(source: str, is_change: bool, fields: set[str]) -> None:
    expression = compile_expression(source)
    assert expression.is_change is is_change
    assert expression.fields == frozenset(fields)


def test_condition_expression_ignores_old() -> None:
    expression = compile_expression("repo_forks > 100")
    assert expression.evaluate(NEW, None, NOW) is True
    assert expression.evaluate(NEW, {}, NOW) is True


def test_expression_is_a_frozen_value() -> None:
    expression = compile_expression("  repo_forks > 100 ")
    assert isinstance(expression, Expression)
    assert expression.source == "repo_forks > 100"
    assert expression == compile_expression("repo_forks > 100")
    with pytest.raises(AttributeError):
        expression.source = "True"  # type: ignore[misc]


def test_compiled_once_evaluated_many_times() -> None:
    """Sanity, not timing: one compiled expression gives the right answer on many inputs."""
    expression = compile_expression("pct_change('repo_watchers') <= -10")
    results = [
        expression.evaluate(values(repo_watchers=n), values(repo_watchers=100), NOW)
        for n in range(80, 101)
    ]
    assert results == [n <= 90 for n in range(80, 101)]


# -- dotted fields, added/removed, default (more sources) ---------------------------------

AT = datetime(2026, 11, 22, tzinfo=UTC)


@pytest.mark.parametrize(
    ("source", "new", "old", "expected"),
    [
        ("github.archived", {"github.archived": True}, None, True),
        ("pypi.status != 'active'", {"pypi.status": "quarantined"}, None, True),
        ("old.github.stars - new.github.stars", {"github.stars": 90}, {"github.stars": 100}, 10),
        (
            "project.django in pypi.django",
            {"project.django": "5.2", "pypi.django": ["5.2"]},
            None,
            True,
        ),
        ('added("vulns")', {"vulns": ["A", "B"]}, {"vulns": ["A"]}, ["B"]),
        ('removed("pypi.yanked")', {"pypi.yanked": []}, {"pypi.yanked": ["1.0"]}, ["1.0"]),
        ("default(pypi.version, 'none')", {}, None, "none"),
        ("default(version(pinned).major, -1)", {"pinned": "not a version"}, None, -1),
    ],
    ids=["bool", "text", "old-dotted", "project", "added", "removed", "default", "default-raise"],
)
def test_dotted_fields_and_the_list_functions(
    source: str, new: dict[str, Any], old: dict[str, Any] | None, expected: Any
) -> None:
    assert compile_expression(source).evaluate(new, old, AT) == expected


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("github.archivd", "unknown field 'github.archivd' (did you mean 'github.archived'?)"),
        ("pypi", "'pypi' needs a field, e.g. pypi.version"),
        ('added("repo_watchers")', "added() takes a list field"),
        ("old.pypi.versoin", "unknown field 'pypi.versoin'"),
    ],
)
def test_dotted_mistakes_are_load_errors(source: str, message: str) -> None:
    with pytest.raises(ExpressionError) as info:
        compile_expression(source)
    assert message in info.value.message


def test_a_list_function_on_a_null_side_is_unknown() -> None:
    with pytest.raises(UnknownValue):
        compile_expression('added("vulns")').evaluate({"vulns": ["A"]}, {"vulns": None}, AT)
