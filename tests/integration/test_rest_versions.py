"""REST: versions (manual and automatic), graph diffs of a scripted edit sequence, and
whole/partial restore seen live by an unmodified y-socket.io client. Every test runs on
SQLite and on Postgres."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from pycrdt import Map

from tests.integration.conftest import ServerFactory, SockFactory
from tests.integration.helpers import all_pages, expect_error, is_timestamp
from tests.nodeclient import NodeClients
from tests.server import InProcessServer, Rest, token

ALICE = token("alice", "Alice")
BOB = token("bob", "Bob")
CAROL = token("carol", "Carol")


async def setup_project(rest: Rest) -> str:
    """Alice's project, Bob an editor and Carol a viewer."""
    pid = await rest.project(ALICE, "versions")
    for user, role in (("bob", "editor"), ("carol", "viewer")):
        status, body = await rest.put(
            f"/projects/{pid}/members/{user}", {"role": role}, token=ALICE
        )
        assert status == 200, body
    return pid


async def save(rest: Rest, pid: str, label: str | None = None, tok: str = ALICE) -> dict[str, Any]:
    status, body = await rest.post(f"/projects/{pid}/versions", {"label": label}, token=tok)
    assert status == 201, body
    return dict(body)


async def versions(rest: Rest, pid: str, tok: str = ALICE) -> list[dict[str, Any]]:
    status, body = await rest.get(f"/projects/{pid}/versions?limit=200", token=tok)
    assert status == 200, body
    return list(body["items"])


async def current_graph(rest: Rest, pid: str) -> dict[str, Any]:
    status, body = await rest.get(f"/projects/{pid}/graph", token=ALICE)
    assert status == 200, body
    return dict(body)


def doc_part(graph: dict[str, Any]) -> dict[str, Any]:
    """What a client's document holds of a graph JSON (no ``problems``)."""
    return {"nodes": graph["nodes"], "edges": graph["edges"], "meta": graph.get("meta", {})}


VERSION_FIELDS = {"version", "label", "created_by", "created_at", "node_count", "edge_count"}


# -- manual versions -------------------------------------------------------------------


async def test_manual_version_metadata_and_counts(
    any_server: InProcessServer, any_rest: Rest, ysocks: SockFactory
) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    v1 = await save(rest, pid)
    assert set(v1) == VERSION_FIELDS
    assert (v1["version"], v1["label"], v1["created_by"]) == (1, None, "alice")
    assert (v1["node_count"], v1["edge_count"]) == (0, 0)
    assert is_timestamp(v1["created_at"])

    sock = await ysocks(any_server.url, pid, BOB)
    await sock.add_node("a", type="Source", x=0, y=0)
    await sock.add_node("b", type="Sink", x=50, y=0)
    await sock.connect_edge("ab", "a", "out", "b", "in")
    v2 = await save(rest, pid, "two nodes", tok=BOB)
    assert (v2["version"], v2["label"], v2["created_by"]) == (2, "two nodes", "bob")
    assert (v2["node_count"], v2["edge_count"]) == (2, 1)

    status, body = await rest.get(f"/projects/{pid}/versions/2", token=CAROL)
    assert status == 200, body
    assert set(body) == {*VERSION_FIELDS, "graph"}
    assert {k: body[k] for k in VERSION_FIELDS} == v2
    assert body["graph"] == {
        "nodes": {
            "a": {"type": "Source", "x": 0, "y": 0, "params": {}},
            "b": {"type": "Sink", "x": 50, "y": 0, "params": {}},
        },
        "edges": {
            "ab": {"source": "a", "sourceSocket": "out", "target": "b", "targetSocket": "in"}
        },
        "meta": {},
        "problems": [],
    }
    # a version is immutable: later edits do not show in it
    await sock.delete_node("b")
    status, again = await rest.get(f"/projects/{pid}/versions/2", token=ALICE)
    assert again == body
    status, body = await rest.get(f"/projects/{pid}/versions/1", token=ALICE)
    assert body["graph"] == {"nodes": {}, "edges": {}, "meta": {}, "problems": []}


