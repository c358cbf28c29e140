"""Admin: live rooms across the cluster, and actions on them.

Reads come from the room registry (every instance's heartbeat); actions travel on the
broker's control channel and are carried out by whichever instances hold the room.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from collab.api.base import Api, Ctx
from collab.api.models import ActionOut, KickRequest, ReadOnlyRequest, RoomsQuery, VersionOut
from collab.errors import Forbidden, NotFoundError
from collab.registry import Registry

api = Api()

ROOMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["rooms", "instances"],
    "properties": {
        "rooms": {"type": "array", "items": {"type": "object"}},
        "instances": {"type": "array", "items": {"type": "object"}},
    },
}
ROOM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["project_id", "instances", "connections", "users"],
    "properties": {
        "project_id": {"type": "string"},
        "instances": {"type": "array", "items": {"type": "object"}},
        "connections": {"type": "integer"},
        "users": {"type": "array", "items": {"type": "object"}},
    },
}

_SORT_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "activity": lambda r: -float(r.get("last_activity") or 0),
    "connections": lambda r: -int(r.get("connections") or 0),
    "updates": lambda r: -float(r.get("updates_per_s") or 0),
    "size": lambda r: -int(r.get("doc_bytes") or 0),
    "project": lambda r: str(r.get("project_id")),
}


def _admin(ctx: Ctx) -> Registry:
    if not ctx.user.is_admin:
        raise Forbidden("admins only")
    registry = ctx.svc.extra["registry"]
    assert isinstance(registry, Registry)
    return registry


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


@api.route(
    "GET",
    "/admin/rooms",
    summary="Live rooms on every instance (admins)",
    tag="admin",
    query=RoomsQuery,
    response_schema=ROOMS_SCHEMA,
    errors=(400, 401, 403),
)
async def list_rooms(ctx: Ctx) -> dict[str, Any]:
    registry = _admin(ctx)
    q: RoomsQuery = ctx.query
    entries = await registry.cluster_rooms()
    rows = sorted(merge_rooms(entries), key=_SORT_KEYS[q.sort])
    instances = await ctx.svc.broker.live_instances()
    return {
        "rooms": rows,
        "instances": [
            {
                "instance_id": i,
                "rooms": len(info.get("rooms", [])),
                "updated_at": info.get("updated_at"),
            }
            for i, info in sorted(instances.items())
        ],
    }


@api.route(
    "GET",
    "/admin/rooms/{project_id}",
    summary="One live room, its users and presence",
    tag="admin",
    response_schema=ROOM_SCHEMA,
    errors=(400, 401, 403, 404),
)
async def get_room(ctx: Ctx) -> dict[str, Any]:
    registry = _admin(ctx)
    pid = ctx.project_id
    rows = merge_rooms([e for e in await registry.cluster_rooms() if e["project_id"] == pid])
    if not rows:
        raise NotFoundError("no live room for this project", {"project_id": pid})
    return rows[0]


@api.route(
    "POST",
    "/admin/rooms/{project_id}/snapshot",
    summary="Force a version now",
    tag="admin",
    response=VersionOut,
    status=201,
    errors=(400, 401, 403, 404),
)
async def snapshot(ctx: Ctx) -> VersionOut:
    _admin(ctx)
    await ctx.svc.store.get_project(ctx.project_id)
    async with ctx.svc.rooms.hold(ctx.project_id) as room:
        version = await ctx.svc.versions.create(
            room, label="snapshot by an admin", created_by=ctx.user.user_id, kind="admin"
        )
    return VersionOut.of(version)


@api.route(
    "POST",
    "/admin/rooms/{project_id}/kick",
    summary="Disconnect a user from the room",
    tag="admin",
    body=KickRequest,
    response=ActionOut,
    errors=(400, 401, 403, 404, 422),
)
async def kick(ctx: Ctx) -> ActionOut:
    _admin(ctx)
    await ctx.svc.store.get_project(ctx.project_id)
    body: KickRequest = ctx.body
    await ctx.svc.cluster.kick(ctx.project_id, body.user_id)
    return ActionOut(ok=True, detail={"user_id": body.user_id})


@api.route(
    "POST",
    "/admin/rooms/{project_id}/close",
    summary="Close the room: disconnect everyone",
    tag="admin",
    response=ActionOut,
    errors=(400, 401, 403, 404),
)
async def close(ctx: Ctx) -> ActionOut:
    _admin(ctx)
    project = await ctx.svc.store.get_project(ctx.project_id)
    members = await ctx.svc.store.list_members(project.id)
    await ctx.svc.cluster.close_room(project.id)
    await ctx.svc.notifier.notify(
        [project.owner, *(m.user_id for m in members)],
        "room.closed",
        {"project_id": project.id, "project_name": project.name, "by": ctx.user.user_id},
    )
    return ActionOut(ok=True)


@api.route(
    "POST",
    "/admin/rooms/{project_id}/read-only",
    summary="Make the room read-only (or not)",
    tag="admin",
    body=ReadOnlyRequest,
    response=ActionOut,
    errors=(400, 401, 403, 404, 422),
)
async def read_only(ctx: Ctx) -> ActionOut:
    _admin(ctx)
    await ctx.svc.store.get_project(ctx.project_id)
    body: ReadOnlyRequest = ctx.body
    await ctx.svc.cluster.set_read_only(ctx.project_id, body.read_only)
    return ActionOut(ok=True, detail={"read_only": body.read_only})
