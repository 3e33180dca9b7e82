"""Headless Chromium for browser tests, through Playwright's sync API.

- ``browser``: one Chromium per test process (started on first use, closed at
  the end of the session), the system's /usr/bin/chromium (or $CHROMIUM);
  Playwright never downloads a browser here. Tests fail when no
  Chromium is installed. Other tests of the same process, and `asyncio.run()`
  inside browser tests, keep working (see `_chromium`).
- ``page``: a fresh context (own cookies, storage) and page per test. Console
  messages and page errors are collected in ``page_log``; when the test fails a
  screenshot and the log are saved under test-artifacts/<test id>/.
- ``screenshot(page, name)``: save a screenshot under test-artifacts/<test id>/.
- ``new_page(**context_options)``: more pages in their own contexts (e.g.
  ``java_script_enabled=False``), also saved on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.harness.synapse import REPO_ROOT

ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM") or "/usr/bin/chromium"
    return path if Path(path).exists() else shutil.which("chromium")


def artifact_dir(nodeid: str) -> Path:
    return ARTIFACTS / re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:150]


@attrs.frozen
class _Playwright:
    playwright: Playwright
    browser: Browser
    loop: asyncio.AbstractEventLoop


@pytest.fixture(scope="session")
def _chromium() -> Iterator[_Playwright]:
    """Playwright and one Chromium for the whole test process, started on first use.

    Playwright's sync API runs its event loop in a greenlet of the main thread
    and, between calls, marks that loop as the thread's running loop; then
    `asyncio.run()` refuses to start ("cannot be called from a running event
    loop"). So the mark is set only while a browser test runs (see `browser`),
    and other tests of the same process are unaffected.
    """
    path = chromium_path()
    if path is None:
        pytest.fail("no Chromium installed: scripts/test.sh installs it (apt-get install chromium)")
    playwright = sync_playwright().start()
    loop = _marked_loop()
    try:
        chromium = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
    except BaseException:
        playwright.stop()
        asyncio._set_running_loop(None)
        raise
    asyncio._set_running_loop(None)
    try:
        yield _Playwright(playwright, chromium, loop)
    finally:
        asyncio._set_running_loop(loop)
        try:
            chromium.close()
        finally:
            playwright.stop()
            asyncio._set_running_loop(None)


def _marked_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio._get_running_loop()
    assert loop is not None, "Playwright did not mark its loop as running"
    return loop


@pytest.fixture
def browser(_chromium: _Playwright, monkeypatch: pytest.MonkeyPatch) -> Iterator[Browser]:
    """The session's Chromium, for this test. Within the test `asyncio.run()` still
    works (e.g. matrix-nio in tests.integration.helpers): it steps out of
    Playwright's loop for the time it runs."""
    real_run = asyncio.run

    def run(main: Any, **kwargs: Any) -> Any:
        marked = asyncio._get_running_loop()
        asyncio._set_running_loop(None)
        try:
            return real_run(main, **kwargs)
        finally:
            asyncio._set_running_loop(marked)

    monkeypatch.setattr(asyncio, "run", run)
    asyncio._set_running_loop(_chromium.loop)
    try:
        yield _chromium.browser
    finally:
        asyncio._set_running_loop(None)


class PageLog(list[str]):
    """Console messages and page errors, as `type: text` lines."""

    def errors(self) -> list[str]:
        """Errors, without the browser's own favicon.ico request."""
        return [
            line
            for line in self
            if line.startswith(("error:", "pageerror:")) and "/favicon.ico)" not in line
        ]


@pytest.fixture
def new_page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Callable[..., Page]]:
    made: list[tuple[Page, PageLog]] = []

    def make(**context_options: Any) -> Page:
        context = browser.new_context(**context_options)
        page = context.new_page()
        log = PageLog()
        page.on(
            "console", lambda msg: log.append(f"{msg.type}: {msg.text} ({msg.location['url']})")
        )
        page.on("pageerror", lambda error: log.append(f"pageerror: {error}"))
        page.page_log = log  # type: ignore[attr-defined]
        made.append((page, log))
        return page

    yield make
    failed = getattr(request.node, "rep_call", None)
    failed = failed is not None and failed.failed
    for index, (page, log) in enumerate(made):
        if failed:
            dest = artifact_dir(request.node.nodeid)
            dest.mkdir(parents=True, exist_ok=True)
            suffix = f"-{index}" if index else ""
            with contextlib.suppress(Exception):  # the page may be gone; the log still helps
                page.screenshot(path=str(dest / f"failure{suffix}.png"), full_page=True)
            (dest / f"console{suffix}.log").write_text("\n".join(log) + "\n")
        page.context.close()


@pytest.fixture
def page(new_page: Callable[..., Page]) -> Page:
    return new_page()


@pytest.fixture
def page_log(page: Page) -> PageLog:
    log: PageLog = page.page_log  # type: ignore[attr-defined]
    return log


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    def save(page: Page, name: str) -> Path:
        dest = artifact_dir(request.node.nodeid)
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
