"""Redis broker: document streams on Redis Streams, channels on Redis pub/sub.

Key layout (``P`` = prefix, ``{p}`` = the project id as a Redis Cluster hash tag, so
every key of one project lives in one slot and the Lua script may touch them all):

=============================  ====================================================
``P:{p}:stream``               the project's stream; entry fields ``o`` (origin
                               instance id), ``s`` (sequence number, 1, 2, ...),
                               ``u`` (payload bytes), ``g`` (present on a gap
                               marker: its origin dropped entries)
``P:{p}:meta``                 hash: ``n`` last sequence number, ``t`` largest id
                               ever trimmed, ``c`` id of the first entry (marks the
                               stream's incarnation: Redis may restart empty)
``P:{p}:inflight``             hash: instance id → in-flight marker (epoch ms)
``P:ch:<channel>``             pub/sub channel
``P:instance:<instance id>``   JSON ``{rooms, updated_at}`` with the heartbeat TTL
``P:instances``                zset of instance ids, score = heartbeat expiry (ms)
``P:wake:<instance id>``       wake-up stream of one instance's reader (MAXLEN 1)
=============================  ====================================================

Tasks (each owns its failures: logs and continues on a bad message, reconnects with
capped backoff, re-raises ``CancelledError``):

* **writer**: executes queued ``publish_update`` / ``set_inflight`` / ``publish`` in
  call order, one pipeline per batch. ``publish_update`` runs ``PUBLISH_SCRIPT``:
  sequence number, ``XADD`` and an exact ``MINID`` trim to
  ``min(TIME - retention, oldest in-flight marker - INFLIGHT_SKEW_MS)``, recording the
  largest trimmed id, all atomically. Exact rather than ``MINID ~`` because with ``~``
  the largest trimmed id is unknowable and ``read_stream`` could not tell "trimmed
  just before ``after``" from "trimmed past ``after``". While Redis is down, ops wait
  in the queue; past ``max_queue`` entries and messages the oldest are dropped (and
  counted), and a dropped entry is replaced by a *gap marker* entry, so the readers of
  that stream catch up from the store instead of missing it silently.
* **reader**: one ``XREAD BLOCK`` over every joined stream plus this instance's wake
  stream (written by ``join_stream`` / ``leave_stream`` to interrupt the block). A jump
  in sequence numbers means entries were trimmed before this reader saw them (stream
  ids are time-based, so "first id > last id + 1" proves nothing): ``on_stream_gap``.
  After a reconnect the reader checks every stream's incarnation (a Redis restart
  without persistence recreates streams with new sequence numbers) before reading.
* **listener**: one pub/sub connection; rebuilt, and every channel re-subscribed,
  after any error.

Health: each task marks itself down on a connection error and up on its next success;
``healthy`` is true when none is down, and ``on_recovered`` runs once per outage, when
the last one is back (so streams flow and channels are subscribed again by then).

The reader issues one ``XREAD`` over keys of several projects, which Redis Cluster
refuses (CROSSSLOT): a cluster deployment needs one reader per node. The rest of the
layout is cluster-ready, provided project ids contain no ``{`` or ``}``. A stream and
its meta hash keep their newest entry forever (nothing expires them): deleting idle
streams is left to compaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import KeyT, StreamIdT

from collab.broker.base import (
    BrokerError,
    BrokerHandler,
    BrokerUnavailable,
    StreamEntry,
    StreamTrimmed,
)
from collab.broker.memory import (
    INFLIGHT_SKEW_MS,
    READ_BATCH,
    ZERO_ID,
    RawEntry,
    StreamCursor,
    call_handler,
    deliver_stream_entries,
    parse_id,
)
from collab.tasks import stop_tasks

__all__ = ["PUBLISH_SCRIPT", "RedisBroker"]

# Errors that mean "Redis is unreachable" (as opposed to a command refused by Redis).
# OSError includes the builtin TimeoutError (asyncio timeouts).
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

# XREAD blocks this long when nothing arrives: bounds how long a reader sits on a dead
# connection before its socket timeout fires, at one idle round trip per 5 s.
XREAD_BLOCK_MS = 5_000
# Socket timeout of the reader connection: the block plus 5 s for a slow reply.
READER_SOCKET_TIMEOUT_S = XREAD_BLOCK_MS / 1000 + 5
# Socket timeout of ordinary commands (pipelines of up to WRITE_BATCH ops included).
COMMAND_TIMEOUT_S = 10.0
# A TCP connect to a live Redis takes well under a millisecond; 2 s covers a busy host.
CONNECT_TIMEOUT_S = 2.0
# Ops sent in one pipeline at most: bounds the pipeline's memory and the latency it
# adds in front of later ops, while amortizing round trips under load.
WRITE_BATCH = 1_000
# Entries fetched per round trip by read_stream.
READ_PAGE = 1_000
# Reconnect backoff: first retry after 0.1 s, doubling, capped at 2 s, ±20 % jitter so
# instances do not reconnect in lockstep. The cap is low on purpose: clients must see
# everything converge within 5 s of Redis being back, and a refused connect is cheap.
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0
BACKOFF_JITTER = 0.2
# close() waits this long for queued writes to reach Redis.
CLOSE_FLUSH_S = 2.0
# subscribe() waits this long for Redis to confirm the subscription.
SUBSCRIBE_CONFIRM_S = 5.0
# The listener polls for messages in 1 s slices, pings an idle connection every 10 s,
# and declares it dead after 30 s without a byte (a half-open TCP connection).
PUBSUB_POLL_S = 1.0
PUBSUB_PING_S = 10.0
PUBSUB_DEAD_S = 30.0
# An instance id stays in the heartbeat index this long past its key's expiry: covers
# clock skew between instances (the index scores are their clocks).
INDEX_GRACE_MS = 60_000
# Log the first dropped op of an episode, then one line per this many.
DROP_LOG_EVERY = 10_000

PUBLISH_SCRIPT = """
-- KEYS: 1 stream, 2 meta, 3 inflight
-- ARGV: 1 origin, 2 payload, 3 retention ms, 4 clock-skew allowance ms, 5 "1" = gap marker
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local point = now_ms - tonumber(ARGV[3])
local skew = tonumber(ARGV[4])
local markers = redis.call('HVALS', KEYS[3])
for i = 1, #markers do
  local m = tonumber(markers[i])
  if m ~= nil and m - skew < point then point = m - skew end
