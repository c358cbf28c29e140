"""Versions: immutable snapshots of a project's document, their graphs and diffs,
and restore as a forward change every connected client sees live."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from pycrdt import Doc

from collab import graph
from collab.metrics import Metrics
from collab.notifications import Notifier
from collab.rooms import Room, RoomManager
from persistence.base import Store, Version
from persistence.errors import NotFound

log = logging.getLogger("collab.versions")


class Versions:
    def __init__(
        self, *, store: Store, rooms: RoomManager, metrics: Metrics, notifier: Notifier
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.metrics = metrics
        self.notifier = notifier
        self._locks: dict[str, asyncio.Lock] = {}
        rooms.on_auto_version = self.auto

    async def create(
        self, room: Room, *, label: str | None, created_by: str | None, kind: str = "manual"
    ) -> Version:
        """Save the room's current document as the next version."""
        async with self._locks.setdefault(room.project_id, asyncio.Lock()):
            since = room.unversioned_since
            room.unversioned_since = None  # edits from now on are not in this version
            state = room.doc.get_update()
            nodes, edges = graph.counts(room.doc)
            try:
                version = await self.store.create_version(
                    room.project_id,
                    state=state,
                    label=label,
                    created_by=created_by,
                    node_count=nodes,
                    edge_count=edges,
                    log_seq=room.store_seq,
                )
            except BaseException:
                if room.unversioned_since is None:
                    room.unversioned_since = since or time.time()
                raise
        self.metrics.versions.labels(kind).inc()
        log.info(
            "version %d saved", version.version, extra={"project": room.project_id, "kind": kind}
        )
        return version

    async def auto(self, room: Room, reason: str) -> None:
        """Room hook: a version when edits are unsaved (periodic, last editor left)."""
        if room.unversioned_since is None:
            return
        try:
            # Several instances hold a busy room; each sees "its" last editor leave.
            # The first one's version is enough when the others hold the same doc.
            latest = await self.store.latest_version(room.project_id)
            if latest is not None:
                state = await self.store.get_version_state(room.project_id, latest.version)
                if state == room.doc.get_update():
                    room.unversioned_since = None
                    return
            await self.create(room, label=f"auto: {reason}", created_by=None, kind="auto")
        except NotFound:
            pass  # the project was deleted meanwhile
        except Exception:
            log.exception("auto version of %s failed", room.project_id)

    async def graph_of(self, project_id: str, version: int) -> dict[str, Any]:
        state = await self.store.get_version_state(project_id, version)
        return await asyncio.to_thread(_materialize_state, state)

    async def restore(
        self, project_id: str, version: int, *, nodes: list[str] | None, by: str
    ) -> tuple[Version, dict[str, Any]]:
        """Bring the live document back to ``version`` (or only ``nodes`` of it) as a
        new change, and record a version labelled with its origin."""
        source = await self.graph_of(project_id, version)
        async with self.rooms.hold(project_id) as room:
            fut = self.rooms.server_change(
                room, lambda doc: graph.apply_graph(doc, source, nodes=nodes)
            )
            if fut is not None:
                await fut
            label = f"restored from version {version}"
            if nodes is not None:
                label += f" ({len(nodes)} node{'s' if len(nodes) != 1 else ''})"
            saved = await self.create(room, label=label, created_by=by, kind="restore")
            current = room.graph()
        return saved, current


def _materialize_state(state: bytes) -> dict[str, Any]:
    doc = Doc[Any]()
    doc.apply_update(state)
    return dict(graph.materialize(doc))
