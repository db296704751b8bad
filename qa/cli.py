"""The `qa` command line: ingest, remove, reindex, migrate, issues, show, search, ask, eval, serve.

Usage::

    qa ingest seeds/            # build or update the index
    qa search "衡阳在百强市榜单中排第几？" --json
    qa ask "…" --url http://127.0.0.1:8000     # use a running server instead of loading the model
    qa serve --port 8000
    qa migrate --to-store-url postgresql://qa:secret@db:5432/qa     # the archive into PostgreSQL
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Optional

import typer

from qa.config import Settings, get_settings, serve_workers
from qa.validate import TOP_K_MAX, TOP_K_MIN, check_date, check_date_range, check_issue

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="markdown",
                  help="衡阳日报 archive: question answering with exact issue citations.")

IndexOpt = typer.Option(None, "--index", help="Index directory (default: $QA_INDEX_DIR or ./index).")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")
UrlOpt = typer.Option(None, "--url", envvar="QA_URL", show_envvar=False,
                      help="Ask a running `qa serve` at this URL (or $QA_URL) instead of loading the model here.")


def _checked(check: Callable):
    """A typer callback running one of qa.validate's checks: a usage error (exit 2) on bad input."""
    def callback(value):
        try:
            return check(value)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    return callback


def _not_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("it is empty")
    return value


TextArg = typer.Argument(..., callback=_checked(_not_empty), show_default=False)
TopKOpt = typer.Option(5, "--top-k", min=TOP_K_MIN, max=TOP_K_MAX, help="How many passages to use.")
FromOpt = typer.Option(None, "--from", help="Earliest date, YYYY-MM-DD.", callback=_checked(check_date))
ToOpt = typer.Option(None, "--to", help="Latest date, YYYY-MM-DD.", callback=_checked(check_date))
IssueOpt = typer.Option(None, "--issue", help="Only this issue number, e.g. 18012.", callback=_checked(check_issue))


@app.callback()
def _settings_first() -> None:
    # A bad QA_* variable is a usage error before any command runs, not a traceback mid-command.
    from pydantic import ValidationError

    try:
        get_settings()
    except ValidationError as exc:
        problems = "; ".join(f"QA_{str(e['loc'][0]).upper()}={e.get('input')!r}: {e['msg']}" for e in exc.errors())
        _fail(f"invalid setting: {problems}", code=2)


def _index_dir(index: Optional[Path]) -> Path:
    return index or get_settings().index_dir


def _print_json(data) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _store_exists(directory: Path, url: Optional[str] = None) -> bool:
    """Whether the configured store (or the one at `url`) holds an archive; a bad store URL or a
    server that does not answer ends the command with its reason."""
    from qa.store import StoreError, store_exists

    try:
        return store_exists(directory, url)
    except StoreError as exc:
        _fail(str(exc))


def _where(directory: Path, url: Optional[str] = None) -> str:
    """The archive's place for messages: the index folder, or the store's URL (no password)."""
    from qa.store import redact

    url = url if url is not None else get_settings().store_url
    return f"{redact(url)} (search files in {directory})" if url else str(directory)


def _existing_index(index: Optional[Path], url: Optional[str] = None) -> Path:
    directory = _index_dir(index)
    if not _store_exists(directory, url):
        _fail(f"no index at {_where(directory, url)}; build one with: qa ingest PAGES --index {directory}")
    return directory


def _open_store(index: Optional[Path], url: Optional[str] = None):
    from qa.store import StoreError, open_store

    directory = _existing_index(index, url)
    try:
        return open_store(directory, url)
    except StoreError as exc:
        _fail(str(exc))


def _searchable_index(index: Optional[Path]) -> Path:
    """An index that exists, has pages and was built with the configured model: all checked
    from its manifest, before the (slow) model load."""
    store = _open_store(index)
    if store.counts()["passages"] == 0:
        _fail(f"the index at {_where(store.directory)} has no pages yet; add some with: "
              f"qa ingest PAGES --index {store.directory}")
    _check_model(store)
    return Path(store.directory)


def _check_model(store) -> None:
    """Refuse an index built with another model or format, from its manifest alone."""
    from qa.embed import DEFAULT_MODEL
    from qa.store import IndexMismatchError

    model_id = get_settings().embed_model or DEFAULT_MODEL
    built = store.manifest()
    if built.get("embed_model") is None:
        return
    try:  # the recorded dimension: the name and format are what can be checked without the model
        store.check_embedder(model_id, int(built.get("embed_dim") or 0))
    except IndexMismatchError as exc:
        _fail(str(exc))


