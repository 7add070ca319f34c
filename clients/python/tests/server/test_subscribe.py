"""Subscriptions against the real server: catch-up from a position then live events as they
are committed, filters, ``from="end"``, and resuming after the connection is cut (through a
proxy) with no gap and no duplicate."""

from __future__ import annotations

from itertools import islice

import pytest

import cairn_client as cc
from cairn_client import NewEvent

from .harness import Proxy


def test_catch_up_then_live(client: cc.Client, stream: str) -> None:
    first = client.append(stream, [NewEvent("Old", {"i": i}) for i in range(3)])
    with client.subscribe(from_position=first.first_position, stream=stream) as sub:
        caught_up = list(islice(sub, 3))
        assert [e.data for e in caught_up] == [{"i": 0}, {"i": 1}, {"i": 2}]
        live = client.append(stream, NewEvent("New", {"i": 3}))
        event = next(sub)
        assert (event.type, event.position, event.version) == ("New", live.first_position, 3)
        assert sub.last_position == live.first_position
        assert event.hash == live.hash


def test_from_end_sees_only_new_events(client: cc.Client, stream: str) -> None:
    client.append(stream, NewEvent("Before"))
    with client.subscribe(stream=stream) as sub:  # from "end": connected on entering the block
        client.append(stream, NewEvent("After"))
        assert next(sub).type == "After"


def test_filters_by_prefix_and_type(client: cc.Client, stream: str) -> None:
    start = client.append(f"{stream}-a", NewEvent("Skip")).first_position
    client.append(f"{stream}-b", NewEvent("ToolCalled"))
    client.append("elsewhere-" + stream, NewEvent("ToolCalled"))
    client.append(f"{stream}-a", [NewEvent("Noise"), NewEvent("ToolResult")])
    with client.subscribe(from_position=start, stream_prefix=stream, type_prefix="Tool") as sub:
        got = [(e.stream, e.type) for e in islice(sub, 2)]
    assert got == [(f"{stream}-b", "ToolCalled"), (f"{stream}-a", "ToolResult")]


def test_resumes_after_a_cut_connection_without_gap_or_duplicate(
    proxy: Proxy, client: cc.Client, stream: str
) -> None:
    start = client.append(stream, [NewEvent("E", {"i": i}) for i in range(5)]).first_position
    with cc.Client(proxy.url, backoff=0.01) as through_proxy, through_proxy.subscribe(
        from_position=start, stream=stream
    ) as sub:
        seen = [(e.data["i"], sub.connections) for e in islice(sub, 3)]
        proxy.cut_all()
        client.append(stream, [NewEvent("E", {"i": i}) for i in range(5, 8)])
        seen += [(e.data["i"], sub.connections) for e in islice(sub, 5)]
        last = sub.last_position
    assert [i for i, _ in seen] == list(range(8))
    assert seen[-1][1] == 2, "the subscription reconnected once"
    resumed_at = next(i for i, connections in seen if connections == 2)
    assert proxy.header_values("last-event-id") == [str(start + resumed_at - 1)]
    assert last == start + 7


def test_subscribe_with_a_bad_position_is_invalid(client: cc.Client) -> None:
    with pytest.raises(ValueError):
        client.subscribe(from_position=-5)


def test_gives_up_when_the_server_is_gone(proxy: Proxy, stream: str) -> None:
    with cc.Client(proxy.url, backoff=0.01) as through_proxy:
        sub = through_proxy.subscribe(stream=stream, max_reconnects=2).open()
        proxy.close()
        with pytest.raises(cc.TransportError, match="gave up after 2 reconnection attempts"):
            next(sub)
