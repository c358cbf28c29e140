"""Errors of authentication and authorization.

AuthError (reason)             the caller is not who they claim (-> UNAUTHENTICATED)
 +-- MissingToken              no token was presented
 +-- InvalidToken              bad signature, algorithm, claims or format
 +-- TokenExpired              ``exp`` is in the past
PermissionDenied               authenticated, but not allowed (-> FORBIDDEN)
"""

from __future__ import annotations


class AuthError(Exception):
    reason = "invalid"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class MissingToken(AuthError):
    reason = "missing"


class InvalidToken(AuthError):
    reason = "invalid"


class TokenExpired(AuthError):
    reason = "expired"


class PermissionDenied(Exception):
    """The principal lacks the role the action needs."""
