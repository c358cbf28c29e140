"""Compaction against a real SQLite store: the snapshot reproduces the document, and
rows whose structs still wait for predecessors are never folded into it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pycrdt
import pytest

from collab.compaction import Compactor
from collab.metrics import Metrics
from collab.rooms import build_doc
from persistence.sqlite import SqliteStore


def edits(n: int, client_id: int = 7) -> list[bytes]:
    doc: pycrdt.Doc[Any] = pycrdt.Doc(client_id=client_id)
    meta = doc.get("meta", type=pycrdt.Map)
    out: list[bytes] = []
    doc.observe(lambda e: out.append(e.update))
    for i in range(n):
        meta[f"k{i % 5}"] = i  # overwrites: deletions in the history too
    return out


def meta_of(doc: pycrdt.Doc[Any]) -> dict[str, Any]:
    return dict(doc.get("meta", type=pycrdt.Map).to_py() or {})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(str(tmp_path / "c.sqlite3"))
    await s.start()
    await s.create_project("p", "p", "alice")
    try:
        yield s
    finally:
        await s.close()


async def test_the_snapshot_reproduces_the_document_and_trims_the_log(store: SqliteStore) -> None:
    updates = edits(50)
    await store.append_updates([("p", u) for u in updates])
    before = build_doc(await store.load_document("p")).doc
    assert await Compactor(store=store, metrics=Metrics(), holder="t").compact("p")
    loaded = await store.load_document("p")
    assert loaded.snapshot is not None
    assert loaded.snapshot_seq == 50
    assert loaded.updates == []
    assert meta_of(build_doc(loaded).doc) == meta_of(before)


async def test_rows_whose_structs_wait_stay_in_the_log(store: SqliteStore) -> None:
    updates = edits(30)
    # Row 11 onwards arrive before update 10: they wait for it.
    await store.append_updates([("p", u) for u in updates[:10]])
    await store.append_updates([("p", u) for u in updates[11:]])
    built = build_doc(await store.load_document("p"))
    assert built.first_parked_seq == 11
    assert await Compactor(store=store, metrics=Metrics(), holder="t").compact("p")
    loaded = await store.load_document("p")
    assert loaded.snapshot_seq == 10  # the waiting rows were not folded in
    assert [e.seq for e in loaded.updates] == list(range(11, 30))
    # The missing update arrives; everything integrates, nothing was lost.
    await store.append_updates([("p", updates[10])])
    doc = build_doc(await store.load_document("p")).doc
    reference: pycrdt.Doc[Any] = pycrdt.Doc()
    for u in updates:
        reference.apply_update(u)
    assert meta_of(doc) == meta_of(reference)


async def test_nothing_to_fold_when_only_waiting_rows_follow_the_snapshot(
    store: SqliteStore,
) -> None:
    updates = edits(10)
    await store.append_updates([("p", u) for u in updates[1:]])  # all wait for update 0
    assert not await Compactor(store=store, metrics=Metrics(), holder="t").compact("p")
    loaded = await store.load_document("p")
    assert loaded.snapshot is None
    assert len(loaded.updates) == 9
