"""Config (SPEC §5): discovery, ${VAR}, validation naming the key and line; docs as tests."""

from __future__ import annotations

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
