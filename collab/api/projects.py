"""Projects, members and the graph."""

from __future__ import annotations

import secrets
from typing import Any

from auth.permissions import Access
from collab import graph
from collab.api.base import Api, Ctx
from collab.api.models import (
    MemberList,
    MemberOut,
    MemberPut,
    PageQuery,
    ProjectCreate,
    ProjectOut,
    ProjectPage,
    ProjectRename,
)
from collab.errors import BadRequest, ConflictError, Forbidden, NotFoundError, ValidationFailed
from persistence.base import Project

api = Api()

GRAPH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["nodes", "edges"],
    "properties": {
        "nodes": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["type", "x", "y"],
                "properties": {
                    "type": {"type": "string"},
                    "x": {"type": "number"},
                    "y": {"type": "number"},
                    "params": {"type": "object"},
                    "label": {"type": "string"},
                },
            },
        },
        "edges": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["source", "sourceSocket", "target", "targetSocket"],
                "properties": {
                    "source": {"type": "string"},
                    "sourceSocket": {"type": "string"},
                    "target": {"type": "string"},
                    "targetSocket": {"type": "string"},
                },
            },
        },
        "meta": {"type": "object"},
        "problems": {"type": "array", "items": {"type": "object"}},
    },
}


async def project_access(ctx: Ctx, needed: Access) -> tuple[Project, Access]:
    """The project and the caller's access; 404 / 403 when it does not suffice."""
    project = await ctx.svc.store.get_project(ctx.project_id)
    role = await ctx.svc.store.get_role(project.id, ctx.user.user_id)
    access = Access.for_role(role, ctx.user)
    if access < needed:
        if access == Access.NONE:
            raise Forbidden("you are not a member of this project", {"project_id": project.id})
        raise Forbidden(
            f"this needs the {needed.name.lower()} right",
            {"project_id": project.id, "role": role},
        )
    return project, access


def role_name(role: str | None, access: Access) -> str | None:
    if role is None and access == Access.MANAGE:
        return "admin"
    return role


@api.route(
    "POST",
    "/projects",
    summary="Create a project (the caller owns it)",
    tag="projects",
    body=ProjectCreate,
    response=ProjectOut,
    status=201,
    errors=(400, 401, 422),
)
async def create_project(ctx: Ctx) -> ProjectOut:
    body: ProjectCreate = ctx.body
    project = await ctx.svc.store.create_project(secrets.token_hex(8), body.name, ctx.user.user_id)
    return ProjectOut.of(project, "owner")


@api.route(
    "GET",
    "/projects",
    summary="Projects I own or am a member of",
    tag="projects",
    query=PageQuery,
    response=ProjectPage,
    errors=(400, 401),
)
async def list_projects(ctx: Ctx) -> ProjectPage:
    q: PageQuery = ctx.query
    page = await ctx.svc.store.list_projects(ctx.user.user_id, limit=q.limit, cursor=q.cursor)
    return ProjectPage(
        items=[ProjectOut.listing(i) for i in page.items], next_cursor=page.next_cursor
    )


@api.route(
    "GET",
    "/projects/{project_id}",
    summary="One project",
    tag="projects",
    response=ProjectOut,
    errors=(400, 401, 403, 404),
)
async def get_project(ctx: Ctx) -> ProjectOut:
    project, access = await project_access(ctx, Access.READ)
    role = await ctx.svc.store.get_role(project.id, ctx.user.user_id)
    return ProjectOut.of(project, role_name(role, access))


@api.route(
    "PATCH",
    "/projects/{project_id}",
    summary="Rename a project (owner)",
    tag="projects",
    body=ProjectRename,
    response=ProjectOut,
    errors=(400, 401, 403, 404, 422),
)
async def rename_project(ctx: Ctx) -> ProjectOut:
    await project_access(ctx, Access.MANAGE)
    body: ProjectRename = ctx.body
    project = await ctx.svc.store.rename_project(ctx.project_id, body.name)
    return ProjectOut.of(project)


@api.route(
    "DELETE",
    "/projects/{project_id}",
    summary="Delete a project (owner); connected clients are told and disconnected",
    tag="projects",
    status=204,
    errors=(400, 401, 403, 404),
)
async def delete_project(ctx: Ctx) -> None:
    project, _ = await project_access(ctx, Access.MANAGE)
    members = await ctx.svc.store.list_members(project.id)
    await ctx.svc.store.delete_project(project.id)
    await ctx.svc.cluster.project_deleted(project.id)
    await ctx.svc.notifier.notify(
        [m.user_id for m in members if m.user_id != ctx.user.user_id],
        "project.deleted",
        {"project_id": project.id, "project_name": project.name, "by": ctx.user.user_id},
    )


