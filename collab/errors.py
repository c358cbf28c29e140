"""The server's errors and their one wire shape.

    CollabError (code, status)                        INTERNAL            500
     +-- BadRequest                                   BAD_REQUEST         400
     |    +-- InvalidProjectId                        INVALID_PROJECT_ID  400
     |    +-- InvalidUpdate                           INVALID_UPDATE      400
     |    +-- InvalidAwareness                        INVALID_AWARENESS   400
     +-- Unauthenticated                              UNAUTHENTICATED     401
     +-- Forbidden                                    FORBIDDEN           403
     +-- NotFoundError                                NOT_FOUND           404
     +-- MethodNotAllowed                             METHOD_NOT_ALLOWED  405
     +-- ConflictError                                CONFLICT            409
     +-- PayloadTooLarge                              PAYLOAD_TOO_LARGE   413
     +-- ValidationFailed                             VALIDATION_FAILED   422
     +-- RateLimited                                  RATE_LIMITED        429
     +-- Unavailable                                  UNAVAILABLE         503

Every error reaches a client as ``{"error": {"code", "message", "details"}}``: REST with
the status above, sockets as an ``error`` event (or the data of a ``connect_error``).
``to_collab_error`` translates the errors of ``auth`` and ``persistence`` in one place.
"""

from __future__ import annotations

from typing import Any, ClassVar

from auth.errors import AuthError, PermissionDenied
from persistence.errors import Conflict, InvalidCursor, NotFound, StoreError, StoreUnavailable


class CollabError(Exception):
    code: ClassVar[str] = "INTERNAL"
    status: ClassVar[int] = 500

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def payload(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class BadRequest(CollabError):
    code = "BAD_REQUEST"
    status = 400


class InvalidProjectId(BadRequest):
    code = "INVALID_PROJECT_ID"


class InvalidUpdate(BadRequest):
    code = "INVALID_UPDATE"


class InvalidAwareness(BadRequest):
    code = "INVALID_AWARENESS"


class Unauthenticated(CollabError):
    code = "UNAUTHENTICATED"
    status = 401


class Forbidden(CollabError):
    code = "FORBIDDEN"
    status = 403


class NotFoundError(CollabError):
    code = "NOT_FOUND"
    status = 404


class MethodNotAllowed(CollabError):
    code = "METHOD_NOT_ALLOWED"
    status = 405


class ConflictError(CollabError):
    code = "CONFLICT"
    status = 409


class PayloadTooLarge(CollabError):
    code = "PAYLOAD_TOO_LARGE"
    status = 413


class ValidationFailed(CollabError):
    code = "VALIDATION_FAILED"
    status = 422


class RateLimited(CollabError):
    code = "RATE_LIMITED"
    status = 429


class Unavailable(CollabError):
    code = "UNAVAILABLE"
    status = 503


def to_collab_error(exc: BaseException) -> CollabError:
    """Map any exception to the error a client sees (unknown ones become INTERNAL,
    without leaking their text)."""
    if isinstance(exc, CollabError):
        return exc
    if isinstance(exc, PermissionDenied):
        return Forbidden(str(exc))
    if isinstance(exc, AuthError):
        return Unauthenticated(str(exc), {"reason": exc.reason})
    if isinstance(exc, InvalidCursor):
        return BadRequest("invalid page cursor; use the next_cursor of a previous page")
    if isinstance(exc, NotFound):
        return NotFoundError(str(exc) or "not found")
    if isinstance(exc, Conflict):
        return ConflictError(str(exc) or "conflict")
    if isinstance(exc, StoreUnavailable):
        return Unavailable("the store is unavailable, retry later")
    if isinstance(exc, StoreError):
        return CollabError("storage error")
    return CollabError("internal error")
