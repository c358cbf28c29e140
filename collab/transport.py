"""Socket.IO handlers: the y-socket.io protocol on ``/yjs|<project>``, and the main
namespace ``/`` (notifications, admin feed).

Additive extensions, ignored by the stock client: an ack on ``sync-update`` sent once
the update is durable; an ``error`` event ``{"error": {code, message, details}}``; an
``auth`` event to refresh the token in-band; stamped presence identity.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import engineio
import orjson
import socketio
from aiohttp import WSCloseCode, WSMsgType
from aiohttp.http_websocket import WebSocketError
from aiohttp.web import WebSocketResponse
from engineio.async_drivers import aiohttp as aiohttp_driver

from auth.errors import AuthError
from auth.permissions import Access
from auth.principal import Principal
from auth.tokens import TokenVerifier
from collab.errors import (
    CollabError,
    Forbidden,
    InvalidAwareness,
    InvalidProjectId,
    InvalidUpdate,
    NotFoundError,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
    Unavailable,
    to_collab_error,
)
from collab.metrics import Metrics
from collab.protocol import (
    EMPTY_UPDATE,
    EV_AWARENESS,
    EV_ERROR,
    EV_ROOM_STATE,
    EV_SYNC_STEP_1,
    EV_SYNC_UPDATE,
    NAMESPACE_PREFIX,
    as_bytes,
    project_id_from_namespace,
    single_binary,
)
from collab.ratelimit import TokenBucket
from collab.rooms import Conn, Origin, Room, RoomManager
from collab.settings import Settings
from persistence.base import Store
from persistence.errors import NotFound, StoreError

log = logging.getLogger("collab.transport")

# Set by CollabServer._handle_event: did the client ask for an ack? Handlers run in
# tasks created from that call, which copy the context.
_wants_ack: contextvars.ContextVar[bool] = contextvars.ContextVar("wants_ack", default=False)

# Query parameters engine.io itself sends; anything else came from a document name
# with '?' in it, which the URL parser moved into the query (PROTOCOL-NOTES §1.1).
_ENGINE_QUERY = frozenset({"EIO", "transport", "t", "sid", "j", "b64"})
# Refusals per 10 s after which a socket is disconnected as abusive.
ABUSE_REFUSALS = 50
# A message over the transport cap closes the socket; the stock client reconnects and
# re-sends the same content in its step-2 reply, forever. So for this long the user's
# next connection to that project is refused (connect_error, which the client does not
# retry) with PAYLOAD_TOO_LARGE.
TOO_BIG_PENALTY_S = 60.0
WS_CLOSE_TIMEOUT_S = 2.0
TOO_BIG_KEY = "collab.message_too_big"
# Events without an ack handled in the reader itself (see CollabServer._handle_event).
INLINE_EVENTS = frozenset({EV_SYNC_UPDATE, EV_AWARENESS})


class CollabPacket(socketio.packet.Packet):  # type: ignore[misc]
    """Decode CONNECT packets whose namespace contains ',' instead of failing.

    The JS client writes ``0/yjs|a,b,{auth}``; the stock parser cuts the namespace at the
    first ',' and then cannot decode ``b,{auth}``. We take the namespace up to the ','
    that starts valid JSON, so the connect handler can refuse it with a clear error.
    """

    def decode(self, encoded_packet: str | bytes) -> int:
        try:
            return int(super().decode(encoded_packet))
        except ValueError:
            if not isinstance(encoded_packet, str) or encoded_packet[:1] != "0":
                raise
            body = encoded_packet[1:]
            cut = body.rfind(",{")
            if not body.startswith("/") or cut == -1:
                raise
            self.packet_type = 0
            self.namespace = body[:cut]
            self.data = self.json.loads(body[cut + 1 :])
            self.id = None
            self.attachment_count = 0
            return 0


class CollabServer(socketio.AsyncServer):  # type: ignore[misc]
    open_websockets: set[_UncompressedWebSocket]

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        if namespace and "," in namespace:
            # No answer can reach the stock client: its parser cuts a CONNECT_ERROR for
            # "/yjs|a,b" at the first ',', fails, drops the transport and reconnects,
            # forever. Unanswered, it waits in "connecting" and does no harm. Our ids
            # never contain ',' (PROTOCOL-NOTES §1.1).
            log.warning("ignored a connection to %r: ',' cannot be in a document name", namespace)
            return
        await super()._handle_connect(eio_sid, namespace, data)

    async def _handle_event(self, eio_sid: str, namespace: str, id: Any, data: Any) -> Any:
        if id is None and data and data[0] in INLINE_EVENTS:
            # Handled in the socket's reader, in order, without a task per message
            # (python-socketio makes one for every event): these handlers never wait
            # on anything slow. Events with an ack may wait for a commit: a task each.
            namespace = namespace or "/"
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
            if not self.manager.is_connected(sid, namespace):
                return None
            token = _wants_ack.set(False)
            try:
                await self._handle_event_internal(self, sid, eio_sid, data, namespace, id)
            finally:
                _wants_ack.reset(token)
            return None
        token = _wants_ack.set(id is not None)
        try:
            return await super()._handle_event(eio_sid, namespace, id, data)
        finally:
            _wants_ack.reset(token)


class _UncompressedWebSocket(aiohttp_driver.WebSocket):  # type: ignore[misc]
    """engine.io's aiohttp websocket without permessage-deflate.

    aiohttp accepts the deflate extension every client offers, and then compresses each
    small binary update (profiled: ~25% of server CPU, partly in a thread pool); updates
    are tens of bytes and compress poorly. socket.io's Node server has it off by default
    for the same reason.
    """

    registry: set[_UncompressedWebSocket]  # the open ones (see ``create_sio``)

    async def __call__(self, environ: dict[str, Any]) -> Any:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size,
            compress=False,
            # Bound on waiting for the client's close frame when we close.
            timeout=WS_CLOSE_TIMEOUT_S,
        )
        await self._sock.prepare(request)
        self.environ = environ
        self.registry.add(self)
        try:
            await self.handler(self)
        finally:
            self.registry.discard(self)
        return self._sock

    async def going_away(self) -> None:
        """Close the connection itself (1001): engine.io's own CLOSE packet is ignored
        by engine.io-client, which then keeps the socket open until the ping timeout.
        The client takes this as a transport close and reconnects."""
        await self._sock.close(code=WSCloseCode.GOING_AWAY, message=b"server shutting down")

    async def wait(self) -> Any:
        msg = await self._sock.receive()
        if (
            msg.type == WSMsgType.ERROR
            and isinstance(msg.data, WebSocketError)
            and msg.data.code == WSCloseCode.MESSAGE_TOO_BIG
        ):
            # Over the transport cap: aiohttp closes the socket (1009). Remember it on
            # the connection so that the disconnect handler can stop the reconnect loop.
            self.environ[TOO_BIG_KEY] = True
        if not isinstance(msg.data, bytes | str):
            raise OSError("websocket closed")
        return msg.data


def create_sio(settings: Settings) -> CollabServer:
    sio = CollabServer(
        async_mode="aiohttp",
        namespaces="*",
        cors_allowed_origins=settings.cors_origins or None,
        max_http_buffer_size=settings.transport_max_bytes,
        # 10 s pings (default 25 s): a silently dead client is noticed in ~15 s instead
        # of ~45 s, before the 30 s awareness timeout of the other clients.
        ping_interval=10,
        ping_timeout=5,
        serializer=CollabPacket,
        logger=False,
        engineio_logger=False,
    )
    open_websockets: set[_UncompressedWebSocket] = set()
    driver = type("CollabWebSocket", (_UncompressedWebSocket,), {"registry": open_websockets})
    sio.eio._async = {**sio.eio._async, "websocket": driver}
    # engine.io would start a task per incoming message, socket.io then another per
    # event: engine.io messages are handled in the socket's reader instead (socket.io
    # still runs events in tasks, except the INLINE_EVENTS without an ack).
    sio.eio.async_handlers = False
    sio.open_websockets = open_websockets
    return sio


def binary_event_header(namespace: str, event: str) -> str:
    """The Socket.IO text packet announcing ``event`` with one binary attachment."""
    args = orjson.dumps([event, {"_placeholder": True, "num": 0}]).decode()
    return f"51-{namespace},{args}"


class SioEmitter:
    """Room broadcasts straight into each socket's engine.io send queue.

    ``AsyncServer.emit`` creates two tasks per recipient for a binary message (one per
    engine.io packet) and awaits them all: most of the fan-out cost (profiled). Here the
    packet is encoded once and queued synchronously, in call order, for every recipient.
    It relies on engine.io internals (``eio.sockets``, ``socket.queue``), hence the
    pinned python-engineio/python-socketio ranges in pyproject.toml; the interop tests
    cover it end to end.

    A socket whose queue passes ``MAX_QUEUED_PACKETS`` is closed: a client that cannot
    keep up would otherwise hold an unbounded backlog in server memory. It reconnects
    and re-syncs.
    """

    MAX_QUEUED_PACKETS = 20_000  # ~10 k updates: minutes of a busy room

    def __init__(self, sio: socketio.AsyncServer) -> None:
        self._sio = sio
        self._closing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._headers: dict[tuple[str, str], str] = {}

    def broadcast(self, event: str, data: bytes, *, namespace: str, skip: set[str]) -> int:
        # A binary event is a text header (the same for every message of an event in a
        # namespace, so built once) and the bytes as an attachment: exactly what
        # socketio.packet.Packet encodes (tests/unit/test_transport.py checks it).
        header = self._headers.get((namespace, event))
        if header is None:
            if len(self._headers) > 50_000:
                self._headers.clear()
            header = self._headers[(namespace, event)] = binary_event_header(namespace, event)
        eio_packets = (
            engineio.packet.Packet(engineio.packet.MESSAGE, header),
            engineio.packet.Packet(engineio.packet.MESSAGE, data),
        )
        sockets = self._sio.eio.sockets
        sent = 0
        for sid, eio_sid in self._sio.manager.get_participants(namespace, None):
            if sid in skip:
                continue
            sock = sockets.get(eio_sid)
            if sock is None or sock.closed:
                continue
            if sock.queue.qsize() > self.MAX_QUEUED_PACKETS:
                self._drop_laggard(eio_sid, sock)
                continue
            for p in eio_packets:
                sock.queue.put_nowait(p)
            sent += 1
        return sent

    def _drop_laggard(self, eio_sid: str, sock: Any) -> None:
        if eio_sid in self._closing:
            return
        self._closing.add(eio_sid)
        log.warning("closing a connection that cannot keep up", extra={"eio_sid": eio_sid})

        async def close() -> None:
            try:
                await sock.close(wait=False, abort=True)
            finally:
                self._closing.discard(eio_sid)

        task = asyncio.ensure_future(close())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


MainConnectHook = Callable[[str, Principal], Awaitable[None]]
MainDisconnectHook = Callable[[str, Principal], Awaitable[None]]


class SocketTransport:
    """Registers the handlers on ``sio`` and keeps per-socket state."""

    def __init__(
        self,
        *,
        sio: CollabServer,
        rooms: RoomManager,
        store: Store,
        verifier: TokenVerifier,
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.sio = sio
        self.rooms = rooms
        self.store = store
        self.verifier = verifier
        self.settings = settings
        self.metrics = metrics
        self.conns: dict[str, Conn] = {}  # document sockets
        self.main: dict[str, Principal] = {}  # sockets of the main namespace
        self.user_sockets: dict[str, set[str]] = {}  # user id -> main-namespace sids
        self.too_big: dict[tuple[str, str], float] = {}  # (user, project) -> until
        self.on_main_connect: MainConnectHook | None = None
        self.on_main_disconnect: MainDisconnectHook | None = None
        rooms.resync_hook = self.send_sync_step_1
        sio.on("connect", namespace="*")(self._on_connect)
        sio.on("disconnect", namespace="*")(self._on_disconnect)
        sio.on(EV_SYNC_STEP_1, namespace="*")(self._on_sync_step_1)
        sio.on(EV_SYNC_UPDATE, namespace="*")(self._on_sync_update)
        sio.on(EV_AWARENESS, namespace="*")(self._on_awareness)
        sio.on("auth", namespace="*")(self._on_auth)

    # -- connect / disconnect ------------------------------------------------------------

    async def _on_connect(
        self, namespace: str, sid: str, environ: dict[str, Any], auth: Any = None
    ) -> None:
        try:
            if namespace == "/":
                await self._connect_main(sid, auth)
            else:
                await self._connect_doc(namespace, sid, environ, auth)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            error = to_collab_error(exc)
            if error.code == "INTERNAL":
                log.exception("connect failed")
            raise socketio.exceptions.ConnectionRefusedError(
                error.message, error.payload()
            ) from exc

    def _authenticate(self, auth: Any) -> Principal:
        token = auth.get("token") if isinstance(auth, dict) else None
        try:
            return self.verifier.verify(token)
        except AuthError as exc:
            raise Unauthenticated(str(exc), {"reason": exc.reason}) from exc

    async def _connect_main(self, sid: str, auth: Any) -> None:
        principal = self._authenticate(auth)
        self.main[sid] = principal
        self.user_sockets.setdefault(principal.user_id, set()).add(sid)
        if self.on_main_connect is not None:
            self.rooms.spawn(self.on_main_connect(sid, principal), f"main-connect:{sid}")

    async def _connect_doc(
        self, namespace: str, sid: str, environ: dict[str, Any], auth: Any
    ) -> None:
        project_id = project_id_from_namespace(namespace)
        extra = {k for k, _ in parse_qsl(environ.get("QUERY_STRING", ""))} - _ENGINE_QUERY
        if extra:
            raise InvalidProjectId(
                "the document name contains '?' (project ids never do)",
                {"project_id": project_id, "query": sorted(extra)[:10]},
            )
        principal = self._authenticate(auth)
        until = self.too_big.get((principal.user_id, project_id))
        if until is not None:
            if until > time.monotonic():
                raise PayloadTooLarge(
                    "your last change was larger than the server accepts and was not "
                    "saved; reload the document",
                    {"max_bytes": self.settings.transport_max_bytes},
                )
            del self.too_big[(principal.user_id, project_id)]
        try:
            role = await self.store.get_role(project_id, principal.user_id)
        except NotFound as exc:
            raise NotFoundError("no such project", {"project_id": project_id}) from exc
        except StoreError as exc:
            raise Unavailable("the store is unavailable, retry later") from exc
        access = Access.for_role(role, principal)
        if access == Access.NONE:
            raise Forbidden("you are not a member of this project", {"project_id": project_id})
        user_conns = sum(1 for c in self.conns.values() if c.principal.user_id == principal.user_id)
        if user_conns >= self.settings.max_connections_per_user:
            raise Forbidden(
                "too many connections for this user",
                {"max": self.settings.max_connections_per_user},
            )
        conn = Conn(
            sid=sid,
            project_id=project_id,
            principal=principal,
            access=access,
            role=role,
            # Averaged over 10 s so that bursts (a paste, a drag) pass.
            messages=TokenBucket(
                self.settings.messages_per_second, self.settings.messages_per_second * 10
            ),
            refusals=TokenBucket(ABUSE_REFUSALS / 10, ABUSE_REFUSALS),
        )
        room = await self.rooms.join(conn)
        self.conns[sid] = conn
        # After the CONNECT packet is out (this handler must return first), send our
        # state vector with an ack and the room's presence (PROTOCOL-NOTES §1.3).
        self.rooms.spawn(self._greet(room, sid), f"greet:{sid}")

    async def _greet(self, room: Room, sid: str) -> None:
        await self.send_room_state(sid)
        await self.send_sync_step_1(room, sid)
        await self.sio.emit(
            EV_AWARENESS, room.presence.encode_all(), to=sid, namespace=room.namespace
        )

    async def send_room_state(self, sid: str) -> None:
        """Tell a client what it may do (our additive ``room-state`` event)."""
        conn = self.conns.get(sid)
        if conn is None:
            return
        state = {
            "read_only": conn.access < Access.WRITE or conn.read_only_reason is not None,
            "reason": conn.read_only_reason
            or ("viewers cannot change the document" if conn.access < Access.WRITE else None),
            "role": conn.role or ("admin" if conn.principal.is_admin else "service"),
            "access": conn.access.name.lower(),
        }
        await self.sio.emit(EV_ROOM_STATE, state, to=sid, namespace=conn.namespace)

    async def send_sync_step_1(self, room: Room, sid: str) -> None:
        """Ask the client for everything our doc lacks (its ack is applied as an update)."""

        async def on_reply(*args: Any) -> None:
            await self._on_step_2(room, sid, args[0] if args else None)

        await self.sio.emit(
            EV_SYNC_STEP_1,
            room.doc.get_state(),
            to=sid,
            namespace=room.namespace,
            callback=on_reply,
        )

    async def _on_disconnect(self, namespace: str, sid: str, reason: Any = None) -> None:
        log.debug("disconnect", extra={"sid": sid, "namespace": namespace, "reason": str(reason)})
        if namespace == "/":
            principal = self.main.pop(sid, None)
            if principal is not None:
                sids = self.user_sockets.get(principal.user_id)
                if sids is not None:
                    sids.discard(sid)
                    if not sids:
                        del self.user_sockets[principal.user_id]
                if self.on_main_disconnect is not None:
                    await self.on_main_disconnect(sid, principal)
            return
        conn = self.conns.pop(sid, None)
        if conn is not None:
            environ = self.sio.get_environ(sid, namespace) or {}
            if environ.get(TOO_BIG_KEY):
                self.too_big[(conn.principal.user_id, conn.project_id)] = (
                    time.monotonic() + TOO_BIG_PENALTY_S
                )
            await self.rooms.leave(sid, conn.project_id)

    # -- document events -------------------------------------------------------------------

    def _conn(self, namespace: str, sid: str) -> Conn:
        conn = self.conns.get(sid)
        if conn is None or conn.namespace != namespace:
            raise NotFoundError("not connected to a document")
        return conn

    async def _on_sync_step_1(self, namespace: str, sid: str, *args: Any) -> Any:
        try:
            conn = self._conn(namespace, sid)
            room = await self.rooms.get(conn.project_id)
            sv = single_binary(args, "sync-step-1")
            try:
                return room.doc.get_update(sv)
            except (ValueError, RuntimeError) as exc:
                raise InvalidUpdate("malformed state vector", {"reason": str(exc)[:200]}) from exc
        except CollabError as exc:
            await self._refuse(namespace, sid, exc)
            # The stock client applies whatever the ack carries: the full state is
            # always a valid (if redundant) answer.
            conn_ = self.conns.get(sid)
            room_ = self.rooms.rooms.get(conn_.project_id) if conn_ is not None else None
            return room_.doc.get_update() if room_ is not None else EMPTY_UPDATE

    async def _on_sync_update(self, namespace: str, sid: str, *args: Any) -> Any:
        wants_ack = _wants_ack.get()
        try:
            conn = self._conn(namespace, sid)
            update = self._check_update(conn, single_binary(args, "sync-update"), "sync-update")
            if conn.access < Access.WRITE or conn.read_only_reason:
                raise Forbidden(
                    conn.read_only_reason or "viewers cannot change the document",
                    {"role": conn.access.name.lower()},
                )
            room = await self.rooms.get(conn.project_id)
            fut = self.rooms.accept(room, update, Origin.CLIENT, sender=sid)
            if not wants_ack:
                return None
            if fut is not None:
                try:
                    seq = await fut
                except asyncio.CancelledError as exc:
                    raise Unavailable("the server is shutting down; resend later") from exc
                return {"ok": True, "seq": seq}
            # A duplicate: its first copy may still be on its way to the store.
            await self.rooms.committer.flushed(conn.project_id)
            return {"ok": True, "seq": None}
        except CollabError as exc:
            await self._refuse(namespace, sid, exc)
            return exc.payload() if wants_ack else None

    async def _on_step_2(self, room: Room, sid: str, payload: Any) -> None:
        """The client's answer to our sync-step-1: everything we lacked."""
        conn = self.conns.get(sid)
        if conn is None:
            return
        try:
            update = self._check_update(conn, payload, "sync-step-1 reply")
            if update == EMPTY_UPDATE:
                return
            if conn.access < Access.WRITE or conn.read_only_reason:
                if room.would_change(update):
                    raise Forbidden(
                        conn.read_only_reason
                        or "viewers cannot change the document; local changes were not applied",
                        {"role": conn.access.name.lower()},
                    )
                return
            self.rooms.accept(room, update, Origin.CLIENT, sender=sid)
        except CollabError as exc:
            await self._refuse(conn.namespace, sid, exc)

    def _check_update(self, conn: Conn, payload: Any, what: str) -> bytes:
        update = as_bytes(payload, what)
        if len(update) > self.settings.max_update_bytes:
            raise PayloadTooLarge(
                f"{what} is larger than the server accepts",
                {"bytes": len(update), "max_bytes": self.settings.max_update_bytes},
            )
        if not conn.messages.take():
            raise RateLimited(
                "too many messages; slow down",
                {"max_per_second": self.settings.messages_per_second},
            )
        # Malformed bytes are refused by the room's causal gate, which decodes every
        # update before yrs sees it.
        return update

    async def _on_awareness(self, namespace: str, sid: str, *args: Any) -> None:
        try:
            conn = self._conn(namespace, sid)
            data = single_binary(args, "awareness-update", InvalidAwareness)
            if len(data) > self.settings.max_update_bytes:
                raise PayloadTooLarge("awareness update too large")
            self.metrics.presence_messages.inc()
            if not conn.messages.take():
                return  # presence is ephemeral: drop silently, the next one repairs it
            room = await self.rooms.get(conn.project_id)
            if room.presence.apply_local(sid, conn.principal, data):
                self.rooms.presence_changed(room)
        except CollabError as exc:
            await self._refuse(namespace, sid, exc)

    async def _on_auth(self, namespace: str, sid: str, *args: Any) -> Any:
        """In-band token refresh: ``emit('auth', {token}, ack)``; same user only."""
        try:
            payload = args[0] if args else None
            principal = self._authenticate(payload)
            current = (
                self.main.get(sid) if namespace == "/" else self._conn(namespace, sid).principal
            )
            if current is None or current.user_id != principal.user_id:
                raise Forbidden("the new token is for another user")
            if namespace == "/":
                self.main[sid] = principal
            else:
                self.conns[sid].principal = principal
            return {"ok": True, "expires_at": principal.expires_at}
        except CollabError as exc:
            await self._refuse(namespace, sid, exc)
            return exc.payload()

    async def _refuse(self, namespace: str, sid: str, exc: CollabError) -> None:
        self.metrics.updates_refused.labels(exc.code).inc()
        log.info("refused: %s", exc.message, extra={"sid": sid, "code": exc.code})
        await self.sio.emit(EV_ERROR, exc.payload(), to=sid, namespace=namespace)
        conn = self.conns.get(sid)
        if conn is None:
            return
        if exc.code != "FORBIDDEN" and not conn.refusals.take():
            await self.kick(sid, namespace, RateLimited("too many refused messages; disconnected"))
            return
        if isinstance(exc, RateLimited) and not conn.resync_scheduled:
            # The stock client never sends a refused update again by itself, and its
            # later edits depend on it: ask for everything we lack once the bucket has
            # refilled (one message carries it all).
            conn.resync_scheduled = True
            delay = max(1.0, 2.0 / self.settings.messages_per_second)
            self.rooms.spawn(self._resync_later(sid, delay), f"resync:{sid}")

    async def _resync_later(self, sid: str, delay: float) -> None:
        await asyncio.sleep(delay)
        conn = self.conns.get(sid)
        if conn is None:
            return
        conn.resync_scheduled = False
        room = self.rooms.rooms.get(conn.project_id)
        if room is not None:
            await self.send_sync_step_1(room, sid)

    # -- server-initiated ------------------------------------------------------------------

    async def kick(self, sid: str, namespace: str, error: CollabError) -> None:
        """Tell the client why, then disconnect it (it will not auto-reconnect)."""
        await self.sio.emit(EV_ERROR, error.payload(), to=sid, namespace=namespace)
        await self.sio.disconnect(sid, namespace=namespace)

    def doc_sids(self, project_id: str, user_id: str | None = None) -> list[str]:
        room = self.rooms.rooms.get(project_id)
        if room is None:
            return []
        return [
            sid
            for sid, c in room.conns.items()
            if user_id is None or c.principal.user_id == user_id
        ]

    async def expire_tokens(self) -> None:
        """Disconnect sockets whose token expired and was not refreshed in-band."""
        now = time.time() - self.settings.jwt_leeway_s
        error = Unauthenticated(
            "your token expired; reconnect with a new one", {"reason": "expired"}
        )
        for sid, conn in list(self.conns.items()):
            if conn.principal.expires_at is not None and conn.principal.expires_at < now:
                await self.kick(sid, conn.namespace, error)
        for sid, principal in list(self.main.items()):
            if principal.expires_at is not None and principal.expires_at < now:
                await self.kick(sid, "/", error)

    async def emit_to_user(self, user_id: str, event: str, data: Any) -> int:
        sids = list(self.user_sockets.get(user_id, ()))
        for sid in sids:
            await self.sio.emit(event, data, to=sid, namespace="/")
        return len(sids)


__all__ = ["NAMESPACE_PREFIX", "CollabServer", "SioEmitter", "SocketTransport", "create_sio"]
