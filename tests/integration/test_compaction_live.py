"""Compaction inside a running server (its worker process), on both stores."""

from __future__ import annotations

from pathlib import Path

from collab.keys import SERVICES
from tests.integration.conftest import ServerFactory
from tests.integration.test_durability import Writer
from tests.server import Rest, ServerProcess, token, wait_for

ALICE = token("alice", "Alice")


async def test_the_log_is_compacted_live_and_a_reload_reads_the_same_document(
    server_factory: ServerFactory,
) -> None:
    async with server_factory(compact_after_updates=20) as srv:
        rest = Rest(srv.url)
        writer = Writer(srv.url, await rest.project(ALICE), ALICE)
        pid = writer.ns.removeprefix("/yjs|")
        try:
            await writer.connect()
            store = srv.app[SERVICES].store

            async def write(keys: range) -> None:
                for i in keys:
                    ack = await writer.write(f"k{i}")
                    assert ack["ok"] is True, ack

            async def compacted_through(seq: int) -> None:
                async def done() -> bool:
                    return (await store.log_stats(pid)).snapshot_seq >= seq

                await wait_for(done, timeout=30, message=f"log compacted through seq {seq}")

            # Compaction is due every 20th row: at 20, then at 40.
            await write(range(25))
            await compacted_through(20)
            await write(range(25, 45))
            await compacted_through(40)
            stats = await store.log_stats(pid)
            assert stats.head_seq == 45
            assert stats.rows == 45 - stats.snapshot_seq < 6
            status, live = await rest.get(f"/projects/{pid}/graph", token=ALICE)
            assert status == 200, live
            assert sorted(live["meta"]) == sorted(f"k{i}" for i in range(45))

            await writer.close()
            rooms = srv.app[SERVICES].rooms

            async def unloaded() -> bool:
                return pid not in rooms.rooms

            await wait_for(unloaded, timeout=15, message="room unloaded")
            # Loaded again from the snapshot and the log tail.
            status, reloaded = await rest.get(f"/projects/{pid}/graph", token=ALICE)
            assert status == 200, reloaded
            assert reloaded == live
        finally:
            if writer.sio.connected:
                await writer.close()
            await rest.close()


async def test_a_room_that_goes_idle_is_compacted(server_factory: ServerFactory) -> None:
    # 5 rows never reach the count (20) that triggers compaction while editing; they
    # pass the idle threshold (20 / 10), so the unload compacts them.
    async with server_factory(compact_after_updates=20) as srv:
        rest = Rest(srv.url)
        writer = Writer(srv.url, await rest.project(ALICE), ALICE)
        pid = writer.ns.removeprefix("/yjs|")
        try:
            await writer.connect()
            for i in range(5):
                ack = await writer.write(f"k{i}")
                assert ack["ok"] is True, ack
            store = srv.app[SERVICES].store
            assert (await store.log_stats(pid)).snapshot_seq == 0
            status, live = await rest.get(f"/projects/{pid}/graph", token=ALICE)
            await writer.close()

            async def compacted() -> bool:
                stats = await store.log_stats(pid)
                return (stats.snapshot_seq, stats.rows) == (5, 0)

            await wait_for(compacted, timeout=30, message="idle room compacted")
            status, reloaded = await rest.get(f"/projects/{pid}/graph", token=ALICE)
            assert status == 200, reloaded
            assert reloaded == live
            assert sorted(reloaded["meta"]) == [f"k{i}" for i in range(5)]
        finally:
            if writer.sio.connected:
                await writer.close()
            await rest.close()


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    kids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces; split after the ")".
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.add(int(entry.name))
    return kids


async def test_kill_9_of_the_server_leaves_no_compaction_worker_behind(tmp_path: Path) -> None:
    srv = ServerProcess(
        {"COLLAB_DATA_DIR": str(tmp_path), "COLLAB_COMPACT_AFTER_UPDATES": "5"},
        name="compact-kill",
        log_dir=tmp_path,
    )
    await srv.start()
    rest = Rest(srv.url)
    try:
        writer = Writer(srv.url, await rest.project(ALICE), ALICE)
        await writer.connect()
        for i in range(6):
            await writer.write(f"k{i}")
        assert srv.proc is not None
        server_pid = srv.proc.pid

        async def worker_started() -> bool:
            return bool(_children(server_pid))

        await wait_for(worker_started, timeout=30, message="compaction worker started")
        workers = _children(server_pid)
        srv.kill()

        async def all_gone() -> bool:
            return not any(Path(f"/proc/{w}").exists() for w in workers)

        await wait_for(all_gone, timeout=15, message="workers exit after the server died")
    finally:
        srv.kill()
        await rest.close()
