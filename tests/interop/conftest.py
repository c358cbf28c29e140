"""Fixtures for driving the real npm clients: the node client host and the y-socket.io
reference server (``tests/js/refserver.mjs``, socket.io + ``YSocketIO``).

Both need ``node`` and the npm packages pinned in ``package-lock.json``; when they are
missing the tests fail (never skip) and say to run ``npm ci``.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.nodeclient import (
    REFSERVER_JS,
    REPO_ROOT,
    NodeSetupError,
    check_node_modules,
    node_executable,
)

REF_TOKEN = "ref-secret"


def _require_node() -> str:
    try:
        node = node_executable()
        check_node_modules()
    except NodeSetupError as err:
        pytest.fail(str(err), pytrace=False)
    return node


@dataclass(frozen=True)
class RefServer:
    url: str
    port: int
    pid: int
    token: str
    log_path: Path

    def log_tail(self, n: int = 40) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


def start_ref_server(
    log_path: Path, *, token: str | None = REF_TOKEN, test_hooks: bool = True, timeout: float = 15
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``refserver.mjs`` on a free loopback port; return (process, port)."""
    node = _require_node()
    cmd = [node, str(REFSERVER_JS), "--port", "0", "--exit-on-stdin-close"]
    if token is not None:
        cmd += ["--token", token]
    if test_hooks:
        cmd.append("--test-hooks")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log_file,
        )
    assert proc.stdout is not None
    os.set_blocking(proc.stdout.fileno(), False)
    buf = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                stop_process(proc)
                why = "timed out" if left <= 0 else f"exited with {proc.returncode}"
                pytest.fail(
                    f"refserver {why} before READY; stdout {buf!r}; log:\n"
                    + log_path.read_text(errors="replace"),
                    pytrace=False,
                )
            if sel.select(min(left, 0.5)):
                chunk = proc.stdout.read(4096)
                if chunk:
                    buf += chunk
    first = buf.split(b"\n", 1)[0].decode()
    if not first.startswith("READY "):
        stop_process(proc)
        pytest.fail(f"refserver printed {first!r} instead of READY <port>", pytrace=False)
    return proc, int(first.split()[1])


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 5) -> None:
    """SIGTERM the process by PID, SIGKILL it if it lingers, and close its pipes."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


@pytest.fixture
def ref_server(tmp_path: Path) -> Iterator[RefServer]:
    """The y-socket.io reference server; handshakes need ``auth.token == server.token``."""
    log_path = tmp_path / "refserver.log"
    proc, port = start_ref_server(log_path)
    try:
        yield RefServer(
            url=f"http://127.0.0.1:{port}",
            port=port,
            pid=proc.pid,
            token=REF_TOKEN,
            log_path=log_path,
        )
    finally:
        stop_process(proc)
