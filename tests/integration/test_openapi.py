"""The OpenAPI 3.1 document checked against the implementation.

1. The served document is valid OpenAPI 3.1 (schemathesis loads and validates it).
2. It covers every aiohttp route under ``/api/v1`` and documents nothing else.
3. Schemathesis, against the live server: for every operation, generated requests get
   no 5xx, a documented status, a documented content type and a body that validates
   against the documented schema. Requests name a real project (with versions and a
   graph) and a real notification most of the time, so project paths hit real data.

The server runs in a thread with its own event loop, because schemathesis sends its
requests synchronously (``requests``); the tests here are plain functions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from collab.api.base import openapi_path
from collab.api.openapi import build_openapi
from collab.app import API_MODULES
from collab.settings import Settings
from tests.integration.ysock import YSock
from tests.server import InProcessServer, base_settings, token

T = TypeVar("T")

ADMIN_ID = "root"
ADMIN = token(ADMIN_ID, "Root", admin=True)
AUTH = {"Authorization": f"Bearer {ADMIN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 25

# The document as the route tables produce it: the list of operations is known at
# collection time, so each operation is its own test.
DOCUMENT = build_openapi([r for module in API_MODULES for r in module.api.routes])
OPERATIONS = sorted(
    (method.upper(), path) for path, ops in DOCUMENT["paths"].items() for method in ops
)

# Operations that currently fail a check, with the reason. Empty: every one passes.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

NEGATIVE_EXAMPLES = 10
KNOWN_NEGATIVE_FAILURES: dict[tuple[str, str], str] = {}


# -- the server, in a thread -----------------------------------------------------------


class ThreadedServer:
    """``InProcessServer`` on its own event loop in a daemon thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = ""
        self.routes: list[tuple[str, str]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="collab-test-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the server thread did not start")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the server thread did not stop"

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's event loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with InProcessServer(self.settings) as srv:
            self.url = srv.url
            self.routes = [
                (route.method, route.resource.canonical)
                for route in srv.app.router.routes()
                if route.resource is not None
            ]
            self._ready.set()
            await self._stop.wait()


@dataclass(frozen=True)
class Fixtures:
    """Real data the generated requests are pointed at."""

    url: str
    project: str
    notification: str


def _request(method: str, url: str, body: Any = None) -> Any:
    r = requests.request(method, url, json=body, headers=AUTH, timeout=10)
    assert r.status_code < 300, (method, url, r.status_code, r.text)
    return r.json() if r.content else None


