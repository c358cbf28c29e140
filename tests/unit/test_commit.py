"""collab.commit: group commit of accepted updates into a real SqliteStore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

import pytest

from collab.commit import MAX_BATCH, Committer
from collab.errors import Unavailable
from collab.metrics import Metrics
from persistence.base import AppendResult
from persistence.errors import StoreUnavailable
from persistence.sqlite import SqliteStore


class RecordingStore(SqliteStore):
    """A real SqliteStore that records every ``append_updates`` batch."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.batches: list[list[tuple[str, bytes]]] = []
        self.appended = asyncio.Event()

    async def append_updates(self, batch: Sequence[tuple[str, bytes]]) -> AppendResult:
        result = await super().append_updates(batch)
        self.batches.append(list(batch))
        self.appended.set()
        return result


class FailingStore(RecordingStore):
    """Its appends raise ``fail_with`` the next ``failures`` times (a stub of an outage)."""

    def __init__(self, path: str, failures: int, fail_with: type[Exception] = StoreUnavailable):
        super().__init__(path)
        self.failures = failures
        self.fail_with = fail_with
        self.attempts = 0
        self.failed = asyncio.Event()

    async def append_updates(self, batch: Sequence[tuple[str, bytes]]) -> AppendResult:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            self.failed.set()
            raise self.fail_with("the database is down (test)")
        return await super().append_updates(batch)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RecordingStore]:
    s = RecordingStore(str(tmp_path / "db.sqlite3"))
    await s.start()
    for pid in ("p1", "p2"):
        await s.create_project(pid, pid, "alice")
    try:
        yield s
    finally:
        await s.close()


def committer(
    store: SqliteStore,
    *,
    window_ms: float = 10.0,
    max_pending: int = 1000,
    max_bytes: int = 1 << 20,
    on_committed: list[tuple[str, list[int | None]]] | None = None,
    on_recovered: Callable[[], None] | None = None,
    before_commit: Callable[[], Awaitable[None]] | None = None,
) -> Committer:
    def listener(project_id: str, seqs: list[int | None]) -> None:
        if on_committed is not None:
            on_committed.append((project_id, seqs))

    return Committer(
        store,
        window_ms=window_ms,
        max_pending=max_pending,
        max_bytes=max_bytes,
        metrics=Metrics(),
        on_committed=listener,
        on_recovered=on_recovered,
        before_commit=before_commit,
    )


async def stored(store: SqliteStore, project_id: str) -> list[tuple[int, bytes]]:
    loaded = await store.load_document(project_id)
    return [(e.seq, e.update) for e in loaded.updates]


def health(c: Committer) -> tuple[bool, str | None]:
    return c.healthy, c.last_error


def u(i: int) -> bytes:
    return f"update-{i}".encode()  # the store treats updates as opaque bytes


async def test_updates_within_the_window_share_one_transaction(store: RecordingStore) -> None:
    c = committer(store, window_ms=50)
    await c.start()
    try:
        futures = [c.submit("p1", u(1)), c.submit("p2", u(2)), c.submit("p1", u(3))]
        assert c.pending() == 3 and c.pending("p1") == 2 and c.pending("p2") == 1
        assert not any(f.done() for f in futures)
        assert await asyncio.gather(*futures) == [1, 1, 2]  # per-project seqs
        assert store.batches == [[("p1", u(1)), ("p2", u(2)), ("p1", u(3))]]
        assert await stored(store, "p1") == [(1, u(1)), (2, u(3))]
        assert await stored(store, "p2") == [(1, u(2))]
        assert c.pending() == 0 and c.queued("p1") == []
    finally:
        await c.close()


async def test_a_future_resolves_only_once_the_update_is_durable(store: RecordingStore) -> None:
    c = committer(store, window_ms=20)
    await c.start()
    try:
        fut = c.submit("p1", u(1))
        assert c.queued("p1") == [u(1)]
        assert await stored(store, "p1") == []
        seq = await fut
        assert await stored(store, "p1") == [(seq, u(1))]
    finally:
        await c.close()


async def test_updates_far_apart_are_separate_batches(store: RecordingStore) -> None:
    c = committer(store, window_ms=0)
    await c.start()
    try:
        assert await c.submit("p1", u(1)) == 1
        assert await c.submit("p1", u(2)) == 2
        assert store.batches == [[("p1", u(1))], [("p1", u(2))]]
    finally:
        await c.close()


