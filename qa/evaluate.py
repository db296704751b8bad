"""evaluate: retrieval and answer quality on a question file (format of eval/dev.jsonl).

A passage is a hit when it contains one of the question's gold evidence spans, both sides
NFKC-normalized with all whitespace removed (DESIGN.md).

Usage::

    report = evaluate(load_questions(Path("eval/dev.jsonl")), retriever, answerer, top_k=5)
    report["retrieval"]["overall"]["recall@5"]
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class EvalQuestion:
    id: str
    kind: str
    question: str
    answer: str = ""
    evidence: list[str] = field(default_factory=list)
    date: str | None = None
    issue: str | None = None
    file: str | None = None

    @property
    def answerable(self) -> bool:
        return bool(self.evidence) and self.kind != "unanswerable"


def norm(text: str) -> str:
    """NFKC with all whitespace removed: how evidence and passages are compared."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def load_questions(path: Path) -> list[EvalQuestion]:
    """Read a JSONL question file; a malformed line is a ValueError naming its line number."""
    questions = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            known = {k: row[k] for k in EvalQuestion.__dataclass_fields__ if k in row}
            questions.append(EvalQuestion(**known))
        except (json.JSONDecodeError, TypeError, KeyError) as exc:
            raise ValueError(f"{path}:{n}: not a question record ({exc})") from exc
    return questions


def contains_evidence(text: str, evidence: list[str]) -> bool:
    t = norm(text)
    return any(norm(e) and norm(e) in t for e in evidence)


def _mean(xs: list[float]) -> float:
    return round(sum(xs) / len(xs), 4) if xs else 0.0


def evaluate_retrieval(questions: list[EvalQuestion], retriever, top_k: int = 5) -> dict:
    """recall@1, recall@k and MRR@10 over answerable questions, overall and per kind."""
    per_kind: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    misses = []
    for q in questions:
        if not q.answerable:
            continue
        hits = retriever.search(q.question, top_k=max(10, top_k))
        rank = next((i for i, h in enumerate(hits) if contains_evidence(h.text, q.evidence)), None)
        for key in (q.kind, "overall"):
            per_kind[key]["recall@1"].append(float(rank == 0))
            per_kind[key][f"recall@{top_k}"].append(float(rank is not None and rank < top_k))
            per_kind[key]["mrr@10"].append(1.0 / (rank + 1) if rank is not None and rank < 10 else 0.0)
        if rank != 0:
            misses.append({"id": q.id, "rank": None if rank is None else rank + 1})
    out = {k: {m: _mean(v) for m, v in metrics.items()} | {"n": len(metrics["recall@1"])}
           for k, metrics in per_kind.items()}
    return {"top_k": top_k, "by_kind": out, "overall": out.get("overall", {}), "not_first": misses}
