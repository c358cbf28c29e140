"""Schema migrations: numbered SQL files applied in order, each exactly once.

The files are package data, ``persistence/migrations/<dialect>/NNNN_name.sql``. Each
database records what it has applied in ``schema_migrations(name, applied_at)``, the
name being the file name without ``.sql``. Applying is idempotent and safe when several
processes start together:

* Postgres: the whole check-and-apply runs under a session advisory lock, and each
  migration (its SQL plus its ``schema_migrations`` row) is one transaction.
* SQLite: each migration is one ``BEGIN IMMEDIATE`` transaction (which takes the
  database's write lock) that re-checks ``schema_migrations`` before applying.

The stores call these from ``start()``; ``collab migrate`` calls them through
``Store.migrate()``.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import aiosqlite
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    PgConnection = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

Dialect = Literal["postgres", "sqlite"]

log = logging.getLogger("persistence.migrate")

# Key of the Postgres advisory lock held while migrating: any constant works as long as
# nothing else in the database uses it. This is the ASCII of "collabmg".
PG_MIGRATION_LOCK_KEY = 0x636F_6C6C_6162_6D67

_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    name: str  # the file name without ".sql", e.g. "0001_init"
    sql: str


@cache
def load_migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """The migrations of ``dialect`` in the order they apply.

    Raises ``RuntimeError`` for a badly named file or two files with one number.
    """
    folder = resources.files("persistence").joinpath("migrations", dialect)
    migrations: list[Migration] = []
    numbers: set[str] = set()
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise RuntimeError(f"migration file {dialect}/{entry.name}: bad name")
        if match.group(1) in numbers:
            raise RuntimeError(f"migration file {dialect}/{entry.name}: duplicate number")
        numbers.add(match.group(1))
        migrations.append(Migration(entry.name.removesuffix(".sql"), entry.read_text("utf-8")))
    return tuple(migrations)


# -- Postgres ---------------------------------------------------------------------------

_PG_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       text        PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


async def migrate_postgres(conn: PgConnection) -> list[str]:
    """Apply pending migrations on ``conn``; return the names this call applied."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", PG_MIGRATION_LOCK_KEY)
    try:
        await conn.execute(_PG_CREATE_TABLE)
        applied = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
        for migration in load_migrations("postgres"):
            if migration.name in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (name) VALUES ($1)", migration.name
                )
            log.info("applied migration %s", migration.name)
            applied_now.append(migration.name)
    finally:
        # A dead connection drops the lock by itself; don't mask the original error.
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", PG_MIGRATION_LOCK_KEY)
    return applied_now


# -- SQLite -----------------------------------------------------------------------------

_SQLITE_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    name       TEXT    PRIMARY KEY,
    applied_at INTEGER NOT NULL  -- microseconds since the Unix epoch, UTC
) STRICT
"""


def split_sqlite_script(script: str) -> list[str]:
    """Split a script into statements (``executescript`` would commit our transaction).

    Uses SQLite's own tokenizer (``complete_statement``), so semicolons inside strings
    and comments are handled. Raises ``ValueError`` for a trailing incomplete statement.
    """
    statements: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    leftover = "\n".join(
        s for s in (raw.strip() for raw in pending.splitlines()) if s and not s.startswith("--")
    )
    if leftover:
        raise ValueError(f"incomplete SQL statement at end of script: {leftover[:80]!r}")
    return statements


async def migrate_sqlite(db: aiosqlite.Connection, *, now_us: int) -> list[str]:
    """Apply pending migrations on ``db`` (autocommit mode, no open transaction).

    Returns the names this call applied. ``now_us`` stamps ``applied_at``.
    """
    applied = await _sqlite_applied(db)
    applied_now: list[str] = []
    for migration in load_migrations("sqlite"):
        if migration.name not in applied and await _sqlite_apply(db, migration, now_us):
            log.info("applied migration %s", migration.name)
            applied_now.append(migration.name)
    return applied_now


async def _sqlite_apply(db: aiosqlite.Connection, migration: Migration, now_us: int) -> bool:
    """Apply one migration in its own write transaction; False if already applied."""
    # BEGIN inside the try: a cancelled caller still queues the ROLLBACK behind it.
    try:
        await db.execute("BEGIN IMMEDIATE")
        await db.execute(_SQLITE_CREATE_TABLE)
        # Re-check under the write lock: another process may have applied it meanwhile.
        done = await db.execute_fetchall(
            "SELECT 1 FROM schema_migrations WHERE name = ?", (migration.name,)
        )
        if list(done):
            await db.commit()
            return False
        for statement in split_sqlite_script(migration.sql):
            await db.execute(statement)
        await db.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
            (migration.name, now_us),
        )
        await db.commit()
        return True
    except BaseException:
        await db.rollback()
        raise


async def _sqlite_applied(db: aiosqlite.Connection) -> set[str]:
    tables = await db.execute_fetchall(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    )
    if not list(tables):
        return set()
    rows = await db.execute_fetchall("SELECT name FROM schema_migrations")
    return {str(row[0]) for row in rows}
