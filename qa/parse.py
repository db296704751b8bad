"""parse: one OCR'd newspaper page (a text file) → an `Issue` and its `Article`s.

Usage::

    page = parse_page(Path("seeds/000_72e2c7496de26bfa.txt"))
    page.issue.date, page.issue.issue_no        # '2021-11-30', '18012'
    [a.headline for a in page.articles]

Every span (`Article.start/end`, `Paragraph.start/end`) indexes into `Page.text`, the decoded
source with line endings normalized; a paragraph's text is its source span with only the
whitespace between OCR lines removed.
"""

from __future__ import annotations

import bisect
import codecs
import hashlib
import json
import os
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date as Date
from pathlib import Path

from qa.dating import infer_date


class PageError(ValueError):
    """A page that cannot be read (undecodable, empty, binary). The message names the file."""


@dataclass
class Issue:
    """One newspaper page's metadata. Unknown fields are None, never guessed."""

    id: str  # stable, path-safe: derived from the file name
    source: str  # file name the page came from
    checksum: str  # sha256 of the raw bytes and the sidecar's (`page_checksum`)
    encoding: str  # 'utf-8', 'utf-8-sig', 'gb18030', 'utf-16-le', 'utf-16-be'
    paper: str | None = None
    date: str | None = None  # ISO 'YYYY-MM-DD'
    date_source: str | None = None  # 'masthead' | 'sidecar' | 'filename' | 'inferred' | None
    # Why a date that is not printed on the page was chosen, quoting its source (None when printed).
    date_evidence: str | None = None
    weekday: str | None = None
    issue_no: str | None = None  # exactly as printed: '第18012号' → '18012'
    page: int | None = None
    page_count: int | None = None


@dataclass
class Paragraph:
    """A body paragraph: lines broken by columns rejoined; span is [start, end) in the decoded source."""

    text: str
    start: int
    end: int
    # (offset in `text`, source start, source end) of each OCR line joined into `text`;
    # empty means `text` is the source span itself.
    segments: list[tuple[int, int, int]] = field(default_factory=list, repr=False)
    subhead: bool = False  # an intertitle inside an article (a short heading line, not prose)

    def to_source(self, offset: int) -> int:
        """Source position of `offset` in `text` (a joining space maps to the end of the line before it).

        Usage: ``page.text[p.to_source(i):p.to_source(j)]`` is `p.text[i:j]` up to whitespace.
        """
        if not self.segments:
            return self.start + offset
        k = bisect.bisect_right(self.segments, (offset, float("inf"), 0)) - 1
        text_at, src_start, src_end = self.segments[max(k, 0)]
        return min(src_start + max(offset - text_at, 0), src_end)


@dataclass
class Article:
    index: int  # 0-based position on the page
    headline: str | None
    start: int  # span of the whole article in the decoded source
    end: int
    kicker: str | None = None
    subtitle: str | None = None
    byline: str | None = None  # '本报讯（记者 陈润）'
    dateline: str | None = None  # '新华社北京11月29日电'
    paragraphs: list[Paragraph] = field(default_factory=list)
    continuations: list[str] = field(default_factory=list)  # '（下转第七版）', '>>> 详见第二版'
    # The kicker / headline / subtitle lines as source spans (Markdown '#' excluded), in page order.
    heading_lines: list[Paragraph] = field(default_factory=list)
    # Reporter lines printed on their own ('■本报记者 胡建军 通讯员 唐兰荣'), as source spans.
    reporter_lines: list[Paragraph] = field(default_factory=list)

    @property
    def blocks(self) -> list[Paragraph]:
        """Heading lines, reporter lines and paragraphs in page order: the article as printed."""
        return sorted(self.heading_lines + self.reporter_lines + self.paragraphs, key=lambda p: p.start)

    @property
    def text(self) -> str:
        """The article as printed, one block (see `blocks`) a line."""
        return "\n".join(p.text for p in self.blocks)


@dataclass
class Page:
    issue: Issue
    articles: list[Article]
    text: str  # the decoded source text; all spans index into it


# ---------------------------------------------------------------------------------------------
# Reading and decoding

_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\r\x0b\x0c") + b"\x7f"
_MAX_CONTROL_SHARE = 0.05  # real text has (almost) none; random binary has ~10%


def decode_page(raw: bytes, name: str) -> tuple[str, str]:
    """Decode page bytes: UTF-16 with a byte order mark, else UTF-8 (with or without BOM), else
    GB18030 (a superset of GBK).

    Usage: ``text, encoding = decode_page(path.read_bytes(), path.name)``.
    Raises `PageError` naming `name` for empty, binary or undecodable input.
    """
    if not raw.strip():
        raise PageError(f"{name}: empty page")
    utf16 = _decode_utf16(raw, name)
    if utf16 is not None:
        return utf16
    if b"\x00" in raw:
        raise PageError(f"{name}: binary file (contains NUL bytes)")
    sample = raw[:65536]
    control = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if control > _MAX_CONTROL_SHARE * len(sample):
        raise PageError(f"{name}: binary file ({control} control bytes in the first {len(sample)})")
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if encoding == "utf-8-sig" and not raw.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8"
        return text, encoding
    raise PageError(f"{name}: cannot be decoded as UTF-8 or GB18030")


_UTF16_BOMS = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))
_NOT_TEXT = {"Cc", "Cf", "Cn", "Co", "Cs"}  # control, format, unassigned, private use, surrogate


