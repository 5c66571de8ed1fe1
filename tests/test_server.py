"""`monitor run --http`: the server beside the scheduler, its address rules and its
authentication (SPEC §10, issue 13)."""

from __future__ import annotations

import base64

import pytest

from tests.conftest import Monitor
from tests.daemon import RunningMonitor

TOKEN = "s3cret-token"


def test_run_serves_healthz_on_a_free_port_and_stops_on_sigterm(monitor: Monitor) -> None:
    monitor.configure(interval="1s")
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
        assert daemon.url is not None and daemon.url.startswith("http://127.0.0.1:")
        status = daemon.wait_for(
            lambda: daemon.request("GET", "/healthz")[0] == 200 and 200, timeout=10
        )
        assert status == 200
        _, _, body = daemon.request("GET", "/healthz")
        assert body == b"ok\n"  # the status alone
    assert daemon.returncode == 0, daemon.raw
    assert daemon.stop_seconds is not None and daemon.stop_seconds < 5


@pytest.mark.parametrize(
    ("where", "config", "args"),
    [
        ("http.token", '[http]\nlisten = "0.0.0.0:8080"\n', ()),
        ("http.token", "", ("--http", "0.0.0.0:0")),
        ("--http", "", ("--http", "localhost")),
        ("http.listen", '[http]\nlisten = "nowhere"\n', ()),
    ],
    ids=["listen-without-token", "flag-without-token", "flag-without-port", "bad-listen"],
)
def test_a_public_address_without_a_token_is_a_config_error(
    monitor: Monitor, where: str, config: str, args: tuple[str, ...]
) -> None:
    monitor.configure(config)
    result = monitor.run("run", *args)
    assert result.exit_code == 2
    assert where in result.stderr
    assert not (monitor.tmp_path / "monitor.db").exists()  # refused before anything is made


def test_an_unset_token_variable_is_named_only_when_serving(monitor: Monitor) -> None:
    monitor.configure('[http]\nlisten = "127.0.0.1:0"\ntoken = "${MONITOR_HTTP_TOKEN}"\n')
    assert monitor.run("list").exit_code == 0  # not needed here
    result = monitor.run("run")
    assert result.exit_code == 2
    assert "MONITOR_HTTP_TOKEN" in result.stderr and "http.token" in result.stderr


def test_with_a_token_pages_and_api_need_it(monitor: Monitor) -> None:
    monitor.configure(f'[http]\nlisten = "127.0.0.1:0"\ntoken = "{TOKEN}"\n')
    with RunningMonitor(monitor.config_path) as daemon:
        status, headers, _ = daemon.request("GET", "/")
        assert status == 401
        assert headers.get("WWW-Authenticate", "").startswith("Basic")  # a browser asks
        assert daemon.request("GET", "/api/watches")[0] == 401
        assert daemon.request("GET", "/api/watches", token="wrong")[0] == 401
        assert daemon.request("GET", "/api/watches", token=TOKEN)[0] == 200
        basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
        status, _, _ = daemon.request("GET", "/", headers={"Authorization": f"Basic {basic}"})
        assert status == 200
        assert daemon.request("GET", "/healthz")[0] in (200, 503)  # open, no token


def test_without_a_token_nothing_changes_over_http(monitor: Monitor) -> None:
    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
        status, _, body = daemon.request("POST", "/api/watches", json_body={"names": ["x"]})
        assert status == 401
        assert b"[http] token" in body
        # a page of another site reaching us by DNS rebinding names another host
        assert daemon.request("GET", "/", headers={"Host": "evil.example:80"})[0] == 421
    assert monitor.count("watches") == 0
