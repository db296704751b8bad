"""ingest: files on disk → parse → chunk + tokenize (a thread ahead) → embed (batches across
pages) → index (one transaction per embedding batch, a savepoint per page, in order).

Usage::

    report = ingest_paths([Path("seeds")], index_dir=Path("index"))
    report.pages, report.passages, report.failures
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm import tqdm

from qa.chunk import Passage, chunk_page
from qa.embed import Embedder, PassageTokenizer, load_ingest_embedder
from qa.index import Archive
from qa.lexical import passage_tokens
from qa.parse import Page, PageError, is_sidecar, parse_page, sidecar_of
from qa.store import SameContentsError, page_name

PAGE_SUFFIXES = {".txt", ".text", ".md"}
QUEUE_PAGES = {"cpu": 16, "cuda": 256}  # prepared pages waiting for the embedder: bounds memory, keeps the model fed
EMBED_BATCH_TEXTS = {"cpu": 256, "cuda": 4096}  # passages per embedding call, across pages
READ_AHEAD = 4  # pages in flight per reader process


@dataclass
class IngestReport:
    pages: int = 0  # pages written (new or changed)
    unchanged: int = 0
    articles: int = 0
    passages: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason): not read as pages
    seconds: float = 0.0
    embed_seconds: float = 0.0  # in model calls (overlaps the rest)
    write_seconds: float = 0.0  # storing pages (the writer's own time)
    wait_seconds: float = 0.0  # the writer waiting for embedded pages
    index_seconds: float = 0.0  # the final search-file update (`refresh_derived`)


def discover(paths: list[Path], root: Path) -> tuple[list[tuple[Path, str]], list[tuple[str, str]]]:
    """Page files under the given files/folders, each with its name in the archive (`page_name`:
    its path below the archive's pages root, so one file keeps one name whichever folder or
    file was given), each file once; and the paths that do not exist."""
    files: dict[str, Path] = {}
    missing: list[tuple[str, str]] = []
    for path in paths:
        if not (path.is_dir() or path.is_file()):
            missing.append((str(path), "no such file or folder"))
            continue
        for p in page_files(path):
            files.setdefault(page_name(p, root), p)
    return [(p, name) for name, p in files.items()], missing


def page_files(path: Path) -> list[Path]:
    """The pages `path` gives: a folder's files ending one of PAGE_SUFFIXES (hidden files aside),
    or the file itself whatever its extension, unless it is a sidecar (`….meta.json`: as the
    shell's `pages/*` names them beside their pages).

    Usage: ``page_files(Path("pages"))  # [pages/01.txt, pages/2021/02.txt, …]``
    """
    if path.is_dir():
        return [p for p in sorted(path.rglob("*"))
                if p.is_file() and p.suffix.lower() in PAGE_SUFFIXES and not p.name.startswith(".")]
    return [path] if path.is_file() and not is_sidecar(path) else []


NOT_A_PAGE = "not a page: pages end .txt, .text or .md"
SIDECAR = "a sidecar: metadata read with its page, not a page itself"


def skipped_files(paths: list[Path]) -> list[tuple[str, str]]:
    """Files given that ingest does not read as pages, with the reason, so that they can be
    reported: in folders, files of other types than PAGE_SUFFIXES (hidden files and sidecars
    aside); named, a sidecar whose page is not among those given (with its page, it is simply
    that page's metadata).

    Usage: ``skipped_files([Path("pages")])  # [("pages/logo.png", NOT_A_PAGE)]``
    """
    skipped = {str(p): NOT_A_PAGE for path in paths if path.is_dir() for p in sorted(path.rglob("*"))
               if p.is_file() and p.suffix.lower() not in PAGE_SUFFIXES and not p.name.startswith(".")
               and not is_sidecar(p)}
    named = [p for p in paths if p.is_file() and is_sidecar(p)]
    if named:  # only then: finding the sidecars in use looks beside every page
        used = {sidecar_of(p) for path in paths for p in page_files(path)}
        used = {p.resolve() for p in used if p is not None}
        skipped.update((str(p), SIDECAR) for p in named if p.resolve() not in used)
    return list(skipped.items())


def embedding_text(page: Page, passage: Passage) -> str:
    """What is embedded: a short header (date · headline) then the passage text."""
    header = " · ".join(x for x in (page.issue.date, passage.headline) if x)
    return f"{header}\n{passage.text}" if header else passage.text


def lexical_tokens(passage: Passage, headlines: dict[str, list[str]] | None = None) -> list[str]:
    """BM25 tokens: the headline's tokens (a light field weight) plus the passage's own, as
    `passage_tokens` makes them; `headlines` keeps each headline's tokens for the passages after
    the first of its article (same tokens, jieba run once)."""
    if headlines is None or not passage.headline:
        return passage_tokens(passage.headline, passage.text)
    head = headlines.get(passage.headline)
    if head is None:
        head = headlines[passage.headline] = passage_tokens(passage.headline, "")
    return head + passage_tokens(None, passage.text)


@dataclass
class PreparedPage:
    """A parsed page, chunked and tokenized: everything but its vectors."""

    path: Path
    page: Page
    passages: list[Passage]
    texts: list[str]  # what is embedded, one per passage
    tokens: list[list[str]]  # BM25 tokens, one list per passage
    input_ids: list | None = None  # the model's tokens of `texts`, when the reader made them


@dataclass
class SkippedPage:
    """A page not written: unreadable (`reason` says why) or unchanged (`reason` is None)."""

    path: Path
    reason: str | None = None


def prepare_page(path: Path, page: Page) -> PreparedPage:
    """Chunk and tokenize one parsed page (the work that runs ahead of the embedder).

    Usage: ``prep = prepare_page(path, parse_page(path, "01.txt")); len(prep.texts)``
    """
    passages = chunk_page(page)
    headlines: dict[str, list[str]] = {}
    return PreparedPage(path, page, passages, [embedding_text(page, p) for p in passages],
                        [lexical_tokens(p, headlines) for p in passages])


def _prepare_file(path: Path, source: str, stored_checksum: str | None,
                  tokenizer: PassageTokenizer | None = None) -> PreparedPage | SkippedPage:
    """Parse, then chunk and tokenize (BM25, and for the model when `tokenizer` is given) unless
    the stored version has the same checksum."""
    try:
        page = parse_page(path, source)
    except PageError as exc:
        return SkippedPage(path, str(exc))
    if page.issue.checksum == stored_checksum:
        return SkippedPage(path)
    prepared = prepare_page(path, page)
    if tokenizer is not None:
        prepared.input_ids = tokenizer(prepared.texts)
    return prepared


def reader_processes() -> int:
    """Processes that prepare pages: none on a small machine (one thread is enough to stay ahead
    of a CPU model), several where a GPU embeds faster than one core can tokenize: a reader
    spends ~2.5 ms of CPU per passage on a busy 2-core machine (jieba ~1.5, the model's tokenizer
    ~0.7, parse and chunk ~0.3), so 2,000 passages/s need 5+ cores of it. Three cores are
    left to the writer, the embedder's thread and the collector."""
    cores = os.cpu_count() or 1
    return 0 if cores <= 4 else min(12, cores - 3)


_reader_tokenizer: PassageTokenizer | None = None  # in a reader process: its own, loaded once


def _start_reader(tokenizer: PassageTokenizer | None) -> None:
    """A reader process's initializer: keep the tokenizer (loaded at its first page) for every
    page it prepares. Sent with each task instead, it would arrive unloaded every time and read
    the model's tokenizer file (~17 MB) again for each page."""
    global _reader_tokenizer
    _reader_tokenizer = tokenizer


def _prepare_in_reader(path: Path, source: str, stored_checksum: str | None) -> PreparedPage | SkippedPage:
    return _prepare_file(path, source, stored_checksum, _reader_tokenizer)


def _prepared_in_order(files: list[tuple[Path, str]], store, processes: int,
                       tokenizer: PassageTokenizer | None = None) -> Iterator[PreparedPage | SkippedPage]:
    """Prepared pages (or skips) in file order: in this thread, or by `processes` reader
    processes with `READ_AHEAD` pages each in flight, so that a long page at the head of the
    line does not leave the others idle."""
    if processes <= 0:
        for path, source in files:
            yield _prepare_file(path, source, store.checksum_of(source))
        return
    # spawn, not fork: the parent holds model threads (and maybe CUDA) that a fork would copy
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_reader, initargs=(tokenizer,))
    window: deque = deque()
    try:
        for path, source in files:
            window.append(pool.submit(_prepare_in_reader, path, source, store.checksum_of(source)))
            if len(window) >= READ_AHEAD * processes:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()
    finally:
        pool.shutdown(cancel_futures=True)


def _read_pages(files: list[tuple[Path, str]], store, out: queue.Queue, stop: threading.Event,
                processes: int, tokenizer: PassageTokenizer | None = None) -> None:
    """Producer thread: prepared pages (or skips) into `out` in file order, then None (or the
    unexpected exception). Blocks while `out` is full, so memory stays flat."""

    def put(item) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    try:
        for item in _prepared_in_order(files, store, processes, tokenizer):
            if not put(item):
                return
        put(None)
    except BaseException as exc:  # handed to the consumer, which raises it
        put(exc)
    finally:
        store.close()  # this thread's connection


def _batches(items: queue.Queue, max_texts: int) -> Iterator[list[PreparedPage | SkippedPage]]:
    """Consecutive items from the producer, cut when their passages reach a cap that starts at an
    eighth of `max_texts` and doubles up to it: the model starts on the first pages while the
    readers are still filling the queue (on a GPU a first batch of 4,096 passages idled it for
    over a second)."""
    batch, n, cap = [], 0, max(1, max_texts // 8)
    while (item := items.get()) is not None:
        if isinstance(item, BaseException):
            raise item
        batch.append(item)
        n += len(item.texts) if isinstance(item, PreparedPage) else 0
        if n >= cap:
            yield batch
            batch, n, cap = [], 0, min(2 * cap, max_texts)
    if batch:
        yield batch


def _embedded(batches: Iterator[list], embedder: Embedder, report: IngestReport):
    """Each batch as a list of (item, vectors), in order; a batch is embedded in one call (sorted
    by length inside), the next batch while the caller writes the previous one."""

    def embed(batch: list) -> list:
        pages = [b for b in batch if isinstance(b, PreparedPage)]
        t0 = time.perf_counter()
        if pages and all(p.input_ids is not None for p in pages):  # tokenized by the readers
            vectors = embedder.embed_passage_ids([ids for p in pages for ids in p.input_ids])
        else:
            vectors = embedder.embed_passages([t for p in pages for t in p.texts])
        report.embed_seconds += time.perf_counter() - t0
        bounds = np.cumsum([0] + [len(p.texts) for p in pages])
        rows = {id(p): vectors[bounds[i]:bounds[i + 1]] for i, p in enumerate(pages)}
        return [(b, rows.get(id(b))) for b in batch]

    with ThreadPoolExecutor(1, thread_name_prefix="ingest-embed") as pool:
        in_flight = None
        for batch in batches:
            future = pool.submit(embed, batch)
            if in_flight is not None:
                yield in_flight.result()
            in_flight = future
        if in_flight is not None:
            yield in_flight.result()


def _timed(groups: Iterator, report: IngestReport) -> Iterator:
    """`groups` as given, adding the time spent waiting for each to `report.wait_seconds` and the
    time the consumer spent between them (writing) to `report.write_seconds`."""
    t = time.perf_counter()
    for group in groups:
        t1 = time.perf_counter()
        report.wait_seconds += t1 - t
        yield group
        t = time.perf_counter()
        report.write_seconds += t - t1


def record_backend(store, backend: str, reset: bool = False) -> None:
    """List `backend` in the manifest's ``embed_backends``. fp32 and int8 vectors of one model
    agree at cosine ≥ 0.99, so switching needs no rebuild (`check_embedder` compares the model
    only), but which backends wrote an index stays on record."""
    seen = [] if reset else [b for b in store.manifest().get("embed_backends", "").split(",") if b]
    if backend not in seen:
        with store.transaction() as tx:
            store.set_manifest(tx, "embed_backends", ",".join([*seen, backend]))


def ingest_paths(
    paths: list[Path],
    index_dir: Path,
    *,
    rebuild: bool = False,
    embed_model: str | None = None,
    progress: bool = True,
) -> IngestReport:
    """Ingest page files and folders into the index; failures are reported, the rest goes in.

    A producer thread parses, chunks and tokenizes pages ahead of the embedder into a bounded
    queue; pages are embedded across page boundaries in large batches and written in order, one
    transaction per batch, each page all or nothing inside it (a crash loses at most the batch
    being written). Memory stays flat whatever the number of pages.

    Usage: ``report = ingest_paths([Path("seeds")], Path("index")); report.pages``
    """
    t0 = time.perf_counter()
    report = IngestReport()
    archive = Archive(index_dir)
    files, report.failures = discover(paths, archive.store.pages_root)
    report.skipped = skipped_files(paths)
    embedder = load_ingest_embedder(embed_model)
    with archive.writer():
        if rebuild:
            archive.clear()
        archive.store.check_embedder(embedder.model_id, embedder.dim)
        record_backend(archive.store, embedder.backend, reset=rebuild)
        items: queue.Queue = queue.Queue(maxsize=QUEUE_PAGES[embedder.device])
        stop = threading.Event()
        processes = reader_processes()
        tokenizer = embedder.passage_tokenizer() if processes else None
        reader = threading.Thread(target=_read_pages, name="ingest-read", daemon=True,
                                  args=(files, archive.store, items, stop, processes, tokenizer))
        reader.start()
        try:
            batches = _batches(items, EMBED_BATCH_TEXTS[embedder.device])
            embedded = _timed(_embedded(batches, embedder, report), report)
            with tqdm(total=len(files), desc="ingest", unit="page", disable=not progress) as bar:
                for group in embedded:
                    _write_group(archive, group, report)
                    bar.update(len(group))
        finally:
            stop.set()
            reader.join()
        t1 = time.perf_counter()
        archive.refresh_derived()
        report.index_seconds = time.perf_counter() - t1
    report.seconds = time.perf_counter() - t0
    return report


def _write_group(archive: Archive, group: list, report: IngestReport) -> None:
    """Write one embedding batch's pages in order, in one store transaction (`_write_pages`). A
    page with the same contents as an earlier one of the batch waits for a transaction after it:
    there it meets that page in the store (a copy, skipped) or, were that page refused, goes in."""
    while group:
        group, later = _first_copies(group)
        _write_pages(archive, group, report)
        group = later


def _write_pages(archive: Archive, group: list, report: IngestReport) -> None:
    """Write pages in order, in one store transaction (`Archive.write_pages`: each page all or
    nothing, a page the store refuses reported and the others kept)."""
    ready = [(item, vectors) for item, vectors in group if _settled(archive, item, report)]
    errors = archive.write_pages([(item.page, item.passages, vectors, item.tokens) for item, vectors in ready])
    for (item, _), error in zip(ready, errors, strict=True):
        if error is not None:
            report.failures.append((str(item.path), str(error)))
            continue
        report.pages += 1
        report.articles += len(item.page.articles)
        report.passages += len(item.passages)


def _first_copies(group: list) -> tuple[list, list]:
    """`group` split in two, order kept: the first item of each page checksum (and every skip),
    and the items whose checksum an earlier one has."""
    seen: set[str] = set()
    first, later = [], []
    for item, vectors in group:
        checksum = item.page.issue.checksum if isinstance(item, PreparedPage) else None
        (later if checksum in seen else first).append((item, vectors))
        if checksum is not None:
            seen.add(checksum)
    return first, later


def _settled(archive: Archive, item: PreparedPage | SkippedPage, report: IngestReport) -> bool:
    """Whether `item` is a page to write, its issue id settled against the store (in file order:
    an earlier page may take the id); skips, failures, unchanged pages and copies of stored
    pages go to `report`."""
    if isinstance(item, SkippedPage):
        if item.reason is None:
            report.unchanged += 1
        else:
            report.failures.append((str(item.path), item.reason))
        return False
    issue = item.page.issue
    chunked_as = issue.id
    try:
        archive.store.check_identity(issue)
    except SameContentsError as exc:
        report.skipped.append((str(item.path), exc.reason))
        return False
    except PageError as exc:
        report.failures.append((str(item.path), str(exc)))
        return False
    if archive.store.checksum_of(issue.source) == issue.checksum:
        report.unchanged += 1  # a moved page: check_identity renamed the stored one in place
        return False
    if issue.id != chunked_as:  # passages were chunked ahead, under the id the parser proposed
        for p in item.passages:
            p.id, p.issue_id = issue.id + p.id[len(chunked_as):], issue.id
    return True


def remove_sources(sources: list[str], index_dir: Path) -> list[str]:
    """Take pages out of the index by source name as `qa issues` lists it, issue id, or path to
    the page file; returns those not found."""
    archive = Archive(index_dir)
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
