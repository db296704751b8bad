"""store: the archive's relational store — issues, articles, passages with their embeddings,
the BM25 vocabulary and the manifest. It is the source of truth: the search files are derived
from it and can always be rebuilt from it without re-embedding.

This module is the interface (`Store`), the rows that cross it, the helpers every
implementation shares (quantize, layout, ids, the SQL itself) and the factory `open_store`, which
picks the implementation from configuration (`QA_STORE_URL`):

- unset: `qa.store_sqlite.SQLiteStore`, one SQLite file in the index folder (the embedded default);
- ``postgresql://user:password@host:port/dbname``: `qa.store_postgres.PostgresStore` (SQLAlchemy 2
  with psycopg 3), shared by any number of servers and one writer at a time.

Lean by design (about 1M passages on one disk): the page text is stored once; an article's body
is rebuilt from it (the source spans of its lines) and a passage's text is a span of its article's
body, each stored as text only where the spans do not reproduce it exactly. A vector is stored
once, as int8 with a float32 scale (cosine to the float vector > 0.999). Tokens are not stored:
they are re-derived from the text when the search files are rebuilt. A passage's `vec_id` is a
dense sequential integer (never reused), which keeps the search files' id arrays small.

The SQL below is written once, in the dialect SQLite and PostgreSQL share (``?`` parameters,
``ON CONFLICT``, ``RETURNING``); an implementation supplies the connection handles, the schema,
transactions and the writer lock.

Usage::

    store = open_store(Path("index"))            # or Store.open(Path("index"))
    with store.transaction() as tx:
        vec_ids = store.replace_page(tx, page, passages, vectors)
    store.issue("000_72e2c7496de26bfa")
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from qa.chunk import Passage
from qa.parse import Issue, Page, PageError, page_checksum

FORMAT_VERSION = "3"
DB_NAME = "archive.sqlite3"  # the SQLite store's file in the index folder
DEFAULT_PAGES_ROOT = ".."  # the folder holding the index folder, written relative to the index

# Columns of each table in the order `dump_rows`/`load_rows` copy them (qa migrate), and the key
# that orders and pages a copy.
TABLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "manifest": ("key", ("key", "value")),
    "issues": ("id", ("id", "source", "checksum", "encoding", "paper", "date", "date_source", "weekday",
                      "issue_no", "page", "page_count", "text", "date_evidence", "legacy_source")),
    "articles": ("id", ("id", "issue_id", "idx", "headline", "kicker", "subtitle", "byline", "dateline",
                        "start", "end", "continuations", "layout", "body")),
    "passages": ("vec_id", ("vec_id", "id", "article_id", "ordinal", "start", "end", "body_start", "body_end",
                            "text", "embedding")),
    "terms": ("id", ("id", "term")),
}

_SET_MANIFEST = ("INSERT INTO manifest (key, value) VALUES (?, ?) "
                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value")
_INIT_MANIFEST = "INSERT INTO manifest (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"


class StoreError(RuntimeError):
    """The store cannot be opened: a bad QA_STORE_URL, a server that does not answer, no rights."""


class IndexBusyError(RuntimeError):
    """Another process (on this machine or, with PostgreSQL, any other) is writing the archive."""


_ASCII_WORD = re.compile(r"[A-Za-z0-9_]")


def quantize(vectors: np.ndarray) -> list[bytes]:
    """Each vector as int8 (scaled by its largest component) followed by its float32 scale."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    scale = np.abs(v).max(axis=1) / 127.0
    scale[scale == 0] = 1.0
    codes = np.round(v / scale[:, None]).astype(np.int8)
    return [c.tobytes() + s.tobytes() for c, s in zip(codes, scale.astype(np.float32))]


@dataclass
class StoredVectors:
    """Vectors as the store holds them: int8 codes and one float32 scale a row, a quarter of
    float32's memory; a slice (`v[lo:hi]`) or `np.asarray(v)` gives float32 exactly as `dequantize`.

    Usage: ``v = store.stored_vectors(ids); for lo in range(0, len(v), 8192): chunk = v[lo:lo + 8192]``"""

    codes: np.ndarray  # int8 (n, dim)
    scales: np.ndarray  # float32 (n,)

    def __len__(self) -> int:
        return len(self.codes)

    @property
    def shape(self) -> tuple[int, int]:
        return self.codes.shape

    def __getitem__(self, rows) -> np.ndarray:
        return self.codes[rows].astype(np.float32) * self.scales[rows, None]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype, copy=False)

    @classmethod
    def from_blobs(cls, blobs: list[bytes]) -> "StoredVectors":
        """The codes and scales of `quantize`'s blobs (all of one dimension)."""
        if not blobs:
            return cls(np.zeros((0, 0), np.int8), np.zeros(0, np.float32))
        raw = np.frombuffer(b"".join(blobs), dtype=np.uint8).reshape(len(blobs), -1)
        return cls(raw[:, :-4].view(np.int8), np.ascontiguousarray(raw[:, -4:]).view(np.float32)[:, 0])


