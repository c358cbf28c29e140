"""Presence of one room: the Yjs awareness states of its clients, coalesced.

We keep our own table instead of ``pycrdt.Awareness`` because the server needs three
things it does not do: know which socket owns which awareness client id (to remove a
socket's entries the moment it disconnects, and to ignore the echoes of others'
entries that the stock client sends back), stamp the authenticated identity into each
state (a client cannot claim to be someone else), and coalesce: entries changed since
the last flush go out as one message per room per tick, so a storm of cursor moves
costs one emit per tick.

Apply rules follow y-protocols: an entry is taken when its clock is newer, or equal with
a null state for a present entry (a removal reusing the current clock).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from auth.principal import Principal
from collab.protocol import (
    AwarenessEntry,
    decode_awareness,
    dumps_state,
    encode_awareness,
    loads_state,
)

# y-protocols' outdatedTimeout: clients renew their state every 15 s and drop others'
# after 30 s without news. We expire remote (other instances') entries the same way;
# local ones go as soon as their socket disconnects, and those of an instance that
# died go as soon as it drops out of the instance registry (``drop_origins``).
OUTDATED_TIMEOUT_S = 30.0


@dataclass(slots=True)
class _Entry:
    clock: int
    state_json: str  # "null" once removed (kept so older clocks stay refused)
    updated: float
    owner: str | None  # local sid, or None when the entry came from another instance
    user: dict[str, Any] | None = None
    origin: str | None = None  # the instance a remote entry came from


@dataclass(frozen=True, slots=True)
class Flush:
    payload: bytes  # every changed entry: for the room's local sockets
    local_payload: bytes | None  # entries changed here: for the other instances
    owners: set[str]  # local sids owning every entry (they need not get it back)


@dataclass(slots=True)
class Presence:
    entries: dict[int, _Entry] = field(default_factory=dict)
    _dirty: set[int] = field(default_factory=set)
    _dirty_local: set[int] = field(default_factory=set)  # changed by a local socket
    _owned: dict[str, set[int]] = field(default_factory=dict)
    _offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    # -- input -------------------------------------------------------------------------

    def apply_local(self, sid: str, principal: Principal, data: bytes) -> bool:
        """Apply a client's update; stamp identity; return True when anything changed.

        The stock y-socket.io client re-emits every awareness change it receives, so most
        entries a socket sends are echoes of other clients' states. An entry counts as
        the socket's own when the socket already owns the id, or the id is unknown, or
        the entry is newer than anything we know of it (a client only learns others'
        states through us, so it cannot have a newer one). Everything else is an echo
        and ignored. Raises ``InvalidAwareness`` for malformed bytes.
        """
        changed = False
        owned = self._owned.setdefault(sid, set())
        for entry in decode_awareness(data):
            cid = entry.client_id
            current = self.entries.get(cid)
            if cid not in owned:
                if current is not None and current.owner is not None:
                    continue  # another local socket's entry, echoed
                removed = current is not None and current.state_json == "null"
                if current is not None and entry.clock <= current.clock:
                    if not removed or entry.state is None:
                        continue  # an echo of a known state
                    # A reconnecting client reclaims its id after we announced its
                    # removal: its clock must go past the removal everyone has seen.
                    self._offsets[(sid, cid)] = current.clock + 1 - entry.clock
                owned.add(cid)
            clock = entry.clock + self._offsets.get((sid, cid), 0)
            state = _stamp(entry.state, principal)
            if self._accept(AwarenessEntry(cid, clock, state), dumps_state(state), owner=sid):
                self.entries[cid].user = state.get("user") if state else None
                self._dirty_local.add(cid)
                changed = True
        return changed

    def apply_remote(self, data: bytes, origin: str | None = None) -> bool:
        """Apply an update relayed by instance ``origin`` (already stamped there)."""
        changed = False
        for entry in decode_awareness(data):
            current = self.entries.get(entry.client_id)
            if current is not None and current.owner is not None:
                continue  # ours: another instance cannot overwrite a local client
            if self._accept(entry, dumps_state(entry.state), owner=None):
                accepted = self.entries[entry.client_id]
                accepted.user = entry.state.get("user") if entry.state else None
                accepted.origin = origin if entry.state is not None else None
                changed = True
        return changed

    def remote_origins(self) -> set[str]:
        """The instances whose clients have a state here."""
        return {
            e.origin
            for e in self.entries.values()
            if e.origin is not None and e.owner is None and e.state_json != "null"
        }

    def drop_origins(self, dead: set[str]) -> bool:
        """Remove the entries of clients of instances that died."""
        return self._remove(
            {
                cid
                for cid, e in self.entries.items()
                if e.owner is None and e.origin in dead and e.state_json != "null"
            }
        )

    def _accept(self, entry: AwarenessEntry, state_json: str, owner: str | None) -> bool:
        current = self.entries.get(entry.client_id)
        removal = state_json == "null"
        if current is not None:
            present = current.state_json != "null"
            newer = entry.clock > current.clock
            if not (newer or (entry.clock == current.clock and removal and present)):
                return False
        self.entries[entry.client_id] = _Entry(
            entry.clock, state_json, time.monotonic(), None if removal else owner
        )
        self._dirty.add(entry.client_id)
        return True

    def remove_sid(self, sid: str) -> bool:
        """Remove every entry the socket owns (it disconnected)."""
        ids = self._owned.pop(sid, set())
        for cid in ids:
            self._offsets.pop((sid, cid), None)
        self._dirty_local |= ids
        return self._remove(ids)

    def expire(self, now: float | None = None) -> bool:
        """Remove remote entries not renewed for ``OUTDATED_TIMEOUT_S``."""
        now = time.monotonic() if now is None else now
        # Tombstones keep a removed id's clock so late, older entries stay refused;
        # after the timeout no client holds such an entry any more.
        for cid in [
            cid
            for cid, e in self.entries.items()
            if e.state_json == "null"
            and now - e.updated > OUTDATED_TIMEOUT_S
            and cid not in self._dirty
        ]:
            del self.entries[cid]
        stale = {
            cid
            for cid, e in self.entries.items()
            if e.owner is None and e.state_json != "null" and now - e.updated > OUTDATED_TIMEOUT_S
        }
        return self._remove(stale)

    def _remove(self, ids: set[int]) -> bool:
        changed = False
        for cid in ids:
            current = self.entries.get(cid)
            if current is None or current.state_json == "null":
                continue
            self.entries[cid] = _Entry(current.clock + 1, "null", time.monotonic(), None)
            self._dirty.add(cid)
            changed = True
        return changed

    # -- output ------------------------------------------------------------------------

    def take_dirty(self) -> Flush | None:
        """The coalesced changes since the last call (see ``Flush``)."""
        if not self._dirty:
            return None
        ids = sorted(self._dirty)
        local_ids = [cid for cid in ids if cid in self._dirty_local]
        self._dirty.clear()
        self._dirty_local.clear()
        owners = {self.entries[cid].owner for cid in ids}
        only_owner = {o for o in owners if o is not None} if len(owners) == 1 else set()
        return Flush(
            payload=self._encode(ids),
            local_payload=self._encode(local_ids) if local_ids else None,
            owners=only_owner,
        )

    def _encode(self, ids: list[int]) -> bytes:
        return encode_awareness(
            [(cid, self.entries[cid].clock, self.entries[cid].state_json) for cid in ids]
        )

    def encode_all(self) -> bytes:
        """Every present state, for a newly connected client."""
        return encode_awareness(
            [
                (cid, e.clock, e.state_json)
                for cid, e in self.entries.items()
                if e.state_json != "null"
            ]
        )

    def users(self) -> list[dict[str, Any]]:
        """Present users' stamped identities and state sizes (admin view)."""
        out = []
        for cid, e in self.entries.items():
            if e.state_json == "null":
                continue
            out.append({"client_id": cid, "user": e.user, "local": e.owner is not None})
        return out

    def states(self) -> dict[int, dict[str, Any]]:
        return {
            cid: loads_state(e.state_json)
            for cid, e in self.entries.items()
            if e.state_json != "null"
        }


def _stamp(state: dict[str, Any] | None, principal: Principal) -> dict[str, Any] | None:
    """Overwrite the identity part of a state with the token's (keep colour etc.)."""
    if state is None:
        return None
    user = state.get("user")
    user = dict(user) if isinstance(user, dict) else {}
    user["id"] = principal.user_id
    user["name"] = principal.display_name
    return {**state, "user": user}
