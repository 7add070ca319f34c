"""``CairnSession`` against a real ``cairn serve`` with a token.

The Agents SDK's session tests (tests/memory/test_session.py and test_session_limit.py of
openai-agents 0.24.0) are written against ``SQLiteSession`` and take no session factory, so
their behavioural cases are ported here one for one (named after the originals), driving the
SDK's real ``Runner`` with its ``ScriptedModel`` (no model calls). Then what the SDK's tests
do not cover: 16 concurrent writers lose no item, and concurrent pops never return one item
twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner, SessionSettings
from agents.testing import ScriptedModel
from openai.types.responses import ResponseOutputMessage, ResponseOutputText

from cairn_client.openai_agents import CairnSession

from .conftest import Deployment

pytestmark = pytest.mark.anyio

RUNNERS = ["run", "run_sync", "run_streamed"]


def c(item: Any) -> Any:
    """An item's content (items are a union of typed dicts; these tests only make messages)."""
    return item.get("content")


def text(content: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="1",
        type="message",
        role="assistant",
        content=[ResponseOutputText(text=content, type="output_text", annotations=[], logprobs=[])],
        status="completed",
    )


async def run(method: str, agent: Agent[Any], input_data: Any, **kwargs: Any) -> Any:
    """The SDK tests' run_agent_async: one of the three Runner entry points."""
    if method == "run":
        return await Runner.run(agent, input_data, **kwargs)
    if method == "run_sync":

        def in_own_loop() -> Any:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                return Runner.run_sync(agent, input_data, **kwargs)
            finally:
                loop.close()

        return await asyncio.to_thread(in_own_loop)
    result = Runner.run_streamed(agent, input_data, **kwargs)
    async for _ in result.stream_events():
        pass
    return result


@pytest.fixture
def new_session(deployment: Deployment, session_prefix: str) -> Callable[..., CairnSession]:
    def make(session_id: str, **kwargs: Any) -> CairnSession:
        return CairnSession(session_id, deployment.url, deployment.token, stream_prefix=session_prefix, **kwargs)

    return make


@pytest.mark.parametrize("method", RUNNERS)
async def test_session_memory_basic_functionality(method: str, new_session: Callable[..., CairnSession]) -> None:
    session = new_session("test_session_123")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    model.enqueue([text("San Francisco")])
    first = await run(method, agent, "What city is the Golden Gate Bridge in?", session=session)
    assert first.final_output == "San Francisco"
    model.enqueue([text("California")])
    second = await run(method, agent, "What state is it in?", session=session)
    assert second.final_output == "California"
    last_input = model.calls[-1].input
    assert len(last_input) == 3, "the second turn sees the first question and answer"
    assert last_input[0]["content"] == "What city is the Golden Gate Bridge in?"


@pytest.mark.parametrize("method", RUNNERS)
async def test_session_memory_different_sessions(method: str, new_session: Callable[..., CairnSession]) -> None:
    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    cats, dogs = new_session("session_1"), new_session("session_2")
    model.enqueue([text("I like cats")])
    await run(method, agent, "I like cats", session=cats)
    model.enqueue([text("I like dogs")])
    await run(method, agent, "I like dogs", session=dogs)
    model.enqueue([text("Yes, you mentioned cats")])
    result = await run(method, agent, "What did I say I like?", session=cats)
    assert result.final_output == "Yes, you mentioned cats"
    assert [c(i) for i in model.calls[-1].input][0] == "I like cats"
    assert len(model.calls[-1].input) == 3


@pytest.mark.parametrize("method", RUNNERS)
async def test_session_limit_parameter(method: str, new_session: Callable[..., CairnSession]) -> None:
    session = new_session("limit_test")
    model = ScriptedModel()
    agent = Agent(name="test", model=model)
    for n in (1, 2, 3):
        model.enqueue([text(f"Reply {n}")])
        await run(method, agent, f"Message {n}", session=session)
    assert len(await session.get_items()) == 6
    model.enqueue([text("Reply 4")])
    await run(method, agent, "Message 4", session=session, run_config=RunConfig(session_settings=SessionSettings(limit=2)))
    last_input = model.calls[-1].input
    assert len(last_input) == 3
    assert c(last_input[0]) == "Message 3"


async def test_session_memory_direct(new_session: Callable[..., CairnSession]) -> None:
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


async def test_session_memory_pop_item(new_session: Callable[..., CairnSession]) -> None:
    session = new_session("pop_test")
    assert await session.pop_item() is None
    items = [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there!"},
        {"role": "user", "content": "How are you?"},
    ]
    await session.add_items(items)  # type: ignore[arg-type]
    assert len(await session.get_items()) == 3
    assert await session.pop_item() == items[2]
    remaining = await session.get_items()
    assert len(remaining) == 2 and c(remaining[-1]) == "Hi there!"
    assert await session.pop_item() == items[1]
    assert await session.pop_item() == items[0]
    assert await session.pop_item() is None
    assert await session.get_items() == []


async def test_session_memory_pop_different_sessions(new_session: Callable[..., CairnSession]) -> None:
    one, two = new_session("session_1"), new_session("session_2")
    await one.add_items([{"role": "user", "content": "Session 1 message"}])
    await two.add_items([{"role": "user", "content": "Session 2 message 1"}, {"role": "user", "content": "Session 2 message 2"}])
    assert (await one.pop_item()) == {"role": "user", "content": "Session 1 message"}
    assert await one.get_items() == []
    assert len(await two.get_items()) == 2
    assert (await two.pop_item()) == {"role": "user", "content": "Session 2 message 2"}
    assert await two.get_items() == [{"role": "user", "content": "Session 2 message 1"}]


async def test_session_get_items_with_limit(new_session: Callable[..., CairnSession]) -> None:
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


async def test_session_unicode_and_special_characters(new_session: Callable[..., CairnSession]) -> None:
    session = new_session("unicode_test")
    contents = ["こんにちは", "😊👍", "Привет", "O'Reilly", "Robert'); DROP TABLE students;--", '"quoted" \\ back']
    await session.add_items([{"role": "user", "content": c} for c in contents])
    assert [c(i) for i in await session.get_items()] == contents


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
