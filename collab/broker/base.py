"""The Broker: the one path between server instances.

Two kinds of traffic cross it:

* **Document streams** (ordered, replayable): one stream per project. Every instance
  that holds the project's room reads every entry in order; an entry carries the id of
  the instance that published it, and a reader never gets its own entries back through
  ``on_stream_entries``. Entries are Yjs updates, opaque here. Duplicates are harmless
  (CRDT apply is idempotent); gaps are not allowed: after an outage the reader resumes
  from the last id it delivered, and when the entries after that id were trimmed it
  calls ``on_stream_gap`` so the room catches up from the store instead.

* **Channels** (ephemeral pub/sub): presence, cluster control messages (role changes,
  admin actions, notifications). At most once; losses are repaired by the next message
  (presence heartbeats) or do not matter (the store holds notifications).

Plus small pieces of shared state: the instance heartbeat (which instances are alive),
the room registry (what each instance holds, for the admin view) and per-project
*in-flight markers* (an instance has published entries it has not yet committed to
the store: the stream must not be trimmed past them).

Outgoing operations (``publish_update``, ``set_inflight``, ``publish``) are queued and
sent by one writer task in the order they were called, retried while the backend is
down (bounded: past the bound the oldest are dropped and counted, and the room
catches up from the store). They never block the caller on the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


class BrokerError(Exception):
    """Any failure of the broker."""


class BrokerUnavailable(BrokerError):
    """The backend (Redis) cannot be reached."""


class StreamTrimmed(BrokerError):
    """Entries after the requested id are gone: catch up from the store."""


@dataclass(frozen=True, slots=True)
class StreamEntry:
    id: str  # ordered per project; Redis stream ids ("<ms>-<n>") for both backends
    origin: str  # instance id of the publisher
    payload: bytes


class BrokerHandler(Protocol):
    """What the broker calls back into (the room manager). Callbacks must not raise."""

    async def on_stream_entries(self, project_id: str, entries: list[StreamEntry]) -> None:
        """Entries of other instances, in stream order, for a joined project."""

    async def on_stream_gap(self, project_id: str) -> None:
        """Entries after the last delivered id were trimmed before they were read."""

    async def on_message(self, channel: str, payload: bytes) -> None:
        """A message on a subscribed channel (including this instance's own)."""

    async def on_recovered(self) -> None:
        """The backend is reachable again after an outage (resync clients, catch up)."""


class Broker(Protocol):
    instance_id: str
    kind: str  # "memory" | "redis"

    @property
    def healthy(self) -> bool:
        """False while the backend is unreachable."""

    async def start(self, handler: BrokerHandler) -> None:
        """Connect and start the reader and writer tasks. A second start raises."""

    async def close(self) -> None:
        """Flush queued writes (bounded wait), stop tasks, drop this instance's
        heartbeat and registry entries."""

    async def ping(self) -> None:
        """Raise ``BrokerUnavailable`` unless the backend answers."""

    # -- document streams --------------------------------------------------------

    async def join_stream(self, project_id: str) -> str:
        """Start reading the project's stream. Return the position (id of the last
        entry now in the stream, ``"0-0"`` when empty): every entry after it will be
        passed to ``on_stream_entries`` (or a gap reported). Idempotent."""

    async def leave_stream(self, project_id: str) -> None:
        """Stop reading the project's stream."""

    async def read_stream(self, project_id: str, after: str) -> list[StreamEntry]:
        """Entries with id > ``after`` (all origins, including this instance's), in order.
        Raise ``StreamTrimmed`` if some entries after ``after`` were trimmed away."""

    def publish_update(self, project_id: str, payload: bytes) -> None:
        """Queue an entry for the project's stream (see module docstring)."""

    async def published(self, timeout: float) -> None:
        """Wait until every entry queued so far is in its stream (readable by other
        instances), at most ``timeout`` seconds; return at once while the stream store is
        unreachable. The committer calls it before each commit, so that an update is
        never stored (and acked) while other instances could still miss it because this
        one died before publishing it."""

    def set_inflight(self, project_id: str, since_ms: int | None) -> None:
        """Queue: this instance has (``since_ms``) or no longer has (None) published
        entries for the project that are not in the store yet. The stream is never
        trimmed past the oldest in-flight marker of any instance."""

    async def inflight_markers(self, project_id: str) -> dict[str, int]:
        """``{instance_id: since_ms}`` of every instance's in-flight marker."""

    async def clear_inflight(self, project_id: str, instance_id: str) -> None:
        """Remove another (dead) instance's marker once its entries are stored."""

    # -- channels ----------------------------------------------------------------

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...

    def publish(self, channel: str, payload: bytes) -> None:
        """Queue a message to every subscriber of the channel on every instance."""

    # -- cluster state -------------------------------------------------------------

    async def heartbeat(self, rooms: list[dict[str, Any]], ttl_s: float) -> None:
        """Record that this instance is alive and holds ``rooms`` (JSON-able dicts with
        at least ``project_id``), for ``ttl_s`` seconds."""

    async def live_instances(self) -> dict[str, dict[str, Any]]:
        """``{instance_id: {"rooms": [...], "updated_at": epoch_s}}`` of live instances."""
