"""The y-socket.io wire protocol: names, payload checks and the awareness codec.

Pure functions, no I/O. See PROTOCOL-NOTES §1 for the protocol and §2 for the binary
formats. Payloads are unframed Yjs bytes: a state vector (``sync-step-1``), an update
(``sync-update`` and the step-2 acks) or an awareness update (``awareness-update``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from collab.errors import BadRequest, InvalidAwareness, InvalidProjectId, InvalidUpdate

NAMESPACE_PREFIX = "/yjs|"
EV_SYNC_STEP_1 = "sync-step-1"
EV_SYNC_UPDATE = "sync-update"
EV_AWARENESS = "awareness-update"
EV_ERROR = "error"
EV_NOTIFICATION = "notification"
EV_ROOM_STATE = "room-state"  # ours: {read_only, reason, role, access}, on connect and change
EV_ROOMS = "rooms"  # ours, on "/": the cluster's live rooms, for subscribed admins
EV_SUBSCRIBE_ROOMS = "subscribe-rooms"

# Ids we generate and accept: safe in a URL path and in a Socket.IO namespace, where
# '?' and '#' are cut off by URL parsing and ',' ends the namespace (PROTOCOL-NOTES §1.1).
PROJECT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
EMPTY_UPDATE = b"\x00\x00"

# An awareness update carries one entry per client; a browser sends its own, a server
# relays a room's worth. 1,000 entries and 64 KiB of JSON per state are far beyond any
# real cursor/selection state and bound the work one message can cause.
MAX_AWARENESS_ENTRIES = 1000
MAX_AWARENESS_STATE_BYTES = 64 * 1024
MAX_SAFE_INTEGER = 2**53 - 1


def project_id_from_namespace(namespace: str) -> str:
    """The project id of a ``/yjs|<id>`` namespace; raise ``InvalidProjectId``."""
    if not namespace.startswith(NAMESPACE_PREFIX):
        raise InvalidProjectId("not a document namespace", {"namespace": namespace[:200]})
    project_id = namespace[len(NAMESPACE_PREFIX) :]
    check_project_id(project_id)
    return project_id


def check_project_id(project_id: str) -> None:
    if not PROJECT_ID_RE.fullmatch(project_id):
        raise InvalidProjectId(
            "project ids are 1-128 characters of A-Z a-z 0-9 _ . : - (no '?', '#', ',' or '/')",
            {"project_id": project_id[:200]},
        )


def as_bytes(payload: object, what: str, error: type[BadRequest] = InvalidUpdate) -> bytes:
    """Binary payloads arrive as ``bytes``; anything else is a client bug."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, bytearray | memoryview):
        return bytes(payload)
    raise error(f"{what} must be binary (a Uint8Array)", {"received": type(payload).__name__})


def single_binary(
    args: tuple[Any, ...], what: str, error: type[BadRequest] = InvalidUpdate
) -> bytes:
    """The one binary argument of a y-socket.io event (exactly one, as the protocol has)."""
    if len(args) != 1:
        raise error(f"{what} takes exactly one binary argument", {"arguments": len(args)})
    return as_bytes(args[0], what, error)


# -- lib0 varint / varstring --------------------------------------------------------


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def var_uint(self) -> int:
        result = 0
        shift = 0
        while True:
            if self.pos >= len(self.data):
                raise ValueError("unexpected end of data")
            byte = self.data[self.pos]
            self.pos += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7
            if shift > 63:
                raise ValueError("varuint too long")

    def var_string(self) -> str:
        length = self.var_uint()
        end = self.pos + length
        if end > len(self.data):
            raise ValueError("string runs past the end")
        raw = self.data[self.pos : end]
        self.pos = end
        return raw.decode("utf-8")


def _write_var_uint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def _write_var_string(out: bytearray, value: str) -> None:
    raw = value.encode("utf-8")
    _write_var_uint(out, len(raw))
    out += raw


# -- awareness ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: dict[str, Any] | None  # None = the client left (JSON "null")


def decode_awareness(data: bytes) -> list[AwarenessEntry]:
    """Decode a raw y-protocols awareness update; raise ``InvalidAwareness``."""
    reader = _Reader(data)
    try:
        count = reader.var_uint()
        if count > MAX_AWARENESS_ENTRIES:
            raise InvalidAwareness(
                "too many awareness entries", {"entries": count, "max": MAX_AWARENESS_ENTRIES}
            )
        entries = []
        for _ in range(count):
            client_id = reader.var_uint()
            clock = reader.var_uint()
            text = reader.var_string()
            if client_id > MAX_SAFE_INTEGER or clock > MAX_SAFE_INTEGER:
                raise ValueError("client id or clock out of range")
            if len(text) > MAX_AWARENESS_STATE_BYTES:
                raise InvalidAwareness(
                    "awareness state too large", {"max_bytes": MAX_AWARENESS_STATE_BYTES}
                )
            state = loads_state(text)
            if state is not None and not isinstance(state, dict):
                raise ValueError("an awareness state must be an object or null")
            entries.append(AwarenessEntry(client_id, clock, state))
        if reader.pos != len(data):
            raise ValueError("trailing bytes after the awareness update")
    except InvalidAwareness:
        raise
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidAwareness(f"malformed awareness update: {exc}") from exc
    return entries


def loads_state(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # JSON.stringify can emit lone surrogate escapes, which orjson refuses.
        return json.loads(text)


def encode_awareness(entries: list[tuple[int, int, str]]) -> bytes:
    """Encode ``(client_id, clock, state_json)`` triples (``"null"`` = removed)."""
    out = bytearray()
    _write_var_uint(out, len(entries))
    for client_id, clock, state_json in entries:
        _write_var_uint(out, client_id)
        _write_var_uint(out, clock)
        _write_var_string(out, state_json)
    return bytes(out)


def dumps_state(state: dict[str, Any] | None) -> str:
    if state is None:
        return "null"
    try:
        return orjson.dumps(state).decode("utf-8")
    except TypeError:
        # A lone surrogate (JSON.stringify writes one when a string is cut inside an
        # emoji): orjson refuses it; escaped ASCII JSON round-trips it like JS does.
        return json.dumps(state, ensure_ascii=True, separators=(",", ":"))
