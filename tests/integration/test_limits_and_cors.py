"""The document size limit, and CORS for the REST API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from collab.keys import SERVICES
from tests.integration.test_durability import Writer
from tests.server import InProcessServer, Rest, base_settings, token


async def test_edits_past_the_document_size_limit_are_refused(tmp_path: Path) -> None:
    async with InProcessServer(base_settings(tmp_path, max_doc_bytes=4096)) as srv:
        rest = Rest(srv.url)
        alice = token("alice")
        pid = await rest.project(alice)
        writer = Writer(srv.url, pid, alice)
        await writer.connect()
        try:
            acks: list[Any] = []
            for i in range(40):  # ~200 bytes each: the limit falls in the middle
                writer.meta[f"k{i}"] = "x" * 200
                acks.append(
                    await writer.sio.call(
                        "sync-update", writer._updates[-1], namespace=writer.ns, timeout=10
                    )
                )
            refused = [a for a in acks if not a.get("ok")]
            assert refused, "nothing was refused"
            assert refused[0]["error"]["code"] == "PAYLOAD_TOO_LARGE"
            assert refused[0]["error"]["details"]["max_doc_bytes"] == 4096
            # What was accepted is there, and the document stayed under the limit.
            status, graph = await rest.get(f"/projects/{pid}/graph", token=alice)
            assert status == 200
            accepted = sum(1 for a in acks if a.get("ok"))
            assert len(graph["meta"]) == accepted
            async with srv.app[SERVICES].rooms.hold(pid) as room:
                assert len(room.doc.get_update()) <= 4096
        finally:
            await writer.close()
            await rest.close()


async def test_cors_for_allowed_origins_only(tmp_path: Path) -> None:
    settings = base_settings(tmp_path, cors_origins=["https://app.example"])
    async with InProcessServer(settings) as srv, aiohttp.ClientSession() as http:
        url = f"{srv.url}/api/v1/projects"
        preflight = {
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type",
        }
        async with http.options(url, headers=preflight) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert "AUTHORIZATION" in r.headers["Access-Control-Allow-Headers"].upper()
        headers = {"Origin": "https://app.example", "Authorization": f"Bearer {token('alice')}"}
        async with http.get(url, headers=headers) as r:
            assert r.status == 200
            assert r.headers["Access-Control-Allow-Origin"] == "https://app.example"
        async with http.get(url, headers={**headers, "Origin": "https://evil.example"}) as r:
            assert "Access-Control-Allow-Origin" not in r.headers
        async with http.options(url, headers={**preflight, "Origin": "https://evil.example"}) as r:
            assert r.status == 403
