"""The room registry: each instance heartbeats what it holds (rooms, their users and
counts, persistence lag) through the broker with a TTL, so the admin view can show the
whole cluster and an instance that dies drops out within the TTL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from collab.broker.base import Broker
from collab.commit import Committer
from collab.rooms import RoomManager
from collab.settings import Settings

log = logging.getLogger("collab.registry")

# An entry lives for three heartbeats: one lost beat does not make rooms flicker away.
TTL_BEATS = 3


class Registry:
    def __init__(
        self, *, rooms: RoomManager, broker: Broker, committer: Committer, settings: Settings
    ) -> None:
        self.rooms = rooms
        self.broker = broker
        self.committer = committer
        self.settings = settings
        self._task: asyncio.Task[None] | None = None

    @property
    def ttl_s(self) -> float:
        return self.settings.heartbeat_s * TTL_BEATS

    def local_rooms(self) -> list[dict[str, Any]]:
        out = []
        for room in list(self.rooms.rooms.values()):
            if room.buffer is not None or room.load_error is not None:
                continue
            summary = room.summary()
            summary["instance_id"] = self.broker.instance_id
            summary["commit_pending"] = self.committer.pending(room.project_id)
            summary["commit_lag_s"] = round(self.committer.oldest_age_s(), 3)
            out.append(summary)
        return out

    async def beat(self) -> None:
        await self.broker.heartbeat(self.local_rooms(), self.ttl_s)

    async def start(self) -> None:
        with contextlib.suppress(Exception):
            await self.beat()
        self._task = asyncio.create_task(self._run(), name="collab-registry")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    async def cluster_rooms(self) -> list[dict[str, Any]]:
        """Every room on every live instance (a room split over instances appears once
        per instance, each with its own connections)."""
        instances = await self.broker.live_instances()
        rooms: list[dict[str, Any]] = []
        for instance_id, info in instances.items():
            for room in info.get("rooms", []):
                rooms.append(
                    {
                        **room,
                        "instance_id": instance_id,
                        "heartbeat_at": info.get("updated_at", time.time()),
                    }
                )
        return rooms
