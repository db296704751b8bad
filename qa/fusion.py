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

    w = dense_weight(snapshot.lexical, tokenize(question), bm25_scores)
    fused = w * minmax(dense) + (1 - w) * minmax(bm25)
"""

from __future__ import annotations

import numpy as np

from qa.lexical import LexicalIndex

FULL_OVERLAP_WEIGHT = 0.5  # dense share when the best BM25 passage holds all of the question's terms
NO_OVERLAP_WEIGHT = 0.7  # ... and when it holds none of them


def lexical_overlap(lexical: LexicalIndex, tokens: list[str], bm25: np.ndarray) -> float:
    """Idf-weighted share of the question's terms (single characters aside) that its best BM25
    passage contains; 0 when no passage matches. Usage: ``lexical_overlap(lex, toks, scores)``"""
    terms = {t for t in tokens if len(t) > 1}
    if not terms or bm25.size == 0 or bm25.max() <= 0:
        return 0.0
    top = int(np.argmax(bm25))
    weights = {t: lexical.idf(t) for t in terms}
    held = sum(w for t, w in weights.items() if lexical.scores([t])[top] > 0)
    return held / (sum(weights.values()) or 1.0)


def dense_weight(lexical: LexicalIndex, tokens: list[str], bm25: np.ndarray) -> float:
    """The dense share of the fused score for this question, between the two weights above."""
    overlap = lexical_overlap(lexical, tokens, bm25)
    return NO_OVERLAP_WEIGHT - (NO_OVERLAP_WEIGHT - FULL_OVERLAP_WEIGHT) * overlap
