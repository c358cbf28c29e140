"""SqliteStore: the embedded store, one SQLite file through aiosqlite.

One connection, in autocommit mode; every transaction is explicit and runs under an
``asyncio.Lock``, so coroutines never interleave statements inside one another's
transaction (aiosqlite alone only serializes single calls). Writes take the database
write lock up front (``BEGIN IMMEDIATE``), which also makes seq assignment safe when
another process (``collab migrate``, a second store in a test) opens the same file.

Durability: WAL journal with ``synchronous=FULL``, so a committed (acked) transaction
survives kill -9 and power loss; ``NORMAL`` would only survive the former.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from persistence._common import (
    LOAD_CHUNK_ROWS,
    as_role,
    assign_seqs,
    check_limit,
    check_member_role,
    check_through_seq,
    decode_int_cursor,
    decode_time_id_cursor,
    dump_json,
    group_batch,
    load_json_object,
    new_notification_id,
    notification_cursor,
    now_us,
    page_of,
    project_cursor,
    utc_from_us,
    version_cursor,
)
from persistence.base import (
    AppendResult,
    LoadedDoc,
    LogEntry,
    LogStats,
    Member,
    MemberRole,
    Notification,
    Page,
    Project,
    ProjectListing,
    Role,
    Version,
)
from persistence.errors import Conflict, NotFound, StoreError, StoreUnavailable
from persistence.migrate import migrate_sqlite

# How long a statement waits for another process's lock on the file before failing
# with "database is locked" (-> StoreUnavailable). Writers hold it for one group
# commit (milliseconds); 5 s rides out a migration or a large compaction elsewhere.
BUSY_TIMEOUT_MS = 5_000
# Pause between attempts to switch a new file to WAL (see _enable_wal): long enough to
# let the other opener finish its few milliseconds of work.
WAL_RETRY_S = 0.01

_PROJECT_COLUMNS = "id, name, owner, created_at, updated_at, read_only"
_VERSION_COLUMNS = (
    "project_id, version, label, created_by, created_at, node_count, edge_count, log_seq"
)
_NOTIFICATION_COLUMNS = "id, user_id, kind, payload, created_at, read_at"

Row = sqlite3.Row | tuple[Any, ...]


class SqliteStore:
    """The ``Store`` on one SQLite file (created with its directory when missing).

    Arguments:
        path: the database file; ``":memory:"`` gives a private in-memory database.
    """

    kind = "sqlite"

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.applied_migrations: list[str] = []

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the file, set the pragmas and apply pending migrations."""
        if self._db is not None:
            raise RuntimeError(f"{self!r} is already started")
        with _translate():
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            with _translate():
                await db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                mode = await _enable_wal(db)
                if self.path != ":memory:" and mode != "wal":
                    raise StoreUnavailable(f"{self.path}: cannot use WAL ({mode})")
                await db.execute("PRAGMA synchronous = FULL")
                await db.execute("PRAGMA foreign_keys = ON")
            self._db = db
            self.applied_migrations = await self.migrate()
        except BaseException:
            self._db = None
            await db.close()
            raise

    async def close(self) -> None:
        async with self._lock:  # after the transaction in progress, if any
            db, self._db = self._db, None
            if db is not None:
                with _translate():
                    await db.close()

    async def __aenter__(self) -> SqliteStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def ping(self) -> None:
        async with self._locked() as db:
            await db.execute_fetchall("SELECT 1")

    async def migrate(self) -> list[str]:
        async with self._locked() as db:
            return await migrate_sqlite(db, now_us=now_us())

    # -- projects and members -----------------------------------------------------------

    async def create_project(self, project_id: str, name: str, owner: str) -> Project:
        now = now_us()
        async with self._locked() as db:
            await db.execute(
                "INSERT INTO projects (id, name, owner, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (project_id, name, owner, now, now),
            )
        return Project(project_id, name, owner, utc_from_us(now), utc_from_us(now))

    async def get_project(self, project_id: str) -> Project:
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = ?", (project_id,)
                )
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        return _project(row)

    async def list_projects(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[ProjectListing]:
        check_limit(limit)
        after = "" if cursor is None else "WHERE (updated_at, id) < (?, ?)"
        params: list[object] = [user_id, user_id]
        if cursor is not None:
            params.extend(decode_time_id_cursor(cursor, "projects"))
        params.append(limit + 1)
        sql = f"""
            SELECT {_PROJECT_COLUMNS}, role FROM (
                SELECT {_PROJECT_COLUMNS}, 'owner' AS role FROM projects WHERE owner = ?
                UNION ALL
                SELECT p.id, p.name, p.owner, p.created_at, p.updated_at, p.read_only, m.role
                FROM project_members m JOIN projects p ON p.id = m.project_id
                WHERE m.user_id = ?
            ) {after}
            ORDER BY updated_at DESC, id DESC
            LIMIT ?
        """
        async with self._locked() as db:
            rows = list(await db.execute_fetchall(sql, params))
        return page_of(
            rows, limit, lambda row: ProjectListing(_project(row), as_role(row[6])), project_cursor
        )

    async def rename_project(self, project_id: str, name: str) -> Project:
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    f"UPDATE projects SET name = ?, updated_at = ? WHERE id = ? "
                    f"RETURNING {_PROJECT_COLUMNS}",
                    (name, now_us(), project_id),
                )
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        return _project(row)

    async def set_read_only(self, project_id: str, read_only: bool) -> Project:
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    f"UPDATE projects SET read_only = ? WHERE id = ? RETURNING {_PROJECT_COLUMNS}",
                    (int(read_only), project_id),
                )
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        return _project(row)

    async def delete_project(self, project_id: str) -> None:
        # The foreign keys cascade to members, log, snapshot and versions.
        async with self._locked() as db:
            rows = await db.execute_fetchall(
                "DELETE FROM projects WHERE id = ? RETURNING id", (project_id,)
            )
        if _first(rows) is None:
            raise NotFound(f"project {project_id!r}")

    async def get_role(self, project_id: str, user_id: str) -> Role | None:
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    "SELECT p.owner, m.role FROM projects p "
                    "LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = ? "
                    "WHERE p.id = ?",
                    (user_id, project_id),
                )
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        if row[0] == user_id:
            return "owner"
        return None if row[1] is None else as_role(row[1])

    async def set_member(self, project_id: str, user_id: str, role: MemberRole) -> Member:
        check_member_role(role)
        async with self._locked() as db:
            # Upsert in one statement; no row back means no project, or the owner.
            row = _first(
                await db.execute_fetchall(
                    "INSERT INTO project_members (project_id, user_id, role, added_at) "
                    "SELECT id, ?, ?, ? FROM projects WHERE id = ? AND owner <> ? "
                    "ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role "
                    "RETURNING user_id, role, added_at",
                    (user_id, role, now_us(), project_id, user_id),
                )
            )
            if row is None:
                if not await self._project_exists(db, project_id):
                    raise NotFound(f"project {project_id!r}")
                raise Conflict(f"{user_id!r} owns project {project_id!r}")
        return Member(row[0], as_role(row[1]), utc_from_us(row[2]))

    async def remove_member(self, project_id: str, user_id: str) -> bool:
        async with self._locked() as db:
            rows = await db.execute_fetchall(
                "DELETE FROM project_members WHERE project_id = ? AND user_id = ? "
                "RETURNING user_id",
                (project_id, user_id),
            )
            if _first(rows) is not None:
                return True
            if not await self._project_exists(db, project_id):
                raise NotFound(f"project {project_id!r}")
        return False

    async def list_members(self, project_id: str) -> list[Member]:
        async with self._locked() as db:
            rows = list(
                await db.execute_fetchall(
                    "SELECT owner, 'owner', created_at, 0 AS rank FROM projects WHERE id = ? "
                    "UNION ALL "
                    "SELECT user_id, role, added_at, 1 FROM project_members WHERE project_id = ? "
                    "ORDER BY rank, 1",
                    (project_id, project_id),
                )
            )
        if not rows:  # members cannot outlive their project: no rows, no project
            raise NotFound(f"project {project_id!r}")
        return [Member(row[0], as_role(row[1]), utc_from_us(row[2])) for row in rows]

    # -- the document: update log, snapshots, compaction --------------------------------

    async def append_updates(self, batch: Sequence[tuple[str, bytes]]) -> AppendResult:
        if not batch:
            return AppendResult([])
        groups = group_batch(batch)
        seqs: list[int | None] = [None] * len(batch)
        now = now_us()
        async with self._transaction() as db:
            rows: list[tuple[str, int, bytes, int]] = []
            for project_id in groups:  # the write lock is database-wide: any order
                indexes = groups[project_id]
                head = _first(
                    await db.execute_fetchall(
                        "UPDATE projects SET log_head = log_head + ?, updated_at = ? "
                        "WHERE id = ? RETURNING log_head",
                        (len(indexes), now, project_id),
                    )
                )
                if head is None:  # deleted meanwhile: drop its updates
                    continue
                for index, seq in assign_seqs(seqs, indexes, head[0]):
                    rows.append((project_id, seq, batch[index][1], now))
            if rows:
                await db.executemany(
                    "INSERT INTO doc_updates (project_id, seq, data, created_at) "
                    "VALUES (?, ?, ?, ?)",
                    rows,
                )
        return AppendResult(seqs)

    async def load_document(self, project_id: str, *, after_seq: int = 0) -> LoadedDoc:
        if after_seq < 0:
            raise ValueError(f"after_seq must not be negative, got {after_seq}")
        # One read transaction: a compaction committing between the reads could
        # otherwise delete rows between the snapshot we read and the tail we read.
        async with self._transaction("BEGIN") as db:
            head = _first(
                await db.execute_fetchall(
                    "SELECT p.log_head, s.through_seq FROM projects p "
                    "LEFT JOIN doc_snapshots s ON s.project_id = p.id WHERE p.id = ?",
                    (project_id,),
                )
            )
            if head is None:
                raise NotFound(f"project {project_id!r}")
            head_seq, through_seq = head
            snapshot: bytes | None = None
            start = after_seq
            if through_seq is not None and (after_seq == 0 or after_seq < through_seq):
                row = _first(
                    await db.execute_fetchall(
                        "SELECT snapshot FROM doc_snapshots WHERE project_id = ?",
                        (project_id,),
                    )
                )
                assert row is not None  # same read transaction as the join above
                snapshot, start = row[0], through_seq
            updates: list[LogEntry] = []
            async with db.execute(
                "SELECT seq, data FROM doc_updates WHERE project_id = ? AND seq > ? ORDER BY seq",
                (project_id, start),
            ) as log:
                while chunk := await log.fetchmany(LOAD_CHUNK_ROWS):
                    updates.extend([LogEntry(seq, data) for seq, data in chunk])
        return LoadedDoc(snapshot, start, updates, head_seq)

    async def log_stats(self, project_id: str) -> LogStats:
        async with self._transaction("BEGIN") as db:
            head = _first(
                await db.execute_fetchall(
                    "SELECT p.log_head, COALESCE(s.through_seq, 0) FROM projects p "
                    "LEFT JOIN doc_snapshots s ON s.project_id = p.id WHERE p.id = ?",
                    (project_id,),
                )
            )
            if head is None:
                raise NotFound(f"project {project_id!r}")
            counts = _first(
                await db.execute_fetchall(
                    "SELECT count(*), COALESCE(sum(length(data)), 0) FROM doc_updates "
                    "WHERE project_id = ?",
                    (project_id,),
                )
            )
        assert counts is not None  # an aggregate always yields one row
        return LogStats(rows=counts[0], bytes=counts[1], head_seq=head[0], snapshot_seq=head[1])

    async def acquire_compaction_lease(
        self, project_id: str, holder: str, ttl_s: float
    ) -> int | None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        now = now_us()
        until = now + round(ttl_s * 1_000_000)
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    "UPDATE projects SET compact_fence = compact_fence + 1, "
                    "compact_holder = ?, compact_until = ? "
                    "WHERE id = ? AND (compact_holder IS NULL OR compact_until <= ?) "
                    "RETURNING compact_fence",
                    (holder, until, project_id, now),
                )
            )
            if row is None and not await self._project_exists(db, project_id):
                raise NotFound(f"project {project_id!r}")
        return None if row is None else int(row[0])

    async def compact(
        self, project_id: str, *, fence: int, snapshot: bytes, through_seq: int
    ) -> bool:
        now = now_us()
        async with self._transaction() as db:
            row = _first(
                await db.execute_fetchall(
                    "SELECT p.compact_fence, p.compact_holder, p.log_head, "
                    "COALESCE(s.through_seq, 0) FROM projects p "
                    "LEFT JOIN doc_snapshots s ON s.project_id = p.id WHERE p.id = ?",
                    (project_id,),
                )
            )
            if row is None or row[0] != fence or row[1] is None:
                return False
            check_through_seq(through_seq, snapshot_seq=row[3], head_seq=row[2])
            await db.execute(
                "INSERT INTO doc_snapshots (project_id, snapshot, through_seq, created_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (project_id) DO UPDATE SET "
                "snapshot = excluded.snapshot, through_seq = excluded.through_seq, "
                "created_at = excluded.created_at",
                (project_id, snapshot, through_seq, now),
            )
            await db.execute(
                "DELETE FROM doc_updates WHERE project_id = ? AND seq <= ?",
                (project_id, through_seq),
            )
            await db.execute(
                "UPDATE projects SET compact_holder = NULL, compact_until = NULL WHERE id = ?",
                (project_id,),
            )
        return True

    async def release_compaction_lease(self, project_id: str, fence: int) -> None:
        async with self._locked() as db:
            await db.execute(
                "UPDATE projects SET compact_holder = NULL, compact_until = NULL "
                "WHERE id = ? AND compact_fence = ?",
                (project_id, fence),
            )

    # -- versions -----------------------------------------------------------------------

    async def create_version(
        self,
        project_id: str,
        *,
        state: bytes,
        label: str | None,
        created_by: str | None,
        node_count: int,
        edge_count: int,
        log_seq: int,
    ) -> Version:
        # One statement under the database write lock: the number cannot race.
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    f"INSERT INTO versions ({_VERSION_COLUMNS}, state) "
                    "SELECT p.id, (SELECT COALESCE(max(v.version), 0) + 1 FROM versions v "
                    "              WHERE v.project_id = p.id), "
                    "?, ?, ?, ?, ?, ?, ? FROM projects p WHERE p.id = ? "
                    f"RETURNING {_VERSION_COLUMNS}",
                    (
                        label,
                        created_by,
                        now_us(),
                        node_count,
                        edge_count,
                        log_seq,
                        state,
                        project_id,
                    ),
                )
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        return _version(row)

    async def list_versions(
        self, project_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[Version]:
        check_limit(limit)
        params: list[object] = [project_id]
        after = ""
        if cursor is not None:
            after = "AND version < ?"
            params.append(decode_int_cursor(cursor, "versions"))
        params.append(limit + 1)
        async with self._locked() as db:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {_VERSION_COLUMNS} FROM versions WHERE project_id = ? {after} "
                    "ORDER BY version DESC LIMIT ?",
                    params,
                )
            )
            if not rows and not await self._project_exists(db, project_id):
                raise NotFound(f"project {project_id!r}")
        return page_of(rows, limit, _version, version_cursor)

    async def get_version(self, project_id: str, version: int) -> Version:
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    f"SELECT {_VERSION_COLUMNS} FROM versions WHERE project_id = ? AND version = ?",
                    (project_id, version),
                )
            )
        if row is None:
            raise NotFound(f"version {version} of project {project_id!r}")
        return _version(row)

    async def get_version_state(self, project_id: str, version: int) -> bytes:
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    "SELECT state FROM versions WHERE project_id = ? AND version = ?",
                    (project_id, version),
                )
            )
        if row is None:
            raise NotFound(f"version {version} of project {project_id!r}")
        return bytes(row[0])

    async def latest_version(self, project_id: str) -> Version | None:
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    f"SELECT {_VERSION_COLUMNS} FROM versions WHERE project_id = ? "
                    "ORDER BY version DESC LIMIT 1",
                    (project_id,),
                )
            )
            if row is None and not await self._project_exists(db, project_id):
                raise NotFound(f"project {project_id!r}")
        return None if row is None else _version(row)

    # -- notifications ------------------------------------------------------------------

    async def add_notifications(
        self, user_ids: Sequence[str], kind: str, payload: dict[str, Any]
    ) -> list[Notification]:
        text = dump_json(payload)  # not JSON: TypeError, before touching the database
        if not user_ids:
            return []
        now = now_us()
        rows = [(new_notification_id(), user_id, kind, text, now) for user_id in user_ids]
        async with self._locked() as db:
            await db.executemany(
                "INSERT INTO notifications (id, user_id, kind, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        created = utc_from_us(now)
        # Each gets its own decoded copy: what a later list_notifications returns.
        return [
            Notification(id_, user_id, kind, load_json_object(text), created, None)
            for id_, user_id, *_ in rows
        ]

    async def list_notifications(
        self, user_id: str, *, unread_only: bool, limit: int, cursor: str | None = None
    ) -> Page[Notification]:
        check_limit(limit)
        where = ["user_id = ?"]
        params: list[object] = [user_id]
        if unread_only:
            where.append("read_at IS NULL")
        if cursor is not None:
            where.append("(created_at, id) < (?, ?)")
            params.extend(decode_time_id_cursor(cursor, "notifications"))
        params.append(limit + 1)
        async with self._locked() as db:
            rows = list(
                await db.execute_fetchall(
                    f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications "
                    f"WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT ?",
                    params,
                )
            )
        return page_of(rows, limit, _notification, notification_cursor)

    async def mark_notification_read(self, user_id: str, notification_id: str) -> Notification:
        async with self._locked() as db:
            row = _first(
                await db.execute_fetchall(
                    "UPDATE notifications SET read_at = COALESCE(read_at, ?) "
                    f"WHERE id = ? AND user_id = ? RETURNING {_NOTIFICATION_COLUMNS}",
                    (now_us(), notification_id, user_id),
                )
            )
        if row is None:
            raise NotFound(f"notification {notification_id!r} of {user_id!r}")
        return _notification(row)

    async def mark_all_read(self, user_id: str) -> int:
        async with self._locked() as db:
            rows = await db.execute_fetchall(
                "UPDATE notifications SET read_at = ? WHERE user_id = ? AND read_at IS NULL "
                "RETURNING 1",
                (now_us(), user_id),
            )
        return len(list(rows))

    # -- plumbing -----------------------------------------------------------------------

    def _require_db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreUnavailable(f"{self!r} is not started (or already closed)")
        return self._db

    @contextlib.asynccontextmanager
    async def _locked(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, alone, in autocommit mode: each statement commits itself."""
        async with self._lock:
            db = self._require_db()
            with _translate():
                yield db

    @contextlib.asynccontextmanager
    async def _transaction(
        self, begin: str = "BEGIN IMMEDIATE"
    ) -> AsyncIterator[aiosqlite.Connection]:
        """One transaction: committed when the block ends, rolled back when it raises.

        ``BEGIN IMMEDIATE`` (the default) takes the write lock at once, so a read
        inside cannot go stale before the write; plain ``BEGIN`` is for consistent
        multi-statement reads.

        Even when the caller is cancelled, the ROLLBACK is queued on the connection's
        thread (behind the statements already queued) before the lock is released, so
        the next holder never runs inside a leftover transaction.
        """
        async with self._locked() as db:
            try:
                await db.execute(begin)
                yield db
                await db.commit()
            except BaseException:
                with contextlib.suppress(Exception):
                    await db.rollback()  # no-op when BEGIN failed or COMMIT went through
                raise

    @staticmethod
    async def _project_exists(db: aiosqlite.Connection, project_id: str) -> bool:
        rows = await db.execute_fetchall("SELECT 1 FROM projects WHERE id = ?", (project_id,))
        return _first(rows) is not None


@contextlib.contextmanager
def _translate() -> Iterator[None]:
    """Re-raise sqlite3 (and file system) errors as ``persistence.errors``."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name == "SQLITE_CONSTRAINT_FOREIGNKEY":
            raise NotFound(str(exc)) from exc
        if name in ("SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"):
            raise Conflict(str(exc)) from exc
        raise StoreError(str(exc)) from exc
    except (sqlite3.OperationalError, OSError) as exc:
        # Locked, disk full, I/O error, cannot open the file: retry later.
        raise StoreUnavailable(str(exc)) from exc
    except sqlite3.Error as exc:
        raise StoreError(str(exc)) from exc


async def _enable_wal(db: aiosqlite.Connection) -> str:
    """Switch the file to WAL (a persistent setting) and return the journal mode.

    The switch needs the file to itself, and SQLite reports "database is locked" at once
    rather than waiting out busy_timeout when another connection is opening the same
    new file; so retry for as long as busy_timeout would have waited.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            row = _first(await db.execute_fetchall("PRAGMA journal_mode = WAL"))
            assert row is not None  # the pragma answers with the mode now in effect
            return str(row[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        await asyncio.sleep(WAL_RETRY_S)


def _first(rows: Iterable[Row]) -> Row | None:
    return next(iter(rows), None)


def _project(row: Row) -> Project:
    return Project(row[0], row[1], row[2], utc_from_us(row[3]), utc_from_us(row[4]), bool(row[5]))


def _version(row: Row) -> Version:
    return Version(
        project_id=row[0],
        version=row[1],
        label=row[2],
        created_by=row[3],
        created_at=utc_from_us(row[4]),
        node_count=row[5],
        edge_count=row[6],
        log_seq=row[7],
    )


def _notification(row: Row) -> Notification:
    return Notification(
        id=row[0],
        user_id=row[1],
        kind=row[2],
        payload=load_json_object(row[3]),
        created_at=utc_from_us(row[4]),
        read_at=None if row[5] is None else utc_from_us(row[5]),
    )
