"""collab.rooms: applying updates to a room (effective change, duplicates, pending
structs, refusals, panics) and the RoomManager's load, write path and rebuild, against a
real SqliteStore and the in-process broker."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycrdt
import pytest
from pycrdt import Doc, Map, Text

from auth.permissions import Access
from auth.principal import Principal
from collab.broker.memory import InProcessBroker
from collab.commit import Committer
from collab.errors import InvalidUpdate, Unavailable
from collab.metrics import Metrics
from collab.rooms import Conn, Origin, Room, RoomBroken, RoomManager
from persistence.base import AppendResult, LoadedDoc
from persistence.errors import NotFound, StoreUnavailable
from persistence.sqlite import SqliteStore
from tests.server import base_settings
from tests.ypanic import PANIC_MARKER, PanickyDoc

# -- helpers ---------------------------------------------------------------------------------


def session(
    client_id: int, edit: Callable[[Doc[Any]], object], *, base: Sequence[bytes] = ()
) -> list[bytes]:
    """The updates of one editing session (one per transaction) of a client."""
    doc: Doc[Any] = Doc(client_id=client_id)
    for update in base:
        doc.apply_update(update)
    out: list[bytes] = []
    sub = doc.observe(lambda e: out.append(e.update))
    edit(doc)
    doc.unobserve(sub)
    return out


def meta_sets(*keys: str) -> Callable[[Doc[Any]], None]:
    def edit(doc: Doc[Any]) -> None:
        for key in keys:
            doc.get("meta", type=Map)[key] = key

    return edit


def in_one_transaction(edit: Callable[[Doc[Any]], None]) -> Callable[[Doc[Any]], None]:
    def run(doc: Doc[Any]) -> None:
        with doc.transaction():
            edit(doc)

    return run


def meta(doc: Doc[Any]) -> dict[str, Any]:
    value = doc.get("meta", type=Map).to_py()
    return value if isinstance(value, dict) else {}


def content(*updates: bytes) -> dict[str, Any]:
    """What a fresh document shows after these updates."""
    doc: Doc[Any] = Doc()
    for update in updates:
        doc.apply_update(update)
    return {"meta": meta(doc), "text": str(doc.get("text", type=Text))}


def room_content(room: Room) -> dict[str, Any]:
    return {"meta": meta(room.doc), "text": str(room.doc.get("text", type=Text))}


# -- Room.apply ------------------------------------------------------------------------------


def test_apply_returns_the_effective_update() -> None:
    (update,) = session(1, in_one_transaction(meta_sets("a", "b")))
    room = Room("p")
    effective, pending = room.apply(update)
    assert effective is not None and not pending
    assert content(effective) == content(update) == room_content(room)


def test_a_duplicate_changes_nothing() -> None:
    (update,) = session(1, meta_sets("a"))
    room = Room("p")
    room.apply(update)
    state = room.doc.get_state()
    assert room.apply(update) == (None, False)
    assert room.apply(b"\x00\x00") == (None, False)
    assert room.doc.get_state() == state


def test_the_effective_update_holds_only_what_is_new() -> None:
    first, second = session(1, lambda d: (meta_sets("a")(d), meta_sets("b")(d)))
    room = Room("p")
    room.apply(first)
    both = pycrdt.merge_updates(first, second)
    effective, _ = room.apply(both)
    assert effective is not None
    assert content(first, effective) == content(first, second)
    assert "a" not in content(effective)["meta"]


def test_an_update_whose_predecessor_is_missing_is_pending() -> None:
    zero, one, two = session(1, lambda d: [meta_sets(k)(d) for k in ("zero", "one", "two")])
    room = Room("p")
    room.apply(zero)
    before = room.doc.get_state()
    assert room.apply(two) == (None, True)
    # Held back, as a Yjs client does: not visible, the state vector unchanged.
    assert meta(room.doc) == {"zero": "zero"}
    assert room.doc.get_state() == before
    effective, pending = room.apply(one)
    assert not pending and effective is not None
    assert meta(room.doc) == {"zero": "zero", "one": "one", "two": "two"}
    # The change relayed covers both: a client holding "zero" gets to the same state.
    assert content(zero, effective) == content(zero, one, two)


def test_a_text_insert_whose_predecessor_is_missing_is_pending() -> None:
    def edit(doc: Doc[Any]) -> None:
        text = doc.get("text", type=Text)
        text += "ab"
        text += "cd"
        text.insert(2, "XY")

    first, second, third = session(1, edit)
    room = Room("p")
    assert room.apply(third) == (None, True)
    assert room.apply(second) == (None, True)
    effective, pending = room.apply(first)
    assert effective is not None and not pending
    assert str(room.doc.get("text", type=Text)) == "abXYcd"


def test_an_update_depending_on_another_clients_missing_update_is_pending() -> None:
    (a,) = session(1, lambda d: d.get("text", type=Text).insert(0, "hello"))
    (b,) = session(2, lambda d: d.get("text", type=Text).insert(5, " world"), base=[a])
    room = Room("p")
    assert room.apply(b) == (None, True)
    assert str(room.doc.get("text", type=Text)) == ""
    effective, _ = room.apply(a)
    assert effective is not None
    assert str(room.doc.get("text", type=Text)) == "hello world"


@pytest.mark.parametrize("seed", range(5))
def test_shuffled_updates_converge_to_the_source(seed: int) -> None:
    rng = random.Random(seed)

    def edit(doc: Doc[Any]) -> None:
        m = doc.get("meta", type=Map)
        t = doc.get("text", type=Text)
        for i in range(40):
            if rng.random() < 0.5:
                m[f"k{rng.randrange(5)}"] = i
            else:
                t.insert(rng.randrange(len(t) + 1), "ab")

    updates = session(7, edit)
    source = content(*updates)
    messages = updates + rng.sample(updates, 10)
    rng.shuffle(messages)
    room = Room("p")
    for update in messages:
        room.apply(update)
    assert room_content(room) == source


def _parked_cost_per_update(room: Room, updates: list[bytes]) -> float:
    started = time.process_time()
    for update in updates:
        assert room.apply(update) == (None, True)
    return (time.process_time() - started) / len(updates)


def test_parking_updates_costs_the_same_however_many_wait() -> None:
    def edit(doc: Doc[Any]) -> None:
        m = doc.get("meta", type=Map)
        for i in range(3501):
            m[f"k{i % 50}"] = i

    updates = session(4242, edit)[1:]  # the first one never arrives: all of it waits
    room = Room("p")
    for update in updates[:300]:
        room.apply(update)
    early = _parked_cost_per_update(room, updates[300:400])  # ~350 waiting
    for update in updates[400:3300]:
        room.apply(update)
    late = _parked_cost_per_update(room, updates[3300:3400])  # ~3,350 waiting: 10x
    assert late < 3 * early, f"{late * 1e3:.2f} ms vs {early * 1e3:.2f} ms per update"


@pytest.mark.parametrize(
    "bad", [b"", b"\x01", b"\x01\x02\x03", b"\xff" * 12], ids=["empty", "one", "three", "ff"]
)
def test_malformed_bytes_are_refused_and_change_nothing(bad: bytes) -> None:
    (update,) = session(1, meta_sets("a"))
    room = Room("p")
    room.apply(update)
    state = room.doc.get_update()
    with pytest.raises(InvalidUpdate):
        room.apply(bad)
    assert room.doc.get_update() == state
    assert not room.broken


def test_a_truncated_update_is_refused() -> None:
    (update,) = session(1, in_one_transaction(meta_sets("abc", "def")))
    room = Room("p")
    with pytest.raises(InvalidUpdate):
        room.apply(update[:-3])
    assert meta(room.doc) == {}


# -- a pycrdt panic ---------------------------------------------------------------------------


def test_a_panic_marks_the_room_broken() -> None:
    room = Room("p")
    (ok,) = session(1, meta_sets("a"))
    room.apply(ok)
    doc = PanickyDoc()
    doc.apply_update(room.doc.get_update())
    room.replace_doc(doc, room.gate)
    (trigger,) = session(1, meta_sets(PANIC_MARKER.decode()), base=[ok])
    with pytest.raises(RoomBroken):
        room.apply(trigger)
    assert room.broken


# -- RoomManager -----------------------------------------------------------------------------


class CountingStore(SqliteStore):
    """A real SqliteStore that counts loads and can fail them or hold them back."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.loads = 0
        self.fail_loads = 0
        self.release = asyncio.Event()
        self.release.set()
        self.after_load: Callable[[], Any] | None = None
        self.appends_open = asyncio.Event()
        self.appends_open.set()

    async def append_updates(self, batch: Sequence[tuple[str, bytes]]) -> AppendResult:
        await self.appends_open.wait()
        return await super().append_updates(batch)

    async def load_document(self, project_id: str, *, after_seq: int = 0) -> LoadedDoc:
        self.loads += 1
        await self.release.wait()
        if self.fail_loads > 0:
            self.fail_loads -= 1
            raise StoreUnavailable("the database is down (test)")
        loaded = await super().load_document(project_id, after_seq=after_seq)
        if self.after_load is not None:
            await self.after_load()
        return loaded


