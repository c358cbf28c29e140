"""REST: notifications (send, list, read) and the admin room API (registry view,
snapshot, kick, close, read-only), with real sockets connected (SQLite)."""

from __future__ import annotations

from typing import Any

from collab.keys import SERVICES
from tests.conftest import new_id
from tests.integration.conftest import MainFactory, SockFactory
from tests.integration.helpers import all_pages, expect_error, is_timestamp
from tests.integration.ysock import YSock
from tests.server import InProcessServer, Rest, token, wait_for

ALICE = token("alice", "Alice")
BOB = token("bob", "Bob")
CAROL = token("carol", "Carol")
ADMIN = token("root", "Root", admin=True)
SERVICE = token("svc", "Service", service=True)

NOTIFICATION_FIELDS = {"id", "user_id", "kind", "payload", "created_at", "read_at"}


async def send(rest: Rest, users: list[str], kind: str, payload: dict[str, Any]) -> list[Any]:
    status, body = await rest.post(
        "/notifications", {"user_ids": users, "kind": kind, "payload": payload}, token=ADMIN
    )
    assert status == 201, body
    return list(body["items"])


# -- notifications ---------------------------------------------------------------------


async def test_send_notifications_admins_and_services_only(rest: Rest) -> None:
    body = {"user_ids": ["bob", "carol", "bob"], "kind": "ops.maintenance", "payload": {"at": 5}}
    status, sent = await rest.post("/notifications", body, token=ADMIN)
    assert status == 201, sent
    assert [(n["user_id"], n["kind"], n["payload"]) for n in sent["items"]] == [
        ("bob", "ops.maintenance", {"at": 5}),
        ("carol", "ops.maintenance", {"at": 5}),
    ]
    for n in sent["items"]:
        assert set(n) == NOTIFICATION_FIELDS
        assert n["read_at"] is None
        assert is_timestamp(n["created_at"])

    status, by_service = await rest.post(
        "/notifications", {"user_ids": ["bob"], "kind": "billing.due"}, token=SERVICE
    )
    assert status == 201, by_service
    assert [(n["user_id"], n["payload"]) for n in by_service["items"]] == [("bob", {})]

    for tok in (ALICE, BOB):
        status, refused = await rest.post("/notifications", body, token=tok)
        expect_error(status, refused, 403, "FORBIDDEN")
    status, refused = await rest.post("/notifications", body)
    expect_error(status, refused, 401, "UNAUTHENTICATED")

    for bad in (
        {"user_ids": [], "kind": "x"},
        {"user_ids": ["bob"], "kind": "has space"},
        {"user_ids": ["bob"], "kind": ""},
        {"user_ids": ["bob"], "kind": "x", "payload": []},
        {"kind": "x"},
    ):
        status, refused = await rest.post("/notifications", bad, token=ADMIN)
        expect_error(status, refused, 422, "VALIDATION_FAILED")

    status, page = await rest.get("/notifications", token=BOB)
    assert [n["kind"] for n in page["items"]] == ["billing.due", "ops.maintenance"]
    status, page = await rest.get("/notifications", token=CAROL)
    assert [n["id"] for n in page["items"]] == [sent["items"][1]["id"]]


async def test_list_unread_paging_and_mark_read(any_rest: Rest) -> None:
    # On both stores; user ids of this test alone (the Postgres database is per run).
    rest = any_rest
    nina_id, other_id = new_id("nina"), new_id("other")
    sent = [(await send(rest, [nina_id], "ping", {"i": i}))[0] for i in range(5)]
    await send(rest, [other_id], "ping", {"i": 99})
    nina = token(nina_id)
    newest_first = [n["id"] for n in reversed(sent)]

    pages = await all_pages(rest, "/notifications?unread=true", nina, limit=2)
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [n["id"] for page in pages for n in page] == newest_first

    status, one = await rest.post(f"/notifications/{sent[1]['id']}/read", token=nina)
    assert status == 200, one
    assert set(one) == NOTIFICATION_FIELDS
    assert one["id"] == sent[1]["id"]
    assert is_timestamp(one["read_at"])
    status, again = await rest.post(f"/notifications/{sent[1]['id']}/read", token=nina)
    assert (status, again) == (200, one)  # idempotent, the first read time stays

    status, unread = await rest.get("/notifications?unread=true", token=nina)
    assert [n["id"] for n in unread["items"]] == [i for i in newest_first if i != sent[1]["id"]]
    status, everything = await rest.get("/notifications?unread=false&limit=10", token=nina)
    assert [n["id"] for n in everything["items"]] == newest_first
    read_state = {n["id"]: n["read_at"] for n in everything["items"]}
    assert read_state[sent[1]["id"]] == one["read_at"]

    status, marked = await rest.post("/notifications/read-all", token=nina)
    assert (status, marked) == (200, {"marked": 4})
    status, marked = await rest.post("/notifications/read-all", token=nina)
    assert (status, marked) == (200, {"marked": 0})
    status, unread = await rest.get("/notifications?unread=true", token=nina)
    assert unread == {"items": [], "next_cursor": None}
    status, page = await rest.get("/notifications?unread=true", token=token(other_id))
    assert len(page["items"]) == 1  # someone else's are untouched


