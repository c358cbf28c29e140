"""The Broker contract: one suite, run against every implementation (ids ``memory``,
``redis``).

Every test builds a small cluster: several brokers ("instances") on one backend (one
``InProcessHub``, or one Redis key prefix of this test alone), each started with a
``Recorder`` handler. Waits are conditions with deadlines, never sleep-and-hope; the
only sleeps let the wall clock move past a stream id (trimming is time based).

The last test is Redis only: it runs its own throwaway ``redis-server`` (never the
shared one), kills it mid-stream and restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial

import pytest
import redis.asyncio as aioredis

from collab.broker.base import Broker, BrokerError, StreamEntry, StreamTrimmed
from collab.broker.memory import InProcessBroker, InProcessHub, parse_id
from collab.broker.redis import RedisBroker
from tests.conftest import new_id

WAIT_S = 10.0  # deadline of one wait: generous, a healthy run takes milliseconds
SYNC = "sync"  # the channel every instance subscribes to, for barriers
REDIS_SERVER = "/usr/bin/redis-server"


class Recorder:
    """A ``BrokerHandler`` that records every callback and lets a test wait for one."""

    def __init__(self) -> None:
        self.entries: defaultdict[str, list[StreamEntry]] = defaultdict(list)
        self.gaps: list[str] = []
        self.messages: list[tuple[str, bytes]] = []
        self.recovered = 0
        self.hold: asyncio.Event | None = None  # when set, on_stream_entries blocks on it
        self._changed = asyncio.Condition()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def on_stream_entries(self, project_id: str, entries: list[StreamEntry]) -> None:
        self.entries[project_id].extend(entries)
        await self._notify()
        if self.hold is not None:
            await self.hold.wait()

    async def on_stream_gap(self, project_id: str) -> None:
        self.gaps.append(project_id)
        await self._notify()

    async def on_message(self, channel: str, payload: bytes) -> None:
        self.messages.append((channel, payload))
        await self._notify()

    async def on_recovered(self) -> None:
        self.recovered += 1
        await self._notify()

    def payloads(self, project_id: str) -> list[bytes]:
        return [entry.payload for entry in self.entries[project_id]]

    def received(self, channel: str) -> list[bytes]:
        return [payload for ch, payload in self.messages if ch == channel]

    async def wait(self, predicate: Callable[[], bool], what: str, within: float = WAIT_S) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(predicate), within)
            except TimeoutError:
                pytest.fail(f"timed out waiting for {what}")


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, within: float = WAIT_S
) -> None:
    """Poll a condition on the backend until it holds (or fail at the deadline)."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # poll interval


@dataclass
class Instance:
    broker: Broker
    rec: Recorder

    @property
    def id(self) -> str:
        return self.broker.instance_id


class Cluster:
    """Brokers on one backend; closes them all at the end."""

    def __init__(self, make: Callable[[str, float], Broker]) -> None:
        self._make = make
        self.instances: list[Instance] = []

    async def instance(self, *, retention_s: float = 60.0) -> Instance:
        broker = self._make(new_id("i"), retention_s)
        rec = Recorder()
        await broker.start(rec)
        await broker.subscribe(SYNC)
        inst = Instance(broker, rec)
        self.instances.append(inst)
        return inst

    async def close(self) -> None:
        for inst in self.instances:
            await inst.broker.close()


async def barrier(inst: Instance) -> None:
    """Wait until every op ``inst`` queued so far has been executed: ops run in call
    order, and a publisher receives its own messages."""
    token = new_id("sync").encode()
    inst.broker.publish(SYNC, token)
    await inst.rec.wait(lambda: token in inst.rec.received(SYNC), "a barrier")


async def clock_past(entry_id: str) -> None:
    """Let the wall clock (the backend's, on this host) move past an entry's ms."""
    ahead_s = (parse_id(entry_id)[0] + 2) / 1000 - time.time()  # 2 ms past it
    if ahead_s > 0:
        await asyncio.sleep(ahead_s)


