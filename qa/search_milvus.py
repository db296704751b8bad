"""search_milvus: the search index as one Milvus collection (Milvus Lite file or a Milvus server).

Collection (one row per passage, primary key = the store's vec_id):

- ``vector``: FLOAT_VECTOR (the embedder's dim), HNSW, inner product; the store's vectors as stored.
- ``sparse``: SPARSE_FLOAT_VECTOR for BM25. Two ways, measured on eval/dev.jsonl (docs/deploy.md, "Milvus"):
  ``LEXICAL = "tokens"``: BM25 document weights computed here from qa.lexical's tokens (the
  project's jieba + local-names dictionary + stop words, as the embedded index), query weights
  idf from document counts, metric IP; ``"jieba"``: Milvus's own BM25 function over ``text`` with
  its jieba analyzer (the local names passed as the analyzer's ``dict``), metric BM25.
- ``terms``: ARRAY<VARCHAR> of the passage's distinct qa.lexical tokens: document frequencies
  (``array_contains``) for idf, and which terms a passage holds (qa.fusion).
- ``text``: headline + passage text; scalars ``date`` (int yyyymmdd, 0 unknown), ``issue_no``,
  ``page``, ``source``, ``issue_id``, ``article_id``, each with an INVERTED index; date and issue
  filters are filter expressions.

The store stays the source of truth: a page's rows are upserted before the store commits it and
superseded rows deleted after, so a committed page is always searchable and rows the store lacks
(a page being written, a crashed writer's leftovers) are dropped by the retriever and cleaned by
the next refresh. `refresh(rebuild=True)` fills a new physical collection from the store (no
re-embedding) and switches the alias `QA_MILVUS_COLLECTION` to it, so readers never see it half full.

Milvus Lite (``QA_MILVUS_URI`` ending in ``.db``, relative to the index folder) runs inside the
process and locks its folder: one process at a time. Several processes share a server
(``http://host:19530``; in tests ``milvus-lite server --data-dir D --port P``).

Usage::

    index = MilvusIndex(Path("index"), store)        # or through qa.search.open_search_index
    view = index.snapshot(); view.dense_top(qvec, 10, view.where("2021-11-01", None, None))
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from qa.lexical import B, K1, passage_tokens
from qa.search import IndexRows, date_int

LEXICAL = "tokens"  # "tokens" (client-side BM25 over qa.lexical tokens) or "jieba" (Milvus's analyzer)
AVG_LEN = 120.0  # BM25 length normalization of the client-side weights (tokens per passage, seeds ≈ 120)
HNSW = {"M": 16, "efConstruction": 200}
MAX_TERM_CHARS = 64  # longer tokens (runs of digits or Latin) are left out of `terms`/`sparse`
BATCH = 1000  # rows per insert/delete call
SCALARS = ("date", "issue_no", "page", "source", "issue_id", "article_id")


def term_key(term: str) -> int:
    """A term's sparse dimension: a stable 31-bit hash (collisions are negligible at this vocabulary)."""
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "little") & 0x7FFFFFFF


def bm25_doc(tokens: list[str]) -> dict[int, float]:
    """Client-side BM25 document weights tf/(tf + K1·(1 − B + B·len/AVG_LEN)) by term key."""
    counts = Counter(t for t in tokens if len(t) <= MAX_TERM_CHARS)
    norm = K1 * (1 - B + B * len(tokens) / AVG_LEN)
    return {term_key(t): tf / (tf + norm) for t, tf in counts.items()} or {0: 0.0}


def _lit(value: str) -> str:
    """A string literal for a filter expression."""
    return json.dumps(value, ensure_ascii=False)


def _id_list(vec_ids: Iterable[int]) -> str:
    return "[" + ",".join(str(int(v)) for v in vec_ids) + "]"


def userdict_words() -> list[str]:
    """The local-names dictionary (qa/data/userdict.txt) as Milvus's jieba `dict` wants it."""
    from importlib import resources

    text = (resources.files("qa") / "data" / "userdict.txt").read_text(encoding="utf-8")
    return ["_default_"] + [line.split()[0] for line in text.splitlines() if line.strip()]


