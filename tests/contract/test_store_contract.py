"""The Store contract: one suite, run against every implementation (ids ``sqlite``,
``postgres``).

Postgres tests share the run's database (``pg_dsn``), so every test makes its own
projects and users with ``new_id()``; tests about migrations get a database of their
own. SQLite tests get a file in ``tmp_path``. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiosqlite
import asyncpg
import pytest

from persistence.base import LoadedDoc, LogEntry, Page, Store
from persistence.errors import Conflict, NotFound, StoreUnavailable
from persistence.migrate import Dialect, load_migrations, migrate_postgres, migrate_sqlite
from persistence.postgres import PostgresStore
from persistence.sqlite import SqliteStore
from tests.conftest import PG_ADMIN_DSN, _with_database, new_id

_ZERO = timedelta(0)  # the UTC offset every timestamp must carry
REPO_ROOT = Path(__file__).resolve().parents[2]


# -- fixtures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One database of one backend."""

    kind: Dialect
    make: Callable[[], Store]  # a new, not yet started, store on this database
    applied: Callable[[], Awaitable[list[str]]]  # schema_migrations, read directly
    migrate_raw: Callable[[], Awaitable[list[str]]]  # migrate.py on its own connection

    @property
    def migrations(self) -> list[str]:
        """Every migration of this backend, in order."""
        return [m.name for m in load_migrations(self.kind)]


