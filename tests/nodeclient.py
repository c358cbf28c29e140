"""Drive real, unmodified npm clients (yjs + y-socket.io ``SocketIOProvider``) from tests.

One ``node tests/js/yclient.mjs`` process hosts any number of named simulated clients,
each its own ``Y.Doc`` + ``SocketIOProvider``; this module talks to it over stdin/stdout
JSON lines::

    async with NodeClients() as nc:
        await nc.open("a", url=url, room="r1", token=token)
        await nc.wait_synced("a")
        node_id = (await nc.edit("a", "add-node", type="osc", x=0, y=0, params={}))["nodeId"]
        await nc.edit("a", "move", nodeId=node_id, x=10, y=20)
        doc = await nc.json("a")

Every call has a timeout (``default_timeout``, 10 s) and raises :class:`NodeClientError`
(with the tail of node's stderr) on a timeout, on an ``ok: false`` reply, or when the
node process dies. Unsolicited events (``status``, ``synced``, ``connection-error``,
``connection-close``, ``server-error``, ``notification``, ``reconnect-attempt``, and
``uncaught`` for exceptions inside node) are recorded; see :meth:`NodeClients.events`,
:meth:`NodeClients.mark` and :meth:`NodeClients.wait_event`.
"""

# Every call takes its own `timeout`: node-side waits get it too, so that a timeout
# reports what node saw (doc JSON, awareness states) instead of a bare CancelledError.

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import enum
import json as jsonlib
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
YCLIENT_JS: Final = REPO_ROOT / "tests" / "js" / "yclient.mjs"
REFSERVER_JS: Final = REPO_ROOT / "tests" / "js" / "refserver.mjs"
NODE_MODULES: Final = REPO_ROOT / "node_modules"
#: packages the Node scripts import; missing ones mean `npm ci` was not run
REQUIRED_NPM_PACKAGES: Final = ("yjs", "y-socket.io", "socket.io-client", "y-protocols", "lib0")

DEFAULT_TIMEOUT: Final = 10.0
#: extra time Python waits beyond a node-side wait's own timeout, so that node's more
#: informative timeout message wins the race
_NODE_WAIT_MARGIN: Final = 5.0
_STREAM_LIMIT: Final = 256 * 1024 * 1024  # one reply line can hold a whole doc state

log = logging.getLogger("tests.nodeclient")


class NodeClientError(RuntimeError):
    """A command failed, timed out, or the node process died."""


class NodeClientTimeout(NodeClientError, TimeoutError):
    """A command or wait did not finish in time."""


class NodeSetupError(NodeClientError):
    """Node or the npm packages are not installed."""


class Unset(enum.Enum):
    UNSET = 0


UNSET: Final = Unset.UNSET

AwarenessPredicateKey = Literal["count", "has-client-id", "lacks-client-id", "has-state"]


def node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise NodeSetupError("`node` is not on PATH; the interop tests need Node 20+")
    return node


def check_node_modules() -> None:
    """Raise :class:`NodeSetupError` unless the pinned npm packages are installed."""
    missing = [
        p for p in REQUIRED_NPM_PACKAGES if not (NODE_MODULES / p / "package.json").is_file()
    ]
    if missing:
        raise NodeSetupError(
            f"npm packages missing from {NODE_MODULES}: {', '.join(missing)}. "
            f"Run `npm ci` in {REPO_ROOT} (installs the versions pinned in package-lock.json)."
        )


@dataclass(frozen=True)
class ClientEvent:
    """One unsolicited event from node. ``seq`` increases by one per event (from 1)."""

    seq: int
    kind: str
    client: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class DocState:
    state_vector: bytes
    update: bytes


@dataclass
class _Waiter:
    check: Callable[[ClientEvent], bool]
    future: asyncio.Future[ClientEvent]


@dataclass
class _Stderr:
    lines: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=2000))

    def tail(self, n: int = 40) -> str:
        return "\n".join(list(self.lines)[-n:])