@dataclass
class RecordingEmitter:
    sent: list[tuple[str, bytes, str | set[str] | None]] = field(default_factory=list)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    def broadcast(self, event: str, data: bytes, *, namespace: str, skip: set[str]) -> int:
        self.sent.append((event, data, skip))
        self.event.set()
        return 1


@dataclass
class Setup:
    rooms: RoomManager
    store: CountingStore
    committer: Committer
    emitter: RecordingEmitter
    resyncs: list[str]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    settings = base_settings(tmp_path)
    store = CountingStore(str(tmp_path / "db.sqlite3"))
    await store.start()
    await store.create_project("p1", "p1", "alice")
    metrics = Metrics()
    broker = InProcessBroker(instance_id="i-test")
    holder: list[RoomManager] = []
    committer = Committer(
        store,
        window_ms=5,
        max_pending=1000,
        max_bytes=1 << 20,
        metrics=metrics,
        on_committed=lambda p, s: holder[0].on_committed(p, s),
    )
    rooms = RoomManager(
        settings=settings, store=store, broker=broker, committer=committer, metrics=metrics
    )
    holder.append(rooms)
    emitter = RecordingEmitter()
    rooms.emitter = emitter
    resyncs: list[str] = []

    async def resync(room: Room, sid: str) -> None:
        resyncs.append(sid)

    rooms.resync_hook = resync
    await broker.start(rooms)
    await committer.start()
    await rooms.start()
    try:
        yield Setup(rooms, store, committer, emitter, resyncs)
    finally:
        await rooms.close()
        await committer.close()
        await broker.close()
        await store.close()


