"""Notifications: send (admins and services), list, mark read."""

from __future__ import annotations

from collab.api.base import Api, Ctx
from collab.api.models import (
    NotificationCreate,
    NotificationList,
    NotificationOut,
    NotificationPage,
    NotificationQuery,
    ReadAllOut,
)
from collab.errors import Forbidden

api = Api()


@api.route(
    "POST",
    "/notifications",
    summary="Send a notification to users (admins and services)",
    tag="notifications",
    body=NotificationCreate,
    response=NotificationList,
    status=201,
    errors=(400, 401, 403, 422),
)
async def send_notifications(ctx: Ctx) -> NotificationList:
    if not ctx.user.is_privileged:
        raise Forbidden("only admins and services can send notifications")
    body: NotificationCreate = ctx.body
    items = await ctx.svc.notifier.notify(body.user_ids, body.kind, body.payload)
    return NotificationList(items=[NotificationOut.of(n) for n in items])


@api.route(
    "GET",
    "/notifications",
    summary="My notifications, newest first (paged)",
    tag="notifications",
    query=NotificationQuery,
    response=NotificationPage,
    errors=(400, 401),
)
async def list_notifications(ctx: Ctx) -> NotificationPage:
    q: NotificationQuery = ctx.query
    page = await ctx.svc.store.list_notifications(
        ctx.user.user_id, unread_only=q.unread, limit=q.limit, cursor=q.cursor
    )
    return NotificationPage(
        items=[NotificationOut.of(n) for n in page.items], next_cursor=page.next_cursor
    )


@api.route(
    "POST",
    "/notifications/read-all",
    summary="Mark all my notifications read",
    tag="notifications",
    response=ReadAllOut,
    errors=(401,),
)
async def read_all(ctx: Ctx) -> ReadAllOut:
    return ReadAllOut(marked=await ctx.svc.store.mark_all_read(ctx.user.user_id))


@api.route(
    "POST",
    "/notifications/{notification_id}/read",
    summary="Mark one notification read",
    tag="notifications",
    response=NotificationOut,
    errors=(400, 401, 404),
)
async def read_one(ctx: Ctx) -> NotificationOut:
    n = await ctx.svc.store.mark_notification_read(ctx.user.user_id, ctx.path("notification_id"))
    return NotificationOut.of(n)
