"""The SQLite history (SPEC §1, §3): watches, snapshots, checks, alerts, the outbox.

One file, WAL mode and a busy timeout so ``monitor run`` and a CLI command share it. Every
write that must not be half-done goes through :meth:`Store.transaction` (``BEGIN IMMEDIATE``,
so two writers queue instead of failing). ``PRAGMA user_version`` holds the schema version;
``MIGRATIONS[n]`` brings a database from version ``n`` to ``n + 1``.

Times are stored as UTC ISO-8601 text (``2026-11-22T10:00:00Z``), except the upstream
bookkeeping kept with each check (``last_fetched``, ``modified``), stored as Unix seconds to keep
an unchanged poll's row small.
"""

from __future__ import annotations

import json
import re
import sqlite3
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson

from monitor.alerts import PACKAGE_NOT_FOUND, POLL_FAILING
from monitor.durations import parse_duration
from monitor.errors import StoreError
from monitor.history import read_notice, stored_notice, values_after
from monitor.snapshot import Snapshot

if TYPE_CHECKING:
    import sqlite_utils

BUSY_TIMEOUT_MS = 30_000
# Uses the partial index idx_checks_failed (schema 2): keep the status condition.
FAILED_CHECKS = (
    "SELECT checked_at, error FROM checks WHERE watch_id = ? AND status = 'failed' ORDER BY id"
)
_SCAN_ABOVE = 500  # packages: read every watch rather than look these up
CHECKS_KEPT_FROM = "history.checks_kept_from"  # meta: where compaction last cut
# The failed polls of a package whose poll-failing or package-not-found alert fires now are
# what that alert is about: kept, however old, until it resolves.
_NO_FIRING_WATCH = (
    " AND watch_id NOT IN (SELECT watch_id FROM alerts WHERE status = 'firing'"
    f" AND rule IN ('{POLL_FAILING.id}', '{PACKAGE_NOT_FOUND.id}'))"
)
_NO_FIRING_GROUP = (
    " AND id NOT IN (SELECT d.group_id FROM deliveries d JOIN transitions t"
    " ON t.id = d.transition_id JOIN alerts a ON a.id = t.alert_id WHERE a.status = 'firing')"
)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def from_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


# What an SQLite error (its extended code's prefix) means to a user, for StoreError: these
# come from outside the program. Any other code is a bug and keeps its traceback.
_MEANINGS = (
    ("SQLITE_FULL", "could not be written: disk full"),
    ("SQLITE_IOERR_READ", "could not be read: I/O error"),
    ("SQLITE_IOERR_SHORT_READ", "could not be read: I/O error"),
    ("SQLITE_IOERR", "could not be written: disk full or I/O error"),
    ("SQLITE_BUSY", f"is locked by another process (waited {BUSY_TIMEOUT_MS // 1000} s)"),
    ("SQLITE_LOCKED", "is locked"),
    ("SQLITE_READONLY", "is read-only (check the file's and its folder's permissions)"),
    ("SQLITE_CANTOPEN", "could not be opened (check the file's and its folder's permissions)"),
    ("SQLITE_PERM", "could not be opened: permission denied"),
    ("SQLITE_NOTADB", "is not an SQLite database"),
    ("SQLITE_CORRUPT", "is damaged"),
)


def store_error(exc: BaseException, path: Path | str) -> StoreError | None:
    """The user's error for an SQLite failure from outside the program (SPEC §9: disk full,
    locked, read-only) naming the database at ``path``; None for any other exception."""
    name = getattr(exc, "sqlite_errorname", None)
    if not isinstance(exc, sqlite3.Error) or not isinstance(name, str):
        return None
    meaning = next((what for prefix, what in _MEANINGS if name.startswith(prefix)), None)
    if meaning is None:
        return None
    return StoreError(f"the database at {path} {meaning} (SQLite: {exc})")


def _migrate_1(db: sqlite_utils.Database) -> None:
    db.table("watches").create(
        {
            "id": int,
            "slug": str,
            "package_id": int,
            "title": str,
            "notify": str,
            "interval": str,
            "active": int,
            "added_at": str,
            "next_due_at": str,
            "last_checked_at": str,
            "last_status": str,
            "last_error": str,
            "failures": int,
            "snapshot_id": int,
        },
        pk="id",
        not_null={"slug", "active", "failures"},
        defaults={"active": 1, "failures": 0, "notify": "[]"},
    )
    db.table("watches").create_index(["slug"], unique=True)
    db.table("snapshots").create(
        {"id": int, "watch_id": int, "taken_at": str, "data": str},
        pk="id",
        not_null={"watch_id", "taken_at", "data"},
    )
    db.table("snapshots").create_index(["watch_id", "id"])
    db.table("checks").create(
        {
            "id": int,
            "watch_id": int,
            "checked_at": str,
            "duration_ms": int,
            "status": str,
            "error": str,
            "snapshot_id": int,
            "last_fetched": int,
            "modified": int,
        },
        pk="id",
        not_null={"watch_id", "checked_at", "status"},
    )
    db.table("checks").create_index(["watch_id", "id"])
    db.table("alerts").create(
        {
            "id": int,
            "episode": str,
            "rule": str,
            "watch_id": int,
            "kind": str,
            "severity": str,
            "status": str,
            "started_at": str,
            "resolved_at": str,
            "summary": str,
            "description": str,
            "labels": str,
            "last_notified_at": str,
        },
        pk="id",
        not_null={"episode", "rule", "watch_id", "kind", "severity", "status", "started_at"},
    )
    db.table("alerts").create_index(["watch_id", "rule"])
    db.table("alerts").create_index(["status"])
    db.table("rule_states").create(
        {
            "rule": str,
            "watch_id": int,
            "holds": int,
            "alert_id": int,
            "firing_since": str,
            "last_notified_at": str,
            "episode": str,
        },
        pk=("rule", "watch_id"),
        not_null={"holds"},
    )
    db.table("transitions").create(
        {
            "id": int,
            "alert_id": int,
            "status": str,
            "repeat": int,
            "at": str,
            "snapshot_id": int,
            "changes": str,
            "summary": str,
            "muted": int,
            "notice": str,
        },
        pk="id",
        not_null={"alert_id", "status", "at", "notice"},
    )
    db.table("transitions").create_index(["alert_id"])
    db.table("transitions").create_index(["at"])
    db.table("outbox").create(
        {
            "id": str,
            "channel": str,
            "kind": str,
            "created_at": str,
            "payload": str,
            "status": str,
            "attempts": int,
            "first_attempt_at": str,
            "next_attempt_at": str,
            "lease_owner": str,
            "lease_until": str,
            "last_error": str,
            "delivered_at": str,
        },
        pk="id",
        not_null={"channel", "kind", "created_at", "payload", "status", "attempts"},
        defaults={"attempts": 0},
    )
    db.table("outbox").create_index(["status", "next_attempt_at"])
    db.table("deliveries").create(
        {"id": int, "transition_id": int, "group_id": str, "channel": str},
        pk="id",
        not_null={"transition_id", "group_id", "channel"},
    )
    db.table("deliveries").create_index(["transition_id"])
    db.table("deliveries").create_index(["group_id"])
    db.table("attempts").create(
        {"id": int, "group_id": str, "at": str, "outcome": str, "error": str},
        pk="id",
        not_null={"group_id", "at", "outcome"},
    )
    db.table("attempts").create_index(["group_id"])
    db.table("mutes").create(
        {"id": int, "slug": str, "rule": str, "until": str, "comment": str, "created_at": str},
        pk="id",
        not_null={"slug", "created_at"},
    )
    db.table("meta").create({"key": str, "value": str}, pk="key")


def _migrate_2(db: sqlite_utils.Database) -> None:
    # The fingerprint of the record each snapshot was made from (snapshot.record_fingerprint):
    # a poll recognises an unchanged record without parsing it or loading the old snapshot.
    # Rows from before stay NULL; the next poll of such a package compares snapshots the
    # long way and fills the fingerprint in.
    db.table("snapshots").add_column("fingerprint", bytes)
    db.table("watches").add_column("fingerprint", bytes)  # that of snapshot_id, read often
    # Checks are read per watch only for failures (the digest); a partial index keeps the
    # other rows, nearly all of them, from costing index space and time on every poll.
    db.execute("DROP INDEX idx_checks_watch_id_id")
    db.execute("CREATE INDEX idx_checks_failed ON checks (watch_id, id) WHERE status = 'failed'")


