"""ingest: files on disk → parse → chunk → embed + tokenize → index, one page at a time.

Usage::

    report = ingest_paths([Path("seeds")], index_dir=Path("index"))
    report.pages, report.passages, report.failures
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from qa.chunk import Passage, chunk_page
from qa.embed import Embedder, load_embedder
from qa.index import Archive
from qa.lexical import passage_tokens
from qa.parse import Page, PageError, parse_page
from qa.store import page_name

PAGE_SUFFIXES = {".txt", ".text", ".md"}


@dataclass
class IngestReport:
    pages: int = 0  # pages written (new or changed)
    unchanged: int = 0
    articles: int = 0
    passages: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    seconds: float = 0.0
    embed_seconds: float = 0.0


def discover(paths: list[Path], root: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Page files under the given files/folders, each with its name in the archive (`page_name`:
    its path below the archive's pages root, so one file keeps one name whichever folder or
    file was given), each file once; and the paths that do not exist."""
    files: dict[str, Path] = {}
    missing: list[tuple[str, str]] = []
    for path in paths:
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*"))
                     if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES and not p.name.startswith(".")]
        elif path.is_file():
            found = [path]
        else:
            missing.append((str(path), "no such file or folder"))
            continue
        for p in found:
            files.setdefault(page_name(p, root), p)
    return [(p, name) for name, p in files.items()], missing


def skipped_files(paths: list[Path]) -> list[str]:
    """Files under the given folders that ingest passes over for their type (not one of
    PAGE_SUFFIXES), so that they can be reported; hidden files and `.meta.json` sidecars aside."""
    return [str(p) for path in paths if path.is_dir() for p in sorted(path.rglob("*"))
            if p.is_file() and p.suffix.lower() not in PAGE_SUFFIXES and not p.name.startswith(".")
            and not p.name.endswith(".meta.json")]


def embedding_text(page: Page, passage: Passage) -> str:
    """What is embedded: a short header (date · headline) then the passage text."""
    header = " · ".join(x for x in (page.issue.date, passage.headline) if x)
    return f"{header}\n{passage.text}" if header else passage.text


def lexical_tokens(passage: Passage) -> list[str]:
    """BM25 tokens: the headline's tokens (a light field weight) plus the passage's own."""
    return passage_tokens(passage.headline, passage.text)


def prepare_page(page: Page, embedder: Embedder, report: IngestReport | None = None):
    """Chunk, embed and tokenize one parsed page (timing the embedding into `report`)."""
    passages = chunk_page(page)
    texts = [embedding_text(page, p) for p in passages]
    t0 = time.perf_counter()
    vectors = embedder.embed_passages(texts)
    if report is not None:
        report.embed_seconds += time.perf_counter() - t0
    tokens = [lexical_tokens(p) for p in passages]
    return passages, vectors, tokens


def ingest_paths(
    paths: list[Path],
    index_dir: Path,
    *,
    rebuild: bool = False,
    embed_model: str | None = None,
    faiss_factory: str = "Flat",
    progress: bool = True,
) -> IngestReport:
    """Ingest page files and folders into the index; failures are reported, the rest goes in."""
    t0 = time.perf_counter()
    report = IngestReport()
    archive = Archive(index_dir, faiss_factory=faiss_factory)
    files, report.failures = discover(paths, archive.store.pages_root)
    embedder = load_embedder(embed_model)
    with archive.writer():
        if rebuild:
            archive.clear()
        archive.store.check_embedder(embedder.model_id, embedder.dim)
        for path, source in tqdm(files, desc="ingest", unit="page", disable=not progress):
            try:
                page = parse_page(path, source)
                archive.store.check_identity(page.issue)
            except PageError as exc:
                report.failures.append((str(path), str(exc)))
                continue
            if archive.store.checksum_of(page.issue.source) == page.issue.checksum:
                report.unchanged += 1
                continue
            passages, vectors, tokens = prepare_page(page, embedder, report)
            archive.write_page(page, passages, vectors, tokens)
            report.pages += 1
            report.articles += len(page.articles)
            report.passages += len(passages)
        archive.refresh_derived()
    report.seconds = time.perf_counter() - t0
    return report


def remove_sources(sources: list[str], index_dir: Path, faiss_factory: str = "Flat") -> list[str]:
    """Take pages out of the index by source name as `qa issues` lists it, issue id, or path to
    the page file; returns those not found."""
    archive = Archive(index_dir, faiss_factory=faiss_factory)
    missing = []
    with archive.writer():
        for source in sources:
            issue_id = archive.store.resolve_page(source)
            if issue_id is None or not archive.remove_page(issue_id):
                missing.append(source)
        archive.refresh_derived()
    return missing


def reindex(index_dir: Path) -> int:
    """Rebuild every search file from the store (vectors as stored, tokens re-derived from the
    text; nothing is re-embedded). Returns the number of passages indexed."""
    archive = Archive(index_dir)
    with archive.writer():
        archive.refresh_derived(rebuild=True)
    return archive.store.counts()["passages"]
