"""Retries: idempotent calls (reads, appends) are retried after transient failures, a bounded
number of times; other calls only when the request never left; a poisoned log is not retried.
Paging follows ``next`` to the end and refuses a cursor that does not move."""

from __future__ import annotations

import httpx
import pytest

import cairn_client as cc
from cairn_client import NewEvent

from .mock import Script, error, event_json, ok

HEAD = {"position": 3, "hash": "ab" * 32}
APPEND = {"stream": "s", "first_position": 0, "last_position": 0, "first_version": 0, "last_version": 0, "hash": "ab" * 32}


def client(script: Script, retries: int = 3) -> cc.Client:
    return cc.Client("http://cairn.test", transport=script.transport(), retries=retries, backoff=0)


def test_reads_are_retried_after_connection_failures_and_503() -> None:
    script = Script([httpx.ConnectError("refused"), error(503, "unavailable"), httpx.ReadTimeout("slow"), ok(HEAD)])
    with client(script) as c:
        assert c.head() == cc.Head(3, "ab" * 32)
    assert len(script.requests) == 4


def test_retries_are_bounded_and_the_last_failure_is_raised() -> None:
    script = Script([httpx.ReadTimeout("slow")] * 3)
    with client(script, retries=2) as c, pytest.raises(cc.Timeout, match="after 3 attempts"):
        c.head()
    assert len(script.requests) == 3
    script = Script([httpx.RemoteProtocolError("cut")] * 2)
    with client(script, retries=1) as c, pytest.raises(cc.TransportError, match="RemoteProtocolError"):
        c.head()


def test_an_append_is_retried_with_the_same_event_ids() -> None:
    script = Script([httpx.RemoteProtocolError("connection dropped before the answer"), ok(APPEND)])
    with client(script) as c:
        assert c.append("s", NewEvent("T")).first_position == 0
    assert len(script.requests) == 2
    assert script.body(0) == script.body(1), "a retry must resend the same ids and content"


def test_a_poisoned_log_is_not_retried() -> None:
    script = Script([error(503, "poisoned", "fdatasync failed")])
    with client(script) as c, pytest.raises(cc.Unavailable) as info:
        c.head()
    assert info.value.code == "poisoned" and info.value.message == "fdatasync failed"
    assert len(script.requests) == 1


def test_client_errors_are_not_retried() -> None:
    script = Script([error(404, "stream_not_found", "stream s does not exist")])
    with client(script) as c, pytest.raises(cc.NotFound):
        c.read_stream_page("s")
    assert len(script.requests) == 1


def test_non_idempotent_writes_are_retried_only_when_never_sent() -> None:
    script = Script([httpx.ConnectError("refused"), ok({"key": "k", "version": 0, "position": 5})])
    with client(script) as c:
        assert c.kv.set("k", 1).position == 5
    assert len(script.requests) == 2
    script = Script([httpx.ReadTimeout("slow")])
    with client(script) as c, pytest.raises(cc.Timeout):
        c.kv.incr("n")
    assert len(script.requests) == 1, "an incr that may have landed must not be repeated"
    script = Script([error(503, "unavailable")])
    with client(script) as c, pytest.raises(cc.Unavailable):
        c.kv.incr("n")
    assert len(script.requests) == 1


def test_wrong_expected_version_is_raised_with_versions() -> None:
    script = Script([error(409, "wrong_expected_version", "stream s is at 4", stream="s", expected=2, actual=4)])
    with client(script) as c, pytest.raises(cc.WrongExpectedVersion) as info:
        c.append("s", NewEvent("T"), expected_version=2)
    assert (info.value.expected, info.value.actual, info.value.stream) == (2, 4, "s")
    assert len(script.requests) == 1


def test_read_stream_follows_next_to_the_end() -> None:
    script = Script(
        [
            ok({"events": [event_json(0), event_json(1)], "next": 2}),
            ok({"events": [event_json(2)], "next": None}),
        ]
    )
    with client(script) as c:
        assert [e.version for e in c.read_stream("s", page_size=2)] == [0, 1, 2]
    assert [r.url.params.get("from") for r in script.requests] == [None, "2"]
    assert all(r.url.params["limit"] == "2" for r in script.requests)


def test_read_all_continues_over_empty_filtered_pages() -> None:
    script = Script(
        [
            ok({"events": [], "next": 100000}),
            ok({"events": [event_json(100004)], "next": None}),
        ]
    )
    with client(script) as c:
        assert [e.position for e in c.read_all(stream_prefix="rare-")] == [100004]
    assert script.requests[1].url.params["from"] == "100000"
    assert script.requests[1].url.params["stream_prefix"] == "rare-"