def dequantize(blobs: list[bytes]) -> np.ndarray:
    """float32 vectors from `quantize`'s blobs (all of one dimension)."""
    return np.asarray(StoredVectors.from_blobs(blobs))


def encode_layout(paragraphs) -> bytes:
    """The source spans of the lines of each paragraph, as int32: [n, (k, s1, e1, …, sk, ek) × n]."""
    out = [len(paragraphs)]
    for p in paragraphs:
        spans = [(s, e) for _, s, e in p.segments] or [(p.start, p.end)]
        out.append(len(spans))
        for s, e in spans:
            out += [s, e]
    return np.asarray(out, dtype=np.int32).tobytes()


def body_from_layout(page_text: str, layout: bytes) -> str:
    """An article body from the page text: lines rejoined as the parser joins them (no space
    between CJK text, one between two ASCII words), paragraphs one per line."""
    a = np.frombuffer(layout, dtype=np.int32).tolist()
    i, paragraphs = 1, []
    for _ in range(a[0]):
        n, parts = a[i], []
        i += 1
        for _ in range(n):
            line = page_text[a[i]:a[i + 1]]
            i += 2
            if parts and parts[-1] and line and _ASCII_WORD.match(parts[-1][-1]) and _ASCII_WORD.match(line[0]):
                parts.append(" ")
            parts.append(line)
        paragraphs.append("".join(parts))
    return "\n".join(paragraphs)


_INSERT_PASSAGE = ('INSERT INTO passages (id, article_id, ordinal, start, "end", body_start, body_end, text, '
                   "embedding) VALUES (?,?,?,?,?,?,?,?,?)")


def _passage_row(pid: str, art_id: str, ordinal: int, start: int, end: int,
                 text: str, body: str, embedding: bytes) -> tuple:
    """A passages row: its text as a span of the article body where the body holds it, else kept."""
    at = body.find(text) if text else -1
    span, kept = ((at, at + len(text)), None) if at >= 0 else ((0, 0), text)
    return (pid, art_id, ordinal, start, end, span[0], span[1], kept, embedding)


def _insert_passage(tx, *args) -> int:
    """Insert one passage (`_passage_row`'s arguments); returns its vec_id."""
    return tx.execute(_INSERT_PASSAGE + " RETURNING vec_id", _passage_row(*args)).fetchall()[0][0]


class SameContentsError(PageError):
    """A file new to the archive whose contents (and sidecar) are those of a stored page whose own
    file is still there: a copy of that page, not a page of its own. `reason` says which page."""

    def __init__(self, source: str, issue_id: str, path: Path):
        self.issue_id, self.path = issue_id, path
        self.reason = f"same contents as {issue_id} ({path})"
        super().__init__(f"{source}: {self.reason}")


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



class TermCache:
    """The writer's term → id map: ids committed by its own transactions (and terms it found
    stored). Ids handed out inside a transaction or savepoint are logged in a layer of their own
    and taken out again if it rolls back, since SQLite hands a rolled-back id to the next new
    term. Bounded: emptied when it passes `limit` terms at a commit (then it fills again as
    terms are looked up, and is no longer complete).

    `complete` while it holds every stored term (filled from the whole table by `fill`, or the
    table was emptied and refilled through it): then a term it does not know is new, and is
    inserted without first being looked up.

    Usage: ``cache.begin(); cache.add({"衡阳": 7}); cache.commit(); cache.lookup(["衡阳"])``"""

    LIMIT = 500_000
    # The most stored terms `Store` reads in at a writer's start (~0.15 s, ~7 MB): reading costs
    # more than the lookups it saves unless tens of thousands of passages follow, so a large
    # archive's writer looks new terms up (bulk loads into an empty or small archive skip that).
    FILL_LIMIT = 50_000

    def __init__(self, limit: int | None = None):
        self.limit = limit or self.LIMIT
        self.ids: dict[str, int] = {}
        self.layers: list[list[str]] = []  # per open transaction / savepoint: the terms it added
        self.complete = False
        self._complete_at_commit = False  # the table was emptied in the open transaction
        self.checked = False  # whether the store has been asked to `fill` it

    def fill(self, rows) -> None:
        """Take every stored (term, id) row: the cache is complete. The rows must be the
        committed table, read while no transaction of the writer is open.

        Usage: ``cache.fill(conn.execute("SELECT term, id FROM terms"))``"""
        assert not self.layers, "filled inside a transaction"
        self.ids = dict(rows)
        self.complete = True

    def mark_incomplete(self) -> None:
        """Terms were stored past the cache (rows copied in): unknown terms must be looked up.

        Usage: ``cache.mark_incomplete()``"""
        self.complete = self._complete_at_commit = False

    def lookup(self, terms) -> tuple[dict[str, int], list[str]]:
        """(ids of the terms known here, the terms that are not)."""
        get, found, unknown = self.ids.get, {}, []
        for t in set(terms):
            if (i := get(t)) is None:
                unknown.append(t)
            else:
                found[t] = i
        return found, unknown

    def add(self, ids: dict[str, int]) -> None:
        self.ids.update(ids)
        if self.layers:
            self.layers[-1].extend(ids)

    def begin(self) -> None:
        self.layers.append([])

    def commit(self) -> None:
        added = self.layers.pop() if self.layers else []
        if self.layers:
            self.layers[-1].extend(added)
            return
        if self._complete_at_commit:
            self.complete, self._complete_at_commit = True, False
        if len(self.ids) > self.limit:
            self.ids.clear()
            self.complete = False

    def rollback(self) -> None:
        for term in self.layers.pop() if self.layers else []:
            self.ids.pop(term, None)
        self._complete_at_commit = False  # whatever emptied the table may be undone with it

    def clear(self) -> None:
        """The stored terms are deleted in the open transaction: complete once it commits."""
        self.ids.clear()
        for layer in self.layers:
            layer.clear()
        self.complete, self._complete_at_commit = False, True


