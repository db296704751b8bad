"""store: the archive's relational store (SQLite) — issues, articles, passages with their
embeddings and tokens, and the manifest. It is the source of truth: the FAISS and BM25 files
are derived from it and can always be rebuilt from it without re-embedding.

Usage::

    store = Store.open(Path("index"))
    with store.transaction() as tx:
        store.replace_page(tx, page, passages, vectors, tokens)
    store.issue("000_72e2c7496de26bfa")
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from qa.chunk import Passage
from qa.parse import Issue, Page, PageError

FORMAT_VERSION = "2"
DB_NAME = "archive.sqlite3"
DEFAULT_PAGES_ROOT = ".."  # the folder holding the index folder, written relative to the index

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
    start INTEGER NOT NULL, "end" INTEGER NOT NULL, continuations TEXT NOT NULL, body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    id TEXT PRIMARY KEY, vec_id INTEGER NOT NULL UNIQUE,
    issue_id TEXT NOT NULL REFERENCES issues(id) ON DELETE CASCADE,
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL, text TEXT NOT NULL, start INTEGER NOT NULL, "end" INTEGER NOT NULL,
    tokens TEXT NOT NULL, embedding BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS passages_issue ON passages(issue_id);
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


_MIGRATIONS = {"1": ("2", _migrate_1_to_2)}  # format → (next format, step), applied in place


class IndexMismatchError(RuntimeError):
    """The index was built with another embedding model (or format) than the one configured."""


@dataclass
class IssueRow:
    id: str
    source: str
    checksum: str
    encoding: str
    paper: str | None
    date: str | None
    date_source: str | None
    weekday: str | None
    issue_no: str | None
    page: int | None
    page_count: int | None
    date_evidence: str | None = None  # what an inferred date rests on (helper E fills it)


@dataclass
class ArticleRow:
    id: str
    issue_id: str
    idx: int
    headline: str | None
    kicker: str | None
    subtitle: str | None
    byline: str | None
    dateline: str | None
    start: int
    end: int
    continuations: list[str]
    body: str  # the article's paragraphs, lines rejoined, one per line


@dataclass
class PassageRow:
    id: str
    vec_id: int
    issue_id: str
    article_id: str
    ordinal: int
    text: str
    start: int
    end: int


def article_id(issue_id: str, index: int) -> str:
    return f"{issue_id}:a{index:03d}"


def page_name(path: Path, root: Path) -> str:
    """A page's name in the archive: its resolved path relative to the pages root, or its absolute
    path when it lies outside. It depends only on the file, never on the folder given to `qa ingest`
    or the working directory, so however a page is ingested it keeps one name and two files never
    share one. Relative names let the root move with its index (names are never absolute for the
    usual layout, so they do not reveal the server's folders). Usage: ``page_name(Path("a/01.txt"), root)``"""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(root).as_posix()
    except ValueError:
        return resolved.as_posix()


def vec_id_of(passage_id: str) -> int:
    """A FAISS id (positive int63) derived from the stable passage id, so it is stable too."""
    import hashlib

    return int.from_bytes(hashlib.sha1(passage_id.encode()).digest()[:8], "big") >> 1


class Store:
    """SQLite store; one connection per thread (WAL mode: readers never block the writer)."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.path = directory / DB_NAME
        self._local = threading.local()
        self._reserved_ids: dict[str, str] = {}  # id → source, handed out by check_identity

    @classmethod
    def open(cls, directory: Path) -> "Store":
        directory.mkdir(parents=True, exist_ok=True)
        store = cls(directory)
        store._migrate()
        store.conn.executescript(_SCHEMA)
        with store.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO manifest VALUES ('format_version', ?)", (FORMAT_VERSION,))
            tx.execute("INSERT OR IGNORE INTO manifest VALUES ('generation', '0')")
            tx.execute("INSERT OR IGNORE INTO manifest VALUES ('pages_root', ?)", (DEFAULT_PAGES_ROOT,))
        return store

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

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All-or-nothing write: BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- manifest -------------------------------------------------------------------------
    def manifest(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.conn.execute("SELECT key, value FROM manifest")}

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM manifest WHERE key='generation'").fetchone()
        return int(row["value"]) if row else 0

    @staticmethod
    def bump_generation(tx: sqlite3.Connection) -> None:
        tx.execute("UPDATE manifest SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")

    def check_embedder(self, model_id: str, dim: int) -> None:
        """Record the embedding model on first use; refuse an index built with another one."""
        m = self.manifest()
        if m.get("format_version") != FORMAT_VERSION:
            raise IndexMismatchError(
                f"index {self.directory} has format {m.get('format_version')!r}, written by a newer "
                f"version of this program (this one reads up to {FORMAT_VERSION!r}); upgrade, or rebuild "
                f"it with: qa ingest --rebuild --index {self.directory}"
            )
        built_with = m.get("embed_model")
        if built_with is None:
            with self.transaction() as tx:
                tx.execute("INSERT OR REPLACE INTO manifest VALUES ('embed_model', ?)", (model_id,))
                tx.execute("INSERT OR REPLACE INTO manifest VALUES ('embed_dim', ?)", (str(dim),))
            return
        if built_with != model_id or int(m.get("embed_dim", dim)) != dim:
            raise IndexMismatchError(
                f"index {self.directory} was built with embedding model {built_with!r} "
                f"(dim {m.get('embed_dim')}), but the configured model is {model_id!r} (dim {dim}). "
                f"Rebuild it with: qa ingest --rebuild --index {self.directory}  "
                f"(or set QA_EMBED_MODEL={built_with})"
            )

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def replace_page(
        tx: sqlite3.Connection,
        page: Page,
        passages: list[Passage],
        vectors: np.ndarray,
        tokens: list[list[str]],
    ) -> None:
        """Insert a page, replacing any earlier version of the same source (inside `tx`).
        Its id was settled by `check_identity`; an id held by another source is refused."""
        issue = page.issue
        tx.execute("DELETE FROM issues WHERE source = ?", (issue.source,))
        clash = tx.execute("SELECT source FROM issues WHERE id = ?", (issue.id,)).fetchone()
        if clash is not None:
            raise PageError(f"{issue.source}: its id {issue.id!r} is already used by {clash['source']!r}")
        d = asdict(issue)
        tx.execute(
            "INSERT INTO issues (id, source, checksum, encoding, paper, date, date_source, weekday, "
            "issue_no, page, page_count, text, date_evidence) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (d["id"], d["source"], d["checksum"], d["encoding"], d["paper"], d["date"], d["date_source"],
             d["weekday"], d["issue_no"], d["page"], d["page_count"], page.text, d.get("date_evidence")),
        )
        for art in page.articles:
            # A teaser has no body: the reader is shown its heading lines, which its passage holds.
            body = art.text if art.text.strip() else "\n".join(
                p.text for p in passages if p.article_index == art.index)
            tx.execute(
                'INSERT INTO articles (id, issue_id, idx, headline, kicker, subtitle, byline, dateline, '
                'start, "end", continuations, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
                (article_id(issue.id, art.index), issue.id, art.index, art.headline, art.kicker,
                 art.subtitle, art.byline, art.dateline, art.start, art.end,
                 json.dumps(art.continuations, ensure_ascii=False), body),
            )
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        for p, vec, toks in zip(passages, vectors, tokens, strict=True):
            tx.execute(
                'INSERT INTO passages (id, vec_id, issue_id, article_id, ordinal, text, start, "end", '
                "tokens, embedding) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (p.id, vec_id_of(p.id), issue.id, article_id(issue.id, p.article_index), p.ordinal,
                 p.text, p.start, p.end, " ".join(toks), vec.tobytes()),
            )

    def remove_page(self, tx: sqlite3.Connection, source_or_id: str) -> bool:
        """Delete a page (by source file name or issue id) with its articles and passages."""
        cur = tx.execute("DELETE FROM issues WHERE id = ? OR source = ?", (source_or_id, source_or_id))
        return cur.rowcount > 0

    def clear(self, tx: sqlite3.Connection) -> None:
        tx.execute("DELETE FROM issues")
        tx.execute("DELETE FROM manifest WHERE key IN ('embed_model', 'embed_dim')")

    # -- page names -----------------------------------------------------------------------
    @property
    def pages_root(self) -> Path:
        """The folder page names are relative to (manifest `pages_root`, relative to the index)."""
        root = self.manifest().get("pages_root", DEFAULT_PAGES_ROOT)
        return (self.directory / root).resolve()

    def page_name(self, path: Path) -> str:
        """The archive's name for the page file at `path`: see `page_name`."""
        return page_name(path, self.pages_root)

    def file_of(self, source: str) -> Path:
        """Where the page named `source` lives (or lived) on disk."""
        return Path(source) if Path(source).is_absolute() else self.pages_root / source

    def resolve_page(self, key: str) -> str | None:
        """The issue id of the page `key` names: an issue id, a source as `qa issues` lists it,
        or a path to the page file (relative to the working directory). Usage: ``store.resolve_page("years/2021/01.txt")``"""
        row = self.conn.execute("SELECT id FROM issues WHERE id = ? OR source = ?", (key, key)).fetchone()
        if row is None:
            row = self.conn.execute("SELECT id FROM issues WHERE source = ?", (self.page_name(Path(key)),)).fetchone()
        return row["id"] if row else None

    def check_identity(self, issue: Issue) -> None:
        """Settle which stored page `issue` is, before it is chunked: its `id` becomes that page's id
        (a new page gets its file stem, made unique with a hash of its name when the stem is taken).

        A page whose file has moved (same checksum, old file gone) is renamed in place, and so is a
        page named by an older index format. A file that may be a page stored by an older format
        under a shorter name, with other contents, is refused (PageError naming both): replacing
        it could drop a page, keeping both could duplicate one."""
        row = self.conn.execute("SELECT id FROM issues WHERE source = ?", (issue.source,)).fetchone()
        if row is not None:
            issue.id = row["id"]
            return
        for row in self.conn.execute("SELECT id, source FROM issues WHERE checksum = ?", (issue.checksum,)):
            if not self.file_of(row["source"]).exists():
                with self.transaction() as tx:
                    tx.execute("UPDATE issues SET source = ?, legacy_source = 0 WHERE id = ?",
                               (issue.source, row["id"]))
                issue.id = row["id"]
                return
        parts = Path(issue.source).parts
        suffixes = [Path(*parts[k:]).as_posix() for k in range(1, len(parts))]
        marks = ",".join("?" * len(suffixes))
        legacy = self.conn.execute(
            f"SELECT source FROM issues WHERE legacy_source = 1 AND source IN ({marks})", suffixes
        ).fetchone() if suffixes else None
        if legacy is not None and not self.file_of(legacy["source"]).exists():
            raise PageError(
                f"{issue.source}: the archive holds a page named {legacy['source']!r} by an older version, "
                f"which may be this file (changed since) or another file of that name; remove it first "
                f"(qa remove {legacy['source']}) and ingest both again"
            )
        issue.id = self._free_id(issue.source)

    def _free_id(self, source: str) -> str:
        """The file stem as a path-safe id, or, when another page holds it, the stem and a hash of
        the name. Ids handed out are reserved, so pages prepared ahead of writing never share one."""
        reserved = self._reserved_ids
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(source).stem) or "page"
        digest = hashlib.sha1(source.encode("utf-8")).hexdigest()
        for candidate in (stem, f"{stem}-{digest[:8]}", f"{stem}-{digest}"):
            if reserved.get(candidate, source) != source:
                continue
            if self.conn.execute("SELECT 1 FROM issues WHERE id = ?", (candidate,)).fetchone() is None:
                reserved[candidate] = source
                return candidate
        raise PageError(f"{source}: no free issue id (its stem {stem!r} and hashes are all taken)")

    # -- reads ----------------------------------------------------------------------------
    def checksum_of(self, source: str) -> str | None:
        row = self.conn.execute("SELECT checksum FROM issues WHERE source = ?", (source,)).fetchone()
        return row["checksum"] if row else None

    def counts(self) -> dict[str, int]:
        c = self.conn
        return {
            "issues": c.execute("SELECT COUNT(*) FROM issues").fetchone()[0],
            "articles": c.execute("SELECT COUNT(*) FROM articles").fetchone()[0],
            "passages": c.execute("SELECT COUNT(*) FROM passages").fetchone()[0],
        }

    def issues(self) -> list[IssueRow]:
        rows = self.conn.execute(
            "SELECT * FROM issues ORDER BY date IS NULL, date, issue_no, source"
        ).fetchall()
        return [_issue(r) for r in rows]

    def issue(self, issue_id: str) -> IssueRow | None:
        r = self.conn.execute("SELECT * FROM issues WHERE id = ?", (issue_id,)).fetchone()
        return _issue(r) if r else None

    def issue_text(self, issue_id: str) -> str | None:
        r = self.conn.execute("SELECT text FROM issues WHERE id = ?", (issue_id,)).fetchone()
        return r["text"] if r else None

    def articles(self, issue_id: str) -> list[ArticleRow]:
        rows = self.conn.execute("SELECT * FROM articles WHERE issue_id = ? ORDER BY idx", (issue_id,))
        return [_article(r) for r in rows]

    def article(self, article_id: str) -> ArticleRow | None:
        r = self.conn.execute("SELECT * FROM articles WHERE id = ?", (article_id,)).fetchone()
        return _article(r) if r else None

    def passages_of_article(self, article_id: str) -> list[PassageRow]:
        rows = self.conn.execute(
            'SELECT id, vec_id, issue_id, article_id, ordinal, text, start, "end" FROM passages '
            "WHERE article_id = ? ORDER BY ordinal",
            (article_id,),
        )
        return [PassageRow(**dict(r)) for r in rows]

    def passage_counts(self, issue_id: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT article_id, COUNT(*) AS n FROM passages WHERE issue_id = ? GROUP BY article_id",
            (issue_id,),
        )
        return {r["article_id"]: r["n"] for r in rows}

    def passages_by_id(self, ids: list[str]) -> dict[str, PassageRow]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.conn.execute(
            f'SELECT id, vec_id, issue_id, article_id, ordinal, text, start, "end" FROM passages '
            f"WHERE id IN ({marks})",
            ids,
        )
        return {r["id"]: PassageRow(**dict(r)) for r in rows}

    def iter_index_rows(self, batch: int = 5000) -> Iterator[tuple[list[sqlite3.Row], np.ndarray]]:
        """All passages in vec_id order with what the derived indexes need, in batches."""
        cur = self.conn.execute(
            "SELECT p.id, p.vec_id, p.tokens, p.embedding, i.date, i.issue_no "
            "FROM passages p JOIN issues i ON i.id = p.issue_id ORDER BY p.vec_id"
        )
        while True:
            rows = cur.fetchmany(batch)
            if not rows:
                return
            vecs = np.stack([np.frombuffer(r["embedding"], dtype=np.float32) for r in rows])
            yield rows, vecs


def _issue(r: sqlite3.Row) -> IssueRow:
    return IssueRow(**{k: r[k] for k in IssueRow.__dataclass_fields__})


def _article(r: sqlite3.Row) -> ArticleRow:
    d = {k: r[k] for k in ArticleRow.__dataclass_fields__ if k != "continuations"}
    return ArticleRow(**d, continuations=json.loads(r["continuations"]))
