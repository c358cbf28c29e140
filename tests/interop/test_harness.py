"""Tests of the node client harness itself, against the y-socket.io reference server.

If these fail, interop failures against our own server mean nothing: they check that
``tests/nodeclient.py`` + ``tests/js/yclient.mjs`` drive the real clients correctly.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any

import pycrdt
import pytest

from tests.interop.conftest import RefServer
from tests.nodeclient import UNSET, NodeClientError, NodeClients, NodeClientTimeout, Unset

pytestmark = pytest.mark.interop


def room() -> str:
    return f"harness-{secrets.token_hex(4)}"


async def open_synced(
    nc: NodeClients,
    server: RefServer,
    name: str,
    doc: str,
    awareness: Mapping[str, Any] | Unset | None = UNSET,
) -> int:
    client_id = await nc.open(
        name, url=server.url, room=doc, token=server.token, awareness=awareness
    )
    await nc.wait_synced(name)
    return client_id


async def test_three_clients_converge_after_concurrent_random_edits(
    nc: NodeClients, ref_server: RefServer
) -> None:
    doc = room()
    for name in ("a", "b", "c"):
        await open_synced(nc, ref_server, name, doc)
    for i in range(4):
        await nc.add_node("a", type="source", x=i * 100, y=0, params={"gain": 1}, node_id=f"n{i}")
    await nc.wait_converged(["a", "b", "c"])

    results = await asyncio.gather(
        nc.random_edits("a", count=60, seed=1, interval_ms=2),
        nc.random_edits("b", count=60, seed=2, interval_ms=2),
        nc.random_edits("c", count=60, seed=3, interval_ms=2),
    )
    for ops in results:
        assert sum(ops.values()) == 60
    final = await nc.wait_converged(["a", "b", "c"])

    assert final == await nc.json_str("b")
    states = [await nc.state(name) for name in ("a", "b", "c")]
    assert states[0].state_vector == states[1].state_vector == states[2].state_vector
    # the canonical JSON matches what pycrdt reads from the encoded state
    ydoc: pycrdt.Doc[Any] = pycrdt.Doc()
    ydoc.apply_update(states[2].update)
    nodes = ydoc.get("nodes", type=pycrdt.Map).to_py()
    assert nodes == (await nc.json("a"))["nodes"]
    assert len(nodes) > 4


async def test_offline_edits_arrive_after_reconnect(nc: NodeClients, ref_server: RefServer) -> None:
    doc = room()
    await open_synced(nc, ref_server, "a", doc)
    await open_synced(nc, ref_server, "b", doc)
    node = await nc.add_node("a", type="osc", x=0, y=0, params={"freq": 440})
    await nc.wait_json("b", await nc.json_str("a"))

    first = [e.data["status"] for e in nc.events("a", "status")]
    assert first == ["connecting", "connected"]

    mark = nc.mark()
    assert await nc.disconnect("a") is True
    await nc.wait_event("a", "status", after=mark, match={"status": "disconnected"})
    await nc.edit("a", "move", nodeId=node, x=50, y=60)
    await nc.edit("a", "set-param", nodeId=node, key="freq", value=880)
    other = await nc.add_node("a", type="filter", x=1, y=2)
    await nc.edit("a", "connect", source=node, sourceSocket="out", target=other, targetSocket="in")
    await nc.edit("b", "set-meta", key="title", value="from b while a is offline")
    offline = await nc.json("a")
    assert offline["nodes"][node]["x"] == 50
    assert "title" not in offline["meta"]
    assert (await nc.json("b"))["nodes"][node]["x"] == 0

    assert await nc.connect("a") is False
    await nc.wait_event("a", "synced", after=mark, match={"synced": True})
    final = await nc.wait_converged(["a", "b"])
    assert '"title":"from b while a is offline"' in final
    merged = await nc.json("b")
    assert merged["nodes"][node] == {
        "type": "osc",
        "x": 50,
        "y": 60,
        "params": {"freq": 880},
    }
    assert len(merged["edges"]) == 1
    kinds = [e.data.get("status") for e in nc.events("a", "status", after=mark)]
    assert kinds == ["disconnected", "connecting", "connected"]


async def test_transport_drop_reconnects_and_delivers_buffered_edits(
    nc: NodeClients, ref_server: RefServer
) -> None:
    doc = room()
    await open_synced(nc, ref_server, "a", doc)
    await open_synced(nc, ref_server, "b", doc)
    node = await nc.add_node("b", type="osc", x=0, y=0)
    await nc.wait_json("a", await nc.json_str("b"))

    mark = nc.mark()
    await nc.kill_transport("a")
    closed = await nc.wait_event("a", "connection-close", after=mark)
    assert closed.data["reason"] == "forced close"
    await nc.edit("a", "move", nodeId=node, x=7, y=8)  # buffered by socket.io-client
    await nc.wait_event("a", "reconnect-attempt", after=mark)
    await nc.wait_event("a", "synced", after=mark, match={"synced": True})
    await nc.wait_converged(["a", "b"])
    assert (await nc.json("b"))["nodes"][node]["x"] == 7


async def test_awareness_of_other_client_appears_and_updates(
    nc: NodeClients, ref_server: RefServer
) -> None:
    doc = room()
    a_id = await open_synced(nc, ref_server, "a", doc, awareness={"user": {"name": "Ana ä"}})
    # (a client left at the library's initial awareness state `{}` is invisible to the
    # others: that state has clock 0, which y-protocols' applyAwarenessUpdate ignores for
    # an unknown client, until the 15 s renewal. So b sets a state too.)
    b_id = await open_synced(nc, ref_server, "b", doc, awareness={"user": {"name": "Bo"}})
    assert await nc.client_id("a") == a_id

    states = await nc.wait_awareness("b", has_client_id=a_id)
    assert states[a_id] == {"user": {"name": "Ana ä"}}
    await nc.wait_awareness("a", has_client_id=b_id, count=2)

    cursor = {"user": {"name": "Ana ä"}, "cursor": {"x": 10, "y": 20}}
    await nc.set_awareness("a", cursor)
    await nc.wait_awareness("b", has_state=(a_id, cursor))
    assert (await nc.awareness("b"))[a_id] == cursor

    # a null local state is sent as a removal
    await nc.set_awareness("a", None)
    await nc.wait_awareness("b", lacks_client_id=a_id)
    assert a_id not in await nc.awareness("b")


async def test_rejected_handshake_is_reported(nc: NodeClients, ref_server: RefServer) -> None:
    await nc.open("x", url=ref_server.url, room=room(), token="wrong")
    err = await nc.wait_event("x", "connection-error")
    assert err.data["message"] == "Unauthorized"
    assert err.data["data"] is None
    with pytest.raises(NodeClientTimeout, match="not synced"):
        await nc.wait_synced("x", timeout=0.5)


async def test_server_error_and_notification_events_are_forwarded(
    nc: NodeClients, ref_server: RefServer
) -> None:
    await open_synced(nc, ref_server, "a", room())
    error = {"error": {"code": "bad_update", "message": "nope", "details": {"n": 1}}}
    await nc.emit_raw("a", "test-echo", args=["error", error])
    await nc.emit_raw("a", "test-echo", args=["notification", {"kind": "info", "text": "hi"}])
    got = await nc.wait_event("a", "server-error")
    assert got.data["payload"] == error
    note = await nc.wait_event("a", "notification")
    assert note.data["payload"] == {"kind": "info", "text": "hi"}


async def test_emit_raw_with_ack_returns_binary(nc: NodeClients, ref_server: RefServer) -> None:
    doc = room()
    await open_synced(nc, ref_server, "a", doc)
    await nc.edit("a", "set-meta", key="k", value="v")
    await open_synced(nc, ref_server, "b", doc)
    await nc.wait_converged(["a", "b"])
    # our own sync-step-1 with an empty state vector: the ack is the whole doc
    ack = await nc.emit_raw("b", "sync-step-1", b"\x00", ack=True)
    assert ack is not None
    assert len(ack) == 1
    update = ack[0]
    assert isinstance(update, bytes)
    ydoc: pycrdt.Doc[Any] = pycrdt.Doc()
    ydoc.apply_update(update)
    assert ydoc.get("meta", type=pycrdt.Map).to_py() == {"k": "v"}
    # an event nobody acks times out with a clear error
    with pytest.raises(NodeClientTimeout, match="no ack"):
        await nc.emit_raw("b", "no-such-event", b"\x01", ack=True, timeout=0.3)


async def test_command_errors_do_not_kill_the_process(
    nc: NodeClients, ref_server: RefServer
) -> None:
    await open_synced(nc, ref_server, "a", room())
    with pytest.raises(NodeClientError, match="no node"):
        await nc.edit("a", "move", nodeId="missing", x=1, y=1)
    with pytest.raises(NodeClientError, match="unknown edit op"):
        await nc.edit("a", "teleport")
    with pytest.raises(NodeClientError, match="unknown client"):
        await nc.json("nobody")
    with pytest.raises(NodeClientError, match="already exists"):
        await nc.open("a", url=ref_server.url, room=room(), token=ref_server.token)
    with pytest.raises(NodeClientError, match="unknown command"):
        await nc.request("bogus")
    assert await nc.ping() == nc.pid
    # big-insert writes a string of that size; the reply carries the update size
    reply = await nc.edit("a", "big-insert", bytes=50_000)
    assert reply["updateBytes"] > 50_000
    await nc.close_client("a")
    with pytest.raises(NodeClientError, match="unknown client"):
        await nc.json("a")


async def test_unreachable_server_times_out_with_context() -> None:
    # a bound but not listening port: connections are refused, and nobody can take it
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        port = closed_port.getsockname()[1]
        await _unreachable(f"http://127.0.0.1:{port}")


async def _unreachable(url: str) -> None:
    async with NodeClients(default_timeout=5) as nc:
        await nc.open("a", url=url, room=room())
        err = await nc.wait_event("a", "connection-error")
        assert err.data["type"] == "TransportError"
        with pytest.raises(NodeClientTimeout) as info:
            await nc.wait_synced("a", timeout=0.3)
        assert "not synced" in str(info.value)
        assert "node stderr" in str(info.value)
        pid = nc.pid
    assert nc.returncode is not None
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
