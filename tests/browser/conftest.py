"""Fixtures for the browser tests: Debian's chromium driven headless by Python playwright.

Never ``playwright install``: the browser is the system one (``/usr/bin/chromium``,
``apt-get install chromium``; ``scripts/test`` installs it). The pages are the built
ones (``npm run build``; ``scripts/setup`` runs it), served by the in-process server.

Every page opened through ``Pages`` records its uncaught exceptions, which fail the test,
and is screenshotted into ``test-artifacts/browser/`` when the test fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    FloatRect,
    Locator,
    Page,
    Playwright,
    async_playwright,
    expect,
)

from tests.server import ROOT

CHROMIUM = os.environ.get("COLLAB_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS = ROOT / "docs"
DIST = ROOT / "collab" / "web" / "dist"
VIEWPORT = {"width": 1400, "height": 860}
# Page conditions are awaited with this timeout (a loaded CI machine can be slow).
EXPECT_TIMEOUT_MS = 10_000

expect.set_options(timeout=EXPECT_TIMEOUT_MS)


def _check_setup() -> None:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        pytest.fail(
            f"no chromium at {CHROMIUM}: apt-get install -y chromium (scripts/test does it)",
            pytrace=False,
        )
    if not (DIST / "index.html").exists() or not (DIST / "admin.html").exists():
        pytest.fail("the web pages are not built: run `npm ci && npm run build`", pytrace=False)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's outcome on the item, so fixtures can react to a failure."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/browser``, emptied once per run (no stale screenshots)."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True)
    return ARTIFACTS


@pytest.fixture
async def playwright() -> AsyncIterator[Playwright]:
    _check_setup()
    async with async_playwright() as pw:
        yield pw


@pytest.fixture
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    b = await playwright.chromium.launch(
        executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
    )
    try:
        yield b
    finally:
        await b.close()


@dataclass
class Pages:
    """Opens pages (each in its own browser context, like separate people) and keeps
    what they report."""

    browser: Browser
    name: str
    contexts: list[BrowserContext] = field(default_factory=list)
    pages: dict[str, Page] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    async def open(self, label: str, url: str, *, token: str | None = None) -> Page:
        """A new page at ``url``; ``token`` is put where the page keeps it (signed in)."""
        context = await self.browser.new_context(viewport=VIEWPORT)  # type: ignore[arg-type]
        self.contexts.append(context)
        if token is not None:
            await context.add_init_script(
                f"localStorage.setItem('collab.token', {json.dumps(token)})"
            )
        page = await context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{label}: {exc}"))
        self.pages[label] = page
        await page.goto(url)
        return page

    async def screenshot(
        self, page: Page, label: str, *, copy_to: Path | None = None, down_to: Locator | None = None
    ) -> Path:
        """Save a screenshot (the viewport, or from the top down to ``down_to``'s bottom)."""
        path = ARTIFACTS / f"{self.name}-{label}.png"
        clip: FloatRect | None = None
        if down_to is not None:
            box = await down_to.bounding_box()
            assert box is not None
            clip = {
                "x": 0,
                "y": 0,
                "width": VIEWPORT["width"],
                "height": box["y"] + box["height"] + 32,
            }
        await page.screenshot(path=str(path), clip=clip)
        # The README's screenshots (docs/*.png) are refreshed on request only, so that a
        # test run leaves the checkout clean: COLLAB_UPDATE_DOCS=1 ./scripts/test tests/browser
        if copy_to is not None and os.environ.get("COLLAB_UPDATE_DOCS") == "1":
            copy_to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, copy_to)
        return path

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def pages(
    browser: Browser, artifacts: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Pages]:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-")
    p = Pages(browser=browser, name=name)
    try:
        yield p
        reports = request.node.stash.get(_REPORTS, {})
        if "call" in reports and reports["call"].failed:
            for label, page in p.pages.items():
                if not page.is_closed():
                    await p.screenshot(page, f"failed-{label}")
        assert not p.errors, f"uncaught exceptions in the pages: {p.errors}"
    finally:
        await p.close()
