"""Several server processes sharing one Redis and one Postgres: convergence, and
surviving kill -9 of an instance, Redis restarts, Postgres restarts, graceful
shutdown; live role changes across instances."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import socketio

from tests.integration.test_durability import Writer
from tests.integration.ysock import MainSock
from tests.nodeclient import NodeClients
from tests.server import Rest, ServerProcess, token, wait_for
from tests.services import PrivatePostgres, PrivateRedis

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ALICE = token("alice", "Alice")

Cluster = Callable[..., Awaitable[list[ServerProcess]]]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """``await cluster(n, redis_url=..., database_url=..., prefix=...)`` starts n
    instances; all are stopped (by PID) at the end."""
    started: list[ServerProcess] = []

    async def start(
        n: int, *, redis_url: str, database_url: str, prefix: str, **env: str
    ) -> list[ServerProcess]:
        procs = [
            ServerProcess(
                {
                    "COLLAB_REDIS_URL": redis_url,
                    "COLLAB_REDIS_PREFIX": prefix,
                    "COLLAB_DATABASE_URL": database_url,
                    "COLLAB_DATA_DIR": str(tmp_path / f"i{i}"),
                    "COLLAB_INSTANCE_ID": f"i{i}-{prefix[-6:]}",
                    "COLLAB_ROOM_GRACE_MS": "500",
                    **env,
                },
                name=f"i{i}",
                log_dir=tmp_path,
            )
            for i in range(n)
        ]
        await asyncio.gather(*(p.start() for p in procs))
        started.extend(procs)
        return procs

    yield start
    for p in started:
        p.kill()


async def graph(url: str, pid: str) -> dict[str, Any]:
    rest = Rest(url)
    try:
        status, body = await rest.get(f"/projects/{pid}/graph", token=ALICE)
        assert status == 200, body
        return {k: body[k] for k in ("nodes", "edges", "meta")}
    finally:
        await rest.close()


async def all_instances_equal(procs: list[ServerProcess], pid: str, want: dict[str, Any]) -> None:
    async def same() -> bool:
        graphs = [await graph(p.url, pid) for p in procs]
        return all(g == want for g in graphs)

    await wait_for(same, timeout=15, message="every instance's document equal to the clients'")


async def open_spread(nc: NodeClients, procs: list[ServerProcess], pid: str, n: int) -> list[str]:
    names = [f"c{i}" for i in range(n)]
    for i, name in enumerate(names):
        await nc.open(name, url=procs[i % len(procs)].url, room=pid, token=ALICE)
    for name in names:
        await nc.wait_synced(name)
    return names


async def edits(nc: NodeClients, names: list[str], count: int, interval_ms: float) -> None:
    await asyncio.gather(
        *(
            nc.random_edits(n, count=count, seed=i + 1, interval_ms=interval_ms, timeout=120)
            for i, n in enumerate(names)
        )
    )


async def test_three_instances_converge(
    cluster: Cluster, pg_dsn: str, redis_url: str, redis_prefix: str, nc: NodeClients
) -> None:
    procs = await cluster(3, redis_url=redis_url, database_url=pg_dsn, prefix=redis_prefix)
    rest = Rest(procs[0].url)
    pid = await rest.project(ALICE)
    await rest.close()
    names = await open_spread(nc, procs, pid, 6)
    await edits(nc, names, count=60, interval_ms=15)
    final = json.loads(await nc.wait_converged(names, timeout=20))
    assert final["nodes"]
    await all_instances_equal(procs, pid, final)


async def test_kill_9_of_an_instance_loses_no_acked_update(
    cluster: Cluster, pg_dsn: str, redis_url: str, redis_prefix: str, nc: NodeClients
) -> None:
    procs = await cluster(3, redis_url=redis_url, database_url=pg_dsn, prefix=redis_prefix)
    rest = Rest(procs[0].url)
    pid = await rest.project(ALICE)
    await rest.close()
    names = await open_spread(nc, procs, pid, 6)
    victim = procs[2]
    writer = Writer(victim.url, pid, ALICE)
    await writer.connect()
    acked: list[str] = []
    load = asyncio.gather(
        writer.write_until_gone(acked), edits(nc, names, count=300, interval_ms=15)
    )
    await wait_for(lambda: len(acked) >= 40, timeout=30, message="40 acked updates")
    victim.kill()
    acked_before_kill = list(acked)
    # Every acked update is on the survivors, straight away.
    survivors = procs[:2]
    for p in survivors:
        meta = (await graph(p.url, pid))["meta"]
        assert [k for k in acked_before_kill if k not in meta] == []
    # The victim's clients reconnect by themselves once it is back (the load
    # balancer's job in production: here, the same port).
    restarted = ServerProcess(
        victim.env, port=victim.port, name="i2-restarted", log_dir=victim.log_path.parent
    )
    await restarted.start()
    try:
        await load
        final = json.loads(await nc.wait_converged(names, timeout=30))
        assert [k for k in acked_before_kill if k not in final["meta"]] == []
        await all_instances_equal([*survivors, restarted], pid, final)
    finally:
        await writer.sio.disconnect()
        restarted.kill()


async def test_redis_restart_mid_load_loses_nothing_and_converges_within_5s(
    cluster: Cluster, pg_dsn: str, redis_prefix: str, nc: NodeClients
) -> None:
    redis = PrivateRedis()
    await redis.start()
    try:
        procs = await cluster(3, redis_url=redis.url, database_url=pg_dsn, prefix=redis_prefix)
        rest = Rest(procs[0].url)
        pid = await rest.project(ALICE)
        await rest.close()
        names = await open_spread(nc, procs, pid, 6)
        load = asyncio.create_task(edits(nc, names, count=200, interval_ms=20))
        await asyncio.sleep(1.0)  # editing under way (the load runs ~4 s)
        redis.kill()
        await asyncio.sleep(1.5)  # edits continue on every instance, unshared
        await redis.start()
        await load  # edits go on after Redis is back, until the load ends
        # Convergence is measured from the later of Redis being back and the edits
        # ending: nothing can converge while edits are still being made.
        final = json.loads(await nc.wait_converged(names, timeout=5))
        await all_instances_equal(procs, pid, final)
    finally:
        redis.cleanup()


async def test_postgres_restart_mid_load_loses_nothing(
    cluster: Cluster, redis_url: str, redis_prefix: str, nc: NodeClients, tmp_path: Path
) -> None:
    pg = PrivatePostgres()
    await pg.start()
    try:
        procs = await cluster(2, redis_url=redis_url, database_url=pg.dsn, prefix=redis_prefix)
        rest = Rest(procs[0].url)
        pid = await rest.project(ALICE)
        await rest.close()
        names = await open_spread(nc, procs, pid, 4)
        load = asyncio.create_task(edits(nc, names, count=150, interval_ms=20))
        await asyncio.sleep(1.0)
        pg.stop("immediate")
        # Live editing across instances goes on without the database.
        await nc.edit("c0", "set-meta", key="during-outage", value=1)
        await asyncio.sleep(1.5)
        await pg.start()
        await load
        final = json.loads(await nc.wait_converged(names, timeout=20))
        assert final["meta"]["during-outage"] == 1

        async def all_stored() -> bool:
            for p in procs:
                r = Rest(p.url)
                status, body = await r.root("/readyz")
                await r.close()
                if status != 200 or body["checks"]["commits"]["pending"] != 0:
                    return False
            return True

        await wait_for(all_stored, timeout=30, message="every instance's backlog stored")
        # A fresh instance reads everything back from Postgres alone.
        fresh = ServerProcess(
            {"COLLAB_DATABASE_URL": pg.dsn, "COLLAB_DATA_DIR": str(tmp_path / "fresh")},
            name="fresh",
            log_dir=tmp_path,
        )
        await fresh.start()
        try:
            assert await graph(fresh.url, pid) == final
        finally:
            await fresh.stop()
    finally:
        pg.cleanup()


class Watcher:
    """A python-socketio client that records when events arrive."""

    def __init__(self, url: str, pid: str, tok: str) -> None:
        self.url = url
        self.ns = f"/yjs|{pid}"
        self.tok = tok
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[float, str, Any]] = []
        self.changed = asyncio.Event()
        for ev in ("error", "room-state"):
            self.sio.on(ev, self._recorder(ev), namespace=self.ns)
        self.sio.on("disconnect", self._recorder("disconnect"), namespace=self.ns)
        self.sio.on("sync-step-1", lambda _sv: b"\x00\x00", namespace=self.ns)

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.events.append((time.monotonic(), name, args[0] if args else None))
            self.changed.set()

        return record

    async def connect(self) -> None:
        await self.sio.connect(
            self.url, namespaces=[self.ns], auth={"token": self.tok}, transports=["websocket"]
        )

    async def wait(
        self, name: str, pred: Callable[[Any], bool], after: float, timeout: float
    ) -> float:
        deadline = time.monotonic() + timeout
        while True:
            for t, n, data in self.events:
                if n == name and t >= after and pred(data):
                    return t
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {name} within {timeout} s; saw {self.events[-5:]}")
            self.changed.clear()
            try:
                async with asyncio.timeout(left):
                    await self.changed.wait()
            except TimeoutError:
                pass


async def test_role_downgrade_and_removal_on_a_reach_b_within_1s(
    cluster: Cluster, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    a, b = await cluster(2, redis_url=redis_url, database_url=pg_dsn, prefix=redis_prefix)
    rest_a = Rest(a.url)
    try:
        pid = await rest_a.project(ALICE)
        bob = token("bob", "Bob")
        assert (await rest_a.put(f"/projects/{pid}/members/bob", {"role": "editor"}, token=ALICE))[
            0
        ] == 200
        watcher = Watcher(b.url, pid, bob)
        await watcher.connect()
        await watcher.wait("room-state", lambda s: s["role"] == "editor", 0, 5)

        started = time.monotonic()
        assert (await rest_a.put(f"/projects/{pid}/members/bob", {"role": "viewer"}, token=ALICE))[
            0
        ] == 200
        seen = await watcher.wait(
            "room-state", lambda s: s["role"] == "viewer" and s["read_only"], started, 1.0
        )
        assert seen - started < 1.0
        # Bob's next update is refused on instance B.
        writer = Writer(b.url, pid, bob)
        await writer.connect()
        ack = await writer.write("forbidden")
        assert ack["error"]["code"] == "FORBIDDEN"
        await writer.sio.disconnect()

        started = time.monotonic()
        assert (await rest_a.delete(f"/projects/{pid}/members/bob", token=ALICE))[0] == 204
        t_err = await watcher.wait(
            "error", lambda p: p["error"]["code"] == "FORBIDDEN", started, 1.0
        )
        t_gone = await watcher.wait("disconnect", lambda _p: True, started, 1.0)
        assert t_err - started < 1.0
        assert t_gone - started < 1.0
    finally:
        await rest_a.close()


async def test_presence_of_a_killed_instances_clients_goes_with_its_registry_entry(
    cluster: Cluster, pg_dsn: str, redis_url: str, redis_prefix: str, nc: NodeClients
) -> None:
    """kill -9 says no goodbye: the survivors remove the dead instance's clients from
    everyone's presence once it drops out of the registry (about 6-9 s with the default
    2 s heartbeat), not after the 30 s awareness timeout."""
    a, b = await cluster(2, redis_url=redis_url, database_url=pg_dsn, prefix=redis_prefix)
    rest = Rest(a.url)
    pid = await rest.project(ALICE)
    await rest.close()
    await nc.open("on-a", url=a.url, room=pid, token=ALICE, awareness={"cursor": [1, 1]})
    b_id = await nc.open("on-b", url=b.url, room=pid, token=ALICE, awareness={"cursor": [2, 2]})
    for name in ("on-a", "on-b"):
        await nc.wait_synced(name)
    await nc.wait_awareness("on-a", has_client_id=b_id, timeout=10)
    b.kill()
    started = time.monotonic()
    await nc.wait_awareness("on-a", lacks_client_id=b_id, timeout=20)
    assert time.monotonic() - started < 20  # the awareness timeout would take 30 s


async def test_sigterm_flushes_and_clients_reconnect_elsewhere(
    cluster: Cluster, pg_dsn: str, redis_url: str, redis_prefix: str, nc: NodeClients
) -> None:
    a, b = await cluster(2, redis_url=redis_url, database_url=pg_dsn, prefix=redis_prefix)
    rest = Rest(b.url)
    pid = await rest.project(ALICE)
    await rest.close()
    await nc.open("on-a", url=a.url, room=pid, token=ALICE)
    await nc.open("on-b", url=b.url, room=pid, token=ALICE)
    await nc.wait_synced("on-a")
    await nc.wait_synced("on-b")
    await nc.random_edits("on-a", count=40, seed=3, interval_ms=5)
    mark = nc.mark()
    assert await a.stop() == 0, a.log_tail()
    # A transport close (not a Socket.IO disconnect): the stock client retries by itself.
    close = await nc.wait_event("on-a", "connection-close", after=mark)
    assert close.data["reason"] != "io server disconnect"
    # Everything a held was stored before it exited: B (which never saw some of it
    # live? it did, through the stream) and a fresh read agree with the client.
    a_state = await nc.json("on-a")
    assert await graph(b.url, pid) == a_state
    # The same address comes back (a load balancer would pick B at once).
    a2 = ServerProcess(a.env, port=a.port, name="i0-again", log_dir=a.log_path.parent)
    await a2.start()
    try:
        await nc.wait_event("on-a", "synced", after=mark, match={"synced": True}, timeout=15)
        await nc.add_node("on-a", type="After", x=1, y=1, node_id="after-restart")
        final = json.loads(await nc.wait_converged(["on-a", "on-b"]))
        assert "after-restart" in final["nodes"]
    finally:
        await a2.stop()


# -- notifications and the admin API across instances (issue 5) --------------------------


async def test_a_notification_reaches_both_sockets_of_a_user_on_two_instances(
    cluster: Cluster, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    a, b = await cluster(2, redis_url=redis_url, database_url=pg_dsn, prefix=redis_prefix)
    bob = token("bob", "Bob")
    on_a, on_b = MainSock(a.url, bob), MainSock(b.url, bob)
    await on_a.connect()
    await on_b.connect()
    rest = Rest(a.url)
    try:
        status, body = await rest.post(
            "/notifications",
            {"user_ids": ["bob"], "kind": "build.finished", "payload": {"ok": True}},
            token=token("svc", service=True),
        )
        assert status == 201, body
        nid = body["items"][0]["id"]
        for sock in (on_a, on_b):
            await wait_for(
                lambda s=sock: any(n["id"] == nid for n in s.notifications),
                timeout=5,
                message="the notification on both instances",
            )
        got = next(n for n in on_b.notifications if n["id"] == nid)
        assert got["kind"] == "build.finished"
        assert got["payload"] == {"ok": True}
    finally:
        await rest.close()
        await on_a.close()
        await on_b.close()


async def test_admin_sees_and_acts_on_rooms_of_every_instance(
    cluster: Cluster, pg_dsn: str, redis_url: str, redis_prefix: str
) -> None:
    a, b = await cluster(
        2, redis_url=redis_url, database_url=pg_dsn, prefix=redis_prefix, COLLAB_HEARTBEAT_S="0.5"
    )
    admin = token("root", "Root", admin=True)
    rest_a = Rest(a.url)
    try:
        p1 = await rest_a.project(ALICE, "on a")
        p2 = await rest_a.project(ALICE, "on b")
        bob = token("bob", "Bob")
        assert (await rest_a.put(f"/projects/{p2}/members/bob", {"role": "editor"}, token=ALICE))[
            0
        ] == 200
        alice_a = Watcher(a.url, p1, ALICE)
        alice_b = Watcher(b.url, p2, ALICE)
        bob_b = Watcher(b.url, p2, bob)
        for w in (alice_a, alice_b, bob_b):
            await w.connect()

        async def listed() -> dict[str, Any] | None:
            status, body = await rest_a.get("/admin/rooms", token=admin)
            assert status == 200, body
            rows = {r["project_id"]: r for r in body["rooms"]}
            if p1 in rows and p2 in rows and rows[p2]["connections"] == 2:
                return rows
            return None

        rows = await wait_for(listed, timeout=10, message="both rooms in the cluster view")
        assert [i["instance_id"] for i in rows[p1]["instances"]] == [a.env["COLLAB_INSTANCE_ID"]]
        assert [i["instance_id"] for i in rows[p2]["instances"]] == [b.env["COLLAB_INSTANCE_ID"]]
        assert {(u["id"], u["role"]) for u in rows[p2]["users"]} == {
            ("alice", "owner"),
            ("bob", "editor"),
        }
        assert rows[p2]["project_name"] == "on b"

        # Actions sent to A act on B's connections.
        started = time.monotonic()
        ro = f"/admin/rooms/{p2}/read-only"
        status, _ = await rest_a.post(ro, {"read_only": True}, token=admin)
        assert status == 200
        await bob_b.wait("room-state", lambda s: s["read_only"], started, 2.0)
        writer = Writer(b.url, p2, bob)
        await writer.connect()
        assert (await writer.write("refused"))["error"]["code"] == "FORBIDDEN"
        await writer.sio.disconnect()
        await rest_a.post(ro, {"read_only": False}, token=admin)
        await bob_b.wait("room-state", lambda s: not s["read_only"], started, 2.0)

        started = time.monotonic()
        status, _ = await rest_a.post(f"/admin/rooms/{p2}/kick", {"user_id": "bob"}, token=admin)
        assert status == 200
        await bob_b.wait("disconnect", lambda _d: True, started, 2.0)
        assert alice_b.sio.connected  # only bob was kicked

        started = time.monotonic()
        status, _ = await rest_a.post(f"/admin/rooms/{p2}/close", token=admin)
        assert status == 200
        await alice_b.wait("disconnect", lambda _d: True, started, 2.0)

        # An instance that dies drops out of the registry within its TTL (3 beats).
        b.kill()
        started = time.monotonic()

        async def gone() -> bool:
            status, body = await rest_a.get("/admin/rooms", token=admin)
            return status == 200 and all(
                i["instance_id"] != b.env["COLLAB_INSTANCE_ID"] for i in body["instances"]
            )

        await wait_for(gone, timeout=5, message="the dead instance gone from the registry")
        assert time.monotonic() - started < 3 * 0.5 + 1.5
        await alice_a.sio.disconnect()
    finally:
        await rest_a.close()
