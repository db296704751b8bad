"""The search files in segments: a page added or removed touches only its own segment or
tombstones, a reader reuses unchanged segments, merges and rebuilds change no result, BM25 scores
as bm25s does, filters and the approximate index choose by themselves. No embedding model: pages
come with their own vectors."""

from __future__ import annotations

import math
import random
from collections import Counter

import numpy as np
import pytest

import qa.search_faiss as index_mod
from qa.chunk import Passage
from qa.index import Archive
from qa.lexical import LexicalIndex, Postings, passage_tokens
from qa.parse import Article, Issue, Page, Paragraph

DIM = 32
WORDS = ("衡阳 港口 物流 机场 航线 医院 会议 经济 产业 农业 学校 交通 文化 旅游 科技 工厂 乡村 医生 "
         "道路 桥梁 铁路 高速 公园 河流 环保 能源 电力 教育 体育 比赛 书记 市长 项目 投资 企业").split()


def make_page(k: int, n: int = 5, date: str | None = "2021-11-30", issue_no: str | None = "18012",
              rng_vectors: np.random.Generator | None = None):
    """A page of `n` one-sentence passages with random unit vectors (deterministic in `k`)."""
    rng = random.Random(k)
    texts = ["".join(rng.sample(WORDS, 5)) + f"第{k}号。" for _ in range(n)]
    headline = f"报道{k}"
    text = headline + "\n" + "\n".join(texts)
    issue = Issue(id=f"p{k:04d}", source=f"p{k:04d}.txt", checksum=str(k), encoding="utf-8", date=date,
                  issue_no=issue_no)
    paragraphs, passages, at = [], [], len(headline) + 1
    for i, t in enumerate(texts):
        paragraphs.append(Paragraph(t, at, at + len(t)))
        passages.append(Passage(id=f"{issue.id}:{i}", issue_id=issue.id, article_index=0, ordinal=i, text=t,
                                start=at, end=at + len(t), headline=headline))
        at += len(t) + 1
    page = Page(issue=issue, articles=[Article(index=0, headline=headline, start=0, end=len(text),
                                               paragraphs=paragraphs)], text=text)
    vrng = rng_vectors or np.random.default_rng(k)
    vectors = vrng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return page, passages, vectors, [passage_tokens(headline, t) for t in texts]


def write(archive: Archive, *pages) -> None:
    with archive.writer():
        archive.write_pages(pages)
        archive.refresh_derived()


def published(archive: Archive) -> list[str]:
    return archive.search._published_names()


def results(archive: Archive, query_vec: np.ndarray, tokens: list[str]) -> tuple[list, list]:
    """Dense top 10 and BM25 top 10 as passage ids, with scores (rounded)."""
    snap = archive.snapshot()
    dense = sorted(((round(s, 4), snap.vec_ids[p]) for p, s in snap.dense(query_vec, 10).items()), reverse=True)
    bm25 = snap.lexical.scores(tokens)
    top = np.argsort(-bm25, kind="stable")[:10]
    rows = archive.store.passages_by_vec_id([int(snap.vec_ids[p]) for p in top])
    lexical = [(rows[int(snap.vec_ids[p])].id, round(float(bm25[p]), 4)) for p in top if bm25[p] > 0]
    ids = archive.store.passages_by_vec_id([int(v) for _, v in dense])
    return [(ids[int(v)].id, s) for s, v in dense], lexical


def test_adding_a_page_adds_a_segment_and_a_reader_reuses_the_others(tmp_path):
    archive = Archive(tmp_path / "index")
    write(archive, *(make_page(k) for k in range(3)))
    reader = Archive(tmp_path / "index")
    before = reader.snapshot()
    (first,) = published(archive)
    files = {p.name: p.stat().st_mtime_ns for p in (archive.search.base / f"seg-{first}").iterdir()}
    write(archive, make_page(3))
    names = published(archive)
    assert names[0] == first and len(names) == 2
    assert {p.name: p.stat().st_mtime_ns for p in (archive.search.base / f"seg-{first}").iterdir()} == files
    after = reader.snapshot()
    assert after.generation > before.generation and after.size == before.size + 5
    assert after.segments[0] is before.segments[0]  # not reloaded


