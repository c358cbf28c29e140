"""The room registry: each instance heartbeats what it holds (rooms, their users and
counts, persistence lag) through the broker with a TTL, so the admin view can show the
whole cluster and an instance that dies drops out within the TTL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from auth.principal import Principal
from collab.broker.base import Broker
from collab.commit import Committer
from collab.errors import Forbidden
from collab.protocol import EV_ROOMS, EV_SUBSCRIBE_ROOMS
from collab.rooms import RoomManager
from collab.settings import Settings
from collab.tasks import stop_tasks
from collab.transport import SocketTransport
from persistence.base import Store
from persistence.errors import StoreError

log = logging.getLogger("collab.registry")

# An entry lives for three heartbeats: one lost beat does not make rooms flicker away.
TTL_BEATS = 3


class Registry:
    def __init__(
        self,
        *,
        rooms: RoomManager,
        broker: Broker,
        committer: Committer,
        settings: Settings,
        store: Store,
        transport: SocketTransport,
    ) -> None:
        self.rooms = rooms
        self.broker = broker
        self.committer = committer
        self.settings = settings
        self.store = store
        self.transport = transport
        self._task: asyncio.Task[None] | None = None
        # Admins' sockets on "/" that asked for the live feed (``subscribe-rooms``).
        self._feed: dict[str, str] = {}  # sid -> sort
        transport.sio.on(EV_SUBSCRIBE_ROOMS, namespace="/")(self._subscribe)
        transport.sio.on("unsubscribe-rooms", namespace="/")(self._unsubscribe)
        transport.on_main_disconnect = self._forget

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
            await stop_tasks([self._task], log)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            try:
                await self.beat()
                await self._push_feed()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)

    # -- the admin live feed (on "/") ---------------------------------------------------

    async def _subscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        principal = self.transport.main.get(sid)
        if principal is None or not principal.is_admin:
            return Forbidden("admins only").payload()
        sort = data.get("sort") if isinstance(data, dict) else None
        self._feed[sid] = sort if isinstance(sort, str) and sort in _SORT_KEYS else "activity"
        return {"ok": True, "view": await self.cluster_view(sort=self._feed[sid])}

    async def _unsubscribe(self, sid: str, data: Any = None) -> dict[str, Any]:
        self._feed.pop(sid, None)
        return {"ok": True}

    async def _forget(self, sid: str, principal: Principal) -> None:
        self._feed.pop(sid, None)

    async def _push_feed(self) -> None:
        """Send the cluster view to every subscribed admin socket, after each beat."""
        views: dict[str, dict[str, Any]] = {}
        for sid, sort in list(self._feed.items()):
            if sort not in views:
                views[sort] = await self.cluster_view(sort=sort)
            await self.transport.sio.emit(EV_ROOMS, views[sort], to=sid, namespace="/")

    async def cluster_view(
        self, *, sort: str = "activity", project_id: str | None = None
    ) -> dict[str, Any]:
        """What the admin API and dashboard show: one row per live project (entries of
        every instance merged, with the project's name) and the live instances."""
        instances = await self.broker.live_instances()
        entries = [
            {**room, "instance_id": iid, "heartbeat_at": info.get("updated_at")}
            for iid, info in instances.items()
            for room in info.get("rooms", [])
            if project_id is None or room.get("project_id") == project_id
        ]
        rows = sorted(merge_rooms(entries), key=_SORT_KEYS.get(sort, _SORT_KEYS["activity"]))
        for row in rows:
            try:
                row["project_name"] = (await self.store.get_project(row["project_id"])).name
            except StoreError:
                row["project_name"] = None
        return {
            "rooms": rows,
            "instances": [
                {
                    "instance_id": iid,
                    "rooms": len(info.get("rooms", [])),
                    "updated_at": info.get("updated_at"),
                }
                for iid, info in sorted(instances.items())
            ],
        }

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


_SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "activity": lambda r: -float(r.get("last_activity") or 0),
    "connections": lambda r: -int(r.get("connections") or 0),
    "updates": lambda r: -float(r.get("updates_per_s") or 0),
    "size": lambda r: -int(r.get("doc_bytes") or 0),
    "project": lambda r: str(r.get("project_id")),
}


def merge_rooms(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per project: the per-instance entries summed, users merged."""
    by_project: dict[str, dict[str, Any]] = {}
    for e in entries:
        pid = e["project_id"]
        row = by_project.get(pid)
        if row is None:
            row = by_project[pid] = {
                "project_id": pid,
                "instances": [],
                "connections": 0,
                "users": {},
                "doc_bytes": 0,
                "node_count": 0,
                "edge_count": 0,
                "updates_per_s": 0.0,
                "commit_pending": 0,
                "commit_lag_s": 0.0,
                "last_activity": 0.0,
                "read_only": False,
            }
        row["instances"].append(
            {
                "instance_id": e["instance_id"],
                "connections": e.get("connections", 0),
                "heartbeat_at": e.get("heartbeat_at"),
                "waiting_structs": e.get("waiting_structs", 0),
            }
        )
        row["connections"] += int(e.get("connections", 0))
        row["updates_per_s"] = round(row["updates_per_s"] + float(e.get("updates_per_s", 0)), 2)
        row["commit_pending"] += int(e.get("commit_pending", 0))
        row["commit_lag_s"] = max(row["commit_lag_s"], float(e.get("commit_lag_s", 0)))
        row["read_only"] = row["read_only"] or bool(e.get("read_only"))
        # Instances hold the same converged doc: report the largest (most caught up).
        for key in ("doc_bytes", "node_count", "edge_count"):
            row[key] = max(row[key], int(e.get(key, 0)))
        row["last_activity"] = max(row["last_activity"], float(e.get("last_activity") or 0))
        for user in e.get("users", []):
            merged = row["users"].setdefault(
                user["id"], {**user, "connections": 0, "presence": [], "instances": []}
            )
            merged["connections"] += int(user.get("connections", 0))
            merged["presence"].extend(user.get("presence", []))
            merged["instances"].append(e["instance_id"])
    rows = []
    for row in by_project.values():
        row["users"] = sorted(row["users"].values(), key=lambda u: str(u["id"]))
        rows.append(row)
    return rows
