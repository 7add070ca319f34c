"""The async client against the real server: the same behaviour as the blocking one for
appends, conflicts, paging, errors and a live subscription."""

from __future__ import annotations

import pytest

import cairn_client as cc
from cairn_client import NewEvent, StreamAppend

from .harness import Server

pytestmark = pytest.mark.anyio


async def test_append_read_and_page(aclient: cc.AsyncClient, stream: str) -> None:
    result = await aclient.append(stream, [NewEvent("Step", {"i": i}) for i in range(12)], expected_version="no_stream")
    assert (result.first_version, result.last_version) == (0, 11)
    assert [e.data["i"] async for e in aclient.read_stream(stream, page_size=5)] == list(range(12))
    backward = [e.version async for e in aclient.read_stream(stream, direction="backward", page_size=5)]
    assert backward == list(range(11, -1, -1))
    page = await aclient.read_stream_page(stream, limit=5)
    assert page.next == 5
    mine = [e async for e in aclient.read_all(from_position=result.first_position, stream_prefix=stream)]
    assert [e.position for e in mine] == list(range(result.first_position, result.last_position + 1))
    assert await aclient.streams(prefix=stream) == [cc.StreamInfo(stream, 11, 12)]
    assert (await aclient.head()).position is not None
    assert (await aclient.verify()).ok


async def test_errors(aclient: cc.AsyncClient, stream: str) -> None:
    with pytest.raises(cc.NotFound):
        await aclient.read_stream_page(stream)
    await aclient.append(stream, NewEvent("T"))
    with pytest.raises(cc.WrongExpectedVersion) as info:
        await aclient.append(stream, NewEvent("T"), expected_version="no_stream")
    assert info.value.actual == 0
    with pytest.raises(cc.WrongExpectedVersion) as info:
        await aclient.append_multi([StreamAppend(f"{stream}-new", [NewEvent("T")]), StreamAppend(stream, [NewEvent("T")], 5)])
    assert info.value.stream == stream
    with pytest.raises(cc.NotFound):
        await aclient.read_stream_page(f"{stream}-new")
    with pytest.raises(cc.Invalid):
        await aclient.append("$reserved", NewEvent("T"))


async def test_idempotent_repeat(aclient: cc.AsyncClient, stream: str) -> None:
    events = [NewEvent("T", {"i": 1}), NewEvent("T", {"i": 2})]
    assert await aclient.append(stream, events) == await aclient.append(stream, events)
    assert len([e async for e in aclient.read_stream(stream)]) == 2


async def test_subscription_catch_up_and_live(aclient: cc.AsyncClient, stream: str) -> None:
    start = (await aclient.append(stream, NewEvent("Old"))).first_position
    async with aclient.subscribe(from_position=start, stream=stream) as sub:
        assert (await sub.__anext__()).type == "Old"
        live = await aclient.append(stream, NewEvent("New"))
        event = await sub.__anext__()
        assert (event.type, event.position) == ("New", live.first_position)
    async with aclient.subscribe(stream=stream) as sub:
        await aclient.append(stream, NewEvent("AfterEnd"))
        async for event in sub:
            assert event.type == "AfterEnd"
            break


async def test_kv_exists(aclient: cc.AsyncClient, stream: str) -> None:
    """Issue 14 item 10: ``exists`` on the async client, for a list (HEAD once answered 400)."""
    pushed = await aclient.kv.push(f"{stream}/list", [1])
    assert await aclient.kv.exists(f"{stream}/list", min_position=pushed.position) is True
    assert await aclient.kv.exists(f"{stream}/none") is False


async def test_an_ndjson_append(aclient: cc.AsyncClient, stream: str) -> None:
    result = await aclient.append_ndjson(stream, [NewEvent("Note", {"n": i}) for i in range(1200)])
    assert (result.count, result.batches, result.last_version) == (1200, 2, 1199)


def test_one_async_client_serves_successive_event_loops(server: Server, stream: str) -> None:
    import asyncio

    client = cc.AsyncClient(server.url, timeout=10.0)
    for n in range(2):
        result = asyncio.run(client.append(stream, NewEvent("Note", {"n": n})))
        assert result.last_version == n
    asyncio.run(client.aclose())
