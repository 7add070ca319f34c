"""Subscriptions: events in order, resume after a break with ``Last-Event-ID`` set to the last
delivered position (no gap, no duplicate), bounded reconnection, and the server's mid-stream
``error`` events raised as the right exception."""

from __future__ import annotations

import json
from itertools import islice

import httpx
import pytest

import cairn_client as cc

from .mock import Script, error, event_json, sse, sse_event


def client(script: Script) -> cc.Client:
    return cc.Client("http://cairn.test", transport=script.transport(), backoff=0)


def test_resumes_after_a_break_from_the_last_delivered_position() -> None:
    script = Script(
        [
            sse(sse_event(event_json(5)) + ": keep-alive\n\n" + sse_event(event_json(6)) + "id: 7\ndata: {\"trunc",
                cut=httpx.RemoteProtocolError("peer closed")),
            # The server resumes after 6; an echo of 6 must be dropped.
            sse(sse_event(event_json(6)) + sse_event(event_json(7)) + sse_event(event_json(8))),
        ]
    )
    with client(script) as c, c.subscribe(from_position=5, stream_prefix="agent-") as sub:
        positions = [e.position for e in islice(sub, 4)]
        assert positions == [5, 6, 7, 8]
        assert sub.last_position == 8 and sub.connections == 2
    first, second = script.requests
    assert dict(first.url.params) == {"from": "5", "stream_prefix": "agent-"}
    assert "last-event-id" not in first.headers
    assert second.headers["last-event-id"] == "6"
    assert first.headers["accept"] == "text/event-stream"


def test_a_clean_end_of_stream_also_reconnects() -> None:
    script = Script([sse(sse_event(event_json(0))), sse(sse_event(event_json(1)))])
    with client(script) as c, c.subscribe(from_position=0) as sub:
        assert [e.position for e in islice(sub, 2)] == [0, 1]
    assert script.requests[1].headers["last-event-id"] == "0"


def test_gives_up_after_max_reconnects_consecutive_failures() -> None:
    script = Script([sse(sse_event(event_json(3))), httpx.ConnectError("refused"), httpx.ConnectError("refused"), httpx.ConnectError("refused")])
    with client(script) as c:
        sub = c.subscribe(from_position=3, max_reconnects=2)
        assert next(sub).position == 3
        with pytest.raises(cc.TransportError, match="gave up after 2 reconnection attempts .last delivered position 3."):
            next(sub)
    assert len(script.requests) == 3
    assert all(r.headers["last-event-id"] == "3" for r in script.requests[1:])


def test_an_event_resets_the_failure_count() -> None:
    answers: list[object] = []
    for p in range(4):
        answers += [httpx.ConnectError("refused"), sse(sse_event(event_json(p)), cut=httpx.ReadError("reset"))]
    script = Script(answers)  # type: ignore[arg-type]
    with client(script) as c, c.subscribe(from_position=0, max_reconnects=2) as sub:
        assert [e.position for e in islice(sub, 4)] == [0, 1, 2, 3]


def test_an_error_event_raises_the_mapped_exception() -> None:
    body = json.dumps({"error": "poisoned", "message": "fdatasync failed on segment 3"})
    script = Script([sse(sse_event(event_json(1)) + f"event: error\ndata: {body}\n\n")])
    with client(script) as c, c.subscribe(from_position=1) as sub:
        assert next(sub).position == 1
        with pytest.raises(cc.Unavailable, match="fdatasync failed on segment 3"):
            next(sub)


def test_refusals_are_raised_at_once_and_busy_servers_retried() -> None:
    script = Script([error(403, "forbidden", "principal p may not read \"x\"")])
    with client(script) as c, pytest.raises(cc.Forbidden):
        next(c.subscribe(stream="x"))
    assert len(script.requests) == 1
    script = Script([error(503, "too_many_subscribers"), sse(sse_event(event_json(9)))])
    with client(script) as c:
        assert next(c.subscribe()).position == 9
    assert dict(script.requests[0].url.params) == {"from": "end"}


def test_a_non_event_stream_answer_is_a_protocol_error() -> None:
    script = Script([httpx.Response(200, json={"events": []})])
    with client(script) as c, pytest.raises(cc.ProtocolError, match="text/event-stream"):
        next(c.subscribe())


@pytest.mark.anyio
async def test_async_subscription_resumes_too() -> None:
    script = Script(
        [
            sse(sse_event(event_json(10)), cut=httpx.ReadError("reset")),
            sse(sse_event(event_json(11))),
        ]
    )
    async with cc.AsyncClient("http://cairn.test", transport=script.async_transport(), backoff=0) as c:
        async with c.subscribe(from_position=10, type_prefix="Tool") as sub:
            got = [(await sub.__anext__()).position, (await sub.__anext__()).position]
    assert got == [10, 11]
    assert script.requests[1].headers["last-event-id"] == "10"
    assert script.requests[1].url.params["type_prefix"] == "Tool"


def test_the_end_of_stream_marker_ends_iteration_after_the_events_before_it() -> None:
    end = 'event: end\ndata: {"stream": "run-1", "reason": "closed", "last_version": 1}\n\n'
    # The server ends the response after the marker; a reconnection would be a bug (the script
    # has no second answer, so one would fail the test).
    script = Script([sse(sse_event(event_json(5)) + sse_event(event_json(6)) + end)])
    with client(script) as c, c.subscribe(from_position=5, stream="run-1") as sub:
        assert [e.position for e in sub] == [5, 6]
        assert sub.ended == cc.EndOfStream(stream="run-1", reason="closed", last_version=1)
        with pytest.raises(StopIteration):
            next(sub)
    assert len(script.requests) == 1


@pytest.mark.anyio
async def test_the_end_of_stream_marker_ends_async_iteration() -> None:
    end = 'event: end\ndata: {"stream": "run-1", "reason": "tombstoned", "last_version": null}\n\n'
    script = Script([sse(end)])
    async with cc.AsyncClient("http://cairn.test", transport=script.async_transport(), backoff=0) as c:
        sub = c.subscribe(stream="run-1")
        async with sub:
            assert [e async for e in sub] == []
            assert sub.ended is not None and sub.ended.reason == "tombstoned"
