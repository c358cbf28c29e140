"""Helpers shared by the stores: page cursors, timestamps, ids, batch planning.

Private to ``persistence``; nothing here touches a database.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson

from persistence.base import ROLES, Notification, Page, ProjectListing, Role, Version
from persistence.errors import InvalidCursor

# load_document reads a long log in chunks of this many rows: the event loop runs other
# tasks between chunks (building 10,000 LogEntry objects takes ~10 ms), the driver's
# row objects live for one chunk only, and there are few round trips.
LOAD_CHUNK_ROWS = 10_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)

# -- timestamps -----------------------------------------------------------------------


def now_us() -> int:
    """The current time as integer microseconds since the Unix epoch (UTC)."""
    return time.time_ns() // 1000


def utc_from_us(us: int) -> datetime:
    """Microseconds since the epoch -> timezone-aware UTC datetime (exact)."""
    return _EPOCH + timedelta(microseconds=us)


def us_from_utc(dt: datetime) -> int:
    """Timezone-aware datetime -> microseconds since the epoch (exact)."""
    return (dt - _EPOCH) // _MICROSECOND


R = TypeVar("R")
T = TypeVar("T")

# -- cursors ----------------------------------------------------------------------------
# A cursor is base64url (unpadded) of the JSON list [tag, *last sort key]. The tag says
# which listing issued it, so a cursor of one listing is refused by another.


def encode_cursor(tag: str, *key: int | str) -> str:
    raw = orjson.dumps([tag, *key])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def page_of(
    rows: Sequence[R], limit: int, item: Callable[[R], T], cursor: Callable[[T], str]
) -> Page[T]:
    """A page of ``limit`` items from ``limit + 1`` fetched rows: the extra row says
    there is more, and the cursor is the last item's sort key."""
    items = [item(row) for row in rows[:limit]]
    return Page(items, cursor(items[-1]) if len(rows) > limit else None)


def project_cursor(listing: ProjectListing) -> str:
    return encode_cursor("projects", us_from_utc(listing.project.updated_at), listing.project.id)


def version_cursor(version: Version) -> str:
    return encode_cursor("versions", version.version)


def notification_cursor(notification: Notification) -> str:
    return encode_cursor("notifications", us_from_utc(notification.created_at), notification.id)


def _decode_cursor(cursor: str, tag: str) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor(f"invalid page cursor {cursor!r}") from exc
    if not isinstance(value, list) or not value or value[0] != tag:
        raise InvalidCursor(f"invalid page cursor {cursor!r}")
    return value[1:]


def decode_time_id_cursor(cursor: str, tag: str) -> tuple[int, str]:
    """Decode a ``(microseconds, id)`` cursor issued with ``tag``; ValueError if bad."""
    key = _decode_cursor(cursor, tag)
    if len(key) != 2 or type(key[0]) is not int or not isinstance(key[1], str):
        raise InvalidCursor(f"invalid page cursor {cursor!r}")
    return key[0], key[1]


def decode_int_cursor(cursor: str, tag: str) -> int:
    """Decode an integer cursor issued with ``tag``; ValueError if bad."""
    key = _decode_cursor(cursor, tag)
    if len(key) != 1 or type(key[0]) is not int:
        raise InvalidCursor(f"invalid page cursor {cursor!r}")
    return key[0]


def check_limit(limit: int) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")


# -- ids, roles, payloads -----------------------------------------------------------


def new_notification_id() -> str:
    """32 hex digits: 12 of milliseconds since the epoch, then 20 random (80 bits).

    Ids sort by creation time like ULIDs; 80 random bits make a clash between ids of
    the same millisecond negligible.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def as_role(value: str) -> Role:
    for role in ROLES:
        if role == value:
            return role
    raise ValueError(f"unknown role {value!r}")


def check_member_role(role: str) -> None:
    if role not in ("editor", "viewer"):
        raise ValueError(f"a member's role is 'editor' or 'viewer', not {role!r}")


def check_through_seq(through_seq: int, *, snapshot_seq: int, head_seq: int) -> None:
    # Below the current snapshot, rows in between are gone already; above the head
    # there is nothing to cover. Either is a caller bug, never a lost race.
    if not snapshot_seq <= through_seq <= head_seq:
        raise ValueError(
            f"through_seq {through_seq} outside [{snapshot_seq}, {head_seq}] "
            "(current snapshot .. log head)"
        )


def dump_json(value: object) -> str:
    return orjson.dumps(value).decode()


def load_json_object(text: str | bytes) -> dict[str, Any]:
    value = orjson.loads(text)
    if not isinstance(value, dict):
        raise ValueError("stored payload is not a JSON object")
    return value


# -- append batches ---------------------------------------------------------------------


def group_batch(batch: Sequence[tuple[str, bytes]]) -> dict[str, list[int]]:
    """Map each project of an append batch to the indexes of its entries, in order."""
    groups: dict[str, list[int]] = {}
    for index, (project_id, _update) in enumerate(batch):
        groups.setdefault(project_id, []).append(index)
    return groups


def assign_seqs(seqs: list[int | None], indexes: list[int], head: int) -> list[tuple[int, int]]:
    """Give ``indexes`` (one project's entries) the seqs ending at ``head``, in order.

    Fills ``seqs`` in place and returns ``(index, seq)`` pairs.
    """
    first = head - len(indexes) + 1
    pairs = [(index, first + offset) for offset, index in enumerate(indexes)]
    for index, seq in pairs:
        seqs[index] = seq
    return pairs
