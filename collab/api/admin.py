"""Admin: live rooms across the cluster, and actions on them.

Reads come from the room registry (every instance's heartbeat); actions travel on the
broker's control channel and are carried out by whichever instances hold the room.
"""

from __future__ import annotations

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


def _admin(ctx: Ctx) -> Registry:
    if not ctx.user.is_admin:
        raise Forbidden("admins only")
    return ctx.svc.registry


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
    return await registry.cluster_view(sort=q.sort)


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
    view = await registry.cluster_view(project_id=pid)
    if not view["rooms"]:
        raise NotFoundError("no live room for this project", {"project_id": pid})
    row: dict[str, Any] = view["rooms"][0]
    return row


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
    body: ReadOnlyRequest = ctx.body
    # Stored first: a room loaded later (anywhere) reads it; then every live room hears.
    await ctx.svc.store.set_read_only(ctx.project_id, body.read_only)
    await ctx.svc.cluster.set_read_only(ctx.project_id, body.read_only)
    return ActionOut(ok=True, detail={"read_only": body.read_only})