async def test_mark_read_of_another_users_notification_is_404(rest: Rest) -> None:
    [mine] = await send(rest, ["bob"], "ping", {})
    status, body = await rest.post(f"/notifications/{mine['id']}/read", token=CAROL)
    expect_error(status, body, 404, "NOT_FOUND")
    status, body = await rest.post(f"/notifications/{mine['id']}/read", token=ADMIN)
    expect_error(status, body, 404, "NOT_FOUND")
    status, body = await rest.post("/notifications/no-such-id/read", token=BOB)
    expect_error(status, body, 404, "NOT_FOUND")
    status, page = await rest.get("/notifications?unread=true", token=BOB)
    assert [n["id"] for n in page["items"]] == [mine["id"]]


async def test_query_validation(rest: Rest) -> None:
    for query in ("limit=0", "limit=201", "limit=x", "unread=maybe", "extra=1"):
        status, body = await rest.get(f"/notifications?{query}", token=BOB)
        expect_error(status, body, 400, "BAD_REQUEST")


async def test_unread_notifications_are_delivered_on_connect(
    server: InProcessServer, rest: Rest, mainsocks: MainFactory
) -> None:
    sent = [(await send(rest, ["bob"], "ping", {"i": i}))[0] for i in range(3)]
    status, _ = await rest.post(f"/notifications/{sent[0]['id']}/read", token=BOB)
    assert status == 200
    sock = await mainsocks(server.url, BOB)
    await wait_for(lambda: len(sock.notifications) >= 2, timeout=5, message="unread delivery")
    assert [n["id"] for n in sock.notifications] == [sent[1]["id"], sent[2]["id"]]  # oldest first
    assert sock.notifications[0]["payload"] == {"i": 1}
    assert set(sock.notifications[0]) == NOTIFICATION_FIELDS


async def test_notifications_are_pushed_live(
    server: InProcessServer, rest: Rest, mainsocks: MainFactory
) -> None:
    one = await mainsocks(server.url, BOB)
    two = await mainsocks(server.url, BOB)
    [sent] = await send(rest, ["bob"], "live.ping", {"x": 1})
    for sock in (one, two):
        await wait_for(lambda s=sock: s.notifications, timeout=5, message="live notification")
        assert [n["id"] for n in sock.notifications] == [sent["id"]]


async def test_server_notifies_members_of_project_events(rest: Rest) -> None:
    pid = await rest.project(ALICE, "notified")
    status, _ = await rest.put(f"/projects/{pid}/members/bob", {"role": "viewer"}, token=ALICE)
    assert status == 200
    status, _ = await rest.put(f"/projects/{pid}/members/bob", {"role": "editor"}, token=ALICE)
    status, _ = await rest.delete(f"/projects/{pid}/members/bob", token=ALICE)
    assert status == 204
    status, page = await rest.get("/notifications", token=BOB)
    kinds = [(n["kind"], n["payload"].get("role")) for n in reversed(page["items"])]
    assert kinds == [
        ("project.member_added", "viewer"),
        ("project.role_changed", "editor"),
        ("project.member_removed", None),
    ]
    added = page["items"][-1]["payload"]
    assert added == {
        "project_id": pid,
        "project_name": "notified",
        "role": "viewer",
        "previous_role": None,
        "by": "alice",
    }
    status, _ = await rest.put(f"/projects/{pid}/members/carol", {"role": "viewer"}, token=ALICE)
    status, _ = await rest.delete(f"/projects/{pid}", token=ALICE)
    assert status == 204
    status, page = await rest.get("/notifications", token=CAROL)
    assert page["items"][0]["kind"] == "project.deleted"
    assert page["items"][0]["payload"] == {
        "project_id": pid,
        "project_name": "notified",
        "by": "alice",
    }
    status, page = await rest.get("/notifications", token=ALICE)
    assert page["items"] == []  # nobody is told about their own action