def test_a_removed_page_is_tombstoned_and_never_returned(tmp_path):
    archive = Archive(tmp_path / "index")
    write(archive, *(make_page(k) for k in range(4)))
    page, passages, vectors, tokens = make_page(1)
    with archive.writer():
        assert archive.remove_page("p0001")
        archive.refresh_derived()
    snap = archive.snapshot()
    assert snap.size == 15 and snap.rows == 20
    assert len(published(archive)) == 1  # the segment stays; its rows are tombstoned
    found, lexical = results(archive, vectors[0], tokens[0])
    assert found and not any(pid.startswith("p0001:") for pid, _ in found + lexical)
    assert not any(p.startswith("p0001:") for p in snap.ids)


def test_merges_and_a_rebuild_from_the_store_change_no_result(tmp_path):
    archive = Archive(tmp_path / "index")
    query, tokens = make_page(99)[2][0], make_page(2)[3][1]
    for k in range(index_mod.MERGE_AT + 1):  # one page is removed on the way
        write(archive, make_page(k))
        if k == 1:
            with archive.writer():
                archive.remove_page("p0000")
                archive.refresh_derived()
    assert len(published(archive)) == 1  # same-sized segments were merged
    merged = results(archive, query, tokens)
    with archive.writer():
        archive.refresh_derived(rebuild=True)  # tokens re-derived from the stored text
    assert results(Archive(tmp_path / "index"), query, tokens) == merged
    assert merged[1] and all(not pid.startswith("p0000:") for pid, _ in merged[0])


def test_bm25_scores_as_bm25s_does_over_segments_and_tombstones():
    bm25s = pytest.importorskip("bm25s")
    docs = [make_page(k, n=4)[3] for k in range(6)]
    flat = [d for page in docs for d in page]
    vocab = {t: i for i, t in enumerate(sorted({t for d in flat for t in d}))}
    lookup = lambda ts: {t: vocab[t] for t in ts if t in vocab}  # noqa: E731
    as_ids = [np.array([vocab[t] for t in d]) for d in flat]
    segments = [Postings.from_docs(as_ids[:8]), Postings.from_docs(as_ids[8:20]), Postings.from_docs(as_ids[20:])]
    alive = [None, np.array([True] * 12), np.array([False, True, True, False])]
    query = flat[3][:3] + flat[22][:2]
    ours = LexicalIndex(segments, alive, lookup).scores(query)
    live = [d for d, keep in zip(flat, [True] * 20 + alive[2].tolist()) if keep]
    ref = bm25s.BM25(k1=1.2, b=0.75)
    ref.index(live, show_progress=False)
    expected = ref.get_scores([t for t in query if t in ref.vocab_dict])
    got = ours[np.concatenate([np.ones(20, bool), alive[2]])]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert ours[20] == 0 and ours[23] == 0  # removed documents never score
    merged = Postings.merge(list(zip(segments, alive)))
    np.testing.assert_allclose(LexicalIndex([merged], [None], lookup).scores(query), expected, rtol=1e-5, atol=1e-6)


