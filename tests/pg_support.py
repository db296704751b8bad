"""A throwaway PostgreSQL cluster for the tests (registered as a plugin in conftest.py).

`pg_url` (session): Debian's PostgreSQL binaries (/usr/lib/postgresql/<version>/bin, installed by
`scripts/install-postgres.sh`) start a cluster in a temp folder, listening on 127.0.0.1 only on a
free port (its unix socket in the temp folder too), with one database; stopped by `pg_ctl stop`
(the postmaster's PID) and removed afterwards. `initdb` refuses to run as root: as root the
cluster runs as the `postgres` user. Without the binaries the tests that need it are skipped,
saying why.

`pg_db_url` (per test): a fresh, empty database on that cluster, dropped after the test.

Usage::

    def test_x(pg_db_url):
        store = open_store(tmp_path / "index", pg_db_url)
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_ROOT = Path("/usr/lib/postgresql")
_counter = itertools.count()


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout), or None."""
    found = sorted((p.parent for p in PG_ROOT.glob("*/bin/initdb")),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


def _as_owner(args: list[str]) -> list[str]:
    """`args` run as the `postgres` user when we are root (initdb and postgres refuse root)."""
    if os.geteuid() != 0:
        return args
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--", *args] if runuser else ["su", "postgres", "-c", " ".join(args)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """One PostgreSQL cluster in a temp folder, on 127.0.0.1:`port`."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="qa-pg-"))
        self.data, self.sockets, self.log = self.folder / "data", self.folder / "sock", self.folder / "log"
        self.port = _free_port()
        self.sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            shutil.chown(self.sockets, "postgres", "postgres")

    def run(self, *args: str, timeout: float = 120) -> None:
        proc = subprocess.run(_as_owner([str(self.bindir / args[0]), *args[1:]]), capture_output=True,
                              text=True, timeout=timeout, cwd=self.folder)
        if proc.returncode:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def start(self) -> "Cluster":
        self.run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-locale")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(sql)

    def stop(self) -> None:
        """`pg_ctl stop -m fast`; should that fail, SIGTERM to the postmaster's PID. Then the folder goes."""
        try:
            self.run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            pid_file = self.data / "postmaster.pid"
            if pid_file.exists() and pid_file.read_text().split():
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_cluster():
    """The session's throwaway cluster (skips when PostgreSQL is not installed)."""
    bindir = pg_bindir()
    if bindir is None:
        pytest.skip(f"PostgreSQL is not installed (no {PG_ROOT}/<version>/bin/initdb); "
                    "run scripts/install-postgres.sh (apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None and shutil.which("su") is None:
        pytest.skip("running as root without runuser/su: initdb cannot be run as the postgres user")
    cluster = Cluster(bindir)
    try:
        yield cluster.start()
    finally:
        cluster.stop()  # also after a failed start: whatever it left running, and the folder


@pytest.fixture(scope="session")
def pg_url(pg_cluster) -> str:
    """URL of a database on the session's cluster (shared by the session's tests)."""
    pg_cluster.admin("CREATE DATABASE qa_session")
    return pg_cluster.url("qa_session")


@pytest.fixture
def pg_db_url(pg_cluster) -> str:
    """URL of a fresh, empty database for one test, dropped afterwards."""
    name = f"qa_test_{os.getpid()}_{next(_counter)}"
    pg_cluster.admin(f"CREATE DATABASE {name}")
    try:
        yield pg_cluster.url(name)
    finally:
        pg_cluster.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
