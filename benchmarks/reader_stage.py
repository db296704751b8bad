"""Ingest's reader stage alone: what one reader process costs per page and passage (parse, chunk,
jieba, the model's tokenizer), how many bytes a prepared page takes to pickle (by part) and what
the parent pays to receive it, and the pages/s the reader pool delivers to the parent with k
processes. No model, no store writes.

    python benchmarks/reader_stage.py --pages 200 --readers 0,1,2
    python benchmarks/reader_stage.py --folder /tmp/pages --readers 2

Prints one JSON. CPU figures are process/thread CPU time (time.process_time, thread_time), so they
hold on a busy machine; wall-clock rates do not.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


class _NoStore:
    """What the reader asks of the store: nothing stored yet."""

    def checksum_of(self, source: str):
        return None


def one_process(files, tokenizer) -> dict:
    """The reader's work in this process: CPU per page and passage, pickled bytes by part."""
    from qa import ingest

    cpu = {"prepare": 0.0, "pickle": 0.0, "unpickle": 0.0}
    sizes: dict[str, int] = {}
    pages = passages = 0
    for path, source in files:
        t0 = time.process_time()
        item = ingest._prepare_file(path, source, None, tokenizer)
        t1 = time.process_time()
        blob = pickle.dumps(item, pickle.HIGHEST_PROTOCOL)
        t2 = time.process_time()
        pickle.loads(blob)
        cpu["prepare"] += t1 - t0
        cpu["pickle"] += t2 - t1
        cpu["unpickle"] += time.process_time() - t2
        if not isinstance(item, ingest.PreparedPage):
            continue
        pages += 1
        passages += len(item.texts)
        sizes["total"] = sizes.get("total", 0) + len(blob)
        for part in ("page", "passages", "texts", "tokens", "input_ids", "payload"):
            if hasattr(item, part):
                sizes[part] = sizes.get(part, 0) + len(pickle.dumps(getattr(item, part), pickle.HIGHEST_PROTOCOL))
    return {"pages": pages, "passages": passages,
            "cpu_ms_per_passage": {k: round(1000 * v / passages, 3) for k, v in cpu.items()},
            "pickled_bytes_per_page": {k: round(v / pages) for k, v in sizes.items()}}


def pool(files, tokenizer, processes: int) -> dict:
    """Pages/s the reader pool delivers in order (`ingest._prepared_in_order`), start included
    (spawn, imports, jieba's dictionary and the tokenizer loaded once per process); the readers'
    CPU per passage (their rusage once the pool has shut down) and the parent's, which receives
    and unpickles every page."""
    import resource

    from qa import ingest

    def children_cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_CHILDREN)
        return r.ru_utime + r.ru_stime

    t0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
    pages = passages = 0
    first = None
    for item in ingest._prepared_in_order(files, _NoStore(), processes, tokenizer):
        first = first or time.perf_counter() - t0
        if isinstance(item, ingest.PreparedPage):
            pages += 1
            passages += len(item.texts)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"processes": processes, "pages": pages, "passages": passages, "wall_s": round(wall, 2),
            "first_page_s": round(first or 0, 2), "pages_per_s": round(pages / wall, 1),
            "passages_per_s": round(passages / wall, 1),
            "readers_cpu_ms_per_passage": round(1000 * (children_cpu() - k0) / passages, 3) if processes else None,
            "parent_cpu_ms_per_passage": round(1000 * cpu / passages, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=200, help="news pages to make (ignored with --folder)")
    ap.add_argument("--folder", type=Path, help="page files to read instead of made ones")
    ap.add_argument("--readers", default="0,1,2", help="reader process counts to try (0: in this process)")
    args = ap.parse_args()
    from qa.embed import DEFAULT_MODEL, PassageTokenizer, resolve_model
    from qa.ingest import discover

    model = resolve_model(DEFAULT_MODEL)
    tokenizer = PassageTokenizer(model, "passage: ", 512)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder
        if folder is None:
            from newspages import news_articles, write_pages

            folder = Path(tmp) / "pages"
            write_pages(folder, news_articles(), args.pages)
        files, _ = discover([folder], folder)
        out = {"files": len(files), "one_process": one_process(files, tokenizer)}
        out["pool"] = [pool(files, tokenizer if k else None, k) for k in map(int, args.readers.split(","))]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
