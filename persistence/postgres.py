"""PostgresStore: the shared store of a cluster, on an asyncpg pool.

Errors are translated where they leave asyncpg (``_translate``): a lost or refused
connection, a server shutting down or starting up become ``StoreUnavailable``; a
unique violation becomes ``Conflict``. After a Postgres restart the pool replaces its
dead connections on the next acquire, so the store recovers by itself; a call that was
in flight when the server went away fails with ``StoreUnavailable`` and may be retried.

Log seqs are assigned by bumping ``projects.log_head`` inside the appending
transaction; the row lock that the bump takes orders every append to that project, so
seqs are gap-free and in commit order across any number of pools and instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar
from urllib.parse import urlsplit

import asyncpg
import asyncpg.exceptions as pgexc

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
from persistence.migrate import migrate_postgres

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection = PoolConnectionProxy[asyncpg.Record]

Isolation = Literal["read_committed", "repeatable_read", "serializable"]
P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger("persistence.postgres")

# asyncpg waits 60 s for a connection by default; a dead or blackholed server should
# fail start() and requests (StoreUnavailable) well before a client or probe gives up.
CONNECT_TIMEOUT_S = 10.0
# /readyz answers within a probe's usual 1-10 s budget even when the pool is stuck.
PING_TIMEOUT_S = 5.0

_PROJECT_COLUMNS = "id, name, owner, created_at, updated_at, read_only"
_VERSION_COLUMNS = (
    "project_id, version, label, created_by, created_at, node_count, edge_count, log_seq"
)
_NOTIFICATION_COLUMNS = "id, user_id, kind, payload, created_at, read_at"

# The group commit, in one statement (so one round trip and one implicit transaction):
# bump each project's log_head by its entry count and insert the entries with the seqs
# just reserved. The aggregate in "locked" must take every row lock, in id order,
# before it yields its one row, and the UPDATE cannot touch a row before the join
# gives it that row: appenders to overlapping projects (other pools, other instances)
# queue in the same order and cannot deadlock. A project deleted meanwhile has no row
# to lock, so its entries are not inserted and it is missing from the result.
# Unnested arrays rather than COPY: as fast at 100 rows, faster for small batches.
_APPEND = """
WITH locked AS MATERIALIZED (
    SELECT array_agg(id) AS ids FROM (
        SELECT id FROM projects WHERE id = ANY($1::text[])
        ORDER BY id FOR NO KEY UPDATE
    ) AS in_order
),
heads AS (
    UPDATE projects AS p SET log_head = p.log_head + c.n, updated_at = now()
    FROM unnest($1::text[], $2::bigint[]) AS c(id, n), locked
    WHERE p.id = c.id AND p.id = ANY(locked.ids)
    RETURNING p.id, p.log_head, c.n
),
appended AS (
    INSERT INTO doc_updates (project_id, seq, data)
    SELECT u.project_id, h.log_head - h.n + u.position, u.data
    FROM unnest($3::text[], $4::bigint[], $5::bytea[]) AS u(project_id, position, data)
    JOIN heads AS h ON h.id = u.project_id
)
SELECT id, log_head FROM heads
"""

# Errors that mean "the database is (for now) out of reach": retry later.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    pgexc.PostgresConnectionError,  # class 08: connection lost or refused
    pgexc.OperatorInterventionError,  # class 57: shutdown, starting up, cancelled
    pgexc.InsufficientResourcesError,  # class 53: too many connections, disk full
    pgexc.PostgresSystemError,  # class 58: I/O error on the server
    pgexc.TransactionRollbackError,  # class 40: serialization failure, deadlock
    pgexc.ReadOnlySQLTransactionError,  # 25006: we reached a standby (failover)
    asyncpg.InterfaceError,  # the connection was closed under us (DataError: see below)
    pgexc.InternalClientError,  # see _never_sent
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or ping timeout
)


def _retry_unsent(
    method: Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[PostgresStore, P], Coroutine[Any, Any, T]]:
    """Re-run a call that failed on a dead pooled connection before sending anything.

    That is safe for writes too: nothing reached the server, or the transaction never
    got to COMMIT and died with its session. After a server restart every pooled
    connection may be dead, hence up to ``max_size`` retries; they cost no round trip.
    Any other failure is raised as is.
    """

    @functools.wraps(method)
    async def wrapper(self: PostgresStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        attempts = self.max_size + 1
        for attempt in range(1, attempts + 1):
            try:
                return await method(self, *args, **kwargs)
            except StoreUnavailable as exc:
                if attempt == attempts or not _never_sent(exc.__cause__):
                    raise
                log.info("retrying %s on a fresh connection: %s", method.__name__, exc)
        raise AssertionError("unreachable")

    return wrapper


def _never_sent(exc: BaseException | None) -> bool:
    """Did the driver refuse to send because the connection is already dead?

    A server-side kill (pg_terminate_backend, a shutdown) reaches an idle connection
    as an error message, then EOF. A query started between the two is refused locally
    ("cannot switch to state ...; another operation is in progress"); one started after
    the EOF is refused with "connection is closed". The pool drops such a connection
    on release and opens a new one on the next acquire.
    """
    if isinstance(exc, pgexc.InternalClientError):
        return str(exc).startswith("cannot switch to state")
    if isinstance(exc, asyncpg.InterfaceError) and not isinstance(exc, pgexc.DataError):
        return "connection is closed" in str(exc)
    return False


class PostgresStore:
    """The ``Store`` on Postgres.

    Arguments:
        dsn: a libpq connection URI, ``postgresql://user@host:port/database``.
        min_size: connections the pool keeps open.
        max_size: connections the pool may open.
    """

    kind = "postgres"

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._dsn = dsn
        self.min_size = min_size
        self.max_size = max_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self.applied_migrations: list[str] = []

    def __repr__(self) -> str:
        parts = urlsplit(self._dsn)
        where = f"{parts.hostname or ''}:{parts.port or ''}{parts.path}"
        return f"PostgresStore({where!r})"  # never the password

    # -- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Open the pool and apply pending migrations.

        Raises ``StoreUnavailable`` while the server cannot be reached; the caller
        retries (nothing is left open).
        """
        if self._pool is not None:
            raise RuntimeError(f"{self!r} is already started")
        pool = asyncpg.create_pool(
            self._dsn,
            min_size=self.min_size,
            max_size=self.max_size,
            init=_init_connection,
            reset=_keep_session,
            timeout=CONNECT_TIMEOUT_S,
        )
        with _translate():
            await pool  # a failed first connect closes the pool itself
        try:
            self._pool = pool
            self.applied_migrations = await self.migrate()
        except BaseException:
            self._pool = None
            pool.terminate()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def __aenter__(self) -> PostgresStore:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @_retry_unsent
    async def ping(self) -> None:
        with _translate():  # the timeout's TimeoutError too
            async with asyncio.timeout(PING_TIMEOUT_S), self._connection() as conn:
                await conn.fetchval("SELECT 1")

    async def migrate(self) -> list[str]:
        # On a connection of its own, not a pooled one: its session advisory lock dies
        # with it whatever happens (pooled connections are not reset, _keep_session).
        self._require_pool()
        with _translate():
            conn = await asyncpg.connect(self._dsn, timeout=CONNECT_TIMEOUT_S)
            try:
                return await migrate_postgres(conn)
            finally:
                await conn.close()

    # -- projects and members -----------------------------------------------------------

    @_retry_unsent
    async def create_project(self, project_id: str, name: str, owner: str) -> Project:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "INSERT INTO projects (id, name, owner) VALUES ($1, $2, $3) "
                f"RETURNING {_PROJECT_COLUMNS}",
                project_id,
                name,
                owner,
            )
        assert row is not None  # INSERT ... RETURNING of one row
        return _project(row)

    @_retry_unsent
    async def get_project(self, project_id: str) -> Project:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_PROJECT_COLUMNS} FROM projects WHERE id = $1", project_id
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        return _project(row)

    @_retry_unsent
    async def list_projects(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[ProjectListing]:
        check_limit(limit)
        args: list[object] = [user_id, limit + 1]
        after = ""
        if cursor is not None:
            us, last_id = decode_time_id_cursor(cursor, "projects")
            args.extend([utc_from_us(us), last_id])
            after = "WHERE (updated_at, id) < ($3, $4)"
        sql = f"""
            SELECT {_PROJECT_COLUMNS}, role FROM (
                SELECT {_PROJECT_COLUMNS}, 'owner' AS role FROM projects WHERE owner = $1
                UNION ALL
                SELECT p.id, p.name, p.owner, p.created_at, p.updated_at, p.read_only, m.role
                FROM project_members m JOIN projects p ON p.id = m.project_id
                WHERE m.user_id = $1
            ) AS listing {after}
            ORDER BY updated_at DESC, id DESC
            LIMIT $2
        """
        async with self._connection() as conn:
            rows = await conn.fetch(sql, *args)
        return page_of(
            rows,
            limit,
            lambda row: ProjectListing(_project(row), as_role(row["role"])),
            project_cursor,
        )

    @_retry_unsent
    async def rename_project(self, project_id: str, name: str) -> Project:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "UPDATE projects SET name = $2, updated_at = now() WHERE id = $1 "
                f"RETURNING {_PROJECT_COLUMNS}",
                project_id,
                name,
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        return _project(row)

    @_retry_unsent
    async def set_read_only(self, project_id: str, read_only: bool) -> Project:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"UPDATE projects SET read_only = $2 WHERE id = $1 RETURNING {_PROJECT_COLUMNS}",
                project_id,
                read_only,
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        return _project(row)

    @_retry_unsent
    async def delete_project(self, project_id: str) -> None:
        # The foreign keys cascade to members, log, snapshot and versions.
        async with self._connection() as conn:
            status = await conn.execute("DELETE FROM projects WHERE id = $1", project_id)
        if _row_count(status) == 0:
            raise NotFound(f"project {project_id!r}")

    @_retry_unsent
    async def get_role(self, project_id: str, user_id: str) -> Role | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT p.owner, m.role FROM projects p "
                "LEFT JOIN project_members m ON m.project_id = p.id AND m.user_id = $2 "
                "WHERE p.id = $1",
                project_id,
                user_id,
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        if row["owner"] == user_id:
            return "owner"
        return None if row["role"] is None else as_role(row["role"])

    @_retry_unsent
    async def set_member(self, project_id: str, user_id: str, role: MemberRole) -> Member:
        check_member_role(role)
        async with self._connection() as conn:
            # Upsert in one statement; no row back means no project, or the owner.
            row = await conn.fetchrow(
                "INSERT INTO project_members (project_id, user_id, role) "
                "SELECT id, $2::text, $3::text FROM projects WHERE id = $1 AND owner <> $2 "
                "ON CONFLICT (project_id, user_id) DO UPDATE SET role = excluded.role "
                "RETURNING user_id, role, added_at",
                project_id,
                user_id,
                role,
            )
            if row is None:
                if not await _project_exists(conn, project_id):
                    raise NotFound(f"project {project_id!r}")
                raise Conflict(f"{user_id!r} owns project {project_id!r}")
        return Member(row["user_id"], as_role(row["role"]), row["added_at"])

    @_retry_unsent
    async def remove_member(self, project_id: str, user_id: str) -> bool:
        async with self._connection() as conn:
            status = await conn.execute(
                "DELETE FROM project_members WHERE project_id = $1 AND user_id = $2",
                project_id,
                user_id,
            )
            if _row_count(status) > 0:
                return True
            if not await _project_exists(conn, project_id):
                raise NotFound(f"project {project_id!r}")
        return False

    @_retry_unsent
    async def list_members(self, project_id: str) -> list[Member]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT owner AS user_id, 'owner' AS role, created_at AS added_at, 0 AS rank "
                "FROM projects WHERE id = $1 "
                "UNION ALL "
                "SELECT user_id, role, added_at, 1 FROM project_members WHERE project_id = $1 "
                "ORDER BY rank, user_id",
                project_id,
            )
        if not rows:  # members cannot outlive their project: no rows, no project
            raise NotFound(f"project {project_id!r}")
        return [Member(r["user_id"], as_role(r["role"]), r["added_at"]) for r in rows]

    # -- the document: update log, snapshots, compaction --------------------------------

    @_retry_unsent
    async def append_updates(self, batch: Sequence[tuple[str, bytes]]) -> AppendResult:
        if not batch:
            return AppendResult([])
        groups = group_batch(batch)
        project_ids = list(groups)
        # Each entry's 1-based position among its project's entries in this batch.
        positions: list[int] = [0] * len(batch)
        for indexes in groups.values():
            for position, index in enumerate(indexes, start=1):
                positions[index] = position
        async with self._connection() as conn:
            heads = await conn.fetch(
                _APPEND,
                project_ids,
                [len(groups[project_id]) for project_id in project_ids],
                [project_id for project_id, _ in batch],
                positions,
                [update for _, update in batch],
            )
        seqs: list[int | None] = [None] * len(batch)
        for head in heads:  # projects deleted meanwhile are missing: their entries dropped
            assign_seqs(seqs, groups[head["id"]], head["log_head"])
        return AppendResult(seqs)

    @_retry_unsent
    async def load_document(self, project_id: str, *, after_seq: int = 0) -> LoadedDoc:
        if after_seq < 0:
            raise ValueError(f"after_seq must not be negative, got {after_seq}")
        # One snapshot of the database (REPEATABLE READ): a compaction committing
        # between the reads could otherwise delete rows we have not read yet.
        async with self._transaction(isolation="repeatable_read", readonly=True) as conn:
            head = await conn.fetchrow(
                "SELECT p.log_head, s.through_seq FROM projects p "
                "LEFT JOIN doc_snapshots s ON s.project_id = p.id WHERE p.id = $1",
                project_id,
            )
            if head is None:
                raise NotFound(f"project {project_id!r}")
            through_seq: int | None = head["through_seq"]
            snapshot: bytes | None = None
            start = after_seq
            if through_seq is not None and (after_seq == 0 or after_seq < through_seq):
                snapshot = await conn.fetchval(
                    "SELECT snapshot FROM doc_snapshots WHERE project_id = $1", project_id
                )
                start = through_seq
            updates: list[LogEntry] = []
            log = await conn.cursor(
                "SELECT seq, data FROM doc_updates WHERE project_id = $1 AND seq > $2 ORDER BY seq",
                project_id,
                start,
            )
            while chunk := await log.fetch(LOAD_CHUNK_ROWS):
                updates.extend([LogEntry(seq, data) for seq, data in chunk])
        return LoadedDoc(snapshot, start, updates, head["log_head"])

    @_retry_unsent
    async def log_stats(self, project_id: str) -> LogStats:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "SELECT p.log_head, COALESCE(s.through_seq, 0) AS snapshot_seq, u.n, u.b "
                "FROM projects p LEFT JOIN doc_snapshots s ON s.project_id = p.id "
                "CROSS JOIN LATERAL (SELECT count(*) AS n, "
                "    COALESCE(sum(octet_length(data)), 0) AS b "
                "    FROM doc_updates WHERE project_id = p.id) AS u "
                "WHERE p.id = $1",
                project_id,
            )
        if row is None:
            raise NotFound(f"project {project_id!r}")
        return LogStats(
            rows=row["n"],
            bytes=row["b"],
            head_seq=row["log_head"],
            snapshot_seq=row["snapshot_seq"],
        )

    @_retry_unsent
    async def acquire_compaction_lease(
        self, project_id: str, holder: str, ttl_s: float
    ) -> int | None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, got {ttl_s}")
        async with self._connection() as conn:
            fence: int | None = await conn.fetchval(
                "UPDATE projects SET compact_fence = compact_fence + 1, compact_holder = $2, "
                "compact_until = clock_timestamp() + make_interval(secs => $3) "
                "WHERE id = $1 "
                "AND (compact_holder IS NULL OR compact_until <= clock_timestamp()) "
                "RETURNING compact_fence",
                project_id,
                holder,
                float(ttl_s),
            )
            if fence is None and not await _project_exists(conn, project_id):
                raise NotFound(f"project {project_id!r}")
        return fence

    @_retry_unsent
    async def compact(
        self, project_id: str, *, fence: int, snapshot: bytes, through_seq: int
    ) -> bool:
        async with self._transaction() as conn:
            row = await conn.fetchrow(
                "SELECT p.compact_fence, p.compact_holder, p.log_head, "
                "COALESCE(s.through_seq, 0) AS snapshot_seq FROM projects p "
                "LEFT JOIN doc_snapshots s ON s.project_id = p.id WHERE p.id = $1 "
                "FOR NO KEY UPDATE OF p",
                project_id,
            )
            if row is None or row["compact_fence"] != fence or row["compact_holder"] is None:
                return False
            check_through_seq(
                through_seq, snapshot_seq=row["snapshot_seq"], head_seq=row["log_head"]
            )
            await conn.execute(
                "INSERT INTO doc_snapshots (project_id, snapshot, through_seq) "
                "VALUES ($1, $2, $3) ON CONFLICT (project_id) DO UPDATE SET "
                "snapshot = excluded.snapshot, through_seq = excluded.through_seq, "
                "created_at = excluded.created_at",
                project_id,
                snapshot,
                through_seq,
            )
            await conn.execute(
                "DELETE FROM doc_updates WHERE project_id = $1 AND seq <= $2",
                project_id,
                through_seq,
            )
            await conn.execute(
                "UPDATE projects SET compact_holder = NULL, compact_until = NULL WHERE id = $1",
                project_id,
            )
        return True

    @_retry_unsent
    async def release_compaction_lease(self, project_id: str, fence: int) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE projects SET compact_holder = NULL, compact_until = NULL "
                "WHERE id = $1 AND compact_fence = $2 AND compact_holder IS NOT NULL",
                project_id,
                fence,
            )

    # -- versions -----------------------------------------------------------------------

    @_retry_unsent
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
        async with self._transaction() as conn:
            # The project row lock serializes numbering; the INSERT is a new statement,
            # so (READ COMMITTED) it sees every version committed before the lock.
            if not await conn.fetchval(
                "SELECT true FROM projects WHERE id = $1 FOR NO KEY UPDATE", project_id
            ):
                raise NotFound(f"project {project_id!r}")
            row = await conn.fetchrow(
                f"INSERT INTO versions ({_VERSION_COLUMNS}, state) "
                "SELECT $1, COALESCE(max(version), 0) + 1, $2::text, $3::text, now(), "
                "$4::integer, $5::integer, $6::bigint, $7::bytea "
                "FROM versions WHERE project_id = $1 "
                f"RETURNING {_VERSION_COLUMNS}",
                project_id,
                label,
                created_by,
                node_count,
                edge_count,
                log_seq,
                state,
            )
        assert row is not None  # an aggregate always yields one row to insert
        return _version(row)

    @_retry_unsent
    async def list_versions(
        self, project_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[Version]:
        check_limit(limit)
        args: list[object] = [project_id, limit + 1]
        after = ""
        if cursor is not None:
            args.append(decode_int_cursor(cursor, "versions"))
            after = "AND version < $3"
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE project_id = $1 {after} "
                "ORDER BY version DESC LIMIT $2",
                *args,
            )
            if not rows and not await _project_exists(conn, project_id):
                raise NotFound(f"project {project_id!r}")
        return page_of(rows, limit, _version, version_cursor)

    @_retry_unsent
    async def get_version(self, project_id: str, version: int) -> Version:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE project_id = $1 AND version = $2",
                project_id,
                version,
            )
        if row is None:
            raise NotFound(f"version {version} of project {project_id!r}")
        return _version(row)

    @_retry_unsent
    async def get_version_state(self, project_id: str, version: int) -> bytes:
        async with self._connection() as conn:
            state: bytes | None = await conn.fetchval(
                "SELECT state FROM versions WHERE project_id = $1 AND version = $2",
                project_id,
                version,
            )
        if state is None:
            raise NotFound(f"version {version} of project {project_id!r}")
        return state

    @_retry_unsent
    async def latest_version(self, project_id: str) -> Version | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE project_id = $1 "
                "ORDER BY version DESC LIMIT 1",
                project_id,
            )
            if row is None and not await _project_exists(conn, project_id):
                raise NotFound(f"project {project_id!r}")
        return None if row is None else _version(row)

    # -- notifications ------------------------------------------------------------------

    @_retry_unsent
    async def add_notifications(
        self, user_ids: Sequence[str], kind: str, payload: dict[str, Any]
    ) -> list[Notification]:
        text = dump_json(payload)  # not JSON: TypeError here, as with SQLite
        if not user_ids:
            return []
        ids = [new_notification_id() for _ in user_ids]
        async with self._connection() as conn:
            rows = await conn.fetch(
                "INSERT INTO notifications (id, user_id, kind, payload) "
                "SELECT n.id, n.user_id, $3, $4::text::jsonb "
                "FROM unnest($1::text[], $2::text[]) AS n(id, user_id) "
                f"RETURNING {_NOTIFICATION_COLUMNS}",
                ids,
                list(user_ids),
                kind,
                text,
            )
        # RETURNING order is not promised: put them back in user_ids order.
        by_id = {row["id"]: _notification(row) for row in rows}
        return [by_id[id_] for id_ in ids]

    @_retry_unsent
    async def list_notifications(
        self, user_id: str, *, unread_only: bool, limit: int, cursor: str | None = None
    ) -> Page[Notification]:
        check_limit(limit)
        where = ["user_id = $1"]
        args: list[object] = [user_id, limit + 1]
        if unread_only:
            where.append("read_at IS NULL")
        if cursor is not None:
            us, last_id = decode_time_id_cursor(cursor, "notifications")
            args.extend([utc_from_us(us), last_id])
            where.append("(created_at, id) < ($3, $4)")
        async with self._connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_NOTIFICATION_COLUMNS} FROM notifications "
                f"WHERE {' AND '.join(where)} ORDER BY created_at DESC, id DESC LIMIT $2",
                *args,
            )
        return page_of(rows, limit, _notification, notification_cursor)

    @_retry_unsent
    async def mark_notification_read(self, user_id: str, notification_id: str) -> Notification:
        async with self._connection() as conn:
            row = await conn.fetchrow(
                "UPDATE notifications SET read_at = COALESCE(read_at, now()) "
                f"WHERE id = $1 AND user_id = $2 RETURNING {_NOTIFICATION_COLUMNS}",
                notification_id,
                user_id,
            )
        if row is None:
            raise NotFound(f"notification {notification_id!r} of {user_id!r}")
        return _notification(row)

    @_retry_unsent
    async def mark_all_read(self, user_id: str) -> int:
        async with self._connection() as conn:
            status = await conn.execute(
                "UPDATE notifications SET read_at = now() WHERE user_id = $1 AND read_at IS NULL",
                user_id,
            )
        return _row_count(status)

    # -- plumbing -----------------------------------------------------------------------

    def _require_pool(self) -> asyncpg.Pool[asyncpg.Record]:
        if self._pool is None:
            raise StoreUnavailable(f"{self!r} is not started (or already closed)")
        return self._pool

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; driver errors inside come out translated."""
        pool = self._require_pool()
        with _translate():
            async with pool.acquire() as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def _transaction(
        self, *, isolation: Isolation | None = None, readonly: bool = False
    ) -> AsyncIterator[Connection]:
        async with (
            self._connection() as conn,
            conn.transaction(isolation=isolation, readonly=readonly),
        ):
            yield conn


async def _keep_session(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Replaces the pool's reset query on release, saving a round trip per call.

    asyncpg still rolls back an open transaction itself. The reset query would also
    drop session state (settings, LISTEN, advisory locks, open cursors) that this store
    never leaves behind: cursors live in transactions, migrations have their own
    connection.
    """


