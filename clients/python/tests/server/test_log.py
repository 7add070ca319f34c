"""The log calls against the real server: appends and what reads give back, expected versions,
idempotent retries, atomic multi-stream appends, paging, the global log with filters, stream
listing, head, verify, and every error the log endpoints answer."""

from __future__ import annotations

import uuid

import pytest

import cairn_client as cc
from cairn_client import NewEvent, StreamAppend

from .harness import Proxy

EVENT_SIZE_MAX = 1024 * 1024
"""log-engine's EVENT_SIZE_MAX: the largest event the server accepts."""

BATCH_EVENTS_MAX = 10_000
"""log-engine's BATCH_EVENTS_MAX: the most events one request may carry."""

STREAM_NAME_LEN_MAX = 256
"""log-engine's STREAM_NAME_LEN_MAX, in bytes."""

EVENT_TYPE_LEN_MAX = 256
"""log-engine's EVENT_TYPE_LEN_MAX, in bytes."""


def test_append_then_read_gives_back_what_was_written(client: cc.Client, stream: str) -> None:
    blob = bytes(range(256)) * 4
    events = [
        NewEvent("ToolCalled", {"tool": "search", "query": "cairn", "n": 12345678901234567890}, metadata={"run_id": "r-1"}),
        NewEvent("ToolResult", blob),
        NewEvent("Note", None),
        NewEvent("Empty"),
    ]
    result = client.append(stream, events, expected_version="no_stream")
    assert result.stream == stream
    assert (result.first_version, result.last_version) == (0, 3)
    assert result.last_position - result.first_position == 3
    assert len(result.hash) == 64 and int(result.hash, 16) >= 0

    read = list(client.read_stream(stream))
    assert [e.version for e in read] == [0, 1, 2, 3]
    assert [e.position for e in read] == list(range(result.first_position, result.last_position + 1))
    assert [e.id for e in read] == [e.id for e in events]
    assert [e.type for e in read] == ["ToolCalled", "ToolResult", "Note", "Empty"]
    assert read[0].data == {"tool": "search", "query": "cairn", "n": 12345678901234567890}
    assert read[0].metadata == {"run_id": "r-1"}
    assert read[1].is_binary and read[1].data == blob
    assert read[1].metadata == {}
    assert read[2].data is None
    assert read[3].data == {}
    assert all(e.stream == stream for e in read)
    assert read[-1].hash == result.hash
    assert read[0].timestamp <= read[-1].timestamp
    assert read[0].timestamp.tzinfo is not None


@pytest.mark.parametrize("suffix", ["/session/42", " with spaces", "-ünïcödé-🪨", "?x=1&y=#frag", "%2F"])
def test_stream_names_are_data_not_paths(client: cc.Client, stream: str, suffix: str) -> None:
    name = stream + suffix
    result = client.append(name, NewEvent("T"))
    assert result.stream == name
    assert [e.stream for e in client.read_stream(name)] == [name]
    assert [row.stream for row in client.streams(prefix=name)] == [name]
    with client.subscribe(from_position=result.first_position, stream=name) as sub:
        assert next(sub).stream == name


def test_expected_versions(client: cc.Client, stream: str) -> None:
    with pytest.raises(cc.WrongExpectedVersion) as info:
        client.append(stream, NewEvent("T"), expected_version="exists")
    assert (info.value.expected, info.value.actual, info.value.code) == ("exists", None, "wrong_expected_version")
    with pytest.raises(cc.WrongExpectedVersion):
        client.append(stream, NewEvent("T"), expected_version=0)

    assert client.append(stream, NewEvent("T"), expected_version="no_stream").last_version == 0
    assert client.append(stream, NewEvent("T"), expected_version=0).last_version == 1
    assert client.append(stream, NewEvent("T"), expected_version="exists").last_version == 2
    assert client.append(stream, [NewEvent("T"), NewEvent("T")]).last_version == 4

    with pytest.raises(cc.WrongExpectedVersion) as info:
        client.append(stream, NewEvent("T"), expected_version="no_stream")
    assert (info.value.expected, info.value.actual) == ("no_stream", 4)
    with pytest.raises(cc.WrongExpectedVersion) as info:
        client.append(stream, NewEvent("Stale"), expected_version=2)
    assert (info.value.expected, info.value.actual) == (2, 4)
    assert info.value.status == 409 and info.value.message
    # A refused append wrote nothing.
    assert [e.type for e in client.read_stream(stream)] == ["T"] * 5


