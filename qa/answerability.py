"""answerability: does the archive answer this question? A logistic model over scores the
answerer computes anyway, with constants fitted on labelled questions.

The features (`Answerability`) are measured on the retrieved passages of one question:

- ``sentence_cos``: cosine of the question to its best-matching candidate sentence (the
  embedding model: does some sentence say what is asked?);
- ``passage_cos``: cosine of the question to its best retrieved passage (is the topic there?);
- ``coverage``: the largest idf-weighted share of the question's content terms that one passage
  (with its headline) contains;
- ``sentence_coverage``: the same share for the best answer sentence alone;
- ``missing``: the weight share of the heaviest question term that none of the top passages
  contains (the asked-for attribute - '定价', '床位', '院长' - that the page never states);
- ``sentence_missing``: the same for the best answer sentences (the term is on the page, but
  not where the answer is: '衡变公司的董事长' when 董事长 belongs to another company);
- ``value_missing``: when the question asks for a year, a date, a quantity, a person, an
  organisation or a place: 0 if the best answer sentence holds a value of that kind that the
  question does not already name (`value_stated`), 0.5 if only one of the next best does, 1 if
  none does; 0 for other questions;
- ``slot_missing``: the share of the question's *answer-slot* words (`slot_terms`: the content
  words next to its question word, '开幕' in '哪天开幕', '院长' in '院长是谁', '开发' in '由哪家公司开发')
  that the best of the answer sentences (with its headline) lacks: the page names the topic but
  not the asked-for relation;
- ``entity_missing``: the share of the question's named entities and numbered names
  (`entity_terms`: jieba's person, place, organisation and proper-noun tags, '第十六届') that
  none of the top passages (with headlines) contains: '伊朗' on a page about 伊拉克;
- ``sentence_entity_missing``: the same for the best answer sentences, with their headlines;
- ``asks_list``: 1 when the question asks for several items (the answerer's list rule): such a
  question is answered across articles, so no one sentence holds all its terms;
- ``value_coverage``: of the best answer sentences that hold a value of the asked-for kind (all
  of them when the question asks for none), the largest idf-weighted share of the question's
  terms that one of them states with its headline (`term_present`): the value has to stand
  where the question's subject does ('第88位' is a rank, but of 先进制造业, not of 营商环境);
- ``joint_missing``: the smallest share of the question's slot and entity terms together that
  one of those value-holding sentences (with its headline) lacks; 1 when none holds the value.
  A page that says when the 党代会 was *held* but only elsewhere what *opened* has the terms,
  but never in one sentence with a date.
- ``top_score``: the fused retrieval score of the best passage;
- ``value_near``: the largest idf-weighted share of the question's terms within one *clause*
  holding a value of the asked-for kind and the clauses either side of it (`value_near`): the
  value has to stand next to the subject, not elsewhere in a long sentence.
- ``valued_cos``: the best cosine to the question among *all* candidate sentences that hold a
  value of the asked-for kind (any sentence when it asks for none), not only the best few: a
  near-miss page has on-topic sentences, but the one with a date is about something else, so
  its cosine is lower; a paraphrase shares few words, but the sentence with the value still sits
  close to it in meaning (the lexical features cannot see that);
- ``bound_cos``: the same among those that also state every slot term (with their headline):
  the value stated together with the asked-for relation.

Values are looked for outside the paper's own lines (`without_own_lines`): a wire dateline
('新华社北京11月29日电') or a byline names no venue, date or person of the story, just as the
masthead date is no date the story reports.

Terms count as stated literally or as an abbreviation either way (`term_present`: '跨境电商' in
'跨境电子商务', '人民代表大会' in '市人大').

The constants live in ``qa/data/not_found_model.json``. Refit them after a change to the
answerer, the embedding model or the eval files with::

    PYTHONPATH=. python eval/fit_not_found.py --index /tmp/idx

which runs the answerer over eval/fresh.jsonl, dev.jsonl, notfound.jsonl, paraphrase.jsonl and
calibrate.jsonl, fits on the ``"split": "fit"`` questions (all of a file without splits), picks the
threshold that flags the most unanswerable questions while keeping answerable questions wrongly
"not found" at or below 5 % (judged on out-of-fold probabilities: the model's own probabilities of
the questions it was fitted on are optimistic), writes the JSON and prints the figures per file
and split and the trade-off on the held-out questions. Which features the model uses is chosen
there (`FEATURES`), by repeated random halvings of all files (``--halvings``) and
cross-validation inside the fit half (``--cv``). The fitted threshold is in the JSON.

Usage::

    model = NotFoundModel.load()
    model.probability(features)   # P(the archive answers), 0..1
    model.answers(features)       # probability >= model.threshold
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path

import numpy as np

from qa.lexical import fold
from qa.understand import FULL_DATE, ISSUE_NO, YEAR_MONTH

MODEL_FILE = "not_found_model.json"

# What kind of value a question asks for, and how such a value looks in a news sentence. Only
# these kinds are checked: they are where a near-miss page states everything but the value
# ("哪天开幕" next to "即将召开", "负责人是谁" next to "相关负责人介绍"). '哪几条河' asks for
# names, not a count.
# Measure words: what a count is a count of ('多少项', '几批', '哪座'). After 一 these are vague
# ('一批项目', '新一轮', '一场雨'), no count.
_MEASURES = "个项家位件次名所种条座段份批轮届支块台场篇部"
_VAGUE_AFTER_ONE = "批轮场份块段"
_MEASURE_WORDS = frozenset(_MEASURES)
_ASKS = {
    "year": re.compile(r"哪[一]?年"),
    "date": re.compile(r"哪[一]?[天日]|何时|什么时候|(?:什么|哪一?段)时间|哪个月|几[月号时]|日期"),
    "quantity": re.compile(rf"多少|(?<!哪)几[{_MEASURES}成十百千万亿年天级]|第几|多大|比重|比例"),
    # '哪些市领导' asks for people (the place word qualifies a role); '什么领导小组' does not
    "person": re.compile(r"谁|哪位|何人|什么人|什么名字|(?:哪|什么)[些位个名]?(?:[省市县区乡镇村局]级?|外国|党员)?"
                         r"(?:领导(?!小组|体制|机制|班子)|负责人|官员|干部|嘉宾)"),
    "organisation": re.compile(r"哪(?:家|个|些)?(?:公司|企业|单位|机构|部门)"),
    "place": re.compile(r"(?:哪|什么)(?:座|个|些)?(?:外地)?(?:城市|地方|地点|国家|省|市|县|区|片区)(?!层面|级(?!市))"
                        r"|在哪[里儿]?(?:举[办行]|召开)|哪国"),
    "document": re.compile(r"(?:哪|什么)[份部项些个]?[\u4e00-\u9fff]{0,2}?(?:文件|协议|报告|条例|意见|方案|通知|讲话|文章)"),
    "reason": re.compile(r"为什么|为何|什么原因|原因是什么"),
}
# jieba part-of-speech tags of a value of each kind, where a regular expression cannot see one.
_VALUE_TAGS = {"person": ("nr",), "organisation": ("nt",), "place": ("ns",)}
# The kinds of organisation a name ends with ('中国恒大集团公司', '南华大学附一医院'), where jieba's
# tagger gives the name no 'nt' (`organisation_names`).
_ORGANISATION_KINDS = re.compile(r"(?:公司|集团|银行|大学|学院|医院|研究院|研究所|研究中心|协会|商会|委员会)$")
# Tags of a name or a numbered name ('第十六届'): entities a near-miss question adds to the page.
_ENTITY_TAGS = ("nr", "ns", "nt", "nz", "j")
# The question words an answer slot sits next to (the rule is fitted, this only finds the slot).
QUESTION_WORD = re.compile(r"几|多少|什么|哪|谁|怎么|怎样|如何|为何|为什么|是否|吗|呢")
_SLOT_TAGS = ("n", "v", "a", "b", "l", "j", "t")
_COPULA = frozenset("是 有 在 为 的 了 和 与 同 要 将 会 能 对".split())
# Words for the form of the answer, not a relation the page states: '全称是什么' is answered by
# the name itself, '叫什么名字' by a name, '谈了哪些内容' by what was said; no page writes them.
# Nor do '时候', '时间', '地点' of '什么时候生效', '在什么地点举行': a date or a place answers them.
# Both belong to the question phrase ('什么时候' + '生效'), as a measure word does ('多少项' +
# '专项行动', whatever tag jieba gives '项'): the slot is looked for beyond them.
_ANSWER_FORM = frozenset("全称 简称 名称 名字 内容 时候 时间 日期 地点 地方".split())
_VALUES = {
    "year": re.compile(r"\d{4}\s*年|[今去明前]年"),
    "date": re.compile(r"\d{1,2}\s*[月日号]|[一二三四五六七八九十]+月|[上中下]旬|\d+[:：]\d+"),
    # a count in words before what it counts ('三批', '四年'); '一批', '一场' are no count; nor
    # is '二十大' or '十九大' (a party congress) where '六大行动', '两大战略' are
    "quantity": re.compile(r"\d+(?:\.\d+)?\s*(?![年月日号\d.])"
                           rf"|[一二三四五六七八九十百千万亿两]+[{''.join(c for c in _MEASURES if c not in _VAGUE_AFTER_ONE)}成倍年天级]"
                           rf"|[二三四五六七八九十百千万亿两]+[{_VAGUE_AFTER_ONE}]"
                           r"|(?<![一二三四五六七八九十第])(?:[两三四五六七八九]|十)大(?!精神|报告|以来|代表)"
                           r"|第[一二三四五六七八九十百千\d]+"),
    "document": re.compile(r"《[^》]{2,}》"),
    "reason": re.compile(r"因为|由于|原因(?:是|在于)|之所以"),
}


def asked_value(question: str) -> str | None:
    """'year', 'date', 'quantity', 'person', 'organisation', 'place', 'document', 'reason' or None:
    the kind of value the question asks for.

    Usage: ``asked_value("湖南省第十二次党代会是哪天开幕的？")`` → 'date'"""
    return next((kind for kind, pattern in _ASKS.items() if pattern.search(question)), None)


# Where and when a story was filed, and who wrote it, are the paper's own (as its masthead date
# is): a wire dateline ('新华社北京11月29日电') or a byline ('本报讯（记者 陈润）', '■本报记者 陈润')
# names no venue, date or person the story reports. A byline's names stand apart (spaces around
# them): '本报记者从衡阳市统计局获悉' keeps everything after 本报记者.
OWN_LINE = re.compile(r"(?:新华社|中新社)[\u4e00-\u9fff]{2,8}?\d{1,2}\s*月\s*\d{1,2}\s*日\s*电"
                      r"|[\u4e00-\u9fff]{0,6}讯\s*[（(][^）)]{0,40}[）)]"
                      r"|■?\s*本报(?:记者|评论员|通讯员)(?:\s+[\u4e00-\u9fff]{2,4}(?![\u4e00-\u9fff]))*")


def without_own_lines(sentence: str) -> str:
    """`sentence` without the paper's own lines (`OWN_LINE`: datelines, bylines).

    Usage: ``without_own_lines("新华社北京11月29日电 国家主席习近平29日晚…")`` → '， 国家主席习近平29日晚…'"""
    return OWN_LINE.sub("，", sentence)


# The unit a quantity question asks in ('第几位' → 位, '多少亿元' → 亿元, '几个' → 个): a number in
# that unit answers it, a number in another ('第四批' for '第几位') only may.
_ASKED_UNIT = re.compile(rf"(?:多少|几)([{_MEASURES}]|[万亿]?元|[万亿]|%|倍|年|天|人|户|亩|公里|平方米|吨)")
_NUMBER = r"[\d.]+|[一二三四五六七八九十百千万亿两〇零]+"


def unit_stated(question: str, sentence: str) -> bool:
    """Whether `sentence` states a number in the unit a quantity question asks in (a number the
    question does not name); False when the question names no unit.

    Usage: ``unit_stated("衡阳排第几位？", "衡阳在该榜单中位列第88位。")`` → True"""
    m = _ASKED_UNIT.search(question)
    if not m:
        return False
    asked = fold(question)
    unit = re.escape(m.group(1))
    return any(v.group() not in asked for v in re.finditer(rf"(?:{_NUMBER})\s*{unit}", without_own_lines(sentence)))


def value_stated(question: str, sentence: str) -> bool:
    """Whether `sentence` holds a value of the kind the question asks for (a date, a number, a
    person's name as jieba's tagger sees it, an organisation by its kind: `organisation_names`)
    that the question does not already name, not counting datelines and bylines
    (`without_own_lines`); True when it asks for none of these.

    Usage: ``value_stated("组长是谁？", "督察组组长张兰通报督察报告")`` → True"""
    kind = asked_value(question)
    if kind is None:
        return True
    asked = fold(question)
    sentence = without_own_lines(sentence)
    if kind in _VALUES:
        return any(m.group().strip() not in asked for m in _VALUES[kind].finditer(sentence))
    if kind == "organisation" and any(not any(n in asked for n in names) for names in organisation_names(sentence)):
        return True
    return any(flag.startswith(_VALUE_TAGS[kind]) and len(word) >= 2 and word not in asked
               for word, flag in _tags(sentence))


def organisation_names(text: str) -> list[tuple[str, ...]]:
    """Organisations named in `text` by their kind, each as its readings from the longest to the
    shortest: a run of nouns ('n', 'j', 'b' tags) that starts at a name word (jieba's 'ns', 'nz',
    'nt', 'j') and ends in a word of `_ORGANISATION_KINDS` ('公司', '集团', '大学' …), read from each
    name word in it; a person's name ends a run. Not a bare '公司'. A question names the
    organisation when it holds any reading ('中国中铁股份有限公司' of '会见中国中铁…').

    Usage: ``organisation_names("会见中国恒大集团公司总裁")`` → [('中国恒大集团公司', '恒大集团公司')]"""
    out: list[tuple[str, ...]] = []
    words: list[str] = []  # the run so far, from its first name word on
    starts: list[int] = []  # where in it each name word begins
    for word, flag in _tags(text):
        if not flag.startswith(("n", "j", "b")) or flag.startswith("nr"):
            words, starts = [], []
            continue
        if flag.startswith(_ENTITY_TAGS):
            starts.append(len(words))
        if starts:
            words.append(word)
            if _ORGANISATION_KINDS.search(word):
                out.append(tuple("".join(words[i:]) for i in starts))
    return out


@lru_cache(maxsize=20_000)
def _tags(text: str) -> tuple[tuple[str, str], ...]:
    """jieba (word, tag) pairs with the archive's dictionary (`qa.understand.tagged`), cached."""
    from qa.understand import tagged

    return tuple(tagged(text))


