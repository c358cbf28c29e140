"""Versions: save, list, read as a graph, diff as a graph, restore."""

from __future__ import annotations

from typing import Any

from auth.permissions import Access
from collab import graph
from collab.api.base import Api, Ctx
from collab.api.models import (
    PageQuery,
    RestoreOut,
    RestoreRequest,
    VersionCreate,
    VersionOut,
    VersionPage,
    VersionWithGraph,
)
from collab.api.projects import project_access
from collab.errors import BadRequest

api = Api()

DIFF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["from", "to", "nodes", "edges", "meta", "summary", "text"],
    "properties": {
        "from": {"type": "integer"},
        "to": {"oneOf": [{"type": "integer"}, {"type": "string", "const": "current"}]},
        "nodes": {"type": "object"},
        "edges": {"type": "object"},
        "meta": {"type": "object"},
        "summary": {"type": "object"},
        "text": {"type": "string"},
    },
}


def _version_number(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise BadRequest("versions are numbered 1, 2, 3, ...", {"version": raw[:50]})
    return int(raw)


@api.route(
    "POST",
    "/projects/{project_id}/versions",
    summary="Save the current graph as a version",
    tag="versions",
    body=VersionCreate,
    response=VersionOut,
    status=201,
    errors=(400, 401, 403, 404, 422),
)
async def create_version(ctx: Ctx) -> VersionOut:
    project, _ = await project_access(ctx, Access.WRITE)
    body: VersionCreate = ctx.body
    async with ctx.svc.rooms.hold(project.id) as room:
        version = await ctx.svc.versions.create(room, label=body.label, created_by=ctx.user.user_id)
    return VersionOut.of(version)


@api.route(
    "GET",
    "/projects/{project_id}/versions",
    summary="Versions, newest first (paged)",
    tag="versions",
    query=PageQuery,
    response=VersionPage,
    errors=(400, 401, 403, 404),
)
async def list_versions(ctx: Ctx) -> VersionPage:
    project, _ = await project_access(ctx, Access.READ)
    q: PageQuery = ctx.query
    page = await ctx.svc.store.list_versions(project.id, limit=q.limit, cursor=q.cursor)
    return VersionPage(items=[VersionOut.of(v) for v in page.items], next_cursor=page.next_cursor)


@api.route(
    "GET",
    "/projects/{project_id}/versions/{version}",
    summary="A version and its graph",
    tag="versions",
    response=VersionWithGraph,
    errors=(400, 401, 403, 404),
)
async def get_version(ctx: Ctx) -> VersionWithGraph:
    project, _ = await project_access(ctx, Access.READ)
    n = _version_number(ctx.path("version"))
    version = await ctx.svc.store.get_version(project.id, n)
    g = await ctx.svc.versions.graph_of(project.id, n)
    return VersionWithGraph(**VersionOut.of(version).model_dump(), graph=g)


@api.route(
    "GET",
    "/projects/{project_id}/versions/{a}/diff/{b}",
    summary="What changed from version a to version b (or 'current'), as a graph diff",
    tag="versions",
    response_schema=DIFF_SCHEMA,
    errors=(400, 401, 403, 404),
)
async def diff_versions(ctx: Ctx) -> dict[str, Any]:
    project, _ = await project_access(ctx, Access.READ)
    a = _version_number(ctx.path("a"))
    b_raw = ctx.path("b")
    old = await ctx.svc.versions.graph_of(project.id, a)
    if b_raw == "current":
        async with ctx.svc.rooms.hold(project.id) as room:
            new = room.graph()
        b: int | str = "current"
    else:
        b = _version_number(b_raw)
        new = await ctx.svc.versions.graph_of(project.id, b)
    diff = graph.diff_graphs(old, new)
    return {"from": a, "to": b, **diff, "text": graph.summarize(diff)}


@api.route(
    "POST",
    "/projects/{project_id}/versions/{version}/restore",
    summary="Restore a version (or only some nodes of it) as a new live change",
    tag="versions",
    body=RestoreRequest,
    response=RestoreOut,
    errors=(400, 401, 403, 404, 422),
)
async def restore_version(ctx: Ctx) -> RestoreOut:
    project, _ = await project_access(ctx, Access.WRITE)
    n = _version_number(ctx.path("version"))
    body: RestoreRequest = ctx.body
    await ctx.svc.store.get_version(project.id, n)  # 404 before touching the room
    saved, current = await ctx.svc.versions.restore(
        project.id, n, nodes=body.nodes, by=ctx.user.user_id
    )
    members = await ctx.svc.store.list_members(project.id)
    await ctx.svc.notifier.notify(
        [m.user_id for m in members if m.user_id != ctx.user.user_id],
        "version.restored",
        {
            "project_id": project.id,
            "project_name": project.name,
            "from_version": n,
            "version": saved.version,
            "nodes": body.nodes,
            "by": ctx.user.user_id,
        },
    )
    return RestoreOut(
        restored_from=n, nodes=body.nodes, version=VersionOut.of(saved), graph=current
    )