end
local seq = redis.call('HINCRBY', KEYS[2], 'n', 1)
local id
if ARGV[5] == '1' then
  id = redis.call('XADD', KEYS[1], '*', 'o', ARGV[1], 's', seq, 'u', ARGV[2], 'g', '1')
else
  id = redis.call('XADD', KEYS[1], '*', 'o', ARGV[1], 's', seq, 'u', ARGV[2])
end
if seq == 1 then redis.call('HSET', KEYS[2], 'c', id) end
-- Trim only when the oldest entry is older than the trim point. Checked from the front
-- (O(1)): an XREVRANGE ending below every entry walks the whole stream in Redis 7.
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
if #first > 0 and tonumber(string.match(first[1][1], '^%d+')) < point then
  local p = string.format('%d', point)
  local older = redis.call('XREVRANGE', KEYS[1], '(' .. p .. '-0', '-', 'COUNT', 1)
  redis.call('XTRIM', KEYS[1], 'MINID', p)
  redis.call('HSET', KEYS[2], 't', older[1][1])
end
return id
"""
PUBLISH_SHA = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()

# The position a reader joins at: the newest entry, else the largest trimmed id, else
# "0-0"; plus the sequence number of that position.
JOIN_SCRIPT = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local meta = redis.call('HMGET', KEYS[2], 'n', 't')
local n = tonumber(meta[1]) or 0
if #last > 0 then return {last[1][1], n} end
if meta[2] then return {meta[2], n} end
return {'0-0', n}
"""

OpKind = Literal["xadd", "gap", "inflight", "publish"]
_DROPPABLE = ("xadd", "publish")  # what a full queue may drop
Component = Literal["writer", "reader", "pubsub"]


@dataclass(slots=True)
class _Op:
    kind: OpKind
    target: str  # project id, or channel for "publish"
    payload: bytes = b""
    since_ms: int | None = None