def _decode_utf16(raw: bytes, name: str) -> tuple[str, str] | None:
    """(text, encoding) of UTF-16 with a byte order mark (Windows Notepad's "Unicode"); None
    for input that is not UTF-16. Without a mark, UTF-16 is refused by name: its NUL bytes
    would otherwise read as a binary file, and its byte order would be a guess."""
    for bom, encoding in _UTF16_BOMS:
        if raw.startswith(bom):
            text = _utf16_text(raw[len(bom):], encoding)
            if text is None:
                raise PageError(f"{name}: starts with a UTF-16 byte order mark but is not UTF-16 text")
            if not text.strip():
                raise PageError(f"{name}: empty page")
            return text, encoding
    if b"\x00" in raw and any(_utf16_text(raw, e) is not None for _, e in _UTF16_BOMS):
        raise PageError(f"{name}: unsupported encoding (UTF-16 without a byte order mark); save it as UTF-8")
    return None


def _utf16_text(raw: bytes, encoding: str) -> str | None:
    """`raw` decoded as `encoding`, or None when it does not decode or reads as binary (the
    byte check's share of control, unassigned or private-use characters)."""
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        return None
    sample = text[:32768]
    odd = sum(1 for ch in sample if unicodedata.category(ch) in _NOT_TEXT and ch not in "\t\n\r\x0b\x0c")
    return None if odd > _MAX_CONTROL_SHARE * len(sample) else text


def parse_page(path: Path, source: str | None = None) -> Page:
    """Read, decode and parse one page file (plus its `NAME.meta.json` sidecar, if any).

    `source` names the page in the archive (default: the file name; `qa ingest` passes the
    path below the folder it was given, so same-named files in different folders stay apart).
    Usage: ``page = parse_page(Path("seeds/000_72e2c7496de26bfa.txt"))``.
    Raises `PageError` (naming the file) for unreadable pages and broken sidecars.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PageError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    text, encoding = decode_page(raw, str(path))
    return parse_text(text, source=source or path.name, checksum=page_checksum(path, raw),
                      encoding=encoding, sidecar=read_sidecar(path))


def page_checksum(path: Path, raw: bytes | None = None) -> str:
    """sha256 of a page file's bytes (`raw`, when already read) and of its sidecar's: fixing a
    page's metadata re-ingests the page. Raises OSError when the page cannot be read.

    Usage: ``page_checksum(Path("pages/002_x.txt")) == page.issue.checksum``
    """
    digest = hashlib.sha256(Path(path).read_bytes() if raw is None else raw)
    sidecar = sidecar_of(path)
    if sidecar is not None:
        digest.update(sidecar.read_bytes())
    return digest.hexdigest()


def sidecar_paths(path: Path) -> list[Path]:
    """Where a page's metadata sidecar may live: `NAME.meta.json`, then `STEM.meta.json`."""
    return [path.with_name(path.name + ".meta.json"), path.with_name(path.stem + ".meta.json")]


def sidecar_of(path: Path) -> Path | None:
    """The sidecar page `path` is read with: the first of `sidecar_paths` that exists, or None.

    Usage: ``sidecar_of(Path("pages/002_x.txt"))  # pages/002_x.txt.meta.json, if there``
    """
    return next((c for c in sidecar_paths(Path(path)) if c.is_file()), None)


def is_sidecar(path: Path) -> bool:
    """Whether `path` is named as a sidecar (`….meta.json`): metadata, never a page itself.

    Usage: ``is_sidecar(Path("pages/hy_p3.txt.meta.json"))  # True``
    """
    return Path(path).name.endswith(".meta.json")


