"""monitor.deps: what a dependency file requires (SPEC §4 "Dependency files"), read offline."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from packaging.requirements import InvalidRequirement, Requirement

from monitor import deps
from monitor.deps import DependencyFile, DependencyFileError, Skipped, read_dependencies
from monitor.errors import MonitorError

FIXTURES = Path(__file__).parent / "fixtures" / "deps"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def pins(found: DependencyFile) -> list[tuple[str, str | None]]:
    return [(w.name, w.pinned) for w in found.wanted]


def skips(found: DependencyFile) -> list[tuple[str, str, str]]:
    return [(s.requirement, s.where, s.reason) for s in found.skipped]


def invalid(text: str) -> str:
    """The reason for a line packaging cannot parse: its own message (which differs between
    packaging versions), first line only."""
    with pytest.raises(InvalidRequirement) as caught:
        Requirement(text)
    return "not a valid requirement: " + str(caught.value).splitlines()[0]


def one_line(tmp_path: Path, line: str) -> DependencyFile:
    return read_dependencies(write(tmp_path, "requirements.txt", line + "\n"))


# --- the fixtures, exactly -------------------------------------------------------------------


def test_requirements_fixture_wanted_in_order_of_first_appearance():
    found = read_dependencies(FIXTURES / "requirements.txt")
    assert found.kind == "requirements"
    assert [(w.name, w.pinned, w.where) for w in found.wanted] == [
        # -r requirements/base.txt comes first, at the place of the -r line
        ("django", "5.1.4", "requirements/base.txt:2"),  # pin from requirements.txt:34
        ("django-environ", "0.11.2", "requirements/base.txt:3"),
        ("asgiref", "3.8.1", "requirements/base.txt:4"),  # pin from constraints.txt
        ("sentry-sdk", None, "requirements/base.txt:5"),  # constraint `>=2.19` is no pin
        ("django-otp", "1.7.0", "requirements.txt:11"),
        ("django-crispy-forms", None, "requirements.txt:12"),
        ("crispy-bootstrap5", "2024.10", "requirements.txt:13"),
        ("django-allauth", "65.3.1", "requirements.txt:14"),
        ("django-filter", None, "requirements.txt:15"),
        ("djangorestframework", "3.15.2", "requirements.txt:16"),
        ("whitenoise", "6.8.2", "requirements.txt:20"),
        ("pillow", None, "requirements.txt:21"),
        ("celery", "5.4.0", "requirements.txt:25"),
        ("redis", None, "requirements.txt:27"),
        ("psycopg", "3.2.3", "requirements.txt:28"),
        ("gunicorn", "23.0.0", "requirements.txt:31"),
        ("requests", "2.32.3", "requirements.txt:33"),  # pin from constraints.txt
        ("acme-internal-auth", "2.3.1", "requirements.txt:37"),
        ("acme-billing-client", None, "requirements.txt:38"),
    ]
    assert "urllib3" not in {w.name for w in found.wanted}  # only in constraints.txt


def test_requirements_fixture_skipped_with_reasons():
    found = read_dependencies(FIXTURES / "requirements.txt")
    assert skips(found) == [
        ("django-cors-headers=>4.6", "requirements.txt:22", invalid("django-cors-headers=>4.6")),
        (
            "-e git+https://github.com/acme/django-hijack.git@7f3c2a1#egg=django-hijack",
            "requirements.txt:41",
            "editable install (-e)",
        ),
        (
            "django-money @ https://github.com/acme/django-money/archive/refs/tags/"
            "v3.5.3-acme.tar.gz",
            "requirements.txt:42",
            "URL requirement",
        ),
        ("./vendor/acme-theme", "requirements.txt:43", "local path"),
    ]


def test_requirements_fixture_keeps_the_text_as_written():
    found = read_dependencies(FIXTURES / "requirements.txt")
    text = {w.name: w.requirement for w in found.wanted}
    assert text["django-otp"] == 'Django_OTP==1.7.0 ; python_version >= "3.8"'
    assert text["djangorestframework"] == "djangorestframework==3.15.2"  # hashes dropped
    assert text["celery"] == "celery[redis]==5.4.0"
    assert text["pillow"] == "Pillow>=10.4"  # trailing comment dropped
    assert text["django"] == "Django>=5.1,<5.2"  # the first occurrence's text


def test_pyproject_fixture():
    found = read_dependencies(FIXTURES / "pyproject.toml")
    assert found.kind == "pyproject"
    deps_ = "pyproject.toml [project] dependencies"
    extra = "pyproject.toml [project.optional-dependencies]"
    group = "pyproject.toml [dependency-groups]"
    assert [(w.name, w.pinned, w.where) for w in found.wanted] == [
        ("django", "5.1.4", deps_),  # pin from [dependency-groups] dev
        ("django-environ", "0.11.2", deps_),
        ("djangorestframework", "3.15.2", deps_),  # pin from [dependency-groups] test
        ("celery", "5.4.0", deps_),
        ("psycopg", None, deps_),
        ("whitenoise", None, deps_),
        ("acme-internal-auth", "2.3.1", deps_),
        ("pywin32", None, deps_),  # a marker for another platform is still a dependency
        ("django-storages", "1.14.4", f"{extra} s3"),
        ("boto3", None, f"{extra} s3"),
        ("sentry-sdk", None, f"{extra} sentry"),
        # dev includes test and lint, but each requirement is where it is written
        ("django-debug-toolbar", "4.4.6", f"{group} dev"),
        ("pytest", None, f"{group} test"),
        ("pytest-django", "4.9.0", f"{group} test"),
        ("factory-boy", None, f"{group} test"),
        ("ruff", "0.8.4", f"{group} lint"),
        ("django-stubs", None, f"{group} lint"),
        ("mypy", None, f"{group} lint"),  # ==1.13.* is no pin
    ]
    assert skips(found) == [
        ("acme-theme @ file:///srv/acme/acme-theme", f"{extra} theme", "local path"),
        ("acme-shop[s3,sentry]", f"{extra} all", "the project itself"),  # name is Acme_Shop
    ]


def test_poetry_pyproject_fixture():
    found = read_dependencies(FIXTURES / "poetry" / "pyproject.toml")
    main = "pyproject.toml [tool.poetry.dependencies]"
    dev = "pyproject.toml [tool.poetry.group.dev.dependencies]"
    assert [(w.name, w.pinned, w.where) for w in found.wanted] == [
        ("django", "5.1.4", main),  # "^5.1" here, "5.1.4" in the dev group
        ("django-otp", "1.5.4", main),  # a bare Poetry version is exact
        ("djangorestframework", "3.15.2", main),
        ("django-filter", None, main),
        ("celery", None, main),
        ("psycopg", "3.2.3", main),
        ("gunicorn", "23.0.0", main),  # "=23.0.0"
        ("sentry-sdk", None, main),
        ("whitenoise", None, main),
        ("acme-internal-auth", "2.3.1", main),
        ("django-debug-toolbar", None, dev),
        ("pytest-django", "4.9.0", dev),
        ("sphinx", None, "pyproject.toml [tool.poetry.group.docs.dependencies]"),
        ("black", "24.10.0", "pyproject.toml [tool.poetry.dev-dependencies]"),
    ]
    assert "python" not in {w.name for w in found.wanted}
    assert skips(found) == [
        (
            'django-hijack = {git = "https://github.com/acme/django-hijack.git", rev = "7f3c2a1"}',
            main,
            "git source",
        ),
        ('acme-theme = {path = "../acme-theme", develop = true}', main, "local path"),
        (
            'django-money = {url = "https://github.com/acme/django-money/archive/refs/tags/'
            'v3.5.3-acme.tar.gz"}',
            main,
            "URL requirement",
        ),
    ]
    assert found.wanted[4].requirement == 'celery = {version = "^5.4", extras = ["redis"]}'


def test_uv_lock_fixture():
    found = read_dependencies(FIXTURES / "uv.lock")
    assert found.kind == "uv.lock"
    assert pins(found) == [
        ("acme-internal-auth", "2.3.1"),  # a private registry is still a registry
        ("asgiref", "3.8.1"),
        ("celery", "5.4.0"),
        ("django", "5.1.4"),
        ("django-otp", "1.5.4"),
        ("kombu", "5.4.2"),
        ("redis", "5.2.1"),
        ("sqlparse", "0.5.3"),
        ("tzdata", "2024.2"),
    ]
    assert {w.where for w in found.wanted} == {"uv.lock"}
    assert found.wanted[3].requirement == "django==5.1.4"
    assert skips(found) == [
        ("acme-shop==2.4.0", "uv.lock", "the project itself"),
        ("acme-theme==0.3.0", "uv.lock", "editable install (../acme-theme)"),
        ("django-hijack==3.6.1", "uv.lock", "git source"),
    ]


def test_poetry_lock_fixture():
    found = read_dependencies(FIXTURES / "poetry.lock")
    assert found.kind == "poetry.lock"
    assert pins(found) == [
        ("acme-internal-auth", "2.3.1"),  # source type "legacy": a private index
        ("asgiref", "3.8.1"),
        ("django", "5.1.4"),  # written "Django"
        ("django-otp", "1.5.4"),
        ("sqlparse", "0.5.3"),
        ("tzdata", "2024.2"),
    ]
    assert skips(found) == [
        ("acme-theme==0.3.0", "poetry.lock", "local path (../acme-theme)"),
        ("django-hijack==3.6.1", "poetry.lock", "git source"),
        ("django-money==3.5.3", "poetry.lock", "URL requirement"),
    ]


# --- kinds and unreadable files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("requirements.txt", "requirements"),
        ("requirements-dev.txt", "requirements"),
        ("constraints.txt", "requirements"),
        ("requirements.in", "requirements"),
        ("REQUIREMENTS.TXT", "requirements"),
        ("pyproject.toml", "pyproject"),
        ("uv.lock", "uv.lock"),
        ("poetry.lock", "poetry.lock"),
    ],
)
def test_kind_comes_from_the_file_name(tmp_path, name, kind):
    path = write(tmp_path, name, "")
    assert read_dependencies(path) == DependencyFile(path, kind, (), ())


@pytest.mark.parametrize("name", ["Pipfile", "setup.py", "requirements.yaml", "Cargo.lock"])
def test_unknown_kind_is_an_error_naming_the_supported_kinds(tmp_path, name):
    path = write(tmp_path, name, "django\n")
    with pytest.raises(DependencyFileError) as caught:
        read_dependencies(path)
    message = str(caught.value)
    assert message.startswith(f"{name}: not a dependency file")
    for kind in ("requirements*.txt", "pyproject.toml", "uv.lock", "poetry.lock"):
        assert kind in message


def test_error_is_a_monitor_error_with_usage_exit_code(tmp_path):
    with pytest.raises(MonitorError) as caught:
        read_dependencies(tmp_path / "requirements.txt")
    assert caught.value.exit_code == 2


def test_missing_file(tmp_path):
    with pytest.raises(DependencyFileError, match=r"^requirements\.txt: cannot read file: No such"):
        read_dependencies(tmp_path / "requirements.txt")


def test_a_relative_path_is_shown_as_given(tmp_path, monkeypatch):
    write(tmp_path, "app/requirements.txt", "-r base.txt\n")
    write(tmp_path, "app/base.txt", "# base\ndjango\n")
    monkeypatch.chdir(tmp_path)
    found = read_dependencies(Path("app/requirements.txt"))
    assert [w.where for w in found.wanted] == ["app/base.txt:2"]


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_bytes(b"django\nd\xe9j\xe0-vu\n")
    with pytest.raises(DependencyFileError, match=r"^requirements\.txt:2: not UTF-8 \(byte 0xe9\)"):
        read_dependencies(path)


def test_a_byte_order_mark_is_allowed(tmp_path):
    path = tmp_path / "requirements.txt"
    path.write_bytes("\ufeffdjango==5.1\n".encode())
    assert pins(read_dependencies(path)) == [("django", "5.1")]


def test_a_file_over_the_size_bound_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(deps, "MAX_BYTES", 20)
    path = write(tmp_path, "requirements.txt", "django==5.1.4\nrequests==2.32.3\n")
    with pytest.raises(DependencyFileError, match=r"larger than 20 bytes"):
        read_dependencies(path)


# --- requirements lines -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        pytest.param("# all comment\n\n   \n   # indented\n", [], id="comments-and-blank"),
        pytest.param("django==5.1 # trailing", [("django", "5.1")], id="trailing-comment"),
        pytest.param("django==5.1#no-space", [], id="hash-without-space-is-not-a-comment"),
        pytest.param("django\\\n==5.1\n", [("django", "5.1")], id="continuation"),
        pytest.param(
            "django \\\n  # why\nrequests",
            [("django", None), ("requests", None)],
            id="continuation-ended-by-comment",
        ),
        pytest.param("django==5.1 \\", [("django", "5.1")], id="continuation-at-end-of-file"),
        pytest.param(
            "django==5.1.4 \\\n    --hash=sha256:aa \\\n    --hash=sha256:bb\n",
            [("django", "5.1.4")],
            id="hash-continuations",
        ),
        pytest.param(
            "django==5.1.4 --hash=sha256:aa --hash sha256:bb",
            [("django", "5.1.4")],
            id="hashes-on-the-line",
        ),
        pytest.param("psycopg --config-settings=x=y", [("psycopg", None)], id="config-settings"),
        pytest.param("Django_OTP==1.7.0", [("django-otp", "1.7.0")], id="mixed-case-underscore"),
        pytest.param("zope.interface>=6", [("zope-interface", None)], id="dots"),
        pytest.param("celery[redis,sqs]>=5", [("celery", None)], id="extras-keep-base-name"),
        pytest.param(
            'pywin32>=306; sys_platform == "win32"',
            [("pywin32", None)],
            id="marker-for-another-platform",
        ),
        pytest.param(
            'futures; python_version < "2.0"', [("futures", None)], id="marker-never-true-here"
        ),
    ],
)
def test_requirement_lines(tmp_path, lines, expected):
    found = one_line(tmp_path, lines)
    assert pins(found) == expected
    if expected:
        assert found.skipped == ()


@pytest.mark.parametrize(
    "line",
    [
        "--index-url https://pypi.org/simple",
        "-i https://pypi.org/simple",
        "-ihttps://pypi.org/simple",
        "--index-url=https://pypi.org/simple",
        "--extra-index-url https://pypi.acme.internal/simple/",
        "--no-index",
        "-f ./wheels",
        "--find-links=https://download.pytorch.org/whl/torch_stable.html",
        "--pre",
        "--no-binary :all:",
        "--only-binary=psycopg",
        "--prefer-binary",
        "--require-hashes",
        "--trusted-host pypi.acme.internal",
        "--use-feature=truststore",
    ],
)
def test_options_are_ignored(tmp_path, line):
    found = one_line(tmp_path, f"{line}\ndjango")
    assert pins(found) == [("django", None)]
    assert found.skipped == ()


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("-e git+https://github.com/acme/x.git#egg=x", "editable install (-e)"),
        ("-e .", "editable install (-e)"),
        ("--editable ./src/x", "editable install (-e)"),
        ("--editable=./src/x", "editable install (-e)"),
        ("-e./src/x", "editable install (-e)"),
        ("x @ https://example.com/x-1.0.tar.gz", "URL requirement"),
        ("x@https://example.com/x-1.0-py3-none-any.whl", "URL requirement"),
        ("x @ git+https://github.com/acme/x.git@v1", "URL requirement"),
        ("https://example.com/x-1.0.tar.gz", "URL requirement"),
        ("git+https://github.com/acme/x.git@v1#egg=x", "URL requirement"),
        ("git+ssh://git@github.com/acme/x.git#egg=x", "URL requirement"),
        ("x @ file:///srv/x", "local path"),
        ("file:///srv/x", "local path"),
        ("file:../x", "local path"),
        ("./pkg", "local path"),
        ("../x", "local path"),
        (".", "local path"),
        ("/abs/x", "local path"),
        ("~/src/x", "local path"),
        ("C:\\src\\x", "local path"),
        ("x-1.0-py3-none-any.whl", "local path (archive file)"),
        ("dist/x-1.0.tar.gz", "local path (archive file)"),
        ("-r https://example.com/requirements.txt", "remote include not read"),
        ("-r", "-r needs a file name"),
        ("--frobnicate", "unknown option --frobnicate"),
        ("--index-url 'https://x", "not a valid option line: No closing quotation"),
        ("django==", invalid("django==")),
        ("django >= 5 <", invalid("django >= 5 <")),
        ("-django", "unknown option -d"),
    ],
)
def test_skipped_lines(tmp_path, line, reason):
    found = one_line(tmp_path, f"{line}\nrequests")
    assert found.skipped == (Skipped(line, "requirements.txt:1", reason),)
    assert pins(found) == [("requests", None)]  # the rest is still read


@pytest.mark.parametrize(
    ("requirement", "pinned"),
    [
        ("x==1.0", "1.0"),
        ("x == 1.0", "1.0"),
        ("x==1.0.post1+local.2", "1.0.post1+local.2"),
        ("x[extra]==2 ; python_version < '3.13'", "2"),
        ("x>=1,==1.2", "1.2"),
        ("x==1.*", None),
        ("x==1.0,==2.0", None),
        ("x===1.0", None),
        ("x~=1.0", None),
        ("x>=1,<2", None),
        ("x!=1.0", None),
        ("x", None),
    ],
)
def test_pinned_only_by_one_exact_equals(tmp_path, requirement, pinned):
    assert pins(one_line(tmp_path, requirement)) == [("x", pinned)]


def test_duplicates_first_wins_and_a_later_pin_fills_a_missing_one(tmp_path):
    found = one_line(
        tmp_path,
        "Django>=5.1\nrequests==2.31.0\ndjango==5.1.4\nREQUESTS==2.32.3\ndjango==5.1.3\ncelery",
    )
    assert [(w.name, w.pinned, w.requirement, w.where) for w in found.wanted] == [
        ("django", "5.1.4", "Django>=5.1", "requirements.txt:1"),
        ("requests", "2.31.0", "requests==2.31.0", "requirements.txt:2"),  # not replaced
        ("celery", None, "celery", "requirements.txt:6"),
    ]


def test_include_is_relative_to_the_including_file_and_where_names_it(tmp_path):
    top = write(tmp_path, "requirements.txt", "requests\n-r requirements/prod.txt\ngunicorn\n")
    write(tmp_path, "requirements/prod.txt", "--requirement=../shared/base.txt\nsentry-sdk\n")
    write(tmp_path, "shared/base.txt", "# base\ndjango==5.1.4\n")
    found = read_dependencies(top)
    assert [(w.name, w.where) for w in found.wanted] == [
        ("requests", "requirements.txt:1"),
        ("django", "shared/base.txt:2"),
        ("sentry-sdk", "requirements/prod.txt:2"),
        ("gunicorn", "requirements.txt:3"),
    ]


def test_include_by_absolute_path(tmp_path):
    base = write(tmp_path, "elsewhere/base.txt", "django\n")
    top = write(tmp_path, "app/requirements.txt", f"-r {base}\n")
    found = read_dependencies(top)
    assert [(w.name, w.where) for w in found.wanted] == [("django", f"{base.as_posix()}:1")]


def test_a_file_included_twice_is_read_once(tmp_path):
    top = write(tmp_path, "requirements.txt", "-r a.txt\n-r b.txt\n")
    write(tmp_path, "a.txt", "-r base.txt\nrequests\n")
    write(tmp_path, "b.txt", "-r base.txt\ncelery\n")
    write(tmp_path, "base.txt", "django\n-e ./src/acme\n")
    found = read_dependencies(top)
    assert [(w.name, w.where) for w in found.wanted] == [
        ("django", "base.txt:1"),
        ("requests", "a.txt:2"),
        ("celery", "b.txt:2"),
    ]
    assert skips(found) == [("-e ./src/acme", "base.txt:2", "editable install (-e)")]  # once


def test_include_cycle_is_an_error(tmp_path):
    top = write(tmp_path, "requirements.txt", "django\n-r dev.txt\n")
    write(tmp_path, "dev.txt", "pytest\n\n-r sub/more.txt\n")
    write(tmp_path, "sub/more.txt", "-r ../requirements.txt\n")
    with pytest.raises(DependencyFileError) as caught:
        read_dependencies(top)
    assert str(caught.value) == (
        "sub/more.txt:1: include cycle: requirements.txt -> dev.txt -> sub/more.txt"
        " -> requirements.txt"
    )
    assert (caught.value.path, caught.value.line) == ("sub/more.txt", 1)


def test_a_file_including_itself_is_a_cycle(tmp_path):
    top = write(tmp_path, "requirements.txt", "-c requirements.txt\n")
    with pytest.raises(DependencyFileError, match=r"^requirements\.txt:1: include cycle"):
        read_dependencies(top)


def test_missing_include_names_the_including_line(tmp_path):
    top = write(tmp_path, "requirements.txt", "django\n-r requirements/base.txt\n")
    with pytest.raises(DependencyFileError) as caught:
        read_dependencies(top)
    assert str(caught.value).startswith(
        "requirements.txt:2: cannot read included file 'requirements/base.txt': No such file"
    )


def test_too_many_included_files_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(deps, "MAX_FILES", 3)
    for n in range(5):
        write(tmp_path, f"r{n}.txt", f"-r r{n + 1}.txt\n")
    write(tmp_path, "r5.txt", "django\n")
    with pytest.raises(DependencyFileError, match=r"^r2\.txt:1: more than 3 files included"):
        read_dependencies(tmp_path / "r0.txt")


# --- constraints --------------------------------------------------------------------------------


def test_constraints_pin_names_required_elsewhere_only(tmp_path):
    top = write(
        tmp_path,
        "requirements.txt",
        """
        django>=5.1
        requests==2.31.0
        -c constraints/prod.txt
        celery[redis]
        sentry-sdk
        """,
    )
    write(
        tmp_path,
        "constraints/prod.txt",
        """
        Django==5.1.4
        django==5.0.0      # a second pin for a name: the first wins
        requests==2.32.3   # the requirement's own pin wins
        celery==5.4.0 ; python_version >= "3.8"
        sentry-sdk>=2.19   # not a pin
        urllib3==2.2.3     # constraint only: not wanted
        -e ./local         # nothing to pin
        https://example.com/x.tar.gz
        kombu=>5           # a typo is still reported
        """,
    )
    found = read_dependencies(top)
    assert pins(found) == [
        ("django", "5.1.4"),
        ("requests", "2.31.0"),
        ("celery", "5.4.0"),
        ("sentry-sdk", None),
    ]
    assert [(s.requirement, s.where) for s in found.skipped] == [
        ("kombu=>5", "constraints/prod.txt:9")
    ]


def test_constraints_apply_to_requirements_read_before_the_c_line_and_in_includes(tmp_path):
    top = write(tmp_path, "requirements.txt", "-r base.txt\nrequests\n")
    write(tmp_path, "base.txt", "django\n-c constraints.txt\n")
    write(tmp_path, "constraints.txt", "requests==2.32.3\ndjango==5.1.4\n")
    assert pins(read_dependencies(top)) == [("django", "5.1.4"), ("requests", "2.32.3")]


def test_r_inside_a_constraints_file_reads_requirements_as_pip_does(tmp_path):
    top = write(tmp_path, "requirements.txt", "-c constraints.txt\n")
    write(tmp_path, "constraints.txt", "-r more.txt\nurllib3==2.2.3\n")
    write(tmp_path, "more.txt", "django\n")
    assert pins(read_dependencies(top)) == [("django", None)]


# --- pyproject.toml -----------------------------------------------------------------------------


def pyproject(tmp_path: Path, text: str) -> DependencyFile:
    return read_dependencies(write(tmp_path, "pyproject.toml", text))


def test_toml_syntax_error_names_the_file_and_line(tmp_path):
    with pytest.raises(DependencyFileError) as caught:
        pyproject(tmp_path, '[project\nname = "x"\n')
    assert str(caught.value) == (
        "pyproject.toml: not valid TOML: Expected ']' at the end of a table declaration"
        " (at line 1, column 9)"
    )


@pytest.mark.parametrize("name", ["uv.lock", "poetry.lock"])
def test_toml_syntax_error_in_a_lock_file(tmp_path, name):
    path = write(tmp_path, name, '[[package]]\nname = "x"\nversion = \n')
    with pytest.raises(DependencyFileError, match=rf"^{name}: not valid TOML: .*line 3"):
        read_dependencies(path)


def test_toml_nested_too_deeply_is_an_error_not_a_recursion_error(tmp_path):
    with pytest.raises(DependencyFileError, match=r"^pyproject\.toml: not valid TOML: nested"):
        pyproject(tmp_path, "x = " + "[" * 100_000)


def test_no_dependency_tables_means_nothing_wanted(tmp_path):
    found = pyproject(tmp_path, '[build-system]\nrequires = ["hatchling"]\n')
    assert (found.wanted, found.skipped) == ((), ())


def test_the_project_itself_is_never_wanted(tmp_path):
    found = pyproject(
        tmp_path,
        """
        [project]
        name = "Acme.Shop"
        dependencies = ["django"]
        [project.optional-dependencies]
        all = ["acme-shop[s3]"]
        [dependency-groups]
        dev = ["ACME_SHOP[test]", "pytest"]
        """,
    )
    assert pins(found) == [("django", None), ("pytest", None)]
    assert [(s.requirement, s.reason) for s in found.skipped] == [
        ("acme-shop[s3]", "the project itself"),
        ("ACME_SHOP[test]", "the project itself"),
    ]


def test_invalid_pep508_string_is_skipped_with_packagings_message(tmp_path):
    found = pyproject(tmp_path, '[project]\ndependencies = ["django>>5", "requests"]\n')
    assert pins(found) == [("requests", None)]
    assert skips(found) == [
        (
            "django>>5",
            "pyproject.toml [project] dependencies",
            invalid("django>>5"),
        )
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[project]\ndependencies = "django"\n',
            "[project] dependencies must be a list of strings",
        ),
        ("[project]\ndependencies = [1]\n", "[project] dependencies must be a list of strings"),
        ('project = "x"\n', "[project] must be a table"),
        (
            '[project.optional-dependencies]\ns3 = "boto3"\n',
            "[project.optional-dependencies] s3 must be a list of strings",
        ),
        ('[dependency-groups]\ndev = "pytest"\n', "[dependency-groups] dev must be a list"),
        (
            "[dependency-groups]\ndev = [{include-group = 'test', extra = 1}]\ntest = []\n",
            "[dependency-groups] dev: {'include-group': 'test', 'extra': 1} is neither",
        ),
        (
            "[dependency-groups]\ndev = [{include-group = 'tests'}]\ntest = []\n",
            "[dependency-groups] dev: include-group 'tests' is not a group",
        ),
        (
            "[dependency-groups]\nDev = []\ndev = []\n",
            "[dependency-groups] 'Dev' and 'dev' are the same group",
        ),
        (
            '[tool.poetry]\ndependencies = ["django"]\n',
            "[tool.poetry.dependencies] must be a table",
        ),
        ('[tool.poetry.group]\ndev = "x"\n', "[tool.poetry.group.dev] must be a table"),
    ],
)
def test_malformed_pyproject_is_an_error(tmp_path, text, message):
    with pytest.raises(DependencyFileError) as caught:
        pyproject(tmp_path, text)
    assert str(caught.value).startswith(f"pyproject.toml: {message}")


def test_include_group_cycle_is_an_error(tmp_path):
    text = """
        [dependency-groups]
        all = [{include-group = "dev"}]
        dev = ["ruff", {include-group = "test"}]
        test = ["pytest", {include-group = "Dev"}]
        """
    with pytest.raises(DependencyFileError) as caught:
        pyproject(tmp_path, text)
    assert str(caught.value) == (
        "pyproject.toml: [dependency-groups] include-group cycle: dev -> test -> dev"
    )


def test_include_group_names_are_normalised_and_included_groups_are_wanted(tmp_path):
    found = pyproject(
        tmp_path,
        """
        [dependency-groups]
        dev = [{include-group = "Type_Check"}, "ruff"]
        "type.check" = ["mypy==1.13.0"]
        """,
    )
    assert [(w.name, w.pinned, w.where) for w in found.wanted] == [
        ("ruff", None, "pyproject.toml [dependency-groups] dev"),
        ("mypy", "1.13.0", "pyproject.toml [dependency-groups] type.check"),
    ]


def test_include_group_depth_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(deps, "MAX_GROUP_DEPTH", 3)
    chain = "\n".join(f'g{n} = [{{include-group = "g{n + 1}"}}]' for n in range(5))
    with pytest.raises(DependencyFileError, match=r"include-group nested deeper than 3"):
        pyproject(tmp_path, f"[dependency-groups]\n{chain}\ng5 = []\n")


@pytest.mark.parametrize(
    ("value", "pinned"),
    [
        ('"1.2.3"', "1.2.3"),
        ('"==1.2.3"', "1.2.3"),
        ('"=1.2.3"', "1.2.3"),
        ('" 1.2.3 "', "1.2.3"),
        ('"^1.2"', None),
        ('"~1.2"', None),
        ('"~=1.2"', None),
        ('"*"', None),
        ('">=1.2,<2"', None),
        ('"1.2.*"', None),
        ('"==1.2.*"', None),
        ('"1.2.3 || 1.2.5"', None),
        ('"==not a version"', None),
        ('{version = "1.0", extras = ["redis"]}', "1.0"),
        ('{version = "^1.0", optional = true}', None),
        ('{extras = ["redis"]}', None),
        ('{version = "4.0", source = "private"}', "4.0"),
    ],
)
def test_poetry_versions(tmp_path, value, pinned):
    found = pyproject(tmp_path, f"[tool.poetry.dependencies]\npython = '^3.11'\nx = {value}\n")
    assert pins(found) == [("x", pinned)]
    assert found.wanted[0].requirement == f"x = {value}"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ('{git = "https://github.com/acme/x.git", branch = "main"}', "git source"),
        ('{path = "../x", develop = true}', "local path"),
        ('{url = "https://example.com/x-1.0.tar.gz"}', "URL requirement"),
        ("{version = 1}", "not a Poetry version constraint"),
        ("3", "not a Poetry version constraint"),
    ],
)
def test_poetry_skipped(tmp_path, value, reason):
    found = pyproject(tmp_path, f"[tool.poetry.dependencies]\nx = {value}\n")
    assert (found.wanted, [(s.where, s.reason) for s in found.skipped]) == (
        (),
        [("pyproject.toml [tool.poetry.dependencies]", reason)],
    )


def test_poetry_key_that_is_not_a_name_is_skipped(tmp_path):
    found = pyproject(tmp_path, '[tool.poetry.dependencies]\n"x>=1" = "*"\ny = "*"\n')
    assert pins(found) == [("y", None)]
    assert skips(found) == [
        ('x>=1 = "*"', "pyproject.toml [tool.poetry.dependencies]", "not a valid package name")
    ]


def test_poetry_multiple_constraints_are_read_in_turn(tmp_path):
    found = pyproject(
        tmp_path,
        """
        [tool.poetry]
        name = "acme"
        [tool.poetry.dependencies]
        Python = "^3.11"
        pillow = [
            {version = "^10.4", python = "<3.13"},
            {version = "11.0.0", python = ">=3.13"},
        ]
        acme = "*"
        """,
    )
    assert pins(found) == [("pillow", "11.0.0")]  # the one exact version fills the pin
    assert [(s.requirement, s.reason) for s in found.skipped] == [
        ('acme = "*"', "the project itself")
    ]


def test_pep621_and_poetry_in_one_file_are_both_read(tmp_path):
    found = pyproject(
        tmp_path,
        """
        [project]
        name = "acme"
        dependencies = ["django>=5.1"]
        [tool.poetry.dependencies]
        django = "5.1.4"
        celery = "^5.4"
        """,
    )
    assert [(w.name, w.pinned, w.where) for w in found.wanted] == [
        ("django", "5.1.4", "pyproject.toml [project] dependencies"),
        ("celery", None, "pyproject.toml [tool.poetry.dependencies]"),
    ]


# --- lock files ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ('{ registry = "https://pypi.org/simple" }', None),
        ('{ editable = "." }', "the project itself"),
        ('{ virtual = "." }', "the project itself"),
        ('{ editable = "packages/core" }', "editable install (packages/core)"),
        ('{ virtual = "packages/tools" }', "virtual project (packages/tools)"),
        ('{ directory = "../x" }', "local path (../x)"),
        (
            '{ path = "wheels/x-1.0-py3-none-any.whl" }',
            "local path (wheels/x-1.0-py3-none-any.whl)",
        ),
        ('{ git = "https://github.com/acme/x.git?rev=v1#0123abcd" }', "git source"),
        ('{ url = "https://example.com/x-1.0.tar.gz" }', "URL requirement"),
        ('{ mystery = "x" }', 'unknown source {mystery = "x"}'),
    ],
)
def test_uv_lock_sources(tmp_path, source, reason):
    path = write(
        tmp_path,
        "uv.lock",
        f'version = 1\n[[package]]\nname = "X_Y"\nversion = "1.0"\nsource = {source}\n',
    )
    found = read_dependencies(path)
    if reason is None:
        assert pins(found) == [("x-y", "1.0")]
        assert found.skipped == ()
    else:
        assert found.wanted == ()
        assert skips(found) == [("X_Y==1.0", "uv.lock", reason)]


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("", None),
        ('[package.source]\ntype = "legacy"\nurl = "https://pypi.acme.internal/simple"\n', None),
        ('[package.source]\ntype = "git"\nurl = "https://github.com/acme/x.git"\n', "git source"),
        ('[package.source]\ntype = "directory"\nurl = "../x"\n', "local path (../x)"),
        (
            '[package.source]\ntype = "file"\nurl = "dist/x-1.0.tar.gz"\n',
            "local path (dist/x-1.0.tar.gz)",
        ),
        ('[package.source]\ntype = "url"\nurl = "https://example.com/x.zip"\n', "URL requirement"),
    ],
)
def test_poetry_lock_sources(tmp_path, source, reason):
    path = write(
        tmp_path, "poetry.lock", f'[[package]]\nname = "x"\nversion = "1.0"\nfiles = []\n{source}'
    )
    found = read_dependencies(path)
    if reason is None:
        assert pins(found) == [("x", "1.0")]
    else:
        assert skips(found) == [("x==1.0", "poetry.lock", reason)]


def test_lock_with_two_versions_of_a_package_keeps_the_first(tmp_path):
    path = write(
        tmp_path,
        "uv.lock",
        """
        version = 1
        [[package]]
        name = "numpy"
        version = "1.26.4"
        source = { registry = "https://pypi.org/simple" }
        resolution-markers = ["python_full_version < '3.12'"]
        [[package]]
        name = "numpy"
        version = "2.1.3"
        source = { registry = "https://pypi.org/simple" }
        resolution-markers = ["python_full_version >= '3.12'"]
        """,
    )
    assert pins(read_dependencies(path)) == [("numpy", "1.26.4")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('package = "x"\n', "uv.lock: [[package]] must be an array of tables"),
        ('[[package]]\nversion = "1.0"\n', "uv.lock: [[package]] number 1 has no name"),
        (
            '[[package]]\nname = "a"\n[[package]]\nname = 2\n',
            "uv.lock: [[package]] number 2 has no name",
        ),
    ],
)
def test_malformed_lock_is_an_error(tmp_path, text, message):
    with pytest.raises(DependencyFileError) as caught:
        read_dependencies(write(tmp_path, "uv.lock", text))
    assert str(caught.value) == message


def test_lock_package_without_version_is_wanted_unpinned(tmp_path):
    path = write(tmp_path, "poetry.lock", '[[package]]\nname = "x"\n')
    assert pins(read_dependencies(path)) == [("x", None)]
