"""evaluate: retrieval and answer quality on a question file (format of eval/dev.jsonl).

A passage is a hit when it contains one of the question's gold evidence spans, both sides
NFKC-normalized with all whitespace removed (DESIGN.md).

Usage::

    report = evaluate(load_questions(Path("eval/dev.jsonl")), retriever, answerer, top_k=5)
    report["retrieval"]["overall"]["recall@5"]
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from qa.chunk import normalize


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


# NFKC with all whitespace removed: how evidence and passages are compared.
norm = normalize


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


def evaluate_answers(questions: list[EvalQuestion], answerer, top_k: int = 5) -> dict:
    """How often the answer quotes gold evidence, and how "not found" is used, per kind."""
    per_kind: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    wrong_not_found, missed = [], []
    unanswerable = {"n": 0, "not_found": 0}
    for q in questions:
        result = answerer.ask(q.question, top_k=top_k)
        if not q.answerable:
            unanswerable["n"] += 1
            unanswerable["not_found"] += int(result.no_answer)
            continue
        quoted = contains_evidence(result.answer, q.evidence)
        for key in (q.kind, "overall"):
            per_kind[key]["evidence_in_answer"].append(float(quoted))
            per_kind[key]["wrongly_not_found"].append(float(result.no_answer))
        if result.no_answer:
            wrong_not_found.append(q.id)
        elif not quoted:
            missed.append(q.id)
    by_kind = {}
    for k, m in per_kind.items():
        by_kind[k] = {"n": len(m["evidence_in_answer"]),
                      "evidence_in_answer": _mean(m["evidence_in_answer"]),
                      "wrongly_not_found": int(sum(m["wrongly_not_found"]))}
    return {"by_kind": by_kind, "overall": by_kind.get("overall", {}), "unanswerable": unanswerable,
            "wrongly_not_found": wrong_not_found, "answer_without_evidence": missed}
