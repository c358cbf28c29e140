"""Rooms: one live pycrdt document per project, its local connections and presence.

The life of an update (DESIGN §5), in ``RoomManager.accept``:

1. the caller has checked permission, size and rate (``transport``);
2. apply to the room's doc inside a transaction. A malformed update raises before the
   doc is touched (``ValueError``); a pycrdt panic (``BaseException``) may have left
   the doc half-applied, so the doc is rebuilt from the store and the clients re-synced;
3. broadcast the *effective* change (what the doc integrated, from ``doc.observe``) to
   the room's other local sockets: duplicates integrate nothing and are not re-sent;
4. publish the raw update to the other instances (broker stream);
5. queue the raw update for group commit; its future resolves once durable.

Updates from other instances (origin BROKER) only do 2 and 3; from the store, only 2.

Loading (race-free on any instance): join the stream first, then read snapshot + log
from the store, then apply the stream entries that may not be stored yet (from the
oldest in-flight marker of any instance), then those that arrived meanwhile. A failed
load leaves no room behind, so an empty doc never stands in for real data.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
import pycrdt
from pycrdt import Doc

from auth.permissions import Access
from auth.principal import Principal
from collab import graph
from collab.broker.base import Broker, StreamEntry, StreamTrimmed
from collab.commit import Committer
from collab.errors import CollabError, Forbidden, InvalidUpdate, PayloadTooLarge, Unavailable
from collab.metrics import Metrics
from collab.presence import Presence
from collab.protocol import EV_AWARENESS, EV_SYNC_UPDATE, NAMESPACE_PREFIX
from collab.ratelimit import TokenBucket
from collab.settings import Settings
from collab.tasks import stop_tasks
from collab.yupdate import (
    SKIP,
    Gate,
    ImplausibleUpdate,
    StateVector,
    UpdateDecodeError,
    decode,
    decode_state_vector,
    encode,
)
from persistence.base import LoadedDoc, LogEntry, Store
from persistence.errors import NotFound, StoreError

log = logging.getLogger("collab.rooms")

# Presence is coalesced per room and sent at most this often: cursor storms then cost
# one message per room per tick, and 50 ms stays well below what users notice.
PRESENCE_TICK_S = 0.05
# How often rooms are swept for expired remote presence and due auto-versions.
MAINTENANCE_INTERVAL_S = 1.0
# A room that unloads with at least compact_after_updates / this many log rows past its
# snapshot is compacted then.
IDLE_COMPACT_DIVISOR = 10
# Why edits are refused in a room an admin froze (socket error events, REST 403).
ADMIN_READ_ONLY = "an admin made this room read-only"
# The registry's doc size is exact at most this old (an upper bound in between).
MEASURE_EVERY_S = 10.0
# An instance missing from the registry (its heartbeat key expired: 3 heartbeats of
# silence) for this many more heartbeats is dead: its clients' presence goes.
DEAD_ORIGIN_GRACE_HEARTBEATS = 1.5
# Structs waiting this long for a predecessor trigger a catch-up from the store (and a
# re-sync of the local clients): the predecessor may have been stored by an instance
# that died before publishing it. Repeats back off up to a minute.
HEAL_AFTER_S = 2.0
HEAL_BACKOFF_MAX_S = 60.0
# In-flight markers are set this far in the past: stream ids come from Redis' clock,
# markers from ours; the margin absorbs clock skew between hosts.
INFLIGHT_MARGIN_MS = 5_000


class Origin(enum.Enum):
    CLIENT = "client"  # a local socket: broadcast, publish, store
    SERVER = "server"  # REST import / restore: broadcast to all, publish, store
    BROKER = "broker"  # another instance: broadcast locally only
    STORE = "store"  # loading and catching up: nothing else


class Emitter(Protocol):
    """How rooms reach their sockets (python-socketio in production)."""

    def broadcast(self, event: str, data: bytes, *, namespace: str, skip: set[str]) -> int:
        """Queue a binary event for every socket of the namespace but ``skip``, in call
        order; return how many got it."""


@dataclass(slots=True)
class Conn:
    """One socket in a document namespace."""

    sid: str
    project_id: str
    principal: Principal
    access: Access
    messages: TokenBucket = field(default_factory=lambda: TokenBucket(1e9, 1e9))
    refusals: TokenBucket = field(default_factory=lambda: TokenBucket(1e9, 1e9))
    connected_at: float = field(default_factory=time.time)
    read_only_reason: str | None = None  # set when an admin made the room read-only
    role: str | None = None  # project role ("owner", "editor", "viewer"); None = admin/service
    resync_scheduled: bool = False  # a sync-step-1 will follow a rate-limit refusal

    @property
    def namespace(self) -> str:
        return NAMESPACE_PREFIX + self.project_id


class Room:
    """One project's live document on this instance."""

    def __init__(self, project_id: str) -> None:
        self.project_id = project_id
        self.namespace = NAMESPACE_PREFIX + project_id
        self.doc = Doc[Any]()
        self.presence = Presence()
        self.conns: dict[str, Conn] = {}
        self.holds = 0  # REST operations using the room
        self.loaded = asyncio.Event()
        self.load_error: BaseException | None = None
        self.buffer: list[StreamEntry] | None = []  # stream entries while loading
        self.store_seq = 0  # every log row <= this is in the doc
        self.snapshot_seq = 0  # the stored snapshot's seq when the room was loaded
        self._committed_above: set[int] = set()
        self.read_only = False
        self.read_only_live = False  # set by a cluster message: newer than the stored flag
        self.unversioned_since: float | None = None  # first change not in a version
        self.last_activity = time.time()
        self.updates_window: list[float] = []  # timestamps of recent updates (rate)
        self.foreign_origins: set[str] = set()  # instances whose entries we applied
        self.unload_handle: asyncio.TimerHandle | None = None
        self.presence_handle: asyncio.TimerHandle | None = None
        self.broken = False
        self.gate = Gate()
        self.waiting_since: float | None = None  # structs in the gate since then
        self.rebuild_log: list[bytes] | None = None  # updates applied during a rebuild
        # Encoded size of the doc when last measured, plus what was accepted since:
        # an upper bound, cheap to keep (measuring is O(doc)). See ``doc_bytes``.
        self.measured_bytes = 0
        self.measured_at = 0.0  # time.monotonic() of the last measure()
        self.bytes_since_measured = 0
        self.heal_at = 0.0
        self.heal_backoff = HEAL_AFTER_S
        self._sv: StateVector | None = None
        self._captured: list[bytes] = []
        self._sub = self.doc.observe(self._on_transaction)

    # -- the document ---------------------------------------------------------------------

    def _on_transaction(self, event: pycrdt.TransactionEvent) -> None:
        # Runs at commit of every transaction; must never raise (pycrdt would re-raise
        # at the end of the transaction and the change would be kept anyway).
        self._captured.append(event.update)

    def apply(self, update: bytes) -> tuple[bytes | None, bool]:
        """Apply what is causally ready of an update (see ``collab.yupdate``).

        Returns (the change to relay, or None when nothing changed; whether part of the
        update waits for its predecessors). Raises ``InvalidUpdate`` when the bytes are
        not a Yjs update (doc untouched), and ``RoomBroken`` after a pycrdt panic.
        """
        try:
            split = self.gate.split(update, self.state_vector())
        except ImplausibleUpdate as exc:
            raise InvalidUpdate(str(exc)) from exc
        except UpdateDecodeError as exc:
            raise InvalidUpdate("malformed update", {"reason": str(exc)[:200]}) from exc
        self._captured.clear()
        chunk, sv = split.ready, split.sv
        while chunk is not None:
            self._integrate(chunk, sv)
            released = self.gate.release(sv)
            chunk, sv = released if released is not None else (None, sv)
        captured = list(self._captured)
        self._captured.clear()
        if not captured:
            return None, split.parked
        return (
            captured[0] if len(captured) == 1 else pycrdt.merge_updates(*captured)
        ), split.parked

    def would_change(self, update: bytes) -> bool:
        """Would ``update`` change the document? (For viewers' step-2 replies: an
        answer with nothing new is fine, anything else is refused.)"""
        try:
            decoded = decode(update)
        except UpdateDecodeError as exc:
            raise InvalidUpdate("malformed update", {"reason": str(exc)[:200]}) from exc
        sv = self.state_vector()
        for client, structs in decoded.structs.items():
            if any(s.kind != SKIP and s.end > sv.get(client, 0) for s in structs):
                return True  # content we do not have
        deletes = {c: r for c, r in decoded.deletes.items() if r}
        if not deletes:
            return False
        if any(c + n > sv.get(client, 0) for client, rr in deletes.items() for c, n in rr):
            return True
        # Deletions of content we have: new unless already deleted. Try them on a copy.
        copy = Doc[Any]()
        copy.apply_update(self.doc.get_update())
        fired: list[bool] = []
        sub = copy.observe(lambda _e: fired.append(True))
        try:
            copy.apply_update(encode({}, deletes))
        except Exception:
            return True
        except BaseException as exc:  # pyo3 PanicException
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            return True
        finally:
            copy.unobserve(sub)
        return bool(fired)

    def _integrate(self, chunk: bytes, sv_after: StateVector) -> None:
        """Hand a causally complete update to yrs (which then has state ``sv_after``)."""
        try:
            with self.doc.transaction():
                self.doc.apply_update(chunk)
        except (ValueError, RuntimeError) as exc:
            raise InvalidUpdate("malformed update", {"reason": str(exc)[:200]}) from exc
        except BaseException as exc:
            if isinstance(
                exc, KeyboardInterrupt | SystemExit | GeneratorExit | asyncio.CancelledError
            ):
                raise
            # pyo3_runtime.PanicException derives from BaseException.
            self._sv = None
            self.broken = True
            raise RoomBroken(str(exc)[:200]) from exc
        self._sv = sv_after

    def state_vector(self) -> StateVector:
        if self._sv is None:
            self._sv = decode_state_vector(self.doc.get_state())
        return self._sv

    def change(self, mutate: Callable[[Doc[Any]], None]) -> bytes | None:
        """Run a server-side change in one transaction; return its update."""
        self._captured.clear()
        with self.doc.transaction():
            mutate(self.doc)
        self._sv = None
        captured = list(self._captured)
        self._captured.clear()
        if not captured:
            return None
        return captured[0] if len(captured) == 1 else pycrdt.merge_updates(*captured)

    def replace_doc(self, doc: Doc[Any], gate: Gate) -> None:
        """Swap in a (re)built document and the updates still waiting for it."""
        self.doc.unobserve(self._sub)
        self.doc = doc
        self.gate = gate
        self._sv = None
        self.measure()
        self._sub = self.doc.observe(self._on_transaction)
        self.broken = False

    def measure(self) -> int:
        """The document's encoded size now (O(doc): done on load and periodically)."""
        self.measured_bytes = len(self.doc.get_update())
        self.bytes_since_measured = 0
        self.measured_at = time.monotonic()
        return self.measured_bytes

    @property
    def doc_bytes(self) -> int:
        """An upper bound of the encoded size (updates only add what they carry)."""
        return self.measured_bytes + self.bytes_since_measured

    def graph(self) -> dict[str, Any]:
        return dict(graph.materialize(self.doc))

    def note_committed(self, seqs: list[int | None]) -> None:
        """Advance ``store_seq`` over contiguous seqs this instance committed."""
        for seq in seqs:
            if seq is not None and seq > self.store_seq:
                self._committed_above.add(seq)
        while self.store_seq + 1 in self._committed_above:
            self.store_seq += 1
            self._committed_above.discard(self.store_seq)

    def note_activity(self) -> None:
        now = time.time()
        self.last_activity = now
        self.updates_window.append(now)
        if len(self.updates_window) > 2000:
            del self.updates_window[:1000]

    def updates_per_second(self, window_s: float = 10.0) -> float:
        cutoff = time.time() - window_s
        return sum(1 for t in self.updates_window if t >= cutoff) / window_s

    @property
    def writers(self) -> int:
        return sum(1 for c in self.conns.values() if c.access >= Access.WRITE)

    def summary(self) -> dict[str, Any]:
        """What the room registry and the admin view show of this room."""
        nodes, edges = graph.counts(self.doc)
        users: dict[str, dict[str, Any]] = {}
        presence_by_user: dict[str, list[dict[str, Any]]] = {}
        for entry in self.presence.users():
            user = entry.get("user") or {}
            uid = user.get("id")
            if isinstance(uid, str):
                presence_by_user.setdefault(uid, []).append(entry)
        for conn in self.conns.values():
            u = users.setdefault(
                conn.principal.user_id,
                {
                    "id": conn.principal.user_id,
                    "name": conn.principal.display_name,
                    "role": conn.role or ("admin" if conn.principal.is_admin else "service"),
                    "connections": 0,
                },
            )
            u["connections"] += 1
        for uid, u in users.items():
            states = self.presence.states()
            u["presence"] = [
                _presence_summary(states.get(e["client_id"])) for e in presence_by_user.get(uid, [])
            ]
        return {
            "project_id": self.project_id,
            "connections": len(self.conns),
            "users": sorted(users.values(), key=lambda u: str(u["id"])),
            # Encoding the doc is O(doc) on the event loop (~7 ms for 50k items): the
            # heartbeat re-measures a changed doc at most every MEASURE_EVERY_S.
            "doc_bytes": (
                self.measure()
                if self.bytes_since_measured
                and time.monotonic() - self.measured_at >= MEASURE_EVERY_S
                else self.measured_bytes + self.bytes_since_measured
            ),
            "node_count": nodes,
            "edge_count": edges,
            "updates_per_s": round(self.updates_per_second(), 2),
            "last_activity": self.last_activity,
            "read_only": self.read_only,
            # Structs received before their predecessors (see collab.yupdate).
            "waiting_structs": self.gate.pending_structs(),
        }