class Store(ABC):
    """The relational store's interface. Implementations supply the connections (`conn` for
    reads, `transaction` for all-or-nothing writes), the schema and the writer lock; the queries
    are shared. A `tx` handed to a method is what `transaction()` yields; `conn` and `tx` both
    answer ``execute(sql, params)`` with rows readable by position and by column name.

    Usage: ``store = Store.open(Path("index")); store.counts()``"""

    directory: Path  # the index folder (local search files; the SQLite file, when SQLite)

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self._reserved_ids: dict[str, str] = {}  # id → source, handed out by check_identity
        self._terms: TermCache | None = None  # term → id, while this object holds the writer lock

    @classmethod
    def open(cls, directory: Path, url: str | None = None) -> "Store":
        """The configured store for the index folder `directory` (see `open_store`)."""
        return open_store(directory, url)

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the rows live, for messages: a file path or a URL without its password."""

    @property
    @abstractmethod
    def conn(self) -> Any:
        """A read handle for this thread: ``conn.execute(sql, params)``."""

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """All-or-nothing write: yields a `tx`, committed on exit, rolled back on any error.
        Term ids handed out inside it join the writer's term cache only once it has committed.

        Usage: ``with store.transaction() as tx: store.remove_page(tx, "01")``"""
        terms = self._terms
        if terms is not None:
            if not terms.checked and not terms.layers:
                self._fill_term_cache(terms)
            terms.begin()
        try:
            with self._transaction() as tx:
                yield tx
        except BaseException:
            if terms is not None:
                terms.rollback()
            raise
        if terms is not None:
            terms.commit()

    @contextmanager
    def savepoint(self, tx: Any, name: str = "page") -> Iterator[Any]:
        """A part of the transaction `tx` that is undone alone when it raises (SQL SAVEPOINT), so
        several pages can share one transaction and still each be all or nothing.

        Usage: ``with store.transaction() as tx, store.savepoint(tx): store.replace_page(tx, …)``"""
        terms = self._terms
        tx.execute(f"SAVEPOINT {name}")
        if terms is not None:
            terms.begin()
        released = False
        try:
            try:
                yield tx
            except BaseException:
                tx.execute(f"ROLLBACK TO SAVEPOINT {name}")
                tx.execute(f"RELEASE SAVEPOINT {name}")
                raise
            tx.execute(f"RELEASE SAVEPOINT {name}")
            released = True
        finally:  # the cache's layer goes however this ends (a lost connection too): layers stay paired
            if terms is not None:
                terms.commit() if released else terms.rollback()

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive write access to the archive, across processes (and machines, where the store
        is shared); raises `IndexBusyError` at once when another writer holds it; released when
        the holder exits, however it exits. While it is held, term ids are cached (`term_ids`):
        no other process can add or renumber terms then.

        Usage: ``with store.writer_lock(): ...``"""
        with self._writer_lock():
            self._terms = TermCache()
            try:
                yield
            finally:
                self._terms = None

    def _fill_term_cache(self, cache: TermCache) -> None:
        """Fill the writer's term cache with every stored term when there are at most
        `TermCache.FILL_LIMIT` (new terms then need no lookup: ingest's writer is what a GPU
        waits on). Called once, before the writer's first transaction, so that it reads the
        committed table (and a writer lock taken only to check for another writer reads nothing)."""
        cache.checked = True
        held = self.conn.execute("SELECT count(*) FROM (SELECT 1 FROM terms LIMIT ?) AS t",
                                 (cache.FILL_LIMIT + 1,)).fetchone()[0]
        if held <= cache.FILL_LIMIT:
            cache.fill(self.conn.execute("SELECT term, id FROM terms"))

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """The implementation's all-or-nothing write (see `transaction`)."""

    @abstractmethod
    def _writer_lock(self) -> AbstractContextManager[None]:
        """The implementation's exclusive writer lock (see `writer_lock`)."""

    def close(self) -> None:
        """Release this thread's connection (the store stays usable)."""

    def _init_manifest(self, tx: Any) -> None:
        for key, value in (("format_version", FORMAT_VERSION), ("generation", "0"),
                           ("pages_root", DEFAULT_PAGES_ROOT)):
            tx.execute(_INIT_MANIFEST, (key, value))

    # -- manifest -------------------------------------------------------------------------
    def manifest(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.conn.execute("SELECT key, value FROM manifest")}

    def generation(self) -> int:
        row = self.conn.execute("SELECT value FROM manifest WHERE key='generation'").fetchone()
        return int(row["value"]) if row else 0

    @staticmethod
    def bump_generation(tx: Any) -> None:
        tx.execute("UPDATE manifest SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key='generation'")

    @staticmethod
    def set_manifest(tx: Any, key: str, value: str) -> None:
        """Record `key` = `value` in the manifest (inside `tx`).
        Usage: ``store.set_manifest(tx, "embed_backends", "torch")``"""
        tx.execute(_SET_MANIFEST, (key, value))

    def check_embedder(self, model_id: str, dim: int) -> None:
        """Record the embedding model on first use; refuse an index built with another one."""
        m = self.manifest()
        if m.get("format_version") != FORMAT_VERSION:
            raise IndexMismatchError(
                f"index {self.location} has format {m.get('format_version')!r}, written by a newer "
                f"version of this program (this one reads up to {FORMAT_VERSION!r}); upgrade, or rebuild "
                f"it with: qa ingest --rebuild --index {self.directory}"
            )
        built_with = m.get("embed_model")
        if built_with is None:
            with self.transaction() as tx:
                self.set_manifest(tx, "embed_model", model_id)
                self.set_manifest(tx, "embed_dim", str(dim))
            return
        if built_with != model_id or int(m.get("embed_dim", dim)) != dim:
            raise IndexMismatchError(
                f"index {self.location} was built with embedding model {built_with!r} "
                f"(dim {m.get('embed_dim')}), but the configured model is {model_id!r} (dim {dim}). "
                f"Rebuild it with: qa ingest --rebuild --index {self.directory}  "
                f"(or set QA_EMBED_MODEL={built_with})"
            )

    # -- writes ---------------------------------------------------------------------------
    @staticmethod
    def replace_page(tx: Any, page: Page, passages: list[Passage], vectors: np.ndarray) -> list[int]:
        """Insert a page, replacing any earlier version of the same source (inside `tx`); returns
        the new passages' vec_ids. Its id was settled by `check_identity`; an id held by another
        source is refused."""
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
        bodies = {}
        for art in page.articles:
            # A teaser has no body: the reader is shown its heading lines, which its passage holds.
            body = art.text if art.text.strip() else "\n".join(
                p.text for p in passages if p.article_index == art.index)
            layout = encode_layout(art.blocks)  # every line the body holds, headings included
            bodies[art.index] = body
            tx.execute(
                'INSERT INTO articles (id, issue_id, idx, headline, kicker, subtitle, byline, dateline, '
                'start, "end", continuations, layout, body) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)',
                (article_id(issue.id, art.index), issue.id, art.index, art.headline, art.kicker,
                 art.subtitle, art.byline, art.dateline, art.start, art.end,
                 json.dumps(art.continuations, ensure_ascii=False), layout,
                 None if body_from_layout(page.text, layout) == body else body),
            )
        if not passages:
            return []
        tx.executemany(_INSERT_PASSAGE, [
            _passage_row(p.id, article_id(issue.id, p.article_index), p.ordinal, p.start, p.end, p.text,
                         bodies[p.article_index], code)
            for p, code in zip(passages, quantize(vectors), strict=True)])
        vec_ids = dict(tx.execute("SELECT p.id, p.vec_id FROM passages p JOIN articles a ON a.id = p.article_id "
                                  "WHERE a.issue_id = ?", (issue.id,)).fetchall())
        return [vec_ids[p.id] for p in passages]

    def term_ids(self, tx: Any, terms: set[str] | list[str], add: bool = True) -> dict[str, int]:
        """Ids of BM25 terms, giving new terms the next ids when `add` (inside `tx`). While this
        store holds the writer lock, terms it has seen are answered from memory (`TermCache`);
        the others are looked up, or, when the cache holds every stored term, inserted at once.

        Usage: ``with store.transaction() as tx: ids = store.term_ids(tx, ["衡阳", "日报"])``"""
        cache = self._terms if add else None
        if cache is None:
            return self._term_ids_sql(tx, terms, add)
        found, unknown = cache.lookup(terms)
        if unknown:
            new = self._insert_terms(tx, unknown) if cache.complete else self._term_ids_sql(tx, unknown, add)
            cache.add(new)
            found.update(new)
        return found

    def _term_ids_sql(self, tx: Any, terms: set[str] | list[str], add: bool) -> dict[str, int]:
        terms = list(set(terms))
        found: dict[str, int] = {}
        for k in range(0, len(terms), 500):
            part = terms[k:k + 500]
            marks = ",".join("?" * len(part))
            found.update(tx.execute(f"SELECT term, id FROM terms WHERE term IN ({marks})", part).fetchall())
            new = [t for t in part if t not in found]
            if add and new:
                found.update(self._insert_terms(tx, new))
        return found

    def _insert_terms(self, tx: Any, terms: list[str]) -> dict[str, int]:
        """Store terms known to be new (inside `tx`) and return their ids: here the store numbers
        them and they are read back (a term stored meanwhile by a writer that should not exist
        is read back too, not a failed batch)."""
        found: dict[str, int] = {}
        for k in range(0, len(terms), 500):
            part = terms[k:k + 500]
            tx.executemany("INSERT INTO terms (term) VALUES (?) ON CONFLICT (term) DO NOTHING", [(t,) for t in part])
            found.update(tx.execute(f"SELECT term, id FROM terms WHERE term IN ({','.join('?' * len(part))})",
                                    part).fetchall())
        return found

    def remove_page(self, tx: Any, source_or_id: str) -> bool:
        """Delete a page (by source file name or issue id) with its articles and passages."""
        cur = tx.execute("DELETE FROM issues WHERE id = ? OR source = ?", (source_or_id, source_or_id))
        return cur.rowcount > 0

    def clear(self, tx: Any) -> None:
        if self._terms is not None:
            self._terms.clear()  # the term ids go with the rows
        tx.execute("DELETE FROM issues")
        tx.execute("DELETE FROM terms")
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
        page named by an older index format. A copy of a stored page (same checksum and the same
        date, issue number and page, that page's file still there and still the same) is refused
        (SameContentsError): identical files are
        one page, and a second one would only repeat every passage. A file that may be a page
        stored by an older format under a shorter name, with other contents, is refused
        (PageError naming both): replacing it could drop a page, keeping both could duplicate one."""
        row = self.conn.execute("SELECT id FROM issues WHERE source = ?", (issue.source,)).fetchone()
        if row is not None:
            issue.id = row["id"]
            return
        same = self.conn.execute("SELECT id, source, date, issue_no, page FROM issues WHERE checksum = ?",
                                 (issue.checksum,)).fetchall()
        for row in same:
            if not self.file_of(row["source"]).exists():
                with self.transaction() as tx:
                    tx.execute("UPDATE issues SET source = ?, legacy_source = 0 WHERE id = ?",
                               (issue.source, row["id"]))
                issue.id = row["id"]
                return
        for row in same:
            # the same text under a name that dates it otherwise ('2021-12-01/p8.txt', a recurring
            # advertisement page) is another page
            placed = (row["date"], row["issue_no"], row["page"]) == (issue.date, issue.issue_no, issue.page)
            if placed and self._still_holds(row["source"], issue.checksum):
                raise SameContentsError(issue.source, row["id"], self.file_of(row["source"]))
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

    def _still_holds(self, source: str, checksum: str) -> bool:
        """Whether the file of the page named `source` still has these contents: a file changed
        since it was ingested is another page now, so a copy of its old contents is no copy."""
        try:
            return page_checksum(self.file_of(source)) == checksum
        except OSError:
            return False

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

    def issues(self, date_from: str | None = None, date_to: str | None = None, issue_no: str | None = None,
               limit: int | None = None, offset: int = 0) -> list[IssueRow]:
        """Issues by date (undated last), those of [`date_from`, `date_to`] and `issue_no` when
        given, `limit` of them from `offset`: an archive of decades is browsed a page at a time.

        Usage: ``store.issues("2021-11-01", "2021-11-30", limit=100)``"""
        where, args = _issue_filter(date_from, date_to, issue_no)
        # ids first, sorted on the row's leading columns: a sort of whole rows would read every
        # page's text (about half a gigabyte at a million passages) to list a hundred of them
        sql = f"SELECT id FROM issues{where} ORDER BY date IS NULL, date, issue_no, source"
        if limit is not None:
            sql, args = sql + " LIMIT ? OFFSET ?", [*args, limit, offset]
        ids = [r["id"] for r in self.conn.execute(sql, args).fetchall()]
        rows = self.issues_by_id(ids)
        return [rows[i] for i in ids if i in rows]

    def count_issues(self, date_from: str | None = None, date_to: str | None = None,
                     issue_no: str | None = None) -> int:
        """How many issues `issues` gives with these filters and no limit."""
        where, args = _issue_filter(date_from, date_to, issue_no)
        return self.conn.execute(f"SELECT COUNT(*) FROM issues{where}", args).fetchone()[0]

    def article_summaries(self, issue_ids: list[str]) -> dict[str, list[tuple[str, str | None, str | None, int]]]:
        """Each issue's articles in order as (id, headline, byline, number of passages), in one
        statement per 900 issues, without rebuilding their bodies from the page text.

        Usage: ``store.article_summaries(["000_72e2"])["000_72e2"][0]`` → ('000_72e2:a000', '…', None, 3)"""
        rows = self._rows_in("SELECT a.issue_id, a.id, a.idx, a.headline, a.byline, "
                             "(SELECT COUNT(*) FROM passages p WHERE p.article_id = a.id) AS n "
                             "FROM articles a WHERE a.issue_id", issue_ids)
        out: dict[str, list[tuple[str, str | None, str | None, int]]] = {i: [] for i in issue_ids}
        for r in sorted(rows, key=lambda r: (r["issue_id"], r["idx"])):
            out[r["issue_id"]].append((r["id"], r["headline"], r["byline"], r["n"]))
        return out

    def issue(self, issue_id: str) -> IssueRow | None:
        r = self.conn.execute("SELECT * FROM issues WHERE id = ?", (issue_id,)).fetchone()
        return _issue(r) if r else None

    def issue_text(self, issue_id: str) -> str | None:
        r = self.conn.execute("SELECT text FROM issues WHERE id = ?", (issue_id,)).fetchone()
        return r["text"] if r else None

    def articles(self, issue_id: str) -> list[ArticleRow]:
        text = self.issue_text(issue_id)
        rows = self.conn.execute("SELECT * FROM articles WHERE issue_id = ? ORDER BY idx", (issue_id,))
        return [_article(r, text) for r in rows]

    def article(self, article_id: str) -> ArticleRow | None:
        r = self.conn.execute("SELECT a.*, i.text AS page_text FROM articles a JOIN issues i ON i.id = a.issue_id "
                              "WHERE a.id = ?", (article_id,)).fetchone()
        return _article(r, r["page_text"]) if r else None

    def issues_by_id(self, ids: list[str]) -> dict[str, IssueRow]:
        """Issues by id (those stored), in one statement (per 900). Usage: ``store.issues_by_id(["000_72e2"])``"""
        return {r["id"]: _issue(r) for r in self._rows_in("SELECT * FROM issues WHERE id", ids)}

    def articles_by_id(self, ids: list[str]) -> dict[str, ArticleRow]:
        """Articles by id (those stored), bodies rebuilt, in one statement (per 900).
        Usage: ``store.articles_by_id(["000_72e2:a001"])``"""
        rows = self._rows_in("SELECT a.*, i.text AS page_text FROM articles a JOIN issues i ON i.id = a.issue_id "
                             "WHERE a.id", ids)
        return {r["id"]: _article(r, r["page_text"]) for r in rows}

    def _rows_in(self, select: str, keys: list) -> list:
        """The rows of `select` + `IN (keys)` (duplicates dropped), one statement per 900 keys:
        SQLite's older builds bind at most 999 parameters."""
        keys, rows = list(dict.fromkeys(keys)), []
        for k in range(0, len(keys), 900):
            part = keys[k:k + 900]
            rows += self.conn.execute(f"{select} IN ({','.join('?' * len(part))})", part).fetchall()
        return rows

    def passages_in_context(self, vec_ids: list[int]) -> tuple[dict[int, PassageRow], dict[str, IssueRow],
                                                              dict[str, ArticleRow]]:
        """The passages of `vec_ids` (those still stored) with their issues and articles, in three
        statements whatever their number: what a page of search results shows.
        Usage: ``passages, issues, articles = store.passages_in_context([17, 4])``"""
        if not vec_ids:
            return {}, {}, {}
        articles: dict[str, ArticleRow] = {}
        rows = self._passages(f"p.vec_id IN ({','.join('?' * len(vec_ids))})", [int(v) for v in vec_ids],
                              articles=articles, all_articles=True)
        passages = {r.vec_id: r for r in rows}
        return passages, self.issues_by_id([p.issue_id for p in rows]), articles

    def _passages(self, where: str, args: list, order: str = "", articles: dict[str, ArticleRow] | None = None,
                  all_articles: bool = False) -> list[PassageRow]:
        """Passage rows; a text the spans reproduce is cut from its article's body, the articles
        needed (all of them with `all_articles`) fetched in one statement into `articles`."""
        rows = self.conn.execute(
            f'SELECT p.id, p.vec_id, a.issue_id, p.article_id, p.ordinal, p.text, p.start, p."end", '
            f"p.body_start, p.body_end FROM passages p JOIN articles a ON a.id = p.article_id WHERE {where} {order}",
            args,
        ).fetchall()
        articles = {} if articles is None else articles
        needed = [r["article_id"] for r in rows if all_articles or r["text"] is None]
        articles.update(self.articles_by_id([a for a in needed if a not in articles]))
        out = []
        for r in rows:
            out.append(PassageRow(id=r["id"], vec_id=r["vec_id"], issue_id=r["issue_id"], article_id=r["article_id"],
                                  ordinal=r["ordinal"], text=_passage_text(r, articles), start=r["start"], end=r["end"]))
        return out

    def passages_of_article(self, article_id: str) -> list[PassageRow]:
        return self._passages("p.article_id = ?", [article_id], "ORDER BY p.ordinal")

    def passage_counts(self, issue_id: str) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT p.article_id, COUNT(*) AS n FROM articles a JOIN passages p ON p.article_id = a.id "
            "WHERE a.issue_id = ? GROUP BY p.article_id",
            (issue_id,),
        )
        return {r["article_id"]: r["n"] for r in rows}

    def passages_by_id(self, ids: list[str]) -> dict[str, PassageRow]:
        if not ids:
            return {}
        rows = self._passages(f"p.id IN ({','.join('?' * len(ids))})", list(ids))
        return {r.id: r for r in rows}

    def passages_by_vec_id(self, vec_ids: list[int]) -> dict[int, PassageRow]:
        """Passages by their search-file id (those still stored). Usage: ``store.passages_by_vec_id([17, 4])``"""
        if not vec_ids:
            return {}
        rows = self._passages(f"p.vec_id IN ({','.join('?' * len(vec_ids))})", [int(v) for v in vec_ids])
        return {r.vec_id: r for r in rows}

    # -- what the search files are built from -----------------------------------------------
    def vec_ids(self) -> np.ndarray:
        """Every stored passage's vec_id, ascending (int64), read straight into the array (no
        list of rows: 8 bytes a passage)."""
        rows = self.conn.execute("SELECT vec_id FROM passages ORDER BY vec_id")
        return np.fromiter((r[0] for r in rows), dtype=np.int64)

    VECTOR_CHUNK = 8192  # vectors read (and their rows held) at a time by `stored_vectors`

    def vectors(self, vec_ids: np.ndarray) -> np.ndarray:
        """The stored vectors of `vec_ids` (all stored; KeyError otherwise), in that order, as float32.
        Usage: ``store.vectors(np.array([17, 4]))``"""
        return np.asarray(self.stored_vectors(vec_ids))

    def stored_vectors(self, vec_ids: np.ndarray) -> StoredVectors:
        """The stored vectors of `vec_ids` (all stored; KeyError otherwise), in that order, as the
        store holds them (int8 + scale: 388 bytes a 384-d row), read VECTOR_CHUNK at a time.
        Usage: ``store.stored_vectors(np.array([17, 4]))[0:2]``"""
        ids = [int(v) for v in vec_ids]
        codes = scales = None
        for k in range(0, len(ids), self.VECTOR_CHUNK):
            part = ids[k:k + self.VECTOR_CHUNK]
            rows = self._rows_in("SELECT vec_id, embedding FROM passages WHERE vec_id", part)
            blobs = {r["vec_id"]: r["embedding"] for r in rows}
            chunk = StoredVectors.from_blobs([blobs[v] for v in part])
            if codes is None:
                codes, scales = np.empty((len(ids), chunk.shape[1]), np.int8), np.empty(len(ids), np.float32)
            codes[k:k + len(part)], scales[k:k + len(part)] = chunk.codes, chunk.scales
        return StoredVectors.from_blobs([]) if codes is None else StoredVectors(codes, scales)

    def iter_index_rows(self, vec_ids: np.ndarray | None = None, batch: int = 2000) -> Iterator[dict]:
        """Passages (all, or those of `vec_ids`) in vec_id order with what the search files need,
        in batches: vec_ids, vectors, dates, issue_nos, headlines, texts."""
        wanted = None if vec_ids is None else np.sort(np.asarray(vec_ids, dtype=np.int64))
        if wanted is not None and not len(wanted):
            return
        after = -1 if wanted is None else int(wanted[0]) - 1
        while True:
            rows = self.conn.execute(
                'SELECT p.vec_id, p.id, p.article_id, p.text, p.body_start, p.body_end, p.embedding, '
                "a.headline, i.date, i.issue_no FROM passages p JOIN articles a ON a.id = p.article_id "
                "JOIN issues i ON i.id = a.issue_id WHERE p.vec_id > ? ORDER BY p.vec_id LIMIT ?",
                (after, batch)).fetchall()
            if not rows:
                return
            after = rows[-1]["vec_id"]
            if wanted is not None:
                ids = np.fromiter((r["vec_id"] for r in rows), dtype=np.int64, count=len(rows))
                keep = np.isin(ids, wanted)
                rows = [r for r, k in zip(rows, keep) if k]
                if not rows:
                    if after >= wanted[-1]:
                        return
                    continue
            articles = self.articles_by_id([r["article_id"] for r in rows if r["text"] is None])
            texts = [_passage_text(r, articles) for r in rows]
            yield {"vec_ids": np.array([r["vec_id"] for r in rows], dtype=np.int64),
                   "vectors": dequantize([r["embedding"] for r in rows]),
                   "dates": [r["date"] for r in rows], "issue_nos": [r["issue_no"] for r in rows],
                   "headlines": [r["headline"] for r in rows], "texts": texts}

    # -- copying a whole store (qa migrate) ---------------------------------------------------
    def dump_rows(self, table: str, batch: int = 1000) -> Iterator[list[tuple]]:
        """The rows of `table` (columns as `TABLES` lists them) in key order, `batch` at a time.
        Usage: ``for rows in store.dump_rows("issues"): ...``"""
        key, columns = TABLES[table]
        cols = ", ".join(f'"{c}"' for c in columns)
        at = columns.index(key)
        last = None
        while True:
            where = "" if last is None else f'WHERE "{key}" > ? '
            rows = self.conn.execute(f'SELECT {cols} FROM {table} {where}ORDER BY "{key}" LIMIT ?',
                                     ([] if last is None else [last]) + [batch]).fetchall()
            if not rows:
                return
            last = rows[-1][at]
            yield [tuple(r) for r in rows]

    def load_rows(self, tx: Any, table: str, rows: list[tuple]) -> None:
        """Insert rows as `dump_rows` gives them (inside `tx`); ids are kept as they are."""
        _, columns = TABLES[table]
        if table == "terms" and self._terms is not None:
            self._terms.mark_incomplete()
        if rows:
            tx.executemany(f'INSERT INTO {table} ({", ".join(chr(34) + c + chr(34) for c in columns)}) '
                           f'VALUES ({",".join("?" * len(columns))})', rows)

    def after_load(self, tx: Any) -> None:
        """Called once after `load_rows` has filled the store: id sequences move past the copied ids."""



