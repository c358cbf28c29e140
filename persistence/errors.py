"""Errors raised by stores.

    StoreError                 any failure of a store
     +-- NotFound              the project / version / notification does not exist
     +-- Conflict              the write clashes with existing data (duplicate id, lost lease)
     +-- StoreUnavailable      the database cannot be reached or failed; retry later

Each store translates its driver's errors into these where they enter our code
(``from exc``), so nothing above ``persistence`` sees asyncpg or sqlite3 exceptions.
"""

from __future__ import annotations


class StoreError(Exception):
    """Any failure of a store."""


class NotFound(StoreError):
    """The project, version or notification does not exist."""


class Conflict(StoreError):
    """The write clashes with existing data (duplicate id, lost compaction lease)."""


class StoreUnavailable(StoreError):
    """The database cannot be reached or failed; the caller may retry later."""
