"""Shared fixtures: real Postgres and real Redis, isolated per test run.

Every run creates its own Postgres database (``collab_test_<run id>``, dropped at the
end) and its own Redis key prefix (``collabtest-<run id>-...``, deleted at the end),
so concurrent runs on one machine never see each other's data. The servers are found
at ``COLLAB_TEST_PG`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) and
``COLLAB_TEST_REDIS`` (default ``redis://127.0.0.1:6379/0``); ``scripts/test`` starts
them when they are not running.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

PG_ADMIN_DSN = os.environ.get("COLLAB_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("COLLAB_TEST_REDIS", "redis://127.0.0.1:6379/0")


def new_id(prefix: str = "p") -> str:
    """A fresh id that no other test (or run) uses."""
    return f"{prefix}-{secrets.token_hex(6)}"


@pytest.fixture(scope="session")
def run_id() -> str:
    return secrets.token_hex(4)


def _with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def pg_dsn(run_id: str) -> Iterator[str]:
    """DSN of a database created for this test run and dropped afterwards."""
    import asyncio

    name = f"collab_test_{run_id}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(PG_ADMIN_DSN, name)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url() -> str:
    return REDIS_URL


@pytest.fixture(scope="session")
def redis_run_prefix(run_id: str) -> Iterator[str]:
    """Key prefix of this run; every key under it is deleted at the end."""
    import asyncio

    prefix = f"collabtest-{run_id}"
    yield prefix

    async def cleanup() -> None:
        client = aioredis.from_url(REDIS_URL)
        try:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()

    asyncio.run(cleanup())


@pytest.fixture
def redis_prefix(redis_run_prefix: str) -> str:
    """A key prefix of this test alone."""
    return f"{redis_run_prefix}-{secrets.token_hex(3)}"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


# -- servers -------------------------------------------------------------------------

from tests.nodeclient import (  # noqa: E402
    NodeClients,
    NodeSetupError,
    check_node_modules,
    node_executable,
)
from tests.server import InProcessServer, Rest, base_settings  # noqa: E402


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    """The embedded default (SQLite, in-process broker), in this test's event loop."""
    async with InProcessServer(base_settings(tmp_path)) as srv:
        yield srv


@pytest.fixture
async def pg_server(tmp_path: Path, pg_dsn: str) -> AsyncIterator[InProcessServer]:
    """Postgres store, in-process broker."""
    async with InProcessServer(base_settings(tmp_path, database_url=pg_dsn)) as srv:
        yield srv


@pytest.fixture
async def rest(server: InProcessServer) -> AsyncIterator[Rest]:
    client = Rest(server.url)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def nc() -> AsyncIterator[NodeClients]:
    """A Node process hosting unmodified y-socket.io clients (tests/js/yclient.mjs);
    stopped, and checked for uncaught exceptions, at the end of the test."""
    try:
        node_executable()
        check_node_modules()
    except NodeSetupError as err:
        pytest.fail(str(err), pytrace=False)
    async with NodeClients() as clients:
        yield clients
