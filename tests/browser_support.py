"""Helpers for the browser tests (tests/test_web.py): a real `qa serve`, Debian's Chromium via
Playwright, and small page helpers.

Usage (in a test module)::

    # fixtures (server_url, chromium, desktop, phone, ...) come from conftest.py as a plugin

    def test_x(desktop, server_url):
        desktop.goto(server_url)
        ask(desktop, "衡阳排第几？")

Servers are conftest's ``LiveServer`` (``qa serve`` over a copy of the session's seed index),
terminated by a finalizer and, should pytest itself die, by the kernel.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import DEV, ROOT, LiveServer

SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--lang=zh-CN"]
ANSWER_TIMEOUT_MS = 90_000  # the first question also warms the embedder up

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(),
                                    reason=f"{CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk)")


def dev_question(qid: str) -> dict:
    """One question of eval/dev.jsonl by id."""
    with DEV.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                row = json.loads(line)
                if row["id"] == qid:
                    return row
    raise KeyError(qid)


# -- a real server ---------------------------------------------------------------------------------
def _start(request, index_dir: Path, env: dict[str, str] | None = None) -> str:
    server = LiveServer(index_dir, env)
    request.addfinalizer(server.stop)  # registered before waiting: a failed start is cleaned up too
    return server.wait().url


@pytest.fixture(scope="session")
def web_index(seed_index, tmp_path_factory) -> Path:
    """A private copy of conftest's seed index."""
    target = tmp_path_factory.mktemp("web") / "index"
    shutil.copytree(seed_index, target)
    return target


@pytest.fixture(scope="session")
def server_url(request) -> str:
    """Base URL of a running `qa serve` over the seed pages: $QA_TEST_BASE_URL (a server you
    started yourself), else conftest's `live_server`, else one started here."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk)")
    if os.environ.get("QA_TEST_BASE_URL"):
        return os.environ["QA_TEST_BASE_URL"].rstrip("/")
    return request.getfixturevalue("live_server")


API_KEY = "web-test-key-7f3a"


@pytest.fixture(scope="session")
def keyed_server_url(request, web_index) -> str:
    """A second server with QA_API_KEY set (so /api/* answers 401 without the key)."""
    return _start(request, web_index, {"QA_API_KEY": API_KEY})


# -- the browser -----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium fonts-noto-cjk)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class PageProbe:
    """What a page did that a test may want to check: JS errors, dialogs, /api/ask bodies."""

    def __init__(self, page):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.asks: list[dict] = []
        self.ask_headers: list[dict] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        page.on("dialog", self._dialog)
        page.on("request", self._request)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def _request(self, req) -> None:
        if req.method == "POST" and req.url.endswith("/api/ask"):
            try:
                self.asks.append(json.loads(req.post_data or "{}"))
            except ValueError:
                self.asks.append({"_raw": req.post_data})
            self.ask_headers.append(dict(req.headers))


def _page(chromium, viewport: dict, scale: float):
    context = chromium.new_context(viewport=viewport, device_scale_factor=scale, locale="zh-CN",
                                   timezone_id="Asia/Shanghai")
    context.set_default_timeout(ANSWER_TIMEOUT_MS)
    page = context.new_page()
    page.probe = PageProbe(page)
    return context, page


@pytest.fixture
def desktop(chromium):
    context, page = _page(chromium, {"width": 1366, "height": 860}, 1)
    yield page
    context.close()


@pytest.fixture
def phone(chromium):
    context, page = _page(chromium, {"width": 390, "height": 844}, 2)
    yield page
    context.close()


# -- page helpers ----------------------------------------------------------------------------------
def ask(page, question: str):
    """Type a question, press Enter, wait until its answer has finished; return that message."""
    messages = page.get_by_test_id("assistant-message")
    n = messages.count()
    box = page.get_by_test_id("question-input")
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(
        """n => { const m = document.querySelectorAll('[data-testid=assistant-message]');
                  return m.length > n && !m[n].hasAttribute('aria-busy'); }""", arg=n)
    return messages.nth(n)


def squash(text: str) -> str:
    """Text without any whitespace, to compare passages whose line breaks were rejoined."""
    return "".join(text.split())


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


__all__ = ["API_KEY", "ANSWER_TIMEOUT_MS", "ask", "chromium", "desktop", "dev_question", "keyed_server_url",
           "needs_chromium", "phone", "screenshot", "server_url", "squash", "web_index"]