async def test_large_backlogs_are_split_into_bounded_transactions(store: RecordingStore) -> None:
    c = committer(store, window_ms=5, max_pending=5000)
    await c.start()
    try:
        n = 2 * MAX_BATCH + 10
        seqs = await asyncio.gather(*(c.submit("p1", u(i)) for i in range(n)))
        assert seqs == list(range(1, n + 1))
        assert max(len(b) for b in store.batches) == MAX_BATCH
        assert sum(len(b) for b in store.batches) == n
    finally:
        await c.close()


async def test_the_listener_hears_of_every_commit(store: RecordingStore) -> None:
    heard: list[tuple[str, list[int | None]]] = []
    c = committer(store, window_ms=30, on_committed=heard)
    await c.start()
    try:
        await asyncio.gather(c.submit("p1", u(1)), c.submit("p2", u(2)), c.submit("p1", u(3)))
        assert sorted(heard) == [("p1", [1, 2]), ("p2", [1])]
    finally:
        await c.close()


async def test_updates_of_a_deleted_project_get_no_seq(store: RecordingStore) -> None:
    await store.delete_project("p2")
    c = committer(store)
    await c.start()
    try:
        seqs = await asyncio.gather(c.submit("p1", u(1)), c.submit("p2", u(2)))
        assert list(seqs) == [1, None]
    finally:
        await c.close()


# -- the memory bound ----------------------------------------------------------------------


async def test_past_max_pending_updates_submit_refuses(store: RecordingStore) -> None:
    c = committer(store, max_pending=3)  # not started: nothing drains the queue
    for i in range(3):
        c.submit("p1", u(i))
    with pytest.raises(Unavailable) as exc:
        c.submit("p1", u(99))
    assert exc.value.code == "UNAVAILABLE"
    assert exc.value.details == {"pending": 3, "store_healthy": True}
    assert c.pending() == 3  # the refused update was not queued
    await c.start()
    try:
        await c.flushed("p1")
        assert await c.submit("p1", u(99)) == 4  # room again once written
    finally:
        await c.close()


async def test_past_max_pending_bytes_submit_refuses(store: RecordingStore) -> None:
    c = committer(store, max_bytes=1024)
    c.submit("p1", b"x" * 1000)
    with pytest.raises(Unavailable):
        c.submit("p1", b"x" * 25)
    c.submit("p1", b"x" * 24)  # exactly at the bound
    await c.start()
    await c.close()
    assert [len(data) for _, data in await stored(store, "p1")] == [1000, 24]


# -- failures and retries ------------------------------------------------------------------


@pytest.mark.parametrize("error", [StoreUnavailable, RuntimeError], ids=["store-down", "bug"])
async def test_a_failing_store_is_retried_until_it_works(
    tmp_path: Path, error: type[Exception]
) -> None:
    store = FailingStore(str(tmp_path / "db.sqlite3"), failures=3, fail_with=error)
    await store.start()
    await store.create_project("p1", "p1", "alice")
    c = committer(store, window_ms=0)
    await c.start()
    try:
        futures = [c.submit("p1", u(i)) for i in range(3)]
        await asyncio.wait_for(store.failed.wait(), 5)
        assert health(c) == (False, "the database is down (test)")
        assert not any(f.done() for f in futures)
        # Live editing goes on meanwhile: more updates are accepted into the queue.
        futures.append(c.submit("p1", u(3)))
        assert await asyncio.wait_for(asyncio.gather(*futures), 10) == [1, 2, 3, 4]
        assert store.attempts >= 4
        assert health(c) == (True, None)
        # Each update stored exactly once, in order.
        assert await stored(store, "p1") == [(i + 1, u(i)) for i in range(4)]
    finally:
        await c.close()
        await store.close()


async def test_the_recovery_listener_runs_once_when_the_store_comes_back(tmp_path: Path) -> None:
    store = FailingStore(str(tmp_path / "db.sqlite3"), failures=2)
    await store.start()
    await store.create_project("p1", "p1", "alice")
    recovered = asyncio.Event()
    calls: list[int] = []

    def on_recovered() -> None:
        calls.append(len(calls))
        recovered.set()

    c = committer(store, window_ms=0, on_recovered=on_recovered)
    await c.start()
    try:
        first = c.submit("p1", u(0))
        await asyncio.wait_for(recovered.wait(), 10)
        assert first.done() and first.result() == 1
        assert calls == [0]
        # Later commits on a healthy store are not recoveries.
        assert await asyncio.wait_for(c.submit("p1", u(1)), 5) == 2
        assert calls == [0]
    finally:
        await c.close()
        await store.close()