def _presence_summary(state: dict[str, Any] | None) -> dict[str, Any]:
    """The parts of an awareness state an admin cares about."""
    if not state:
        return {}
    keep = ("cursor", "pointer", "selection", "selected", "dragging", "viewport")
    return {k: state[k] for k in keep if k in state}


class RoomBroken(Exception):
    """pycrdt panicked while applying an update: the doc must be rebuilt."""


VersionHook = Callable[["Room", str], Awaitable[None]]


class RoomManager:
    """All rooms of this instance; the broker's handler."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        broker: Broker,
        committer: Committer,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.broker = broker
        self.committer = committer
        self.metrics = metrics
        self.emitter: Emitter | None = None
        self.rooms: dict[str, Room] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._origins_missing_since: dict[str, float] = {}  # instances not in the registry
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintenance: asyncio.Task[None] | None = None
        self.on_auto_version: VersionHook | None = None
        self.on_control: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        self.on_compact_due: Callable[[str], None] | None = None
        self.resync_hook: Callable[[Room, str], Awaitable[None]] | None = None
        self.closing = False

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.subscribe(CONTROL_CHANNEL)
        self._maintenance = asyncio.create_task(self._maintain(), name="collab-rooms-maintain")

    async def close(self) -> None:
        """Flush every room's pending work and release them (graceful shutdown)."""
        self.closing = True
        if self._maintenance is not None:
            await stop_tasks([self._maintenance], log)
        for room in list(self.rooms.values()):
            if room.loaded.is_set() and room.load_error is None:
                with contextlib.suppress(Exception):
                    await self._unload(room, final=True)
        await stop_tasks(list(self._tasks), log)

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """A background task the manager keeps alive and cancels at close."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    # -- load / unload ------------------------------------------------------------------

    def _lock(self, project_id: str) -> asyncio.Lock:
        return self._locks.setdefault(project_id, asyncio.Lock())

    async def get(self, project_id: str) -> Room:
        """The loaded room (loading it once, however many callers wait)."""
        room = self.rooms.get(project_id)
        if room is None:
            async with self._lock(project_id):
                room = self.rooms.get(project_id)
                if room is None:
                    if len(self.rooms) >= self.settings.max_rooms:
                        raise Unavailable(
                            "this instance holds too many rooms", {"max": self.settings.max_rooms}
                        )
                    room = Room(project_id)
                    self.rooms[project_id] = room
                    self.spawn(self._load(room), f"load:{project_id}")
        await room.loaded.wait()
        if room.load_error is not None:
            raise room.load_error
        if room.unload_handle is not None:
            room.unload_handle.cancel()
            room.unload_handle = None
        return room

    async def _load(self, room: Room) -> None:
        started = time.monotonic()
        pid = room.project_id
        try:
            position = await self.broker.join_stream(pid)
            await self.broker.subscribe(presence_channel(pid))
            project = await self.store.get_project(pid)
            if not room.read_only_live:
                room.read_only = project.read_only
            loaded = await self.store.load_document(pid)
            built = await asyncio.to_thread(build_doc, loaded)
            for seq in built.bad:
                log.error("skipped an unreadable log row", extra={"project": pid, "seq": seq})
            room.replace_doc(built.doc, built.gate)
            room.store_seq = loaded.head_seq
            room.snapshot_seq = loaded.snapshot_seq
            # Entries published but maybe not stored yet: from the oldest marker on.
            markers = await self.broker.inflight_markers(pid)
            start = position
            others = [ms for inst, ms in markers.items() if inst != self.broker.instance_id]
            if others:
                start = min(position, f"{max(0, min(others) - INFLIGHT_MARGIN_MS)}-0", key=_id_key)
            with contextlib.suppress(StreamTrimmed):
                self._apply_entries(room, await self.broker.read_stream(pid, start))
            buffered, room.buffer = room.buffer or [], None
            self._apply_entries(room, buffered)
        except BaseException as exc:
            await self._discard(room)
            room.load_error = (
                exc
                if isinstance(exc, CollabError | NotFound)
                else Unavailable(
                    "the document could not be loaded, retry later", {"reason": type(exc).__name__}
                )
            )
            room.loaded.set()
            if not isinstance(exc, CollabError | NotFound | StoreError):
                log.exception("loading %s failed", pid)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        self.metrics.room_loads.observe(time.monotonic() - started)
        self.metrics.rooms.set(len(self.rooms))
        room.loaded.set()
        log.info("room loaded", extra={"project": pid, "seq": room.store_seq})

    async def _discard(self, room: Room) -> None:
        if self.rooms.get(room.project_id) is room:
            del self.rooms[room.project_id]
        with contextlib.suppress(Exception):
            await self.broker.leave_stream(room.project_id)
        with contextlib.suppress(Exception):
            await self.broker.unsubscribe(presence_channel(room.project_id))
        self.metrics.rooms.set(len(self.rooms))

    def _maybe_schedule_unload(self, room: Room) -> None:
        if room.conns or room.holds or self.closing or room.unload_handle is not None:
            return
        loop = asyncio.get_running_loop()
        room.unload_handle = loop.call_later(
            self.settings.room_grace_ms / 1000.0,
            lambda: self.spawn(self._unload(room), f"unload:{room.project_id}"),
        )

    async def _unload(self, room: Room, *, final: bool = False) -> None:
        async with self._lock(room.project_id):
            room.unload_handle = None
            if not final and (
                room.conns or room.holds or self.rooms.get(room.project_id) is not room
            ):
                return
            # Everything accepted must be durable before the doc goes away.
            await self.committer.flushed(room.project_id)
            if room.unversioned_since is not None and self.on_auto_version is not None:
                with contextlib.suppress(Exception):
                    await self.on_auto_version(room, "room closed")
            if room.foreign_origins:
                await self._reconcile_if_orphaned(room, await self._live_instances())
            if not final and (room.conns or room.holds):
                return
            await self._discard(room)
            log.info("room unloaded", extra={"project": room.project_id})
            # An idle project compacts too (DESIGN §5), so that its next load is one
            # snapshot even when its log never reached the count that triggers it.
            idle_rows = max(1, self.settings.compact_after_updates // IDLE_COMPACT_DIVISOR)
            if (
                not final
                and self.on_compact_due is not None
                and room.store_seq - room.snapshot_seq >= idle_rows
            ):
                self.on_compact_due(room.project_id)

    async def drop(self, project_id: str) -> None:
        """Forget a deleted project's room at once (nothing left to store it in)."""
        room = self.rooms.get(project_id)
        if room is None:
            return
        room.unversioned_since = None
        if room.unload_handle is not None:
            room.unload_handle.cancel()
            room.unload_handle = None
        async with self._lock(project_id):
            await self._discard(room)

    @contextlib.asynccontextmanager
    async def hold(self, project_id: str) -> AsyncIterator[Room]:
        """Use a room from a REST handler (loads it; keeps it loaded meanwhile)."""
        room = await self.get(project_id)
        room.holds += 1
        try:
            yield room
        finally:
            room.holds -= 1
            self._maybe_schedule_unload(room)

    # -- connections ----------------------------------------------------------------------

    async def join(self, conn: Conn) -> Room:
        room = await self.get(conn.project_id)
        room.conns[conn.sid] = conn
        if room.read_only:
            conn.read_only_reason = ADMIN_READ_ONLY
        self.metrics.connections.inc()
        return room

    async def leave(self, sid: str, project_id: str) -> None:
        room = self.rooms.get(project_id)
        if room is None or sid not in room.conns:
            return
        conn = room.conns.pop(sid)
        self.metrics.connections.dec()
        if room.presence.remove_sid(sid):
            self._schedule_presence(room, immediate=True)
        if (
            conn.access >= Access.WRITE
            and room.writers == 0
            and room.unversioned_since is not None
            and self.on_auto_version is not None
        ):
            self.spawn(self.on_auto_version(room, "last editor left"), f"version:{project_id}")
        self._maybe_schedule_unload(room)

    # -- the write path -------------------------------------------------------------------

    def accept(
        self, room: Room, update: bytes, origin: Origin, *, sender: str | None = None
    ) -> asyncio.Future[int | None] | None:
        """Apply, broadcast, publish and queue an update (see module docstring).

        Returns the commit future (None when nothing needed storing). Raises
        ``InvalidUpdate`` (doc unchanged) or ``Unavailable`` (store backlog full).
        """
        stores = origin in (Origin.CLIENT, Origin.SERVER)
        if stores and self.committer.pending() >= self.settings.max_pending_updates:
            raise Unavailable("too many updates are waiting for the store; retry later")
        if room.rebuild_log is not None:
            room.rebuild_log.append(update)
        limit = self.settings.max_doc_bytes
        # The cheap upper bound first; only near the limit is the doc measured.
        if stores and room.doc_bytes + len(update) > limit and room.measure() + len(update) > limit:
            raise PayloadTooLarge(
                "the document has reached its size limit",
                {"doc_bytes": room.measured_bytes, "max_doc_bytes": limit},
            )
        try:
            effective, pending = room.apply(update)
        except RoomBroken as exc:
            self.spawn(self.rebuild(room), f"rebuild:{room.project_id}")
            raise InvalidUpdate(
                "the update could not be applied and was refused", {"reason": str(exc)}
            ) from exc
        if room.gate.pending:
            if room.waiting_since is None:
                room.waiting_since = time.monotonic()
        elif room.waiting_since is not None:
            room.waiting_since = None
            room.heal_backoff = HEAL_AFTER_S
        if effective is None and not pending:
            return None  # a duplicate: nothing new
        room.note_activity()
        room.bytes_since_measured += len(update)
        self.metrics.updates_in.labels(origin.value).inc()
        self.metrics.update_bytes_in.inc(len(update))
        if effective is not None:
            if room.unversioned_since is None:
                room.unversioned_since = time.time()
            # Relay what the doc integrated, in the order it did: clients then never
            # hold structs whose predecessors they lack. When this update released
            # parked ones, the sender lacks nothing of it but others may: skip nobody.
            self._broadcast(room, EV_SYNC_UPDATE, effective, skip=sender if not pending else None)
        if not stores:
            return None
        if self.committer.pending(room.project_id) == 0:
            self.broker.set_inflight(room.project_id, int(time.time() * 1000) - INFLIGHT_MARGIN_MS)
        self.broker.publish_update(room.project_id, update)
        return self.committer.submit(room.project_id, update)

    def server_change(
        self, room: Room, mutate: Callable[[Doc[Any]], None]
    ) -> asyncio.Future[int | None] | None:
        """Apply a server-side change (import, restore) as a normal forward edit."""
        if room.read_only:
            raise Forbidden(ADMIN_READ_ONLY, {"project_id": room.project_id, "read_only": True})
        update = room.change(mutate)
        if update is None:
            return None
        room.note_activity()
        room.bytes_since_measured += len(update)
        if room.unversioned_since is None:
            room.unversioned_since = time.time()
        self._broadcast(room, EV_SYNC_UPDATE, update, skip=None)
        if self.committer.pending(room.project_id) == 0:
            self.broker.set_inflight(room.project_id, int(time.time() * 1000) - INFLIGHT_MARGIN_MS)
        self.broker.publish_update(room.project_id, update)
        return self.committer.submit(room.project_id, update)

    def on_committed(self, project_id: str, seqs: list[int | None]) -> None:
        """Committer callback (in the loop)."""
        room = self.rooms.get(project_id)
        if room is not None:
            room.note_committed(seqs)
        if self.committer.pending(project_id) == 0:
            self.broker.set_inflight(project_id, None)
        if self.on_compact_due is not None and any(
            s is not None and s % self.settings.compact_after_updates == 0 for s in seqs
        ):
            self.on_compact_due(project_id)

    def _broadcast(
        self, room: Room, event: str, payload: bytes, *, skip: str | set[str] | None
    ) -> None:
        if not room.conns or self.emitter is None:
            return
        if isinstance(skip, str) and len(room.conns) == 1 and skip in room.conns:
            return
        started = time.monotonic()
        skipped = {skip} if isinstance(skip, str) else (skip or set())
        sent = self.emitter.broadcast(event, payload, namespace=room.namespace, skip=skipped)
        self.metrics.messages_out.labels(event).inc(sent)
        self.metrics.fanout_seconds.observe(time.monotonic() - started)

    async def rebuild(self, room: Room) -> None:
        """Replace a possibly corrupt doc by store + queued updates, then re-sync."""
        async with self._lock(room.project_id):
            if not room.broken:
                return
            # What is queued now is stored after the load or still queued; what arrives
            # from here on is logged: nothing falls between the two.
            room.rebuild_log = []
            queued = self.committer.queued(room.project_id)
            try:
                loaded = await self.store.load_document(room.project_id)
                rebuilt = LoadedDoc(
                    snapshot=loaded.snapshot,
                    snapshot_seq=loaded.snapshot_seq,
                    updates=[*loaded.updates, *(LogEntry(-1, u) for u in queued)],
                    head_seq=loaded.head_seq,
                )
                built = await asyncio.to_thread(build_doc, rebuilt)
            except StoreError:
                room.rebuild_log = None
                log.exception("rebuild of %s failed; retrying later", room.project_id)
                await asyncio.sleep(1.0)
                self.spawn(self.rebuild(room), f"rebuild:{room.project_id}")
                return
            logged, room.rebuild_log = room.rebuild_log, None
            room.replace_doc(built.doc, built.gate)
            for update in logged:
                with contextlib.suppress(InvalidUpdate, RoomBroken):
                    room.apply(update)
            room.store_seq = loaded.head_seq
            log.warning("room %s rebuilt after a failed update", room.project_id)
        await self.resync_clients(room)

    def on_store_recovered(self) -> None:
        """Committer callback: the store is back, so pull from every local client what
        the rooms may lack (updates refused while the queue was full)."""
        for room in list(self.rooms.values()):
            if room.conns:
                self.spawn(self.resync_clients(room), f"resync:{room.project_id}")

    async def resync_clients(self, room: Room) -> None:
        """Send our state vector to every local client: they answer with what we lack."""
        if self.resync_hook is not None:
            for sid in list(room.conns):
                await self.resync_hook(room, sid)

    # -- presence -------------------------------------------------------------------------

    def presence_changed(self, room: Room) -> None:
        self._schedule_presence(room)

    def _schedule_presence(self, room: Room, *, immediate: bool = False) -> None:
        if room.presence_handle is not None:
            if not immediate:
                return
            room.presence_handle.cancel()
        loop = asyncio.get_running_loop()
        room.presence_handle = loop.call_later(
            0 if immediate else PRESENCE_TICK_S, self._flush_presence, room
        )

    def _flush_presence(self, room: Room) -> None:
        room.presence_handle = None
        out = room.presence.take_dirty()
        if out is None:
            return
        self._broadcast(room, EV_AWARENESS, out.payload, skip=out.owners or None)
        if out.local_payload is not None:
            self.broker.publish(presence_channel(room.project_id), self._tag(out.local_payload))

    def _tag(self, payload: bytes) -> bytes:
        instance = self.broker.instance_id.encode()
        return len(instance).to_bytes(1, "big") + instance + payload

    # -- broker handler -----------------------------------------------------------------

    async def on_stream_entries(self, project_id: str, entries: list[StreamEntry]) -> None:
        room = self.rooms.get(project_id)
        if room is None:
            return
        if room.buffer is not None:
            room.buffer.extend(entries)
            return
        self._apply_entries(room, entries, broadcast=True)

    def _apply_entries(
        self, room: Room, entries: list[StreamEntry], *, broadcast: bool = False
    ) -> None:
        for entry in entries:
            if entry.origin == self.broker.instance_id:
                continue
            room.foreign_origins.add(entry.origin)
            try:
                if broadcast:
                    self.accept(room, entry.payload, Origin.BROKER)
                else:
                    room.apply(entry.payload)
            except InvalidUpdate:
                log.warning("skipped a bad stream entry", extra={"project": room.project_id})

    async def on_stream_gap(self, project_id: str) -> None:
        room = self.rooms.get(project_id)
        if room is not None and room.buffer is None:
            self.spawn(self.catch_up(room), f"catchup:{project_id}")

    async def catch_up(self, room: Room) -> None:
        """Apply what the store holds beyond ``store_seq`` (after a stream gap)."""
        try:
            loaded = await self.store.load_document(room.project_id, after_seq=room.store_seq)
        except StoreError:
            log.warning("catch-up of %s failed; clients will be re-synced", room.project_id)
            await self.resync_clients(room)
            return
        if loaded.snapshot is not None:
            self.accept(room, loaded.snapshot, Origin.BROKER)
        for entry in loaded.updates:
            with contextlib.suppress(InvalidUpdate):
                self.accept(room, entry.update, Origin.BROKER)
        room.store_seq = max(room.store_seq, loaded.head_seq)
        await self.resync_clients(room)

    async def on_message(self, channel: str, payload: bytes) -> None:
        if channel.startswith("presence:"):
            room = self.rooms.get(channel.removeprefix("presence:"))
            if room is None or room.buffer is not None or len(payload) < 1:
                return
            n = payload[0]
            origin = payload[1 : 1 + n].decode(errors="replace")
            if origin == self.broker.instance_id:
                return
            try:
                if room.presence.apply_remote(payload[1 + n :], origin):
                    self._schedule_presence(room)
            except CollabError:
                log.warning("bad presence from %s", origin)
        elif channel == CONTROL_CHANNEL and self.on_control is not None:
            try:
                message = orjson.loads(payload)
            except orjson.JSONDecodeError:
                log.warning("bad control message")
                return
            await self.on_control(message)

    async def on_recovered(self) -> None:
        """The broker is back: catch up from the store and pull from clients."""
        for room in list(self.rooms.values()):
            if room.loaded.is_set() and room.load_error is None:
                self.spawn(self.catch_up(room), f"catchup:{room.project_id}")

    # -- orphaned updates -----------------------------------------------------------------

    async def _live_instances(self) -> set[str] | None:
        """The ids in the instance registry; None when it cannot be read (Redis down)."""
        try:
            return set(await self.broker.live_instances())
        except Exception:
            return None

    async def _reconcile_if_orphaned(self, room: Room, live: set[str] | None) -> None:
        """If an instance whose entries we applied died before storing them, store
        whatever this doc holds that the store lacks. ``live``: the registry's ids."""
        if live is None:
            return
        dead = room.foreign_origins - live
        if not dead:
            return
        markers = await self.broker.inflight_markers(room.project_id)
        if not any(inst in markers for inst in dead):
            room.foreign_origins -= dead
            return
        await self.reconcile(room)
        for inst in dead:
            await self.broker.clear_inflight(room.project_id, inst)
        room.foreign_origins -= dead

    async def reconcile(self, room: Room) -> None:
        """Append ``live doc - stored doc`` to the log (no-op when the store has it all)."""
        loaded = await self.store.load_document(room.project_id)
        stored = (await asyncio.to_thread(build_doc, loaded)).doc
        diff = room.doc.get_update(stored.get_state())
        changed: list[bytes] = []
        sub = stored.observe(lambda e: changed.append(e.update))
        stored.apply_update(diff)
        stored.unobserve(sub)
        if changed:
            fut = self.committer.submit(room.project_id, diff)
            await fut
            log.warning(
                "stored updates orphaned by a dead instance", extra={"project": room.project_id}
            )

    # -- maintenance --------------------------------------------------------------------

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTENANCE_INTERVAL_S)
            try:
                await self._maintain_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room maintenance failed")

    def _drop_dead_presence(self, origins: set[str], live: set[str] | None) -> None:
        """Remove the presence of clients of instances (``origins``: those with
        presence here) that left the registry (``live``; None: unreadable, so expiry by
        timeout only) instead of waiting 30 s for their entries to expire. An instance
        must be missing for a while first: one that just started, or that re-registers
        after a Redis restart, is not dead."""
        if not origins:
            self._origins_missing_since.clear()
            return
        if live is None:
            return
        now = time.monotonic()
        grace = self.settings.heartbeat_s * DEAD_ORIGIN_GRACE_HEARTBEATS
        missing = origins - live
        for origin in list(self._origins_missing_since):
            if origin not in missing:
                del self._origins_missing_since[origin]
        dead = set()
        for origin in missing:
            since = self._origins_missing_since.setdefault(origin, now)
            if now - since >= grace:
                dead.add(origin)
        if not dead:
            return
        log.info("removing presence of dead instances %s", sorted(dead))
        for room in list(self.rooms.values()):
            if room.presence.drop_origins(dead):
                self._schedule_presence(room)

    async def _maintain_once(self) -> None:
        now = time.time()
        lag = self.committer.oldest_age_s()
        self.metrics.commit_lag_seconds.set(lag)
        # One read of the instance registry per tick, only when some room needs it.
        origins: set[str] = set()
        for room in self.rooms.values():
            origins |= room.presence.remote_origins()
        orphans = any(room.foreign_origins for room in self.rooms.values())
        live = await self._live_instances() if origins or orphans else None
        self._drop_dead_presence(origins, live)
        period = self.settings.auto_version_minutes * 60
        for room in list(self.rooms.values()):
            if room.buffer is not None:
                continue
            if room.presence.expire():
                self._schedule_presence(room)
            if (
                period > 0
                and room.unversioned_since is not None
                and now - room.unversioned_since >= period
                and self.on_auto_version is not None
            ):
                self.spawn(self.on_auto_version(room, "periodic"), f"version:{room.project_id}")
            if room.foreign_origins:
                await self._reconcile_if_orphaned(room, live)
            mono = time.monotonic()
            if (
                room.waiting_since is not None
                and mono - room.waiting_since >= HEAL_AFTER_S
                and mono >= room.heal_at
            ):
                room.heal_at = mono + room.heal_backoff
                room.heal_backoff = min(room.heal_backoff * 2, HEAL_BACKOFF_MAX_S)
                log.warning(
                    "%d structs wait for missing predecessors; catching up",
                    room.gate.pending_structs(),
                    extra={"project": room.project_id},
                )
                self.spawn(self.catch_up(room), f"heal:{room.project_id}")


