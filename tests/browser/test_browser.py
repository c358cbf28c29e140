"""The browser pages in a real browser (Debian's chromium, headless): the editor at
``/`` and the admin dashboard at ``/admin``, against the in-process server.

Every wait is on a page (or server) condition with a timeout, never a sleep.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Locator, Page, expect

from tests.browser.conftest import DOCS, Pages
from tests.browser.netcut import NetCut
from tests.nodeclient import NodeClients
from tests.server import InProcessServer, Rest, base_settings, token, wait_for

pytestmark = pytest.mark.browser

_TRANSLATE = re.compile(r"translate\((-?[\d.]+) (-?[\d.]+)\)")


# -- helpers ---------------------------------------------------------------------------


def project_url(server: InProcessServer, pid: str) -> str:
    return f"{server.url}/#/p/{pid}"


async def open_project(
    pages: Pages, label: str, server: InProcessServer, pid: str, tok: str
) -> Page:
    """A signed-in page with the project open and in sync ("Saved")."""
    page = await pages.open(label, project_url(server, pid), token=tok)
    await expect(page.get_by_test_id("save-status")).to_have_attribute("data-state", "saved")
    return page


def node(page: Page, node_id: str) -> Locator:
    return page.locator(f'.node[data-node-id="{node_id}"]')


async def position(locator: Locator) -> tuple[float, float]:
    transform = await locator.get_attribute("transform") or ""
    match = _TRANSLATE.fullmatch(transform)
    assert match, f"unexpected transform {transform!r}"
    return float(match[1]), float(match[2])


async def add_node(page: Page, node_type: str) -> str:
    """Click a palette button; return the new node's id (it is selected after adding)."""
    before = set(await page.locator(".node").evaluate_all("els => els.map(e => e.dataset.nodeId)"))
    await page.get_by_test_id(f"add-{node_type}").click()
    added = page.locator(".node.selected")
    await expect(added).to_have_count(1)
    node_id = await added.get_attribute("data-node-id")
    assert node_id
    assert node_id not in before
    return node_id


async def drag(
    page: Page, locator: Locator, dx: float, dy: float, *, release: bool = True, steps: int = 12
) -> None:
    """Drag an element by (dx, dy) screen pixels with real pointer events."""
    box = await locator.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(x, y)
    await page.mouse.down()
    await page.mouse.move(x + dx, y + dy, steps=steps)
    if release:
        await page.mouse.up()


async def connect(page: Page, source_id: str, target_id: str, target_socket: str = "in") -> None:
    """Drag from a node's `out` socket to another node's input socket."""
    src = node(page, source_id).locator('[data-socket="out"] .socket-dot')
    dst = node(page, target_id).locator(f'[data-socket="{target_socket}"] .socket-dot')
    await src.hover()
    await page.mouse.down()
    box = await dst.bounding_box()
    assert box is not None
    await page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
    await page.mouse.up()


async def graph(rest: Rest, pid: str, tok: str) -> dict[str, Any]:
    status, body = await rest.get(f"/projects/{pid}/graph", token=tok)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


async def shared_project(
    rest: Rest, owner: str, members: dict[str, str], name: str = "Shared graph"
) -> str:
    pid = await rest.project(owner, name)
    for user, role in members.items():
        status, body = await rest.put(
            f"/projects/{pid}/members/{user}", {"role": role}, token=owner
        )
        assert status == 200, body
    return pid


# A small pipeline, placed clear of where the palette drops new nodes (the middle).
SCENE: dict[str, Any] = {
    "nodes": {
        "planet": {
            "type": "Sphere",
            "x": 20,
            "y": 30,
            "label": "Planet",
            "params": {"radius": 2, "segments": 48},
        },
        "orbit": {
            "type": "Transform",
            "x": 20,
            "y": 190,
            "label": "Orbit",
            "params": {"tx": 4, "ty": 0, "tz": 0, "rotate": 30},
        },
        "moon": {
            "type": "Sphere",
            "x": 20,
            "y": 380,
            "label": "Moon",
            "params": {"radius": 0.5, "segments": 24},
        },
        "system": {"type": "Merge", "x": 300, "y": 470, "params": {"mode": "union"}},
    },
    "edges": {
        "e-planet": {
            "source": "planet",
            "sourceSocket": "out",
            "target": "orbit",
            "targetSocket": "in",
        },
        "e-orbit": {
            "source": "orbit",
            "sourceSocket": "out",
            "target": "system",
            "targetSocket": "a",
        },
        "e-moon": {
            "source": "moon",
            "sourceSocket": "out",
            "target": "system",
            "targetSocket": "b",
        },
    },
}


