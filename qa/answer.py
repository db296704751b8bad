"""answer: retrieved passages → an answer whose every claim carries a `[n]` citation marker.

Extractive by default: the sentences of the retrieved passages that best cover the question,
≤ 300 characters. With an OpenAI-compatible LLM configured, the LLM writes the answer from the
numbered passages; if it fails, the extractive answer comes back with a `warning`.
"Not found" when no passage covers the question's key terms well enough.

Usage::

    answerer = Answerer(retriever)
    result = answerer.ask("衡阳在先进制造业百强市榜单中排第几？")
    result.answer        # '…衡阳在该榜单中位列第88位。[1]'
    result.citations[0].hit.citation.label
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

import httpx

from qa.chunk import split_sentences
from qa.lexical import fold, tokenize, words
from qa.retrieve import Hit, HybridRetriever
from qa.understand import FULL_DATE, ISSUE_NO, YEAR_MONTH, Query, Turn, understand

log = logging.getLogger("qa.answer")

MAX_ANSWER_CHARS = 300
NOT_FOUND = "档案中未找到能回答这个问题的内容。以下是最接近的几段报道，供参考。"
# Share of the question's (idf-weighted) terms that some passage must contain: a floor that
# only catches questions about things the archive never mentions. Paraphrased questions that
# the archive does answer share as little as a fifth of their terms with the passage.
MIN_COVERAGE = 0.15
FOCUS_PASSAGES = 3  # the attribute a question asks for must be stated in one of these

# Question words that ask for a time or a quantity: the archive only answers such a question if
# it states the asked-for attribute ("总投资", "施行", "开幕") near the retrieved topic.
_WH_TIME = {"哪天", "哪天起", "哪一天", "何时", "几时", "哪年", "哪一年", "几月", "几号", "什么时候", "啥时候"}
_WH_COUNT = {"多少", "几", "几个", "几项", "几家", "几位", "几件", "几条", "几次", "几种", "几名", "几所",
             "第几", "第几个", "第几位", "第几名", "第几次", "几成"}
_MEASURES = {"个", "项", "家", "位", "件", "条", "次", "种", "名", "所", "亿元", "万元", "元", "亿", "万", "人",
             "年", "天", "倍"}
# Light words between a question word and the attribute it asks about.
_LIGHT = {"是", "有", "为", "了", "的", "在", "排", "排在", "占", "到", "达", "共", "一共", "总共", "大概", "约",
          "第", "里", "中", "正式", "具体", "目前", "已经", "现在", "预计", "计划", "时候", "起", "从", "是从",
          "都", "又", "还", "要", "会", "将", "能", "可以", "什么", "被", "由"}

_ASKS_NUMBER = re.compile(r"多少|几[个项家位件次名所年月天人]?|第几|多大|比重|比例|排名|排第")
_ASKS_DATE = re.compile(r"哪天|哪一天|什么时候|何时|哪年|哪一年|几月|几号|日期")
_HAS_NUMBER = re.compile(r"[0-9０-９]|[一二三四五六七八九十百千万亿两]+[个项家位件次名所年月日天人%％倍]")
_ASKS_PERSON = re.compile(r"谁|哪位|何人|哪个人|什么人")
# A person in a news sentence nearly always comes with an office or a title.
_HAS_PERSON = re.compile(r"书记|市长|省长|县长|区长|主席|总理|总统|首相|部长|厅长|局长|主任|委员长|经理|董事长|院士|教授|"
                         r"负责人|发言人|记者|同志|先生|女士")
_QUESTION_WORD = re.compile(r"几|多少|什么|哪|谁|怎么|怎样|如何|为何|是否|吗|呢")
_HAS_DATE = re.compile(r"\d{1,4}\s*[年月日]|[一二三四五六七八九十]+月|[上下]旬|今年|去年|明年")


@dataclass
class CitedPassage:
    n: int
    hit: Hit

    def to_dict(self) -> dict:
        return {"n": self.n, "chunk_id": self.hit.chunk_id, "text": self.hit.text,
                "citation": self.hit.citation.to_dict()}


@dataclass
class AnswerResult:
    question: str
    answer: str
    no_answer: bool
    citations: list[CitedPassage]
    query: Query
    warning: str | None = None
    pieces: list[str] = field(default_factory=list)  # the answer in the order it may be streamed

    def to_dict(self) -> dict:
        out = {"answer": self.answer, "no_answer": self.no_answer,
               "citations": [c.to_dict() for c in self.citations]}
        if self.warning:
            out["warning"] = self.warning
        return out


@dataclass
class _Sentence:
    text: str
    passage: int  # index into hits
    order: int  # position in the passage
    score: float


def not_found(query: Query, hits: list[Hit], message: str = NOT_FOUND) -> AnswerResult:
    """The "not in the archive" answer, listing the closest passages for the reader to judge."""
    return AnswerResult(query.question, message, True,
                        [CitedPassage(i + 1, h) for i, h in enumerate(hits[:3])], query, pieces=[message])


class Answerer:
    """Retrieve, decide whether the archive answers, and compose a cited answer."""

    def __init__(self, retriever: HybridRetriever, llm: "LLMClient | None" = None):
        self.retriever = retriever
        self.llm = llm

    def ask(
        self,
        question: str,
        history: list[Turn] | None = None,
        *,
        top_k: int = 5,
        date_from: str | None = None,
        date_to: str | None = None,
    ) -> AnswerResult:
        """Answer a question (with the conversation so far). Usage: ``answerer.ask("…", history)``"""
        query = understand(question, history)
        hits = self.retriever.search(query, top_k=top_k, date_from=date_from, date_to=date_to)
        weights = self._term_weights(query)
        coverage = [self._coverage(weights, h) for h in hits]
        focus = self.focus_terms(query.question)
        if not hits or max(coverage) < MIN_COVERAGE or not self._states_focus(focus, hits, coverage):
            return not_found(query, hits)
        extractive = self._extract(query, hits, weights, coverage, focus)
        if extractive.no_answer or self.llm is None:
            return extractive
        try:
            return self.llm.answer(query, hits)
        except LLMError as exc:
            log.warning("LLM upstream failed: %s", exc)  # the detail (URL, status) stays in the log
            extractive.warning = f"LLM upstream failed ({exc.kind}); extractive answer returned instead"
            return extractive

    # -- deciding whether the archive answers -------------------------------------------------
    @staticmethod
    def focus_terms(question: str) -> list[list[str]]:
        """For each time/quantity question word, the words naming the attribute it asks about
        (e.g. '生产总值是多少亿元' → [['生产总值', '亿元']]). 'Which' questions (哪几条) are not checked.

        Usage: ``Answerer.focus_terms("衡山科学城二期项目的总投资是多少？")`` → [['投资']]"""
        out = []
        for clause in re.split(r"[，。？！；、,?!;]", question):
            ws = words(clause)
            for i, w in enumerate(ws):
                is_time = w in _WH_TIME or (w == "什么" and i + 1 < len(ws) and ws[i + 1] == "时候")
                is_count = w in _WH_COUNT
                if not (is_time or is_count) or (i > 0 and ws[i - 1] == "哪"):
                    continue
                focus = []
                if is_time:  # the event whose time is asked: the words after the question word
                    focus = [x for x in ws[i + 1:] if x not in _LIGHT][:2]
                else:  # the quantity's subject before the question word, its noun after the measure
                    before = [x for x in ws[:i] if x not in _LIGHT]
                    after = [x for x in ws[i + 1:] if x not in _LIGHT]
                    if after and after[0] in _MEASURES:
                        after = after[1:]
                    focus = before[-1:] + after[:1]
                if focus:
                    out.append(focus)
        return out

    @staticmethod
    def _states_focus(checks: list[list[str]], hits: list[Hit], coverage: list[float]) -> bool:
        if not checks:
            return True
        # The attribute must stand in a passage about the question's topic, not in any passage
        # that happens to be retrieved (a "投资" in an unrelated story answers nothing).
        floor = 0.5 * max(coverage)
        on_topic = [h for h, c in zip(hits[:FOCUS_PASSAGES], coverage) if c >= floor]
        texts = [fold(f"{h.citation.headline or ''} {h.text}") for h in on_topic]
        return all(any(term in t for t in texts for term in focus) for focus in checks)

    # -- scoring ------------------------------------------------------------------------------
    def _term_weights(self, query: Query) -> dict[str, float]:
        lexical = self.retriever.archive.snapshot().lexical
        # The resolved question for a follow-up, but the new question's own terms weigh double.
        own = set(tokenize(query.question))
        weights: dict[str, float] = {}
        # Dates and issue numbers are filters on the paper, not words the passage repeats.
        text = query.search_text
        for pattern in (FULL_DATE, YEAR_MONTH, ISSUE_NO):
            text = pattern.sub(" ", text)
        for tok in tokenize(text):
            if len(tok) < 2 and not tok.isdigit():
                continue  # single characters are mostly noise from search-mode segmentation
            if _QUESTION_WORD.search(tok):
                continue  # '几位', '什么时候': the answer never repeats them
            weights[tok] = lexical.idf(tok) * (2.0 if tok in own else 1.0)
        return weights

    @staticmethod
    def _covered(weights: dict[str, float], text: str) -> float:
        if not weights:
            return 0.0
        t = fold(text)
        return sum(w for tok, w in weights.items() if tok in t) / sum(weights.values())

    @staticmethod
    def _beyond_headline(weights: dict[str, float], headline: str | None) -> dict[str, float]:
        """Question terms the headline already states set the topic; within the article, the
        sentence that answers is the one with the question's *other* terms."""
        if not headline:
            return weights
        h = fold(headline)
        return {t: w * (0.1 if t in h else 1.0) for t, w in weights.items()}

    def _coverage(self, weights: dict[str, float], hit: Hit) -> float:
        return self._covered(weights, f"{hit.citation.headline or ''} {hit.text}")

    def _extract(self, query: Query, hits: list[Hit], weights, coverage: list[float],
                 focus_checks: list[list[str]]) -> AnswerResult:
        asks_number = bool(_ASKS_NUMBER.search(query.question))
        asks_date = bool(_ASKS_DATE.search(query.question))
        asks_person = bool(_ASKS_PERSON.search(query.question))
        focus = {t for terms in focus_checks for t in terms}
        sentences: list[_Sentence] = []
        for i, hit in enumerate(hits):
            in_article = self._beyond_headline(weights, hit.citation.headline)
            for j, s in enumerate(split_sentences(hit.text)):
                if len(s) < 6:
                    continue
                # What the sentence covers of the question, helped by its passage's rank and
                # coverage; a sentence that names the asked-for attribute and holds the kind of
                # value asked for (a number, a date) is the likeliest answer. Long sentences
                # cover more terms by chance, so they pay a little for their length.
                folded = fold(s)
                score = self._covered(in_article, folded) + 0.25 * coverage[i] + 0.15 / (i + 1) - 0.05 * len(s) / 100
                if focus and any(t in folded for t in focus):
                    score += 0.15
                if asks_number and _HAS_NUMBER.search(s):
                    score += 0.2
                if asks_date and _HAS_DATE.search(s):
                    score += 0.2
                if asks_person and _HAS_PERSON.search(s):
                    score += 0.2
                sentences.append(_Sentence(s, i, j, score))
        sentences.sort(key=lambda s: -s.score)
        chosen: list[_Sentence] = []
        seen: set[str] = set()
        used = 0
        if not sentences:
            return not_found(query, hits)
        best = sentences[0].score
        for s in sentences:
            if s.score < best - 0.4 * abs(best) or len(chosen) >= 3:
                break
            key = re.sub(r"\W", "", fold(s.text))[:24]  # OCR repeats and overlapping passages
            if key in seen:
                continue
            seen.add(key)
            if used + len(s.text) > MAX_ANSWER_CHARS:
                if chosen:
                    continue
                s = _Sentence(s.text[: MAX_ANSWER_CHARS - 1] + "…", s.passage, s.order, s.score)
            chosen.append(s)
            used += len(s.text)
        # Read in document order within each passage, best passage first.
        first_seen: dict[int, int] = {}
        for s in chosen:
            first_seen.setdefault(s.passage, len(first_seen))
        chosen.sort(key=lambda s: (first_seen[s.passage], s.order))
        numbers: dict[int, int] = {}
        pieces = []
        for s in chosen:
            n = numbers.setdefault(s.passage, len(numbers) + 1)
            pieces.append(f"{s.text}[{n}]")
        citations = [CitedPassage(n, hits[i]) for i, n in numbers.items()]
        return AnswerResult(query.question, "".join(pieces), False, citations, query, pieces=pieces)