def test_a_cursor_that_does_not_advance_is_a_protocol_error() -> None:
    script = Script([ok({"events": [], "next": 5}), ok({"events": [], "next": 5})])
    with client(script) as c, pytest.raises(cc.ProtocolError, match="does not advance"):
        list(c.read_all(from_position=0))


def test_key_and_audit_listings_follow_their_cursors() -> None:
    script = Script([ok({"keys": ["a", "b"], "next": "b"}), ok({"keys": ["c"], "next": None})])
    with client(script) as c:
        assert list(c.kv.keys(prefix="", page_size=2)) == ["a", "b", "c"]
    assert script.requests[1].url.params["after"] == "b"
    script = Script([ok({"entries": [{"id": "1"}], "next": "7"}), ok({"entries": [{"id": "2"}], "next": None})])
    with client(script) as c:
        assert [e.id for e in c.audit.query(actor="a-1")] == ["1", "2"]
    assert script.requests[1].url.params["after"] == "7"
    assert script.requests[1].url.params["actor"] == "a-1"


def test_streams_follow_the_listing_cursor_to_the_end() -> None:
    """Issue 23 item 8: the stream listing is paged; ``streams()`` reads every page."""
    def row(name: str) -> dict[str, object]:
        return {"stream": name, "last_version": 0, "events": 1}

    script = Script(
        [ok({"streams": [row("a"), row("b")], "next": "b"}), ok({"streams": [row("c")], "next": None})]
    )
    with client(script) as c:
        assert [s.stream for s in c.streams(prefix="", page_size=2)] == ["a", "b", "c"]
    assert script.requests[0].url.params["limit"] == "2"
    assert script.requests[1].url.params["after"] == "b"
    # An older server's bare list is one last page.
    script = Script([ok([row("a")])])
    with client(script) as c:
        assert [s.stream for s in c.streams()] == ["a"]


def test_an_audit_query_limit_is_the_total() -> None:
    """Issue 23 item 8: ``audit.query(limit=3)`` answered every match (``limit`` was only the
    page size); it yields at most 3, asking each page only for what is missing."""
    def entries(*ids: str) -> list[dict[str, str]]:
        return [{"id": i} for i in ids]

    script = Script(
        [ok({"entries": entries("1", "2"), "next": "7"}), ok({"entries": entries("3"), "next": "9"})]
    )
    with client(script) as c:
        assert [e.id for e in c.audit.query(actor="a-1", limit=3)] == ["1", "2", "3"]
    assert len(script.requests) == 2, "no page is asked for once the total is reached"
    assert script.requests[0].url.params["limit"] == "3"
    assert script.requests[1].url.params["limit"] == "1"
    with client(Script([])) as c:
        assert list(c.audit.query(limit=0)) == []


@pytest.mark.anyio
async def test_async_audit_limit_and_streams_paging() -> None:
    script = Script(
        [
            ok({"entries": [{"id": "1"}, {"id": "2"}], "next": "7"}),
            ok({"streams": [{"stream": "a", "last_version": 0, "events": 1}], "next": "a"}),
            ok({"streams": [{"stream": "b", "last_version": 0, "events": 1}], "next": None}),
        ]
    )
    async with cc.AsyncClient("http://cairn.test", transport=script.async_transport(), backoff=0) as c:
        assert [e.id async for e in c.audit.query(limit=2)] == ["1", "2"]
        assert [s.stream for s in await c.streams()] == ["a", "b"]


@pytest.mark.anyio
async def test_async_retries_and_paging() -> None:
    script = Script(
        [
            httpx.ConnectError("refused"),
            ok({"events": [event_json(0)], "next": 1}),
            error(502, "http_502"),
            ok({"events": [event_json(1)], "next": None}),
        ]
    )
    async with cc.AsyncClient("http://cairn.test", transport=script.async_transport(), backoff=0) as c:
        assert [e.version async for e in c.read_stream("s")] == [0, 1]
    assert len(script.requests) == 4
    script = Script([httpx.ReadTimeout("slow")])
    async with cc.AsyncClient("http://cairn.test", transport=script.async_transport(), backoff=0) as c:
        with pytest.raises(cc.Timeout):
            await c.kv.incr("n")
    assert len(script.requests) == 1


def test_backoff_grows_is_capped_and_jittered() -> None:
    policy = cc.RetryPolicy(retries=10, backoff=0.1, backoff_max=1.0)
    delays = [policy.delay(a) for a in range(8)]
    assert all(0.05 <= d <= 1.0 for d in delays)
    assert delays[0] <= 0.1 and delays[7] >= 0.5, "doubling reaches the cap"
    assert policy.delay(0, retry_after="0.7") == 0.7
    assert policy.delay(0, retry_after="60") == 1.0, "Retry-After is capped too"
