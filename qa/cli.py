"""The `qa` command line: ingest, remove, issues, show, search, ask, eval, serve.

Usage::

    qa ingest seeds/            # build or update the index
    qa search "衡阳在百强市榜单中排第几？" --json
    qa serve --port 8000
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from qa.config import get_settings

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="衡阳日报 archive: question answering with exact issue citations.")

IndexOpt = typer.Option(None, "--index", help="Index directory (default: $QA_INDEX_DIR or ./index).")
JsonOpt = typer.Option(False, "--json", help="Print JSON.")


def _index_dir(index: Optional[Path]) -> Path:
    return index or get_settings().index_dir


def _print_json(data) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _existing_index(index: Optional[Path]) -> Path:
    from qa.store import DB_NAME

    directory = _index_dir(index)
    if not (directory / DB_NAME).exists():
        _fail(f"no index at {directory}; build one with: qa ingest --index {directory}")
    return directory


def _open_store(index: Optional[Path]):
    from qa.store import Store

    return Store.open(_existing_index(index))


def _retriever(index: Optional[Path]):
    from qa.embed import load_embedder
    from qa.index import Archive
    from qa.retrieve import HybridRetriever
    from qa.store import IndexMismatchError

    settings = get_settings()
    archive = Archive(_existing_index(index), faiss_factory=settings.faiss_index)
    embedder = load_embedder(settings.embed_model)
    try:
        archive.store.check_embedder(embedder.model_id, embedder.dim)
    except IndexMismatchError as exc:
        _fail(str(exc))
    return HybridRetriever(archive, embedder)


@app.command()
def ingest(
    paths: list[Path] = typer.Argument(None, help="Page files or folders (default: seeds/)."),
    index: Optional[Path] = IndexOpt,
    rebuild: bool = typer.Option(False, "--rebuild", help="Start from an empty index."),
    json_out: bool = JsonOpt,
) -> None:
    """Ingest newspaper pages: parse, chunk, embed and index them."""
    from qa.index import IndexBusyError
    from qa.ingest import ingest_paths
    from qa.store import IndexMismatchError

    settings = get_settings()
    try:
        report = ingest_paths(paths or [settings.seeds_dir], _index_dir(index), rebuild=rebuild,
                              embed_model=settings.embed_model, faiss_factory=settings.faiss_index,
                              progress=True)
    except (IndexMismatchError, IndexBusyError) as exc:
        _fail(str(exc))
    summary = {"pages": report.pages, "unchanged": report.unchanged, "articles": report.articles,
               "passages": report.passages, "seconds": round(report.seconds, 2),
               "failures": [{"file": f, "reason": r} for f, r in report.failures]}
    if json_out:
        _print_json(summary)
    else:
        typer.echo(f"{report.pages} pages ingested ({report.unchanged} unchanged), "
                   f"{report.articles} articles, {report.passages} passages, "
                   f"{len(report.failures)} failed, in {report.seconds:.1f}s")
        for f, reason in report.failures:
            typer.secho(f"  failed: {f}: {reason}", fg=typer.colors.YELLOW, err=True)
    if report.failures:
        raise typer.Exit(1)


@app.command()
def remove(sources: list[str] = typer.Argument(..., help="Page sources as `qa issues` lists them (or issue ids)."),
           index: Optional[Path] = IndexOpt) -> None:
    """Take pages out of the archive, with their articles and passages."""
    from qa.index import IndexBusyError
    from qa.ingest import remove_sources

    _open_store(index)
    try:
        missing = remove_sources(sources, _index_dir(index), faiss_factory=get_settings().faiss_index)
    except IndexBusyError as exc:
        _fail(str(exc))
    for s in sources:
        if s not in missing:
            typer.echo(f"removed {s}")
    if missing:
        _fail(f"not in the archive: {', '.join(missing)}")


@app.command("issues")
def issues_cmd(index: Optional[Path] = IndexOpt, json_out: bool = JsonOpt) -> None:
    """List the archive's issues (pages) with their articles."""
    from qa.lookup import issue_list

    data = issue_list(_open_store(index))
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
    query: str,
    top_k: int = typer.Option(5, "--top-k", min=1, max=50),
    date_from: Optional[str] = typer.Option(None, "--from", help="YYYY-MM-DD"),
    date_to: Optional[str] = typer.Option(None, "--to", help="YYYY-MM-DD"),
    issue: Optional[str] = typer.Option(None, "--issue"),
    index: Optional[Path] = IndexOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Search the archive: passages with their citations."""
    if not query.strip():
        _fail("the query is empty")
    hits = _retriever(index).search(query, top_k, date_from=date_from, date_to=date_to, issue=issue)
    if json_out:
        _print_json({"query": query, "results": [h.to_dict() for h in hits]})
        return
    for n, h in enumerate(hits, 1):
        typer.echo(f"[{n}] {h.citation.label}  ({h.score:.4f})\n    {h.text[:160]}\n")


@app.command("eval")
def eval_cmd(
    file: Path = typer.Argument(Path("eval/dev.jsonl"), exists=True, dir_okay=False),
    top_k: int = typer.Option(5, "--top-k", min=1, max=50),
    index: Optional[Path] = IndexOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Measure retrieval (recall@1, recall@k, MRR@10) and answers (evidence quoted, "not found"),
    per kind of question."""
    from qa.answer import Answerer
    from qa.evaluate import evaluate_answers, evaluate_retrieval, format_report, load_questions

    try:
        questions = load_questions(file)
    except ValueError as exc:
        _fail(str(exc))
    retriever = _retriever(index)
    report = {"retrieval": evaluate_retrieval(questions, retriever, top_k),
              "answers": evaluate_answers(questions, Answerer(retriever), top_k)}
    if json_out:
        _print_json(report)
        return
    typer.echo(format_report(report))