# -- the optional LLM answer, streamed (transport and marker checks: qa.llm) ------------------------
import threading  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from qa.llm import ChatStream, CitationMarkers, LLMError  # noqa: E402  (LLMError is caught above)

_LLM_SYSTEM = (
    "你是衡阳日报档案的问答助手。只根据用户给出的编号报道片段回答问题，用简体中文，简洁（不超过300字）。"
    "每一句事实后面用 [n] 标注所依据的片段编号。片段不能回答问题时，只回答：档案中未找到相关内容。"
)
LLM_INTERRUPTED = "……（回答中断）"


class StreamingAnswerResult(AnswerResult):
    """An LLM answer read from the upstream while it is being written.

    `pieces` yields the text as it arrives, its `[n]` markers checked (`qa.llm.CitationMarkers`);
    it can be iterated once, from any one thread. While the stream runs, `citations` are all the
    passages the LLM was given, numbered as it saw them, and `no_answer` is False. When it ends
    (`answer` and `to_dict()` read it to the end first) the citations shrink to the passages the
    answer marks, and an answer that marks none is the LLM saying the passages do not answer
    (`no_answer`, the closest passages listed). An upstream failure mid-answer keeps what was
    written, ends it with `LLM_INTERRUPTED` and sets `warning`.

    Usage::

        result = LLMClient(url, model).answer(query, hits)   # back at the first token
        for piece in result.pieces:
            send(piece)
        final = result.to_dict()                              # answer, trimmed citations
    """

    def __init__(self, query: Query, hits: list[Hit], tokens: Iterator[str]):
        self._hits = hits
        self._tokens = tokens
        self._markers = CitationMarkers(len(hits))
        self._written: list[str] = []
        self._lock = threading.RLock()
        self._finished = False
        given = [CitedPassage(n, h) for n, h in enumerate(hits, 1)]
        super().__init__(query.question, "", False, given, query, pieces=self._stream())

    @property
    def answer(self) -> str:
        self._drain()
        return self._answer

    @answer.setter
    def answer(self, value: str) -> None:
        self._answer = value

    def to_dict(self) -> dict:
        self._drain()
        return super().to_dict()

    def close(self) -> None:
        """Stop reading (the reader went away): the upstream connection closes now."""
        with self._lock:
            if not self._finished:
                self.warning = "the answer stream was closed before the LLM finished"
                self._finish("")

    def _stream(self) -> Iterator[str]:
        try:
            while (piece := self._next_piece()) is not None:
                if piece:
                    yield piece
        finally:  # an abandoned iterator (client gone) must not keep the upstream open
            self.close()

    def _drain(self) -> None:
        while self._next_piece() is not None:
            pass

    def _next_piece(self) -> str | None:
        with self._lock:
            if self._finished:
                return None
            try:
                token = next(self._tokens)
            except StopIteration:
                return self._finish(self._markers.flush())
            except LLMError as exc:
                log.warning("LLM upstream failed mid-answer: %s", exc)
                self.warning = f"LLM upstream failed mid-answer ({exc.kind}); the answer is incomplete"
                return self._finish(self._markers.flush() + LLM_INTERRUPTED)
            piece = self._markers.feed(token)
            self._written.append(piece)
            return piece

    def _finish(self, tail: str) -> str:
        self._finished = True
        close = getattr(self._tokens, "close", None)
        if close:
            close()
        self._written.append(tail)
        self._answer = "".join(self._written).strip()
        used = sorted(self._markers.used)
        if used:
            self.citations = [CitedPassage(n, self._hits[n - 1]) for n in used]
        elif self.warning is None:  # nothing cited: the LLM found no answer in the passages
            self.no_answer = True
            self.citations = not_found(self.query, self._hits, self._answer).citations
        return tail


