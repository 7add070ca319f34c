"""``CairnSession`` against a real ``cairn serve`` with a token: what the Agents SDK's own
session tests (run by .ci/frameworks through sdk_session_plugin.py) do not cover. 16 concurrent
writers lose no item and keep each writer's order; concurrent pops never return one item twice;
pops, limits and clears combine; one session object serves several event loops.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from agents import SessionSettings

from cairn_client.openai_agents import CairnSession

from .conftest import Deployment

pytestmark = pytest.mark.anyio


def c(item: Any) -> Any:
    """An item's content (items are a union of typed dicts; these tests only make messages)."""
    return item.get("content")


@pytest.fixture
def new_session(deployment: Deployment, session_prefix: str) -> Callable[..., CairnSession]:
    def make(session_id: str, **kwargs: Any) -> CairnSession:
        return CairnSession(session_id, deployment.url, deployment.token, stream_prefix=session_prefix, **kwargs)

    return make


async def test_clear_then_add_starts_afresh(new_session: Callable[..., CairnSession]) -> None:
    session = new_session("direct_test")
    await session.add_items([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi there!"}])
    assert await session.get_items() == [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
    ]
    await session.clear_session()
    assert await session.get_items() == []
    await session.add_items([{"role": "user", "content": "after the clear"}])
    assert await session.get_items() == [{"role": "user", "content": "after the clear"}]


async def test_limits_count_live_items_after_pops(new_session: Callable[..., CairnSession]) -> None:
    session = new_session("count_test")
    contents = ["Message 1", "Response 1", "Message 2", "Response 2", "Message 3", "Response 3"]
    await session.add_items([{"role": "user", "content": c} for c in contents])
    assert [c(i) for i in await session.get_items()] == contents
    assert [c(i) for i in await session.get_items(limit=2)] == contents[-2:]
    assert [c(i) for i in await session.get_items(limit=4)] == contents[-4:]
    assert [c(i) for i in await session.get_items(limit=10)] == contents
    assert await session.get_items(limit=0) == []
    await session.pop_item()
    assert [c(i) for i in await session.get_items(limit=2)] == contents[-3:-1]


async def test_get_items_uses_session_settings_limit(new_session: Callable[..., CairnSession]) -> None:
    session = new_session("settings_limit", session_settings=SessionSettings(limit=3))
    await session.add_items([{"role": "user", "content": f"Message {i}"} for i in range(5)])
    assert [c(i) for i in await session.get_items()] == ["Message 2", "Message 3", "Message 4"]
    assert len(await session.get_items(limit=5)) == 5, "an explicit limit overrides the settings"


async def test_session_concurrent_access_from_other_event_loops(new_session: Callable[..., CairnSession]) -> None:
    session = new_session("concurrent_test")

    def add(n: int) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(session.add_items([{"role": "user", "content": f"Message {n}"}]))
        finally:
            loop.close()

    await asyncio.gather(*(asyncio.to_thread(add, n) for n in range(10)))
    assert {c(i) for i in await session.get_items()} == {f"Message {n}" for n in range(10)}


async def test_sixteen_writers_lose_no_item(deployment: Deployment, session_prefix: str) -> None:
    writers = [CairnSession("shared", deployment.url, deployment.token, stream_prefix=session_prefix) for _ in range(16)]

    async def write(w: int, session: CairnSession) -> None:
        for n in range(10):
            await session.add_items([{"role": "user", "content": f"{w}:{n}:a"}, {"role": "user", "content": f"{w}:{n}:b"}])

    await asyncio.gather(*(write(w, s) for w, s in enumerate(writers)))
    items = [c(i) for i in await writers[0].get_items()]
    assert sorted(items) == sorted(f"{w}:{n}:{x}" for w in range(16) for n in range(10) for x in "ab")
    for w in range(16):
        mine = [i for i in items if i.startswith(f"{w}:")]
        assert mine == [f"{w}:{n}:{x}" for n in range(10) for x in "ab"], "each writer's items stay in its order"
    for s in writers:
        await s.aclose()


async def test_concurrent_pops_never_return_one_item_twice(deployment: Deployment, session_prefix: str) -> None:
    first = CairnSession("popped", deployment.url, deployment.token, stream_prefix=session_prefix)
    await first.add_items([{"role": "user", "content": f"item {n}"} for n in range(40)])
    poppers = [CairnSession("popped", deployment.url, deployment.token, stream_prefix=session_prefix) for _ in range(8)]

    async def pop_all(session: CairnSession) -> list[str]:
        got = []
        while (item := await session.pop_item()) is not None:
            got.append(c(item))
        return got

    results = await asyncio.gather(*(pop_all(s) for s in poppers))
    popped = [c for got in results for c in got]
    assert sorted(popped) == sorted(f"item {n}" for n in range(40)), "every item popped exactly once"
    for got in results:
        numbers = [int(c.split()[1]) for c in got]
        assert numbers == sorted(numbers, reverse=True), "each popper takes the newest item first"
    assert await first.get_items() == []
