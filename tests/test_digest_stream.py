"""``monitor digest`` at a thousand packages (issue 14): the text is written in pieces as it is
rendered, and what is held meanwhile is each package's card as text, not the packages' data
nor the whole document; the text is the one :func:`render_text` gives of the digest. The HTML
(``--html``) is written in pieces too, and a file whose pieces fail is not written.

The store holds 1,000 packages in every group of the digest's order (critical, warning and info
alerts firing, failed polls, changes, alerts fired or resolved, quiet), their slugs not in the
order of their ids, so the order the cards are written in is the digest's, not the store's.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.cli import Runtime, cli
from monitor.config import load_config
from monitor.digest import (
    TEXT_CHUNK,
    configured_digest,
    configured_text,
    render_html,
    render_text,
    write_file,
)
from monitor.store import Store
from tests.conftest import Monitor
from tests.fakeupstream import clone_records
from tests.test_digest import NOW, History, ago

N = 1000


def fill(store: Store, n: int) -> None:
    """``n`` packages, ``i % 8`` choosing what happened to each in the week before NOW."""
    h = History(store)
    with store.transaction():
        for i, rec in enumerate(clone_records(n).values()):
            slug, kind = rec["slug"], i % 8
            rec.update(pypi_version="1.4.0", repo_watchers=1000 + i, repo_forks=100 + i)
            rec["commits_over_52"] = [(i + week) % 7 for week in range(52)]
            w = h.watch(slug, added=ago(60))
            h.snapshot(w, ago(60), rec)
            if kind in (0, 1, 2):  # a condition firing: critical, warning, info
                severity = ("critical", "warning", "info")[kind]
                h.alert(
                    w,
                    "no-commits-26-weeks",
                    kind="condition",
                    severity=severity,
                    status="firing",
                    started=ago(2),
                    summary=f"{slug}: no commits",
                )
            elif kind == 3:
                h.check(w, ago(1), "failed", error="HTTP 503 from djangopackages")
            elif kind == 4:  # released and starred in the period
                h.snapshot(w, ago(3), {**rec, "pypi_version": "1.5.0", "repo_watchers": 999})
            elif kind == 5:
                h.alert(
                    w,
                    "pypi-version-changed",
                    kind="change",
                    severity="info",
                    status="fired",
                    started=ago(3),
                    summary=f"{slug}: 1.4.0 → 1.5.0",
                )
            elif kind == 6:
                h.alert(
                    w,
                    "poll-failing",
                    kind="condition",
                    severity="warning",
                    status="resolved",
                    started=ago(5),
                    resolved=ago(4),
                )
            # kind 7: quiet, a row of the table at the end


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("many") / "monitor.db"
    store = Store(path)
    fill(store, N)
    store.close()
    return path


@pytest.fixture
def many(monitor: Monitor, filled: Path) -> Monitor:
    shutil.copy(filled, monitor.tmp_path / "monitor.db")
    monitor.clock.now = NOW
    return monitor


class Recorder(io.StringIO):
    """Standard output that keeps the length of every write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[int] = []

    def write(self, text: str) -> int:
        self.writes.append(len(text))
        return super().write(text)


def run_digest(monitor: Monitor, *args: str) -> Recorder:
    runtime = Runtime(config_path=str(monitor.config_path), clock=monitor.clock)
    out = Recorder()
    with contextlib.redirect_stdout(out):
        cli.main(["digest", *args], obj=runtime, standalone_mode=False)
    return out


def test_the_text_is_written_in_pieces_and_is_the_digests(many: Monitor) -> None:
    out = run_digest(many)
    store = many.store()
    expected = render_text(configured_digest(store, load_config(many.config_path), now=NOW))
    expected += "\n"
    store.close()
    assert out.getvalue() == expected  # the digest's order, not the store's
    assert len(expected) > 4 * TEXT_CHUNK
    assert len(out.writes) > 4
    assert max(out.writes) < TEXT_CHUNK + 2_000  # a piece: about TEXT_CHUNK and a card


def test_the_html_is_written_in_pieces_too(many: Monitor) -> None:
    out = run_digest(many, "--html", "-")
    store = many.store()
    expected = render_html(configured_digest(store, load_config(many.config_path), now=NOW))
    store.close()
    assert out.getvalue() == expected
    assert len(expected) > 4 * TEXT_CHUNK
    assert max(out.writes) < TEXT_CHUNK + 4_000  # a piece: about TEXT_CHUNK and a card


def test_a_file_whose_pieces_fail_is_not_written(tmp_path: Path) -> None:
    target = tmp_path / "digest.html"
    target.write_text("an older digest")

    def pieces() -> Iterator[str]:
        yield "<!DOCTYPE html>"
        raise RuntimeError("the template failed")

    with pytest.raises(RuntimeError, match="the template failed"):
        write_file(str(target), pieces())
    assert target.read_text() == "an older digest"
    assert [p.name for p in tmp_path.iterdir()] == ["digest.html"]  # no temporary file left


def test_the_render_holds_cards_not_the_digest(many: Monitor) -> None:
    """Python's peak allocation while the text is made and written piece by piece stays
    near its size in UTF-8: the cards are held, ~2.5 times that with their sort keys. The
    digest's data and its whole text, held together as before, came to ~7 times that."""
    config = load_config(many.config_path)
    store = many.store()
    try:
        size = sum(len(piece.encode()) for piece in configured_text(store, config, now=NOW))
        tracemalloc.start()
        try:
            for _ in configured_text(store, config, now=NOW):
                pass  # written, then dropped
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    finally:
        store.close()
    assert size > 500_000
    assert peak < 4 * size, f"peak {peak} bytes for {size} bytes of text"