def _passage_text(r: Any, articles: dict[str, ArticleRow]) -> str:
    """A passage row's text: stored, or (when its spans reproduce it) cut from its article's body."""
    if r["text"] is not None:
        return r["text"]
    art = articles.get(r["article_id"])
    return art.body[r["body_start"]:r["body_end"]] if art else ""


def _issue_filter(date_from: str | None, date_to: str | None, issue_no: str | None) -> tuple[str, list]:
    """The WHERE clause (with its arguments) of issues in a date range and of an issue number."""
    conditions, args = [], []
    for clause, value in (("date >= ?", date_from), ("date <= ?", date_to), ("issue_no = ?", issue_no)):
        if value is not None:
            conditions.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), args


def _issue(r: Any) -> IssueRow:
    return IssueRow(**{k: r[k] for k in IssueRow.__dataclass_fields__})


def _article(r: Any, page_text: str | None) -> ArticleRow:
    d = {k: r[k] for k in ArticleRow.__dataclass_fields__ if k not in ("continuations", "body")}
    body = r["body"] if r["body"] is not None else body_from_layout(page_text or "", r["layout"])
    return ArticleRow(**d, continuations=json.loads(r["continuations"]), body=body)


def _implementation(url: str | None):
    """The store class for `url` (None or empty: SQLite in the index folder)."""
    if not url:
        from qa.store_sqlite import SQLiteStore

        return SQLiteStore
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
        from qa.store_postgres import PostgresStore

        return PostgresStore
    raise StoreError(f"QA_STORE_URL {redact(url)!r} is not a store this program knows: leave it unset for "
                     f"SQLite in the index folder, or give postgresql://user:password@host:port/dbname")


