"""Composition root: ``create_app`` builds every component once, wires them, and
registers their lifecycles (aiohttp ``cleanup_ctx``, started in order, stopped in
reverse). Concrete stores and brokers are chosen here only, from settings, unless a
test passes its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_cors
from aiohttp import web

from auth.tokens import TokenVerifier
from collab.api import admin as admin_api
from collab.api import notifications as notifications_api
from collab.api import projects as projects_api
from collab.api import session as session_api
from collab.api import versions as versions_api
from collab.api.base import MAX_BODY_BYTES, error_middleware, json_response
from collab.api.openapi import build_openapi
from collab.broker.base import Broker
from collab.cluster import Cluster
from collab.commit import Committer
from collab.compaction import Compactor, worker_pool
from collab.keys import SERVICES
from collab.metrics import Metrics
from collab.notifications import Notifier
from collab.registry import Registry
from collab.rooms import RoomManager
from collab.services import Services
from collab.settings import Settings
from collab.tasks import stop_tasks
from collab.transport import SioEmitter, SocketTransport, create_sio
from collab.versions import Versions
from collab.web import setup_web
from persistence.base import Store
from persistence.errors import StoreUnavailable

log = logging.getLogger("collab.app")

API_MODULES = (session_api, projects_api, versions_api, notifications_api, admin_api)
# How long start-up waits for the database before giving up (a container may start
# before Postgres accepts connections).
STORE_START_TIMEOUT_S = 60.0
TOKEN_SWEEP_S = 5.0
# How long a commit waits for its updates to reach the Redis stream (normally well
# under a millisecond; bounded so that a stuck Redis never holds commits back).
PUBLISH_WAIT_S = 1.0


def make_store(settings: Settings) -> Store:
    if settings.uses_postgres:
        from persistence.postgres import PostgresStore

        return PostgresStore(settings.database_url or "")
    from persistence.sqlite import SqliteStore

    return SqliteStore(str(settings.sqlite_path))


def make_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        from collab.broker.redis import RedisBroker

        return RedisBroker(
            settings.redis_url,
            instance_id=settings.instance_id,
            prefix=settings.redis_prefix,
            stream_retention_s=settings.stream_retention_s,
        )
    from collab.broker.memory import InProcessBroker

    return InProcessBroker(instance_id=settings.instance_id)


def dev_secret_path(settings: Settings) -> Path:
    return settings.data_dir / "dev-secret"


def load_dev_secret(settings: Settings, *, create: bool) -> str | None:
    """The development HS256 secret kept in ``data_dir`` (created on first use)."""
    path = dev_secret_path(settings)
    if path.exists():
        return path.read_text().strip()
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret


def make_verifier(settings: Settings) -> tuple[TokenVerifier, str | None]:
    public_key = settings.jwt_public_key_file.read_text() if settings.jwt_public_key_file else None
    secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
    dev_secret = None
    algorithms = list(settings.jwt_algorithms)
    if secret is None and public_key is None:
        dev_secret = load_dev_secret(settings, create=True)
        secret = dev_secret
        algorithms = ["HS256"]
        log.warning(
            "no COLLAB_JWT_SECRET or COLLAB_JWT_PUBLIC_KEY_FILE: using the development "
            "secret in %s (do not run like this in production)",
            dev_secret_path(settings),
        )
    verifier = TokenVerifier(
        algorithms=algorithms,
        secret=secret,
        public_key=public_key,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
        admin_role=settings.admin_role,
        service_role=settings.service_role,
    )
    return verifier, dev_secret


def create_app(
    settings: Settings, *, store: Store | None = None, broker: Broker | None = None
) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    metrics = Metrics()
    store = store or make_store(settings)
    broker = broker or make_broker(settings)
    verifier, dev_secret = make_verifier(settings)
    rooms_ref: list[RoomManager] = []
    committer = Committer(
        store,
        window_ms=settings.commit_window_ms,
        max_pending=settings.max_pending_updates,
        max_bytes=settings.max_pending_bytes,
        metrics=metrics,
        on_committed=lambda p, s: rooms_ref[0].on_committed(p, s),
        on_recovered=lambda: rooms_ref[0].on_store_recovered(),
        before_commit=lambda: broker.published(PUBLISH_WAIT_S),
    )
    rooms = RoomManager(
        settings=settings, store=store, broker=broker, committer=committer, metrics=metrics
    )
    rooms_ref.append(rooms)
    sio = create_sio(settings)
    sio.attach(app)
    transport = SocketTransport(
        sio=sio, rooms=rooms, store=store, verifier=verifier, settings=settings, metrics=metrics
    )
    rooms.emitter = SioEmitter(sio)
    cluster = Cluster(rooms=rooms, transport=transport)
    notifier = Notifier(store=store, cluster=cluster, transport=transport)
    versions = Versions(store=store, rooms=rooms, metrics=metrics, notifier=notifier)
    compactor = Compactor(
        store=store,
        metrics=metrics,
        holder=settings.instance_id,
        executor=worker_pool(),
    )
    rooms.on_compact_due = compactor.request
    registry = Registry(
        rooms=rooms,
        broker=broker,
        committer=committer,
        settings=settings,
        store=store,
        transport=transport,
    )
    svc = Services(
        settings=settings,
        store=store,
        broker=broker,
        committer=committer,
        rooms=rooms,
        sio=sio,
        transport=transport,
        verifier=verifier,
        metrics=metrics,
        versions=versions,
        cluster=cluster,
        notifier=notifier,
        registry=registry,
        compactor=compactor,
        dev_secret=dev_secret,
    )
    app[SERVICES] = svc
    metrics.on_scrape(lambda: _refresh_metrics(svc))

    routes = [r for module in API_MODULES for r in module.api.routes]
    openapi = build_openapi(routes)
    for module in API_MODULES:
        module.api.install(app)

    async def openapi_json(_request: web.Request) -> web.Response:
        return json_response(openapi)

    app.router.add_get("/api/v1/openapi.json", openapi_json)
    if settings.cors_origins:
        _allow_cors(app, settings.cors_origins)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    setup_web(app, settings)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_close_sockets)
    return app


def _allow_cors(app: web.Application, origins: list[str]) -> None:
    """CORS for the REST API (Socket.IO checks the same origins itself)."""
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        expose_headers="*",
        allow_headers=("Authorization", "Content-Type"),
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        max_age=600,
    )
    cors = aiohttp_cors.setup(app, defaults={origin: options for origin in origins})
    for route in list(app.router.routes()):
        if route.resource is not None and route.resource.canonical.startswith("/api/"):
            cors.add(route)


def _refresh_metrics(svc: Services) -> None:
    svc.metrics.rooms.set(len(svc.rooms.rooms))
    svc.metrics.commit_pending.set(svc.committer.pending())
    svc.metrics.commit_lag_seconds.set(svc.committer.oldest_age_s())
    lag = getattr(svc.broker, "stream_lag_ms", None)
    if isinstance(lag, int | float):
        svc.metrics.stream_lag_seconds.set(lag / 1000.0)
    dropped = getattr(svc.broker, "dropped_ops", None)
    if isinstance(dropped, int):
        svc.metrics.broker_dropped.set(dropped)


async def _start_store(store: Store) -> None:
    deadline = time.monotonic() + STORE_START_TIMEOUT_S
    delay = 0.5
    while True:
        try:
            await store.start()
            return
        except StoreUnavailable as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("store not reachable yet (%s); retrying in %.1f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    svc = app[SERVICES]
    svc.started_at = time.time()
    await _start_store(svc.store)
    try:
        await svc.broker.start(svc.rooms)
        await svc.committer.start()
        await svc.rooms.start()
        await svc.registry.start()
        sweeper = asyncio.create_task(_token_sweeper(svc), name="collab-token-sweeper")
        log.info(
            "collab started",
            extra={"store": svc.store.kind, "broker": svc.broker.kind},
        )
        yield
        await stop_tasks([sweeper], log)
        await svc.registry.close()
        grace = svc.settings.shutdown_grace_s
        try:
            # Versions of rooms with unsaved changes, orphan checks: bounded, since the
            # committer below still writes everything that was accepted.
            await asyncio.wait_for(svc.rooms.close(), timeout=grace)
        except TimeoutError:
            log.error("releasing the rooms took longer than %.0f s", grace)
        await svc.committer.close(timeout=grace)
        await svc.compactor.close()
        await svc.broker.close()
    finally:
        await svc.store.close()
        log.info("collab stopped")


async def _token_sweeper(svc: Services) -> None:
    while True:
        await asyncio.sleep(TOKEN_SWEEP_S)
        try:
            await svc.transport.expire_tokens()
        except Exception:
            log.exception("token sweep failed")


async def _close_sockets(app: web.Application) -> None:
    """Graceful shutdown, step 1: drop every client's transport (not a Socket.IO
    disconnect, which the client would take as final) so that it reconnects, through
    the load balancer, to another instance."""
    svc = app[SERVICES]
    svc.rooms.closing = True
    # Close the websockets themselves: engine.io's close waits for send queues that may
    # never drain, and its CLOSE packet is ignored by the client (which would then keep
    # the connection until the ping timeout, 15 s).
    websockets = list(svc.sio.open_websockets)
    if websockets:
        await asyncio.gather(
            *(asyncio.wait_for(ws.going_away(), timeout=3.0) for ws in websockets),
            return_exceptions=True,
        )


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    svc = request.app[SERVICES]
    checks: dict[str, dict[str, object]] = {}
    try:
        await asyncio.wait_for(svc.store.ping(), timeout=2.0)
        checks["store"] = {"ok": True, "kind": svc.store.kind}
    except Exception as exc:
        checks["store"] = {
            "ok": False,
            "kind": svc.store.kind,
            "error": str(exc) or type(exc).__name__,
        }
    checks["commits"] = {
        "ok": svc.committer.healthy,
        "pending": svc.committer.pending(),
        "lag_s": round(svc.committer.oldest_age_s(), 3),
        "error": svc.committer.last_error,
    }
    checks["broker"] = {"ok": svc.broker.healthy, "kind": svc.broker.kind}
    ready = all(bool(c["ok"]) for c in checks.values()) and not svc.rooms.closing
    return json_response(
        {
            "status": "ready" if ready else "unavailable",
            "instance": svc.settings.instance_id,
            "checks": checks,
        },
        status=200 if ready else 503,
    )


async def metrics_view(request: web.Request) -> web.Response:
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")
