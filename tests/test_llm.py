"""The optional LLM upstream, against a small OpenAI-compatible server started on 127.0.0.1."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qa.answer import Answerer, LLMClient


class _Upstream(BaseHTTPRequestHandler):
    mode = "ok"  # 'ok' | 'error' | 'slow' | 'unsure'
    seen: list[dict] = []

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.mode == "error":
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        if self.mode == "slow":
            time.sleep(3)
        prompt = body["messages"][-1]["content"]
        if self.mode == "unsure":
            content = "档案中未找到相关内容。"
        else:
            # Answer from the second numbered passage, the way a well-behaved LLM would cite it.
            second = re.search(r"\[2\][^\n]*\n([^\n]+)", prompt)
            content = f"据报道，{second[1][:40]}[2]"
        payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop"}]}
        data = json.dumps(payload, ensure_ascii=False).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


QUESTION = "习近平和菅义伟通电话时，表示中方支持日本明年办什么？"


def test_llm_answer_keeps_only_the_citations_it_uses(retriever, upstream):
    _Upstream.mode = "ok"
    llm = LLMClient(upstream, "test-model", api_key="sk-test", timeout=5)
    result = Answerer(retriever, llm).ask(QUESTION)
    assert not result.no_answer and result.warning is None
    assert result.answer.endswith("[1]")  # the LLM's [2] renumbered as the only citation
    assert len(result.citations) == 1 and result.citations[0].n == 1
    sent = _Upstream.seen[-1]
    assert sent["path"] == "/v1/chat/completions" and sent["auth"] == "Bearer sk-test"
    assert sent["body"]["model"] == "test-model" and "[1]" in sent["body"]["messages"][-1]["content"]


def test_llm_that_finds_nothing_gives_no_answer(retriever, upstream):
    _Upstream.mode = "unsure"
    result = Answerer(retriever, LLMClient(upstream, "m", timeout=5)).ask(QUESTION)
    assert result.no_answer and result.citations


@pytest.mark.parametrize("mode", ["error", "slow"])
def test_failing_or_slow_llm_falls_back_to_the_extractive_answer(retriever, upstream, mode):
    _Upstream.mode = mode
    result = Answerer(retriever, LLMClient(upstream, "m", timeout=1)).ask(QUESTION)
    assert result.warning and "LLM" in result.warning
    assert "奥运会" in result.answer and not result.no_answer
    assert all(f"[{c.n}]" in result.answer for c in result.citations)
