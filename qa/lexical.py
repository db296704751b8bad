"""lexical: jieba tokens and the BM25 index built over them.

Usage::

    tokens = tokenize("衡阳的云绩效平台哪天投入运行？")   # search-mode jieba, stop words dropped
    bm25 = LexicalIndex.build([tokens_of_passage_1, ...])
    scores = bm25.scores(tokens)                              # one float per passage
"""

from __future__ import annotations

import json
import math
import re
import threading
import unicodedata
from importlib import resources
from pathlib import Path

import bm25s
import jieba
import numpy as np

_init_lock = threading.Lock()
_initialized = False

# Function words and question words carry no evidence; dropping them keeps BM25 on content.
STOP_WORDS = frozenset(
    """的 了 和 与 及 以及 是 在 为 对 把 被 将 就 都 也 还 又 并 而 或 等 个 这 那 这些 那些 其 之 于 上 下 中
    有 没有 要 会 能 可以 说 到 去 让 给 从 向 由 以 着 过 吗 呢 吧 啊 么 什么 哪 哪些 哪个 哪里 哪儿 哪天
    哪两家 多少 几 几个 几项 第几 怎么 怎样 如何 为什么 谁 是否 是不是 主要 一下 一份 一个 一些 都 讲 了什么
    报道 衡阳日报 日报 今年 当时 那次 那个 这次 提到 表示 指出 强调""".split()
)
_PUNCT = re.compile(r"^[\W_]+$", re.UNICODE)


def _ensure_jieba() -> None:
    global _initialized
    if _initialized:
        return
    with _init_lock:
        if _initialized:
            return
        jieba.setLogLevel(60)
        jieba.initialize()
        userdict = resources.files("qa") / "data" / "userdict.txt"
        with resources.as_file(userdict) as path:
            jieba.load_userdict(str(path))
        _initialized = True


def fold(text: str) -> str:
    """NFKC + lower case: full-width digits and letters match their half-width forms."""
    return unicodedata.normalize("NFKC", text).lower()


def tokenize(text: str) -> list[str]:
    """Search-mode jieba tokens of `text`, normalized, without punctuation or stop words.

    Usage: ``tokenize("衡阳陆港型国家物流枢纽")``
    """
    _ensure_jieba()
    out = []
    for tok in jieba.cut_for_search(fold(text)):
        tok = tok.strip()
        if not tok or tok in STOP_WORDS or _PUNCT.match(tok):
            continue
        out.append(tok)
    return out


def words(text: str) -> list[str]:
    """Precise-mode jieba words (no search-mode sub-words), punctuation kept out.

    Usage: ``words("衡阳市2021年全年地区生产总值是多少亿元？")``
    """
    _ensure_jieba()
    return [w for w in (t.strip() for t in jieba.lcut(fold(text))) if w and not _PUNCT.match(w)]


class LexicalIndex:
    """BM25 over pre-tokenized passages (bm25s, sparse matrices); built once, persisted, never per query."""

    def __init__(self, model: bm25s.BM25, size: int, doc_freq: dict[str, int] | None = None):
        self._model = model
        self.size = size
        self.doc_freq = doc_freq or {}

    @classmethod
    def build(cls, corpus_tokens: list[list[str]]) -> "LexicalIndex":
        """Index passages given as token lists, in passage order. Usage: ``LexicalIndex.build([["衡阳", "物流"]])``"""
        model = bm25s.BM25(k1=1.2, b=0.75)
        if corpus_tokens:
            model.index(corpus_tokens, show_progress=False)
        doc_freq: dict[str, int] = {}
        for toks in corpus_tokens:
            for t in set(toks):
                doc_freq[t] = doc_freq.get(t, 0) + 1
        return cls(model, len(corpus_tokens), doc_freq)

    def idf(self, token: str) -> float:
        """Inverse document frequency (BM25's form, never negative); unseen tokens weigh most."""
        df = self.doc_freq.get(token, 0)
        return math.log(1.0 + (self.size - df + 0.5) / (df + 0.5))

    def scores(self, query_tokens: list[str]) -> np.ndarray:
        """BM25 score of every passage for the query (zeros when nothing matches)."""
        if self.size == 0 or not query_tokens:
            return np.zeros(self.size, dtype=np.float32)
        vocab = self._model.vocab_dict
        known = [t for t in query_tokens if t in vocab]
        if not known:
            return np.zeros(self.size, dtype=np.float32)
        return np.asarray(self._model.get_scores(known), dtype=np.float32)

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "size").write_text(str(self.size))
        (directory / "doc_freq.json").write_text(json.dumps(self.doc_freq, ensure_ascii=False))
        if self.size:
            self._model.save(str(directory), show_progress=False)

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex":
        size = int((directory / "size").read_text())
        doc_freq = json.loads((directory / "doc_freq.json").read_text())
        if size == 0:
            return cls(bm25s.BM25(), 0, doc_freq)
        model = bm25s.BM25.load(str(directory), mmap=False, show_progress=False)
        return cls(model, size, doc_freq)
