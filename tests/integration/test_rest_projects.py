"""REST: projects, members, the graph (read and import), the session routes and the
operational endpoints, against a real in-process server (SQLite)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pycrdt import Map

from tests.conftest import new_id
from tests.integration.conftest import SockFactory
from tests.integration.helpers import all_pages, expect_error, is_timestamp
from tests.server import InProcessServer, Rest, base_settings, token

ALICE = token("alice", "Alice")
BOB = token("bob", "Bob")
CAROL = token("carol", "Carol")
ADMIN = token("root", "Root", admin=True)
SERVICE = token("svc", "Service", service=True)


async def add_member(rest: Rest, pid: str, user: str, role: str, tok: str = ALICE) -> None:
    status, body = await rest.put(f"/projects/{pid}/members/{user}", {"role": role}, token=tok)
    assert status == 200, body


# -- create / get / list ---------------------------------------------------------------


async def test_create_project_makes_the_caller_owner(rest: Rest) -> None:
    status, body = await rest.post("/projects", {"name": "  My graph  "}, token=ALICE)
    assert status == 201, body
    assert set(body) == {"id", "name", "owner", "created_at", "updated_at", "read_only", "role"}
    assert body["name"] == "My graph"  # trimmed
    assert body["owner"] == "alice"
    assert body["role"] == "owner"
    assert body["read_only"] is False
    assert is_timestamp(body["created_at"])
    assert is_timestamp(body["updated_at"])
    assert isinstance(body["id"], str)
    assert body["id"]

    status, got = await rest.get(f"/projects/{body['id']}", token=ALICE)
    assert status == 200, got
    assert got == body

    status, members = await rest.get(f"/projects/{body['id']}/members", token=ALICE)
    assert status == 200
    assert [(m["user_id"], m["role"]) for m in members["items"]] == [("alice", "owner")]


@pytest.mark.parametrize(
    "payload",
    [{}, {"name": ""}, {"name": "   "}, {"name": 7}, {"name": "x" * 201}, {"name": "a", "x": 1}],
)
async def test_create_project_validates_the_body(rest: Rest, payload: dict[str, Any]) -> None:
    status, body = await rest.post("/projects", payload, token=ALICE)
    error = expect_error(status, body, 422, "VALIDATION_FAILED")
    assert error["details"]["errors"], error
    assert all(e["path"].startswith("/") for e in error["details"]["errors"])


async def test_get_project_by_role(rest: Rest) -> None:
    pid = await rest.project(ALICE, "shared")
    await add_member(rest, pid, "bob", "editor")

    status, body = await rest.get(f"/projects/{pid}", token=BOB)
    assert status == 200, body
    assert (body["id"], body["owner"], body["role"]) == (pid, "alice", "editor")

    status, body = await rest.get(f"/projects/{pid}", token=ADMIN)
    assert status == 200, body
    assert body["role"] == "admin"

    status, body = await rest.get(f"/projects/{pid}", token=CAROL)
    error = expect_error(status, body, 403, "FORBIDDEN")
    assert error["details"]["project_id"] == pid

    status, body = await rest.get("/projects/no-such-project", token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")


async def test_list_my_projects_owned_and_member_with_paging(any_rest: Rest) -> None:
    # On both stores; user ids of this test alone (the Postgres database is per run).
    rest = any_rest
    alice, bob, carol = (new_id(name) for name in ("alice", "bob", "carol"))
    owned = [await rest.project(token(alice), f"mine {i}") for i in range(3)]
    bobs = await rest.project(token(bob), "bob's")
    await add_member(rest, bobs, alice, "viewer", tok=token(bob))
    carols = await rest.project(token(carol), "carol's")
    await add_member(rest, carols, alice, "editor", tok=token(carol))
    await rest.project(token(carol), "not alice's")

    status, body = await rest.get("/projects", token=token(alice))
    assert status == 200, body
    assert body["next_cursor"] is None
    roles = {p["id"]: p["role"] for p in body["items"]}
    assert roles == {**dict.fromkeys(owned, "owner"), bobs: "viewer", carols: "editor"}
    for item in body["items"]:
        assert set(item) == {"id", "name", "owner", "created_at", "updated_at", "read_only", "role"}
    owners = {p["id"]: p["owner"] for p in body["items"]}
    assert (owners[bobs], owners[carols], owners[owned[0]]) == (bob, carol, alice)

    for limit, sizes in ((2, [2, 2, 1]), (1, [1, 1, 1, 1, 1]), (5, [5])):
        pages = await all_pages(rest, "/projects", token(alice), limit=limit)
        assert [len(p) for p in pages] == sizes
        ids = [p["id"] for page in pages for p in page]
        assert ids == [p["id"] for p in body["items"]]  # same order, nothing twice or lost

    status, body = await rest.get("/projects", token=token(new_id("nobody")))
    assert (status, body) == (200, {"items": [], "next_cursor": None})
    status, body = await rest.get("/projects?limit=0", token=token(alice))
    expect_error(status, body, 400, "BAD_REQUEST")
    status, body = await rest.get("/projects?limit=201", token=token(alice))
    expect_error(status, body, 400, "BAD_REQUEST")


# -- rename / delete -------------------------------------------------------------------


async def test_rename_owner_and_admin_only(rest: Rest) -> None:
    pid = await rest.project(ALICE, "before")
    await add_member(rest, pid, "bob", "editor")
    await add_member(rest, pid, "carol", "viewer")

    status, body = await rest.patch(f"/projects/{pid}", {"name": "after"}, token=ALICE)
    assert status == 200, body
    assert (body["id"], body["name"], body["owner"]) == (pid, "after", "alice")
    status, got = await rest.get(f"/projects/{pid}", token=ALICE)
    assert got["name"] == "after"

    for tok in (BOB, CAROL):
        status, body = await rest.patch(f"/projects/{pid}", {"name": "hijack"}, token=tok)
        expect_error(status, body, 403, "FORBIDDEN")
    status, body = await rest.patch(f"/projects/{pid}", {"name": "by admin"}, token=ADMIN)
    assert status == 200, body
    status, body = await rest.patch(f"/projects/{pid}", {"name": ""}, token=ALICE)
    expect_error(status, body, 422, "VALIDATION_FAILED")
    status, body = await rest.patch("/projects/nope", {"name": "x"}, token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")
    status, got = await rest.get(f"/projects/{pid}", token=ALICE)
    assert got["name"] == "by admin"


async def test_delete_project_owner_or_admin_only(rest: Rest) -> None:
    pid = await rest.project(ALICE, "doomed")
    await add_member(rest, pid, "bob", "editor")
    await add_member(rest, pid, "carol", "viewer")
    for tok in (BOB, CAROL, token("dave")):
        status, body = await rest.delete(f"/projects/{pid}", token=tok)
        expect_error(status, body, 403, "FORBIDDEN")
    status, body = await rest.delete(f"/projects/{pid}", token=ALICE)
    assert (status, body) == (204, None)
    for tok in (ALICE, BOB):
        status, body = await rest.get(f"/projects/{pid}", token=tok)
        expect_error(status, body, 404, "NOT_FOUND")
    status, body = await rest.delete(f"/projects/{pid}", token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")
    other = await rest.project(BOB, "by admin")
    status, body = await rest.delete(f"/projects/{other}", token=ADMIN)
    assert status == 204, body
    status, body = await rest.get("/projects", token=BOB)
    assert [p["id"] for p in body["items"]] == []


async def test_delete_tells_and_disconnects_connected_clients(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid = await rest.project(ALICE, "doomed")
    await add_member(rest, pid, "bob", "editor")
    await add_member(rest, pid, "carol", "viewer")
    a = await ysocks(server.url, pid, ALICE)
    b = await ysocks(server.url, pid, BOB)
    c = await ysocks(server.url, pid, CAROL)
    await a.add_node("n1", type="Osc", x=0, y=0)

    status, body = await rest.delete(f"/projects/{pid}", token=ALICE)
    assert (status, body) == (204, None)
    for sock in (a, b, c):
        await sock.wait_disconnected(timeout=5)
        error = await sock.wait_error("NOT_FOUND", timeout=5)
        assert error["error"]["details"] == {"project_id": pid}
    for tok in (ALICE, BOB):
        status, body = await rest.get(f"/projects/{pid}", token=tok)
        expect_error(status, body, 404, "NOT_FOUND")
    status, body = await rest.get(f"/projects/{pid}/graph", token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")
    status, body = await rest.delete(f"/projects/{pid}", token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")
    status, body = await rest.get("/projects", token=BOB)
    assert pid not in [p["id"] for p in body["items"]]


# -- members ---------------------------------------------------------------------------


async def test_members_list_put_delete(rest: Rest) -> None:
    pid = await rest.project(ALICE, "team")
    status, body = await rest.put(f"/projects/{pid}/members/bob", {"role": "editor"}, token=ALICE)
    assert status == 200, body
    assert set(body) == {"user_id", "role", "added_at"}
    assert (body["user_id"], body["role"]) == ("bob", "editor")
    assert is_timestamp(body["added_at"])
    await add_member(rest, pid, "carol", "viewer")
    # changing a role keeps the member
    status, body = await rest.put(f"/projects/{pid}/members/bob", {"role": "viewer"}, token=ALICE)
    assert (status, body["role"]) == (200, "viewer")

    status, body = await rest.get(f"/projects/{pid}/members", token=CAROL)  # any member reads
    assert status == 200, body
    assert [(m["user_id"], m["role"]) for m in body["items"]] == [
        ("alice", "owner"),
        ("bob", "viewer"),
        ("carol", "viewer"),
    ]
    status, body = await rest.get(f"/projects/{pid}/members", token=token("dave"))
    expect_error(status, body, 403, "FORBIDDEN")

    status, body = await rest.delete(f"/projects/{pid}/members/carol", token=ALICE)
    assert (status, body) == (204, None)
    status, body = await rest.get(f"/projects/{pid}/members", token=ALICE)
    assert [m["user_id"] for m in body["items"]] == ["alice", "bob"]
    status, body = await rest.get(f"/projects/{pid}", token=CAROL)
    expect_error(status, body, 403, "FORBIDDEN")


async def test_members_owner_or_admin_only(rest: Rest) -> None:
    pid = await rest.project(ALICE, "team")
    await add_member(rest, pid, "bob", "editor")
    await add_member(rest, pid, "carol", "viewer")
    for tok in (BOB, CAROL):
        status, body = await rest.put(
            f"/projects/{pid}/members/dave", {"role": "viewer"}, token=tok
        )
        expect_error(status, body, 403, "FORBIDDEN")
        status, body = await rest.delete(f"/projects/{pid}/members/carol", token=tok)
        expect_error(status, body, 403, "FORBIDDEN")
    status, body = await rest.put(f"/projects/{pid}/members/dave", {"role": "viewer"}, token=ADMIN)
    assert (status, body["role"]) == (200, "viewer")
    status, body = await rest.delete(f"/projects/{pid}/members/dave", token=ADMIN)
    assert status == 204, body
    status, body = await rest.put(
        f"/projects/{pid}/members/dave", {"role": "viewer"}, token=SERVICE
    )
    assert status == 200, body


async def test_members_conflicts_and_validation(rest: Rest) -> None:
    pid = await rest.project(ALICE, "team")
    status, body = await rest.put(f"/projects/{pid}/members/alice", {"role": "viewer"}, token=ALICE)
    error = expect_error(status, body, 409, "CONFLICT")
    assert error["details"] == {"user_id": "alice"}
    status, body = await rest.delete(f"/projects/{pid}/members/alice", token=ALICE)
    expect_error(status, body, 409, "CONFLICT")
    status, body = await rest.delete(f"/projects/{pid}/members/nobody", token=ALICE)
    error = expect_error(status, body, 404, "NOT_FOUND")
    assert error["details"] == {"user_id": "nobody"}

    for payload in ({"role": "owner"}, {"role": "admin"}, {}, {"role": "editor", "x": 1}):
        status, body = await rest.put(f"/projects/{pid}/members/bob", payload, token=ALICE)
        error = expect_error(status, body, 422, "VALIDATION_FAILED")
        assert error["details"]["errors"], error
    status, body = await rest.put(f"/projects/{pid}/members/bob", {"role": "owner"}, token=ALICE)
    assert [e["path"] for e in body["error"]["details"]["errors"]] == ["/role"]
    status, body = await rest.put(
        f"/projects/{pid}/members/{'u' * 257}", {"role": "viewer"}, token=ALICE
    )
    # A bad path parameter is a bad request, like a bad version number or project id.
    expect_error(status, body, 400, "BAD_REQUEST")
    status, body = await rest.put("/projects/nope/members/bob", {"role": "viewer"}, token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")
    status, body = await rest.get(f"/projects/{pid}/members", token=ALICE)
    assert [m["user_id"] for m in body["items"]] == ["alice"]


async def test_removed_member_is_disconnected(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid = await rest.project(ALICE, "team")
    await add_member(rest, pid, "bob", "editor")
    b = await ysocks(server.url, pid, BOB)
    status, _ = await rest.delete(f"/projects/{pid}/members/bob", token=ALICE)
    assert status == 204
    await b.wait_disconnected(timeout=5)
    await b.wait_error("FORBIDDEN", timeout=5)


# -- graph -----------------------------------------------------------------------------


async def test_graph_get_is_exact_and_reports_a_concurrent_dangling_edge(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid = await rest.project(ALICE, "graph")
    await add_member(rest, pid, "bob", "editor")
    await add_member(rest, pid, "carol", "viewer")
    a = await ysocks(server.url, pid, ALICE)
    b = await ysocks(server.url, pid, BOB)
    await a.add_node("osc", type="Oscillator", x=0, y=10.5, params={"freq": 440, "wave": "sine"})
    await a.add_node("gain", type="Scale", x=200, y=10, params={"factor": 1.5}, label="Volume")
    await a.add_node("out", type="Output", x=400, y=0)
    await a.connect_edge("e1", "osc", "out", "gain", "in")
    await a.change(lambda doc: _set_meta(doc, "name", "demo"))
    await b.wait_graph(lambda g: "e1" in g["edges"] and g["meta"].get("name") == "demo")

    # A client that writes a node without a position: kept as is, reported.
    await b.change(lambda doc: doc.get("nodes", type=Map).__setitem__("odd", Map({"type": "X"})))

    # Concurrent edits: alice deletes the gain node and its link while bob, who has not
    # seen that yet, wires it to the output.
    b.pause()

    def delete_gain(doc: Any) -> None:
        del doc.get("nodes", type=Map)["gain"]
        del doc.get("edges", type=Map)["e1"]

    ack = await a.change(delete_gain)
    assert ack["ok"] is True
    ack = await b.connect_edge("e2", "gain", "out", "out", "in")
    assert ack["ok"] is True
    b.resume()

    expected = {
        "nodes": {
            "osc": {
                "type": "Oscillator",
                "x": 0,
                "y": 10.5,
                "params": {"freq": 440, "wave": "sine"},
            },
            "out": {"type": "Output", "x": 400, "y": 0, "params": {}},
            "odd": {"type": "X"},
        },
        "edges": {
            "e2": {"source": "gain", "sourceSocket": "out", "target": "out", "targetSocket": "in"},
        },
        "meta": {"name": "demo"},
        "problems": [
            {"kind": "dangling_edge", "edge": "e2", "missing": "gain"},
            {"kind": "invalid_node", "node": "odd", "reason": "x is missing"},
            {"kind": "invalid_node", "node": "odd", "reason": "y is missing"},
        ],
    }
    for tok in (ALICE, BOB, CAROL, ADMIN):
        status, body = await rest.get(f"/projects/{pid}/graph", token=tok)
        assert status == 200, body
        assert body == expected
    # both sockets converged to the same document
    for sock in (a, b):
        await sock.wait_graph(lambda g: g == expected)

    status, body = await rest.get(f"/projects/{pid}/graph", token=token("dave"))
    expect_error(status, body, 403, "FORBIDDEN")
    status, body = await rest.get("/projects/nope/graph", token=ALICE)
    expect_error(status, body, 404, "NOT_FOUND")


def _set_meta(doc: Any, key: str, value: Any) -> None:
    doc.get("meta", type=Map)[key] = value


IMPORT: dict[str, Any] = {
    "nodes": {
        "a": {"type": "Source", "x": 1, "y": 2, "params": {"rate": 48000}},
        "b": {"type": "Scale", "x": 100, "y": 2.5, "params": {"factor": 1}, "label": "Gain"},
        "c": {"type": "Sink", "x": 200, "y": 2, "color": "red"},
    },
    "edges": {
        "ab": {"source": "a", "sourceSocket": "out", "target": "b", "targetSocket": "in"},
        "bc": {"source": "b", "sourceSocket": "out", "target": "c", "targetSocket": "in"},
    },
    "meta": {"name": "imported"},
}
IMPORTED: dict[str, Any] = {
    "nodes": {
        "a": {"type": "Source", "x": 1, "y": 2, "params": {"rate": 48000}},
        "b": {"type": "Scale", "x": 100, "y": 2.5, "params": {"factor": 1}, "label": "Gain"},
        "c": {"type": "Sink", "x": 200, "y": 2, "color": "red", "params": {}},
    },
    "edges": IMPORT["edges"],
    "meta": {"name": "imported"},
    "problems": [],
}


async def test_graph_import_is_applied_live(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid = await rest.project(ALICE, "import")
    await add_member(rest, pid, "bob", "editor")
    watcher = await ysocks(server.url, pid, BOB)
    await watcher.add_node("old", type="Gone", x=0, y=0)

    status, body = await rest.put(f"/projects/{pid}/graph", IMPORT, token=ALICE)
    assert status == 200, body
    assert body == IMPORTED
    await watcher.wait_graph(lambda g: g == IMPORTED)
    status, body = await rest.get(f"/projects/{pid}/graph", token=BOB)
    assert body == IMPORTED

    # an editor imports too; importing the same graph again changes nothing
    status, body = await rest.put(f"/projects/{pid}/graph", IMPORT, token=BOB)
    assert (status, body) == (200, IMPORTED)
    # a materialized graph (with "problems") is accepted as input
    smaller = {**IMPORTED, "nodes": {k: v for k, v in IMPORTED["nodes"].items() if k != "c"}}
    smaller["edges"] = {"ab": IMPORT["edges"]["ab"]}
    status, body = await rest.put(f"/projects/{pid}/graph", smaller, token=ALICE)
    assert (status, body) == (200, smaller)
    await watcher.wait_graph(lambda g: g == smaller)


async def test_graph_import_invalid_lists_offending_paths(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid = await rest.project(ALICE, "import")
    status, body = await rest.put(f"/projects/{pid}/graph", IMPORT, token=ALICE)
    assert status == 200, body
    bad = {
        "nodes": {
            "ok": {"type": "A", "x": 0, "y": 0},
            "bad id!": {"type": "A", "x": 0, "y": 0},
            "n1": {"type": "", "x": "left", "y": 0, "params": []},
        },
        "edges": {
            "e1": {"source": "ok", "sourceSocket": "out", "target": "ghost", "targetSocket": "in"},
            "e2": {"source": "ok", "target": "n1", "targetSocket": 3},
        },
        "extra": True,
    }
    status, body = await rest.put(f"/projects/{pid}/graph", bad, token=ALICE)
    error = expect_error(status, body, 422, "VALIDATION_FAILED")
    paths = [e["path"] for e in error["details"]["errors"]]
    assert paths == [
        "/edges/e1/target",
        "/edges/e2/sourceSocket",
        "/edges/e2/targetSocket",
        "/extra",
        "/nodes/bad id!",
        "/nodes/n1/params",
        "/nodes/n1/type",
        "/nodes/n1/x",
    ]
    assert all(e["message"] for e in error["details"]["errors"])
    for payload, path in (
        ({"edges": {}}, "/nodes"),
        ({"nodes": [], "edges": {}}, "/nodes"),
        ({"nodes": {}, "edges": {}, "meta": 1}, "/meta"),
        ([], ""),
    ):
        status, body = await rest.put(f"/projects/{pid}/graph", payload, token=ALICE)
        error = expect_error(status, body, 422, "VALIDATION_FAILED")
        assert [e["path"] for e in error["details"]["errors"]] == [path], error
    # nothing was applied
    status, body = await rest.get(f"/projects/{pid}/graph", token=ALICE)
    assert body == IMPORTED


async def test_graph_import_forbidden_for_viewers(rest: Rest) -> None:
    pid = await rest.project(ALICE, "import")
    await add_member(rest, pid, "carol", "viewer")
    status, body = await rest.put(f"/projects/{pid}/graph", IMPORT, token=CAROL)
    expect_error(status, body, 403, "FORBIDDEN")
    status, body = await rest.put(f"/projects/{pid}/graph", IMPORT, token=token("dave"))
    expect_error(status, body, 403, "FORBIDDEN")
    status, body = await rest.get(f"/projects/{pid}/graph", token=CAROL)
    assert body == {"nodes": {}, "edges": {}, "meta": {}, "problems": []}


async def test_graph_import_too_large_is_413(server: InProcessServer, rest: Rest) -> None:
    from collab.api.base import MAX_BODY_BYTES

    pid = await rest.project(ALICE, "import")
    filler = "x" * (MAX_BODY_BYTES + 1024)
    raw = b'{"nodes": {}, "edges": {}, "meta": {"pad": "' + filler.encode() + b'"}}'
    async with rest.session.put(
        f"{server.url}/api/v1/projects/{pid}/graph",
        data=io.BytesIO(raw),
        headers={"Authorization": f"Bearer {ALICE}", "Content-Type": "application/json"},
    ) as r:
        status, body = r.status, await r.json()
        assert r.content_type == "application/json"
    error = expect_error(status, body, 413, "PAYLOAD_TOO_LARGE")
    assert error["details"] == {"max_bytes": MAX_BODY_BYTES}
    status, body = await rest.get(f"/projects/{pid}/graph", token=ALICE)
    assert body["meta"] == {}


async def test_graph_import_too_many_nodes_is_422(rest: Rest) -> None:
    pid = await rest.project(ALICE, "import")
    nodes = {f"n{i}": {"type": "A", "x": 0, "y": 0} for i in range(10_001)}
    status, body = await rest.put(
        f"/projects/{pid}/graph", {"nodes": nodes, "edges": {}}, token=ALICE
    )
    error = expect_error(status, body, 422, "VALIDATION_FAILED")
    assert [e["path"] for e in error["details"]["errors"]] == ["/nodes"]


# -- session ---------------------------------------------------------------------------


async def test_me(rest: Rest) -> None:
    status, body = await rest.get("/me", token=ALICE)
    assert status == 200, body
    assert set(body) == {"user_id", "name", "admin", "service", "expires_at", "development"}
    assert (body["user_id"], body["name"]) == ("alice", "Alice")
    assert (body["admin"], body["service"], body["development"]) == (False, False, False)
    assert isinstance(body["expires_at"], float)
    status, body = await rest.get("/me", token=ADMIN)
    assert (body["user_id"], body["admin"], body["service"]) == ("root", True, False)
    status, body = await rest.get("/me", token=SERVICE)
    assert (body["admin"], body["service"]) == (False, True)
    status, body = await rest.get("/me")
    expect_error(status, body, 401, "UNAUTHENTICATED")


async def test_dev_sign_in_is_404_outside_development_mode(rest: Rest) -> None:
    status, body = await rest.post("/dev/sign-in", {"user_id": "eve"})
    expect_error(status, body, 404, "NOT_FOUND")


async def test_dev_sign_in_in_development_mode(tmp_path: Path) -> None:
    async with InProcessServer(base_settings(tmp_path, dev_mode=True)) as srv:
        rest = Rest(srv.url)
        try:
            status, body = await rest.post("/dev/sign-in", {"user_id": "eve_smith"})
            assert status == 200, body
            assert set(body) == {"token", "user_id", "name", "admin"}
            assert (body["user_id"], body["name"], body["admin"]) == (
                "eve_smith",
                "Eve Smith",
                False,
            )
            status, me = await rest.get("/me", token=body["token"])
            assert status == 200, me
            assert (me["user_id"], me["name"], me["admin"], me["development"]) == (
                "eve_smith",
                "Eve Smith",
                False,
                True,
            )
            pid = await rest.project(body["token"], "dev")
            assert pid

            status, body = await rest.post(
                "/dev/sign-in", {"user_id": "boss", "name": "The Boss", "admin": True}
            )
            assert status == 200, body
            status, me = await rest.get("/me", token=body["token"])
            assert (me["name"], me["admin"]) == ("The Boss", True)

            for payload in ({}, {"user_id": "bad id"}, {"user_id": "x" * 65}):
                status, body = await rest.post("/dev/sign-in", payload)
                expect_error(status, body, 422, "VALIDATION_FAILED")
        finally:
            await rest.close()


# -- operations ------------------------------------------------------------------------


async def test_healthz_readyz_metrics(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid = await rest.project(ALICE)
    sock = await ysocks(server.url, pid, ALICE)
    await sock.add_node("n", type="A", x=0, y=0)
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as r:
            assert r.status == 200
            assert r.content_type == "application/json"
            assert await r.json() == {"status": "ok"}
        async with http.get(server.url + "/readyz") as r:
            assert r.status == 200
            body = await r.json()
            assert body["status"] == "ready"
            assert body["instance"] == server.settings.instance_id
            assert body["checks"]["store"] == {"ok": True, "kind": "sqlite"}
            assert body["checks"]["commits"]["ok"] is True
            assert body["checks"]["broker"]["ok"] is True
        async with http.get(server.url + "/metrics") as r:
            assert r.status == 200
            assert r.content_type == "text/plain"
            text = await r.text()
    for name in ("collab_connections", "collab_rooms", "collab_versions_total"):
        assert name in text
    assert "collab_connections 1.0" in text
    assert "collab_rooms 1.0" in text


async def test_readyz_is_503_when_the_store_is_down(server: InProcessServer) -> None:
    from collab.keys import SERVICES

    svc = server.app[SERVICES]
    original = svc.store.ping

    async def down() -> None:
        from persistence.errors import StoreUnavailable

        raise StoreUnavailable("database is down")

    svc.store.ping = down  # type: ignore[method-assign]
    try:
        async with aiohttp.ClientSession() as http, http.get(server.url + "/readyz") as r:
            assert r.status == 503
            body = await r.json()
        assert body["status"] == "unavailable"
        assert body["checks"]["store"]["ok"] is False
        assert body["checks"]["store"]["error"] == "database is down"
    finally:
        svc.store.ping = original  # type: ignore[method-assign]
