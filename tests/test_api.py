"""The HTTP API against a live `qa serve`: search, ask (JSON, SSE, multi-turn), OpenAI chat,
citation lookup, issue browsing."""

from __future__ import annotations

import dataclasses
import json

import httpx
import pytest

from qa.cite import Citation

CITATION_FIELDS = {f.name for f in dataclasses.fields(Citation)}


def _sse(text: str) -> list[tuple[str, dict | str]]:
    events, name, data = [], "message", []
    for line in text.splitlines():
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line.strip() and data:
            raw = "\n".join(data)
            events.append((name, json.loads(raw) if raw.startswith("{") else raw))
            name, data = "message", []
    return events


def test_health(live_server):
    body = httpx.get(f"{live_server}/health").json()
    assert body["status"] == "ok" and body["issues"] == 5 and body["passages"] > 50
    assert "e5" in body["embedder"]
    # `qa serve` as the README starts it embeds questions with fp32 ONNX on a CPU (torch fp16 on CUDA)
    from qa.embed import resolve_device

    assert body["embed_backend"] == ("torch-fp16" if resolve_device("auto") == "cuda" else "onnx-fp32")


def test_search_returns_passages_with_citations(live_server):
    r = httpx.post(f"{live_server}/api/search", json={"query": "衡阳的云绩效、云督查平台是哪天投入运行的？", "top_k": 3},
                   timeout=60)
    assert r.status_code == 200
    body = r.json()
    assert body["query"].startswith("衡阳的云绩效") and len(body["results"]) == 3
    top = body["results"][0]
    assert "11月10日" in top["text"] and len(top["text"]) <= 500
    assert set(top["citation"]) >= {"paper", "date", "date_source", "issue", "page", "headline", "byline",
                                     "source", "start", "end", "label"}
    assert top["citation"]["date"] == "2021-11-30" and top["citation"]["issue"] == "18012"


@pytest.mark.parametrize("issue", ["176001", 176001])  # a JSON number is the issue's digits too
def test_search_filters_by_request_issue(live_server, issue):
    r = httpx.post(f"{live_server}/api/search", json={"query": "习近平", "top_k": 10, "issue": issue}, timeout=60)
    assert r.status_code == 200 and {h["citation"]["issue"] for h in r.json()["results"]} == {"176001"}


def test_search_issue_that_is_no_number_is_refused(live_server):
    r = httpx.post(f"{live_server}/api/search", json={"query": "习近平", "issue": True}, timeout=60)
    assert r.status_code == 422 and "issue numbers are digits" in r.json()["error"]["message"]


def test_ask_answers_with_markers_for_every_citation(live_server):
    r = httpx.post(f"{live_server}/api/ask", json={"question": "第18012号衡阳日报报道的全国先进制造业百强市榜单中，衡阳排在第几位？"},
                   timeout=60)
    body = r.json()
    assert r.status_code == 200 and body["no_answer"] is False
    assert "第88位" in body["answer"]
    assert len(body["answer"].replace("[1]", "").replace("[2]", "").replace("[3]", "")) <= 300
    for c in body["citations"]:
        assert f"[{c['n']}]" in body["answer"]
        assert c["citation"]["label"]


def test_ask_says_not_found_when_the_archive_does_not_answer(live_server):
    # far from every seed page: the API's not-found contract, not the model's calibration on near
    # misses (that is measured by `qa eval` and eval/fit_not_found.py)
    r = httpx.post(f"{live_server}/api/ask", json={"question": "南岳衡山景区的门票多少钱？"}, timeout=60)
    body = r.json()
    assert body["no_answer"] is True and "未找到" in body["answer"]
    assert body["citations"], "the closest passages are still listed"