@pytest.fixture(params=["memory", "redis"])
async def cluster(
    request: pytest.FixtureRequest, redis_url: str, redis_prefix: str
) -> AsyncIterator[Cluster]:
    make: Callable[[str, float], Broker]
    if request.param == "memory":
        hub = InProcessHub()

        def make(instance_id: str, retention_s: float) -> Broker:
            return InProcessBroker(hub, instance_id=instance_id, stream_retention_s=retention_s)

    else:

        def make(instance_id: str, retention_s: float) -> Broker:
            return RedisBroker(
                redis_url,
                instance_id=instance_id,
                prefix=redis_prefix,
                stream_retention_s=retention_s,
            )

    c = Cluster(make)
    try:
        yield c
    finally:
        await c.close()


# -- lifecycle --------------------------------------------------------------------------


async def test_start_twice_raises_and_ping_answers(cluster: Cluster) -> None:
    a = await cluster.instance()
    assert a.broker.healthy
    await a.broker.ping()
    with pytest.raises(BrokerError):
        await a.broker.start(Recorder())


# -- document streams -------------------------------------------------------------------


async def test_join_position_and_delivery_to_others_only(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    p = new_id()
    assert await b.broker.join_stream(p) == "0-0"  # a new stream: not a gap
    assert await a.broker.join_stream(p) == "0-0"

    for i in range(3):
        a.broker.publish_update(p, b"a%d" % i)
    await b.rec.wait(lambda: len(b.rec.entries[p]) >= 3, "a's entries at b")
    got = b.rec.entries[p]
    assert [e.payload for e in got] == [b"a0", b"a1", b"a2"]
    assert {e.origin for e in got} == {a.id}
    ids = [parse_id(e.id) for e in got]
    assert ids == sorted(set(ids))

    # a reads in stream order too, so once it has b's entry it has passed its own three.
    b.broker.publish_update(p, b"b0")
    await a.rec.wait(lambda: len(a.rec.entries[p]) >= 1, "b's entry at a")
    assert a.rec.payloads(p) == [b"b0"]
    assert a.rec.entries[p][0].origin == b.id

    # A newcomer joins at the newest entry and gets exactly what follows it.
    c = await cluster.instance()
    position = await c.broker.join_stream(p)
    assert position == a.rec.entries[p][-1].id
    a.broker.publish_update(p, b"a3")
    await c.rec.wait(lambda: len(c.rec.entries[p]) >= 1, "a3 at c")
    assert c.rec.payloads(p) == [b"a3"]

    # Joining again is a no-op that reports the current position.
    assert await c.broker.join_stream(p) == c.rec.entries[p][-1].id
    a.broker.publish_update(p, b"a4")
    await c.rec.wait(lambda: len(c.rec.entries[p]) >= 2, "a4 at c")
    assert c.rec.payloads(p) == [b"a3", b"a4"]
    assert a.rec.gaps == b.rec.gaps == c.rec.gaps == []


async def test_thousand_entries_in_order_without_gaps(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    p = new_id()
    await b.broker.join_stream(p)
    count = 1_000
    for i in range(count):
        a.broker.publish_update(p, i.to_bytes(4, "big"))
    await b.rec.wait(
        lambda: len(b.rec.entries[p]) >= count, "1,000 entries", within=30
    )  # a slow CI
    assert [int.from_bytes(x, "big") for x in b.rec.payloads(p)] == list(range(count))
    ids = [parse_id(e.id) for e in b.rec.entries[p]]
    assert all(x < y for x, y in itertools.pairwise(ids))
    assert b.rec.gaps == []


async def test_published_returns_once_every_queued_entry_is_readable(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    p = new_id()
    for i in range(200):
        a.broker.publish_update(p, b"x%d" % i)
    await a.broker.published(10)
    # No waiting here: the committer stores an update only after this point.
    assert [e.payload for e in await b.broker.read_stream(p, "0-0")] == [
        b"x%d" % i for i in range(200)
    ]
    await a.broker.published(10)  # nothing queued: returns at once


async def test_read_stream_after_an_id(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    p = new_id()
    await b.broker.join_stream(p)
    for i in range(10):
        a.broker.publish_update(p, b"e%d" % i)
    await b.rec.wait(lambda: len(b.rec.entries[p]) >= 10, "10 entries at b")
    ids = [e.id for e in b.rec.entries[p]]

    for reader in (a, b):  # all origins, the publisher's own included
        everything = await reader.broker.read_stream(p, "0-0")
        assert [e.id for e in everything] == ids
        assert [e.payload for e in everything] == [b"e%d" % i for i in range(10)]
        assert {e.origin for e in everything} == {a.id}
    assert [e.id for e in await b.broker.read_stream(p, ids[4])] == ids[5:]
    assert await b.broker.read_stream(p, ids[-1]) == []
    assert await b.broker.read_stream(new_id(), "0-0") == []


async def test_read_stream_raises_when_trimmed(cluster: Cluster) -> None:
    a = await cluster.instance()
    trimmer = await cluster.instance(retention_s=0)  # trims everything older than now
    p = new_id()
    for i in range(5):
        a.broker.publish_update(p, b"e%d" % i)
    await barrier(a)
    ids = [e.id for e in await a.broker.read_stream(p, "0-0")]
    assert len(ids) == 5

    await clock_past(ids[-1])
    trimmer.broker.publish_update(p, b"last")
    await barrier(trimmer)
    with pytest.raises(StreamTrimmed):
        await a.broker.read_stream(p, "0-0")
    with pytest.raises(StreamTrimmed):
        await a.broker.read_stream(p, ids[2])
    # Nothing after the last trimmed entry is gone: reading from it is fine.
    assert [e.payload for e in await a.broker.read_stream(p, ids[-1])] == [b"last"]


async def test_gap_reported_when_entries_trimmed_before_read(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    trimmer = await cluster.instance(retention_s=0)
    p = new_id()
    await b.broker.join_stream(p)
    b.rec.hold = asyncio.Event()  # b's reader gets stuck in its first delivery
    a.broker.publish_update(p, b"e0")
    await b.rec.wait(lambda: len(b.rec.entries[p]) >= 1, "e0 at b")
    a.broker.publish_update(p, b"e1")
    await barrier(a)
    e1 = (await a.broker.read_stream(p, b.rec.entries[p][0].id))[0]
    await clock_past(e1.id)
    trimmer.broker.publish_update(p, b"e2")  # trims e1 (and e0) before b read e1
    await barrier(trimmer)

    b.rec.hold.set()
    await b.rec.wait(lambda: len(b.rec.entries[p]) >= 2, "e2 at b")
    assert b.rec.payloads(p) == [b"e0", b"e2"]
    assert b.rec.gaps == [p]


async def test_trimming_never_passes_an_inflight_marker(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    trimmer = await cluster.instance(retention_s=0)
    p = new_id()
    marker = int(time.time() * 1000)
    b.broker.set_inflight(p, marker)
    await barrier(b)
    assert await a.broker.inflight_markers(p) == {b.id: marker}

    for i in range(10):
        a.broker.publish_update(p, b"a%d" % i)
    await barrier(a)
    first = await a.broker.read_stream(p, "0-0")
    await clock_past(first[-1].id)
    for i in range(50):
        trimmer.broker.publish_update(p, b"t%d" % i)
    await barrier(trimmer)
    kept = await a.broker.read_stream(p, "0-0")  # nothing trimmed: no StreamTrimmed
    assert [e.payload for e in kept] == [b"a%d" % i for i in range(10)] + [
        b"t%d" % i for i in range(50)
    ]

    # b dies; once its entries are stored, another instance clears its marker.
    await a.broker.clear_inflight(p, b.id)
    assert await a.broker.inflight_markers(p) == {}
    await clock_past(kept[-1].id)
    trimmer.broker.publish_update(p, b"last")
    await barrier(trimmer)
    with pytest.raises(StreamTrimmed):
        await a.broker.read_stream(p, "0-0")
    assert [e.payload for e in await a.broker.read_stream(p, kept[-1].id)] == [b"last"]


async def test_leave_stream_stops_delivery(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    p, q = new_id(), new_id()
    await b.broker.join_stream(p)
    await b.broker.join_stream(q)
    a.broker.publish_update(p, b"p0")
    await b.rec.wait(lambda: len(b.rec.entries[p]) >= 1, "p0 at b")
    await b.broker.leave_stream(p)
    a.broker.publish_update(p, b"p1")
    a.broker.publish_update(q, b"q0")  # stored after p1: once b has it, p1 was passed
    await b.rec.wait(lambda: len(b.rec.entries[q]) >= 1, "q0 at b")
    assert b.rec.payloads(p) == [b"p0"]
    assert b.rec.payloads(q) == [b"q0"]


async def test_queued_ops_execute_in_call_order(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    p, ch = new_id(), new_id("ch")
    await b.broker.subscribe(ch)
    for i in range(50):
        a.broker.publish_update(p, b"e%d" % i)
    a.broker.set_inflight(p, 100)
    a.broker.set_inflight(p, None)
    a.broker.set_inflight(p, 300)
    a.broker.publish(ch, b"done")
    await b.rec.wait(lambda: b"done" in b.rec.received(ch), "done at b")
    assert [e.payload for e in await b.broker.read_stream(p, "0-0")] == [
        b"e%d" % i for i in range(50)
    ]
    assert await b.broker.inflight_markers(p) == {a.id: 300}

    a.broker.set_inflight(p, None)
    a.broker.publish(ch, b"cleared")
    await b.rec.wait(lambda: b"cleared" in b.rec.received(ch), "cleared at b")
    assert await b.broker.inflight_markers(p) == {}
    assert b.rec.received(ch) == [b"done", b"cleared"]


async def test_close_flushes_queued_writes(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    p = new_id()
    await b.broker.join_stream(p)
    for i in range(100):
        a.broker.publish_update(p, b"e%d" % i)
    await a.broker.close()
    await b.rec.wait(lambda: len(b.rec.entries[p]) >= 100, "100 entries at b")
    assert b.rec.payloads(p) == [b"e%d" % i for i in range(100)]
    with pytest.raises(BrokerError):
        a.broker.publish_update(p, b"late")


# -- channels ---------------------------------------------------------------------------


async def test_pubsub_reaches_every_instance_including_self(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    ch = new_id("ch")
    await a.broker.subscribe(ch)
    await b.broker.subscribe(ch)
    a.broker.publish(ch, b"hello")
    b.broker.publish(ch, b"bye")
    for rec in (a.rec, b.rec):
        await rec.wait(partial(lambda r: len(r.received(ch)) >= 2, rec), "both messages")
        assert sorted(rec.received(ch)) == [b"bye", b"hello"]


async def test_unsubscribe_stops_delivery(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    ch, later = new_id("ch"), new_id("ch")
    for inst in (a, b):
        await inst.broker.subscribe(ch)
        await inst.broker.subscribe(later)
    await b.broker.unsubscribe(ch)
    a.broker.publish(ch, b"m1")
    a.broker.publish(later, b"m2")  # published after m1: once b has it, m1 was passed
    await b.rec.wait(lambda: b"m2" in b.rec.received(later), "m2 at b")
    await a.rec.wait(lambda: b"m1" in a.rec.received(ch), "m1 at a")
    assert b.rec.received(ch) == []


# -- cluster state ----------------------------------------------------------------------


async def test_heartbeat_visible_expires_and_removed_on_close(cluster: Cluster) -> None:
    a, b = await cluster.instance(), await cluster.instance()
    rooms = [{"project_id": "p1", "clients": 2}]
    before = time.time()
    await a.broker.heartbeat(rooms, ttl_s=30)
    live = await b.broker.live_instances()
    assert live[a.id]["rooms"] == rooms
    assert before <= live[a.id]["updated_at"] <= time.time()

    await b.broker.heartbeat([], ttl_s=0.5)  # long enough to be seen before it expires
    assert b.id in await a.broker.live_instances()

    async def b_expired() -> bool:
        return b.id not in await a.broker.live_instances()

    await eventually(b_expired, "b's heartbeat to expire")

    await a.broker.close()
    assert a.id not in await b.broker.live_instances()


# -- Redis outage (Redis only) ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def healthy(broker: Broker) -> bool:
    return broker.healthy  # a call, so that mypy does not narrow the property


async def _start_redis(port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        REDIS_SERVER,
        *("--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client = aioredis.Redis(host="127.0.0.1", port=port)

    async def answers() -> bool:
        try:
            return bool(await client.ping())
        except (aioredis.ConnectionError, OSError):
            return False

    try:
        await eventually(answers, f"redis-server on port {port}")
    finally:
        await client.aclose()
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()  # SIGKILL to this PID: no shutdown save, like a crash
    await proc.wait()


@pytest.mark.slow
async def test_redis_outage_queues_and_recovers(redis_prefix: str) -> None:
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    servers = [await _start_redis(port)]
    brokers: list[RedisBroker] = []
    try:
        a_rec, b_rec = Recorder(), Recorder()
        a = RedisBroker(url, instance_id=new_id("a"), prefix=redis_prefix)
        b = RedisBroker(url, instance_id=new_id("b"), prefix=redis_prefix)
        # c's queue holds 3 ops: the rest of what it publishes while Redis is down drops.
        c = RedisBroker(url, instance_id=new_id("c"), prefix=redis_prefix, max_queue=3)
        brokers += [a, b, c]
        await a.start(a_rec)
        await b.start(b_rec)
        await c.start(Recorder())
        p, q, ch = new_id(), new_id(), new_id("ch")
        await b.join_stream(p)
        await b.join_stream(q)
        for broker in (a, b):
            await broker.subscribe(ch)
        for i in range(5):
            a.publish_update(p, b"e%d" % i)
        await b_rec.wait(lambda: len(b_rec.entries[p]) >= 5, "e0..e4 at b")

        await _stop(servers[0])

        async def both_down() -> bool:
            return not a.healthy and not b.healthy

        await eventually(both_down, "both brokers to notice the outage")
        for i in range(5, 10):
            a.publish_update(p, b"e%d" % i)  # queued while Redis is down
        # Commits do not wait for an unreachable Redis (the bound is never reached).
        waited = time.monotonic()
        await a.published(30)
        assert time.monotonic() - waited < 5
        a.publish(ch, b"during")
        assert not healthy(a)
        for i in range(10):
            c.publish_update(q, b"c%d" % i)
        assert c.dropped_ops == 7

        servers.append(await _start_redis(port))

        async def all_healthy() -> bool:
            return all(healthy(broker) for broker in brokers)

        # Reconnect backoff is capped at 2 s; 20 s leaves room for a loaded machine.
        await eventually(all_healthy, "every broker to reconnect", within=20)
        await a_rec.wait(lambda: a_rec.recovered >= 1, "on_recovered at a", within=20)
        await b_rec.wait(lambda: b_rec.recovered >= 1, "on_recovered at b", within=20)
        await b_rec.wait(lambda: len(b_rec.entries[p]) >= 10, "e5..e9 at b", within=20)
        assert b_rec.payloads(p) == [b"e%d" % i for i in range(10)]
        # Redis came back empty: b cannot know what it missed, so it reports a gap.
        assert b_rec.gaps.count(p) == 1
        # c dropped 7 entries: b hears of it (a gap marker first), then gets the rest.
        await b_rec.wait(lambda: len(b_rec.entries[q]) >= 3, "c's last entries at b")
        assert b_rec.payloads(q) == [b"c7", b"c8", b"c9"]
        assert b_rec.gaps.count(q) == 1
        assert healthy(a)
        assert healthy(b)

        a.publish(ch, b"after")
        await a_rec.wait(lambda: b"after" in a_rec.received(ch), "pub/sub at a after recovery")
        await b_rec.wait(lambda: b"after" in b_rec.received(ch), "pub/sub at b after recovery")
        assert a_rec.recovered == b_rec.recovered == 1
        assert a.reconnects >= 1
        assert b.reconnects >= 1
        assert a.dropped_ops == 0
    finally:
        for broker in brokers:
            with contextlib.suppress(Exception):
                await broker.close()
        for proc in servers:
            await _stop(proc)