def _asked_phrase_end(words: list[tuple[str, str]], i: int) -> int:
    """The last index of the question phrase starting at `i`: the question word with the
    measure words and answer-form words after it ('哪' '座' in '哪座城市举办', '什么' '时候' in
    '什么时候生效'), so that the slot is looked for beyond it."""
    while i + 1 < len(words) and (words[i + 1][1] == "q" or words[i + 1][0] in _MEASURE_WORDS
                                  or words[i + 1][0] in _ANSWER_FORM):
        i += 1
    return i


def slot_terms(question: str) -> list[str]:
    """The content words next to the question phrase, within its clause: what the question asks
    about its subject ('开幕' in '党代会是哪天开幕的', '院长' in '华新分院的院长是谁', '举办' in
    '在哪座城市举办'). Names are the subject, not the slot, and are left out.

    Usage: ``slot_terms("市中心医院华新分院的院长是谁？")`` → ['院长']"""
    words = list(_tags(question))
    out: list[str] = []
    for i, (word, _) in enumerate(words):
        if not QUESTION_WORD.search(word):
            continue
        end = _asked_phrase_end(words, i)
        for j in (i - 2, i - 1, end + 1, end + 2):
            if not 0 <= j < len(words) or any(words[k][1] == "x" for k in range(min(i, j), max(i, j) + 1)):
                continue
            w, flag = words[j]
            if (flag.startswith(_SLOT_TAGS) and not flag.startswith(_ENTITY_TAGS) and len(w) >= 2
                    and w not in _COPULA and w not in _ANSWER_FORM and not QUESTION_WORD.search(w)
                    and w not in out):
                out.append(w)
    return out


