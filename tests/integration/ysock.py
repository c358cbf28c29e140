"""A minimal y-socket.io client in Python (python-socketio ``AsyncClient`` + a pycrdt
``Doc``) for the REST integration tests: it syncs, edits the node graph, and records
what the server tells it (``error`` events, notifications, the disconnect).

Edits are sent as ``sync-update`` *with* an ack callback, so ``await ysock.add_node(...)``
returns once the server has committed the update (the ack-after-commit extension).
"""

# Waits take a `timeout` like the rest of the test helpers (tests/nodeclient.py).

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import socketio
from pycrdt import Doc, Map

from collab import graph

NAMESPACE_PREFIX = "/yjs|"


class YSock:
    """One socket on ``/yjs|<project>`` with its own document."""

    def __init__(self, url: str, project_id: str, token: str) -> None:
        self.url = url
        self.project_id = project_id
        self.token = token
        self.ns = NAMESPACE_PREFIX + project_id
        self.doc: Doc[Any] = Doc()
        self.errors: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()
        self.disconnect_reason: Any = None
        # While paused, incoming sync-updates are held back (to make concurrent edits).
        self.paused = False
        self._held: list[bytes] = []
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("sync-step-1", self._on_step_1, namespace=self.ns)
        self.sio.on("sync-update", self._on_update, namespace=self.ns)
        self.sio.on("awareness-update", self._on_awareness, namespace=self.ns)
        self.sio.on("error", self._on_error, namespace=self.ns)
        self.sio.on("disconnect", self._on_disconnect, namespace=self.ns)

    # -- handlers -------------------------------------------------------------------------

    async def _on_step_1(self, state_vector: bytes) -> bytes:
        # The server's step 1: answer with everything it lacks.
        return bytes(self.doc.get_update(state_vector))

    async def _on_update(self, update: bytes) -> None:
        if self.paused:
            self._held.append(update)
        else:
            self.doc.apply_update(update)

    async def _on_awareness(self, _payload: bytes) -> None:
        return None

    async def _on_error(self, payload: dict[str, Any]) -> None:
        self.errors.append(payload)

    async def _on_disconnect(self, reason: Any = None) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()

    # -- lifecycle --------------------------------------------------------------------------

    async def connect(self, *, sync: bool = True) -> YSock:
        await self.sio.connect(
            self.url,
            namespaces=[self.ns],
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=5,
        )
        if sync:
            update = await self.sio.call(
                "sync-step-1", self.doc.get_state(), namespace=self.ns, timeout=10
            )
            self.doc.apply_update(update)
        return self

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        held, self._held = self._held, []
        for update in held:
            self.doc.apply_update(update)

    # -- edits ----------------------------------------------------------------------------

    def _root(self, name: str) -> Map[Any]:
        root: Map[Any] = self.doc.get(name, type=Map)
        return root

    async def change(self, mutate: Callable[[Doc[Any]], None]) -> Any:
        """Run ``mutate`` in one transaction and send the resulting update; return the
        server's ack (``{"ok": True, "seq": n}`` once it is committed)."""
        before = self.doc.get_state()
        with self.doc.transaction():
            mutate(self.doc)
        update = self.doc.get_update(before)
        return await self.sio.call("sync-update", update, namespace=self.ns, timeout=10)

    async def add_node(
        self,
        node_id: str,
        *,
        type: str,
        x: float,
        y: float,
        params: dict[str, Any] | None = None,
        label: str | None = None,
    ) -> Any:
        fields: dict[str, Any] = {"type": type, "x": float(x), "y": float(y)}
        fields["params"] = Map({k: _js(v) for k, v in (params or {}).items()})
        if label is not None:
            fields["label"] = label

        def mutate(doc: Doc[Any]) -> None:
            self._root("nodes")[node_id] = Map(fields)

        return await self.change(mutate)

    async def set_param(self, node_id: str, key: str, value: Any) -> Any:
        def mutate(doc: Doc[Any]) -> None:
            self._root("nodes")[node_id]["params"][key] = _js(value)

        return await self.change(mutate)

    async def move(self, node_id: str, x: float, y: float) -> Any:
        def mutate(doc: Doc[Any]) -> None:
            node = self._root("nodes")[node_id]
            node["x"] = float(x)
            node["y"] = float(y)

        return await self.change(mutate)

    async def connect_edge(
        self, edge_id: str, source: str, source_socket: str, target: str, target_socket: str
    ) -> Any:
        edge = {
            "source": source,
            "sourceSocket": source_socket,
            "target": target,
            "targetSocket": target_socket,
        }

        def mutate(doc: Doc[Any]) -> None:
            self._root("edges")[edge_id] = Map(edge)

        return await self.change(mutate)

    async def rewire(self, edge_id: str, **fields: str) -> Any:
        def mutate(doc: Doc[Any]) -> None:
            edge = self._root("edges")[edge_id]
            for key, value in fields.items():
                edge[key] = value

        return await self.change(mutate)

    async def delete_node(self, node_id: str) -> Any:
        def mutate(doc: Doc[Any]) -> None:
            del self._root("nodes")[node_id]

        return await self.change(mutate)

    async def delete_edge(self, edge_id: str) -> Any:
        def mutate(doc: Doc[Any]) -> None:
            del self._root("edges")[edge_id]

        return await self.change(mutate)

    # -- reading and waiting --------------------------------------------------------------

    def graph(self) -> dict[str, Any]:
        return dict(graph.materialize(self.doc))

    async def wait_graph(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            current = self.graph()
            if predicate(current):
                return current
            if time.monotonic() > deadline:
                raise TimeoutError(f"graph condition not reached in {timeout} s; last: {current}")
            await asyncio.sleep(0.02)

    async def wait_error(
        self, code: str, *, after: int = 0, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The first ``error`` event with ``code`` among those after index ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            for payload in self.errors[after:]:
                if payload.get("error", {}).get("code") == code:
                    return payload
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {code} error within {timeout} s; got {self.errors}")
            await asyncio.sleep(0.02)

    async def wait_disconnected(self, *, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            await self.disconnected.wait()


def _js(value: Any) -> Any:
    """A JSON value as a JS client writes it (every number a double)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list):
        return [_js(v) for v in value]
    if isinstance(value, dict):
        return {k: _js(v) for k, v in value.items()}
    return value


class MainSock:
    """A socket on the main namespace ``/`` that records ``notification`` events."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token
        self.notifications: list[dict[str, Any]] = []
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("notification", self._on_notification, namespace="/")

    async def _on_notification(self, payload: dict[str, Any]) -> None:
        self.notifications.append(payload)

    async def connect(self) -> MainSock:
        await self.sio.connect(
            self.url,
            namespaces=["/"],
            auth={"token": self.token},
            transports=["websocket"],
            wait_timeout=5,
        )
        return self

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
