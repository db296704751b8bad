"""fusion: how far the fused ranking trusts the dense score over BM25, question by question.

A question that shares its key words with some passage is served well by BM25; a paraphrase
("市委一把手", "饭馆排出的烟") shares few, and its best BM25 passage is matched on incidental
words, so the dense score should decide. The share of the question's (idf-weighted) terms that
the best BM25 passage holds measures that overlap, and the dense weight slides with it.

Measured with the retriever on the seed index (recall@1 on eval/paraphrase.jsonl, 18 + 18):
a fixed weight of 0.5 gave 0.778 on the fit half and 0.667 on the test half; sliding from 0.5
(full overlap) to 0.7 (none) gave 0.833 and 0.722, left eval/dev.jsonl where it was (0.941) and
the follow-up cases of tests/test_understand.py too. Ceilings of 0.75-0.8 scored the same on
the fit half but lost a dated dev question and a follow-up. Query expansion from the top
passages (pseudo-relevance feedback, lexical or Rocchio in vector space) and one vector per
clause did not beat it; sentence-level vectors helped on top of it but need stored vectors.

Usage::

    tokens = tokenize(question)
    w = dense_weight(snapshot, tokens, snapshot.lexical_search(tokens, flt))   # snapshot: a qa.search.SearchView
    fused = w * minmax(dense) + (1 - w) * minmax(bm25)
"""

from __future__ import annotations


from qa.search import LexicalHits, SearchView

FULL_OVERLAP_WEIGHT = 0.5  # dense share when the best BM25 passage holds all of the question's terms
NO_OVERLAP_WEIGHT = 0.7  # ... and when it holds none of them


def lexical_overlap(view: SearchView, tokens: list[str], hits: LexicalHits) -> float:
    """Idf-weighted share of the question's terms (single characters aside) that its best BM25
    passage contains; 0 when no passage matches. Usage: ``lexical_overlap(view, toks, hits)``"""
    terms = {t for t in tokens if len(t) > 1}
    top = hits.best() if terms else None
    if top is None:
        return 0.0
    weights = {t: view.idf(t) for t in terms}
    held = view.holds(top, terms)
    return sum(weights[t] for t in held) / (sum(weights.values()) or 1.0)


def dense_weight(view: SearchView, tokens: list[str], hits: LexicalHits) -> float:
    """The dense share of the fused score for this question, between the two weights above."""
    overlap = lexical_overlap(view, tokens, hits)
    return NO_OVERLAP_WEIGHT - (NO_OVERLAP_WEIGHT - FULL_OVERLAP_WEIGHT) * overlap