def test_ask_streams_citations_then_pieces_then_done(live_server):
    with httpx.stream("POST", f"{live_server}/api/ask", timeout=60,
                      json={"question": "习近平和菅义伟通电话时，表示中方支持日本明年办什么？", "stream": True}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = _sse(r.read().decode())
    names = [n for n, _ in events]
    assert names[0] == "citations" and names[-1] == "done" and "delta" in names
    answer = "".join(d["text"] for n, d in events if n == "delta")
    assert answer == events[-1][1]["answer"] and "奥运会" in answer


def _citations_on_every_route(url: str, question: str) -> dict[str, list[dict]]:
    """The citations /api/ask (JSON and its stream) and /v1/chat/completions (JSON and its first
    and last chunk) give for one question."""
    found = {}
    ask = httpx.post(f"{url}/api/ask", json={"question": question}, timeout=60).json()
    assert "warning" not in ask  # only when the LLM failed, and none is configured here
    found["ask"] = ask["citations"]
    with httpx.stream("POST", f"{url}/api/ask", json={"question": question, "stream": True}, timeout=60) as r:
        events = dict(_sse(r.read().decode()))
    found["ask stream citations"] = events["citations"]["citations"]
    found["ask stream done"] = events["done"]["citations"]
    chat = {"messages": [{"role": "user", "content": question}]}
    found["chat"] = httpx.post(f"{url}/v1/chat/completions", json=chat, timeout=60).json()["citations"]
    with httpx.stream("POST", f"{url}/v1/chat/completions", json={**chat, "stream": True}, timeout=60) as r:
        chunks = [d for _, d in _sse(r.read().decode()) if isinstance(d, dict)]
    found["chat stream first"], found["chat stream last"] = chunks[0]["citations"], chunks[-1]["citations"]
    return found


@pytest.mark.parametrize("question, page, unknown", [
    ("长沙海关关长是谁？", "002_", {"paper", "issue", "page"}),  # an inner page: no masthead
    ("第18012号衡阳日报报道的全国先进制造业百强市榜单中，衡阳排在第几位？", "000_", {"date_evidence"}),  # a printed date
], ids=["inner-page", "masthead-page"])
def test_citations_give_unknown_fields_as_null_on_every_route(live_server, question, page, unknown):
    for route, citations in _citations_on_every_route(live_server, question).items():
        assert citations, route
        for c in citations:
            assert set(c["citation"]) == CITATION_FIELDS, (route, c["chunk_id"])
        cited = [c["citation"] for c in citations if c["chunk_id"].startswith(page)]
        assert cited, (route, [c["chunk_id"] for c in citations])
        assert all(c[name] is None for c in cited for name in unknown), (route, cited[0])


def test_ask_follow_up_uses_the_history(live_server):
    first = "朱健慰问一线医务人员时去了哪两家医院？"
    r1 = httpx.post(f"{live_server}/api/ask", json={"question": first}, timeout=60).json()
    r2 = httpx.post(f"{live_server}/api/ask", timeout=60, json={
        "question": "他是在第几个中国医师节前夕去的？",
        "history": [{"role": "user", "content": first}, {"role": "assistant", "content": r1["answer"]}]}).json()
    assert r2["no_answer"] is False and "第四个" in r2["answer"]


def test_citation_lookup_gives_article_and_highlight(live_server):
    hit = httpx.post(f"{live_server}/api/search", json={"query": "衡阳陆港型国家物流枢纽入选", "top_k": 1},
                     timeout=60).json()["results"][0]
    r = httpx.get(f"{live_server}/api/citations/{hit['chunk_id']}")
    assert r.status_code == 200
    body = r.json()
    assert body["citation"] == hit["citation"]
    text, span = body["article"]["text"], body["highlight"]
    quoted = text[span["start"]:span["end"]]
    assert "".join(quoted.split()) == "".join(hit["text"].split())
    assert body["article"]["headline"] == hit["citation"]["headline"]
    assert "previous" in body and "next" in body


@pytest.mark.parametrize("bad", ["nope", "000_72e2c7496de26bfa:ffffffffffff", "..%2F..%2Fetc%2Fpasswd"])
def test_unknown_citation_is_404_with_a_message(live_server, bad):
    r = httpx.get(f"{live_server}/api/citations/{bad}")
    assert r.status_code == 404 and "message" in r.json()["error"]


def test_issue_browsing(live_server):
    issues = httpx.get(f"{live_server}/api/issues").json()["issues"]
    assert len(issues) == 5
    one = httpx.get(f"{live_server}/api/issues/{issues[0]['id']}").json()
    assert one["id"] == issues[0]["id"] and one["articles"][0]["passages"][0]["text"]
    assert httpx.get(f"{live_server}/api/issues/nope").status_code == 404


def test_issues_are_listed_a_page_at_a_time_and_filtered(live_server):
    # an archive of decades holds tens of thousands of pages: never all in one answer
    def listed(**params):
        r = httpx.get(f"{live_server}/api/issues", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    everything = listed()
    assert everything["total"] == 5 and everything["next_offset"] is None
    dates = [i["date"] for i in everything["issues"]]
    assert dates == sorted(dates)
    first, rest = listed(limit=2), listed(limit=2, offset=2)
    assert first["total"] == 5 and first["next_offset"] == 2 and rest["next_offset"] == 4
    assert [i["id"] for i in first["issues"] + rest["issues"]] == [i["id"] for i in everything["issues"][:4]]
    assert listed(limit=2, offset=4)["next_offset"] is None
    assert first["issues"][0]["articles"] == everything["issues"][0]["articles"]
    year = listed(date_from="2021-01-01", date_to="2021-12-31")
    assert year["total"] == 2 and {i["date"][:4] for i in year["issues"]} == {"2021"}
    assert [i["issue"] for i in listed(issue="18012")["issues"]] == ["18012"]
    for bad in ({"limit": 0}, {"limit": 100000}, {"offset": -1}, {"date_from": "2021-13-01"},
                {"date_from": "2021-12-01", "date_to": "2021-01-01"}, {"issue": "abc"}):
        r = httpx.get(f"{live_server}/api/issues", params=bad)
        assert r.status_code == 422 and r.json()["error"]["message"], (bad, r.text)


def test_openai_client_against_the_live_server(live_server):
    from openai import OpenAI

    client = OpenAI(base_url=f"{live_server}/v1", api_key="unused", max_retries=0, timeout=60)
    resp = client.chat.completions.create(
        model="hengyang-archive",
        messages=[{"role": "user", "content": "市政府2021年第15次常务会议原则通过了哪部条例草案？"}])
    assert resp.model == "hengyang-archive"
    content = resp.choices[0].message.content
    assert "文明行为促进条例" in content and "[1]" in content
    extra = resp.model_extra or {}
    assert extra["citations"][0]["n"] == 1

    stream = client.chat.completions.create(
        model="hengyang-archive", stream=True,
        messages=[{"role": "user", "content": "市政府2021年第15次常务会议原则通过了哪部条例草案？"}])
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert "".join(pieces) == content


def _chat(url: str, messages: list[dict], stream: bool) -> tuple[int, dict]:
    """Status and (answer, citation ids) or the error body of one chat completion."""
    body = {"messages": messages, "stream": stream}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=60) as r:
        raw = r.read().decode()
    if r.status_code != 200:
        return r.status_code, json.loads(raw)
    if not stream:
        reply = json.loads(raw)
        return 200, {"answer": reply["choices"][0]["message"]["content"],
                     "cited": [c["chunk_id"] for c in reply["citations"]]}
    chunks = [d for _, d in _sse(raw) if isinstance(d, dict)]
    return 200, {"answer": "".join(c["choices"][0]["delta"].get("content", "") for c in chunks),
                 "cited": [c["chunk_id"] for c in chunks[-1]["citations"]]}


@pytest.mark.parametrize("stream", [False, True])
def test_openai_chat_takes_content_parts_as_text(live_server, stream):
    """OpenAI clients may send `content` as a list of parts: the text parts, joined, are the message."""
    plain = [{"role": "system", "content": "只根据报纸回答。"},
             {"role": "user", "content": "刘越高率队去了哪些省直部门？"},
             {"role": "assistant", "content": "省商务厅、长沙海关等。"},
             {"role": "user", "content": "长沙海关关长是谁？"}]
    parts = [{**m, "content": [{"type": "text", "text": m["content"][:3]}, {"type": "text", "text": m["content"][3:]}]}
             for m in plain]
    status, as_string = _chat(live_server, plain, stream)
    assert status == 200 and "朱光耀" in as_string["answer"]
    assert _chat(live_server, parts, stream) == (200, as_string)


def test_search_says_when_the_questions_issue_was_left_out(live_server):
    r = httpx.post(f"{live_server}/api/search", json={"query": "第99999号衡阳日报报道了长沙海关吗？"}, timeout=60).json()
    assert r["results"] and r["warning"] == "档案中没有第99999号报纸，以下引自其他各期。"
    r = httpx.post(f"{live_server}/api/search", json={"query": "长沙海关关长是谁？"}, timeout=60).json()
    assert r["results"] and "warning" not in r


@pytest.mark.parametrize("stream", [False, True])
def test_the_readers_caveat_reaches_a_chat_client(live_server, stream):
    # a chat client shows the content only: an issue the archive lacks is said there
    status, reply = _chat(live_server, [{"role": "user", "content": "第99999号衡阳日报报道了长沙海关的哪些支持？"}], stream)
    assert status == 200 and reply["answer"].startswith("（档案中没有第99999号报纸，以下引自其他各期。）\n")
    status, reply = _chat(live_server, [{"role": "user", "content": "长沙海关关长是谁？"}], stream)
    assert status == 200 and not reply["answer"].startswith("（")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("role", ["system", "assistant", "user"])
def test_openai_chat_refuses_parts_that_are_not_text(live_server, stream, role):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    messages = [{"role": role, "content": [{"type": "text", "text": "长沙海关关长是谁？"}, image]}]
    if role != "user":
        messages.append({"role": "user", "content": "长沙海关关长是谁？"})
    status, body = _chat(live_server, messages, stream)
    message = body["error"]["message"]
    assert status == 422 and "messages.0.content" in message, body
    assert "content part 1 is of type 'image_url': only text parts are accepted" in message


@pytest.mark.slow
def test_several_workers_answer_and_all_see_a_completed_ingest(fresh_index, tmp_path):
    import os
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    from conftest import ROOT, SEEDS, LiveServer

    server = LiveServer(fresh_index, log_path=tmp_path / "server.log", args=("--workers", "2")).wait(600)
    try:
        def search(query: str) -> dict:  # a new connection each time, so both workers get some
            r = httpx.post(f"{server.url}/api/search", json={"query": query, "top_k": 3}, timeout=120)
            assert r.status_code == 200
            return r.json()

        with ThreadPoolExecutor(8) as pool:
            assert all(b["results"] for b in pool.map(search, ["衡阳物流枢纽"] * 16))
        started = (tmp_path / "server.log").read_text(errors="replace").count("Started server process")
        assert started == 2

        page = tmp_path / "new" / "extra.txt"
        page.parent.mkdir()
        page.write_text((SEEDS / "003_f6f5db6d93bde6b2.txt").read_text(encoding="utf-8")
                        + "\n\n本报编辑部第9次校对说明。\n", encoding="utf-8")
        done = subprocess.run([sys.executable, "-m", "qa.cli", "ingest", str(page)], cwd=ROOT, timeout=600,
                              env={**os.environ, "QA_INDEX_DIR": str(fresh_index)}, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-2000:]
        with ThreadPoolExecutor(8) as pool:
            bodies = list(pool.map(search, ["本报编辑部第9次校对说明"] * 16))
        assert all(any("第9次校对说明" in h["text"] for h in b["results"]) for b in bodies)
    finally:
        server.stop()
