"""Durability benchmarks (issue 3): commit throughput, ack latency, cold load.

    .venv/bin/python bench/durability.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]

Creates a scratch database, runs three measurements and drops it:

1. commit throughput: the group committer with the Postgres store and the default
   window, fed by 100 rooms as fast as they can submit (updates/s stored);
2. ack latency: a real server process, 20 Python clients (one per room) each sending
   ``sync-update`` with an ack 10 times a second; p50/p99 of send -> ack (= durable);
3. cold load of a 100,000-update history: ``load_document`` + building the document
   (what a room load does), before and after compaction.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import pycrdt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collab.commit import Committer
from collab.compaction import Compactor
from collab.metrics import Metrics
from collab.rooms import build_doc
from collab.settings import Settings
from persistence.postgres import PostgresStore


def small_updates(n: int, client_id: int = 1) -> list[bytes]:
    """``n`` one-transaction edits like a node drag: set x/y of one of 200 nodes."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    nodes = doc.get("nodes", type=pycrdt.Map)
    out: list[bytes] = []
    doc.observe(lambda e: out.append(e.update))
    for i in range(200):
        nodes[f"n{i}"] = pycrdt.Map({"type": "Scale", "x": 0.0, "y": 0.0})
    for i in range(n - 200):
        node = nodes[f"n{i % 200}"]
        with doc.transaction():
            node["x"] = float(i)
            node["y"] = float(-i)
    return out[:n]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


async def commit_throughput(dsn: str, seconds: float = 10.0) -> dict[str, float]:
    store = PostgresStore(dsn)
    await store.start()
    settings = Settings()
    committer = Committer(
        store,
        window_ms=settings.commit_window_ms,
        max_pending=settings.max_pending_updates,
        max_bytes=settings.max_pending_bytes,
        metrics=Metrics(),
    )
    await committer.start()
    rooms = [f"tp-{i}" for i in range(100)]
    for r in rooms:
        await store.create_project(r, r, "bench")
    updates = small_updates(2000)
    done = 0
    stop = time.monotonic() + seconds

    async def producer(room: str) -> None:
        nonlocal done
        i = 0
        while time.monotonic() < stop:
            # One room's client: its next update waits for the previous ack (like a
            # client that shows "saved" per edit); 100 rooms in parallel.
            await committer.submit(room, updates[i % len(updates)])
            done += 1
            i += 1

    started = time.monotonic()
    await asyncio.gather(*(producer(r) for r in rooms))
    elapsed = time.monotonic() - started
    await committer.close()
    await store.close()
    return {"updates_per_s": round(done / elapsed), "window_ms": settings.commit_window_ms}


async def ack_latency(dsn: str, seconds: float = 15.0) -> dict[str, float]:
    import socketio

    from tests.server import Rest, ServerProcess, token

    srv = ServerProcess(
        {
            "COLLAB_DATABASE_URL": dsn,
            "COLLAB_DATA_DIR": "/tmp/collab-bench-ack",
            "COLLAB_LOG_LEVEL": "WARNING",
            "COLLAB_MESSAGES_PER_SECOND": "10000",
            "COLLAB_COMMIT_WINDOW_MS": str(Settings().commit_window_ms),
        },
        name="bench-ack",
    )
    await srv.start()
    rest = Rest(srv.url)
    tok = token("bench")
    latencies: list[float] = []
    try:
        pids = [await rest.project(tok, f"ack {i}") for i in range(20)]
        updates = small_updates(1000)

        async def client(pid: str, k: int) -> None:
            ns = f"/yjs|{pid}"
            sio = socketio.AsyncClient(reconnection=False)
            sio.on("sync-step-1", lambda _sv: b"\x00\x00", namespace=ns)
            await sio.connect(
                srv.url, namespaces=[ns], auth={"token": tok}, transports=["websocket"]
            )
            stop = time.monotonic() + seconds
            i = 0
            while time.monotonic() < stop:
                t = time.perf_counter()
                ack = await sio.call(
                    "sync-update", updates[i % len(updates)], namespace=ns, timeout=10
                )
                assert ack["ok"], ack
                latencies.append((time.perf_counter() - t) * 1000)
                i += 1
                await asyncio.sleep(0.1)  # 10 edits/s per client
            await sio.disconnect()

        await asyncio.gather(*(client(p, k) for k, p in enumerate(pids)))
    finally:
        await rest.close()
        await srv.stop()
    return {
        "acks": len(latencies),
        "p50_ms": round(pct(latencies, 0.5), 2),
        "p99_ms": round(pct(latencies, 0.99), 2),
        "mean_ms": round(statistics.mean(latencies), 2),
    }


async def cold_load(dsn: str, n: int = 100_000) -> dict[str, Any]:
    store = PostgresStore(dsn)
    await store.start()
    pid = "cold-100k"
    await store.create_project(pid, pid, "bench")
    updates = small_updates(n)
    for i in range(0, n, 1000):
        await store.append_updates([(pid, u) for u in updates[i : i + 1000]])
    conn = await asyncpg.connect(dsn)
    await conn.execute("ANALYZE doc_updates")
    await conn.close()

    async def load() -> tuple[float, float, int]:
        t = time.perf_counter()
        loaded = await store.load_document(pid)
        t_read = time.perf_counter() - t
        built = await asyncio.to_thread(build_doc, loaded)
        total = time.perf_counter() - t
        return t_read, total, len(built.doc.get_update())

    before = [await load() for _ in range(3)]
    t = time.perf_counter()
    compacted = await Compactor(store=store, metrics=Metrics(), holder="bench").compact(pid)
    t_compact = time.perf_counter() - t
    after = [await load() for _ in range(3)]
    await store.close()
    return {
        "updates": n,
        "update_bytes_total": sum(len(u) for u in updates),
        "before_s": {
            "read": round(min(b[0] for b in before), 3),
            "read+build": round(min(b[1] for b in before), 3),
        },
        "compaction_s": round(t_compact, 3),
        "compacted": compacted,
        "snapshot_bytes": after[0][2],
        "after_s": {
            "read": round(min(a[0] for a in after), 4),
            "read+build": round(min(a[1] for a in after), 4),
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--only", choices=["throughput", "ack", "cold"], default=None)
    args = parser.parse_args()
    name = f"collab_bench_{int(time.time())}"
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = args.dsn.rsplit("/", 1)[0] + "/" + name
    results: dict[str, Any] = {}
    try:
        if args.only in (None, "throughput"):
            results["commit_throughput"] = await commit_throughput(dsn)
        if args.only in (None, "ack"):
            results["ack_latency"] = await ack_latency(dsn)
        if args.only in (None, "cold"):
            results["cold_load"] = await cold_load(dsn)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
