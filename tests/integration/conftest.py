"""Fixtures of the REST integration tests: socket clients that are always closed, the
Node y-socket.io clients, and a server parametrized over both stores."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.integration.ysock import MainSock, YSock
from tests.server import InProcessServer, Rest, base_settings

SockFactory = Callable[..., Awaitable[YSock]]
MainFactory = Callable[..., Awaitable[MainSock]]


@pytest.fixture
async def ysocks() -> AsyncIterator[SockFactory]:
    """``await ysocks(url, project_id, token)``: a connected, synced ``YSock``."""
    opened: list[YSock] = []

    async def make(url: str, project_id: str, token: str, *, sync: bool = True) -> YSock:
        sock = YSock(url, project_id, token)
        opened.append(sock)
        return await sock.connect(sync=sync)

    try:
        yield make
    finally:
        for sock in opened:
            await sock.close()


@pytest.fixture
async def mainsocks() -> AsyncIterator[MainFactory]:
    """``await mainsocks(url, token)``: a socket on ``/`` recording notifications."""
    opened: list[MainSock] = []

    async def make(url: str, token: str) -> MainSock:
        sock = MainSock(url, token)
        opened.append(sock)
        return await sock.connect()

    try:
        yield make
    finally:
        for sock in opened:
            await sock.close()


ServerFactory = Callable[..., AbstractAsyncContextManager[InProcessServer]]


@pytest.fixture(params=["sqlite", "postgres"])
def store_kind(request: pytest.FixtureRequest) -> str:
    """Which store the server of this test uses."""
    return str(request.param)


@pytest.fixture
def server_factory(
    request: pytest.FixtureRequest, store_kind: str, tmp_path: Path
) -> ServerFactory:
    """``async with server_factory(**settings) as srv``: a server on this test's store."""

    # Resolved now: pg_dsn creates its database with asyncio.run (no loop may run yet).
    dsn = str(request.getfixturevalue("pg_dsn")) if store_kind == "postgres" else None

    def make(**overrides: Any) -> AbstractAsyncContextManager[InProcessServer]:
        if dsn is not None:
            overrides.setdefault("database_url", dsn)
        data_dir = tmp_path / f"srv-{len(list(tmp_path.iterdir()))}"
        data_dir.mkdir()
        return InProcessServer(base_settings(data_dir, **overrides))

    return make


@pytest.fixture
async def any_server(server_factory: ServerFactory) -> AsyncIterator[InProcessServer]:
    """The server on SQLite and on Postgres (database per run)."""
    async with server_factory() as srv:
        yield srv


@pytest.fixture
async def any_rest(any_server: InProcessServer) -> AsyncIterator[Rest]:
    client = Rest(any_server.url)
    try:
        yield client
    finally:
        await client.close()