# What a question says about the paper itself (its date, issue number, name, page) selects
# the issue; it is no name of the story the page must state.
_ABOUT_THE_PAPER = re.compile("|".join(p.pattern for p in (FULL_DATE, YEAR_MONTH, ISSUE_NO))
                              + r"|[\u4e00-\u9fff]{2}[日晚]报|头版|第[一二三四五六七八九十\d]+版")


def entity_terms(question: str) -> list[str]:
    """The names and numbered names a question holds ('伊朗', '华新', '第十六届'); not the class
    of thing asked for ('城市' in '哪座城市', not '非洲' in '多少个非洲国家'), nor the paper's own date, issue number or name.

    Usage: ``entity_terms("习近平同伊朗总统通电话时谈了哪些内容？")`` → ['习近平', '伊朗']"""
    words = list(_tags(_ABOUT_THE_PAPER.sub("，", question)))
    asked = {_asked_phrase_end(words, i) + 1 for i, (w, _) in enumerate(words) if "哪" in w}  # 哪座城市
    out = []
    for i, (word, flag) in enumerate(words):
        numbered = flag == "m" and re.search(r"第.+[届次号期]|\d", word)
        if ((flag.startswith(_ENTITY_TAGS) or numbered) and len(word) >= 2 and i not in asked
                and not QUESTION_WORD.search(word) and word not in out):
            out.append(word)
    return out


