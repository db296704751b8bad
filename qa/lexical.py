"""lexical: jieba tokens, and BM25 over per-segment postings with statistics taken at query time.

Usage::

    tokens = tokenize("衡阳的云绩效平台哪天投入运行？")   # search-mode jieba, stop words dropped
    postings = Postings.from_docs([np.array(term_ids_of_passage_1), ...])
    bm25 = LexicalIndex([postings], [None], lookup=store_term_ids)
    scores = bm25.scores(tokens)                              # one float per passage
"""

from __future__ import annotations

import math
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Callable

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
        reset_caches()  # the dictionary (and its total) is final from here on
        _initialized = True


@lru_cache(maxsize=1)
def _to_simplified():
    import opencc

    return opencc.OpenCC("t2s")


def simplified(text: str) -> str:
    """`text` in simplified characters (OpenCC's t2s): a reader in Hong Kong or Taiwan asks
    '長沙海關關長是誰？'; an OCR'd page prints '各級'. Simplified text stays as it is.

    Usage: ``simplified("長沙海關關長是誰？")`` → '长沙海关关长是谁？'"""
    return _to_simplified().convert(text)


def fold(text: str) -> str:
    """NFKC + lower case + simplified characters: full-width digits and letters match their
    half-width forms, and a traditional character its simplified one, so that a page that prints
    '各級' (OCR, or an archive's years before the simplification) is found by '各级'.

    Usage: ``fold("ＡＢ各級")`` → 'ab各级'"""
    return simplified(unicodedata.normalize("NFKC", text).lower())


def tokenize(text: str) -> list[str]:
    """Search-mode jieba tokens of `text`, normalized, without punctuation or stop words: exactly
    ``jieba.cut_for_search(fold(text))`` filtered, computed block by block (see `_block_tokens`).

    Usage: ``tokenize("衡阳陆港型国家物流枢纽")``
    """
    _ensure_jieba()
    out: list[str] = []
    for block in _BLOCKS.split(fold(text)):
        if block:
            out.extend(_block_tokens(block))
    return out


# jieba splits its input at every character outside this class and segments each run (block) on
# its own, so a text's tokens are its blocks' tokens in order. Passages repeat blocks (the overlap
# sentence, recurring phrases), so each block's tokens are kept (bounded LRU), and a block not seen
# before is cut by `_cut_han`, a faster equivalent of jieba's DAG + HMM cut (tests compare both).
_BLOCKS = jieba.re_han_default


@lru_cache(maxsize=1 << 16)
def _block_tokens(block: str) -> tuple[str, ...]:
    words = _search_words(block) if _BLOCKS.match(block) else jieba.dt.cut_for_search(block)
    return tuple(tok for tok in (w.strip() for w in words)
                 if tok and tok not in STOP_WORDS and not _PUNCT.match(tok))


def _search_words(block: str) -> list[str]:
    """``list(jieba.cut_for_search(block))`` for one block of `_BLOCKS` characters: each word,
    preceded by its two- and three-character dictionary sub-words."""
    freq = jieba.dt.FREQ
    out: list[str] = []
    for w in _cut_han(block):
        n = len(w)
        if n > 2:
            out.extend(g for g in (w[i:i + 2] for i in range(n - 1)) if freq.get(g))
        if n > 3:
            out.extend(g for g in (w[i:i + 3] for i in range(n - 2)) if freq.get(g))
        out.append(w)
    return out


# Dictionary entries as `_cut_han` reads them: a word → log(freq) - log(total), as jieba's `calc`
# computes it; a prefix that is no word → None. Filled as entries are met (at most jieba's FREQ).
_logp: dict[str, float | None] = {}
_MISS = object()


def reset_caches() -> None:
    """Forget every cached block, HMM cut and dictionary log-probability (after the dictionary changes).

    Usage: ``lexical.reset_caches()``"""
    _logp.clear()
    _block_tokens.cache_clear()
    _unknown.cache_clear()


