"""The ``collab`` command: serve, token, migrate, rooms."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from collab.settings import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="collab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="bind address (env COLLAB_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (env COLLAB_PORT, default 8000)")

    token = sub.add_parser("token", help="print a signed token (development / HS256 secret)")
    token.add_argument("--sub", required=True, help="user id")
    token.add_argument("--name", help="display name")
    token.add_argument("--admin", action="store_true", help="add the admin role")
    token.add_argument("--service", action="store_true", help="add the service role")
    token.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")

    sub.add_parser("migrate", help="apply pending database migrations and exit")

    rooms = sub.add_parser("rooms", help="print the live rooms of the cluster (admin token)")
    rooms.add_argument("--url", default=None, help="server URL (default http://HOST:PORT)")
    rooms.add_argument("--token", default=None, help="admin token (default: a dev admin token)")
    rooms.add_argument("--json", action="store_true", help="raw JSON")
    rooms.add_argument("--sort", default="activity")

    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.command == "serve":
        if args.host:
            overrides["host"] = args.host
        if args.port is not None:
            overrides["port"] = args.port
    settings = Settings(**overrides)
    if args.command == "serve":
        return _serve(settings)
    if args.command == "token":
        return _token(settings, args)
    if args.command == "migrate":
        return asyncio.run(_migrate(settings))
    return _rooms(settings, args)


def _serve(settings: Settings) -> int:
    from aiohttp import web

    from collab.app import create_app
    from collab.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format, settings.instance_id)
    loop = _event_loop(settings)
    asyncio.set_event_loop(loop)
    app = create_app(settings)
    print(f"collab listening on http://{settings.host}:{settings.port}", file=sys.stderr)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=settings.shutdown_grace_s,
        access_log=None,
        loop=loop,
    )
    return 0


def _event_loop(settings: Settings) -> asyncio.AbstractEventLoop:
    if settings.event_loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if settings.event_loop == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _secret(settings: Settings) -> str:
    from collab.app import load_dev_secret

    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    secret = load_dev_secret(settings, create=True)
    assert secret is not None
    return secret


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from auth.tokens import issue_token

    if settings.jwt_secret is None and settings.jwt_public_key_file is not None:
        print("tokens for RS*/ES* keys are issued by your identity provider", file=sys.stderr)
        return 2
    roles = [
        r
        for r, on in ((settings.admin_role, args.admin), (settings.service_role, args.service))
        if on
    ]
    print(issue_token(_secret(settings), sub=args.sub, name=args.name, roles=roles, ttl_s=args.ttl))
    return 0


async def _migrate(settings: Settings) -> int:
    from collab.app import make_store

    store = make_store(settings)
    await store.start()  # applies pending migrations (under a lock: safe to race)
    applied = store.applied_migrations
    await store.close()
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def _rooms(settings: Settings, args: argparse.Namespace) -> int:
    from auth.tokens import issue_token

    url = (args.url or f"http://{settings.host}:{settings.port}").rstrip("/")
    token = args.token or issue_token(
        _secret(settings), sub="cli", roles=[settings.admin_role], ttl_s=60
    )
    request = urllib.request.Request(
        f"{url}/api/v1/admin/rooms?sort={args.sort}", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            data = json.load(response)
    except urllib.error.HTTPError as exc:
        print(f"error {exc.code}: {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    print(_table(data))
    return 0


def _table(data: dict[str, Any]) -> str:
    header = ("PROJECT", "INSTANCES", "CONNS", "USERS", "NODES", "EDGES", "BYTES", "UPD/S", "LAG S")
    rows = [header]
    for r in data["rooms"]:
        rows.append(
            (
                r["project_id"],
                ",".join(i["instance_id"] for i in r["instances"]),
                str(r["connections"]),
                ",".join(u.get("name") or u["id"] for u in r["users"]),
                str(r["node_count"]),
                str(r["edge_count"]),
                str(r["doc_bytes"]),
                f"{r['updates_per_s']:.1f}",
                f"{r['commit_lag_s']:.2f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.append(f"{len(data['rooms'])} rooms on {len(data['instances'])} instances")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