async def _init_connection(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Run once per new connection: decode jsonb with orjson."""
    await conn.set_type_codec(
        "jsonb", schema="pg_catalog", encoder=dump_json, decoder=load_json_object, format="text"
    )


@contextlib.contextmanager
def _translate() -> Iterator[None]:
    """Re-raise asyncpg and socket errors as ``persistence.errors``."""
    try:
        yield
    except pgexc.UniqueViolationError as exc:
        raise Conflict(str(exc)) from exc
    except pgexc.ForeignKeyViolationError as exc:  # the project was deleted meanwhile
        raise NotFound(str(exc)) from exc
    except pgexc.DataError as exc:  # an argument the driver cannot encode: a caller bug
        raise ValueError(str(exc)) from exc
    except _UNAVAILABLE as exc:
        raise StoreUnavailable(str(exc) or type(exc).__name__) from exc
    except pgexc.PostgresError as exc:
        raise StoreError(str(exc)) from exc


async def _project_exists(conn: Connection, project_id: str) -> bool:
    return bool(await conn.fetchval("SELECT true FROM projects WHERE id = $1", project_id))


def _row_count(status: str) -> int:
    """The row count of a command status such as ``"DELETE 3"``."""
    return int(status.rsplit(" ", 1)[-1])


def _project(row: asyncpg.Record) -> Project:
    return Project(
        row["id"], row["name"], row["owner"], row["created_at"], row["updated_at"], row["read_only"]
    )


def _version(row: asyncpg.Record) -> Version:
    return Version(
        project_id=row["project_id"],
        version=row["version"],
        label=row["label"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        node_count=row["node_count"],
        edge_count=row["edge_count"],
        log_seq=row["log_seq"],
    )


def _notification(row: asyncpg.Record) -> Notification:
    return Notification(
        id=row["id"],
        user_id=row["user_id"],
        kind=row["kind"],
        payload=row["payload"],
        created_at=row["created_at"],
        read_at=row["read_at"],
    )
