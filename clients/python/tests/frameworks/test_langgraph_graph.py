"""A real LangGraph graph on :class:`AsyncCairnSaver` and a real ``cairn serve``: deterministic
nodes (no model calls), a tool loop, an interrupt for human input, and the history kept in a
``DeltaChannel`` (per-step deltas, not whole states).

- The server is SIGKILLed while a tool runs, restarted, and the graph resumes from its last
  checkpoint: every acknowledged tool call ran exactly once, and the final state has every step
  once.
- Time travel: resuming from an earlier checkpoint branches the thread and leaves the original
  history as it was.
- ``copy_thread`` gives a thread whose state and history equal the source's and that then runs
  on its own.
- ``prune(keep_latest)`` leaves one checkpoint per namespace whose delta channel still rebuilds
  the whole history, from a fresh saver (nothing cached).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.channels.delta import DeltaChannel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from cairn_client import TransportError
from cairn_client.langgraph import AsyncCairnSaver

from .conftest import Deployment

pytestmark = pytest.mark.anyio

TOOL_CALLS = 4
"""Tool calls the agent node asks for before it asks a human."""


def extend(state: list[str], writes: list[list[str]]) -> list[str]:
    return [*state, *(entry for write in writes for entry in write)]


class State(TypedDict, total=False):
    log: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=3)]
    calls: int
    answer: str


def build(tool_runs: list[int], during_tool: Callable[[int], None] = lambda n: None) -> StateGraph[Any]:
    """The agent loop: ``agent`` asks for ``TOOL_CALLS`` tool calls, then ``human`` interrupts
    for an answer. ``tool_runs`` records every tool execution (the side effect that must not
    repeat once acknowledged); ``during_tool`` runs inside the tool, before it returns."""

    def agent(state: State) -> State:
        return {"log": [f"agent:{state.get('calls', 0)}"]}

    def route(state: State) -> str:
        return "tool" if state.get("calls", 0) < TOOL_CALLS else "human"

    def tool(state: State) -> State:
        n = state.get("calls", 0)
        tool_runs.append(n)
        during_tool(n)
        return {"log": [f"tool:{n}"], "calls": n + 1}

    def human(state: State) -> State:
        from langgraph.types import interrupt

        answer = interrupt({"question": "book it?"})
        return {"answer": answer, "log": [f"human:{answer}"]}

    builder: StateGraph[Any] = StateGraph(State)
    builder.add_node("agent", agent)
    builder.add_node("tool", tool)
    builder.add_node("human", human)
    builder.add_edge(START, "agent")
    builder.add_conditional_edges("agent", route, ["tool", "human"])
    builder.add_edge("tool", "agent")
    builder.add_edge("human", END)
    return builder


FULL_LOG = [
    "start",
    *(entry for n in range(TOOL_CALLS) for entry in (f"agent:{n}", f"tool:{n}")),
    f"agent:{TOOL_CALLS}",
    "human:yes",
]


async def test_sigkill_mid_run_resumes_with_nothing_lost_or_repeated(own_deployment: Deployment) -> None:
    server, token = own_deployment.server, own_deployment.token
    tool_runs: list[int] = []

    def kill_at_second_call(n: int) -> None:
        if n == 2 and tool_runs.count(2) == 1:
            server.kill()

    config: RunnableConfig = {"configurable": {"thread_id": "booking-1"}}
    async with AsyncCairnSaver(server.url, token, stream_prefix="lg-kill:") as saver:
        graph: CompiledStateGraph[Any] = build(tool_runs, kill_at_second_call).compile(checkpointer=saver)
        # durability="sync": each step's checkpoint is stored before the next step starts, so
        # what a step did is acknowledged exactly when its checkpoint is.
        with pytest.raises(TransportError):
            await graph.ainvoke({"log": ["start"], "calls": 0}, config, durability="sync")
        assert tool_runs == [0, 1, 2]

    server.restart()
    # A new process: a fresh saver that knows nothing of the run.
    async with AsyncCairnSaver(server.url, token, stream_prefix="lg-kill:") as saver:
        graph = build(tool_runs).compile(checkpointer=saver)
        state = await graph.aget_state(config)
        assert state.values["calls"] == 2, "the last acknowledged checkpoint is after tool call 1"
        assert state.next == ("tool",)
        paused = await graph.ainvoke(None, config, durability="sync")
        assert paused["__interrupt__"][0].value == {"question": "book it?"}
        done = await graph.ainvoke(Command(resume="yes"), config, durability="sync")

    # Tool call 2 was cut by the kill before its result was checkpointed, so it ran again;
    # every acknowledged call ran once.
    assert tool_runs == [0, 1, 2, 2, 3]
    assert done["log"] == FULL_LOG
    assert done["answer"] == "yes"


async def _finished(saver: AsyncCairnSaver, thread_id: str, tool_runs: list[int]) -> CompiledStateGraph[Any]:
    graph: CompiledStateGraph[Any] = build(tool_runs).compile(checkpointer=saver)
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    await graph.ainvoke({"log": ["start"], "calls": 0}, config)
    done = await graph.ainvoke(Command(resume="yes"), config)
    assert done["log"] == FULL_LOG
    return graph


async def test_time_travel_branches_from_an_earlier_checkpoint(deployment: Any, prefix: str) -> None:
    tool_runs: list[int] = []
    async with AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as saver:
        graph = await _finished(saver, "trip", tool_runs)
        config: RunnableConfig = {"configurable": {"thread_id": "trip"}}
        history = [s async for s in graph.aget_state_history(config)]
        # The checkpoint where tool call 1 is next: time travel back to it.
        earlier = next(s for s in history if s.values.get("calls") == 1 and s.next == ("tool",))
        branch = await graph.ainvoke(None, earlier.config)
        assert branch["__interrupt__"][0].value == {"question": "book it?"}
        branch = await graph.ainvoke(Command(resume="no"), config)
        assert branch["log"] == [*FULL_LOG[:-1], "human:no"]
        assert tool_runs == [0, 1, 2, 3, 1, 2, 3]

    # The original branch is intact, read by a fresh saver.
    async with AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as fresh:
        graph = build([]).compile(checkpointer=fresh)
        original = await graph.aget_state(history[0].config)
        assert original.values["log"] == FULL_LOG
        latest = await graph.aget_state(config)
        assert latest.values["answer"] == "no"


async def test_copy_thread_then_both_run_on_their_own(deployment: Any, prefix: str) -> None:
    async with AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as saver:
        graph = await _finished(saver, "source", [])
        await saver.acopy_thread("source", "copy")
        source: RunnableConfig = {"configurable": {"thread_id": "source"}}
        copy: RunnableConfig = {"configurable": {"thread_id": "copy"}}
        assert (await graph.aget_state(copy)).values == (await graph.aget_state(source)).values
        source_history = [s.config["configurable"]["checkpoint_id"] async for s in graph.aget_state_history(source)]
        copy_history = [s.config["configurable"]["checkpoint_id"] async for s in graph.aget_state_history(copy)]
        assert copy_history == source_history
        await graph.aupdate_state(copy, {"log": ["copy-only"]})
        assert (await graph.aget_state(copy)).values["log"] == [*FULL_LOG, "copy-only"]
        assert (await graph.aget_state(source)).values["log"] == FULL_LOG


async def test_prune_keeps_what_the_delta_channel_needs(deployment: Any, prefix: str) -> None:
    async with AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as saver:
        await _finished(saver, "long", [])
        before = [t async for t in saver.alist({"configurable": {"thread_id": "long"}})]
        await saver.aprune(["long"], strategy="keep_latest")
    async with AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as fresh:
        graph = build([]).compile(checkpointer=fresh)
        config: RunnableConfig = {"configurable": {"thread_id": "long"}}
        assert (await graph.aget_state(config)).values["log"] == FULL_LOG
        after = [t async for t in fresh.alist(config)]
        assert 1 <= len(after) < len(before)
        assert after[0].checkpoint["id"] == before[0].checkpoint["id"]