class _Backoff:
    def __init__(self) -> None:
        self._next = BACKOFF_FIRST_S

    def reset(self) -> None:
        self._next = BACKOFF_FIRST_S

    async def sleep(self) -> None:
        delay = self._next * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)
        self._next = min(self._next * 2, BACKOFF_MAX_S)
        await asyncio.sleep(delay)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisBroker:
    """The ``Broker`` over one Redis (see the module docstring)."""

    kind = "redis"

    def __init__(
        self,
        url: str,
        *,
        instance_id: str,
        prefix: str = "collab",
        stream_retention_s: float = 60.0,
        max_queue: int = 100_000,
        log: logging.Logger | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.prefix = prefix
        self.log = log if log is not None else logging.getLogger("collab.broker")
        self._retention_ms = int(stream_retention_s * 1000)
        self._max_queue = max_queue
        # No retries inside redis-py: every loop here owns its retry policy, and must see
        # each disconnect (a reader that silently reconnected would miss a Redis restart).
        no_retry = Retry(NoBackoff(), 0)
        # RESP2: the replies parsed here (XREAD as [[key, entries]], pub/sub as plain
        # messages) and no RESP3-only handshake on every (re)connect.
        self._client = aioredis.Redis.from_url(
            url,
            protocol=2,
            retry=no_retry,
            socket_timeout=COMMAND_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        self._rclient = aioredis.Redis.from_url(
            url,
            protocol=2,
            retry=no_retry,
            socket_timeout=READER_SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
        self._join_script = self._client.register_script(JOIN_SCRIPT)
        self._handler: BrokerHandler | None = None
        self._started = False
        self._closed = False
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        # health
        self._down: set[Component] = set()
        self._outage = False
        # writer
        self._queue: deque[_Op] = deque()
        self._droppable = 0  # "xadd" and "publish" ops in the queue: what max_queue bounds
        self._queue_event = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flushed.set()
        self._pending_inflight: dict[str, _Op] = {}
        self._pending_gaps: set[str] = set()
        # Stream entries queued / sent (or given up: dropped, refused) so far. Entries
        # leave the queue in the order they entered it, so "done >= n" means the first
        # n are.
        self._xadds_queued = 0
        self._xadds_done = 0
        self._progress = asyncio.Event()
        self._script_loaded = False
        self._drops_logged = 0
        # reader
        self._cursors: dict[str, StreamCursor] = {}
        self._wake_id = ZERO_ID
        # listener
        self._channels: set[str] = set()
        self._pubsub: aioredis.client.PubSub | None = None
        self._sub_waiters: dict[str, list[asyncio.Future[None]]] = {}
        # Counters, kept here for the metrics endpoint.
        self.stream_lag_ms: dict[str, float] = {}  # per project: now - newest entry read
        self.dropped_ops = 0  # ops dropped because the queue was full
        self.reconnects = 0  # connections (writer, reader, pub/sub) re-established

    # -- keys -----------------------------------------------------------------------

    def _stream_key(self, project_id: str) -> str:
        return f"{self.prefix}:{{{project_id}}}:stream"

    def _meta_key(self, project_id: str) -> str:
        return f"{self.prefix}:{{{project_id}}}:meta"

    def _inflight_key(self, project_id: str) -> str:
        return f"{self.prefix}:{{{project_id}}}:inflight"

    def _channel_key(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    def _instance_key(self, instance_id: str) -> str:
        return f"{self.prefix}:instance:{instance_id}"

    @property
    def _index_key(self) -> str:
        return f"{self.prefix}:instances"

    @property
    def _wake_key(self) -> str:
        return f"{self.prefix}:wake:{self.instance_id}"

    # -- lifecycle --------------------------------------------------------------------

    @property
    def healthy(self) -> bool:
        return self._started and not self._closed and not self._down

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerError("broker is closed")

    async def start(self, handler: BrokerHandler) -> None:
        self._check_open()
        if self._started:
            raise BrokerError("broker already started")
        await self.ping()
        self._started = True
        self._handler = handler
        suffix = self.instance_id
        self._tasks = [
            asyncio.create_task(self._writer(), name=f"broker-writer-{suffix}"),
            asyncio.create_task(self._reader(handler), name=f"broker-reader-{suffix}"),
            asyncio.create_task(self._listener(handler), name=f"broker-listener-{suffix}"),
        ]
        self._queue_event.set()  # ops queued before start

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._started:
            try:
                await asyncio.wait_for(self._flushed.wait(), CLOSE_FLUSH_S)
            except TimeoutError:
                self.log.warning("broker closing with %d queued ops unsent", len(self._queue))
        self._queue_event.set()  # an idle writer wakes, sees _closed and returns
        await stop_tasks([*self._tasks, *self._background], self.log)
        self._tasks = []
        if self._started:
            try:
                async with asyncio.timeout(CLOSE_FLUSH_S):
                    pipe = self._client.pipeline(transaction=False)
                    pipe.delete(self._instance_key(self.instance_id), self._wake_key)
                    pipe.zrem(self._index_key, self.instance_id)
                    await pipe.execute()
            except CONNECTION_ERRORS as exc:
                self.log.warning("could not remove the instance heartbeat: %s", exc)
        await self._client.aclose()
        await self._rclient.aclose()

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"redis unreachable: {exc}") from exc

    def _set_down(self, component: Component, exc: BaseException) -> None:
        if component not in self._down:
            self.log.warning(
                "redis unreachable (%s): %s: %s",
                component,
                type(exc).__name__,
                exc,
                extra={"instance_id": self.instance_id},
            )
            self._down.add(component)
            self._outage = True
            self._progress.set()  # publish waiters stop waiting

    def _set_up(self, component: Component) -> None:
        if component not in self._down:
            return
        self._down.discard(component)
        self.reconnects += 1
        self.log.info(
            "redis reachable again (%s)", component, extra={"instance_id": self.instance_id}
        )
        if not self._down and self._outage and self._handler is not None:
            self._outage = False
            task = asyncio.create_task(
                call_handler(self._handler.on_recovered(), self.log, "on_recovered")
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # -- writer -----------------------------------------------------------------------

    def _enqueue(self, op: _Op) -> None:
        self._check_open()
        if op.kind == "xadd":
            self._xadds_queued += 1
        self._queue.append(op)
        self._droppable += op.kind in _DROPPABLE
        self._flushed.clear()
        self._queue_event.set()
        self._enforce_bound()

    def _enforce_bound(self) -> None:
        while self._droppable > self._max_queue:
            # Drop the oldest entry or message. In-flight markers and gap markers stay
            # (and do not count): at most one of each is queued per project, and losing
            # them is unsafe.
            index = next(i for i, op in enumerate(self._queue) if op.kind in _DROPPABLE)
            op = self._queue[index]
            del self._queue[index]
            self._droppable -= 1
            self.dropped_ops += 1
            if op.kind == "xadd":
                self._xadds_done += 1
                self._progress.set()
                # Readers of this stream will never see the dropped entry: tell them.
                self._queue_gap(op.target)
            if self._drops_logged == 0 or self.dropped_ops - self._drops_logged >= DROP_LOG_EVERY:
                self._drops_logged = self.dropped_ops
                self.log.warning(
                    "broker queue full (%d ops): dropping the oldest; %d dropped so far",
                    self._max_queue,
                    self.dropped_ops,
                )

    def _take_batch(self) -> list[_Op]:
        batch: list[_Op] = []
        while self._queue and len(batch) < WRITE_BATCH:
            op = self._queue.popleft()
            self._droppable -= op.kind in _DROPPABLE
            if op.kind == "inflight" and self._pending_inflight.get(op.target) is op:
                del self._pending_inflight[op.target]
            elif op.kind == "gap":
                self._pending_gaps.discard(op.target)
            batch.append(op)
        return batch

    def _requeue(self, ops: list[_Op]) -> None:
        self._queue.extendleft(reversed(ops))
        for op in ops:
            self._droppable += op.kind in _DROPPABLE
            if op.kind == "inflight":
                self._pending_inflight.setdefault(op.target, op)
            elif op.kind == "gap":
                self._pending_gaps.add(op.target)
        self._flushed.clear()
        self._enforce_bound()

    async def _writer(self) -> None:
        backoff = _Backoff()
        while True:  # until close() has waited for the flush and cancels it
            if not self._queue:
                self._flushed.set()
                if self._closed:
                    return
                if "writer" not in self._down:
                    self._queue_event.clear()
                    await self._queue_event.wait()
                    continue
            batch = self._take_batch()
            try:
                results = await self._send(batch)
            except asyncio.CancelledError:
                self._requeue(batch)
                raise
            except CONNECTION_ERRORS as exc:
                self._requeue(batch)
                self._script_loaded = False  # Redis may come back empty
                self._set_down("writer", exc)
                await backoff.sleep()
                continue
            except Exception:
                self.log.exception("broker writer: batch of %d ops failed; dropped", len(batch))
                self.dropped_ops += len(batch)
                self._xadds_done += sum(op.kind == "xadd" for op in batch)
                self._progress.set()
                await backoff.sleep()
                continue
            backoff.reset()
            self._drops_logged = 0
            self._set_up("writer")
            if self._check_results(batch, results):
                await backoff.sleep()  # Redis refuses writes (OOM, ...): do not spin

    def _check_results(self, batch: list[_Op], results: list[Any]) -> bool:
        """Handle per-op errors of a sent batch; True if Redis refused some op."""
        refused = False
        self._progress.set()
        for index, (op, result) in enumerate(zip(batch, results, strict=True)):
            if isinstance(result, NoScriptError):
                # Scripts were flushed under us: reload and resend from here on (a
                # resent entry is a duplicate at worst, which readers tolerate).
                self._script_loaded = False
                self._requeue(batch[index:])
                return refused
            if op.kind == "xadd":
                self._xadds_done += 1
            if isinstance(result, Exception):
                refused = True
                self.log.error(
                    "broker op %s on %s refused by redis: %s",
                    op.kind,
                    op.target,
                    result,
                    extra={"instance_id": self.instance_id},
                )
                if op.kind in ("xadd", "gap"):
                    # Readers will never see that entry: tell them with a gap marker.
                    if op.kind == "xadd":
                        self.dropped_ops += 1
                    self._queue_gap(op.target)
        return refused

    def _queue_gap(self, project_id: str) -> None:
        if project_id not in self._pending_gaps:
            self._pending_gaps.add(project_id)
            self._queue.appendleft(_Op("gap", project_id))
            self._flushed.clear()
            self._queue_event.set()

    async def _send(self, batch: list[_Op]) -> list[Any]:
        pipe = self._client.pipeline(transaction=False)
        load = not self._script_loaded
        if load:
            pipe.script_load(PUBLISH_SCRIPT)
        if not batch:
            pipe.ping()  # probing a connection that failed
        for op in batch:
            if op.kind in ("xadd", "gap"):
                pipe.evalsha(
                    PUBLISH_SHA,
                    3,
                    self._stream_key(op.target),
                    self._meta_key(op.target),
                    self._inflight_key(op.target),
                    self.instance_id,
                    op.payload,
                    self._retention_ms,
                    INFLIGHT_SKEW_MS,
                    "1" if op.kind == "gap" else "",
                )
            elif op.kind == "inflight":
                if op.since_ms is None:
                    pipe.hdel(self._inflight_key(op.target), self.instance_id)
                else:
                    pipe.hset(self._inflight_key(op.target), self.instance_id, op.since_ms)
            else:
                pipe.publish(self._channel_key(op.target), op.payload)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        if load:
            if isinstance(results[0], Exception):
                raise results[0]
            self._script_loaded = True
            results = results[1:]
        return results if batch else []

    # -- document streams -------------------------------------------------------------

    def publish_update(self, project_id: str, payload: bytes) -> None:
        self._enqueue(_Op("xadd", project_id, payload))

    async def published(self, timeout: float) -> None:
        target = self._xadds_queued
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._xadds_done < target and "writer" not in self._down and not self._closed:
                    self._progress.clear()
                    await self._progress.wait()

    def set_inflight(self, project_id: str, since_ms: int | None) -> None:
        self._check_open()
        pending = self._pending_inflight.get(project_id)
        if pending is not None:
            # Not sent yet: update it in place. Safe either way: a clear asserts entries
            # are stored (true earlier too), a newer marker protects no less.
            pending.since_ms = since_ms
            return
        op = _Op("inflight", project_id, since_ms=since_ms)
        self._pending_inflight[project_id] = op
        self._enqueue(op)

    async def inflight_markers(self, project_id: str) -> dict[str, int]:
        try:
            raw = await self._client.hgetall(self._inflight_key(project_id))
        except CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"redis unreachable: {exc}") from exc
        return {_text(k): int(v) for k, v in raw.items()}

    async def clear_inflight(self, project_id: str, instance_id: str) -> None:
        try:
            await self._client.hdel(self._inflight_key(project_id), instance_id)
        except CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"redis unreachable: {exc}") from exc

    async def join_stream(self, project_id: str) -> str:
        self._check_open()
        try:
            result = await self._join_script(
                keys=[self._stream_key(project_id), self._meta_key(project_id)]
            )
        except CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"redis unreachable: {exc}") from exc
        position, counter = _text(result[0]), int(result[1])
        if project_id not in self._cursors:
            self._cursors[project_id] = StreamCursor(position, counter)
            await self._wake_reader()
        return position

    async def leave_stream(self, project_id: str) -> None:
        if self._cursors.pop(project_id, None) is not None:
            self.stream_lag_ms.pop(project_id, None)
            if not self._closed:
                await self._wake_reader()

    async def _wake_reader(self) -> None:
        """Interrupt the reader's blocking XREAD so it picks up the joined streams."""
        if not self._started:
            return
        # On failure the reader is failing too; it reads the new set when it reconnects.
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self._client.xadd(self._wake_key, {b"w": b"1"}, maxlen=1, approximate=False)

    async def read_stream(self, project_id: str, after: str) -> list[StreamEntry]:
        """See ``Broker.read_stream``. ``after`` must be a position this stream gave out
        (an entry id or "0-0"): an id older than the stream's first entry ever raises
        ``StreamTrimmed``, since a Redis restart may have lost what came after it."""
        self._check_open()
        after_id = parse_id(after)
        stream_key, meta_key = self._stream_key(project_id), self._meta_key(project_id)
        entries: list[StreamEntry] = []
        last = after
        first_page = True
        while True:
            pipe = self._client.pipeline(transaction=True)  # one consistent snapshot
            pipe.hmget(meta_key, ["t", "c"])
            pipe.xrange(stream_key, min=f"({last}", max="+", count=READ_PAGE)
            try:
                (trimmed, created), page = await pipe.execute()
            except CONNECTION_ERRORS as exc:
                raise BrokerUnavailable(f"redis unreachable: {exc}") from exc
            if trimmed is not None and parse_id(_text(trimmed)) > parse_id(last):
                raise StreamTrimmed(f"stream of {project_id} was trimmed after {last}")
            if (
                first_page
                and after_id != (0, 0)
                and (created is None or parse_id(_text(created)) > after_id)
            ):
                raise StreamTrimmed(f"stream of {project_id} was recreated after {after}")
            first_page = False
            for entry_id, fields in page:
                if b"g" in fields:
                    raise StreamTrimmed(f"entries of {project_id} after {after} were dropped")
                entries.append(
                    StreamEntry(
                        id=_text(entry_id),
                        origin=_text(fields[b"o"]),
                        payload=fields.get(b"u", b""),
                    )
                )
            if len(page) < READ_PAGE:
                return entries
            last = entries[-1].id

    # -- reader -----------------------------------------------------------------------

    async def _reader(self, handler: BrokerHandler) -> None:
        backoff = _Backoff()
        verify = False
        while not self._closed:
            try:
                if verify:
                    await self._verify_cursors(handler)
                    verify = False
                cursors = dict(self._cursors)
                by_key = {self._stream_key(p).encode(): (p, c) for p, c in cursors.items()}
                streams: dict[KeyT, StreamIdT] = {self._wake_key: self._wake_id}
                for key, (_, cursor) in by_key.items():
                    streams[key] = cursor.last_id
                response = await self._rclient.xread(
                    streams, count=READ_BATCH, block=XREAD_BLOCK_MS
                )
            except asyncio.CancelledError:
                raise
            except CONNECTION_ERRORS as exc:
                self._set_down("reader", exc)
                verify = True  # Redis may have restarted: check incarnations first
                await backoff.sleep()
                continue
            except Exception:
                self.log.exception("broker reader: read failed")
                await backoff.sleep()
                continue
            self._set_up("reader")
            backoff.reset()
            if isinstance(response, dict):  # RESP3 shape, should protocol=2 ever go
                response = [[key, value] for key, value in response.items()]
            for key, raw_entries in cast(list[list[Any]], response or []):
                try:
                    await self._deliver(handler, key, raw_entries, by_key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.log.exception("broker reader: delivery from %r failed", key)

    async def _deliver(
        self,
        handler: BrokerHandler,
        key: bytes,
        raw_entries: list[tuple[bytes, dict[bytes, bytes]]],
        by_key: dict[bytes, tuple[str, StreamCursor]],
    ) -> None:
        if key == self._wake_key.encode():
            self._wake_id = _text(raw_entries[-1][0])
            return
        project_id, cursor = by_key[key]
        if self._cursors.get(project_id) is not cursor:
            return  # left (or left and re-joined) since the read began
        entries = [self._parse_entry(entry_id, fields) for entry_id, fields in raw_entries]
        self.stream_lag_ms[project_id] = max(0.0, time.time() * 1000 - parse_id(entries[-1].id)[0])
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

    def _parse_entry(self, entry_id: bytes, fields: dict[bytes, bytes]) -> RawEntry:
        try:
            return RawEntry(
                id=_text(entry_id),
                seq=int(fields[b"s"]),
                origin=_text(fields[b"o"]),
                payload=fields.get(b"u", b""),
                gap=b"g" in fields,
            )
        except (KeyError, ValueError):
            # Not ours: skip it, and report a gap (we cannot tell what it stood for).
            self.log.error("malformed stream entry %r", entry_id)
            return RawEntry(id=_text(entry_id), seq=0, origin=self.instance_id, payload=b"")

    async def _verify_cursors(self, handler: BrokerHandler) -> None:
        """After a reconnect: a stream whose incarnation changed (Redis restarted empty)
        lost whatever this reader had not read yet; report a gap and read the new
        stream from its start."""
        cursors = [(p, c) for p, c in self._cursors.items() if c.last_seq > 0]
        if not cursors:
            return
        pipe = self._rclient.pipeline(transaction=False)
        for project_id, _ in cursors:
            pipe.hmget(self._meta_key(project_id), ["n", "c"])
        results = await pipe.execute()
        for (project_id, cursor), (counter, created) in zip(cursors, results, strict=True):
            recreated = (
                counter is None
                or int(counter) < cursor.last_seq
                or created is None
                or parse_id(_text(created)) > parse_id(cursor.last_id)
            )
            if recreated and self._cursors.get(project_id) is cursor:
                self.log.warning(
                    "stream of %s was recreated (Redis restarted empty?)",
                    project_id,
                    extra={"project_id": project_id, "instance_id": self.instance_id},
                )
                cursor.last_id, cursor.last_seq = ZERO_ID, 0
                await call_handler(handler.on_stream_gap(project_id), self.log, "on_stream_gap")

    # -- channels ---------------------------------------------------------------------

    def publish(self, channel: str, payload: bytes) -> None:
        self._enqueue(_Op("publish", channel, payload))

    async def subscribe(self, channel: str) -> None:
        self._check_open()
        if channel in self._channels:
            return
        self._channels.add(channel)
        pubsub = self._pubsub
        if pubsub is None or "pubsub" in self._down:
            return  # the listener subscribes to every channel when it (re)connects
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sub_waiters.setdefault(channel, []).append(waiter)
        try:
            await pubsub.subscribe(self._channel_key(channel))
            await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_CONFIRM_S)
        except CONNECTION_ERRORS as exc:
            self.log.warning(
                "subscription to %s not confirmed yet: %s: %s", channel, type(exc).__name__, exc
            )
        finally:
            waiters = self._sub_waiters.get(channel, [])
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters:
                self._sub_waiters.pop(channel, None)

    async def unsubscribe(self, channel: str) -> None:
        if channel not in self._channels:
            return
        self._channels.discard(channel)  # delivery stops now: the listener filters
        pubsub = self._pubsub
        if pubsub is not None and "pubsub" not in self._down:
            # On failure: the listener re-subscribes only what is wanted when it reconnects.
            with contextlib.suppress(*CONNECTION_ERRORS):
                await pubsub.unsubscribe(self._channel_key(channel))

    async def _listener(self, handler: BrokerHandler) -> None:
        backoff = _Backoff()
        loop = asyncio.get_running_loop()
        prefix = f"{self.prefix}:ch:".encode()
        while not self._closed:
            pubsub = self._client.pubsub()
            try:
                wanted = set(self._channels)
                if wanted:
                    await pubsub.subscribe(*(self._channel_key(c) for c in wanted))
                else:
                    await pubsub.ping()  # connects; the pong proves it works
                self._pubsub = pubsub
                missing = self._channels - wanted  # subscribed while we connected
                if missing:
                    await pubsub.subscribe(*(self._channel_key(c) for c in missing))
                last_rx = last_ping = loop.time()
                while not self._closed:
                    message = await pubsub.get_message(timeout=PUBSUB_POLL_S)
                    now = loop.time()
                    if message is not None:
                        last_rx = now
                        self._set_up("pubsub")
                        backoff.reset()
                        await self._on_pubsub_message(handler, message, prefix)
                    elif now - last_rx > PUBSUB_DEAD_S:
                        raise RedisConnectionError("pub/sub connection silent")
                    if now - max(last_rx, last_ping) >= PUBSUB_PING_S:
                        last_ping = now
                        await pubsub.ping()
            except asyncio.CancelledError:
                raise
            except CONNECTION_ERRORS as exc:
                self._set_down("pubsub", exc)
            except Exception:
                self.log.exception("broker listener failed")
            finally:
                self._pubsub = None
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except Exception:
                    self.log.debug("closing the pub/sub connection failed", exc_info=True)
            await backoff.sleep()

    async def _on_pubsub_message(
        self, handler: BrokerHandler, message: dict[str, Any], prefix: bytes
    ) -> None:
        kind = message.get("type")
        channel_key = message.get("channel")
        if not isinstance(channel_key, bytes) or not channel_key.startswith(prefix):
            return  # pong
        channel = channel_key[len(prefix) :].decode()
        if kind == "subscribe":
            for waiter in self._sub_waiters.pop(channel, []):
                if not waiter.done():
                    waiter.set_result(None)
        elif kind == "message" and channel in self._channels:
            data = message.get("data")
            if isinstance(data, bytes):
                await call_handler(handler.on_message(channel, data), self.log, "on_message")

    # -- cluster state ----------------------------------------------------------------

    async def heartbeat(self, rooms: list[dict[str, Any]], ttl_s: float) -> None:
        self._check_open()
        ttl_ms = max(1, int(ttl_s * 1000))
        body = orjson.dumps({"rooms": rooms, "updated_at": time.time()})
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self._instance_key(self.instance_id), body, px=ttl_ms)
        pipe.zadd(self._index_key, {self.instance_id: time.time() * 1000 + ttl_ms})
        try:
            await pipe.execute()
        except CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"redis unreachable: {exc}") from exc

    async def live_instances(self) -> dict[str, dict[str, Any]]:
        self._check_open()
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.zremrangebyscore(self._index_key, "-inf", time.time() * 1000 - INDEX_GRACE_MS)
            pipe.zrange(self._index_key, 0, -1)
            _, members = await pipe.execute()
            ids = [_text(m) for m in members]
            if not ids:
                return {}
            pipe = self._client.pipeline(transaction=False)
            for instance_id in ids:
                pipe.get(self._instance_key(instance_id))
            bodies = await pipe.execute()
        except CONNECTION_ERRORS as exc:
            raise BrokerUnavailable(f"redis unreachable: {exc}") from exc
        live: dict[str, dict[str, Any]] = {}
        for instance_id, body in zip(ids, bodies, strict=True):
            if body is not None:
                live[instance_id] = orjson.loads(body)
        return live