# -- admin: rooms ----------------------------------------------------------------------


async def live_project(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> tuple[str, YSock, YSock]:
    """Alice's project with Bob an editor and Carol a viewer; Alice and Bob connected
    (Bob twice is not needed), two nodes and an edge."""
    pid = await rest.project(ALICE, "live")
    for user, role in (("bob", "editor"), ("carol", "viewer")):
        status, body = await rest.put(
            f"/projects/{pid}/members/{user}", {"role": role}, token=ALICE
        )
        assert status == 200, body
    a = await ysocks(server.url, pid, ALICE)
    b = await ysocks(server.url, pid, BOB)
    await a.add_node("n1", type="Osc", x=0, y=0)
    await b.add_node("n2", type="Out", x=10, y=0)
    await b.connect_edge("e1", "n1", "out", "n2", "in")
    return pid, a, b


async def wait_room(
    rest: Rest, pid: str, predicate: Any = lambda room: True, *, within: float = 10.0
) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        status, body = await rest.get("/admin/rooms", token=ADMIN)
        assert status == 200, body
        for room in body["rooms"]:
            if room["project_id"] == pid and predicate(room):
                return dict(room)
        return None

    room: dict[str, Any] = await wait_for(find, timeout=within, message=f"room {pid} listed")
    return room


async def test_admin_rooms_list_a_connected_room_with_users_and_counts(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid, _, _ = await live_project(server, rest, ysocks)
    viewer = await ysocks(server.url, pid, CAROL)
    assert viewer.sio.connected
    room = await wait_room(
        rest, pid, lambda r: r["connections"] == 3 and r["edge_count"] == 1, within=10
    )
    assert room["node_count"] == 2
    assert room["doc_bytes"] > 0
    assert room["read_only"] is False
    assert room["last_activity"] > 0
    assert [i["instance_id"] for i in room["instances"]] == [server.settings.instance_id]
    assert room["instances"][0]["connections"] == 3
    users = {u["id"]: u for u in room["users"]}
    assert sorted(users) == ["alice", "bob", "carol"]
    assert {uid: (u["name"], u["connections"]) for uid, u in users.items()} == {
        "alice": ("Alice", 1),
        "bob": ("Bob", 1),
        "carol": ("Carol", 1),
    }
    for u in room["users"]:
        assert u["instances"] == [server.settings.instance_id]
        assert isinstance(u["presence"], list)

    status, body = await rest.get(f"/admin/rooms/{pid}", token=ADMIN)
    assert status == 200, body
    assert body["project_id"] == pid
    assert body["connections"] == 3
    assert [u["id"] for u in body["users"]] == ["alice", "bob", "carol"]

    status, body = await rest.get("/admin/rooms", token=ADMIN)
    assert [i["instance_id"] for i in body["instances"]] == [server.settings.instance_id]
    for sort in ("activity", "connections", "updates", "size", "project"):
        status, body = await rest.get(f"/admin/rooms?sort={sort}", token=ADMIN)
        assert status == 200, body
        assert pid in [r["project_id"] for r in body["rooms"]]
    status, body = await rest.get("/admin/rooms?sort=bogus", token=ADMIN)
    expect_error(status, body, 400, "BAD_REQUEST")


async def test_admin_room_users_have_their_project_role(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid, _, _ = await live_project(server, rest, ysocks)
    await ysocks(server.url, pid, CAROL)
    room = await wait_room(rest, pid, lambda r: r["connections"] == 3)
    assert {u["id"]: u["role"] for u in room["users"]} == {
        "alice": "owner",
        "bob": "editor",
        "carol": "viewer",
    }


async def test_admin_rooms_leave_the_registry_when_the_room_unloads(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid, a, b = await live_project(server, rest, ysocks)
    await wait_room(rest, pid, lambda r: r["connections"] == 2)
    await a.close()
    await wait_room(rest, pid, lambda r: r["connections"] == 1)
    await b.close()

    async def gone() -> bool:
        _, body = await rest.get("/admin/rooms", token=ADMIN)
        return pid not in [r["project_id"] for r in body["rooms"]]

    await wait_for(gone, timeout=10, message="room dropped from the registry")
    status, body = await rest.get(f"/admin/rooms/{pid}", token=ADMIN)
    expect_error(status, body, 404, "NOT_FOUND")


async def test_admin_api_is_for_admins_only(rest: Rest) -> None:
    pid = await rest.project(ALICE, "mine")
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/admin/rooms", None),
        ("GET", f"/admin/rooms/{pid}", None),
        ("POST", f"/admin/rooms/{pid}/snapshot", None),
        ("POST", f"/admin/rooms/{pid}/kick", {"user_id": "bob"}),
        ("POST", f"/admin/rooms/{pid}/close", None),
        ("POST", f"/admin/rooms/{pid}/read-only", {"read_only": True}),
    ]
    for method, path, body in calls:
        for tok in (ALICE, SERVICE):  # even the project's owner, even a service
            status, got = await rest.request(method, path, body, token=tok)
            expect_error(status, got, 403, "FORBIDDEN")
        status, got = await rest.request(method, path, body)
        expect_error(status, got, 401, "UNAUTHENTICATED")
        unknown = path.replace(pid, "no-such-project")
        if unknown != path:
            status, got = await rest.request(method, unknown, body, token=ADMIN)
            expect_error(status, got, 404, "NOT_FOUND")
    for path, body in ((f"/admin/rooms/{pid}/kick", {}), (f"/admin/rooms/{pid}/read-only", {})):
        status, got = await rest.post(path, body, token=ADMIN)
        expect_error(status, got, 422, "VALIDATION_FAILED")


async def test_admin_snapshot_creates_a_version(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid, _, _ = await live_project(server, rest, ysocks)
    status, body = await rest.post(f"/admin/rooms/{pid}/snapshot", token=ADMIN)
    assert status == 201, body
    assert (body["version"], body["label"], body["created_by"]) == (
        1,
        "snapshot by an admin",
        "root",
    )
    assert (body["node_count"], body["edge_count"]) == (2, 1)
    status, listed = await rest.get(f"/projects/{pid}/versions", token=ALICE)
    assert listed["items"] == [body]
    # a project nobody has open is loaded for the snapshot
    idle = await rest.project(BOB, "idle")
    status, body = await rest.post(f"/admin/rooms/{idle}/snapshot", token=ADMIN)
    assert status == 201, body
    assert (body["version"], body["node_count"]) == (1, 0)


async def test_admin_kick_disconnects_only_that_user(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid, a, b = await live_project(server, rest, ysocks)
    b2 = await ysocks(server.url, pid, BOB)
    status, body = await rest.post(f"/admin/rooms/{pid}/kick", {"user_id": "bob"}, token=ADMIN)
    assert (status, body) == (200, {"ok": True, "affected": 0, "detail": {"user_id": "bob"}})
    for sock in (b, b2):
        await sock.wait_disconnected(timeout=5)
        error = await sock.wait_error("FORBIDDEN", timeout=5)
        assert error["error"]["details"] == {"reason": "kicked", "project_id": pid}
    assert a.sio.connected
    assert not a.errors
    await a.add_node("n3", type="Osc", x=0, y=0)


async def test_admin_close_disconnects_everyone(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid, a, b = await live_project(server, rest, ysocks)
    status, body = await rest.post(f"/admin/rooms/{pid}/close", token=ADMIN)
    assert (status, body["ok"]) == (200, True)
    for sock in (a, b):
        await sock.wait_disconnected(timeout=5)
        error = await sock.wait_error("UNAVAILABLE", timeout=5)
        assert error["error"]["details"] == {"reason": "closed", "project_id": pid}


async def test_admin_close_notifies_owner_and_members(rest: Rest) -> None:
    pid = await rest.project(ALICE, "closing")
    status, _ = await rest.put(f"/projects/{pid}/members/bob", {"role": "editor"}, token=ALICE)
    status, body = await rest.post(f"/admin/rooms/{pid}/close", token=ADMIN)
    assert (status, body) == (200, {"ok": True, "affected": 0, "detail": {}})
    for tok in (ALICE, BOB):
        status, page = await rest.get("/notifications", token=tok)
        closed = [n for n in page["items"] if n["kind"] == "room.closed"]
        assert [n["payload"] for n in closed] == [
            {"project_id": pid, "project_name": "closing", "by": "root"}
        ]


async def test_admin_read_only_refuses_edits_until_lifted(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid, a, b = await live_project(server, rest, ysocks)
    status, body = await rest.post(
        f"/admin/rooms/{pid}/read-only", {"read_only": True}, token=ADMIN
    )
    assert (status, body) == (200, {"ok": True, "affected": 0, "detail": {"read_only": True}})
    await wait_room(rest, pid, lambda r: r["read_only"] is True)

    mark = len(b.errors)
    ack = await b.add_node("blocked", type="Osc", x=0, y=0)
    assert ack["error"]["code"] == "FORBIDDEN", ack
    error = await b.wait_error("FORBIDDEN", after=mark, timeout=5)
    assert "read-only" in error["error"]["message"]
    status, graph = await rest.get(f"/projects/{pid}/graph", token=ALICE)
    assert "blocked" not in graph["nodes"]
    assert b.sio.connected  # refused, not disconnected

    status, body = await rest.post(
        f"/admin/rooms/{pid}/read-only", {"read_only": False}, token=ADMIN
    )
    assert status == 200, body
    await wait_room(rest, pid, lambda r: r["read_only"] is False)
    # (alice's socket: bob's document still holds the refused change, which the server
    # never took, so bob's next update would wait on it)
    ack = await a.add_node("allowed", type="Osc", x=0, y=0)
    assert ack["ok"] is True, ack
    status, graph = await rest.get(f"/projects/{pid}/graph", token=ALICE)
    assert "allowed" in graph["nodes"]


async def test_admin_read_only_outlives_the_room_and_covers_rest_changes(
    server: InProcessServer, rest: Rest, ysocks: SockFactory
) -> None:
    pid, _, _ = await live_project(server, rest, ysocks)
    status, version = await rest.post(f"/projects/{pid}/versions", {}, token=ALICE)
    assert status == 201, version
    status, body = await rest.post(
        f"/admin/rooms/{pid}/read-only", {"read_only": True}, token=ADMIN
    )
    assert status == 200, body
    status, project = await rest.get(f"/projects/{pid}", token=ALICE)
    assert project["read_only"] is True
    status, before = await rest.get(f"/projects/{pid}/graph", token=ALICE)

    # Everybody leaves and the room is unloaded; a room loaded later is still frozen.
    status, body = await rest.post(f"/admin/rooms/{pid}/close", {}, token=ADMIN)
    assert status == 200, body
    rooms = server.app[SERVICES].rooms

    async def unloaded() -> bool:
        return pid not in rooms.rooms

    await wait_for(unloaded, timeout=15, message="room unloaded after close")
    b2 = await ysocks(server.url, pid, BOB)
    mark = len(b2.errors)
    ack = await b2.add_node("blocked", type="Osc", x=0, y=0)
    assert ack["error"]["code"] == "FORBIDDEN", ack
    error = await b2.wait_error("FORBIDDEN", after=mark, timeout=5)
    assert "read-only" in error["error"]["message"]

    # REST changes are refused too, and the document is unchanged.
    status, refused = await rest.put(f"/projects/{pid}/graph", before, token=ALICE)
    expect_error(status, refused, 403, "FORBIDDEN")
    assert refused["error"]["details"] == {"project_id": pid, "read_only": True}
    n = version["version"]
    status, refused = await rest.post(f"/projects/{pid}/versions/{n}/restore", {}, token=ALICE)
    expect_error(status, refused, 403, "FORBIDDEN")
    status, after = await rest.get(f"/projects/{pid}/graph", token=ALICE)
    assert after == before

    status, body = await rest.post(
        f"/admin/rooms/{pid}/read-only", {"read_only": False}, token=ADMIN
    )
    assert status == 200, body
    status, project = await rest.get(f"/projects/{pid}", token=ALICE)
    assert project["read_only"] is False
    a2 = await ysocks(server.url, pid, ALICE)
    ack = await a2.add_node("allowed", type="Osc", x=0, y=0)
    assert ack["ok"] is True, ack
    status, graph = await rest.get(f"/projects/{pid}/graph", token=ALICE)
    assert "allowed" in graph["nodes"] and "blocked" not in graph["nodes"]