class LLMClient:
    """An OpenAI-compatible chat-completions upstream (`QA_LLM_BASE_URL`, `QA_LLM_MODEL`,
    `QA_LLM_API_KEY`) that writes the answer from the numbered passages, streamed."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 30.0):
        self.chat = ChatStream(base_url, model, api_key, timeout)

    @classmethod
    def from_settings(cls, settings) -> "LLMClient | None":
        """The configured upstream, or None when `QA_LLM_BASE_URL`/`QA_LLM_MODEL` are unset.

        Usage: ``Answerer(retriever, LLMClient.from_settings(get_settings()))``"""
        if not (settings.llm_base_url and settings.llm_model):
            return None
        return cls(settings.llm_base_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout)

    def answer(self, query: Query, hits: list[Hit]) -> StreamingAnswerResult:
        """The LLM's answer, returned at its first token; `LLMError` if none comes (connection,
        HTTP status, timeout), so that the caller can fall back to the extractive answer."""
        numbered = "\n\n".join(f"[{i}] {h.citation.label}\n{h.text}" for i, h in enumerate(hits, 1))
        messages = [
            {"role": "system", "content": _LLM_SYSTEM},
            {"role": "user", "content": f"报道片段：\n{numbered}\n\n问题：{query.search_text}"},
        ]
        return StreamingAnswerResult(query, hits, self.chat.stream(messages))