def test_date_and_issue_filters_select_exactly_their_pages(tmp_path):
    archive = Archive(tmp_path / "index")
    write(archive, make_page(0, date="2021-11-30", issue_no="18012"), make_page(1, date="2022-01-05", issue_no="18100"))
    write(archive, make_page(2, date=None, issue_no=None), make_page(3, date="2022-01-06", issue_no="18101"))
    snap = archive.snapshot()
    ids = np.array([p.split(":")[0] for p in snap.ids])

    def pages(mask):
        return sorted(set(ids[mask]))

    assert pages(snap.filter_mask("2022-01-01", None, None)) == ["p0001", "p0003"]
    assert pages(snap.filter_mask(None, "2021-12-31", None)) == ["p0000"]
    assert pages(snap.filter_mask("2022-01-06", "2022-01-06", "18101")) == ["p0003"]
    assert pages(snap.filter_mask(None, None, "18100")) == ["p0001"]
    assert not snap.filter_mask(None, None, "99999").any()
    narrow = snap.filter_mask("2022-01-05", "2022-01-05", None)
    got = snap.dense(make_page(7)[2][0], 10, narrow)
    assert len(got) == 5 and all(narrow[p] for p in got)  # every selected passage, scored exactly


def test_a_large_segment_gets_an_approximate_index_close_to_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(index_mod, "IVF_MIN_ROWS", 1000)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, DIM))
    pages = []
    for k in range(60):
        page = make_page(k, n=25)
        v = centres[rng.integers(0, 40, 25)] + 0.3 * rng.normal(size=(25, DIM))
        pages.append(page[:2] + ((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32),) + page[3:])
    archive = Archive(tmp_path / "index")
    write(archive, *pages)
    snap = archive.snapshot()
    (seg,) = snap.segments
    assert seg.nprobe > 0  # IVF, chosen by size
    vectors = np.concatenate([p[2] for p in pages])
    queries = vectors[rng.integers(0, len(vectors), 30)] + 0.5 * rng.normal(size=(30, DIM)).astype(np.float32)
    hits = scan_hits = 0
    for q in queries:
        exact = set((np.argsort(-(vectors @ q))[:10] + 1).tolist())  # vec_ids are 1, 2, …
        got = snap.dense(q, 10)
        hits += len(exact & set(snap.vec_ids[list(got)].tolist()))
        scan_hits += len(set(got) & set(snap.dense(q, 10, exact=True)))
    # the lists probed lose almost nothing against a scan of every code; the 8-bit codes lose a
    # little more against float vectors on these nearly random 32-d queries (near ties)
    assert scan_hits / (10 * len(queries)) >= 0.99
    assert hits / (10 * len(queries)) >= 0.97


def test_writing_many_pages_flushes_bounded_segments_before_publishing(tmp_path, monkeypatch):
    monkeypatch.setattr(index_mod, "FLUSH_ROWS", 40)
    archive = Archive(tmp_path / "index")
    with archive.writer():
        archive.write_pages([make_page(k) for k in range(20)])
        assert archive.search._buffer.rows < 40 and len(archive.search._unpublished) == 2  # written, not yet published
        assert archive.derived_generation() is None
        archive.refresh_derived()
    assert archive.snapshot().size == 100


def test_a_crash_before_the_flush_is_covered_from_the_store(tmp_path):
    archive = Archive(tmp_path / "index")
    write(archive, make_page(0))
    with archive.writer():
        archive.write_pages([make_page(1), make_page(2)])  # then the process dies: buffer lost
    reader = Archive(tmp_path / "index")
    snap = reader.snapshot()  # recovers: re-derives tokens from the stored text
    assert snap.size == 15
    assert results(reader, make_page(2)[2][0], make_page(2)[3][0]) == results(archive, make_page(2)[2][0],
                                                                               make_page(2)[3][0])


def clustered_page(k: int, rng: np.random.Generator, centres: np.ndarray, n: int = 25, **kw):
    """make_page with vectors around `centres` (what an IVF index is for)."""
    page = make_page(k, n=n, **kw)
    v = centres[rng.integers(0, len(centres), n)] + 0.3 * rng.normal(size=(n, DIM))
    return page[:2] + ((v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32),) + page[3:]


@pytest.fixture
def small_ivf(monkeypatch):
    """IVF from 200 passages on: a quantizer of 200 // 10 = 20 lists."""
    monkeypatch.setattr(index_mod, "IVF_MIN_ROWS", 200)
    monkeypatch.setattr(index_mod, "ROWS_PER_LIST", 10)
    monkeypatch.setattr(index_mod, "FLUSH_ROWS", 200)
    monkeypatch.setattr(index_mod, "MERGE_AT", 100)  # keep the segments apart
    rng = np.random.default_rng(3)
    return rng, rng.normal(size=(12, DIM))