def test_repeating_an_append_returns_the_original_positions(client: cc.Client, stream: str) -> None:
    events = [NewEvent("ToolCalled", {"i": i}) for i in range(3)]
    first = client.append(stream, events, expected_version="no_stream")
    client.append(stream, NewEvent("Other"))
    again = client.append(stream, events, expected_version="no_stream")
    assert again == first
    assert [e.type for e in client.read_stream(stream)] == ["ToolCalled"] * 3 + ["Other"]


@pytest.mark.parametrize("expected", ["any", "no_stream"])
def test_an_append_whose_answer_was_lost_is_retried_without_writing_twice(
    proxy: Proxy, client: cc.Client, stream: str, expected: cc.ExpectedVersion
) -> None:
    # With an expected version too: the retry finds the stream already moved by the first
    # attempt, and must still be answered with the original positions, not a conflict.
    with cc.Client(proxy.url, backoff=0.01) as through_proxy:
        proxy.drop_next_answer()
        result = through_proxy.append(
            stream, [NewEvent("ToolCalled", {"i": i}) for i in range(2)], expected_version=expected
        )
    assert len(proxy.requests) == 2, "the first answer was dropped, so the client sent the request again"
    assert proxy.requests[0] == proxy.requests[1], "the retry carried the same body (the same event ids)"
    events = list(client.read_stream(stream))
    assert len(events) == 2
    assert (result.first_position, result.last_position) == (events[0].position, events[1].position)


def test_reusing_an_id_with_other_content_is_a_conflict(client: cc.Client, stream: str) -> None:
    event = NewEvent("T", {"a": 1})
    client.append(stream, event)
    with pytest.raises(cc.Conflict) as info:
        client.append(stream, NewEvent("T", {"a": 2}, id=event.id))
    assert not isinstance(info.value, cc.WrongExpectedVersion)
    assert info.value.code == "id_conflict"


def test_multi_stream_appends_are_atomic(client: cc.Client, stream: str) -> None:
    a, b, c = f"{stream}-a", f"{stream}-b", f"{stream}-c"
    results = client.append_multi(
        [
            StreamAppend(a, [NewEvent("Sent", {"to": b})], "no_stream"),
            StreamAppend(b, [NewEvent("Received", {"from": a}), NewEvent("Ack")], "no_stream"),
        ]
    )
    assert [(r.stream, r.last_version) for r in results] == [(a, 0), (b, 1)]
    assert results[1].first_position == results[0].last_position + 1

    with pytest.raises(cc.WrongExpectedVersion) as info:
        client.append_multi(
            [
                StreamAppend(c, [NewEvent("Sent")], "no_stream"),
                StreamAppend(a, [NewEvent("Sent")], "no_stream"),
            ]
        )
    assert info.value.stream == a and info.value.actual == 0
    with pytest.raises(cc.NotFound):
        list(client.read_stream(c))
    assert len(list(client.read_stream(a))) == 1


def test_paging_forward_and_backward(client: cc.Client, stream: str) -> None:
    client.append(stream, [NewEvent("Step", {"i": i}) for i in range(25)])
    assert [e.data["i"] for e in client.read_stream(stream, page_size=7)] == list(range(25))
    assert [e.version for e in client.read_stream(stream, from_version=20, page_size=2)] == [20, 21, 22, 23, 24]
    backward = client.read_stream(stream, direction="backward", page_size=4)
    assert [e.version for e in backward] == list(range(24, -1, -1))
    assert [e.version for e in client.read_stream(stream, from_version=5, direction="backward")] == [5, 4, 3, 2, 1, 0]

    page = client.read_stream_page(stream, limit=10)
    assert [e.version for e in page.events] == list(range(10)) and page.next == 10
    last = client.read_stream_page(stream, from_version=20, limit=10)
    assert [e.version for e in last.events] == list(range(20, 25)) and last.next is None
    back = client.read_stream_page(stream, from_version=3, limit=10, direction="backward")
    assert [e.version for e in back.events] == [3, 2, 1, 0] and back.next is None


def test_read_all_in_position_order_with_filters(client: cc.Client, stream: str) -> None:
    start = client.head().position
    tag = uuid.uuid4().hex[:8]
    client.append(f"{stream}-x", [NewEvent(f"Tool{tag}Called"), NewEvent("Other")])
    client.append(f"{stream}-y", [NewEvent(f"Tool{tag}Result")])
    from_position = 0 if start is None else start + 1
    everything = list(client.read_all(from_position=from_position, page_size=2))
    positions = [e.position for e in everything]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    mine = [e for e in everything if e.stream.startswith(stream)]
    assert [e.type for e in mine] == [f"Tool{tag}Called", "Other", f"Tool{tag}Result"]

    by_stream = list(client.read_all(from_position=from_position, stream_prefix=f"{stream}-y"))
    assert [e.type for e in by_stream] == [f"Tool{tag}Result"]
    by_type = list(client.read_all(stream_prefix=stream, type_prefix=f"Tool{tag}"))
    assert [e.stream for e in by_type] == [f"{stream}-x", f"{stream}-y"]
    page = client.read_all_page(from_position=from_position, limit=1)
    assert len(page.events) == 1 and page.next == page.events[0].position + 1