@app.command()
def ask(
    question: str,
    index: Optional[Path] = IndexOpt,
    json_out: bool = JsonOpt,
    top_k: int = typer.Option(5, "--top-k", min=1, max=50),
) -> None:
    """Ask a question: an answer with [n] markers and the labels of its citations."""
    from qa.answer import Answerer, LLMClient

    if not question.strip():
        _fail("the question is empty")
    result = Answerer(_retriever(index), LLMClient.from_settings(get_settings())).ask(question, top_k=top_k)
    if json_out:
        _print_json(result.to_dict())
        return
    typer.echo(result.answer)
    if result.warning:
        typer.secho(f"warning: {result.warning}", fg=typer.colors.YELLOW, err=True)
    for c in result.citations:
        typer.echo(f"[{c.n}] {c.hit.citation.label}  ({c.hit.citation.source} {c.hit.citation.start}-{c.hit.citation.end})")


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, "--host", help="Default 127.0.0.1 ($QA_HOST)."),
    port: Optional[int] = typer.Option(None, "--port", help="Default 8000 ($QA_PORT)."),
    index: Optional[Path] = IndexOpt,
) -> None:
    """Serve the API and the web page; builds the index from seeds/ first if it is empty."""
    import uvicorn

    from qa.api import create_app
    from qa.ingest import ingest_paths
    from qa.store import DB_NAME, Store

    settings = get_settings().model_copy(update={"index_dir": _index_dir(index)})
    directory = settings.index_dir
    if not (directory / DB_NAME).exists() or Store.open(directory).counts()["passages"] == 0:
        typer.echo(f"index {directory} is empty: ingesting {settings.seeds_dir} first")
        report = ingest_paths([settings.seeds_dir], directory, embed_model=settings.embed_model,
                              faiss_factory=settings.faiss_index)
        typer.echo(f"{report.pages} pages, {report.passages} passages, {len(report.failures)} failed")
    _retriever(directory)  # fails with a clear message if the index was built with another model
    uvicorn.run(create_app(settings), host=host or settings.host, port=port or settings.port,
                log_level="info")


def main() -> None:  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":  # `python -m qa.cli …`, as the tests and benchmarks run it
    main()