def _migrate_3(db: sqlite_utils.Database) -> None:
    # A group stores its input when it is queued (the notices as JSON, the digest's content,
    # or nothing for a test message); the outbox renders the payload when it first leases the
    # group, so a notifier that cannot render never stops a cycle from being recorded. Until
    # then the payload is NULL. Groups queued before keep their rendered payload (input NULL).
    db.table("outbox").add_column("input", str)
    db.table("outbox").transform(not_null={"payload": False})


def _migrate_4(db: sqlite_utils.Database) -> None:
    # More sources (SPEC §2.1). Each (watch, source) keeps its state in ``parts``: the key it
    # is polled under, its ETag and fingerprint, the values it gave last (JSON, qualified
    # names: the latest values kept at hand for the next diff), its consecutive failures and
    # how long it is deferred. History is kept by field: a ``snapshots`` row now holds only
    # the fields that changed at that poll (all sources together), and ``baselines`` lists
    # the sources whose first values it holds (their fields are not changes).
    conn = db.conn
    conn.execute(
        "CREATE TABLE parts (watch_id INTEGER NOT NULL, source TEXT NOT NULL, key TEXT,"
        " etag TEXT, fingerprint BLOB, data TEXT, failures INTEGER NOT NULL DEFAULT 0,"
        " deferred_until TEXT, last_error TEXT, PRIMARY KEY (watch_id, source)) WITHOUT ROWID"
    )
    conn.execute("ALTER TABLE snapshots ADD COLUMN baselines TEXT")
    conn.execute("ALTER TABLE watches ADD COLUMN pinned TEXT")
    # OSV's vulnerability details, fetched once per (id, modified) and kept.
    conn.execute(
        "CREATE TABLE vulns (id TEXT NOT NULL, modified TEXT NOT NULL, data TEXT NOT NULL,"
        " PRIMARY KEY (id, modified)) WITHOUT ROWID"
    )
    # Whole snapshots become the fields that changed, watch by watch, oldest first; the
    # newest content of each watch becomes its djangopackages part.
    latest: dict[int, dict[str, Any]] = {}
    reading = conn.execute("SELECT id, watch_id, data FROM snapshots ORDER BY watch_id, id")
    updates: list[tuple[str, str | None, int]] = []
    for ident, watch_id, data in reading:
        content = json.loads(data)
        before = latest.get(watch_id)
        if before is None:
            latest.clear()  # one watch at a time: memory stays flat
            updates.append((data, '["djangopackages"]', ident))
        else:
            changed = {k: v for k, v in content.items() if before.get(k) != v}
            changed.update({k: None for k in before if k not in content})
            updates.append((json.dumps(changed, ensure_ascii=False), None, ident))
            if len(updates) >= 1000:
                conn.executemany(_MIGRATE_SNAPSHOT, updates)
                updates.clear()
        latest[watch_id] = content
        _latest_part(conn, watch_id, content)
    conn.executemany(_MIGRATE_SNAPSHOT, updates)


_MIGRATE_SNAPSHOT = "UPDATE snapshots SET data = ?, baselines = ? WHERE id = ?"


def _latest_part(conn: sqlite3.Connection, watch_id: int, content: dict[str, Any]) -> None:
    conn.execute(
        "INSERT INTO parts (watch_id, source, key, fingerprint, data, failures)"
        " SELECT id, 'djangopackages', slug, fingerprint, ?, failures FROM watches WHERE id = ?"
        " ON CONFLICT (watch_id, source) DO UPDATE SET data = excluded.data",
        (json.dumps(content, ensure_ascii=False), watch_id),
    )


def _migrate_5(db: sqlite_utils.Database) -> None:
    # Dependency files (SPEC §4): the file a watch came from (``watch -r FILE``), so that
    # importing it again with --prune knows what left it. NULL: watched by name.
    db.conn.execute("ALTER TABLE watches ADD COLUMN origin TEXT")


def _migrate_6(db: sqlite_utils.Database) -> None:
    # The bot (SPEC §10): who set a mute (a Slack user, the CLI's user); NULL before.
    db.conn.execute("ALTER TABLE mutes ADD COLUMN set_by TEXT")


# The digest's reads (issue 14) read only what its period needs. Fields whose value at the
# period's start it looks up (stars and forks when they changed in it, versions seen before
# it) are indexed by the rows that hold them: the newest such row before the period is found
# without reading the history before it. Alerts are found by when they started and resolved.
# A partial index serves only a query naming its condition: keep each WHERE as
# :func:`_holds` writes it. Migration 7 makes them.
DIGEST_INDEXES = (
    "CREATE INDEX IF NOT EXISTS idx_snapshots_pypi_version ON snapshots"
    " (watch_id, json_extract(data, '$.\"pypi_version\"'), id)"
    " WHERE json_type(data, '$.\"pypi_version\"') IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS idx_snapshots_repo_watchers ON snapshots (watch_id, id)"
    " WHERE json_type(data, '$.\"repo_watchers\"') IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS idx_snapshots_repo_forks ON snapshots (watch_id, id)"
    " WHERE json_type(data, '$.\"repo_forks\"') IS NOT NULL",
    # ``alerts`` pages newest first (started_at, then id: the rowid every index ends with)
    "CREATE INDEX IF NOT EXISTS idx_alerts_started_at ON alerts (started_at)",
    "CREATE INDEX IF NOT EXISTS idx_alerts_resolved_at ON alerts (resolved_at)"
    " WHERE resolved_at IS NOT NULL",
)


def _migrate_7(db: sqlite_utils.Database) -> None:
    # A year at 10,000 packages (issue 14). Polls are counted per package and day in
    # ``check_days`` (every outcome, and the milliseconds they took); ``checks`` keeps a row
    # only for a poll that failed or found no package, with its error. An unchanged poll,
    # nearly every poll, so costs an update of its day's row, not a row of its own: a year
    # of 6-hour polls is 365 rows a package, not 1,460. djangopackages' bookkeeping of the
    # newest poll moves to the watch row. The rows from before are counted the same way.
    conn = db.conn
    conn.execute(
        "CREATE TABLE check_days (day INTEGER NOT NULL, watch_id INTEGER NOT NULL,"
        " ok INTEGER NOT NULL DEFAULT 0, unchanged INTEGER NOT NULL DEFAULT 0,"
        " failed INTEGER NOT NULL DEFAULT 0, not_found INTEGER NOT NULL DEFAULT 0,"
        " ms INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (day, watch_id)) WITHOUT ROWID"
    )
    conn.execute("ALTER TABLE watches ADD COLUMN last_fetched INTEGER")
    conn.execute("ALTER TABLE watches ADD COLUMN modified INTEGER")
    conn.execute(
        "INSERT INTO check_days (day, watch_id, ok, unchanged, failed, not_found, ms)"
        f" SELECT {_day_sql('checked_at')} AS d, watch_id, SUM(status = 'ok'),"
        " SUM(status = 'unchanged'), SUM(status = 'failed'), SUM(status = 'not_found'),"
        " COALESCE(SUM(duration_ms), 0) FROM checks GROUP BY d, watch_id"
    )
    conn.execute(
        "UPDATE watches SET (last_fetched, modified) = (SELECT last_fetched, modified"
        " FROM checks c WHERE c.watch_id = watches.id ORDER BY c.id DESC LIMIT 1)"
    )
    conn.execute("DELETE FROM checks WHERE status NOT IN ('failed', 'not_found')")
    # ``parts`` rows hold a record's JSON (about 2 KB): far beyond what a WITHOUT ROWID table
    # keeps well (its overflow pages took 47 MB for 18 MB of data at 10,000 packages). A
    # rowid table with a unique index on the same key holds them at their size.
    conn.execute(
        "CREATE TABLE parts_7 (watch_id INTEGER NOT NULL, source TEXT NOT NULL, key TEXT,"
        " etag TEXT, fingerprint BLOB, data TEXT, failures INTEGER NOT NULL DEFAULT 0,"
        " deferred_until TEXT, last_error TEXT)"
    )
    columns = "watch_id, source, key, etag, fingerprint, data, failures, deferred_until, last_error"
    conn.execute(f"INSERT INTO parts_7 ({columns}) SELECT {columns} FROM parts")
    conn.execute("DROP TABLE parts")
    conn.execute("ALTER TABLE parts_7 RENAME TO parts")
    conn.execute("CREATE UNIQUE INDEX idx_parts_watch_id_source ON parts (watch_id, source)")
    for statement in DIGEST_INDEXES:
        conn.execute(statement)