def exact_top(archive: Archive, q: np.ndarray, k: int = 10, mask: np.ndarray | None = None) -> list[int]:
    """vec_ids of the exact top k over the store's vectors (within a mask over the snapshot's positions)."""
    snap = archive.snapshot()
    ids = snap.vec_ids[snap.live_mask() if mask is None else mask]
    scores = archive.store.vectors(ids) @ q
    return ids[np.argsort(-scores)[:k]].tolist()


def test_segments_share_one_coarse_quantizer_and_a_query_is_assigned_once(tmp_path, small_ivf, monkeypatch):
    rng, centres = small_ivf
    archive = Archive(tmp_path / "index")
    write(archive, *(clustered_page(k, rng, centres) for k in range(8)))  # 200 passages: trains it
    write(archive, *(clustered_page(k, rng, centres) for k in range(8, 10)))  # 50: a small segment
    write(archive, clustered_page(10, rng, centres, n=3))  # 3: a tiny one
    reader = Archive(tmp_path / "index")
    snap = reader.snapshot()
    assert [s.size for s in snap.segments] == [200, 50, 3]
    assert len({s.coarse.name for s in snap.segments}) == 1 and snap.segments[0].coarse.nlist == 20
    assert len(list(archive.search.base.glob("coarse-*"))) == 1  # the centroids are stored once
    assert all(s.vectors.quantizer.ntotal == 20 for s in snap.segments)  # given back its centroids on load
    calls = []
    real = index_mod.Coarse.assign
    monkeypatch.setattr(index_mod.Coarse, "assign", lambda self, q, n: calls.append(n) or real(self, q, n))
    queries = [clustered_page(50 + j, rng, centres, n=1)[2][0] for j in range(20)]
    hits = 0
    for q in queries:
        calls.clear()
        got = snap.dense(q, 10)
        assert len(calls) == 1  # one centroid scan for all three segments
        exact = snap.dense(q, 10, exact=True)
        assert calls[-1] == 20 and len(exact) == 10  # exact: every list
        stored = reader.store.vectors(snap.vec_ids[list(exact)]) @ q
        np.testing.assert_allclose(list(exact.values()), stored, atol=0.02)  # the store's vectors, 8-bit coded
        assert len(set(exact_top(reader, q)) & set(snap.vec_ids[list(exact)].tolist())) >= 8
        hits += len(set(got) & set(exact))
    assert hits / (10 * len(queries)) >= 0.9


def test_narrow_filters_and_lexical_candidates_are_scored_row_by_row(tmp_path, small_ivf, monkeypatch):
    rng, centres = small_ivf
    archive = Archive(tmp_path / "index")
    write(archive, *(clustered_page(k, rng, centres, date=f"2021-01-{1 + k:02d}") for k in range(10)))
    snap = archive.snapshot()
    q = clustered_page(77, rng, centres, n=1)[2][0]
    day = snap.where("2021-01-03", "2021-01-03", None)
    monkeypatch.setattr(index_mod.Coarse, "assign", None)  # no list scan at all
    got = snap.dense(q, 10, day)
    every = np.flatnonzero(day)
    scores = snap.dense_scores(q, every.tolist())
    assert list(got) == every[np.argsort(-scores, kind="stable")[:10]].tolist()  # all 25 of the day scored
    assert len(set(snap.vec_ids[list(got)].tolist()) & set(exact_top(archive, q, 10, day))) >= 8
    # lexical-only candidates: their scores equal what a search of their rows gives
    found = snap.dense_top(q, 10, snap.where("2021-01-01", "2021-01-05", None))
    np.testing.assert_allclose(snap.dense_of(q, list(found)), list(found.values()), rtol=1e-5, atol=1e-5)


