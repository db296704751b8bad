"""Shared fixtures: one index built from seeds/ per test session, and a live `qa serve`."""

from __future__ import annotations

import ctypes
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

# The browser fixtures, registered once: star-importing them into each test module would make
# one session-scoped Chromium per module, and Playwright's sync API refuses a second at a time.
pytest_plugins = ["browser_support", "pg_support"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Fixtures that embed the seed pages with the real model or start a real server: a test that
# uses one (directly or through another fixture) is slow, whatever its own body does.
SLOW_FIXTURES = {"seed_index", "live_server", "chromium"}


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def seed_index(tmp_path_factory) -> Path:
    """An index of the five seed pages, built once for the session (read-only for tests)."""
    from qa.ingest import ingest_paths

    directory = tmp_path_factory.mktemp("seed-index")
    from qa.embed import prepare_embedder

    report = ingest_paths([SEEDS], directory, progress=False)
    assert report.pages == 5 and not report.failures
    prepare_embedder()  # the query-time ONNX export, once, outside any server's start-up timeout
    return directory


@pytest.fixture
def fresh_index(tmp_path, seed_index) -> Path:
    """A private copy of the seed index that a test may change."""
    target = tmp_path / "index"
    shutil.copytree(seed_index, target)
    return target


@pytest.fixture(scope="session")
def retriever(seed_index):
    from qa.embed import load_embedder
    from qa.index import Archive
    from qa.retrieve import HybridRetriever

    return HybridRetriever(Archive(seed_index), load_embedder())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class LiveServer:
    """`qa serve` in a subprocess on 127.0.0.1. Stopped by the fixture's finalizer and, should
    the test process itself die, by the kernel (PR_SET_PDEATHSIG): it never outlives the tests."""

    def __init__(self, index_dir: Path, env: dict[str, str] | None = None, log_path: Path | None = None,
                 args: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or index_dir.parent / f"server-{self.port}.log"
        full_env = {**os.environ, "QA_INDEX_DIR": str(index_dir), **(env or {})}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port), *args],
            env=full_env, stdout=self._log, stderr=subprocess.STDOUT, cwd=ROOT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )

    def wait(self, timeout: float = 180) -> "LiveServer":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{tail}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"server did not come up in {timeout}s; log: {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="session")
def live_server(seed_index, tmp_path_factory) -> str:
    """Base URL of a real `qa serve` over a copy of the seed index."""
    directory = tmp_path_factory.mktemp("live") / "index"
    shutil.copytree(seed_index, directory)
    server = LiveServer(directory)
    try:
        yield server.wait().url
    finally:
        server.stop()