def _cut_han(s: str) -> list[str]:
    """jieba's ``__cut_DAG`` (precise mode with HMM) of one block, same words: the DAG and the
    best route in one right-to-left pass, entries' log-probabilities kept, HMM cuts memoized."""
    freq, logp, get = jieba.dt.FREQ, _logp, _logp.get
    logtotal = math.log(jieba.dt.total)
    n = len(s)
    score, best = [0.0] * (n + 1), list(range(n))
    for k in range(n - 1, -1, -1):
        top, i, frag = None, k, s[k]
        while i < n:
            lp = get(frag, _MISS)
            if lp is _MISS:
                f = freq.get(frag)
                if f is None:
                    break
                lp = logp[frag] = math.log(f) - logtotal if f else None
            if lp is not None:
                v = lp + score[i + 1]
                if top is None or v >= top:  # max((v, i)): ties go to the longer word
                    top, best[k] = v, i
            i += 1
            frag = s[k:i + 1]
        if top is None:  # no word starts here: the character alone, log(freq or 1)
            top = math.log(freq.get(s[k]) or 1) - logtotal + score[k + 1]
        score[k] = top
    words: list[str] = []
    x, buf = 0, ""
    while x < n:
        y = best[x] + 1
        if y - x == 1:
            buf += s[x]
        else:
            if buf:
                words.extend(_unknown(buf))
                buf = ""
            words.append(s[x:y])
        x = y
    if buf:
        words.extend(_unknown(buf))
    return words


@lru_cache(maxsize=1 << 14)
def _unknown(buf: str) -> tuple[str, ...]:
    """Single characters in a row, as jieba's cut yields them: the HMM's words unless `buf` is a
    dictionary word (then its characters)."""
    if len(buf) == 1:
        return (buf,)
    return tuple(jieba.finalseg.cut(buf)) if not jieba.dt.FREQ.get(buf) else tuple(buf)


def words(text: str) -> list[str]:
    """Precise-mode jieba words (no search-mode sub-words), punctuation kept out.

    Usage: ``words("衡阳市2021年全年地区生产总值是多少亿元？")``
    """
    _ensure_jieba()
    return [w for w in (t.strip() for t in jieba.lcut(fold(text))) if w and not _PUNCT.match(w)]


def passage_tokens(headline: str | None, text: str) -> list[str]:
    """A passage's BM25 tokens: its headline's (a light field weight) then its text's.

    Usage: ``passage_tokens("衡阳港开工", "本报讯 衡阳港……")``"""
    return (tokenize(headline) if headline else []) + tokenize(text)


K1, B = 1.2, 0.75  # BM25 (Lucene form, as bm25s computes it)
MAX_SEGMENT_ROWS = 65_536  # postings address a segment's documents with uint16