def open_store(index_dir: Path, url: str | None = None) -> Store:
    """The archive's store for the index folder `index_dir`: SQLite there unless `url` (default:
    the `store_url` setting, QA_STORE_URL) names another; created on first use, migrated from an
    older format in place. Raises `StoreError` for a URL it cannot use.

    Usage: ``store = open_store(Path("index"))`` or ``open_store(Path("index"), "postgresql://qa@db/qa")``"""
    if url is None:
        from qa.config import get_settings

        url = get_settings().store_url
    return _implementation(url).open(Path(index_dir), url)


def store_exists(index_dir: Path, url: str | None = None) -> bool:
    """Whether the configured store already holds an archive (without creating one).
    Usage: ``store_exists(Path("index"))``"""
    if url is None:
        from qa.config import get_settings

        url = get_settings().store_url
    return _implementation(url).exists(Path(index_dir), url)


def redact(url: str) -> str:
    """`url` without its password, for messages.
    Usage: ``redact("postgresql://u:pw@h/db")`` → ``postgresql://u:***@h/db``"""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


COPIED_MANIFEST = ("embed_model", "embed_dim", "embed_backends")


def copy_store(source: Store, target: Store, batch: int = 1000) -> dict[str, int]:
    """Copy every row of `source` into the empty store `target` without re-embedding: issues,
    articles, passages (ids and vectors as stored) and terms, `batch` rows per transaction, so
    memory stays bounded; then the model's manifest entries and the pages root (as the same
    folder, seen from the target's index folder). Returns the rows copied per table. The caller
    holds both writer locks and rebuilds the target's search files afterwards.

    Usage: ``copy_store(open_store(Path("index")), open_store(Path("index"), "postgresql://…"))``"""
    held = target.counts()["issues"]
    if held:
        raise StoreError(f"the target store {target.location} already holds {held} pages; "
                         f"migrate into an empty one")
    copied = {}
    for table in ("issues", "articles", "passages", "terms"):
        copied[table] = 0
        for rows in source.dump_rows(table, batch):
            with target.transaction() as tx:
                target.load_rows(tx, table, rows)
            copied[table] += len(rows)
    manifest = source.manifest()
    root = os.path.relpath(source.pages_root, target.directory.resolve())
    with target.transaction() as tx:
        target.after_load(tx)
        for key in COPIED_MANIFEST:
            if key in manifest:
                target.set_manifest(tx, key, manifest[key])
        target.set_manifest(tx, "pages_root", root)
        target.bump_generation(tx)
    return copied
