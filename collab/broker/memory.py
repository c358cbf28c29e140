"""In-process broker: the embedded single-instance default, and Redis's stand-in in tests.

``InProcessHub`` is the shared state that Redis holds in a cluster (streams, stream
metadata, in-flight markers, channel subscriptions, instance heartbeats);
``InProcessBroker`` is one "instance" attached to it. Two brokers on one hub behave like
two instances on one Redis, with the same semantics as ``RedisBroker``:

* stream ids are Redis ids (``"<ms>-<n>"``, monotonic per stream);
* every entry carries a per-stream sequence number: a reader detects entries it never
  saw (trimmed before it read them) as a jump in the sequence and reports a gap;
* trimming is exact and happens when an entry is added, down to
  ``min(now - retention, oldest in-flight marker - INFLIGHT_SKEW_MS)``; the stream
  remembers the largest id it trimmed, which is how ``read_stream`` knows whether
  entries after a given id are gone;
* heartbeats expire after their TTL (``time.monotonic`` based).

Writes cannot fail here, so the "queue" is executed at call time (which keeps call
order); deliveries to handlers still go through one reader task and one listener task
per broker, never from inside the caller.

The small helpers at the top (ids, trim point, cursors, delivery with gap detection)
are shared with ``collab.broker.redis`` so both backends decide gaps the same way.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from collab.broker.base import (
    BrokerError,
    BrokerHandler,
    StreamEntry,
    StreamTrimmed,
)
from collab.tasks import stop_tasks

__all__ = [
    "INFLIGHT_SKEW_MS",
    "READ_BATCH",
    "ZERO_ID",
    "InProcessBroker",
    "InProcessHub",
    "RawEntry",
    "StreamCursor",
    "deliver_stream_entries",
    "format_id",
    "parse_id",
    "trim_point_ms",
]

# In-flight markers are set from the instance's clock while stream ids come from the
# backend's clock (Redis TIME). Trimming stops this much below the oldest marker so
# that a few seconds of clock skew between hosts can never trim an uncommitted entry.
INFLIGHT_SKEW_MS = 5_000

# Entries handed to one ``on_stream_entries`` call at most: the same bound as the Redis
# reader's ``XREAD COUNT``, so both backends batch alike.
READ_BATCH = 1_000

StreamId = tuple[int, int]
ZERO_ID = "0-0"


def parse_id(stream_id: str) -> StreamId:
    """``"<ms>-<n>"`` → ``(ms, n)``; a bare ``"<ms>"`` means ``(ms, 0)``."""
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def trim_point_ms(now_ms: int, retention_ms: int, markers: Iterable[int]) -> int:
    """The stream may lose entries with ``ms < trim point`` (and only those)."""
    point = now_ms - retention_ms
    for marker in markers:
        point = min(point, marker - INFLIGHT_SKEW_MS)
    return point


@dataclass(slots=True)
class StreamCursor:
    """A reader's position in one joined stream: the last id it read, and that entry's
    sequence number (0 before the first entry). A new object per join, so a reader can
    tell a stale batch (read before a leave/re-join) by identity."""

    last_id: str
    last_seq: int


@dataclass(frozen=True, slots=True)
class RawEntry:
    """A stream entry as stored: ``gap`` marks an entry that stands for entries its
    origin had to drop (its queue overflowed during an outage)."""

    id: str
    seq: int
    origin: str
    payload: bytes
    gap: bool = False


async def call_handler(awaitable: Awaitable[None], log: logging.Logger, what: str) -> None:
    """Await a handler callback; callbacks must not raise, but if one does, log it and
    keep the loop alive."""
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("broker handler %s raised", what)


async def deliver_stream_entries(
    handler: BrokerHandler,
    project_id: str,
    cursor: StreamCursor,
    entries: Iterable[RawEntry],
    *,
    instance_id: str,
    log: logging.Logger,
    is_current: Callable[[], bool],
) -> None:
    """Advance ``cursor`` over ``entries`` (stream order, all ids > ``cursor.last_id``)
    and hand them to the handler: own entries are skipped (but advance the cursor), a
    jump in sequence numbers or a gap-marker entry of another instance is reported with
    ``on_stream_gap`` at its place in the order, the rest is delivered in batches.
    Stops as soon as ``is_current()`` turns false (the stream was left)."""
    batch: list[StreamEntry] = []

    async def flush() -> None:
        nonlocal batch
        if batch and is_current():
            await call_handler(
                handler.on_stream_entries(project_id, batch), log, "on_stream_entries"
            )
        batch = []

    async def gap() -> None:
        await flush()
        if is_current():
            log.warning("stream gap in %s", project_id, extra={"project_id": project_id})
            await call_handler(handler.on_stream_gap(project_id), log, "on_stream_gap")

    for entry in entries:
        if not is_current():
            return
        if entry.seq != cursor.last_seq + 1:
            # Entries between the cursor and this one were trimmed before we read them,
            # or the stream was recreated (a Redis restart without persistence).
            await gap()
        cursor.last_id = entry.id
        cursor.last_seq = entry.seq
        if entry.origin == instance_id:
            continue
        if entry.gap:
            await gap()
            continue
        batch.append(StreamEntry(id=entry.id, origin=entry.origin, payload=entry.payload))
    await flush()


# -- the hub -----------------------------------------------------------------------


@dataclass(slots=True)
class _Stream:
    ids: list[StreamId] = field(default_factory=list)
    entries: list[RawEntry] = field(default_factory=list)
    start: int = 0  # entries[:start] are trimmed (compacted away lazily)
    last_id: StreamId = (0, 0)
    counter: int = 0  # sequence number of the newest entry ever added
    trimmed: StreamId | None = None  # largest id trimmed so far
    created: StreamId | None = None  # id of the first entry ever

    def live(self) -> int:
        return len(self.entries) - self.start

    def index_after(self, after: StreamId) -> int:
        return bisect.bisect_right(self.ids, after, lo=self.start)

    def trim_below(self, point: StreamId) -> None:
        cut = bisect.bisect_left(self.ids, point, lo=self.start)
        if cut <= self.start:
            return
        self.trimmed = self.ids[cut - 1]
        self.start = cut
        # Compact only when at least half the list is dead: amortized O(1) per entry.
        if self.start * 2 >= len(self.entries):
            del self.ids[: self.start]
            del self.entries[: self.start]
            self.start = 0


class InProcessHub:
    """State shared by the brokers of one process (what Redis holds in a cluster)."""

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._inflight: dict[str, dict[str, int]] = {}
        self._readers: dict[str, set[InProcessBroker]] = {}
        self._subscribers: dict[str, set[InProcessBroker]] = {}
        # instance id → (monotonic expiry, {"rooms": [...], "updated_at": epoch_s})
        self._instances: dict[str, tuple[float, dict[str, Any]]] = {}

    # streams

    def _stream(self, project_id: str) -> _Stream:
        stream = self._streams.get(project_id)
        if stream is None:
            stream = self._streams[project_id] = _Stream()
        return stream

    def _add(self, project_id: str, origin: str, payload: bytes, retention_ms: int) -> None:
        stream = self._stream(project_id)
        now_ms = time.time_ns() // 1_000_000
        last_ms, last_n = stream.last_id
        new_id = (now_ms, 0) if now_ms > last_ms else (last_ms, last_n + 1)
        stream.last_id = new_id
        stream.counter += 1
        if stream.created is None:
            stream.created = new_id
        stream.ids.append(new_id)
        stream.entries.append(RawEntry(format_id(new_id), stream.counter, origin, payload))
        markers = self._inflight.get(project_id, {}).values()
        stream.trim_below((trim_point_ms(now_ms, retention_ms, markers), 0))
        for broker in tuple(self._readers.get(project_id, ())):
            broker._stream_changed(project_id)

    def _position(self, project_id: str) -> tuple[str, int]:
        stream = self._streams.get(project_id)
        if stream is None:
            return ZERO_ID, 0
        if stream.live():
            return stream.entries[-1].id, stream.counter
        if stream.trimmed is not None:
            return format_id(stream.trimmed), stream.counter
        return ZERO_ID, stream.counter

    def _read(self, project_id: str, after: str, limit: int | None) -> list[RawEntry]:
        stream = self._streams.get(project_id)
        if stream is None:
            return []
        begin = stream.index_after(parse_id(after))
        end = len(stream.entries) if limit is None else begin + limit
        return stream.entries[begin:end]

    def _lost_after(self, project_id: str, after: str) -> bool:
        """Whether entries after ``after`` may be gone (same rule as the Redis broker's:
        something after it was trimmed, or ``after`` predates the stream)."""
        after_id = parse_id(after)
        stream = self._streams.get(project_id)
        if stream is None or stream.created is None:
            return after_id != (0, 0)
        if stream.trimmed is not None and stream.trimmed > after_id:
            return True
        return after_id != (0, 0) and stream.created > after_id

    # channels

    def _publish(self, channel: str, payload: bytes) -> None:
        for broker in tuple(self._subscribers.get(channel, ())):
            broker._message(channel, payload)


# -- the broker --------------------------------------------------------------------


class InProcessBroker:
    """One instance on an ``InProcessHub`` (a fresh private hub when none is given)."""

    kind = "memory"

    def __init__(
        self,
        hub: InProcessHub | None = None,
        *,
        instance_id: str,
        stream_retention_s: float = 60.0,
        log: logging.Logger | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.hub = hub if hub is not None else InProcessHub()
        self._retention_ms = int(stream_retention_s * 1000)
        self.log = log if log is not None else logging.getLogger("collab.broker")
        self._handler: BrokerHandler | None = None
        self._started = False
        self._closed = False
        self._cursors: dict[str, StreamCursor] = {}
        self._dirty: set[str] = set()
        self._stream_wakeup = asyncio.Event()
        self._channels: set[str] = set()
        self._inbox: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        # Counters (same names as RedisBroker's, for the metrics endpoint).
        self.stream_lag_ms: dict[str, float] = {}
        self.dropped_ops = 0
        self.reconnects = 0

    @property
    def healthy(self) -> bool:
        return self._started and not self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError("broker is closed")

    async def start(self, handler: BrokerHandler) -> None:
        self._check_open()
        if self._started:
            raise BrokerError("broker already started")
        self._started = True
        self._handler = handler
        self._tasks = [
            asyncio.create_task(self._reader(handler), name=f"broker-reader-{self.instance_id}"),
            asyncio.create_task(
                self._listener(handler), name=f"broker-listener-{self.instance_id}"
            ),
        ]
        # Entries published before start (or joins made before it) are read now.
        self._dirty.update(self._cursors)
        self._stream_wakeup.set()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for project_id in list(self._cursors):
            self._drop_reader(project_id)
        for channel in list(self._channels):
            self.hub._subscribers.get(channel, set()).discard(self)
        self._channels.clear()
        self.hub._instances.pop(self.instance_id, None)
        await stop_tasks(self._tasks, self.log)
        self._tasks = []

    async def ping(self) -> None:
        self._check_open()

    # -- document streams ------------------------------------------------------------

    async def join_stream(self, project_id: str) -> str:
        self._check_open()
        position, counter = self.hub._position(project_id)
        if project_id not in self._cursors:
            self._cursors[project_id] = StreamCursor(position, counter)
            self.hub._readers.setdefault(project_id, set()).add(self)
        return position

    async def leave_stream(self, project_id: str) -> None:
        self._drop_reader(project_id)

    def _drop_reader(self, project_id: str) -> None:
        self._cursors.pop(project_id, None)
        self._dirty.discard(project_id)
        self.stream_lag_ms.pop(project_id, None)
        readers = self.hub._readers.get(project_id)
        if readers is not None:
            readers.discard(self)
            if not readers:
                del self.hub._readers[project_id]

    async def read_stream(self, project_id: str, after: str) -> list[StreamEntry]:
        self._check_open()
        if self.hub._lost_after(project_id, after):
            raise StreamTrimmed(f"stream of {project_id} was trimmed after {after}")
        entries = self.hub._read(project_id, after, None)
        if any(entry.gap for entry in entries):
            raise StreamTrimmed(f"entries of {project_id} after {after} were dropped")
        return [StreamEntry(id=e.id, origin=e.origin, payload=e.payload) for e in entries]

    def publish_update(self, project_id: str, payload: bytes) -> None:
        self._check_open()
        self.hub._add(project_id, self.instance_id, payload, self._retention_ms)

    async def published(self, timeout: float) -> None:
        return None  # publish_update writes to the hub at once

    def set_inflight(self, project_id: str, since_ms: int | None) -> None:
        self._check_open()
        markers = self.hub._inflight.setdefault(project_id, {})
        if since_ms is None:
            markers.pop(self.instance_id, None)
            if not markers:
                del self.hub._inflight[project_id]
        else:
            markers[self.instance_id] = since_ms

    async def inflight_markers(self, project_id: str) -> dict[str, int]:
        self._check_open()
        return dict(self.hub._inflight.get(project_id, {}))

    async def clear_inflight(self, project_id: str, instance_id: str) -> None:
        self._check_open()
        markers = self.hub._inflight.get(project_id)
        if markers is not None:
            markers.pop(instance_id, None)
            if not markers:
                del self.hub._inflight[project_id]

    def _stream_changed(self, project_id: str) -> None:
        self._dirty.add(project_id)
        self._stream_wakeup.set()

    async def _reader(self, handler: BrokerHandler) -> None:
        while not self._closed:
            await self._stream_wakeup.wait()
            self._stream_wakeup.clear()
            while self._dirty:
                project_id = self._dirty.pop()
                cursor = self._cursors.get(project_id)
                if cursor is None:
                    continue
                entries = self.hub._read(project_id, cursor.last_id, READ_BATCH)
                if not entries:
                    continue
                if len(entries) == READ_BATCH:
                    self._dirty.add(project_id)  # more to read after this batch
                self.stream_lag_ms[project_id] = max(
                    0.0, time.time() * 1000 - parse_id(entries[-1].id)[0]
                )
                await deliver_stream_entries(
                    handler,
                    project_id,
                    cursor,
                    entries,
                    instance_id=self.instance_id,
                    log=self.log,
                    is_current=self._is_current(project_id, cursor),
                )

    def _is_current(self, project_id: str, cursor: StreamCursor) -> Callable[[], bool]:
        return lambda: self._cursors.get(project_id) is cursor

    # -- channels ----------------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        self._check_open()
        self._channels.add(channel)
        self.hub._subscribers.setdefault(channel, set()).add(self)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        subscribers = self.hub._subscribers.get(channel)
        if subscribers is not None:
            subscribers.discard(self)
            if not subscribers:
                del self.hub._subscribers[channel]

    def publish(self, channel: str, payload: bytes) -> None:
        self._check_open()
        self.hub._publish(channel, payload)

    def _message(self, channel: str, payload: bytes) -> None:
        self._inbox.put_nowait((channel, payload))

    async def _listener(self, handler: BrokerHandler) -> None:
        while not self._closed:
            channel, payload = await self._inbox.get()
            if channel in self._channels:  # unsubscribed since: drop
                await call_handler(handler.on_message(channel, payload), self.log, "on_message")

    # -- cluster state -------------------------------------------------------------------

    async def heartbeat(self, rooms: list[dict[str, Any]], ttl_s: float) -> None:
        self._check_open()
        self.hub._instances[self.instance_id] = (
            time.monotonic() + ttl_s,
            {"rooms": copy.deepcopy(rooms), "updated_at": time.time()},
        )

    async def live_instances(self) -> dict[str, dict[str, Any]]:
        self._check_open()
        now = time.monotonic()
        instances = self.hub._instances
        for instance_id in [i for i, (expiry, _) in instances.items() if expiry <= now]:
            del instances[instance_id]
        return {i: copy.deepcopy(data) for i, (_, data) in instances.items()}
