"""The shipped rules of the other sources' fields (SPEC §3.1, §6), on field values.

For each rule: when it holds, when it does not, and when it cannot tell (a null field, or an
expression that raises: :class:`UnknownValue`, so the alert keeps its state), then what its
message says, as :func:`monitor.rules.message_context` builds the context (plus
``vulnerabilities``, which the cycle adds: OSV's details of the ids in ``vulns``).

And ``pypi-version-changed`` / ``major-version-bump`` across the two sources of a version,
djangopackages' ``pypi_version`` and PyPI's ``pypi.version``: a new version is one alert,
whichever source sees it first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from monitor.alerts import RuleKind, Severity
from monitor.expr import UnknownValue
from monitor.rules import SUMMARY_CHARS, Rule, load_rules, message_context

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
UNKNOWN = "unknown"
BASE: dict[str, Any] = {"slug": "django-otp", "title": "django-otp", "pypi_version": "1.7.0"}


@pytest.fixture(scope="module")
def rules() -> dict[str, Rule]:
    return {rule.id: rule for rule in load_rules()}


def verdict(rule: Rule, new: dict[str, Any], old: dict[str, Any] | None = None) -> object:
    """True, False, or UNKNOWN when the rule cannot tell (the alert keeps its state)."""
    try:
        return bool(rule.when.evaluate({**BASE, **new}, old and {**BASE, **old}, NOW))
    except UnknownValue:
        return UNKNOWN


def message(
    rule: Rule,
    new: dict[str, Any],
    old: dict[str, Any] | None = None,
    vulnerabilities: list[dict[str, Any]] | None = None,
) -> str:
    context = message_context(
        rule, slug="django-otp", new={**BASE, **new}, old=old and {**BASE, **old}
    )
    if vulnerabilities is not None:
        context["vulnerabilities"] = vulnerabilities
    return rule.render_message(context)


# -- the contract: ids, kinds, severities and the fields each rule reads --------------------

CONTRACT = [
    ("repo-archived", RuleKind.CONDITION, Severity.CRITICAL, {"github.archived"}),
    ("repo-gone", RuleKind.CONDITION, Severity.CRITICAL, {"github.found"}),
    ("pypi-project-inactive", RuleKind.CONDITION, Severity.CRITICAL, {"pypi.status"}),
    ("vulnerable-version", RuleKind.CONDITION, Severity.CRITICAL, {"vulns"}),
    ("new-vulnerability", RuleKind.CHANGE, Severity.CRITICAL, {"vulns"}),
    ("pinned-yanked", RuleKind.CONDITION, Severity.CRITICAL, {"pinned", "pypi.yanked"}),
    ("pinned-behind-major", RuleKind.CONDITION, Severity.INFO, {"pinned", "pypi.version"}),
    ("no-release-in-a-year", RuleKind.CONDITION, Severity.INFO, {"pypi.released_at"}),
    ("django-unsupported", RuleKind.CONDITION, Severity.WARNING, {"project.django", "pypi.django"}),
    ("pypi-version-changed", RuleKind.CHANGE, Severity.INFO, {"pypi_version", "pypi.version"}),
    ("major-version-bump", RuleKind.CHANGE, Severity.WARNING, {"pypi_version", "pypi.version"}),
]


@pytest.mark.parametrize(
    ("rule_id", "kind", "severity", "reads"), CONTRACT, ids=[c[0] for c in CONTRACT]
)
def test_shipped_rule_contract(
    rules: dict[str, Rule], rule_id: str, kind: RuleKind, severity: Severity, reads: set[str]
) -> None:
    rule = rules[rule_id]
    assert (rule.kind, rule.severity, set(rule.when.fields)) == (kind, severity, reads)
    assert rule.description and rule.message
    assert (rule.repeat, rule.for_polls, rule.packages, rule.enabled) == (None, 1, (), True)
    expected = ("pypi-version-changed",) if rule_id == "major-version-bump" else ()
    assert rule.supersedes == expected


# -- condition rules -----------------------------------------------------------------------

GITHUB = {"github.found": True, "github.repo": "django-otp/django-otp", "github.archived": False}
GONE = dict.fromkeys(GITHUB) | {"github.found": False}
VERSIONS = {"pypi.version": "2.1.0", "pypi.yanked": ["1.6.0", "2.0.1"]}

CONDITIONS = [
    # (case id, rule id, field values, verdict)
    ("archived", "repo-archived", {**GITHUB, "github.archived": True}, True),
    ("not-archived", "repo-archived", GITHUB, False),
    ("archived-repo-gone", "repo-archived", GONE, UNKNOWN),
    ("archived-github-off", "repo-archived", {}, UNKNOWN),
    ("gone", "repo-gone", GONE, True),
    ("there", "repo-gone", GITHUB, False),
    ("gone-github-off", "repo-gone", {}, UNKNOWN),
    ("pypi-archived", "pypi-project-inactive", {"pypi.status": "archived"}, True),
    ("pypi-quarantined", "pypi-project-inactive", {"pypi.status": "quarantined"}, True),
    ("pypi-deprecated", "pypi-project-inactive", {"pypi.status": "deprecated"}, True),
    ("pypi-active", "pypi-project-inactive", {"pypi.status": "active"}, False),
    ("pypi-off", "pypi-project-inactive", {"pypi.status": None}, UNKNOWN),
    ("vulnerable", "vulnerable-version", {"vulns": ["GHSA-1", "PYSEC-2"]}, True),
    ("no-vulns", "vulnerable-version", {"vulns": []}, False),
    ("osv-off", "vulnerable-version", {"vulns": None}, UNKNOWN),
    ("pin-yanked", "pinned-yanked", {**VERSIONS, "pinned": "2.0.1"}, True),
    ("pin-not-yanked", "pinned-yanked", {**VERSIONS, "pinned": "2.0.0"}, False),
    ("nothing-yanked", "pinned-yanked", {**VERSIONS, "pypi.yanked": [], "pinned": "2.0.1"}, False),
    ("pin-spelled-otherwise", "pinned-yanked", {**VERSIONS, "pinned": "1.6"}, False),
    ("no-pin", "pinned-yanked", {**VERSIONS, "pinned": None}, UNKNOWN),
    ("yanked-unknown", "pinned-yanked", {"pinned": "2.0.1"}, UNKNOWN),
    ("behind-a-major", "pinned-behind-major", {**VERSIONS, "pinned": "1.6.0"}, True),
    ("behind-two-majors", "pinned-behind-major", {"pypi.version": "4.0", "pinned": "2.9"}, True),
    ("behind-a-minor", "pinned-behind-major", {**VERSIONS, "pinned": "2.0.0"}, False),
    ("pin-ahead", "pinned-behind-major", {**VERSIONS, "pinned": "3.0.0a1"}, False),
    ("behind-unpinned", "pinned-behind-major", VERSIONS, UNKNOWN),
    ("behind-pypi-off", "pinned-behind-major", {"pinned": "1.6.0"}, UNKNOWN),
    ("pin-not-pep-440", "pinned-behind-major", {**VERSIONS, "pinned": "banana"}, UNKNOWN),
    (
        "released-400-days-ago",
        "no-release-in-a-year",
        {"pypi.released_at": NOW - timedelta(400)},
        True,
    ),
    (
        "released-a-year-ago",
        "no-release-in-a-year",
        {"pypi.released_at": NOW - timedelta(365)},
        False,
    ),
    (
        "released-last-month",
        "no-release-in-a-year",
        {"pypi.released_at": NOW - timedelta(30)},
        False,
    ),
    ("release-date-unknown", "no-release-in-a-year", {"pypi.released_at": None}, UNKNOWN),
    (
        "django-not-declared",
        "django-unsupported",
        {"project.django": "5.2", "pypi.django": ["4.2", "5.0", "5.1"]},
        True,
    ),
    (
        "django-declared",
        "django-unsupported",
        {"project.django": "5.2", "pypi.django": ["4.2", "5.2"]},
        False,
    ),
    # As `readiness` says: declaring no Django version is "unknown", not "yes".
    ("declares-none", "django-unsupported", {"project.django": "5.2", "pypi.django": []}, UNKNOWN),
    (
        "no-project-django",
        "django-unsupported",
        {"project.django": None, "pypi.django": ["4.2"]},
        UNKNOWN,
    ),
    ("declared-unknown", "django-unsupported", {"project.django": "5.2"}, UNKNOWN),
]


@pytest.mark.parametrize(
    ("rule_id", "values", "expected"), [c[1:] for c in CONDITIONS], ids=[c[0] for c in CONDITIONS]
)
def test_condition_rule(
    rules: dict[str, Rule], rule_id: str, values: dict[str, Any], expected: object
) -> None:
    assert verdict(rules[rule_id], values) == expected


# -- new-vulnerability: a change rule, while vulnerable-version already fires ---------------

NEW_VULNERABILITY = [
    # (case id, old vulns, new vulns, verdict)
    ("one-more", ["GHSA-1"], ["GHSA-1", "PYSEC-2"], True),
    ("first-ones", [], ["GHSA-1"], False),  # vulnerable-version tells these
    ("one-fixed", ["GHSA-1", "PYSEC-2"], ["GHSA-1"], False),
    ("one-for-another", ["GHSA-1"], ["PYSEC-2"], True),
    ("same", ["GHSA-1"], ["GHSA-1"], False),
    ("all-fixed", ["GHSA-1"], [], False),
    ("osv-was-off", None, ["GHSA-1"], UNKNOWN),
    ("osv-now-off", ["GHSA-1"], None, UNKNOWN),
]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [c[1:] for c in NEW_VULNERABILITY],
    ids=[c[0] for c in NEW_VULNERABILITY],
)
def test_new_vulnerability(
    rules: dict[str, Rule], old: list[str] | None, new: list[str] | None, expected: object
) -> None:
    assert verdict(rules["new-vulnerability"], {"vulns": new}, {"vulns": old}) == expected


def test_new_vulnerability_needs_a_previous_snapshot(rules: dict[str, Rule]) -> None:
    assert verdict(rules["new-vulnerability"], {"vulns": ["GHSA-1"]}) == UNKNOWN


# -- messages ------------------------------------------------------------------------------


def vuln(vuln_id: str, summary: str | None = None, **more: Any) -> dict[str, Any]:
    return {
        "id": vuln_id,
        "summary": summary,
        "aliases": more.get("aliases", []),
        "fixed": more.get("fixed", []),
        "link": f"https://osv.dev/vulnerability/{vuln_id}",
        "withdrawn": more.get("withdrawn"),
    }


XSS = vuln(
    "GHSA-8m4x-qj3p-9v2c",
    "Cross-site scripting in the token admin",
    aliases=["PYSEC-2025-7", "CVE-2025-1234", "GHSA-8m4x-qj3p-9v2c"],
    fixed=["1.7.1", "2.0.3"],
)
BYPASS = vuln("PYSEC-2025-9", "OTP bypass on replayed tokens")
XSS_LINE = (
    "• GHSA-8m4x-qj3p-9v2c (CVE-2025-1234, PYSEC-2025-7): Cross-site scripting in the token"
    " admin; fixed in 1.7.1, 2.0.3 https://osv.dev/vulnerability/GHSA-8m4x-qj3p-9v2c"
)
BYPASS_LINE = (
    "• PYSEC-2025-9: OTP bypass on replayed tokens; no fixed version yet"
    " https://osv.dev/vulnerability/PYSEC-2025-9"
)
RELEASED = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)

MESSAGES = [
    # (case id, rule id, new values, old values, vulnerabilities, message)
    (
        "archived",
        "repo-archived",
        {**GITHUB, "github.archived": True},
        None,
        None,
        "django-otp: its GitHub repository django-otp/django-otp is archived (read-only: no more"
        " commits, issues or pull requests)",
    ),
    (
        "archived-resolved",
        "repo-archived",
        GITHUB,
        None,
        None,
        "django-otp: its GitHub repository django-otp/django-otp is no longer archived",
    ),
    (
        "gone",
        "repo-gone",
        {**GONE, "repo_url": "https://github.com/django-otp/django-otp"},
        None,
        None,
        "django-otp: its GitHub repository https://github.com/django-otp/django-otp answers 404"
        " (deleted, or made private)",
    ),
    (
        "gone-without-a-url",
        "repo-gone",
        GONE,
        None,
        None,
        "django-otp: its GitHub repository answers 404 (deleted, or made private)",
    ),
    (
        "back",
        "repo-gone",
        GITHUB,
        None,
        None,
        "django-otp: its GitHub repository django-otp/django-otp is back",
    ),
    (
        "quarantined",
        "pypi-project-inactive",
        {"pypi.status": "quarantined"},
        None,
        None,
        "django-otp is quarantined on PyPI: PyPI suspects malware; its files cannot be installed",
    ),
    (
        "pypi-archived",
        "pypi-project-inactive",
        {"pypi.status": "archived"},
        None,
        None,
        "django-otp is archived on PyPI: its maintainers expect no more releases",
    ),
    (
        "pypi-deprecated",
        "pypi-project-inactive",
        {"pypi.status": "deprecated"},
        None,
        None,
        "django-otp is deprecated on PyPI: its maintainers consider it obsolete",
    ),
    (
        "pypi-active-again",
        "pypi-project-inactive",
        {"pypi.status": "active"},
        None,
        None,
        "django-otp is active on PyPI again",
    ),
    (
        "vulnerable",
        "vulnerable-version",
        {"pypi.version": "1.7.0", "vulns": [XSS["id"], BYPASS["id"]]},
        None,
        [XSS, BYPASS],
        f"django-otp 1.7.0 has 2 known vulnerabilities:\n{XSS_LINE}\n{BYPASS_LINE}",
    ),
    (
        "vulnerable-pinned",
        "vulnerable-version",
        {"pypi.version": "1.8.0", "pinned": "1.6.0", "vulns": [XSS["id"]]},
        None,
        [XSS],
        f"django-otp 1.6.0 has 1 known vulnerability:\n{XSS_LINE}",
    ),
    (
        "vulnerable-without-details",
        "vulnerable-version",
        {"pypi.version": None, "vulns": ["PYSEC-2025-9"]},
        None,
        None,
        "django-otp 1.7.0 has 1 known vulnerability:\n"
        "• PYSEC-2025-9 https://osv.dev/vulnerability/PYSEC-2025-9",
    ),
    (
        "withdrawn-since",
        "vulnerable-version",
        {"vulns": [BYPASS["id"]]},
        None,
        [{**BYPASS, "withdrawn": "2025-06-01T00:00:00Z"}],
        "django-otp 1.7.0 has 1 known vulnerability:\n"
        + BYPASS_LINE.replace(" https", " (withdrawn) https"),
    ),
    (
        "none-left",
        "vulnerable-version",
        {"vulns": []},
        None,
        [],
        "django-otp 1.7.0 has no known vulnerabilities any more",
    ),
    (
        "new-vulnerability",
        "new-vulnerability",
        {"vulns": [XSS["id"], BYPASS["id"]]},
        {"vulns": [XSS["id"]]},
        [XSS, BYPASS],
        f"django-otp 1.7.0: 1 new known vulnerability (2 in all):\n{BYPASS_LINE}",
    ),
    (
        "yanked",
        "pinned-yanked",
        {**VERSIONS, "pinned": "2.0.1"},
        None,
        None,
        "django-otp: you pin 2.0.1, which was yanked from PyPI (withdrawn by its maintainers,"
        " often for a serious bug or a security problem); the newest is 2.1.0",
    ),
    (
        "re-pinned",
        "pinned-yanked",
        {**VERSIONS, "pinned": "2.1.0"},
        None,
        None,
        "django-otp: you pin 2.1.0, which is not yanked",
    ),
    (
        "behind-a-major",
        "pinned-behind-major",
        {**VERSIONS, "pinned": "1.6.0"},
        None,
        None,
        "django-otp: you run 1.6.0; 2.1.0 is out (a new major version)",
    ),
    (
        "caught-up",
        "pinned-behind-major",
        {**VERSIONS, "pinned": "2.0.0"},
        None,
        None,
        "django-otp: you run 2.0.0; 2.1.0 is out",
    ),
    (
        "pinned-the-newest",
        "pinned-behind-major",
        {**VERSIONS, "pinned": "2.1.0"},
        None,
        None,
        "django-otp: you run 2.1.0, the newest on PyPI",
    ),
    (
        "no-release",
        "no-release-in-a-year",
        {"pypi.version": "1.7.0", "pypi.released_at": RELEASED},
        None,
        None,
        "django-otp's newest release on PyPI, 1.7.0, came out on 2025-03-01",
    ),
    (
        "django-unsupported",
        "django-unsupported",
        {"project.django": "5.2", "pypi.django": ["4.2", "5.0", "5.1"]},
        None,
        None,
        "django-otp does not declare support for Django 5.2, which your project runs; the newest"
        " Django it declares is 5.1",
    ),
    (
        "django-supported-now",
        "django-unsupported",
        {"project.django": "5.2", "pypi.django": ["4.2", "5.2"]},
        None,
        None,
        "django-otp declares support for Django 5.2, which your project runs",
    ),
]


@pytest.mark.parametrize(
    ("rule_id", "new", "old", "vulnerabilities", "expected"),
    [m[1:] for m in MESSAGES],
    ids=[m[0] for m in MESSAGES],
)
def test_message(
    rules: dict[str, Rule],
    rule_id: str,
    new: dict[str, Any],
    old: dict[str, Any] | None,
    vulnerabilities: list[dict[str, Any]] | None,
    expected: str,
) -> None:
    assert message(rules[rule_id], new, old, vulnerabilities) == expected


@pytest.mark.parametrize("rule_id", ["vulnerable-version", "new-vulnerability"])
def test_vulnerability_messages_are_bounded(rules: dict[str, Rule], rule_id: str) -> None:
    # 50 vulnerabilities with the longest texts OSV records hold: 8 lines, then "and 42 more",
    # well within the summary's bound; each summary cut to a line.
    ids = [f"GHSA-{n:04d}-wxyz-wxyz" for n in range(50)]
    details = [
        vuln(i, "word " * 100, aliases=["CVE-2025-12345", "PYSEC-2025-123"], fixed=["10.2"] * 50)
        for i in ids
    ]
    old = {"vulns": ["GHSA-9999-0000-0000"]}
    text = message(rules[rule_id], {"vulns": ids}, old, details)
    lines = text.splitlines()
    assert len(text) < SUMMARY_CHARS
    assert len(lines) == 1 + 8 + 1
    assert lines[-1] == "and 42 more"
    assert all(len(line) < 250 for line in lines)
    assert lines[1].startswith("• GHSA-0000-wxyz-wxyz (CVE-2025-12345, PYSEC-2025-123): word")
    assert lines[1].endswith(
        "…; fixed in 10.2, 10.2, 10.2 https://osv.dev/vulnerability/GHSA-0000-wxyz-wxyz"
    )


# -- one alert per version, whichever source sees it first -----------------------------------

PVC, MAJOR = "pypi-version-changed", "major-version-bump"
MAJOR_TEXT = "django-otp 2.0.0 → 3.0.0: a new major version, read the changelog before upgrading"
SEQUENCES = [
    # (case id, polls: (pypi_version, pypi.version, what fires: None or (rule id, message)))
    (
        "pypi-first",
        [
            ("1.7.0", "1.7.0", None),
            ("1.7.0", "1.8.0", (PVC, "django-otp 1.7.0 → 1.8.0")),
            ("1.8.0", "1.8.0", None),
        ],
    ),
    (
        "djangopackages-first",
        [
            ("1.7.0", "1.7.0", None),
            ("1.8.0", "1.7.0", (PVC, "django-otp 1.7.0 → 1.8.0")),
            ("1.8.0", "1.8.0", None),
        ],
    ),
    (
        "both-at-once",
        [("1.7.0", "1.7.0", None), ("1.8.0", "1.8.0", (PVC, "django-otp 1.7.0 → 1.8.0"))],
    ),
    (
        "pypi-off",
        [
            ("1.7.0", None, None),
            ("1.8.0", None, (PVC, "django-otp 1.7.0 → 1.8.0")),
            ("1.7.0", None, (PVC, "django-otp went back from 1.8.0 to 1.7.0")),
            (None, None, (PVC, "django-otp no longer shows a version on PyPI (it was 1.7.0)")),
            ("2.0.0", None, (PVC, "django-otp 2.0.0 is now on PyPI (no version before)")),
            ("3.0.0", None, (MAJOR, MAJOR_TEXT)),
        ],
    ),
    (
        "pypi-goes-back",
        [
            ("1.8.0", "1.8.0", None),
            ("1.8.0", "1.7.0", (PVC, "django-otp went back from 1.8.0 to 1.7.0")),
            ("1.7.0", "1.7.0", None),
        ],
    ),
    (
        "pypi-major-first",
        [
            ("2.0.0", "2.0.0", None),
            ("2.0.0", "3.0.0", (MAJOR, MAJOR_TEXT)),
            ("3.0.0", "3.0.0", None),
        ],
    ),
    (
        "djangopackages-major-first",
        [
            ("2.0.0", "2.0.0", None),
            ("3.0.0", "2.0.0", (MAJOR, MAJOR_TEXT)),
            ("3.0.0", "3.0.0", None),
        ],
    ),
    (
        "pypi-off-then-on",
        [
            ("1.8.0", "1.8.0", None),
            ("1.8.0", None, None),  # PyPI turned off: its fields become unknown
            ("1.9.0", None, (PVC, "django-otp 1.8.0 → 1.9.0")),
            ("1.9.0", "1.9.0", None),  # PyPI back, with what djangopackages told already
            ("1.9.0", "1.10.0", (PVC, "django-otp 1.9.0 → 1.10.0")),
        ],
    ),
    (
        "pypi-back-with-a-newer-version",
        [("1.8.0", None, None), ("1.8.0", "1.9.0", (PVC, "django-otp 1.8.0 → 1.9.0"))],
    ),
    (
        "djangopackages-drops-a-version-pypi-shows",
        [("1.8.0", "1.8.0", None), (None, "1.8.0", None), ("1.8.0", "1.8.0", None)],
    ),
    (
        "pypi-only-watch",
        [
            (None, None, None),
            (None, "1.0", (PVC, "django-otp 1.0 is now on PyPI (no version before)")),
            (
                None,
                "2.0",
                (
                    MAJOR,
                    "django-otp 1.0 → 2.0: a new major version, read the changelog before"
                    " upgrading",
                ),
            ),
            (None, "2.0.post1", (PVC, "django-otp 2.0 → 2.0.post1")),
        ],
    ),
    (
        "not-a-version",
        [
            ("1.0", "1.0", None),
            ("1.0", "banana", (PVC, "django-otp 1.0 → banana")),
            ("banana", "banana", None),
            ("banana", "2.0", (PVC, "django-otp banana → 2.0")),
        ],
    ),
]


def fired(
    rules: dict[str, Rule], old: dict[str, Any], new: dict[str, Any]
) -> list[tuple[str, str]]:
    """The release rules that fire for one change, superseded ones dropped (as the cycle
    does), with their messages."""
    firing = [rules[r] for r in (PVC, MAJOR) if verdict(rules[r], new, old) is True]
    dropped = {target for rule in firing for target in rule.supersedes}
    return [(rule.id, message(rule, new, old)) for rule in firing if rule.id not in dropped]


@pytest.mark.parametrize("polls", [s[1] for s in SEQUENCES], ids=[s[0] for s in SEQUENCES])
def test_one_alert_per_version(
    rules: dict[str, Rule], polls: list[tuple[str | None, str | None, Any]]
) -> None:
    old = None
    for number, (djangopackages, pypi, expected) in enumerate(polls):
        new = {"pypi_version": djangopackages, "pypi.version": pypi}
        if old is not None:
            assert fired(rules, old, new) == ([expected] if expected else []), f"poll {number + 1}"
        old = new