def read_sidecar(path: Path) -> dict | None:
    """The validated sidecar of page `path`, or None when it has none.

    Usage: ``read_sidecar(Path("pages/002_x.txt"))  # reads pages/002_x.txt.meta.json``
    """
    candidate = sidecar_of(path)
    if candidate is None:
        return None
    try:
        data = json.loads(candidate.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PageError(f"{candidate}: broken sidecar ({exc})") from exc
    return _clean_sidecar(data, str(candidate))


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _clean_sidecar(data: object, origin: str) -> dict:
    """Check a sidecar's fields and types; the result holds only known, non-null fields."""
    if not isinstance(data, dict):
        raise PageError(f"{origin}: sidecar must be a JSON object")
    out: dict = {}
    for key in ("paper", "weekday"):
        if data.get(key) is not None:
            if not isinstance(data[key], str):
                raise PageError(f"{origin}: sidecar field {key!r} must be a string")
            out[key] = data[key].strip() or None
    if data.get("issue") is not None:
        issue = data["issue"]
        if isinstance(issue, bool) or not isinstance(issue, (str, int)):
            raise PageError(f"{origin}: sidecar field 'issue' must be a string")
        out["issue"] = str(issue).strip() or None
    for key in ("page", "page_count"):
        if data.get(key) is not None:
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PageError(f"{origin}: sidecar field {key!r} must be a positive integer")
            out[key] = value
    if data.get("date") is not None:
        value = data["date"]
        if not isinstance(value, str) or not _ISO_DATE.fullmatch(value) or _valid_date(value) is None:
            raise PageError(f"{origin}: sidecar field 'date' must be a date YYYY-MM-DD, got {value!r}")
        out["date"] = value
    return {k: v for k, v in out.items() if v is not None}


def _valid_date(iso: str) -> str | None:
    try:
        return Date.fromisoformat(iso).isoformat()
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------
# Line features

_TERMINAL = "。！？；!?;：:…"  # a line ending in one of these ends its paragraph
CLOSING_MARKS = "”’」』）)》】〕"  # may follow a sentence end and still belong to the sentence
_MID_SENTENCE_END = "，,、的地得了着和与及或在从把被将对向于是而并且之其由"  # a headline never ends so
_CLAUSE_PUNCT = re.compile(r"[，,；;]")
_SENTENCE_STOP = re.compile(r"[。！？!?]")
_KICKER_END = re.compile(r"(——|—|：|:|强调|指出|表示|要求|提出|认为)$")
_MD_HEADING = re.compile(r"#{1,6}[ \t]+")
_SAME_LINE_KICKER = re.compile(r"(.+?——)\s*(.+)$")  # '秦国文……强调—— 奋力当好……'

_ASCII_WORD = re.compile(r"[A-Za-z0-9_]")

_CN_NUM = "零一二三四五六七八九"
_WEEKDAY = re.compile(r"星期[一二三四五六日天]")
_DATE_CN = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日")
_PAGE_COUNT = re.compile(r"今日\s*([零一二三四五六七八九十\d]{1,3})\s*版")
_ISSUE_NO = re.compile(r"第\s*(\d{2,})\s*号")
_PAPER_LINE = re.compile(r"([\u4e00-\u9fff]{2,8}?(?:日报|晚报|时报|商报))社?(?:出版)?")
_LATIN_PAPERS = {"HENGYANG DAILY": "衡阳日报"}
_MASTHEAD_LINE = re.compile(
    r"^(?:[\u4e00-\u9fff]{2,8}?(?:日报|晚报|时报|商报)社?(?:出版)?|出版|[A-Z][A-Z ]{2,40}DAILY"
    r"|[\u4e00-\u9fff]{2,14}(?:主管|主办|机关报))$"
    r"|连续出版物号|CN\s*\d{2}\s*[-—–]|^\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日|农历|官方网站|新闻热线"
    r"|广告热线|发行热线|^今日\s*[零一二三四五六七八九十\d]{1,3}\s*版$|第\s*\d{2,}\s*号$"
)
_MASTHEAD_MAX_LINES = 30
_MASTHEAD_LINE_MAX = 80

# '本报讯（记者 陈润）', '衡阳日报讯 (全媒体记者 陈润)', '本报讯(记者 陈润 通讯员 ...)'
_BYLINE = re.compile(r"[\u4e00-\u9fff]{1,8}讯\s*[（(][^（）()\n]{1,60}[）)]")
# '新华社北京11月29日电', '据新华社北京12月20日电'
_DATELINE = re.compile(
    r"据?(?:新华社|中新社|人民日报|光明日报|经济日报|央视新闻|本报)[\u4e00-\u9fff]{0,10}?"
    r"\d{1,2}\s*月\s*\d{1,2}\s*日\s*电"
)
# A reporter / commentator line of its own: '■本报记者 胡建军 通讯员 唐兰荣', '■本报评论员'
_NAMES = r"(?:\s+[\u4e00-\u9fff]{2,4})*"
_REPORTER_LINE = re.compile(
    r"[■□●◆▲]\s*\S.{0,38}"
    r"|(?:本报|本刊)(?:全媒体)?(?:特约)?(?:记者|评论员|通讯员)" + _NAMES
    + r"|(?:全媒体)?记者(?:\s+[\u4e00-\u9fff]{2,4})+"
)
_EDITOR_NOTE = re.compile(r"编者按|编者的话|编后语?")
# '（下转第七版）', '(上接第一版)', '(反馈督察情况详见二版)', '>>> 详见第五版 >>>'
_MARKER = (
    r"(?:[（(][^（）()\n]{0,20}?(?:下转|上接|转第|接第|转自|详见)[^（）()\n]{0,10}?版[）)]"
    r"|(?:>{2,}|》{1,2})?\s*详见第?[零一二三四五六七八九十\d]{1,3}版\s*(?:>{2,}|》{1,2})?)"
)
_MARKER_FULL = re.compile(_MARKER)
_MARKER_TAIL = re.compile(_MARKER + r"\s*$")
_MARKER_HEAD = re.compile(r"^\s*" + _MARKER)
_CLOSES_ARTICLE = re.compile(r"下转")  # the rest of the article is on another page
_MARKER_WINDOW = 48  # markers are short: only look at a line's ends, so huge lines stay cheap

# Bottom-of-page furniture: app and paper logos, the duty editor ('值班编委' + name).
_DUTY_LABEL = re.compile(r"值班编委|值班主任|责任编辑|美术编辑|校对|排版")
_FURNITURE = re.compile(
    r"掌上[\u4e00-\u9fff]{2,4}|[\u4e00-\u9fff]{2,6}(?:日报|晚报)(?:客户端)?"
    r"|(?:" + _DUTY_LABEL.pattern + r")(?:\s*[:：]?\s*[\u4e00-\u9fff]{2,4})?"
)
_PERSON_NAME = re.compile(r"[\u4e00-\u9fff]{2,4}")
# A credit line that ends a story ('编辑：徐瑞霞', '(责任编辑:admin)', '来源：江淮晨报'): it never
# opens the next story's heading group, however short it is (below a headline it may stand in one).
_CREDIT_LINE = re.compile(r"[（(]?\s*(?:本期|本文|责任|执行|实习)?(?:编辑|责编|来源|供稿|稿件来源|审核)\s*[:：|丨]")

_HEADING_MAX = 120  # kicker/headline/subtitle lines seen in print run up to ~80 characters
_SUBHEAD_MAX = 40
_EXCLAIMED_MAX = 50  # an exclaimed headline (`_exclaimed_heading`) is a line, not a paragraph
_GROUP_MAX = 5  # kicker + headline + subtitle(s) + column tag
_COUPLET_MAX = 14  # each half of a two-line headline ('领导干部带头学' / '全员覆盖深入学')
# A column / series tag: a quoted or bracketed name with a number ('“2022年人大工作回眸”①').
_COLUMN_TAG = re.compile(r"[“「【〔\[][^”」】〕\]\n]{2,20}[”」】〕\]]\s*(?:[①-⑳]|[（(]?[一二三四五六七八九十\d]{1,3}[）)]?|之[一二三四五六七八九十]{1,3})")
# A subtitle that only says who took part: '朱健主持', '刘丽华出席并讲话', '朱健参加慰问'.
_ATTRIBUTION = re.compile(r"[\u4e00-\u9fff、]{2,8}?(?:主持|出席|参加|讲话|致辞|陪同|慰问|见证)[\u4e00-\u9fff]{0,6}"
                          r"(?:\s+[\u4e00-\u9fff、]{2,8}?(?:主持|出席|参加|讲话|致辞|陪同|慰问|见证)[\u4e00-\u9fff]{0,6})*")


@dataclass
class _Line:
    """One non-blank source line, its text with markers and Markdown '#' cut off (`core`)."""

    start: int  # span of `core` in the page text
    end: int
    core: str
    md_level: int = 0
    markers: list[str] = field(default_factory=list)
    marker_at_end: bool = False
    closes: bool = False  # a marker that sends the reader to another page ('下转')

    @property
    def is_marker_only(self) -> bool:
        return not self.core and bool(self.markers)


def _split_lines(text: str) -> list[_Line]:
    lines = []
    for m in re.finditer(r"[^\n]+", text):
        raw = m.group()
        stripped = raw.strip()
        if not stripped:
            continue
        start = m.start() + (len(raw) - len(raw.lstrip()))
        end = start + len(stripped)
        line = _Line(start, end, stripped)
        md = _MD_HEADING.match(stripped)
        if md:
            line.md_level = len(md.group().rstrip())
            line.start += md.end()
        _cut_markers(text, line)
        lines.append(line)
    return lines


def _cut_markers(text: str, line: _Line) -> None:
    """Move continuation markers at either end of the line out of its `core`."""
    core = text[line.start:line.end]
    cut_start, cut_end = 0, len(core)
    if len(core) <= 2 * _MARKER_WINDOW and _MARKER_FULL.fullmatch(core):
        line.markers.append(core)
        line.marker_at_end = True
        cut_start = cut_end
    else:
        head = _MARKER_HEAD.match(core[:_MARKER_WINDOW])
        if head:
            line.markers.append(head.group().strip())
            cut_start = head.end()
        tail = _MARKER_TAIL.search(core, max(len(core) - _MARKER_WINDOW, cut_start))
        if tail:
            line.markers.append(tail.group().strip())
            line.marker_at_end = True
            cut_end = tail.start()
    if (cut_start, cut_end) != (0, len(core)):
        kept = core[cut_start:cut_end]
        line.start += cut_start + (len(kept) - len(kept.lstrip()))
        line.core = kept.strip()
        line.end = line.start + len(line.core)
    else:
        line.core = core
    line.closes = any(_CLOSES_ARTICLE.search(m) for m in line.markers)


def _ends_terminal(s: str) -> bool:
    s = s.rstrip(CLOSING_MARKS)
    return bool(s) and s[-1] in _TERMINAL


def _heading_like(s: str, *, strict: bool) -> bool:
    """A short line that could be a kicker, headline or subtitle (not a piece of prose)."""
    if not s or len(s) > (_SUBHEAD_MAX if strict else _HEADING_MAX):
        return False
    bare = s.rstrip(CLOSING_MARKS) or s
    if bare[-1] in "。！？!?；;…" or s[-1] in _MID_SENTENCE_END:
        return False
    if _SENTENCE_STOP.search(s):
        return False
    if strict and _CLAUSE_PUNCT.search(s):
        return False
    return not _starts_body(s)


def _exclaimed_heading(s: str) -> bool:
    """A headline that '！' or '？' part or end ('贸易大棒引众怒！ 美国这次真是…'): heading-like once
    they are taken out, and short. Print rarely exclaims in a headline and web news often does;
    such a line is read as one only directly above a byline (`_PageParser`), where no prose stands.

    Usage: ``_exclaimed_heading("最新通报！2死5伤！")`` → True"""
    bare = re.sub(r"[！？!?]+", " ", s).strip()
    return bare != s.strip() and len(s) <= _EXCLAIMED_MAX and _heading_like(bare, strict=False)


def _starts_body(s: str) -> bool:
    """The line opens an article body: a byline, a dateline or a reporter line."""
    head = s[:80]
    return bool(_BYLINE.match(head) or _DATELINE.match(head) or _is_reporter_line(s))


def _is_reporter_line(s: str) -> bool:
    return len(s) <= 40 and not _ends_terminal(s) and bool(_REPORTER_LINE.fullmatch(s))


# ---------------------------------------------------------------------------------------------
# Masthead, sidecar and footer


def _cn_number(s: str) -> int | None:
    """'八' → 8, '十二' → 12, '二十四' → 24, '16' → 16 (page counts stay below a hundred)."""
    if s.isdigit():
        return int(s)
    digits = {c: i for i, c in enumerate(_CN_NUM)}
    if "十" not in s:
        return digits.get(s)
    tens, _, ones = s.partition("十")
    if any(part and part not in digits for part in (tens, ones)):
        return None
    return (digits[tens] if tens else 1) * 10 + (digits[ones] if ones else 0)


def _masthead_end(lines: list[_Line]) -> int:
    """Number of leading lines that form the masthead (0 when the page has none)."""
    n = 0
    while n < min(len(lines), _MASTHEAD_MAX_LINES) and _is_masthead_line(lines[n].core):
        n += 1
    block = " ".join(line.core for line in lines[:n])
    strong = _DATE_CN.search(block) or _ISSUE_NO.search(block) or _masthead_paper(lines[:n])
    return n if strong else 0


def _is_masthead_line(core: str) -> bool:
    # Masthead lines are short labels, never sentences: '2021年11月30日 星期二 农历……今日八版'.
    return len(core) <= _MASTHEAD_LINE_MAX and not _SENTENCE_STOP.search(core) \
        and bool(_MASTHEAD_LINE.search(core))


def _masthead_paper(lines: list[_Line]) -> str | None:
    for line in lines:
        m = _PAPER_LINE.fullmatch(line.core)
        if m:
            return m.group(1)
    for line in lines:
        if line.core.upper() in _LATIN_PAPERS:
            return _LATIN_PAPERS[line.core.upper()]
    return None


def _read_masthead(issue: Issue, lines: list[_Line]) -> None:
    block = "\n".join(line.core for line in lines)
    issue.paper = _masthead_paper(lines)
    m = _DATE_CN.search(block)
    if m:
        iso = _valid_date(f"{int(m.group(1)):04d}-{int(m.group(2)):02d}-{int(m.group(3)):02d}")
        if iso:
            issue.date, issue.date_source = iso, "masthead"
    m = _WEEKDAY.search(block)
    issue.weekday = m.group() if m else None
    m = _PAGE_COUNT.search(block)
    issue.page_count = _cn_number(m.group(1)) if m else None
    m = _ISSUE_NO.search(block)
    issue.issue_no = m.group(1) if m else None  # as printed, even when the OCR misread it
    issue.page = 1  # only the front page carries the masthead


def _apply_sidecar(issue: Issue, sidecar: dict) -> None:
    """Fill the fields the page itself does not state. The page number is the exception: the
    masthead only implies page 1, so a sidecar that says otherwise wins."""
    if issue.date is None and sidecar.get("date"):
        issue.date, issue.date_source = sidecar["date"], "sidecar"
    if sidecar.get("page") is not None:
        issue.page = sidecar["page"]
    for attr, key in (("paper", "paper"), ("weekday", "weekday"), ("issue_no", "issue"),
                      ("page_count", "page_count")):
        if getattr(issue, attr) is None and sidecar.get(key) is not None:
            setattr(issue, attr, sidecar[key])


def _date_unprinted(issue: Issue, source: str, body: str) -> None:
    """A date for a page that prints none (no masthead date, no sidecar): from its file name, else
    inferred from its text. The file name wins: archives name files by the issue's date, while
    the text only bounds it from below (the latest event it reports)."""
    m = _FILENAME_DATE.search(source)
    if m and _valid_date(m.group(0)):
        issue.date, issue.date_source = m.group(0), "filename"
        issue.date_evidence = f"文件名“{Path(source).name}”中的日期"
        return
    found = infer_date(body)
    if found is not None:
        issue.date, issue.date_source, issue.date_evidence = found.date, "inferred", found.evidence


_FILENAME_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})-(\d{2})-(\d{2})(?!\d)")