async def seed(rest: Rest, pid: str, tok: str) -> None:
    """Import ``SCENE`` into the project (REST, one live change)."""
    status, body = await rest.put(f"/projects/{pid}/graph", SCENE, token=tok)
    assert status == 200, body


@pytest.fixture
async def dev_server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    """A server in development mode (the development sign-in is offered)."""
    async with InProcessServer(base_settings(tmp_path, dev_mode=True)) as srv:
        yield srv


# -- sign-in and projects --------------------------------------------------------------


async def test_first_visit_offers_development_sign_in_and_creates_a_project(
    dev_server: InProcessServer, pages: Pages
) -> None:
    page = await pages.open("first", dev_server.url + "/")
    dev = page.get_by_test_id("dev-signin")
    await expect(dev).to_be_visible()
    await pages.screenshot(page, "sign-in")
    await page.fill("#dev-user", "ada")
    await page.fill("#dev-name", "Ada Lovelace")
    await dev.get_by_role("button", name="Development sign-in").click()

    await expect(page.get_by_test_id("projects")).to_contain_text("You have no projects yet")
    await expect(page.get_by_test_id("me")).to_contain_text("Ada Lovelace")
    await page.fill("#new-project-name", "First graph")
    await page.get_by_role("button", name="Create project").click()
    await expect(page.get_by_test_id("project-name")).to_have_text("First graph")
    await expect(page).to_have_url(re.compile(r"#/p/[0-9a-f]+$"))
    pid = page.url.rsplit("/", 1)[1]

    node_id = await add_node(page, "Cube")
    await expect(page.get_by_test_id("save-status")).to_have_text("Saved")

    # A reload reopens the project (the token and the URL survive) with the node.
    await page.reload()
    await expect(page.get_by_test_id("project-name")).to_have_text("First graph")
    await expect(node(page, node_id)).to_be_visible()
    rest = Rest(dev_server.url)
    try:
        status, me = await rest.post("/dev/sign-in", {"user_id": "ada"})
        assert status == 200
        assert list((await graph(rest, pid, me["token"]))["nodes"]) == [node_id]
    finally:
        await rest.close()


async def test_sign_in_with_a_pasted_token_when_not_in_development_mode(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice = token("alice", "Alice Liddell")
    await rest.project(alice, "Wonderland")
    page = await pages.open("paste", server.url + "/")
    await expect(page.get_by_test_id("token-form")).to_be_visible()
    # The development sign-in answers 404 here, so it is not offered.
    await expect(page.get_by_test_id("dev-signin")).to_be_hidden()

    await page.fill("#token-input", "not-a-token")
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_role("alert")).to_contain_text("refused")

    await page.fill("#token-input", alice)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await expect(page.get_by_test_id("projects")).to_contain_text("Wonderland")
    await page.get_by_role("link", name="Wonderland").click()
    await expect(page.get_by_test_id("save-status")).to_have_text("Saved")
    await expect(page.get_by_test_id("role")).to_have_text("owner")


# -- co-editing -------------------------------------------------------------------------


