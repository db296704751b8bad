"""Helpers for the browser tests (tests/test_web.py): a real `qa serve`, Debian's Chromium via
Playwright, and small page helpers.

Usage (in a test module)::

    from browser_support import *  # noqa: F403  (fixtures: server_url, chromium, desktop, phone, ...)

    def test_x(desktop, server_url):
        desktop.goto(server_url)
        ask(desktop, "衡阳排第几？")

The server fixture is the lead's ``live_server`` from tests/conftest.py when it exists, else
our own: ``qa ingest seeds --index DIR`` once, then ``qa serve`` on a free port. Every server
we start is terminated by a finalizer and, should pytest itself die, by the kernel
(``PR_SET_PDEATHSIG``), so none outlives the test run.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SEEDS = ROOT / "seeds"
DEV = ROOT / "eval" / "dev.jsonl"
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
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **(extra or {})}
    # Works whether or not the package is installed into the interpreter.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


QA_CLI = [sys.executable, "-m", "qa.cli"]


def build_index(directory: Path) -> Path:
    """`qa ingest seeds --index DIR`; returns DIR."""
    proc = subprocess.run([*QA_CLI, "ingest", str(SEEDS), "--index", str(directory)],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"qa ingest failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return directory


class QAServer:
    """`qa serve --index DIR` on 127.0.0.1:free port, in a subprocess."""

    def __init__(self, index_dir: Path, env: dict[str, str] | None = None, log_path: Path | None = None):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or index_dir.parent / f"server-{self.port}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [*QA_CLI, "serve", "--index", str(index_dir),
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT, env=_env(env), stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def wait(self, timeout: float = 300) -> "QAServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._log.close()
                raise RuntimeError(f"qa serve exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"qa serve did not answer /health within {timeout}s; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def _start(request, index_dir: Path, env: dict[str, str] | None = None) -> str:
    server = QAServer(index_dir, env)
    request.addfinalizer(server.stop)  # registered before waiting: a failed start is cleaned up too
    return server.wait().url


@pytest.fixture(scope="session")
def web_index(request, tmp_path_factory) -> Path:
    """A private index of seeds/: a copy of conftest's `seed_index` if there is one, else built here."""
    target = tmp_path_factory.mktemp("web") / "index"
    try:
        seed_index = request.getfixturevalue("seed_index")
    except pytest.FixtureLookupError:
        return build_index(target)
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
    try:
        return request.getfixturevalue("live_server")
    except pytest.FixtureLookupError:
        return _start(request, request.getfixturevalue("web_index"))


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