_CUT = re.compile(r"[\W_]+")  # an abbreviation never spans punctuation
_NUMBERED = re.compile(r"[\d一二三四五六七八九十百千万亿两〇零]")  # '第十六届' is not '第六届': exact only
ABBREVIATION_SPAN = 2  # an abbreviation's characters lie within twice its length


def _abbreviates(short: str, long: str) -> bool:
    """Whether `short` is `long` abbreviated the Chinese way: its characters in order, the first
    one first, not one contiguous piece, within `ABBREVIATION_SPAN` times its length
    ('跨境电商' ⊂ '跨境电子商务', '人大' ⊂ '人民代表大会', '党代会' ⊂ '党代表大会')."""
    if len(short) < 2 or len(long) <= len(short) or long[0] != short[0] or short in long:
        return False
    at = 0
    for ch in short[1:]:
        at = long.find(ch, at + 1)
        if at < 0:
            return False
    return at <= ABBREVIATION_SPAN * len(short)


def _abbreviated_in(term: str, run: str) -> bool:
    """`term` abbreviates a stretch of `run`, or a stretch of `run` abbreviates `term`. A
    two-character term must abbreviate one whole word of the run ('人大' ⊂ '人民代表大会', but
    '全称' is not in '全面称赞')."""
    if len(term) == 2:
        return any(_abbreviates(term, word) for word, _ in _tags(run))
    for i in (i for i, ch in enumerate(run) if ch == term[0]):
        window = run[i:i + ABBREVIATION_SPAN * len(term) + 1]
        if _abbreviates(term, window) or any(_abbreviates(window[:n], term) for n in range(2, len(term))):
            return True
    return False