def _day_sql(column: str) -> str:
    """SQL for the UTC day number (days since 1970-01-01) of an ISO time ``column``."""
    return f"CAST(strftime('%s', {column}) AS INTEGER) / 86400"


def notice_column(notice: Mapping[str, Any]) -> bytes:
    """A notice's JSON as a transition row stores it: its slid lists as shifts
    (:func:`~monitor.history.stored_notice`), deflated. A notice is read only to render a
    message (:meth:`Store.group_notices`); deflated it is half its size, 12 MB a year at
    10,000 packages. Rows from before schema 8 hold the JSON text, and read as before."""
    return zlib.compress(orjson.dumps(stored_notice(notice)))


def notice_of(column: bytes | str) -> dict[str, Any]:
    """The notice a transition row's ``notice`` column holds (:func:`notice_column`)."""
    text = zlib.decompress(column) if isinstance(column, bytes) else column
    return read_notice(orjson.loads(text))


def history_fingerprint(fingerprint: bytes | None) -> bytes | None:
    """A record's fingerprint as a history row keeps it: its first 8 bytes, enough to tell
    a watch's records apart (rows before schema 8 keep all 16). Half a million rows a year
    at 10,000 packages: 4 MB."""
    return fingerprint[:8] if fingerprint else fingerprint


def day_number(moment: datetime) -> int:
    """The UTC day number (days since 1970-01-01) ``moment`` is counted in (``poll_days``,
    ``failed_days``)."""
    return int(moment.timestamp()) // 86400


def _migrate_8(db: sqlite_utils.Database) -> None:
    # A year at 10,000 packages (issue 14), the database under 150 MB. ``check_days`` counted
    # every poll of every package on every day: 3.65 million rows, 65 MB, in a year at
    # 10,000 packages, of which nothing read more than the failed polls. Polls are now
    # counted per day over all packages (``poll_days``) and per package over its life
    # (``watches.polls``); a package's failed and not-found polls stay counted per day
    # (``failed_days``), which is what the digest counts once their ``checks`` rows are
    # compacted away. The counts from before are kept the same way.
    conn = db.conn
    conn.execute(
        "CREATE TABLE poll_days (day INTEGER PRIMARY KEY, ok INTEGER NOT NULL DEFAULT 0,"
        " unchanged INTEGER NOT NULL DEFAULT 0, failed INTEGER NOT NULL DEFAULT 0,"
        " not_found INTEGER NOT NULL DEFAULT 0, ms INTEGER NOT NULL DEFAULT 0)"
    )
    conn.execute(
        "CREATE TABLE failed_days (day INTEGER NOT NULL, watch_id INTEGER NOT NULL,"
        " failed INTEGER NOT NULL DEFAULT 0, not_found INTEGER NOT NULL DEFAULT 0,"
        " PRIMARY KEY (day, watch_id)) WITHOUT ROWID"
    )
    conn.execute("ALTER TABLE watches ADD COLUMN polls INTEGER NOT NULL DEFAULT 0")
    conn.execute(
        "INSERT INTO poll_days (day, ok, unchanged, failed, not_found, ms)"
        " SELECT day, SUM(ok), SUM(unchanged), SUM(failed), SUM(not_found), SUM(ms)"
        " FROM check_days GROUP BY day"
    )
    conn.execute(
        "INSERT INTO failed_days (day, watch_id, failed, not_found)"
        " SELECT day, watch_id, failed, not_found FROM check_days"
        " WHERE failed > 0 OR not_found > 0"
    )
    conn.execute(
        "UPDATE watches SET polls = (SELECT COALESCE(SUM(ok + unchanged + failed + not_found),"
        " 0) FROM check_days d WHERE d.watch_id = watches.id)"
    )
    conn.execute("DROP TABLE check_days")


def _migrate_9(db: sqlite_utils.Database) -> None:
    # A package whose values did not change is not evaluated again by the rules whose
    # verdict they decide alone (issue 14): ``quiet`` holds the key of the rule set, pin and
    # record under which every such rule was last evaluated, and the ids of those that held
    # (CycleRecorder.quiet_key). NULL (every row now) means: evaluate every rule.
    db.conn.execute("ALTER TABLE watches ADD COLUMN quiet BLOB")
    # And a djangopackages list page that comes back byte for byte is not decoded again:
    # what reading it gave is kept by the hash of its body, for a day or two (Store.page_recall).
    db.conn.execute(
        "CREATE TABLE list_pages (digest BLOB PRIMARY KEY, recall BLOB NOT NULL,"
        " day INTEGER NOT NULL)"
    )


def _migrate_10(db: sqlite_utils.Database) -> None:
    # Every cycle starts by reading each watch with its djangopackages record's fingerprint
    # (Store.watches). Through the unique index on (watch_id, source) that reads a page of
    # ``parts`` per watch, most of it the record's JSON: 10,000 pages at 10,000 packages,
    # 35 ms from a cold cache. This index holds the fingerprints alone (half a megabyte).
    db.conn.execute("CREATE INDEX idx_parts_fingerprint ON parts (watch_id, source, fingerprint)")


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _migrate_1,
    _migrate_2,
    _migrate_3,
    _migrate_4,
    _migrate_5,
    _migrate_6,
    _migrate_7,
    _migrate_8,
    _migrate_9,
    _migrate_10,
]
SCHEMA_VERSION = len(MIGRATIONS)


def _schema_tools(conn: sqlite3.Connection) -> sqlite_utils.Database:
    """sqlite-utils on our connection, for migrations: imported only when one runs."""
    import sqlite_utils

    return sqlite_utils.Database(conn)


class Watch(NamedTuple):
    """A watched package: what commands and a cycle read of it (a named tuple: a cycle
    makes one for each package polled)."""

    id: int
    slug: str
    package_id: int | None
    title: str | None
    notify: tuple[str, ...]
    interval: str | None
    failures: int
    snapshot_id: int | None  # the newest history row
    fingerprint: bytes | None  # of the djangopackages record behind the latest values
    pinned: str | None = None
    quiet: bytes | None = None  # see CycleRecorder.quiet_key


class _Keep:
    """The value of an option that is not given (None is a value: no pin)."""


KEEP = _Keep()


@dataclass(frozen=True, slots=True)
class StoredPart:
    """A (watch, source)'s row in ``parts``: what the next poll of that source starts from.
    ``data`` is the JSON of the source's latest values (qualified names)."""

    source: str
    key: str | None
    etag: str | None
    fingerprint: bytes | None
    data: str | None
    failures: int
    deferred_until: str | None
    last_error: str | None


