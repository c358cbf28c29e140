"""Group commit of accepted updates into the store's update log.

Updates are queued as they are accepted and written in batches, one transaction per
batch (every project): when the committer is idle the first update goes at once (or
after ``window_ms``, default 0), and everything that arrives while a transaction is in
flight shares the next one. So batches grow with the load by themselves, and an update
waits at most one transaction before its own starts. The future of each update
resolves with its log seq once the transaction has committed: that is when a client's
``sync-update`` ack is sent ("saved").

If the store fails, the batch stays queued and is retried with backoff; live editing
goes on. Memory is bounded (``max_pending`` updates / ``max_bytes``): past the bound
``submit`` raises ``Unavailable`` and the update is refused before it is applied, so
nothing accepted is ever dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from collab.errors import Unavailable
from collab.metrics import Metrics
from collab.tasks import stop_tasks
from persistence.base import Store
from persistence.errors import StoreError

log = logging.getLogger("collab.commit")

# Retry backoff while the store is down: start fast (a blip), cap at 5 s so that the
# backlog is written within seconds of the database coming back.
RETRY_MIN_S = 0.05
RETRY_MAX_S = 5.0
# Largest batch per transaction: bounds one transaction's size and lock time.
MAX_BATCH = 500


@dataclass(slots=True)
class _Item:
    project_id: str
    update: bytes
    future: asyncio.Future[int | None]
    queued_at: float = field(default_factory=time.monotonic)


CommitListener = Callable[[str, list[int | None]], None]


class Committer:
    """Arguments:
    store: where updates go.
    window_ms: how long the first update of a batch waits for company.
    max_pending, max_bytes: memory bound while the store is slow or down.
    on_committed: called with (project_id, seqs) after each commit, in the loop.
    on_recovered: called (in the loop) when a commit succeeds after the store failed.
    before_commit: awaited before each batch is written (the broker's ``published``:
        an update reaches the other instances' stream before it is stored).
    """

    def __init__(
        self,
        store: Store,
        *,
        window_ms: float,
        max_pending: int,
        max_bytes: int,
        metrics: Metrics,
        on_committed: CommitListener | None = None,
        on_recovered: Callable[[], None] | None = None,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._window = window_ms / 1000.0
        self._max_pending = max_pending
        self._max_bytes = max_bytes
        self._metrics = metrics
        self._on_committed = on_committed
        self._on_recovered = on_recovered
        self._before_commit = before_commit
        self._queue: deque[_Item] = deque()
        self._bytes = 0
        self._per_project: dict[str, int] = {}
        self._wakeup = asyncio.Event()
        self._drained = asyncio.Event()  # set whenever the queue is empty
        self._drained.set()
        self._idle: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None
        self.healthy = True
        self.last_error: str | None = None
        self._closing = False

    # -- public ---------------------------------------------------------------------------

    def submit(self, project_id: str, update: bytes) -> asyncio.Future[int | None]:
        """Queue an update; the future resolves with its seq once durable."""
        if len(self._queue) >= self._max_pending or self._bytes + len(update) > self._max_bytes:
            raise Unavailable(
                "too many updates are waiting for the store; retry later",
                {"pending": len(self._queue), "store_healthy": self.healthy},
            )
        fut: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(project_id, update, fut))
        self._bytes += len(update)
        self._per_project[project_id] = self._per_project.get(project_id, 0) + 1
        self._idle.setdefault(project_id, asyncio.Event()).clear()
        self._drained.clear()
        self._wakeup.set()
        self._metrics.commit_pending.set(len(self._queue))
        return fut

    def pending(self, project_id: str | None = None) -> int:
        if project_id is None:
            return len(self._queue)
        return self._per_project.get(project_id, 0)

    def queued(self, project_id: str) -> list[bytes]:
        """The project's updates not yet stored, oldest first."""
        return [i.update for i in self._queue if i.project_id == project_id]

    def oldest_age_s(self) -> float:
        """How long the oldest queued update has waited: the commit lag."""
        return time.monotonic() - self._queue[0].queued_at if self._queue else 0.0

    async def flushed(self, project_id: str) -> None:
        """Wait until nothing of the project is queued."""
        if self._per_project.get(project_id, 0) == 0:
            return
        await self._idle.setdefault(project_id, asyncio.Event()).wait()

    async def flush_all(self, timeout: float) -> bool:
        """Wait (bounded) until the queue is empty; True when it is."""
        if self._queue:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), timeout)
        return not self._queue

    async def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("committer already started")
        self._task = asyncio.create_task(self._run(), name="collab-committer")

    async def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (bounded by ``timeout``), then stop."""
        self._closing = True
        if self._queue:
            self._wakeup.set()
            if not await self.flush_all(timeout):
                log.error("closing with %d updates not stored", len(self._queue))
        if self._task is not None:
            await stop_tasks([self._task], log)
            self._task = None
        for item in self._queue:
            item.future.cancel()  # an ack waiter then reports UNAVAILABLE

    # -- loop -------------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            if not self._queue:
                continue
            if self._window > 0 and not self._closing:
                # Let the batch fill for up to the window (measured from its first item).
                wait = self._queue[0].queued_at + self._window - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
            while self._queue:
                batch = [self._queue[i] for i in range(min(MAX_BATCH, len(self._queue)))]
                started = time.monotonic()
                if self._before_commit is not None:
                    try:
                        await self._before_commit()
                    except Exception:
                        log.exception("before-commit hook failed")
                try:
                    result = await self._store.append_updates(
                        [(i.project_id, i.update) for i in batch]
                    )
                except StoreError as exc:
                    self._fail(exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                except Exception as exc:  # a bug or driver surprise: keep the data, retry
                    log.exception("unexpected error while committing")
                    self._fail(exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                delay = RETRY_MIN_S
                recovered = not self.healthy
                if recovered:
                    log.info("store reachable again; %d updates waiting", len(self._queue))
                self.healthy = True
                self.last_error = None
                self._metrics.commit_seconds.observe(time.monotonic() - started)
                self._metrics.commit_batch_size.observe(len(batch))
                self._done(batch, result.seqs)
                if recovered and self._on_recovered is not None:
                    try:
                        self._on_recovered()
                    except Exception:
                        log.exception("recovery listener failed")

    def _fail(self, exc: BaseException) -> None:
        if self.healthy:
            log.warning("store write failed, will retry: %s", exc)
        self.healthy = False
        self.last_error = str(exc) or type(exc).__name__
        self._metrics.commit_failures.inc()

    def _done(self, batch: list[_Item], seqs: list[int | None]) -> None:
        by_project: dict[str, list[int | None]] = {}
        for item, seq in zip(batch, seqs, strict=True):
            self._queue.popleft()
            self._bytes -= len(item.update)
            left = self._per_project[item.project_id] - 1
            if left:
                self._per_project[item.project_id] = left
            else:
                del self._per_project[item.project_id]
                self._idle.setdefault(item.project_id, asyncio.Event()).set()
            by_project.setdefault(item.project_id, []).append(seq)
            if not item.future.done():
                item.future.set_result(seq)
            self._metrics.commit_latency.observe(time.monotonic() - item.queued_at)
        self._metrics.commit_pending.set(len(self._queue))
        if not self._queue:
            self._drained.set()
        if self._on_committed is not None:
            for project_id, project_seqs in by_project.items():
                try:
                    self._on_committed(project_id, project_seqs)
                except Exception:
                    log.exception("commit listener failed")
