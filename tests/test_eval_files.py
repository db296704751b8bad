"""The question files under eval/: well-formed, and every gold evidence span is quoted exactly
(whitespace and NFKC width aside) from the seed page it names, so evidence-in-answer can be met."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from qa.chunk import normalize

from conftest import ROOT, SEEDS

FIELDS = {"id", "kind", "question", "answer", "file", "evidence", "date", "issue"}
FILES = sorted((ROOT / "eval").glob("*.jsonl"))


def _rows(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_evidence_is_quoted_from_the_named_page(path):
    pages = {p.name: normalize(p.read_text(encoding="utf-8")) for p in SEEDS.glob("*.txt")}
    rows = _rows(path)
    assert len({r["id"] for r in rows}) == len(rows), "ids repeat"
    for r in rows:
        assert FIELDS <= r.keys(), r["id"]
        if r["kind"] == "unanswerable":
            assert not r["evidence"], r["id"]
            continue
        assert r["evidence"] and r["file"] in pages, r["id"]
        for span in r["evidence"]:
            assert normalize(span) in pages[r["file"]], f"{r['id']}: {span!r} is not on {r['file']}"


def test_fresh_questions_are_split_half_and_half_per_kind():
    rows = _rows(ROOT / "eval" / "fresh.jsonl")
    kinds = Counter(r["kind"] for r in rows)
    assert kinds["unanswerable"] >= 30 and sum(kinds.values()) - kinds["unanswerable"] >= 30, kinds
    for kind, n in kinds.items():
        fit = sum(r["split"] == "fit" for r in rows if r["kind"] == kind)
        test = sum(r["split"] == "test" for r in rows if r["kind"] == kind)
        assert fit + test == n and abs(fit - test) <= 1, (kind, fit, test)
