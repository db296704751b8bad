"""Ingest as a pipeline and the embedder under concurrency: pages prepared ahead in a bounded
queue, embedded across pages in large batches, written in order; concurrent embedding calls
share model calls; device choice fails clearly."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from qa import ingest
from qa.embed import DeviceNotAvailableError, Embedder, PassageTokenizer, load_embedder, resolve_device
from qa.index import Archive
from qa.ingest import ingest_paths
from qa.store import Store

from conftest import SEEDS


class CountingEncoder:
    """Wraps the real encoder and records the size of every model call."""

    def __init__(self, inner):
        self.inner = inner
        self.calls: list[int] = []
        for name in ("backend", "device", "batch_size", "dim", "max_seq_length", "prompts"):
            setattr(self, name, getattr(inner, name))

    def encode(self, texts, batch_size):
        self.calls.append(len(texts))
        return self.inner.encode(texts, batch_size)


@pytest.fixture(scope="module")
def emb():
    return load_embedder()


def test_pages_are_embedded_across_page_boundaries_and_written_in_order(tmp_path, emb, monkeypatch):
    spy = Embedder(CountingEncoder(emb.encoder), emb.model_id, emb.path)
    monkeypatch.setattr(ingest, "load_ingest_embedder", lambda name=None: spy)
    pages = tmp_path / "pages"
    pages.mkdir()
    seeds = sorted(SEEDS.glob("*.txt"))[:2]
    for f in seeds:
        (pages / f.name).write_bytes(f.read_bytes())
    (pages / "000_z.txt").write_bytes(b"\xff\xfe\x00broken")  # fails to parse, between the two
    written = []  # one list per store transaction
    real_write = Archive.write_pages
    monkeypatch.setattr(Archive, "write_pages",
                        lambda self, batch: (written.append([b[0].issue.source for b in batch]), real_write(self, batch))[1])
    report = ingest_paths([pages], tmp_path / "index", progress=False)
    assert report.pages == 2 and report.passages >= 30
    assert [f for f, _ in report.failures] == [str(pages / "000_z.txt")]
    # both pages' passages in one model call (a batch holds up to 256 passages), not one per page
    assert spy.encoder.calls == [report.passages]
    # in order, in one transaction (one embedding batch); names below the pages root, the index's parent
    assert written == [[f"pages/{f.name}" for f in seeds]]
    store = Store.open(tmp_path / "index")
    assert len(store.issues()) == 2
    assert store.manifest()["embed_backends"] == emb.backend


def test_stored_vectors_equal_a_direct_embedding(seed_index, emb):
    store = Store.open(seed_index)
    texts = {p.id: t for f in sorted(SEEDS.glob("*.txt")) for p, t in _prepared(f)}
    rows = store.passages_by_id(list(texts))
    assert len(rows) == len(texts)  # every passage of the seeds is stored under the same id
    some = sorted(rows.values(), key=lambda r: r.vec_id)[:20]
    stored = store.vectors(np.array([r.vec_id for r in some]))
    want = emb.embed_passages([texts[r.id] for r in some])
    # int8 activations are scaled per model call, so a vector depends a little on its batch mates
    assert (stored * want).sum(1).min() >= 0.99


def _prepared(path):
    from qa.parse import parse_page

    prep = ingest.prepare_page(path, parse_page(path, path.name))
    return zip(prep.passages, prep.texts)


def test_the_reader_never_runs_more_than_the_queue_ahead(tmp_path, emb, monkeypatch):
    pages = tmp_path / "pages"
    pages.mkdir()
    for i in range(12):
        (pages / f"p{i:02d}.txt").write_text(f"第{i}版\n\n标题{i}\n\n" + "衡阳日报报道了本地新闻。" * 20, encoding="utf-8")
    monkeypatch.setitem(ingest.QUEUE_PAGES, emb.device, 2)
    monkeypatch.setitem(ingest.EMBED_BATCH_TEXTS, emb.device, 1)  # one page per embedding call
    parsed, ahead = [], []
    real_prepare, real_write = ingest.prepare_page, ingest._write_group

    def prepare(path, page):
        parsed.append(path)
        return real_prepare(path, page)

    def write(archive, group, report):
        ahead.append(len(parsed) - (report.pages + len(report.failures) + report.unchanged))
        return real_write(archive, group, report)

    monkeypatch.setattr(ingest, "prepare_page", prepare)
    monkeypatch.setattr(ingest, "_write_group", write)
    report = ingest_paths([pages], tmp_path / "index", progress=False)
    assert report.pages == 12
    # queue (2) + the batch being embedded + the one handed back + the one being put
    assert max(ahead) <= 2 + 3, ahead


def test_reader_processes_tokenize_for_the_model_and_give_the_same_vectors(tmp_path, emb, monkeypatch):
    """With reader processes (machines with many cores), the model's tokens are made there and
    the embedder gets ids; the stored vectors are those of the in-thread path."""
    pages = tmp_path / "pages"
    pages.mkdir()
    for f in sorted(SEEDS.glob("*.txt"))[:2]:
        (pages / f.name).write_bytes(f.read_bytes())
    monkeypatch.setattr(ingest, "load_ingest_embedder", lambda name=None: emb)  # fp32: batch-invariant
    by_ids = []
    real = Embedder.embed_passage_ids
    monkeypatch.setattr(Embedder, "embed_passage_ids", lambda self, ids, *a: (by_ids.append(len(ids)), real(self, ids, *a))[1])
    vectors = {}
    for processes in (0, 1):
        monkeypatch.setattr(ingest, "reader_processes", lambda n=processes: n)
        report = ingest_paths([pages], tmp_path / f"index{processes}", progress=False)
        assert report.pages == 2 and not report.failures
        store = Store.open(tmp_path / f"index{processes}")
        rows = store.passages_by_id([p.id for f in sorted(pages.glob("*.txt")) for p, _ in _prepared(f)])
        vectors[processes] = store.vectors(np.array([rows[k].vec_id for k in sorted(rows)]))
    assert by_ids == [report.passages]  # only the run with a reader process embedded ids
    a, b = (v / np.linalg.norm(v, axis=1, keepdims=True) for v in (vectors[0], vectors[1]))  # stored as int8 codes
    assert (a * b).sum(1).min() >= 0.9999


class LoadLoggingTokenizer(PassageTokenizer):
    """A passage tokenizer that appends its process id to `log` each time it loads the model's
    tokenizer (in whichever process it runs)."""

    def __init__(self, folder, prefix, max_length, log):
        super().__init__(folder, prefix, max_length)
        self.log = log

    def __call__(self, texts):
        if self._tokenizer is None:
            with open(self.log, "a") as fh:
                fh.write(f"{os.getpid()}\n")
        return super().__call__(texts)


class _NothingStored:
    def checksum_of(self, source):
        return None


def test_a_reader_process_loads_the_models_tokenizer_once_for_all_its_pages(tmp_path, emb):
    pages = tmp_path / "pages"
    pages.mkdir()
    for i in range(5):
        (pages / f"p{i}.txt").write_text(f"标题{i}\n\n" + "衡阳日报报道了本地新闻。" * 30, encoding="utf-8")
    log = tmp_path / "loads.log"
    tok = emb.passage_tokenizer()
    tok = LoadLoggingTokenizer(tok.folder, tok.prefix, tok.max_length, log)
    files = [(p, p.name) for p in sorted(pages.glob("*.txt"))]
    items = list(ingest._prepared_in_order(files, _NothingStored(), 1, tok))
    assert [i.path for i in items] == [p for p, _ in files]  # in order
    assert all(len(i.input_ids) == len(i.texts) > 0 for i in items)
    loads = log.read_text().split()
    assert len(loads) == 1 and int(loads[0]) != os.getpid()  # once, in the reader process


def test_prepared_tokens_are_the_passages_own_bm25_tokens():
    from qa.lexical import passage_tokens
    from qa.parse import parse_page

    for path in sorted(SEEDS.glob("*.txt")):
        prep = ingest.prepare_page(path, parse_page(path, path.name))
        assert prep.tokens == [passage_tokens(p.headline, p.text) for p in prep.passages]  # headline tokens reused


def test_concurrent_queries_share_model_calls_and_get_their_own_rows(emb):
    spy = Embedder(CountingEncoder(emb.encoder), emb.model_id, emb.path)
    spy.batcher.window_s = 0.05  # wide enough that the threads below always meet
    questions = [f"衡阳第{i}号文件是什么？" for i in range(24)]
    want = emb.embed_queries(questions)
    got: dict[int, np.ndarray] = {}
    start = threading.Barrier(len(questions))

    def ask(i):
        start.wait()
        got[i] = spy.embed_query(questions[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(spy.encoder.calls) < len(questions) and sum(spy.encoder.calls) == len(questions)
    for i in range(len(questions)):
        np.testing.assert_allclose(got[i], want[i], atol=1e-4)


def test_a_failing_model_call_fails_its_callers_and_the_embedder_lives_on(emb):
    class Flaky(CountingEncoder):
        def encode(self, texts, batch_size):
            if any("boom" in t for t in texts):
                raise RuntimeError("model failed")
            return super().encode(texts, batch_size)

    spy = Embedder(Flaky(emb.encoder), emb.model_id, emb.path)
    with pytest.raises(RuntimeError, match="model failed"):
        spy.embed_query("boom")
    assert spy.embed_query("衡阳").shape == (emb.dim,)


def test_device_choice():
    import torch

    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceNotAvailableError, match="QA_DEVICE=cuda.*no usable CUDA"):
            resolve_device("cuda")