def test_a_rebuild_trains_a_new_quantizer_and_drops_the_old(tmp_path, small_ivf):
    rng, centres = small_ivf
    archive = Archive(tmp_path / "index")
    write(archive, *(clustered_page(k, rng, centres) for k in range(12)))
    (old,) = archive.search.base.glob("coarse-*")
    q = clustered_page(90, rng, centres, n=1)[2][0]
    before = exact_top(archive, q)
    with archive.writer():
        archive.refresh_derived(rebuild=True)
    snap = Archive(tmp_path / "index").snapshot()
    (new,) = {s.coarse.name for s in snap.segments}
    assert new != old.name.removeprefix("coarse-")
    assert len(set(snap.vec_ids[list(snap.dense(q, 10, exact=True))].tolist()) & set(before)) >= 8
    for k in range(12, 14):  # the generations a server may still read go; so does the old quantizer
        write(archive, clustered_page(k, rng, centres))
    assert [p.name for p in archive.search.base.glob("coarse-*")] == [f"coarse-{new}"]


def test_holds_reads_the_postings_of_one_passage(tmp_path):
    archive = Archive(tmp_path / "index")
    write(archive, *(make_page(k) for k in range(3)))
    write(archive, make_page(3))
    snap = archive.snapshot()
    for vec_id in (1, 7, 16):
        pos = int(snap.positions([vec_id])[0])
        terms = set(WORDS[:12]) | {"不存在的词"}
        assert snap.holds(vec_id, terms) == {t for t in terms if snap.lexical.scores([t])[pos] > 0}
        assert snap.holds(vec_id, terms)  # every passage holds five of the words


def test_a_writer_that_clears_the_store_takes_fresh_term_ids(tmp_path):
    archive = Archive(tmp_path / "index")
    with archive.writer():
        archive.write_pages([make_page(k) for k in range(3)])
        archive.clear()
        archive.write_pages([make_page(k) for k in range(5, 7)])
        archive.refresh_derived()
    fresh = Archive(tmp_path / "fresh")
    write(fresh, *(make_page(k) for k in range(5, 7)))
    tokens = make_page(6)[3][2]
    assert results(archive, make_page(6)[2][2], tokens) == results(fresh, make_page(6)[2][2], tokens)


def ranked(archive: Archive, q: np.ndarray, tokens: list[str]) -> tuple[list, dict]:
    """Dense top 10 (scored from the store's vectors) and every live passage's BM25 score, by passage id."""
    snap = archive.snapshot()
    dense = snap.dense_top(q, 10)
    ids = snap.vec_ids[snap.live_mask()].tolist()
    rows = archive.store.passages_by_vec_id(ids + list(dense))
    bm25 = snap.lexical_search(tokens).scores_of(ids)
    return ([(rows[v].id, round(s, 5)) for v, s in dense.items()],
            {rows[v].id: round(float(s), 4) for v, s in zip(ids, bm25.tolist())})


