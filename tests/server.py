"""Running real servers in tests: in-process (``InProcessServer``) or as an OS process
(``ServerProcess``, for kill -9, restarts and several instances), and a small REST
client. Every wait polls a real condition with a deadline."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
from aiohttp import web

from auth.tokens import issue_token
from collab.app import create_app
from collab.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TEST_SECRET = "test-secret-not-for-production-0123456789"


def token(
    sub: str,
    name: str | None = None,
    *,
    admin: bool = False,
    service: bool = False,
    ttl: float = 3600.0,
    secret: str = TEST_SECRET,
) -> str:
    roles = [r for r, on in (("admin", admin), ("service", service)) if on]
    return issue_token(secret, sub=sub, name=name or sub.title(), roles=roles, ttl_s=ttl)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "jwt_secret": TEST_SECRET,
        "room_grace_ms": 200.0,
        "heartbeat_s": 0.5,
        "log_format": "text",
    }
    values.update(overrides)
    return Settings(**values)


class InProcessServer:
    """``create_app`` served on a free port in the test's event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> InProcessServer:
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert self._runner.addresses, "the site is not listening"
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ServerProcess:
    """``python -m collab serve`` as a child process, stopped by PID."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        name: str = "srv",
        log_dir: Path | None = None,
    ) -> None:
        self.port = port or free_port()
        self.name = name
        self.env = {
            **os.environ,
            "COLLAB_JWT_SECRET": TEST_SECRET,
            "COLLAB_LOG_FORMAT": "text",
            "COLLAB_HEARTBEAT_S": "0.5",
            **env,
            "COLLAB_PORT": str(self.port),
            "COLLAB_HOST": "127.0.0.1",
        }
        self.log_path = (log_dir or Path("/tmp")) / f"collab-{name}-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collab", "serve"],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        await wait_http(f"{self.url}/healthz", timeout=timeout, proc=self.proc, log=self.log_path)

    def kill(self) -> None:
        """kill -9: no flush, no goodbye."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait for a graceful exit (kill -9 after ``timeout``)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.proc.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if self.proc.poll() is None:
                self.kill()
        return self.proc.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def wait_http(
    url: str,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if proc is not None and proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log else ""
                raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} not up after {timeout} s")
            await asyncio.sleep(0.05)


async def wait_for(
    predicate: Any, *, timeout: float = 10.0, interval: float = 0.02, message: str = "condition"
) -> Any:
    """Poll an (async or sync) predicate until truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached within {timeout} s")
        await asyncio.sleep(interval)


class Rest:
    """A tiny JSON client: ``await rest.post("/projects", {...}, token=t)`` → (status, body)."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": h}
        if raw is not None:
            kwargs["data"] = raw
            h.setdefault("Content-Type", "application/json")
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base + path, **kwargs) as r:
            text = await r.text()
            try:
                data = await r.json(content_type=None) if text else None
            except ValueError:
                data = text
            return r.status, data

    async def root(self, path: str) -> tuple[int, Any]:
        """GET outside /api/v1 (``/readyz``, ``/metrics``...)."""
        async with self.session.get(self.base.removesuffix("/api/v1") + path) as r:
            text = await r.text()
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, text

    async def get(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("POST", path, body, **kw)

    async def put(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("PUT", path, body, **kw)

    async def patch(self, path: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
        return await self.request("PATCH", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> tuple[int, Any]:
        return await self.request("DELETE", path, **kw)

    async def project(self, owner_token: str, name: str = "test") -> str:
        status, body = await self.post("/projects", {"name": name}, token=owner_token)
        assert status == 201, body
        return str(body["id"])
