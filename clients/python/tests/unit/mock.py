"""A scripted ``httpx.MockTransport``: records every request and answers from a queue, so unit
tests can check exactly what the client sends and how it reacts to each kind of answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Union

import httpx

Answer = Union[httpx.Response, Exception, Callable[[httpx.Request], httpx.Response]]

EVENT_JSON: dict[str, Any] = {
    "position": 41,
    "stream": "agent-7",
    "version": 3,
    "id": "0b6f0c1e-6a43-4f4e-9a51-0d2b8f3a9c11",
    "type": "ToolCalled",
    "timestamp": "2026-11-22T16:11:51.123Z",
    "metadata": {"run_id": "r-1"},
    "data": {"tool": "search", "query": "..."},
    "hash": "ab" * 32,
}


def event_json(position: int, **changes: Any) -> dict[str, Any]:
    return {**EVENT_JSON, "position": position, "version": position, **changes}


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def error(status: int, code: str, message: str = "it failed", **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "message": message, **extra})


def sse(text: str, *, cut: Exception | None = None) -> Callable[[httpx.Request], httpx.Response]:
    """An event-stream answer with body ``text``; with ``cut``, the body breaks with that error
    after ``text`` instead of ending cleanly."""

    def chunks() -> Iterator[bytes]:
        yield text.encode()
        if cut is not None:
            raise cut

    async def achunks() -> AsyncIterator[bytes]:
        yield text.encode()
        if cut is not None:
            raise cut

    def answer(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "text/event-stream"}
        if request.extensions.get("_async"):
            return httpx.Response(200, headers=headers, content=achunks())
        return httpx.Response(200, headers=headers, content=chunks())

    return answer


def sse_event(event: dict[str, Any]) -> str:
    return f"id: {event['position']}\ndata: {json.dumps(event)}\n\n"


@dataclass
class Script:
    """Answers requests in order; records them (with decoded JSON bodies)."""

    answers: list[Answer]
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.answers:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return answer(request)

    async def ahandle(self, request: httpx.Request) -> httpx.Response:
        request.extensions = {**request.extensions, "_async": True}
        return self.handle(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def async_transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.ahandle)

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content)

    def path(self, index: int = -1) -> str:
        return self.requests[index].url.raw_path.decode().split("?")[0]

    def query(self, index: int = -1) -> dict[str, str]:
        return dict(self.requests[index].url.params)
