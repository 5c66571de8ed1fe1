"""``[http]`` and ``[slack_app]`` (SPEC §5, §10): what they accept, and when a secret is needed."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from monitor.config import _SCHEMA, is_loopback, listen_address, load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None):
    path = tmp_path / "monitor.toml"
    path.write_text(text)
    return load_config(path, env or {})


def test_the_example_config_shows_every_http_and_slack_app_key() -> None:
    example = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    assert set(example["http"]) == set(_SCHEMA["http"])
    shown = set(example["slack_app"]) | {"api_url"}  # api_url is there, commented out
    assert shown == set(_SCHEMA["slack_app"])
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    assert '# api_url = "https://slack.com/api/"' in text
    env = {
        "MONITOR_HTTP_TOKEN": "t",
        "GITHUB_WEBHOOK_SECRET": "g",
        "SLACK_APP_TOKEN": "xapp-1",
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "s",
    }
    config = load_config(ROOT / "config.example.toml", env)
    assert config.serving() is not None and config.serving().token == "t"
    assert config.slack_app is not None and config.slack_app.bot_token == "xoxb-1"
    assert "xoxb-1" not in repr(config) and "'t'" not in repr(config.http)


def test_without_http_nothing_is_served(tmp_path: Path) -> None:
    config = _load(tmp_path, "")
    assert config.serving() is None
    assert config.serving("127.0.0.1:0") is not None  # run --http
    assert config.slack_app is None


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[http]\nlisten = "0.0.0.0:8080"\n', "http.token"),
        ('[http]\nlisten = "example.com:80"\n', "http.token"),
        ('[http]\nlisten = "8080"\n', "http.listen"),
        ('[http]\nlisten = "127.0.0.1:99999"\n', "http.listen"),
        ('[http]\nlisten = "127.0.0.1:80"\ntoken = ""\n', "http.token"),
        ('[http]\nlisten = "127.0.0.1:80"\ntokn = "x"\n', "http.tokn"),
        ('[slack_app]\nbot_token = "xoxb"\n', "slack_app"),
        ('[slack_app]\napp_token = "x"\nallow_channels = "C1"\n', "slack_app.allow_channels"),
        ('[slack_app]\napp_token = "x"\nallow_channels = [1]\n', "slack_app.allow_channels"),
        ('[slack_app]\napp_token = "x"\napi_url = "slack"\n', "slack_app.api_url"),
    ],
    ids=[
        "any-address-no-token",
        "hostname-no-token",
        "no-port",
        "port-too-big",
        "empty-token",
        "misspelt",
        "slack-cannot-receive",
        "channels-not-list",
        "channels-not-text",
        "api-url",
    ],
)
def test_bad_http_and_slack_app_tables_are_errors_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert f": {key}:" in str(caught.value)
    assert caught.value.line is not None


def test_a_secret_variable_is_needed_only_by_what_uses_it(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        '[http]\nlisten = "127.0.0.1:0"\ntoken = "${T}"\n'
        '[slack_app]\napp_token = "${A}"\nbot_token = "${B}"\n',
    )
    with pytest.raises(ConfigError, match="T is not set"):
        config.serving()
    assert config.slack_app is not None
    with pytest.raises(ConfigError, match="A is not set"):
        config.slack_app.check_environment()
    with pytest.raises(ConfigError, match=r"http\.listen: .*L is not set"):  # not a secret: at load
        _load(tmp_path, '[http]\nlisten = "${L}"\n')


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:8080", True),
        ("localhost:1", True),
        ("[::1]:8080", True),
        ("0.0.0.0:8080", False),
        ("[::]:80", False),
        ("10.0.0.1:80", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    host, _ = listen_address(address)
    assert is_loopback(host) is loopback
