"""llm: an OpenAI-compatible chat-completions upstream, streamed token by token.

The transport and the `[n]` marker bookkeeping of the optional LLM answer; `qa.answer` builds
its `StreamingAnswerResult` on top. Nothing here knows about passages or answers.

Usage::

    chat = ChatStream("http://127.0.0.1:8001/v1", "qwen2.5-7b-instruct", timeout=30)
    tokens = chat.stream([{"role": "user", "content": "你好"}])  # LLMError until the first token
    markers = CitationMarkers(count=5)
    text = "".join(markers.feed(t) for t in tokens) + markers.flush()
    markers.used                                                  # [2, 1]
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import httpx


class LLMError(RuntimeError):
    """The LLM upstream failed, timed out or answered nonsense. `kind` is safe to show a user."""

    def __init__(self, message: str, kind: str = "error"):
        super().__init__(message)
        self.kind = kind


class ChatStream:
    """`POST {base_url}/chat/completions` with `stream: true`; upstreams that ignore the flag and
    answer with one JSON body are read as a single token."""

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = timeout

    def stream(self, messages: list[dict]) -> Iterator[str]:
        """Open the stream and wait for the first non-blank token, so that a refused connection,
        an HTTP error or a timeout raises `LLMError` here, before anything reached a reader.
        The iterator returned starts with that token; a failure later raises `LLMError` from it.

        Usage: ``for token in chat.stream(messages): print(token, end="")``"""
        tokens = self._tokens(messages)
        try:
            first = next(tokens)
        except StopIteration:
            raise LLMError("the upstream sent no text", "empty answer") from None
        return _resume(first, tokens)

    def _tokens(self, messages: list[dict]) -> Iterator[str]:
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": messages, "temperature": 0, "stream": True}
        deadline = time.monotonic() + self.timeout  # for the first token; later ones may take longer
        started = False
        try:
            with httpx.Client(timeout=self.timeout) as client, client.stream(
                    "POST", f"{self.base_url}/chat/completions", headers=headers, json=body) as resp:
                resp.raise_for_status()
                for token in _read_tokens(resp):
                    if not started:
                        if not token.strip():
                            if time.monotonic() > deadline:
                                raise LLMError(f"no text within {self.timeout}s", "timeout")
                            continue
                        started = True
                    yield token
        except httpx.TimeoutException as exc:
            raise LLMError(f"timeout after {self.timeout}s: {exc}", "timeout") from exc
        except httpx.HTTPStatusError as exc:
            raise LLMError(f"{exc}", f"HTTP {exc.response.status_code}") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"{type(exc).__name__}: {exc}", "connection failed") from exc


def _resume(first: str, rest: Iterator[str]) -> Iterator[str]:
    try:
        yield first
        yield from rest
    finally:
        rest.close()  # an abandoned stream closes its HTTP connection now, not at garbage collection


def _read_tokens(resp: httpx.Response) -> Iterator[str]:
    """Content deltas of an SSE chat-completions stream, or the content of a plain JSON answer."""
    if not resp.headers.get("content-type", "").startswith("text/event-stream"):
        resp.read()
        yield _content(resp.text, "message")
        return
    for line in resp.iter_lines():
        if not line.startswith("data:"):
            yield ""  # comments (keep-alives), event names, separators: still time for the deadline
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield _content(data, "delta")


def _content(data: str, key: str) -> str:
    try:
        payload = json.loads(data)
        if "error" in payload:
            raise LLMError(f"upstream error: {payload['error']}", "upstream error")
        choices = payload["choices"]
        if not choices:  # a usage-only chunk
            return ""
        return choices[0][key].get("content") or ""
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise LLMError(f"{type(exc).__name__}: {exc}", "unusable response") from exc


# An LLM writes `[2]`, `［2］` or `【2】`; `[2,3]` is read as two markers.
_MARKER = re.compile(r"[\[［【]\s*(\d{1,3}(?:\s*[,，、]\s*\d{1,3})*)\s*[\]］】]")
_PARTIAL = re.compile(r"[\[［【][\s\d,，、]{0,12}$")  # a marker that the next token may complete


class CitationMarkers:
    """Checks the `[n]` markers of a streamed answer as the text arrives: markers for passages
    1..count are kept (written `[n]`), others dropped, and `used` lists the numbers in order of
    first use. A marker split over tokens is held back until it is complete.

    Usage: ``m = CitationMarkers(3); m.feed("见[") + m.feed("2]") + m.flush()`` → '见[2]'"""

    def __init__(self, count: int):
        self.count = count
        self.used: list[int] = []
        self._held = ""

    def feed(self, token: str) -> str:
        """The text that can be shown now (possibly empty)."""
        text = self._held + token
        partial = _PARTIAL.search(text)
        cut = partial.start() if partial else len(text)
        self._held = text[cut:]
        return _MARKER.sub(self._marker, text[:cut])

    def flush(self) -> str:
        """What was held back when the stream ends (an unfinished marker is dropped)."""
        held, self._held = self._held, ""
        return _MARKER.sub(self._marker, held) if _MARKER.fullmatch(held) else ""

    def _marker(self, m: re.Match) -> str:
        out = []
        for n in (int(x) for x in re.findall(r"\d+", m[1])):
            if 1 <= n <= self.count:
                if n not in self.used:
                    self.used.append(n)
                out.append(f"[{n}]")
        return "".join(out)
