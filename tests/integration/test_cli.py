"""The ``collab`` command: token, migrate, rooms."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import jwt

from tests.integration.test_durability import Writer
from tests.server import ROOT, TEST_SECRET, InProcessServer, Rest, base_settings, token, wait_for


def collab(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collab", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_token_prints_a_verifiable_token(tmp_path: Path) -> None:
    out = collab(
        "token",
        "--sub",
        "alice",
        "--name",
        "Alice",
        "--admin",
        "--ttl",
        "60",
        env={"COLLAB_JWT_SECRET": TEST_SECRET, "COLLAB_DATA_DIR": str(tmp_path)},
    )
    assert out.returncode == 0, out.stderr
    claims = jwt.decode(out.stdout.strip(), TEST_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"
    assert claims["name"] == "Alice"
    assert claims["roles"] == ["admin"]
    assert 0 < claims["exp"] - claims["iat"] <= 60


def test_token_uses_the_development_secret_the_server_uses(tmp_path: Path) -> None:
    out = collab("token", "--sub", "bob", env={"COLLAB_DATA_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    secret = (tmp_path / "dev-secret").read_text().strip()
    assert jwt.decode(out.stdout.strip(), secret, algorithms=["HS256"])["sub"] == "bob"


def test_migrate_applies_then_has_nothing_to_do(tmp_path: Path, pg_dsn: str) -> None:
    env = {"COLLAB_DATA_DIR": str(tmp_path)}
    first = collab("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "0001_init" in first.stdout
    again = collab("migrate", env=env)
    assert "nothing" in again.stdout
    pg = collab("migrate", env={**env, "COLLAB_DATABASE_URL": pg_dsn})
    assert pg.returncode == 0, pg.stderr


async def test_rooms_prints_the_cluster_view(tmp_path: Path) -> None:
    async with InProcessServer(base_settings(tmp_path)) as srv:
        rest = Rest(srv.url)
        pid = await rest.project(token("alice"), "printed")
        writer = Writer(srv.url, pid, token("alice"))
        await writer.connect()
        try:
            admin = token("root", admin=True)

            async def listed() -> bool:
                status, body = await rest.get("/admin/rooms", token=admin)
                return status == 200 and bool(body["rooms"])

            await wait_for(listed, timeout=10, message="the room in the registry")
            out = await asyncio.to_thread(
                collab,
                "rooms",
                "--url",
                srv.url,
                "--token",
                admin,
                env={"COLLAB_DATA_DIR": str(tmp_path)},
            )
            assert out.returncode == 0, out.stderr
            assert pid in out.stdout
            assert "Alice" in out.stdout
            assert "1 rooms on 1 instances" in out.stdout
            refused = await asyncio.to_thread(
                collab,
                "rooms",
                "--url",
                srv.url,
                "--token",
                token("alice"),
                env={"COLLAB_DATA_DIR": str(tmp_path)},
            )
            assert refused.returncode == 1
            assert "FORBIDDEN" in refused.stderr
        finally:
            await writer.close()
            await rest.close()
