"""A y-socket.io client in Python, for protocol-level tests.

python-socketio's ``AsyncClient`` on ``/yjs|<project>`` plus a pycrdt ``Doc``. Unlike the
stock npm client it can send anything (wrong payload types, garbage bytes, several
arguments, someone else's awareness client id), and it records every event the server
sends, so that tests wait on them with timeouts::

    async with PyClient(server.url, pid, token("alice")) as a:
        update = await a.edit(lambda doc: doc.get("meta", type=Map).__setitem__("k", "v"))
        error = await a.next_error()

The client answers the server's ``sync-step-1`` like the stock client (with the diff of
its doc against the server's state vector) unless ``step1_reply`` says otherwise, and
applies every ``sync-update`` it receives to its doc.
"""

# Every wait takes its own `timeout`.

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import socketio
from pycrdt import Doc, Map

from collab.protocol import NAMESPACE_PREFIX

DEFAULT_TIMEOUT = 10.0

ErrorPayload = dict[str, Any]
Step1Reply = Callable[[bytes], Any]


class PyClient:
    """Arguments:
    url: the server's base URL.
    project_id: the document; the namespace is ``/yjs|<project_id>`` (``namespace``
        overrides it, for ids the server must refuse).
    token: sent as ``auth: {token}``.
    client_id: the Yjs client id of the local doc (random by default).
    step1_reply: computes the ack to the server's ``sync-step-1`` from its state
        vector; default: ``doc.get_update(sv)``, as the stock client does.
    """

    def __init__(
        self,
        url: str,
        project_id: str,
        token: str | None,
        *,
        client_id: int | None = None,
        step1_reply: Step1Reply | None = None,
        namespace: str | None = None,
    ) -> None:
        self.url = url
        self.project_id = project_id
        self.token = token
        self.namespace = namespace or NAMESPACE_PREFIX + project_id
        self.doc: Doc[Any] = Doc(client_id=client_id) if client_id is not None else Doc()
        self.step1_reply = step1_reply
        self.sio: Any = socketio.AsyncClient(reconnection=False)
        self._errors: asyncio.Queue[ErrorPayload] = asyncio.Queue()
        self.errors: list[ErrorPayload] = []  # every `error` event, in order
        self.updates: list[bytes] = []  # every `sync-update` received
        self.awareness: list[bytes] = []  # every `awareness-update` received
        self.server_step1: list[bytes] = []  # every state vector the server sent
        self.apply_failures: list[str] = []  # received updates our doc refused
        self.connect_error: Any = None
        self.disconnected = asyncio.Event()
        self._emit_lock = asyncio.Lock()  # binary emits must not interleave
        self._sid: str | None = None
        ns = self.namespace
        self.sio.on("sync-step-1", self._on_step1, namespace=ns)
        self.sio.on("sync-update", self._on_update, namespace=ns)
        self.sio.on("awareness-update", self._on_awareness, namespace=ns)
        self.sio.on("error", self._on_error, namespace=ns)
        self.sio.on("disconnect", self._on_disconnect, namespace=ns)
        self.sio.on("connect_error", self._on_connect_error, namespace=ns)

    # -- lifecycle -----------------------------------------------------------------------

    async def connect(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Connect (raises ``socketio.exceptions.ConnectionError`` when refused; the
        refusal's data is then in ``connect_error``)."""
        await self.sio.connect(
            self.url,
            auth={"token": self.token} if self.token is not None else None,
            namespaces=[self.namespace],
            transports=["websocket"],
            wait_timeout=timeout,
        )
        self._sid = self.sio.get_sid(self.namespace)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.sio.disconnect()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def sid(self) -> str | None:
        """The sid given at connect (stays the same while the connection lasts)."""
        return self._sid

    @property
    def connected(self) -> bool:
        return bool(self.sio.connected) and self.namespace in self.sio.namespaces

    # -- handlers ------------------------------------------------------------------------

    def _on_step1(self, sv: Any) -> Any:
        sv = bytes(sv)
        self.server_step1.append(sv)
        if self.step1_reply is not None:
            return self.step1_reply(sv)
        return self.doc.get_update(sv)

    def _on_update(self, data: Any) -> None:
        update = bytes(data)
        self.updates.append(update)
        self.apply(update)

    def apply(self, update: bytes) -> None:
        """Apply to the local doc, recording (not raising) a refusal or a pycrdt panic."""
        try:
            self.doc.apply_update(update)
        except Exception as exc:
            self.apply_failures.append(f"{type(exc).__name__}: {exc}")
        except BaseException as exc:  # pyo3 PanicException derives from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit | asyncio.CancelledError):
                raise
            self.apply_failures.append(f"{type(exc).__name__}: {exc}")

    def _on_awareness(self, data: Any) -> None:
        self.awareness.append(bytes(data))

    def _on_error(self, payload: Any) -> None:
        self.errors.append(payload)
        self._errors.put_nowait(payload)

    def _on_disconnect(self, *args: Any) -> None:
        self.disconnected.set()

    def _on_connect_error(self, data: Any = None) -> None:
        self.connect_error = data

    # -- sending -------------------------------------------------------------------------

    @staticmethod
    def _data(args: tuple[Any, ...]) -> Any:
        # python-socketio: None = no argument, a tuple = several, anything else = one.
        if not args:
            return None
        return args[0] if len(args) == 1 else tuple(args)

    async def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` with exactly these arguments (none, one or several)."""
        async with self._emit_lock:
            await self.sio.emit(event, self._data(args), namespace=self.namespace)

    async def call(self, event: str, *args: Any, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Send ``event`` asking for an ack; return the ack's argument."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(*ack: Any) -> None:
            if not fut.done():
                fut.set_result(ack[0] if len(ack) == 1 else (ack or None))

        async with self._emit_lock:
            await self.sio.emit(event, self._data(args), namespace=self.namespace, callback=on_ack)
        async with asyncio.timeout(timeout):
            return await fut

    async def send_update(self, update: bytes, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """``sync-update`` with an ack (our additive extension): ``{"ok": True, "seq"}``
        once stored, or the error payload when refused."""
        return await self.call("sync-update", update, timeout=timeout)

    def change(self, mutate: Callable[[Doc[Any]], None]) -> bytes:
        """Run ``mutate`` on the local doc in one transaction; return its update."""
        captured: list[bytes] = []
        sub = self.doc.observe(lambda event: captured.append(event.update))
        try:
            with self.doc.transaction():
                mutate(self.doc)
        finally:
            self.doc.unobserve(sub)
        assert len(captured) == 1, captured
        return captured[0]

    async def edit(self, mutate: Callable[[Doc[Any]], None]) -> bytes:
        """``change`` and send it; assert the server stored it. Returns the update."""
        update = self.change(mutate)
        ack = await self.send_update(update)
        assert isinstance(ack, dict) and ack.get("ok") is True, ack
        return update

    async def set_meta(self, key: str, value: Any) -> bytes:
        def mutate(doc: Doc[Any]) -> None:
            doc.get("meta", type=Map)[key] = value

        return await self.edit(mutate)

    def meta(self) -> dict[str, Any]:
        value = self.doc.get("meta", type=Map).to_py()
        return value if isinstance(value, dict) else {}

    async def sync(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Our ``sync-step-1``: apply what the server has that we lack."""
        diff = await self.call("sync-step-1", self.doc.get_state(), timeout=timeout)
        self.apply(bytes(diff))

    async def server_update(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """The server's whole document (its answer to an empty state vector)."""
        return bytes(await self.call("sync-step-1", b"\x00", timeout=timeout))

    # -- waiting -------------------------------------------------------------------------

    async def next_error(self, timeout: float = DEFAULT_TIMEOUT) -> ErrorPayload:
        """The next ``error`` event not yet taken."""
        async with asyncio.timeout(timeout):
            return await self._errors.get()

    def pending_errors(self) -> list[ErrorPayload]:
        """Take every ``error`` event received and not yet taken."""
        out = []
        while not self._errors.empty():
            out.append(self._errors.get_nowait())
        return out

    async def wait(
        self, predicate: Callable[[], bool], *, timeout: float = DEFAULT_TIMEOUT, what: str = ""
    ) -> None:
        """Until ``predicate()`` holds (checked every 10 ms against real state)."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what or 'condition'} not reached within {timeout} s")
            await asyncio.sleep(0.01)


def error_code(payload: Any) -> str | None:
    """``payload["error"]["code"]`` after checking the ``{"error": {code, message,
    details}}`` shape."""
    assert isinstance(payload, dict) and set(payload) == {"error"}, payload
    error = payload["error"]
    assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, payload
    assert isinstance(error["code"], str) and isinstance(error["message"], str), payload
    assert error["message"], payload
    assert isinstance(error["details"], dict), payload
    code: str = error["code"]
    return code
