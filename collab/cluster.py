"""Cluster-wide control: role changes, deletions, admin actions and notifications
reach every instance through the broker's ``control`` channel, and each instance acts
on the connections it holds. The publishing instance receives its own message too, so
there is one code path whether the connection is local or not.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from auth.permissions import Access
from collab.errors import CollabError, Forbidden, NotFoundError, Unavailable
from collab.protocol import EV_ERROR, EV_NOTIFICATION
from collab.rooms import ADMIN_READ_ONLY, CONTROL_CHANNEL, RoomManager
from collab.transport import SocketTransport

log = logging.getLogger("collab.cluster")


class Cluster:
    def __init__(self, *, rooms: RoomManager, transport: SocketTransport) -> None:
        self.rooms = rooms
        self.transport = transport
        self.broker = rooms.broker
        rooms.on_control = self.handle

    def _send(self, message: dict[str, Any]) -> None:
        self.broker.publish(CONTROL_CHANNEL, orjson.dumps(message))

    # -- senders -------------------------------------------------------------------------

    async def member_changed(self, project_id: str, user_id: str, role: str | None) -> None:
        self._send({"type": "member", "project": project_id, "user": user_id, "role": role})

    async def project_deleted(self, project_id: str) -> None:
        self._send({"type": "project_deleted", "project": project_id})

    async def kick(self, project_id: str, user_id: str) -> None:
        self._send({"type": "kick", "project": project_id, "user": user_id})

    async def close_room(self, project_id: str) -> None:
        self._send({"type": "close", "project": project_id})

    async def set_read_only(self, project_id: str, read_only: bool) -> None:
        self._send({"type": "read_only", "project": project_id, "read_only": read_only})

    async def push_notifications(self, notifications: list[dict[str, Any]]) -> None:
        self._send({"type": "notify", "items": notifications})

    # -- receiver ------------------------------------------------------------------------

    async def handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        project_id = message.get("project")
        try:
            if kind == "notify":
                for item in message.get("items", []):
                    await self.transport.emit_to_user(item["user_id"], EV_NOTIFICATION, item)
            elif not isinstance(project_id, str):
                log.warning("control message without project: %s", kind)
            elif kind == "member":
                await self._member(project_id, message["user"], message.get("role"))
            elif kind == "project_deleted":
                await self._kick_all(
                    project_id, NotFoundError("the project was deleted", {"project_id": project_id})
                )
                await self.rooms.drop(project_id)
            elif kind == "kick":
                error = Forbidden(
                    "an admin removed you from this room",
                    {"reason": "kicked", "project_id": project_id},
                )
                for sid in self.transport.doc_sids(project_id, message["user"]):
                    await self.transport.kick(sid, self.rooms.rooms[project_id].namespace, error)
            elif kind == "close":
                await self._kick_all(
                    project_id,
                    Unavailable(
                        "an admin closed this room", {"reason": "closed", "project_id": project_id}
                    ),
                )
            elif kind == "read_only":
                await self._read_only(project_id, bool(message.get("read_only")))
            else:
                log.warning("unknown control message %r", kind)
        except Exception:
            log.exception("control message %r failed", kind)

    async def _member(self, project_id: str, user_id: str, role: str | None) -> None:
        room = self.rooms.rooms.get(project_id)
        if room is None:
            return
        for sid in self.transport.doc_sids(project_id, user_id):
            conn = room.conns.get(sid)
            if conn is None:
                continue
            access = Access.for_role(role, conn.principal)
            if access == Access.NONE:
                await self.transport.kick(
                    sid,
                    room.namespace,
                    Forbidden("you were removed from this project", {"project_id": project_id}),
                )
                continue
            if access < conn.access:
                await self.transport.sio.emit(
                    EV_ERROR,
                    Forbidden(
                        f"your role is now {role}", {"project_id": project_id, "role": role}
                    ).payload(),
                    to=sid,
                    namespace=room.namespace,
                )
            conn.access = access
            conn.role = role
            await self.transport.send_room_state(sid)

    async def _kick_all(self, project_id: str, error: CollabError) -> None:
        room = self.rooms.rooms.get(project_id)
        if room is None:
            return
        for sid in list(room.conns):
            await self.transport.kick(sid, room.namespace, error)

    async def _read_only(self, project_id: str, read_only: bool) -> None:
        room = self.rooms.rooms.get(project_id)
        if room is None:
            return
        room.read_only = read_only
        room.read_only_live = True
        for sid, conn in list(room.conns.items()):
            conn.read_only_reason = ADMIN_READ_ONLY if read_only else None
            await self.transport.send_room_state(sid)
