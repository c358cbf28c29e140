"""Who is calling: the verified claims of a token."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    name: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    is_admin: bool = False
    is_service: bool = False
    expires_at: float | None = None  # epoch seconds of ``exp``

    @property
    def display_name(self) -> str:
        return self.name or self.user_id

    @property
    def is_privileged(self) -> bool:
        """Admins and platform services may act on every project."""
        return self.is_admin or self.is_service
