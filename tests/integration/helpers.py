"""Small assertions shared by the REST integration tests."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.server import Rest


def expect_error(status: int, body: Any, want_status: int, code: str) -> dict[str, Any]:
    """Assert the error contract ``{"error": {"code", "message", "details"}}``; return
    the inner ``error`` object."""
    assert status == want_status, (status, body)
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    assert isinstance(error["details"], dict), error
    return dict(error)


def is_timestamp(value: Any) -> bool:
    """An ISO 8601 timestamp with a time zone."""
    if not isinstance(value, str):
        return False
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return False
    return parsed.tzinfo is not None


async def all_pages(rest: Rest, path: str, token: str, *, limit: int) -> list[list[dict[str, Any]]]:
    """Follow ``next_cursor`` from the first page; return every page's items."""
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    sep = "&" if "?" in path else "?"
    while True:
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        status, body = await rest.get(url, token=token)
        assert status == 200, body
        assert set(body) == {"items", "next_cursor"}, body
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "paging does not end"