async def test_a_batch_is_stored_only_after_the_before_commit_hook(store: RecordingStore) -> None:
    # The app passes the broker's ``published``: other instances can read an update
    # before it is stored and acked.
    release = asyncio.Event()
    entered = asyncio.Event()

    async def published() -> None:
        entered.set()
        await release.wait()

    c = committer(store, window_ms=0, before_commit=published)
    await c.start()
    try:
        fut = c.submit("p1", u(0))
        await asyncio.wait_for(entered.wait(), 5)
        assert await stored(store, "p1") == []
        assert not fut.done()
        release.set()
        assert await asyncio.wait_for(fut, 5) == 1
        assert await stored(store, "p1") == [(1, u(0))]
    finally:
        await c.close()


async def test_closing_while_the_store_is_down_cancels_the_waiters(tmp_path: Path) -> None:
    store = FailingStore(str(tmp_path / "db.sqlite3"), failures=10**6)
    await store.start()
    await store.create_project("p1", "p1", "alice")
    c = committer(store, window_ms=0)
    await c.start()
    fut = c.submit("p1", u(1))
    await asyncio.wait_for(store.failed.wait(), 5)
    assert not await c.flush_all(timeout=0.2)
    await c.close(timeout=0.2)
    assert fut.cancelled()
    assert await stored(store, "p1") == []
    await store.close()


# -- waiting for the queue -----------------------------------------------------------------


async def test_flushed_waits_for_one_project_only(tmp_path: Path) -> None:
    store = FailingStore(str(tmp_path / "db.sqlite3"), failures=2)
    await store.start()
    for pid in ("p1", "p2"):
        await store.create_project(pid, pid, "alice")
    c = committer(store, window_ms=0)
    await c.flushed("p1")  # nothing queued: returns at once
    c.submit("p1", u(1))
    waiter = asyncio.create_task(c.flushed("p1"))
    await asyncio.sleep(0)
    assert not waiter.done()
    await c.flushed("p2")  # p2 has nothing queued
    await c.start()
    try:
        await asyncio.wait_for(waiter, 10)
        assert await stored(store, "p1") == [(1, u(1))]
    finally:
        await c.close()
        await store.close()


async def test_flush_all(store: RecordingStore) -> None:
    c = committer(store, window_ms=20)
    assert await c.flush_all(timeout=0.01)  # empty
    c.submit("p1", u(1))
    assert not await c.flush_all(timeout=0.05)  # not started: cannot drain
    assert c.oldest_age_s() > 0
    await c.start()
    try:
        assert await c.flush_all(timeout=5)
        assert c.oldest_age_s() == 0.0
    finally:
        await c.close()


async def test_close_writes_what_is_queued(store: RecordingStore) -> None:
    c = committer(store, window_ms=50)
    await c.start()
    futures = [c.submit("p1", u(i)) for i in range(5)]
    await c.close()
    assert [f.result() for f in futures] == [1, 2, 3, 4, 5]
    assert len(await stored(store, "p1")) == 5


async def test_start_twice_is_refused(store: RecordingStore) -> None:
    c = committer(store)
    await c.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            await c.start()
    finally:
        await c.close()


async def test_updates_arriving_during_a_commit_share_the_next_one(tmp_path: Path) -> None:
    """Group commit without a window: the first update goes at once; those that arrive
    while its transaction is in flight are written together by the next one."""

    class SlowStore(RecordingStore):
        def __init__(self, path: str) -> None:
            super().__init__(path)
            self.release = asyncio.Event()
            self.started = asyncio.Event()

        async def append_updates(self, batch: Sequence[tuple[str, bytes]]) -> AppendResult:
            self.started.set()
            await self.release.wait()
            return await super().append_updates(batch)

    store = SlowStore(str(tmp_path / "slow.sqlite3"))
    await store.start()
    await store.create_project("p1", "p1", "alice")
    c = committer(store, window_ms=0)
    await c.start()
    try:
        first = c.submit("p1", u(0))
        await asyncio.wait_for(store.started.wait(), 5)  # its transaction is in flight
        rest = [c.submit("p1", u(i)) for i in range(1, 21)]
        store.release.set()
        assert await asyncio.wait_for(asyncio.gather(first, *rest), 10) == list(range(1, 22))
        assert [len(b) for b in store.batches] == [1, 20]
    finally:
        await c.close()
        await store.close()
