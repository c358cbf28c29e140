"""Request and response bodies of the REST API (pydantic; also the OpenAPI schemas)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from persistence.base import Member, Notification, Project, ProjectListing, Version


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _name(value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError("must not be blank")
    return value


class ProjectCreate(Strict):
    name: str = Field(min_length=1, max_length=200)

    _strip = field_validator("name")(_name)


class ProjectRename(Strict):
    name: str = Field(min_length=1, max_length=200)

    _strip = field_validator("name")(_name)


class ProjectOut(BaseModel):
    id: str
    name: str
    owner: str
    created_at: datetime
    updated_at: datetime
    read_only: bool = False
    role: Literal["owner", "editor", "viewer", "admin"] | None = None

    @classmethod
    def of(cls, p: Project, role: str | None = None) -> ProjectOut:
        return cls(
            id=p.id,
            name=p.name,
            owner=p.owner,
            created_at=p.created_at,
            updated_at=p.updated_at,
            read_only=p.read_only,
            role=role,  # type: ignore[arg-type]
        )

    @classmethod
    def listing(cls, item: ProjectListing) -> ProjectOut:
        return cls.of(item.project, item.role)


class ProjectPage(BaseModel):
    items: list[ProjectOut]
    next_cursor: str | None


class PageQuery(Strict):
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=500)


class MemberPut(Strict):
    role: Literal["editor", "viewer"]


class MemberOut(BaseModel):
    user_id: str
    role: Literal["owner", "editor", "viewer"]
    added_at: datetime

    @classmethod
    def of(cls, m: Member) -> MemberOut:
        return cls(user_id=m.user_id, role=m.role, added_at=m.added_at)


class MemberList(BaseModel):
    items: list[MemberOut]


class VersionCreate(Strict):
    label: str | None = Field(default=None, max_length=200)


class VersionOut(BaseModel):
    version: int
    label: str | None
    created_by: str | None
    created_at: datetime
    node_count: int
    edge_count: int

    @classmethod
    def of(cls, v: Version) -> VersionOut:
        return cls(
            version=v.version,
            label=v.label,
            created_by=v.created_by,
            created_at=v.created_at,
            node_count=v.node_count,
            edge_count=v.edge_count,
        )


class VersionPage(BaseModel):
    items: list[VersionOut]
    next_cursor: str | None


class VersionWithGraph(VersionOut):
    graph: dict[str, Any]


class RestoreRequest(Strict):
    nodes: list[str] | None = Field(default=None, max_length=10_000)


class RestoreOut(BaseModel):
    restored_from: int
    nodes: list[str] | None
    version: VersionOut
    graph: dict[str, Any]


class NotificationCreate(Strict):
    user_ids: list[str] = Field(min_length=1, max_length=1000)
    kind: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")
    payload: dict[str, Any] = Field(default_factory=dict)


class NotificationOut(BaseModel):
    id: str
    user_id: str
    kind: str
    payload: dict[str, Any]
    created_at: datetime
    read_at: datetime | None

    @classmethod
    def of(cls, n: Notification) -> NotificationOut:
        return cls(
            id=n.id,
            user_id=n.user_id,
            kind=n.kind,
            payload=n.payload,
            created_at=n.created_at,
            read_at=n.read_at,
        )


class NotificationList(BaseModel):
    items: list[NotificationOut]


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    next_cursor: str | None


class NotificationQuery(PageQuery):
    unread: bool = False


class ReadAllOut(BaseModel):
    marked: int


class KickRequest(Strict):
    user_id: str = Field(min_length=1, max_length=256)


class ReadOnlyRequest(Strict):
    read_only: bool


class RoomsQuery(Strict):
    sort: Literal["activity", "connections", "updates", "size", "project"] = "activity"


class ActionOut(BaseModel):
    ok: bool
    affected: int = 0
    detail: dict[str, Any] = Field(default_factory=dict)
