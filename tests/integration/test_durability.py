"""Durability with Postgres: ack after commit, kill -9, Postgres restarts."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pycrdt
import pytest
import socketio

from tests.nodeclient import NodeClients
from tests.server import InProcessServer, Rest, ServerProcess, token, wait_for
from tests.services import PrivatePostgres

pytestmark = pytest.mark.slow


class Writer:
    """A Python client that writes one ``meta`` key per update (random node edits of
    other clients never touch ``meta``) and asks for the durable ack."""

    def __init__(self, url: str, project_id: str, tok: str) -> None:
        self.url = url
        self.ns = f"/yjs|{project_id}"
        self.tok = tok
        self.sio = socketio.AsyncClient(reconnection=False)
        self.doc: pycrdt.Doc[Any] = pycrdt.Doc()
        self.meta = self.doc.get("meta", type=pycrdt.Map)
        self._updates: list[bytes] = []
        self._sub = self.doc.observe(lambda e: self._updates.append(e.update))
        self.sio.on("sync-step-1", lambda _sv: b"\x00\x00", namespace=self.ns)

    async def connect(self) -> None:
        await self.sio.connect(
            self.url, namespaces=[self.ns], auth={"token": self.tok}, transports=["websocket"]
        )

    async def write(self, key: str, timeout: float = 10) -> Any:
        self.meta[key] = len(self._updates)
        update = self._updates[-1]
        return await self.sio.call("sync-update", update, namespace=self.ns, timeout=timeout)

    async def close(self) -> None:
        await self.sio.disconnect()

    async def write_until_gone(self, acked: list[str]) -> None:
        """Write ``w1``, ``w2``... until the server stops answering; every key whose ack
        said ok is appended to ``acked``."""
        i = 0
        while True:
            i += 1
            try:
                ack = await self.write(f"w{i}", timeout=5)
            except (socketio.exceptions.TimeoutError, socketio.exceptions.BadNamespaceError):
                return
            if isinstance(ack, dict) and ack.get("ok"):
                acked.append(f"w{i}")


@pytest.fixture
async def pg_rest(pg_server: InProcessServer) -> AsyncIterator[Rest]:
    rest = Rest(pg_server.url)
    yield rest
    await rest.close()


async def test_ack_arrives_only_after_the_row_is_visible(
    pg_server: InProcessServer, pg_rest: Rest, pg_dsn: str
) -> None:
    alice = token("alice")
    pid = await pg_rest.project(alice)
    writer = Writer(pg_server.url, pid, alice)
    await writer.connect()
    observer = await asyncpg.connect(pg_dsn)
    try:
        for i in range(1, 41):
            ack = await writer.write(f"n{i}")
            assert ack["ok"] is True
            assert isinstance(ack["seq"], int)
            # A second connection sees the row the moment the ack is in our hands.
            count = await observer.fetchval(
                "SELECT count(*) FROM doc_updates WHERE project_id = $1", pid
            )
            assert count >= i
            assert (
                await observer.fetchval(
                    "SELECT count(*) FROM doc_updates WHERE project_id = $1 AND seq = $2",
                    pid,
                    ack["seq"],
                )
                == 1
            )
    finally:
        await observer.close()
        await writer.close()


async def _graph(rest: Rest, pid: str, tok: str) -> dict[str, Any]:
    status, body = await rest.get(f"/projects/{pid}/graph", token=tok)
    assert status == 200, body
    return {k: body[k] for k in ("nodes", "edges", "meta")}


async def _all_committed(rest: Rest) -> bool:
    """Ready, and no update waits for the store."""
    status, body = await rest.root("/readyz")
    return status == 200 and body["checks"]["commits"]["pending"] == 0


async def _graph_in_a_fresh_server(
    env: dict[str, str], port: int, log_dir: Path, rest: Rest, pid: str, tok: str
) -> dict[str, Any]:
    """The graph as a new server process reads it back from the store."""
    srv = ServerProcess(env, port=port, name="fresh", log_dir=log_dir)
    await srv.start()
    try:
        return await _graph(rest, pid, tok)
    finally:
        await srv.stop()


async def test_kill_9_loses_no_acked_update_and_clients_converge_again(
    tmp_path: Path, pg_dsn: str, nc: NodeClients
) -> None:
    env = {"COLLAB_DATABASE_URL": pg_dsn, "COLLAB_DATA_DIR": str(tmp_path)}
    srv = ServerProcess(env, name="kill9", log_dir=tmp_path)
    await srv.start()
    rest = Rest(srv.url)
    alice = token("alice")
    try:
        pid = await rest.project(alice)
        for name in ("a", "b", "c"):
            await nc.open(name, url=srv.url, room=pid, token=alice)
            await nc.wait_synced(name)
        writer = Writer(srv.url, pid, alice)
        await writer.connect()
        acked: list[str] = []
        steady = asyncio.gather(
            writer.write_until_gone(acked),
            *(
                nc.random_edits(n, count=400, seed=k, interval_ms=10, timeout=60)
                for k, n in enumerate(("a", "b", "c"))
            ),
            return_exceptions=True,
        )
        await wait_for(lambda: len(acked) >= 50, timeout=30, message="50 acked updates")
        srv.kill()  # kill -9 mid-stream
        before_kill = list(acked)
        srv2 = ServerProcess(env, port=srv.port, name="kill9-restarted", log_dir=tmp_path)
        await srv2.start()
        try:
            graph = await _graph(rest, pid, alice)
            missing = [n for n in before_kill if n not in graph["meta"]]
            assert not missing, f"acked but lost: {missing}"
            await steady
            # The Node clients reconnected by themselves and pushed what the dead
            # instance had not stored: everyone converges with the server again.
            final = json.loads(await nc.wait_converged(["a", "b", "c"], timeout=30))

            async def server_equal() -> bool:
                g = await _graph(rest, pid, alice)
                return bool(g["nodes"] == final["nodes"] and g["edges"] == final["edges"])

            await wait_for(server_equal, timeout=15, message="server equal to the clients")
        finally:
            await writer.sio.disconnect()
            await srv2.stop()
    finally:
        await rest.close()
        srv.kill()


@dataclass
class PgSetup:
    """A private Postgres, a server process on it, a project, clients "a" and "b"."""

    pg: PrivatePostgres
    env: dict[str, str]
    srv: ServerProcess
    rest: Rest
    pid: str
    tok: str

    async def graph_in_a_fresh_server(self, log_dir: Path) -> dict[str, Any]:
        """Stop the server, then read the graph back through a new one."""
        await self.srv.stop()
        return await _graph_in_a_fresh_server(
            self.env, self.srv.port, log_dir, self.rest, self.pid, self.tok
        )


@contextlib.asynccontextmanager
async def two_clients_on_a_private_postgres(
    tmp_path: Path, nc: NodeClients, name: str, **env: str
) -> AsyncIterator[PgSetup]:
    pg = PrivatePostgres()
    await pg.start()
    try:
        full_env = {"COLLAB_DATABASE_URL": pg.dsn, "COLLAB_DATA_DIR": str(tmp_path), **env}
        srv = ServerProcess(full_env, name=name, log_dir=tmp_path)
        await srv.start()
        rest = Rest(srv.url)
        try:
            tok = token("alice")
            pid = await rest.project(tok)
            for client in ("a", "b"):
                await nc.open(client, url=srv.url, room=pid, token=tok)
                await nc.wait_synced(client)
            yield PgSetup(pg, full_env, srv, rest, pid, tok)
        finally:
            await srv.stop()
            await rest.close()
    finally:
        pg.cleanup()


async def test_postgres_restart_mid_editing_loses_nothing_and_editing_never_stops(
    tmp_path: Path, nc: NodeClients
) -> None:
    async with two_clients_on_a_private_postgres(tmp_path, nc, "pgrestart") as setup:
        pg, rest = setup.pg, setup.rest
        await nc.add_node("a", type="Before", x=0, y=0, node_id="before")
        await nc.wait_json("b", await nc.json_str("a"))

        pg.stop("immediate")
        # Live editing goes on while the database is down.
        for i in range(20):
            await nc.add_node("a", type="During", x=i, y=i, node_id=f"during{i}")
        await nc.edit("b", "set-meta", key="note", value="written while postgres was down")
        final = await nc.wait_converged(["a", "b"], timeout=15)

        async def not_ready() -> bool:
            status, _ = await rest.root("/readyz")
            return status == 503

        await wait_for(not_ready, timeout=15, message="/readyz reports the outage")

        await pg.start()

        await wait_for(
            lambda: _all_committed(rest),
            timeout=30,
            message="backlog committed after postgres returned",
        )
        # A fresh server process reads everything back from Postgres.
        assert await setup.graph_in_a_fresh_server(tmp_path) == json.loads(final)


async def test_updates_refused_while_the_backlog_was_full_are_pulled_back_after_recovery(
    tmp_path: Path, nc: NodeClients
) -> None:
    """Past the in-memory bound, edits are refused (an error event; the stock client
    keeps them). Once Postgres is back, the server re-sends sync-step-1 to its clients,
    which answer with what it lacks: no reconnect needed, nothing lost."""
    async with two_clients_on_a_private_postgres(
        tmp_path, nc, "pgbound", COLLAB_MAX_PENDING_UPDATES="3"
    ) as setup:
        setup.pg.stop("immediate")
        mark = nc.mark()
        for i in range(8):
            await nc.add_node("a", type="During", x=i, y=i, node_id=f"during{i}")
        err = await nc.wait_event("a", "server-error", after=mark, timeout=15)
        assert err.data["payload"]["error"]["code"] == "UNAVAILABLE"
        # b has only what the server accepted.
        b_nodes = json.loads(await nc.json_str("b"))["nodes"]
        assert len(b_nodes) < 8

        await setup.pg.start()
        final = await nc.json_str("a")
        await nc.wait_json("b", final, timeout=30)
        await wait_for(lambda: _all_committed(setup.rest), timeout=30, message="all committed")

        graph = await setup.graph_in_a_fresh_server(tmp_path)
        assert sorted(graph["nodes"]) == [f"during{i}" for i in range(8)]
        assert graph["nodes"] == json.loads(final)["nodes"]