# The same sentences and headlines are checked for every term of a question: fold each once.
_folded = lru_cache(maxsize=4096)(fold)


def term_present(term: str, text: str) -> bool:
    """Whether `text` states `term`: literally, or one as an abbreviation of the other within a
    run of text between punctuation ('跨境电商' is in '跨境电子商务综合试验区', '人民代表大会' in
    '市人大常委会'). Numbered names ('第十六届') match only literally.

    Usage: ``term_present("跨境电商", "中国(衡阳)跨境电子商务综合试验区")`` → True"""
    t, text = _folded(term), _folded(text)
    if t in text:
        return True
    if len(t) < 2 or _NUMBERED.search(t):
        return False
    return any(t[0] in run and _abbreviated_in(t, run) for run in _CUT.split(text))


def missing_share(terms: list[str], text: str) -> float:
    """The share of `terms` that `text` does not state (`term_present`: literally or as an
    abbreviation either way); 0 when there are none.

    Usage: ``missing_share(["院长"], "华新分院副院长…")`` → 0.0"""
    if not terms:
        return 0.0
    return sum(not term_present(term, text) for term in terms) / len(terms)


def stated_share(weights: dict[str, float], text: str) -> float:
    """The weight share of the question's terms (`weights`: term → idf) that `text` states
    (`term_present`); 0 when there are none.

    Usage: ``stated_share({"跨境电商": 5.0, "全称": 3.0}, "跨境电子商务综合试验区")`` → 0.625"""
    total = sum(weights.values())
    if not total:
        return 0.0
    return sum(w for term, w in weights.items() if term_present(term, text)) / total


