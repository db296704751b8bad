"""evaluate: retrieval and answer quality on a question file (format of eval/dev.jsonl).

A passage is a hit when it contains one of the question's gold evidence spans, both sides
NFKC-normalized with all whitespace removed (DESIGN.md).

Usage::

    questions = load_questions(Path("eval/dev.jsonl"))
    report = {"retrieval": evaluate_retrieval(questions, retriever, top_k=5),
              "answers": evaluate_answers(questions, Answerer(retriever), top_k=5)}
    report["retrieval"]["overall"]["recall@5"]
    print(format_report(report))
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
    split: str | None = None  # 'fit' | 'test': which half a fitted constant may see

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


def _not_found_stats(rows: list[dict], threshold: float | None = None) -> dict:
    """Precision and recall of "not found" over `rows` (dicts with `answerable`, `no_answer`,
    `confidence`), and the share of answerable questions wrongly flagged. With `threshold`, the
    decision is re-made as ``confidence < threshold`` (what the model would have said)."""
    def flagged(r):
        return r["no_answer"] if threshold is None else (r["confidence"] or 0.0) < threshold
    flags = [r for r in rows if flagged(r)]
    unanswerable = [r for r in rows if not r["answerable"]]
    answerable = len(rows) - len(unanswerable)
    true_flags = sum(not r["answerable"] for r in flags)
    return {"precision": round(true_flags / len(flags), 4) if flags else 1.0,
            "recall": round(true_flags / len(unanswerable), 4) if unanswerable else 1.0,
            "wrongly_not_found_rate": round((len(flags) - true_flags) / answerable, 4) if answerable else 0.0,
            "flagged": len(flags), "unanswerable": len(unanswerable)}


TRADEOFF_THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def evaluate_answers(questions: list[EvalQuestion], answerer, top_k: int = 5) -> dict:
    """How often the answer quotes gold evidence, and how "not found" is used: per kind, per
    split (``fit``/``test`` when the file has them), and the not-found threshold's trade-off."""
    per_kind: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    wrong_not_found, missed, rows = [], [], []
    for q in questions:
        result = answerer.ask(q.question, top_k=top_k)
        confidence = getattr(result, "confidence", None)
        rows.append({"id": q.id, "split": q.split, "answerable": q.answerable, "no_answer": result.no_answer,
                     "confidence": confidence})
        if not q.answerable:
            continue
        quoted = contains_evidence(result.answer, q.evidence) and not result.no_answer
        share = sum(contains_evidence(result.answer, [e]) for e in q.evidence) / len(q.evidence)
        for key in (q.kind, "overall"):
            per_kind[key]["evidence_in_answer"].append(float(quoted))
            per_kind[key]["evidence_share"].append(0.0 if result.no_answer else share)
            per_kind[key]["wrongly_not_found"].append(float(result.no_answer))
        if result.no_answer:
            wrong_not_found.append(q.id)
        elif not quoted:
            missed.append(q.id)
    by_kind = {}
    for k, m in per_kind.items():
        by_kind[k] = {"n": len(m["evidence_in_answer"]),
                      "evidence_in_answer": _mean(m["evidence_in_answer"]),
                      "evidence_share": _mean(m["evidence_share"]),
                      "wrongly_not_found": int(sum(m["wrongly_not_found"]))}
    unanswerable = [r for r in rows if not r["answerable"]]
    splits = sorted({r["split"] for r in rows if r["split"]})
    threshold = getattr(getattr(answerer, "model", None), "threshold", None)
    return {"by_kind": by_kind, "overall": by_kind.get("overall", {}),
            "unanswerable": {"n": len(unanswerable), "not_found": sum(r["no_answer"] for r in unanswerable)},
            "not_found": _not_found_stats(rows),
            "by_split": {s: _not_found_stats([r for r in rows if r["split"] == s]) for s in splits},
            "threshold": threshold,
            # only where every answer carries its confidence (in process; over --url it does not)
            "tradeoff": [{"threshold": t} | _not_found_stats(rows, t) for t in TRADEOFF_THRESHOLDS]
            if rows and all(r["confidence"] is not None for r in rows) else [],
            "confidence": {r["id"]: None if r["confidence"] is None else round(r["confidence"], 4) for r in rows},
            "wrongly_not_found": wrong_not_found, "answer_without_evidence": missed}


def _kinds_table(by_kind: dict[str, dict]) -> list[str]:
    kinds = sorted(k for k in by_kind if k != "overall") + (["overall"] if "overall" in by_kind else [])
    return [f"  {kind:12s} " + "  ".join(f"{k}={v}" for k, v in by_kind[kind].items()) for kind in kinds]


def format_report(report: dict) -> str:
    """The text `qa eval` prints: retrieval and answers per kind (overall last), precision and
    recall of "not found" (per split when the file has them) and the threshold's trade-off.

    Usage: ``print(format_report({"retrieval": evaluate_retrieval(...), "answers": evaluate_answers(...)}))``"""
    lines = []
    for section in ("retrieval", "answers"):
        if section in report:
            lines += [section, *_kinds_table(report[section]["by_kind"])]
    answers = report.get("answers")
    if not answers:
        return "\n".join(lines)
    u = answers["unanswerable"]
    lines.append(f"  unanswerable answered 'not found': {u['not_found']}/{u['n']}")
    nf = answers.get("not_found")
    if nf:
        def line(name, s):
            return (f"  {name:12s} precision={s['precision']}  recall={s['recall']}  "
                    f"answerable wrongly not found={s['wrongly_not_found_rate']}  ({s['flagged']} flagged)")
        lines += ["not found", line("all", nf)]
        lines += [line(f"split {name}", s) for name, s in answers.get("by_split", {}).items()]
    if nf and not answers.get("tradeoff"):
        lines.append("not-found threshold trade-off: needs the answers' confidences (run without --url)")
    if answers.get("tradeoff"):
        lines.append(f"not-found threshold trade-off (current threshold {answers.get('threshold')}; "
                     "'not found' when confidence < threshold)")
        lines.append("  threshold  precision  recall  wrongly_not_found_rate")
        lines += [f"  {r['threshold']:9.2f}  {r['precision']:9.3f}  {r['recall']:6.3f}  {r['wrongly_not_found_rate']:.3f}"
                  for r in answers["tradeoff"]]
    return "\n".join(lines)
