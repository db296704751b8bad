"""chunk: an article → `Passage`s of at most 500 characters, split at sentence ends.

Usage::

    passages = chunk_page(parse_page(path))
    p = passages[0]
    assert strip_ws(p.text) == strip_ws(strip_markup(page.text[p.start:p.end]))

A passage is source text with only whitespace rejoined (paragraphs joined by "\\n"); it never
spans anything but whitespace (and Markdown heading marks) between its sentences, so its
`start, end` show it in place. An article's kicker, headline and subtitle lines are passage text
too: its first passage starts at its first heading line.
Content repeated on a page (OCR'd pages often repeat their last paragraphs) is kept once.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass

from qa.parse import CLOSING_MARKS, Page, Paragraph

MAX_CHARS = 500

_WS = re.compile(r"\s+")
_MD_MARKS = re.compile(r"(?m)^[ \t]*#{1,6}[ \t]+")
_ENDS = "。！？!?；;"
# A sentence: everything up to a run of sentence-ending marks plus any closing quotes after them.
_SENTENCE = re.compile(rf"[^{_ENDS}]+(?:[{_ENDS}]+[{CLOSING_MARKS}]*)?|[{_ENDS}]+[{CLOSING_MARKS}]*")
_SOFT_BREAKS = "，、,：:"  # where an over-long sentence is cut, before resorting to a hard cut
_PARAGRAPH_BREAK_FILL = 0.6  # a passage this full ends at a paragraph end rather than run on
_MIN_DEDUP_CHARS = 8  # shorter repeats ('他说。') are ordinary prose, not duplicated text
# Characters a page may spend on "is this text inside what came before" scans (see `_Seen`).
_CONTAINMENT_BUDGET = 50_000_000


@dataclass
class Passage:
    id: str  # stable across rebuilds of the same page
    issue_id: str
    article_index: int
    ordinal: int  # position within the article
    text: str  # source text, only whitespace rejoined
    start: int  # span in the decoded source
    end: int
    headline: str | None = None  # the article's headline


def strip_ws(s: str) -> str:
    """`s` without any whitespace. Usage: ``strip_ws(p.text) == strip_ws(page.text[p.start:p.end])``"""
    return _WS.sub("", s)


def normalize(s: str) -> str:
    """The comparison form of a text: NFKC, no whitespace (full/half-width variants compare equal)."""
    return strip_ws(unicodedata.normalize("NFKC", s))


def split_sentences(text: str) -> list[str]:
    """The sentences of a text; a line break (paragraph end) also ends one.

    Usage: ``split_sentences(passage.text)``"""
    return [s for line in text.split("\n") for m in _SENTENCE.finditer(line) if (s := m.group().strip())]


@dataclass
class _Unit:
    """A sentence (or a piece of an over-long one) of one paragraph."""

    paragraph: int  # index into the article's chunked paragraphs
    t_start: int  # span in the paragraph's text
    t_end: int
    complete: bool  # ends with sentence punctuation (not a cut piece or an unfinished tail)
    key: str = ""
    heading: bool = False  # a kicker / headline / subtitle line: whole, never a cut-off tail


def _units(paragraph: Paragraph, index: int, max_chars: int, heading: bool = False) -> list[_Unit]:
    text = paragraph.text
    units: list[_Unit] = []
    for m in _SENTENCE.finditer(text):
        start, end = m.start(), m.end()
        while start < end and text[start].isspace():
            start += 1
        while end > start and text[end - 1].isspace():
            end -= 1
        if start == end:
            continue
        k = end
        while k > start and text[k - 1] in CLOSING_MARKS:
            k -= 1
        complete = k > start and text[k - 1] in _ENDS
        if end - start <= max_chars:
            units.append(_Unit(index, start, end, complete, heading=heading))
            continue
        for piece_start, piece_end in _cut(text, start, end, max_chars):
            units.append(_Unit(index, piece_start, piece_end, False, heading=heading))
    return units


def _cut(text: str, start: int, end: int, max_chars: int):
    """Pieces of at most `max_chars` of text[start:end], cut after a comma where there is one."""
    while end - start > max_chars:
        limit = start + max_chars
        cut = max(text.rfind(c, start + 1, limit) for c in _SOFT_BREAKS) + 1
        if cut <= start + max_chars // 4:  # no comma in a useful place: hard cut
            cut = limit
        piece_end = cut
        while piece_end > start and text[piece_end - 1].isspace():
            piece_end -= 1
        if piece_end > start:
            yield start, piece_end
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        yield start, end


class _Seen:
    """What the page has already emitted: exact keys, and their text for containment checks.

    Containment scans everything emitted so far, so it draws on a budget of scanned characters:
    a real page (~20k characters) never exhausts it, a pathological one falls back to exact
    matching and chunking stays linear.
    """

    def __init__(self, budget: int = _CONTAINMENT_BUDGET) -> None:
        self.keys: set[str] = set()
        self.parts: list[str] = []
        self.size = 0
        self.budget = budget
        self._blob = ""
        self._blob_parts = 0

    def contains(self, key: str, *, substring: bool) -> bool:
        if key in self.keys:
            return True
        if not substring or 2 * self.size > self.budget:
            return False
        self.budget -= 2 * self.size  # joining + scanning
        if self._blob_parts != len(self.parts):
            self._blob = "\x00".join(self.parts)
            self._blob_parts = len(self.parts)
        return key in self._blob

    def add(self, key: str) -> None:
        self.keys.add(key)
        self.parts.append(key)
        self.size += len(key) + 1


def _contiguous(page_text: str, left: Paragraph, right: Paragraph) -> bool:
    return right.start >= left.end and not strip_markup(page_text[left.end:right.start]).strip()


def strip_markup(s: str) -> str:
    """`s` without Markdown heading marks at line starts: a passage may span them ('### 引题' /
    '## 主题'), its text does not hold them. Usage: ``strip_ws(strip_markup(page.text[p.start:p.end]))``"""
    return _MD_MARKS.sub("", s)


def chunk_page(page: Page, max_chars: int = MAX_CHARS, overlap_sentences: int = 1) -> list[Passage]:
    """Split every article of the page into passages (deduplicated within the page).

    Usage: ``chunk_page(parse_page(Path("seeds/000_72e2c7496de26bfa.txt")))``.
    Each passage holds whole sentences (over-long ones are cut at commas, else hard-cut) of one
    article, at most `max_chars` characters, and repeats the last `overlap_sentences` sentence(s)
    of the passage before it when they fit.
    """
    if max_chars < 1:
        raise ValueError("max_chars must be positive")
    passages: list[Passage] = []
    seen_sentences = _Seen()
    seen_passages = _Seen()
    ids: set[str] = set()
    for article in page.articles:
        # Kicker, headline and subtitle lines are text like any other: searchable and quotable.
        paragraphs = article.blocks
        headings = {(p.start, p.end) for p in article.heading_lines + article.reporter_lines}
        units: list[_Unit] = []
        for index, paragraph in enumerate(paragraphs):
            units.extend(_units(paragraph, index, max_chars,
                                heading=(paragraph.start, paragraph.end) in headings))
        ordinal = 0
        for group in _pack(page.text, paragraphs, units, max_chars, overlap_sentences, seen_sentences):
            text, start, end = _render(paragraphs, group)
            key = normalize(text)
            if not key or seen_passages.contains(key, substring=True):
                continue
            seen_passages.add(key)
            pid = f"{page.issue.id}:{hashlib.sha1(key.encode('utf-8')).hexdigest()[:12]}"
            if pid in ids:  # a 48-bit collision: astronomically rare, but ids must be unique
                pid = f"{page.issue.id}:{hashlib.sha1(key.encode('utf-8')).hexdigest()}"
            ids.add(pid)
            passages.append(Passage(id=pid, issue_id=page.issue.id, article_index=article.index,
                                    ordinal=ordinal, text=text, start=start, end=end,
                                    headline=article.headline))
            ordinal += 1
    return passages


def _pack(page_text: str, paragraphs: list[Paragraph], units: list[_Unit], max_chars: int,
          overlap: int, seen: _Seen) -> list[list[_Unit]]:
    """Group consecutive units into passages; repeated sentences are dropped and break passages."""
    groups: list[list[_Unit]] = []
    current: list[_Unit] = []
    length = 0  # characters of the current passage's text

    def unit_len(u: _Unit) -> int:
        return u.t_end - u.t_start

    def can_follow(last: _Unit, u: _Unit) -> bool:
        return last.paragraph == u.paragraph or (
            u.paragraph == last.paragraph + 1
            and _contiguous(page_text, paragraphs[last.paragraph], paragraphs[u.paragraph]))

    def start_with_overlap(previous: list[_Unit], u: _Unit) -> tuple[list[_Unit], int]:
        tail: list[_Unit] = []
        for cand in reversed(previous[-overlap:] if overlap > 0 else []):
            trial = [cand] + tail
            if not all(can_follow(a, b) for a, b in zip(trial, trial[1:] + [u])):
                break
            total = _group_len(trial + [u])
            if total > max_chars:
                break
            tail = trial
        group = tail + [u]
        return group, _group_len(group)

    for u in units:
        u.key = normalize(paragraphs[u.paragraph].text[u.t_start:u.t_end])
        # A headline quoting a phrase printed earlier is still the headline: exact repeats only.
        if len(u.key) >= _MIN_DEDUP_CHARS and seen.contains(u.key, substring=not (u.complete or u.heading)):
            if current:
                groups.append(current)
            current, length = [], 0  # never bridge a dropped repeat: spans must stay contiguous
            continue
        if len(u.key) >= _MIN_DEDUP_CHARS:
            seen.add(u.key)
        if not current:
            current, length = [u], unit_len(u)
            continue
        last = current[-1]
        new_paragraph = u.paragraph != last.paragraph
        if not can_follow(last, u):
            groups.append(current)
            current, length = [u], unit_len(u)
            continue
        grown = length + (u.t_end - last.t_end if not new_paragraph else 1 + unit_len(u))
        # Heading lines do not count towards the fill that ends a passage at a paragraph end: the
        # first passage keeps the body it would hold without them, as far as `max_chars` allows.
        body_length = length - sum(1 + unit_len(h) for h in current if h.heading)
        if grown > max_chars or (new_paragraph and body_length >= _PARAGRAPH_BREAK_FILL * max_chars):
            groups.append(current)
            current, length = start_with_overlap(current, u)
            continue
        current.append(u)
        length = grown
    if current:
        groups.append(current)
    return groups


def _group_len(group: list[_Unit]) -> int:
    total = 0
    for i, u in enumerate(group):
        if i and group[i - 1].paragraph == u.paragraph:
            total += u.t_end - group[i - 1].t_end
        else:
            total += (1 if i else 0) + (u.t_end - u.t_start)
    return total


def _render(paragraphs: list[Paragraph], group: list[_Unit]) -> tuple[str, int, int]:
    """Text (paragraphs joined by newlines) and source span of a group of units."""
    pieces: list[str] = []
    run_start = group[0]
    for prev, u in zip(group, group[1:] + [None]):
        if u is None or u.paragraph != prev.paragraph:
            paragraph = paragraphs[prev.paragraph]
            pieces.append(paragraph.text[run_start.t_start:prev.t_end])
            run_start = u
    first, last = group[0], group[-1]
    start = paragraphs[first.paragraph].to_source(first.t_start)
    end = paragraphs[last.paragraph].to_source(last.t_end - 1) + 1
    return "\n".join(pieces), start, end