@dataclass
class Answerability:
    sentence_cos: float = 0.0
    passage_cos: float = 0.0
    coverage: float = 0.0
    sentence_coverage: float = 0.0
    missing: float = 1.0
    sentence_missing: float = 1.0
    value_missing: float = 0.0
    slot_missing: float = 0.0
    entity_missing: float = 0.0
    sentence_entity_missing: float = 0.0
    asks_list: float = 0.0
    value_coverage: float = 0.0
    joint_missing: float = 1.0
    top_score: float = 0.0
    value_near: float = 0.0
    valued_cos: float = 0.0
    bound_cos: float = 0.0

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def vector(self) -> list[float]:
        return [float(getattr(self, n)) for n in self.names()]

    def to_dict(self) -> dict:
        return {k: round(v, 4) for k, v in asdict(self).items()}


FOCUS_PASSAGES = 3  # the passages whose terms count as "stated" for the `missing` feature
ANSWER_SENTENCES = 3  # the best sentences, where the asked-for terms and value must stand
ASKS_LIST = re.compile(r"哪些|分别|都有(什么|哪)|哪几")  # the answerer's list rule (qa.answer uses this one)
_CLAUSE = re.compile(r"[^，,；;：:。！？!?]+")


def clauses(sentence: str) -> list[str]:
    """The clauses of a sentence (between commas, semicolons, colons and sentence ends).

    Usage: ``clauses("11月29日，衡阳市…大会召开。")`` → ['11月29日', '衡阳市…大会召开']"""
    return [c.strip() for c in _CLAUSE.findall(sentence) if c.strip()]


def value_near(question: str, weights: dict[str, float], sentences: list[str]) -> float:
    """The largest idf-weighted share of the question's terms stated within one clause holding
    a value of the asked-for kind and the clauses either side of it: the value must stand next
    to the subject ('第88位' beside '先进制造业百强市', not beside '营商环境'). Any clause counts
    when the question asks for no such kind; 0 when no clause holds the value.

    Usage: ``value_near("衡阳排第几位？", {"衡阳": 3.0}, ["衡阳在该榜单中位列第88位。"])`` → 1.0"""
    best = 0.0
    for sentence in sentences:
        parts = clauses(sentence)
        for i, part in enumerate(parts):
            if value_stated(question, part):
                best = max(best, stated_share(weights, "，".join(parts[max(0, i - 1):i + 2])))
    return best


def assess(question: str, weights: dict[str, float], hits, sentences, qvec, vectors) -> Answerability:
    """The scores the not-found decision is made from, measured on the retrieved `hits` (with
    `.text`, `.score`, `.citation.headline`) and their candidate `sentences` (best first, with
    `.text`, `.passage`, `.cos`); `vectors.of(texts)` embeds passage-side texts (`SentenceVectors`),
    `qvec` is the question's vector and `weights` its terms' idf.

    Usage: ``features = assess(q, weights, hits, sentences, qvec, answerer.vectors)``"""
    if not sentences:
        return Answerability()
    texts = [f"{h.citation.headline or ''} {h.text}" for h in hits]
    passage_cos = float(np.max(vectors.of([h.text for h in hits]) @ qvec))
    best = sentences[:ANSWER_SENTENCES]
    headed = [f"{hits[s.passage].citation.headline or ''} {s.text}" for s in best]
    near = " ".join(headed)
    slots, entities = slot_terms(question), entity_terms(question)
    valued = [t for s, t in zip(best, headed) if value_stated(question, s.text)]
    stated = [value_stated(question, s.text) for s in best]
    return Answerability(
        sentence_cos=max(s.cos for s in sentences), passage_cos=passage_cos,
        coverage=max(stated_share(weights, t) for t in texts), sentence_coverage=stated_share(weights, near),
        missing=_heaviest_missing(weights, " ".join(texts[:FOCUS_PASSAGES])),
        sentence_missing=_heaviest_missing(weights, near),
        value_missing=0.0 if stated[0] else 0.5 if any(stated) else 1.0,
        slot_missing=min(missing_share(slots, t) for t in headed),
        entity_missing=missing_share(entities, " ".join(texts[:FOCUS_PASSAGES])),
        sentence_entity_missing=missing_share(entities, near),
        asks_list=float(bool(ASKS_LIST.search(question))),
        value_coverage=max((stated_share(weights, t) for t in valued), default=0.0),
        joint_missing=min((missing_share(slots + entities, t) for t in valued), default=1.0),
        top_score=float(hits[0].score), value_near=value_near(question, weights, [s.text for s in best]),
        **_bound_cosines(question, hits, sentences, slots))


