"""Errors raised by stores.

    StoreError                 any failure of a store
     +-- InvalidCursor         a page cursor that no listing of ours produced (also a ValueError)
 +-- NotFound              the project / version / notification does not exist
     +-- Conflict              the write clashes with existing data (duplicate id, lost lease)
     +-- StoreUnavailable      the database cannot be reached, failed, or the store is closed

Each store translates its driver's errors into these where they enter our code
(``from exc``), so nothing above ``persistence`` sees asyncpg or sqlite3 exceptions.
"""

from __future__ import annotations


class StoreError(Exception):
    """Any failure of a store."""


class InvalidCursor(StoreError, ValueError):
    """A page cursor that no listing of ours produced."""


class NotFound(StoreError):
    """The project, version or notification does not exist."""


class Conflict(StoreError):
    """The write clashes with existing data (duplicate id, lost compaction lease)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or failed; the caller may retry later."""