@api.route(
    "GET",
    "/projects/{project_id}/members",
    summary="Members (owner first)",
    tag="members",
    response=MemberList,
    errors=(400, 401, 403, 404),
)
async def list_members(ctx: Ctx) -> MemberList:
    project, _ = await project_access(ctx, Access.READ)
    members = await ctx.svc.store.list_members(project.id)
    return MemberList(items=[MemberOut.of(m) for m in members])


@api.route(
    "PUT",
    "/projects/{project_id}/members/{user_id}",
    summary="Add a member or change their role (owner or admin); takes effect live",
    tag="members",
    body=MemberPut,
    response=MemberOut,
    errors=(400, 401, 403, 404, 409, 422),
)
async def put_member(ctx: Ctx) -> MemberOut:
    project, _ = await project_access(ctx, Access.MANAGE)
    user_id = _user_id(ctx.path("user_id"))
    body: MemberPut = ctx.body
    if user_id == project.owner:
        raise ConflictError("the owner's role cannot be changed", {"user_id": user_id})
    before = await ctx.svc.store.get_role(project.id, user_id)
    member = await ctx.svc.store.set_member(project.id, user_id, body.role)
    await ctx.svc.cluster.member_changed(project.id, user_id, body.role)
    if before != body.role:
        kind = "project.member_added" if before is None else "project.role_changed"
        await ctx.svc.notifier.notify(
            [user_id],
            kind,
            {
                "project_id": project.id,
                "project_name": project.name,
                "role": body.role,
                "previous_role": before,
                "by": ctx.user.user_id,
            },
        )
    return MemberOut.of(member)


@api.route(
    "DELETE",
    "/projects/{project_id}/members/{user_id}",
    summary="Remove a member (owner or admin); their connections are closed",
    tag="members",
    status=204,
    errors=(400, 401, 403, 404, 409),
)
async def delete_member(ctx: Ctx) -> None:
    project, _ = await project_access(ctx, Access.MANAGE)
    user_id = _user_id(ctx.path("user_id"))
    if user_id == project.owner:
        raise ConflictError("the owner cannot be removed", {"user_id": user_id})
    if not await ctx.svc.store.remove_member(project.id, user_id):
        raise NotFoundError("not a member", {"user_id": user_id})
    await ctx.svc.cluster.member_changed(project.id, user_id, None)
    await ctx.svc.notifier.notify(
        [user_id],
        "project.member_removed",
        {"project_id": project.id, "project_name": project.name, "by": ctx.user.user_id},
    )


@api.route(
    "GET",
    "/projects/{project_id}/graph",
    summary="The live graph as JSON (nodes and edges exactly as the document holds them)",
    tag="graph",
    response_schema=GRAPH_SCHEMA,
    errors=(400, 401, 403, 404),
)
async def get_graph(ctx: Ctx) -> dict[str, Any]:
    project, _ = await project_access(ctx, Access.READ)
    async with ctx.svc.rooms.hold(project.id) as room:
        return room.graph()


@api.route(
    "PUT",
    "/projects/{project_id}/graph",
    summary="Import a graph: validated, then applied as one live change (editor)",
    tag="graph",
    body_schema=GRAPH_SCHEMA,
    response_schema=GRAPH_SCHEMA,
    errors=(400, 401, 403, 404, 413, 422),
)
async def put_graph(ctx: Ctx) -> dict[str, Any]:
    project, _ = await project_access(ctx, Access.WRITE)
    try:
        validated = graph.validate_graph(ctx.body, limits=graph.GraphLimits())
    except graph.GraphValidationError as exc:
        raise ValidationFailed("the graph is invalid", {"errors": exc.errors}) from exc
    async with ctx.svc.rooms.hold(project.id) as room:
        fut = ctx.svc.rooms.server_change(room, lambda doc: graph.apply_graph(doc, validated))
        if fut is not None:
            await fut
        return room.graph()


def _user_id(raw: str) -> str:
    if not raw or len(raw) > 256:
        raise BadRequest("user ids are 1-256 characters", {"user_id": raw[:300]})
    return raw