def _decode_wire(value: Any) -> Any:
    """Undo yclient's ``{"$bytes": b64}`` encoding of binary values."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        return {k: _decode_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode_wire(v) for v in value]
    return value


class NodeClients:
    """A ``node tests/js/yclient.mjs`` process hosting named y-socket.io clients."""

    def __init__(
        self,
        *,
        default_timeout: float = DEFAULT_TIMEOUT,
        fail_on_uncaught: bool = True,
        env: Mapping[str, str] | None = None,
        name: str = "yclient",
    ) -> None:
        """``fail_on_uncaught``: leaving the ``async with`` block raises if node reported an
        uncaught exception (e.g. a client library choking on what the server sent)."""
        self.default_timeout = default_timeout
        self.fail_on_uncaught = fail_on_uncaught
        self.name = name
        self._env = dict(env) if env is not None else None
        self._proc: asyncio.subprocess.Process | None = None
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: list[ClientEvent] = []
        self._waiters: list[_Waiter] = []
        self._stderr = _Stderr()
        self._tasks: list[asyncio.Task[None]] = []
        self._write_lock = asyncio.Lock()
        self._dead: str | None = None  # why the process is gone, once it is
        self._closing = False

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
        if exc_type is None and self.fail_on_uncaught:
            uncaught = self.events(kind="uncaught")
            if uncaught:
                detail = "\n---\n".join(str(e.data.get("error")) for e in uncaught[:5])
                raise NodeClientError(
                    f"{len(uncaught)} uncaught exception(s) in the node clients:\n{detail}"
                )

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    async def start(self) -> None:
        if self._proc is not None:
            raise NodeClientError("already started")
        node = node_executable()
        check_node_modules()
        self._proc = await asyncio.create_subprocess_exec(
            node,
            str(YCLIENT_JS),
            cwd=str(REPO_ROOT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env if self._env is not None else os.environ.copy(),
            limit=_STREAM_LIMIT,
        )
        log.debug("%s: started node pid %s", self.name, self._proc.pid)
        self._tasks = [
            asyncio.create_task(self._read_stdout(), name=f"{self.name}-stdout"),
            asyncio.create_task(self._read_stderr(), name=f"{self.name}-stderr"),
        ]
        try:
            await self.wait_event(None, "ready", timeout=self.default_timeout)
        except BaseException:
            await self.close()
            raise

    async def close(self, timeout: float = 5.0) -> None:
        """Send ``exit``, wait for node to end, kill it by PID if it does not. Idempotent."""
        proc = self._proc
        if proc is None or self._closing:
            return
        self._closing = True
        try:
            if proc.returncode is None and self._dead is None:
                with contextlib.suppress(NodeClientError, OSError):
                    await self.request("exit", timeout=timeout)
            try:
                await asyncio.wait_for(proc.wait(), timeout)
            except TimeoutError:
                log.warning("%s: node pid %s did not exit; killing it", self.name, proc.pid)
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # SIGKILL to this PID only
                await proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()
                with contextlib.suppress(OSError):
                    await proc.stdin.wait_closed()
            # the readers end at EOF, which follows the process exit
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=2.0)
            for task in self._tasks:
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self._mark_dead(f"node exited with code {proc.returncode}")

    # ------------------------------------------------------------------ plumbing
    async def _read_stdout(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            while True:
                line = await stdout.readline()
                if not line:
                    break
                self._dispatch(line)
        except Exception as err:  # a broken line must not leave callers hanging
            log.exception("%s: stdout reader failed", self.name)
            self._mark_dead(f"stdout reader failed: {err!r}")
            raise
        finally:
            rc = self._proc.returncode
            self._mark_dead(f"node closed its stdout (exit code {rc})")

    async def _read_stderr(self) -> None:
        assert self._proc is not None
        assert self._proc.stderr is not None
        stderr = self._proc.stderr
        while True:
            line = await stderr.readline()
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\n")
            self._stderr.lines.append(text)
            log.debug("%s stderr: %s", self.name, text)

    def _dispatch(self, raw: bytes) -> None:
        try:
            msg = jsonlib.loads(raw)
        except ValueError:
            log.warning("%s: non-JSON line on node stdout: %r", self.name, raw[:500])
            return
        if not isinstance(msg, dict):
            log.warning("%s: unexpected line on node stdout: %r", self.name, raw[:500])
            return
        if "event" in msg:
            kind = str(msg.pop("event"))
            client = msg.pop("client", None)
            event = ClientEvent(
                seq=len(self._events) + 1,
                kind=kind,
                client=client if isinstance(client, str) else None,
                data=msg,
            )
            self._events.append(event)
            if kind == "uncaught":
                log.error("%s: uncaught exception in node: %s", self.name, msg.get("error"))
            for waiter in list(self._waiters):
                if waiter.future.done():
                    continue
                try:
                    matched = waiter.check(event)
                except Exception as err:
                    waiter.future.set_exception(err)
                    continue
                if matched:
                    waiter.future.set_result(event)
            return
        req_id = msg.get("id")
        fut = self._pending.pop(req_id, None) if isinstance(req_id, int) else None
        if fut is None:
            log.warning("%s: reply to unknown/expired request: %r", self.name, raw[:500])
            return
        if not fut.done():
            fut.set_result(msg)

    def _mark_dead(self, why: str) -> None:
        if self._dead is not None:
            return
        self._dead = why
        err = NodeClientError(f"{self.name}: {why}\nnode stderr (tail):\n{self._stderr.tail()}")
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        self._pending.clear()
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(err)

    def stderr_tail(self, n: int = 40) -> str:
        """The last ``n`` lines node wrote to stderr."""
        return self._stderr.tail(n)

    def _error(self, message: str, *, timeout: bool = False) -> NodeClientError:
        text = f"{self.name}: {message}\nnode stderr (tail):\n{self._stderr.tail()}"
        return NodeClientTimeout(text) if timeout else NodeClientError(text)

    async def request(
        self, cmd: str, *, timeout: float | None = None, **params: Any
    ) -> dict[str, Any]:
        """Send one command; return the reply's fields (without ``id``/``ok``)."""
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise NodeClientError("not started")
        if self._dead is not None:
            raise self._error(f"cannot send {cmd!r}: {self._dead}")
        limit = self.default_timeout if timeout is None else timeout
        self._next_id += 1
        req_id = self._next_id
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        line = jsonlib.dumps({"id": req_id, "cmd": cmd, **params}, separators=(",", ":")) + "\n"
        try:
            async with asyncio.timeout(limit):
                async with self._write_lock:
                    proc.stdin.write(line.encode())
                    await proc.stdin.drain()
                reply = await fut
        except TimeoutError:
            raise self._error(
                f"{cmd} {_brief(params)}: no reply within {limit:g} s", timeout=True
            ) from None
        except (BrokenPipeError, ConnectionResetError) as err:
            raise self._error(f"{cmd}: node's stdin is closed ({err!r})") from None
        finally:
            self._pending.pop(req_id, None)
        if not reply.get("ok"):
            error = str(reply.get("error"))
            raise self._error(
                f"{cmd} {_brief(params)} failed: {error}", timeout=bool(reply.get("timeout"))
            )
        return {k: v for k, v in reply.items() if k not in ("id", "ok")}

    async def _wait_cmd(self, cmd: str, timeout: float | None, **params: Any) -> dict[str, Any]:
        """A node-side wait: node times out first (its message says what it saw)."""
        limit = self.default_timeout if timeout is None else timeout
        return await self.request(
            cmd, timeout=limit + _NODE_WAIT_MARGIN, timeoutMs=round(limit * 1000), **params
        )

    # ------------------------------------------------------------------ events
    def events(
        self, client: str | None = None, kind: str | None = None, *, after: int = 0
    ) -> list[ClientEvent]:
        """Recorded events, oldest first, optionally only one client's / one kind's,
        and only those with ``seq > after`` (see :meth:`mark`)."""
        return [
            e
            for e in self._events[after:]
            if (client is None or e.client == client) and (kind is None or e.kind == kind)
        ]

    def mark(self) -> int:
        """The ``seq`` of the latest event so far; pass it as ``after=`` to look only at
        newer events (e.g. the ``synced`` after a reconnect, not the first one)."""
        return len(self._events)

    async def wait_event(
        self,
        client: str | None,
        kind: str,
        *,
        timeout: float | None = None,
        after: int = 0,
        match: Mapping[str, Any] | None = None,
        predicate: Callable[[ClientEvent], bool] | None = None,
    ) -> ClientEvent:
        """The first event of ``kind`` for ``client`` with ``seq > after`` whose data
        contains ``match`` and satisfies ``predicate`` (already recorded ones count)."""

        def check(e: ClientEvent) -> bool:
            if e.seq <= after or e.kind != kind or (client is not None and e.client != client):
                return False
            if match is not None and any(e.data.get(k, UNSET) != v for k, v in match.items()):
                return False
            return predicate is None or predicate(e)

        for e in self._events[after:]:
            if check(e):
                return e
        if self._dead is not None:
            raise self._error(f"waiting for {kind!r} of {client!r}: {self._dead}")
        limit = self.default_timeout if timeout is None else timeout
        waiter = _Waiter(check, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(limit):
                return await waiter.future
        except TimeoutError:
            seen = [(e.kind, e.data) for e in self.events(client, after=after)][-15:]
            raise self._error(
                f"no {kind!r} event (match={match!r}) for client {client!r} within {limit:g} s; "
                f"its events since #{after}: {seen!r}",
                timeout=True,
            ) from None
        finally:
            self._waiters.remove(waiter)

    # ------------------------------------------------------------------ commands
    async def ping(self, *, timeout: float | None = None) -> int:
        """Round trip; returns node's PID."""
        return int((await self.request("ping", timeout=timeout))["pid"])

    async def open(
        self,
        client: str,
        *,
        url: str,
        room: str,
        token: str | None = None,
        auth: Mapping[str, Any] | None = None,
        awareness: Mapping[str, Any] | Unset | None = UNSET,
        socket_options: Mapping[str, Any] | None = None,
        resync_interval: int | None = None,
        timeout: float | None = None,
    ) -> int:
        """Create client ``client``: a new ``Y.Doc`` and ``SocketIOProvider(url, room, doc,
        {autoConnect, disableBc: true, auth: {...auth, token}, awareness}, socket_options)``.
        ``awareness`` is the initial local awareness state (default: the library's ``{}``;
        ``None`` = no presence). Returns the doc's Yjs clientID. Does not wait for sync."""
        params: dict[str, Any] = {"client": client, "url": url, "room": room}
        if token is not None:
            params["token"] = token
        if auth is not None:
            params["auth"] = dict(auth)
        if awareness is not UNSET:
            params["awareness"] = dict(awareness) if awareness is not None else None
        if socket_options is not None:
            params["socketOptions"] = dict(socket_options)
        if resync_interval is not None:
            params["resyncInterval"] = resync_interval
        return int((await self.request("open", timeout=timeout, **params))["clientId"])

    async def wait_synced(self, client: str, *, timeout: float | None = None) -> None:
        """Until ``provider.synced`` (true once the client answered the server's
        ``sync-step-1``; not proof that the server's state has been applied)."""
        await self._wait_cmd("wait-synced", timeout, client=client)

    async def edit(
        self, client: str, op: str, *, timeout: float | None = None, **params: Any
    ) -> dict[str, Any]:
        """One node-graph edit (one Yjs transaction). ``op`` and its params:
        ``add-node`` (nodeId?, type, x, y, params?, label?) -> {nodeId},
        ``move`` (nodeId, x, y), ``set-param`` (nodeId, key, value),
        ``connect`` (edgeId?, source, sourceSocket, target, targetSocket) -> {edgeId},
        ``delete-node`` (nodeId; leaves its edges), ``delete-edge`` (edgeId),
        ``set-meta`` (key, value), ``big-insert`` (bytes, key='big').
        Every reply also has ``updateBytes``: the size of the Yjs update produced."""
        return await self.request("edit", timeout=timeout, client=client, op=op, **params)

    async def add_node(
        self,
        client: str,
        *,
        type: str,
        x: float,
        y: float,
        params: Mapping[str, Any] | None = None,
        node_id: str | None = None,
        label: str | None = None,
    ) -> str:
        """``edit(add-node)``; returns the node id."""
        extra: dict[str, Any] = {"params": dict(params or {})}
        if node_id is not None:
            extra["nodeId"] = node_id
        if label is not None:
            extra["label"] = label
        reply = await self.edit(client, "add-node", type=type, x=x, y=y, **extra)
        return str(reply["nodeId"])

    async def random_edits(
        self,
        client: str,
        *,
        count: int,
        seed: int,
        interval_ms: float = 0,
        timeout: float | None = None,
    ) -> dict[str, int]:
        """``count`` seeded random edits (move/set-param/add-node/connect/delete-edge/
        delete-node); returns how many of each op were made."""
        limit = (
            timeout if timeout is not None else self.default_timeout + count * interval_ms / 1000
        )
        reply = await self.request(
            "random-edits",
            timeout=limit,
            client=client,
            count=count,
            seed=seed,
            intervalMs=interval_ms,
        )
        return {str(k): int(v) for k, v in reply["ops"].items()}

    async def json_str(self, client: str, *, timeout: float | None = None) -> str:
        """Canonical JSON (keys sorted) of ``{nodes, edges, meta}``: equal docs give
        equal strings."""
        return str((await self.request("json", timeout=timeout, client=client))["json"])

    async def json(self, client: str, *, timeout: float | None = None) -> dict[str, Any]:
        """``{"nodes": ..., "edges": ..., "meta": ...}`` of the client's doc."""
        value = jsonlib.loads(await self.json_str(client, timeout=timeout))
        assert isinstance(value, dict)
        return value

    async def state(self, client: str, *, timeout: float | None = None) -> DocState:
        """``Y.encodeStateVector(doc)`` and ``Y.encodeStateAsUpdate(doc)``."""
        reply = await self.request("state", timeout=timeout, client=client)
        return DocState(
            state_vector=base64.b64decode(reply["stateVector"]),
            update=base64.b64decode(reply["update"]),
        )

    async def disconnect(self, client: str, *, timeout: float | None = None) -> bool:
        """``provider.disconnect()`` (and stop any reconnect in progress): the client is
        offline until :meth:`connect`. Returns whether it was connected."""
        reply = await self.request("disconnect", timeout=timeout, client=client)
        return bool(reply["wasConnected"])

    async def connect(self, client: str, *, timeout: float | None = None) -> bool:
        """``provider.connect()``. Returns whether it was already connected."""
        reply = await self.request("connect", timeout=timeout, client=client)
        return bool(reply["wasConnected"])

    async def close_client(self, client: str, *, timeout: float | None = None) -> None:
        """``provider.destroy()`` and forget the client (its name can be reused)."""
        await self.request("close", timeout=timeout, client=client)

    async def kill_transport(self, client: str, *, timeout: float | None = None) -> None:
        """Close the engine.io transport without a Socket.IO disconnect (a network drop);
        the client reconnects by itself (socket.io-client backoff, ~0.5-1.5 s first)."""
        await self.request("kill-transport", timeout=timeout, client=client)

    async def set_awareness(
        self, client: str, state: Mapping[str, Any] | None, *, timeout: float | None = None
    ) -> None:
        """``provider.awareness.setLocalState(state)`` (``None`` removes the presence)."""
        await self.request(
            "set-awareness",
            timeout=timeout,
            client=client,
            state=dict(state) if state is not None else None,
        )

    async def awareness(self, client: str, *, timeout: float | None = None) -> dict[int, Any]:
        """``awareness.getStates()`` as ``{clientID: state}`` (own and remote)."""
        reply = await self.request("awareness", timeout=timeout, client=client)
        return {int(cid): state for cid, state in reply["states"]}

    async def client_id(self, client: str, *, timeout: float | None = None) -> int:
        """``doc.clientID``."""
        return int((await self.request("client-id", timeout=timeout, client=client))["clientId"])

    async def wait_json(
        self, client: str, equals: str | Mapping[str, Any], *, timeout: float | None = None
    ) -> None:
        """Until the client's ``{nodes, edges, meta}`` equals ``equals`` (a JSON string,
        e.g. another client's :meth:`json_str`, or a mapping). Key order is ignored."""
        text = equals if isinstance(equals, str) else jsonlib.dumps(equals)
        await self._wait_cmd("wait-json", timeout, client=client, equals=text)

    async def wait_converged(self, clients: Sequence[str], *, timeout: float | None = None) -> str:
        """Until all ``clients`` have the same JSON and the same state vector; returns
        the common canonical JSON."""
        reply = await self._wait_cmd("wait-converged", timeout, clients=list(clients))
        return str(reply["json"])

    async def wait_awareness(
        self,
        client: str,
        *,
        count: int | None = None,
        has_client_id: int | None = None,
        lacks_client_id: int | None = None,
        has_state: tuple[int, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[int, Any]:
        """Until the client's awareness states satisfy every given condition (number of
        states incl. its own; a clientID present / absent; ``(clientID, state)`` present
        with that exact state). Returns the states."""
        predicate: dict[str, Any] = {}
        if count is not None:
            predicate["count"] = count
        if has_client_id is not None:
            predicate["has-client-id"] = has_client_id
        if lacks_client_id is not None:
            predicate["lacks-client-id"] = lacks_client_id
        if has_state is not None:
            predicate["has-state"] = {"clientId": has_state[0], "state": has_state[1]}
        if not predicate:
            raise ValueError("wait_awareness needs at least one condition")
        reply = await self._wait_cmd("wait-awareness", timeout, client=client, predicate=predicate)
        return {int(cid): state for cid, state in reply["states"]}

    async def emit_raw(
        self,
        client: str,
        event: str,
        payload: bytes | None = None,
        *,
        args: Sequence[Any] | None = None,
        ack: bool = False,
        timeout: float | None = None,
    ) -> list[Any] | None:
        """``provider.socket.emit(event, payload)`` with one binary argument (or the JSON
        ``args``, or none). With ``ack``: waits for the server's ack and returns its
        arguments (binary ones as ``bytes``); a missing ack raises
        :class:`NodeClientTimeout`."""
        if payload is not None and args is not None:
            raise ValueError("give payload or args, not both")
        params: dict[str, Any] = {"client": client, "event": event, "ack": ack}
        if payload is not None:
            params["payload_b64"] = base64.b64encode(payload).decode()
        if args is not None:
            params["args"] = list(args)
        if not ack:
            await self.request("emit-raw", timeout=timeout, **params)
            return None
        reply = await self._wait_cmd("emit-raw", timeout, **params)
        decoded = _decode_wire(reply["ack"])
        assert isinstance(decoded, list)
        return decoded


def _brief(params: Mapping[str, Any], limit: int = 300) -> str:
    text = jsonlib.dumps(params, default=str)
    return text if len(text) <= limit else text[:limit] + "..."
