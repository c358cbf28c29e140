"""auth.tokens: strict JWT verification (and development tokens)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from auth.errors import AuthError, InvalidToken, MissingToken, TokenExpired
from auth.principal import Principal
from auth.tokens import TokenVerifier, issue_token

SECRET = "unit-test-secret-" + "0123456789abcdef" * 4  # 80 bytes: enough for HS512


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str]:
    """(private PEM, public PEM) of a fresh RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def hs(
    claims: dict[str, Any],
    *,
    secret: str = SECRET,
    algorithm: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    return jwt.encode(claims, secret, algorithm=algorithm, headers=headers)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice", "iat": now, "exp": now + 600, **extra}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    header = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def verifier(**kw: Any) -> TokenVerifier:
    return TokenVerifier(**{"algorithms": ["HS256"], "secret": SECRET, **kw})


# -- accepted ------------------------------------------------------------------------------


def test_valid_token_gives_a_principal() -> None:
    c = claims(name="Alice", roles=["editor"])
    principal = verifier().verify(hs(c))
    assert principal == Principal(
        user_id="alice",
        name="Alice",
        roles=frozenset({"editor"}),
        is_admin=False,
        is_service=False,
        expires_at=float(c["exp"]),
    )
    assert principal.display_name == "Alice"
    assert not principal.is_privileged


def test_name_and_roles_are_optional() -> None:
    principal = verifier().verify(hs(claims()))
    assert principal.name is None and principal.display_name == "alice"
    assert principal.roles == frozenset()


@pytest.mark.parametrize(
    ("roles", "admin", "service"),
    [
        (["admin"], True, False),
        (["service"], False, True),
        (["admin", "service", "x"], True, True),
        (["administrator"], False, False),
        ([], False, False),
    ],
)
def test_admin_and_service_flags(roles: list[str], admin: bool, service: bool) -> None:
    principal = verifier().verify(hs(claims(roles=roles)))
    assert (principal.is_admin, principal.is_service) == (admin, service)
    assert principal.is_privileged is (admin or service)


def test_role_names_are_configurable() -> None:
    v = verifier(admin_role="platform-admin", service_role="robot")
    assert v.verify(hs(claims(roles=["platform-admin"]))).is_admin
    assert v.verify(hs(claims(roles=["robot"]))).is_service
    assert not v.verify(hs(claims(roles=["admin", "service"]))).is_privileged


def test_issue_token_round_trip() -> None:
    token = issue_token(SECRET, sub="bob", name="Bob", roles=["admin"], ttl_s=120)
    principal = verifier().verify(token)
    assert (principal.user_id, principal.name, principal.is_admin) == ("bob", "Bob", True)
    assert principal.expires_at is not None
    assert 100 < principal.expires_at - time.time() <= 120
    raw = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert set(raw) == {"sub", "name", "roles", "iat", "exp"}


def test_other_hmac_algorithms_when_allowed() -> None:
    v = verifier(algorithms=["HS256", "HS512"])
    assert v.verify(hs(claims(), algorithm="HS512")).user_id == "alice"


def test_rs256_with_a_public_key(rsa_keys: tuple[str, str]) -> None:
    private, public = rsa_keys
    v = TokenVerifier(algorithms=["RS256"], public_key=public)
    token = jwt.encode(claims(), private, algorithm="RS256")
    assert v.verify(token).user_id == "alice"


# -- refused: algorithm --------------------------------------------------------------------


def test_alg_none_is_refused() -> None:
    with pytest.raises(InvalidToken, match="algorithm 'none'"):
        verifier().verify(unsigned(claims()))


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused_even_if_configured(alg: str) -> None:
    v = verifier(algorithms=["HS256", alg])
    for header_alg in ("none", alg):
        with pytest.raises(InvalidToken):
            v.verify(unsigned(claims(), header_alg))
    with pytest.raises(ValueError, match="no JWT algorithm"):
        TokenVerifier(algorithms=[alg], secret=SECRET)


def test_algorithm_outside_the_allow_list_is_refused() -> None:
    with pytest.raises(InvalidToken, match="HS512"):
        verifier().verify(hs(claims(), algorithm="HS512"))


def test_hs_token_signed_with_the_public_key_is_refused(rsa_keys: tuple[str, str]) -> None:
    """Algorithm confusion: an attacker signs HS256 with the (public) RSA key as the
    HMAC secret, hoping the server verifies it with that same key."""
    private, public = rsa_keys
    forged_header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims(roles=["admin"])).encode())
    signature = hmac.new(public.encode(), f"{forged_header}.{body}".encode(), hashlib.sha256)
    forged = f"{forged_header}.{body}.{b64(signature.digest())}"
    # Server expecting RS256 only: the algorithm is not allowed.
    with pytest.raises(InvalidToken):
        TokenVerifier(algorithms=["RS256"], public_key=public).verify(forged)
    # Server allowing both: an HS token is checked with the HMAC secret, never the key.
    both = TokenVerifier(algorithms=["RS256", "HS256"], public_key=public, secret=SECRET)
    with pytest.raises(InvalidToken):
        both.verify(forged)
    assert both.verify(jwt.encode(claims(), private, algorithm="RS256")).user_id == "alice"
    assert both.verify(hs(claims())).user_id == "alice"


