"""The REST error contract: every error is ``{"error": {"code", "message", "details"}}``
with ``Content-Type: application/json`` and the status of its code. One real request
per status (and a few variants of each)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from collab.api.base import MAX_BODY_BYTES
from collab.keys import SERVICES
from tests.integration.conftest import ServerFactory
from tests.server import InProcessServer, Rest, token

ALICE = token("alice", "Alice")
BOB = token("bob", "Bob")


async def call(
    server: InProcessServer,
    method: str,
    path: str,
    *,
    tok: str | None = ALICE,
    body: Any = None,
    data: Any = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, str, dict[str, Any], Any]:
    """One request; returns (status, content type, JSON body, headers)."""
    h = dict(headers or {})
    if tok is not None:
        h.setdefault("Authorization", f"Bearer {tok}")
    kwargs: dict[str, Any] = {"headers": h}
    if body is not None:
        kwargs["json"] = body
    if data is not None:
        kwargs["data"] = data
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, server.url + path, **kwargs) as r,
    ):
        text = await r.text()
        return r.status, r.content_type, json.loads(text), r.headers


def assert_contract(
    got: tuple[int, str, dict[str, Any], Any], status: int, code: str
) -> dict[str, Any]:
    got_status, content_type, body, _ = got
    assert got_status == status, body
    assert content_type == "application/json"
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    assert isinstance(error["details"], dict), error
    return dict(error)


@pytest.fixture
async def pid(server: InProcessServer, rest: Rest) -> str:
    return await rest.project(ALICE, "contract")


# -- 400 -------------------------------------------------------------------------------


async def test_400_bad_request(server: InProcessServer, pid: str) -> None:
    error = assert_contract(
        await call(server, "GET", "/api/v1/projects?limit=abc"), 400, "BAD_REQUEST"
    )
    assert error["details"]["errors"][0]["path"] == "/limit"
    error = assert_contract(
        await call(
            server,
            "POST",
            "/api/v1/projects",
            data=b"{not json",
            headers={"Content-Type": "application/json"},
        ),
        400,
        "BAD_REQUEST",
    )
    assert "reason" in error["details"]
    assert_contract(
        await call(
            server, "POST", "/api/v1/projects", headers={"Content-Type": "application/json"}
        ),
        400,
        "BAD_REQUEST",
    )
    error = assert_contract(
        await call(server, "GET", f"/api/v1/projects/{pid}/versions/abc"), 400, "BAD_REQUEST"
    )
    assert error["details"] == {"version": "abc"}
    # a project id that could never be a document namespace: a subclass code, same status
    error = assert_contract(
        await call(server, "GET", "/api/v1/projects/a%2Cb"), 400, "INVALID_PROJECT_ID"
    )
    assert error["details"] == {"project_id": "a,b"}


@pytest.mark.parametrize("path", ["/projects", "/notifications", "/projects/{pid}/versions"])
async def test_400_for_a_malformed_page_cursor(
    server: InProcessServer, pid: str, path: str
) -> None:
    got = await call(server, "GET", "/api/v1" + path.format(pid=pid) + "?cursor=garbage")
    error = assert_contract(got, 400, "BAD_REQUEST")
    assert "cursor" in json.dumps(error)


# -- 401 -------------------------------------------------------------------------------


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


OTHER_KEY = token("alice", secret="another-secret-0123456789abcdef-xyz")
UNSIGNED = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64({"sub": "alice", "exp": 2**33}) + "."


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"Authorization": f"Basic {ALICE}"}, "invalid"),
        ({"Authorization": "Bearer "}, "invalid"),
        ({"Authorization": "Bearer not-a-jwt"}, None),
        ({"Authorization": f"Bearer {token('alice', ttl=-3600)}"}, None),
        ({"Authorization": f"Bearer {OTHER_KEY}"}, None),
        ({"Authorization": f"Bearer {UNSIGNED}"}, None),
    ],
    ids=["missing", "basic", "empty", "garbage", "expired", "wrong-key", "alg-none"],
)
async def test_401_unauthenticated(
    server: InProcessServer, headers: dict[str, str], reason: str | None
) -> None:
    error = assert_contract(
        await call(server, "GET", "/api/v1/projects", tok=None, headers=headers),
        401,
        "UNAUTHENTICATED",
    )
    assert isinstance(error["details"].get("reason"), str), error
    if reason is not None:
        assert error["details"]["reason"] == reason


# -- 403 / 404 / 405 / 409 -------------------------------------------------------------


async def test_403_forbidden(server: InProcessServer, pid: str) -> None:
    error = assert_contract(
        await call(server, "GET", f"/api/v1/projects/{pid}", tok=BOB), 403, "FORBIDDEN"
    )
    assert error["details"] == {"project_id": pid}
    assert_contract(
        await call(server, "POST", "/api/v1/notifications", body={"user_ids": ["x"], "kind": "k"}),
        403,
        "FORBIDDEN",
    )


async def test_404_not_found(server: InProcessServer, pid: str) -> None:
    assert_contract(await call(server, "GET", "/api/v1/projects/missing"), 404, "NOT_FOUND")
    assert_contract(
        await call(server, "GET", f"/api/v1/projects/{pid}/versions/3"), 404, "NOT_FOUND"
    )
    error = assert_contract(await call(server, "GET", "/api/v1/no/such/route"), 404, "NOT_FOUND")
    assert error["details"] == {"path": "/api/v1/no/such/route"}


async def test_405_method_not_allowed(server: InProcessServer, pid: str) -> None:
    got = await call(server, "DELETE", "/api/v1/projects")
    assert_contract(got, 405, "METHOD_NOT_ALLOWED")
    assert_contract(
        await call(server, "POST", f"/api/v1/projects/{pid}/graph"), 405, "METHOD_NOT_ALLOWED"
    )


async def test_409_conflict(server: InProcessServer, pid: str) -> None:
    error = assert_contract(
        await call(server, "PUT", f"/api/v1/projects/{pid}/members/alice", body={"role": "editor"}),
        409,
        "CONFLICT",
    )
    assert error["details"] == {"user_id": "alice"}
    assert_contract(
        await call(server, "DELETE", f"/api/v1/projects/{pid}/members/alice"), 409, "CONFLICT"
    )


# -- 413 / 422 -------------------------------------------------------------------------


async def test_413_payload_too_large(server: InProcessServer, pid: str) -> None:
    big = b'{"name": "' + b"x" * (MAX_BODY_BYTES + 1) + b'"}'
    for method, path in (("POST", "/api/v1/projects"), ("PUT", f"/api/v1/projects/{pid}/graph")):
        error = assert_contract(
            await call(
                server,
                method,
                path,
                data=io.BytesIO(big),
                headers={"Content-Type": "application/json"},
            ),
            413,
            "PAYLOAD_TOO_LARGE",
        )
        assert error["details"] == {"max_bytes": MAX_BODY_BYTES}


async def test_413_without_reading_the_body(server: InProcessServer, pid: str) -> None:
    """A declared length over the bound is refused before the body is sent."""
    host, port = "127.0.0.1", server.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        request = (
            f"PUT /api/v1/projects/{pid}/graph HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {ALICE}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {MAX_BODY_BYTES * 4}\r\nConnection: close\r\n\r\n"
        )
        writer.write(request.encode())
        await writer.drain()
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode().split("\r\n")
            headers = dict(line.split(": ", 1) for line in header_lines if ": " in line)
            length = int(headers["Content-Length"])
            body = json.loads(await reader.readexactly(length))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    assert status_line.startswith("HTTP/1.1 413"), status_line
    assert headers["Content-Type"].startswith("application/json")
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert set(body["error"]) == {"code", "message", "details"}


async def test_422_validation_failed(server: InProcessServer, pid: str) -> None:
    error = assert_contract(
        await call(server, "POST", "/api/v1/projects", body={"title": "x"}),
        422,
        "VALIDATION_FAILED",
    )
    assert sorted(e["path"] for e in error["details"]["errors"]) == ["/name", "/title"]
    error = assert_contract(
        await call(
            server, "PUT", f"/api/v1/projects/{pid}/graph", body={"nodes": {"n": {}}, "edges": {}}
        ),
        422,
        "VALIDATION_FAILED",
    )
    assert [e["path"] for e in error["details"]["errors"]] == [
        "/nodes/n/type",
        "/nodes/n/x",
        "/nodes/n/y",
    ]


# -- 5xx -------------------------------------------------------------------------------


class TcpProxy:
    """A TCP forwarder between the server and Postgres that the test can cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        await asyncio.gather(*pumps, return_exceptions=True)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            dst.close()

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def unreachable_pg(pg_dsn: str) -> AsyncIterator[tuple[TcpProxy, str]]:
    parts = urlsplit(pg_dsn)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    await proxy.start()
    user = f"{parts.username}@" if parts.username else ""
    netloc = f"{user}127.0.0.1:{proxy.port}"
    try:
        yield proxy, urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    finally:
        await proxy.cut()