def _retriever(index: Optional[Path]):
    from qa.embed import load_embedder
    from qa.index import Archive
    from qa.retrieve import HybridRetriever
    from qa.store import IndexMismatchError

    settings = get_settings()
    archive = Archive(_searchable_index(index))
    embedder = load_embedder(settings.embed_model)
    try:
        archive.store.check_embedder(embedder.model_id, embedder.dim)
    except IndexMismatchError as exc:
        _fail(str(exc))
    return HybridRetriever(archive, embedder)


def _server(url: str):
    from qa.client import RemoteArchive

    return RemoteArchive(url, api_key=get_settings().api_key)


def _check_range(date_from: Optional[str], date_to: Optional[str]) -> None:
    try:
        check_date_range(date_from, date_to)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--from' / '--to'") from None  # a usage error, as the rest


def _check_not_busy(directory: Path) -> None:
    """Fail now, not after the model load, when another process is writing the index."""
    from qa.index import Archive, IndexBusyError

    if not _store_exists(directory):
        return
    try:
        with Archive(directory).writer():
            pass
    except IndexBusyError as exc:
        _fail(str(exc))


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(None, help="Page files or folders (default: seeds/). In folders, "
                                                  "files ending .txt, .text or .md are pages."),
    index: Optional[Path] = IndexOpt,
    rebuild: bool = typer.Option(False, "--rebuild", help="Start from an empty index (e.g. for a new model)."),
    json_out: bool = JsonOpt,
) -> None:
    """Ingest newspaper pages: parse, chunk, embed and index them. Files of other types in the
    folders, sidecars named without their page and copies of stored pages are listed as skipped."""
    from qa.index import IndexBusyError
    from qa.ingest import ingest_paths
    from qa.store import IndexMismatchError

    settings = get_settings()
    paths = paths or [settings.seeds_dir]
    _check_ingest_paths(paths)
    directory = _index_dir(index)
    _check_not_busy(directory)
    if not rebuild and _store_exists(directory):
        _check_model(_open_store(directory))
    try:
        report = ingest_paths(paths, directory, rebuild=rebuild, embed_model=settings.embed_model, progress=not json_out)
    except (IndexMismatchError, IndexBusyError) as exc:
        _fail(str(exc))
    _print_ingest_report(report, json_out)
    if report.failures:
        raise typer.Exit(1)


def _check_ingest_paths(paths: list[Path]) -> None:
    """Fail before anything is loaded or created when a path does not exist or no folder given
    holds a page (a mistyped or wrong folder, most likely), rather than report "0 pages
    ingested"; an empty folder among others that hold pages (`qa ingest pages/*`) is noted."""
    from qa.ingest import page_files

    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        _fail(f"no such file or folder: {', '.join(missing)}")
    empty = [str(p) for p in paths if p.is_dir() and not page_files(p)]
    note = f"no pages found in {', '.join(empty)} (pages are files ending .txt, .text or .md)"
    if empty and len(empty) == len(paths):
        _fail(note)
    if empty:
        typer.secho(f"note: {note}", fg=typer.colors.YELLOW, err=True)


def _print_ingest_report(report, json_out: bool) -> None:
    failures = [(f, _without_prefix(reason, f)) for f, reason in report.failures]
    if json_out:
        _print_json({"pages": report.pages, "unchanged": report.unchanged, "articles": report.articles,
                     "passages": report.passages, "seconds": round(report.seconds, 2),
                     "failures": [{"file": f, "reason": r} for f, r in failures],
                     "skipped": [{"file": f, "reason": r} for f, r in report.skipped]})
        return
    typer.echo(f"{report.pages} pages ingested ({report.unchanged} unchanged), "
               f"{report.articles} articles, {report.passages} passages, "
               f"{len(failures)} failed, {len(report.skipped)} skipped, in {report.seconds:.1f}s")
    for kind, lines in (("failed", failures), ("skipped", report.skipped)):
        for f, reason in lines:
            typer.secho(f"  {kind}: {f}: {reason}", fg=typer.colors.YELLOW, err=True)


def _without_prefix(reason: str, path: str) -> str:
    """A page error's reason without the file name it starts with (the line names it already)."""
    for prefix in (f"{path}: ", f"{Path(path).name}: "):
        if reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


