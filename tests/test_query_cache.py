"""The query path's per-snapshot caches and batched reads: term ids and document frequencies are
kept for one snapshot and never outlive it (a page added or removed while serving is seen, with
the idf a fresh reader computes), on SQLite and on PostgreSQL; a page of hits is read in three
statements; BM25 gathers all of a question's terms at once and scores as term by term; flat
segments move onto the shared quantizer once the archive has one. No embedding model."""

from __future__ import annotations

import numpy as np
import pytest

from qa.index import Archive
from qa.lexical import Postings
from qa.retrieve import HybridRetriever
from qa.store import open_store
from test_segments import WORDS, clustered_page, exact_top, make_page, published, small_ivf, write  # noqa: F401

NEW_WORD = "磁悬浮列车"  # in no page of make_page until one is written with it


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request) -> str:
    """'' = SQLite in the index folder; else a fresh PostgreSQL database."""
    return "" if request.param == "sqlite" else request.getfixturevalue("pg_db_url")


def archive_at(tmp_path, url: str, name: str = "index") -> Archive:
    return Archive(tmp_path / name, open_store(tmp_path / name, url))


def page_with(k: int, word: str):
    """make_page(k) whose first passage also holds `word` (tokens included)."""
    page, passages, vectors, tokens = make_page(k)
    passages[0].text += word
    tokens[0] = tokens[0] + [word]
    return page, passages, vectors, tokens


class CountingLookup:
    """Wraps a snapshot's term lookup (the store statement) and counts the tokens it is asked."""

    def __init__(self, lexical):
        self.real, self.asked = lexical._lookup, []
        lexical._lookup = self

    def __call__(self, terms):
        self.asked.extend(terms)
        return self.real(terms)


def idfs(archive: Archive, words) -> dict[str, float]:
    snap = archive.snapshot()
    return {w: round(snap.idf(w), 6) for w in words}


def test_a_snapshot_answers_seen_terms_from_memory(url, tmp_path):
    archive = archive_at(tmp_path, url)
    write(archive, *(make_page(k) for k in range(4)))
    snap = archive.snapshot()
    counted = CountingLookup(snap.lexical)
    first = snap.lexical.scores(["衡阳", "港口", NEW_WORD])
    assert sorted(counted.asked) == sorted(["衡阳", "港口", NEW_WORD])
    counted.asked.clear()
    again = snap.lexical.scores(["衡阳", "港口", NEW_WORD])
    weights = {w: snap.idf(w) for w in ("衡阳", "港口", NEW_WORD)}
    assert counted.asked == []  # known, and known to be absent: no store statement
    np.testing.assert_array_equal(first, again)
    assert weights[NEW_WORD] > weights["港口"] > 0  # an unseen word weighs most


def test_pages_added_and_removed_while_serving_are_seen_with_fresh_idf_and_term_ids(url, tmp_path):
    writer = archive_at(tmp_path, url)
    write(writer, *(make_page(k) for k in range(4)))
    server = archive_at(tmp_path, url)
    words = ["港口", "医院", NEW_WORD]
    before = server.snapshot()
    assert not before.lexical.scores([NEW_WORD]).any()
    served = idfs(server, words)  # the caches of the old snapshot are filled now
    write(writer, page_with(4, NEW_WORD), page_with(5, NEW_WORD))
    after = server.snapshot()
    assert after is not before
    hits = after.lexical.scores([NEW_WORD])
    found = server.store.passages_by_vec_id(after.vec_ids[np.flatnonzero(hits)].tolist())
    assert sorted(p.id for p in found.values()) == ["p0004:0", "p0005:0"]  # the new term id, not a stale "absent"
    fresh = archive_at(tmp_path, "", "fresh")  # a reference built afresh (SQLite: the same scores)
    write(fresh, *(make_page(k) for k in range(4)), page_with(4, NEW_WORD), page_with(5, NEW_WORD))
    assert idfs(server, words) == idfs(fresh, words) != served
    with writer.writer():
        writer.remove_page("p0005")
        writer.refresh_derived()
    with fresh.writer():
        fresh.remove_page("p0005")
        fresh.refresh_derived()
    assert idfs(server, words) == idfs(fresh, words)
    gone = server.snapshot().lexical.scores([NEW_WORD])
    found = server.store.passages_by_vec_id(server.snapshot().vec_ids[np.flatnonzero(gone)].tolist())
    assert [p.id for p in found.values()] == ["p0004:0"]