@dataclass
class Postings:
    """One segment's BM25 postings, term-major and immutable: the documents holding `terms[j]` are
    `rows[ptr[j]:ptr[j+1]]` (ascending), each with its term frequency in `tfs`. No idf is baked
    in: document frequencies and the average length are taken over the live documents of all
    segments at query time, so adding or removing a segment never rewrites another."""

    terms: np.ndarray  # int32 term ids, ascending
    ptr: np.ndarray  # int64, len(terms) + 1
    rows: np.ndarray  # uint16 document rows within the segment
    tfs: np.ndarray  # uint8 term frequencies (capped at 255)
    doc_len: np.ndarray  # int32 tokens per document

    FILES = ("terms", "ptr", "rows", "tfs", "doc_len")

    @property
    def size(self) -> int:
        return len(self.doc_len)

    FROM_DOCS_BLOCK = 2048  # documents turned into postings at a time by `from_docs`

    @classmethod
    def from_docs(cls, docs: list[np.ndarray]) -> "Postings":
        """Postings of documents given as arrays of term ids (repeats counted), FROM_DOCS_BLOCK
        documents at a time, `merge`d (sorting all a segment's tokens at once took ~70 bytes a token).
        Usage: ``Postings.from_docs([np.array([3, 9, 3]), np.array([9])])``"""
        n = len(docs)
        if n > MAX_SEGMENT_ROWS:
            raise ValueError(f"a segment holds at most {MAX_SEGMENT_ROWS} documents, got {n}")
        if n > cls.FROM_DOCS_BLOCK:
            return cls.merge([(cls.from_docs(docs[k:k + cls.FROM_DOCS_BLOCK]), None)
                              for k in range(0, n, cls.FROM_DOCS_BLOCK)])
        lens = np.fromiter((len(d) for d in docs), dtype=np.int64, count=n)
        if not lens.sum():
            return cls._of(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), lens)
        tokens = np.concatenate([np.asarray(d, dtype=np.int64) for d in docs])
        keys, tfs = np.unique(tokens * n + np.repeat(np.arange(n), lens), return_counts=True)
        return cls._of(keys // n, keys % n, tfs, lens)

    MERGE_BLOCK = 1 << 20  # postings of one part handled at a time by `merge`

    @classmethod
    def merge(cls, parts: list[tuple["Postings", np.ndarray | None]]) -> "Postings":
        """One segment's postings from several, keeping the documents each `alive` mask keeps
        (None = all), renumbered in order. Each part is copied into its place in the output a
        block of terms at a time (MERGE_BLOCK postings), so besides the output (3 bytes a posting)
        a merge holds a few arrays of one block, however large the parts.

        Usage: ``Postings.merge([(a, None), (b, alive_b)])``"""
        keeps = [np.ones(p.size, bool) if alive is None else np.asarray(alive, bool) for p, alive in parts]
        terms = np.unique(np.concatenate([p.terms for p, _ in parts] or [np.zeros(0, np.int32)]))
        total = np.zeros(len(terms), np.int64)  # live postings of each term over all parts
        for (post, _), keep in zip(parts, keeps):
            for j0, j1, counts, _live in cls._live_blocks(post, keep):
                total[np.searchsorted(terms, post.terms[j0:j1])] += counts
        ptr = np.concatenate([[0], np.cumsum(total)]).astype(np.int64)
        rows, tfs = np.empty(int(ptr[-1]), np.uint16), np.empty(int(ptr[-1]), np.uint8)
        fill, offset = ptr[:-1].copy(), 0  # where each term's next posting goes
        for (post, _), keep in zip(parts, keeps):
            renumber = (np.cumsum(keep, dtype=np.int64) - 1 + offset).astype(np.int32)
            for j0, j1, counts, live in cls._live_blocks(post, keep):
                u = np.searchsorted(terms, post.terms[j0:j1])
                start = fill[u]
                # a live posting's place: its term's next free slot + its rank among the term's live ones
                first = np.cumsum(counts) - counts
                dest = np.repeat(start - first, counts) + np.arange(int(counts.sum()), dtype=np.int64)
                lo = int(post.ptr[j0])
                at = np.flatnonzero(live) + lo
                rows[dest] = renumber[post.rows[at]]
                tfs[dest] = post.tfs[at]
                fill[u] += counts
            offset += int(keep.sum())
        used = total > 0
        lens = np.concatenate([p.doc_len[k] for (p, _), k in zip(parts, keeps)] or [np.zeros(0, np.int32)])
        return cls(terms[used].astype(np.int32), np.append(ptr[:-1][used], ptr[-1]).astype(np.int64), rows, tfs,
                   lens.astype(np.int32))

    @classmethod
    def _live_blocks(cls, post: "Postings", keep: np.ndarray):
        """(first term, end term, live postings of each term, live mask of their postings) of
        consecutive blocks of about MERGE_BLOCK postings of `post`."""
        ptr, j0 = post.ptr, 0
        while j0 < len(post.terms):
            j1 = int(np.searchsorted(ptr, ptr[j0] + cls.MERGE_BLOCK, side="right")) - 1
            j1 = min(max(j1, j0 + 1), len(post.terms))
            live = keep[post.rows[int(ptr[j0]):int(ptr[j1])]]
            c = np.concatenate([[0], np.cumsum(live, dtype=np.int64)])
            yield j0, j1, c[ptr[j0 + 1:j1 + 1] - ptr[j0]] - c[ptr[j0:j1] - ptr[j0]], live
            j0 = j1

    @classmethod
    def _of(cls, terms: np.ndarray, rows: np.ndarray, tfs: np.ndarray, lens: np.ndarray) -> "Postings":
        uniq, starts = np.unique(terms, return_index=True)
        ptr = np.append(starts, len(terms)).astype(np.int64)
        return cls(uniq.astype(np.int32), ptr, rows.astype(np.uint16), np.minimum(tfs, 255).astype(np.uint8),
                   lens.astype(np.int32))

    def save(self, directory: Path) -> None:
        for name in self.FILES:
            np.save(directory / f"bm25_{name}.npy", getattr(self, name))

    @classmethod
    def load(cls, directory: Path) -> "Postings":
        # memory-mapped (shared through the page cache), as plain arrays (memmap slicing is slow)
        return cls(*(np.load(directory / f"bm25_{name}.npy", mmap_mode="r").view(np.ndarray) for name in cls.FILES))

    def docs_of(self, term_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, tfs) of one term (empty when the segment lacks it)."""
        # the key in the array's own dtype: a Python int would cast the whole (memory-mapped) array
        j = int(np.searchsorted(self.terms, np.int32(term_id)))
        if j == len(self.terms) or self.terms[j] != term_id:
            return self.rows[:0], self.tfs[:0]
        return self.rows[self.ptr[j]:self.ptr[j + 1]], self.tfs[self.ptr[j]:self.ptr[j + 1]]

    def lookup(self, term_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(which, rows, tfs) of every posting of several terms at once: `which[i]` is the index in
        `term_ids` of the term that posting `i` belongs to. One gather for all terms, no loop.
        Usage: ``which, rows, tfs = postings.lookup(np.array([3, 9], np.int32))``"""
        term_ids = np.asarray(term_ids, dtype=self.terms.dtype)  # no cast of the (memory-mapped) array
        if not len(self.terms) or not len(term_ids):
            return np.zeros(0, np.int64), self.rows[:0], self.tfs[:0]
        j = np.minimum(np.searchsorted(self.terms, term_ids), len(self.terms) - 1)
        found = self.terms[j] == term_ids
        starts = np.where(found, self.ptr[j], 0)
        counts = np.where(found, self.ptr[j + 1] - self.ptr[j], 0)
        total = int(counts.sum())
        which = np.repeat(np.arange(len(term_ids)), counts)
        at = np.arange(total, dtype=np.int64) + np.repeat(starts - (np.cumsum(counts) - counts), counts)
        return which, self.rows[at], self.tfs[at]


class LexicalIndex:
    """BM25 over the postings of several segments, each with its live-document mask; scores are
    indexed by position (segment offset + row). Term ids come from `lookup` (the store's vocabulary).

    An index is one snapshot's: term ids and document frequencies, once looked up, are kept for its
    lifetime (`CACHE_TERMS` at most), so a question costs no store statement for a term seen
    before. A new snapshot (a page added or removed, the store cleared) starts with empty caches.

    Usage: ``LexicalIndex([postings], [None], store_lookup).scores(["衡阳", "物流"])``"""

    CACHE_TERMS = 200_000

    def __init__(self, segments: list[Postings], alive: list[np.ndarray | None],
                 lookup: Callable[[list[str]], dict[str, int]]):
        self.segments = segments
        self.alive = alive
        self._lookup = lookup
        self.offsets = np.cumsum([0] + [s.size for s in segments])
        self.rows = int(self.offsets[-1])
        self.size = sum(s.size if a is None else int(a.sum()) for s, a in zip(segments, alive))
        total = sum(int(s.doc_len.sum() if a is None else s.doc_len[a].sum()) for s, a in zip(segments, alive))
        self.avg_len = total / self.size if self.size else 1.0
        self._ids: dict[str, int | None] = {}  # token → term id (None: not in the vocabulary)
        self._df: dict[int, int] = {}  # term id → live documents holding it
        self._lock = threading.Lock()
        self._norms: dict[int, np.ndarray] = {}  # segment → its documents' BM25 length norms (`_norm`)

    def _postings(self, term_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(which, positions, tfs, lengths) of the live postings of `term_ids` over all segments:
        one vectorized gather per segment (`Postings.lookup`), no loop over terms or documents."""
        which, pos, tfs, lens = [], [], [], []
        for k, (seg, alive) in enumerate(zip(self.segments, self.alive)):
            w, rows, tf = seg.lookup(term_ids)
            if alive is not None and len(rows):
                live = alive[rows]
                w, rows, tf = w[live], rows[live], tf[live]
            which.append(w)
            pos.append(rows.astype(np.int64) + self.offsets[k])
            tfs.append(tf)
            lens.append(seg.doc_len[rows])
        if not pos:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.int32)
        return np.concatenate(which), np.concatenate(pos), np.concatenate(tfs), np.concatenate(lens)

    def term_ids(self, tokens: list[str]) -> dict[str, int]:
        """The vocabulary ids of those tokens the archive has seen (cached for this snapshot)."""
        got = {t: self._ids.get(t, -1) for t in set(tokens)}  # -1: not looked up yet
        unknown = [t for t, i in got.items() if i == -1]
        if unknown:
            found = self._lookup(unknown)
            new = {t: found.get(t) for t in unknown}
            self._remember(self._ids, new)
            got.update(new)
        return {t: i for t, i in got.items() if i is not None}

    def _remember(self, cache: dict, items: dict) -> None:
        """Add to one of this snapshot's caches, emptying it first when it would pass CACHE_TERMS."""
        with self._lock:
            if len(cache) + len(items) > self.CACHE_TERMS:
                cache.clear()
            cache.update(items)

    def _idf(self, df) -> float | np.ndarray:
        return np.log(1.0 + (self.size - df + 0.5) / (df + 0.5))

    def doc_freq(self, term_ids: list[int]) -> np.ndarray:
        """Live documents holding each term (cached for this snapshot)."""
        got = {t: self._df.get(t) for t in term_ids}
        missing = [t for t, n in got.items() if n is None]
        if missing:
            which, _, _, _ = self._postings(np.array(missing, np.int64))
            new = dict(zip(missing, np.bincount(which, minlength=len(missing)).tolist()))
            self._remember(self._df, new)
            got.update(new)
        return np.array([got[t] for t in term_ids], np.int64)

    def idf(self, token: str) -> float:
        """Inverse document frequency (BM25's form, never negative); unseen tokens weigh most."""
        term_id = self.term_ids([token]).get(token)
        return float(self._idf(0 if term_id is None else int(self.doc_freq([term_id])[0])))

    def scores(self, query_tokens: list[str], mask: np.ndarray | None = None) -> np.ndarray:
        """BM25 score of every position for the query (zeros when nothing matches, for removed
        documents and outside `mask`, a boolean array over positions). All terms' postings are
        gathered at once per segment and scored into its slice; no loop over terms or documents."""
        ids = self.term_ids(query_tokens) if self.size and query_tokens else {}
        counts = Counter(t for t in query_tokens if t in ids)
        out = np.zeros(self.rows, dtype=np.float32)
        if not counts:
            return out
        terms = np.array([ids[t] for t in counts], np.int64)
        parts = []  # per segment: (k, which, rows, tfs) of its live postings
        for k, (seg, alive) in enumerate(zip(self.segments, self.alive)):
            which, rows, tf = seg.lookup(terms)
            if alive is not None and len(rows):
                live = alive[rows]
                which, rows, tf = which[live], rows[live], tf[live]
            parts.append((k, which, rows, tf))
        df = sum(np.bincount(w, minlength=len(terms)) for _, w, _, _ in parts)
        self._remember(self._df, dict(zip(terms.tolist(), df.tolist())))
        weight = (np.array(list(counts.values()), np.float64) * self._idf(df)).astype(np.float32)
        for k, which, rows, tf in parts:
            lo, hi = int(self.offsets[k]), int(self.offsets[k + 1])
            if mask is not None and len(rows):
                inside = mask[lo:hi][rows]
                which, rows, tf = which[inside], rows[inside], tf[inside]
            if not len(rows):
                continue
            tf = tf.astype(np.float32)
            norm = self._norm(k)[rows]
            out[lo:hi] = np.bincount(rows, weights=weight[which] * (tf / (tf + norm)), minlength=hi - lo)
        return out

    def _norm(self, k: int) -> np.ndarray:
        """K1 · (1 - B + B · length / average length) of every document of segment `k` (float32,
        computed once per snapshot: the average length is the snapshot's)."""
        norm = self._norms.get(k)
        if norm is None:
            dl = self.segments[k].doc_len.astype(np.float32)
            norm = self._norms[k] = (K1 * (1 - B + B * dl / np.float32(self.avg_len))).astype(np.float32)
        return norm
