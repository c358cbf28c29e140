"""REST plumbing: a route table that yields both the aiohttp routes and the OpenAPI
document, so the two cannot drift apart.

A handler receives a ``Ctx`` (request, principal, parsed body and query, services) and
returns a pydantic model, a plain JSON value, or a ``web.Response``. Every error becomes
``{"error": {"code", "message", "details"}}`` with its status (``error_middleware``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from auth.errors import AuthError
from auth.principal import Principal
from collab.errors import (
    BadRequest,
    CollabError,
    MethodNotAllowed,
    NotFoundError,
    PayloadTooLarge,
    Unauthenticated,
    ValidationFailed,
    to_collab_error,
)
from collab.keys import SERVICES
from collab.protocol import check_project_id
from collab.services import Services

log = logging.getLogger("collab.api")
M = TypeVar("M", bound=BaseModel)

# REST bodies are graphs at most (import); 32 MiB bounds a 10k-node graph with room.
MAX_BODY_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class Ctx:
    request: web.Request
    svc: Services
    principal: Principal | None
    body: Any = None
    query: Any = None

    @property
    def user(self) -> Principal:
        if self.principal is None:  # pragma: no cover - routes with auth=False never ask
            raise Unauthenticated("authentication required")
        return self.principal

    def path(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def project_id(self) -> str:
        pid = self.request.match_info["project_id"]
        check_project_id(pid)
        return pid


Handler = Callable[[Ctx], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    body_schema: dict[str, Any] | None = None  # for free-form bodies (graphs)
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    response_schema: dict[str, Any] | None = None
    status: int = 200
    errors: tuple[int, ...] = ()
    auth: bool = True
    content_type: str = "application/json"


@dataclass
class Api:
    prefix: str = "/api/v1"
    routes: list[Route] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        tag: str,
        body: type[BaseModel] | None = None,
        body_schema: dict[str, Any] | None = None,
        query: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        response_schema: dict[str, Any] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        auth: bool = True,
        content_type: str = "application/json",
    ) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.routes.append(
                Route(
                    method,
                    self.prefix + path,
                    fn,
                    summary,
                    tag,
                    body,
                    body_schema,
                    query,
                    response,
                    response_schema,
                    status,
                    errors,
                    auth,
                    content_type,
                )
            )
            return fn

        return register

    def install(self, app: web.Application) -> None:
        for route in self.routes:
            app.router.add_route(route.method, route.path, _wrap(route))


def _wrap(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handler(request: web.Request) -> web.StreamResponse:
        svc = request.app[SERVICES]
        principal = authenticate(request, svc) if route.auth else None
        ctx = Ctx(request=request, svc=svc, principal=principal)
        if route.query is not None:
            ctx.query = _parse(route.query, dict(request.query), where="query", status=400)
        if route.body is not None or route.body_schema is not None:
            raw = await _read_json(request)
            ctx.body = _parse(route.body, raw, where="body", status=422) if route.body else raw
        result = await route.handler(ctx)
        if isinstance(result, web.StreamResponse):
            return result
        if route.status == 204:
            return web.Response(status=204)
        return json_response(result, status=route.status)

    handler.__name__ = route.handler.__name__
    return handler


def authenticate(request: web.Request, svc: Services) -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        raise Unauthenticated("missing Authorization: Bearer <token>", {"reason": "missing"})
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("use Authorization: Bearer <token>", {"reason": "invalid"})
    try:
        return svc.verifier.verify(token.strip())
    except AuthError as exc:
        raise Unauthenticated(str(exc), {"reason": exc.reason}) from exc


async def _read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge("request body too large", {"max_bytes": MAX_BODY_BYTES})
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge("request body too large", {"max_bytes": MAX_BODY_BYTES}) from exc
    if not raw.strip():
        raise BadRequest("a JSON body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest("the body is not valid JSON", {"reason": str(exc)}) from exc


def _parse(model: type[M], data: Any, *, where: str, status: int) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {
                "path": "/" + "/".join(str(p) for p in err["loc"]),
                "message": err["msg"],
            }
            for err in exc.errors(include_url=False)
        ]
        cls = ValidationFailed if status == 422 else BadRequest
        raise cls(f"invalid {where}", {"errors": errors}) from exc


def json_response(data: Any, *, status: int = 200) -> web.Response:
    if isinstance(data, BaseModel):
        body = data.model_dump_json().encode()
    else:
        body = orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        error: CollabError
        if exc.status == 404:
            error = NotFoundError("no such route", {"path": request.path})
        elif exc.status == 405:
            error = MethodNotAllowed(f"{request.method} is not allowed here")
        elif exc.status == 413:
            error = PayloadTooLarge("request body too large")
        else:
            error = BadRequest(exc.reason or "bad request")
            error.status = exc.status  # type: ignore[misc]
        return json_response(error.payload(), status=error.status)
    except Exception as exc:
        error = to_collab_error(exc)
        if error.status >= 500 and error.code == "INTERNAL":
            log.exception("unhandled error in %s %s", request.method, request.path)
        return json_response(error.payload(), status=error.status)


_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def openapi_path(path: str) -> str:
    """aiohttp ``{name:regex}`` → OpenAPI ``{name}``."""
    return _PARAM.sub(lambda m: "{" + m.group(1) + "}", path)