async def test_two_browsers_see_each_others_nodes_drags_and_presence(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice, bob = token("alice", "Alice"), token("bob", "Bob")
    pid = await shared_project(rest, alice, {"bob": "editor"}, "Scene")
    await seed(rest, pid, alice)
    a = await open_project(pages, "alice", server, pid, alice)
    b = await open_project(pages, "bob", server, pid, bob)
    await expect(a.locator(".edge")).to_have_count(3)

    # Presence: each sees the other's avatar.
    await expect(a.locator('.avatars .avatar[data-user-id="bob"]')).to_be_visible()
    await expect(b.locator('.avatars .avatar[data-user-id="alice"]')).to_be_visible()

    # Nodes added on one side appear on the other.
    cube = await add_node(a, "Cube")
    scale = await add_node(b, "Scale")
    output = await add_node(a, "Output")
    for page in (a, b):
        for node_id in (cube, scale, output):
            await expect(node(page, node_id)).to_be_visible()

    # An edge drawn by Alice appears for Bob.
    await connect(a, cube, scale)
    await connect(a, scale, output)
    await expect(b.locator(".edge")).to_have_count(5)
    # (An edge between nodes at one height is a flat line: "visible" needs a height.)
    await expect(b.locator(f'.edge[data-source="{cube}"][data-target="{scale}"]')).to_have_count(1)

    # A parameter edited by Bob shows on Alice's node.
    await node(b, scale).click()
    await b.fill("#param-factor", "2.5")
    await b.press("#param-factor", "Enter")
    await expect(node(a, scale).locator('[data-param="factor"]')).to_contain_text("2.5")

    # Bob drags a node: while he holds it, Alice sees his marker and the node move.
    start = await position(node(a, output))
    await drag(b, node(b, output).locator(".node-head"), 160, 90, release=False)
    marker = node(a, output).locator('.drag-marker[data-user-id="bob"]')
    await expect(marker).to_contain_text("Bob is moving this")
    await expect(node(a, output).locator('.remote-selection[data-user-id="bob"]')).to_be_visible()
    await pages.screenshot(a, "alice-sees-bob-dragging", copy_to=DOCS / "editor.png")
    await b.mouse.up()
    await expect(marker).to_have_count(0)
    # Where the drag ended, once stored: both pages show exactly that.
    await expect(b.get_by_test_id("save-status")).to_have_text("Saved")
    stored = (await graph(rest, pid, bob))["nodes"][output]
    end = (stored["x"], stored["y"])
    assert end[0] > start[0] + 100
    assert end[1] > start[1] + 50
    for page in (a, b):
        await expect(node(page, output)).to_have_attribute(
            "transform", f"translate({end[0]:g} {end[1]:g})"
        )

    # Pointers: Alice sees Bob's cursor with his name where he points.
    canvas = await b.get_by_test_id("canvas").bounding_box()
    assert canvas is not None
    await b.mouse.move(canvas["x"] + 300, canvas["y"] + 400)
    pointer = a.locator(".remote-pointer[data-user-id='bob']")
    await expect(pointer).to_contain_text("Bob")
    await expect(pointer).to_have_attribute("transform", re.compile(r"^translate\(260 360\)"))
    await a.mouse.move(500, 300)
    await expect(b.locator(".remote-pointer[data-user-id='alice']")).to_contain_text("Alice")

    # Deleting a node deletes its edges too, for both.
    await node(a, scale).click()
    await a.keyboard.press("Delete")
    await expect(node(b, scale)).to_have_count(0)
    await expect(b.locator(".edge")).to_have_count(3)
    g = await graph(rest, pid, alice)
    assert set(g["nodes"]) == {cube, output, *SCENE["nodes"]}
    assert set(g["edges"]) == set(SCENE["edges"])
    assert g["nodes"][output]["x"] == end[0]
    assert g["nodes"][output]["y"] == end[1]
    await pages.screenshot(b, "bob")


async def test_an_edge_is_disconnected_by_clicking_it_and_pressing_delete(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice = token("alice")
    pid = await rest.project(alice)
    page = await open_project(pages, "alice", server, pid, alice)
    sphere = await add_node(page, "Sphere")
    merge = await add_node(page, "Merge")
    await connect(page, sphere, merge, "b")
    edge = page.locator(".edge")
    await expect(edge).to_have_count(1)
    g = await graph(rest, pid, alice)
    (stored,) = g["edges"].values()
    assert stored == {"source": sphere, "sourceSocket": "out", "target": merge, "targetSocket": "b"}

    await page.keyboard.press("Escape")
    await edge.click()
    await expect(edge).to_have_class(re.compile(r"\bselected\b"))
    await page.keyboard.press("Delete")
    await expect(edge).to_have_count(0)
    await wait_for(lambda: _no_edges(rest, pid, alice), message="edge deleted on the server")


async def _no_edges(rest: Rest, pid: str, tok: str) -> bool:
    return not (await graph(rest, pid, tok))["edges"]


async def test_a_node_y_socket_io_clients_edits_appear_on_the_page(
    server: InProcessServer, rest: Rest, pages: Pages, nc: NodeClients
) -> None:
    alice, carl = token("alice"), token("carl", "Carl")
    pid = await shared_project(rest, alice, {"carl": "editor"})
    page = await open_project(pages, "alice", server, pid, alice)

    await nc.open(
        "carl",
        url=server.url,
        room=pid,
        token=carl,
        awareness={"user": {"name": "Carl", "color": "#2b8a3e"}},
    )
    await nc.wait_synced("carl")
    node_id = await nc.add_node(
        "carl",
        type="Transform",
        x=120,
        y=80,
        label="from node",
        params={"tx": 1.5, "enabled": True},
    )
    n = node(page, node_id)
    await expect(n).to_contain_text("from node")
    await expect(n.locator('[data-param="tx"]')).to_contain_text("1.5")
    await expect(n).to_have_attribute("transform", "translate(120 80)")
    await expect(page.locator('.avatars .avatar[data-user-id="carl"]')).to_be_visible()

    await nc.edit("carl", "move", nodeId=node_id, x=300, y=200)
    await expect(n).to_have_attribute("transform", "translate(300 200)")
    await nc.edit("carl", "set-param", nodeId=node_id, key="tx", value=4)
    await expect(n.locator('[data-param="tx"]')).to_contain_text("4")

    # And the other way round: the page's edit reaches the Node client.
    cube = await add_node(page, "Cube")
    edge = (
        await nc.edit(
            "carl", "connect", source=cube, sourceSocket="out", target=node_id, targetSocket="in"
        )
    )["edgeId"]
    await expect(page.locator(f'.edge[data-edge-id="{edge}"]')).to_have_count(1)
    doc = await nc.json("carl")
    assert doc["nodes"][cube]["type"] == "Cube"
    assert doc["nodes"][cube]["params"] == {"size": 1, "center": True}
    await nc.edit("carl", "delete-node", nodeId=cube)
    await expect(node(page, cube)).to_have_count(0)
    # The doc keeps the dangling edge (DESIGN §4); the page just does not draw it.
    await expect(page.locator(f'.edge[data-edge-id="{edge}"]')).to_have_count(0)


# -- durability, read-only ------------------------------------------------------------


@pytest.fixture
async def small_updates_server(tmp_path: Path) -> AsyncIterator[InProcessServer]:
    """Accepts updates of 1 KiB at most, so that a long parameter value is refused."""
    async with InProcessServer(base_settings(tmp_path, max_update_bytes=1024)) as srv:
        yield srv


@pytest.fixture
async def netcut(small_updates_server: InProcessServer) -> AsyncIterator[NetCut]:
    """The server behind a connection we can cut."""
    async with NetCut(small_updates_server.port) as cut:
        yield cut


async def test_saved_indicator_follows_acks_offline_and_refusals(
    small_updates_server: InProcessServer, netcut: NetCut, pages: Pages
) -> None:
    rest = Rest(small_updates_server.url)
    try:
        alice = token("alice")
        pid = await rest.project(alice)
        page = await pages.open("alice", f"{netcut.url}/#/p/{pid}", token=alice)
        status = page.get_by_test_id("save-status")
        await expect(status).to_have_text("Saved")

        output = await add_node(page, "Output")
        await expect(status).to_have_text("Saved")
        assert output in (await graph(rest, pid, alice))["nodes"]

        # Offline: edits stay local, then reach the server after the reconnect.
        netcut.cut()
        await expect(status).to_have_text("Offline — changes kept locally")
        await expect(status).to_have_attribute("data-state", "offline")
        offline_node = await add_node(page, "Sphere")
        await expect(status).to_have_attribute("data-state", "offline")
        assert offline_node not in (await graph(rest, pid, alice))["nodes"]
        await pages.screenshot(page, "offline")
        netcut.restore()
        # socket.io retries with a backoff of up to 5 s (+50 % jitter).
        await expect(status).to_have_text("Saved", timeout=20_000)
        assert offline_node in (await graph(rest, pid, alice))["nodes"]

        # A refused update: "Not saved" with the server's reason.
        await node(page, output).click()
        await page.fill("#param-name", "x" * 3000)
        await page.press("#param-name", "Enter")
        await expect(status).to_have_attribute("data-state", "error")
        await expect(status).to_contain_text("Not saved")
        await expect(
            page.locator(".toast-error", has_text="larger than the server accepts")
        ).to_be_visible()
        assert (await graph(rest, pid, alice))["nodes"][output]["params"]["name"] == "result"
    finally:
        await rest.close()


async def test_a_viewer_sees_edits_but_cannot_edit(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice, vera = token("alice"), token("vera", "Vera")
    pid = await shared_project(rest, alice, {"vera": "viewer"})
    a = await open_project(pages, "alice", server, pid, alice)
    v = await open_project(pages, "vera", server, pid, vera)
    await expect(v.get_by_test_id("role")).to_have_text("viewer")
    await expect(v.get_by_test_id("read-only")).to_be_visible()
    await expect(v.get_by_test_id("banner")).to_contain_text("You are a viewer")
    await expect(v.get_by_test_id("add-Cube")).to_be_disabled()

    cube = await add_node(a, "Cube")
    n = node(v, cube)
    await expect(n).to_be_visible()
    before = await position(n)

    # The viewer can select (and is seen selecting) but not move, edit or delete.
    await drag(v, n.locator(".node-head"), 150, 60)
    await expect(node(a, cube).locator('.remote-selection[data-user-id="vera"]')).to_be_visible()
    await expect(v.locator("#param-size")).to_be_disabled()
    await expect(v.get_by_test_id("delete-node")).to_have_count(0)
    await v.keyboard.press("Delete")
    assert await position(n) == before
    await expect(v.get_by_test_id("save-status")).to_have_text("Saved")
    await pages.screenshot(v, "viewer")

    # Alice keeps editing; the viewer sees it live; the server holds only Alice's edits.
    await node(a, cube).click()
    await a.fill("#param-size", "3")
    await a.press("#param-size", "Enter")
    await expect(n.locator('[data-param="size"]')).to_contain_text("3")
    stored = (await graph(rest, pid, alice))["nodes"][cube]
    assert (stored["x"], stored["y"]) == before
    assert stored["params"]["size"] == 3


# -- versions ---------------------------------------------------------------------------


async def test_version_history_diff_and_restore_selected_nodes(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice = token("alice")
    pid = await rest.project(alice)
    page = await open_project(pages, "alice", server, pid, alice)
    scale = await add_node(page, "Scale")
    sphere = await add_node(page, "Sphere")
    await expect(page.get_by_test_id("save-status")).to_have_text("Saved")

    await page.get_by_role("tab", name="Versions").click()
    panel = page.get_by_test_id("versions-panel")
    await panel.get_by_placeholder("Label (optional)").fill("before tweaks")
    await panel.get_by_role("button", name="Save version").click()
    await expect(panel.locator(".version-list li")).to_have_count(1)
    await expect(panel.locator(".version-list li")).to_contain_text("before tweaks")

    # Change a parameter and delete a node, then compare with the version.
    await node(page, scale).click()
    await page.fill("#param-factor", "5")
    await page.press("#param-factor", "Enter")
    await node(page, sphere).click()
    await page.get_by_test_id("delete-node").click()
    await expect(node(page, sphere)).to_have_count(0)
    await expect(page.get_by_test_id("save-status")).to_have_text("Saved")

    await page.get_by_role("tab", name="Versions").click()
    await panel.locator(".version-list li").first.click()
    diff = page.get_by_test_id("version-diff")
    await expect(page.get_by_test_id("diff-text")).to_contain_text("1 node removed")
    await expect(page.get_by_test_id("diff-text")).to_contain_text("Scale.factor 2 → 5")
    await pages.screenshot(page, "version-diff")

    # Restore only the sphere: it comes back, the factor stays 5.
    await diff.get_by_label("Restore Sphere").check()
    await diff.get_by_role("button", name="Restore selected nodes").click()
    await expect(node(page, sphere)).to_be_visible()
    await expect(node(page, scale).locator('[data-param="factor"]')).to_contain_text("5")
    await expect(panel.locator(".version-list li")).to_have_count(2)

    # Restore the whole version: the factor goes back to 2.
    await panel.locator('.version-list li[data-version="1"]').click()
    await expect(page.get_by_test_id("diff-text")).to_contain_text("Scale.factor 2 → 5")
    await diff.get_by_role("button", name="Restore v1").click()
    await expect(node(page, scale).locator('[data-param="factor"]')).to_contain_text("2")
    await wait_for(lambda: _factor_is(rest, pid, alice, scale, 2), message="restored factor")


async def _factor_is(rest: Rest, pid: str, tok: str, node_id: str, value: float) -> bool:
    return bool((await graph(rest, pid, tok))["nodes"][node_id]["params"]["factor"] == value)


async def test_the_owner_manages_members_in_the_members_panel(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice = token("alice")
    pid = await rest.project(alice, "Team")
    page = await open_project(pages, "alice", server, pid, alice)
    await page.get_by_role("tab", name="Members").click()
    panel = page.get_by_test_id("members-panel")
    await expect(panel.locator('li[data-user-id="alice"]')).to_contain_text("owner")

    await panel.get_by_label("User id").fill("dave")
    await panel.locator("form").get_by_label("Role").select_option("viewer")
    await panel.get_by_role("button", name="Add").click()
    dave_row = panel.locator('li[data-user-id="dave"]')
    await expect(dave_row.get_by_label("Role")).to_have_value("viewer")

    await dave_row.get_by_label("Role").select_option("editor")
    await wait_for(
        lambda: _roles_are(rest, pid, alice, {"alice": "owner", "dave": "editor"}),
        message="dave became an editor",
    )

    await dave_row.get_by_role("button", name="Remove dave").click()
    await expect(dave_row).to_have_count(0)
    assert await _roles_are(rest, pid, alice, {"alice": "owner"})


async def _roles_are(rest: Rest, pid: str, tok: str, roles: dict[str, str]) -> bool:
    status, members = await rest.get(f"/projects/{pid}/members", token=tok)
    assert status == 200
    return {m["user_id"]: m["role"] for m in members["items"]} == roles


async def test_a_role_change_takes_effect_on_the_open_page(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice, dave = token("alice"), token("dave", "Dave")
    pid = await shared_project(rest, alice, {"dave": "viewer"}, "Promotions")
    d = await open_project(pages, "dave", server, pid, dave)
    await expect(d.get_by_test_id("role")).to_have_text("viewer")
    await expect(d.get_by_test_id("add-Cube")).to_be_disabled()

    # Promoted: the notification reopens the project for editing.
    status, _ = await rest.put(f"/projects/{pid}/members/dave", {"role": "editor"}, token=alice)
    assert status == 200
    await expect(d.get_by_test_id("role")).to_have_text("editor")
    cube = await add_node(d, "Cube")
    await expect(d.get_by_test_id("save-status")).to_have_text("Saved")

    # Demoted: the server says so at once; the page turns read-only.
    status, _ = await rest.put(f"/projects/{pid}/members/dave", {"role": "viewer"}, token=alice)
    assert status == 200
    await expect(d.get_by_test_id("read-only")).to_be_visible()
    await expect(d.get_by_test_id("add-Cube")).to_be_disabled()
    await expect(node(d, cube)).to_be_visible()


# -- notifications ----------------------------------------------------------------------


async def test_a_notification_sent_over_rest_appears_live(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice, admin = token("alice", "Alice"), token("root", admin=True)
    pid = await rest.project(alice, "Inbox test")
    page = await open_project(pages, "alice", server, pid, alice)
    await expect(page.get_by_test_id("unread-count")).to_be_hidden()

    status, body = await rest.post(
        "/notifications",
        {
            "user_ids": ["alice"],
            "kind": "deploy.finished",
            "payload": {"message": "Render farm is done"},
        },
        token=admin,
    )
    assert status == 201, body
    (sent,) = body["items"]
    await expect(
        page.locator(".toast-notification", has_text="Render farm is done")
    ).to_be_visible()
    await expect(page.get_by_test_id("unread-count")).to_have_text("1")

    await page.get_by_test_id("bell").click()
    item = page.get_by_test_id("notifications").locator(f'li[data-id="{sent["id"]}"]')
    await expect(item).to_have_class(re.compile(r"\bunread\b"))
    await pages.screenshot(page, "notifications")
    await item.click()
    await expect(item).to_have_class(re.compile(r"\bread\b"))
    await expect(page.get_by_test_id("unread-count")).to_be_hidden()
    status, unread = await rest.get("/notifications?unread=true", token=alice)
    assert status == 200
    assert unread["items"] == []


async def test_unread_notifications_are_listed_after_sign_in(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice, bob = token("alice"), token("bob", "Bob")
    pid = await rest.project(alice, "Bridge")
    # Being added to a project notifies; Bob is not online yet.
    status, _ = await rest.put(f"/projects/{pid}/members/bob", {"role": "editor"}, token=alice)
    assert status == 200
    page = await pages.open("bob", server.url + "/", token=bob)
    await expect(page.get_by_test_id("unread-count")).to_have_text("1")
    await page.get_by_test_id("bell").click()
    item = page.get_by_test_id("notifications").locator('li[data-kind="project.member_added"]')
    await expect(item).to_contain_text("alice added you to “Bridge” as editor")
    await item.click()
    await expect(page.get_by_test_id("project-name")).to_have_text("Bridge")
    await expect(page.get_by_test_id("save-status")).to_have_text("Saved")


# -- admin --------------------------------------------------------------------------------


async def test_admin_page_lists_live_rooms_with_their_users(
    server: InProcessServer, rest: Rest, pages: Pages, nc: NodeClients
) -> None:
    alice, bob, admin = (
        token("alice", "Alice"),
        token("bob", "Bob"),
        token("root", "Root", admin=True),
    )
    pid = await shared_project(rest, alice, {"bob": "editor"}, "Scene")
    await seed(rest, pid, alice)
    a = await open_project(pages, "alice", server, pid, alice)
    b = await open_project(pages, "bob", server, pid, bob)
    for node_type in ("Cube", "Transform", "Output"):
        await add_node(a, node_type)
    sphere = await add_node(b, "Sphere")
    await node(b, sphere).click()
    await b.mouse.move(400, 300)
    # A second room, edited by a Node client, so that the table has something to sort.
    other = await rest.project(alice, "Side project")
    await nc.open("n", url=server.url, room=other, token=alice)
    await nc.wait_synced("n")
    await nc.add_node("n", type="Cube", x=0, y=0)

    adm = await pages.open("admin", server.url + "/admin", token=admin)
    row = adm.locator(f'tr[data-project-id="{pid}"]')
    await expect(row).to_contain_text("Scene")
    await expect(row.locator(".user-tag")).to_have_text(["Alice", "Bob"])
    await expect(row).to_contain_text("8 / 3")
    await expect(adm.locator(f'tr[data-project-id="{other}"]')).to_contain_text("Side project")
    await expect(adm.get_by_test_id("cluster-summary")).to_contain_text("2 rooms · 3 connections")

    # Sorting by project name puts "Scene" before "Side project".
    await adm.locator('th[data-sort="project"]').click()
    await expect(adm.locator("tbody tr")).to_have_count(2)
    await expect(adm.locator("tbody tr").first).to_contain_text("Scene")
    await adm.locator('th[data-sort="project"]').click()
    await expect(adm.locator("tbody tr").first).to_contain_text("Side project")
    await pages.screenshot(
        adm, "rooms", copy_to=DOCS / "admin.png", down_to=adm.locator(".rooms-table")
    )

    # The room page: both users and what they are doing.
    await row.locator("a").click()
    users = adm.locator(".users-table tbody tr")
    await expect(users).to_have_count(2)
    await expect(adm.locator('.users-table tr[data-user-id="bob"]')).to_contain_text(
        f"selected Sphere ({sphere})"
    )
    await expect(adm.locator('.users-table tr[data-user-id="alice"]')).to_contain_text("Alice")
    await pages.screenshot(adm, "room")

    # Snapshot: a version appears in the project's history.
    await adm.get_by_test_id("snapshot").click()
    await expect(adm.locator(".toast", has_text="Snapshot: saved version")).to_be_visible()
    status, versions = await rest.get(f"/projects/{pid}/versions", token=alice)
    assert status == 200
    assert versions["items"][0]["label"] == "snapshot by an admin"
    assert versions["items"][0]["node_count"] == 8


async def test_admin_page_refuses_a_token_that_is_not_admin(
    server: InProcessServer, pages: Pages
) -> None:
    page = await pages.open("alice", server.url + "/admin", token=token("alice", "Alice"))
    await expect(page.get_by_test_id("signin-notice")).to_contain_text("not an admin")
    await expect(page.get_by_test_id("rooms")).to_have_count(0)


async def test_admin_actions_reach_the_editors_pages(
    server: InProcessServer, rest: Rest, pages: Pages
) -> None:
    alice, bob = token("alice", "Alice"), token("bob", "Bob")
    admin = token("root", "Root", admin=True)
    pid = await shared_project(rest, alice, {"bob": "editor"}, "Guarded")
    a = await open_project(pages, "alice", server, pid, alice)
    b = await open_project(pages, "bob", server, pid, bob)
    cube = await add_node(a, "Cube")
    await expect(node(b, cube)).to_be_visible()

    adm = await pages.open("admin", f"{server.url}/admin#/room/{pid}", token=admin)
    await expect(adm.locator(".users-table tbody tr")).to_have_count(2)

    # Read-only: Alice's next edit is refused; her page reloads the room read-only and
    # shows only what the server holds.
    await adm.get_by_test_id("read-only-toggle").click()
    await expect(adm.get_by_test_id("room-read-only")).to_be_visible()
    await a.get_by_test_id("add-Sphere").click()
    await expect(a.get_by_test_id("read-only")).to_be_visible()
    await expect(a.get_by_test_id("banner")).to_contain_text("an admin made this room read-only")
    await expect(a.locator(".node")).to_have_count(1)
    await expect(b.locator(".node")).to_have_count(1)
    await expect(a.get_by_test_id("add-Sphere")).to_be_disabled()

    # Writable again: "Try editing again" reopens the room for editing.
    await adm.get_by_test_id("read-only-toggle").click()
    await expect(adm.get_by_test_id("room-read-only")).to_have_count(0)
    await a.get_by_test_id("banner").get_by_role("button", name="Try editing again").click()
    await expect(a.get_by_test_id("save-status")).to_have_text("Saved")
    sphere = await add_node(a, "Sphere")
    await expect(node(b, sphere)).to_be_visible()

    # Kick: Bob's page says why and offers to reconnect.
    await adm.get_by_test_id("kick-bob").click()
    await adm.get_by_test_id("kick-bob").click()  # the confirming second click
    banner = b.get_by_test_id("banner")
    await expect(banner).to_contain_text("an admin removed you from this room")
    await expect(b.get_by_test_id("save-status")).to_have_attribute("data-state", "offline")
    await expect(adm.locator(".users-table tbody tr")).to_have_count(1)
    await banner.get_by_role("button", name="Reconnect").click()
    await expect(b.get_by_test_id("save-status")).to_have_text("Saved")
    await expect(adm.locator(".users-table tbody tr")).to_have_count(2)

    # Close: everyone is disconnected and told (a notification, too).
    await adm.get_by_test_id("close-room").click()
    await adm.get_by_test_id("close-room").click()
    for page in (a, b):
        await expect(page.get_by_test_id("banner")).to_contain_text("an admin closed this room")
    await expect(a.get_by_test_id("unread-count")).to_have_text("1")
    await expect(adm.get_by_test_id("no-room")).to_be_visible()
