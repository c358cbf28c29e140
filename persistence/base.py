"""The Store interface: projects, members, the per-project update log, snapshots,
versions and notifications.

Document bytes are opaque here: a store never decodes a Yjs update. Merging the log
into a snapshot is done by the caller (``collab.compaction``), which hands the store
the new snapshot and the log position it covers.

Log sequence numbers (``seq``) are per project, gap-free and in commit order: the
store assigns them under a per-project row lock, so a reader that has seen ``seq``
N has seen every row below it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

Role = Literal["owner", "editor", "viewer"]
MemberRole = Literal["editor", "viewer"]
ROLES: tuple[Role, ...] = ("owner", "editor", "viewer")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    owner: str
    created_at: datetime
    updated_at: datetime
    read_only: bool = False  # an admin froze it: nobody changes the document


@dataclass(frozen=True, slots=True)
class ProjectListing:
    """A project as seen by one user: the project and that user's role in it."""

    project: Project
    role: Role


@dataclass(frozen=True, slots=True)
class Member:
    user_id: str
    role: Role
    added_at: datetime


@dataclass(frozen=True, slots=True)
class LogEntry:
    seq: int
    update: bytes


@dataclass(frozen=True, slots=True)
class LoadedDoc:
    """What a store holds of one document.

    ``snapshot`` covers every log row with ``seq <= snapshot_seq``; ``updates`` are the
    rows after it in seq order. ``head_seq`` is the highest seq ever assigned
    (== the last update's seq, or ``snapshot_seq`` when the tail is empty).
    When ``load_document`` was called with ``after_seq`` and the log still holds every
    row after it (``after_seq >= `` the stored snapshot's seq), ``snapshot`` is None,
    ``snapshot_seq == after_seq`` and ``updates`` starts at ``after_seq + 1``.
    A project never compacted has no snapshot: None, ``snapshot_seq == 0``.
    """

    snapshot: bytes | None
    snapshot_seq: int
    updates: list[LogEntry]
    head_seq: int


@dataclass(frozen=True, slots=True)
class LogStats:
    """The update log of one project: its rows and their bytes (the snapshot not
    included), the highest seq assigned and the seq the snapshot covers (0: none)."""

    rows: int
    bytes: int
    head_seq: int
    snapshot_seq: int


@dataclass(frozen=True, slots=True)
class Version:
    project_id: str
    version: int
    label: str | None
    created_by: str | None
    created_at: datetime
    node_count: int
    edge_count: int
    log_seq: int


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    user_id: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing. ``next_cursor`` (opaque) fetches the next page; None on
    the last one. Cursors hold the last sort key, so inserts do not shift later pages."""

    items: list[T]
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Seqs assigned to one ``append_updates`` batch, in input order.

    ``None`` for an entry whose project no longer exists (deleted meanwhile): such
    updates are dropped, since there is nothing left to attach them to.
    """

    seqs: list[int | None] = field(default_factory=list)