def _sqlite_target(path: Path) -> Target:
    async def applied() -> list[str]:
        async with aiosqlite.connect(path) as db:
            rows = await db.execute_fetchall("SELECT name FROM schema_migrations ORDER BY name")
        return [row[0] for row in rows]

    async def migrate_raw() -> list[str]:
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(path, isolation_level=None) as db:
            await db.execute("PRAGMA busy_timeout = 10000")
            return await migrate_sqlite(db, now_us=time.time_ns() // 1000)

    return Target("sqlite", lambda: SqliteStore(str(path)), applied, migrate_raw)


def _pg_target(dsn: str) -> Target:
    async def applied() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY name")
        finally:
            await conn.close()
        return [row["name"] for row in rows]

    async def migrate_raw() -> list[str]:
        conn = await asyncpg.connect(dsn)
        try:
            return await migrate_postgres(conn)
        finally:
            await conn.close()

    return Target("postgres", lambda: PostgresStore(dsn, max_size=4), applied, migrate_raw)


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def _fresh_pg_database() -> Iterator[str]:
    """A new, empty database, dropped afterwards (sync: runs outside the test's loop)."""
    name = f"collab_test_{new_id('fresh').replace('-', '_')}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(PG_ADMIN_DSN, name)
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", "postgres"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def target(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """The database the store under test uses (Postgres: shared by the run)."""
    if kind == "sqlite":
        return _sqlite_target(tmp_path / "db" / "collab.sqlite3")
    return _pg_target(request.getfixturevalue("pg_dsn"))


@pytest.fixture
def fresh_target(kind: str, tmp_path: Path) -> Iterator[Target]:
    """An empty database of this test alone."""
    if kind == "sqlite":
        yield _sqlite_target(tmp_path / "fresh" / "collab.sqlite3")
        return
    with _fresh_pg_database() as dsn:
        yield _pg_target(dsn)


@contextlib.asynccontextmanager
async def started(store: Store) -> AsyncIterator[Store]:
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
async def store(target: Target) -> AsyncIterator[Store]:
    async with started(target.make()) as s:
        yield s


async def _project(store: Store, owner: str | None = None) -> str:
    project_id = new_id()
    await store.create_project(project_id, "Project", owner or new_id("u"))
    return project_id


# -- lifecycle and migrations ---------------------------------------------------------


async def test_store_satisfies_the_protocol(store: Store) -> None:
    assert isinstance(store, Store)
    assert store.kind in ("sqlite", "postgres")
    await store.ping()


async def test_migrations_from_empty_then_rerun_applies_nothing(fresh_target: Target) -> None:
    assert await fresh_target.migrate_raw() == fresh_target.migrations
    assert await fresh_target.applied() == fresh_target.migrations
    assert await fresh_target.migrate_raw() == []
    async with started(fresh_target.make()) as store:  # start() migrates: nothing left
        assert await store.migrate() == []
        await _project(store)
    assert await fresh_target.applied() == fresh_target.migrations


async def test_start_on_empty_database_migrates(fresh_target: Target) -> None:
    async with started(fresh_target.make()) as store:
        assert await fresh_target.applied() == fresh_target.migrations
        assert await store.migrate() == []


async def test_concurrent_migrations_on_fresh_database_do_not_collide(
    fresh_target: Target,
) -> None:
    results = await asyncio.gather(*(fresh_target.migrate_raw() for _ in range(3)))
    assert sorted(results) == [[], [], fresh_target.migrations]
    assert await fresh_target.applied() == fresh_target.migrations


async def test_concurrent_starts_on_fresh_database(fresh_target: Target) -> None:
    stores = [fresh_target.make() for _ in range(3)]
    async with contextlib.AsyncExitStack() as stack:
        await asyncio.gather(*(stack.enter_async_context(started(s)) for s in stores))
        assert await fresh_target.applied() == fresh_target.migrations
        assert await asyncio.gather(*(s.migrate() for s in stores)) == [[], [], []]
        project_id = await _project(stores[0])
        assert (await stores[2].get_project(project_id)).id == project_id


async def test_start_twice_and_use_before_start_are_refused(target: Target) -> None:
    store = target.make()
    # Using a store that is not (or no longer) started is an outage for its callers:
    # REST answers 503 rather than an internal error.
    with pytest.raises(StoreUnavailable, match="not started"):
        await store.get_project("x")
    async with started(store):
        with pytest.raises(RuntimeError, match="already started"):
            await store.start()


async def test_second_store_on_same_database_sees_committed_rows(
    store: Store, target: Target
) -> None:
    project_id = await _project(store)
    await store.append_updates([(project_id, b"u1"), (project_id, b"u2")])
    async with started(target.make()) as other:
        doc = await other.load_document(project_id)
    assert [e.update for e in doc.updates] == [b"u1", b"u2"]


# -- projects and members -------------------------------------------------------------


async def test_create_get_rename_project(store: Store) -> None:
    project_id, owner = new_id(), new_id("u")
    created = await store.create_project(project_id, "First", owner)
    assert (created.id, created.name, created.owner) == (project_id, "First", owner)
    assert created.created_at.utcoffset() is not None  # timezone-aware
    assert created.created_at.utcoffset() == created.updated_at.utcoffset() == _ZERO
    assert await store.get_project(project_id) == created

    renamed = await store.rename_project(project_id, "Second")
    assert renamed.name == "Second"
    assert renamed.created_at == created.created_at
    assert renamed.updated_at >= created.updated_at
    assert await store.get_project(project_id) == renamed


async def test_read_only_flag_is_stored_and_listed(store: Store) -> None:
    owner, member = new_id("u"), new_id("u")
    project_id = await _project(store, owner)
    await store.set_member(project_id, member, "editor")
    assert (await store.get_project(project_id)).read_only is False
    frozen = await store.set_read_only(project_id, True)
    assert frozen.read_only is True
    assert await store.get_project(project_id) == frozen
    for user in (owner, member):  # both branches of the listing carry the flag
        (listing,) = (await store.list_projects(user, limit=10)).items
        assert listing.project == frozen
    assert (await store.set_read_only(project_id, False)).read_only is False
    assert (await store.get_project(project_id)).read_only is False
    with pytest.raises(NotFound):
        await store.set_read_only(new_id(), True)


async def test_project_errors(store: Store) -> None:
    project_id = await _project(store)
    with pytest.raises(Conflict):
        await store.create_project(project_id, "Again", new_id("u"))
    missing = new_id()
    with pytest.raises(NotFound):
        await store.get_project(missing)
    with pytest.raises(NotFound):
        await store.rename_project(missing, "x")
    with pytest.raises(NotFound):
        await store.delete_project(missing)
    with pytest.raises(NotFound):
        await store.get_role(missing, new_id("u"))
    with pytest.raises(NotFound):
        await store.list_members(missing)
    with pytest.raises(NotFound):
        await store.set_member(missing, new_id("u"), "editor")
    with pytest.raises(NotFound):
        await store.remove_member(missing, new_id("u"))


async def test_members_and_roles(store: Store) -> None:
    owner, editor, viewer = new_id("u-a"), new_id("u-b"), new_id("u-c")
    project_id = await _project(store, owner)
    project = await store.get_project(project_id)

    added = await store.set_member(project_id, viewer, "editor")
    assert (added.user_id, added.role) == (viewer, "editor")
    changed = await store.set_member(project_id, viewer, "viewer")
    assert (changed.role, changed.added_at) == ("viewer", added.added_at)
    await store.set_member(project_id, editor, "editor")

    assert await store.get_role(project_id, owner) == "owner"
    assert await store.get_role(project_id, editor) == "editor"
    assert await store.get_role(project_id, viewer) == "viewer"
    assert await store.get_role(project_id, new_id("u")) is None

    members = await store.list_members(project_id)
    assert [(m.user_id, m.role) for m in members] == [
        (owner, "owner"),
        (editor, "editor"),
        (viewer, "viewer"),
    ]
    assert members[0].added_at == project.created_at

    with pytest.raises(Conflict):
        await store.set_member(project_id, owner, "viewer")
    with pytest.raises(ValueError, match="role"):
        await store.set_member(project_id, editor, "owner")  # type: ignore[arg-type]

    assert await store.remove_member(project_id, editor) is True
    assert await store.remove_member(project_id, editor) is False
    assert await store.remove_member(project_id, owner) is False
    assert await store.get_role(project_id, editor) is None
    assert [m.user_id for m in await store.list_members(project_id)] == [owner, viewer]


async def test_list_projects_owned_and_member_newest_first(store: Store) -> None:
    user, other = new_id("u"), new_id("u")
    a = await _project(store, user)
    b = await _project(store, other)
    await store.set_member(b, user, "viewer")
    c = await _project(store, other)
    await store.set_member(c, user, "editor")
    d = await _project(store, user)
    await _project(store, other)  # not the user's

    page = await store.list_projects(user, limit=10)
    assert [(x.project.id, x.role) for x in page.items] == [
        (d, "owner"),
        (c, "editor"),
        (b, "viewer"),
        (a, "owner"),
    ]
    assert page.next_cursor is None

    # Appending updates bumps updated_at: the project moves to the front.
    before = (await store.get_project(b)).updated_at
    await store.append_updates([(b, b"edit")])
    assert (await store.get_project(b)).updated_at > before
    page = await store.list_projects(user, limit=10)
    assert [x.project.id for x in page.items] == [b, d, c, a]
    assert await store.list_projects(new_id("u"), limit=10) == Page([], None)


async def test_list_projects_pages_with_a_stable_cursor(store: Store) -> None:
    user = new_id("u")
    ids = [await _project(store, user) for _ in range(5)]
    newest_first = ids[::-1]

    first = await store.list_projects(user, limit=2)
    assert [x.project.id for x in first.items] == newest_first[:2]
    assert first.next_cursor is not None
    await _project(store, user)  # a newer project does not shift the later pages
    second = await store.list_projects(user, limit=2, cursor=first.next_cursor)
    assert [x.project.id for x in second.items] == newest_first[2:4]
    assert second.next_cursor is not None
    third = await store.list_projects(user, limit=2, cursor=second.next_cursor)
    assert [x.project.id for x in third.items] == newest_first[4:]
    assert third.next_cursor is None


async def test_bad_cursor_and_limit_are_refused(store: Store) -> None:
    project_id = await _project(store)
    user = new_id("u")
    with pytest.raises(ValueError, match="cursor"):
        await store.list_projects(user, limit=2, cursor="not a cursor")
    with pytest.raises(ValueError, match="cursor"):
        await store.list_notifications(user, unread_only=False, limit=2, cursor="AAAA")
    await store.create_version(
        project_id, state=b"s", label=None, created_by=None, node_count=0, edge_count=0, log_seq=0
    )
    await store.create_version(
        project_id, state=b"s", label=None, created_by=None, node_count=0, edge_count=0, log_seq=0
    )
    versions = await store.list_versions(project_id, limit=1)
    assert versions.next_cursor is not None
    with pytest.raises(ValueError, match="cursor"):  # a cursor of another listing
        await store.list_projects(user, limit=2, cursor=versions.next_cursor)
    with pytest.raises(ValueError, match="limit"):
        await store.list_projects(user, limit=0)


async def test_delete_project_cascades(store: Store) -> None:
    owner, member = new_id("u"), new_id("u")
    project_id = await _project(store, owner)
    await store.set_member(project_id, member, "editor")
    await store.append_updates([(project_id, b"u1"), (project_id, b"u2"), (project_id, b"u3")])
    fence = await store.acquire_compaction_lease(project_id, "w", 30)
    assert fence is not None
    assert await store.compact(project_id, fence=fence, snapshot=b"snap", through_seq=2)
    await store.create_version(
        project_id, state=b"v", label="v", created_by=owner, node_count=1, edge_count=0, log_seq=3
    )

    await store.delete_project(project_id)

    with pytest.raises(NotFound):
        await store.get_project(project_id)
    with pytest.raises(NotFound):
        await store.load_document(project_id)
    with pytest.raises(NotFound):
        await store.list_versions(project_id, limit=10)
    assert (await store.list_projects(member, limit=10)).items == []
    # The same id again starts from nothing: no log, snapshot, versions or members left.
    await store.create_project(project_id, "Reborn", owner)
    assert await store.load_document(project_id) == LoadedDoc(None, 0, [], 0)
    stats = await store.log_stats(project_id)
    assert (stats.rows, stats.bytes, stats.head_seq, stats.snapshot_seq) == (0, 0, 0, 0)
    assert await store.latest_version(project_id) is None
    assert await store.get_role(project_id, member) is None
    assert [m.user_id for m in await store.list_members(project_id)] == [owner]


# -- the update log -----------------------------------------------------------------------


async def test_append_assigns_per_project_seqs_in_input_order(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    assert (await store.append_updates([])).seqs == []
    result = await store.append_updates([(p, b"p1"), (q, b"q1"), (p, b"p2"), (p, b"p3")])
    assert result.seqs == [1, 1, 2, 3]
    result = await store.append_updates([(q, b"q2"), (p, b"p4")])
    assert result.seqs == [2, 4]

    doc = await store.load_document(p)
    assert doc == LoadedDoc(
        None, 0, [LogEntry(1, b"p1"), LogEntry(2, b"p2"), LogEntry(3, b"p3"), LogEntry(4, b"p4")], 4
    )
    assert [e.update for e in (await store.load_document(q)).updates] == [b"q1", b"q2"]
    stats = await store.log_stats(p)
    assert (stats.rows, stats.bytes, stats.head_seq, stats.snapshot_seq) == (4, 8, 4, 0)


async def test_append_for_deleted_project_drops_only_its_entries(store: Store) -> None:
    kept, gone = await _project(store), await _project(store)
    await store.delete_project(gone)
    result = await store.append_updates(
        [(kept, b"a"), (gone, b"x"), (kept, b"b"), (new_id(), b"y")]
    )
    assert result.seqs == [1, None, 2, None]
    assert [e.update for e in (await store.load_document(kept)).updates] == [b"a", b"b"]


async def test_append_keeps_binary_payloads_intact(store: Store) -> None:
    project_id = await _project(store)
    payloads = [bytes(range(256)), b"\x00", os.urandom(70_000)]
    await store.append_updates([(project_id, p) for p in payloads])
    doc = await store.load_document(project_id)
    assert [e.update for e in doc.updates] == payloads
    assert all(type(e.update) is bytes for e in doc.updates)


async def _append_concurrently(stores: list[Store], project_id: str) -> None:
    """Writers on ``stores`` append to one project; seqs must be gap-free and ordered."""
    writers, calls, per_call = 6, 15, 4

    async def writer(number: int) -> list[tuple[int, bytes]]:
        got: list[tuple[int, bytes]] = []
        store = stores[number % len(stores)]
        for call in range(calls):
            batch = [(project_id, f"w{number}c{call}u{k}".encode()) for k in range(per_call)]
            seqs = [s for s in (await store.append_updates(batch)).seqs if s is not None]
            assert seqs == list(range(seqs[0], seqs[0] + per_call))  # one batch, one run
            got.extend(zip(seqs, (update for _, update in batch), strict=True))
        # A writer's later calls commit later, so they get higher seqs.
        assert [s for s, _ in got] == sorted(s for s, _ in got)
        return got

    results = await asyncio.gather(*(writer(n) for n in range(writers)))
    assigned = dict(pair for got in results for pair in got)
    total = writers * calls * per_call
    assert sorted(assigned) == list(range(1, total + 1))
    doc = await stores[0].load_document(project_id)
    assert [e.seq for e in doc.updates] == list(range(1, total + 1))
    assert {e.seq: e.update for e in doc.updates} == assigned
    assert doc.head_seq == total


async def test_concurrent_appends_are_gap_free_and_ordered(store: Store) -> None:
    await _append_concurrently([store], await _project(store))


async def test_concurrent_appends_from_two_store_instances(store: Store, target: Target) -> None:
    project_id = await _project(store)
    async with started(target.make()) as other:
        await _append_concurrently([store, other], project_id)


async def test_concurrent_multi_project_batches_do_not_deadlock(
    store: Store, target: Target
) -> None:
    projects = [await _project(store) for _ in range(4)]
    async with started(target.make()) as other:

        async def writer(s: Store, order: list[str]) -> None:
            for _ in range(10):
                await s.append_updates([(p, b"x") for p in order])

        await asyncio.gather(
            writer(store, projects),
            writer(other, projects[::-1]),
            writer(store, projects[1:] + projects[:1]),
            writer(other, projects[::2] + projects[1::2]),
        )
    for p in projects:
        assert [e.seq for e in (await store.load_document(p)).updates] == list(range(1, 41))


async def test_cancelled_calls_leave_no_transaction_behind(store: Store, target: Target) -> None:
    project_id = await _project(store)
    for turns in range(12):  # cancel at a different point each time
        task = asyncio.create_task(store.append_updates([(project_id, b"x")] * 50))
        for _ in range(turns):
            await asyncio.sleep(0)  # one event-loop turn, not a timed wait
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await store.create_version(
            project_id,
            state=b"v",
            label=None,
            created_by=None,
            node_count=0,
            edge_count=0,
            log_seq=0,
        )
    [last] = (await store.append_updates([(project_id, b"last")])).seqs
    assert last is not None
    # Committed for everyone, and gap-free: each cancelled batch either wholly committed
    # or left no trace.
    async with started(target.make()) as other:
        doc = await other.load_document(project_id)
        versions = await other.list_versions(project_id, limit=100)
    assert [e.seq for e in doc.updates] == list(range(1, last + 1))
    assert doc.updates[-1].update == b"last"
    assert [v.version for v in versions.items] == list(range(12, 0, -1))


async def test_load_document_unknown_project(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.load_document(new_id())
    with pytest.raises(NotFound):
        await store.log_stats(new_id())


# -- snapshots and compaction -----------------------------------------------------------


async def _project_with_log(store: Store, n: int) -> str:
    project_id = await _project(store)
    await store.append_updates([(project_id, f"u{seq}".encode()) for seq in range(1, n + 1)])
    return project_id


def _entries(*seqs: int) -> list[LogEntry]:
    return [LogEntry(seq, f"u{seq}".encode()) for seq in seqs]


async def test_load_after_seq_returns_only_the_tail(store: Store) -> None:
    project_id = await _project_with_log(store, 5)
    assert await store.load_document(project_id, after_seq=2) == LoadedDoc(
        None, 2, _entries(3, 4, 5), 5
    )
    assert await store.load_document(project_id, after_seq=5) == LoadedDoc(None, 5, [], 5)
    with pytest.raises(ValueError, match="after_seq"):
        await store.load_document(project_id, after_seq=-1)


async def test_load_after_compaction_is_snapshot_plus_tail(store: Store) -> None:
    project_id = await _project_with_log(store, 5)
    fence = await store.acquire_compaction_lease(project_id, "worker", 30)
    assert fence is not None
    assert await store.compact(project_id, fence=fence, snapshot=b"S<=3", through_seq=3)

    full = LoadedDoc(b"S<=3", 3, _entries(4, 5), 5)
    assert await store.load_document(project_id) == full
    # Rows <= after_seq were compacted away: the snapshot and the tail after it.
    assert await store.load_document(project_id, after_seq=2) == full
    # The log still holds every row after after_seq: the tail alone.
    assert await store.load_document(project_id, after_seq=3) == LoadedDoc(
        None, 3, _entries(4, 5), 5
    )
    assert await store.load_document(project_id, after_seq=4) == LoadedDoc(None, 4, _entries(5), 5)
    stats = await store.log_stats(project_id)
    assert (stats.rows, stats.bytes, stats.head_seq, stats.snapshot_seq) == (2, 4, 5, 3)

    # Appends continue after the head; a second compaction replaces the snapshot.
    assert (await store.append_updates([(project_id, b"u6")])).seqs == [6]
    fence = await store.acquire_compaction_lease(project_id, "worker", 30)
    assert fence is not None
    assert await store.compact(project_id, fence=fence, snapshot=b"S<=6", through_seq=6)
    assert await store.load_document(project_id) == LoadedDoc(b"S<=6", 6, [], 6)
    assert await store.load_document(project_id, after_seq=6) == LoadedDoc(None, 6, [], 6)


async def test_compaction_lease_is_exclusive_and_released(store: Store) -> None:
    project_id = await _project_with_log(store, 3)
    first = await store.acquire_compaction_lease(project_id, "a", 30)
    assert first is not None
    assert await store.acquire_compaction_lease(project_id, "b", 30) is None
    assert await store.acquire_compaction_lease(project_id, "a", 30) is None

    await store.release_compaction_lease(project_id, first - 1)  # not the holder: no-op
    assert await store.acquire_compaction_lease(project_id, "b", 30) is None
    await store.release_compaction_lease(project_id, first)
    second = await store.acquire_compaction_lease(project_id, "b", 30)
    assert second is not None
    assert second > first

    # A released lease cannot compact; nor can a superseded fence.
    assert not await store.compact(project_id, fence=first, snapshot=b"S", through_seq=2)
    assert await store.compact(project_id, fence=second, snapshot=b"S", through_seq=2)
    assert not await store.compact(project_id, fence=second, snapshot=b"T", through_seq=3)
    assert await store.load_document(project_id) == LoadedDoc(b"S", 2, _entries(3), 3)

    # compact() released the lease.
    assert await store.acquire_compaction_lease(project_id, "c", 30) is not None

    with pytest.raises(NotFound):
        await store.acquire_compaction_lease(new_id(), "a", 30)
    assert not await store.compact(new_id(), fence=1, snapshot=b"S", through_seq=0)
    await store.release_compaction_lease(new_id(), 1)


async def test_lease_expires_and_a_stale_fence_changes_nothing(store: Store) -> None:
    project_id = await _project_with_log(store, 4)
    stale = await store.acquire_compaction_lease(project_id, "slow", 0.2)
    assert stale is not None

    # Poll until the 0.2 s lease has run out and someone else takes it over.
    deadline = time.monotonic() + 10
    fresh = None
    while fresh is None:
        assert time.monotonic() < deadline, "the lease never expired"
        await asyncio.sleep(0.05)
        fresh = await store.acquire_compaction_lease(project_id, "fast", 30)
    assert fresh > stale

    before = await store.load_document(project_id)
    assert not await store.compact(project_id, fence=stale, snapshot=b"STALE", through_seq=4)
    assert await store.load_document(project_id) == before
    assert (await store.log_stats(project_id)).rows == 4
    # The current holder still holds it, and can compact.
    assert await store.acquire_compaction_lease(project_id, "other", 30) is None
    assert await store.compact(project_id, fence=fresh, snapshot=b"S", through_seq=4)
    assert await store.load_document(project_id) == LoadedDoc(b"S", 4, [], 4)


async def test_compact_refuses_a_through_seq_out_of_range(store: Store) -> None:
    project_id = await _project_with_log(store, 3)
    fence = await store.acquire_compaction_lease(project_id, "w", 30)
    assert fence is not None
    with pytest.raises(ValueError, match="through_seq"):
        await store.compact(project_id, fence=fence, snapshot=b"S", through_seq=4)
    assert await store.compact(project_id, fence=fence, snapshot=b"S", through_seq=2)
    fence = await store.acquire_compaction_lease(project_id, "w", 30)
    assert fence is not None
    with pytest.raises(ValueError, match="through_seq"):  # behind the snapshot
        await store.compact(project_id, fence=fence, snapshot=b"T", through_seq=1)
    assert await store.load_document(project_id) == LoadedDoc(b"S", 2, _entries(3), 3)
    with pytest.raises(ValueError, match="ttl"):
        await store.acquire_compaction_lease(project_id, "w", 0)


# -- versions -----------------------------------------------------------------------------


async def _version(store: Store, project_id: str, label: str | None, log_seq: int = 0) -> int:
    version = await store.create_version(
        project_id,
        state=f"state of {label}".encode(),
        label=label,
        created_by="u-author",
        node_count=3,
        edge_count=2,
        log_seq=log_seq,
    )
    return version.version


async def test_versions_are_numbered_per_project(store: Store) -> None:
    p, q = await _project(store), await _project(store)
    assert await store.latest_version(p) is None
    assert [await _version(store, p, label, i) for i, label in enumerate("abc")] == [1, 2, 3]
    assert await _version(store, q, "other") == 1

    v2 = await store.get_version(p, 2)
    assert (v2.project_id, v2.version, v2.label, v2.created_by) == (p, 2, "b", "u-author")
    assert (v2.node_count, v2.edge_count, v2.log_seq) == (3, 2, 1)
    assert v2.created_at.utcoffset() == _ZERO
    assert await store.get_version_state(p, 2) == b"state of b"
    latest = await store.latest_version(p)
    assert latest is not None
    assert latest.version == 3

    unlabelled = await store.create_version(
        q, state=b"", label=None, created_by=None, node_count=0, edge_count=0, log_seq=7
    )
    assert (unlabelled.version, unlabelled.label, unlabelled.created_by) == (2, None, None)
    assert await store.get_version_state(q, 2) == b""


async def test_versions_list_newest_first_with_cursor(store: Store) -> None:
    project_id = await _project(store)
    for label in "abcde":
        await _version(store, project_id, label)
    seen: list[int] = []
    cursor: str | None = None
    while True:
        page = await store.list_versions(project_id, limit=2, cursor=cursor)
        seen.extend(v.version for v in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [5, 4, 3, 2, 1]
    assert (await store.list_versions(project_id, limit=5)).next_cursor is None
    empty = await _project(store)
    assert (await store.list_versions(empty, limit=5)).items == []


async def test_versions_not_found(store: Store) -> None:
    project_id = await _project(store)
    await _version(store, project_id, "a")
    with pytest.raises(NotFound):
        await store.get_version(project_id, 2)
    with pytest.raises(NotFound):
        await store.get_version_state(project_id, 2)
    missing = new_id()
    for call in (
        store.get_version(missing, 1),
        store.get_version_state(missing, 1),
        store.latest_version(missing),
        store.list_versions(missing, limit=1),
        store.create_version(
            missing, state=b"", label=None, created_by=None, node_count=0, edge_count=0, log_seq=0
        ),
    ):
        with pytest.raises(NotFound):
            await call


async def test_concurrent_versions_get_distinct_numbers(store: Store, target: Target) -> None:
    project_id = await _project(store)
    async with started(target.make()) as other:
        numbers = await asyncio.gather(
            *(_version(s, project_id, str(i)) for i in range(4) for s in (store, other))
        )
    assert sorted(numbers) == list(range(1, 9))


# -- notifications --------------------------------------------------------------------------


async def test_add_and_list_notifications(store: Store) -> None:
    alice, bob = new_id("u"), new_id("u")
    added = await store.add_notifications(
        [alice, bob], "added_to_project", {"project": "p", "n": 1}
    )
    assert [(n.user_id, n.kind, n.payload) for n in added] == [
        (alice, "added_to_project", {"project": "p", "n": 1}),
        (bob, "added_to_project", {"project": "p", "n": 1}),
    ]
    assert added[0].id != added[1].id
    assert added[0].read_at is None
    assert added[0].created_at.utcoffset() == _ZERO
    assert await store.add_notifications([], "nothing", {}) == []
    with pytest.raises(TypeError):
        await store.add_notifications([alice], "bad", {"not json": object()})

    later = await store.add_notifications([alice], "role_changed", {"role": "viewer"})
    page = await store.list_notifications(alice, unread_only=False, limit=10)
    assert page.items == [later[0], added[0]]
    assert page.next_cursor is None
    assert (await store.list_notifications(bob, unread_only=False, limit=10)).items == [added[1]]


async def test_notifications_page_newest_first(store: Store) -> None:
    user = new_id("u")
    one_by_one = [(await store.add_notifications([user], "k", {"i": i}))[0] for i in range(3)]
    same_time = await store.add_notifications([user] * 4, "k", {"batch": True})
    expected_ids = {n.id for n in one_by_one + same_time}

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = await store.list_notifications(user, unread_only=False, limit=2, cursor=cursor)
        seen.extend(n.id for n in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 7
    assert set(seen) == expected_ids
    assert seen[-3:] == [n.id for n in one_by_one[::-1]]  # the batch is newer


async def test_mark_read_and_unread_filter(store: Store) -> None:
    user, other = new_id("u"), new_id("u")
    first, second, third = [
        (await store.add_notifications([user], "k", {"i": i}))[0] for i in range(3)
    ]
    read = await store.mark_notification_read(user, second.id)
    assert read.read_at is not None
    assert read.read_at.utcoffset() == _ZERO
    again = await store.mark_notification_read(user, second.id)  # idempotent
    assert again == read

    unread = await store.list_notifications(user, unread_only=True, limit=10)
    assert [n.id for n in unread.items] == [third.id, first.id]
    unread_page = await store.list_notifications(user, unread_only=True, limit=1)
    assert unread_page.next_cursor is not None
    rest = await store.list_notifications(
        user, unread_only=True, limit=1, cursor=unread_page.next_cursor
    )
    assert [n.id for n in rest.items] == [first.id]

    with pytest.raises(NotFound):
        await store.mark_notification_read(other, first.id)  # not the other user's
    with pytest.raises(NotFound):
        await store.mark_notification_read(user, "no-such-notification")

    assert await store.mark_all_read(user) == 2
    assert await store.mark_all_read(user) == 0
    assert (await store.list_notifications(user, unread_only=True, limit=10)).items == []
    everything = await store.list_notifications(user, unread_only=False, limit=10)
    assert all(n.read_at is not None for n in everything.items)
    assert next(n for n in everything.items if n.id == second.id).read_at == read.read_at


# -- SQLite only ----------------------------------------------------------------------------

_KILL_AFTER_ACK = """
import asyncio, os, signal, sys
from persistence.sqlite import SqliteStore

async def main() -> None:
    store = SqliteStore(sys.argv[1])
    await store.start()
    await store.create_project("p-killed", "Killed", "u-owner")
    result = await store.append_updates([("p-killed", b"acked-1"), ("p-killed", b"acked-2")])
    print(result.seqs, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close(), no checkpoint, no atexit

asyncio.run(main())
"""


async def test_sqlite_acked_updates_survive_kill_9(tmp_path: Path) -> None:
    path = tmp_path / "killed" / "collab.sqlite3"
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _KILL_AFTER_ACK,
        str(path),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert out.decode().strip() == "[1, 2]"
    async with started(SqliteStore(str(path))) as store:
        doc = await store.load_document("p-killed")
    assert [e.update for e in doc.updates] == [b"acked-1", b"acked-2"]


async def test_sqlite_creates_directories_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "collab.sqlite3"
    async with started(SqliteStore(str(path))):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_sqlite_unusable_path_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    store = SqliteStore(str(blocker / "collab.sqlite3"))  # its "directory" is a file
    with pytest.raises(StoreUnavailable):
        await store.start()


# -- Postgres only --------------------------------------------------------------------------


async def test_postgres_start_fails_unavailable_and_can_be_retried() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/nothing")  # nobody listens
    for _ in range(2):  # nothing half-open is left behind: start() can run again
        with pytest.raises(StoreUnavailable):
            await store.start()
    await store.close()


async def test_postgres_pool_recovers_after_backends_are_terminated(pg_dsn: str) -> None:
    """What a Postgres restart does to a running store, minus the restart."""
    app_name = new_id("collab-contract")
    store = PostgresStore(f"{pg_dsn}?application_name={app_name}", min_size=2, max_size=2)
    async with started(store):
        project_id = await _project(store)
        for round_ in range(1, 4):
            # Hold both pool connections at once, so both are open when we kill them.
            await asyncio.gather(store.get_project(project_id), store.log_stats(project_id))
            admin = await asyncpg.connect(pg_dsn)
            try:
                # MATERIALIZED: pick the store's backends first, then kill only those.
                killed = await admin.fetchval(
                    "WITH mine AS MATERIALIZED ("
                    "    SELECT pid FROM pg_stat_activity WHERE application_name = $1) "
                    "SELECT array_agg(pid) FILTER (WHERE pg_terminate_backend(pid)) FROM mine",
                    app_name,
                )
                assert len(killed) == 2
                # Poll until both backends are gone, as after a restart. (The pool may
                # already be opening new ones: it keeps min_size connections open.)
                deadline = time.monotonic() + 10
                while await admin.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1::int[])", killed
                ):
                    assert time.monotonic() < deadline, "the backends did not exit"
            finally:
                await admin.close()

            # The pool replaces dead connections on acquire; a call that catches one
            # before the driver has seen it die fails once, as StoreUnavailable.
            failures = 0
            while True:
                try:
                    result = await store.append_updates([(project_id, b"after kill")])
                    break
                except StoreUnavailable:
                    failures += 1
                    assert failures <= 1, "the pool did not recover"
            assert result.seqs == [round_]
            await store.ping()
        assert len((await store.load_document(project_id)).updates) == 3