def _footer_start(lines: list[_Line], lo: int) -> int:
    """Index of the first line of the bottom-of-page furniture (len(lines) when there is none)."""
    k = len(lines)
    while k > lo:
        core = lines[k - 1].core
        if _FURNITURE.fullmatch(core):
            k -= 1
        elif (k - 2 >= lo and _PERSON_NAME.fullmatch(core)
              and _DUTY_LABEL.fullmatch(lines[k - 2].core)):
            k -= 2  # '值班编委' then the editor's name on a line of its own
        else:
            break
    return k


def _safe_id(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "page"


# ---------------------------------------------------------------------------------------------
# Articles


class _ArticleBuilder:
    """Collects one article's heading, paragraphs and markers while lines stream by."""

    def __init__(self, text: str):
        self.text = text
        self.heading: list[_Line] = []
        self.paragraphs: list[Paragraph] = []
        self.open_lines: list[_Line] = []  # the paragraph being built
        self.markers: list[str] = []
        self.byline: str | None = None
        self.reporter_lines: list[Paragraph] = []
        self.dateline: str | None = None
        self.start: int | None = None
        self.end = 0
        self.closed = False
        self.editor_note = False  # holds only an editor's note so far: it joins the next story

    def touch(self, line: _Line) -> None:
        self.start = line.start if self.start is None else min(self.start, line.start)
        self.end = max(self.end, line.end)

    @property
    def paragraph_open(self) -> bool:
        return bool(self.open_lines) and not _ends_terminal(self.open_lines[-1].core)

    def add_body_line(self, line: _Line) -> None:
        """Add a prose line: it continues the open paragraph, or starts the next one."""
        self.touch(line)
        self.markers.extend(line.markers)
        if line.core:
            if not self.paragraph_open:
                self.flush()
            if not self.paragraphs and not self.open_lines:
                self._note_byline(line.core)
            self.open_lines.append(line)
        if line.marker_at_end:
            self.flush()  # a marker ends the paragraph even when the sentence looks unfinished
        if line.closes:
            self.closed = True

    def add_subhead(self, line: _Line) -> None:
        self.flush()
        self.touch(line)
        self.paragraphs.append(Paragraph(line.core, line.start, line.end, subhead=True))

    def _note_byline(self, core: str) -> None:
        head = core[:80]
        m = _BYLINE.match(head)
        if m and self.byline is None:
            self.byline = m.group()
        m = _DATELINE.match(head)
        if m and self.dateline is None:
            self.dateline = m.group()

    def add_reporter(self, line: _Line) -> None:
        self.flush()
        self.touch(line)
        self.reporter_lines.append(Paragraph(line.core, line.start, line.end))
        if self.byline is None:
            self.byline = line.core.lstrip("■□●◆▲ ").strip()

    def flush(self) -> None:
        if self.open_lines:
            self.paragraphs.append(_join_lines(self.text, self.open_lines))
            self.open_lines = []

    def build(self, index: int) -> Article | None:
        self.flush()
        if not self.paragraphs and not self.heading:
            return None
        kicker, headline, subtitle = _split_heading([line.core for line in self.heading],
                                                    [line.md_level for line in self.heading])
        return Article(
            index=index, headline=headline, start=self.start or 0, end=self.end, kicker=kicker,
            subtitle=subtitle, byline=self.byline, dateline=self.dateline, paragraphs=self.paragraphs,
            continuations=self.markers,
            heading_lines=[Paragraph(line.core, line.start, line.end) for line in self.heading],
            reporter_lines=self.reporter_lines,
        )


def _join_lines(text: str, lines: list[_Line]) -> Paragraph:
    """One paragraph from OCR lines: no space between CJK text, one between two ASCII words."""
    parts: list[str] = []
    segments: list[tuple[int, int, int]] = []
    length = 0
    for line in lines:
        if parts and _ASCII_WORD.match(parts[-1][-1]) and _ASCII_WORD.match(line.core[0]):
            parts.append(" ")
            length += 1
        segments.append((length, line.start, line.end))
        parts.append(line.core)
        length += len(line.core)
    return Paragraph("".join(parts), lines[0].start, lines[-1].end,
                     segments=segments if len(lines) > 1 else [])


def _split_heading(cores: list[str], md_levels: list[int]) -> tuple[str | None, str | None, str | None]:
    """Kicker (引题), headline and subtitle (副题) from the heading lines of an article."""
    if not cores:
        return None, None, None
    kicker: list[str] = []
    subtitle: list[str] = []
    headline: str | None = None
    main_md = next((i for i, lvl in enumerate(md_levels) if 0 < lvl <= 2), None)
    if main_md is not None:
        # Markdown says which line is the headline: above it kickers, below it subtitles.
        return (" ".join(cores[:main_md]) or None, cores[main_md],
                " ".join(cores[main_md + 1:]) or None)
    # A series tag ('“2022年人大工作回眸”①') labels the column, not the story: it goes with the kicker.
    tags = [c for c in cores if _COLUMN_TAG.fullmatch(c)]
    if tags and len(tags) < len(cores):
        cores = [c for c in cores if c not in tags]
        kicker, headline, subtitle = _split_heading(cores, [0] * len(cores))
        return " ".join(([kicker] if kicker else []) + tags), headline, subtitle
    signalled = any(_KICKER_END.search(c) or c.startswith("——") or _SAME_LINE_KICKER.match(c)
                    for c in cores)
    if (len(cores) >= 3 and all(len(c) <= _COUPLET_MAX for c in cores[:2])
            and not any(_KICKER_END.search(c) or c.startswith("——") or _ATTRIBUTION.fullmatch(c)
                        for c in cores[:2])):
        # Two short lines on top of a longer one: a two-line (couplet) headline and its subtitle.
        return None, f"{cores[0]} {cores[1]}", " ".join(cores[2:])
    if not signalled and sum(not _ATTRIBUTION.fullmatch(c) for c in cores) >= 3:
        # Three stacked titles with nothing marking them are the classic 引题 / 主题 / 副题.
        return cores[0], cores[1], " ".join(cores[2:])
    for i, core in enumerate(cores):
        if headline is None:
            same_line = _SAME_LINE_KICKER.match(core)
            if same_line and not core.startswith("——"):
                kicker.append(same_line.group(1))  # 'X强调—— Y': kicker and headline on one line
                headline = same_line.group(2).strip()
            elif core.startswith("——") and i > 0:
                headline = kicker.pop()
                subtitle.append(core)
            elif _KICKER_END.search(core) and i < len(cores) - 1:
                kicker.append(core)
            else:
                headline = core
        else:
            subtitle.append(core)
    if headline is None and kicker:
        headline = kicker.pop()
    return " ".join(kicker) or None, headline, " ".join(subtitle) or None


def _parallel_runs(cores: list[str]) -> list[tuple[int, int]]:
    """Split heading lines into runs wherever two neighbours are parallel headlines: they share
    an opening and an ending covering at least half of the shorter one ('习近平同伊朗总统通电话' /
    '习近平同伊拉克总统通电话'). A headline and its kicker or subtitle never read like that."""
    runs, lo = [], 0
    for k in range(1, len(cores)):
        a, b = cores[k - 1], cores[k]
        prefix = len(os.path.commonprefix([a, b]))
        suffix = len(os.path.commonprefix([a[::-1], b[::-1]]))
        if prefix >= 2 and suffix >= 2 and prefix + suffix >= min(len(a), len(b)) / 2 and a != b:
            runs.append((lo, k))
            lo = k
    runs.append((lo, len(cores)))
    return runs


class _PageParser:
    """Walks the body lines once (with a bounded look-ahead) and cuts them into articles."""

    def __init__(self, text: str, lines: list[_Line]):
        self.text = text
        self.lines = lines
        self.n = len(lines)
        self.loose = [_heading_like(ln.core, strict=False) or ln.md_level > 0 for ln in lines]
        self.strict = [_heading_like(ln.core, strict=True) for ln in lines]
        self.body_start = [bool(ln.core) and _starts_body(ln.core) for ln in lines]
        self.credit = [bool(_CREDIT_LINE.match(ln.core)) for ln in lines]
        for k, line in enumerate(lines[:-1]):  # a short exclaimed line right above a byline: its headline
            if self.body_start[k + 1] and not self.credit[k] and _exclaimed_heading(line.core):
                self.loose[k] = True
        self.reporter = [bool(ln.core) and _is_reporter_line(ln.core) for ln in lines]
        self.marker_only = [ln.is_marker_only for ln in lines]
        self.articles: list[Article] = []
        self.current: _ArticleBuilder | None = None

    def _close(self) -> None:
        if self.current is not None:
            article = self.current.build(len(self.articles))
            if article is not None:
                self.articles.append(article)
        self.current = None

    def _article(self) -> _ArticleBuilder:
        if self.current is None or self.current.closed:
            self._close()
            self.current = _ArticleBuilder(self.text)
        return self.current

    def _start_article(self, heading: list[_Line]) -> None:
        note = self.current if self.current is not None and self.current.editor_note else None
        if note is not None and not note.closed:
            # An editor's note (编者按) introduces the story printed after it: one article.
            note.flush()
            note.editor_note = False
        else:
            self._close()
            self.current = _ArticleBuilder(self.text)
        self.current.heading = heading
        for line in heading:
            self.current.touch(line)

    def _start_teasers(self, heading: list[_Line], marker: _Line) -> None:
        """Teasers above one marker ('习近平同伊朗总统通电话' / '习近平同伊拉克总统通电话' / '>>> 详见第七版'):
        parallel lines are headlines of separate stories, each sent on by the shared marker."""
        runs = _parallel_runs([line.core for line in heading])
        for lo, hi in runs[:-1]:
            self._start_article(heading[lo:hi])
            self.current.markers.extend(marker.markers)
            self.current.closed = True
        lo, hi = runs[-1]
        self._start_article(heading[lo:hi])

    def _confirmed_group(self, i: int, *, mid_sentence: bool) -> int | None:
        """End (exclusive) of a heading group starting at line i that a byline, a dateline, a
        continuation marker or Markdown confirms; None when line i is not such a group.

        `mid_sentence`: the paragraph before line i is unfinished. Then a marker does not confirm
        a group: '……授信' / '额度' / '（下转第七版）' is the end of a sentence, not a teaser."""
        lines = self.lines
        if lines[i].md_level:
            j = i + 1
            while j < self.n and j - i < _GROUP_MAX and self.loose[j] and not (
                    self.body_start[j] or self.marker_only[j]):
                if lines[j].md_level == 0 and _CLAUSE_PUNCT.search(lines[j].core) and not (
                        j + 1 < self.n and (self.body_start[j + 1] or self.marker_only[j + 1])):
                    break
                j += 1
            return j
        if not self.loose[i] or self.credit[i]:
            return None
        j = i
        while j < self.n and j - i < _GROUP_MAX and self.loose[j] and not lines[j].md_level:
            j += 1
        if j >= self.n or not (self.body_start[j] or (self.marker_only[j] and not mid_sentence)):
            return None
        for k in range(i, j):
            core = lines[k].core
            # A line with commas is prose unless it is a kicker ('...，一致表示——'), the last
            # line before the body (a subtitle) or a headline with a '——' subtitle below it.
            if _CLAUSE_PUNCT.search(core) and not (
                    _KICKER_END.search(core) or k == j - 1 or lines[k + 1].core.startswith("——")):
                return None
        return j

    def _subhead_run(self, i: int) -> int:
        """End of a run of short heading lines from i that is followed by prose (i when none)."""
        if self.credit[i]:
            return i
        j = i
        while j < self.n and j - i < _GROUP_MAX and self.strict[j]:
            j += 1
        if j == i or j >= self.n or self.strict[j] or self.marker_only[j]:
            return i
        return j

    def run(self) -> list[Article]:
        i = 0
        while i < self.n:
            i = self._step(i)
        self._close()
        return self.articles

    def _step(self, i: int) -> int:
        """Consume line i (with the heading group it starts, if any); return the next index."""
        line = self.lines[i]
        current = self.current if self.current is not None and not self.current.closed else None
        mid_sentence = current is not None and current.paragraph_open
        group_end = self._confirmed_group(i, mid_sentence=mid_sentence)
        if group_end is not None and group_end > i:
            if group_end < self.n and self.marker_only[group_end]:
                self._start_teasers(self.lines[i:group_end], self.lines[group_end])
            else:
                self._start_article(self.lines[i:group_end])
            return group_end
        if self.marker_only[i]:
            article = self._article()
            article.add_body_line(line)
            article.closed = True  # a standalone marker ends the article (or the teaser)
            return i + 1
        if self.body_start[i]:
            if current is None or current.paragraphs or current.open_lines:
                self._start_article([])  # a byline with no headline above it: a new article
            if self.reporter[i]:
                self.current.add_reporter(line)
            else:
                self.current.add_body_line(line)
            return i + 1
        if mid_sentence:
            current.add_body_line(line)  # an OCR column break inside a sentence
            return i + 1
        if _EDITOR_NOTE.fullmatch(line.core):
            self._close()
            self.current = _ArticleBuilder(self.text)
            self.current.add_subhead(line)
            self.current.editor_note = True
            return i + 1
        run_end = self._subhead_run(i)
        if run_end - i >= 2:
            self._start_article(self.lines[i:run_end])  # headline + subtitle without a byline
            return run_end
        if run_end - i == 1:
            if current is None:
                self._start_article([line])  # a headline straight above its prose
            else:
                current.add_subhead(line)  # an intertitle inside the story
            return i + 1
        self._article().add_body_line(line)
        return i + 1


# ---------------------------------------------------------------------------------------------
# Text an OCR'd page prints twice

_WS_RUN = re.compile(r"\s+")
_REPEAT_MIN = 40  # a repeated tail shorter than this may be an ordinary restatement
_REPEAT_BUDGET = 20_000_000  # characters scanned per page; pathological pages skip the check


class _FlatBody:
    """An article's paragraphs as one comparison string (NFKC, no whitespace) that maps back to
    (paragraph index, offset in its text)."""

    def __init__(self, article: Article):
        self.article = article
        self.text = "".join(_WS_RUN.sub("", unicodedata.normalize("NFKC", p.text))
                            for p in article.paragraphs)

    def locate(self, k: int) -> tuple[int, int]:
        """(paragraph index, offset in its text) of comparison position k."""
        seen = 0
        for index, paragraph in enumerate(self.article.paragraphs):
            for i, ch in enumerate(paragraph.text):
                width = len(_WS_RUN.sub("", unicodedata.normalize("NFKC", ch)))
                if seen + width > k:
                    return index, i
                seen += width
        raise IndexError(k)


def _bigrams(s: str) -> set[str]:
    return {s[i:i + 2] for i in range(len(s) - 1)}


def _affinity(block: str, context: str) -> float:
    """Share of the block's character bigrams that its would-be article also uses elsewhere."""
    grams = _bigrams(block)
    return len(grams & _bigrams(context)) / len(grams) if grams else 0.0


def _repeated_tail(body: str, others: str) -> int:
    """Smallest k such that body[k:] also stands earlier in `body` or in `others` (len(body) if none).
    Any suffix of a repeated text is repeated too, so a binary search finds it."""
    lo, hi = 0, len(body)
    while lo < hi:
        mid = (lo + hi) // 2
        tail = body[mid:]
        if body.find(tail, 0, mid) >= 0 or tail in others:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _cut_tail(article: Article, flat: _FlatBody, k: int) -> None:
    """Drop the article's text from comparison position k on."""
    para, offset = flat.locate(k)
    kept = article.paragraphs[:para]
    head = article.paragraphs[para]
    text = head.text[:offset].rstrip()
    if text:
        end = head.to_source(len(text) - 1) + 1
        kept.append(Paragraph(text, head.start, end, [s for s in head.segments if s[0] < len(text)],
                              head.subhead))
    article.paragraphs = kept
    ends = [p.end for p in article.blocks]
    article.end = max(ends) if ends else article.start


def _drop_repeated_tails(articles: list[Article]) -> None:
    """OCR'd pages repeat blocks of text, garbled or in the wrong story: an article whose end
    (≥ `_REPEAT_MIN` characters, across a sentence end) repeats text printed elsewhere on the
    page loses it unless it is the copy's better home. A repeat inside the same article keeps the
    first copy; across articles the copy stays with the article whose own text shares more of
    its wording (a stray column of story B inside story A reads like B), the first on a tie."""
    size = sum(len(p.text) for a in articles for p in a.paragraphs)
    budget = _REPEAT_BUDGET
    if size * size.bit_length() > budget:
        return
    flats = [_FlatBody(a) for a in articles]
    for i, article in enumerate(articles):
        body = flats[i].text
        others = "\x00".join(f.text for j, f in enumerate(flats) if j != i)
        budget -= (len(body) + len(others)) * max(len(body), 1).bit_length()
        if budget < 0:
            return
        k = _repeated_tail(body, others)
        tail = body[k:]
        if len(tail) < _REPEAT_MIN or not _SENTENCE_STOP.search(tail[:-1]):
            continue
        owner = None if body.find(tail, 0, k) >= 0 else next(
            (j for j, f in enumerate(flats) if j != i and f.text.endswith(tail)), None)
        if owner is not None:
            other = flats[owner].text
            ours = _affinity(tail, body[:k] + "".join(articles[i].headline or ""))
            theirs = _affinity(tail, other[:-len(tail)] + (articles[owner].headline or ""))
            if ours > theirs or (ours == theirs and i < owner):
                _cut_tail(articles[owner], flats[owner], len(other) - len(tail))
                flats[owner] = _FlatBody(articles[owner])
                continue
        _cut_tail(article, flats[i], k)
        flats[i] = _FlatBody(article)


def parse_text(text: str, *, source: str, checksum: str, encoding: str,
               sidecar: dict | None = None) -> Page:
    """Parse decoded page text; spans in the result index into the returned `Page.text`.

    `sidecar` is a validated sidecar as `read_sidecar` returns it.
    Usage: ``parse_text(text, source="002_x.txt", checksum=sha, encoding="utf-8", sidecar={"date": "2022-12-15"})``
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise PageError(f"{source}: empty page")
    issue = Issue(id=_safe_id(str(Path(source).with_suffix(""))), source=source, checksum=checksum,
                  encoding=encoding)
    lines = _split_lines(text)
    body_from = _masthead_end(lines)
    if body_from:
        _read_masthead(issue, lines[:body_from])
    if sidecar:
        _apply_sidecar(issue, sidecar)
    body = lines[body_from:_footer_start(lines, body_from)]
    if issue.date is None:
        _date_unprinted(issue, source, "\n".join(line.core for line in body))
    articles = _PageParser(text, body).run()
    _drop_repeated_tails(articles)
    return Page(issue=issue, articles=articles, text=text)
