"""The browser pages: the node-graph editor at ``/`` and the admin dashboard at
``/admin``, served from ``collab/web/dist`` (built by ``npm run build``)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from collab.settings import Settings

DIST = Path(__file__).parent / "web" / "dist"

_MISSING = """<!doctype html><meta charset="utf-8"><title>collab</title>
<h1>collab is running</h1>
<p>The web pages are not built. Run <code>npm ci && npm run build</code> in the
repository, or start the server with <code>./scripts/serve</code>, which does it.</p>
"""


def setup_web(app: web.Application, settings: Settings) -> None:
    async def page(request: web.Request) -> web.StreamResponse:
        name = "admin.html" if request.path.rstrip("/") == "/admin" else "index.html"
        path = DIST / name
        if not path.exists():
            return web.Response(text=_MISSING, content_type="text/html")
        return web.FileResponse(path, headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", page)
    app.router.add_get("/admin", page)
    app.router.add_get("/admin/", page)
    if (DIST / "assets").exists():
        app.router.add_static("/assets", DIST / "assets")
