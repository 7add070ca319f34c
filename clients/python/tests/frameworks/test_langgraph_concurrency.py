"""Two writers of one thread never silently overwrite each other: ``put`` appends with the
thread's version as the saver last read it, and a competing checkpoint (another writer
continued the same parent in the same namespace since) raises :class:`ThreadConflict` and
writes nothing. What does not compete goes through: parallel tasks' writes, another
namespace, and time travel from a checkpoint that already had a child when it was read."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint
from langgraph.checkpoint.base.id import uuid6

from cairn_client.langgraph import AsyncCairnSaver, ThreadConflict

from .conftest import Deployment

pytestmark = pytest.mark.anyio


def checkpoint(value: str) -> Checkpoint:
    return {
        "v": 1,
        "id": str(uuid6(clock_seq=-1)),
        "ts": "2026-12-07T00:00:00+00:00",
        "channel_values": {"v": value},
        "channel_versions": {"v": value},
        "versions_seen": {},
        "updated_channels": None,
    }


def config(thread: str, parent: str | None = None, ns: str = "") -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ns}
    if parent:
        configurable["checkpoint_id"] = parent
    return {"configurable": configurable}


async def put(saver: AsyncCairnSaver, cfg: RunnableConfig, value: str) -> RunnableConfig:
    return await saver.aput(cfg, checkpoint(value), {"source": "loop", "step": 0}, {"v": value})


async def test_a_competing_checkpoint_raises_and_writes_nothing(deployment: Deployment, prefix: str) -> None:
    async with (
        AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as a,
        AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as b,
    ):
        root = await put(a, config("t"), "root")
        start = root["configurable"]["checkpoint_id"]
        assert (await a.aget_tuple(config("t"))) is not None
        assert (await b.aget_tuple(config("t"))) is not None  # both read the thread at `root`

        await put(a, config("t", start), "from a")
        with pytest.raises(ThreadConflict) as conflict:
            await put(b, config("t", start), "from b")
        assert conflict.value.parent_id == start and conflict.value.status == 409

        listed = [t.checkpoint["channel_values"]["v"] async for t in b.alist(config("t"))]
        assert listed == ["from a", "root"], "b's checkpoint was not written"

        # Having read the thread again, b may branch from `start` on purpose (time travel).
        await b.aget_tuple(config("t"))
        await put(b, config("t", start), "b's branch")
        assert len([t async for t in a.alist(config("t"))]) == 3


async def test_what_does_not_compete_goes_through(deployment: Deployment, prefix: str) -> None:
    async with (
        AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as a,
        AsyncCairnSaver(deployment.url, deployment.token, stream_prefix=prefix) as b,
    ):
        root = await put(a, config("t"), "root")
        await b.aget_tuple(config("t"))
        # Parallel tasks' writes, from both savers at once.
        await asyncio.gather(
            *(s.aput_writes(root, [("ch", f"{n}")], f"task-{n}") for n, s in enumerate([a, b] * 8))
        )
        # a moves the thread on in a subgraph namespace; b's checkpoint in the root namespace
        # does not compete with it.
        await put(a, config("t", ns="child:1"), "child")
        after = await put(b, config("t", root["configurable"]["checkpoint_id"]), "next")
        tup = await a.aget_tuple(root)
        assert tup is not None and sorted(w[2] for w in tup.pending_writes or []) == sorted(f"{n}" for n in range(16))
        latest = await a.aget_tuple(config("t"))
        assert latest is not None and latest.config["configurable"]["checkpoint_id"] == after["configurable"]["checkpoint_id"]
