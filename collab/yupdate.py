"""Yjs update (v1) decoding and causal gating, so yrs only ever integrates complete
updates.

Why: yrs (pycrdt 0.14.13) mishandles causally incomplete input. Structs whose
predecessors are missing are parked in its pending store, and when the gap is filled
by several later updates some of them are never integrated; a ``Skip`` block (what a
Yjs client writes for its own pending structs in ``encodeStateAsUpdate``) that is later
partly overwritten is sliced wrongly and poisons every encoding of the document with a
2**32-long skip (upstream: y-crdt PR #625, issue #632). Both were seen in kill -9
recovery: clients that synced from the server could no longer integrate its updates.

So the server gates every update before it reaches yrs (``Gate``):

* a struct is *ready* when its clock continues its client's state and every struct it
  refers to (origin, right origin, parent) is already integrated or ready;
* ``Skip`` structs are never ready (they stand for content the sender lacks);
* delete-set ranges are ready when they cover integrated content only.

The ready part is re-encoded (copying each struct's bytes, which are position-free in
v1) and applied; the rest waits in the gate and is retried whenever the document's
state advances. Nothing is dropped: the raw update is persisted as received, and
loading replays the log through the same gate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pycrdt import merge_updates

# Item info byte (y-protocols / yjs encoding.js).
_BIT8 = 0x80  # has origin (left id)
_BIT7 = 0x40  # has right origin
_BIT6 = 0x20  # has parentSub
_CONTENT = 0x1F

GC, SKIP, ITEM = 0, 10, -1

StateVector = dict[int, int]


class UpdateDecodeError(ValueError):
    """The bytes are not a Yjs v1 update."""


@dataclass(slots=True)
class Struct:
    kind: int  # GC, SKIP or ITEM
    client: int
    clock: int
    length: int
    deps: tuple[tuple[int, int], ...]  # (client, clock) this struct refers to
    raw: bytes  # its encoding (info byte onwards), position-independent

    @property
    def end(self) -> int:
        return self.clock + self.length


@dataclass(slots=True)
class Decoded:
    structs: dict[int, list[Struct]] = field(default_factory=dict)  # per client, by clock
    deletes: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # (clock, len)

    @property
    def empty(self) -> bool:
        return not self.structs and not any(self.deletes.values())


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def u8(self) -> int:
        if self.pos >= len(self.data):
            raise UpdateDecodeError("unexpected end of update")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def var_uint(self) -> int:
        data, pos = self.data, self.pos
        try:
            b = data[pos]
            if b < 0x80:  # one byte: by far the most common case
                self.pos = pos + 1
                return b
            result = b & 0x7F
            shift = 7
            while True:
                pos += 1
                b = data[pos]
                result |= (b & 0x7F) << shift
                if b < 0x80:
                    self.pos = pos + 1
                    return result
                shift += 7
                if shift > 70:
                    raise UpdateDecodeError("varuint too long")
        except IndexError:
            raise UpdateDecodeError("unexpected end of update") from None

    def skip_var_int(self) -> None:
        while self.u8() >= 0x80:
            pass

    def skip(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise UpdateDecodeError("unexpected end of update")
        self.pos += n

    def var_bytes(self) -> bytes:
        n = self.var_uint()
        start = self.pos
        self.skip(n)
        return self.data[start : self.pos]

    def var_string(self) -> str:
        try:
            return self.var_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UpdateDecodeError("invalid UTF-8 string") from exc

    def skip_any(self, depth: int = 0) -> None:
        if depth > 100:
            raise UpdateDecodeError("value nested too deeply")
        t = self.u8()
        if t in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if t == 125:
            self.skip_var_int()
        elif t == 124:
            self.skip(4)
        elif t in (123, 122):
            self.skip(8)
        elif t == 119:
            self.var_bytes()
        elif t == 118:
            for _ in range(self.var_uint()):
                self.var_bytes()
                self.skip_any(depth + 1)
        elif t == 117:
            for _ in range(self.var_uint()):
                self.skip_any(depth + 1)
        elif t == 116:
            self.var_bytes()
        else:
            raise UpdateDecodeError(f"unknown value type {t}")


def _utf16_len(s: str) -> int:
    return len(s.encode("utf-16-le")) // 2


def _read_item(r: _Reader, info: int, client: int, clock: int, start: int) -> Struct:
    deps: list[tuple[int, int]] = []
    if info & _BIT8:
        deps.append((r.var_uint(), r.var_uint()))
    if info & _BIT7:
        deps.append((r.var_uint(), r.var_uint()))
    if not info & (_BIT8 | _BIT7):
        if r.var_uint() == 1:
            r.var_bytes()  # parent is a root type, by name
        else:
            deps.append((r.var_uint(), r.var_uint()))  # parent is a type item
        if info & _BIT6:
            r.var_bytes()  # parentSub (map key)
    content = info & _CONTENT
    if content == 1:  # deleted
        length = r.var_uint()
    elif content == 2:  # JSON
        length = r.var_uint()
        for _ in range(length):
            r.var_bytes()
    elif content == 3:  # binary
        r.var_bytes()
        length = 1
    elif content == 4:  # string: length in UTF-16 code units, as in Yjs
        length = _utf16_len(r.var_string())
    elif content == 5:  # embed
        r.var_bytes()
        length = 1
    elif content == 6:  # format
        r.var_bytes()
        r.var_bytes()
        length = 1
    elif content == 7:  # type
        ref = r.var_uint()
        if ref in (3, 5):  # XmlElement, XmlHook carry a name
            r.var_bytes()
        length = 1
    elif content == 8:  # any
        length = r.var_uint()
        for _ in range(length):
            r.skip_any()
    elif content == 9:  # subdocument
        r.var_bytes()
        r.skip_any()
        length = 1
    else:
        raise UpdateDecodeError(f"unknown content type {content}")
    if length < 1:
        raise UpdateDecodeError("empty struct")
    return Struct(ITEM, client, clock, length, tuple(deps), r.data[start : r.pos])


def decode(update: bytes) -> Decoded:
    """Decode a v1 update into structs (with their dependencies) and a delete set."""
    r = _Reader(update)
    out = Decoded()
    for _ in range(r.var_uint()):
        count = r.var_uint()
        client = r.var_uint()
        clock = r.var_uint()
        structs = out.structs.setdefault(client, [])
        for _ in range(count):
            start = r.pos
            info = r.u8()
            kind = info & _CONTENT
            if kind in (GC, SKIP):
                length = r.var_uint()
                if length < 1:
                    raise UpdateDecodeError("empty struct")
                s = Struct(kind, client, clock, length, (), update[start : r.pos])
            else:
                s = _read_item(r, info, client, clock, start)
            structs.append(s)
            clock += s.length
        if not structs:
            del out.structs[client]
    for _ in range(r.var_uint()):
        client = r.var_uint()
        ranges = out.deletes.setdefault(client, [])
        for _ in range(r.var_uint()):
            ranges.append((r.var_uint(), r.var_uint()))
    if r.pos != len(update):
        raise UpdateDecodeError("trailing bytes after the update")
    for structs in out.structs.values():
        structs.sort(key=lambda s: s.clock)
    return out


def decode_state_vector(data: bytes) -> StateVector:
    r = _Reader(data)
    sv = {}
    for _ in range(r.var_uint()):
        client = r.var_uint()
        sv[client] = r.var_uint()
    if r.pos != len(data):
        raise UpdateDecodeError("trailing bytes after the state vector")
    return sv


def _write_var_uint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)


def encode(structs: dict[int, list[Struct]], deletes: dict[int, list[tuple[int, int]]]) -> bytes:
    """Encode per-client runs of contiguous structs and a delete set as a v1 update."""
    out = bytearray()
    clients = [c for c, s in structs.items() if s]
    _write_var_uint(out, len(clients))
    for client in sorted(clients, reverse=True):  # Yjs writes higher client ids first
        run = structs[client]
        _write_var_uint(out, len(run))
        _write_var_uint(out, client)
        _write_var_uint(out, run[0].clock)
        for s in run:
            out += s.raw
    ds = {c: r for c, r in deletes.items() if r}
    _write_var_uint(out, len(ds))
    for client, ranges in ds.items():
        _write_var_uint(out, client)
        _write_var_uint(out, len(ranges))
        for clock, length in ranges:
            _write_var_uint(out, clock)
            _write_var_uint(out, length)
    return bytes(out)


@dataclass(slots=True)
class Split:
    ready: bytes | None  # apply this now
    parked: bool  # something of this update has to wait
    sv: StateVector  # the document's state once ``ready`` is applied


class Gate:
    """Holds the parts of updates that are not causally ready for a document.

    ``split(update, sv)`` returns what can be applied to a document whose state is
    ``sv`` and keeps the rest; ``release(sv)`` returns what became ready since. Call
    ``release`` again after applying its result, until it returns None.
    """

    def __init__(self) -> None:
        self._structs: dict[int, dict[int, Struct]] = {}  # client -> clock -> struct
        self._deletes: dict[int, list[tuple[int, int]]] = {}

    @property
    def pending(self) -> bool:
        return bool(self._structs) or any(self._deletes.values())

    def pending_structs(self) -> int:
        return sum(len(v) for v in self._structs.values())

    def split(self, update: bytes, sv: StateVector) -> Split:
        """Raises ``UpdateDecodeError`` (and keeps nothing) for malformed bytes."""
        decoded = decode(update)
        if not self.pending:
            after = _ready_as_is(decoded, sv)
            if after is not None:
                return Split(ready=update, parked=False, sv=after)
        added: list[Struct] = []
        for client, structs in decoded.structs.items():
            held = self._structs.setdefault(client, {})
            for s in structs:
                if s.kind == SKIP or s.end <= sv.get(client, 0):
                    continue  # a skip carries nothing; the rest we already have
                if s.clock not in held or held[s.clock].length < s.length:
                    held[s.clock] = s
                    added.append(s)
            if not held:
                del self._structs[client]
        for client, ranges in decoded.deletes.items():
            if ranges:
                self._deletes.setdefault(client, []).extend(ranges)
        was_empty = len(added) == sum(len(v) for v in self._structs.values()) and not any(
            r for c, r in self._deletes.items() if c not in decoded.deletes
        )
        ready, after = self._take_ready(sv)
        if (
            ready is not None
            and was_empty
            and not self.pending
            and len(added) == sum(len(v) for v in decoded.structs.values())
        ):
            ready = update  # the common case: all of it, as it came
        parked = any(self._structs.get(s.client, {}).get(s.clock) is s for s in added) or any(
            any(end > c for c, n in decoded.deletes.get(client, []) for end in [c + n])
            and client in self._deletes
            for client in decoded.deletes
        )
        return Split(ready=ready, parked=parked, sv=after)

    def release(self, sv: StateVector) -> tuple[bytes, StateVector] | None:
        """What became ready for a document at ``sv``, and the state after it."""
        if not self.pending:
            return None
        ready, after = self._take_ready(sv)
        return None if ready is None else (ready, after)

    def parked_update(self) -> bytes | None:
        """Everything waiting, as one update (for snapshots); None when nothing."""
        if not self.pending:
            return None
        runs: dict[int, list[Struct]] = {}
        parts: list[bytes] = []
        for client, held in self._structs.items():
            for s in sorted(held.values(), key=lambda s: s.clock):
                run = runs.setdefault(client, [])
                if run and run[-1].end != s.clock:
                    parts.append(encode({client: run}, {}))
                    runs[client] = run = []
                run.append(s)
        parts.append(encode(runs, self._deletes))
        return merge_updates(*parts) if len(parts) > 1 else parts[0]

    def _take_ready(self, sv: StateVector) -> tuple[bytes | None, StateVector]:
        avail = dict(sv)
        ready: dict[int, list[Struct]] = {}
        progress = True
        while progress:
            progress = False
            for client, held in self._structs.items():
                while True:
                    start = avail.get(client, 0)
                    s = _covering(held, start)
                    if s is None:
                        break
                    if not all(dc < avail.get(dcl, 0) for dcl, dc in s.deps):
                        break
                    run = ready.setdefault(client, [])
                    if run and run[-1].end != s.clock:
                        # Overlaps the run's end: one client has one section per
                        # update, so it goes out with the next ``release``.
                        break
                    del held[s.clock]
                    run.append(s)
                    avail[client] = s.end
                    progress = True
                # drop what the state already covers
                for clock in [c for c, x in held.items() if x.end <= avail.get(client, 0)]:
                    del held[clock]
        for client in [c for c, h in self._structs.items() if not h]:
            del self._structs[client]
        deletes: dict[int, list[tuple[int, int]]] = {}
        for client, ranges in list(self._deletes.items()):
            have = avail.get(client, 0)
            keep: list[tuple[int, int]] = []
            for clock, length in ranges:
                if clock + length <= have:
                    deletes.setdefault(client, []).append((clock, length))
                elif clock < have:
                    deletes.setdefault(client, []).append((clock, have - clock))
                    keep.append((have, clock + length - have))
                else:
                    keep.append((clock, length))
            if keep:
                self._deletes[client] = keep
            else:
                del self._deletes[client]
        if not ready and not deletes:
            return None, avail
        return encode(ready, deletes), avail


def _ready_as_is(decoded: Decoded, sv: StateVector) -> StateVector | None:
    """The state after applying ``decoded`` when all of it is ready (no skip, no gap,
    every dependency present); None otherwise."""
    after = dict(sv)
    for client, structs in decoded.structs.items():
        have = after.get(client, 0)
        if structs[0].clock > have:
            return None
        end = structs[0].clock
        for st in structs:
            if st.kind == SKIP or st.clock != end:
                return None
            end = st.end
        after[client] = max(have, end)
    for structs in decoded.structs.values():
        for st in structs:
            for dcl, dc in st.deps:
                if dc >= after.get(dcl, 0):
                    return None
    for client, ranges in decoded.deletes.items():
        have = after.get(client, 0)
        if any(c + n > have for c, n in ranges):
            return None
    return after


def _covering(held: dict[int, Struct], clock: int) -> Struct | None:
    """The held struct that continues at ``clock`` (starting at or before it)."""
    s = held.get(clock)
    if s is not None:
        return s
    best = None
    for x in held.values():
        if x.clock < clock < x.end and (best is None or x.end > best.end):
            best = x
    return best


def has_gaps(structs: Iterable[Struct]) -> bool:
    prev = None
    for s in structs:
        if prev is not None and s.clock != prev:
            return True
        prev = s.end
    return False