def connect(uri: str, token: str | None, directory: Path):
    """A MilvusClient for `uri` (a `.db` path is Milvus Lite, relative to `directory`)."""
    from pymilvus import MilvusClient

    if uri.endswith(".db") and "://" not in uri:
        uri = str(Path(directory) / uri) if not Path(uri).is_absolute() else uri
    return MilvusClient(uri=uri, token=token or "")


class MilvusIndex:
    """The `qa.search.SearchIndex` on Milvus (see the module doc)."""

    def __init__(self, directory: Path, store, lexical: str | None = None):
        from qa.config import get_settings

        settings = get_settings()
        self.directory, self.store = Path(directory), store
        self.name = settings.milvus_collection
        self.lexical = lexical or LEXICAL
        self._settings = settings
        self.recover: Callable[[], int | None] = lambda: None
        self._view: MilvusView | None = None
        self._lock = threading.Lock()
        self._writing: str | None = None  # the collection behind the alias, while a writer writes

    # -- the collection ---------------------------------------------------------------------
    @cached_property
    def client(self):
        """Connected on first use (commands that only read the store never start Milvus Lite)."""
        return connect(self._settings.milvus_uri, self._settings.milvus_token, self.directory)

    def _create(self, physical: str, dim: int) -> None:
        from pymilvus import DataType, Function, FunctionType

        c = self.client
        s = c.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("vec_id", DataType.INT64, is_primary=True)
        s.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
        jieba = self.lexical == "jieba"
        s.add_field("text", DataType.VARCHAR, max_length=16384, enable_analyzer=jieba,
                    **({"analyzer_params": {"tokenizer": {"type": "jieba", "dict": userdict_words(),
                                                          "mode": "search"}}} if jieba else {}))
        s.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        s.add_field("terms", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4096,
                    max_length=MAX_TERM_CHARS * 4)
        s.add_field("date", DataType.INT64)
        s.add_field("page", DataType.INT64)
        for name in ("issue_no", "source", "issue_id", "article_id"):
            s.add_field(name, DataType.VARCHAR, max_length=1024)
        if jieba:
            s.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                    input_field_names=["text"], output_field_names=["sparse"]))
        ip = c.prepare_index_params()
        ip.add_index("vector", index_type="HNSW", metric_type="IP", params=HNSW)
        ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25" if jieba else "IP")
        for name in SCALARS:
            ip.add_index(name, index_type="INVERTED")
        c.create_collection(physical, schema=s, index_params=ip, consistency_level="Strong",
                            properties={"qa.lexical": self.lexical})
        self._index_terms(physical)

    def _index_terms(self, physical: str) -> None:
        """An INVERTED index on `terms` where the engine has one (Milvus does; Milvus Lite has no
        index on ARRAY fields: there `array_contains` scans)."""
        if self.is_lite:
            return
        ip = self.client.prepare_index_params()
        ip.add_index("terms", index_type="INVERTED")
        self.client.create_index(physical, ip)

    @cached_property
    def is_lite(self) -> bool:
        return str(self.client.get_server_version()).startswith("milvus_lite")

    def _physical(self) -> str | None:
        """The collection behind the alias (None: nothing built yet)."""
        if not self.client.has_collection(self.name):
            return None
        if self.name in self.client.list_collections():
            return self.name  # a plain collection of that name (made by hand)
        return self.client.describe_alias(self.name)["collection_name"]

    def _load(self) -> None:
        """Load the collection if it is not: Milvus Lite reopens its folder with every collection
        released (so does a server restarted without auto-load), and then refuses searches."""
        if getattr(self.client.get_load_state(self.name).get("state"), "name", "Loaded") != "Loaded":
            self.client.load_collection(self.name)

    def _ensure(self, dim: int) -> None:
        if self._writing is None:
            self._writing = self._physical()
            if self._writing is not None:
                self._load()
        if self._writing is None:
            physical = f"{self.name}_g{self.store.generation()}"
            self._create(physical, dim)
            self.client.create_alias(physical, self.name)
            self._writing = physical

    # -- writing ----------------------------------------------------------------------------
    def _entities(self, rows: IndexRows) -> list[dict]:
        out = []
        for i in range(len(rows)):
            toks = rows.tokens[i]
            e = {"vec_id": int(rows.vec_ids[i]), "vector": rows.vectors[i].tolist(), "text": rows.texts[i][:5000],
                 "terms": sorted({t for t in toks if len(t) <= MAX_TERM_CHARS})[:4096],
                 "date": int(rows.dates[i] or 0), "page": int(rows.pages[i] or 0),
                 "issue_no": rows.issue_nos[i] or "", "source": rows.sources[i],
                 "issue_id": rows.issue_ids[i], "article_id": rows.article_ids[i]}
            if self.lexical != "jieba":
                e["sparse"] = bm25_doc(toks)
            out.append(e)
        return out

    def _upsert(self, rows: IndexRows, collection: str | None = None) -> None:
        ents = self._entities(rows)
        for k in range(0, len(ents), BATCH):
            self.client.upsert(collection or self.name, ents[k:k + BATCH])

    def stage(self, tx, rows: IndexRows, source: str):
        """Upsert the page's rows before the store commits it (invisible until then: the
        retriever drops vec_ids the store lacks)."""
        if len(rows):
            self._ensure(rows.vectors.shape[1])
            self._upsert(rows)
        return source, [int(v) for v in rows.vec_ids]

    def commit(self, staged) -> None:
        """Delete the superseded rows of the page just committed."""
        source, keep = staged
        if self._writing is not None or self._physical() is not None:
            self.client.delete(self.name, filter=f"source == {_lit(source)} and vec_id not in {_id_list(keep)}")

    def removed(self, source_or_id: str) -> None:
        if self._physical() is not None:
            self._load()
            self.client.delete(self.name, filter=f"source == {_lit(source_or_id)} or issue_id == {_lit(source_or_id)}")

    def cleared(self) -> None:
        """The store was emptied (`qa ingest --rebuild`, maybe with another model and dimension):
        the collection goes; the next page creates it afresh."""
        physical = self._physical()
        if physical is not None:
            if physical != self.name:
                self.client.drop_alias(self.name)
            self.client.drop_collection(physical)
        self._writing = None

    def reset(self) -> None:
        """Nothing is buffered here; the alias is looked up afresh by the next writer."""
        self._writing = None

    # -- bringing it up to the store --------------------------------------------------------
    def derived_generation(self) -> int | None:
        physical = self._physical()
        if physical is None:
            return None
        props = self.client.describe_collection(physical).get("properties", {})
        return int(props["qa.generation"]) if "qa.generation" in props else None

    def count(self) -> int:
        if self._physical() is None:
            return 0
        return int(self.client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def refresh(self, rebuild: bool = False) -> int:
        """Reconcile with the store: rows the store lacks deleted, stored passages the collection
        lacks added from the store (only when the counts differ); with `rebuild`, a new collection
        filled from the store replaces the old one behind the alias. Under the writer lock."""
        gen = self.store.generation()
        self._writing = None
        if rebuild or self._physical() is None:
            self._rebuild(gen)
        else:
            self._load()
            if self.count() != self.store.counts()["passages"]:
                self._reconcile()
        physical = self._physical()
        if physical is not None:
            self.client.alter_collection_properties(physical, properties={"qa.generation": str(gen)})
        self._view = None
        return gen

    def _rebuild(self, gen: int) -> None:
        old = self._physical()
        physical = f"{self.name}_g{gen}"
        if physical == old:
            physical += "b"
        created = False
        for rows in self._rows_from_store(None):
            if not created:
                if self.client.has_collection(physical):
                    self.client.drop_collection(physical)
                self._create(physical, rows.vectors.shape[1])
                created = True
            self._upsert(rows, physical)
        if not created:
            if old is not None:
                self.client.delete(self.name, filter="vec_id >= 0")
            return
        if old is None:
            self.client.create_alias(physical, self.name)
        else:
            self.client.alter_alias(physical, self.name)
            if old != self.name:
                self.client.drop_collection(old)

    def _reconcile(self) -> None:
        stored = self.store.vec_ids()
        held = self._all_ids(int(stored[-1]) if len(stored) else 0)
        extra = np.setdiff1d(held, stored)
        for k in range(0, len(extra), BATCH):
            self.client.delete(self.name, ids=extra[k:k + BATCH].tolist())
        missing = np.setdiff1d(stored, held)
        if len(missing):
            for rows in self._rows_from_store(missing):
                self._upsert(rows)

    def _all_ids(self, top: int) -> np.ndarray:
        """Every vec_id the collection holds, by ranges of ids (no query iterator: Milvus Lite lacks
        the timestamps it needs); `top` is the store's highest, rows above it are read until none."""
        ids: list[int] = []
        step = 10_000  # ≤ Milvus's 16,384 rows per query
        for lo in range(0, top + 1, step):
            ids += [r["vec_id"] for r in self.client.query(
                self.name, filter=f"vec_id >= {lo} and vec_id < {lo + step}", output_fields=["vec_id"], limit=step)]
        while True:
            above = [r["vec_id"] for r in self.client.query(
                self.name, filter=f"vec_id > {max([top, *ids[-1:]])}", output_fields=["vec_id"], limit=step)]
            if not above:
                return np.array(sorted(set(ids)), dtype=np.int64)
            ids += sorted(above)

    def _rows_from_store(self, vec_ids: np.ndarray | None):
        """IndexRows of the stored passages (all, or `vec_ids`) in batches, tokens re-derived from the text."""
        for r in self.store.iter_index_rows(vec_ids):
            ids = r["vec_ids"].tolist()
            passages = self.store.passages_by_vec_id(ids)
            issues = {p.issue_id: self.store.issue(p.issue_id) for p in passages.values()}
            keep = [i for i, v in enumerate(ids) if v in passages and issues[passages[v].issue_id]]
            ps = [passages[ids[i]] for i in keep]
            iss = [issues[p.issue_id] for p in ps]
            heads, texts = [r["headlines"][i] for i in keep], [r["texts"][i] for i in keep]
            yield IndexRows(
                vec_ids=r["vec_ids"][keep], vectors=r["vectors"][keep],
                tokens=[passage_tokens(h, t) for h, t in zip(heads, texts)],
                texts=[f"{h}\n{t}" if h else t for h, t in zip(heads, texts)],
                dates=[date_int(r["dates"][i]) for i in keep], issue_nos=[r["issue_nos"][i] for i in keep],
                pages=[i.page for i in iss], sources=[i.source for i in iss],
                issue_ids=[p.issue_id for p in ps], article_ids=[p.article_id for p in ps])

    # -- reading ----------------------------------------------------------------------------
    def snapshot(self) -> "MilvusView":
        """A view at the store's generation. When the collection and the store disagree on the
        count (a crashed writer) and no one is writing, they are reconciled first."""
        gen = self.store.generation()
        view = self._view
        if view is not None and view.generation == gen:
            return view
        with self._lock:
            if self._view is None or self._view.generation != gen:
                if self._physical() is not None:
                    self._load()
                if self.count() != self.store.counts()["passages"]:
                    self.recover()
                if self._physical() is None and self.store.counts()["passages"]:
                    raise RuntimeError(f"Milvus collection {self.name!r} is missing; run: qa reindex")
                self._view = MilvusView(self, gen)
            return self._view


class MilvusView:
    """The `qa.search.SearchView` on Milvus, at one store generation (Milvus itself is live; hits
    the store lacks are dropped by the retriever). `lexical` is the view itself (idf)."""

    def __init__(self, index: MilvusIndex, generation: int):
        self.index, self.generation = index, generation
        self.client, self.name = index.client, index.name
        self.size = index.count()
        self._df: dict[str, int] = {}
        self.lexical = self

    def where(self, date_from: str | None, date_to: str | None, issue: str | None) -> str | None:
        parts = []
        if date_from or date_to:
            lo = date_int(date_from) if date_from else 0
            hi = date_int(date_to) if date_to else 99_999_999
            parts.append(f"(date > 0 and date >= {lo} and date <= {hi})")
        if issue:
            parts.append(f"issue_no == {_lit(issue)}")
        return " and ".join(parts) or None

    def any_match(self, flt: str | None) -> bool:
        if not self.size:
            return False
        return bool(self.client.query(self.name, filter=flt or "", limit=1, output_fields=["vec_id"]))

    def _search(self, data, field: str, k: int, flt: str | None, metric: str) -> dict[int, float]:
        if not self.size or k <= 0:
            return {}
        params = {"metric_type": metric, "params": {"ef": max(2 * k, 128)} if field == "vector" else {}}
        res = self.client.search(self.name, data=[data], anns_field=field, limit=min(k, 16384),
                                 filter=flt or "", search_params=params, output_fields=[])
        return {int(h.id): abs(float(h.distance)) if metric == "BM25" else float(h.distance) for h in res[0]}

    def dense_top(self, qvec: np.ndarray, k: int, flt: str | None = None) -> dict[int, float]:
        return self._search(np.asarray(qvec, np.float32).tolist(), "vector", k, flt, "IP")

    def dense_of(self, qvec: np.ndarray, vec_ids: list[int]) -> np.ndarray:
        rows = {r["vec_id"]: r["vector"] for r in self.client.get(self.name, ids=[int(v) for v in vec_ids],
                                                                   output_fields=["vector"])}
        q = np.asarray(qvec, np.float32)
        return np.array([float(np.dot(rows[v], q)) if v in rows else 0.0 for v in vec_ids], np.float32)

    def lexical_search(self, tokens: list[str], flt: str | None = None) -> "MilvusBm25Hits":
        return MilvusBm25Hits(self, tokens, flt)

    def df(self, token: str) -> int:
        """Passages holding `token` (cached per view). With client-side BM25 the sparse index answers
        (a one-term search; Milvus Lite scans `array_contains` row by row, ~1 s per 1,000 rows);
        an exact count when that search hits Milvus's 16,384-row limit, or for the `jieba` variant."""
        if token not in self._df:
            if not self.size:
                self._df[token] = 0
            elif self.index.lexical != "jieba" and len(hits := self._search({term_key(token): 1.0}, "sparse", 16384,
                                                                             None, "IP")) < 16384:
                self._df[token] = sum(1 for s in hits.values() if s > 0)
            else:
                self._df[token] = int(self.client.query(self.name, filter=f"array_contains(terms, {_lit(token)})",
                                                        output_fields=["count(*)"])[0]["count(*)"])
        return self._df[token]

    def idf(self, token: str) -> float:
        """BM25 idf from the collection's document counts (qa.lexical's form)."""
        df = self.df(token) if len(token) <= MAX_TERM_CHARS else 0
        return math.log(1.0 + (self.size - df + 0.5) / (df + 0.5))

    def holds(self, vec_id: int, tokens: set[str]) -> set[str]:
        rows = self.client.get(self.name, ids=[int(vec_id)], output_fields=["terms"])
        return set(tokens) & set(rows[0]["terms"]) if rows else set()


class MilvusBm25Hits:
    """BM25 hits of one query under one filter (qa.search.LexicalHits), searched lazily."""

    def __init__(self, view: MilvusView, tokens: list[str], flt: str | None):
        self.view, self.flt = view, flt
        self.tokens = [t for t in tokens if len(t) <= MAX_TERM_CHARS]
        self._top: dict[int, float] | None = None

    def _query(self):
        if self.view.index.lexical == "jieba":
            return " ".join(self.tokens), "BM25"
        weights = Counter(self.tokens)
        return {term_key(t): n * self.view.idf(t) for t, n in weights.items()}, "IP"

    def _run(self, k: int, flt: str | None) -> dict[int, float]:
        if not self.tokens:
            return {}
        data, metric = self._query()
        return {v: s for v, s in self.view._search(data, "sparse", k, flt, metric).items() if s > 0}

    def top(self, k: int) -> dict[int, float]:
        if self._top is None or len(self._top) < k:
            self._top = self._run(k, self.flt)
        return dict(sorted(self._top.items(), key=lambda x: -x[1])[:k])

    def best(self) -> int | None:
        top = self.top(1) if self._top is None else self._top
        return max(top, key=top.get) if top else None

    def scores_of(self, vec_ids: list[int]) -> np.ndarray:
        within = f"vec_id in {_id_list(vec_ids)}"
        found = self._run(len(vec_ids), f"({self.flt}) and {within}" if self.flt else within) if vec_ids else {}
        return np.array([found.get(int(v), 0.0) for v in vec_ids], np.float64)