def test_a_long_write_merges_each_tier_as_it_fills_and_matches_a_fresh_build(tmp_path, monkeypatch):
    monkeypatch.setattr(index_mod, "FLUSH_ROWS", 20)
    monkeypatch.setattr(index_mod, "MAX_SEGMENT_ROWS", 100)  # room for MERGE_AT flushes, as 65,536 for 15,000s
    merges: list[int] = []  # live rows each merge holds
    real = index_mod.FaissIndex._merge
    monkeypatch.setattr(index_mod.FaissIndex, "_merge",
                        lambda self, group, alive: merges.append(sum(int(alive[n].sum()) for n in group))
                        or real(self, group, alive))
    archive = Archive(tmp_path / "index")
    with archive.writer():
        for k in range(60):  # 300 passages: 15 flushes of 20
            archive.write_pages([make_page(k)])
            if k == 6:  # page 1 (in the first flush) replaced before that flush is merged
                archive.write_pages([make_page(1, n=2)])
            unpublished = archive.search._unpublished
            live = archive.store.vec_ids()
            tiers = Counter(int(math.log(max(np.isin(index_mod.segment_ids(archive.search.base, n), live).sum(), 1), 4))
                            for n in unpublished)
            assert max(tiers.values(), default=0) < index_mod.MERGE_AT  # flushed segments never pile up
            assert {p.name for p in archive.search.base.glob("seg-*")} == {f"seg-{n}" for n in unpublished}
        during = len(merges)
        archive.refresh_derived()
    assert during >= 3 and max(merges) <= 100  # merged while writing; no merge holds more than a segment
    assert len(merges) - during <= 1  # the final refresh is left one tier's merge at most
    assert archive.snapshot().size == 297
    q, tokens = make_page(99)[2][0], make_page(40)[3][1]
    got = ranked(archive, q, tokens)
    with archive.writer():
        archive.refresh_derived(rebuild=True)
    assert ranked(Archive(tmp_path / "index"), q, tokens) == got
    assert got[0] and sum(s > 0 for s in got[1].values()) >= 5
    assert not any(pid.startswith("p0001:") and int(pid.split(":")[1]) >= 2 for pid in got[1])


def test_merging_postings_holds_one_block_beside_the_output(monkeypatch):
    import tracemalloc

    monkeypatch.setattr(Postings, "MERGE_BLOCK", 50_000)  # parts of ~190,000 postings
    rng = np.random.default_rng(5)
    docs = [rng.integers(0, 5000, int(rng.integers(20, 120))) for _ in range(4 * 3000)]
    alive = [None if i % 2 else rng.random(3000) < 0.8 for i in range(4)]
    parts = [(Postings.from_docs(docs[i * 3000:(i + 1) * 3000]), alive[i]) for i in range(4)]
    kept = [d for i in range(4) for j, d in enumerate(docs[i * 3000:(i + 1) * 3000])
            if alive[i] is None or alive[i][j]]
    expected = Postings.from_docs(kept)
    tracemalloc.start()
    try:
        merged = Postings.merge(parts)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    for name in Postings.FILES:
        got, want = getattr(merged, name), getattr(expected, name)
        assert got.dtype == want.dtype and np.array_equal(got, want), name
    # the output is 3 bytes a posting, a block's work ~40 bytes a posting of the block; concatenating
    # and sorting all postings at once took over 60 bytes a posting
    assert peak < 3 * len(merged.rows) + 60 * Postings.MERGE_BLOCK, peak / len(merged.rows)


def test_vectors_coded_a_chunk_at_a_time_are_faiss_train_and_add_exactly():
    import faiss

    from qa.store import StoredVectors, quantize

    rng = np.random.default_rng(9)
    n = 2 * index_mod.BUILD_CHUNK + 123  # three chunks
    v = rng.normal(size=(12, DIM))[rng.integers(0, 12, n)] + 0.4 * rng.normal(size=(n, DIM))
    stored = StoredVectors.from_blobs(quantize(v / np.linalg.norm(v, axis=1, keepdims=True)))
    dense = np.asarray(stored)
    coarse = index_mod.Coarse(name="t", centroids=dense[:40].copy(), nprobe=8)
    for c in (None, coarse):
        ours, _ = index_mod._vector_index(stored, c)
        if c is None:
            ref = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        else:
            ref = faiss.IndexIVFScalarQuantizer(c.index, DIM, c.nlist, faiss.ScalarQuantizer.QT_8bit,
                                                faiss.METRIC_INNER_PRODUCT)
        ref.train(dense)
        ref.add(dense)
        assert np.array_equal(faiss.vector_to_array(ours.sq.trained), faiss.vector_to_array(ref.sq.trained))
        if c is not None:
            ref.make_direct_map(True)
        rows = np.arange(n)
        assert np.array_equal(ours.reconstruct_batch(rows), ref.reconstruct_batch(rows))
