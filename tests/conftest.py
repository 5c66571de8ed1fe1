"""Shared test harness: a fake clock, the fake upstream in a thread, and a CLI runner that
goes through the same code path users run (``monitor.cli.cli``), with sleeps injected."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from monitor.cli import Runtime, cli
from monitor.store import Store
from tests.fakes import SECRET, TOKEN, FakeSlack, FakeWebhookReceiver
from tests.fakeupstream import FakeUpstream

START = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    """``clock()`` gives the fake now; ``await clock.sleep(s)`` advances it without waiting."""

    now: datetime = START
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


@dataclass
class Monitor:
    """One user's monitor: a config file in tmp_path pointing at the fake upstream."""

    tmp_path: Path
    upstream: FakeUpstream
    clock: FakeClock
    config_path: Path
    env: dict[str, str] = field(default_factory=dict)

    def configure(
        self,
        extra: str = "",
        *,
        timeout: str = "2s",
        interval: str = "6h",
        sources: tuple[str, ...] = (),
    ) -> None:
        """Write the config. The other sources (``pypi``, ``github``, ``osv``) are off unless
        named in ``sources``: then they are served by the fake upstream too."""
        tables = "".join(
            f"\n[sources.{name}]\n"
            + (f'url = "{self.upstream.url}"\ntimeout = "{timeout}"\n' if name in sources else "")
            + f"enabled = {'true' if name in sources else 'false'}\n"
            for name in ("pypi", "github", "osv")
        )
        self.config_path.write_text(
            textwrap.dedent(f"""\
            database = "monitor.db"

            [sources.djangopackages]
            url = "{self.upstream.url}"
            timeout = "{timeout}"

            [schedule]
            interval = "{interval}"
            jitter = "0s"
            """)
            + textwrap.dedent(extra)
            + tables
        )

    def run(self, *args: str) -> Result:
        runtime = Runtime(
            config_path=str(self.config_path),
            clock=self.clock,
            sleep=self.clock.sleep,
            rng=lambda: 0.5,
            env=self.env or None,
        )
        return CliRunner().invoke(cli, list(args), obj=runtime, catch_exceptions=False)

    def json(self, *args: str) -> Any:
        result = self.run(*args, "--json")
        assert result.exit_code in (0, 1), result.output
        return json.loads(result.stdout)

    def store(self) -> Store:
        return Store(self.tmp_path / "monitor.db")

    def count(self, table: str) -> int:
        store = self.store()
        try:
            return store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        finally:
            store.close()

    def polls(self) -> int:
        """How many polls the database counts (``watches.polls``), of every outcome."""
        store = self.store()
        try:
            return store.conn.execute(POLLS_SQL).fetchone()[0]
        finally:
            store.close()


POLLS_SQL = "SELECT COALESCE(SUM(polls), 0) FROM watches"
# the same polls, counted by day over all packages
DAY_POLLS_SQL = "SELECT COALESCE(SUM(ok + unchanged + failed + not_found), 0) FROM poll_days"


def webhook_toml(url: str, *, signed: bool = False) -> str:
    """Config lines sending every alert to the webhook receiver at ``url`` (channel
    ``hook``); ``signed``: with ``secret = "${WEBHOOK_SECRET}"`` (set it in the env)."""
    secret = 'secret = "${WEBHOOK_SECRET}"\n' if signed else ""
    return (
        '\n[defaults]\nnotify = ["hook"]\n\n[notifiers.hook]\ntype = "webhook"\n'
        f'url = "{url}"\n{secret}'
    )


@pytest.fixture
def upstream() -> Any:
    """The fake djangopackages, with PyPI, GitHub and OSV beside it (``up.world``): they
    answer only for a test that turns those sources on (``monitor.configure(sources=...)``)."""
    from tests.fakeupstream import load_fixtures
    from tests.sourceworld import World

    world = World(load_fixtures())
    with FakeUpstream.in_thread(apis=world.apis) as up:
        up.world = world  # type: ignore[attr-defined]
        yield up


@pytest.fixture
async def session() -> Any:
    """One aiohttp client session, for tests that make a source themselves."""
    import aiohttp

    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def sleeps() -> list[float]:
    """Where a test's injected sleep records what it was asked to wait."""
    return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def monitor(tmp_path: Path, upstream: FakeUpstream, clock: FakeClock) -> Monitor:
    m = Monitor(tmp_path, upstream, clock, tmp_path / "monitor.toml")
    m.configure()
    return m


FIVE = [
    "django-mfa",
    "django-oauth-toolkit",
    "django-organizations",
    "django-otp",
    "django-two-factor-auth",
]


@pytest.fixture
def hook() -> Iterator[FakeWebhookReceiver]:
    """A webhook receiver that verifies signatures made with SECRET."""
    with FakeWebhookReceiver(secret=SECRET) as server:
        yield server


@pytest.fixture
def bot_slack() -> Iterator[FakeSlack]:
    """Slack's Web API for a bot token (TOKEN): chat.postMessage and friends."""
    with FakeSlack(token=TOKEN) as server:
        yield server


def vm_steps(store: Any, action: Callable[[], object]) -> int:
    """SQLite virtual-machine steps ``action`` takes on the store's connection (counted every
    10 instructions): what a read costs, independent of the machine's speed."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.conn.set_progress_handler(tick, 10)
    try:
        action()
    finally:
        store.conn.set_progress_handler(None, 10)
    return steps