def test_a_store_cleared_and_refilled_while_serving_gives_no_stale_term_ids(url, tmp_path):
    writer = archive_at(tmp_path, url)
    write(writer, *(make_page(k) for k in range(3)))
    server = archive_at(tmp_path, url)
    idfs(server, WORDS[:10])
    with writer.writer():
        writer.clear()
        writer.write_pages([page_with(7, NEW_WORD), make_page(8)])
        writer.refresh_derived()
    fresh = archive_at(tmp_path, "", "fresh")  # a reference built afresh (SQLite: the same scores)
    write(fresh, page_with(7, NEW_WORD), make_page(8))
    tokens = WORDS[:10] + [NEW_WORD]
    assert bm25_top(server, tokens) == bm25_top(fresh, tokens)
    assert idfs(server, tokens) == idfs(fresh, tokens)


def bm25_top(archive: Archive, tokens: list[str], k: int = 6) -> list[tuple[str, float]]:
    """The BM25 top k as (passage id, score), by passage id."""
    snap = archive.snapshot()
    scores = snap.lexical.scores(tokens)
    top = np.argsort(-scores, kind="stable")[:k]
    rows = archive.store.passages_by_vec_id(snap.vec_ids[top].tolist())
    return sorted((rows[int(snap.vec_ids[p])].id, round(float(scores[p]), 5)) for p in top if scores[p] > 0)


def test_a_page_of_hits_is_read_in_three_statements(url, tmp_path):
    archive = archive_at(tmp_path, url)
    write(archive, *(make_page(k) for k in range(4)))
    snap = archive.snapshot()
    vec_ids = snap.vec_ids[[0, 3, 7, 12, 19]].tolist() + [10_000]  # the last one is not stored
    store = archive.store
    passages, issues, articles = store.passages_in_context(vec_ids)
    assert passages == store.passages_by_vec_id(vec_ids) and 10_000 not in passages
    assert issues == {p.issue_id: store.issue(p.issue_id) for p in passages.values()}
    assert articles == {p.article_id: store.article(p.article_id) for p in passages.values()}
    if url:
        return  # the statement count below uses SQLite's trace callback
    seen = []
    store.conn.set_trace_callback(seen.append)
    store.passages_in_context(vec_ids)
    assert len(seen) == 3
    seen.clear()
    hits = HybridRetriever(archive, None)._hits([(v, 1.0) for v in vec_ids], top_k=5)
    assert [h.chunk_id for h in hits] == [passages[v].id for v in vec_ids[:5]] and len(seen) == 3
    assert hits[0].citation.label == HybridRetriever(archive, None)._hits([(vec_ids[0], 1.0)], 1)[0].citation.label


def test_bm25_gathered_at_once_equals_term_by_term():
    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 40, rng.integers(0, 30)) for _ in range(300)]
    post = Postings.from_docs(docs)
    wanted = np.array([0, 3, 3, 17, 39, 40, 1000, -1])  # repeats, and terms no document holds
    which, rows, tfs = post.lookup(wanted)
    for j, term in enumerate(wanted.tolist()):
        r, tf = post.docs_of(term)
        np.testing.assert_array_equal(rows[which == j], r)
        np.testing.assert_array_equal(tfs[which == j], tf)
    empty = Postings.from_docs([np.zeros(0, np.int64)])
    assert [len(x) for x in empty.lookup(np.array([1, 2]))] == [0, 0, 0]


def test_flat_segments_move_onto_the_shared_quantizer_once_it_exists(tmp_path, small_ivf):
    rng, centres = small_ivf
    archive = Archive(tmp_path / "index")
    write(archive, *(clustered_page(k, rng, centres) for k in range(2)))  # 50 passages: flat
    write(archive, clustered_page(2, rng, centres, n=3))  # a tiny flat one
    assert all(archive.snapshot().segments[i].coarse is None for i in range(2))
    q = clustered_page(60, rng, centres, n=1)[2][0]
    write(archive, *(clustered_page(k, rng, centres) for k in range(3, 11)))  # 200: trains the quantizer
    snap = Archive(tmp_path / "index").snapshot()
    assert [s.size for s in snap.segments] == [50, 3, 200]
    assert len({s.coarse.name for s in snap.segments if s.coarse is not None}) == 1
    assert all(s.coarse is not None for s in snap.segments)  # the flat ones rewritten onto it
    exact = snap.dense(q, 10, exact=True)
    assert len(set(snap.vec_ids[list(exact)].tolist()) & set(exact_top(archive, q))) >= 8
    names = published(archive)
    write(archive, clustered_page(11, rng, centres, n=2))
    assert published(archive)[:3] == names  # rewritten once, not at every refresh