def conn(sid: str, project_id: str = "p1") -> Conn:
    return Conn(sid=sid, project_id=project_id, principal=Principal("alice"), access=Access.WRITE)


async def test_concurrent_gets_load_the_room_once(setup: Setup) -> None:
    setup.store.release.clear()  # hold the load so that every caller waits on it
    getters = [asyncio.create_task(setup.rooms.get("p1")) for _ in range(20)]
    await asyncio.sleep(0.05)
    assert not any(t.done() for t in getters)
    setup.store.release.set()
    rooms = await asyncio.gather(*getters)
    assert setup.store.loads == 1
    assert all(r is rooms[0] for r in rooms)
    assert await setup.rooms.get("p1") is rooms[0]
    assert setup.store.loads == 1


async def test_a_failed_load_leaves_no_room_and_is_retried(setup: Setup) -> None:
    setup.store.fail_loads = 1
    results = await asyncio.gather(
        *(setup.rooms.get("p1") for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results), results
    assert setup.store.loads == 1
    assert "p1" not in setup.rooms.rooms  # no empty doc standing in for real data
    room = await setup.rooms.get("p1")
    assert setup.store.loads == 2
    assert setup.rooms.rooms["p1"] is room


async def test_an_unknown_project_is_not_found(setup: Setup) -> None:
    with pytest.raises(NotFound):
        await setup.rooms.get("nope")
    assert "nope" not in setup.rooms.rooms


async def test_accept_applies_broadcasts_and_stores(setup: Setup) -> None:
    room = await setup.rooms.join(conn("s1"))
    await setup.rooms.join(conn("s2"))
    (update,) = session(1, meta_sets("a"))
    fut = setup.rooms.accept(room, update, Origin.CLIENT, sender="s1")
    assert fut is not None
    assert await fut == 1
    assert meta(room.doc) == {"a": "a"}
    await asyncio.wait_for(setup.emitter.event.wait(), 5)
    event, data, skip = setup.emitter.sent[-1]
    assert (event, skip) == ("sync-update", {"s1"})  # everyone but the sender
    assert content(data) == content(update)
    loaded = await setup.store.load_document("p1")
    assert [e.update for e in loaded.updates] == [update]
    # A duplicate is neither stored nor relayed.
    sent = len(setup.emitter.sent)
    assert setup.rooms.accept(room, update, Origin.CLIENT, sender="s2") is None
    await asyncio.sleep(0.05)
    assert len(setup.emitter.sent) == sent
    assert (await setup.store.load_document("p1")).head_seq == 1


async def test_a_pending_update_is_stored_raw_but_not_relayed(setup: Setup) -> None:
    room = await setup.rooms.join(conn("s1"))
    await setup.rooms.join(conn("s2"))
    zero, one = session(1, lambda d: [meta_sets(k)(d) for k in ("zero", "one")])
    fut = setup.rooms.accept(room, one, Origin.CLIENT, sender="s1")
    assert fut is not None and await fut == 1  # persisted as received
    await asyncio.sleep(0.05)
    assert setup.emitter.sent == []
    fut = setup.rooms.accept(room, zero, Origin.CLIENT, sender="s1")
    assert fut is not None and await fut == 2
    await asyncio.wait_for(setup.emitter.event.wait(), 5)
    assert content(setup.emitter.sent[-1][1]) == content(zero, one)
    # The log (raw, in arrival order) rebuilds the same document.
    setup.rooms.rooms.pop("p1")
    reloaded = await setup.rooms.get("p1")
    assert meta(reloaded.doc) == {"zero": "zero", "one": "one"}


async def test_accept_refuses_malformed_updates(setup: Setup) -> None:
    room = await setup.rooms.get("p1")
    with pytest.raises(InvalidUpdate):
        setup.rooms.accept(room, b"\x01\x02\x03", Origin.CLIENT, sender="s1")
    assert setup.committer.pending() == 0
    assert (await setup.store.load_document("p1")).head_seq == 0


async def test_a_panic_rebuilds_the_room_from_the_store_and_resyncs_clients(
    setup: Setup,
) -> None:
    room = await setup.rooms.join(conn("s1"))
    await setup.rooms.join(conn("s2"))
    first, second = session(1, lambda d: [meta_sets(k)(d) for k in ("a", "b")])
    fut = setup.rooms.accept(room, first, Origin.CLIENT, sender="s1")
    assert fut is not None
    await fut
    panicky = PanickyDoc()
    panicky.apply_update(room.doc.get_update())
    room.replace_doc(panicky, room.gate)
    # Accepted while the store is slow: still queued when the panic comes.
    setup.rooms.accept(room, second, Origin.CLIENT, sender="s2")
    (trigger,) = session(3, meta_sets(PANIC_MARKER.decode()))
    with pytest.raises(InvalidUpdate, match="could not be applied"):
        setup.rooms.accept(room, trigger, Origin.CLIENT, sender="s1")

    async def rebuilt() -> None:
        while room.broken or sorted(setup.resyncs) != ["s1", "s2"]:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(rebuilt(), 5)
    assert type(room.doc) is not PanickyDoc  # a fresh document from store + queue
    assert meta(room.doc) == {"a": "a", "b": "b"}
    assert (await setup.store.load_document("p1")).head_seq == 2  # the trigger was not stored
    (after,) = session(1, meta_sets("c"), base=[first, second])
    fut = setup.rooms.accept(room, after, Origin.CLIENT, sender="s1")
    assert fut is not None and await fut == 3


async def test_rebuild_keeps_an_update_committed_while_it_loads(setup: Setup) -> None:
    room = await setup.rooms.get("p1")  # no clients: nobody to re-sync from
    (first,) = session(1, meta_sets("a"))
    fut = setup.rooms.accept(room, first, Origin.CLIENT)
    assert fut is not None
    await fut
    panicky = PanickyDoc()
    panicky.apply_update(room.doc.get_update())
    room.replace_doc(panicky, room.gate)
    (second,) = session(2, meta_sets("b"))
    setup.store.appends_open.clear()  # "second" cannot be written before the rebuild reads
    fut = setup.rooms.accept(room, second, Origin.CLIENT)
    assert fut is not None

    async def commit_during_the_load() -> None:
        setup.store.after_load = None
        setup.store.appends_open.set()
        await setup.committer.flushed("p1")  # "second" is committed after the read

    setup.store.after_load = commit_during_the_load
    (trigger,) = session(3, meta_sets(PANIC_MARKER.decode()))
    with pytest.raises(InvalidUpdate):
        setup.rooms.accept(room, trigger, Origin.CLIENT)

    async def rebuilt() -> None:
        while room.broken or type(room.doc) is PanickyDoc:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(rebuilt(), 5)
    assert await fut == 2
    assert meta(room.doc) == {"a": "a", "b": "b"}
