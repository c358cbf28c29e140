"""Unmodified npm clients (yjs + y-socket.io + socket.io-client, driven by Node)
against our server: co-editing, offline edits, presence, roles, auth, restart."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.nodeclient import NodeClients
from tests.server import InProcessServer, Rest, ServerProcess, token

pytestmark = pytest.mark.interop


def graph_part(graph: dict[str, Any]) -> dict[str, Any]:
    """What a client holds of the REST graph JSON (no ``problems``)."""
    return {"nodes": graph["nodes"], "edges": graph["edges"], "meta": graph["meta"]}


async def rest_graph(rest: Rest, pid: str, tok: str) -> dict[str, Any]:
    status, body = await rest.get(f"/projects/{pid}/graph", token=tok)
    assert status == 200, body
    return graph_part(body)


async def open_synced(nc: NodeClients, name: str, url: str, pid: str, tok: str, **kw: Any) -> int:
    cid = await nc.open(name, url=url, room=pid, token=tok, **kw)
    await nc.wait_synced(name)
    return cid


async def test_three_clients_converge_with_random_concurrent_edits(
    server: InProcessServer, rest: Rest, nc: NodeClients
) -> None:
    alice = token("alice")
    pid = await rest.project(alice)
    clients = ["a", "b", "c"]
    for name in clients:
        await open_synced(nc, name, server.url, pid, alice)
    # Seed a few nodes so that moves, params and connects have targets everywhere.
    for i in range(4):
        await nc.add_node("a", type="Scale", x=i * 10, y=0, params={"factor": 1}, node_id=f"s{i}")
    seeded = await nc.json_str("a")
    for name in clients[1:]:
        await nc.wait_json(name, seeded)

    import asyncio

    await asyncio.gather(
        *(
            nc.random_edits(name, count=60, seed=i + 1, interval_ms=5)
            for i, name in enumerate(clients)
        )
    )
    final = json.loads(await nc.wait_converged(clients, timeout=15))
    assert final["nodes"], "the random edits left nodes"
    assert await rest_graph(rest, pid, alice) == final


async def test_edits_made_offline_arrive_after_reconnect(
    server: InProcessServer, rest: Rest, nc: NodeClients
) -> None:
    alice, bob = token("alice"), token("bob")
    pid = await rest.project(alice)
    assert (await rest.put(f"/projects/{pid}/members/bob", {"role": "editor"}, token=alice))[
        0
    ] == 200
    await open_synced(nc, "a", server.url, pid, alice)
    await open_synced(nc, "b", server.url, pid, bob)

    await nc.disconnect("a")
    await nc.add_node("a", type="Offline", x=1, y=2, node_id="off1")
    await nc.edit("a", "set-meta", key="note", value="written offline")
    # Meanwhile b edits too: both must end up with both.
    await nc.add_node("b", type="Online", x=3, y=4, node_id="on1")
    mark = nc.mark()
    await nc.connect("a")
    await nc.wait_event("a", "synced", after=mark, match={"synced": True})
    final = json.loads(await nc.wait_converged(["a", "b"]))
    assert set(final["nodes"]) == {"off1", "on1"}
    assert final["meta"]["note"] == "written offline"
    assert await rest_graph(rest, pid, alice) == final


async def test_edits_during_a_network_drop_arrive(
    server: InProcessServer, rest: Rest, nc: NodeClients
) -> None:
    alice = token("alice")
    pid = await rest.project(alice)
    await open_synced(nc, "a", server.url, pid, alice)
    await open_synced(nc, "b", server.url, pid, alice)
    mark = nc.mark()
    await nc.kill_transport("a")
    await nc.add_node("a", type="Dropped", x=0, y=0, node_id="d1")
    await nc.wait_event("a", "synced", after=mark, match={"synced": True}, timeout=15)
    final = json.loads(await nc.wait_converged(["a", "b"]))
    assert "d1" in final["nodes"]
    assert await rest_graph(rest, pid, alice) == final


async def test_presence_appears_and_disappears_within_a_second_of_disconnect(
    server: InProcessServer, rest: Rest, nc: NodeClients
) -> None:
    import time

    alice, bob = token("alice", "Alice"), token("bob", "Bob")
    pid = await rest.project(alice)
    await rest.put(f"/projects/{pid}/members/bob", {"role": "viewer"}, token=alice)
    await open_synced(nc, "a", server.url, pid, alice, awareness={"cursor": {"x": 1, "y": 2}})
    b_id = await open_synced(
        nc,
        "b",
        server.url,
        pid,
        bob,
        awareness={"cursor": {"x": 5, "y": 6}, "user": {"name": "Mallory", "color": "#f00"}},
    )
    states = await nc.wait_awareness("a", has_client_id=b_id)
    # The server stamps the identity from the token: bob cannot pose as Mallory.
    assert states[b_id]["user"] == {"id": "bob", "name": "Bob", "color": "#f00"}
    assert states[b_id]["cursor"] == {"x": 5, "y": 6}

    await nc.set_awareness("b", {"cursor": {"x": 7, "y": 8}, "selected": ["n1"]})
    states = await nc.wait_awareness(
        "a",
        has_state=(
            b_id,
            {"cursor": {"x": 7, "y": 8}, "selected": ["n1"], "user": {"id": "bob", "name": "Bob"}},
        ),
    )

    started = time.monotonic()
    await nc.close_client("b")
    await nc.wait_awareness("a", lacks_client_id=b_id, timeout=1.0)
    assert time.monotonic() - started < 1.0


async def test_viewer_edits_are_refused_and_not_applied(
    server: InProcessServer, rest: Rest, nc: NodeClients
) -> None:
    alice, vic = token("alice"), token("vic")
    pid = await rest.project(alice)
    await rest.put(f"/projects/{pid}/members/vic", {"role": "viewer"}, token=alice)
    await open_synced(nc, "a", server.url, pid, alice)
    await open_synced(nc, "v", server.url, pid, vic)
    await nc.add_node("a", type="Real", x=0, y=0, node_id="real")
    await nc.wait_json("v", await nc.json_str("a"))  # the viewer receives edits

    mark = nc.mark()
    await nc.add_node("v", type="Forged", x=9, y=9, node_id="forged")
    err = await nc.wait_event("v", "server-error", after=mark)
    assert err.data["payload"]["error"]["code"] == "FORBIDDEN"
    graph = await rest_graph(rest, pid, alice)
    assert set(graph["nodes"]) == {"real"}
    # A later editor edit still flows, and never carries the viewer's node.
    await nc.add_node("a", type="Real2", x=1, y=1, node_id="real2")
    assert set((await rest_graph(rest, pid, alice))["nodes"]) == {"real", "real2"}
    assert "forged" not in (await nc.json("a"))["nodes"]

    # Reconnecting does not smuggle the edit in through the step-2 ack either.
    mark = nc.mark()
    await nc.kill_transport("v")
    err = await nc.wait_event("v", "server-error", after=mark, timeout=15)
    assert err.data["payload"]["error"]["code"] == "FORBIDDEN"
    assert "forged" not in (await rest_graph(rest, pid, alice))["nodes"]


@pytest.mark.parametrize(
    ("auth", "code"),
    [
        ({}, "UNAUTHENTICATED"),
        ({"token": "not-a-jwt"}, "UNAUTHENTICATED"),
        ({"token": token("alice", secret="some-other-secret-0123456789abcdef")}, "UNAUTHENTICATED"),
        ({"token": token("alice", ttl=-120)}, "UNAUTHENTICATED"),
        ({"token": 42}, "UNAUTHENTICATED"),
    ],
    ids=["none", "garbage", "wrong-key", "expired", "not-a-string"],
)
async def test_bad_token_gets_connect_error_with_code(
    server: InProcessServer, rest: Rest, nc: NodeClients, auth: dict[str, Any], code: str
) -> None:
    pid = await rest.project(token("alice"))
    await nc.open("x", url=server.url, room=pid, auth=auth)
    err = await nc.wait_event("x", "connection-error")
    assert err.data["data"]["error"]["code"] == code
    assert err.data["data"]["error"]["message"]


async def test_unknown_project_and_non_member(
    server: InProcessServer, rest: Rest, nc: NodeClients
) -> None:
    pid = await rest.project(token("alice"))
    await nc.open("x", url=server.url, room="does-not-exist", token=token("alice"))
    err = await nc.wait_event("x", "connection-error")
    assert err.data["data"]["error"]["code"] == "NOT_FOUND"
    await nc.open("y", url=server.url, room=pid, token=token("eve"))
    err = await nc.wait_event("y", "connection-error")
    assert err.data["data"]["error"]["code"] == "FORBIDDEN"


async def test_server_restart_loses_no_stored_edit(tmp_path: Path, nc: NodeClients) -> None:
    env = {"COLLAB_DATA_DIR": str(tmp_path / "data")}
    srv = ServerProcess(env, name="restart", log_dir=tmp_path)
    await srv.start()
    rest = Rest(srv.url)
    try:
        alice = token("alice")
        pid = await rest.project(alice)
        await open_synced(nc, "a", srv.url, pid, alice)
        await nc.random_edits("a", count=80, seed=7, interval_ms=2)
        before = await nc.json("a")
        # What the server holds equals what the client holds: every edit was accepted.
        await _wait_rest_equals(rest, pid, alice, before)
        await nc.disconnect("a")
        assert await srv.stop() == 0, srv.log_tail()

        srv2 = ServerProcess(env, port=srv.port, name="restart2", log_dir=tmp_path)
        await srv2.start()
        try:
            assert await rest_graph(rest, pid, alice) == before
            # A fresh client (no local state) gets it all from the server.
            await open_synced(nc, "fresh", srv2.url, pid, alice)
            await nc.wait_json("fresh", before)
        finally:
            await srv2.stop()
    finally:
        await rest.close()
        await srv.stop()


async def _wait_rest_equals(rest: Rest, pid: str, tok: str, expected: dict[str, Any]) -> None:
    from tests.server import wait_for

    async def same() -> bool:
        return await rest_graph(rest, pid, tok) == expected

    await wait_for(same, timeout=10, message="server graph equal to the client's")