def test_streams_head_and_verify(client: cc.Client, stream: str) -> None:
    client.append(f"{stream}-1", [NewEvent("T"), NewEvent("T")])
    result = client.append(f"{stream}-2", NewEvent("T"))
    rows = client.streams(prefix=stream)
    assert rows == [cc.StreamInfo(f"{stream}-1", 1, 2), cc.StreamInfo(f"{stream}-2", 0, 1)]

    head = client.head()
    assert head.position is not None and head.position >= result.last_position
    if head.position == result.last_position:
        assert head.hash == result.hash

    report = client.verify()
    assert report.ok and report.first_bad_position is None
    assert report.events >= result.last_position + 1
    assert report.head_position is not None and report.head_position >= result.last_position
    partial = client.verify(from_position=result.last_position)
    assert partial.ok


def test_not_found(client: cc.Client, stream: str) -> None:
    with pytest.raises(cc.NotFound) as info:
        list(client.read_stream(stream))
    assert info.value.status == 404 and info.value.code == "stream_not_found"
    assert stream in info.value.message


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("$cairn-internal", "invalid_stream_name"),
        ("bad\x01name", "invalid_stream_name"),
        ("x" * (STREAM_NAME_LEN_MAX + 1), "invalid_stream_name"),
    ],
    ids=["reserved", "control-char", "too-long"],
)
def test_invalid_stream_names_are_refused_and_write_nothing(client: cc.Client, name: str, code: str) -> None:
    before = client.head()
    with pytest.raises(cc.Invalid) as info:
        client.append(name, NewEvent("T"))
    assert info.value.status == 400 and info.value.code == code
    assert client.head() == before


def test_invalid_events_are_refused_and_write_nothing(client: cc.Client, stream: str) -> None:
    # NaN is not JSON: refused before anything is sent.
    with pytest.raises(ValueError):
        client.append(stream, NewEvent("T", {"x": float("nan")}))
    with pytest.raises(cc.Invalid) as info:
        client.append(stream, NewEvent("T" * (EVENT_TYPE_LEN_MAX + 1)))
    assert info.value.status in (400, 413) and info.value.message
    with pytest.raises(cc.NotFound):
        list(client.read_stream(stream))


def test_oversize_events_and_batches_are_refused(client: cc.Client, stream: str) -> None:
    with pytest.raises(cc.TooLarge) as info:
        client.append(stream, NewEvent("Big", "x" * (EVENT_SIZE_MAX + 1)))
    assert info.value.status == 413 and info.value.code
    with pytest.raises(cc.TooLarge) as info:
        client.append(stream, [NewEvent("T") for _ in range(BATCH_EVENTS_MAX + 1)])
    assert info.value.status == 413 and info.value.code == "too_many_events"
    with pytest.raises(cc.NotFound):
        list(client.read_stream(stream))
    # Just under the limit is fine (binary, so the size is exact).
    assert client.append(stream, NewEvent("Big", b"\x00" * (EVENT_SIZE_MAX // 2))).last_version == 0


def test_health_and_metrics(client: cc.Client) -> None:
    assert client.healthz().get("status") == "ok"
    text = client.metrics()
    assert "# TYPE" in text or "# HELP" in text


def test_an_ndjson_append_lands_in_batches_and_a_failure_keeps_the_durable_ones(
    client: cc.Client, stream: str
) -> None:
    result = client.append_ndjson(stream, [NewEvent("Note", {"n": i}) for i in range(2500)])
    assert (result.stream, result.count, result.batches) == (stream, 2500, 3)
    assert result.last_version - result.first_version == 2499
    assert [e.data for e in client.read_stream_page(stream, from_version=999, limit=2).events] == [{"n": 999}, {"n": 1000}]

    other = stream + "-failing"
    events = [NewEvent("Note", {"n": i}) for i in range(1500)]
    events.append(NewEvent("Note", {}, metadata={"$principal": "someone else"}))
    with pytest.raises(cc.CairnError) as refused:
        client.append_ndjson(other, events)
    assert refused.value.status == 400
    assert refused.value.body["line"] == 1501
    assert refused.value.body["durable"]["count"] == 1000
    assert client.read_stream_page(other, from_version=0, limit=10_000).events[-1].data == {"n": 999}
