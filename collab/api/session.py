"""Who am I, and the development sign-in (development mode only)."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from auth.tokens import issue_token
from collab import __version__
from collab.api.base import Api, Ctx
from collab.api.models import Strict
from collab.errors import NotFoundError

api = Api()

# Development tokens live a day: long enough for a working session, short enough that
# a copied token does not linger.
DEV_TOKEN_TTL_S = 24 * 3600.0


class InfoOut(BaseModel):
    name: str
    version: str
    development: bool
    instance_id: str


class MeOut(BaseModel):
    user_id: str
    name: str
    admin: bool
    service: bool
    expires_at: float | None
    development: bool


class DevSignIn(Strict):
    user_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    name: str | None = Field(default=None, max_length=100)
    admin: bool = False


class DevToken(BaseModel):
    token: str
    user_id: str
    name: str
    admin: bool


@api.route(
    "GET",
    "/info",
    summary="About this server (no token needed)",
    tag="session",
    response=InfoOut,
    auth=False,
)
async def info(ctx: Ctx) -> InfoOut:
    settings = ctx.svc.settings
    return InfoOut(
        name="collab",
        version=__version__,
        development=settings.development,
        instance_id=settings.instance_id,
    )


@api.route("GET", "/me", summary="The caller's identity", tag="session", response=MeOut)
async def me(ctx: Ctx) -> MeOut:
    p = ctx.user
    return MeOut(
        user_id=p.user_id,
        name=p.display_name,
        admin=p.is_admin,
        service=p.is_service,
        expires_at=p.expires_at,
        development=ctx.svc.settings.development,
    )


@api.route(
    "POST",
    "/dev/sign-in",
    summary="Development mode only: a token for any user id (404 otherwise)",
    tag="session",
    body=DevSignIn,
    response=DevToken,
    errors=(400, 404, 422),
    auth=False,
)
async def dev_sign_in(ctx: Ctx) -> DevToken:
    svc = ctx.svc
    secret = svc.dev_secret or (
        svc.settings.jwt_secret.get_secret_value() if svc.settings.jwt_secret else None
    )
    if not svc.settings.development or secret is None:
        raise NotFoundError("development sign-in is off (a JWT key is configured)")
    body: DevSignIn = ctx.body
    name = body.name or re.sub(r"[_.@-]+", " ", body.user_id).title()
    roles = [svc.settings.admin_role] if body.admin else []
    tok = issue_token(secret, sub=body.user_id, name=name, roles=roles, ttl_s=DEV_TOKEN_TTL_S)
    return DevToken(token=tok, user_id=body.user_id, name=name, admin=body.admin)
