"""Fusion weights that follow the question's lexical overlap, and the paraphrase question file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qa.evaluate import contains_evidence
from qa.fusion import FULL_OVERLAP_WEIGHT, NO_OVERLAP_WEIGHT, dense_weight, lexical_overlap
from qa.lexical import LexicalIndex, Postings

ROOT = Path(__file__).resolve().parent.parent


class _View:
    """The parts of a qa.search.SearchView that fusion reads, over one real LexicalIndex (vec_id =
    position), with its BM25 hits."""

    def __init__(self):
        docs = [["衡阳", "物流", "枢纽"], ["餐饮", "油烟", "秸秆"], ["衡阳", "制造业", "百强"]]
        vocab: dict[str, int] = {}
        as_ids = [np.array([vocab.setdefault(t, len(vocab)) for t in d]) for d in docs]
        self.lex = LexicalIndex([Postings.from_docs(as_ids)], [None],
                                lambda toks: {t: vocab[t] for t in toks if t in vocab})

    def idf(self, token):
        return self.lex.idf(token)

    def holds(self, vec_id, tokens):
        return {t for t in tokens if self.lex.scores([t])[vec_id] > 0}

    def hits(self, tokens, scores=None):
        scores = self.lex.scores(tokens) if scores is None else scores
        best = int(np.argmax(scores)) if scores.size and scores.max() > 0 else None
        return type("Hits", (), {"best": lambda _self: best})()


def test_dense_weight_slides_with_the_overlap_of_the_best_bm25_passage():
    view = _View()
    full = ["衡阳", "物流", "枢纽"]
    assert lexical_overlap(view, full, view.hits(full)) == 1.0
    assert dense_weight(view, full, view.hits(full)) == FULL_OVERLAP_WEIGHT
    none = ["饭馆", "排出"]
    assert dense_weight(view, none, view.hits(none)) == NO_OVERLAP_WEIGHT
    half = ["油烟", "饭馆"]
    w = dense_weight(view, half, view.hits(half))
    assert FULL_OVERLAP_WEIGHT < w < NO_OVERLAP_WEIGHT
    assert dense_weight(view, full, view.hits(full, np.zeros(3))) == NO_OVERLAP_WEIGHT  # nothing matched


def _paraphrases():
    return [json.loads(line) for line in (ROOT / "eval" / "paraphrase.jsonl").read_text().splitlines() if line.strip()]


def test_paraphrase_file_quotes_its_pages_and_has_two_halves():
    rows = _paraphrases()
    assert len(rows) >= 20 and {r["split"] for r in rows} == {"fit", "test"}
    for r in rows:
        page = (ROOT / "seeds" / r["file"]).read_text()
        assert r["evidence"] and all(e in page for e in r["evidence"]), r["id"]


def test_a_question_that_describes_instead_of_naming_finds_its_passage(retriever):
    # '网友留言' for '网民建言', '五年规划' for '“十四五”规划': BM25 alone ranks the lede first.
    row = next(r for r in _paraphrases() if "网友留言" in r["question"])
    assert contains_evidence(retriever.search(row["question"], 1)[0].text, row["evidence"])
