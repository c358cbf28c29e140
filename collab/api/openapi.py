"""The OpenAPI 3.1 document, generated from the route tables (so it covers every
route by construction) and the pydantic models (so schemas match validation)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from collab import __version__
from collab.api.base import Route, openapi_path

_REF = "#/components/schemas/{model}"

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}

_STATUS_TEXT = {
    400: "Bad request (malformed JSON, bad query or path parameter)",
    401: "Missing or invalid token",
    403: "Not allowed for this user",
    404: "No such project, version, member or notification",
    409: "Conflicts with the current state",
    413: "Body too large",
    422: "Body does not validate; details.errors lists the offending paths",
    503: "A backing service is unavailable; retry later",
}


def build_openapi(routes: list[Route]) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template=_REF)
        for name, sub in schema.pop("$defs", {}).items():
            components[name] = sub
        components[model.__name__] = schema
        return {"$ref": _REF.format(model=model.__name__)}

    for route in routes:
        op: dict[str, Any] = {
            "summary": route.summary,
            "tags": [route.tag],
            "operationId": route.handler.__name__,
            "responses": {},
        }
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": _path_param_schema(name),
            }
            for name in re.findall(r"\{(\w+)", route.path)
        ]
        if route.query is not None:
            schema = route.query.model_json_schema(ref_template=_REF)
            required = set(schema.get("required", []))
            for name, prop in schema.get("properties", {}).items():
                params.append(
                    {"name": name, "in": "query", "required": name in required, "schema": prop}
                )
        if params:
            op["parameters"] = params
        if route.body is not None or route.body_schema is not None:
            body_schema = ref(route.body) if route.body else route.body_schema
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": body_schema}},
            }
        if route.status == 204:
            op["responses"]["204"] = {"description": "Done"}
        else:
            schema = (
                ref(route.response)
                if route.response
                else (route.response_schema or {"type": "object"})
            )
            op["responses"][str(route.status)] = {
                "description": "OK",
                "content": {route.content_type: {"schema": schema}},
            }
        for status in sorted({*route.errors, 401} if route.auth else set(route.errors)):
            op["responses"][str(status)] = {
                "description": _STATUS_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            }
        if route.auth:
            op["security"] = [{"bearer": []}]
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "collab",
            "version": __version__,
            "description": (
                "Real-time collaboration server for node graphs. Documents are co-edited "
                "over Socket.IO (y-socket.io protocol, namespace /yjs|<project id>); this "
                "REST API manages projects, members, graphs, versions, notifications and "
                'live rooms. Errors are {"error": {"code", "message", "details"}}.'
            ),
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _path_param_schema(name: str) -> dict[str, Any]:
    if name == "project_id":
        return {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"}
    if name in ("version", "a"):
        return {"type": "string", "pattern": "^[1-9][0-9]{0,8}$"}
    if name == "b":
        return {"type": "string", "pattern": "^([1-9][0-9]{0,8}|current)$"}
    return {"type": "string", "minLength": 1, "maxLength": 256}
