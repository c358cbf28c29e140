"""Notifications: stored first, then pushed live to every socket of the user on any
instance (``notification`` event on ``/``); unread ones are delivered on connect."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from auth.principal import Principal
from collab.cluster import Cluster
from collab.protocol import EV_NOTIFICATION
from collab.transport import SocketTransport
from persistence.base import Notification, Store
from persistence.errors import StoreError

log = logging.getLogger("collab.notifications")

# Unread notifications sent to a socket when it connects; older ones stay in the
# REST listing (GET /api/v1/notifications?unread=true).
UNREAD_ON_CONNECT = 100


def notification_json(n: Notification) -> dict[str, Any]:
    return {
        "id": n.id,
        "user_id": n.user_id,
        "kind": n.kind,
        "payload": n.payload,
        "created_at": n.created_at.isoformat(),
        "read_at": n.read_at.isoformat() if n.read_at else None,
    }


class Notifier:
    def __init__(self, *, store: Store, cluster: Cluster, transport: SocketTransport) -> None:
        self.store = store
        self.cluster = cluster
        self.transport = transport
        transport.on_main_connect = self.deliver_unread

    async def notify(
        self, user_ids: Sequence[str], kind: str, payload: dict[str, Any]
    ) -> list[Notification]:
        """Store one notification per user and push it live. Never raises for the
        push: the stored copy is delivered on the user's next connect anyway."""
        users = list(dict.fromkeys(u for u in user_ids if u))
        if not users:
            return []
        items = await self.store.add_notifications(users, kind, payload)
        await self.cluster.push_notifications([notification_json(n) for n in items])
        return items

    async def deliver_unread(self, sid: str, principal: Principal) -> None:
        try:
            page = await self.store.list_notifications(
                principal.user_id, unread_only=True, limit=UNREAD_ON_CONNECT
            )
        except StoreError:
            log.warning("could not load unread notifications for %s", principal.user_id)
            return
        for n in reversed(page.items):  # oldest first, like live delivery
            await self.transport.sio.emit(
                EV_NOTIFICATION, notification_json(n), to=sid, namespace="/"
            )