@runtime_checkable
class Store(Protocol):
    """Durable state of the server. Every method may raise ``StoreUnavailable``.

    Timestamps are timezone-aware UTC datetimes. Listings take ``limit >= 1`` and a
    ``cursor`` from a previous page of the same listing; anything else raises
    ``ValueError``. Methods that name a project raise ``NotFound`` when it does not
    exist, except where said otherwise. Using a store before ``start()`` raises
    ``RuntimeError``.
    """

    kind: str  # "sqlite" | "postgres", for logs and /readyz
    applied_migrations: list[str]  # what ``start()`` applied

    async def start(self) -> None:
        """Open connections and apply pending migrations (idempotent, safe to race)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the database answers."""

    async def migrate(self) -> list[str]:
        """Apply pending migrations; return the names applied by this call."""

    # -- projects and members -------------------------------------------------------

    async def create_project(self, project_id: str, name: str, owner: str) -> Project:
        """Raise ``Conflict`` when the id exists."""

    async def get_project(self, project_id: str) -> Project:
        """Raise ``NotFound``."""

    async def list_projects(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[ProjectListing]:
        """Projects the user owns or is a member of, most recently updated first."""

    async def rename_project(self, project_id: str, name: str) -> Project: ...

    async def set_read_only(self, project_id: str, read_only: bool) -> Project:
        """Freeze (or unfreeze) the document. Raise ``NotFound``."""

    async def delete_project(self, project_id: str) -> None:
        """Delete the project and everything attached to it. Raise ``NotFound``."""

    async def get_role(self, project_id: str, user_id: str) -> Role | None:
        """The user's role, or None when not a member. Raise ``NotFound`` for no project."""

    async def set_member(self, project_id: str, user_id: str, role: MemberRole) -> Member:
        """Add or change a member (a change keeps ``added_at``). Raise ``Conflict`` when
        ``user_id`` is the owner, ``ValueError`` for a role other than editor/viewer."""

    async def remove_member(self, project_id: str, user_id: str) -> bool:
        """Return False when the user was not a member."""

    async def list_members(self, project_id: str) -> list[Member]:
        """The owner first (``added_at`` = the project's creation), then members by user
        id."""

    # -- the document: update log, snapshots, compaction ----------------------------

    async def append_updates(self, batch: Sequence[tuple[str, bytes]]) -> AppendResult:
        """Append ``(project_id, update)`` pairs in one transaction (group commit).

        A project's entries get consecutive seqs in batch order and bump its
        ``updated_at``. Entries of a missing project get None (see ``AppendResult``);
        the rest commit. Durable when this returns.
        """

    async def load_document(self, project_id: str, *, after_seq: int = 0) -> LoadedDoc:
        """Latest snapshot + log tail (see ``LoadedDoc``), read as of one moment even
        while a compaction commits. Raise ``NotFound``; ``ValueError`` if
        ``after_seq < 0``."""

    async def log_stats(self, project_id: str) -> LogStats:
        """Raise ``NotFound``."""

    async def acquire_compaction_lease(
        self, project_id: str, holder: str, ttl_s: float
    ) -> int | None:
        """Take the project's compaction lease for ``ttl_s`` (> 0) seconds; return its
        fence token (growing with every acquire), or None while someone (whoever) holds
        an unexpired lease. Raise ``NotFound``."""

    async def compact(
        self, project_id: str, *, fence: int, snapshot: bytes, through_seq: int
    ) -> bool:
        """In one transaction: check the fence still holds, store ``snapshot`` as covering
        every row ``<= through_seq``, delete those rows and release the lease. Return
        False (and change nothing) when the fence was lost.

        A fence holds until a later acquire supersedes it or the lease is released, even
        past its TTL (nobody else can have compacted meanwhile). A missing project
        returns False. ``through_seq`` must lie between the current snapshot's seq and
        the log head (``ValueError``).
        """

    async def release_compaction_lease(self, project_id: str, fence: int) -> None:
        """Release the lease if ``fence`` still holds it; otherwise (or with no project)
        do nothing."""

    # -- versions -------------------------------------------------------------------

    async def create_version(
        self,
        project_id: str,
        *,
        state: bytes,
        label: str | None,
        created_by: str | None,
        node_count: int,
        edge_count: int,
        log_seq: int,
    ) -> Version:
        """Store an immutable version numbered 1, 2, ... per project (numbers never
        clash, whichever instance creates them)."""

    async def list_versions(
        self, project_id: str, *, limit: int, cursor: str | None = None
    ) -> Page[Version]:
        """Newest first."""

    async def get_version(self, project_id: str, version: int) -> Version:
        """Raise ``NotFound``."""

    async def get_version_state(self, project_id: str, version: int) -> bytes:
        """The full encoded document of that version. Raise ``NotFound``."""

    async def latest_version(self, project_id: str) -> Version | None:
        """None when the project has no version yet."""

    # -- notifications ----------------------------------------------------------------

    async def add_notifications(
        self, user_ids: Sequence[str], kind: str, payload: dict[str, Any]
    ) -> list[Notification]:
        """One notification per user, in ``user_ids`` order; ``payload`` must be JSON."""

    async def list_notifications(
        self, user_id: str, *, unread_only: bool, limit: int, cursor: str | None = None
    ) -> Page[Notification]:
        """Newest first (``created_at``, then ``id``); users need not exist."""

    async def mark_notification_read(self, user_id: str, notification_id: str) -> Notification:
        """Idempotent. Raise ``NotFound`` when it is not this user's notification."""

    async def mark_all_read(self, user_id: str) -> int:
        """Return how many were unread."""