def make_project(url: str) -> str:
    """An admin-owned project with a graph and two versions."""
    api = url + "/api/v1"
    pid = str(_request("POST", api + "/projects", {"name": "schemathesis"})["id"])
    graph = {
        "nodes": {
            "a": {"type": "Source", "x": 0, "y": 0, "params": {"rate": 1}},
            "b": {"type": "Sink", "x": 10, "y": 0},
        },
        "edges": {"ab": {"source": "a", "sourceSocket": "o", "target": "b", "targetSocket": "i"}},
    }
    _request("PUT", f"{api}/projects/{pid}/graph", graph)
    _request("POST", f"{api}/projects/{pid}/versions", {"label": "one"})
    _request("PUT", f"{api}/projects/{pid}/graph", {"nodes": {}, "edges": {}})
    _request("POST", f"{api}/projects/{pid}/versions", {"label": "two"})
    _request("PUT", f"{api}/projects/{pid}/members/bob", {"role": "editor"})
    return pid


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedServer]:
    # dev_mode: the development sign-in answers too (its 200 is checked as well).
    settings = base_settings(Path(tmp_path_factory.mktemp("openapi")), dev_mode=True)
    server = ThreadedServer(settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def data(live: ThreadedServer) -> Iterator[Fixtures]:
    api = live.url + "/api/v1"
    body = {"user_ids": [ADMIN_ID], "kind": "schemathesis", "payload": {"n": 1}}
    [notification] = _request("POST", api + "/notifications", body)["items"]
    project = make_project(live.url)

    async def connect() -> YSock:  # a live room, for the admin room routes
        return await YSock(live.url, project, ADMIN).connect()

    sock = live.run(connect())
    try:
        yield Fixtures(url=live.url, project=project, notification=notification["id"])
    finally:
        live.run(sock.close())


@pytest.fixture(scope="module")
def schema(live: ThreadedServer) -> Any:
    return schemathesis.openapi.from_url(live.url + "/api/v1/openapi.json")


# -- the document ----------------------------------------------------------------------


def test_served_document_is_valid_openapi_3_1(live: ThreadedServer, schema: Any) -> None:
    served = requests.get(live.url + "/api/v1/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.headers["Content-Type"].startswith("application/json")
    assert served.json() == DOCUMENT
    assert DOCUMENT["openapi"] == "3.1.0"
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises when invalid
    loaded = list(schema.get_all_operations())
    assert [r.err() for r in loaded if isinstance(r, Err)] == []
    assert len(loaded) == len(OPERATIONS)
    for path, ops in DOCUMENT["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op["operationId"], where
            assert op["summary"], where
            if "security" in op:
                assert "401" in op["responses"], where
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert response["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/Error"
                    }, where
    ids = [op["operationId"] for ops in DOCUMENT["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)), "operationIds are unique"


def test_document_covers_exactly_the_api_routes(live: ThreadedServer) -> None:
    served = {
        (method, openapi_path(path))
        for method, path in live.routes
        if path.startswith("/api/v1/") and method != "HEAD"
    }
    documented = set(OPERATIONS)
    # The document does not describe itself (as FastAPI's does not either).
    assert served - documented == {("GET", "/api/v1/openapi.json")}
    assert documented - served == set()


# -- schemathesis ----------------------------------------------------------------------


VALID_GRAPHS = [
    {
        "nodes": {
            "a": {"type": "Source", "x": 0, "y": 0, "params": {"rate": 1}},
            "b": {"type": "Sink", "x": 10, "y": 0, "label": "out"},
        },
        "edges": {"ab": {"source": "a", "sourceSocket": "o", "target": "b", "targetSocket": "i"}},
        "meta": {"name": "g"},
    },
    {"nodes": {"c": {"type": "Noise", "x": -1.5, "y": 2}}, "edges": {}},
]


def _point_at_real_data(case: Any, fixtures: Fixtures, choice: int) -> None:
    """Replace generated ids by real ones (and, for the graph import, every other
    body by a valid graph: the schema cannot express every rule of validate_graph)."""
    params = case.path_parameters
    route = (case.method.upper(), case.path)
    if "project_id" in params:
        if route == ("DELETE", "/api/v1/projects/{project_id}"):
            # deleted: a fresh one
            created = _request("POST", fixtures.url + "/api/v1/projects", {"name": "doomed"})
            params["project_id"] = created["id"]
        else:
            params["project_id"] = fixtures.project
    if "version" in params:
        params["version"] = str(1 + choice % 2)
    if "a" in params:
        params["a"] = str(1 + choice % 2)
    if "b" in params:
        params["b"] = ("1", "2", "current")[choice % 3]
    if "notification_id" in params:
        params["notification_id"] = fixtures.notification
    if "user_id" in params and choice % 2 == 0:
        params["user_id"] = "bob"
        if case.method.upper() == "DELETE":  # make sure there is someone to remove
            url = f"{fixtures.url}/api/v1/projects/{fixtures.project}/members/bob"
            _request("PUT", url, {"role": "editor"})
    if route == ("PUT", "/api/v1/projects/{project_id}/graph") and choice % 2 == 0:
        case.body = VALID_GRAPHS[choice % 4 // 2]


def run_operation(
    schema: Any,
    fixtures: Fixtures,
    method: str,
    path: str,
    *,
    mode: GenerationMode = GenerationMode.POSITIVE,
    max_examples: int = MAX_EXAMPLES,
) -> None:
    operation = schema[path][method]
    session = requests.Session()

    @hypothesis.settings(
        max_examples=max_examples,
        derandomize=True,  # the same requests every run: reliably green or red
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), choice=st.integers(0, 5))
    def check(case: Any, choice: int) -> None:
        # Five times in six, aim at real data; else keep the generated ids (404s).
        if choice < 5:
            _point_at_real_data(case, fixtures, choice)
        response = case.call(base_url=fixtures.url, headers=AUTH, session=session, timeout=10)
        case.validate_response(response, checks=CHECKS, headers=AUTH)

    try:
        check()
    finally:
        session.close()


def _params(
    known: dict[tuple[str, str], str], operations: list[tuple[str, str]] = OPERATIONS
) -> list[Any]:
    return [
        pytest.param(
            m, p, id=f"{m} {p}", marks=pytest.mark.xfail(strict=True, reason=known[(m, p)])
        )
        if (m, p) in known
        else pytest.param(m, p, id=f"{m} {p}")
        for m, p in operations
    ]


def _can_be_broken(method: str, path: str) -> bool:
    """An operation with no parameters, body or auth has no input to get wrong."""
    op = DOCUMENT["paths"][path][method.lower()]
    return bool(op.get("parameters") or op.get("requestBody") or op.get("security"))


NEGATABLE = [(m, p) for m, p in OPERATIONS if _can_be_broken(m, p)]


@pytest.mark.parametrize(("method", "path"), _params(KNOWN_FAILURES))
def test_schemathesis(schema: Any, data: Fixtures, method: str, path: str) -> None:
    """Valid requests (positive generation)."""
    run_operation(schema, data, method, path)


@pytest.mark.parametrize(("method", "path"), _params(KNOWN_NEGATIVE_FAILURES, NEGATABLE))
def test_schemathesis_negative(schema: Any, data: Fixtures, method: str, path: str) -> None:
    """Requests that break the documented schema: still no 5xx and only documented
    statuses, content types and error bodies."""
    run_operation(
        schema, data, method, path, mode=GenerationMode.NEGATIVE, max_examples=NEGATIVE_EXAMPLES
    )
