"""JWT verification (and development tokens).

Strict decoding: an explicit algorithm allow-list, ``sub`` and ``exp`` required,
``iss``/``aud`` checked when configured, small leeway. ``alg: none`` is never accepted,
and the key is chosen by the algorithm *family* the settings allow, so an HMAC token
can never be verified with a public key taken as a secret (algorithm confusion).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jwt

from auth.errors import InvalidToken, MissingToken, TokenExpired
from auth.principal import Principal

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})


class TokenVerifier:
    """Turns a bearer token into a ``Principal``.

    Arguments:
        algorithms: the accepted ``alg`` values.
        secret: key for HS* algorithms.
        public_key: PEM key for RS*/ES*/EdDSA algorithms.
        issuer, audience: checked when given.
        leeway_s: tolerated clock skew for exp/nbf/iat.
        admin_role, service_role: values of the ``roles`` claim with special rights.
    """

    def __init__(
        self,
        *,
        algorithms: Sequence[str],
        secret: str | None = None,
        public_key: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: float = 30.0,
        admin_role: str = "admin",
        service_role: str = "service",
    ) -> None:
        algs = [a for a in algorithms if a.lower() != "none"]
        if not algs:
            raise ValueError("no JWT algorithm allowed")
        if any(a in HMAC_ALGORITHMS for a in algs) and not secret:
            raise ValueError("HS* algorithms need a secret")
        if any(a not in HMAC_ALGORITHMS for a in algs) and not public_key:
            raise ValueError("RS*/ES*/EdDSA algorithms need a public key")
        self._algorithms = algs
        self._secret = secret
        self._public_key = public_key
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._admin_role = admin_role
        self._service_role = service_role

    def verify(self, token: object) -> Principal:
        if token is None or token == "":
            raise MissingToken("a token is required")
        if not isinstance(token, str):
            raise InvalidToken("the token must be a string")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise InvalidToken(f"algorithm {alg!r} is not accepted")
        key = self._secret if alg in HMAC_ALGORITHMS else self._public_key
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=[alg],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpired("the token has expired") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {exc}") from exc
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise InvalidToken("claim 'sub' must be a non-empty string")
        name = claims.get("name")
        if name is not None and not isinstance(name, str):
            raise InvalidToken("claim 'name' must be a string")
        roles_claim = claims.get("roles", [])
        if not isinstance(roles_claim, list) or not all(isinstance(r, str) for r in roles_claim):
            raise InvalidToken("claim 'roles' must be a list of strings")
        roles = frozenset(roles_claim)
        exp = claims.get("exp")
        return Principal(
            user_id=sub,
            name=name,
            roles=roles,
            is_admin=self._admin_role in roles,
            is_service=self._service_role in roles,
            expires_at=float(exp) if isinstance(exp, int | float) else None,
        )


def issue_token(
    secret: str,
    *,
    sub: str,
    name: str | None = None,
    roles: Sequence[str] = (),
    ttl_s: float = 3600.0,
    algorithm: str = "HS256",
) -> str:
    """A signed HS* token (development, tests, ``collab token``)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl_s)}
    if name:
        claims["name"] = name
    if roles:
        claims["roles"] = list(roles)
    return jwt.encode(claims, secret, algorithm=algorithm)
