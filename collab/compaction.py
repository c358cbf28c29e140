"""Compaction: merge a project's snapshot + update log into a new snapshot.

One instance at a time per project: the store's lease, whose fence token is checked in
the same transaction that writes the snapshot and trims the log, so a compactor that
lost its lease (paused, slow) changes nothing. The work reads only what the *store*
holds (never the live doc, which may hold updates not yet durable), runs in a worker
process when the app gives one (pycrdt holds the GIL: applying a large snapshot in a
thread stalled every room's event loop for ~50 ms per compaction), and never drops
causally pending structs (PROTOCOL-NOTES §3): the log rows holding
structs that still wait for predecessors stay in the log, uncompacted.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import Executor, ProcessPoolExecutor

from collab.metrics import Metrics
from collab.rooms import build_doc
from collab.tasks import stop_tasks
from persistence.base import LoadedDoc, Store
from persistence.errors import StoreError

log = logging.getLogger("collab.compaction")

# A lease outlives any compaction we expect (100k rows take ~1 s); if the holder dies,
# others may take over after this.
LEASE_TTL_S = 120.0


# A worker process checks this often whether the server that started it is gone.
PARENT_CHECK_S = 1.0


def worker_pool() -> ProcessPoolExecutor:
    """One worker process for ``merge``, started on the first compaction. "spawn":
    forking a process that runs threads and an event loop is unsafe."""
    return ProcessPoolExecutor(
        max_workers=1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_exit_with_parent,
        initargs=(os.getpid(),),
    )


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: exit when the server dies without shutting the pool down
    (kill -9), instead of waiting forever for work (it holds its queue's write end, so
    it never sees EOF)."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def merge(loaded: LoadedDoc) -> tuple[bytes, int]:
    """The snapshot that replaces ``loaded`` and the last log row it covers.

    The snapshot is a complete document (what yrs integrated): rows from the first one
    whose structs still wait for predecessors on are not covered and stay in the log,
    so that nothing pending is lost and a snapshot can be applied without the gate.
    """
    built = build_doc(loaded)
    through = loaded.head_seq
    if built.first_parked_seq is not None:
        through = built.first_parked_seq - 1
    return built.doc.get_update(), through


class Compactor:
    def __init__(
        self, *, store: Store, metrics: Metrics, holder: str, executor: Executor | None = None
    ) -> None:
        """``executor``: where ``merge`` runs (a process pool in the app; closed by
        ``close``); None: a thread."""
        self.store = store
        self.metrics = metrics
        self.holder = holder
        self.executor = executor
        self._running: dict[str, asyncio.Task[bool]] = {}

    def request(self, project_id: str) -> None:
        """Compact soon (single-flight per project on this instance)."""
        if project_id in self._running:
            return
        task = asyncio.create_task(self.compact(project_id), name=f"compact:{project_id}")
        self._running[project_id] = task
        task.add_done_callback(lambda _t: self._running.pop(project_id, None))

    async def compact(self, project_id: str) -> bool:
        """Return True when a new snapshot was written."""
        started = time.monotonic()
        try:
            fence = await self.store.acquire_compaction_lease(project_id, self.holder, LEASE_TTL_S)
            if fence is None:
                self.metrics.compactions.labels("busy").inc()
                return False
            try:
                loaded = await self.store.load_document(project_id)
                if not loaded.updates:
                    return False
                snapshot, through = await asyncio.get_running_loop().run_in_executor(
                    self.executor, merge, loaded
                )
                if through <= loaded.snapshot_seq:
                    return False  # everything after the snapshot still waits
                done = await self.store.compact(
                    project_id, fence=fence, snapshot=snapshot, through_seq=through
                )
            finally:
                await self.store.release_compaction_lease(project_id, fence)
        except StoreError as exc:
            self.metrics.compactions.labels("failed").inc()
            log.warning("compaction of %s failed: %s", project_id, exc)
            return False
        self.metrics.compactions.labels("done" if done else "fenced").inc()
        log.info(
            "compacted %d rows in %.3f s",
            len(loaded.updates),
            time.monotonic() - started,
            extra={"project": project_id, "through_seq": through, "fenced": not done},
        )
        return done

    async def close(self) -> None:
        await stop_tasks(list(self._running.values()), log)
        if self.executor is not None:
            # A merge in progress finishes in its worker, which then exits.
            self.executor.shutdown(wait=False, cancel_futures=True)
