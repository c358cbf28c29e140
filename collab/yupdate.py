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

import bisect
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


# A delete set may name clocks a little past what this server holds (it may have lost
# an instance's last unstored updates, which their authors will send again); far past,
# it would silently delete another client's future edits as they arrive.
DELETE_SLACK = 1024


class ImplausibleUpdate(UpdateDecodeError):
    """A well-formed update that no honest client sends (see ``DELETE_SLACK``)."""


class _Held:
    """One client's structs waiting for their predecessors, sorted by clock."""

    __slots__ = ("clocks", "structs")

    def __init__(self) -> None:
        self.clocks: list[int] = []
        self.structs: list[Struct] = []

    def __len__(self) -> int:
        return len(self.structs)

    def add(self, s: Struct) -> bool:
        i = bisect.bisect_left(self.clocks, s.clock)
        if i < len(self.clocks) and self.clocks[i] == s.clock:
            if self.structs[i].length >= s.length:
                return False
            self.structs[i] = s
            return True
        self.clocks.insert(i, s.clock)
        self.structs.insert(i, s)
        return True

    def covering(self, clock: int) -> Struct | None:
        """The held struct that continues at ``clock`` (starting at or before it)."""
        i = bisect.bisect_right(self.clocks, clock) - 1
        # Overlapping structs (the same range sent twice, cut differently) are rare:
        # look back a few for one that reaches past ``clock``.
        for j in range(i, max(i - 8, -1), -1):
            if self.structs[j].end > clock:
                return self.structs[j]
        return None

    def remove(self, s: Struct) -> None:
        i = bisect.bisect_left(self.clocks, s.clock)
        while self.structs[i] is not s:
            i += 1
        del self.clocks[i]
        del self.structs[i]

    def drop_below(self, clock: int) -> None:
        """Forget structs the document already has entirely."""
        i = bisect.bisect_right(self.clocks, clock)
        keep = [k for k in range(i) if self.structs[k].end > clock]
        if len(keep) < i:
            self.clocks[:i] = [self.clocks[k] for k in keep]
            self.structs[:i] = [self.structs[k] for k in keep]

    def max_end(self) -> int:
        return max((s.end for s in self.structs[-8:]), default=0)


class Gate:
    """Holds the parts of updates that are not causally ready for a document.

    ``split(update, sv)`` returns what can be applied to a document whose state is
    ``sv`` and keeps the rest; ``release(sv)`` returns what became ready since. Call
    ``release`` again after applying its result, until it returns None. The cost of
    an update is logarithmic in what waits (per client, sorted by clock).
    """

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}
        self._deletes: dict[int, list[tuple[int, int]]] = {}

    @property
    def pending(self) -> bool:
        return bool(self._held) or bool(self._deletes)

    def pending_structs(self) -> int:
        return sum(len(h) for h in self._held.values())

    def split(self, update: bytes, sv: StateVector) -> Split:
        """Raises ``UpdateDecodeError`` (and keeps nothing) for malformed bytes and
        ``ImplausibleUpdate`` for a delete set reaching far past every known clock."""
        decoded = decode(update)
        self._check_deletes(decoded, sv)
        if not self.pending:
            after = _ready_as_is(decoded, sv)
            if after is not None:
                return Split(ready=update, parked=False, sv=after)
        was_pending = self.pending
        added: list[Struct] = []
        for client, structs in decoded.structs.items():
            for st in structs:
                if st.kind == SKIP or st.end <= sv.get(client, 0):
                    continue  # a skip carries nothing; the rest we already have
                held = self._held.get(client)
                if held is None:
                    held = self._held[client] = _Held()
                if held.add(st):
                    added.append(st)
        for client, ranges in decoded.deletes.items():
            if ranges:
                waiting = self._deletes.setdefault(client, [])
                for r in ranges:
                    bisect.insort(waiting, r)
        ready, after = self._take_ready(sv)
        parked = any(self._is_held(st) for st in added) or any(
            client in self._deletes for client in decoded.deletes
        )
        if (
            ready is not None
            and not was_pending
            and not self.pending
            and len(added) == sum(len(v) for v in decoded.structs.values())
        ):
            ready = update  # all of it (and nothing released with it), as it came
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
        for client, held in self._held.items():
            for st in held.structs:
                run = runs.setdefault(client, [])
                if run and run[-1].end != st.clock:
                    parts.append(encode({client: run}, {}))
                    runs[client] = run = []
                run.append(st)
        parts.append(encode(runs, self._deletes))
        return merge_updates(*parts) if len(parts) > 1 else parts[0]

    def _is_held(self, st: Struct) -> bool:
        held = self._held.get(st.client)
        if held is None:
            return False
        i = bisect.bisect_left(held.clocks, st.clock)
        return i < len(held.structs) and held.structs[i] is st

    def _check_deletes(self, decoded: Decoded, sv: StateVector) -> None:
        for client, ranges in decoded.deletes.items():
            if not ranges:
                continue
            known = sv.get(client, 0)
            held = self._held.get(client)
            if held is not None:
                known = max(known, held.max_end())
            own = decoded.structs.get(client)
            if own:
                known = max(known, own[-1].end)
            end = max(c + n for c, n in ranges)
            if end > known + DELETE_SLACK:
                raise ImplausibleUpdate(
                    f"the delete set reaches clock {end} of client {client}, "
                    f"far past the {known} this document knows"
                )

    def _take_ready(self, sv: StateVector) -> tuple[bytes | None, StateVector]:
        avail = dict(sv)
        ready: dict[int, list[Struct]] = {}
        progress = True
        while progress:
            progress = False
            for client, held in list(self._held.items()):
                held.drop_below(avail.get(client, 0))
                while True:
                    at = avail.get(client, 0)
                    st = held.covering(at)
                    if st is None or any(dc >= avail.get(dcl, 0) for dcl, dc in st.deps):
                        break
                    run = ready.setdefault(client, [])
                    if run and run[-1].end != st.clock:
                        # Overlaps the run's end: one client has one section per
                        # update, so it goes out with the next ``release``.
                        break
                    held.remove(st)
                    run.append(st)
                    avail[client] = st.end
                    progress = True
                if not held:
                    del self._held[client]
        deletes: dict[int, list[tuple[int, int]]] = {}
        for client, ranges in list(self._deletes.items()):
            # Ranges are sorted by clock: only those starting below the state can go.
            have = avail.get(client, 0)
            j = bisect.bisect_left(ranges, (have, 0))
            if j == 0:
                continue
            out = deletes.setdefault(client, [])
            rest: list[tuple[int, int]] = []
            for clock, length in ranges[:j]:
                if clock + length <= have:
                    out.append((clock, length))
                else:
                    out.append((clock, have - clock))
                    rest.append((have, clock + length - have))
            del ranges[:j]
            for r in rest:
                bisect.insort(ranges, r)
            if not ranges:
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
