"""Project roles turned into capabilities.

A connection or request resolves once to an ``Access`` level; every later action is
checked against that level (``require``), not only the join. Admins and services act on
every project with the owner's rights.
"""

from __future__ import annotations

import enum

from auth.errors import PermissionDenied
from auth.principal import Principal


class Access(enum.IntEnum):
    NONE = 0
    READ = 1  # viewer: receive edits, show presence
    WRITE = 2  # editor: change the graph
    MANAGE = 3  # owner (and admins/services): members, rename, delete

    @classmethod
    def for_role(cls, role: str | None, principal: Principal) -> Access:
        if principal.is_privileged:
            return cls.MANAGE
        return {"owner": cls.MANAGE, "editor": cls.WRITE, "viewer": cls.READ}.get(
            role or "", cls.NONE
        )


def require(access: Access, needed: Access, what: str) -> None:
    """Raise ``PermissionDenied`` unless ``access`` is at least ``needed``."""
    if access < needed:
        raise PermissionDenied(f"{what} needs the {needed.name.lower()} right")
