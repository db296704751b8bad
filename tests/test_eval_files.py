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


# file → (at least this many unanswerable, at least this many answerable questions)
SPLIT_FILES = {"fresh.jsonl": (30, 30), "notfound.jsonl": (40, 20), "dev.jsonl": (6, 30), "paraphrase.jsonl": (0, 30),
               "calibrate.jsonl": (40, 40)}


@pytest.mark.parametrize("name", sorted(SPLIT_FILES))
def test_fitted_files_are_split_half_and_half_per_kind(name):
    rows = _rows(ROOT / "eval" / name)
    kinds = Counter(r["kind"] for r in rows)
    least_unanswerable, least_answerable = SPLIT_FILES[name]
    assert kinds["unanswerable"] >= least_unanswerable, kinds
    assert sum(kinds.values()) - kinds["unanswerable"] >= least_answerable, kinds
    for kind, n in kinds.items():
        fit = sum(r["split"] == "fit" for r in rows if r["kind"] == kind)
        test = sum(r["split"] == "test" for r in rows if r["kind"] == kind)
        assert fit + test == n and abs(fit - test) <= 1, (kind, fit, test)


def test_new_questions_are_new():
    """A question of one file is not asked again in another (a held-out half stays unseen)."""
    seen: dict[str, str] = {}
    for path in FILES:
        for r in _rows(path):
            key = normalize(r["question"])
            assert key not in seen, f"{r['id']} of {path.name} repeats {seen[key]}"
            seen[key] = f"{r['id']} of {path.name}"