CONTROL_CHANNEL = "control"


def presence_channel(project_id: str) -> str:
    return f"presence:{project_id}"


def _id_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


@dataclass(slots=True)
class Built:
    """A document rebuilt from the store (see ``build_doc``)."""

    doc: Doc[Any]
    gate: Gate  # structs still waiting for predecessors
    bad: list[int]  # seqs of rows that could not be read (skipped and reported)
    first_parked_seq: int | None  # first row whose structs still wait, if any


def build_doc(loaded: LoadedDoc) -> Built:
    """A fresh doc from snapshot + log (run in a thread for long logs).

    The snapshot is applied as it is: compaction writes it from a document that went
    through the gate, and never covers rows whose structs still wait (see
    ``collab.compaction``), so it is complete. Log rows go through the causal gate. One
    bad row never makes a project unloadable: it is skipped and reported.
    """
    doc = Doc[Any]()
    gate = Gate()
    bad: list[int] = []
    first_parked: int | None = None
    with doc.transaction():
        if loaded.snapshot:
            try:
                doc.apply_update(loaded.snapshot)
            except Exception:
                bad.append(loaded.snapshot_seq)
        sv: StateVector = decode_state_vector(doc.get_state())
        for entry in loaded.updates:
            try:
                split = gate.split(entry.update, sv)
                if split.parked and first_parked is None:
                    first_parked = entry.seq
                chunk, after = split.ready, split.sv
                while chunk is not None:
                    doc.apply_update(chunk)
                    sv = after
                    released = gate.release(sv)
                    chunk, after = released if released is not None else (None, sv)
            except Exception:
                bad.append(entry.seq)
            except BaseException as exc:  # pyo3 PanicException
                if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                    raise
                bad.append(entry.seq)
    return Built(doc, gate, bad, first_parked if gate.pending else None)