@pytest.mark.parametrize("store_kind", ["postgres"])
async def test_503_when_postgres_is_unreachable(
    server_factory: ServerFactory, unreachable_pg: tuple[TcpProxy, str]
) -> None:
    proxy, dsn = unreachable_pg
    async with server_factory(database_url=dsn) as srv:
        rest = Rest(srv.url)
        try:
            pid = await rest.project(ALICE, "before the outage")
            await proxy.cut()
            started = time.monotonic()
            for method, path in (
                ("GET", f"/api/v1/projects/{pid}"),
                ("GET", "/api/v1/projects"),
                ("GET", "/api/v1/notifications"),
            ):
                error = assert_contract(await call(srv, method, path), 503, "UNAVAILABLE")
                assert "retry" in error["message"]
            assert time.monotonic() - started < 30
            async with aiohttp.ClientSession() as http, http.get(srv.url + "/readyz") as r:
                assert r.status == 503
                assert (await r.json())["checks"]["store"]["ok"] is False
        finally:
            await rest.close()


async def test_503_when_the_store_is_closed(server: InProcessServer, pid: str) -> None:
    store = server.app[SERVICES].store
    await store.close()
    try:
        assert_contract(await call(server, "GET", f"/api/v1/projects/{pid}"), 503, "UNAVAILABLE")
    finally:
        await store.start()


async def test_500_internal_error_does_not_leak(
    server: InProcessServer,
    pid: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = server.app[SERVICES].store

    async def broken(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("secret connection string postgres://user:pw@db")

    monkeypatch.setattr(store, "get_project", broken)
    error = assert_contract(await call(server, "GET", f"/api/v1/projects/{pid}"), 500, "INTERNAL")
    assert error == {"code": "INTERNAL", "message": "internal error", "details": {}}
    assert "unhandled error in GET" in caplog.text
