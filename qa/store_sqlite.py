"""store_sqlite: the embedded store — one SQLite file (`archive.sqlite3`) in the index folder,
one connection per thread, WAL mode (readers never block the writer). The default when
QA_STORE_URL is unset. Indexes written by formats 1 and 2 are migrated in place on open.

Usage::

    store = SQLiteStore.open(Path("index"))      # usually through qa.store.open_store
    with store.writer_lock(), store.transaction() as tx:
        store.remove_page(tx, "000_72e2c7496de26bfa")
"""

from __future__ import annotations

import fcntl
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from qa.store import DB_NAME, FORMAT_VERSION, IndexBusyError, Store, _insert_passage, quantize

_SCHEMA = """
CREATE TABLE IF NOT EXISTS manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS issues (
    id TEXT PRIMARY KEY, source TEXT NOT NULL UNIQUE, checksum TEXT NOT NULL, encoding TEXT NOT NULL,
    paper TEXT, date TEXT, date_source TEXT, weekday TEXT, issue_no TEXT, page INTEGER,
    page_count INTEGER, text TEXT NOT NULL, date_evidence TEXT,
    legacy_source INTEGER NOT NULL DEFAULT 0  -- named by an index format before 2 (see page_name)
);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY, issue_id TEXT NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL, headline TEXT, kicker TEXT, subtitle TEXT, byline TEXT, dateline TEXT,
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, continuations TEXT NOT NULL,
    layout BLOB,  -- int32: paragraphs, then per paragraph its lines' source spans (see body_from_layout)
    body TEXT  -- only where the layout does not reproduce the body
);
CREATE TABLE IF NOT EXISTS passages (
    vec_id INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    body_start INTEGER NOT NULL, body_end INTEGER NOT NULL,  -- the text's span in the article body
    text TEXT,  -- only where that span does not reproduce it
    embedding BLOB NOT NULL  -- int8 × dim, then a float32 scale
);
CREATE TABLE IF NOT EXISTS terms (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE);
CREATE INDEX IF NOT EXISTS passages_article ON passages(article_id, ordinal);
CREATE INDEX IF NOT EXISTS articles_issue ON articles(issue_id, idx);
CREATE INDEX IF NOT EXISTS issues_checksum ON issues(checksum);
"""


def _migrate_1_to_2(tx: sqlite3.Connection) -> None:
    """Format 2 names pages by path below the pages root; older names are kept, marked legacy."""
    tx.execute("ALTER TABLE issues ADD COLUMN date_evidence TEXT")
    tx.execute("ALTER TABLE issues ADD COLUMN legacy_source INTEGER NOT NULL DEFAULT 0")
    tx.execute("UPDATE issues SET legacy_source = 1")
    tx.execute("CREATE INDEX IF NOT EXISTS issues_checksum ON issues(checksum)")


def _migrate_2_to_3(tx: sqlite3.Connection) -> None:
    """Format 3 stores text and vectors once and numbers passages densely (see qa.store's doc)."""
    for name in ("passages_issue", "passages_article", "articles_issue"):
        tx.execute(f"DROP INDEX IF EXISTS {name}")
    tx.execute("ALTER TABLE passages RENAME TO old_passages")
    tx.execute("ALTER TABLE articles RENAME TO old_articles")
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            tx.execute(statement)
    tx.execute('INSERT INTO articles (id, issue_id, idx, headline, kicker, subtitle, byline, dateline, start, '
               '"end", continuations, layout, body) SELECT id, issue_id, idx, headline, kicker, subtitle, '
               'byline, dateline, start, "end", continuations, NULL, body FROM old_articles')
    rows = tx.execute('SELECT p.id, p.article_id, p.ordinal, p.start, p."end", p.text, p.embedding, a.body '
                      "FROM old_passages p JOIN old_articles a ON a.id = p.article_id "
                      "ORDER BY a.issue_id, a.idx, p.ordinal").fetchall()
    for r in rows:
        vector = np.frombuffer(r["embedding"], dtype=np.float32)[None, :]
        _insert_passage(tx, r["id"], r["article_id"], r["ordinal"], r["start"], r["end"], r["text"],
                        r["body"], quantize(vector)[0])
    tx.execute("DROP TABLE old_passages")
    tx.execute("DROP TABLE old_articles")


_MIGRATIONS = {"1": ("2", _migrate_1_to_2), "2": ("3", _migrate_2_to_3)}  # format → (next, step), in place


class SQLiteStore(Store):
    """SQLite store in the index folder; one connection per thread (WAL mode)."""

    def __init__(self, directory: Path):
        super().__init__(directory)
        self.path = self.directory / DB_NAME
        self._local = threading.local()

    @classmethod
    def open(cls, directory: Path, url: str | None = None) -> "SQLiteStore":
        """The store in `directory` (created, or migrated from an older format, on first use)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        store = cls(directory)
        store._migrate()
        store.conn.executescript(_SCHEMA)
        with store.transaction() as tx:
            store._init_manifest(tx)
        return store

    @classmethod
    def exists(cls, directory: Path, url: str | None = None) -> bool:
        """Whether `directory` holds a store file."""
        return (Path(directory) / DB_NAME).exists()

    @property
    def location(self) -> str:
        return str(self.directory)

    def _migrate(self) -> None:
        """Bring an index written by an older format up to this one, in place, one step per
        transaction. Each step bumps the generation, so the search files are rebuilt after it."""
        conn = self.conn
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='manifest'").fetchone() is None:
            return
        while True:
            with self.transaction() as tx:
                row = tx.execute("SELECT value FROM manifest WHERE key='format_version'").fetchone()
                step = _MIGRATIONS.get(row["value"]) if row else None
                if step is None:
                    return
                target, migrate = step
                migrate(tx)
                tx.execute("UPDATE manifest SET value = ? WHERE key='format_version'", (target,))
                self.bump_generation(tx)

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _insert_terms(self, tx: sqlite3.Connection, terms: list[str]) -> dict[str, int]:
        """New terms numbered from the largest stored id on, as SQLite would number them, so they
        need not be read back. Only inside a write transaction (`transaction`: BEGIN IMMEDIATE
        holds the database's write lock, so no one else adds terms meanwhile)."""
        first = tx.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM terms").fetchone()[0]
        ids = dict(zip(terms, range(first, first + len(terms))))
        tx.executemany("INSERT INTO terms (id, term) VALUES (?, ?)", [(i, t) for t, i in ids.items()])
        return ids

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing write: BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def _writer_lock(self) -> Iterator[None]:
        """flock on `.writer.lock` in the index folder; released even on SIGKILL."""
        fh = open(self.directory / ".writer.lock", "a+")
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise IndexBusyError(f"another process is writing the index {self.directory}; try again later")
            yield
        finally:
            fh.close()


assert FORMAT_VERSION == "3"  # _MIGRATIONS ends at it; a new format adds its step here
