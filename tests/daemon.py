"""A real ``monitor run`` in a subprocess, serving HTTP on a free loopback port (SPEC §10).

    with RunningMonitor(monitor.config_path, "--http", "127.0.0.1:0") as daemon:
        status, headers, body = daemon.request("GET", "/healthz")

Its stderr is read as JSON log lines (``--log-format json``) into :attr:`logs`; the URL comes
from its ``listening`` line. Leaving the block sends SIGTERM and waits for the exit.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parent.parent


def wait_for(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Poll ``condition`` every 20 ms until it gives something true (returned); fail the
    test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


class RunningMonitor:
    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None):
        self.command = [
            sys.executable,
            "-m",
            "monitor",
            "--config",
            str(config),
            "run",
            "--log-format",
            "json",
            *args,
        ]
        self.env = env
        self.logs: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.url: str | None = None
        self.returncode: int | None = None
        self.stop_seconds: float | None = None
        self._process: subprocess.Popen[str] | None = None
        self._readers: list[threading.Thread] = []

    def __enter__(self) -> RunningMonitor:
        import os

        env = {**os.environ, **(self.env or {})}
        self._process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._drain_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            self.wait_for(lambda: self.url is not None or self._exited(), timeout=30)
            if self.url is None:
                raise AssertionError(f"monitor run did not listen: {self.raw}")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _exited(self) -> bool:
        return self._process is not None and self._process.poll() is not None

    def _read(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            self.raw.append(line)
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            self.logs.append(entry)
            if entry.get("event") == "listening":
                self.url = entry["url"]

    def _drain_stdout(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for _ in self._process.stdout:
            pass

    def events(self, name: str) -> list[dict[str, Any]]:
        return [entry for entry in list(self.logs) if entry.get("event") == name]

    def stop(self) -> int:
        """SIGTERM, then wait (10 s at most); the exit code."""
        process = self._process
        if process is None:
            return -1
        if process.poll() is None:
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            self.stop_seconds = time.monotonic() - started
        for reader in self._readers:
            reader.join(5)
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
        self.returncode = process.returncode
        return process.returncode

    wait_for = staticmethod(wait_for)

    def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """One HTTP request; (status, headers, body), whatever the status."""
        assert self.url is not None
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent.setdefault("Content-Type", "application/json")
        request = urllib.request.Request(self.url + path, data=body, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()