def test_rs_token_is_not_verified_with_the_hmac_secret(rsa_keys: tuple[str, str]) -> None:
    private, _ = rsa_keys
    v = verifier()  # HS256 only
    with pytest.raises(InvalidToken):
        v.verify(jwt.encode(claims(), private, algorithm="RS256"))


def test_wrong_secret_is_refused() -> None:
    with pytest.raises(InvalidToken):
        verifier().verify(hs(claims(), secret="another-secret-" + "0123456789abcdef" * 4))


def test_tampered_payload_is_refused() -> None:
    header, _, signature = hs(claims()).split(".")
    body = b64(json.dumps(claims(sub="mallory", roles=["admin"])).encode())
    with pytest.raises(InvalidToken):
        verifier().verify(f"{header}.{body}.{signature}")


def test_constructor_needs_keys_for_its_algorithms(rsa_keys: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="secret"):
        TokenVerifier(algorithms=["HS256"])
    with pytest.raises(ValueError, match="public key"):
        TokenVerifier(algorithms=["RS256"], secret=SECRET)
    TokenVerifier(algorithms=["RS256"], public_key=rsa_keys[1])


# -- refused: format -----------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, ""])
def test_missing_token(token: object) -> None:
    with pytest.raises(MissingToken) as exc:
        verifier().verify(token)
    assert exc.value.reason == "missing"


@pytest.mark.parametrize("token", [42, b"bytes", ["a"], {"token": "x"}])
def test_token_that_is_not_a_string(token: object) -> None:
    with pytest.raises(InvalidToken) as exc:
        verifier().verify(token)
    assert exc.value.reason == "invalid"


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "a.b", "....", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_malformed_tokens(token: str) -> None:
    with pytest.raises(InvalidToken):
        verifier().verify(token)


# -- refused: claims -----------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["sub", "exp"])
def test_required_claims(missing: str) -> None:
    c = claims()
    del c[missing]
    with pytest.raises(InvalidToken):
        verifier().verify(hs(c))


@pytest.mark.parametrize("sub", ["", 42, None, ["alice"], "x" * 257])
def test_bad_subject(sub: Any) -> None:
    with pytest.raises(InvalidToken):
        verifier().verify(hs(claims(sub=sub)))


def test_longest_subject_is_accepted() -> None:
    assert verifier().verify(hs(claims(sub="x" * 256))).user_id == "x" * 256


@pytest.mark.parametrize("name", [42, ["Alice"], {"first": "A"}])
def test_bad_name(name: Any) -> None:
    with pytest.raises(InvalidToken, match="name"):
        verifier().verify(hs(claims(name=name)))


@pytest.mark.parametrize("roles", ["admin", 1, {"admin": True}, ["admin", 1], [None]])
def test_bad_roles_claim(roles: Any) -> None:
    with pytest.raises(InvalidToken, match="roles"):
        verifier().verify(hs(claims(roles=roles)))


def test_expired_token() -> None:
    now = int(time.time())
    with pytest.raises(TokenExpired) as exc:
        verifier(leeway_s=30).verify(hs(claims(exp=now - 31)))
    assert exc.value.reason == "expired"
    assert isinstance(exc.value, AuthError)


def test_expiry_within_the_leeway_is_tolerated() -> None:
    now = int(time.time())
    assert verifier(leeway_s=30).verify(hs(claims(exp=now - 20))).user_id == "alice"
    with pytest.raises(TokenExpired):
        verifier(leeway_s=0).verify(hs(claims(exp=now - 2)))


def test_not_before_in_the_future_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(InvalidToken):
        verifier(leeway_s=30).verify(hs(claims(nbf=now + 120)))
    assert verifier(leeway_s=30).verify(hs(claims(nbf=now + 10))).user_id == "alice"


def test_issued_in_the_future_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(InvalidToken):
        verifier(leeway_s=30).verify(hs(claims(iat=now + 3600)))


@pytest.mark.parametrize("exp", ["tomorrow", None, [1]])
def test_non_numeric_expiry_is_refused(exp: Any) -> None:
    with pytest.raises(InvalidToken):
        verifier().verify(hs(claims(exp=exp)))


def test_issuer_when_configured() -> None:
    v = verifier(issuer="https://id.example")
    assert v.verify(hs(claims(iss="https://id.example"))).user_id == "alice"
    for bad in (claims(iss="https://evil.example"), claims()):
        with pytest.raises(InvalidToken):
            v.verify(hs(bad))


def test_issuer_is_ignored_when_not_configured() -> None:
    assert verifier().verify(hs(claims(iss="anyone"))).user_id == "alice"


def test_audience_when_configured() -> None:
    v = verifier(audience="collab")
    assert v.verify(hs(claims(aud="collab"))).user_id == "alice"
    assert v.verify(hs(claims(aud=["other", "collab"]))).user_id == "alice"
    for bad in (claims(aud="other"), claims(aud=["other"]), claims()):
        with pytest.raises(InvalidToken):
            v.verify(hs(bad))


def test_audience_is_ignored_when_not_configured() -> None:
    assert verifier().verify(hs(claims(aud="whatever"))).user_id == "alice"
