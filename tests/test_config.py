"""Config (SPEC §5): discovery, ${VAR}, validation naming the key and line; docs as tests."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from monitor.config import find_config_path, load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).parent.parent


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return load_config(path, env or {})


def test_example_config_loads_and_documents_every_notifier(tmp_path: Path) -> None:
    env = {name: "x" for name in ("SLACK_WEBHOOK_URL", "SMTP_USER", "SMTP_PASSWORD")}
    env["SLACK_WEBHOOK_URL"] = "https://hooks.slack.com/services/T/B/X"
    env["WEBHOOK_SECRET"] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    config = load_config(ROOT / "config.example.toml", env)
    assert set(config.notifiers) == {"console", "team-slack", "team-email", "ci"}
    assert config.notifiers["team-email"].digest is True
    assert config.notifiers["team-slack"].digest is False
    assert config.default_notify == ("team-slack",)
    assert config.database == (ROOT / "monitor.db").resolve()


def test_defaults_without_a_file() -> None:
    config = load_config(None)
    assert config.djangopackages.url == "https://djangopackages.org"
    assert config.default_notify == ("console",)
    assert config.schedule.interval.total_seconds() == 6 * 3600


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config_path(None, {}) is None
    (tmp_path / "monitor.toml").write_text("")
    assert find_config_path(None, {}) == Path("monitor.toml")
    assert find_config_path(None, {"MONITOR_CONFIG": "/etc/m.toml"}) == Path("/etc/m.toml")
    assert find_config_path("given.toml", {"MONITOR_CONFIG": "x"}) == Path("given.toml")


def test_variables_are_expanded_and_dollar_dollar_is_literal(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[notifiers.ci]\ntype = "webhook"\nurl = "${HOOK}/$${x}"\n',
        {"HOOK": "https://example.com"},
    )
    assert config.notifiers["ci"].settings["url"] == "https://example.com/${x}"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('databse = "x.db"\n', 1, "databse: unknown key (did you mean 'database'?)"),
        (
            '[schedule]\ninterval = "6h"\njiter = "1m"\n',
            3,
            "schedule.jiter: unknown key (did you mean 'jitter'?)",
        ),
        ('[sources.djangopackages]\nconcurrency = "8"\n', 2, "expected an integer"),
        ('[schedule]\ninterval = "soon"\n', 2, "is not a duration"),
        ('[schedule]\ndigest = "0 8 * *"\n', 2, "5-field cron"),
        ('[schedule]\ntimezone = "Mars/Base"\n', 2, "unknown time zone"),
        ('[rules]\npaths = ["nope.yaml"]\n', 2, "'nope.yaml' does not exist"),
        ('[defaults]\nnotify = ["team-slak"]\n', 2, "no notifier named 'team-slak'"),
        ('[notifiers.ci]\ntype = "webhok"\n', 2, "did you mean 'webhook'?"),
        (
            '[sources.djangopackages]\nurl = "${DP_URL}"\n',
            2,
            "sources.djangopackages.url: environment variable DP_URL is not set",
        ),
        ('[notifiers.ci]\ntype = "webhook"\nurll = "x"\n', 3, "did you mean 'url'?"),
        ('[notifiers.ci]\ntype = "webhook"\nmin_severity = "warn"\n', 3, "did you mean 'warning'?"),
        ("database = \n", 1, "not valid TOML"),
    ],
    ids=[
        "top-key",
        "table-key",
        "type",
        "duration",
        "cron",
        "timezone",
        "rules-path",
        "notify",
        "notifier-type",
        "unset-var",
        "notifier-key",
        "severity",
        "toml",
    ],
)
def test_errors_name_key_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'monitor.toml'}:{line}: ")


def test_secret_values_never_appear_in_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(
            tmp_path,
            '[notifiers.ci]\ntype = "webhook"\nurl = "${HOOK}"\nsecret = 5\n',
            {"HOOK": "https://example.com/s3cr3t-path"},
        )
    assert "s3cr3t" not in str(caught.value)


def test_bad_config_exits_2_and_changes_nothing(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from monitor.cli import Runtime, cli

    (tmp_path / "monitor.toml").write_text('databse = "x.db"\n')
    runtime = Runtime(config_path=str(tmp_path / "monitor.toml"))
    result = CliRunner().invoke(cli, ["list"], obj=runtime)
    assert result.exit_code == 2
    assert "monitor.toml:1: databse: unknown key (did you mean 'database'?)" in result.stderr
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "monitor.db").exists()


def test_a_notifier_variable_is_needed_only_to_make_that_notifier(tmp_path: Path) -> None:
    from monitor.outbox import make_notifier

    config = _load(
        tmp_path,
        '[notifiers.team-slack]\ntype = "slack"\ntoken = "${SLACK_BOT_TOKEN}"\n'
        'channel = "#deps"\n\n[notifiers.ci]\ntype = "webhook"\nurl = "${HOOK}"\n',
        {"HOOK": "https://example.com/h"},
    )
    slack = config.notifiers["team-slack"]
    assert slack.unset is not None and slack.unset.variable == "SLACK_BOT_TOKEN"
    assert config.notifiers["ci"].unset is None
    make_notifier(config, "ci")
    with pytest.raises(ConfigError) as caught:
        make_notifier(config, "team-slack")
    assert str(caught.value) == (
        f"{tmp_path / 'monitor.toml'}:3: notifiers.team-slack.token: "
        "environment variable SLACK_BOT_TOKEN is not set"
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('token = "${T}"\nchanel = "#d"\n', "notifiers.s.chanel: unknown key"),
        ('token = "${T}"\nchannel = 5\n', "notifiers.s.channel: expected a string"),
        ('token = "${T}"\nmin_severity = "${SEV}"\n', "environment variable SEV is not set"),
    ],
    ids=["unknown-key", "wrong-type", "common-key-variable"],
)
def test_a_notifier_with_an_unset_variable_is_still_checked_at_load(
    tmp_path: Path, table: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, f'[notifiers.s]\ntype = "slack"\n{table}')


# --- more sources and [project] (SPEC §2.1, §5) ---------------------------------------------


def test_every_source_has_its_defaults_without_a_file() -> None:
    config = load_config(None)
    assert list(config.sources) == ["pypi", "github", "osv"]
    assert {name: source.url for name, source in config.sources.items()} == {
        "pypi": "https://pypi.org",
        "github": "https://api.github.com",
        "osv": "https://api.osv.dev",
    }
    for source in (config.djangopackages, *config.sources.values()):
        assert (source.timeout, source.concurrency, source.enabled) == (30.0, 8, True)
        assert source.token is None and source.unset is None
        source.check_environment()
    assert config.project_django is None


def test_an_empty_file_gives_the_same_sources_as_no_file(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert config.sources == load_config(None).sources
    assert config.djangopackages == load_config(None).djangopackages


def test_the_default_urls_are_the_source_modules_own() -> None:
    from monitor.sources import github, osv, pypi

    config = load_config(None)
    assert config.sources["pypi"].url == pypi.DEFAULT_URL
    assert config.sources["github"].url == github.DEFAULT_URL
    assert config.sources["osv"].url == osv.DEFAULT_URL


def test_reading_the_config_imports_no_aiohttp() -> None:
    import subprocess
    import sys

    code = (
        "import sys, monitor.config as c; c.load_config(None);"
        " print('aiohttp' in sys.modules or 'monitor.sources.pypi' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("name", ["pypi", "github", "osv"])
@pytest.mark.parametrize(
    ("key", "value", "attribute", "expected"),
    [
        ("url", '"http://127.0.0.1:8080/mirror/"', "url", "http://127.0.0.1:8080/mirror"),
        ("timeout", '"1m30s"', "timeout", 90.0),
        ("concurrency", "2", "concurrency", 2),
        ("enabled", "false", "enabled", False),
    ],
    ids=["url", "timeout", "concurrency", "enabled"],
)
def test_each_source_key_is_read(
    tmp_path: Path, name: str, key: str, value: str, attribute: str, expected: object
) -> None:
    config = _load(tmp_path, f"[sources.{name}]\n{key} = {value}\n")
    assert getattr(config.sources[name], attribute) == expected
    others = {other: source for other, source in config.sources.items() if other != name}
    assert others == {other: load_config(None).sources[other] for other in others}


def test_a_disabled_source_keeps_its_other_settings(tmp_path: Path) -> None:
    config = _load(tmp_path, '[sources.osv]\nenabled = false\nurl = "https://osv.example"\n')
    assert config.sources["osv"].enabled is False
    assert config.sources["osv"].url == "https://osv.example"
    assert config.sources["pypi"].enabled and config.sources["github"].enabled


def test_the_github_token_comes_from_the_environment(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[sources.github]\ntoken = "${GITHUB_TOKEN}"\nurl = "${GH}"\n',
        {"GITHUB_TOKEN": "ghp_s3cr3t", "GH": "http://127.0.0.1:9"},
    )
    github = config.sources["github"]
    assert github.token == "ghp_s3cr3t"
    assert github.url == "http://127.0.0.1:9"
    assert github.unset is None
    github.check_environment()
    assert "s3cr3t" not in repr(config)


def test_an_empty_github_token_means_none(tmp_path: Path) -> None:
    config = _load(tmp_path, '[sources.github]\ntoken = "${GITHUB_TOKEN}"\n', {"GITHUB_TOKEN": ""})
    assert config.sources["github"].token is None
    assert config.sources["github"].unset is None


def test_an_unset_token_variable_is_needed_only_to_make_the_github_source(
    tmp_path: Path,
) -> None:
    config = _load(tmp_path, '[sources.github]\nenabled = true\ntoken = "${GITHUB_TOKEN}"\n')
    github = config.sources["github"]
    assert github.token is None
    assert github.unset is not None and github.unset.variable == "GITHUB_TOKEN"
    config.sources["pypi"].check_environment()
    with pytest.raises(ConfigError) as caught:
        github.check_environment()
    assert str(caught.value) == (
        f"{tmp_path / 'monitor.toml'}:3: sources.github.token: "
        "environment variable GITHUB_TOKEN is not set"
    )


@pytest.mark.parametrize(
    ("text", "version"),
    [("", None), ('[project]\ndjango = "5.2"\n', "5.2"), ('[project]\ndjango = "4.10"\n', "4.10")],
    ids=["unset", "5.2", "4.10"],
)
def test_the_project_django_version(tmp_path: Path, text: str, version: str | None) -> None:
    assert _load(tmp_path, text).project_django == version


def test_the_project_django_version_may_come_from_the_environment(tmp_path: Path) -> None:
    config = _load(tmp_path, '[project]\ndjango = "${DJANGO}"\n', {"DJANGO": "5.1"})
    assert config.project_django == "5.1"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            "[sources.pypi]\nenabled = true\nenabeld = false\n",
            3,
            "sources.pypi.enabeld: unknown key (did you mean 'enabled'?)",
        ),
        (
            '[sources.github]\ntokn = "x"\n',
            2,
            "sources.github.tokn: unknown key (did you mean 'token'?)",
        ),
        (
            '[sources.osv]\ntoken = "x"\n',
            2,
            "sources.osv.token: unknown key",
        ),
        (
            "[sources.djangopackages]\nenabled = false\n",
            2,
            "sources.djangopackages.enabled: unknown key",
        ),
        (
            '[sources.gitlab]\nurl = "https://gitlab.com"\n',
            1,
            "sources.gitlab: unknown key (did you mean 'github'?)",
        ),
        ('[sources.github]\nenabled = "no"\n', 2, "sources.github.enabled: expected true or false"),
        ("[sources.github]\ntoken = 5\n", 2, "sources.github.token: expected a string"),
        ("[sources.osv]\nurl = 5\n", 2, "sources.osv.url: expected a string"),
        ('[sources.pypi]\nconcurrency = "8"\n', 2, "sources.pypi.concurrency: expected an integer"),
        ('[sources.pypi]\nurl = "ftp://pypi.org"\n', 2, "sources.pypi.url: expected an http"),
        ('[sources.osv]\nurl = "api.osv.dev"\n', 2, "sources.osv.url: expected an http(s) URL"),
        ('[sources.github]\nurl = "https://"\n', 2, "sources.github.url: expected an http(s) URL"),
        ("[sources.github]\nconcurrency = 0\n", 2, "github.concurrency: must be at least 1"),
        ('[sources.osv]\ntimeout = "soon"\n', 2, "sources.osv.timeout: 'soon' is not a duration"),
        ('[sources.pypi]\ntimeout = "0s"\n', 2, "sources.pypi.timeout: must be longer than 0s"),
        (
            '[sources.djangopackages]\ntimeout = "0s"\n',
            2,
            "sources.djangopackages.timeout: must be longer than 0s",
        ),
        (
            '[sources.pypi]\nurl = "${PYPI_URL}"\n',
            2,
            "sources.pypi.url: environment variable PYPI_URL is not set",
        ),
        ('[sources]\npypi = "off"\n', 2, "sources.pypi: expected a table"),
        ('[project]\ndjango = "5"\n', 2, "project.django: '5' is not a Django version"),
        ('[project]\ndjango = "5.2.1"\n', 2, "project.django: '5.2.1' is not a Django version"),
        ('[project]\ndjango = "v5.2"\n', 2, "project.django: 'v5.2' is not a Django version"),
        ("[project]\ndjango = 5.2\n", 2, 'project.django: expected a string such as "5.2"'),
        ("[project]\ndjango = 5\n", 2, 'project.django: expected a string such as "5.2"'),
        ("[project]\ndjango = true\n", 2, "project.django: expected a string, got true or false"),
        ('[project]\ndjngo = "5.2"\n', 2, "project.djngo: unknown key (did you mean 'django'?)"),
        ('[projects]\ndjango = "5.2"\n', 1, "projects: unknown key (did you mean 'project'?)"),
    ],
    ids=[
        "unknown-key",
        "github-key",
        "token-only-on-github",
        "djangopackages-cannot-be-disabled",
        "unknown-source",
        "enabled-type",
        "token-type",
        "url-type",
        "concurrency-type",
        "url-scheme",
        "url-without-scheme",
        "url-without-host",
        "concurrency-0",
        "timeout-not-a-duration",
        "timeout-0",
        "djangopackages-timeout-0",
        "url-variable-unset",
        "source-not-a-table",
        "django-major-only",
        "django-patch",
        "django-prefix",
        "django-float",
        "django-int",
        "django-bool",
        "project-key",
        "project-table",
    ],
)
def test_source_and_project_errors_name_key_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 'monitor.toml'}:{line}: ")


def test_a_wrong_token_type_is_an_error_even_when_unset_would_be_deferred(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"sources\.github\.token: expected a string"):
        _load(tmp_path, "[sources.github]\ntoken = ['${GITHUB_TOKEN}']\n")


def test_the_example_config_shows_every_source_and_project_key(tmp_path: Path) -> None:
    import tomllib

    from monitor.config import source_tables

    example = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    assert set(example["sources"]) == set(source_tables())
    assert set(example["sources"]["github"]) == set(source_tables()["github"])
    for name, keys in source_tables().items():  # each source's own keys at least
        assert set(keys) - {"timeout", "concurrency"} <= set(example["sources"][name]), name
    assert set(example["project"]) == {"django"}
    config = load_config(ROOT / "config.example.toml", {"GITHUB_TOKEN": "ghp_x"})
    assert config.sources["github"].token == "ghp_x"
    assert config.project_django == "5.2"


@pytest.mark.parametrize(
    ("text", "keep"),
    [
        ("", timedelta(days=400)),
        ('[history]\nkeep = "400d"\n', timedelta(days=400)),
        ('[history]\nkeep = "2w"\n', timedelta(days=14)),
        ('[history]\nkeep = "8d"\n', timedelta(days=8)),
        ('[history]\nkeep = "forever"\n', None),
        ('[history]\nkeep = "Forever"\n', None),
    ],
    ids=["default", "400d", "weeks", "shortest", "forever", "forever-any-case"],
)
def test_history_keep(tmp_path: Path, text: str, keep: timedelta | None) -> None:
    assert _load(tmp_path, text).history.keep == keep
    assert load_config(None).history.keep == timedelta(days=400)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[history]\nkep = "400d"\n', 2, "history.kep: unknown key (did you mean 'keep'?)"),
        ('[history]\nkeep = "7d"\n', 2, "history.keep: '7d' is shorter than 8d"),
        ('[history]\nkeep = "23h"\n', 2, "history.keep: '23h' is shorter than 8d"),
        ('[history]\nkeep = "always"\n', 2, "history.keep: 'always' is not a duration"),
        (
            '[history]\nkeep = "200y"\n',
            2,
            'is not a duration (use e.g. 30s, 15m, 6h, 7d, 2w or 1h30m), or "forever"',
        ),
        ('[history]\nkeep = "36600d"\n', 2, "history.keep: '36600d' is longer than 100 years"),
        ("[history]\nkeep = 400\n", 2, "history.keep: expected a string, got an integer"),
        ('history = "400d"\n', 1, "history: expected a table, got a string"),
    ],
    ids=["unknown-key", "a-week", "hours", "word", "years", "too-long", "number", "not-a-table"],
)
def test_history_keep_errors_name_key_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert caught.value.line == line
    assert message in str(caught.value)


def test_the_example_config_documents_history_keep() -> None:
    config = load_config(ROOT / "config.example.toml", {})
    assert config.history.keep == timedelta(days=400)
    import tomllib

    example = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    assert example["history"] == {"keep": "400d"}