async def test_manual_version_permissions_and_validation(any_rest: Rest) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    status, body = await rest.post(f"/projects/{pid}/versions", {"label": "x"}, token=CAROL)
    expect_error(status, body, 403, "FORBIDDEN")
    status, body = await rest.post(f"/projects/{pid}/versions", {}, token=token("dave"))
    expect_error(status, body, 403, "FORBIDDEN")
    for payload in ({"label": "x" * 201}, {"label": 5}, {"tag": "x"}):
        status, body = await rest.post(f"/projects/{pid}/versions", payload, token=ALICE)
        expect_error(status, body, 422, "VALIDATION_FAILED")
    status, body = await rest.post("/projects/nope/versions", {}, token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")
    assert await versions(rest, pid) == []
    status, body = await rest.get(f"/projects/{pid}/versions", token=token("dave"))
    expect_error(status, body, 403, "FORBIDDEN")


async def test_list_versions_newest_first_with_paging(any_rest: Rest) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    saved = [await save(rest, pid, f"v{i}") for i in range(1, 6)]
    status, body = await rest.get(f"/projects/{pid}/versions", token=CAROL)
    assert status == 200, body
    assert body["next_cursor"] is None
    assert body["items"] == saved[::-1]

    pages = await all_pages(rest, f"/projects/{pid}/versions", ALICE, limit=2)
    assert [[v["version"] for v in page] for page in pages] == [[5, 4], [3, 2], [1]]
    assert [v["label"] for page in pages for v in page] == ["v5", "v4", "v3", "v2", "v1"]


async def test_version_numbers_unknown_and_malformed(any_rest: Rest) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    await save(rest, pid)
    for path in ("versions/2", "versions/999999999", "versions/1/diff/2", "versions/2/diff/1"):
        status, body = await rest.get(f"/projects/{pid}/{path}", token=ALICE)
        expect_error(status, body, 404, "NOT_FOUND")
    for path in (
        "versions/abc",
        "versions/0",
        "versions/-1",
        "versions/1.0",
        "versions/1234567890",
        "versions/abc/diff/1",
        "versions/0/diff/current",
        "versions/1/diff/abc",
        "versions/1/diff/0",
    ):
        status, body = await rest.get(f"/projects/{pid}/{path}", token=ALICE)
        error = expect_error(status, body, 400, "BAD_REQUEST")
        assert "version" in error["details"], error
    status, body = await rest.post(f"/projects/{pid}/versions/abc/restore", {}, token=ALICE)
    expect_error(status, body, 400, "BAD_REQUEST")
    status, body = await rest.post(f"/projects/{pid}/versions/7/restore", {}, token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")


# -- automatic versions ----------------------------------------------------------------


async def wait_versions(
    rest: Rest, pid: str, predicate: Any, *, within: float = 10.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + within
    while True:
        items = await versions(rest, pid)
        if predicate(items):
            return items
        if time.monotonic() > deadline:
            raise TimeoutError(f"versions condition not met within {within} s: {items}")
        await asyncio.sleep(0.05)


async def test_auto_version_when_the_last_editor_leaves(
    any_server: InProcessServer, any_rest: Rest, ysocks: SockFactory
) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    a = await ysocks(any_server.url, pid, ALICE)
    b = await ysocks(any_server.url, pid, BOB)
    viewer = await ysocks(any_server.url, pid, CAROL)
    await a.add_node("n1", type="Osc", x=0, y=0)
    await b.add_node("n2", type="Out", x=1, y=0)
    await a.close()
    await asyncio.sleep(0.3)
    assert await versions(rest, pid) == []  # an editor is still there
    await b.close()  # the last editor (a viewer stays connected)
    items = await wait_versions(rest, pid, lambda items: len(items) == 1)
    v = items[0]
    assert (v["version"], v["label"], v["created_by"]) == (1, "auto: last editor left", None)
    assert (v["node_count"], v["edge_count"]) == (2, 0)
    assert viewer.sio.connected

    # no unsaved changes: leaving saves nothing
    c = await ysocks(any_server.url, pid, BOB)
    await c.add_node("n3", type="Osc", x=0, y=0)
    await save(rest, pid, "manual")
    await c.close()
    await asyncio.sleep(1.0)
    assert [v["label"] for v in await versions(rest, pid)] == ["manual", "auto: last editor left"]


async def test_periodic_auto_version(server_factory: ServerFactory, ysocks: SockFactory) -> None:
    # 0.01 min = 0.6 s of editing; rooms are checked every second.
    async with server_factory(auto_version_minutes=0.01) as srv:
        rest = Rest(srv.url)
        try:
            pid = await setup_project(rest)
            sock = await ysocks(srv.url, pid, BOB)
            await sock.add_node("n1", type="Osc", x=0, y=0)
            items = await wait_versions(rest, pid, lambda items: len(items) >= 1, within=10)
            assert (items[0]["label"], items[0]["created_by"]) == ("auto: periodic", None)
            assert items[0]["node_count"] == 1
            # nothing changed since: no further periodic versions
            await asyncio.sleep(2.0)
            assert len(await versions(rest, pid)) == 1
            # a new edit starts a new period
            await sock.add_node("n2", type="Osc", x=0, y=0)
            items = await wait_versions(rest, pid, lambda items: len(items) == 2, within=10)
            assert (items[0]["version"], items[0]["label"], items[0]["node_count"]) == (
                2,
                "auto: periodic",
                2,
            )
            assert sock.sio.connected
            await sock.close()  # before the server stops (it would wait for it)
        finally:
            await rest.close()


# -- diffs -----------------------------------------------------------------------------

BASE_GRAPH: dict[str, Any] = {
    "nodes": {
        "src": {"type": "Source", "x": 0, "y": 0, "params": {"rate": 48000}},
        "scale": {"type": "Scale", "x": 100, "y": 0, "params": {"factor": 1.0}},
        "out": {"type": "Output", "x": 300, "y": 0},
        "noise": {"type": "Noise", "x": 0, "y": 100, "params": {"level": 0.5}},
    },
    "edges": {
        "e1": {"source": "src", "sourceSocket": "out", "target": "scale", "targetSocket": "in"},
        "e2": {"source": "scale", "sourceSocket": "out", "target": "out", "targetSocket": "in"},
        "e3": {"source": "noise", "sourceSocket": "out", "target": "out", "targetSocket": "in2"},
    },
    "meta": {"name": "synth"},
}


async def test_diff_of_a_scripted_edit_sequence_is_exact(
    any_server: InProcessServer, any_rest: Rest, ysocks: SockFactory
) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    status, body = await rest.put(f"/projects/{pid}/graph", BASE_GRAPH, token=ALICE)
    assert status == 200, body
    before = await save(rest, pid, "before")

    sock = await ysocks(any_server.url, pid, BOB)
    await sock.add_node("delay", type="Delay", x=400, y=0, params={"time": 0.25})
    await sock.add_node("mix", type="Mixer", x=500, y=0, params={"inputs": 2})
    await sock.add_node("verb", type="Reverb", x=600, y=0, label="Hall")
    await sock.set_param("scale", "factor", 2.5)
    await sock.rewire("e2", target="mix", targetSocket="in1")

    def delete_noise(doc: Any) -> None:  # as an editor does: the node and its links
        del doc.get("nodes", type=Map)["noise"]
        del doc.get("edges", type=Map)["e3"]

    await sock.change(delete_noise)
    after = await save(rest, pid, "after", tok=BOB)
    assert (before["version"], after["version"]) == (1, 2)
    assert (after["node_count"], after["edge_count"]) == (6, 2)

    status, diff = await rest.get(f"/projects/{pid}/versions/1/diff/2", token=CAROL)
    assert status == 200, diff
    assert diff == {
        "from": 1,
        "to": 2,
        "nodes": {
            "added": [
                {
                    "id": "delay",
                    "node": {"type": "Delay", "x": 400, "y": 0, "params": {"time": 0.25}},
                },
                {"id": "mix", "node": {"type": "Mixer", "x": 500, "y": 0, "params": {"inputs": 2}}},
                {
                    "id": "verb",
                    "node": {"type": "Reverb", "x": 600, "y": 0, "params": {}, "label": "Hall"},
                },
            ],
            "removed": [
                {
                    "id": "noise",
                    "node": {"type": "Noise", "x": 0, "y": 100, "params": {"level": 0.5}},
                }
            ],
            "changed": [
                {
                    "id": "scale",
                    "name": "Scale",
                    "changes": {
                        "params": {
                            "added": {},
                            "removed": {},
                            "changed": {"factor": {"old": 1, "new": 2.5}},
                        }
                    },
                }
            ],
        },
        "edges": {
            "added": [],
            "removed": [
                {
                    "id": "e3",
                    "edge": {
                        "source": "noise",
                        "sourceSocket": "out",
                        "target": "out",
                        "targetSocket": "in2",
                    },
                }
            ],
            "rewired": [
                {
                    "id": "e2",
                    "old": {
                        "source": "scale",
                        "sourceSocket": "out",
                        "target": "out",
                        "targetSocket": "in",
                    },
                    "new": {
                        "source": "scale",
                        "sourceSocket": "out",
                        "target": "mix",
                        "targetSocket": "in1",
                    },
                }
            ],
            "changed": [],
        },
        "meta": {"added": {}, "removed": {}, "changed": {}},
        "summary": {
            "nodes_added": 3,
            "nodes_removed": 1,
            "nodes_changed": 1,
            "params_changed": 1,
            "edges_added": 0,
            "edges_removed": 1,
            "edges_rewired": 1,
            "edges_changed": 0,
            "meta_changed": 0,
        },
        "text": (
            "3 nodes added, 1 node removed, Scale.factor 1 → 2.5, 1 link removed, 1 link rewired"
        ),
    }

    # backwards, the same changes mirrored
    status, back = await rest.get(f"/projects/{pid}/versions/2/diff/1", token=ALICE)
    assert status == 200, back
    assert (back["from"], back["to"]) == (2, 1)
    assert back["text"] == (
        "1 node added, 3 nodes removed, Scale.factor 2.5 → 1, 1 link added, 1 link rewired"
    )
    status, same = await rest.get(f"/projects/{pid}/versions/2/diff/2", token=ALICE)
    assert (same["text"], same["summary"]["nodes_changed"]) == ("no changes", 0)

    # against the live document
    status, diff = await rest.get(f"/projects/{pid}/versions/2/diff/current", token=ALICE)
    assert status == 200, diff
    assert diff["to"] == "current"
    assert diff["text"] == "no changes"
    await sock.move("src", 10, 20.5)
    await sock.change(lambda doc: doc.get("meta", type=Map).__setitem__("name", "synth 2"))
    status, diff = await rest.get(f"/projects/{pid}/versions/2/diff/current", token=ALICE)
    assert status == 200, diff
    assert diff["nodes"] == {
        "added": [],
        "removed": [],
        "changed": [
            {
                "id": "src",
                "name": "Source",
                "changes": {"position": {"old": {"x": 0, "y": 0}, "new": {"x": 10, "y": 20.5}}},
            }
        ],
    }
    assert diff["meta"] == {
        "added": {},
        "removed": {},
        "changed": {"name": {"old": "synth", "new": "synth 2"}},
    }
    assert diff["text"] == '1 node moved, renamed "synth" → "synth 2"'
    status, diff = await rest.get(f"/projects/{pid}/versions/1/diff/current", token=ALICE)
    assert (diff["from"], diff["to"], diff["summary"]["nodes_added"]) == (1, "current", 3)


# -- restore ---------------------------------------------------------------------------

V1: dict[str, Any] = {
    "nodes": {
        "a": {"type": "Source", "x": 0, "y": 0, "params": {"rate": 48000}},
        "b": {"type": "Scale", "x": 100, "y": 0, "params": {"factor": 1}, "label": "Gain"},
        "c": {"type": "Output", "x": 200, "y": 0, "params": {}},
    },
    "edges": {
        "ab": {"source": "a", "sourceSocket": "out", "target": "b", "targetSocket": "in"},
        "bc": {"source": "b", "sourceSocket": "out", "target": "c", "targetSocket": "in"},
    },
    "meta": {"name": "v1"},
}
LATER: dict[str, Any] = {
    "nodes": {
        "a": {"type": "Source", "x": 5, "y": 5, "params": {"rate": 44100}},
        "b": {"type": "Scale", "x": 100, "y": 0, "params": {"factor": 3, "bias": 1}},
        "d": {"type": "Delay", "x": 300, "y": 0, "params": {}},
    },
    "edges": {
        "ad": {"source": "a", "sourceSocket": "out", "target": "d", "targetSocket": "in"},
        "ba": {"source": "b", "sourceSocket": "out", "target": "a", "targetSocket": "fm"},
    },
    "meta": {"name": "later"},
}


async def put_graph(rest: Rest, pid: str, graph: dict[str, Any]) -> dict[str, Any]:
    status, body = await rest.put(f"/projects/{pid}/graph", graph, token=ALICE)
    assert status == 200, body
    return dict(body)


@pytest.mark.interop
async def test_whole_and_partial_restore_seen_live_by_a_y_socket_io_client(
    any_server: InProcessServer, any_rest: Rest, nc: NodeClients
) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    await nc.open("bob", url=any_server.url, room=pid, token=BOB)
    await nc.wait_synced("bob")
    await put_graph(rest, pid, V1)
    v1 = await save(rest, pid, "first")
    await nc.wait_json("bob", V1)
    await put_graph(rest, pid, LATER)
    await nc.wait_json("bob", LATER)

    # whole restore
    status, body = await rest.post(f"/projects/{pid}/versions/1/restore", {}, token=ALICE)
    assert status == 200, body
    assert set(body) == {"restored_from", "nodes", "version", "graph"}
    assert (body["restored_from"], body["nodes"]) == (1, None)
    assert body["graph"] == {**V1, "problems": []}
    restored = body["version"]
    assert (restored["version"], restored["label"], restored["created_by"]) == (
        2,
        "restored from version 1",
        "alice",
    )
    assert (restored["node_count"], restored["edge_count"]) == (3, 2)
    await nc.wait_json("bob", V1)
    assert await current_graph(rest, pid) == {**V1, "problems": []}
    status, got = await rest.get(f"/projects/{pid}/versions/2", token=ALICE)
    assert got["graph"] == {**V1, "problems": []}

    # the Node client edits on top of the restored graph: still one live document
    await nc.edit("bob", "set-param", nodeId="c", key="gain", value=2)
    await put_graph(rest, pid, LATER)
    await nc.wait_json("bob", LATER)

    # partial restore: nodes a and b of version 1, and the edge between them
    status, body = await rest.post(
        f"/projects/{pid}/versions/{v1['version']}/restore", {"nodes": ["a", "b"]}, token=BOB
    )
    assert status == 200, body
    assert (body["restored_from"], body["nodes"]) == (1, ["a", "b"])
    assert (body["version"]["label"], body["version"]["created_by"]) == (
        "restored from version 1 (2 nodes)",
        "bob",
    )
    partial = {
        "nodes": {"a": V1["nodes"]["a"], "b": V1["nodes"]["b"], "d": LATER["nodes"]["d"]},
        "edges": {"ab": V1["edges"]["ab"], "ad": LATER["edges"]["ad"]},
        "meta": {"name": "later"},
    }
    assert doc_part(body["graph"]) == partial
    await nc.wait_json("bob", partial)
    assert doc_part(await current_graph(rest, pid)) == partial

    # a single node, listed but absent from the version: deleted with its links
    status, body = await rest.post(
        f"/projects/{pid}/versions/1/restore", {"nodes": ["d"]}, token=ALICE
    )
    assert status == 200, body
    assert body["version"]["label"] == "restored from version 1 (1 node)"
    only_ab = {**partial, "nodes": {"a": V1["nodes"]["a"], "b": V1["nodes"]["b"]}}
    only_ab["edges"] = {"ab": V1["edges"]["ab"]}
    await nc.wait_json("bob", only_ab)

    labels = [v["label"] for v in await versions(rest, pid)]
    assert labels[:3] == [
        "restored from version 1 (1 node)",
        "restored from version 1 (2 nodes)",
        "restored from version 1",
    ]


async def test_restore_notifies_the_other_members(any_rest: Rest) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    await put_graph(rest, pid, V1)
    await save(rest, pid)
    await put_graph(rest, pid, LATER)
    status, body = await rest.post(f"/projects/{pid}/versions/1/restore", {}, token=ALICE)
    assert status == 200, body
    new_version = body["version"]["version"]
    for user, tok in (("bob", BOB), ("carol", CAROL)):
        status, page = await rest.get("/notifications?unread=true", token=tok)
        assert status == 200, page
        # (the Postgres database is shared by the whole run: look at this project only)
        restored = [
            n
            for n in page["items"]
            if n["kind"] == "version.restored" and n["payload"]["project_id"] == pid
        ]
        assert len(restored) == 1, page
        assert restored[0]["user_id"] == user
        assert restored[0]["read_at"] is None
        assert restored[0]["payload"] == {
            "project_id": pid,
            "project_name": "versions",
            "from_version": 1,
            "version": new_version,
            "nodes": None,
            "by": "alice",
        }
    status, page = await rest.get("/notifications", token=ALICE)
    assert [n for n in page["items"] if n["payload"].get("project_id") == pid] == []


async def test_restore_permissions_and_validation(any_rest: Rest) -> None:
    rest = any_rest
    pid = await setup_project(rest)
    await put_graph(rest, pid, V1)
    await save(rest, pid)
    await put_graph(rest, pid, LATER)
    status, body = await rest.post(f"/projects/{pid}/versions/1/restore", {}, token=CAROL)
    expect_error(status, body, 403, "FORBIDDEN")
    for payload in ({"nodes": "a"}, {"nodes": [1]}, {"node": ["a"]}):
        status, body = await rest.post(f"/projects/{pid}/versions/1/restore", payload, token=ALICE)
        expect_error(status, body, 422, "VALIDATION_FAILED")
    assert doc_part(await current_graph(rest, pid)) == LATER
    assert len(await versions(rest, pid)) == 1