@app.command()
def remove(sources: list[str] = typer.Argument(..., help="Page sources as `qa issues` lists them (or issue ids)."),
           index: Optional[Path] = IndexOpt) -> None:
    """Take pages out of the archive, with their articles and passages."""
    from qa.index import IndexBusyError
    from qa.ingest import remove_sources

    _open_store(index)
    try:
        missing = remove_sources(sources, _index_dir(index))
    except IndexBusyError as exc:
        _fail(str(exc))
    for s in sources:
        if s not in missing:
            typer.echo(f"removed {s}")
    if missing:
        _fail(f"not in the archive: {', '.join(missing)}")


@app.command()
def reindex(index: Optional[Path] = IndexOpt) -> None:
    """Rebuild the search files from the store (vectors as stored; nothing is re-embedded)."""
    from qa.index import IndexBusyError
    from qa.ingest import reindex as rebuild_search_files

    try:
        n = rebuild_search_files(_existing_index(index))
    except IndexBusyError as exc:
        _fail(str(exc))
    typer.echo(f"search files rebuilt: {n} passages")


@app.command()
def migrate(
    to_store_url: Optional[str] = typer.Option(
        None, "--to-store-url", help="The target store: postgresql://user:password@host:port/dbname, or 'sqlite' "
                                     "(the default) for SQLite in --to-index."),
    to_index: Optional[Path] = typer.Option(
        None, "--to-index", help="The target's index folder (its search files; the SQLite file too). "
                                 "Default: the source's folder, when the target is PostgreSQL."),
    to_search: str = typer.Option("faiss", "--to-search", help="The target's search backend: faiss or milvus."),
    store_url: Optional[str] = typer.Option(None, "--store-url", help="The source store (default: $QA_STORE_URL)."),
    index: Optional[Path] = IndexOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Copy the archive into another store without re-embedding (SQLite ⇄ PostgreSQL): rows in
    batches, vectors as stored; then the target's search files are built from the target store.

    Usage: ``qa migrate --to-store-url postgresql://qa@db/qa``, and back:
    ``qa migrate --store-url postgresql://qa@db/qa --to-index index-sqlite``"""
    from qa.index import Archive, IndexBusyError
    from qa.store import StoreError, copy_store, open_store

    if to_search not in ("faiss", "milvus"):
        _fail(f"--to-search must be faiss or milvus, not {to_search!r}", code=2)
    source_url = store_url if store_url is not None else get_settings().store_url
    target_url = None if to_store_url in (None, "", "sqlite") else to_store_url
    source_dir = _existing_index(index, source_url or "")
    if target_url is None and to_index is None:
        _fail("a SQLite target needs its folder: --to-index DIR", code=2)
    target_dir = to_index or source_dir
    if (source_url or None) == target_url and (target_url or source_dir.resolve() == target_dir.resolve()):
        _fail(f"the source and the target are the same store ({_where(source_dir, source_url or '')})", code=2)
    try:
        source = open_store(source_dir, source_url or "")
        target = open_store(target_dir, target_url or "")
        with source.writer_lock(), _search_backend(to_search):
            archive = Archive(target_dir, store=target)
            with archive.writer():
                copied = copy_store(source, target)
                archive.refresh_derived(rebuild=True)
    except (StoreError, IndexBusyError) as exc:
        _fail(str(exc))
    report = {"from": _where(source_dir, source_url or ""), "to": _where(target_dir, target_url or ""),
              "search": to_search, "copied": copied, "counts": target.counts()}
    if json_out:
        _print_json(report)
        return
    typer.echo(f"copied {copied['issues']} issues, {copied['articles']} articles, {copied['passages']} passages, "
               f"{copied['terms']} terms\n  from {report['from']}\n"
               f"  to   {report['to']} ({to_search} search files built)")


@contextmanager
def _search_backend(name: str):
    """The settings with QA_SEARCH_BACKEND = `name` while the block runs (the target archive
    picks its search index from them, as a server would)."""
    before = os.environ.get("QA_SEARCH_BACKEND")
    os.environ["QA_SEARCH_BACKEND"] = name
    get_settings.cache_clear()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("QA_SEARCH_BACKEND", None)
        else:
            os.environ["QA_SEARCH_BACKEND"] = before
        get_settings.cache_clear()


@app.command("issues")
def issues_cmd(
    date_from: Optional[str] = FromOpt,
    date_to: Optional[str] = ToOpt,
    issue: Optional[str] = IssueOpt,
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many (default: all)."),
    offset: int = typer.Option(0, "--offset", min=0, help="Skip this many first."),
    index: Optional[Path] = IndexOpt,
    json_out: bool = JsonOpt,
) -> None:
    """List the archive's issues (pages) with their articles, by date (undated last)."""
    from qa.lookup import issue_list

    _check_range(date_from, date_to)
    data = issue_list(_open_store(index), date_from, date_to, issue, limit, offset)
    if json_out:
        _print_json(data)
        return
    for i in data:
        typer.echo(f"{i['id']}  {i['date'] or '日期不详'}  第{i['issue'] or '?'}号  "
                   f"第{i['page'] or '?'}版  {len(i['articles'])} 篇  ({i['source']})")


@app.command()
def show(issue_id: str, index: Optional[Path] = IndexOpt, json_out: bool = JsonOpt) -> None:
    """Show one issue with its articles and passages."""
    from qa.lookup import issue_detail

    data = issue_detail(_open_store(index), issue_id)
    if data is None:
        _fail(f"no issue {issue_id!r}; list them with: qa issues")
    if json_out:
        _print_json(data)
        return
    typer.echo(f"{data['paper'] or ''} {data['date'] or '日期不详'} 第{data['issue'] or '?'}号 ({data['source']})")
    for a in data["articles"]:
        typer.echo(f"\n## {a['headline'] or '(无标题)'}  {a['byline'] or ''}")
        for p in a["passages"]:
            typer.echo(f"  [{p['id']}] {p['text'][:80]}…")


@app.command()
def search(
    query: str = TextArg,
    top_k: int = TopKOpt,
    date_from: Optional[str] = FromOpt,
    date_to: Optional[str] = ToOpt,
    issue: Optional[str] = IssueOpt,
    index: Optional[Path] = IndexOpt,
    url: Optional[str] = UrlOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Search the archive: passages with their citations."""
    _check_range(date_from, date_to)
    filters = dict(date_from=date_from, date_to=date_to, issue=issue)
    if url:
        body = _remote(lambda: _server(url).search(query, top_k, **filters))
    else:
        hits, caveat = _retriever(index).search_caveated(query, top_k, **filters)
        body = {"query": query, "results": [h.to_dict() for h in hits], **({"warning": caveat} if caveat else {})}
    if json_out:
        _print_json(body)
        return
    if body.get("warning"):
        typer.secho(f"warning: {body['warning']}", fg=typer.colors.YELLOW, err=True)
    if not body["results"]:
        typer.echo("no passages match" + (" these filters" if any(filters.values()) else ""))
    for n, h in enumerate(body["results"], 1):
        typer.echo(f"[{n}] {h['citation']['label']}  ({h['score']:.4f})\n    {h['text'][:160]}\n")


def _remote(call: Callable):
    from qa.client import ServerError

    try:
        return call()
    except ServerError as exc:
        _fail(str(exc))


@app.command("eval")
def eval_cmd(
    file: Path = typer.Argument(Path("eval/dev.jsonl"), exists=True, dir_okay=False),
    top_k: int = TopKOpt,
    index: Optional[Path] = IndexOpt,
    url: Optional[str] = UrlOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Measure retrieval (recall@1, recall@k, MRR@10) and answers (evidence quoted, "not found"),
    per kind of question."""
    from qa.client import RemoteAnswerer, RemoteRetriever
    from qa.evaluate import evaluate_answers, evaluate_retrieval, format_report, load_questions

    try:
        questions = load_questions(file)
    except ValueError as exc:
        _fail(str(exc))
    if url:
        server = _server(url)
        retriever, answerer = RemoteRetriever(server), RemoteAnswerer(server)
    else:
        from qa.answer import Answerer

        retriever = _retriever(index)
        answerer = Answerer(retriever)
    report = _remote(lambda: {"retrieval": evaluate_retrieval(questions, retriever, top_k),
                              "answers": evaluate_answers(questions, answerer, top_k)})
    if json_out:
        _print_json(report)
        return
    typer.echo(format_report(report))


@app.command()
def ask(
    question: str = TextArg,
    top_k: int = TopKOpt,
    date_from: Optional[str] = FromOpt,
    date_to: Optional[str] = ToOpt,
    index: Optional[Path] = IndexOpt,
    url: Optional[str] = UrlOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Ask a question: an answer with \\[n] markers and the labels of its citations."""
    _check_range(date_from, date_to)
    filters = dict(top_k=top_k, date_from=date_from, date_to=date_to)
    if url:
        body = _remote(lambda: _server(url).ask(question, **filters))
    else:
        from qa.answer import Answerer, LLMClient

        answerer = Answerer(_retriever(index), LLMClient.from_settings(get_settings()))
        result = answerer.ask(question, **filters)
        for _ in result.pieces:  # pieces may be produced lazily; they complete the answer
            pass
        body = result.to_dict()
    if json_out:
        _print_json(body)
        return
    typer.echo(body["answer"])
    if body.get("warning"):
        typer.secho(f"warning: {body['warning']}", fg=typer.colors.YELLOW, err=True)
    for c in body["citations"]:
        cite = c["citation"]
        typer.echo(f"[{c['n']}] {cite['label']}  ({cite['source']} {cite['start']}-{cite['end']})")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Default 127.0.0.1 ($QA_HOST)."),
    port: Optional[int] = typer.Option(None, "--port", min=1, max=65535, help="Default 8000 ($QA_PORT)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Server processes; each loads the model "
                                          "(~0.8 GB). Default $QA_WORKERS, else one per 4 cores (1 on a small machine)."),
    seed: bool = typer.Option(False, "--seed", help="Build a missing or empty index from seeds/ ($QA_SEEDS_DIR) "
                                                     "first; the default ./index gets this anyway."),
    index: Optional[Path] = IndexOpt,
) -> None:
    """Serve the API, the web page and the API reference (/docs). Everything that needs no model
    (index, port) is checked before the model loads."""
    settings = get_settings().model_copy(update={"index_dir": _index_dir(index)})
    host, port = host or settings.host, port if port is not None else settings.port
    workers = workers or serve_workers(settings)
    _check_index_to_serve(settings, seed or settings.index_dir == Settings.model_fields["index_dir"].default)
    _check_port_free(host, port)
    if not _has_pages(settings.index_dir):
        _ingest_seeds(settings)
    _searchable_index(settings.index_dir)
    from qa.embed import DeviceNotAvailableError, ModelNotAvailableError, prepare_embedder

    try:
        prepare_embedder(settings.embed_model)  # a first run's ONNX export, before any worker starts
    except (ModelNotAvailableError, DeviceNotAvailableError) as exc:
        _fail(str(exc))
    import uvicorn

    if workers == 1:
        from qa.api import create_app

        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    else:  # each worker process builds its own app from the environment
        os.environ["QA_INDEX_DIR"] = str(settings.index_dir.resolve())
        # each worker's model gets its share of the cores: more threads than that only wait on
        # each other (2 cores: 2 workers x 1 thread, not 2 x 2)
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
        # A worker loading the model or embedding on busy cores can miss uvicorn's 5 s health
        # ping; it would be killed and restarted mid-load, over and over.
        uvicorn.run("qa.api:app_from_env", factory=True, host=host, port=port, workers=workers,
                    timeout_worker_healthcheck=60, log_level="info")


def _has_pages(directory: Path) -> bool:
    return _store_exists(directory) and _open_store(directory).counts()["passages"] > 0


def _check_index_to_serve(settings: Settings, may_seed: bool) -> None:
    """A missing or empty index is built from the seeds only when allowed: a mistyped
    QA_INDEX_DIR must not quietly serve the demo archive."""
    directory = settings.index_dir
    if _has_pages(directory):
        return
    if not may_seed:
        _fail(f"no index with pages at {directory}; create it with: qa ingest PAGES --index {directory} "
              f"(or serve the demo pages from {settings.seeds_dir}/ with: qa serve --seed --index {directory})")
    if not settings.seeds_dir.is_dir():
        _fail(f"no index at {directory} and no {settings.seeds_dir}/ folder to build one from; "
              f"create it with: qa ingest PAGES --index {directory}")
    _check_not_busy(directory)


def _ingest_seeds(settings: Settings) -> None:
    from qa.ingest import ingest_paths

    typer.echo(f"no pages in {settings.index_dir}/ yet: ingesting {settings.seeds_dir}/ first")
    report = ingest_paths([settings.seeds_dir], settings.index_dir, embed_model=settings.embed_model)
    typer.echo(f"{report.pages} pages, {report.passages} passages, {len(report.failures)} failed")


def _check_port_free(host: str, port: int) -> None:
    """Bind-test the address as uvicorn will (SO_REUSEADDR), before minutes go into loading."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}); another server may be running there. "
              f"Pick another port: qa serve --port {port + 1} (or QA_PORT={port + 1}, make serve PORT={port + 1})")


def main() -> None:  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":  # `python -m qa.cli …`, as the tests and benchmarks run it
    main()