def _bound_cosines(question: str, hits, sentences, slots: list[str]) -> dict[str, float]:
    """``valued_cos``: the best cosine to the question among all candidate sentences that hold a
    value of the asked-for kind (`value_stated`); ``bound_cos``: among those that also state every
    slot term (`slot_terms`, with the sentence's headline). The lowest candidate cosine when none
    does. Both look past the best few sentences: the sentence that states the value may rank lower."""
    floor = min(s.cos for s in sentences)
    valued = [s for s in sorted(sentences, key=lambda s: -s.cos) if value_stated(question, s.text)]
    bound = (s for s in valued if missing_share(slots, f"{hits[s.passage].citation.headline or ''} {s.text}") == 0)
    valued_cos = valued[0].cos if valued else floor
    bound_cos = next(bound, None)
    bound_cos = bound_cos.cos if bound_cos is not None else floor
    return {"valued_cos": valued_cos, "bound_cos": bound_cos}


def _heaviest_missing(weights: dict[str, float], text: str) -> float:
    """The weight share of the heaviest question term that `text` does not state."""
    total = sum(weights.values()) or 1.0
    return max((w for term, w in weights.items() if not term_present(term, text)), default=0.0) / total


@dataclass
class NotFoundModel:
    """P(answerable) = sigmoid(bias + Σ weight·(feature − mean)/scale); "not found" below `threshold`."""

    weights: dict[str, float]
    bias: float
    mean: dict[str, float]
    scale: dict[str, float]
    threshold: float = 0.5
    fitted_on: str = ""

    def probability(self, a: Answerability) -> float:
        z = self.bias + sum(w * (getattr(a, n) - self.mean.get(n, 0.0)) / (self.scale.get(n) or 1.0)
                            for n, w in self.weights.items())
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def answers(self, a: Answerability) -> bool:
        return self.probability(a) >= self.threshold

    @classmethod
    def load(cls, path: Path | None = None) -> "NotFoundModel":
        """The fitted model (the packaged one unless `path` names another JSON file).

        Usage: ``NotFoundModel.load().answers(features)``"""
        if path is None:
            text = (resources.files("qa") / "data" / MODEL_FILE).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def fit_logistic(rows: list[list[float]], labels: list[int], names: list[str], l2: float = 0.1) -> NotFoundModel:
    """Standardize the features and fit an L2-regularized logistic regression (label 1 =
    answerable). The threshold is left at 0.5; see `pick_threshold`.

    Usage: ``model = fit_logistic([a.vector() for a in feats], labels, Answerability.names())``"""
    import numpy as np
    from scipy.optimize import minimize

    x = np.asarray(rows, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale

    def loss(theta):
        logits = z @ theta[1:] + theta[0]
        p = 1.0 / (1.0 + np.exp(-logits))
        value = np.mean(np.logaddexp(0.0, logits) - y * logits) + l2 * np.sum(theta[1:] ** 2) / 2
        grad = np.concatenate([[np.mean(p - y)], z.T @ (p - y) / len(y) + l2 * theta[1:]])
        return value, grad

    theta = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return NotFoundModel(weights={n: round(float(w), 4) for n, w in zip(names, theta[1:])},
                         bias=round(float(theta[0]), 4),
                         mean={n: round(float(m), 4) for n, m in zip(names, mean)},
                         scale={n: round(float(s), 4) for n, s in zip(names, scale)})


def pick_threshold(probabilities: list[float], labels: list[int], max_wrong: float = 0.05) -> float:
    """The highest threshold at which at most `max_wrong` of the answerable questions (label 1)
    fall below it, i.e. the one that flags the most unanswerable questions within that budget,
    placed halfway to the next lower score, so that a small drift in the scores (another
    encoder, batching) does not flip the question it was fitted at.

    Usage: ``model.threshold = pick_threshold(probs, labels)``"""
    answerable = sorted(p for p, y in zip(probabilities, labels) if y == 1)
    if not answerable:
        return 0.5
    allowed = int(math.floor(max_wrong * len(answerable)))
    kept = answerable[allowed]  # the lowest answerable score that stays answered
    below = max((p for p in probabilities if p < kept), default=None)
    return round(max(0.0, (kept + below) / 2 if below is not None else kept - 1e-6), 6)
