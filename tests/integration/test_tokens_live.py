"""Tokens on live sockets: expiry disconnects, in-band refresh keeps the socket."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import socketio

from tests.server import InProcessServer, Rest, base_settings, token


class Sock:
    def __init__(self, url: str, pid: str, tok: str) -> None:
        self.ns = f"/yjs|{pid}"
        self.url = url
        self.tok = tok
        self.errors: list[dict[str, Any]] = []
        self.gone = asyncio.Event()
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("sync-step-1", lambda _sv: b"\x00\x00", namespace=self.ns)
        self.sio.on("error", self.errors.append, namespace=self.ns)
        self.sio.on("disconnect", lambda *_a: self.gone.set(), namespace=self.ns)

    async def connect(self) -> None:
        await self.sio.connect(
            self.url, namespaces=[self.ns], auth={"token": self.tok}, transports=["websocket"]
        )


async def test_expired_tokens_are_disconnected_unless_refreshed(tmp_path: Path) -> None:
    async with InProcessServer(base_settings(tmp_path, jwt_leeway_s=0)) as srv:
        rest = Rest(srv.url)
        pid = await rest.project(token("alice"))
        await rest.close()
        stale = Sock(srv.url, pid, token("alice", ttl=2))
        fresh = Sock(srv.url, pid, token("alice", ttl=2))
        await stale.connect()
        await fresh.connect()

        # Refreshing with another user's token is refused and changes nothing.
        reply = await fresh.sio.call(
            "auth", {"token": token("mallory")}, namespace=fresh.ns, timeout=5
        )
        assert reply["error"]["code"] == "FORBIDDEN"
        reply = await fresh.sio.call(
            "auth", {"token": token("alice", ttl=3600)}, namespace=fresh.ns, timeout=5
        )
        assert reply["ok"] is True

        # The token sweep runs every 5 s: the stale socket is told, then dropped.
        await asyncio.wait_for(stale.gone.wait(), timeout=15)
        assert stale.errors[-1]["error"]["code"] == "UNAUTHENTICATED"
        assert stale.errors[-1]["error"]["details"]["reason"] == "expired"
        assert fresh.sio.connected
        assert not fresh.gone.is_set()
        await fresh.sio.disconnect()