class Store:
    """The database. Library code reads through it and writes inside :meth:`transaction`."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.conn = sqlite3.connect(
            str(path),
            timeout=BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if self._is_empty():
            # Before anything is written (switching to WAL writes the header): a new database
            # gives the pages compaction frees back to the file system a few at a time.
            self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = NORMAL")
        self._depth = 0
        self.migrate()

    def close(self) -> None:
        self.conn.close()

    def _is_empty(self) -> bool:
        """Whether the database has nothing in it yet (a new file, or ``:memory:``)."""
        return int(self.conn.execute("PRAGMA page_count").fetchone()[0]) == 0

    def migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            from monitor.errors import MonitorError

            raise MonitorError(
                f"{self.path}: database schema {version} is newer than this monitor "
                f"understands ({SCHEMA_VERSION}); upgrade monitor"
            )
        while version < SCHEMA_VERSION:
            with self.transaction():
                current = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if current != version:  # another process migrated meanwhile
                    version = current
                    continue
                MIGRATIONS[version](_schema_tools(self.conn))
                version += 1
                self.conn.execute(f"PRAGMA user_version = {version}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; nested calls join the outer one."""
        if self._depth:
            self._depth += 1
            try:
                yield self.conn
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.conn
        except BaseException:
            self._rollback()
            raise
        else:
            self.conn.execute("COMMIT")
        finally:
            self._depth = 0

    def _rollback(self) -> None:
        """Undo the open transaction, if SQLite has not already (it rolls back by itself on
        some errors, e.g. a full disk): the error that got here is the one to report."""
        if self.conn.in_transaction:
            with suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in self.conn.execute(sql, params)]

    def insert(self, table: str, row: dict[str, Any]) -> int:
        columns = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        cursor = self.conn.execute(
            f"INSERT INTO {table} ({columns}) VALUES ({marks})", tuple(row.values())
        )
        return int(cursor.lastrowid or 0)

    def update(self, table: str, key: Any, values: dict[str, Any], pk: str = "id") -> None:
        sets = ", ".join(f"{column} = ?" for column in values)
        self.conn.execute(f"UPDATE {table} SET {sets} WHERE {pk} = ?", (*values.values(), key))

    def data_version(self) -> int:
        """Changes when another connection commits (SQLite's ``PRAGMA data_version``)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    # -- meta ---------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # -- watches ------------------------------------------------------------------------

    def watch(self, slug: str) -> Watch | None:
        return self.watches([slug]).get(slug)

    def intervals(self) -> list[str]:
        """The distinct poll intervals watches name (most use the default: none)."""
        rows = self.conn.execute(
            "SELECT DISTINCT interval FROM watches WHERE active = 1 AND interval IS NOT NULL"
        )
        return [row[0] for row in rows]

    def watched_slugs(self) -> list[str]:
        """Every watched name, sorted (here: SQLite would sort through the index on slug, a
        lookup of the row per watch)."""
        rows = self.conn.execute("SELECT slug FROM watches WHERE active = 1")
        return sorted(row[0] for row in rows)

    def due_slugs(self, now: datetime) -> list[str]:
        """The watched packages whose next poll is due, most overdue first."""
        rows = self.conn.execute(
            "SELECT slug FROM watches WHERE active = 1"
            " AND (next_due_at IS NULL OR next_due_at <= ?) ORDER BY next_due_at, slug",
            (iso(now),),
        )
        return [row[0] for row in rows]

    def upsert_watch(
        self,
        slug: str,
        *,
        package_id: int | None,
        title: str | None,
        notify: list[str] | None,
        interval: str | None,
        now: datetime,
        pinned: str | None = None,
        origin: str | None = None,
    ) -> int:
        """Add a watch or reactivate an unwatched one (its history is kept); return its id.

        ``notify`` and ``interval`` are the options given (None: not given). A new watch
        takes the defaults for those not given; a reactivated one keeps its earlier ones.
        ``pinned`` and ``origin`` (the dependency file) are set as given.
        """
        row = self.conn.execute("SELECT id FROM watches WHERE slug = ?", (slug,)).fetchone()
        values: dict[str, Any] = {
            "package_id": package_id,
            "title": title,
            "active": 1,
            "pinned": pinned,
            "origin": origin,
        }
        if notify is not None:
            values["notify"] = json.dumps(notify)
        if interval is not None:
            values["interval"] = interval
        if row:
            self.update("watches", row[0], values)
            return int(row[0])
        return self.insert("watches", {"slug": slug, "added_at": iso(now), **values})

    def set_watch_options(
        self,
        slug: str,
        *,
        notify: list[str] | None = None,
        interval: str | None = None,
        pinned: str | _Keep | None = KEEP,
        origin: str | _Keep | None = KEEP,
    ) -> dict[str, tuple[Any, Any]]:
        """Change the options given (None: not given, kept; for ``pinned`` and ``origin``,
        :data:`KEEP`) of a watched package; return those that changed, ``{option: (old,
        new)}`` (``origin`` is not told). The next poll is moved (due now) only when the
        interval's length changes, or the pin (OSV asks about the version in use)."""
        row = self.conn.execute(
            "SELECT id, notify, interval, pinned, origin FROM watches"
            " WHERE slug = ? AND active = 1",
            (slug,),
        ).fetchone()
        if row is None:
            return {}
        changed: dict[str, tuple[Any, Any]] = {}
        values: dict[str, Any] = {}
        if not isinstance(pinned, _Keep) and pinned != row["pinned"]:
            changed["pinned"] = (row["pinned"], pinned)
            values["pinned"] = pinned
            values["next_due_at"] = None
        if not isinstance(origin, _Keep) and origin != row["origin"]:
            values["origin"] = origin
        old_notify = json.loads(row["notify"] or "[]")
        if notify is not None and notify != old_notify:
            changed["notify"] = (old_notify, notify)
            values["notify"] = json.dumps(notify)
        old_interval = row["interval"]
        if interval is not None and interval != old_interval:
            changed["interval"] = (old_interval, interval)
            values["interval"] = interval
            if old_interval is None or parse_duration(old_interval) != parse_duration(interval):
                values["next_due_at"] = None
        if values:
            self.update("watches", row["id"], values)
        return changed

    def pin_and_origin(self, slug: str) -> tuple[str | None, str | None]:
        """An active watch's pinned version and dependency file (None, None if neither)."""
        row = self.conn.execute(
            "SELECT pinned, origin FROM watches WHERE slug = ? AND active = 1", (slug,)
        ).fetchone()
        return (row["pinned"], row["origin"]) if row else (None, None)

    def watches_from(self, origin: str) -> dict[str, str | None]:
        """The active watches that came from the dependency file ``origin``: name -> pin."""
        rows = self.conn.execute(
            "SELECT slug, pinned FROM watches WHERE active = 1 AND origin = ? ORDER BY slug",
            (origin,),
        )
        return {row[0]: row[1] for row in rows}

    def unwatch(self, slug: str) -> bool:
        cursor = self.conn.execute(
            "UPDATE watches SET active = 0 WHERE slug = ? AND active = 1", (slug,)
        )
        return cursor.rowcount > 0

    # -- snapshots and checks -----------------------------------------------------------

    def watches(self, slugs: list[str] | None) -> dict[str, Watch]:
        """slug -> :class:`Watch`, for the watched ones among ``slugs`` (None: every one)."""
        cursor = self.conn.cursor()
        cursor.row_factory = None  # plain tuples: a cycle reads every polled watch
        query = (
            "SELECT w.id, w.slug, w.package_id, w.title, w.notify, w.interval, w.failures,"
            " w.snapshot_id, p.fingerprint, w.pinned, w.quiet FROM watches w LEFT JOIN parts p"
            " INDEXED BY idx_parts_fingerprint"  # the fingerprints alone (see _migrate_10)
            " ON p.watch_id = w.id AND p.source = 'djangopackages' WHERE w.active = 1"
        )
        if slugs is None:
            rows: Iterable[tuple[Any, ...]] = cursor.execute(query)
        elif len(slugs) > _SCAN_ABOVE:  # one scan beats thousands of index lookups
            wanted = set(slugs)
            rows = (row for row in cursor.execute(query) if row[1] in wanted)
        else:
            rows = (
                row
                for chunk in _chunks(slugs, 500)
                for row in cursor.execute(
                    f"{query} AND w.slug IN ({','.join('?' * len(chunk))})", chunk
                )
            )
        notify_lists: dict[str | None, tuple[str, ...]] = {}  # most watches share a few
        out: dict[str, Watch] = {}
        make = Watch._make  # the columns are read in Watch's order
        for row in rows:
            notify = notify_lists.get(row[4])
            if notify is None:
                notify = notify_lists[row[4]] = tuple(json.loads(row[4] or "[]"))
            out[row[1]] = make((*row[:4], notify, *row[5:]))
        return out

    def page_recall(self, digest: bytes) -> tuple[bytes, int] | None:
        """What reading the djangopackages list page whose body has this hash gave, if it
        was read lately (see DjangoPackagesSource.poll), and the day it was last read on."""
        row = self.conn.execute("SELECT recall, day FROM list_pages WHERE digest = ?", (digest,))
        found = row.fetchone()
        return (zlib.decompress(found[0]), found[1]) if found else None

    def keep_page(self, digest: bytes, recall: bytes | None, *, day: int) -> None:
        """Keep a list page's recall as read on ``day`` (deflated: a fifth of the room);
        None: the one kept was used again that day."""
        with self.transaction():
            if recall is None:
                self.conn.execute("UPDATE list_pages SET day = ? WHERE digest = ?", (day, digest))
            else:
                self.conn.execute(
                    "INSERT INTO list_pages (digest, recall, day) VALUES (?, ?, ?)"
                    " ON CONFLICT (digest) DO UPDATE"
                    " SET recall = excluded.recall, day = excluded.day",
                    (digest, zlib.compress(recall, 1), day),
                )

    def forget_pages(self, *, before: int) -> None:
        """Forget the recalls of list pages not read since the day ``before``."""
        with self.transaction():
            self.conn.execute("DELETE FROM list_pages WHERE day < ?", (before,))

    def parts(self, watch_ids: Iterable[int]) -> dict[int, dict[str, StoredPart]]:
        """watch id -> source -> its stored part, for these watches."""
        out: dict[int, dict[str, StoredPart]] = {}
        cursor = self.conn.cursor()
        cursor.row_factory = None
        for chunk in _chunks(list(watch_ids), 500):
            marks = ",".join("?" * len(chunk))
            for watch_id, *rest in cursor.execute(
                "SELECT watch_id, source, key, etag, fingerprint, data, failures, deferred_until,"
                f" last_error FROM parts WHERE watch_id IN ({marks})",
                chunk,
            ):
                out.setdefault(watch_id, {})[rest[0]] = StoredPart(*rest)
        return out

    def snapshot_by_fingerprint(self, watch_id: int, fingerprint: bytes | None) -> Snapshot | None:
        """The djangopackages content as of the newest history row made from a record with
        this fingerprint (replayed from the watch's field history)."""
        row = self.conn.execute(
            "SELECT id FROM snapshots WHERE watch_id = ? AND fingerprint IN (?, ?)"
            " ORDER BY id DESC LIMIT 1",
            (watch_id, fingerprint, history_fingerprint(fingerprint)),
        ).fetchone()
        if row is None:
            return None
        values: dict[str, Any] = {}
        for (data,) in self.conn.execute(
            "SELECT data FROM snapshots WHERE watch_id = ? AND id <= ? ORDER BY id",
            (watch_id, row[0]),
        ):
            values.update(values_after(values, json.loads(data)))
        return Snapshot.from_json_dict(values)

    def rule_states(self, watch_ids: list[int] | None) -> list[tuple[Any, ...]]:
        """The stored alert state of every rule for these watches (None: for every watch):
        (watch_id, rule, holds, firing_since, last_notified_at, episode, alert_id) rows."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        columns = "watch_id, rule, holds, firing_since, last_notified_at, episode, alert_id"
        if watch_ids is None:
            return cursor.execute(f"SELECT {columns} FROM rule_states").fetchall()
        rows: list[tuple[Any, ...]] = []
        for chunk in _chunks(watch_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows += cursor.execute(
                f"SELECT {columns} FROM rule_states WHERE watch_id IN ({marks})", chunk
            )
        return rows

    def failed_checks(self, watch_id: int) -> list[dict[str, Any]]:
        """The watch's failed polls, oldest first (``checked_at``, ``error``)."""
        return self.query(FAILED_CHECKS, (watch_id,))

    def history(self, watch_id: int) -> list[dict[str, Any]]:
        """The watch's history rows, oldest first: ``taken_at``, ``data`` (the fields that
        changed, JSON), ``baselines`` (JSON list of sources whose first values they are)."""
        return self.query(
            "SELECT id, taken_at, data, baselines FROM snapshots WHERE watch_id = ? ORDER BY id",
            (watch_id,),
        )

    def part_keys(self, watch_ids: Iterable[int]) -> dict[int, dict[str, str]]:
        """watch id -> source -> the key it is polled under (PyPI name, OWNER/REPO)."""
        out: dict[int, dict[str, str]] = {}
        for chunk in _chunks(list(watch_ids), 500):
            marks = ",".join("?" * len(chunk))
            for watch_id, source, key in self.conn.execute(
                f"SELECT watch_id, source, key FROM parts WHERE watch_id IN ({marks})"
                " AND key IS NOT NULL",
                chunk,
            ):
                out.setdefault(watch_id, {})[source] = key
        return out

    def part_health(self, source: str) -> dict[str, Any]:
        """A source's health over the watches: how many fail now, the last error (``at``
        is not kept per part: None), and the rate-limit reset it keeps, if any."""
        failing, error = self.conn.execute(
            "SELECT COUNT(*), MAX(p.last_error) FROM parts p JOIN watches w ON w.id = p.watch_id"
            " WHERE w.active = 1 AND p.source = ? AND p.failures > 0",
            (source,),
        ).fetchone()
        return {
            "failing": int(failing),
            "last_error": {"at": None, "error": error} if error else None,
            "rate_limited_until": self.get_meta(f"{source}.limited_until"),
        }

    def firing_counts(self) -> dict[int, dict[str, int]]:
        """watch id -> severity -> condition alerts firing now."""
        out: dict[int, dict[str, int]] = {}
        for watch_id, severity, n in self.conn.execute(
            "SELECT watch_id, severity, COUNT(*) FROM alerts WHERE status = 'firing'"
            " GROUP BY watch_id, severity"
        ):
            out.setdefault(watch_id, {"critical": 0, "warning": 0, "info": 0})[severity] = n
        return out

    # -- OSV's vulnerability details ----------------------------------------------------

    def vuln_data(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """(id, modified) -> the kept details (JSON), for the pairs kept."""
        out: dict[tuple[str, str], str] = {}
        for ident, modified in pairs:
            row = self.conn.execute(
                "SELECT data FROM vulns WHERE id = ? AND modified = ?", (ident, modified)
            ).fetchone()
            if row is not None:
                out[ident, modified] = row[0]
        return out

    def keep_vulns(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Keep details (id, modified, JSON); a pair kept already is left as it is."""
        with self.transaction():
            self.conn.executemany(
                "INSERT INTO vulns (id, modified, data) VALUES (?, ?, ?)"
                " ON CONFLICT (id, modified) DO NOTHING",
                list(rows),
            )

    def vulnerabilities(self, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """id -> the newest kept details (by ``modified``, compared as times)."""
        out: dict[str, dict[str, Any]] = {}
        for ident in ids:
            rows = self.conn.execute("SELECT modified, data FROM vulns WHERE id = ?", (ident,))
            newest = max(rows, key=lambda row: _moment(row[0]), default=None)
            if newest is not None:
                out[ident] = json.loads(newest[1])
        return out

    # -- mutes --------------------------------------------------------------------------

    def active_mutes(self, now: datetime) -> list[dict[str, Any]]:
        return self.query(
            "SELECT * FROM mutes WHERE until IS NULL OR until > ? ORDER BY id", (iso(now),)
        )

    def alert_rows(
        self,
        *,
        after: tuple[str, int] | None = None,
        limit: int | None = None,
        recent: str | None = None,
        rules: Collection[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Alerts with their package's name (``slug``), newest first (``started_at``, then
        id): those after ``after`` (an alert's :meth:`alert_position`) only, at most
        ``limit``. Every alert, or with ``recent`` (ISO time) only the current ones, as plain
        ``alerts`` shows them: condition alerts firing now and change alerts started since
        ``recent``, of the ``rules`` in force (None: every rule), and any alert with a
        delivery pending or failed. A page reads only its own rows (through
        ``idx_alerts_started_at``, made by migration 7); the current ones are found through
        their own indexes, not among every alert."""
        where, params = self._alerts_where(after, recent, rules)
        query = (
            "SELECT a.*, w.slug FROM alerts a JOIN watches w ON w.id = a.watch_id"
            f"{where} ORDER BY a.started_at DESC, a.id DESC"
        )
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        return self.query(query, params)

    def alert_deliveries(self, alert_ids: Collection[int]) -> list[dict[str, Any]]:
        """The deliveries of these alerts' transitions, oldest first: ``alert_id``,
        ``transition``, ``repeat``, ``channel``, and its group's ``status``, ``attempts``,
        ``last_error``."""
        rows: list[dict[str, Any]] = []
        for chunk in _chunks(list(alert_ids), 500):
            marks = ",".join("?" * len(chunk))
            rows += self.query(
                "SELECT d.id, t.alert_id, t.status AS transition, t.repeat, d.channel, o.status,"
                " o.attempts, o.last_error FROM transitions t JOIN deliveries d"
                " ON d.transition_id = t.id JOIN outbox o ON o.id = d.group_id"
                f" WHERE t.alert_id IN ({marks})",
                chunk,
            )
        rows.sort(key=lambda row: row.pop("id"))
        return rows

    def alert_position(self, alert_id: int) -> tuple[str, int] | None:
        """Where an alert stands in :meth:`alert_rows`' order (``after`` there); None when
        there is no such alert."""
        row = self.conn.execute(
            "SELECT started_at, id FROM alerts WHERE id = ?", (alert_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def alert_count(
        self,
        *,
        after: tuple[str, int] | None = None,
        recent: str | None = None,
        rules: Collection[str] | None = None,
    ) -> int:
        """How many alerts :meth:`alert_rows` would give without a limit (counted in the
        index alone)."""
        where, params = self._alerts_where(after, recent, rules)
        return int(self.conn.execute(f"SELECT COUNT(*) FROM alerts a{where}", params).fetchone()[0])

    @staticmethod
    def _alerts_where(
        after: tuple[str, int] | None, recent: str | None, rules: Collection[str] | None
    ) -> tuple[str, list[Any]]:
        conditions: list[str] = []
        params: list[Any] = []
        if recent is not None:
            known = list(rules) if rules is not None else None
            in_force = f" AND rule IN ({','.join('?' * len(known))})" if known is not None else ""
            conditions.append(
                "a.id IN (SELECT id FROM alerts WHERE status = 'firing' AND kind = 'condition'"
                f"{in_force} UNION ALL SELECT id FROM alerts WHERE started_at >= ?"
                f" AND kind = 'change'{in_force} UNION ALL SELECT t.alert_id FROM outbox o"
                " JOIN deliveries d ON d.group_id = o.id JOIN transitions t"
                " ON t.id = d.transition_id WHERE o.status IN ('pending', 'failed'))"
            )
            params += [*(known or []), recent, *(known or [])]
        if after is not None:
            # Keyset paging: (started_at, id) below the last one shown, read in the index.
            conditions.append("a.started_at <= ? AND (a.started_at < ? OR a.id < ?)")
            params += [after[0], after[0], after[1]]
        return (" WHERE " + " AND ".join(conditions) if conditions else ""), params

    def add_mute(
        self,
        slug: str,
        rule: str | None,
        *,
        until: datetime | None,
        comment: str | None,
        set_by: str | None,
        now: datetime,
    ) -> None:
        with self.transaction():
            self.insert(
                "mutes",
                {
                    "slug": slug,
                    "rule": rule,
                    "until": iso(until) if until else None,
                    "comment": comment,
                    "created_at": iso(now),
                    "set_by": set_by,
                },
            )

    def remove_mutes(self, slug: str, rule: str | None) -> int:
        """Delete the package's mutes (of ``rule`` only, when given); how many there were."""
        with self.transaction() as conn:
            if rule is None:
                cursor = conn.execute("DELETE FROM mutes WHERE slug = ?", (slug,))
            else:
                cursor = conn.execute("DELETE FROM mutes WHERE slug = ? AND rule = ?", (slug, rule))
        return cursor.rowcount

    def watch_rows(self, slugs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The active watch rows (of ``slugs`` only, when given) with their djangopackages
        values (``data``, JSON), by slug."""
        query = (
            "SELECT w.*, p.data FROM watches w LEFT JOIN parts p ON p.watch_id = w.id"
            " AND p.source = 'djangopackages' WHERE w.active = 1"
        )
        if slugs is None:
            return self.query(f"{query} ORDER BY w.slug")
        rows = []
        for chunk in _chunks(list(slugs), 500):
            marks = ",".join("?" * len(chunk))
            rows += self.query(f"{query} AND w.slug IN ({marks})", chunk)
        return sorted(rows, key=lambda row: row["slug"])

    def group_notices(self, group_id: str) -> list[dict[str, Any]]:
        """The notices of the transitions delivered through a group, in the order queued."""
        return [
            notice_of(notice)
            for (notice,) in self.conn.execute(
                "SELECT t.notice FROM deliveries d JOIN transitions t ON t.id = d.transition_id"
                " WHERE d.group_id = ? ORDER BY d.id",
                (group_id,),
            )
        ]

    def group_statuses(self, group_ids: list[str]) -> list[dict[str, Any]]:
        """``channel``, ``status``, ``last_error`` of these outbox groups."""
        rows: list[dict[str, Any]] = []
        for chunk in _chunks(group_ids, 500):
            marks = ",".join("?" * len(chunk))
            rows += self.query(
                f"SELECT channel, status, last_error FROM outbox WHERE id IN ({marks})", chunk
            )
        return rows

    # -- status (read only) -------------------------------------------------------------

    def last_poll(self) -> list[dict[str, Any]]:
        """The outcome counts of the newest poll time among the watches (``at``, ``status``,
        ``n``): the last cycle, read from the watches table, not the whole check history."""
        return self.query(
            "SELECT last_checked_at AS at, last_status AS status, COUNT(*) AS n FROM watches"
            " WHERE active = 1 AND last_checked_at = (SELECT MAX(last_checked_at) FROM watches"
            " WHERE active = 1) GROUP BY last_status ORDER BY last_status"
        )

    def next_due(self, now: datetime, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """How many watches are due now, and the next ``limit`` due (``slug``, ``at``)."""
        due = self.conn.execute(
            "SELECT COUNT(*) FROM watches WHERE active = 1"
            " AND (next_due_at IS NULL OR next_due_at <= ?)",
            (iso(now),),
        ).fetchone()[0]
        rows = self.query(
            "SELECT slug, next_due_at AS at FROM watches WHERE active = 1"
            " ORDER BY next_due_at IS NOT NULL, next_due_at, slug LIMIT ?",
            (limit,),
        )
        return int(due), rows

    def poll_health(self) -> dict[str, Any]:
        """Watches whose last poll failed, and the newest failed check (``at``, ``package``,
        ``error``) or None."""
        failing = self.conn.execute(
            "SELECT COUNT(*) FROM watches WHERE active = 1 AND last_status = 'failed'"
        ).fetchone()[0]
        last = self.query(
            # Through the partial index of failed checks: a plain backward scan of all
            # checks finds nothing quickly when failures are rare (a year: millions of rows).
            "SELECT c.checked_at AS at, w.slug AS package, c.error FROM checks c"
            " INDEXED BY idx_checks_failed"
            " JOIN watches w ON w.id = c.watch_id WHERE c.status = 'failed'"
            " ORDER BY c.id DESC LIMIT 1"
        )
        return {"failing": int(failing), "last_error": last[0] if last else None}

    def outbox_counts(self) -> dict[str, int]:
        """Delivery groups by status (``pending``, ``delivered``, ``failed``)."""
        rows = self.conn.execute("SELECT status, COUNT(*) FROM outbox GROUP BY status")
        return {status: int(n) for status, n in rows}

    def watch_count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM watches WHERE active = 1").fetchone()[0])

    def latest_parts(
        self, sources: Iterable[str], slugs: Sequence[str] | None = None
    ) -> dict[str, dict[str, dict[str, Any]]]:
        """slug -> source -> that source's latest values (the stored JSON: qualified names,
        datetimes as ISO text), for every watched package (of ``slugs`` only, when given), by
        slug. A package listed has an entry only for the named sources it has values of
        (``{}`` when it has none)."""
        names = list(sources)
        marks = ",".join("?" * len(names))
        query = (
            "SELECT w.slug, p.source, p.data FROM watches w LEFT JOIN parts p"
            f" ON p.watch_id = w.id AND p.source IN ({marks}) WHERE w.active = 1"
        )
        if slugs is None:
            rows: Iterable[tuple[Any, ...]] = self.conn.execute(f"{query} ORDER BY w.slug", names)
        else:
            rows = [
                row
                for chunk in _chunks(list(slugs), 500)
                for row in self.conn.execute(
                    f"{query} AND w.slug IN ({','.join('?' * len(chunk))})", [*names, *chunk]
                )
            ]
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for slug, source, data in rows:
            values = out.setdefault(slug, {})
            if data:
                values[source] = json.loads(data)
        return out

    # -- the status pages (monitor/server/pages.py) -------------------------------------

    def commit_counts(self) -> dict[str, list[int]]:
        """slug -> djangopackages' weekly commit counts (JSON read by SQLite, not the whole
        record), for the watched packages that have any."""
        out: dict[str, list[int]] = {}
        for slug, counts in self.conn.execute(
            "SELECT w.slug, json_extract(p.data, '$.commits_over_52') FROM watches w"
            " JOIN parts p ON p.watch_id = w.id AND p.source = 'djangopackages'"
            " WHERE w.active = 1 AND json_valid(p.data)"
        ):
            series = json.loads(counts) if isinstance(counts, str) else None
            if isinstance(series, list) and series:
                out[slug] = [n for n in series if isinstance(n, int)]
        return out

    def last_error(self, watch_id: int) -> str | None:
        """Why the watch's last poll failed (None when it did not)."""
        row = self.conn.execute(
            "SELECT last_error FROM watches WHERE id = ?", (watch_id,)
        ).fetchone()
        return row[0] if row else None

    def package_alerts(self, watch_id: int, limit: int) -> list[dict[str, Any]]:
        """The watch's alerts newest first: every one firing, then the ``limit`` newest
        others."""
        columns = "rule, kind, status, severity, started_at, resolved_at, summary"
        firing = self.query(
            f"SELECT {columns} FROM alerts WHERE watch_id = ? AND status = 'firing'"
            " ORDER BY started_at DESC, id DESC",
            (watch_id,),
        )
        others = self.query(
            f"SELECT {columns} FROM alerts WHERE watch_id = ? AND status != 'firing'"
            " ORDER BY started_at DESC, id DESC LIMIT ?",
            (watch_id, limit),
        )
        return firing + others

    # -- /metrics and GitHub events (issue 13: ops) -------------------------------------

    def firing_by_severity(self) -> dict[str, int]:
        """severity -> condition alerts firing now on watched packages (muted ones too)."""
        out = {"critical": 0, "warning": 0, "info": 0}
        for severity, n in self.conn.execute(
            "SELECT a.severity, COUNT(*) FROM alerts a JOIN watches w ON w.id = a.watch_id"
            " WHERE a.status = 'firing' AND a.kind = 'condition' AND w.active = 1"
            " GROUP BY a.severity"
        ):
            out[severity] = int(n)
        return out

    def slugs_by_part_key(self, source: str, keys: Iterable[str]) -> list[str]:
        """The watched packages whose ``source`` part is polled under one of ``keys``,
        compared case-insensitively (GitHub's ``OWNER/REPO``), by slug."""
        wanted = sorted({key.lower() for key in keys})
        slugs: set[str] = set()
        for chunk in _chunks(wanted, 500):
            marks = ",".join("?" * len(chunk))
            slugs.update(
                slug
                for (slug,) in self.conn.execute(
                    "SELECT w.slug FROM parts p JOIN watches w ON w.id = p.watch_id"
                    f" WHERE w.active = 1 AND p.source = ? AND lower(p.key) IN ({marks})",
                    [source, *chunk],
                )
            )
        return sorted(slugs)

    # -- the digest's reads -------------------------------------------------------------

    def digest_watches(self) -> Iterator[tuple[dict[str, Any], dict[str, Any] | None]]:
        """Every active watch row with its sources' latest values (``parts.data`` merged:
        qualified names, JSON values), by id, one watch at a time; None when no source has
        values. While the caller iterates, the digest's other reads see the same data."""
        cursor = self.conn.execute(
            "SELECT w.*, p.data AS part_data FROM watches w LEFT JOIN parts p"
            " ON p.watch_id = w.id AND p.data IS NOT NULL WHERE w.active = 1 ORDER BY w.id"
        )
        watch: dict[str, Any] | None = None
        values: dict[str, Any] | None = None
        for row in cursor:
            if watch is None or watch["id"] != row["id"]:
                if watch is not None:
                    yield watch, values
                watch = dict(row)
                del watch["part_data"]
                values = None
            if row["part_data"]:
                values = {**(values or {}), **orjson.loads(row["part_data"])}
        if watch is not None:
            yield watch, values

    def digest_history(self, watch_id: int) -> sqlite3.Cursor:
        """The watch's history rows newest first (``id``, ``taken_at``, ``data``): the
        digest reads them back to its period's start, not further."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(
            "SELECT id, taken_at, data FROM snapshots WHERE watch_id = ? ORDER BY id DESC",
            (watch_id,),
        )

    def digest_value_before(self, watch_id: int, name: str, before: int) -> tuple[int, Any] | None:
        """The watch's newest history row older than id ``before`` that holds field ``name``:
        its id and what it holds (the value, or a shift: :mod:`monitor.history`), or None
        when none does. Indexed for the fields of :data:`DIGEST_INDEXES`; for another, the
        older rows are read back to the one that holds it."""
        row = self.conn.execute(
            f"SELECT id, data FROM snapshots WHERE watch_id = ? AND id < ? AND {_holds(name)}"
            " ORDER BY id DESC LIMIT 1",
            (watch_id, before),
        ).fetchone()
        return None if row is None else (row[0], orjson.loads(row[1]).get(name))

    def digest_version_seen(self, watch_id: int, version: str, before: int) -> bool:
        """Whether a history row of the watch older than id ``before`` set ``pypi_version``
        to ``version``: one look-up in the partial index of the rows that changed it."""
        row = self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM snapshots WHERE watch_id = ?"
            " AND json_extract(data, '$.\"pypi_version\"') = ? AND id < ?"
            f" AND {_holds('pypi_version')})",
            (watch_id, version, before),
        ).fetchone()
        return bool(row[0])

    def digest_failed_checks(self, watch_id: int) -> sqlite3.Cursor:
        """The watch's failed polls newest first (``checked_at``, ``error``), through the
        partial index idx_checks_failed: the digest stops at its period's start."""
        cursor = self.conn.cursor()
        cursor.row_factory = None
        return cursor.execute(
            "SELECT checked_at, error FROM checks WHERE watch_id = ? AND status = 'failed'"
            " ORDER BY id DESC",
            (watch_id,),
        )

    def digest_alerts(self, since: datetime) -> dict[int, list[dict[str, Any]]]:
        """watch id -> the alerts a digest from ``since`` on may list, by ``started_at``,
        id: those firing now and those started or resolved since a day before ``since``
        (the margin covers times stored with an offset; the caller compares the times)."""
        columns = "id, watch_id, rule, kind, severity, status, summary, started_at, resolved_at"
        bound = iso(since - timedelta(days=1))
        out: dict[int, list[dict[str, Any]]] = {}
        for row in self.conn.execute(
            f"SELECT {columns} FROM alerts WHERE status = 'firing'"
            f" UNION SELECT {columns} FROM alerts WHERE started_at >= ?"
            f" UNION SELECT {columns} FROM alerts WHERE resolved_at >= ?"
            " ORDER BY watch_id, started_at, id",
            (bound, bound),
        ):
            out.setdefault(row["watch_id"], []).append(dict(row))
        return out

    # -- retention (monitor/retention.py) -----------------------------------------------
    # Rows an alert firing now refers to are never selected: the failed polls of a package
    # whose poll-failing or package-not-found alert fires, the groups that delivered a firing
    # alert's transitions. No rule reads them (rules read the parts and rule states).

    def old_checks(self, cut: datetime, after: int, limit: int) -> list[int]:
        """Ids, ascending, above ``after``, of at most ``limit`` ``checks`` rows made before
        ``cut`` (their polls are counted in ``failed_days`` too)."""
        return [
            row[0]
            for row in self.conn.execute(
                f"SELECT id FROM checks WHERE id > ? AND checked_at < ?{_NO_FIRING_WATCH}"
                " ORDER BY id LIMIT ?",
                (after, iso(cut), limit),
            )
        ]

    def delete_checks(self, ids: list[int], cut: datetime) -> int:
        """Delete these ``checks`` rows (those still eligible: see :meth:`old_checks`) in one
        short transaction; how many went."""
        marks = ",".join("?" * len(ids))
        with self.transaction() as conn:
            cursor = conn.execute(
                f"DELETE FROM checks WHERE id IN ({marks}) AND checked_at < ?{_NO_FIRING_WATCH}",
                [*ids, iso(cut)],
            )
        return int(cursor.rowcount)

    def finished_groups(self, cut: datetime, after: int, limit: int) -> list[tuple[int, str]]:
        """(rowid, id), by rowid above ``after``, of at most ``limit`` delivery groups that
        were delivered or failed before ``cut`` (the last attempt, when no delivery time) and
        still keep their input or payload."""
        return [
            (int(row[0]), str(row[1]))
            for row in self.conn.execute(
                "SELECT rowid, id FROM outbox o WHERE rowid > ?"
                " AND status IN ('delivered', 'failed')"
                " AND (payload IS NOT NULL OR input IS NOT NULL)"
                " AND COALESCE(delivered_at, (SELECT MAX(at) FROM attempts a"
                " WHERE a.group_id = o.id), created_at) < ?"
                f"{_NO_FIRING_GROUP} ORDER BY rowid LIMIT ?",
                (after, iso(cut), limit),
            )
        ]

    def drop_group_bodies(self, ids: list[str], cut: datetime) -> tuple[int, int]:
        """Set the input and payload of these finished groups to NULL and delete their
        attempts before ``cut``, in one short transaction: (groups, attempts). The rows stay:
        ``deliveries`` and ``alerts`` refer to them (status, attempts, last error)."""
        marks = ",".join("?" * len(ids))
        with self.transaction() as conn:
            groups = conn.execute(
                "UPDATE outbox SET input = NULL, payload = NULL"
                f" WHERE id IN ({marks}) AND status IN ('delivered', 'failed'){_NO_FIRING_GROUP}",
                ids,
            ).rowcount
            attempts = conn.execute(
                f"DELETE FROM attempts WHERE group_id IN ({marks}) AND at < ?"
                " AND group_id IN (SELECT id FROM outbox WHERE input IS NULL AND payload IS NULL"
                f" AND id IN ({marks}))",
                [*ids, iso(cut), *ids],
            ).rowcount
        return int(groups), int(attempts)

    def history_watches(self, after: int, limit: int) -> list[int]:
        """Ids, ascending, above ``after``, of at most ``limit`` watches with history rows."""
        return [
            int(row[0])
            for row in self.conn.execute(
                "SELECT DISTINCT watch_id FROM snapshots WHERE watch_id > ? ORDER BY watch_id"
                " LIMIT ?",
                (after, limit),
            )
        ]

    def rewrite_history(self, rows: list[tuple[int, str, str]]) -> int:
        """Set the data of these history rows, ``(id, old data, new data)``, those still
        holding the old (one short transaction); how many changed."""
        with self.transaction() as conn:
            cursor = conn.executemany(
                "UPDATE snapshots SET data = ? WHERE id = ? AND data = ?",
                [(new, ident, old) for ident, old, new in rows],
            )
        return int(cursor.rowcount)

    def text_notices(self, after: int, limit: int) -> list[tuple[int, str]]:
        """(id, notice) of at most ``limit`` transitions above id ``after`` whose notice is
        stored as JSON text (rows from before :func:`notice_column`)."""
        return self.conn.execute(
            "SELECT id, notice FROM transitions WHERE id > ? AND typeof(notice) = 'text'"
            " ORDER BY id LIMIT ?",
            (after, limit),
        ).fetchall()

    def rewrite_notices(self, rows: list[tuple[int, str]]) -> int:
        """Store these transitions' notices, ``(id, JSON text)``, as :func:`notice_column`
        does now (one short transaction); how many changed."""
        with self.transaction() as conn:
            cursor = conn.executemany(
                "UPDATE transitions SET notice = ? WHERE id = ? AND notice = ?",
                [(notice_column(orjson.loads(text)), ident, text) for ident, text in rows],
            )
        return int(cursor.rowcount)

    def superseded_vulns(self, cut: datetime) -> list[tuple[str, str]]:
        """(id, modified) of OSV's details that a newer ``modified`` of the same id replaced
        before ``cut``: a poll asks for the pairs OSV gives now, messages show the newest."""
        versions: dict[str, list[tuple[datetime, str]]] = {}
        for ident, modified in self.conn.execute("SELECT id, modified FROM vulns"):
            versions.setdefault(ident, []).append((_moment(modified), modified))
        old: list[tuple[str, str]] = []
        for ident, kept in versions.items():
            kept.sort()
            old += [
                (ident, modified) for (_, modified), (newer, _) in pairwise(kept) if newer < cut
            ]
        return old

    def delete_vulns(self, pairs: list[tuple[str, str]]) -> int:
        with self.transaction() as conn:
            cursor = conn.executemany("DELETE FROM vulns WHERE id = ? AND modified = ?", pairs)
        return int(cursor.rowcount)

    def failure_counts(self, start: datetime, until: datetime) -> dict[int, int]:
        """watch id -> the failed polls ``failed_days`` counts on the UTC days from
        ``start``'s up to ``until``'s, that day excluded (``until`` at midnight: up to it
        exactly): for the part of a period before :meth:`checks_kept_from`."""
        rows = self.conn.execute(
            "SELECT watch_id, SUM(failed) FROM failed_days WHERE day >= ? AND day < ?"
            " AND failed > 0 GROUP BY watch_id",
            (day_number(start), day_number(until)),
        )
        return {int(watch_id): int(n) for watch_id, n in rows}

    def checks_kept_from(self) -> datetime | None:
        """Where compaction last cut (a UTC midnight): ``checks`` rows before it are gone
        (but those of a package with an alert firing), counted in ``failed_days``; None when
        nothing was compacted."""
        return from_iso(self.get_meta(CHECKS_KEPT_FROM))

    def set_checks_kept_from(self, cut: datetime) -> None:
        with self.transaction():
            self.set_meta(CHECKS_KEPT_FROM, iso(cut))

    def auto_vacuum(self) -> int:
        """SQLite's ``auto_vacuum`` mode: 0 none, 1 full, 2 incremental."""
        return int(self.conn.execute("PRAGMA auto_vacuum").fetchone()[0])

    def free_pages(self) -> int:
        return int(self.conn.execute("PRAGMA freelist_count").fetchone()[0])

    def incremental_vacuum(self, pages: int) -> None:
        """Give up to ``pages`` free pages back to the file system (a short write). Run as a
        script: ``execute`` would step it once, freeing one page (it returns no columns)."""
        self.conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")

    def vacuum(self) -> None:
        """Rewrite the file without its free pages, in incremental auto-vacuum from then on
        (switching a database made before needs this rewrite)."""
        if self.auto_vacuum() != 2:
            self.conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self.conn.execute("VACUUM")

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the file and empty it."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)?")


def _holds(name: str) -> str:
    """SQL: the ``snapshots`` row holds field ``name`` (it changed at that poll, maybe to
    null). The condition of the field's partial index in :data:`DIGEST_INDEXES`, if any."""
    if not _FIELD_NAME.fullmatch(name):
        raise ValueError(f"not a field name: {name!r}")
    return f"json_type(data, '$.\"{name}\"') IS NOT NULL"


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
